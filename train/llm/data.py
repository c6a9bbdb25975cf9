"""IIRG instruction data from a run's export: next-item, collaborative- and semantic-neighbour tasks.

    iirg data --run runs/ml-100k                       # all three tasks, weights 1,1,1
    iirg data --run runs/ml-100k --tasks nip --out runs/ml-100k/llm/data-nip
    iirg data --run runs/ml-100k --item-repr sid --out runs/ml-100k/llm/data-sid   # after `iirg sid`

Reads only the export folder (`graph.export.load_export`), so it needs no graph database, and uses
the training part of every sequence only (all but the last two items; valid and test are held out).

Tasks (every sample carries `task` and its loss `weight`):
- nip: history (the most recent `max_history` items) -> next item. Default `nip_mode="prefixes"`:
  every prefix of the training sequence gives one sample (a sliding window), as in P5 / the IIRG
  data, so every observed transition i -> j is a training target. `"last"` keeps one sample per user
  (training history -> last training item), the cheaper variant used by some LC-Rec style setups.
  `"continuation"` trains the same transitions as `prefixes` at a fraction of the tokens: the
  sequence is cut into spans of `nip_span` items; each sample shows the `max_history` items before
  a span and answers with the span itself, one item per line. A causal LM's loss on the answer is
  then the next-item loss at every position of the span (its first item is exactly a `prefixes`
  target; the later ones see the earlier span items as more history), so one forward pass of
  ~(max_history + span) items trains `span` targets instead of one. The prompt at evaluation is
  unchanged (history -> the first item), and the decoder ranks an item by its own tokens' probability
  (train.llm.decode: the end token after a finished item costs nothing), so an answer that would go
  on to a second item is not penalised. Not the paper's data layout: a CPU-budget device, reported
  as such.
- collab: anchor item -> its top-k collaborative neighbours (COLLAB edges) in rank order.
- semantic: anchor item -> its top-k semantic neighbours (SIMILAR edges) in rank order.
- every other relation with a task (graph/relations), e.g. meta: anchor item -> its SHARES_META
  neighbours (needs `iirg build --extra-relations SHARES_META`; not among the default tasks).
- title2sid / sid2title (only with `--item-repr sid`, not default): one sample per catalogue item,
  title -> SID and SID -> title, so a pretrained LLM ties the new code tokens to its language.
The neighbour tasks, their instructions and their relations come from the relation registry.

Items are written as quoted titles (`--item-repr title`, the paper) or as their semantic IDs
(`--item-repr sid`: `<a_48><b_1><c_50><d_0>` from the run's `export/sids.parquet`, made by `iirg sid`)
in every task: history, target and neighbour lists alike (train.llm.prompts).

Output folder (LLaMA-Factory / Alpaca convention, so the official IIRG tooling can read it too):
    train_<task>.jsonl   {"instruction", "input", "output", "task", "weight", ...ids}
    valid.jsonl          one next-item sample per user: training history -> valid item, with
                         `history_item_ids` (the whole training history, excluded when decoding)
    items.jsonl          {"item_id", "title"} (+ "sid" with --item-repr sid): the catalogue the
                         constrained decoder allows
    dataset_info.json    LLaMA-Factory dataset registry (one entry per task, plus iirg_valid)
    data_config.json     the DataConfig (item_repr included), counts, prompt format, the export's
                         checksum and, for sid data, the identity of the SID file (sha256, method...)
"""

from __future__ import annotations

import hashlib
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
    item_repr: Literal["title", "sid"] = field(default="title", metadata={
        "help": "how every item is written: title (quoted title, the IIRG paper) or sid (its semantic "
                "ID tokens from `iirg sid`, LC-Rec style; enables the title2sid and sid2title tasks)"})
    max_history: int = field(default=20, metadata={
        "help": "most recent history items shown in a next-item prompt"})
    nip_mode: Literal["prefixes", "last", "continuation"] = field(default="prefixes", metadata={
        "help": "prefixes: one sample per position of each training sequence (P5/IIRG style); "
                "last: one sample per user; continuation: history -> the next nip_span items (the "
                "same transitions as prefixes, ~nip_span x fewer tokens)"})
    nip_span: int = field(default=10, metadata={
        "help": "items per answer with nip_mode=continuation (each one a next-item target)"})
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
        if self.nip_mode not in ("prefixes", "last", "continuation"):
            raise ConfigError(f"nip_mode must be prefixes, last or continuation, got {self.nip_mode!r}")
        if self.nip_span < 1:
            raise ConfigError("nip_span must be >= 1")
        if self.item_repr not in prompts.ITEM_REPRS:
            raise ConfigError(f"item_repr must be one of {prompts.ITEM_REPRS}, got {self.item_repr!r}")
        alignment = [t for t in self.tasks if t in prompts.ALIGNMENT_TASKS]
        if alignment and self.item_repr != "sid":
            raise ConfigError(f"task(s) {alignment} align titles with semantic IDs: they need --item-repr sid")
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


