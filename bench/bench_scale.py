"""Benchmark: the embedded build of a synthetic MovieLens-20M-shaped dataset, at a scale factor.

    .venv/bin/python bench/bench_scale.py                          # 0.05x and 0.2x (1M, 4M)
    .venv/bin/python bench/bench_scale.py --scales 0.05 0.2 1 --reference bench/results/scale.json

Target (issue 12, 2-core machine): the 1x set (138k users, 27k items, 20M interactions) builds on
the embedded store in under 10 minutes and under 8 GB peak RSS, the embedding forward passes
excluded, with progress bars throughout.

The dataset (`synthetic_movielens`) is made directly as a canonical `Dataset`, deterministic by
seed: ml-20m's 27,278 movies at every scale (so one embedding cache serves all scales), users scaled,
sequence lengths log-normal clipped to >= 20 like MovieLens' own filter (mean ~144, long tail up to
~9k), item popularity Zipf-Mandelbrot (the head as flat as ml-20m's: the top movie ~0.3% of
ratings), increasing timestamps per user. Items are drawn with replacement, so a user can meet an
item twice (a few per cent of positions, like re-watches; MovieLens itself has none).

"Embedding excluded": each item text gets a random-but-fixed unit vector written into the build's
embedding cache (graph.semantic.EmbeddingCache, keyed by the same model name and text hash) before
the build, so the build's `embed` stage reads the cache and runs no sentence-transformer; the build
report's `embedding.embedded` must be 0 (checked).

Each scale is built by `build_run` into a temporary run folder in a child process, under a watchdog:
the parent samples the child's RSS (VmRSS, children included) every 0.2 s and kills it past
`--rss-limit-gb` (default 9), and refuses to start a scale when less than `--min-free-gb` is
available. The child records seconds per stage and the peak RSS reached by the end of each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from report_table import add_ratio_rows, save_results  # bench/, the script's own folder

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# MovieLens-20M: 138,493 users, 27,278 movies (26,744 rated), 20,000,263 ratings, >= 20 per user.
ML20M_USERS = 138_493
ML20M_ITEMS = 27_278
ML20M_INTERACTIONS = 20_000_263
MIN_LENGTH = 20
MAX_LENGTH = 9_254        # ml-20m's longest user
GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")


def _lengths(rng: np.random.Generator, n_users: int, total: int) -> np.ndarray:
    """Log-normal lengths clipped to MIN_LENGTH..MAX_LENGTH, rescaled so they sum to `total` exactly."""
    raw = rng.lognormal(mean=4.2, sigma=1.1, size=n_users)
    lengths = np.clip(raw * total / raw.sum(), MIN_LENGTH, MAX_LENGTH)
    for _ in range(20):   # clipping moves the sum: rescale the unclipped part until it settles
        free = (lengths > MIN_LENGTH) & (lengths < MAX_LENGTH)
        lengths[free] *= (total - lengths[~free].sum()) / lengths[free].sum()
        lengths = np.clip(lengths, MIN_LENGTH, MAX_LENGTH)
    lengths = np.floor(lengths).astype(np.int64)
    # The rounding remainder goes one each to the longest users (still >= MIN_LENGTH everywhere).
    short = total - int(lengths.sum())
    lengths[np.argsort(-lengths, kind="stable")[:abs(short)]] += np.sign(short)
    return lengths


def synthetic_movielens(scale: float = 1.0, seed: int = 0):
    """A canonical `Dataset` shaped like ml-20m at `scale` (1.0: 138k users, 20M interactions)."""
    import pandas as pd
    import pyarrow as pa

    sys.path.insert(0, str(REPO))
    from ingest.schema import Dataset

    rng = np.random.default_rng(seed)
    n_users = max(1, round(ML20M_USERS * scale))
    total = max(n_users * MIN_LENGTH, round(ML20M_INTERACTIONS * scale))
    lengths = _lengths(rng, n_users, total)

    # Zipf-Mandelbrot popularity p(r) ~ 1 / (r + 40)^1.1 over a random permutation of the catalogue.
    ranks = np.arange(1, ML20M_ITEMS + 1, dtype=np.float64)
    weights = 1.0 / (ranks + 40.0) ** 1.1
    cdf = np.cumsum(weights / weights.sum())
    by_rank = rng.permutation(ML20M_ITEMS)
    items = by_rank[np.minimum(np.searchsorted(cdf, rng.random(total)), ML20M_ITEMS - 1)]

    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    # 1995..2015 start, then gaps of ~a day on average: increasing within each user.
    first = rng.integers(788_918_400, 1_420_070_400, size=n_users)
    gaps = rng.exponential(86_400.0, size=total).astype(np.int64) + 1
    gaps[starts] = 0
    ts = np.repeat(first, lengths) + (np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts], lengths))

    # String columns built in Arrow (a take from the distinct ids), never as Python objects: 20M
    # short-lived str objects leave GBs of fragmented heap that would count as the build's memory.
    user_ids = pa.array([str(u + 1) for u in range(n_users)])
    item_ids = pa.array([str(i + 1) for i in range(ML20M_ITEMS)])
    split_code = np.zeros(total, dtype=np.int8)                  # "train"
    split_code[pos == np.repeat(lengths, lengths) - 2] = 1       # "valid"
    split_code[pos == np.repeat(lengths, lengths) - 1] = 2       # "test": label_splits' rule
    interactions = pa.table({"user_id": user_ids.take(pa.array(users)), "item_id": item_ids.take(pa.array(items)),
                             "split": pa.array(["train", "valid", "test"]).take(pa.array(split_code))}).to_pandas()
    del users, items, split_code
    interactions.insert(2, "pos", pos)
    interactions.insert(3, "ts", pd.array(ts, dtype="Int64"))
    interactions.insert(4, "rating", pd.array(rng.integers(1, 11, size=total) / 2.0, dtype="Float64"))
    item_ids = item_ids.to_pylist()
    genre_rng = np.random.default_rng(seed + 1)
    catalogue = pd.DataFrame({
        "item_id": item_ids,
        "title": [f"Synthetic Movie {i + 1} ({1920 + i % 95})" for i in range(ML20M_ITEMS)],
        "description": "", "brand": "", "attributes": "{}"})
    catalogue.insert(2, "raw_title", catalogue["title"])
    catalogue.insert(4, "categories", [sorted(genre_rng.choice(GENRES, size=1 + i % 3, replace=False).tolist())
                                       for i in range(ML20M_ITEMS)])
    return Dataset(name=f"synthetic-ml20m-{scale:g}x", items=catalogue, interactions=interactions,
                   source={"format": "synthetic", "options": {"scale": scale, "seed": seed}})


def seed_embedding_cache(dataset, cache_dir: Path, model: str, description_chars: int, seed: int = 0) -> int:
    """Random-but-fixed unit vectors (384-d, like all-MiniLM-L6-v2) for every item text, written into
    the embedding cache the build reads: the build then runs no forward pass. Returns vectors written."""
    from graph.semantic import EmbeddingCache, item_texts

    cache = EmbeddingCache(cache_dir, model)
    keys = [EmbeddingCache.key(t) for t in item_texts(dataset.items, description_chars)]
    missing = [k for k in keys if cache.get(k) is None]
    if missing:
        vectors = np.random.default_rng(seed).standard_normal((len(missing), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cache.put_many(missing, vectors)
        cache.save()
    return len(missing)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB), from /proc."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def measure(scale: float, seed: int, work: str) -> dict:
    """Runs in a child process: generate, seed the embedding cache, build_run with progress bars."""
    sys.path.insert(0, str(REPO))
    from graph.build import build_run
    from graph.config import GraphConfig
    from graph.rundir import RunPaths
    from graph.store import StoreConfig

    out: dict = {}
    start = time.perf_counter()
    dataset = synthetic_movielens(scale, seed)
    out["generate_s"] = time.perf_counter() - start
    out.update({"interactions": len(dataset.interactions), "users": int(dataset.interactions["user_id"].nunique()),
                "items": len(dataset.items)})
    config = GraphConfig(cache_dir=Path(work) / "cache")
    seed_embedding_cache(dataset, config.cache_dir, config.embed_model, config.description_chars)
    out["rss_before_build_mb"] = rss_mb(os.getpid())
    run = RunPaths.of(Path(work) / f"run-{scale:g}")
    start = time.perf_counter()
    _, report = build_run(run, dataset, StoreConfig(path=run.store), config, progress=True)
    out["build_run_s"] = time.perf_counter() - start
    if report.embedding is not None and report.embedding.embedded:
        raise SystemExit(f"the build embedded {report.embedding.embedded} texts: the cache was not used")
    out["stages_s"] = report.seconds
    out["stage_peak_rss_mb"] = report.peak_rss_mb
    out["counts"] = report.counts
    # Everything build_run does besides the stages: dataset save + checksum, export, commit.
    out["stages_s"]["save+export"] = out["build_run_s"] - sum(report.seconds.values())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["interactions_per_s"] = out["interactions"] / out["build_run_s"]
    return out


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def run_child(scale: float, seed: int, rss_limit_gb: float) -> dict:
    """One scale in a child process under the RSS watchdog; its peak RSS as the parent saw it too."""
    with tempfile.TemporaryDirectory(prefix="iirg-scale-") as work:
        child = subprocess.Popen([sys.executable, __file__, "--child", str(scale), str(seed), work],
                                 stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
        peak, killed = 0.0, []

        def watch() -> None:
            nonlocal peak
            while child.poll() is None:
                now = rss_mb(child.pid)
                peak = max(peak, now)
                if now > rss_limit_gb * 1024:
                    killed.append(now)
                    child.kill()
                    return
                time.sleep(0.2)

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        stdout, _ = child.communicate()
        watchdog.join()
        if killed:
            return {"killed_at_rss_mb": killed[0], "watched_peak_rss_mb": peak}
        if child.returncode != 0:
            raise SystemExit(f"scale {scale:g}: child failed (exit {child.returncode})")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["watched_peak_rss_mb"] = peak
        return result


STAGES = ("embed", "load", "popularity", "next", "semantic", "cooccur", "backfill", "save+export")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", type=float, default=[0.05, 0.2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-limit-gb", type=float, default=9.0, help="watchdog: kill the build past this RSS")
    parser.add_argument("--min-free-gb", type=float, default=12.0, help="refuse a scale with less memory available")
    parser.add_argument("--reference", type=Path, help="earlier results JSON to compare with (ratio columns)")
    parser.add_argument("--save", type=Path, default=REPO / "bench" / "results" / "scale.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(float(args.child[0]), int(args.child[1]), args.child[2])))
        return

    results: dict[str, dict] = {}
    for scale in args.scales:
        free = available_gb()
        if free < args.min_free_gb:
            print(f"scale {scale:g}: skipped, {free:.1f} GB available < {args.min_free_gb:g} GB", file=sys.stderr)
            continue
        results[f"{scale:g}x"] = run_child(scale, args.seed, args.rss_limit_gb)
    before = json.loads(args.reference.read_text()) if args.reference and args.reference.exists() else {}

    from rich.console import Console
    from rich.table import Table

    names = list(results)
    table = Table(title="iirg build at scale (synthetic ml-20m shape, embedded LadybugDB, cached embeddings)")
    for col in ("metric", *names):
        table.add_column(col, justify="right")
    rows = [("interactions", "interactions", "{:,.0f}"), ("users", "users", "{:,.0f}"),
            *[(f"stage {s} s", ("stages_s", s), "{:.1f}") for s in STAGES],
            *[(f"peak RSS after {s} MB", ("stage_peak_rss_mb", s), "{:,.0f}") for s in STAGES[:-1]],
            ("build_run total s", "build_run_s", "{:.1f}"),
            ("interactions/s", "interactions_per_s", "{:,.0f}"),
            ("peak RSS MB (child)", "peak_rss_mb", "{:,.0f}"),
            ("peak RSS MB (watchdog)", "watched_peak_rss_mb", "{:,.0f}"),
            ("RSS before build MB (dataset)", "rss_before_build_mb", "{:,.0f}"),
            ("total / 600 s target", ("ratio", "time"), "{:.2f}"),
            ("peak / 8 GB target", ("ratio", "rss"), "{:.2f}"),
            ("killed by watchdog at MB", "killed_at_rss_mb", "{:,.0f}")]

    def value(result: dict, key):
        if key == ("ratio", "time"):
            return result["build_run_s"] / 600 if "build_run_s" in result else None
        if key == ("ratio", "rss"):
            return result["watched_peak_rss_mb"] / 8192
        if isinstance(key, tuple):
            return result.get(key[0], {}).get(key[1])
        return result.get(key)

    add_ratio_rows(table, rows, names, results, before, value, skip_empty=True)
    Console().print(table)
    save_results(args.save, results)


if __name__ == "__main__":
    main()
