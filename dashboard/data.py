"""What the dashboard pages show, assembled from graph queries and the run folder's files.

No Streamlit in here: the pages call these functions through the cached wrappers of
`dashboard.cache`, and bench/bench_dashboard.py times exactly the same functions.

    from dashboard.data import user_view
    view = user_view(store, "42")            # history, target, NEXT path, neighbours, top-K lists

Graph side (`graph.dashboard_queries`): the per-user view, the item view, title search, counts.
Files side (written by `iirg analyze` / `iirg baseline` / `iirg evaluate`, read as plain JSON and
Parquet; the dashboard imports evaluate's metrics and segment names, never train/):
    models/<model>/metrics_<split>.json          overall, per segment, groups, memorization rate
    models/<model>/recommendations_<split>.parquet  user_id, item_id, rank (after history removal)
    models/<model>/users_<split>.parquet         the evaluated subset, when the model ran on one
    analysis/segments_<split>.parquet            user_id, segment, target_item_id, ...

Gain decomposition between models A and B: `evaluate.metrics.decompose` (the point estimates of
`iirg report`'s `compare_gains`) over the users both were evaluated on, with per-user gain difference
d_u = g_A(u) - g_B(u),

    delta = mean_u d_u = sum_s (n_s / n) * mean_{u in s} d_u = sum_s contribution_s    (exact)
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluate.metrics import decompose, decompose_means, gains
from evaluate.segments import SEGMENT_LABELS
from graph import analysis_queries as AQ
from graph import dashboard_queries as q
from graph.dashboard_queries import RELATION_COUNT_QUERIES
from graph.relations import RELATIONS, Relation
from graph.store import GraphStore

HISTORY_SPLITS = {"test": ["train", "valid"], "valid": ["train"]}  # what precedes each target


def segment_label(segment: str | None) -> str:
    if segment is None or (isinstance(segment, float) and math.isnan(segment)):
        return "not labelled"
    return SEGMENT_LABELS.get(segment, segment)


def _none(value):
    """pandas' missing markers (NaN, NA) -> None; numpy scalars -> Python scalars."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


# ==================================================================================================
# User explorer
# ==================================================================================================
@dataclass
class NextPath:
    """The shortest NEXT path last item -> target (hops == 1: one-hop memorization)."""

    item_ids: list[str]
    titles: list[str]
    counts: list[int]

    @property
    def hops(self) -> int:
        return len(self.item_ids) - 1


@dataclass
class UserView:
    user_id: str
    split: str = "test"
    found: bool = False
    problem: str | None = None            # why there is nothing to explain (unknown user, no target...)
    segment: str | None = None            # from the User node (test split, written by `iirg analyze`)
    hop: int | None = None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)   # pos, split, ts, item_id, title, ...
    target: dict | None = None            # item_id, title, pos, popularity
    last: dict | None = None
    path: NextPath | None = None          # None: no NEXT path of at most MAX_PATH_HOPS hops
    next_links: pd.DataFrame = field(default_factory=pd.DataFrame)     # history items -NEXT-> target
    collab_links: pd.DataFrame = field(default_factory=pd.DataFrame)   # history items -COLLAB-> target
    similar_links: pd.DataFrame = field(default_factory=pd.DataFrame)  # history items -SIMILAR-> target
    recommendations: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def one_hop(self) -> bool:
        return self.path is not None and self.path.hops == 1

    @property
    def has_explanation(self) -> bool:
        return self.path is not None or any(len(f) for f in (self.next_links, self.collab_links,
                                                             self.similar_links))


class _Timer:
    def __init__(self, seconds: dict):
        self.seconds = seconds

    def __call__(self, store: GraphStore, name: str, query: str, params: dict) -> pd.DataFrame:
        start = time.perf_counter()
        frame = store.run_df(query, params)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return frame


