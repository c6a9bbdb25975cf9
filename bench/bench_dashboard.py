"""Server time of the dashboard's graph work per page view, on the embedded store (no Streamlit).

    python bench/bench_dashboard.py --run runs/yelp --run runs/ml-100k --users 300 [--pages 60]

Times exactly what the pages run, uncached (`dashboard.data.user_view`, `item_view`,
`search_titles`), on a read-only store, for a seeded sample of users (stratified over segments when
`iirg analyze` has labelled them) and of items. The first `--warmup` views are not counted (they load
the database pages from disk). Prints per-view and per-query latency tables; the target is < 300 ms
per user view.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from dashboard import data
from graph.rundir import RunPaths
from graph.store import StoreConfig, open_store

TARGET_MS = 300.0


def sample_users(store, n: int, rng: random.Random) -> list[str]:
    segments = data.segment_counts(store)
    if segments.empty:
        total = data.graph_counts(store)["users"]
        return [data.random_user(store, None, total, rng) for _ in range(n)]
    users = []
    per = max(1, n // len(segments))
    for row in segments.itertuples():
        users += [data.random_user(store, row.segment, row.n_users, rng) for _ in range(min(per, row.n_users))]
    return users


def percentiles(values_ms: list[float]) -> dict[str, float]:
    a = np.asarray(values_ms)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(a.max()),
            "mean": float(a.mean())}


def bench_run(run: RunPaths, n_users: int, n_items: int, warmup: int, seed: int, k: int) -> dict:
    rng = random.Random(seed)
    with open_store(StoreConfig(path=run.store), read_only=True) as store:
        counts = data.graph_counts(store)
        users = sample_users(store, n_users + warmup, rng)
        views, per_query, segments, hist_len = [], {}, [], []
        for i, user_id in enumerate(users):
            start = time.perf_counter()
            view = data.user_view(store, user_id, k=k, run_root=run.root)   # as the page: + models/ lists
            elapsed = (time.perf_counter() - start) * 1000
            if i < warmup:
                continue
            views.append(elapsed)
            segments.append(view.segment or "-")
            hist_len.append(len(view.history))
            for name, seconds in view.seconds.items():
                per_query.setdefault(name, []).append(seconds * 1000)
        items = store.run_df("MATCH (i:Item) RETURN i.id AS item_id ORDER BY i.popularity DESC LIMIT $n",
                             {"n": 2000})["item_id"].tolist()
        item_ms = []
        for item_id in rng.sample(items, min(n_items, len(items))):
            start = time.perf_counter()
            data.item_view(store, item_id)
            item_ms.append((time.perf_counter() - start) * 1000)
        search_ms = []
        for text in ["the", "cafe", "pizza", "star", "bar", "xyz-not-there"]:
            start = time.perf_counter()
            data.search_titles(store, text)
            search_ms.append((time.perf_counter() - start) * 1000)
    by_segment = pd.DataFrame({"segment": segments, "ms": views}).groupby("segment")["ms"].median().to_dict()
    return {"counts": counts, "user": percentiles(views), "item": percentiles(item_ms),
            "search": percentiles(search_ms), "per_query": {k: percentiles(v) for k, v in per_query.items()},
            "n_views": len(views), "by_segment": by_segment, "history": percentiles(hist_len)}


def bench_page(run: RunPaths, n_users: int, seed: int) -> dict:
    """Whole user-explorer script runs (queries + DOT + Streamlit elements) through AppTest, uncached
    users; AppTest's own overhead is included, the browser's rendering is not."""
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["IIRG_DASHBOARD_RUN"] = str(run.root)
    app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    at = AppTest.from_file(str(app), default_timeout=120).run()
    at.switch_page("views/users.py").run()
    with open_store(StoreConfig(path=run.store), read_only=True) as store:
        users = sample_users(store, n_users + 3, random.Random(seed + 1))
    times = []
    for i, user_id in enumerate(users):
        start = time.perf_counter()
        at.text_input(key="user_id").set_value(user_id).run()
        if i >= 3:
            times.append((time.perf_counter() - start) * 1000)
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="run folder (repeatable)")
    parser.add_argument("--users", type=int, default=300, help="user views to time per run")
    parser.add_argument("--items", type=int, default=100, help="item views to time per run")
    parser.add_argument("--warmup", type=int, default=10, help="uncounted first user views")
    parser.add_argument("--k", type=int, default=10, help="top-K per model in the user view")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pages", type=int, default=0,
                        help="also time this many whole user-explorer page runs through AppTest")
    args = parser.parse_args()
    console = Console(width=170)
    summary = Table(title=f"dashboard server time per view, embedded store (target < {TARGET_MS:.0f} ms per user view)")
    for col in ("run", "users / items / NEXT", "history len (median / max)", "user view median", "p95", "max",
                "item view median", "p95", "title search median"):
        summary.add_column(col, justify="right")
    details = []
    for run_dir in args.run:
        run = RunPaths.of(Path(run_dir))
        r = bench_run(run, args.users, args.items, args.warmup, args.seed, args.k)
        c = r["counts"]
        summary.add_row(run.root.name, f"{c['users']:,} / {c['items']:,} / {c['NEXT']:,}",
                        f"{r['history']['median']:.0f} / {r['history']['max']:.0f}",
                        f"{r['user']['median']:.1f} ms", f"{r['user']['p95']:.1f} ms", f"{r['user']['max']:.1f} ms",
                        f"{r['item']['median']:.1f} ms", f"{r['item']['p95']:.1f} ms", f"{r['search']['median']:.1f} ms")
        details.append((run, r))
    console.print(summary)
    for run, r in details:
        name = run.root.name
        table = Table(title=f"{name}: per query in a user view ({r['n_views']} views)")
        for col in ("query", "median ms", "p95 ms", "max ms"):
            table.add_column(col, justify="right")
        for query, p in r["per_query"].items():
            table.add_row(query, f"{p['median']:.1f}", f"{p['p95']:.1f}", f"{p['max']:.1f}")
        console.print(table)
        if args.pages:
            p = bench_page(run, args.pages, args.seed)
            console.print(f"{name}: whole user-explorer page (AppTest, uncached user): median {p['median']:.0f} ms, "
                          f"p95 {p['p95']:.0f} ms, max {p['max']:.0f} ms")
        if len(r["by_segment"]) > 1:
            console.print("median user view by segment: " + ", ".join(
                f"{data.segment_label(s)} {ms:.0f} ms" for s, ms in r["by_segment"].items()))


if __name__ == "__main__":
    main()
