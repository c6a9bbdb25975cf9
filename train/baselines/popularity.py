"""Popularity baseline: every user gets the most interacted training items (ties by item order).

    iirg baseline popularity --run runs/ml-100k
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluate.cases import Cases
from graph.export import Export
from train.baselines import popularity_counts, rank_users


def recommend(export: Export, cases: Cases, *, k: int = 20, keep_history: bool = False) -> pd.DataFrame:
    pop = popularity_counts(export)
    return rank_users(cases, lambda rows: np.broadcast_to(pop, (len(rows), len(pop))), k=k,
                      keep_history=keep_history, primary_source="popularity")


def candidates() -> list[dict]:
    return [{}]  # nothing to tune
