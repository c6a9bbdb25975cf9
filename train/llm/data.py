"""IIRG instruction data from a run's export: next-item, collaborative- and semantic-neighbour tasks.

    iirg data --run runs/ml-100k                       # all three tasks, weights 1,1,1
    iirg data --run runs/ml-100k --tasks nip --out runs/ml-100k/llm/data-nip

Reads only the export folder (`graph.export.load_export`), so it needs no graph database, and uses
the training part of every sequence only (all but the last two items; valid and test are held out).

Tasks (every sample carries `task` and its loss `weight`):
- nip: history (the most recent `max_history` items) -> next item. Default `nip_mode="prefixes"`:
  every prefix of the training sequence gives one sample (a sliding window), as in P5 / the IIRG
  data, so every observed transition i -> j is a training target. `"last"` keeps one sample per user
  (training history -> last training item), the cheaper variant used by some LC-Rec style setups.
- collab: anchor item -> its top-k collaborative neighbours (COLLAB edges) in rank order.
- semantic: anchor item -> its top-k semantic neighbours (SIMILAR edges) in rank order.
- every other relation with a task (graph/relations), e.g. meta: anchor item -> its SHARES_META
  neighbours (needs `iirg build --extra-relations SHARES_META`; not among the default tasks).
The neighbour tasks, their instructions and their relations come from the relation registry.

Output folder (LLaMA-Factory / Alpaca convention, so the official IIRG tooling can read it too):
    train_<task>.jsonl   {"instruction", "input", "output", "task", "weight", ...ids}
    valid.jsonl          one next-item sample per user: training history -> valid item, with
                         `history_item_ids` (the whole training history, excluded when decoding)
    items.jsonl          {"item_id", "title"}: the catalogue the constrained decoder allows
    dataset_info.json    LLaMA-Factory dataset registry (one entry per task, plus iirg_valid)
    data_config.json     the DataConfig, counts, prompt format and the export's checksum
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from common.errors import ConfigError, IirgError
from common.files import atomic_dir
from graph.relations import task_relations
from train.llm import prompts

DATA_FORMAT_VERSION = 1


class LlmDataError(IirgError):
    """Bad instruction-data settings or a data folder that cannot be used."""


@dataclass
class DataConfig:
    """How `iirg data` turns an export into instruction samples."""

    tasks: tuple[str, ...] = field(default=prompts.DEFAULT_TASKS, metadata={
        "help": "tasks to write: " + ", ".join(f"{t} ({prompts.TASK_NAMES[t]})" for t in prompts.TASKS)})
    weights: tuple[float, ...] | None = field(default=None, metadata={
        "help": "loss weight of each task, in the order of --tasks (one value applies to all; "
                "default 1 each)"})
    max_history: int = field(default=20, metadata={
        "help": "most recent history items shown in a next-item prompt"})
    nip_mode: Literal["prefixes", "last"] = field(default="prefixes", metadata={
        "help": "prefixes: one sample per position of each training sequence (P5/IIRG style); "
                "last: one sample per user"})
    collab_k: int | None = field(default=None, metadata={
        "help": "neighbours per collab sample (default: all exported, i.e. the build's k)"})
    semantic_k: int | None = field(default=None, metadata={
        "help": "neighbours per semantic sample (default: all exported, i.e. the build's semantic k)"})
    max_users: int | None = field(default=None, metadata={
        "help": "use only the first N users (ids in natural order) for next-item samples and "
                "the valid file: a documented subset for CPU runs"})
    seed: int = field(default=0, metadata={"help": "seed for the order of samples in each file"})

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        unknown = [t for t in self.tasks if t not in prompts.TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"unknown or no tasks {unknown or self.tasks}; choose from {prompts.TASKS}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"a task is listed twice: {self.tasks}")
        weights = tuple(float(w) for w in (self.weights if self.weights is not None else (1.0,)))
        if len(weights) == 1:
            weights = weights * len(self.tasks)
        if len(weights) != len(self.tasks):
            raise ConfigError(f"{len(weights)} weights for {len(self.tasks)} tasks {self.tasks}")
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ConfigError(f"weights must be >= 0 with at least one > 0, got {weights}")
        self.weights = weights
        if self.max_history < 1:
            raise ConfigError("max_history must be >= 1")
        if self.nip_mode not in ("prefixes", "last"):
            raise ConfigError(f"nip_mode must be prefixes or last, got {self.nip_mode!r}")
        for name in ("collab_k", "semantic_k", "max_users"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 (or unset)")

    @property
    def task_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.weights))

    def to_dict(self) -> dict:
        return {**asdict(self), "tasks": list(self.tasks), "weights": list(self.weights)}


def natural_key(user_id: str):
    """Sort ids numerically when they are numbers ("2" before "10"), as text otherwise."""
    return (0, int(user_id), "") if re.fullmatch(r"\d+", user_id) else (1, 0, user_id)


def select_users(user_ids, n: int | None) -> list[str]:
    """The first n distinct user ids in natural order (all when n is None): the documented subset."""
    users = sorted(set(map(str, user_ids)), key=natural_key)
    return users if n is None else users[:n]


def training_sequences(interactions: pd.DataFrame) -> dict[str, list[str]]:
    """user_id -> training item ids in sequence order (valid/test items removed)."""
    train = interactions[interactions["split"] == "train"].sort_values(["user_id", "pos"], kind="stable")
    return {u: g.tolist() for u, g in train.groupby("user_id", sort=False)["item_id"]}


def nip_samples(sequences: dict[str, list[str]], titles: dict[str, str], users: list[str],
                config: DataConfig, weight: float) -> list[dict]:
    instruction = prompts.INSTRUCTIONS["nip"]
    out = []
    for user_id in users:
        seq = sequences.get(user_id, [])
        targets = range(1, len(seq)) if config.nip_mode == "prefixes" else range(len(seq) - 1, len(seq))
        for t in targets:
            if t < 1:
                continue
            history = seq[max(0, t - config.max_history):t]
            out.append({"instruction": instruction, "input": prompts.format_items(titles[i] for i in history),
                        "output": prompts.format_item(titles[seq[t]]), "task": "nip", "weight": weight,
                        "user_id": user_id, "target_item_id": seq[t]})
    return out


def neighbour_samples(edges: pd.DataFrame, titles: dict[str, str], task: str, k: int | None,
                      weight: float) -> list[dict]:
    """One sample per anchor item: its neighbours in rank order (top k)."""
    instruction = prompts.INSTRUCTIONS[task]
    out = []
    ordered = edges.sort_values(["item_id", "rank"], kind="stable")
    for item_id, group in ordered.groupby("item_id", sort=False):
        neighbours = [n for n in group["neighbor_id"].tolist() if n in titles][:k]
        if not neighbours or item_id not in titles:
            continue
        out.append({"instruction": instruction, "input": prompts.format_item(titles[item_id]),
                    "output": prompts.format_items(titles[n] for n in neighbours), "task": task,
                    "weight": weight, "anchor_item_id": item_id, "neighbor_item_ids": neighbours})
    return out


def valid_samples(interactions: pd.DataFrame, sequences: dict[str, list[str]], titles: dict[str, str],
                  users: list[str], max_history: int) -> list[dict]:
    """Training history -> valid item, one per user with a valid item and some training history."""
    valid = interactions[interactions["split"] == "valid"]
    target = dict(zip(valid["user_id"], valid["item_id"]))
    instruction = prompts.INSTRUCTIONS["nip"]
    out = []
    for user_id in users:
        history = sequences.get(user_id, [])
        if user_id not in target or not history:
            continue
        out.append({"instruction": instruction,
                    "input": prompts.format_items(titles[i] for i in history[-max_history:]),
                    "output": prompts.format_item(titles[target[user_id]]), "task": "nip", "weight": 1.0,
                    "user_id": user_id, "target_item_id": target[user_id], "history_item_ids": history})
    return out


def build_samples(export, config: DataConfig) -> tuple[dict[str, list[dict]], list[dict]]:
    """Instruction samples per task (training split only) and the valid-split samples."""
    titles = export.titles
    sequences = training_sequences(export.interactions)
    users = select_users(sequences.keys(), config.max_users)
    weights = config.task_weights
    relations = task_relations()
    per_task: dict[str, list[dict]] = {}
    for task in config.tasks:
        if task == "nip":
            per_task[task] = nip_samples(sequences, titles, users, config, weights[task])
            continue
        spec = relations[task]
        edges = export.edges(spec.name)
        if edges is None:
            raise LlmDataError(f"task {task!r} needs {spec.name} edges, which this export lacks: rebuild "
                               f"with `iirg build --extra-relations {spec.name}`")
        k = getattr(config, spec.task.k_setting) if spec.task.k_setting else None
        per_task[task] = neighbour_samples(edges, titles, task, k, weights[task])
    return per_task, valid_samples(export.interactions, sequences, titles, users, config.max_history)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise LlmDataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
    return rows


def dataset_info(tasks: list[str]) -> dict:
    """LLaMA-Factory's dataset registry: Alpaca columns (instruction -> prompt, input -> query)."""
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    info = {f"iirg_{t}": {"file_name": f"train_{t}.jsonl", "formatting": "alpaca", "columns": columns}
            for t in tasks}
    info["iirg_valid"] = {"file_name": "valid.jsonl", "formatting": "alpaca", "columns": columns}
    return info