def user_view(store: GraphStore, user_id: str, *, split: str = "test", k: int = 10,
              run_root: Path | None = None) -> UserView:
    """Everything the user explorer shows for one user: at most 12 indexed queries.

    The target is the user's `split` item (test: the last one); the history is what precedes it.
    Top-K lists come from the graph's RECOMMENDED edges and, for models of `run_root`/models/ that
    wrote none for this user (evaluated with --no-graph, or on another store), from their
    recommendations_<split>.parquet, so every evaluated model shows with the same badges.
    """
    view = UserView(user_id=str(user_id), split=split)
    run = _Timer(view.seconds)
    user = run(store, "user", q.USER_QUERY, {"user_id": view.user_id})
    if user.empty:
        view.problem = f"there is no user with id {view.user_id!r} in the graph"
        return view
    view.found = True
    row = user.iloc[0]
    view.segment = _none(row["segment"]) if split == "test" else None
    hop = _none(row["hop"])
    view.hop = int(hop) if hop is not None and split == "test" else None
    sequence = run(store, "history", q.HISTORY_QUERY, {"user_id": view.user_id})
    history_splits = HISTORY_SPLITS[split]
    targets = sequence[sequence["split"] == split]
    view.history = sequence[sequence["split"].isin(history_splits)].reset_index(drop=True)
    if targets.empty or view.history.empty:
        view.problem = (f"user {view.user_id} has {len(sequence)} interaction(s): no {split} target "
                        f"with a non-empty history (sequences of one or two items are not evaluated)")
        return view
    view.target = _record(targets.iloc[0])
    view.last = _record(view.history.iloc[-1])
    target_id, last_id = view.target["item_id"], view.last["item_id"]

    edge = run(store, "next_edge", q.NEXT_EDGE_QUERY, {"source_item_id": last_id, "target_item_id": target_id})
    if len(edge):
        view.path = NextPath([last_id, target_id], [view.last["title"], view.target["title"]],
                             [int(edge["count"].iloc[0])])
    elif last_id != target_id:  # a path from an item to itself is a cycle; the path queries find none
        path = run(store, "shortest_path", q.SHORTEST_NEXT_PATH_QUERY,
                   {"source_item_id": last_id, "target_item_id": target_id})
        if len(path):
            p = path.iloc[0]
            view.path = NextPath([str(i) for i in p["item_ids"]], [str(t) for t in p["titles"]],
                                 [int(c) for c in p["counts"]])
    params = {"user_id": view.user_id, "target_item_id": target_id, "history_splits": history_splits}
    view.next_links = run(store, "next_links", q.HISTORY_NEXT_TO_TARGET_QUERY, params)
    view.collab_links = run(store, "collab_links", q.HISTORY_COLLAB_TO_TARGET_QUERY, params)
    view.similar_links = run(store, "similar_links", q.HISTORY_SIMILAR_TO_TARGET_QUERY, params)
    view.recommendations = _recommendations(store, q, run, view, k, run_root)
    return view


def _record(row: pd.Series) -> dict:
    return {k: _none(v) for k, v in row.items()}


def _folder_recommendations(store, q, run, run_root: Path, user_id: str, split: str, k: int,
                            skip: set[str]) -> pd.DataFrame:
    """The user's top-k of every model in run_root/models/ not in `skip`, from its parquet lists."""
    frames = []
    for path in sorted((Path(run_root) / "models").glob(f"*/recommendations_{split}.parquet")):
        model = path.parent.name
        if model in skip:
            continue
        try:
            # Row-group statistics skip most of a large file; the filter is a value, never text.
            lists = pd.read_parquet(path, columns=["user_id", "item_id", "rank"],
                                    filters=[("user_id", "==", user_id), ("rank", "<=", int(k))])
        except (OSError, ValueError):
            continue   # half-written by a running evaluation: the next load shows it
        if len(lists):
            frames.append(lists.assign(model=model))
    if not frames:
        return pd.DataFrame(columns=["model", "rank", "item_id", "title"])
    recs = pd.concat(frames, ignore_index=True)
    recs["item_id"] = recs["item_id"].astype(str)
    titles = run(store, "titles", q.ITEM_TITLES_QUERY, {"item_ids": sorted(set(recs["item_id"]))})
    title_of = dict(zip(titles["item_id"].astype(str), titles["title"])) if len(titles) else {}
    recs["title"] = recs["item_id"].map(lambda i: title_of.get(i, f"item {i}"))
    return recs[["model", "rank", "item_id", "title"]]


