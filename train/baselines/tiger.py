"""TIGER (Rajput et al., NeurIPS 2023): an encoder-decoder that generates the next item's semantic ID.

    iirg sid      --run runs/ml-100k                       # semantic IDs first (train/sid.py)
    iirg baseline tiger --run runs/ml-100k [--time-budget-min 60] [--threads 2] [--resume]

The canonical non-LLM generative recommender. Every item is its semantic ID (SID), a tuple of codes
from residual quantization of its text embedding plus one disambiguation code. The encoder reads the
last `max_history` items of a user as SID tokens, oldest first: one token per code as in the paper
(`--encoder-input codes`, `max_history x n_codes` tokens) or, by default, one position per item whose
input embedding is the sum of its code tokens' embeddings (`items`: the model still sees only codes,
never an item id, and trains ~4x faster on CPU: 0.29 vs 1.20 s per batch of 256 on ml-100k). The
decoder generates the target's SID token by token. Beam search is constrained by a trie of the
catalogue's SIDs (`train.llm.decode.ItemTrie` and its vectorized `TrieLogitsProcessor`, the same
implementation the LLM uses), with the user's history masked inside the trie, so every beam is a
real, new item and the invalid rate is 0 by construction (it is still counted).

The model is a `transformers.T5ForConditionalGeneration` built from a `T5Config` (no download).
Default size, chosen for a 2-core CPU: 2 encoder + 2 decoder layers, d_model 128, 4 heads of 32,
feed-forward 512, dropout 0.1 (TIGER's paper: 4 + 4 layers, d_model 128, 6 heads of 64, FFN 1024).
Training: every prefix of every training part (valid history) is one sample; cross-entropy on the
target's SID tokens; AdamW with linear warm-up; early stopping on valid Recall@10 measured with the
constrained decoder; `models/tiger/checkpoint.pt` holds the best weights with the config, the SIDs and
the item ids (`load_checkpoint` rebuilds the model alone); `models/tiger/last.pt` holds the full
training state after every epoch, so `--resume` continues at the next epoch.
Not in this version: TIGER's hashed user-id token.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from common.errors import ConfigError
from evaluate.cases import Cases, build_cases
from evaluate.errors import EvaluationError
from evaluate.lists import prepare_lists
from evaluate.metrics import gains, hit_ranks
from evaluate.record import record_model
from evaluate.token_level import load_sids
from graph.export import Export
from train.baselines import SELECT_K

CHECKPOINT = "checkpoint.pt"
# settings a resumed run may change (how long and how often, not what is trained; a larger
# max_epochs stretches the cosine schedule from the step reached)
SCHEDULE_FIELDS = frozenset({"max_epochs", "patience", "eval_every", "eval_users", "time_budget_min",
                             "eval_batch_size", "threads", "device"})
LAST_STATE = "last.pt"
PAD, EOS = 0, 1          # T5: pad doubles as the decoder start token
FIRST_CODE_TOKEN = 2


@dataclass
class TIGERConfig:
    """TIGER model size and training schedule."""

    max_history: int = field(default=20, metadata={"help": "history items the encoder reads"})
    encoder_input: Literal["items", "codes"] = field(default="items", metadata={
        "help": "codes: one encoder token per SID code (TIGER's paper; max_history x n_codes tokens); "
                "items: one position per history item, the sum of its code-token embeddings "
                "(n_codes times shorter, ~4x faster to train on CPU)"})
    d_model: int = field(default=128, metadata={"help": "hidden size"})
    d_ff: int = field(default=512, metadata={"help": "feed-forward size"})
    layers: int = field(default=2, metadata={"help": "encoder layers = decoder layers"})
    heads: int = field(default=4, metadata={"help": "attention heads (d_model must divide by it)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate (after warm-up)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=300, metadata={"help": "linear learning-rate warm-up steps"})
    lr_schedule: Literal["cosine", "constant"] = field(default="cosine", metadata={
        "help": "after warm-up: cosine decay to 10% of lr at max_epochs, or constant (on ml-100k a "
                "constant 2e-3 made valid recall swing 0.107-0.124 between epochs 1-3)"})
    batch_size: int = field(default=256, metadata={"help": "samples per step"})
    max_epochs: int = field(default=20, metadata={"help": "upper bound on epochs (also the cosine horizon)"})
    patience: int = field(default=4, metadata={
        "help": "stop after this many evaluations without a better valid Recall@10"})
    eval_every: int = field(default=1, metadata={"help": "evaluate on valid every N epochs"})
    eval_users: int = field(default=0, metadata={
        "help": "valid users used for early stopping (seeded sample; 0 = all); the recorded valid "
                "metrics always use all"})
    num_beams: int = field(default=20, metadata={"help": "beam width (= length of each list)"})
    eval_batch_size: int = field(default=64, metadata={"help": "users per beam-search call"})
    time_budget_min: float = field(default=0.0, metadata={
        "help": "stop training after this many minutes (0 = no limit); the best epoch so far is kept"})
    seed: int = field(default=0, metadata={"help": "seeds torch and the sample order"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    device: str = field(default="cpu", metadata={"help": "torch device (cpu, cuda)"})

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout must be in [0, 1)")
        for name in ("max_history", "layers", "batch_size", "max_epochs", "patience", "eval_every",
                     "num_beams", "eval_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"lr_schedule must be cosine or constant, not {self.lr_schedule!r}")
        if self.encoder_input not in ("items", "codes"):
            raise ConfigError(f"encoder_input must be items or codes, not {self.encoder_input!r}")
        if self.time_budget_min < 0 or self.eval_users < 0 or self.warmup_steps < 0:
            raise ConfigError("time_budget_min, eval_users and warmup_steps must be >= 0")


# --------------------------------------------------------------------------------------------
# Vocabulary: one token per (level, code)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SIDVocab:
    """Token ids of every item's SID: `item_tokens[i]` is item i's (n_codes,) token row."""

    level_sizes: tuple[int, ...]
    item_tokens: np.ndarray       # (n_items, n_codes) int64

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> "SIDVocab":
        sizes = tuple(int(s) for s in codes.max(axis=0) + 1)
        offsets = FIRST_CODE_TOKEN + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(level_sizes=sizes, item_tokens=(codes + offsets).astype(np.int64))

    @property
    def size(self) -> int:
        return FIRST_CODE_TOKEN + sum(self.level_sizes)

    @property
    def n_codes(self) -> int:
        return len(self.level_sizes)


def encoder_inputs(vocab: SIDVocab, context: np.ndarray) -> np.ndarray:
    """(B, max_history) item codes (-1 = none, left-padded) -> (B, max_history * n_codes) tokens."""
    tokens = vocab.item_tokens[np.maximum(context, 0)]            # (B, H, C)
    tokens[context < 0] = PAD
    return tokens.reshape(len(context), -1)


def encoder_kwargs(model, vocab: SIDVocab, context: np.ndarray, cfg: "TIGERConfig") -> dict:
    """The encoder's inputs for `model(...)` / `model.generate(...)` from (B, H) history item codes."""
    import torch

    if cfg.encoder_input == "codes":
        ids = torch.from_numpy(encoder_inputs(vocab, context)).to(cfg.device)
        return {"input_ids": ids, "attention_mask": (ids != PAD).long()}
    real = torch.from_numpy(context >= 0).to(cfg.device)                          # (B, H)
    tokens = torch.from_numpy(vocab.item_tokens[np.maximum(context, 0)]).to(cfg.device)  # (B, H, C)
    embeds = model.get_input_embeddings()(tokens).sum(dim=2) * real.unsqueeze(-1)   # (B, H, d)
    return {"inputs_embeds": embeds, "attention_mask": real.long()}


