"""Graph-stage errors; all subclass `common.errors.IirgError`."""

from __future__ import annotations

from common.errors import IirgError


class GraphError(IirgError):
    """A query or load failed in a store (the driver's error is chained as __cause__)."""


class StoreUnavailable(GraphError):
    """The store cannot be reached or opened (Neo4j down, wrong password, missing run folder)."""


class ReadOnlyViolation(GraphError):
    """An ad-hoc query tried to write, or to reach the file system or server, through a read path."""
