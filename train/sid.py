"""Semantic IDs: every item as a short tuple of codes quantized from its text embedding (TIGER).

    iirg sid --run runs/ml-100k [--method rq-kmeans|rq-vae] [--levels 3] [--codebook-size 256]

Residual quantization: level 1 clusters the embeddings, level 2 clusters what level 1 left over
(embedding - its centroid), and so on, so items that share a prefix of codes are close in embedding
space and the first code is the coarsest. Two quantizers:
- `rq-kmeans`: residual k-means on the embeddings themselves (scikit-learn's KMeans per level).
- `rq-vae`: TIGER's RQ-VAE (Rajput et al., NeurIPS 2023): an MLP encoder to a small latent, residual
  codebooks learned with the VQ-VAE losses (codebook + beta * commitment), a decoder reconstructing
  the embedding; codebooks initialised by k-means on the first latents, unused codes re-seeded.
Items whose code tuples collide get one more code, 0..n-1 in catalogue order, appended to *every*
item (as TIGER does), so all SIDs have `levels + 1` codes and each names exactly one item.

Outputs: `export/sids.parquet` (item_id, sid "<a_12><b_3><c_200><d_0>", sid_codes), `export/sid.json`
(config and statistics: collision rate before disambiguation, codebook use per level), an `sids`
entry in the export manifest, and `sid` / `sid_codes` on the graph's `:Item` nodes (both backends).
The embeddings are read from the graph (`Item.embedding`, written by `iirg build`); the command opens
the store and hands it to `read_embeddings` and `write_sids_to_graph`. Reading the SIDs back
(`load_sids`) and the token-level analysis live in `evaluate.token_level`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from common.errors import ConfigError
from common.files import atomic_file
from evaluate.token_level import SID_STATS_FILE, SIDS_FILE, SIDError
from graph.export import Export
from graph.store import GraphStore

LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class SIDConfig:
    """How items are quantized into semantic IDs."""

    method: Literal["rq-kmeans", "rq-vae"] = field(default="rq-kmeans", metadata={
        "help": "rq-kmeans: residual k-means on the embeddings (scikit-learn); rq-vae: TIGER's RQ-VAE (torch)"})
    levels: int = field(default=3, metadata={"help": "quantization levels (codes before disambiguation)"})
    codebook_size: int = field(default=0, metadata={
        "help": "codes per level; 0 = auto: the power of two nearest above 4 x n_items^(1/levels), "
                "at most 256 (ml-100k: 64, Yelp: 128)"})
    seed: int = field(default=0, metadata={"help": "seeds k-means and the RQ-VAE"})
    latent_dim: int = field(default=32, metadata={"help": "rq-vae: latent size"})
    hidden_dims: str = field(default="512,256,128", metadata={"help": "rq-vae: encoder layer sizes"})
    epochs: int = field(default=100, metadata={"help": "rq-vae: training epochs over the items"})
    batch_size: int = field(default=1024, metadata={"help": "rq-vae: items per step"})
    lr: float = field(default=1e-3, metadata={"help": "rq-vae: Adam learning rate"})
    beta: float = field(default=0.25, metadata={"help": "rq-vae: commitment loss weight"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (rq-vae)"})

    def __post_init__(self):
        if self.method not in ("rq-kmeans", "rq-vae"):
            raise ConfigError(f"method must be rq-kmeans or rq-vae, not {self.method!r}")
        if not 1 <= self.levels <= len(LEVEL_LETTERS) - 1:
            raise ConfigError(f"levels must be in 1..{len(LEVEL_LETTERS) - 1}")
        if self.codebook_size == 1 or self.codebook_size < 0:
            raise ConfigError("codebook_size must be >= 2 (or 0 for auto)")
        if self.epochs < 1 or self.batch_size < 1 or self.latent_dim < 1:
            raise ConfigError("epochs, batch_size and latent_dim must be >= 1")
        try:
            dims = [int(d) for d in self.hidden_dims.split(",") if d.strip()]
        except ValueError:
            dims = [0]
        if any(d < 1 for d in dims):
            raise ConfigError(f"hidden_dims must be comma-separated positive sizes, not {self.hidden_dims!r}")

    def codes_per_level(self, n_items: int) -> int:
        """The codebook size used for `n_items` items.

        Auto, because one size does not fit all catalogues: with 256 codes for ml-100k's 1,682 items
        the first level is almost item-level (6.6 items per code) and the residual levels collapse
        (42% of items collide); with 64 codes, 9% collide and every level is used.
        """
        if self.codebook_size:
            return min(self.codebook_size, n_items)
        wanted = 4 * n_items ** (1 / self.levels)
        return int(min(256, n_items, 2 ** int(np.ceil(np.log2(max(wanted, 2))))))


# --------------------------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------------------------
def _fit_kmeans(x: np.ndarray, k: int, seed: int, max_iter: int):
    """scikit-learn KMeans (k-means++ start, one init) with BLAS held to one thread.

    Why: the k-means++ start makes many tiny BLAS calls; a second BLAS thread only adds contention
    (bench/bench_sid_tiger.py: Yelp's 20k items 69 s -> 18 s, identical codes on all three datasets).
    Lloyd's iterations use OpenMP threads and are not affected.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=max_iter).fit(x)


def rq_kmeans(x: np.ndarray, levels: int, k: int, seed: int,
              log: Callable[[str], None] = print) -> np.ndarray:
    """(n, levels) codes by residual k-means with k codes per level (scikit-learn KMeans)."""

    k = min(k, len(x))
    residual = x.astype(np.float32, copy=True)
    codes = np.zeros((len(x), levels), dtype=np.int64)
    for level in range(levels):
        km = _fit_kmeans(residual, k, seed + level, max_iter=100)
        codes[:, level] = km.labels_
        residual -= km.cluster_centers_[km.labels_].astype(np.float32)
        log(f"  level {level + 1}: {len(np.unique(km.labels_))}/{k} codes used, residual norm "
            f"{float(np.linalg.norm(residual, axis=1).mean()):.4f}")
    return codes


def rq_vae(x: np.ndarray, cfg: SIDConfig, progress: bool = True,
           log: Callable[[str], None] = print) -> tuple[np.ndarray, dict]:
    """(n, levels) codes from a trained RQ-VAE, and its training summary."""
    import torch
    from torch import nn
    from torch.nn import functional as F
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    k = cfg.codes_per_level(len(x))
    dims = [x.shape[1], *[int(d) for d in cfg.hidden_dims.split(",") if d.strip()], cfg.latent_dim]

    def mlp(sizes):
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    encoder, decoder = mlp(dims), mlp(dims[::-1])
    codebooks = nn.Parameter(torch.zeros(cfg.levels, k, cfg.latent_dim))
    params = [*encoder.parameters(), *decoder.parameters(), codebooks]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    data = torch.from_numpy(x.astype(np.float32))

    def quantize(z):  # z (B, d) -> codes (B, L), z_q (B, d), vq loss
        residual, z_q, codes, loss = z, torch.zeros_like(z), [], z.new_zeros(())
        for level in range(cfg.levels):
            book = codebooks[level]
            idx = torch.cdist(residual.detach(), book.detach()).argmin(dim=1)
            e = book[idx]
            # codebook loss pulls codes to the residuals; commitment keeps the encoder near its codes
            loss = loss + F.mse_loss(e, residual.detach()) + cfg.beta * F.mse_loss(residual, e.detach())
            z_q = z_q + e
            residual = residual - e.detach()
            codes.append(idx)
        return torch.stack(codes, 1), z_q, loss

    # k-means initialisation of each level on the encoder's first latents (as TIGER does)
    with torch.no_grad():
        residual = encoder(data).numpy()
        for level in range(cfg.levels):
            km = _fit_kmeans(residual, k, cfg.seed + level, max_iter=50)
            codebooks.data[level] = torch.from_numpy(km.cluster_centers_.astype(np.float32))
            residual = residual - km.cluster_centers_[km.labels_]
    rng = np.random.default_rng(cfg.seed)
    history = []
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="rq-vae", unit="epoch", disable=not progress):
        used = torch.zeros(cfg.levels, k, dtype=torch.bool)
        total = recon_total = 0.0
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // cfg.batch_size)):
            batch = data[idx]
            z = encoder(batch)
            codes, z_q, vq = quantize(z)
            z_st = z + (z_q - z).detach()  # straight-through estimator
            recon = F.mse_loss(decoder(z_st), batch)
            loss = recon + vq
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for level in range(cfg.levels):
                used[level, codes[:, level]] = True
            total += float(loss.detach()) * len(idx)
            recon_total += float(recon.detach()) * len(idx)
        # Re-seed codes no item chose this epoch with random current residuals: dead codes otherwise
        # stay dead and the codebook shrinks (collisions grow).
        if epoch < cfg.epochs and (~used).any():
            with torch.no_grad():
                z = encoder(data)
                residual = z
                for level in range(cfg.levels):
                    dead = (~used[level]).nonzero().flatten()
                    if len(dead):
                        pick = torch.from_numpy(rng.choice(len(x), size=len(dead), replace=len(dead) > len(x)))
                        codebooks.data[level, dead] = residual[pick]
                    idx = torch.cdist(residual, codebooks[level]).argmin(dim=1)
                    residual = residual - codebooks[level][idx]
        history.append({"epoch": epoch, "loss": total / len(x), "recon": recon_total / len(x)})
    with torch.no_grad():
        codes, _, _ = quantize(encoder(data))
    summary = {"final_loss": history[-1]["loss"], "final_recon_mse": history[-1]["recon"],
               "epochs": cfg.epochs}
    log(f"  rq-vae: loss {summary['final_loss']:.4f}, reconstruction MSE {summary['final_recon_mse']:.5f}")
    return codes.numpy().astype(np.int64), summary


