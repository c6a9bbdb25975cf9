"""Fine-tuning of a causal LM on IIRG instruction data (transformers Trainer + peft LoRA, or every weight).

    iirg train --run runs/ml-100k --model runs/ml-100k/llm/tiny --out runs/ml-100k/llm/adapters/iirg
    iirg train --run runs/ml-100k --model Qwen/Qwen2.5-0.5B-Instruct --config configs/qwen2.5-0.5b_gpu.toml
    accelerate launch -m cli train ...   # or torchrun: data-parallel through the Trainer, no code change

Reads only an instruction-data folder (`iirg data`; `--data` takes any such folder), so it runs on a
GPU machine without the graph database.

- Prompt: the tokenizer's chat template when it has one (Alpaca layout otherwise); the loss covers
  answer tokens only (labels are -100 on the prompt).
- Task weights: every sample's weight multiplies the cross-entropy of its answer tokens; the sum is
  divided by the number of answer tokens of the whole accumulated batch (transformers'
  `num_items_in_batch`, gathered across processes), so a weight of 0 removes a task and gradient
  accumulation matches one big batch.
- Items as semantic IDs (data from `iirg data --item-repr sid`): every SID code token the tokenizer
  lacks is added, the embeddings are resized, and only the SID rows of the embedding matrix train
  beside LoRA (peft's `trainable_token_indices`; the whole matrix stays frozen). For a tiny model
  built with `iirg tiny-model --item-repr sid` the tokens exist already: nothing is added or resized,
  their rows still train. train_config.json records the tokens, their ids and the resize.
- `method = "full"`: every weight trains and the output folder holds the whole model (config.json,
  model.safetensors) instead of an adapter. For a small model with no language knowledge to protect
  (the tiny one, pre-trained only on the catalogue): its frozen base is mostly random weights that
  LoRA cannot change beyond rank r. Evaluation loads the folder as the model itself.
- Model selection: every `eval_steps` the constrained decoder (train.llm.decode) recommends for a
  seeded sample of valid users; Recall@10 (= HitRate@10: one held-out item per user) picks the best
  checkpoint, which is the adapter left in the output folder. The test split is not read here.

Output folder (`--out`):
    adapter_config.json, adapter_model.safetensors   the selected LoRA adapter (peft format), or
    config.json, model.safetensors                   the selected whole model (method = "full")
    train_config.json     this TrainConfig + base model, data folder, target modules, git commit
    metrics.json          train loss, valid metrics per evaluation, best step, tokens/s
    loss_curve.png        training loss and valid Recall@10 over steps
    tokenizer files       the tokenizer used (with the SID tokens for sid data), so the folder is
                          self-describing and evaluation uses the same token ids
    checkpoints/checkpoint-<step>/   Trainer checkpoints (optimizer, scheduler, RNG): `--resume`
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from common.config import build_config
from common.errors import ConfigError, IirgError
from common.files import atomic_file, write_json
from graph.rundir import git_commit
from train.llm import prompts
from train.llm.data import InstructionData, load_instruction_data


class TrainError(IirgError):
    """Fine-tuning cannot start or continue (bad settings, nothing to resume, ...)."""


@dataclass
class TrainConfig:
    """Everything `iirg train` needs; saved as train_config.json next to adapter_config.json."""

    model: str = field(default="", metadata={"help": "base model: local folder or Hugging Face id (required)"})
    data: str = field(default="", metadata={
        "help": "instruction-data folder written by `iirg data` (iirg train: <run>/llm/data when empty)"})
    out: str = field(default="", metadata={
        "help": "output folder for the adapter, checkpoints, metrics (iirg train: "
                "<run>/llm/adapters/<name> when empty)"})
    tasks: tuple[str, ...] | None = field(default=None, metadata={
        "help": "train on these tasks of the data folder only (default: all it has)"})
    method: Literal["lora", "full"] = field(default="lora", metadata={
        "help": "lora: LoRA adapters (+ the SID rows) on a frozen base; full: every weight trains and "
                "the folder holds the whole model (small models, e.g. the tiny one)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    dropout: float = field(default=0.0, metadata={
        "help": "dropout on the input embeddings, attention and each block's attention / MLP output, "
                "training only (Llama / Qwen2 have none; SASRec uses 0.2)"})
    target_modules: str = field(default="auto", metadata={
        "help": "comma-separated module names, 'all-linear', or auto (per architecture)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training samples"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: epochs)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=8, metadata={"help": "samples per device per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps with linear warm-up"})
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = field(default="cosine", metadata={
        "help": "learning-rate schedule after warm-up"})
    max_length: int = field(default=1024, metadata={
        "help": "longest prompt+answer in tokens; longer samples are dropped and counted"})
    save_steps: int = field(default=200, metadata={"help": "checkpoint every N optimizer steps"})
    eval_steps: int | None = field(default=None, metadata={
        "help": "valid evaluation every N steps (default: save_steps; must divide save_steps)"})
    eval_users: int = field(default=200, metadata={
        "help": "valid users sampled for Recall@10 model selection (0: no evaluation, keep last)"})
    eval_beams: int = field(default=10, metadata={"help": "beam width of the valid evaluation (>= 10)"})
    eval_batch_size: int = field(default=8, metadata={"help": "users per generate call in valid evaluation"})
    save_total_limit: int | None = field(default=3, metadata={"help": "checkpoints kept (best one always kept)"})
    logging_steps: int = field(default=10, metadata={"help": "log the loss every N steps"})
    resume: bool = field(default=False, metadata={"help": "continue from the latest checkpoint in out"})
    seed: int = field(default=42, metadata={"help": "seed for LoRA init, data order, valid sample"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision (GPU)"})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision (GPU)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    dataloader_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: torch's choice, all cores)"})
    time_budget_min: float = field(default=0.0, metadata={
        "help": "stop after this many minutes of training (0: no limit); the last step is saved and "
                "evaluated, so model selection sees it (as TIGER's and SASRec's time_budget_min)"})

    def __post_init__(self):
        if self.time_budget_min < 0:
            raise ConfigError("time_budget_min must be >= 0")
        if self.tasks is not None:
            self.tasks = tuple(self.tasks)
            unknown = [t for t in self.tasks if t not in prompts.TASKS]
            if unknown:
                raise ConfigError(f"unknown tasks {unknown}; choose from {prompts.TASKS}")
        if self.bf16 and self.fp16:
            raise ConfigError("choose one of bf16 and fp16")
        if self.method not in ("lora", "full"):
            raise ConfigError(f"method must be lora or full, not {self.method!r}")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ConfigError("lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1 are required")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio must be in [0, 1)")
        if self.batch_size < 1 or self.grad_accum < 1 or self.save_steps < 1:
            raise ConfigError("batch_size, grad_accum and save_steps must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads must be >= 1 (or unset)")
        if self.max_steps == 0 or self.max_steps < -1 or (self.max_steps == -1 and self.epochs <= 0):
            raise ConfigError("max_steps must be -1 (use epochs > 0) or >= 1")
        if self.eval_steps is None:
            self.eval_steps = self.save_steps
        if self.eval_users > 0:
            if self.save_steps % self.eval_steps:
                raise ConfigError(f"save_steps {self.save_steps} must be a multiple of eval_steps "
                                 f"{self.eval_steps} (the best checkpoint must be saved)")
            if self.eval_beams < 10:
                raise ConfigError("eval_beams must be >= 10 to measure Recall@10")

    @property
    def output_files(self) -> tuple[str, str]:
        """(config file, weights file) the output folder holds: a LoRA adapter or the whole model."""
        if self.method == "full":
            return "config.json", "model.safetensors"
        return "adapter_config.json", "adapter_model.safetensors"

    def to_dict(self) -> dict:
        return {**asdict(self), "tasks": list(self.tasks) if self.tasks else None}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """From a saved record (train_config.json); unknown keys are errors."""
        return build_config(cls, values, table="train")

    @classmethod
    def load(cls, adapter_dir: str | os.PathLike) -> "TrainConfig":
        path = Path(adapter_dir) / "train_config.json"
        if not path.exists():
            raise ConfigError(f"{adapter_dir} has no train_config.json (not written by `iirg train`)")
        return cls.from_dict(json.loads(path.read_text())["config"])


# ---------------------------------------------------------------- samples -> tensors

def encode_samples(tokenizer, samples: list[dict], max_length: int) -> tuple[list[dict], int]:
    """Token ids with labels -100 on the prompt, and the per-sample weight.

    Ids are int32 arrays (a full ml-100k run holds ~100k samples of a few hundred tokens).
    Returns the encoded samples and how many were dropped for exceeding max_length.
    """
    import numpy as np

    answers = prompts.AnswerEncoder(tokenizer)
    prompt_ids = prompts.encode_prompts(tokenizer, [s["instruction"] for s in samples],
                                        [s.get("input", "") for s in samples])
    encoded, dropped = [], 0
    for sample, prompt in zip(samples, prompt_ids):
        answer = answers.encode(sample["output"])
        if len(prompt) + len(answer) > max_length:
            dropped += 1
            continue
        ids = np.asarray(prompt + answer, dtype=np.int32)
        labels = ids.copy()
        labels[:len(prompt)] = -100
        encoded.append({"input_ids": ids, "labels": labels,
                        "weight": float(sample.get("weight", 1.0)), "task": sample.get("task", "nip")})
    return encoded, dropped


def collate(features: list[dict], pad_id: int, left: bool = False) -> dict:
    """Pad a micro-batch: input_ids, attention_mask, position_ids (0 at each row's first real
    token), labels (-100 on padding), weights. Right-padded by default; `left` puts every answer at
    the right edge, so a training step needs the vocabulary logits of the last positions only
    (`answer_window`). With the position ids the two paddings give the same loss (a test checks)."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), -100, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = torch.as_tensor(f["input_ids"], dtype=torch.long)
        labels[row, span] = torch.as_tensor(f["labels"], dtype=torch.long)
        mask[row, span] = 1
    weights = torch.tensor([f["weight"] for f in features], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "labels": labels, "weights": weights}


