"""`iirg data | train | evaluate | tiny-model`: IIRG instruction data, LoRA fine-tuning, evaluation."""

from __future__ import annotations


def register(sub, common) -> None:
    """Add data, train, evaluate and tiny-model."""