def _recommendations(store, q, run, view: UserView, k: int, run_root: Path | None = None) -> pd.DataFrame:
    """Each model's top-k with badge columns: hit (the target), memorized (a NEXT successor of the last
    item), collab / semantic (a COLLAB / SIMILAR neighbour of the last item)."""
    recs = run(store, "recommendations", q.RECOMMENDATIONS_QUERY,
               {"user_id": view.user_id, "split": view.split, "k": int(k)})
    if run_root is not None:
        extra = _folder_recommendations(store, q, run, run_root, view.user_id, view.split, k,
                                        set(recs["model"]) if len(recs) else set())
        if len(extra):
            recs = extra if recs.empty else pd.concat([recs, extra], ignore_index=True)
    columns = ["model", "rank", "item_id", "title", "hit", "memorized", "collab", "semantic"]
    if recs.empty:
        return pd.DataFrame(columns=columns)
    item_ids = sorted(set(recs["item_id"].astype(str)))
    successors = run(store, "badge_successors", q.SUCCESSORS_AMONG_QUERY,
                     {"source_item_id": view.last["item_id"], "item_ids": item_ids})
    params = {"source_item_id": view.last["item_id"], "item_ids": item_ids}
    collab = run(store, "badge_collab", q.COLLAB_AMONG_QUERY, params)
    similar = run(store, "badge_similar", q.SIMILAR_AMONG_QUERY, params)
    recs = recs.assign(item_id=recs["item_id"].astype(str), rank=recs["rank"].astype(int))
    recs["hit"] = recs["item_id"] == view.target["item_id"]
    recs["memorized"] = recs["item_id"].isin(set(successors["item_id"].astype(str)))
    recs["collab"] = recs["item_id"].isin(set(collab["item_id"].astype(str)))
    recs["semantic"] = recs["item_id"].isin(set(similar["item_id"].astype(str)))
    return recs[columns].sort_values(["model", "rank"], ignore_index=True)


def random_user(store: GraphStore, segment: str | None, n_users: int, rng: random.Random) -> str | None:
    """A uniformly drawn user id (of `segment` when given); `n_users` is how many there are."""
    if n_users <= 0:
        return None
    skip = rng.randrange(n_users)
    if segment is None:
        frame = store.run_df(q.USER_AT_QUERY, {"skip": skip})
    else:
        frame = store.run_df(q.SEGMENT_USER_AT_QUERY, {"segment": segment, "skip": skip})
    return str(frame["user_id"].iloc[0]) if len(frame) else None


# ==================================================================================================
# Item explorer
# ==================================================================================================
SID_TOKEN = re.compile(r"<[^<>]*>")


@dataclass
class SidLevel:
    """The items sharing the first `level` codes of an item's SID."""

    level: int
    prefix: str                   # "<a_12><b_3>": whole tokens, as `STARTS WITH` matches them
    n_items: int                  # other items with this prefix
    items: pd.DataFrame           # a short list of them: item_id, title, sid, popularity


@dataclass
class ItemView:
    item_id: str
    found: bool = False
    item: dict = field(default_factory=dict)
    degree: dict = field(default_factory=dict)     # successors, predecessors, transition totals
    successors: pd.DataFrame = field(default_factory=pd.DataFrame)
    predecessors: pd.DataFrame = field(default_factory=pd.DataFrame)
    # relation name -> the item's neighbours (rank, item_id, title, the spec's columns), for every
    # relation with an item view that the graph has (graph/relations)
    neighbours: dict[str, pd.DataFrame] = field(default_factory=dict)
    has_sids: bool = False                          # the graph has `iirg sid`'s properties
    sid: str | None = None
    sid_levels: list[SidLevel] = field(default_factory=list)

    @property
    def collab(self) -> pd.DataFrame:
        return self.neighbours.get("COLLAB", pd.DataFrame())

    @property
    def similar(self) -> pd.DataFrame:
        return self.neighbours.get("SIMILAR", pd.DataFrame())


def sid_prefixes(sid: str) -> list[str]:
    """"<a_1><b_2><c_3>" -> ["<a_1>", "<a_1><b_2>", "<a_1><b_2><c_3>"]."""
    tokens = SID_TOKEN.findall(sid or "")
    return ["".join(tokens[:n]) for n in range(1, len(tokens) + 1)]