def disambiguate(codes: np.ndarray) -> tuple[np.ndarray, dict]:
    """Append a code that makes every tuple unique (0 for the first item of a tuple, 1, 2, ...).

    Returns the (n, levels + 1) codes and collision statistics measured before the extra code.
    """
    frame = pd.DataFrame(codes)
    group = frame.groupby(list(frame.columns), sort=False)
    extra = group.cumcount().to_numpy()
    sizes = group[frame.columns[0]].transform("size").to_numpy()
    stats = {"collision_rate": float((sizes > 1).mean()) if len(codes) else 0.0,
             "colliding_items": int((sizes > 1).sum()), "max_items_per_tuple": int(sizes.max(initial=0)),
             "unique_tuples": int(group.ngroups)}
    return np.column_stack([codes, extra]).astype(np.int64), stats


def codebook_usage(codes: np.ndarray, codebook_size: int) -> list[dict]:
    """Per level: distinct codes used, their share of the codebook and the perplexity of their use."""
    out = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level])
        p = counts[counts > 0] / counts.sum()
        size = codebook_size if level < codes.shape[1] - 1 else len(counts)
        out.append({"level": level + 1, "used": int((counts > 0).sum()), "size": int(size),
                    "share_used": float((counts > 0).sum() / size),
                    "perplexity": float(np.exp(-(p * np.log(p)).sum()))})
    return out


