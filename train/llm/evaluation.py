"""Generative evaluation: constrained beam search top-K for held-out users, scored by the shared evaluator.

    iirg evaluate --run runs/ml-100k --adapter runs/ml-100k/llm/adapters/iirg           # IIRG LoRA
    iirg evaluate --run runs/ml-100k --no-adapter --base-model runs/ml-100k/llm/tiny    # base model

For each user of the split (`evaluate.cases.eval_cases`: history -> held-out item) the prompt shows
the last `max_history` history items (the value the adapter was trained with), the decoder returns
`num_beams` distinct real items (history excluded by default), and the list goes to
`evaluate.record.record_model`, so the run appears in `iirg report` next to the baselines, per
segment. Decoding stats (invalid rate, which must be 0, users/s) are stored with the metrics.

Items are written as the adapter's training data wrote them (`item_repr` in its data_config): for
SID data the trie holds every catalogue item's SID code tokens (+ EOS) from the adapter's tokenizer,
and the run's `export/sids.parquet` must be the file the data was made from (its sha256 is checked).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from common.errors import ConfigError, IirgError

DEFAULT_MAX_HISTORY = 20


class EvaluateError(IirgError):
    """Generative evaluation cannot run (no adapter, adapter from another dataset, ...)."""


@dataclass
class EvaluateConfig:
    """What `iirg evaluate` decodes and how."""

    adapter: str | None = field(default=None, metadata={
        "help": "folder from `iirg train`: a LoRA adapter, or a whole model (method = full)"})
    no_adapter: bool = field(default=False, metadata={"help": "evaluate the base model without fine-tuning"})
    base_model: str | None = field(default=None, metadata={
        "help": "base model folder or id (default: the one the adapter was trained on)"})
    split: Literal["valid", "test"] = field(default="test", metadata={"help": "held-out split to evaluate"})
    max_users: int | None = field(default=None, metadata={
        "help": "evaluate the first N users (natural id order; the documented subset), default all"})
    name: str | None = field(default=None, metadata={
        "help": "model name in the report (default llm-<adapter folder> or llm-base-<model folder>)"})
    num_beams: int = field(default=20, metadata={"help": "beam width = K items per user"})
    batch_size: int = field(default=8, metadata={"help": "users per generate call"})
    max_history: int | None = field(default=None, metadata={
        "help": "history items in the prompt (default: as in training, else 20)"})
    keep_history: bool = field(default=False, metadata={
        "help": "allow recommending history items (else they are masked in the trie and removed by "
                "the evaluator)"})
    constraint: Literal["mask", "callback"] = field(default="mask", metadata={
        "help": "trie constraint implementation: vectorized mask or per-beam Python callback"})
    device: str | None = field(default=None, metadata={"help": "cuda, cuda:1, cpu... (default: auto)"})
    item_repr: Literal["title", "sid"] | None = field(default=None, metadata={
        "help": "how items are written in prompts and the trie (default: as in the adapter's training "
                "data; title with --no-adapter)"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: torch's choice, all cores)"})

    def __post_init__(self):
        if self.no_adapter == (self.adapter is not None):
            raise ConfigError("pass exactly one of --adapter <dir> and --no-adapter")
        if self.no_adapter and not self.base_model:
            raise ConfigError("--no-adapter needs --base-model")
        if self.split not in ("valid", "test"):
            raise ConfigError(f"split must be valid or test, got {self.split!r}")
        if self.max_users is not None and self.max_users < 1:
            raise ConfigError("max_users must be >= 1")
        if self.item_repr not in (None, "title", "sid"):
            raise ConfigError(f"item_repr must be title or sid, got {self.item_repr!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads must be >= 1 (or unset)")

    def model_name(self) -> str:
        if self.name:
            return self.name
        if self.adapter:
            return f"llm-{Path(self.adapter).resolve().name}"
        return f"llm-base-{Path(self.base_model).name}"


def _train_record(adapter: str) -> dict:
    path = Path(adapter) / "train_config.json"
    if not path.exists():
        raise EvaluateError(f"{adapter} has no train_config.json: not an adapter written by `iirg train`")
    return json.loads(path.read_text())


def evaluate_llm(run, config: EvaluateConfig) -> dict:
    """Decode top-K for the split's users and record them with the shared evaluator.

    Returns {"model", "metrics" (from record_model), "decode" (stats)}.
    """
    import torch

    from evaluate.cases import eval_cases
    from evaluate.record import record_model
    from graph.export import load_export
    from train.llm.data import item_texts, load_item_sids, select_users
    from train.llm.decode import DecodeConfig, ItemTrie, recommend
    from train.llm.modeling import load_adapter_model, load_tokenizer, pick_device, sid_token_ids
    from train.llm.prompts import sid_tokens

    if config.threads:
        torch.set_num_threads(config.threads)
    export = load_export(run.export)
    record = _train_record(config.adapter) if config.adapter else None
    base = config.base_model or (record and record["base_model"])
    if record:
        trained_on = record["data_config"]["export"].get("dataset_checksum")
        if trained_on and trained_on != export.manifest.get("dataset_checksum"):
            raise EvaluateError(f"the adapter {config.adapter} was trained on dataset checksum {trained_on[:12]}…, "
                                f"this run's export has {str(export.manifest.get('dataset_checksum'))[:12]}…")
    max_history = config.max_history or (record and int(record["data_config"]["config"]["max_history"])) \
        or DEFAULT_MAX_HISTORY
    tokenizer_dir = config.adapter if config.adapter and (Path(config.adapter) / "tokenizer_config.json").exists() \
        else base
    tokenizer = load_tokenizer(tokenizer_dir, padding_side="left")
    trained_repr = record["data_config"]["config"].get("item_repr", "title") if record else None
    if config.item_repr and trained_repr and config.item_repr != trained_repr:
        raise EvaluateError(f"the adapter {config.adapter} was trained with items as {trained_repr}, not "
                            f"{config.item_repr}: drop --item-repr")
    item_repr = config.item_repr or trained_repr or "title"
    sids, sid_file = load_item_sids(export) if item_repr == "sid" else (None, None)
    trained_sids = (record or {}).get("data_config", {}).get("sids")
    if sid_file and trained_sids and trained_sids["sha256"] != sid_file["sha256"]:
        raise EvaluateError(f"the adapter {config.adapter} was trained on other semantic IDs (sids.parquet "
                            f"{trained_sids['sha256'][:12]}…) than this run has ({sid_file['sha256'][:12]}…): "
                            f"`iirg sid` ran again since; rerun `iirg data --item-repr sid` and `iirg train`")
    if sids is not None:
        sid_token_ids(tokenizer, sid_tokens(sids.values()))  # every code is one token, or a clear error
    device = pick_device(config.device)
    # The adapter's tokenizer may hold added SID tokens: grow the base embeddings to it, as in training.
    model = load_adapter_model(base, config.adapter, device=device, vocab_size=len(tokenizer))

    cases = eval_cases(export, config.split)
    keep = set(select_users(cases["user_id"], config.max_users))
    cases = cases[cases["user_id"].isin(keep)]
    case_list = [{"user_id": u, "history": list(h)} for u, h in zip(cases["user_id"], cases["history"])]
    texts = item_texts(export.items, item_repr, sids)
    trie = ItemTrie.from_texts(tokenizer, list(texts), list(texts.values()))
    decode = DecodeConfig(num_beams=config.num_beams, batch_size=config.batch_size,
                          keep_history=config.keep_history, constraint=config.constraint)
    result = recommend(model, tokenizer, trie, texts, case_list, max_history, decode)
    name = config.model_name()
    info = {"kind": "llm", "adapter": config.adapter, "base_model": base, "max_history": max_history,
            "item_repr": item_repr, "sid_file": sid_file,
            "users_evaluated": len(case_list), "user_subset": config.max_users, "decode": result.stats,
            "decode_config": asdict(decode),
            "train_tasks": record["data_config"]["config"]["tasks"] if record else None,
            "train_metrics_file": str(Path(config.adapter) / "metrics.json") if config.adapter else None}
    recommendations = result.recommendations[["user_id", "item_id", "rank", "score"]]
    metrics = record_model(run, name, recommendations, split=config.split, info=info,
                           keep_history=config.keep_history,
                           users=[c["user_id"] for c in case_list] if config.max_users else None,
                           export=export)
    return {"model": name, "metrics": metrics, "decode": result.stats}