def graph_has_sids(store: GraphStore) -> bool:
    return any(row.get("name") == "sid" for row in store.run(q.SID_PROPERTY_QUERY, {}))


def item_sid_levels(store: GraphStore, item_id: str, sid: str, *, limit: int = 8) -> list[SidLevel]:
    """Per SID prefix, the number of other items sharing it and the `limit` most popular of them.
    The full SID names one item (`iirg sid` disambiguates), so its level only shows a collision
    group when the last code is the disambiguation code: that group is the level before it."""
    prefixes = sid_prefixes(sid)
    counts = {row["prefix"]: int(row["n_items"])
              for row in store.run(q.SID_PREFIX_COUNTS_QUERY, {"prefixes": prefixes, "item_id": item_id})}
    levels = []
    for level, prefix in enumerate(prefixes, start=1):
        n = counts.get(prefix, 0)
        items = (store.run_df(q.SID_PREFIX_ITEMS_QUERY, {"prefix": prefix, "item_id": item_id, "limit": int(limit)})
                 if n else pd.DataFrame(columns=["item_id", "title", "sid", "popularity"]))
        levels.append(SidLevel(level, prefix, n, items))
    return levels


def item_view(store: GraphStore, item_id: str, *, limit: int = 20) -> ItemView:
    view = ItemView(item_id=str(item_id))
    item = store.run_df(q.ITEM_QUERY, {"item_id": view.item_id})
    if item.empty:
        return view
    view.found = True
    view.item = _record(item.iloc[0])
    degree = store.run_df(q.ITEM_DEGREE_QUERY, {"item_id": view.item_id})
    view.degree = {k: int(_none(v) or 0) for k, v in degree.iloc[0].items()} if len(degree) else {}
    params = {"item_id": view.item_id, "limit": int(limit)}
    view.successors = store.run_df(q.ITEM_SUCCESSORS_QUERY, params)
    view.predecessors = store.run_df(q.ITEM_PREDECESSORS_QUERY, params)
    for spec in graph_relations(store):
        if spec.item_view is not None:
            view.neighbours[spec.name] = store.run_df(spec.item_view.query, {"item_id": view.item_id})
    view.has_sids = graph_has_sids(store)
    if view.has_sids:
        sid = store.run_df(q.ITEM_SID_QUERY, {"item_id": view.item_id})
        view.sid = _none(sid["sid"].iloc[0]) if len(sid) else None
        if view.sid:
            view.sid_levels = item_sid_levels(store, view.item_id, view.sid)
    return view


def sid_stats(run_root: Path) -> dict | None:
    """export/sid.json of `iirg sid` (method, levels, collision_rate, usage per level), or None."""
    stats = read_json(Path(run_root) / "export" / "sid.json")
    return stats if isinstance(stats, dict) else None


def token_level_table(run_root: Path, split: str) -> pd.DataFrame | None:
    """report/token_level_<split>.csv of `iirg report` (model, group, token_level, n_users,
    recall@K, hits@K, share_of_group_hits), or None when the report has none (no SIDs, no report)."""
    path = Path(run_root) / "report" / f"token_level_{split}.csv"
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype={"model": str, "group": str})
    except (OSError, ValueError):
        return None
    if not {"model", "group", "token_level", "n_users"} <= set(frame.columns):
        return None
    if not any(c.startswith("recall@") for c in frame.columns):
        return None
    return frame


def token_level_wide(frame: pd.DataFrame, group: str) -> tuple[pd.DataFrame, int]:
    """One row per token level: n_users, then each model's Recall@K; and K."""
    recall = next(c for c in frame.columns if c.startswith("recall@"))
    k = int(recall.split("@")[1])
    rows = frame[frame["group"] == group]
    wide = rows.pivot_table(index="token_level", columns="model", values=recall, sort=True, dropna=False)
    users = rows.drop_duplicates("token_level").set_index("token_level")["n_users"]
    wide.insert(0, "users", users.reindex(wide.index).astype("Int64"))
    wide.columns.name = None
    return wide.reset_index(), k


