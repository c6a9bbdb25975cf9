"""One store interface, two real backends: embedded LadybugDB (default, on disk) and Neo4j.

Components never open connections themselves: `open_store(config)` is called once by the CLI (or the
dashboard) and the store is passed in, like neo4j-graphrag passes its driver.

What a store offers is the `GraphStore` protocol below, implemented in full by both backends, so
callers never probe (`hasattr`, `dialect ==`): statements whose text differs between the dialects
are `graph.dialect.PerDialect` values that the store resolves itself, bulk writes go through
`bulk_create` (LadybugDB: COPY; Neo4j: batched `UNWIND $rows`), and a whole new graph is written
inside `rebuild()` (LadybugDB: a fresh database; Neo4j: a new copy under a build stamp).

Imports run one way: this module -> the backends (lazily, in `open_store`) -> graph.dialect,
graph.errors, graph.readonly, graph.uri. No backend imports this module.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal, Protocol

import pandas as pd

from graph.dialect import Dialect, PerDialect, Query

if TYPE_CHECKING:
    import pyarrow as pa

    from graph.readonly import QueryPlan

__all__ = ["Dialect", "GraphSession", "GraphStore", "StoreConfig", "open_store"]


@dataclass
class StoreConfig:
    """Which store to open. Only cli.py reads NEO4J_USER / NEO4J_PASSWORD and fills them in."""

    backend: Literal["embedded", "neo4j"] = "embedded"
    path: Path | None = None            # embedded: the database file (RunPaths.store)
    uri: str | None = None              # neo4j: bolt://host:7687 or neo4j://...
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None         # neo4j database name; None = server default
    # embedded: LadybugDB's buffer pool (page cache + query working memory such as aggregation hash
    # tables). LadybugDB's own default is 80% of the machine's RAM, which a 20M-interaction build
    # fills and keeps; None = DEFAULT_BUFFER_POOL_MB. Too small fails a build with a buffer
    # manager error naming the pool, not silently.
    buffer_pool_mb: int | None = None
    max_threads: int = 0                # embedded: LadybugDB worker threads; 0 = one per core

    def __post_init__(self):
        if self.backend == "embedded" and self.path is None:
            raise ValueError("the embedded store needs a path")
        if self.buffer_pool_mb is not None and self.buffer_pool_mb < 64:
            raise ValueError(f"buffer_pool_mb must be >= 64, got {self.buffer_pool_mb}")
        if self.backend == "neo4j" and not self.uri:
            raise ValueError("the neo4j store needs a uri (bolt://host:7687)")

    @property
    def dialect(self) -> Dialect:
        """The Cypher dialect of the store this config opens (known before it is opened)."""
        return "neo4j" if self.backend == "neo4j" else "ladybug"

    def describe(self) -> str:
        """For messages and page captions: a password written into the URI is shown as ***."""
        if self.backend == "neo4j":
            from graph.uri import redact_uri
            return f"neo4j {redact_uri(self.uri)}"
        return f"embedded {self.path}"


class GraphSession(Protocol):
    """Where statements run: an open store, or the session `GraphStore.rebuild()` yields.

    Every `query` may be a plain string or a `PerDialect`; the session sends its own dialect's text.
    """

    dialect: Dialect
    read_only: bool

    def run(self, query: Query, params: dict | None = None) -> list[dict]:
        """Run one statement; rows as dicts keyed by the RETURN column names."""

    def run_df(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        """Run one statement; rows as a DataFrame (columns = RETURN names, also for empty results)."""

    def run_columns(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        """Like run_df, for results of scalar columns, through the backend's fastest path (LadybugDB:
        Arrow, 3-4x faster on million-row results). Used by the build's aggregations."""

    def write_batch(self, query: Query, rows: Iterable[dict], batch_size: int = 5000) -> int:
        """Run an `UNWIND $rows AS row ...` statement over rows in batches; returns rows written."""

    def bulk_create(self, table: str, frame: "pd.DataFrame | pa.Table", query: Query, *,
                    batch_size: int = 5000) -> int:
        """Create the frame's rows as new nodes or relationships of `table`; returns rows written.

        LadybugDB COPYs the frame into the table (node tables: columns by name; relationship tables:
        the first two columns are the from and to ids, the rest the table's properties in order).
        Neo4j runs `query` (`UNWIND $rows AS row ...`) in batches, with missing values sent as null
        and arrays as lists. `table` is a fixed schema name, never user input.
        """


class GraphStore(GraphSession, Protocol):
    """An open graph: a `GraphSession` plus what the console, the build and the CLI need."""

    def run_limited(self, query: Query, params: dict | None = None, *, limit: int,
                    timeout_s: float | None = None) -> tuple[list[str], list[tuple], bool]:
        """At most `limit` rows, fetched without reading the whole result: (columns, rows, truncated).
        `timeout_s` stops this query when it runs longer (None: no limit)."""

    def explain(self, query: str, params: dict | None = None) -> "QueryPlan":
        """What the database would run for `query` (EXPLAIN: planned, not executed)."""

    def transaction(self) -> AbstractContextManager[GraphSession]:
        """A session whose statements commit together when the block ends, or not at all."""

    def rebuild(self, schema: PerDialect[tuple[str, ...]]) -> AbstractContextManager[GraphSession]:
        """Create `schema` (the store's dialect's DDL), then a session for writing a whole new
        graph, all or nothing.

        Neo4j: the DDL runs first (schema changes cannot share a data transaction), then a build
        that commits batch by batch under a build stamp: every write must stamp with `$build`, and
        a failed rebuild deletes its stamp, keeping the old graph (graph.neo4j_store.Neo4jStore.rebuild).
        LadybugDB: the store itself, which must hold no node (GraphError otherwise):
        `graph.build.build_run` builds into a fresh database and swaps its folder in, so there is
        nothing to roll back.
        """

    def close(self) -> None: ...

    def __enter__(self) -> "GraphStore": ...

    def __exit__(self, *exc) -> None: ...


def open_store(config: StoreConfig, *, read_only: bool = False) -> GraphStore:
    """Open the configured backend. read_only uses the database's own read-only mode."""
    if config.backend == "neo4j":
        from graph.neo4j_store import Neo4jStore
        return Neo4jStore.connect(config, read_only=read_only)
    from graph.embedded_store import EmbeddedStore
    return EmbeddedStore(os.fspath(config.path), read_only=read_only, max_threads=config.max_threads,
                         buffer_pool_mb=config.buffer_pool_mb)
