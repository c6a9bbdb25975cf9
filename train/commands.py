"""`iirg` subcommands of the train stage (registered by cli.py).

Two groups, one module each: memorization analysis, baselines and reports
(`train.analysis_commands`), and IIRG LLM data, LoRA fine-tuning and generative evaluation
(`train.llm.commands`).
"""

from __future__ import annotations

from train import analysis_commands
from train.llm import commands as llm_commands


def register(sub, common) -> None:
    analysis_commands.register(sub, common)
    llm_commands.register(sub, common)
