"""SASRec (Kang & McAuley 2018) in PyTorch, trained with cross-entropy over all items.

    iirg baseline sasrec --run runs/ml-100k [--max-len 200 --dim 64 --layers 2 --dropout 0.2]

Causal self-attention over the item sequence; the hidden state at each position scores every item
through the (shared) item embedding table, and the loss is full softmax cross-entropy over all items
at every position (Klenitskiy & Vasilev, RecSys 2023, show this is much stronger than the original
sampled binary cross-entropy). Training sequences are the training parts only (all but the last two
items); a long training part is cut into windows of `max_len + 1` items from its end, so every
transition is learned. Validation ranks the valid item from the training part; early stopping keeps
the epoch with the best valid Recall@10, and the test split (history = train part + valid item) is
ranked once with that checkpoint (models/sasrec/checkpoint.pt, which stores config and item ids so
`load_checkpoint` rebuilds the model on its own). Seeded: same seed, same data -> same model.
"""

from __future__ import annotations

import copy
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from common.errors import ConfigError
from evaluate.cases import Cases, build_cases
from evaluate.errors import EvaluationError
from evaluate.lists import prepare_lists
from evaluate.metrics import gains, hit_ranks
from evaluate.record import record_model
from graph.export import Export
from train.baselines import SELECT_K, rank_users

CHECKPOINT = "checkpoint.pt"


@dataclass
class SASRecConfig:
    """SASRec hyperparameters and training schedule."""

    max_len: int = field(default=50, metadata={
        "help": "positions the model attends over (longer training parts are cut into windows)"})
    dim: int = field(default=64, metadata={"help": "embedding / hidden size"})
    layers: int = field(default=2, metadata={"help": "self-attention blocks"})
    heads: int = field(default=1, metadata={"help": "attention heads (dim must divide by it)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout on embeddings, attention, FFN"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=64, metadata={"help": "training windows per batch"})
    max_epochs: int = field(default=200, metadata={"help": "upper bound on epochs"})
    patience: int = field(default=5, metadata={
        "help": "stop after this many evaluations without a better valid Recall@10"})
    eval_every: int = field(default=1, metadata={"help": "evaluate on valid every N epochs"})
    time_budget_min: float = field(default=0.0, metadata={
        "help": "stop training after this many minutes (0 = no limit); the best epoch so far is kept"})
    seed: int = field(default=0, metadata={"help": "seeds torch and the batch order"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    device: str = field(default="cpu", metadata={"help": "torch device (cpu, cuda)"})

    def __post_init__(self):
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout must be in [0, 1)")
        for name in ("layers", "batch_size", "max_epochs", "patience", "eval_every", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.max_len < 2:
            raise ConfigError("max_len must be >= 2")
        if self.time_budget_min < 0:
            raise ConfigError("time_budget_min must be >= 0")


def _model_class():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        """Pre-norm causal self-attention + position-wise feed-forward, both residual."""

        def __init__(self, dim: int, heads: int, dropout: float):
            super().__init__()
            self.heads, self.dropout = heads, dropout
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(dim, dim))
            self.drop = nn.Dropout(dropout)

        def forward(self, x, mask):  # x (B, T, d); mask (B, 1, T, T) True = may attend
            b, t, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
            att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=mask,
                                                 dropout_p=self.dropout if self.training else 0.0)
            x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, d)))
            return x + self.drop(self.ffn(self.norm2(x)))

    class SASRec(nn.Module):
        """Item ids are 1..n_items (0 = padding, sequences are left-padded)."""

        def __init__(self, n_items: int, cfg: SASRecConfig, max_len: int):
            super().__init__()
            self.max_len = max_len
            self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.pos = nn.Embedding(max_len, cfg.dim)
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
            self.norm = nn.LayerNorm(cfg.dim)
            self.scale = math.sqrt(cfg.dim)
            nn.init.normal_(self.item.weight, std=cfg.dim ** -0.5)
            with torch.no_grad():
                self.item.weight[0].zero_()

        def hidden(self, seq):  # seq (B, T) -> (B, T, d)
            t = seq.shape[1]
            real = seq > 0
            x = self.item(seq) * self.scale + self.pos(torch.arange(t, device=seq.device))
            x = self.drop(x) * real.unsqueeze(-1)
            causal = torch.ones(t, t, dtype=torch.bool, device=seq.device).tril()
            # attend to earlier real items; the diagonal stays open so padded rows are never empty
            mask = (causal & real[:, None, :]) | torch.eye(t, dtype=torch.bool, device=seq.device)
            for block in self.blocks:
                x = block(x, mask.unsqueeze(1))
            return self.norm(x)

        def logits(self, h):  # h (..., d) -> (..., n_items), item ids 1..n_items -> columns 0..n-1
            return h @ self.item.weight[1:].T

    return SASRec


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def training_windows(cases: Cases, max_len: int) -> np.ndarray:
    """(n_windows, max_len + 1) left-padded windows (item code + 1) cut from each training part's end.

    Uses the valid cases: their history is exactly the training part of each sequence.
    """
    seqs = np.split(cases.history + 1, cases.indptr[1:-1])
    windows = []
    for seq in seqs:  # once per user at setup, not in the training loop
        end = len(seq)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            windows.append(seq[start:end])
            end = start + 1 if start > 0 else 0  # next window ends where this one's inputs start
    out = np.zeros((len(windows), max_len + 1), dtype=np.int64)
    for i, w in enumerate(windows):
        out[i, -len(w):] = w
    return out


