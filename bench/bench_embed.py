"""Benchmark: embedding throughput and neighbour quality per (text recipe, backend, batch size).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_embed.py                  # office, ml-100k, longest
    .venv/bin/python bench/bench_embed.py --datasets office --longest 0

For each dataset the whole catalogue is embedded once per setting (graph.semantic.load_encoder, then
`encode` on the texts sorted longest first, as embed_items does), and the exact top-10 cosine
neighbours compared (graph.semantic.topk_cosine):
  - "vs torch" = mean overlap of the top-10 with the float torch model's on the same recipe (what
    the backend alone changes);
  - "vs today" = mean overlap with today's setting before this change (torch, 400 characters):
    what the recipe and the backend change together.
"longest" is the --longest items with the longest descriptions across Office and Yelp (ml-100k has
none), every text at the model's 256-token limit: the worst case. Items/s are per wall second of
forward passes (tokenizing included, model loading not) and per CPU second of this process, which
other work on a shared machine disturbs less; ratios are against today's setting on the same items.
The ONNX exports are made once into a temporary cache dir first (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("IIRG_DATA_DIR", REPO.parent / "shared" / "data"))
DATASETS = {"ml-100k": "ml-100k", "office": "amazon-office", "yelp": "yelp"}
FULL = 10**9  # "the whole description": the model truncates at its 256 tokens

# (label, description_chars, backend, batch_size); the second row is today's setting before this change.
SETTINGS = [
    ("full / torch / 128", FULL, "torch", 128),
    ("400 / torch / 128 (before)", 400, "torch", 128),
    ("400 / torch / 32", 400, "torch", 32),
    ("400 / onnx-int8 / 32", 400, "onnx-int8", 32),
    ("200 / torch / 32 (default)", 200, "torch", 32),
    ("200 / onnx / 32", 200, "onnx", 32),
    ("200 / onnx-int8 / 32", 200, "onnx-int8", 32),
]
BEFORE = SETTINGS[1][0]
K = 10


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row's top-k neighbours that two neighbour matrices (n, k) have in common."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def catalogues(names: list[str], longest: int):
    from ingest import IngestConfig, load_dataset

    loaded = {name: load_dataset(IngestConfig(dataset=DATASETS[name], data_dir=str(DATA), progress=False)).items
              for name in dict.fromkeys([*names, *(["office", "yelp"] if longest else [])])}
    out = {name: loaded[name] for name in names}
    if longest:
        import pandas as pd

        both = pd.concat([loaded["office"], loaded["yelp"]], ignore_index=True)
        lengths = both["description"].fillna("").str.len()
        out[f"longest {longest}"] = both.loc[lengths.sort_values(ascending=False).index[:longest]]
    return out


def run(items, settings, cache_dir: Path) -> dict:
    from graph.config import DEFAULT_EMBED_MODEL
    from graph.semantic import item_texts, load_encoder, topk_cosine

    results, encoders = {}, {}
    for label, chars, backend, batch in settings:
        texts = item_texts(items, chars)
        if backend not in encoders:
            encoders[backend] = load_encoder(DEFAULT_EMBED_MODEL, backend, cache_dir, progress=False)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as embed_items
        wall, cpu = time.perf_counter(), time.process_time()
        vectors = encoders[backend].encode([texts[i] for i in order], batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        embeddings = np.empty_like(vectors)
        embeddings[order] = vectors
        neighbours, _ = topk_cosine(embeddings, K, progress=False)
        results[label] = {"items_per_s": len(texts) / wall, "items_per_cpu_s": len(texts) / cpu,
                          "neighbours": neighbours, "chars": chars, "backend": backend,
                          "mean_chars": float(np.mean([len(t) for t in texts]))}
        print(f"  {label}: {len(texts) / wall:.1f} items/s, {len(texts) / cpu:.1f} items/cpu-s", file=sys.stderr,
              flush=True)
    for label, r in results.items():
        torch_same = next((x for x in results.values() if x["backend"] == "torch" and x["chars"] == r["chars"]), None)
        r["overlap_torch"] = overlap(r["neighbours"], torch_same["neighbours"]) if torch_same else None
        r["overlap_before"] = overlap(r["neighbours"], results[BEFORE]["neighbours"])
        r["ratio"] = r["items_per_s"] / results[BEFORE]["items_per_s"]
        r["ratio_cpu"] = r["items_per_cpu_s"] / results[BEFORE]["items_per_cpu_s"]
    for r in results.values():
        del r["neighbours"]  # not JSON; every overlap is computed above
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["office", "ml-100k"], choices=list(DATASETS))
    parser.add_argument("--longest", type=int, default=300, help="items in the longest-description set (0: none)")
    parser.add_argument("--save", type=Path, default=REPO / "bench" / "results" / "embed.json")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}: set IIRG_DATA_DIR to the shared data folder")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model ships in a package: nothing may be downloaded

    from graph.config import DEFAULT_EMBED_MODEL
    from graph.semantic import export_onnx

    results = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        export_onnx(DEFAULT_EMBED_MODEL, Path(cache_dir), int8=True)  # not timed
        for name, items in catalogues(args.datasets, args.longest).items():
            print(f"{name}: {len(items)} items", file=sys.stderr, flush=True)
            results[name] = run(items, SETTINGS, Path(cache_dir))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"embedding all-MiniLM-L6-v2 on CPU, {os.environ.get('OMP_NUM_THREADS', 'all')} thread(s): "
                        f"recipe (description chars) / backend / batch; top-{K} neighbour overlap")
    for col in ("dataset", "setting", "mean chars", "items/s", "items/cpu-s", "vs before (wall, cpu)",
                "overlap vs torch", "overlap vs before"):
        table.add_column(col, justify="right")
    for name, rows in results.items():
        for label, r in rows.items():
            table.add_row(name, label, f"{r['mean_chars']:.0f}", f"{r['items_per_s']:.1f}", f"{r['items_per_cpu_s']:.1f}",
                          f"{r['ratio']:.2f}x, {r['ratio_cpu']:.2f}x",
                          "-" if r["overlap_torch"] is None or r["backend"] == "torch" else f"{r['overlap_torch']:.3f}",
                          "-" if label == BEFORE else f"{r['overlap_before']:.3f}")
        table.add_section()
    Console(width=200).print(table)
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps(results, indent=2))
    print(f"saved {args.save}")


if __name__ == "__main__":
    main()