def search_titles(store: GraphStore, text: str, *, limit: int = 25) -> pd.DataFrame:
    return store.run_df(q.TITLE_SEARCH_QUERY, {"text": text, "limit": int(limit)})


# ==================================================================================================
# Overview: graph counts and segments
# ==================================================================================================
def graph_counts(store: GraphStore) -> dict[str, int]:
    """users, items and the edges of every relationship type (0 for a type the graph lacks)."""
    counts = {k: int(v) for k, v in store.run_df(q.NODE_COUNTS_QUERY).iloc[0].items()}
    present = {row["name"] for row in store.run(q.RELATIONSHIP_TYPES_QUERY)}
    for name, query in RELATION_COUNT_QUERIES.items():
        counts[name] = int(store.run_df(query)["n"].iloc[0]) if name in present else 0
    return counts


def graph_relations(store: GraphStore) -> list[Relation]:
    """The registry's relations this graph has: every one a build always makes, and each optional
    one (`iirg build --extra-relations`) that has edges."""
    present = {row["name"] for row in store.run(q.RELATIONSHIP_TYPES_QUERY)}
    return [spec for spec in RELATIONS.values()
            if not spec.optional or (spec.name in present
                                     and int(store.run_df(RELATION_COUNT_QUERIES[spec.name])["n"].iloc[0]))]


def segment_counts(store: GraphStore) -> pd.DataFrame:
    """segment, label, n_users, share (in SEGMENT_LABELS order); empty when no user is labelled."""
    frame = store.run_df(AQ.SEGMENT_COUNTS_QUERY)
    if frame.empty:
        return pd.DataFrame(columns=["segment", "label", "n_users", "share"])
    order = {name: i for i, name in enumerate(SEGMENT_LABELS)}
    frame = frame.assign(n_users=frame["n_users"].astype(int),
                         order=frame["segment"].map(lambda s: order.get(s, len(order))))
    frame = frame.sort_values(["order", "segment"], ignore_index=True).drop(columns="order")
    frame.insert(1, "label", frame["segment"].map(segment_label))
    frame["share"] = frame["n_users"] / frame["n_users"].sum()
    return frame


def recommended_models(store: GraphStore) -> pd.DataFrame:
    return store.run_df(AQ.RECOMMENDED_MODELS_QUERY)


# ==================================================================================================
# Run folder: manifest, evaluated models, gain decomposition
# ==================================================================================================
def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is absent or unreadable (half-written, not JSON)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def export_manifest(run_root: Path) -> dict | None:
    return read_json(Path(run_root) / "export" / "manifest.json")


@dataclass
class ModelMetrics:
    model: str
    split: str
    path: Path
    metrics: dict


def load_model_metrics(run_root: Path, split: str) -> tuple[list[ModelMetrics], list[str]]:
    """Every models/<model>/metrics_<split>.json, sorted by model; plus the files that were skipped."""
    models, skipped = [], []
    folder = Path(run_root) / "models"
    for path in sorted(folder.glob(f"*/metrics_{split}.json")) if folder.is_dir() else []:
        metrics = read_json(path)
        if not isinstance(metrics, dict) or "segments" not in metrics or "overall" not in metrics:
            skipped.append(str(path))
            continue
        models.append(ModelMetrics(model=path.parent.name, split=split, path=path, metrics=metrics))
    return models, skipped


def available_ks(models: list[ModelMetrics]) -> list[int]:
    """Cut-offs every model reports (metric keys recall@K)."""
    common = None
    for m in models:
        ks = {int(key.split("@")[1]) for key in m.metrics["overall"] if key.startswith("recall@")}
        common = ks if common is None else common & ks
    return sorted(common or [])


