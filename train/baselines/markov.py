"""One-hop Markov memorizer: the training successors of the user's last item, by transition count.

    iirg baseline markov --run runs/ml-100k

Items that never followed the last item in a training sequence are back-filled by popularity (their
`source` is "popularity"; successor slots have source "successor"). It is the pure-memorization
reference: on users whose target is not a successor of their last item (not one-hop covered) no
successor slot can hit, so its hits there come from the popularity back-fill alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evaluate.cases import Cases, item_codes
from graph.export import Export
from train.baselines import popularity_counts, rank_users


def transition_counts(export: Export) -> sp.csr_matrix:
    """(n_items, n_items) NEXT counts: [i, j] = how often j directly followed i in training parts."""
    n = len(export.items)
    src = item_codes(export, export.next["src_item_id"], "next.parquet")
    dst = item_codes(export, export.next["dst_item_id"], "next.parquet")
    counts = export.next["count"].fillna(1).to_numpy(dtype=np.float64)
    m = sp.csr_matrix((counts, (src, dst)), shape=(n, n))
    m.sum_duplicates()
    return m


def recommend(export: Export, cases: Cases, *, k: int = 20, keep_history: bool = False) -> pd.DataFrame:
    counts = transition_counts(export)
    last = cases.last
    return rank_users(cases, lambda rows: counts[last[rows]].toarray(), k=k,
                      keep_history=keep_history, backfill=popularity_counts(export),
                      integer_scores=True, primary_source="successor")


def candidates() -> list[dict]:
    return [{}]  # nothing to tune: the ranking is fixed by the counts
