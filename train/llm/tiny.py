"""A small Llama-architecture model with a BPE tokenizer trained on the dataset's item texts.

    iirg tiny-model --run runs/ml-100k --out runs/ml-100k/llm/tiny [--pretrain-steps 300]
    iirg tiny-model --run runs/ml-100k --item-repr sid --out runs/ml-100k/llm/tiny-sid  # after `iirg sid`

For CI and CPU-only machines: nothing is downloaded. The tokenizer is a byte-level BPE trained with
`tokenizers` on the item titles (in the answer format of `train.llm.prompts`) plus the prompt
vocabulary (instructions, chat roles), so item names take few tokens. The model is a `LlamaConfig`
(2 layers, hidden 128 by default), optionally pre-trained for a few hundred steps on the formatted
item titles so that it can spell item names before any recommendation training (it never sees
interaction data here, so the base model knows titles but no user behaviour).

With `--item-repr sid` (default: the item_repr of the run's instruction data `<run>/llm/data`, else
title) the tokenizer also holds every SID code token of the run's `export/sids.parquet` (`<a_0>`, ...,
one token per level and code), so `iirg train` finds them and resizes nothing, and the pre-training
texts are `"<title>"\n<sid>` per item: the model learns to write an item's codes after its title
(catalogue knowledge only, still no interactions), so the code embeddings start with a meaning.

The tokenizer has a chat template (`<|user|>` / `<|assistant|>` turns), so fine-tuning and
decoding take the same chat path as Qwen or Llama-3. Load it with `train.llm.modeling.load_tokenizer`
(PreTrainedTokenizerFast; AutoTokenizer would swap in Llama's tokenizer class).
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from common.errors import ConfigError
from common.files import atomic_dir
from train.llm import prompts

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass
class TinyModelConfig:
    """Size of the tiny model and of its brief title pre-training."""

    architecture: Literal["llama", "qwen2"] = field(default="llama", metadata={
        "help": "model class: llama (LlamaConfig) or qwen2 (Qwen2Config, the Qwen2.5 layout)"})
    chat_template: bool = field(default=True, metadata={
        "help": "give the tokenizer a chat template (else prompts use the plain Alpaca layout)"})
    vocab_size: int = field(default=4000, metadata={"help": "BPE vocabulary size (special tokens included)"})
    hidden_size: int = field(default=128, metadata={"help": "model width"})
    intermediate_size: int = field(default=344, metadata={"help": "MLP width"})
    num_layers: int = field(default=2, metadata={"help": "transformer blocks"})
    num_heads: int = field(default=4, metadata={"help": "attention heads (hidden_size must divide)"})
    max_positions: int = field(default=2048, metadata={"help": "longest sequence in tokens"})
    pretrain_steps: int = field(default=300, metadata={
        "help": "steps of next-token training on formatted item titles (0: random weights)"})
    pretrain_batch_size: int = field(default=64, metadata={"help": "titles per pre-training step"})
    pretrain_lr: float = field(default=3e-3, metadata={"help": "peak learning rate of the pre-training"})
    seed: int = field(default=0, metadata={"help": "seed for weights and title order"})
    item_repr: Literal["title", "sid"] | None = field(default=None, metadata={
        "help": "sid: add the run's SID code tokens to the vocabulary and pre-train on title -> SID "
                "(default: as the run's instruction data <run>/llm/data, else title)"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: torch's choice, all cores)"})

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.vocab_size < 300:
            raise ConfigError("vocab_size must be >= 300 (256 bytes + special tokens + merges)")
        if self.architecture not in ("llama", "qwen2"):
            raise ConfigError(f"architecture must be llama or qwen2, got {self.architecture!r}")
        if self.pretrain_steps < 0 or self.num_layers < 1:
            raise ConfigError("pretrain_steps must be >= 0 and num_layers >= 1")
        if self.item_repr not in (None, "title", "sid"):
            raise ConfigError(f"item_repr must be title or sid, got {self.item_repr!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads must be >= 1 (or unset)")


def tokenizer_corpus(titles: list[str]) -> list[str]:
    """Texts the BPE is trained on: every item in the answer format, and the prompt vocabulary."""
    texts = [prompts.format_item(t) for t in titles]
    # The default tasks' instructions: a relation task added later does not change the tokenizer
    # (byte-level BPE still writes its words, in more tokens).
    texts += [prompts.INSTRUCTIONS[task] for task in prompts.DEFAULT_TASKS]
    texts.append(prompts.PLAIN_TEMPLATE)
    return texts


def train_tokenizer(titles: list[str], vocab_size: int, *, chat_template: bool = True,
                    sids: list[str] | None = None):
    """Byte-level BPE on the titles and prompt words; with `sids`, plus one token per SID code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    # Byte-level: every title is representable (accents, symbols), no unknown token needed.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(tokenizer_corpus(titles), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", model_max_length=2048)
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    if sids is not None:
        # The same added tokens `iirg train` would add (train.llm.modeling.add_sid_tokens), here
        # before the model is built, so its embedding matrix has their rows from the start.
        tokenizer.add_tokens(prompts.sid_tokens(sids))
    return tokenizer