def contexts(cases: Cases, rows: np.ndarray, max_history: int) -> np.ndarray:
    """(len(rows), max_history) last history items of each case row, left-padded with -1."""
    end = cases.indptr[rows + 1]
    start = cases.indptr[rows]
    idx = end[:, None] - max_history + np.arange(max_history)[None, :]
    return np.where(idx >= start[:, None], cases.history[np.clip(idx, 0, None)], -1)


def training_samples(valid: Cases, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix of every training part: (n, max_history) contexts and (n,) target items.

    Uses the valid cases, whose history is exactly each sequence's training part.
    """
    pos = np.arange(len(valid.history))
    first = np.repeat(valid.indptr[:-1], valid.history_length)
    keep = pos > first                                  # a target needs at least one item before it
    end, start = pos[keep], first[keep]
    idx = end[:, None] - max_history + np.arange(max_history)[None, :]
    ctx = np.where(idx >= start[:, None], valid.history[np.clip(idx, 0, None)], -1)
    return ctx.astype(np.int32), valid.history[keep].astype(np.int64)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
def t5_config(cfg: TIGERConfig, vocab_size: int):
    from transformers import T5Config

    return T5Config(vocab_size=vocab_size, d_model=cfg.d_model, d_kv=cfg.d_model // cfg.heads,
                    d_ff=cfg.d_ff, num_layers=cfg.layers, num_decoder_layers=cfg.layers,
                    num_heads=cfg.heads, dropout_rate=cfg.dropout, feed_forward_proj="relu",
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
                    tie_word_embeddings=True, use_cache=True)


def build_model(cfg: TIGERConfig, vocab: SIDVocab):
    import torch
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(cfg.seed)
    return T5ForConditionalGeneration(t5_config(cfg, vocab.size)).to(cfg.device)


# --------------------------------------------------------------------------------------------
# Constrained beam search
# --------------------------------------------------------------------------------------------
def sid_trie(vocab: SIDVocab, item_ids: np.ndarray):
    from train.llm.decode import ItemTrie

    return ItemTrie(list(item_ids), vocab.item_tokens.tolist())


def recommend(model, vocab: SIDVocab, trie, cases: Cases, cfg: TIGERConfig, *, rows: np.ndarray | None = None,
              keep_history: bool = False, constrained: bool = True,
              progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Top-`num_beams` items per case row by beam search over SIDs.

    Returns the lists (user_id, item_id, rank, score = summed log-probability, source) and stats:
    users, returned, invalid (a beam that is no item, or a history item when excluded),
    invalid_rate, seconds, users_per_s.
    """
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig, LogitsProcessorList

    from train.llm.decode import UNFILLED_SCORE, TrieLogitsProcessor

    rows = np.arange(cases.n_users) if rows is None else np.asarray(rows)
    beams, n_codes = cfg.num_beams, vocab.n_codes
    generation = GenerationConfig(
        num_beams=beams, num_return_sequences=beams, do_sample=False, max_new_tokens=n_codes,
        min_new_tokens=n_codes, length_penalty=0.0, early_stopping=False, decoder_start_token_id=PAD,
        eos_token_id=EOS, pad_token_id=PAD, return_dict_in_generate=True, output_scores=True)
    model.eval()
    out_user, out_item, out_rank, out_score = [], [], [], []
    returned = invalid = 0
    started = time.perf_counter()
    for start in tqdm(range(0, len(rows), cfg.eval_batch_size), desc="tiger beam search", unit="batch",
                      disable=not progress):
        batch = rows[start:start + cfg.eval_batch_size]
        histories = [cases.history[cases.indptr[r]:cases.indptr[r + 1]] for r in batch]
        processors = LogitsProcessorList()
        if constrained:
            excluded = None if keep_history else [np.unique(h).tolist() for h in histories]
            processors.append(TrieLogitsProcessor(trie, 1, beams, excluded, device=cfg.device))
        with torch.no_grad():
            inputs = encoder_kwargs(model, vocab, contexts(cases, batch, cfg.max_history), cfg)
            out = model.generate(**inputs, generation_config=generation, logits_processor=processors)
        seqs = out.sequences[:, 1:].cpu().numpy().reshape(len(batch), beams, -1)
        scores = out.sequences_scores.cpu().numpy().reshape(len(batch), beams)
        for b, row in enumerate(batch):
            seen = set() if keep_history else set(histories[b].tolist())
            rank = 0
            for j in range(beams):
                if scores[b, j] <= UNFILLED_SCORE:
                    continue  # fewer items than beams left after exclusion
                returned += 1
                node = trie.walk(seqs[b, j].tolist())
                index = int(trie.leaf_item[node]) if node >= 0 else -1
                if index < 0 or index in seen:
                    invalid += 1
                    continue
                rank += 1
                out_user.append(cases.user_ids[row])
                out_item.append(trie.item_ids[index])
                out_rank.append(rank)
                out_score.append(float(scores[b, j]))
    seconds = time.perf_counter() - started
    recs = pd.DataFrame({"user_id": pd.Series(out_user, dtype=str), "item_id": pd.Series(out_item, dtype=str),
                         "rank": np.asarray(out_rank, dtype=np.int64), "score": np.asarray(out_score),
                         "source": "tiger"})
    stats = {"users": int(len(rows)), "returned": returned, "invalid": invalid,
             "invalid_rate": invalid / returned if returned else 0.0, "seconds": round(seconds, 3),
             "users_per_s": round(len(rows) / seconds, 2) if seconds else None,
             "constrained": constrained}
    return recs, stats


def valid_recall(model, vocab, trie, cases: Cases, cfg: TIGERConfig, rows: np.ndarray,
                 keep_history: bool) -> float:
    recs, _ = recommend(model, vocab, trie, cases, cfg, rows=rows, keep_history=keep_history)
    lists = prepare_lists(cases, recs, keep_history=keep_history)
    return float(gains(hit_ranks(cases, lists), SELECT_K)[0][rows].mean())


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: object
    vocab: SIDVocab
    best_epoch: int
    best_valid_recall: float
    epochs: int
    steps: int
    stopped: str
    seconds_per_epoch: float
    samples_per_s: float
    params: int
    history: list[dict]

    def summary(self) -> dict:
        return {"best_epoch": self.best_epoch, f"best_valid_recall@{SELECT_K}": self.best_valid_recall,
                "epochs": self.epochs, "steps": self.steps, "stopped": self.stopped,
                "seconds_per_epoch": self.seconds_per_epoch, "samples_per_s": self.samples_per_s,
                "params": self.params}


def _lr_lambda(cfg: TIGERConfig, total_steps: int):
    """Learning-rate multiplier per optimizer step: linear warm-up, then constant or cosine to 0.1."""
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * progress))
    return factor


