"""Evaluation cases: who is evaluated on which split, with what history and which held-out target.

Protocol (leave-one-out, `ingest.schema`): each sequence is a training part (all but the last two
items), a validation item and a test item.
- test cases: history = the sequence without its last item, target = the last item;
- valid cases: history = the training part, target = the validation item.
Users whose history would be empty (sequences of one or two items) are not evaluated.

Everything is integer arrays: item code i is the export's i-th item (items.parquet order), users are
sorted by id. *Training transitions* are the graph's NEXT edges (`next_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evaluate.errors import EvaluationError
from graph.export import Export

Split = Literal["valid", "test"]
SPLITS: tuple[str, ...] = ("valid", "test")


@dataclass(frozen=True)
class Cases:
    """Evaluated users of one split as integer arrays (item codes index `item_ids`).

    history[indptr[i]:indptr[i+1]] is user i's history in order; target[i] its held-out item.
    """

    split: str
    user_ids: np.ndarray      # (n_users,) str, sorted
    indptr: np.ndarray        # (n_users + 1,) int64
    history: np.ndarray       # (total history length,) int64 item codes
    target: np.ndarray        # (n_users,) int64 item codes
    item_ids: np.ndarray      # (n_items,) str, the export's item order

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def last(self) -> np.ndarray:
        return self.history[self.indptr[1:] - 1]

    @property
    def history_length(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def history_rows(self) -> np.ndarray:
        """User row of every history entry (aligned with `history`)."""
        return np.repeat(np.arange(self.n_users), self.history_length)

    def history_matrix(self, weights: np.ndarray | None = None) -> sp.csr_matrix:
        """(n_users, n_items) matrix: 1 where the item is in the user's history (or summed weights)."""
        data = np.ones(len(self.history)) if weights is None else weights
        m = sp.csr_matrix((data, (self.history_rows, self.history)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if weights is None:
            m.data[:] = 1.0
        return m

    def history_keys(self) -> np.ndarray:
        """Sorted unique user_row * n_items + item codes of every (user, history item) pair."""
        return sorted_unique(self.history_rows.astype(np.int64) * self.n_items + self.history)

    def rows_of(self, user_ids: Iterable[str]) -> np.ndarray:
        """Row of each user id, -1 for users that are not evaluated in this split."""
        return codes_of(user_ids, self.user_ids)


# numpy's np.unique / np.isin hash large int arrays slowly (~1 s for 300k values here); sorting and
# binary search do the same in milliseconds.
def sorted_unique(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def is_member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set (sorted, unique), elementwise."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[idx] == values


def codes_of(values, universe) -> np.ndarray:
    """Position of each value (as text) in `universe` (unique texts), -1 when absent (Arrow hash join)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    vals = pa.array(np.asarray(values, dtype=object).astype(str) if not isinstance(values, (pd.Series, pd.Index))
                    else values.astype(str))
    codes = pc.index_in(vals, value_set=pa.array(np.asarray(universe, dtype=object).astype(str)))
    return codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def item_ids_of(export: Export) -> np.ndarray:
    """The export's item ids (text) in items.parquet order: item code i <-> item_ids[i]."""
    ids = export.items["item_id"].astype(str).to_numpy().astype(object)
    if len(sorted_unique(ids.astype(str))) != len(ids):
        raise EvaluationError("export items.parquet has duplicate item ids")
    return ids


def item_index(export: Export) -> pd.Index:
    return pd.Index(item_ids_of(export))


def item_codes(export: Export, values, where: str) -> np.ndarray:
    """Codes of item ids referenced by an export file; raises when one is not in items.parquet."""
    codes = codes_of(values, item_ids_of(export))
    if (codes < 0).any():
        raise EvaluationError(f"export {where} refers to items missing from items.parquet")
    return codes


def build_cases(export: Export, split: Split) -> Cases:
    """The evaluated users of `split` with their history and target (see module docstring)."""
    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {SPLITS}, not {split!r}")
    item_ids = item_ids_of(export)
    inter = export.interactions
    # Integer user codes in sorted user-id order; everything below is integer arithmetic.
    user_codes, user_ids = pd.factorize(inter["user_id"].astype(str), sort=True)
    order = np.lexsort((inter["pos"].to_numpy(), user_codes))
    inter, user_codes = inter.iloc[order], user_codes[order]
    codes = codes_of(inter["item_id"], item_ids)
    if (codes < 0).any():
        bad = inter["item_id"][codes < 0].iloc[0]
        raise EvaluationError(f"export interactions.parquet: item {bad!r} is not in items.parquet")
    pos = inter["pos"].to_numpy()
    n_users = len(user_ids)
    is_target = (inter["split"] == split).to_numpy()
    if np.bincount(user_codes[is_target], minlength=n_users).max(initial=0) > 1:
        raise EvaluationError(f"export interactions.parquet: a user has several {split!r} rows")
    target_pos = np.full(n_users, -1, dtype=np.int64)
    target_pos[user_codes[is_target]] = pos[is_target]
    target_item = np.full(n_users, -1, dtype=np.int64)
    target_item[user_codes[is_target]] = codes[is_target]
    # History = everything before the target position (train part for valid; train + valid for test).
    in_history = pos < target_pos[user_codes]
    counts = np.bincount(user_codes[in_history], minlength=n_users)
    evaluated = (counts > 0) & (target_pos >= 0)
    keep = in_history & evaluated[user_codes]
    # inter is sorted by user then position, so each history is one contiguous run, in order.
    indptr = np.concatenate([[0], np.cumsum(counts[evaluated])]).astype(np.int64)
    return Cases(split=split, user_ids=np.asarray(user_ids, dtype=object)[evaluated], indptr=indptr,
                 history=codes[keep].astype(np.int64), target=target_item[evaluated],
                 item_ids=item_ids)


def eval_cases(export: Export, split: Split) -> pd.DataFrame:
    """One row per evaluated user: user_id, history (item ids in order), target_item_id."""
    cases = build_cases(export, split)
    ids = cases.item_ids
    history = np.split(ids[cases.history], cases.indptr[1:-1])
    return pd.DataFrame({"user_id": cases.user_ids,
                         "history": [list(h) for h in history],
                         "target_item_id": ids[cases.target]})


def next_keys(export: Export, n_items: int | None = None) -> np.ndarray:
    """Sorted src * n_items + dst codes of every training transition (NEXT edge)."""
    n = len(export.items) if n_items is None else n_items
    src = item_codes(export, export.next["src_item_id"], "next.parquet")
    dst = item_codes(export, export.next["dst_item_id"], "next.parquet")
    return sorted_unique(src * n + dst)