def write_instruction_data(export, config: DataConfig, out_dir: str | os.PathLike) -> dict:
    """Write the instruction-data folder atomically; returns its data_config.json content."""
    out_dir = Path(out_dir)
    per_task, valid = build_samples(export, config)
    empty = [t for t, rows in per_task.items() if not rows]
    if empty:
        raise LlmDataError(f"no samples for task(s) {empty}: the export has no training sequences "
                           f"or relations for them (check `iirg build` output)")
    rng = random.Random(config.seed)
    with atomic_dir(out_dir) as tmp:
        for task, rows in per_task.items():
            rng.shuffle(rows)
            _write_jsonl(tmp / f"train_{task}.jsonl", rows)
        _write_jsonl(tmp / "valid.jsonl", valid)
        items = export.items[["item_id", "title"]]
        _write_jsonl(tmp / "items.jsonl", items.to_dict("records"))
        (tmp / "dataset_info.json").write_text(json.dumps(dataset_info(list(per_task)), indent=2))
        meta = {
            "version": DATA_FORMAT_VERSION,
            "config": config.to_dict(),
            "counts": {**{t: len(r) for t, r in per_task.items()}, "valid": len(valid), "items": len(items)},
            "users": len(select_users(training_sequences(export.interactions).keys(), config.max_users)),
            "format": {"item_template": prompts.ITEM_TEMPLATE, "item_separator": prompts.ITEM_SEPARATOR,
                       "instructions": {t: prompts.INSTRUCTIONS[t]
                                        for t in dict.fromkeys([*prompts.DEFAULT_TASKS, *config.tasks])}},
            "export": {"dataset": export.manifest.get("dataset"),
                       "dataset_checksum": export.manifest.get("dataset_checksum"),
                       "params": export.manifest.get("params"),
                       "created_at": export.manifest.get("created_at")},
        }
        (tmp / "data_config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return meta


@dataclass
class InstructionData:
    """A written instruction-data folder, read back (what `iirg train` consumes)."""

    path: Path
    meta: dict
    train: dict[str, list[dict]]   # task -> samples
    valid: list[dict]
    items: pd.DataFrame            # item_id, title

    @property
    def max_history(self) -> int:
        return int(self.meta["config"]["max_history"])


def load_instruction_data(path: str | os.PathLike, tasks: tuple[str, ...] | None = None) -> InstructionData:
    """Read a folder written by `iirg data` (or any folder in the same format).

    Raises:
        LlmDataError: the folder is not instruction data, or a requested task is missing.
    """
    path = Path(path)
    meta_path = path / "data_config.json"
    if not meta_path.exists():
        raise LlmDataError(f"{path} is not an iirg instruction-data folder (no data_config.json); "
                           f"run `iirg data` first")
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != DATA_FORMAT_VERSION:
        raise LlmDataError(f"{meta_path}: data format {meta.get('version')} is not {DATA_FORMAT_VERSION}")
    if meta.get("format", {}).get("item_template") != prompts.ITEM_TEMPLATE:
        raise LlmDataError(f"{meta_path}: items are written as {meta.get('format', {}).get('item_template')!r}, "
                           f"this iirg writes {prompts.ITEM_TEMPLATE!r}; rerun `iirg data`")
    available = list(meta["config"]["tasks"])
    tasks = tuple(tasks) if tasks else tuple(available)
    missing = [t for t in tasks if t not in available]
    if missing:
        raise LlmDataError(f"{path} has no samples for task(s) {missing} (it has {available})")
    train = {t: read_jsonl(path / f"train_{t}.jsonl") for t in tasks}
    items = pd.DataFrame(read_jsonl(path / "items.jsonl"), columns=["item_id", "title"])
    return InstructionData(path=path, meta=meta, train=train, valid=read_jsonl(path / "valid.jsonl"),
                           items=items)
