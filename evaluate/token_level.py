"""Token-level memorization: is (last item -> target) a training transition between semantic-ID
code prefixes, even when it is not one between the items themselves?

Semantic IDs (`iirg sid`, written by `train.sid`) give every item a tuple of codes; items sharing a
prefix of codes are close in embedding space. For each evaluated user and level l, a training
transition a -> b covers the user at level l when prefix_l(a) = prefix_l(last item) and
prefix_l(b) = prefix_l(target). The user's token level is the deepest covered level (0: not even
the first code; the full SID is the item, so the top level is exactly `one_hop`). `iirg report`
splits each model's Recall@K by token level (`evaluate.report.token_level_table`).

The SIDs are read here from the export (`export/sids.parquet`, `export/sid.json`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from common.errors import IirgError
from evaluate.cases import build_cases, item_codes
from graph.export import Export

SIDS_FILE = "sids.parquet"
SID_STATS_FILE = "sid.json"


class SIDError(IirgError):
    """Semantic IDs cannot be made or read (no embeddings, bad settings, stale file)."""


def load_sids(export: Export) -> tuple[np.ndarray, dict]:
    """(n_items, n_codes) codes in export item order, and the SID statistics.

    Raises SIDError when `iirg sid` has not run or the SIDs belong to another dataset build.
    """
    directory = export.directory
    path = directory / SIDS_FILE if directory is not None else None
    if path is None or not path.exists():
        raise SIDError(f"no {SIDS_FILE} in the export: run `iirg sid --run <run>` first")
    stats = json.loads((directory / SID_STATS_FILE).read_text())
    if stats.get("dataset_checksum") != export.manifest.get("dataset_checksum"):
        raise SIDError(f"{path} was made for another dataset build: run `iirg sid` again")
    frame = pd.read_parquet(path)
    by_id = dict(zip(frame["item_id"].astype(str), frame["sid_codes"]))
    item_ids = export.items["item_id"].astype(str)
    missing = [i for i in item_ids if i not in by_id]
    if missing:
        raise SIDError(f"{path}: {len(missing)} items have no SID (e.g. {missing[:3]}): run `iirg sid` again")
    codes = np.asarray([np.asarray(by_id[i], dtype=np.int64) for i in item_ids], dtype=np.int64)
    if len({tuple(r) for r in codes.tolist()}) != len(codes):
        raise SIDError(f"{path}: two items share a SID")
    return codes, stats


def prefix_keys(codes: np.ndarray, level: int) -> np.ndarray:
    """(n_items,) integer id of each item's first `level` codes (equal ids = equal prefixes)."""
    return pd.MultiIndex.from_arrays([codes[:, i] for i in range(level)]).factorize()[0] \
        if level > 1 else codes[:, 0].copy()


def token_level_coverage(codes: np.ndarray, src: np.ndarray, dst: np.ndarray, last: np.ndarray,
                         target: np.ndarray) -> np.ndarray:
    """(n_users, n_codes) bool: (prefix_l(last) -> prefix_l(target)) is a training transition at level l.

    A transition a -> b of the training data counts at level l when prefix_l(a) = prefix_l(last)
    and prefix_l(b) = prefix_l(target). At the last level the prefix is the whole SID, i.e. the
    item itself, so that column equals the item-level one-hop flag.
    """
    out = np.zeros((len(last), codes.shape[1]), dtype=bool)
    for level in range(1, codes.shape[1] + 1):
        key = prefix_keys(codes, level).astype(np.int64)
        base = int(key.max()) + 1
        seen = np.unique(key[src] * base + key[dst])
        pairs = key[last] * base + key[target]
        pos = np.searchsorted(seen, pairs).clip(max=max(len(seen) - 1, 0))
        out[:, level - 1] = (seen[pos] == pairs) if len(seen) else False
    return out


def token_level_labels(export: Export, codes: np.ndarray, split: str = "test") -> pd.DataFrame:
    """Per evaluated user: covered_l1..covered_lL and `token_level`, the deepest covered level
    (0 = not even the first codes' transition occurs in training; n_codes = item-level one-hop)."""
    cases = build_cases(export, split)  # type: ignore[arg-type]
    src = item_codes(export, export.next["src_item_id"], "next.parquet")
    dst = item_codes(export, export.next["dst_item_id"], "next.parquet")
    cover = token_level_coverage(codes, src, dst, cases.last, cases.target)
    frame = pd.DataFrame({"user_id": cases.user_ids})
    for level in range(cover.shape[1]):
        frame[f"covered_l{level + 1}"] = cover[:, level]
    # coverage is monotone (a transition matching finer prefixes matches the coarser ones too), so
    # the count of covered levels is the deepest covered level
    frame["token_level"] = cover.sum(axis=1)
    return frame
