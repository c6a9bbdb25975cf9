"""The two Cypher dialects iirg speaks, and the one way a statement differs between them.

Most statements are one text that LadybugDB and Neo4j both accept (a plain `str`). Where the dialects
differ, the statement is a `PerDialect` holding both texts; every store resolves it itself
(`GraphStore.run(PerDialect(...))` sends the text of the store's own dialect), so callers never branch
on the backend:

    SET_USER_SEGMENTS_QUERY = PerDialect(ladybug="... CAST(row.hop AS INT64) ...", neo4j="... row.hop ...")
    store.write_batch(SET_USER_SEGMENTS_QUERY, rows)

`text_for(query, dialect)` is the same choice where there is no store yet (the read-only guard, the
console's examples, the linter). A `PerDialect` may also hold a tuple of statements (the schema DDL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, Union

Dialect = Literal["ladybug", "neo4j"]
DIALECTS: tuple[Dialect, ...] = ("ladybug", "neo4j")

T = TypeVar("T")


@dataclass(frozen=True)
class PerDialect(Generic[T]):
    """One statement (or tuple of statements) written once per dialect."""

    ladybug: T
    neo4j: T

    def text(self, dialect: Dialect) -> T:
        if dialect == "ladybug":
            return self.ladybug
        if dialect == "neo4j":
            return self.neo4j
        raise ValueError(f"unknown Cypher dialect {dialect!r} (expected 'ladybug' or 'neo4j')")


Query = Union[str, PerDialect[str]]


def text_for(query: Query, dialect: Dialect) -> str:
    """The text of `query` for `dialect` (a plain string is the same in both)."""
    return query.text(dialect) if isinstance(query, PerDialect) else query
