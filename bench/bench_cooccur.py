"""Benchmark: collaborative co-occurrence in Cypher (sequences as paths) against a vectorized numpy
anchor and against the old O(n^2)-per-user join, on real data and on synthetic scaling points.

    .venv/bin/python bench/bench_cooccur.py                          # ml-100k, yelp, scaling 1/4/16
    .venv/bin/python bench/bench_cooccur.py --datasets ml-100k --scales 1 4 --no-join

Each point runs in a fresh subprocess (so its peak RSS is its own: after the load, after the path
query, which is what a build holds, and after everything): the dataset is loaded into a new
embedded LadybugDB store the way `iirg build` loads it (users, items, INTERACTED, and the Event
paths: graph.build.load_dataset), then each method runs (best of --repeats; a method stops repeating
once it has taken --max-repeat-s):
  numpy  the near-limit anchor: from the interactions table (factorize, sort by user and position),
         one vectorized pass per distance d = 1..W (no Python loop over pairs), both directions,
         aggregated by sorting one int64 key per pair;
  path   graph/relations/collab.py: `(a:Event)-[:NEXT_EVENT*1..W]->(b:Event)`, one packed int64 per
         path, counted and folded into both directions in numpy (what the build runs);
  join   the old query: every user's INTERACTED edges joined with each other (O(n^2) per user);
  next   NEXT (graph/relations/transitions.py): one NEXT_EVENT step, for comparison.
The three co-occurrence results are checked equal (item, neighbour, count, hop) outside the timing.

Scaling (synthetic, Zipf item popularity over 1,682 items, ml-100k's size at 1x): `users` multiplies
the number of users at a fixed length, `length` the history length at a fixed number of users; each
row's "vs 1x" is its time over the 1x point of its axis, to set against the interactions ratio
(linear time: the same ratio). Targets: path within 2x of numpy on ml-100k and Yelp; linear in
interactions on both axes. Times are wall-clock on a shared 2-core machine: read them as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("IIRG_DATA_DIR", REPO.parent / "shared" / "data"))
DATASETS = {"ml-100k": "ml-100k", "office": "amazon-office", "yelp": "yelp"}
BASE_USERS, BASE_LENGTH, N_ITEMS = 1000, 100, 1682   # 1x: 100k interactions, like ml-100k
COLUMNS = ["item_id", "neighbor_id", "count", "hop"]


def numpy_cooccurrence(interactions: pd.DataFrame, splits: list[str], window: int) -> pd.DataFrame:
    """Co-occurrence within `window` positions, both directions, vectorized (the bench's anchor).

    Rows sorted by (user, pos); for each distance d, rows k and k + d are a pair when they belong to
    one user, both are in `splits` and hold different items. One int64 key per ordered pair; sorted
    by (key, hop), the first row of a key holds its smallest hop.
    """
    users = pd.factorize(interactions["user_id"])[0]
    items, ids = pd.factorize(interactions["item_id"])
    order = np.lexsort((interactions["pos"].to_numpy(), users))
    users, items = users[order], items[order].astype(np.int64)
    keep = interactions["split"].isin(splits).to_numpy()[order]
    n = np.int64(len(ids))
    keys, hops = [], []
    for d in range(1, window + 1):          # W vectorized passes, not a loop over pairs
        pair = (users[d:] == users[:-d]) & keep[d:] & keep[:-d] & (items[d:] != items[:-d])
        a, b = items[:-d][pair], items[d:][pair]
        keys += [a * n + b, b * n + a]
        hops.append(np.full(2 * len(a), d, dtype=np.int64))
    keys, hops = np.concatenate(keys), np.concatenate(hops)
    order = np.lexsort((hops, keys))
    keys, hops = keys[order], hops[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ids = np.asarray(ids, dtype=object)
    return pd.DataFrame({"item_id": ids[keys[starts] // n], "neighbor_id": ids[keys[starts] % n],
                         "count": np.diff(np.r_[starts, len(keys)]), "hop": hops[starts]})


def synthetic_dataset(n_users: int, length: int, seed: int = 0):
    """`n_users` histories of `length` items, Zipf popularity, leave-one-out splits (a canonical Dataset)."""
    from ingest.schema import Dataset, label_splits

    rng = np.random.default_rng(seed)
    total = n_users * length
    pos = np.tile(np.arange(length, dtype=np.int64), n_users)
    items = np.minimum(rng.zipf(1.3, total), N_ITEMS) - 1
    item_ids = np.array([str(k) for k in range(N_ITEMS)], dtype=object)
    inter = pd.DataFrame({"user_id": np.repeat(np.array([f"u{k}" for k in range(n_users)], dtype=object), length),
                          "item_id": item_ids[items], "pos": pos, "ts": pd.array([pd.NA] * total, dtype="Int64"),
                          "rating": np.ones(total), "split": label_splits(np.full(total, length), pos)})
    catalogue = pd.DataFrame({"item_id": item_ids, "title": item_ids, "raw_title": item_ids, "description": "",
                              "categories": [[] for _ in range(N_ITEMS)], "brand": "", "attributes": "{}"})
    return Dataset(name=f"synthetic-{n_users}x{length}", items=catalogue, interactions=inter)


def _timed(fn, repeats: int, max_repeat_s: float):
    """(best seconds, last result) over up to `repeats` calls, fewer once they add up to max_repeat_s."""
    best, spent, result = float("inf"), 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent > max_repeat_s:
            break
    return best, result


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[COLUMNS].astype({"count": np.int64, "hop": np.int64})
    return frame.sort_values(["item_id", "neighbor_id"], ignore_index=True)


def measure(point: str, window: int, repeats: int, max_repeat_s: float, join: bool) -> dict:
    """In a child process: load one point into a fresh store and time each method."""
    sys.path.insert(0, str(REPO))
    from graph import queries as Q
    from graph.build import load_dataset as load_graph
    from graph.relations import collab, transitions
    from graph.store import StoreConfig, open_store
    from ingest import IngestConfig, load_dataset

    if point.startswith("users") or point.startswith("length"):
        scale = int(point.split("x")[1])
        n_users, length = (BASE_USERS * scale, BASE_LENGTH) if point.startswith("users") else \
            (BASE_USERS, BASE_LENGTH * scale)
        dataset = synthetic_dataset(n_users, length)
    else:
        dataset = load_dataset(IngestConfig(dataset=DATASETS[point], data_dir=str(DATA), progress=False))
    splits = ["train"]
    out = {"interactions": len(dataset.interactions), "users": int(dataset.interactions["user_id"].nunique())}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "store").mkdir()
        with open_store(StoreConfig(path=Path(tmp) / "store" / "graph.lbdb")) as store:
            start = time.perf_counter()
            with store.rebuild(Q.SCHEMA_QUERIES) as session:
                load_graph(session, dataset)
            out["load_s"] = time.perf_counter() - start
            out["peak_rss_load_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            # The path first, so the peak RSS after it is the build's own (load + co-occurrence).
            item_ids = dataset.items["item_id"].to_numpy()
            out["path_s"], path = _timed(lambda: collab.read_cooccurrence(store, item_ids, window, splits),
                                         repeats, max_repeat_s)
            one_chunk = {"splits": splits, "lo": 0, "hi": len(dataset.interactions)}   # the build reads in chunks
            out["next_path_s"], _ = _timed(lambda: store.run_columns(transitions.TRANSITIONS_QUERY, one_chunk),
                                           repeats, max_repeat_s)
            out["peak_rss_path_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out["numpy_s"], anchor = _timed(lambda: numpy_cooccurrence(dataset.interactions, splits, window),
                                            repeats, max_repeat_s)
            anchor, path = _canonical(anchor), _canonical(path)
            assert anchor.equals(path), f"{point}: path co-occurrence differs from the numpy anchor"
            if join:
                out["join_s"], old = _timed(lambda: store.run_columns(
                    collab.COOCCURRENCE_JOIN_QUERY, {"splits": splits, "window": window}), repeats, max_repeat_s)
                assert _canonical(old).equals(anchor), f"{point}: the old join differs from the numpy anchor"
    out["pairs"] = len(anchor)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def print_table(results: dict[str, dict], window: int, repeats: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"co-occurrence, window {window} (embedded LadybugDB; best of {repeats})")
    for col in ("point", "interactions", "item pairs", "numpy s", "path s", "path / numpy", "join s", "join / numpy",
                "next (path) s", "interactions vs 1x", "numpy vs 1x", "path vs 1x", "join vs 1x",
                "load s", "peak RSS MB: load", "+ path", "+ numpy, join"):
        table.add_column(col, justify="right")

    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else "-"

    for point, r in results.items():
        base = results.get(point.split(" ")[0] + " x1") if " x" in point else None
        vs = (lambda key: ratio(r.get(key), base.get(key))) if base else (lambda key: "")
        table.add_row(point, f"{r['interactions']:,}", f"{r['pairs']:,}", f"{r['numpy_s']:.3f}", f"{r['path_s']:.3f}",
                      ratio(r["path_s"], r["numpy_s"]), f"{r['join_s']:.3f}" if "join_s" in r else "-",
                      ratio(r.get("join_s"), r["numpy_s"]), f"{r['next_path_s']:.3f}", vs("interactions"),
                      vs("numpy_s"), vs("path_s"), vs("join_s"), f"{r['load_s']:.2f}",
                      f"{r['peak_rss_load_mb']:,.0f}", f"{r['peak_rss_path_mb']:,.0f}" if "peak_rss_path_mb" in r
                      else "-", f"{r['peak_rss_mb']:,.0f}")
    Console(width=250).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["ml-100k", "yelp"], choices=list(DATASETS))
    parser.add_argument("--scales", nargs="*", type=int, default=[1, 4, 16],
                        help="synthetic scaling points (1 is always run as the base); none: real data only")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per method")
    parser.add_argument("--max-repeat-s", type=float, default=20.0,
                        help="stop repeating a method once its runs add up to this")
    parser.add_argument("--no-join", action="store_true", help="skip the old O(n^2) join (slow on long histories)")
    parser.add_argument("--save", type=Path, default=REPO / "bench" / "results" / "cooccur.json")
    parser.add_argument("--show", type=Path, help="print the table of a saved results JSON and stop")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        point, window, repeats, max_repeat_s, join = args.child
        print(json.dumps(measure(point, int(window), int(repeats), float(max_repeat_s), join == "1")))
        return
    if args.show:
        saved = json.loads(args.show.read_text())
        print_table(saved["results"], saved["window"], saved.get("repeats", args.repeats))
        return
    if args.datasets and not DATA.is_dir():
        sys.exit(f"no data at {DATA}: set IIRG_DATA_DIR to the shared data folder")

    scales = sorted({1, *args.scales}) if args.scales else []
    points = [*args.datasets, *[f"users x{s}" for s in scales], *[f"length x{s}" for s in scales]]
    results: dict[str, dict] = {}
    for point in points:
        child = subprocess.run([sys.executable, __file__, "--child", point.replace(" ", ""), str(args.window),
                                str(args.repeats), str(args.max_repeat_s), "0" if args.no_join else "1"],
                               capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if child.returncode:
            sys.exit(f"{point} failed:\n{child.stderr}")
        results[point] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{point}: {results[point]}", file=sys.stderr, flush=True)

    print_table(results, args.window, args.repeats)
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps({"window": args.window, "repeats": args.repeats, "results": results}, indent=2))
    print(f"saved {args.save}")


if __name__ == "__main__":
    main()