def answer_window(labels) -> int:
    """The number of trailing positions whose logits predict every answer token of a left-padded
    batch: from the one before the earliest answer token to the end (position t predicts t + 1)."""
    has_answer = labels.ne(-100).any(0)
    if not has_answer.any():
        return 1
    first = int(has_answer.nonzero()[0])
    return labels.shape[1] - max(first - 1, 0)


def weighted_token_loss(logits, labels, weights):
    """(sum over answer tokens of weight * cross-entropy, number of answer tokens).

    logits (B, T, V), labels (B, T) with -100 off the answer, weights (B,). Position t predicts t+1.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()           # (B, T-1, V)
    shift_labels = labels[:, 1:]                        # (B, T-1)
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                         ignore_index=-100, reduction="none").view(shift_labels.shape)
    answer = shift_labels.ne(-100)
    total = (ce * answer * weights.to(ce.dtype)[:, None]).sum()
    return total, answer.sum()


class ListDataset:
    """A map-style dataset over a list (what the Trainer's sampler needs)."""

    def __init__(self, rows: list):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.rows[index]


# ---------------------------------------------------------------- the trainer

def accepts_logits_to_keep(model) -> bool:
    """Whether the (base) causal LM's forward takes `logits_to_keep` (transformers' LMs since 4.50)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def make_trainer_class():
    """The Trainer subclass (built lazily so importing this module does not import transformers)."""
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """Task-weighted token loss; `evaluate` = constrained-decoding Recall@10 on valid users."""

        def __init__(self, *args, valid_eval=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.valid_eval = valid_eval
            self.eval_seconds = 0.0  # time spent decoding valid users, kept out of tokens/s
            self.logits_to_keep = accepts_logits_to_keep(self.model)
            # Ask the Trainer to count answer tokens over the accumulated batch (num_items_in_batch).
            self.model_accepts_loss_kwargs = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            weights = inputs.pop("weights")
            # Batches are left-padded (`collate`), so the answers sit in the last `answer_window`
            # positions: the LM head and the softmax run there only. For a small model the head is
            # most of the cost (the tiny SID LM: 5k x 128 vocabulary rows against 2 blocks of width
            # 128) and a prompt is 2-3x longer than its answer. 0 = every position (HF's convention).
            keep = answer_window(labels) if self.logits_to_keep else 0
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            position_ids=inputs["position_ids"], **({"logits_to_keep": keep} if keep else {}))
            total, count = weighted_token_loss(outputs.logits, labels[:, -outputs.logits.shape[1]:], weights)
            if num_items_in_batch is None:
                loss = total / count.clamp(min=1)
            else:
                loss = total / num_items_in_batch
                if self.args.average_tokens_across_devices and self.args.world_size > 1:
                    # num_items_in_batch is summed over processes and DDP averages gradients.
                    loss = loss * self.args.world_size
            return (loss, outputs) if return_outputs else loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            start = time.perf_counter()
            metrics = self.valid_eval(self.model, self.accelerator) if self.valid_eval else {}
            self.eval_seconds += time.perf_counter() - start
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in metrics.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return WeightedTrainer


class ValidEvaluation:
    """Recall@10 / NDCG@10 of constrained beam search on a seeded sample of valid users.

    Sharded over processes (each decodes its share, counts are summed), so data-parallel runs give
    the same number as one process.
    """

    def __init__(self, tokenizer, data: InstructionData, config: TrainConfig):
        from train.llm.decode import DecodeConfig, ItemTrie

        rng = random.Random(config.seed)
        valid = data.valid
        chosen = rng.sample(range(len(valid)), min(config.eval_users, len(valid)))
        self.cases = [{"user_id": valid[i]["user_id"], "history": valid[i]["history_item_ids"],
                       "target": valid[i]["target_item_id"]} for i in sorted(chosen)]
        self.tokenizer = tokenizer
        self.item_texts = data.item_texts
        self.trie = ItemTrie.from_texts(tokenizer, list(self.item_texts), list(self.item_texts.values()))
        self.max_history = data.max_history
        self.decode = DecodeConfig(num_beams=config.eval_beams, batch_size=config.eval_batch_size)

    def __call__(self, model, accelerator) -> dict:
        import torch

        from train.llm.decode import recommend

        cases = self.cases[accelerator.process_index::accelerator.num_processes]
        was_training = model.training
        model.eval()
        try:
            result = recommend(model, self.tokenizer, self.trie, self.item_texts, cases, self.max_history,
                               self.decode, progress=accelerator.is_main_process)
        finally:
            model.train(was_training)
        ranks = {}
        for user_id, item_id, rank in result.recommendations[["user_id", "item_id", "rank"]].itertuples(index=False):
            ranks[(user_id, item_id)] = rank
        hits = ndcg = 0.0
        for case in cases:
            rank = ranks.get((case["user_id"], case["target"]))
            if rank is not None and rank <= 10:
                hits += 1
                ndcg += 1 / math.log2(rank + 1)
        totals = torch.tensor([hits, ndcg, len(cases), result.stats["invalid"], result.stats["returned"]],
                              dtype=torch.float64, device=accelerator.device)
        totals = accelerator.reduce(totals, reduction="sum").tolist()
        n = max(totals[2], 1)
        return {"recall@10": totals[0] / n, "ndcg@10": totals[1] / n,
                "invalid_rate": totals[3] / totals[4] if totals[4] else 0.0, "users": int(totals[2])}


class StepCounter:
    """Counts the optimizer steps this process ran (resume test: steps after a resume < total), and
    stops training once `time_budget_min` minutes have passed (0: never)."""

    def __init__(self, time_budget_min: float = 0.0, evaluate: bool = False):
        self.first_step = None
        self.steps = 0
        self.time_budget_s = time_budget_min * 60
        self.evaluate = evaluate
        self.started = time.perf_counter()
        self.out_of_time = False

    def callback(self):
        from transformers import TrainerCallback

        counter = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                counter.steps += 1
                if counter.first_step is None:
                    counter.first_step = state.global_step
                if counter.time_budget_s and time.perf_counter() - counter.started > counter.time_budget_s:
                    # the Trainer saves (and evaluates) after this callback: the last step is selectable
                    counter.out_of_time = True
                    control.should_training_stop = True
                    control.should_save = True
                    control.should_evaluate = counter.evaluate

        return _Callback()


def _tokens_at(checkpoint: Path | None) -> int:
    """Tokens seen before this run (a resumed run counts only its own for tokens/s)."""
    if checkpoint is None or not (checkpoint / "trainer_state.json").exists():
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0))


def latest_checkpoint(checkpoints: Path) -> Path | None:
    found = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def plot_loss_curve(log_history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    valid = [(h["step"], h["eval_recall@10"]) for h in log_history if "eval_recall@10" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="training loss (weighted CE / answer token)", color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    if valid:
        ax2 = ax.twinx()
        ax2.plot(*zip(*valid), "o-", color="tab:orange", label="valid Recall@10")
        ax2.set_ylabel("valid Recall@10")
        ax2.set_ylim(bottom=0, top=max(v for _, v in valid) * 1.2 or 1.0)  # from 0: no exaggerated wiggles
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)



@dataclass
class TrainResult:
    out: Path
    metrics: dict
    model: object          # the trained model (PeftModel for lora; selected checkpoint loaded), for callers and tests
    tokenizer: object
    steps_this_run: int
    first_step_this_run: int | None


def finetune(config: TrainConfig) -> TrainResult:
    """Fine-tune config.model (LoRA or every weight) on config.data; write the folder config.out.

    Raises:
        TrainError: bad settings, an output folder from another run without --resume, or nothing
            to resume from.
        LlmDataError: the data folder is missing or lacks a requested task.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments, set_seed

    from train.llm.modeling import (add_sid_tokens, add_training_dropout, fit_embeddings, load_base_model,
                                    load_tokenizer, sid_token_ids, target_modules_for,
                                    trainable_token_targets)

    if not config.model or not config.data or not config.out:
        raise TrainError("model, data and out are required")
    out = Path(config.out)
    checkpoints = out / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if config.resume else None
    if config.resume and resume_from is None:
        raise TrainError(f"--resume: no checkpoint in {checkpoints}")
    if not config.resume and (out / "train_config.json").exists():
        raise TrainError(f"{out} already holds a trained adapter; pass --resume to continue it or "
                         f"choose another --out")

    if config.threads:
        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    data = load_instruction_data(config.data, config.tasks)
    tokenizer = load_tokenizer(config.model, padding_side="right")
    sid_record = None
    if data.item_repr == "sid":  # before encoding: the samples must be tokenized with the code tokens
        sid_tokens, added = add_sid_tokens(tokenizer, data.items["sid"])
        sid_record = {"tokens": len(sid_tokens), "added_to_tokenizer": added, "vocab_size": len(tokenizer),
                      "token_ids": sid_token_ids(tokenizer, sid_tokens), "sid_file": data.meta.get("sids")}
    samples = [s for task in data.train for s in data.train[task]]
    encoded, dropped = encode_samples(tokenizer, samples, config.max_length)
    if not encoded:
        raise TrainError(f"no training sample fits max_length={config.max_length} tokens")
    load_dtype = "bfloat16" if config.bf16 else "float16" if config.fp16 else "float32"
    model = load_base_model(config.model, dtype=load_dtype)
    model_type = model.config.model_type
    targets = target_modules_for(model_type, config.target_modules)
    trainable_tokens = None
    if sid_record is not None:
        sid_record["embedding_rows"] = fit_embeddings(model, len(tokenizer))  # (before, after)
    if sid_record is not None and config.method != "lora":
        sid_record["trainable_layers"] = "all"  # method full: every row trains
    elif sid_record is not None:
        if "trainable_token_indices" not in LoraConfig.__dataclass_fields__:
            import peft

            raise TrainError(f"SID data trains only the new token rows with peft's trainable_token_indices "
                             f"(peft >= 0.15); installed peft {peft.__version__}: upgrade it")
        trainable_tokens = trainable_token_targets(model, sid_record["token_ids"])
        sid_record["trainable_layers"] = "tied" if isinstance(trainable_tokens, list) else list(trainable_tokens)
    if config.method == "lora":
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM", bias="none",
                          trainable_token_indices=trainable_tokens)
        model = get_peft_model(model, lora)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings: let checkpointed blocks get gradients
    else:
        targets = "all weights"
    add_training_dropout(model, config.dropout)  # hooks on the model as trained (peft-wrapped or not)

    evaluate = config.eval_users > 0 and len(data.valid) > 0
    args = TrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr, weight_decay=config.weight_decay, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, logging_steps=config.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluate else "no", eval_steps=config.eval_steps if evaluate else None,
        load_best_model_at_end=evaluate, metric_for_best_model="recall@10" if evaluate else None,
        greater_is_better=True, seed=config.seed, bf16=config.bf16, fp16=config.fp16,
        # transformers 5 calls it activation checkpointing; non-reentrant works with frozen inputs.
        **({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False}}
           if config.gradient_checkpointing else {}),
        remove_unused_columns=False, report_to="none", dataloader_num_workers=config.dataloader_workers,
        include_num_input_tokens_seen="non_padding", ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available())
    counter = StepCounter(config.time_budget_min, evaluate)
    trainer_class = make_trainer_class()
    trainer = trainer_class(
        model=model, args=args, train_dataset=ListDataset(encoded),
        eval_dataset=ListDataset(data.valid) if evaluate else None,
        data_collator=lambda features: collate(features, tokenizer.pad_token_id, left=True),
        processing_class=tokenizer, callbacks=[counter.callback()],
        valid_eval=ValidEvaluation(tokenizer, data, config) if evaluate else None)
    tokens_before = _tokens_at(resume_from)
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    state = trainer.state
    valid_history = [{k.removeprefix("eval_"): v for k, v in h.items() if k.startswith("eval_") or k == "step"}
                     for h in state.log_history if "eval_recall@10" in h]
    task_counts = {t: sum(1 for e in encoded if e["task"] == t) for t in data.train}
    metrics = {
        "global_step": state.global_step,
        "resumed_from_step": int(resume_from.name.split("-")[-1]) if resume_from else None,
        "steps_this_run": counter.steps,
        "stopped_by_time_budget": counter.out_of_time,
        "train_loss": output.training_loss,
        "train_runtime_s": output.metrics.get("train_runtime"),
        "valid_eval_s": round(trainer.eval_seconds, 2),
        "tokens_seen": state.num_input_tokens_seen - tokens_before,
        # training tokens (non-padding, all processes) per second of training, decoding excluded
        "tokens_per_s": ((state.num_input_tokens_seen - tokens_before)
                         / max(output.metrics["train_runtime"] - trainer.eval_seconds, 1e-9)
                         if output.metrics.get("train_runtime") else None),
        "samples": task_counts, "dropped_too_long": dropped,
        "valid": valid_history,
        "best_step": int(state.best_model_checkpoint.split("-")[-1]) if state.best_model_checkpoint else None,
        "best_valid_recall@10": state.best_metric,
        "selected": "best valid Recall@10 checkpoint" if state.best_model_checkpoint else "last step",
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if trainer.is_world_process_zero():
        _save_trained(trainer.model, tokenizer, out)
        write_json(out / "metrics.json", metrics)
        write_json(out / "train_config.json", {
            "config": config.to_dict(), "base_model": config.model, "model_type": model_type,
            "target_modules": targets, "data_config": data.meta, "sid_tokens": sid_record,
            "git_commit": git_commit(),
            "torch_version": torch.__version__})
        plot_loss_curve(state.log_history, out / "loss_curve.png", f"{out.name}: {'+'.join(data.train)}")
    return TrainResult(out=out, metrics=metrics, model=trainer.model, tokenizer=tokenizer,
                       steps_this_run=counter.steps, first_step_this_run=counter.first_step)


def _save_trained(model, tokenizer, out: Path) -> None:
    """Write the trained adapter (LoRA) or whole model (method full) + tokenizer to a temporary folder,
    then move the files in (never half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out))
    try:
        if hasattr(model, "peft_config"):
            # No copy of the whole embedding matrix, even when it was resized for SID tokens: every added
            # row is a trainable token, saved by value in the adapter, and the other rows are the base's.
            model.save_pretrained(tmp, save_embedding_layers=False)
        else:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for path in tmp.iterdir():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
