"""Build the item graph of one dataset: load, then every relation of graph/relations, with Cypher.

    build_graph(dataset, store, GraphConfig()) -> (Relations, BuildReport)

Stages (each timed in the report):
  embed       item-text embeddings (cached by text hash), stored on the Item nodes at load
  load        users, items, ordered INTERACTED edges and each sequence as a path of Event nodes
              (NEXT_EVENT in position order; embedded: COPY into a fresh database; Neo4j: a new copy
              stamped with the build id, in batches), through `GraphStore.rebuild`
  popularity  training interactions per item (Cypher) -> Item.popularity
then each relation's own stages, in registry order within `build_after` (graph/relations):
  next        NEXT: one-hop transitions between consecutive training positions (Cypher, one
              NEXT_EVENT step)
  semantic    SIMILAR: exact top-k cosine over the embeddings (Neo4j: its vector index)
  cooccur     COLLAB: co-occurrence within the window (Cypher over NEXT_EVENT paths of 1..W steps)
              -> top-k, ranked by count, then the neighbour's training popularity, then source
              order (IIRG reference)
  backfill    COLLAB: items with fewer than k collaborative neighbours get the co-occurrence
              neighbours of their nearest semantic neighbours (Cypher), source='semantic_backfill'
  (optional relations named in GraphConfig.extra_relations add theirs, e.g. SHARES_META's `meta`)

Only the training part of each sequence feeds relations (plus the validation item with
include_valid); the test item never does.
"""

from __future__ import annotations

import json
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from graph import queries as Q
from graph.config import GraphConfig
from graph.errors import GraphError
from graph.relations import BuildContext, build_order, enabled_relations
from graph.semantic import EmbeddingStats, embed_items, item_texts
from graph.store import GraphSession, GraphStore
from ingest.schema import Dataset

if TYPE_CHECKING:
    from graph.rundir import RunPaths
    from graph.store import StoreConfig

