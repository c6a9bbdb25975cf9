"""How items, instructions and answers are written for the LLM: one format, used everywhere.

An item is written one of two ways (`iirg data --item-repr`), one item per line:
- `title` (the IIRG paper): its unique ingest title in double quotes, `"Toy Story (1995)"`;
- `sid` (LC-Rec style): its semantic ID from `iirg sid`, `<a_48><b_1><c_50><d_0>`, where every
  `<level_code>` is one token the fine-tuning adds to the tokenizer (`sid_tokens`).
Training data (`iirg data`), the tokenized training targets (`iirg train`), the token trie of the
constrained decoder and the mapping of generated text back to item ids all go through this module,
so the text the model learns to write is exactly the text the decoder accepts. "Item text" below is
an item as written (`item_text`): the quoted title or the SID string.

Token level: an answer is tokenized line by line (each item on its own, then the newline between
items, then the tokenizer's EOS). The decoder's trie is built from the same per-item token ids
(`text_tokens`), so an item looks the same to the model whether it is the single answer of a
next-item prompt or one line of a neighbour list, independent of BPE merges across lines.

Prompts use the tokenizer's chat template when it has one (Qwen, Llama-3, the tiny model built by
`iirg tiny-model`), the Alpaca layout otherwise.
"""

from __future__ import annotations

import re
from typing import Iterable

from graph.relations import task_relations

ITEM_REPRS = ("title", "sid")
ITEM_TEMPLATES = {"title": '"{title}"', "sid": "{sid}"}
ITEM_TEMPLATE = ITEM_TEMPLATES["title"]
ITEM_SEPARATOR = "\n"
# One SID code token: the level's letter and the code, as `train.sid.sid_strings` writes them.
SID_TOKEN = re.compile(r"<([a-z])_(\d+)>")

# Tasks: next-item prediction, and one neighbour-list task per relation that declares one
# (graph/relations: COLLAB -> collab, SIMILAR -> semantic, SHARES_META -> meta). `iirg data` writes the
# DEFAULT_TASKS (the IIRG paper's three) unless --tasks names others.
# Alignment tasks (SID data only): one sample per catalogue item, so a pretrained LLM ties the new
# code tokens to what it knows about the item's title (LC-Rec's item-index alignment).
_RELATION_TASKS = {name: spec.task for name, spec in task_relations().items()}
ALIGNMENT_TASKS = ("title2sid", "sid2title")
TASKS = ("nip", *_RELATION_TASKS, *ALIGNMENT_TASKS)
DEFAULT_TASKS = ("nip", *(name for name, task in _RELATION_TASKS.items() if task.default))
TASK_NAMES = {"nip": "next-item prediction",
              **{name: task.description for name, task in _RELATION_TASKS.items()},
              "title2sid": "title -> semantic ID (sid data only)",
              "sid2title": "semantic ID -> title (sid data only)"}

INSTRUCTIONS = {
    "nip": "Here is a user's interaction history, one item per line, oldest first. "
           "Recommend the item the user will interact with next.",
    **{name: task.instruction for name, task in _RELATION_TASKS.items()},
    "title2sid": "Here is an item's title. Write the item's semantic ID.",
    "sid2title": "Here is an item's semantic ID. Write the item's title.",
}

# Alpaca layout for tokenizers without a chat template.
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def format_item(title: str) -> str:
    return ITEM_TEMPLATE.format(title=title)


def format_items(titles: Iterable[str]) -> str:
    return ITEM_SEPARATOR.join(format_item(t) for t in titles)


def item_text(item_repr: str, title: str, sid: str | None = None) -> str:
    """One item as written: the quoted title, or its SID string."""
    if item_repr == "sid":
        if not sid:
            raise ValueError(f"item {title!r} has no SID")
        return ITEM_TEMPLATES["sid"].format(sid=sid)
    return format_item(title)


def join_items(texts: Iterable[str]) -> str:
    """Item texts (already written by `item_text`), one per line."""
    return ITEM_SEPARATOR.join(texts)


def parse_items(text: str, to_id: dict[str, str], item_repr: str = "title") -> list[str | None]:
    """Map answer text back to item ids, line by line (None for a line that is no item).

    `to_id` maps a title (title) or a SID string (sid) to its item id.
    """
    out = []
    for line in text.split(ITEM_SEPARATOR):
        line = line.strip()
        if item_repr == "sid":
            key = line if line and SID_TOKEN.sub("", line) == "" else None
        else:
            key = line[1:-1] if len(line) >= 2 and line[0] == '"' and line[-1] == '"' else None
        out.append(to_id.get(key) if key is not None else None)
    return out


def sid_tokens(sids: Iterable[str]) -> list[str]:
    """Every code token of the given SID strings, once, ordered by level then code (`<a_0>`, ...).

    One token per (level, code), as LC-Rec does: `<a_3>` and `<b_3>` are different tokens.
    """
    found: set[tuple[str, int]] = set()
    for sid in sids:
        codes = SID_TOKEN.findall(sid)
        if not codes or "".join(f"<{level}_{code}>" for level, code in codes) != sid:
            raise ValueError(f"{sid!r} is not a SID string like <a_12><b_3><c_20>")
        found.update((level, int(code)) for level, code in codes)
    return [f"<{level}_{code}>" for level, code in sorted(found)]


def user_message(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def render_prompt(tokenizer, instruction: str, input_text: str) -> str:
    """The prompt text up to where the answer starts (generation prompt included)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(instruction, input_text)}],
            tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(instruction=instruction, input=input_text)


def encode_prompts(tokenizer, instructions: list[str], inputs: list[str]) -> list[list[int]]:
    """Token ids of many prompts (batched through the fast tokenizer)."""
    texts = [render_prompt(tokenizer, i, x) for i, x in zip(instructions, inputs)]
    # A chat template writes BOS itself where the model wants one; the plain layout needs it added.
    special = not getattr(tokenizer, "chat_template", None)
    return tokenizer(texts, add_special_tokens=special)["input_ids"]


class AnswerEncoder:
    """Answer text -> token ids, item line by item line, ending with EOS (cached per line)."""

    def __init__(self, tokenizer):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; the decoder needs one to end an item")
        self.tokenizer = tokenizer
        self.eos = int(tokenizer.eos_token_id)
        self.separator = tokenizer(ITEM_SEPARATOR, add_special_tokens=False)["input_ids"]
        self._cache: dict[str, list[int]] = {}

    def line(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._cache[text] = ids
        return ids

    def encode(self, output: str) -> list[int]:
        ids: list[int] = []
        for i, line in enumerate(output.split(ITEM_SEPARATOR)):
            if i:
                ids.extend(self.separator)
            ids.extend(self.line(line))
        ids.append(self.eos)
        return ids


def text_tokens(tokenizer, texts: Iterable[str]) -> list[list[int]]:
    """Token ids of each item text as a complete single-item answer (with EOS), as the trie stores it."""
    encoder = AnswerEncoder(tokenizer)
    return [encoder.encode(t) for t in texts]


def item_tokens(tokenizer, titles: Iterable[str]) -> list[list[int]]:
    """`text_tokens` of items written as titles."""
    return text_tokens(tokenizer, (format_item(t) for t in titles))