def segment_metrics_table(models: list[ModelMetrics], k: int) -> pd.DataFrame:
    """One row per model x (all users, each segment, covered/uncovered groups)."""
    rows = []
    for m in models:
        overall = m.metrics["overall"]
        n_users = m.metrics.get("n_users")
        rows.append({"model": m.model, "group": "all users", "segment": "all", "n_users": n_users,
                     "share": 1.0, "recall": overall.get(f"recall@{k}"), "ndcg": overall.get(f"ndcg@{k}")})
        for segment, values in m.metrics["segments"].items():
            rows.append({"model": m.model, "group": segment_label(segment), "segment": segment,
                         "n_users": values.get("n_users"), "share": values.get("share"),
                         "recall": values.get(f"recall@{k}"), "ndcg": values.get(f"ndcg@{k}")})
        for group, values in (m.metrics.get("groups") or {}).items():
            rows.append({"model": m.model, "group": f"({group})", "segment": group,
                         "n_users": values.get("n_users"),
                         "share": (values.get("n_users") or 0) / n_users if n_users else None,
                         "recall": values.get(f"recall@{k}"), "ndcg": values.get(f"ndcg@{k}")})
    return pd.DataFrame(rows, columns=["model", "group", "segment", "n_users", "share", "recall", "ndcg"])


def memorization_table(models: list[ModelMetrics], k: int) -> pd.DataFrame:
    rows = []
    for m in models:
        hits = (m.metrics.get("one_hop_hits") or {}).get(f"@{k}", {})
        rows.append({"model": m.model, "users": m.metrics.get("n_users"),
                     "subset": bool(m.metrics.get("subset")),
                     f"memorization rate@{k}": (m.metrics.get("memorization_rate") or {}).get(f"@{k}"),
                     f"hits@{k}": hits.get("hits"), f"hits on one-hop covered users@{k}": hits.get("covered_hits"),
                     "share of hits from covered users": hits.get("share_of_hits")})
    return pd.DataFrame(rows)


@dataclass
class Decomposition:
    model_a: str
    model_b: str
    metric: str
    n_users: int
    delta: float                  # mean over common users of g_A - g_B
    table: pd.DataFrame           # segment, label, n_users, share, mean_a, mean_b, delta, contribution
    source: str                   # how it was computed (per-user lists, or per-segment means)

    @property
    def covered_share(self) -> float | None:
        """Share of the gain that comes from one-hop covered users (None when delta is 0)."""
        if self.delta == 0:
            return None
        row = self.table[self.table["segment"] == "one_hop"]
        return float(row["contribution"].iloc[0] / self.delta) if len(row) else 0.0


def _per_user_gains(run_root: Path, model: str, split: str, segments: pd.DataFrame, metric: str,
                    k: int) -> pd.Series | None:
    """Per evaluated user gain of `model` (index user_id), from its evaluated lists; None if absent."""
    folder = Path(run_root) / "models" / model
    path = folder / f"recommendations_{split}.parquet"
    if not path.exists():
        return None
    lists = pd.read_parquet(path, columns=["user_id", "item_id", "rank"])
    lists = lists.assign(user_id=lists["user_id"].astype(str), item_id=lists["item_id"].astype(str))
    target = segments.set_index("user_id")["target_item_id"]
    hits = lists[lists["item_id"].to_numpy() == target.reindex(lists["user_id"]).to_numpy()]
    rank = hits.groupby("user_id")["rank"].min().reindex(segments["user_id"]).fillna(0).to_numpy()
    recall, ndcg = gains(rank.astype(np.int64), k)
    gain = ndcg if metric == "ndcg" else recall
    users = folder / f"users_{split}.parquet"
    evaluated = pd.read_parquet(users)["user_id"].astype(str) if users.exists() else segments["user_id"]
    series = pd.Series(gain, index=segments["user_id"].to_numpy())
    return series[series.index.isin(set(evaluated))]


