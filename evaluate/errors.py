"""Evaluation errors; all subclass `common.errors.IirgError`."""

from __future__ import annotations

from common.errors import IirgError


class EvaluationError(IirgError):
    """Recommendations or cases that cannot be evaluated (unknown items, duplicate ranks, ...)."""


def examples(values, n: int = 3) -> str:
    """The first `n` values, quoted, for an error message."""
    return ", ".join(repr(v) for v in list(values)[:n])