def history_batch(cases: Cases, rows: np.ndarray, max_len: int) -> np.ndarray:
    """(len(rows), max_len) left-padded last max_len history items (code + 1)."""
    out = np.zeros((len(rows), max_len), dtype=np.int64)
    for i, r in enumerate(rows):
        h = cases.history[max(cases.indptr[r], cases.indptr[r + 1] - max_len):cases.indptr[r + 1]] + 1
        out[i, -len(h):] = h
    return out


def scorer(model, cases: Cases, max_len: int, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def score(rows: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            seq = torch.from_numpy(history_batch(cases, rows, max_len)).to(device)
            return model.logits(model.hidden(seq)[:, -1]).float().cpu().numpy()
    return score


def recommend_with(model, cases: Cases, max_len: int, *, k: int = 20, keep_history: bool = False,
                   device: str = "cpu") -> pd.DataFrame:
    return rank_users(cases, scorer(model, cases, max_len, device), k=k, keep_history=keep_history,
                      primary_source="sasrec", chunk_size=512)


def valid_recall(model, cases: Cases, max_len: int, keep_history: bool, device: str = "cpu") -> float:
    recs = recommend_with(model, cases, max_len, k=SELECT_K, keep_history=keep_history, device=device)
    lists = prepare_lists(cases, recs, keep_history=keep_history)
    return float(gains(hit_ranks(cases, lists), SELECT_K)[0].mean())


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: object
    max_len: int
    best_epoch: int
    best_valid_recall: float
    epochs: int
    stopped: str
    seconds_per_epoch: float
    params: int
    peak_rss_mb: float
    history: list[dict]

    def summary(self) -> dict:
        return {"max_len": self.max_len, "best_epoch": self.best_epoch,
                f"best_valid_recall@{SELECT_K}": self.best_valid_recall, "epochs": self.epochs,
                "stopped": self.stopped,
                "seconds_per_epoch": self.seconds_per_epoch, "params": self.params,
                "peak_rss_mb": self.peak_rss_mb}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _epochs(bar, model, opt, data, rng, cfg: SASRecConfig, valid: Cases, max_len: int,
            keep_history: bool, history: list[dict], train_s: list[float], started: float,
            state: dict) -> str:
    """The training loop; `state` holds the best valid recall, its epoch and weights. Returns why
    it stopped."""
    from torch.nn import functional as F

    bad = 0
    for epoch in bar:
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for idx in np.array_split(rng.permutation(len(data)), max(1, len(data) // cfg.batch_size)):
            batch = data[idx].to(cfg.device)
            inputs, labels = batch[:, :-1], batch[:, 1:]
            keep = labels > 0
            h = model.hidden(inputs)[keep]                 # (P, d): positions with a next item
            loss = F.cross_entropy(model.logits(h), labels[keep] - 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * int(keep.sum())
            count += int(keep.sum())
        train_s.append(time.perf_counter() - start)
        row = {"epoch": epoch, "loss": total / max(count, 1), "train_s": train_s[-1]}
        out_of_time = bool(cfg.time_budget_min) and time.perf_counter() - started > cfg.time_budget_min * 60
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs or out_of_time:
            recall = valid_recall(model, valid, max_len, keep_history, cfg.device)
            row[f"valid_recall@{SELECT_K}"] = recall
            if recall > state["best"]:
                state.update(best=recall, best_epoch=epoch, best_state=copy.deepcopy(model.state_dict()))
                bad = 0
            else:
                bad += 1
            bar.set_postfix(loss=f"{row['loss']:.3f}", valid=f"{recall:.4f}",
                            best=f"{state['best']:.4f}@{state['best_epoch']}")
        history.append(row)
        if bad >= cfg.patience:
            return "early stopping"
        if out_of_time:
            return "time budget"
    return "max_epochs"


def train(export: Export, cfg: SASRecConfig, *, keep_history: bool = False,
          progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """Train on the training parts with early stopping on valid Recall@10."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    valid = build_cases(export, "valid")
    max_len = cfg.max_len
    windows = training_windows(valid, max_len)
    if len(windows) == 0:
        raise EvaluationError("no training part has two items: nothing to train SASRec on")
    model = _model_class()(valid.n_items, cfg, max_len).to(cfg.device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                            weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    data = torch.from_numpy(windows)
    history: list[dict] = []
    train_s: list[float] = []
    state = {"best": -1.0, "best_state": None, "best_epoch": 0}
    started = time.perf_counter()
    # epoch 0: the untrained model, the reference every later epoch must beat
    history.append({"epoch": 0, f"valid_recall@{SELECT_K}":
                    valid_recall(model, valid, max_len, keep_history, cfg.device)})
    bar = tqdm(range(1, cfg.max_epochs + 1), desc="sasrec", unit="epoch", disable=not progress)
    try:
        stopped = _epochs(bar, model, opt, data, rng, cfg, valid, max_len, keep_history, history,
                          train_s, started, state)
    except KeyboardInterrupt:
        if state["best_state"] is None:
            raise
        stopped = "interrupted"  # Ctrl-C ends training early; the best epoch so far is kept
    best, best_state, best_epoch = state["best"], state["best_state"], state["best_epoch"]
    model.load_state_dict(best_state)
    log(f"sasrec: {params:,} parameters, {len(history) - 1} epochs ({stopped}), best valid "
        f"Recall@{SELECT_K} {best:.4f} at epoch {best_epoch}, {np.mean(train_s):.2f} s/epoch")
    return TrainResult(model=model, max_len=max_len, best_epoch=best_epoch, best_valid_recall=best,
                       epochs=len(history) - 1, stopped=stopped,
                       seconds_per_epoch=float(np.mean(train_s)), params=params,
                       peak_rss_mb=peak_rss_mb(), history=history)


def save_checkpoint(path: Path, result: TrainResult, cfg: SASRecConfig, export: Export) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": result.model.state_dict(), "config": asdict(cfg),
                "max_len": result.max_len, "item_ids": export.items["item_id"].astype(str).tolist(),
                "dataset_checksum": export.manifest.get("dataset_checksum"),
                "summary": result.summary(), "history": result.history}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, export: Export | None = None, device: str = "cpu"):
    """(model, max_len, checkpoint dict); checks the item ids against `export` when given."""
    import torch

    ckpt = torch.load(path, map_location=device, weights_only=False)
    if export is not None and ckpt["item_ids"] != export.items["item_id"].astype(str).tolist():
        raise EvaluationError(f"{path}: checkpoint was trained on other items than this export")
    cfg = SASRecConfig(**ckpt["config"])
    model = _model_class()(len(ckpt["item_ids"]), cfg, ckpt["max_len"]).to(device)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt["max_len"], ckpt


def run_sasrec(run, export: Export, cfg: SASRecConfig, *, split: str = "test", k: int = 20,
               keep_history: bool = False, progress: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Train, checkpoint, record valid, then rank and record test once."""
    result = train(export, cfg, keep_history=keep_history, progress=progress, log=log)
    save_checkpoint(run.model("sasrec") / CHECKPOINT, result, cfg, export)
    info = {"config": asdict(cfg), **result.summary(), "history": result.history,
            "checkpoint": str(run.model("sasrec") / CHECKPOINT), "k": k}
    out = {"train": result.summary()}
    for name in ("valid", "test") if split == "test" else ("valid",):
        cases = build_cases(export, name)  # type: ignore[arg-type]
        recs = recommend_with(result.model, cases, result.max_len, k=k, keep_history=keep_history,
                              device=cfg.device)
        out[name] = record_model(run, "sasrec", recs, split=name, info=info, keep_history=keep_history,
                                 export=export)
    return out
