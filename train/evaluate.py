"""One evaluator for every model: full-ranking Recall@K / NDCG@K, per memorization segment.

Protocol (leave-one-out, `ingest.schema`): each sequence is a training part (all but the last two
items), a validation item and a test item.
- test cases: history = the sequence without its last item, target = the last item;
- valid cases: history = the training part, target = the validation item.
Users whose history would be empty (sequences of one or two items) are not evaluated.

A model only hands in a ranked list per user (`user_id, item_id, rank`, rank 1-based) and calls
`record_model`. The evaluator ranks over *all* items (no sampled negatives): a user whose target is
not in the list scores 0, and users missing from the list count as 0 (and are reported). History items
are removed from each list and the remaining items re-ranked (default; `keep_history=True` keeps them,
which datasets with repeat visits such as Yelp need), so a model that re-recommends history items
loses those slots. Metrics for a single held-out target:

    Recall@K = 1 if the target's rank r <= K else 0
    NDCG@K   = 1 / log2(r + 1) if r <= K else 0      (the ideal DCG of one relevant item is 1)

Memorization rate@K: the share of a model's top-K slots holding a training successor of the user's
last history item (a `NEXT` edge). One-hop hits@K: hits on one-hop covered users (`train.segments`).

Gain decomposition between models A and B over the users both were evaluated on: with per-user gain
difference d_u = g_A(u) - g_B(u) and segment shares n_s / n,

    delta = mean_u d_u = sum_s (n_s / n) * mean_{u in s} d_u = sum_s contribution_s     (exact)

and the share of the gain from one-hop covered users is contribution_one_hop / delta. 95% confidence
intervals come from a seeded, vectorized paired bootstrap over users.

Outputs, per model folder `runs/<name>/models/<model>/`:
    recommendations_<split>.parquet   the evaluated lists (user_id, item_id, rank after history
                                      removal, model_rank as handed in, plus any score/source column)
    metrics_<split>.json              overall, per segment, memorization, one-hop hits
    info.json                         the config that produced the model, per split
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common.files import write_json, write_parquet
from graph.export import Export, load_export
from graph.rundir import RunPaths, git_commit
from graph.store import StoreConfig
from common.errors import IirgError

KS = (1, 5, 10, 20)
Split = Literal["valid", "test"]
SPLITS: tuple[str, ...] = ("valid", "test")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
EXTRA_COLUMNS = ("score", "source")  # optional recommendation columns kept in the saved lists


class EvaluationError(IirgError):
    """Recommendations or cases that cannot be evaluated (unknown items, duplicate ranks, ...)."""


# --------------------------------------------------------------------------------------------
# Evaluation cases
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Ranked lists
# --------------------------------------------------------------------------------------------
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


def _examples(values, n: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:n])


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
                              f"{_examples(np.flatnonzero(bad))}: {_examples(recs['rank'][bad])}")
    rows = cases.rows_of(recs["user_id"])
    if (rows < 0).any():
        unknown = pd.unique(recs["user_id"][rows < 0])
        raise EvaluationError(f"{where}: {len(unknown)} user(s) are not evaluated in split "
                              f"{cases.split!r} (field 'user_id'): {_examples(unknown)}")
    items = codes_of(recs["item_id"], cases.item_ids)
    if (items < 0).any():
        unknown = pd.unique(recs["item_id"][items < 0])
        raise EvaluationError(f"{where}: {len(unknown)} unknown item id(s) (field 'item_id'), "
                              f"not in the export's items: {_examples(unknown)}")
    model_rank = rank.astype(np.int64)
    for field, second, width in (("rank", model_rank, int(model_rank.max(initial=0)) + 1),
                                 ("item_id", items, cases.n_items)):
        keys = rows.astype(np.int64) * width + second
        ordered = np.sort(keys)
        dup_keys = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(dup_keys):
            users = pd.unique(cases.user_ids[rows[is_member(keys, sorted_unique(dup_keys))]])
            raise EvaluationError(f"{where}: duplicate {field} within a user's list (field "
                                  f"{field!r}) for user(s) {_examples(users)}")
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


def hit_ranks(cases: Cases, lists: RankedLists) -> np.ndarray:
    """(n_users,) rank of the target in each user's evaluated list, 0 when it is not there."""
    hit = lists.item == cases.target[lists.row]
    ranks = np.zeros(cases.n_users, dtype=np.int64)
    ranks[lists.row[hit]] = lists.rank[hit]  # items are unique per user: at most one hit
    return ranks


