"""`iirg` subcommands of the ingest stage (registered by cli.py)."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add this stage's subcommands to the `iirg` parser; `common` holds shared parent parsers."""