def save_checkpoint(path: Path, model, cfg: TIGERConfig, vocab: SIDVocab, export: Export,
                    codes: np.ndarray, summary: dict, history: list[dict]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": model.state_dict(), "config": asdict(cfg), "codes": codes,
                "item_ids": export.items["item_id"].astype(str).tolist(),
                "dataset_checksum": export.manifest.get("dataset_checksum"),
                "summary": summary, "history": history}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, export: Export | None = None, device: str = "cpu"):
    """(model, vocab, config, checkpoint dict); checks the item ids against `export` when given."""
    import torch

    ckpt = torch.load(path, map_location=device, weights_only=False)
    if export is not None and ckpt["item_ids"] != export.items["item_id"].astype(str).tolist():
        raise EvaluationError(f"{path}: checkpoint was trained on other items than this export")
    cfg = TIGERConfig(**{**ckpt["config"], "device": device})
    vocab = SIDVocab.from_codes(np.asarray(ckpt["codes"]))
    model = build_model(cfg, vocab)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, vocab, cfg, ckpt


def train(run, export: Export, codes: np.ndarray, cfg: TIGERConfig, *, keep_history: bool = False,
          resume: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """Train with early stopping on valid Recall@10; saves checkpoint.pt (best) and last.pt."""
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    folder = run.model("tiger")
    vocab = SIDVocab.from_codes(codes)
    trie = sid_trie(vocab, export.items["item_id"].astype(str).to_numpy())
    valid = build_cases(export, "valid")
    ctx, target = training_samples(valid, cfg.max_history)
    if len(target) == 0:
        raise EvaluationError("no training part has two items: nothing to train TIGER on")
    eval_rows = np.arange(valid.n_users)
    if cfg.eval_users and cfg.eval_users < valid.n_users:
        eval_rows = np.sort(np.random.default_rng(cfg.seed).choice(valid.n_users, cfg.eval_users, replace=False))
    model = build_model(cfg, vocab)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_batches = max(1, len(target) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, n_batches * cfg.max_epochs))
    state = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "best_state": None, "bad": 0,
             "history": [], "train_s": [], "rng": np.random.default_rng(cfg.seed).bit_generator.state}
    last_path = folder / LAST_STATE
    if resume and last_path.exists():
        saved = torch.load(last_path, map_location=cfg.device, weights_only=False)
        differs = [k for k, v in asdict(cfg).items() if k not in SCHEDULE_FIELDS and saved["config"].get(k) != v]
        if differs or not np.array_equal(saved["codes"], codes):
            what = f"another {', '.join(differs)}" if differs else "other SIDs"
            raise EvaluationError(f"{last_path}: saved with {what}; drop --resume to start over")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        log(f"tiger: resumed after epoch {state['epoch']} (step {state['step']})")
    else:
        state["history"].append({"epoch": 0, f"valid_recall@{SELECT_K}":
                                 valid_recall(model, vocab, trie, valid, cfg, eval_rows, keep_history)})
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    started = time.perf_counter() - sum(state["train_s"])
    stopped = "max_epochs"
    bar = tqdm(range(state["epoch"] + 1, cfg.max_epochs + 1), desc="tiger", unit="epoch", disable=not progress)
    try:
        for epoch in bar:
            model.train()
            t0, total, seen = time.perf_counter(), 0.0, 0
            out_of_time = False
            for idx in np.array_split(rng.permutation(len(target)), n_batches):
                labels = torch.from_numpy(vocab.item_tokens[target[idx]]).to(cfg.device)
                inputs = encoder_kwargs(model, vocab, ctx[idx].astype(np.int64), cfg)
                logits = model(**inputs, labels=labels).logits
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                state["step"] += 1
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                if cfg.time_budget_min and time.perf_counter() - started > cfg.time_budget_min * 60:
                    out_of_time = True
                    break
            state["train_s"].append(time.perf_counter() - t0)
            row = {"epoch": epoch, "step": state["step"], "loss": total / max(seen, 1),
                   "train_s": round(state["train_s"][-1], 2), "samples": seen}
            if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs or out_of_time:
                recall = valid_recall(model, vocab, trie, valid, cfg, eval_rows, keep_history)
                row[f"valid_recall@{SELECT_K}"] = recall
                if recall > state["best"]:
                    state.update(best=recall, best_epoch=epoch, bad=0,
                                 best_state=copy.deepcopy(model.state_dict()))
                else:
                    state["bad"] += 1
                bar.set_postfix(loss=f"{row['loss']:.3f}", valid=f"{recall:.4f}",
                                best=f"{state['best']:.4f}@{state['best_epoch']}")
            state["history"].append(row)
            state["epoch"] = epoch
            state["rng"] = rng.bit_generator.state
            _save_last(last_path, model, opt, sched, cfg, codes, state)
            if state["bad"] >= cfg.patience:
                stopped = "early stopping"
                break
            if out_of_time:
                stopped = "time budget"
                break
    except KeyboardInterrupt:
        if state["best_state"] is None:
            raise
        stopped = "interrupted"  # Ctrl-C ends training early; the best epoch so far is kept
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    epochs = len(state["train_s"])
    train_s = float(np.sum(state["train_s"])) if state["train_s"] else 0.0
    samples = sum(r.get("samples", 0) for r in state["history"])
    result = TrainResult(model=model, vocab=vocab, best_epoch=state["best_epoch"],
                         best_valid_recall=state["best"], epochs=epochs, steps=state["step"],
                         stopped=stopped, seconds_per_epoch=train_s / epochs if epochs else 0.0,
                         samples_per_s=samples / train_s if train_s else 0.0, params=params,
                         history=state["history"])
    log(f"tiger: {params:,} parameters, {epochs} epochs ({stopped}), best valid Recall@{SELECT_K} "
        f"{state['best']:.4f} at epoch {state['best_epoch']}, {result.seconds_per_epoch:.1f} s/epoch, "
        f"{result.samples_per_s:.0f} samples/s")
    return result


