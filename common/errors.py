"""The base error of the whole project. Every error iirg raises on purpose subclasses `IirgError`;
each stage adds its own subclasses (ingest.errors, graph.errors)."""

from __future__ import annotations


class IirgError(Exception):
    """Base class: the CLI prints these as one clear line, without a stack trace."""


class ConfigError(IirgError, ValueError):
    """An invalid option value or combination (raised by config dataclasses' __post_init__)."""
