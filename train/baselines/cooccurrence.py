"""Item co-occurrence kNN over the graph's collaborative relations (`COLLAB`, export.collab).

    iirg baseline cooc --run runs/ml-100k

score(j) = sum over history positions t of decay^(L-1-t) * w(h_t, j), where w is the COLLAB edge
weight of history item h_t -> j and L the history length (the last item has weight 1). Items without
any edge from the history are back-filled by popularity. The decay and the edge weighting are chosen
on valid Recall@10:
    count   co-occurrence count of the pair within the window
    cosine  count / sqrt(pop_i * pop_j) (damps popular neighbours)
    rank    1 / rank of j among h's neighbours
Semantic back-fill edges (source "semantic_backfill", no co-occurrence count) get the smallest
weight of their anchor's co-occurring neighbours (count/cosine) or their 1/rank.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evaluate.cases import Cases, item_codes
from graph.export import Export
from train.baselines import popularity_counts, rank_users

DECAYS = (1.0, 0.8, 0.6, 0.4, 0.2)
WEIGHTS = ("count", "cosine", "rank")


def collab_matrix(export: Export, weight: str) -> sp.csr_matrix:
    n = len(export.items)
    collab = export.collab
    src = item_codes(export, collab["item_id"], "collab.parquet")
    dst = item_codes(export, collab["neighbor_id"], "collab.parquet")
    count = pd.to_numeric(collab["count"], errors="coerce").fillna(0).to_numpy(dtype=np.float64)
    if weight == "rank":
        w = 1.0 / collab["rank"].to_numpy(dtype=np.float64)
    else:
        w = count.copy()
        if weight == "cosine":
            pop = np.maximum(popularity_counts(export), 1.0)
            w = w / np.sqrt(pop[src] * pop[dst])
        # back-filled edges (no count): the anchor's weakest co-occurrence weight, or a tiny one
        none = w <= 0
        if none.any():
            weakest = pd.Series(np.where(none, np.inf, w)).groupby(src).transform("min").to_numpy()
            floor = w[~none].min() if (~none).any() else 1.0
            w[none] = np.where(np.isfinite(weakest[none]), weakest[none], floor) * 0.5
    m = sp.csr_matrix((w, (src, dst)), shape=(n, n))
    m.sum_duplicates()
    return m


def history_weights(cases: Cases, decay: float) -> sp.csr_matrix:
    """(n_users, n_items): sum of decay^(distance from the end) over each item's history positions."""
    length = cases.history_length
    offset = np.arange(len(cases.history)) - np.repeat(cases.indptr[:-1], length)
    distance = np.repeat(length, length) - 1 - offset
    return cases.history_matrix(weights=np.power(decay, distance, dtype=np.float64))


def recommend(export: Export, cases: Cases, *, decay: float = 0.6, weight: str = "count",
              k: int = 20, keep_history: bool = False) -> pd.DataFrame:
    sim = collab_matrix(export, weight)
    hist = history_weights(cases, decay)
    return rank_users(cases, lambda rows: (hist[rows] @ sim).toarray(), k=k,
                      keep_history=keep_history, backfill=popularity_counts(export),
                      primary_source="collab")


def candidates() -> list[dict]:
    return [{"decay": d, "weight": w} for w, d in itertools.product(WEIGHTS, DECAYS)]
