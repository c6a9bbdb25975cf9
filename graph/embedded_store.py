"""The default store: an embedded, on-disk LadybugDB (the maintained fork of Kùzu) graph.

LadybugDB runs in-process: no server to start, one database file (plus its write-ahead log) per run
folder. Bulk loads go through `COPY ... FROM <arrow table>` (`bulk_create`), much faster than
row-by-row Cypher. Implements `graph.store.GraphStore` in full.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, Iterator

import ladybug
import pandas as pd
import pyarrow as pa

from graph.dialect import PerDialect, Query, text_for
from graph.errors import GraphError, ReadOnlyViolation, StoreUnavailable

if TYPE_CHECKING:
    from graph.readonly import QueryPlan


# The buffer pool when StoreConfig.buffer_pool_mb is None. LadybugDB's own default (80% of RAM)
# lets one build take most of a shared machine. The 20M-interaction synthetic MovieLens
# (bench/bench_scale.py) needs more than 2 GB to COPY its 20M INTERACTED rows in one statement (and
# COPYing in parts is slower), and 3 GB also holds a co-occurrence chunk of
# GraphConfig.cooccur_chunk_events (2.5M events at window 5). A small graph never grows the pool to
# it: pages are taken on use. Too small a pool fails with LadybugDB's "buffer pool is full" error.
DEFAULT_BUFFER_POOL_MB = 3072

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def release_freed_memory() -> None:
    """Hand memory freed by LadybugDB and Arrow back to the OS.

    A COPY of 4M rows allocates ~0.6 GB outside the buffer pool (glibc malloc) and frees it, but glibc
    keeps the freed heap: on 20M interactions the build held ~3 GB it no longer used (measured with
    bench/bench_scale.py). malloc_trim returns it; Arrow's pool likewise keeps what pandas and the
    COPY tables freed. Both are no-ops where unsupported (no glibc).
    """
    pa.default_memory_pool().release_unused()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class EmbeddedStore:
    dialect = "ladybug"

    def __init__(self, path: str, *, read_only: bool = False, max_threads: int = 0,
                 buffer_pool_mb: int | None = None):
        if read_only and not os.path.exists(path):
            raise StoreUnavailable(f"no graph at {path}: run `iirg build` for this run first")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            pool_mb = DEFAULT_BUFFER_POOL_MB if buffer_pool_mb is None else buffer_pool_mb
            self._db = ladybug.Database(path, read_only=read_only, max_num_threads=max_threads,
                                        buffer_pool_size=pool_mb * 2**20)
            self._conn = ladybug.Connection(self._db)
        except RuntimeError as e:  # ladybug raises RuntimeError for locked / corrupt files
            raise StoreUnavailable(f"cannot open the embedded graph at {path}: {e}") from e
        self.path = path
        self.read_only = read_only
        self._in_transaction = False

    # -- GraphStore protocol ---------------------------------------------------------------------
    def _execute(self, query: Query, params: dict | None):
        query = text_for(query, self.dialect)
        try:
            return self._conn.execute(query, params or {})
        except RuntimeError as e:
            raise GraphError(f"{e}\n  in query: {' '.join(query.split())[:300]}") from e

    def run(self, query: Query, params: dict | None = None) -> list[dict]:
        return self.run_df(query, params).to_dict("records")

    def run_df(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        result = self._execute(query, params)
        columns = result.get_column_names()
        frame = result.get_as_df()
        frame.columns = columns  # keep the RETURN names even for empty results
        return frame

    def run_columns(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        """Like run_df, through Arrow: 3-4x faster on million-row results of scalar columns (list
        columns come back as numpy arrays, node values as raw structs, hence a separate method)."""
        table = self._execute(query, params).get_as_arrow()
        frame = table.to_pandas()
        del table
        self._renew_connection()
        release_freed_memory()     # the query's working memory and the Arrow copy of its result
        return frame

    def _renew_connection(self) -> None:
        """A new connection, outside a transaction: LadybugDB keeps a large query's working memory
        in the buffer pool for as long as its connection lives (closing the result does not free
        it), so the next chunk of the co-occurrence found the pool full. Measured on the 4M
        synthetic MovieLens with a 1 GB pool: three 1M-event chunks on one connection, the second
        fails; on a new connection each, all three pass."""
        if self._in_transaction:
            return
        self._conn.close()
        self._conn = ladybug.Connection(self._db)

    def write_batch(self, query: Query, rows: Iterable[dict], batch_size: int = 5000) -> int:
        rows = list(rows)
        for start in range(0, len(rows), batch_size):
            self._execute(query, {"rows": rows[start:start + batch_size]})
        return len(rows)

    def run_limited(self, query: Query, params: dict | None = None, *, limit: int,
                    timeout_s: float | None = None) -> tuple[list[str], list[tuple], bool]:
        """At most `limit` rows (+1 to detect truncation), fetched without loading the whole result."""
        return fetch_ladybug(self._conn, text_for(query, self.dialect), params, limit=limit,
                             timeout_s=timeout_s)

    def explain(self, query: str, params: dict | None = None) -> "QueryPlan":
        """What LadybugDB would run for `query`, from EXPLAIN (planned, not executed): the console's
        second read-only check (graph.readonly.check_plan)."""
        from graph.readonly import explain_statement, parse_ladybug_plan
        result = self._execute(explain_statement(query, "ladybug"), params)
        if isinstance(result, list):        # one result per statement
            raise GraphError("the query holds several statements; run one at a time")
        rows = result.get_all()
        result.close()
        return parse_ladybug_plan("\n".join(str(row[0]) for row in rows))

    def bulk_create(self, table: str, frame: pd.DataFrame | pa.Table, query: Query = "", *,
                    batch_size: int = 5000) -> int:
        """COPY the frame into `table` (GraphStore.bulk_create; `query` and `batch_size` are for
        Neo4j). Node tables take the frame's columns by name, so optional ones (the embedding) may be
        left out; relationship tables take the from and to ids first, then the properties in order."""
        node_table = self._table_types().get(table) == "NODE"
        columns = list(frame.column_names if isinstance(frame, pa.Table) else frame.columns) if node_table else None
        return self.copy_from(table, frame, columns)

    def _table_types(self) -> dict[str, str]:
        return {row["name"]: row["type"] for row in self.run("CALL show_tables() RETURN name, type")}

    # -- bulk load and transactions ----------------------------------------------------------------
    def copy_from(self, table: str, frame: pd.DataFrame | pa.Table, columns: list[str] | None = None) -> int:
        """COPY a frame into a node or rel table (rel tables: first two columns = from, to ids).

        `table` is one of the schema's fixed table names, never user input (COPY takes no $param
        for the table). Arrow keeps nullable integer columns (timestamps) that pandas would not.
        """
        data = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        if data.num_rows == 0:
            return 0
        target = f"{table}({', '.join(columns)})" if columns else table
        self._execute(f"COPY {target} FROM $data", {"data": data})
        release_freed_memory()
        return data.num_rows

    @contextmanager
    def transaction(self) -> Iterator["EmbeddedStore"]:
        """All statements inside commit together or not at all."""
        self._execute("BEGIN TRANSACTION", None)
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._execute("ROLLBACK", None)
            raise
        finally:
            self._in_transaction = False
        self._execute("COMMIT", None)

    @contextmanager
    def rebuild(self, schema: PerDialect[tuple[str, ...]]) -> Iterator["EmbeddedStore"]:
        """Create the schema, then yield the store itself for writing a whole new graph.

        The store must hold no node yet: a rebuild goes into a fresh database that
        `graph.build.build_run` swaps in whole, so there is nothing to roll back and no transaction.
        """
        for statement in schema.text(self.dialect):
            self._execute(statement, None)
        if int(self.run("MATCH (n) RETURN count(n) AS n")[0]["n"]):
            raise GraphError("building a graph needs an empty embedded store; `build_run` rebuilds a "
                             "run's graph in a fresh folder and swaps it in")
        yield self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._db.close()
            self._conn = None

    def __enter__(self) -> "EmbeddedStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fetch_ladybug(connection, query: str, params: dict | None = None, *, limit: int,
                  timeout_s: float | None = None) -> tuple[list[str], list[tuple], bool]:
    """Run `query` on a `ladybug.Connection` and read at most `limit` rows: (columns, rows, truncated).

    For `EmbeddedStore.run_limited` (the console). The timeout applies to this query only (reset
    afterwards); a timeout and a write refused by a read-only database get messages of their own.
    """
    if timeout_s is not None:
        connection.set_query_timeout(max(1, int(timeout_s * 1000)))
    try:
        result = connection.execute(query, params or {})
        if isinstance(result, list):        # LadybugDB returns one result per statement
            raise GraphError("the query holds several statements; run one at a time")
        columns = result.get_column_names()
        rows: list[tuple] = []
        while len(rows) <= limit and result.has_next():
            rows.append(tuple(result.get_next()))
        result.close()
    except RuntimeError as e:
        message = str(e)
        if message.startswith("Interrupted"):
            raise GraphError(f"the query timed out after {timeout_s:g} s and was interrupted") from e
        if "read-only database" in message:
            raise ReadOnlyViolation(f"LadybugDB refused a write on a read-only database: {message}") from e
        raise GraphError(f"LadybugDB: {message}") from e
    finally:
        if timeout_s is not None:
            connection.set_query_timeout(0)
    return columns, rows[:limit], len(rows) > limit
