"""Non-LLM baselines: popularity, one-hop Markov, co-occurrence kNN, SASRec and TIGER.

    iirg baseline popularity --run runs/ml-100k       # also: markov, cooc, sasrec, tiger

Every baseline scores all items for each evaluated user (full ranking), keeps the top K and hands the
lists to `evaluate.record.record_model`, the evaluator every model shares. Hyperparameters are chosen
by valid Recall@10 (valid history = training part); the test split is then ranked once with the
chosen setting. Shared here: the settings of every baseline run, the chunked top-K ranking with
popularity back-fill and history masking, and the selection loop.

A new baseline without training is one module with `candidates()` (the hyperparameter grid) and
`recommend(export, cases, *, k, keep_history, **params)`, plus its line in
`train.commands.BASELINES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd

from common.errors import ConfigError
from evaluate.cases import Cases, build_cases, is_member, item_index
from evaluate.lists import prepare_lists
from evaluate.metrics import gains, hit_ranks
from evaluate.record import record_model
from graph.export import Export

SELECT_K = 10  # hyperparameters are selected by valid Recall@SELECT_K


@dataclass
class BaselineConfig:
    """What every `iirg baseline` run shares (each trained model adds its own table)."""

    split: Literal["valid", "test"] = field(default="test", metadata={
        "help": "test: select on valid, then evaluate test once; valid: selection only"})
    k: int = field(default=20, metadata={"help": "length of each ranked list"})
    keep_history: bool = field(default=False, metadata={
        "help": "allow history items in the lists (datasets with repeat visits, e.g. Yelp)"})

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError("k must be >= 1")


def popularity_counts(export: Export) -> np.ndarray:
    """(n_items,) training interaction counts in export item order."""
    items = export.items
    if "popularity" in items:
        return items["popularity"].fillna(0).to_numpy(dtype=np.float64)
    inter = export.interactions
    train = inter[inter["split"] == "train"]["item_id"].astype(str).value_counts()
    return item_index(export).map(train).fillna(0).to_numpy(dtype=np.float64)


def rank_users(cases: Cases, score: Callable[[np.ndarray], np.ndarray], *, k: int,
               keep_history: bool = False, backfill: np.ndarray | None = None,
               integer_scores: bool = False, primary_source: str = "model",
               chunk_size: int = 1024, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Top-k list per user from dense scores, computed in chunks of users.

    Args:
        score: rows -> (len(rows), n_items) scores. With `backfill`, a score > 0 means evidence and
            items without evidence are ranked after all of them by `backfill` (popularity).
        backfill: (n_items,) secondary key, or None to rank purely by score.
        integer_scores: scores are counts, so ties are broken by `backfill` (added below 1).
        rows: the case rows to rank (default all).

    Returns:
        user_id, item_id, rank (1-based), score, source (`primary_source` or "popularity").
    """
    rows = np.arange(cases.n_users) if rows is None else rows
    n_items = cases.n_items
    k = min(k, n_items)
    if backfill is not None:
        # Order-preserving map of the back-fill key into [0, 0.5): ranks, not raw values, so float
        # precision never merges different popularities.
        order = np.argsort(np.argsort(-backfill, kind="stable"), kind="stable")
        fill = 0.5 * (1.0 - (order + 1) / (n_items + 1))
    hist_rows, hist_items = cases.history_rows, cases.history
    out_rows, out_items, out_scores, out_primary = [], [], [], []
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start:start + chunk_size]
        raw = np.asarray(score(chunk), dtype=np.float64)
        key = raw.copy()
        if backfill is not None:
            evidence = raw > 0
            key = np.where(evidence, raw + (fill if integer_scores else 0.0), fill - 1.0)
        else:
            evidence = np.ones_like(raw, dtype=bool)
        if not keep_history:
            # mask this chunk's history items (rows are sorted, histories contiguous)
            order = np.argsort(chunk)
            sel = is_member(hist_rows, chunk[order])
            local = order[np.searchsorted(chunk[order], hist_rows[sel])]
            key[local, hist_items[sel]] = -np.inf
        top = np.argpartition(-key, k - 1, axis=1)[:, :k]
        top_key = np.take_along_axis(key, top, axis=1)
        order = np.argsort(-top_key, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        valid = np.isfinite(np.take_along_axis(key, top, axis=1))
        r = np.repeat(chunk, k).reshape(len(chunk), k)
        out_rows.append(r[valid])
        out_items.append(top[valid])
        out_scores.append(np.take_along_axis(raw, top, axis=1)[valid])
        out_primary.append(np.take_along_axis(evidence, top, axis=1)[valid])
    row = np.concatenate(out_rows) if out_rows else np.zeros(0, dtype=np.int64)
    frame = pd.DataFrame({"user_id": cases.user_ids[row].astype(str),
                          "item_id": cases.item_ids[np.concatenate(out_items)].astype(str),
                          "score": np.concatenate(out_scores),
                          "source": np.where(np.concatenate(out_primary), primary_source, "popularity")})
    frame["rank"] = frame.groupby("user_id", sort=False).cumcount() + 1
    return frame[["user_id", "item_id", "rank", "score", "source"]]


def select_and_record(run, model: str, export: Export, candidates: list[dict],
                      recommend: Callable[[Cases, dict], pd.DataFrame], *, split: str = "test",
                      keep_history: bool = False, info: dict | None = None,
                      log: Callable[[str], None] = print) -> dict:
    """Pick the candidate with the best valid Recall@10, record it on valid, then rank test once.

    Args:
        candidates: hyperparameter dicts, tried in order (the first wins ties).
        recommend: (cases, params) -> lists (user_id, item_id, rank[, score, source]).
        split: "test" (select on valid, then evaluate test) or "valid" (selection only).

    Returns:
        {"selection": [{params, valid_recall@10}], "best": params, "valid": metrics, "test": metrics}
    """
    valid = build_cases(export, "valid")
    selection, best, best_score, best_recs = [], None, -1.0, None
    for params in candidates:
        recs = recommend(valid, params)
        lists = prepare_lists(valid, recs, keep_history=keep_history, where=f"{model} (valid)")
        score = float(gains(hit_ranks(valid, lists), SELECT_K)[0].mean())
        selection.append({"params": params, f"valid_recall@{SELECT_K}": score})
        if len(candidates) > 1:
            log(f"  {model} {params}: valid Recall@{SELECT_K} = {score:.4f}")
        if score > best_score:
            best, best_score, best_recs = params, score, recs
    info = {**(info or {}), "params": best, "selection": selection, "selected_by": f"valid recall@{SELECT_K}"}
    out = {"selection": selection, "best": best}
    out["valid"] = record_model(run, model, best_recs, split="valid", info=info,
                                keep_history=keep_history, export=export)
    if split == "test":
        test = build_cases(export, "test")
        out["test"] = record_model(run, model, recommend(test, best), split="test", info=info,
                                   keep_history=keep_history, export=export)
    return out
