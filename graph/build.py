"""Build the item graph of one dataset: load, then NEXT, COLLAB and SIMILAR relations, with Cypher.

    build_graph(dataset, store, GraphConfig()) -> BuildReport

Stages (each timed in the report):
  load        users, items and ordered INTERACTED edges (embedded: COPY into a fresh database;
              Neo4j: MERGE on unique ids, interactions rewritten)
  popularity  training interactions per item (Cypher) -> Item.popularity
  next        one-hop transitions between consecutive training positions (Cypher) -> NEXT
  cooccur     co-occurrence within the window (Cypher aggregation) -> top-k COLLAB, ranked by count,
              then the neighbour's training popularity, then source order (IIRG reference)
  embed       item-text embeddings (cached by text hash), stored on the Item nodes at load
  semantic    exact top-k cosine over the embeddings -> SIMILAR
  backfill    items with fewer than k collaborative neighbours get the co-occurrence neighbours of
              their nearest semantic neighbours (Cypher), source='semantic_backfill', via=<that item>

Only the training part of each sequence feeds relations (plus the validation item with
include_valid); the test item never does.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from graph import queries as Q
from graph.config import GraphConfig
from graph.errors import GraphError
from graph.semantic import EmbeddingStats, embed_items, item_texts, topk_cosine
from graph.store import GraphSession, GraphStore
from ingest.schema import Dataset

if TYPE_CHECKING:
    from graph.rundir import RunPaths
    from graph.store import StoreConfig

@dataclass
class BuildReport:
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    embedding: EmbeddingStats | None = None

    @contextmanager
    def stage(self, name: str, bar: tqdm):
        bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        bar.update(1)

    def to_dict(self) -> dict:
        out = {"seconds": self.seconds, "counts": self.counts}
        if self.embedding:
            out["embedding"] = {"items": self.embedding.items, "embedded": self.embedding.embedded,
                                "forward_seconds": round(self.embedding.seconds, 3),
                                "items_per_s": self.embedding.items_per_s}
        return out


@dataclass
class Relations:
    """The relations as built, the same rows that were written to the graph."""

    popularity: pd.Series
    next: pd.DataFrame
    collab: pd.DataFrame
    similar: pd.DataFrame


# -- load ------------------------------------------------------------------------------------------
def _item_rows(dataset: Dataset, embeddings: np.ndarray | None) -> pd.DataFrame:
    items = dataset.items.rename(columns={"item_id": "id"})
    items.insert(1, "idx", np.arange(len(items), dtype=np.int64))
    items["popularity"] = np.zeros(len(items), dtype=np.int64)
    columns = ["id", "idx", "title", "raw_title", "description", "categories", "brand", "attributes",
               "popularity"]
    if embeddings is not None:
        items["embedding"] = list(embeddings)
        columns.append("embedding")
    return items[columns]


def load_dataset(session: GraphSession, dataset: Dataset, embeddings: np.ndarray | None = None) -> None:
    """Load users, items (with their text embeddings) and interactions, replacing what the graph held.

    `session` is what `GraphStore.rebuild()` yields: a fresh embedded database (the deletes find
    nothing) or a Neo4j transaction (users and items the dataset no longer has go, interactions are
    written anew). Embeddings travel with the item rows: setting 384 floats per item afterwards, row
    by row through Cypher, costs more than the whole rest of the build.
    """
    items = _item_rows(dataset, embeddings)
    users = pd.DataFrame({"id": dataset.interactions["user_id"].drop_duplicates().to_numpy()})
    inter = dataset.interactions
    session.run(Q.DELETE_STALE_USERS_QUERY, {"ids": users["id"].tolist()})
    session.run(Q.DELETE_STALE_ITEMS_QUERY, {"ids": items["id"].tolist()})
    session.run(Q.DELETE_INTERACTIONS_QUERY)
    session.bulk_create("Item", items, Q.MERGE_ITEMS_QUERY_NEO4J, batch_size=1000)
    session.bulk_create("User", users, Q.MERGE_USERS_QUERY_NEO4J)
    # Arrow keeps the nullable timestamps as integers (pandas would make them floats).
    session.bulk_create("INTERACTED", pa.table({
        "user_id": inter["user_id"].to_numpy(), "item_id": inter["item_id"].to_numpy(),
        "pos": inter["pos"].to_numpy(), "ts": pa.array(inter["ts"], type=pa.int64()),
        "split": inter["split"].to_numpy()}), Q.CREATE_INTERACTIONS_QUERY_NEO4J)


# -- relation selection (pure functions over what Cypher returned) ----------------------------------
def select_top_collab(cooccur: pd.DataFrame, popularity: pd.Series, order: pd.Series, k: int) -> pd.DataFrame:
    """Top-k co-occurrence neighbours per item: count desc, popularity desc, source order asc.

    Sorted on integer keys (item positions), not strings: 1.5M pairs on Yelp sort in a fraction of
    the time.
    """
    item_ids = pa.array(order.index.to_numpy(dtype=object))
    anchor = pc.index_in(pa.array(cooccur["item_id"].to_numpy(dtype=object)), value_set=item_ids).to_numpy()
    neighbour = pc.index_in(pa.array(cooccur["neighbor_id"].to_numpy(dtype=object)), value_set=item_ids).to_numpy()
    pop = popularity.reindex(order.index).fillna(0).to_numpy()[neighbour]
    count = cooccur["count"].to_numpy()
    # np.lexsort: the last key is the primary one.
    ranked = np.lexsort((neighbour, -pop, -count, anchor))
    anchor_sorted = anchor[ranked]
    starts = np.r_[0, np.flatnonzero(np.diff(anchor_sorted)) + 1]
    rank = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)])) + 1
    keep = rank <= k
    top = cooccur.iloc[ranked[keep]].reset_index(drop=True)
    top["rank"] = rank[keep].astype(np.int64)
    top["source"] = "cooccur"
    top["via_item_id"] = None
    return top[["item_id", "neighbor_id", "rank", "count", "hop", "source", "via_item_id"]]


def select_backfill(candidates: pd.DataFrame, top: pd.DataFrame, item_ids: list[str], k: int) -> pd.DataFrame:
    """Fill each short item up to k from its semantic neighbours' co-occurrence neighbours.

    Candidates are taken in (semantic rank, collaborative rank) order; a neighbour already present
    (or the item itself) is skipped; each keeps the semantic neighbour it came through (`via`).
    """
    have = top.groupby("item_id").size()
    present = set(zip(top["item_id"], top["neighbor_id"]))
    ordered = candidates.sort_values(["item_id", "similar_rank", "collab_rank"], kind="stable")
    ordered = ordered.drop_duplicates(["item_id", "neighbor_id"], keep="first")
    keep = [(a, n) not in present for a, n in zip(ordered["item_id"], ordered["neighbor_id"])]
    ordered = ordered[np.array(keep, dtype=bool)] if len(ordered) else ordered
    ordered = ordered.assign(slot=ordered.groupby("item_id", sort=False).cumcount()
                             + ordered["item_id"].map(have).fillna(0).astype(int).to_numpy() + 1)
    fill = ordered[ordered["slot"] <= k]
    fill = fill[fill["item_id"].isin(item_ids)]
    return pd.DataFrame({"item_id": fill["item_id"].to_numpy(), "neighbor_id": fill["neighbor_id"].to_numpy(),
                         "rank": fill["slot"].to_numpy(dtype=np.int64), "count": np.zeros(len(fill), np.int64),
                         "hop": pd.array([pd.NA] * len(fill), dtype="Int64"),
                         "source": "semantic_backfill", "via_item_id": fill["via_item_id"].to_numpy()})


# -- writing relations ------------------------------------------------------------------------------
def _frame(store: GraphSession, query: str, params: dict, columns: list[str]) -> pd.DataFrame:
    """Rows of a read as a DataFrame with known columns (also when there are none)."""
    return store.run_columns(query, params)[columns]


def _write_edges(store: GraphSession, table: str, query: str, frame: pd.DataFrame, src: str, dst: str) -> None:
    cols = [c for c in frame.columns if c not in (src, dst)]
    store.bulk_create(table, frame[[src, dst, *cols]], query)


def build_relations(store: GraphSession, dataset: Dataset, config: GraphConfig,
                    report: BuildReport, bar: tqdm, embeddings: np.ndarray | None = None,
                    progress: bool = True) -> Relations:
    params = {"splits": config.splits, "window": config.window}
    order = pd.Series(np.arange(len(dataset.items)), index=dataset.items["item_id"])

    for name in ("NEXT", "COLLAB", "SIMILAR"):  # a rebuild on Neo4j replaces the old relations
        store.run(Q.DELETE_RELATION_QUERIES[name])

    with report.stage("popularity", bar):
        pop = _frame(store, Q.POPULARITY_QUERY, params, ["item_id", "popularity"])
        popularity = pd.Series(pop["popularity"].to_numpy(dtype=np.int64), index=pop["item_id"].to_numpy())
        store.write_batch(Q.SET_POPULARITY_QUERY, pop.to_dict("records"), batch_size=20000)

    with report.stage("next", bar):
        next_edges = _frame(store, Q.TRANSITIONS_QUERY, params, ["src_item_id", "dst_item_id", "count"])
        next_edges = next_edges.sort_values(["src_item_id", "dst_item_id"], ignore_index=True)
        next_edges["count"] = next_edges["count"].astype(np.int64)
        next_edges["split_scope"] = config.split_scope
        _write_edges(store, "NEXT", Q.CREATE_NEXT_QUERY, next_edges, "src_item_id", "dst_item_id")

    with report.stage("cooccur", bar):
        cooccur = _frame(store, Q.COOCCURRENCE_QUERY, params, ["item_id", "neighbor_id", "count", "hop"])
        report.counts["cooccur_pairs"] = len(cooccur)
        top = select_top_collab(cooccur, popularity, order, config.collab_k)
        top["hop"] = top["hop"].astype("Int64")
        _write_edges(store, "COLLAB", Q.CREATE_COLLAB_QUERY,
                     top.assign(window=config.window, k=config.collab_k, split_scope=config.split_scope),
                     "item_id", "neighbor_id")

    similar = pd.DataFrame(columns=["item_id", "neighbor_id", "rank", "score"])
    backfill = top.iloc[0:0]
    if embeddings is not None:
        with report.stage("semantic", bar):
            neighbours, scores = topk_cosine(embeddings, config.semantic_k, config.similarity_batch_rows,
                                             progress)
            ids = dataset.items["item_id"].to_numpy()
            kk = neighbours.shape[1]
            similar = pd.DataFrame({
                "item_id": np.repeat(ids, kk), "neighbor_id": ids[neighbours.ravel()],
                "rank": np.tile(np.arange(1, kk + 1, dtype=np.int64), len(ids)),
                "score": scores.ravel().astype(np.float64)})
            _write_edges(store, "SIMILAR", Q.CREATE_SIMILAR_QUERY,
                         similar.assign(model=config.embed_model, k=config.semantic_k),
                         "item_id", "neighbor_id")

        with report.stage("backfill", bar):
            have = top.groupby("item_id").size()
            short = [i for i in dataset.items["item_id"] if have.get(i, 0) < config.collab_k]
            candidates = _frame(store, Q.BACKFILL_CANDIDATES_QUERY, {"item_ids": short},
                                ["item_id", "neighbor_id", "via_item_id", "similar_rank", "collab_rank"])
            backfill = select_backfill(candidates, top, short, config.collab_k)
            _write_edges(store, "COLLAB", Q.CREATE_COLLAB_QUERY,
                         backfill.assign(window=config.window, k=config.collab_k,
                                         split_scope=config.split_scope),
                         "item_id", "neighbor_id")

    collab = pd.concat([top, backfill], ignore_index=True).sort_values(["item_id", "rank"], ignore_index=True)
    report.counts.update({"next": len(next_edges), "collab": len(collab),
                          "collab_backfilled": len(backfill), "similar": len(similar)})
    return Relations(popularity=popularity, next=next_edges[["src_item_id", "dst_item_id", "count"]],
                     collab=collab, similar=similar)


def build_graph(dataset: Dataset, store: GraphStore, config: GraphConfig,
                progress: bool = True) -> tuple[Relations, BuildReport]:
    """Load the dataset and build every relation; see the module docstring for the stages."""
    report = BuildReport()
    stages = 4 + (3 if config.semantic else 0)
    embeddings = None
    with tqdm(total=stages, desc=f"build {dataset.name}", unit="stage", disable=not progress) as bar:
        if config.semantic:
            with report.stage("embed", bar):
                texts = item_texts(dataset.items, config.description_chars)
                embeddings, report.embedding = embed_items(texts, config.embed_model, config.cache_dir,
                                                           config.embed_batch_size, progress)
        # All or nothing: a Neo4j transaction, or the fresh embedded database build_run swaps in.
        with store.rebuild(Q.SCHEMA_QUERIES) as session:
            with report.stage("load", bar):
                load_dataset(session, dataset, embeddings)
            relations = build_relations(session, dataset, config, report, bar, embeddings, progress)
    report.counts.update({"users": int(dataset.interactions["user_id"].nunique()),
                          "items": len(dataset.items), "interactions": len(dataset.interactions)})
    return relations, report


# -- one run: build into the run's store and export --------------------------------------------------
def read_relations(store: GraphStore) -> Relations:
    """Read the relations back from a built graph (what `iirg export` writes)."""
    items = store.run_df(Q.READ_ITEMS_QUERY)
    popularity = pd.Series(items["popularity"].fillna(0).to_numpy(dtype=np.int64), index=items["item_id"].to_numpy())
    next_edges = store.run_df(Q.READ_NEXT_QUERY).sort_values(["src_item_id", "dst_item_id"], ignore_index=True)
    collab = store.run_df(Q.READ_COLLAB_QUERY).sort_values(["item_id", "rank"], ignore_index=True)
    collab["hop"] = collab["hop"].astype("Int64")
    collab["via_item_id"] = collab["via_item_id"].astype(object).where(collab["via_item_id"].notna(), None)
    similar = store.run_df(Q.READ_SIMILAR_QUERY).sort_values(["item_id", "rank"], ignore_index=True)
    return Relations(popularity=popularity, next=next_edges[["src_item_id", "dst_item_id", "count"]],
                     collab=collab, similar=similar)


def training_transitions(dataset: Dataset, splits: list[str]) -> int:
    """Consecutive pairs of different items in the parts that feed relations (NEXT's source rows)."""
    inter = dataset.interactions[dataset.interactions["split"].isin(splits)].sort_values(["user_id", "pos"])
    users, items = inter["user_id"].to_numpy(), inter["item_id"].to_numpy()
    return int(((users[1:] == users[:-1]) & (items[1:] != items[:-1])).sum())


def build_run(run: "RunPaths", dataset: Dataset, store_config: "StoreConfig", config: GraphConfig,
              progress: bool = True, *, ingest_config: dict | None = None, ingest_seconds: float = 0.0,
              wait: bool = True, on_wait=None) -> tuple[dict, BuildReport]:
    """Build the graph of `dataset` into the run: dataset, graph, export and config change together.

    Under the run's lock (a second build waits, or raises RunBusy with wait=False), every new part
    is written into a staging folder inside the run (graph.rundir) and committed at the end: a build
    that fails or is killed leaves the run exactly as it was. The dataset is staged only when it
    is new (`ingest_config` given) or differs from the run's (by checksum); `ingest_config` is
    recorded as config.json's "ingest".
    On Neo4j the graph loads in one transaction that commits just before the run's own commit (a
    crash between the two is the one window where the server is newer than the run folder).

    Raises:
        GraphError: no training transitions, a store that cannot be opened or built, RunBusy.
    """
    from graph.export import write_export
    from graph.store import StoreConfig, open_store

    if training_transitions(dataset, config.splits) == 0:
        raise GraphError(f"dataset {dataset.name!r} has no training transitions (no user has two "
                         f"different consecutive items in {'+'.join(config.splits)}): there is no graph "
                         "to build; ingest more interactions per user")
    store_dir = None
    if store_config.backend == "embedded":
        db_name = Path(store_config.path).name
        store_dir = Path(store_config.path).parent
        # The folder is swapped in whole, so it must hold nothing but this database's files.
        strangers = [p.name for p in store_dir.iterdir() if not p.name.startswith(db_name)] \
            if store_dir.is_dir() else []
        if strangers:
            raise GraphError(f"{store_dir} holds other files ({', '.join(sorted(strangers)[:3])}); the "
                             "embedded graph needs a folder of its own")
    with run.lock(wait=wait, on_wait=on_wait), run.staging() as stage:
        if ingest_config is not None or _run_checksum(run) != dataset.checksum():
            dataset.save(stage.path(run.dataset))
        if store_dir is not None:
            new_store = stage.path(store_dir)
            new_store.mkdir()
            with open_store(StoreConfig(backend="embedded", path=new_store / db_name)) as store:
                relations, report = build_graph(dataset, store, config, progress)
        else:
            with open_store(store_config) as store:
                relations, report = build_graph(dataset, store, config, progress)
        manifest = write_export(stage.path(run.export), dataset, popularity=relations.popularity,
                                next_edges=relations.next, collab=relations.collab,
                                similar=relations.similar, params=config.relation_params(),
                                backend=store_config.describe())
        stage.path(run.build_report).write_text(json.dumps(
            {"ingest_seconds": round(ingest_seconds, 3), **report.to_dict()}, indent=2))
        updates = {"graph": {**config.to_dict(), "store": store_config.describe()}}
        if ingest_config is not None:
            updates["ingest"] = ingest_config
        stage.commit(config=updates)
    return manifest, report


def _run_checksum(run: "RunPaths") -> str | None:
    meta = run.dataset / "dataset.json"
    return json.loads(meta.read_text()).get("checksum") if meta.exists() else None