def sid_strings(codes: np.ndarray) -> list[str]:
    """LC-Rec style token strings: <a_12><b_3><c_200><d_0>."""
    return ["".join(f"<{LEVEL_LETTERS[level]}_{c}>" for level, c in enumerate(row)) for row in codes.tolist()]


# --------------------------------------------------------------------------------------------
# Run folder and graph (the store is opened by the command and passed in)
# --------------------------------------------------------------------------------------------
def read_embeddings(graph: GraphStore, item_ids: np.ndarray) -> np.ndarray:
    """(n_items, dim) embeddings from the graph's Item nodes, in export item order."""
    from graph.analysis_queries import ITEM_EMBEDDINGS_QUERY

    frame = graph.run_df(ITEM_EMBEDDINGS_QUERY, {})
    if frame.empty or frame["embedding"].isna().all():
        raise SIDError("no item embeddings in the graph: build it with the semantic stage "
                       "(without --no-semantic)")
    by_id = dict(zip(frame["item_id"].astype(str), frame["embedding"]))
    missing = [i for i in item_ids if by_id.get(i) is None]
    if missing:
        raise SIDError(f"{len(missing)} items have no embedding in the graph (e.g. {missing[:3]}): "
                       f"rebuild the graph")
    return np.asarray([np.asarray(by_id[i], dtype=np.float32) for i in item_ids], dtype=np.float32)