def build_model(tokenizer, config: TinyModelConfig):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(config.seed)
    config_class, model_class = ((LlamaConfig, LlamaForCausalLM) if config.architecture == "llama"
                                 else (Qwen2Config, Qwen2ForCausalLM))
    model_config = config_class(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = model_class(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def pretrain_on_titles(model, tokenizer, titles: list[str], config: TinyModelConfig,
                       sids: list[str] | None = None) -> list[float]:
    """Next-token training on `<|assistant|>\\n"<title>"</s>` so the model can spell item names.

    With `sids`, the answer is `"<title>"\\n<sid></s>`: the title, then the item's codes.
    Returns the loss of every step. Only item texts: no interactions, so no user behaviour leaks in.
    """
    import torch
    from tqdm.auto import tqdm

    if config.pretrain_steps == 0:
        return []
    # The answer position of a prompt: after the chat template's assistant turn, or the Alpaca header.
    head_text = "<|assistant|>\n" if tokenizer.chat_template else "### Response:\n"
    head = tokenizer(head_text, add_special_tokens=False)["input_ids"]
    texts = [prompts.format_item(t) for t in titles] if sids is None else \
        [prompts.join_items([prompts.item_text("title", t), prompts.item_text("sid", t, sid)])
         for t, sid in zip(titles, sids)]
    encoded = [[tokenizer.bos_token_id, *head, *ids] for ids in prompts.text_tokens(tokenizer, texts)]
    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.pretrain_lr, weight_decay=0.0)
    warmup = max(1, config.pretrain_steps // 20)

    def lr_at(step: int) -> float:  # linear warm-up then cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, config.pretrain_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    losses = []
    order: list[int] = []
    desc = "pre-training on titles" if sids is None else "pre-training on titles -> SIDs"
    for _ in tqdm(range(config.pretrain_steps), desc=desc, unit="step"):
        if len(order) < config.pretrain_batch_size:
            order += rng.sample(range(len(encoded)), len(encoded))
        batch = [encoded[i] for i in order[:config.pretrain_batch_size]]
        del order[:config.pretrain_batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def build_tiny_model(titles: list[str], out_dir: str | os.PathLike, config: TinyModelConfig,
                     *, sids: list[str] | None = None, source: dict | None = None) -> dict:
    """Train the tokenizer, build (and optionally pre-train) the model, save both to out_dir.

    sids: every item's SID string (same order as titles), required when config.item_repr is sid.
    Written to a temporary folder and renamed, so out_dir is either complete or absent.
    Returns the summary saved as `tiny_model.json`.
    """
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    if (config.item_repr == "sid") != (sids is not None):
        raise ConfigError("a tiny model with item_repr sid needs the items' SIDs (and only then)")
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(titles, config.vocab_size, chat_template=config.chat_template, sids=sids)
    model = build_model(tokenizer, config)
    losses = pretrain_on_titles(model, tokenizer, titles, config, sids)
    texts = [prompts.item_text("sid", t, sid) for t, sid in zip(titles, sids)] if sids is not None \
        else [prompts.format_item(t) for t in titles]
    item_lengths = [len(ids) for ids in prompts.text_tokens(tokenizer, texts)]
    summary = {
        "config": asdict(config),
        "item_repr": config.item_repr or "title",
        "sid_tokens": len(prompts.sid_tokens(sids)) if sids is not None else 0,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "vocab_size": len(tokenizer),
        "items": len(titles),
        "item_tokens": {"mean": round(sum(item_lengths) / len(item_lengths), 2), "max": max(item_lengths)},
        "pretrain_loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
        "torch_version": torch.__version__,
        "source": source or {},
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tiny_model.json").write_text(json.dumps(summary, indent=2))
    return summary