def nip_samples(sequences: dict[str, list[str]], texts: dict[str, str], users: list[str],
                config: DataConfig, weight: float) -> list[dict]:
    """Next-item samples; `texts` is item_id -> the item as written (`item_texts`).

    Every sample answers with the items seq[t:t + span] after the history seq[t - max_history:t]:
    span 1 at every t >= 1 (prefixes), at the last t only (last), or spans of nip_span items tiling
    positions 1.. (continuation). `target_item_id` is the first answer item, `target_item_ids` all.
    """
    instruction = prompts.INSTRUCTIONS["nip"]
    span = config.nip_span if config.nip_mode == "continuation" else 1
    out = []
    for user_id in users:
        seq = sequences.get(user_id, [])
        if config.nip_mode == "last":
            starts = range(len(seq) - 1, len(seq))
        else:
            starts = range(1, len(seq), span)
        for t in starts:
            if t < 1:
                continue
            history, answer = seq[max(0, t - config.max_history):t], seq[t:t + span]
            out.append({"instruction": instruction, "input": prompts.join_items(texts[i] for i in history),
                        "output": prompts.join_items(texts[i] for i in answer), "task": "nip",
                        "weight": weight, "user_id": user_id, "target_item_id": answer[0],
                        **({"target_item_ids": answer} if config.nip_mode == "continuation" else {})})
    return out


def neighbour_samples(edges: pd.DataFrame, texts: dict[str, str], task: str, k: int | None,
                      weight: float) -> list[dict]:
    """One sample per anchor item: its neighbours in rank order (top k)."""
    instruction = prompts.INSTRUCTIONS[task]
    out = []
    ordered = edges.sort_values(["item_id", "rank"], kind="stable")
    for item_id, group in ordered.groupby("item_id", sort=False):
        neighbours = [n for n in group["neighbor_id"].tolist() if n in texts][:k]
        if not neighbours or item_id not in texts:
            continue
        out.append({"instruction": instruction, "input": texts[item_id],
                    "output": prompts.join_items(texts[n] for n in neighbours), "task": task,
                    "weight": weight, "anchor_item_id": item_id, "neighbor_item_ids": neighbours})
    return out


def valid_samples(interactions: pd.DataFrame, sequences: dict[str, list[str]], texts: dict[str, str],
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
                    "input": prompts.join_items(texts[i] for i in history[-max_history:]),
                    "output": texts[target[user_id]], "task": "nip", "weight": 1.0,
                    "user_id": user_id, "target_item_id": target[user_id], "history_item_ids": history})
    return out


def alignment_samples(items: pd.DataFrame, sids: dict[str, str], task: str, weight: float) -> list[dict]:
    """title2sid / sid2title: one sample per catalogue item (item metadata only, no interactions)."""
    instruction = prompts.INSTRUCTIONS[task]
    out = []
    for item_id, title in zip(items["item_id"], items["title"]):
        title_text, sid_text = prompts.item_text("title", title), prompts.item_text("sid", title, sids[item_id])
        source, target = (title_text, sid_text) if task == "title2sid" else (sid_text, title_text)
        out.append({"instruction": instruction, "input": source, "output": target, "task": task,
                    "weight": weight, "item_id": item_id})
    return out


def item_texts(items: pd.DataFrame, item_repr: str, sids: dict[str, str] | None = None) -> dict[str, str]:
    """item_id -> the item as the model reads and writes it (quoted title or SID string)."""
    if item_repr == "sid":
        if sids is None:
            raise LlmDataError("item_repr sid needs the items' SIDs")
        return {i: prompts.item_text("sid", t, sids[i]) for i, t in zip(items["item_id"], items["title"])}
    return {i: prompts.item_text("title", t) for i, t in zip(items["item_id"], items["title"])}


def load_item_sids(export) -> tuple[dict[str, str], dict]:
    """item_id -> SID string from the run's `export/sids.parquet`, and the identity of that file.

    The identity (sha256 of the file, quantizer settings, the dataset checksum it was made for) goes
    into data_config.json, so training and evaluation can tell whether the run's SIDs still match.

    Raises:
        LlmDataError: `iirg sid` has not run, or ran for another build of the dataset.
    """
    from evaluate.token_level import SIDS_FILE, SIDError, load_sids
    from train.sid import sid_strings

    try:
        codes, stats = load_sids(export)
    except SIDError as e:
        raise LlmDataError(f"items written as semantic IDs (item_repr sid) need the run's SIDs: {e}") from e
    path = export.directory / SIDS_FILE
    sids = dict(zip(export.items["item_id"].astype(str), sid_strings(codes)))
    identity = {"file": SIDS_FILE, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                **{k: stats.get(k) for k in ("method", "levels", "codes_per_level", "n_codes", "seed",
                                             "dataset_checksum")},
                "tokens": len(prompts.sid_tokens(sids.values()))}
    return sids, identity


