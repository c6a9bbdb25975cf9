"""`iirg analyze | baseline | report`: memorization segments, baselines and the shared report."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add analyze, baseline and report."""