def gains(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (recall@k, ndcg@k) from target ranks (0 = not ranked)."""
    hit = (ranks >= 1) & (ranks <= k)
    ndcg = np.zeros(len(ranks))
    ndcg[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return hit.astype(float), ndcg


def metric_table(ranks: np.ndarray, ks: Iterable[int] = KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        recall, ndcg = gains(ranks, k)
        out[f"recall@{k}"] = float(recall.mean()) if len(ranks) else 0.0
        out[f"ndcg@{k}"] = float(ndcg.mean()) if len(ranks) else 0.0
    return out


def successor_mask(cases: Cases, lists: RankedLists, transitions: np.ndarray) -> np.ndarray:
    """Per list entry: the item is a training successor of the user's last history item."""
    keys = cases.last[lists.row].astype(np.int64) * cases.n_items + lists.item
    return is_member(keys, transitions)


def compute_metrics(cases: Cases, lists: RankedLists, segments: pd.DataFrame,
                    transitions: np.ndarray, *, evaluated: np.ndarray | None = None,
                    ks: Iterable[int] = KS) -> dict:
    """Overall and per-segment metrics, memorization rate and one-hop hits.

    Args:
        segments: `train.segments.label_users` output aligned with the cases (same user order).
        transitions: `next_keys(export)`.
        evaluated: (n_users,) bool mask of the users to score (default: all cases).
    """
    from train.segments import SEGMENTS

    ks = tuple(ks)
    if not np.array_equal(segments["user_id"].to_numpy().astype(str), cases.user_ids.astype(str)):
        raise EvaluationError("segments are not aligned with the evaluation cases; rerun `iirg analyze`")
    mask = np.ones(cases.n_users, dtype=bool) if evaluated is None else evaluated
    ranks = hit_ranks(cases, lists)
    seg = segments["segment"].to_numpy()
    one_hop = segments["one_hop"].to_numpy(dtype=bool)
    per_segment = {}
    for name in SEGMENTS:
        m = mask & (seg == name)
        per_segment[name] = {"n_users": int(m.sum()), "share": float(m.sum() / max(mask.sum(), 1)),
                             **metric_table(ranks[m], ks)}
    groups = {}
    for name, m in (("covered", mask & one_hop), ("uncovered", mask & ~one_hop),
                    ("any_hop", mask & segments["any_hop"].to_numpy(dtype=bool))):
        groups[name] = {"n_users": int(m.sum()), **metric_table(ranks[m], ks)}
    in_mask = mask[lists.row]
    succ = successor_mask(cases, lists, transitions) & in_mask
    memorization, one_hop_hits = {}, {}
    for k in ks:
        slots = in_mask & (lists.rank <= k)
        memorization[f"@{k}"] = float(succ[slots].mean()) if slots.any() else 0.0
        hits = mask & (ranks >= 1) & (ranks <= k)
        covered_hits = int((hits & one_hop).sum())
        one_hop_hits[f"@{k}"] = {"hits": int(hits.sum()), "covered_hits": covered_hits,
                                 "share_of_hits": covered_hits / hits.sum() if hits.any() else 0.0}
    lengths = np.bincount(lists.row[in_mask], minlength=cases.n_users)[mask & lists.listed]
    return {
        "n_users": int(mask.sum()),
        "n_users_with_list": int((mask & lists.listed).sum()),
        "n_missing": int((mask & ~lists.listed).sum()),
        "history_items_dropped": lists.history_dropped,
        "mean_list_length": float(lengths.mean()) if len(lengths) else 0.0,
        "min_list_length": int(lengths.min()) if len(lengths) else 0,
        "overall": metric_table(ranks[mask], ks),
        "segments": per_segment,
        "groups": groups,
        "memorization_rate": memorization,
        "one_hop_hits": one_hop_hits,
    }


# --------------------------------------------------------------------------------------------
# Recording a model
# --------------------------------------------------------------------------------------------

def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (Path, np.ndarray)):
        return str(value) if isinstance(value, Path) else value.tolist()
    return str(value)



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