def write_sids_to_graph(graph: GraphStore, frame: pd.DataFrame) -> int:
    """Set `sid` and `sid_codes` on every Item node (adds the properties on LadybugDB first).

    Hold the run lock around `save_sids` and this call: the export and the store belong to the
    run's last build.
    """
    from graph import analysis_queries as AQ

    for ddl in AQ.ADD_ITEM_SID_PROPERTIES_QUERIES.text(graph.dialect):
        graph.run(ddl, {})
    rows = [{"item_id": i, "sid": s, "sid_codes": [int(c) for c in codes]}
            for i, s, codes in zip(frame["item_id"], frame["sid"], frame["sid_codes"])]
    return graph.write_batch(AQ.SET_ITEM_SIDS_QUERY, rows)


def save_sids(export_dir: Path, frame: pd.DataFrame, stats: dict) -> None:
    """sids.parquet, sid.json and the manifest's `sids` entry, each replaced atomically."""
    with atomic_file(export_dir / SIDS_FILE) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_file(export_dir / SID_STATS_FILE) as tmp:
        tmp.write_text(json.dumps(stats, indent=2))
    manifest_path = export_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sids"] = {k: stats[k] for k in ("method", "levels", "codes_per_level", "seed", "n_codes",
                                              "collision_rate", "dataset_checksum")}
    manifest["files"] = sorted(set(manifest.get("files", [])) | {SIDS_FILE, SID_STATS_FILE})
    with atomic_file(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))


def make_sids(export: Export, cfg: SIDConfig, embeddings: np.ndarray, *, progress: bool = True,
              log: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict]:
    """Quantize the item embeddings (`read_embeddings`, export item order) and disambiguate.

    Returns the SID frame (item_id, sid, sid_codes) and its statistics, for `save_sids` and
    `write_sids_to_graph`.
    """
    item_ids = export.items["item_id"].astype(str).to_numpy()
    started = time.perf_counter()
    x = embeddings
    k = cfg.codes_per_level(len(x))
    log(f"sid: {len(x)} items, {x.shape[1]}-d embeddings, {cfg.method}, {cfg.levels} levels x {k} codes")
    train_summary: dict = {}
    if cfg.method == "rq-kmeans":
        codes = rq_kmeans(x, cfg.levels, k, cfg.seed, log=log)
    else:
        codes, train_summary = rq_vae(x, cfg, progress=progress, log=log)
    full, collisions = disambiguate(codes)
    frame = pd.DataFrame({"item_id": item_ids, "sid": sid_strings(full), "sid_codes": list(full)})
    stats = {**asdict(cfg), "codes_per_level": k, "n_items": len(item_ids), "n_codes": full.shape[1],
             **collisions, "usage": codebook_usage(full, k), "training": train_summary,
             "seconds": round(time.perf_counter() - started, 2),
             "dataset_checksum": export.manifest.get("dataset_checksum")}
    return frame, stats
