"""Neo4j backend of the `GraphStore` interface (graph/store.py), on the official `neo4j` driver.

    store = Neo4jStore.connect(StoreConfig(backend="neo4j", uri="bolt://localhost:7687",
                                           user="neo4j", password=...), read_only=True)
    with store:
        store.run_df("MATCH (i:Item) RETURN i.id AS item_id LIMIT 5")

or, with a driver you manage yourself (neo4j-graphrag style; the store then never closes it):

    store = Neo4jStore(neo4j.GraphDatabase.driver(uri, auth=(user, password)), database="neo4j")

A local server: `docker compose up -d neo4j` (docker-compose.yml at the repo root).

Transactions: `run` and `run_df` use managed transactions (`execute_read` / `execute_write`, retried by
the driver on transient errors). A read-only store opens every session in READ access mode, so the
server itself refuses writes (reported as `ReadOnlyViolation`). `write_batch` sends
`UNWIND $rows AS row ...` in batches, one transaction per batch; `write_many` and `transaction()` run
several statements in one transaction. `run_in_batches` runs a statement holding
`CALL { ... } IN TRANSACTIONS OF $batch_rows ROWS` in the auto-commit transaction it needs
(`session.run`; the driver does not retry those).

Builds (`rebuild()`): a 20M-interaction graph does not fit in one transaction, so a build commits batch
by batch and stamps everything it writes with its build id (`build` on every node and relationship,
see graph/queries.py). Rows that come from the client (users, items, interactions, the relations
computed in Python) are batched by the driver, one managed transaction per `$rows` batch: the rows
have to cross the wire anyway, and one `$rows` parameter holding 20M rows would not. Rows the server
finds itself (stamp cleanup, SIMILAR from the vector index) commit in `CALL { } IN TRANSACTIONS`.
A build that fails deletes its stamp; one that finishes marks itself current and deletes every other
copy; a build that starts first deletes what a killed build left (everything but the current copy).

Values: nodes, relationships and paths come back as plain dicts shaped like LadybugDB's, so results
look the same on both backends: node `{"_ID", "_LABEL", "_LABELS", **properties}`, relationship
`{"_ID", "_LABEL" (the type), "_SRC", "_DST", **properties}`, path `{"_NODES": [...], "_RELS": [...]}`;
Neo4j temporal values become Python datetime/date/time.

Errors: an unreachable server or refused credentials raise `StoreUnavailable` (saying what to check),
a write in a read-only session raises `ReadOnlyViolation`, any other server error `GraphError` with the
server's code and message; the driver's exception is always chained.
"""

from __future__ import annotations

import itertools
import re
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Sequence

import neo4j
import numpy as np
import pandas as pd
from neo4j import exceptions as neo4j_errors
from neo4j.graph import Node, Path, Relationship

from graph.dialect import PerDialect, Query, text_for
from graph.errors import GraphError, ReadOnlyViolation, StoreUnavailable
from graph.readonly import QueryPlan, explain_statement
from graph.uri import redact_uri, split_uri_credentials  # noqa: F401  (split_uri_credentials: re-exported)

if TYPE_CHECKING:
    from graph.store import StoreConfig

# Server error codes that mean "this session may not write".
_READ_ONLY_CODES = ("Neo.ClientError.Statement.AccessMode", "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase",
                    "Neo.ClientError.General.ReadOnly")
_TIMEOUT_CODE_PART = "TransactionTimedOut"
_MISSING_DATABASE_CODE = "Neo.ClientError.Database.DatabaseNotFound"
_COUNTER_NAMES = ("nodes_created", "nodes_deleted", "relationships_created", "relationships_deleted",
                  "properties_set")
# Sent by connect() to check that the configured database exists (linted by tests/test_cypher_lint.py).
DATABASE_CHECK_QUERY_NEO4J = "RETURN 1 AS ok"
# The shape of what explain() sends: the user's statement behind EXPLAIN (linted as an example).
EXPLAIN_EXAMPLE_QUERY_NEO4J = "EXPLAIN MATCH (i:Item) WHERE i.id = $item_id RETURN i.title AS title"
_BOLT_SCHEMES = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})
# Rows per inner transaction of `CALL { } IN TRANSACTIONS` statements: small enough for a default
# 512 MB heap, large enough that commits do not dominate.
BATCH_ROWS = 10_000
# Rows converted from a DataFrame at a time by bulk_create: a 20M-row frame never becomes 20M dicts.
CONVERT_ROWS = 100_000