@dataclass
class BuildReport:
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # Peak RSS of the process by the end of each stage (MB): where a large build's memory goes.
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    embedding: EmbeddingStats | None = None

    @contextmanager
    def stage(self, name: str, bar: tqdm):
        bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.peak_rss_mb[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        bar.update(1)

    def to_dict(self) -> dict:
        out = {"seconds": self.seconds, "counts": self.counts, "peak_rss_mb": self.peak_rss_mb}
        if self.embedding:
            out["embedding"] = {"items": self.embedding.items, "embedded": self.embedding.embedded,
                                "forward_seconds": round(self.embedding.seconds, 3),
                                "items_per_s": self.embedding.items_per_s}
        return out


@dataclass
class Relations:
    """The relations as built (the same rows that were written to the graph), by relation name."""

    popularity: pd.Series
    edges: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def next(self) -> pd.DataFrame:
        return self.edges["NEXT"]

    @property
    def collab(self) -> pd.DataFrame:
        return self.edges["COLLAB"]

    @property
    def similar(self) -> pd.DataFrame:
        return self.edges["SIMILAR"]


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


def arrow_column(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column as Arrow without going through Python objects: pandas' `str` columns are Arrow
    already (zero copy), where `.to_numpy()` makes one Python string per row (~60 bytes each, a GB
    per 20M-row column)."""
    return pa.array(column, from_pandas=True)


def _bulk_create(session: GraphSession, table: str, data: pa.Table, query: str, bar: tqdm) -> None:
    # One COPY per table: LadybugDB copies into a non-empty relationship table more slowly (4M rows
    # in two COPYs took 1.5x the time of one), so the bar moves per table, in rows.
    session.bulk_create(table, data, query)
    bar.update(data.num_rows)


def load_dataset(session: GraphSession, dataset: Dataset, embeddings: np.ndarray | None = None,
                 progress: bool = False) -> None:
    """Load users, items (with their text embeddings) and interactions into a new graph.

    `session` is what `GraphStore.rebuild()` yields: a fresh embedded database, or a Neo4j build that
    writes a new copy under its stamp (the previous copy goes when the build finishes). Embeddings
    travel with the item rows: setting 384 floats per item afterwards, row by row through Cypher,
    costs more than the whole rest of the build. The interaction columns go over as Arrow arrays
    (strings included), with a progress bar in rows.
    """
    items = _item_rows(dataset, embeddings)
    inter = dataset.interactions
    users = pa.table({"id": pc.unique(arrow_column(inter["user_id"]))})
    # Users, interactions, events and their three links: the rows of the progress bar.
    total = users.num_rows + 5 * len(inter)
    with tqdm(total=total, desc="load", unit="row", unit_scale=True, leave=False, disable=not progress) as bar:
        # 1000 items per Neo4j transaction: with their embeddings, ~3 MB of parameters each.
        session.bulk_create("Item", items, Q.CREATE_ITEMS_QUERY_NEO4J, batch_size=1000)
        _bulk_create(session, "User", users, Q.CREATE_USERS_QUERY_NEO4J, bar)
        # Arrow keeps the nullable timestamps as integers (pandas would make them floats).
        _bulk_create(session, "INTERACTED", pa.table({
            "user_id": arrow_column(inter["user_id"]), "item_id": arrow_column(inter["item_id"]),
            "pos": inter["pos"].to_numpy(dtype=np.int64), "ts": pa.array(inter["ts"], type=pa.int64()),
            "split": arrow_column(inter["split"])}), Q.CREATE_INTERACTIONS_QUERY_NEO4J, bar)
        load_events(session, dataset, bar)


def load_events(session: GraphSession, dataset: Dataset, bar: tqdm | None = None) -> None:
    """Each user's sequence as a path: one `Event` per interaction, chained by `NEXT_EVENT` in
    position order, each linked to its user (`HAS_EVENT`) and item (`OF_ITEM`); see graph/queries.py.

    Event ids are row numbers in (user, pos) order, so consecutive positions of one user are
    consecutive ids and the chain is every id to the next one of the same user. `item_idx` is the
    item's `Item.idx` (its row in dataset.items). On Neo4j they are stamped with the build like the
    rest of the copy (graph/queries.py), so ids restart at 0 in every copy without clashing.
    Everything is integer codes and Arrow arrays: no Python object per row.
    """
    bar = bar if bar is not None else tqdm(disable=True)
    inter = dataset.interactions
    user_codes = pd.factorize(inter["user_id"])[0]
    pos = inter["pos"].to_numpy(dtype=np.int64)
    order = np.lexsort((pos, user_codes))
    user_codes = user_codes[order]
    take = pa.array(order)
    users = arrow_column(inter["user_id"]).take(take)
    items = arrow_column(inter["item_id"]).take(take)
    item_idx = pc.index_in(items, value_set=arrow_column(dataset.items["item_id"])).cast(pa.int64())
    ids = np.arange(len(inter), dtype=np.int64)
    _bulk_create(session, "Event", pa.table({"id": ids, "item_idx": item_idx, "pos": pos[order],
                                             "split": arrow_column(inter["split"]).take(take)}),
                 Q.CREATE_EVENTS_QUERY_NEO4J, bar)
    _bulk_create(session, "HAS_EVENT", pa.table({"user_id": users, "event_id": ids}), Q.CREATE_HAS_EVENT_QUERY_NEO4J, bar)
    _bulk_create(session, "OF_ITEM", pa.table({"event_id": ids, "item_id": items}), Q.CREATE_OF_ITEM_QUERY_NEO4J, bar)
    same_user = np.flatnonzero(user_codes[1:] == user_codes[:-1])
    _bulk_create(session, "NEXT_EVENT", pa.table({"src_event_id": ids[same_user], "dst_event_id": ids[same_user + 1]}),
                 Q.CREATE_NEXT_EVENTS_QUERY_NEO4J, bar)


# -- relations --------------------------------------------------------------------------------------
def build_relations(session: GraphSession, dataset: Dataset, config: GraphConfig, report: BuildReport,
                    bar: tqdm, embeddings: np.ndarray | None = None, progress: bool = True) -> Relations:
    """Popularity, then every enabled relation (graph/relations), each written as it is built."""
    specs = enabled_relations(config)
    with report.stage("popularity", bar):
        pop = session.run_columns(Q.POPULARITY_QUERY, {"splits": config.splits})[["item_id", "popularity"]]
        popularity = pd.Series(pop["popularity"].to_numpy(dtype=np.int64), index=pop["item_id"].to_numpy())
        session.write_batch(Q.SET_POPULARITY_QUERY, pop.to_dict("records"), batch_size=20000)

    ctx = BuildContext(session=session, dataset=dataset, config=config, popularity=popularity,
                       order=pd.Series(np.arange(len(dataset.items)), index=dataset.items["item_id"]),
                       embeddings=embeddings, built={}, counts=report.counts,
                       stage=lambda name: report.stage(name, bar), progress=progress)
    for spec in build_order(specs):
        ctx.built[spec.name] = spec.build(ctx)
    for spec in specs:
        frame = ctx.built[spec.name]
        report.counts.update({spec.export_name: len(frame), **spec.extra_counts(frame)})
    return Relations(popularity=popularity, edges={spec.name: ctx.built[spec.name] for spec in specs})


def build_graph(dataset: Dataset, store: GraphStore, config: GraphConfig, progress: bool = True,
                on_built: Callable[[Relations, BuildReport], None] | None = None) -> tuple[Relations, BuildReport]:
    """Load the dataset and build every relation; see the module docstring for the stages.

    `on_built` runs inside the store's rebuild, once every relation is written: if it raises, the
    rebuild fails as a whole (on Neo4j the new copy is deleted and the previous one stays current).
    build_run commits the run folder there.
    """
    report = BuildReport()
    stages = 2 + (1 if config.semantic else 0) + sum(len(spec.stages(config)) for spec in enabled_relations(config))
    embeddings = None
    with tqdm(total=stages, desc=f"build {dataset.name}", unit="stage", disable=not progress) as bar:
        if config.semantic:
            with report.stage("embed", bar):
                texts = item_texts(dataset.items, config.description_chars)
                embeddings, report.embedding = embed_items(texts, config.embed_model, config.cache_dir,
                                                           config.embed_batch_size, progress,
                                                           config.embed_backend)
        # All or nothing: a Neo4j transaction, or the fresh embedded database build_run swaps in.
        with store.rebuild(Q.SCHEMA_QUERIES) as session:
            with report.stage("load", bar):
                load_dataset(session, dataset, embeddings, progress)
            relations = build_relations(session, dataset, config, report, bar, embeddings, progress)
            report.counts.update({"users": int(dataset.interactions["user_id"].nunique()),
                                  "items": len(dataset.items), "interactions": len(dataset.interactions)})
            if on_built is not None:
                on_built(relations, report)
    return relations, report


# -- one run: build into the run's store and export --------------------------------------------------
def read_relations(store: GraphStore, config: GraphConfig | None = None) -> Relations:
    """Read the relations back from a built graph (what `iirg export` writes): those `config` builds
    (default: the ones every build makes)."""
    items = store.run_df(Q.READ_ITEMS_QUERY)
    popularity = pd.Series(items["popularity"].fillna(0).to_numpy(dtype=np.int64), index=items["item_id"].to_numpy())
    edges = {}
    for spec in enabled_relations(config or GraphConfig()):
        frame = store.run_df(spec.read_query).sort_values(list(spec.sort_by), ignore_index=True)
        edges[spec.name] = spec.tidy(frame)
    return Relations(popularity=popularity, edges=edges)


def export_params(config: GraphConfig) -> dict:
    """What the export manifest records about how the relations were made: the config's relation
    parameters, plus each extra relation's own (only when there are extra relations)."""
    params = config.relation_params()
    extra = [spec for spec in enabled_relations(config) if spec.optional]
    if extra:
        params["extra_relations"] = {spec.name: spec.params(config) for spec in extra}
    return params


def training_transitions(dataset: Dataset, splits: list[str]) -> int:
    """Consecutive pairs of different items in the parts that feed relations (NEXT's source rows).

    On integer codes (factorized ids, one lexsort): sorting 20M string rows in pandas takes minutes.
    """
    inter = dataset.interactions
    keep = inter["split"].isin(splits).to_numpy()
    users = pd.factorize(inter["user_id"])[0][keep]
    items = pd.factorize(inter["item_id"])[0][keep]
    order = np.lexsort((inter["pos"].to_numpy()[keep], users))
    users, items = users[order], items[order]
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
    On Neo4j the graph is written in batches as a new copy under a build stamp (Neo4jStore.rebuild);
    the run commits while both copies exist, then the new copy is made current and the previous one
    deleted. A failure before the run's commit deletes the new copy; a crash between the run's commit
    and the marking (one statement) is the one window where the run folder is newer than the
    server's current copy: the next build deletes the unmarked copy, so rebuild to realign.

    Raises:
        GraphError: no training transitions, a store that cannot be opened or built, RunBusy.
    """
    from graph.export import write_export
    from graph.store import open_store

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
        committed: dict = {}

        def commit_run(relations: Relations, report: BuildReport) -> None:
            committed["manifest"] = write_export(
                stage.path(run.export), dataset, popularity=relations.popularity, relations=relations.edges,
                params=export_params(config), backend=store_config.describe())
            stage.path(run.build_report).write_text(json.dumps(
                {"ingest_seconds": round(ingest_seconds, 3), **report.to_dict()}, indent=2))
            updates = {"graph": {**config.to_dict(), "store": store_config.describe()}}
            if ingest_config is not None:
                updates["ingest"] = ingest_config
            stage.commit(config=updates)

        if store_dir is not None:
            new_store = stage.path(store_dir)
            new_store.mkdir()
            # The database is closed before its folder is swapped in.
            # The run's store settings (buffer pool, threads) with the staging path.
            with open_store(replace(store_config, path=new_store / db_name)) as store:
                relations, report = build_graph(dataset, store, config, progress)
            commit_run(relations, report)
        else:
            # Inside the rebuild: a run that fails to commit takes the new Neo4j copy with it.
            with open_store(store_config) as store:
                relations, report = build_graph(dataset, store, config, progress, on_built=commit_run)
    return committed["manifest"], report


def _run_checksum(run: "RunPaths") -> str | None:
    meta = run.dataset / "dataset.json"
    return json.loads(meta.read_text()).get("checksum") if meta.exists() else None
