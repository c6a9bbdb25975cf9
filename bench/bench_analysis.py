"""Benchmark of the memorization analysis on real runs (after `iirg build`): prints a table.

    .venv/bin/python bench/bench_analysis.py --runs runs/ml-100k runs/amazon-office runs/yelp
    .venv/bin/python bench/bench_analysis.py --runs runs/ml-100k --train-sasrec 3

Part 1 (target: under 10 s on Yelp, 30k users): label every test user (hop distances, any-item,
semantic) and evaluate a top-20 list per user with the shared evaluator (validation, history
removal, per-segment metrics, memorization, files written). The lists themselves (popularity) are
made before the clock starts: they are the model's work, not the evaluator's.

Part 2: SASRec cost per dataset, from the run's `iirg baseline sasrec` record (models/sasrec/
info.json), or measured here with --train-sasrec N (N epochs in a fresh process, so peak memory is
that training's own): parameters, epochs, seconds per epoch, peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_S = 10.0


def bench_labels_and_eval(run_dir: Path) -> dict:
    from evaluate.cases import build_cases
    from evaluate.record import record_model
    from evaluate.segments import SegmentConfig, label_users, save_segments
    from graph.export import load_export
    from graph.rundir import RunPaths
    from train.baselines import popularity

    export = load_export(RunPaths.of(run_dir).export)
    cases = build_cases(export, "test")
    lists = popularity.recommend(export, cases, k=20)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = RunPaths.of(tmp)
        t0 = time.perf_counter()
        cases = build_cases(export, "test")
        labels = label_users(export, "test", cases=cases)
        save_segments(scratch, "test", labels, export, SegmentConfig())
        t1 = time.perf_counter()
        metrics = record_model(scratch, "popularity", lists, export=export)
        t2 = time.perf_counter()
    return {"dataset": export.manifest.get("dataset"), "users": cases.n_users, "items": cases.n_items,
            "next_edges": len(export.next), "label_s": t1 - t0, "evaluate_s": t2 - t1,
            "total_s": t2 - t0, "recall@10": metrics["overall"]["recall@10"]}


def sasrec_recorded(run_dir: Path) -> dict | None:
    info = run_dir / "models" / "sasrec" / "info.json"
    if not info.exists():
        return None
    cfg = json.loads(info.read_text())["splits"]["test"]["config"]
    return {"params": cfg["params"], "epochs": cfg["epochs"], "best_epoch": cfg["best_epoch"],
            "s_per_epoch": cfg["seconds_per_epoch"], "peak_rss_mb": cfg["peak_rss_mb"],
            "stopped": cfg.get("stopped", ""), "source": "iirg baseline sasrec"}


def sasrec_measured(run_dir: Path, epochs: int) -> dict:
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from graph.export import load_export
from train.baselines.sasrec import SASRecConfig, train
export = load_export({str(run_dir / 'export')!r})
r = train(export, SASRecConfig(max_epochs={epochs}, patience={epochs}), progress=False, log=lambda _: None)
print(json.dumps(r.summary()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    s = json.loads(out.stdout.strip().splitlines()[-1])
    return {"params": s["params"], "epochs": s["epochs"], "best_epoch": s["best_epoch"],
            "s_per_epoch": s["seconds_per_epoch"], "peak_rss_mb": s["peak_rss_mb"],
            "stopped": s["stopped"], "source": f"measured, {epochs} epochs"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run folders (built)")
    parser.add_argument("--train-sasrec", type=int, default=0, metavar="N",
                        help="measure SASRec over N epochs instead of reading the recorded run")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    table = Table(title=f"label all test users + evaluate a top-20 list each (target < {TARGET_S:.0f} s)")
    for col in ("dataset", "users", "items", "NEXT edges", "label s", "evaluate s", "total s", "ok"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    sas = Table(title="SASRec on CPU (full cross-entropy)")
    for col in ("dataset", "params", "epochs", "best epoch", "s/epoch", "peak RSS MB", "stopped", "source"):
        sas.add_column(col, justify="left" if col in ("dataset", "source", "stopped") else "right")
    for run_dir in args.runs:
        r = bench_labels_and_eval(run_dir)
        table.add_row(r["dataset"], f"{r['users']:,}", f"{r['items']:,}", f"{r['next_edges']:,}",
                      f"{r['label_s']:.2f}", f"{r['evaluate_s']:.2f}", f"{r['total_s']:.2f}",
                      "yes" if r["total_s"] < TARGET_S else "NO")
        s = sasrec_measured(run_dir, args.train_sasrec) if args.train_sasrec else sasrec_recorded(run_dir)
        if s:
            sas.add_row(r["dataset"], f"{s['params']:,}", str(s["epochs"]), str(s["best_epoch"]),
                        f"{s['s_per_epoch']:.1f}", f"{s['peak_rss_mb']:.0f}", s["stopped"], s["source"])
    console.print(table)
    console.print(sas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