def build_samples(export, config: DataConfig,
                  sids: dict[str, str] | None = None) -> tuple[dict[str, list[dict]], list[dict]]:
    """Instruction samples per task (training split only) and the valid-split samples.

    `sids` (item_id -> SID string, `load_item_sids`) is required for `item_repr="sid"`.
    """
    texts = item_texts(export.items, config.item_repr, sids)
    sequences = training_sequences(export.interactions)
    users = select_users(sequences.keys(), config.max_users)
    weights = config.task_weights
    relations = task_relations()
    per_task: dict[str, list[dict]] = {}
    for task in config.tasks:
        if task == "nip":
            per_task[task] = nip_samples(sequences, texts, users, config, weights[task])
            continue
        if task in prompts.ALIGNMENT_TASKS:
            per_task[task] = alignment_samples(export.items, sids, task, weights[task])
            continue
        spec = relations[task]
        edges = export.edges(spec.name)
        if edges is None:
            raise LlmDataError(f"task {task!r} needs {spec.name} edges, which this export lacks: rebuild "
                               f"with `iirg build --extra-relations {spec.name}`")
        k = getattr(config, spec.task.k_setting) if spec.task.k_setting else None
        per_task[task] = neighbour_samples(edges, texts, task, k, weights[task])
    return per_task, valid_samples(export.interactions, sequences, texts, users, config.max_history)


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
    sids, sid_identity = load_item_sids(export) if config.item_repr == "sid" else (None, None)
    per_task, valid = build_samples(export, config, sids)
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
        if sids is not None:
            items = items.assign(sid=items["item_id"].map(sids))
        _write_jsonl(tmp / "items.jsonl", items.to_dict("records"))
        (tmp / "dataset_info.json").write_text(json.dumps(dataset_info(list(per_task)), indent=2))
        meta = {
            "version": DATA_FORMAT_VERSION,
            "config": config.to_dict(),
            "counts": {**{t: len(r) for t, r in per_task.items()}, "valid": len(valid), "items": len(items)},
            "users": len(select_users(training_sequences(export.interactions).keys(), config.max_users)),
            "format": {"item_template": prompts.ITEM_TEMPLATES[config.item_repr],
                       "item_separator": prompts.ITEM_SEPARATOR,
                       "instructions": {t: prompts.INSTRUCTIONS[t]
                                        for t in dict.fromkeys([*prompts.DEFAULT_TASKS, *config.tasks])}},
            "export": {"dataset": export.manifest.get("dataset"),
                       "dataset_checksum": export.manifest.get("dataset_checksum"),
                       "params": export.manifest.get("params"),
                       "created_at": export.manifest.get("created_at")},
        }
        if sid_identity is not None:
            meta["sids"] = sid_identity
        (tmp / "data_config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return meta


@dataclass
class InstructionData:
    """A written instruction-data folder, read back (what `iirg train` consumes)."""

    path: Path
    meta: dict
    train: dict[str, list[dict]]   # task -> samples
    valid: list[dict]
    items: pd.DataFrame            # item_id, title (+ sid for sid data)

    @property
    def max_history(self) -> int:
        return int(self.meta["config"]["max_history"])

    @property
    def item_repr(self) -> str:
        """title or sid (folders written before --item-repr existed are title)."""
        return self.meta["config"].get("item_repr", "title")

    @property
    def item_texts(self) -> dict[str, str]:
        """item_id -> the item as written in this data (what the decoder's trie must hold)."""
        sids = dict(zip(self.items["item_id"], self.items["sid"])) if self.item_repr == "sid" else None
        return item_texts(self.items, self.item_repr, sids)


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
    item_repr = meta["config"].get("item_repr", "title")
    expected = prompts.ITEM_TEMPLATES.get(item_repr)
    if meta.get("format", {}).get("item_template") != expected:
        raise LlmDataError(f"{meta_path}: items are written as {meta.get('format', {}).get('item_template')!r}, "
                           f"this iirg writes {expected!r} for item_repr {item_repr!r}; rerun `iirg data`")
    available = list(meta["config"]["tasks"])
    tasks = tuple(tasks) if tasks else tuple(available)
    missing = [t for t in tasks if t not in available]
    if missing:
        raise LlmDataError(f"{path} has no samples for task(s) {missing} (it has {available})")
    train = {t: read_jsonl(path / f"train_{t}.jsonl") for t in tasks}
    columns = ["item_id", "title", "sid"] if item_repr == "sid" else ["item_id", "title"]
    items = pd.DataFrame(read_jsonl(path / "items.jsonl"), columns=columns)
    if item_repr == "sid" and items["sid"].isna().any():
        raise LlmDataError(f"{path / 'items.jsonl'}: sid data, but some items have no sid; rerun `iirg data`")
    return InstructionData(path=path, meta=meta, train=train, valid=read_jsonl(path / "valid.jsonl"),
                           items=items)
