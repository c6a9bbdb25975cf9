"""A model's ranked lists: validated, aligned with the evaluation cases, history items removed.

A model hands in `user_id, item_id, rank` (rank 1-based) and optionally `score` and `source`. History
items are removed from each list and the remaining items re-ranked (default; `keep_history=True`
keeps them, which datasets with repeat visits such as Yelp need), so a model that re-recommends
history items loses those slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluate.cases import Cases, codes_of, is_member, sorted_unique
from evaluate.errors import EvaluationError, examples

EXTRA_COLUMNS = ("score", "source")  # optional recommendation columns kept in the saved lists


@dataclass(frozen=True)
class RankedLists:
    """Validated lists aligned with `Cases` rows, sorted by (row, rank); rank is 1-based, gap-free."""

    row: np.ndarray           # user row in Cases
    item: np.ndarray          # item code
    rank: np.ndarray          # rank after history removal
    model_rank: np.ndarray    # rank as handed in
    listed: np.ndarray        # (n_users,) bool: the user got a list at all
    history_dropped: int      # list entries removed because they were history items
    extra: pd.DataFrame       # optional score/source columns, aligned with row


def prepare_lists(cases: Cases, recommendations: pd.DataFrame, *, keep_history: bool = False,
                  where: str = "recommendations") -> RankedLists:
    """Validate a model's lists and align them with the cases.

    Raises:
        EvaluationError: missing columns, non-integer or < 1 ranks, users not evaluated in this split,
            unknown items, or a user with a duplicate rank or a duplicate item.
    """
    missing = {"user_id", "item_id", "rank"} - set(recommendations.columns)
    if missing:
        raise EvaluationError(f"{where}: missing column(s) {sorted(missing)} "
                              f"(need user_id, item_id, rank)")
    recs = recommendations.reset_index(drop=True)
    rank = pd.to_numeric(recs["rank"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(rank) | (rank < 1) | (rank != np.floor(rank))
    if bad.any():
        raise EvaluationError(f"{where}: field 'rank' must be an integer >= 1; bad values at rows "
                              f"{examples(np.flatnonzero(bad))}: {examples(recs['rank'][bad])}")
    rows = cases.rows_of(recs["user_id"])
    if (rows < 0).any():
        unknown = pd.unique(recs["user_id"][rows < 0])
        raise EvaluationError(f"{where}: {len(unknown)} user(s) are not evaluated in split "
                              f"{cases.split!r} (field 'user_id'): {examples(unknown)}")
    items = codes_of(recs["item_id"], cases.item_ids)
    if (items < 0).any():
        unknown = pd.unique(recs["item_id"][items < 0])
        raise EvaluationError(f"{where}: {len(unknown)} unknown item id(s) (field 'item_id'), "
                              f"not in the export's items: {examples(unknown)}")
    model_rank = rank.astype(np.int64)
    for field, second, width in (("rank", model_rank, int(model_rank.max(initial=0)) + 1),
                                 ("item_id", items, cases.n_items)):
        keys = rows.astype(np.int64) * width + second
        ordered = np.sort(keys)
        dup_keys = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(dup_keys):
            users = pd.unique(cases.user_ids[rows[is_member(keys, sorted_unique(dup_keys))]])
            raise EvaluationError(f"{where}: duplicate {field} within a user's list (field "
                                  f"{field!r}) for user(s) {examples(users)}")
    order = np.lexsort((model_rank, rows))
    frame = pd.DataFrame({"row": rows[order], "item": items[order], "model_rank": model_rank[order]})
    extra = recs[[c for c in EXTRA_COLUMNS if c in recs.columns]].iloc[order].reset_index(drop=True)
    listed = np.zeros(cases.n_users, dtype=bool)
    listed[frame["row"].to_numpy()] = True
    dropped = 0
    if not keep_history:
        keys = frame["row"].to_numpy().astype(np.int64) * cases.n_items + frame["item"].to_numpy()
        in_hist = is_member(keys, cases.history_keys())
        dropped = int(in_hist.sum())
        frame, extra = frame[~in_hist].reset_index(drop=True), extra[~in_hist].reset_index(drop=True)
    row = frame["row"].to_numpy()
    new_rank = pd.Series(row).groupby(row, sort=False).cumcount().to_numpy() + 1
    return RankedLists(row=row, item=frame["item"].to_numpy(), rank=new_rank.astype(np.int64),
                       model_rank=frame["model_rank"].to_numpy(), listed=listed,
                       history_dropped=dropped, extra=extra)


def evaluated_lists_frame(cases: Cases, lists: RankedLists) -> pd.DataFrame:
    import pyarrow as pa

    def take(ids: np.ndarray, idx: np.ndarray) -> pd.Series:  # Arrow take: no per-row Python objects
        return pa.array(ids.astype(str)).take(pa.array(idx)).to_pandas()

    frame = pd.DataFrame({"user_id": take(cases.user_ids, lists.row),
                          "item_id": take(cases.item_ids, lists.item),
                          "rank": lists.rank, "model_rank": lists.model_rank})
    for col in lists.extra.columns:
        frame[col] = lists.extra[col].to_numpy()
    return frame