# -- the build stamp (graph/queries.py explains the model) ------------------------------------------
# Deletes run server-side over millions of rows, so they commit in inner transactions of $batch_rows
# rows. Relationships go first, so that no inner transaction has to detach a user's whole history at
# once; every relationship starts at a User, an Item or an Event, and the unstamped ones a later stage adds
# (RECOMMENDED) go with their user's copy.

# A failed build's own copy (served by the `build` indexes of the schema).
DELETE_BUILD_RELATIONSHIPS_QUERY_NEO4J = """
MATCH (n:User|Item|Event)-[r]->()
WHERE n.build = $build
CALL (r) { DELETE r } IN TRANSACTIONS OF $batch_rows ROWS
"""

DELETE_BUILD_NODES_QUERY_NEO4J = """
MATCH (n:User|Item|Event)
WHERE n.build = $build
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF $batch_rows ROWS
"""

# Every copy but one: after a finished build, all but it; before a build, all but the current one
# (what a killed build or a failed cleanup left). A copy from before the stamp has none: -1.
DELETE_OTHER_BUILDS_RELATIONSHIPS_QUERY_NEO4J = """
MATCH (n:User|Item|Event)-[r]->()
WHERE coalesce(n.build, -1) <> $keep_build
CALL (r) { DELETE r } IN TRANSACTIONS OF $batch_rows ROWS
"""

DELETE_OTHER_BUILDS_NODES_QUERY_NEO4J = """
MATCH (n:User|Item|Event)
WHERE coalesce(n.build, -1) <> $keep_build
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF $batch_rows ROWS
"""

# Which copy readers are looking at: the one marked when its build finished (none before the first
# stamped build: the unstamped copy, -1, is then current).
READ_CURRENT_BUILD_QUERY_NEO4J = """
OPTIONAL MATCH (b:GraphBuild {name: 'current'})
RETURN coalesce(b.build, -1) AS build
"""

MARK_CURRENT_BUILD_QUERY_NEO4J = """
MERGE (b:GraphBuild {name: 'current'})
SET b.build = $build, b.finished_at = datetime()
"""


def new_build_id() -> int:
    """A build stamp: microseconds since the epoch (an int64 stored inline on every node and
    relationship, and readable as the build's start time)."""
    return time.time_ns() // 1000


def stamp_cleanup(kind: Literal["failed", "others"], build_id: int) -> list[tuple[str, dict]]:
    """The statements (and parameters) that delete a build's copy (`failed`) or every copy but
    `build_id` (`others`), relationships first; each holds `$batch_rows` (run_in_batches adds it)."""
    if kind == "failed":
        return [(DELETE_BUILD_RELATIONSHIPS_QUERY_NEO4J, {"build": build_id}),
                (DELETE_BUILD_NODES_QUERY_NEO4J, {"build": build_id})]
    if kind == "others":
        return [(DELETE_OTHER_BUILDS_RELATIONSHIPS_QUERY_NEO4J, {"keep_build": build_id}),
                (DELETE_OTHER_BUILDS_NODES_QUERY_NEO4J, {"keep_build": build_id})]
    raise ValueError(f"unknown cleanup {kind!r} (expected 'failed' or 'others')")