def _save_last(path: Path, model, opt, sched, cfg: TIGERConfig, codes: np.ndarray, state: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(), "config": asdict(cfg), "codes": codes,
                "state": state}, tmp)
    tmp.replace(path)


def run_tiger(run, export: Export, cfg: TIGERConfig, *, split: str = "test", k: int = 20,
              keep_history: bool = False, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Train (or resume), checkpoint, record valid, then rank and record test once."""
    codes, sid_stats = load_sids(export)
    if k > cfg.num_beams:
        raise EvaluationError(f"--k {k} needs at least {k} beams (--num-beams)")
    result = train(run, export, codes, cfg, keep_history=keep_history, resume=resume,
                   progress=progress, log=log)
    path = run.model("tiger") / CHECKPOINT
    save_checkpoint(path, result.model, cfg, result.vocab, export, codes, result.summary(), result.history)
    trie = sid_trie(result.vocab, export.items["item_id"].astype(str).to_numpy())
    sid_info = {key: sid_stats.get(key) for key in ("method", "levels", "codes_per_level", "seed",
                                                     "collision_rate")}
    info = {"config": asdict(cfg), **result.summary(), "history": result.history, "sid": sid_info,
            "checkpoint": str(path), "k": k}
    out = {"train": result.summary()}
    for name in ("valid", "test") if split == "test" else ("valid",):
        cases = build_cases(export, name)  # type: ignore[arg-type]
        recs, stats = recommend(result.model, result.vocab, trie, cases, cfg, keep_history=keep_history,
                                progress=progress)
        if stats["invalid"]:
            raise EvaluationError(f"tiger: {stats['invalid']} decoded beams are not catalogue items "
                                  f"(the trie constraint failed)")
        log(f"tiger {name}: {stats['users_per_s']} users/s, invalid rate {stats['invalid_rate']:.4f}")
        out[name] = record_model(run, "tiger", recs[recs["rank"] <= k], split=name,
                                 info={**info, f"decode_{name}": stats}, keep_history=keep_history,
                                 export=export)
        out[name]["decode"] = stats
    return out
