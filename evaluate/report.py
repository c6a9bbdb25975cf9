"""`iirg report`: per-segment tables, memorization and gain decomposition for every model of a run.

    iirg report --run runs/ml-100k [--split test] [--k 10] [--compare sasrec popularity]

Every model folder with a recommendations_<split>.parquet (baselines and LLM runs alike) is
re-scored from its saved lists with the shared evaluator against the run's current segments, so all
rows of a table come from the same code and the same labels. Writes into runs/<name>/report/:
    report_<split>.json              everything below, plus warnings
    segments_<split>.csv             model x segment: n_users, share, Recall@K, NDCG@K for every K
    summary_<split>.csv              model: overall and covered/uncovered metrics at --k,
                                     memorization rate, one-hop hits
    decomposition_<split>.csv        pair x metric x segment: share, delta, contribution (95% CI)
    token_level_<split>.csv          when the run has semantic IDs (`iirg sid`): model x group (all,
                                     uncovered = not one_hop) x token level: n_users, Recall@K, hits
    segments_<split>.png, memorization_<split>.png, decomposition_<A>_vs_<B>_<split>.png
Pairs: --compare A B, else every model against popularity (when it was evaluated).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from common.errors import ConfigError
from common.files import atomic_file, write_json
from evaluate.cases import build_cases, next_keys
from evaluate.errors import EvaluationError
from evaluate.lists import prepare_lists
from evaluate.metrics import KS, compare_gains, compute_metrics, gains, hit_ranks
from evaluate.segments import SEGMENTS, segments_for
from graph.export import load_export
from graph.rundir import RunPaths, git_commit


@dataclass
class ReportConfig:
    """What `iirg report` shows."""

    split: Literal["valid", "test"] = field(default="test", metadata={"help": "split to report"})
    k: int = field(default=10, metadata={"help": "cut-off of the printed tables and decomposition"})
    compare: tuple[str, str] | None = field(default=None, metadata={
        "help": "decompose A - B; default every model against `reference`"})
    reference: str = field(default="popularity", metadata={"help": "default comparison baseline"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the CIs"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})

    def __post_init__(self):
        if self.k not in KS:
            raise ConfigError(f"k must be one of {KS}")
        if self.n_boot < 10:
            raise ConfigError("n_boot must be >= 10")


def model_names(run: RunPaths, split: str) -> list[str]:
    if not run.models.is_dir():
        return []
    return sorted(p.name for p in run.models.iterdir()
                  if (p / f"recommendations_{split}.parquet").exists())


def _model_state(run: RunPaths, model: str, split: str, cases) -> dict:
    folder = run.model(model)
    metrics_path = folder / f"metrics_{split}.json"
    saved = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    recs = pd.read_parquet(folder / f"recommendations_{split}.parquet")
    # The saved lists are already history-filtered and re-ranked: take them as they are.
    lists = prepare_lists(cases, recs, keep_history=True, where=f"{folder}/recommendations_{split}.parquet")
    mask = np.ones(cases.n_users, dtype=bool)
    users_path = folder / f"users_{split}.parquet"
    if users_path.exists():
        rows = cases.rows_of(pd.read_parquet(users_path)["user_id"].astype(str))
        if (rows < 0).any():
            raise EvaluationError(f"{users_path}: users not evaluated in split {split!r}")
        mask = np.zeros(cases.n_users, dtype=bool)
        mask[rows] = True
    return {"lists": lists, "mask": mask, "keep_history": saved.get("keep_history"),
            "saved_overall": saved.get("overall")}


def make_report(run: RunPaths, cfg: ReportConfig) -> dict:
    """Compute and write the report (see module docstring); returns the JSON-able dict."""
    export = load_export(run.export)
    split = cfg.split
    models = model_names(run, split)
    if not models:
        raise EvaluationError(f"no model has {split} recommendations in {run.models}; "
                              f"run `iirg baseline <name> --run {run.root}` first")
    cases = build_cases(export, split)
    labels = segments_for(run, export, split, cases=cases)
    transitions = next_keys(export, cases.n_items)
    states = {m: _model_state(run, m, split, cases) for m in models}
    warnings = []
    keeps = {m: s["keep_history"] for m, s in states.items()}
    if len(set(keeps.values())) > 1:
        warnings.append(f"models differ in keep_history ({keeps}): their scores are not comparable")
    metrics, segment_rows, summary_rows = {}, [], []
    for m, state in states.items():
        res = compute_metrics(cases, state["lists"], labels, transitions, evaluated=state["mask"])
        metrics[m] = res
        if state["saved_overall"] and any(abs(state["saved_overall"][key] - res["overall"][key]) > 1e-9
                                          for key in res["overall"]):
            warnings.append(f"{m}: metrics_{split}.json differs from a re-score with the current "
                            f"segments/export (re-run the model if the export changed)")
        for seg in (*SEGMENTS, "all"):
            block = res["segments"][seg] if seg != "all" else {"n_users": res["n_users"], "share": 1.0,
                                                                 **res["overall"]}
            segment_rows.append({"model": m, "segment": seg, **block})
        k = cfg.k
        summary_rows.append({
            "model": m, "n_users": res["n_users"], "n_missing": res["n_missing"],
            "keep_history": state["keep_history"],
            f"recall@{k}": res["overall"][f"recall@{k}"], f"ndcg@{k}": res["overall"][f"ndcg@{k}"],
            f"covered_recall@{k}": res["groups"]["covered"][f"recall@{k}"],
            f"uncovered_recall@{k}": res["groups"]["uncovered"][f"recall@{k}"],
            f"memorization@{k}": res["memorization_rate"][f"@{k}"],
            f"one_hop_hits@{k}": res["one_hop_hits"][f"@{k}"]["covered_hits"],
            f"hits@{k}": res["one_hop_hits"][f"@{k}"]["hits"],
            f"one_hop_share_of_hits@{k}": res["one_hop_hits"][f"@{k}"]["share_of_hits"],
        })
    pairs = _pairs(models, cfg)
    decompositions, decomposition_rows = {}, []
    seg = labels["segment"].to_numpy()
    for a, b in pairs:
        both = states[a]["mask"] & states[b]["mask"]
        ra, rb = hit_ranks(cases, states[a]["lists"]), hit_ranks(cases, states[b]["lists"])
        entry = {}
        for metric, idx in (("recall", 0), ("ndcg", 1)):
            ga, gb = gains(ra, cfg.k)[idx][both], gains(rb, cfg.k)[idx][both]
            res = compare_gains(ga, gb, seg[both], SEGMENTS, n_boot=cfg.n_boot, seed=cfg.seed)
            entry[f"{metric}@{cfg.k}"] = res
            for name, block in res["segments"].items():
                decomposition_rows.append({
                    "a": a, "b": b, "metric": f"{metric}@{cfg.k}", "segment": name,
                    "n_users": block["n_users"], "share": block["share"], "delta": block["delta"],
                    "delta_ci_low": block["delta_ci"][0], "delta_ci_high": block["delta_ci"][1],
                    "contribution": block["contribution"],
                    "contribution_ci_low": block["contribution_ci"][0],
                    "contribution_ci_high": block["contribution_ci"][1]})
            decomposition_rows.append({
                "a": a, "b": b, "metric": f"{metric}@{cfg.k}", "segment": "all",
                "n_users": res["n_users"], "share": 1.0, "delta": res["delta"],
                "delta_ci_low": res["delta_ci"][0], "delta_ci_high": res["delta_ci"][1],
                "contribution": res["delta"], "contribution_ci_low": res["delta_ci"][0],
                "contribution_ci_high": res["delta_ci"][1],
                "one_hop_share_of_gain": res["covered_share_of_gain"]})
        decompositions[f"{a} vs {b}"] = entry
    report = {"run": str(run.root), "dataset": export.manifest.get("dataset"), "split": split,
              "config": {**asdict(cfg), "compare": list(cfg.compare) if cfg.compare else None},
              "models": models, "segment_counts": labels["segment"].value_counts()
              .reindex(list(SEGMENTS), fill_value=0).astype(int).to_dict(),
              "metrics": metrics, "decompositions": decompositions, "warnings": warnings,
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit()}
    tables = {"segments": pd.DataFrame(segment_rows), "summary": pd.DataFrame(summary_rows),
              "decomposition": pd.DataFrame(decomposition_rows)}
    token = token_level_table(export, cases, labels, states, split, cfg.k)
    if token is not None:
        tables["token_level"] = token
        report["token_level_note"] = (
            "token level = how many leading SID codes of (last item -> target) occur as a training "
            "transition between items with those prefixes (0 = not even the first code; the full SID "
            "= the item, i.e. one_hop). Hits of 'uncovered' users at token level >= 1 can still be "
            "memorized transitions between code prefixes.")
    report["files"] = _write(run.report, split, report, tables, cfg)
    report["tables"] = tables
    return report


def one_hop_vs_rest(run: RunPaths, a: str, b: str, cfg: ReportConfig) -> dict:
    """A - B on the users both models ranked, split into one_hop and the rest (every other segment):
    `compare_gains` per metric at cfg.k, paired bootstrap CIs (the summary `iirg experiment` writes)."""
    export = load_export(run.export)
    cases = build_cases(export, cfg.split)
    labels = segments_for(run, export, cfg.split, cases=cases)
    state_a, state_b = (_model_state(run, m, cfg.split, cases) for m in (a, b))
    both = state_a["mask"] & state_b["mask"]
    group = np.where(labels["one_hop"].to_numpy(dtype=bool), "one_hop", "rest")[both]
    ra, rb = hit_ranks(cases, state_a["lists"]), hit_ranks(cases, state_b["lists"])
    out = {}
    for metric, idx in (("recall", 0), ("ndcg", 1)):
        out[f"{metric}@{cfg.k}"] = compare_gains(gains(ra, cfg.k)[idx][both], gains(rb, cfg.k)[idx][both],
                                                 group, ("one_hop", "rest"), n_boot=cfg.n_boot, seed=cfg.seed)
    return out


def token_level_table(export, cases, labels: pd.DataFrame, states: dict, split: str,
                      k: int) -> pd.DataFrame | None:
    """Recall@k and hits per token-level coverage (`evaluate.token_level`), for all and for uncovered users.

    None when the run has no semantic IDs. Token levels are a property of the user (its last item
    and target), so every model is split the same way and TIGER's row reads next to SASRec's.
    """
    from evaluate.token_level import SIDError, load_sids, token_level_labels

    try:
        codes, _ = load_sids(export)
    except SIDError:
        return None
    token = token_level_labels(export, codes, split)
    level = token.set_index("user_id")["token_level"].reindex(cases.user_ids).to_numpy()
    one_hop = labels["one_hop"].to_numpy(dtype=bool)
    rows = []
    for m, state in states.items():
        hit = gains(hit_ranks(cases, state["lists"]), k)[0] > 0
        evaluated = state["mask"]
        for group, in_group in (("all", evaluated), ("uncovered", evaluated & ~one_hop)):
            total_hits = int(hit[in_group].sum())
            for lv in range(codes.shape[1] + 1):
                sel = in_group & (level == lv)
                rows.append({"model": m, "group": group, "token_level": lv, "n_users": int(sel.sum()),
                             f"recall@{k}": float(hit[sel].mean()) if sel.any() else float("nan"),
                             f"hits@{k}": int(hit[sel].sum()),
                             "share_of_group_hits": hit[sel].sum() / total_hits if total_hits else float("nan")})
    return pd.DataFrame(rows)


def _pairs(models: list[str], cfg: ReportConfig) -> list[tuple[str, str]]:
    if cfg.compare:
        missing = [m for m in cfg.compare if m not in models]
        if missing:
            raise EvaluationError(f"--compare: no {cfg.split} recommendations for {missing}; "
                                  f"models with results: {models}")
        return [tuple(cfg.compare)]
    if cfg.reference not in models:
        return []
    return [(m, cfg.reference) for m in models if m != cfg.reference]


def _write(folder: Path, split: str, report: dict, tables: dict[str, pd.DataFrame],
           cfg: ReportConfig) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        path = folder / f"{name}_{split}.csv"
        with atomic_file(path) as tmp:
            table.to_csv(tmp, index=False)
        written.append(path.name)
    written += _plots(folder, split, tables, cfg)
    path = folder / f"report_{split}.json"
    write_json(path, {**report, "files": written}, default=float)
    written.append(path.name)
    return written


def _plots(folder: Path, split: str, tables: dict[str, pd.DataFrame], cfg: ReportConfig) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name: str) -> str:
        """Write the figure under its final name atomically (a reader never sees half a PNG)."""
        fig.tight_layout()
        with atomic_file(folder / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        return name

    k, written = cfg.k, []
    seg = tables["segments"]
    models = list(dict.fromkeys(seg["model"]))
    order = [*SEGMENTS, "all"]
    counts = seg.drop_duplicates("segment").set_index("segment")["n_users"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(order))
    for ax, metric in zip(axes, (f"recall@{k}", f"ndcg@{k}")):
        for i, m in enumerate(models):
            vals = seg[seg["model"] == m].set_index("segment").reindex(order)[metric]
            ax.bar(x + (i - (len(models) - 1) / 2) * width, vals.to_numpy(), width, label=m)
        ax.set_xticks(x, [f"{s}\n(n={counts.get(s, 0)})" for s in order], fontsize=8)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per memorization segment ({split})")
    axes[0].legend(fontsize=8)
    written.append(save(fig, f"segments_{split}.png"))

    summ = tables["summary"]
    fig, ax = plt.subplots(figsize=(7, 4))
    xm = np.arange(len(summ))
    ax.bar(xm - 0.2, summ[f"memorization@{k}"], 0.4, label=f"memorization rate@{k}")
    ax.bar(xm + 0.2, summ[f"one_hop_share_of_hits@{k}"], 0.4, label=f"share of hits@{k} on one-hop users")
    ax.set_xticks(xm, summ["model"])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"How much each model memorizes ({split})")
    written.append(save(fig, f"memorization_{split}.png"))

    dec = tables["decomposition"]
    if len(dec):
        for (a, b), group in dec.groupby(["a", "b"], sort=False):
            fig, axes = plt.subplots(1, 2, figsize=(12, 4))
            for ax, (metric, g) in zip(axes, group.groupby("metric", sort=False)):
                g = g.set_index("segment").reindex(order)
                err = np.abs(np.vstack([g["contribution"] - g["contribution_ci_low"],
                                        g["contribution_ci_high"] - g["contribution"]]))
                ax.bar(x, g["contribution"], yerr=np.nan_to_num(err), capsize=3,
                       color=["C3" if s == "all" else "C0" for s in order])
                ax.axhline(0, color="black", linewidth=0.6)
                ax.set_xticks(x, order, fontsize=8)
                ax.set_title(f"{metric}: {a} - {b}, contribution per segment (95% CI)", fontsize=9)
            written.append(save(fig, f"decomposition_{a}_vs_{b}_{split}.png"))
    return written