def gain_decomposition(run_root: Path, split: str, model_a: ModelMetrics, model_b: ModelMetrics,
                       metric: str, k: int) -> Decomposition:
    """Decompose metric@k(A) - metric@k(B) over segments (see the module docstring).

    Exact per user from the evaluated lists and analysis/segments_<split>.parquet when both exist
    (restricted to the users both models were evaluated on); otherwise from the per-segment means of
    the two metrics files, which is exact when both were evaluated on the same users.
    """
    if metric not in ("recall", "ndcg"):
        raise ValueError("metric must be 'recall' or 'ndcg'")
    run_root = Path(run_root)
    seg_path = run_root / "analysis" / f"segments_{split}.parquet"
    if seg_path.exists():
        segments = pd.read_parquet(seg_path, columns=["user_id", "segment", "target_item_id"])
        segments = segments.assign(user_id=segments["user_id"].astype(str),
                                   target_item_id=segments["target_item_id"].astype(str))
        gains_a = _per_user_gains(run_root, model_a.model, split, segments, metric, k)
        gains_b = _per_user_gains(run_root, model_b.model, split, segments, metric, k)
        if gains_a is not None and gains_b is not None:
            common = gains_a.index.intersection(gains_b.index)
            seg = segments.set_index("user_id")["segment"].reindex(common).astype(str).to_numpy()
            a, b = gains_a[common].to_numpy(), gains_b[common].to_numpy()
            n = len(common)
            if n:
                names = [*SEGMENT_LABELS, *sorted(set(seg) - set(SEGMENT_LABELS))]
                table = decompose(a, b, seg, names)
                table = _labelled(table[table["n_users"] > 0].reset_index(drop=True))
            else:
                table = _labelled(decompose_means([], [], [], []))
            delta = float((a - b).mean()) if n else 0.0
            return Decomposition(model_a.model, model_b.model, f"{metric}@{k}", n, delta, table,
                                 source=f"per user, from the evaluated lists of the {n:,} users both models "
                                        "were evaluated on")
    seg_a, seg_b = model_a.metrics["segments"], model_b.metrics["segments"]
    same_users = (model_a.metrics.get("n_users") == model_b.metrics.get("n_users")
                  and not model_a.metrics.get("subset") and not model_b.metrics.get("subset"))
    names = [s for s in SEGMENT_LABELS if s in seg_a] + [s for s in seg_a if s not in SEGMENT_LABELS]
    table = _labelled(decompose_means(
        names, [seg_a[s].get("n_users", 0) for s in names], [seg_a[s].get(f"{metric}@{k}", 0.0) for s in names],
        [seg_b.get(s, {}).get(f"{metric}@{k}", 0.0) for s in names]))
    n = int(table["n_users"].sum())
    delta = float(table["contribution"].sum()) if n else 0.0
    source = "per segment, from the two metrics files"
    if not same_users:
        source += " (the models were evaluated on different users: approximate)"
    return Decomposition(model_a.model, model_b.model, f"{metric}@{k}", n, delta, table, source=source)


def _labelled(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table.insert(1, "label", table["segment"].map(segment_label))
    table["n_users"] = table["n_users"].astype(int)
    return table[["segment", "label", "n_users", "share", "mean_a", "mean_b", "delta", "contribution"]]


def report_intervals(run_root: Path, split: str, model_a: str, model_b: str, metric: str) -> pd.DataFrame | None:
    """Bootstrap confidence intervals of A - B per segment (and 'all') from `iirg report`'s
    report/decomposition_<split>.csv, oriented as A - B; None when the report lacks the pair.

    Columns: segment, delta_ci_low, delta_ci_high, contribution_ci_low, contribution_ci_high.
    """
    path = Path(run_root) / "report" / f"decomposition_{split}.csv"
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype={"a": str, "b": str, "segment": str})
    except (OSError, ValueError):
        return None
    columns = ["delta_ci_low", "delta_ci_high", "contribution_ci_low", "contribution_ci_high"]
    if not {"a", "b", "metric", "segment", *columns} <= set(frame.columns):
        return None
    rows = frame[(frame["a"] == model_a) & (frame["b"] == model_b) & (frame["metric"] == metric)]
    if len(rows):
        return rows[["segment", *columns]].reset_index(drop=True)
    rows = frame[(frame["a"] == model_b) & (frame["b"] == model_a) & (frame["metric"] == metric)]
    if not len(rows):
        return None
    # B - A reported: negate and swap the bounds.
    return pd.DataFrame({"segment": rows["segment"].to_numpy(),
                         "delta_ci_low": -rows["delta_ci_high"].to_numpy(),
                         "delta_ci_high": -rows["delta_ci_low"].to_numpy(),
                         "contribution_ci_low": -rows["contribution_ci_high"].to_numpy(),
                         "contribution_ci_high": -rows["contribution_ci_low"].to_numpy()})