class Neo4jStore:
    """A `GraphStore` on one Neo4j database. Pass a driver in, or use `Neo4jStore.connect(config)`."""

    dialect = "neo4j"

    def __init__(self, driver: neo4j.Driver, database: str | None = None, read_only: bool = False,
                 owns_driver: bool = False, uri: str | None = None, batch_rows: int = BATCH_ROWS):
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        self.driver = driver
        self.database = database
        self.read_only = read_only
        self.owns_driver = owns_driver
        self.batch_rows = batch_rows        # $batch_rows of run_in_batches
        self.uri = redact_uri(uri) if uri else "the configured Neo4j server"   # only ever shown
        self._closed = False

    # -- opening and closing ----------------------------------------------------------------------

    @classmethod
    def connect(cls, config: StoreConfig, read_only: bool = False, *, connection_timeout: float = 10.0,
                max_transaction_retry_time: float = 15.0, batch_rows: int = BATCH_ROWS) -> "Neo4jStore":
        """Create a driver for `config`, check that the server answers and accepts the credentials.

        The store owns the driver and closes it on close(). `max_transaction_retry_time` bounds how long
        a managed transaction keeps retrying when the server goes away mid-session. `batch_rows`: rows
        per inner transaction of run_in_batches.
        """
        if config.backend != "neo4j":
            raise ValueError(f"Neo4jStore needs a neo4j StoreConfig, got backend {config.backend!r}")
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        shown = redact_uri(config.uri)          # never put a password from the URI in a message
        scheme = config.uri.split("://", 1)[0].lower() if "://" in config.uri else ""
        if scheme not in _BOLT_SCHEMES:
            raise StoreUnavailable(f"invalid Neo4j URI {shown!r}: use bolt://host:7687 or neo4j://host:7687 "
                                   f"(schemes: {', '.join(sorted(_BOLT_SCHEMES))})")
        if split_uri_credentials(config.uri)[1:] != (None, None):
            raise StoreUnavailable(f"invalid Neo4j URI {shown!r}: put the user and password in --neo4j-user / "
                                   "--neo4j-password (or NEO4J_USER / NEO4J_PASSWORD), not in the URI")
        auth = (config.user or "neo4j", config.password or "")
        try:
            driver = neo4j.GraphDatabase.driver(
                config.uri, auth=auth, connection_timeout=connection_timeout,
                max_transaction_retry_time=max_transaction_retry_time)
        except (neo4j_errors.ConfigurationError, ValueError) as e:
            raise StoreUnavailable(f"invalid Neo4j URI {shown!r}: {redact_uri(e)} "
                                   f"(expected bolt://host:7687 or neo4j://host:7687)") from e
        store = cls(driver, database=config.database, read_only=read_only, owns_driver=True, uri=config.uri,
                    batch_rows=batch_rows)
        try:
            driver.verify_connectivity()
            if config.database:
                # verify_connectivity does not check that the database exists; an auto-commit RETURN 1
                # does, without the retries of a managed transaction.
                with driver.session(database=config.database) as session:
                    session.run(DATABASE_CHECK_QUERY_NEO4J).consume()
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as e:
            driver.close()
            store._closed = True
            raise store._translate(e, "connecting") from e
        return store

    def close(self) -> None:
        if not self._closed and self.owns_driver:
            self.driver.close()
        self._closed = True

    def __enter__(self) -> "Neo4jStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"Neo4jStore({self.uri}, database={self.database!r}, {mode})"

    # -- GraphStore -------------------------------------------------------------------------------

    def run(self, query: Query, params: dict | None = None, *, timeout_s: float | None = None) -> list[dict]:
        """Run one statement; rows as dicts keyed by the RETURN column names."""
        keys, rows = self._run(query, params, timeout_s)
        return [dict(zip(keys, row)) for row in rows]

    def run_df(self, query: Query, params: dict | None = None, *,
               timeout_s: float | None = None) -> pd.DataFrame:
        """Run one statement; a DataFrame with the RETURN column names, also for empty results."""
        keys, rows = self._run(query, params, timeout_s)
        return pd.DataFrame(rows, columns=keys)

    def run_columns(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        """GraphStore.run_columns: records arrive row by row over Bolt, so this is run_df."""
        return self.run_df(query, params)

    def run_limited(self, query: Query, params: dict | None = None, *, limit: int,
                    timeout_s: float | None = None) -> tuple[list[str], list[tuple], bool]:
        """Fetch at most `limit` rows: (columns, rows, truncated). The rest of the result is discarded
        without being sent over the wire (the driver pulls `limit + 1` records)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        query = text_for(query, self.dialect)

        def work(tx: neo4j.ManagedTransaction):
            result = tx.run(query, params or {})
            keys = list(result.keys())
            rows = [tuple(_plain(v) for v in record.values()) for record in itertools.islice(result, limit + 1)]
            return keys, rows

        keys, rows = self._execute(work, timeout_s, write=not self.read_only, fetch_size=limit + 1,
                                   action="running the query")
        return keys, rows[:limit], len(rows) > limit

    def explain(self, query: str, params: dict | None = None) -> QueryPlan:
        """What Neo4j would run for `query`, from EXPLAIN (planned, not executed): the summary's query
        type and the plan's operators, for the console's second read-only check
        (graph.readonly.check_plan). Sent as `EXPLAIN <query>` (see EXPLAIN_EXAMPLE_QUERY_NEO4J)."""
        def work(tx: neo4j.ManagedTransaction):
            summary = tx.run(explain_statement(query, "neo4j"), params or {}).consume()
            return summary.query_type, _plan_operators(summary.plan)

        query_type, operators = self._execute(work, None, write=False, action="explaining the query")
        return QueryPlan("neo4j", operators=tuple(operators), query_type=query_type)

    def write_batch(self, query: Query, rows: Iterable[dict], batch_size: int = 5000) -> int:
        """Run `UNWIND $rows AS row ...` over rows in batches of `batch_size`, one transaction each.

        Returns the number of rows sent. A failing batch raises; earlier batches stay committed.
        """
        return self._write_rows(query, rows, batch_size, None)

    def bulk_create(self, table: str, frame, query: Query, *, batch_size: int = 5000) -> int:
        """GraphStore.bulk_create: `query` (`UNWIND $rows AS row ...`) over the frame's rows in
        batches, one transaction each (`table` names the LadybugDB table; Neo4j needs no schema)."""
        return self.write_batch(query, iter_neo4j_rows(frame), batch_size)

    def _write_rows(self, query: Query, rows: Iterable[dict], batch_size: int, params: dict | None) -> int:
        """write_batch with `params` sent beside `$rows` in every batch (a build's `$build`)."""
        self._require_writable("write_batch")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        query = text_for(query, self.dialect)
        written = 0
        for batch in _batches(rows, batch_size):
            batch_params = {**(params or {}), "rows": batch}
            self._execute(lambda tx, p=batch_params: tx.run(query, p).consume(), None, write=True,
                          action=f"writing rows {written}..{written + len(batch) - 1}")
            written += len(batch)
        return written

    def run_in_batches(self, query: Query, params: dict | None = None) -> dict[str, int]:
        """Run a statement holding `CALL { ... } IN TRANSACTIONS OF $batch_rows ROWS` (inner
        transactions of `self.batch_rows` rows) in an auto-commit transaction, the only kind Neo4j
        accepts it in. Returns the summary's counters summed over the inner transactions
        (`nodes_deleted`, `relationships_created`, ...).

        Not retried: a failure leaves the inner transactions that committed, so the statements
        sent here are ones that can simply run again (deletes, or writes cleaned up by the build stamp).
        """
        self._require_writable("run_in_batches")
        if self._closed:
            raise GraphError(f"the Neo4j store ({self.uri}) is closed")
        text = text_for(query, self.dialect)
        if "IN TRANSACTIONS" not in text.upper():
            raise ValueError("run_in_batches is for statements with CALL { ... } IN TRANSACTIONS; use run()")
        try:
            with self.driver.session(database=self.database, default_access_mode=neo4j.WRITE_ACCESS) as session:
                summary = session.run(text, {**(params or {}), "batch_rows": self.batch_rows}).consume()
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as e:
            raise self._translate(e, "running a statement in batched transactions") from e
        counters = summary.counters
        return {name: getattr(counters, name) for name in _COUNTER_NAMES}

    # -- atomic multi-statement writes ------------------------------------------------------------

    def write_many(self, statements: Sequence[tuple[Query, dict | None]]) -> list[list[dict]]:
        """Run several statements in ONE managed write transaction (all or nothing, retried as a unit
        on transient errors). Returns each statement's rows."""
        self._require_writable("write_many")
        statements = list(statements)

        def work(tx: neo4j.ManagedTransaction):
            out = []
            for query, params in statements:
                result = tx.run(text_for(query, self.dialect), params or {})
                keys = list(result.keys())
                out.append([dict(zip(keys, (_plain(v) for v in record.values()))) for record in result])
            return out

        return self._execute(work, None, write=True, action=f"running {len(statements)} statements in one transaction")

    @contextmanager
    def transaction(self) -> Iterator["Neo4jTransaction"]:
        """One explicit write transaction: committed when the block ends, rolled back if it raises.

            with store.transaction() as tx:
                tx.run(DELETE_COLLAB_QUERY_NEO4J)
                tx.write_batch(CREATE_COLLAB_QUERY, rows)

        Unlike write_many it is not retried on transient errors.
        """
        self._require_writable("transaction")
        try:
            with self.driver.session(database=self.database, default_access_mode=neo4j.WRITE_ACCESS) as session:
                with session.begin_transaction() as tx:
                    yield Neo4jTransaction(self, tx)
                    tx.commit()
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as e:
            raise self._translate(e, "running a transaction") from e

    @contextmanager
    def rebuild(self, schema: PerDialect[tuple[str, ...]]) -> Iterator["Neo4jBuild"]:
        """Write a whole new graph beside the current one, batch by batch, under a new build stamp.

        Runs the schema DDL (it cannot share a data transaction), deletes what earlier builds left
        that is not the current copy, and yields a `Neo4jBuild` session: every write through it must
        stamp with `$build`. When the block raises, the new copy is deleted (the current one was never
        touched); when it ends, the new copy is marked current and every other copy deleted. Readers
        see both copies while the block runs: one build per database at a time.
        """
        self._require_writable("rebuild")
        for statement in schema.text(self.dialect):
            self.run(statement)
        current = self.run(READ_CURRENT_BUILD_QUERY_NEO4J)[0]["build"]
        self.delete_builds("others", current)      # leftovers of builds killed before their cleanup
        build = Neo4jBuild(self, new_build_id())
        try:
            yield build
        except BaseException as failure:
            try:
                self.delete_builds("failed", build.build_id)
            except GraphError as cleanup:
                failure.add_note(f"deleting the failed build's data (build {build.build_id}) failed too: "
                                 f"{cleanup}; the next build deletes it")
            raise
        self.run(MARK_CURRENT_BUILD_QUERY_NEO4J, {"build": build.build_id})
        try:
            self.delete_builds("others", build.build_id)
        except GraphError as e:
            raise GraphError(f"the new graph (build {build.build_id}) is complete and current, but deleting "
                             f"the previous one failed: {e}. Until the next build, readers see both") from e

    def delete_builds(self, kind: Literal["failed", "others"], build_id: int) -> dict[str, int]:
        """Delete a build's copy (`failed`) or every copy but `build_id` (`others`), in batches of
        `batch_rows`; returns the nodes and relationships deleted."""
        deleted = {"nodes_deleted": 0, "relationships_deleted": 0}
        for query, params in stamp_cleanup(kind, build_id):
            counters = self.run_in_batches(query, params)
            for name in deleted:
                deleted[name] += counters[name]
        return deleted

    # -- internals --------------------------------------------------------------------------------

    def _require_writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyViolation(f"{what} on a read-only Neo4j store ({self.uri})")

    def _run(self, query: Query, params: dict | None, timeout_s: float | None) -> tuple[list[str], list[tuple]]:
        query = text_for(query, self.dialect)

        def work(tx: neo4j.ManagedTransaction):
            result = tx.run(query, params or {})
            keys = list(result.keys())
            return keys, [tuple(_plain(v) for v in record.values()) for record in result]

        return self._execute(work, timeout_s, write=not self.read_only, action="running the query")

    def _execute(self, work, timeout_s: float | None, *, write: bool, action: str, fetch_size: int | None = None):
        if self._closed:
            raise GraphError(f"the Neo4j store ({self.uri}) is closed")
        if timeout_s is not None:
            if timeout_s <= 0:
                raise ValueError("timeout_s must be > 0")
            work = neo4j.unit_of_work(timeout=timeout_s)(work)
        session_args: dict[str, Any] = {"database": self.database}
        if fetch_size is not None:
            session_args["fetch_size"] = max(fetch_size, 1)
        try:
            if write:
                with self.driver.session(default_access_mode=neo4j.WRITE_ACCESS, **session_args) as session:
                    return session.execute_write(work)
            with self.driver.session(default_access_mode=neo4j.READ_ACCESS, **session_args) as session:
                return session.execute_read(work)
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as e:
            raise self._translate(e, action, timeout_s) from e

    def _translate(self, error: Exception, action: str, timeout_s: float | None = None) -> GraphError:
        """The driver's exception -> our error with a message that says what to do."""
        check = (f"Is Neo4j running and reachable at {self.uri}? Start the bundled server with "
                 f"`docker compose up -d neo4j`, and check --neo4j / NEO4J_USER / NEO4J_PASSWORD")
        if isinstance(error, neo4j_errors.AuthError):
            return StoreUnavailable(f"Neo4j at {self.uri} refused the credentials while {action}: "
                                    f"{_message(error)}. Check NEO4J_USER / NEO4J_PASSWORD (or --neo4j-user / "
                                    f"--neo4j-password); they must match the NEO4J_AUTH the server started with")
        if isinstance(error, (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired,
                              neo4j_errors.DatabaseUnavailable, neo4j_errors.ConnectionAcquisitionTimeoutError)):
            return StoreUnavailable(f"cannot reach Neo4j while {action}: {_message(error)}. {check}")
        if isinstance(error, neo4j_errors.ConfigurationError):
            return StoreUnavailable(f"invalid Neo4j connection settings for {self.uri}: {redact_uri(error)}")
        code = getattr(error, "code", None) or ""
        if (code in _READ_ONLY_CODES or isinstance(error, neo4j_errors.ForbiddenOnReadOnlyDatabase)
                or "read access mode" in _message(error)):
            return ReadOnlyViolation(f"Neo4j refused a write in a read-only session ({self.uri}): {_message(error)}")
        if _TIMEOUT_CODE_PART in code:
            limit = f" after {timeout_s:g} s" if timeout_s is not None else ""
            return GraphError(f"the query timed out{limit} and was stopped by Neo4j: {_message(error)}")
        if code == _MISSING_DATABASE_CODE:
            return StoreUnavailable(f"Neo4j at {self.uri} has no database {self.database!r}: {_message(error)}")
        if isinstance(error, neo4j_errors.Neo4jError):
            return GraphError(f"Neo4j error while {action} ({code or type(error).__name__}): {_message(error)}")
        return GraphError(f"Neo4j driver error while {action}: {redact_uri(error)}")


class Neo4jTransaction:
    """The session `Neo4jStore.transaction()` yields (a `graph.store.GraphSession`):
    run / run_df / run_columns / write_batch / bulk_create inside one transaction."""

    dialect = "neo4j"
    read_only = False

    def __init__(self, store: Neo4jStore, tx: neo4j.Transaction):
        self._store = store
        self._tx = tx

    def _run(self, query: Query, params: dict | None) -> tuple[list[str], list[tuple]]:
        try:
            result = self._tx.run(text_for(query, self.dialect), params or {})
            keys = list(result.keys())
            return keys, [tuple(_plain(v) for v in record.values()) for record in result]
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as e:
            raise self._store._translate(e, "running a statement in a transaction") from e

    def run(self, query: Query, params: dict | None = None) -> list[dict]:
        keys, rows = self._run(query, params)
        return [dict(zip(keys, row)) for row in rows]

    def run_df(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        keys, rows = self._run(query, params)
        return pd.DataFrame(rows, columns=keys)

    def run_columns(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        return self.run_df(query, params)

    def write_batch(self, query: Query, rows: Iterable[dict], batch_size: int = 5000) -> int:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        query = text_for(query, self.dialect)
        written = 0
        for batch in _batches(rows, batch_size):
            try:
                self._tx.run(query, {"rows": batch}).consume()
            except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as e:
                raise self._store._translate(e, "writing a batch in a transaction") from e
            written += len(batch)
        return written

    def bulk_create(self, table: str, frame, query: Query, *, batch_size: int = 5000) -> int:
        return self.write_batch(query, iter_neo4j_rows(frame), batch_size)


class Neo4jBuild:
    """The session `Neo4jStore.rebuild()` yields (a `graph.store.GraphSession`): every statement runs
    on the store in its own transaction (writes: one per batch) with `$build`, this build's stamp,
    added to its parameters.

    Writes must stamp what they create (`{..., build: $build}`): an unstamped node would belong to no
    copy and be deleted with the previous ones, so a write whose text never mentions `$build` is
    refused before anything is sent.
    """

    dialect = "neo4j"
    read_only = False

    def __init__(self, store: Neo4jStore, build_id: int):
        self._store = store
        self.build_id = build_id

    def _params(self, params: dict | None) -> dict:
        return {**(params or {}), "build": self.build_id}

    def run(self, query: Query, params: dict | None = None) -> list[dict]:
        return self._store.run(query, self._params(params))

    def run_df(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        return self._store.run_df(query, self._params(params))

    def run_columns(self, query: Query, params: dict | None = None) -> pd.DataFrame:
        return self._store.run_df(query, self._params(params))

    def write_batch(self, query: Query, rows: Iterable[dict], batch_size: int = 5000) -> int:
        require_stamp(query)
        return self._store._write_rows(query, rows, batch_size, {"build": self.build_id})

    def bulk_create(self, table: str, frame, query: Query, *, batch_size: int = 5000) -> int:
        return self.write_batch(query, iter_neo4j_rows(frame), batch_size)

    def run_in_batches(self, query: Query, params: dict | None = None) -> dict[str, int]:
        """Neo4jStore.run_in_batches with `$build` added (SIMILAR from the vector index)."""
        require_stamp(query)
        return self._store.run_in_batches(query, self._params(params))


def require_stamp(query: Query) -> None:
    """Refuse a build write whose Neo4j text does not use `$build` (see Neo4jBuild)."""
    if not re.search(r"\$build\b", text_for(query, "neo4j")):
        raise GraphError("a write inside a Neo4j rebuild must stamp what it creates with `build: $build` "
                         "(graph/queries.py: build stamp); this statement does not use $build: "
                         + " ".join(text_for(query, "neo4j").split())[:200])


def iter_neo4j_rows(frame, chunk_rows: int = CONVERT_ROWS) -> Iterator[dict]:
    """`neo4j_rows` of a DataFrame or Arrow table, converted `chunk_rows` at a time as the batches are
    sent: converting 20M interactions at once would hold 20M dicts in memory."""
    n_rows = len(frame) if isinstance(frame, pd.DataFrame) else frame.num_rows
    for start in range(0, n_rows, chunk_rows):
        part = frame.iloc[start:start + chunk_rows] if isinstance(frame, pd.DataFrame) \
            else frame.slice(start, chunk_rows)
        yield from neo4j_rows(part)


def neo4j_rows(frame) -> list[dict]:
    """A DataFrame (or Arrow table) as `$rows` for the driver: missing values (NaN, NA, None) become
    null, which Neo4j stores as "no property"; numpy arrays become lists and numpy scalars Python
    values (the driver packs neither)."""
    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas(integer_object_nulls=True)   # nullable integers stay integers
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{key: _native(value) for key, value in row.items()} for row in rows]


def _native(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_native(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _plan_operators(plan: dict | None) -> list[str]:
    """Every operator type in a plan tree from the driver's summary (`{"operatorType", "children"}`)."""
    if not plan:
        return []
    names = [str(plan.get("operatorType", plan.get("operator_type", "")))]
    for child in plan.get("children", ()) or ():
        names.extend(_plan_operators(child))
    return names


def _message(error: Exception) -> str:
    return redact_uri(getattr(error, "message", None) or str(error))


def _plain(value: Any) -> Any:
    """Driver values -> plain Python values shaped like LadybugDB's (see the module docstring)."""
    if isinstance(value, Node):
        labels = sorted(value.labels)
        return {"_ID": value.element_id, "_LABEL": labels[0] if labels else None, "_LABELS": labels,
                **{k: _plain(v) for k, v in value.items()}}
    if isinstance(value, Relationship):
        return {"_ID": value.element_id, "_LABEL": value.type,
                "_SRC": value.start_node.element_id if value.start_node is not None else None,
                "_DST": value.end_node.element_id if value.end_node is not None else None,
                **{k: _plain(v) for k, v in value.items()}}
    if isinstance(value, Path):
        return {"_NODES": [_plain(n) for n in value.nodes], "_RELS": [_plain(r) for r in value.relationships]}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    to_native = getattr(value, "to_native", None)       # neo4j.time.DateTime / Date / Time
    if to_native is not None and type(value).__module__.startswith("neo4j.time"):
        return to_native()
    return value