def record_model(run: RunPaths, model: str, recommendations: pd.DataFrame, *, split: str = "test",
                 store: StoreConfig | None = None, info: dict | None = None,
                 keep_history: bool = False, users: Iterable[str] | None = None,
                 export: Export | None = None) -> dict:
    """Validate, save, evaluate and (optionally) write a model's ranked lists to the graph.

    Args:
        recommendations: user_id, item_id, rank (1-based), optionally score and source.
        store: write (:User)-[:RECOMMENDED {model, rank, split}]->(:Item) there, replacing this
            model's edges for this split (None: no graph write).
        info: the config that produced the lists; saved in models/<model>/info.json.
        keep_history: do not remove history items from the lists (repeat-visit datasets).
        users: evaluate only these users (e.g. a seeded sample for a slow model); default all
            evaluated users of the split. Users of this set without a list score 0.
        export: an already loaded export of this run (default: load run/export).

    Returns:
        The metrics dict also written to models/<model>/metrics_<split>.json.

    Raises:
        EvaluationError: invalid lists (see `prepare_lists`) or model name.
    """
    from train import segments as segmentation

    if not MODEL_NAME.match(model):
        raise EvaluationError(f"model name {model!r} must be letters, digits, '.', '_' or '-'")
    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {SPLITS}, not {split!r}")
    export = load_export(run.export) if export is None else export
    cases = build_cases(export, split)  # type: ignore[arg-type]
    where = f"{model} recommendations ({split})"
    lists = prepare_lists(cases, recommendations, keep_history=keep_history, where=where)
    mask = None
    if users is not None:
        rows = cases.rows_of(users)
        if (rows < 0).any():
            raise EvaluationError(f"{where}: `users` holds {int((rows < 0).sum())} user(s) not "
                                  f"evaluated in split {split!r}")
        mask = np.zeros(cases.n_users, dtype=bool)
        mask[rows] = True
        if (lists.listed & ~mask).any():
            raise EvaluationError(f"{where}: lists for users outside the `users` subset")
    labels = segmentation.segments_for(run, export, split, cases=cases)  # type: ignore[arg-type]
    metrics = compute_metrics(cases, lists, labels, next_keys(export, cases.n_items), evaluated=mask)
    metrics = {"model": model, "split": split, "keep_history": keep_history,
               "subset": users is not None, "dataset": export.manifest.get("dataset"),
               "dataset_checksum": export.manifest.get("dataset_checksum"), "ks": list(KS),
               **metrics,
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "git_commit": git_commit()}

    folder = run.model(model)
    folder.mkdir(parents=True, exist_ok=True)
    frame = evaluated_lists_frame(cases, lists)
    write_parquet(folder / f"recommendations_{split}.parquet", frame)
    if mask is not None:
        write_parquet(folder / f"users_{split}.parquet",
                       pd.DataFrame({"user_id": cases.user_ids[mask].astype(str)}))
    elif (folder / f"users_{split}.parquet").exists():
        (folder / f"users_{split}.parquet").unlink()
    write_json(folder / f"metrics_{split}.json", metrics, default=_json_default)
    info_path = folder / "info.json"
    saved = json.loads(info_path.read_text()) if info_path.exists() else {}
    saved.update({"model": model, "keep_history": keep_history})
    saved.setdefault("splits", {})[split] = {
        "config": info or {}, "recorded_at": metrics["created_at"], "git_commit": metrics["git_commit"]}
    write_json(info_path, saved, default=_json_default)
    compact = {k: v for k, v in (info or {}).items() if k not in ("history", "selection")}
    run.record_config(f"model.{model}.{split}", {"keep_history": keep_history, **compact,
                                                 "info": str(info_path)})
    if store is not None:
        try:
            with run.lock(on_wait=print):  # a build must not swap the store during the write
                write_recommendations(store, model, split, frame)
        except IirgError as e:  # the results are saved: say so rather than lose them in a traceback
            raise EvaluationError(f"{model} ({split}) is evaluated and saved in {folder}, but writing "
                                  f"its RECOMMENDED edges to {store.describe()} failed: {e}") from e
    return metrics


def write_recommendations(store: StoreConfig, model: str, split: str, frame: pd.DataFrame,
                          *, max_rank: int = max(KS)) -> int:
    """Replace the model's RECOMMENDED edges for this split with `frame` (ranks <= max_rank)."""
    from graph import analysis_queries as AQ
    from graph.store import open_store

    rows = frame.loc[frame["rank"] <= max_rank, ["user_id", "item_id", "rank"]].assign(
        model=model, split=split)[["user_id", "item_id", "model", "rank", "split"]]
    rows["rank"] = rows["rank"].astype("int64")
    params = {"model": model, "split": split}
    with open_store(store) as graph:
        if graph.dialect == "ladybug" and hasattr(graph, "copy_from"):
            if int(graph.run(AQ.COUNT_RECOMMENDED_QUERY, params)[0]["edges"]):
                _rebuild_recommended_ladybug(graph, params, rows)
            else:
                graph.copy_from("RECOMMENDED", rows)
            return len(rows)
        graph.run(AQ.DELETE_RECOMMENDED_QUERY, params)
        return graph.write_batch(AQ.CREATE_RECOMMENDED_QUERY, rows.to_dict("records"))


