"""Rich tables for the terminal: the report, a recorded model's summary, any DataFrame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluate.segments import SEGMENTS


def table_to_rich(frame: pd.DataFrame, title: str = ""):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    return table


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if np.isnan(v) else f"{v:.4f}"
    return str(v)


def make_console():
    """A rich console; when output is not a terminal (files, CI, pipes) wide enough for the tables."""
    from rich.console import Console

    plain = Console()
    return plain if plain.is_terminal else Console(width=200, soft_wrap=True)


def print_report(report: dict) -> None:
    console = make_console()
    cfg, k = report["config"], report["config"]["k"]
    split = report["split"]
    seg = report["tables"]["segments"]
    wide = seg.pivot_table(index="segment", columns="model", values=[f"recall@{k}", f"ndcg@{k}"],
                           sort=False)
    wide.columns = [f"{m} {metric.split('@')[0][0].upper()}@{k}" for metric, m in wide.columns]
    wide = wide[sorted(wide.columns, key=lambda c: (c.split()[0], c.split()[1]))]
    counts = seg.drop_duplicates("segment").set_index("segment")[["n_users", "share"]]
    wide = counts.join(wide).reindex([*SEGMENTS, "all"]).reset_index()
    console.print(table_to_rich(wide, f"{report['dataset']} {split}: Recall (R) and NDCG (N) @{k} "
                                      f"per memorization segment"))
    console.print(table_to_rich(report["tables"]["summary"], f"{report['dataset']} {split}: "
                                f"overall, covered (one-hop) vs uncovered, memorization"))
    dec = report["tables"]["decomposition"]
    if len(dec):
        view = dec.assign(ci=[f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in
                              zip(dec["contribution_ci_low"], dec["contribution_ci_high"])])
        view = view[["a", "b", "metric", "segment", "n_users", "share", "delta", "contribution", "ci"]]
        console.print(table_to_rich(view, f"gain decomposition (A - B = sum of share x segment delta; "
                                          f"95% bootstrap CI, n={cfg['n_boot']})"))
        for pair, entry in report["decompositions"].items():
            for metric, res in entry.items():
                share = res["covered_share_of_gain"]
                lo, hi = res["covered_share_ci"]
                share_txt = "n/a (delta = 0)" if share is None else f"{share:.1%} [{lo:.1%}, {hi:.1%}]"
                console.print(f"{pair} {metric}: delta {res['delta']:+.4f} "
                              f"[{res['delta_ci'][0]:+.4f}, {res['delta_ci'][1]:+.4f}], "
                              f"share of the gain from one-hop users {share_txt}")
    token = report["tables"].get("token_level")
    if token is not None:
        view = token[token["group"] == "uncovered"].pivot_table(
            index="token_level", columns="model", values=f"recall@{k}", sort=False)
        counts = token[(token["group"] == "uncovered")].drop_duplicates("token_level").set_index(
            "token_level")["n_users"]
        view = counts.to_frame().join(view).reset_index()
        console.print(table_to_rich(view, f"{report['dataset']} {split}: Recall@{k} of uncovered (not "
                                          f"one-hop) users by SID token level of last item -> target"))
        console.print(report["token_level_note"])
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"wrote {', '.join(report['files'])} to {Path(report['run']) / 'report'}")


def print_model_summary(metrics: dict) -> None:
    rows = []
    for name, block in [("all", {"n_users": metrics["n_users"], **metrics["overall"]}),
                        *metrics["segments"].items()]:
        rows.append({"segment": name, "n_users": block["n_users"],
                     **{f"{m}@{k}": block[f"{m}@{k}"] for k in (10, 20) for m in ("recall", "ndcg")}})
    out = make_console()
    out.print(table_to_rich(pd.DataFrame(rows), f"{metrics['model']} ({metrics['split']}, "
                                f"{metrics['dataset']})"))
    mem = metrics["memorization_rate"]["@10"]
    hits = metrics["one_hop_hits"]["@10"]
    out.print(f"memorization rate@10 {mem:.3f}; hits@10 {hits['hits']}, on one-hop users "
                  f"{hits['covered_hits']} ({hits['share_of_hits']:.1%}); users without a list: "
                  f"{metrics['n_missing']}")
