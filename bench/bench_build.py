"""Benchmark: the embedded graph build on real data, next to a plain-Python IIRG reference.

    .venv/bin/python bench/bench_build.py                    # ml-100k and yelp
    .venv/bin/python bench/bench_build.py --datasets yelp --reference bench/results/last.json

For each dataset, each part in a fresh subprocess (so peak memory is that part's own): a build with
an empty embedding cache (embedding items/s), the same build with the warm cache (ingest rows/s,
seconds per stage, peak RSS; it must embed nothing), and the plain-Python reference
(graph/reference.py: co-occurrence + top-k + back-fill) on the same training sequences.
Prints one table; "ratio" columns compare with a reference run saved by an earlier --save.
Targets (2-core machine): Yelp build without the embedding forward passes < 30 s and < 2 GB peak;
the Cypher collaborative stage no slower than the plain-Python reference.
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

from report_table import add_ratio_rows, save_results  # bench/, the script's own folder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("IIRG_DATA_DIR", REPO.parent / "shared" / "data"))
DATASETS = {"ml-100k": "ml-100k", "office": "amazon-office", "yelp": "yelp"}


def measure(name: str, part: str, cache_dir: str) -> dict:
    """Runs in a child process (so peak memory is that part's own): one dataset, one part.

    part "cold": a build with an empty embedding cache (embedding throughput);
    part "warm": the build again, every text cached (stage times, peak RSS, nothing re-embedded);
    part "python": the plain-Python reference on the same training sequences.
    """
    sys.path.insert(0, str(REPO))
    from graph import reference
    from graph.build import build_run
    from graph.config import GraphConfig
    from graph.rundir import RunPaths
    from graph.store import StoreConfig
    from ingest import IngestConfig, load_dataset

    out: dict = {}
    start = time.perf_counter()
    dataset = load_dataset(IngestConfig(dataset=DATASETS[name], data_dir=str(DATA), progress=False))
    out["ingest_s"] = time.perf_counter() - start
    out["interactions"] = len(dataset.interactions)
    out["ingest_rows_per_s"] = out["interactions"] / out["ingest_s"]
    config = GraphConfig(cache_dir=Path(cache_dir))
    if part == "python":
        from graph.semantic import embed_items, item_texts, topk_cosine

        # The same semantic neighbours the graph has (cached embeddings, not timed), so the
        # reference does the back-fill too, like the Cypher stages it is compared with.
        embeddings, _ = embed_items(item_texts(dataset.items, config.description_chars), config.embed_model,
                                    config.cache_dir, config.embed_batch_size, progress=False,
                                    backend=config.embed_backend)
        neighbours, _ = topk_cosine(embeddings, config.semantic_k, config.similarity_batch_rows, progress=False)
        ids = dataset.items["item_id"].to_numpy()
        similar = {ids[i]: ids[row].tolist() for i, row in enumerate(neighbours)}
        sequences = list(dataset.sequences(tuple(config.splits)).values())
        start = time.perf_counter()
        reference.transitions(sequences)
        out["python_next_s"] = time.perf_counter() - start
        start = time.perf_counter()
        reference.collaborative_neighbours(sequences, dataset.items["item_id"].tolist(), config.window,
                                           config.collab_k, similar=similar)
        out["python_collab_s"] = time.perf_counter() - start
        return out
    with tempfile.TemporaryDirectory() as tmp:
        run = RunPaths.of(Path(tmp) / "run")
        _, report = build_run(run, dataset, StoreConfig(path=run.store), config, progress=False)
    if part == "cold":
        return {"embed_items_per_s": report.embedding.items_per_s, "embed_forward_s": report.embedding.seconds}
    out["rebuild_embedded"] = report.embedding.embedded
    out["stages_s"] = report.seconds
    out["build_s"] = sum(report.seconds.values())
    out["cypher_collab_s"] = report.seconds["cooccur"] + report.seconds.get("backfill", 0.0)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "yelp"], choices=list(DATASETS))
    parser.add_argument("--reference", type=Path, help="earlier results JSON to compare with (ratio columns)")
    parser.add_argument("--save", type=Path, default=REPO / "bench" / "results" / "build.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}: set IIRG_DATA_DIR to the shared data folder")

    results: dict[str, dict] = {}
    for name in args.datasets:
        results[name] = {}
        with tempfile.TemporaryDirectory() as cache_dir:  # cold first, then warm on the same cache
            for part in ("cold", "warm", "python"):
                child = subprocess.run([sys.executable, __file__, "--child", name, part, cache_dir],
                                       capture_output=True, text=True, check=True,
                                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
                results[name].update(json.loads(child.stdout.strip().splitlines()[-1]))
    before = json.loads(args.reference.read_text()) if args.reference and args.reference.exists() else {}

    from rich.console import Console
    from rich.table import Table

    table = Table(title="iirg build benchmark (embedded LadybugDB, warm embedding cache)")
    for col in ("metric", *args.datasets):
        table.add_column(col, justify="right")
    rows = [("interactions", "interactions", "{:,.0f}"), ("ingest rows/s", "ingest_rows_per_s", "{:,.0f}"),
            *[(f"stage {s} s", ("stages_s", s), "{:.2f}") for s in
              ("load", "popularity", "next", "cooccur", "semantic", "backfill")],
            ("build total s (no forward passes)", "build_s", "{:.2f}"),
            ("Cypher collaborative s (cooccur+backfill)", "cypher_collab_s", "{:.2f}"),
            ("plain-Python collaborative s (same, with back-fill)", "python_collab_s", "{:.2f}"),
            ("plain-Python NEXT s", "python_next_s", "{:.2f}"),
            ("plain-Python / Cypher collaborative", None, "{:.2f}x"),
            ("peak RSS MB", "peak_rss_mb", "{:,.0f}"),
            ("embedding items/s (cold cache)", "embed_items_per_s", "{:,.0f}"),
            ("texts re-embedded on rebuild", "rebuild_embedded", "{:,.0f}")]

    def value(result: dict, key):
        if key is None:
            return result["python_collab_s"] / result["cypher_collab_s"]
        if isinstance(key, tuple):
            return result[key[0]].get(key[1], float("nan"))
        return result[key]

    add_ratio_rows(table, rows, args.datasets, results, before, value)
    Console().print(table)
    save_results(args.save, results)


if __name__ == "__main__":
    main()