def _rebuild_recommended_ladybug(graph, params: dict, rows: pd.DataFrame) -> None:
    """Swap one model/split's edges: keep the others, re-create the table, COPY all back."""
    from graph import analysis_queries as AQ
    from graph.queries import SCHEMA_QUERIES_LADYBUG

    ddl = [s for s in SCHEMA_QUERIES_LADYBUG if "REL TABLE IF NOT EXISTS RECOMMENDED(" in s]
    if len(ddl) != 1:
        raise EvaluationError("graph.queries has no single RECOMMENDED table definition")
    kept = graph.run_df(AQ.READ_OTHER_RECOMMENDED_QUERY_LADYBUG, params)
    graph.run(AQ.DROP_RECOMMENDED_TABLE_QUERY_LADYBUG)
    graph.run(ddl[0])
    graph.copy_from("RECOMMENDED", pd.concat([kept.astype({"rank": "int64"}), rows], ignore_index=True))


# --------------------------------------------------------------------------------------------
# Comparing two models
# --------------------------------------------------------------------------------------------
def compare_gains(gain_a: np.ndarray, gain_b: np.ndarray, segment: np.ndarray,
                  segment_names: Iterable[str], *, covered: str = "one_hop", n_boot: int = 1000,
                  seed: int = 0, level: float = 0.95, chunk: int = 100) -> dict:
    """Gain decomposition of mean(gain_a - gain_b) over segments, with paired bootstrap CIs.

    delta = sum over segments of share_s * delta_s exactly (contribution_s = sum_{u in s} d_u / n).
    Bootstrap: users are resampled with replacement (same resample for every quantity), `n_boot`
    times in chunks of `chunk` resamples, seeded.
    """
    names = list(segment_names)
    code = pd.Categorical(segment, categories=names).codes
    if (code < 0).any():
        raise EvaluationError(f"unknown segment label(s): {_examples(pd.unique(segment[code < 0]))}")
    d = np.asarray(gain_a, float) - np.asarray(gain_b, float)
    n, s = len(d), len(names)
    if n == 0:
        raise EvaluationError("no users to compare")
    counts = np.bincount(code, minlength=s)
    sums = np.bincount(code, weights=d, minlength=s)
    delta = float(d.sum() / n)
    contribution = sums / n
    seg_delta = np.divide(sums, counts, out=np.zeros(s), where=counts > 0)
    rng = np.random.default_rng(seed)
    boot_delta, boot_contrib, boot_seg = [], [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        di, ci = d[idx], code[idx] + (np.arange(b)[:, None] * s)
        bsum = np.bincount(ci.ravel(), weights=di.ravel(), minlength=b * s).reshape(b, s)
        bcnt = np.bincount(ci.ravel(), minlength=b * s).reshape(b, s)
        boot_delta.append(di.mean(axis=1))
        boot_contrib.append(bsum / n)
        boot_seg.append(np.divide(bsum, bcnt, out=np.full((b, s), np.nan), where=bcnt > 0))
    boot_delta = np.concatenate(boot_delta)
    boot_contrib = np.concatenate(boot_contrib)
    boot_seg = np.concatenate(boot_seg)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100

    def ci(values: np.ndarray) -> list[float]:
        values = values[np.isfinite(values)]
        return [float(np.percentile(values, lo)), float(np.percentile(values, hi))] if len(values) else [float("nan")] * 2

    out_segments = {}
    for j, name in enumerate(names):
        out_segments[name] = {"n_users": int(counts[j]), "share": float(counts[j] / n),
                              "delta": float(seg_delta[j]), "delta_ci": ci(boot_seg[:, j]),
                              "contribution": float(contribution[j]),
                              "contribution_ci": ci(boot_contrib[:, j])}
    covered_share = None
    covered_ci = [float("nan")] * 2
    if covered in names and delta != 0:
        j = names.index(covered)
        covered_share = float(contribution[j] / delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            covered_ci = ci(boot_contrib[:, j] / boot_delta)
    return {"n_users": n, "delta": delta, "delta_ci": ci(boot_delta),
            "significant": bool(not (ci(boot_delta)[0] <= 0 <= ci(boot_delta)[1])),
            "segments": out_segments, "covered_segment": covered,
            "covered_share_of_gain": covered_share, "covered_share_ci": covered_ci,
            "n_boot": n_boot, "seed": seed, "level": level}
