"""One store interface, two real backends: embedded LadybugDB (default, on disk) and Neo4j.

Components never open connections themselves: `open_store(config)` is called once by the CLI (or the
dashboard) and the store is passed in, like neo4j-graphrag passes its driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Protocol

import pandas as pd

Dialect = Literal["ladybug", "neo4j"]


@dataclass
class StoreConfig:
    """Which store to open. Only cli.py reads NEO4J_USER / NEO4J_PASSWORD and fills them in."""

    backend: Literal["embedded", "neo4j"] = "embedded"
    path: Path | None = None            # embedded: the database file (RunPaths.store)
    uri: str | None = None              # neo4j: bolt://host:7687 or neo4j://...
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None         # neo4j database name; None = server default

    def __post_init__(self):
        if self.backend == "embedded" and self.path is None:
            raise ValueError("the embedded store needs a path")
        if self.backend == "neo4j" and not self.uri:
            raise ValueError("the neo4j store needs a uri (bolt://host:7687)")

    def describe(self) -> str:
        """For messages and page captions: a password written into the URI is shown as ***."""
        if self.backend == "neo4j":
            from graph.neo4j_store import redact_uri   # lazy: only the Neo4j backend needs the driver
            return f"neo4j {redact_uri(self.uri)}"
        return f"embedded {self.path}"


class GraphStore(Protocol):
    dialect: Dialect
    read_only: bool

    def run(self, query: str, params: dict | None = None) -> list[dict]:
        """Run one statement; rows as dicts keyed by the RETURN column names."""

    def run_df(self, query: str, params: dict | None = None) -> pd.DataFrame:
        """Run one statement; rows as a DataFrame (columns = RETURN names, also for empty results)."""

    def write_batch(self, query: str, rows: Iterable[dict], batch_size: int = 5000) -> int:
        """Run an `UNWIND $rows AS row ...` statement over rows in batches; returns rows written."""

    def close(self) -> None: ...

    def __enter__(self) -> "GraphStore": ...

    def __exit__(self, *exc) -> None: ...


def open_store(config: StoreConfig, *, read_only: bool = False) -> GraphStore:
    """Open the configured backend. read_only uses the database's own read-only mode."""
    if config.backend == "neo4j":
        from graph.neo4j_store import Neo4jStore
        return Neo4jStore.connect(config, read_only=read_only)
    from graph.embedded_store import EmbeddedStore
    return EmbeddedStore(os.fspath(config.path), read_only=read_only)
