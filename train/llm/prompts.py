"""How items, instructions and answers are written for the LLM: one format, used everywhere.

An item is always written as its unique ingest title in double quotes (`"Toy Story (1995)"`), one
item per line. Training data (`iirg data`), the tokenized training targets (`iirg train`), the token
trie of the constrained decoder and the mapping of generated text back to item ids all go through
this module, so the text the model learns to write is exactly the text the decoder accepts.

Token level: an answer is tokenized line by line (each item on its own, then the newline between
items, then the tokenizer's EOS). The decoder's trie is built from the same per-item token ids
(`item_tokens`), so an item looks the same to the model whether it is the single answer of a
next-item prompt or one line of a neighbour list, independent of BPE merges across lines.

Prompts use the tokenizer's chat template when it has one (Qwen, Llama-3, the tiny model built by
`iirg tiny-model`), the Alpaca layout otherwise.
"""

from __future__ import annotations

from typing import Iterable

from graph.relations import task_relations

ITEM_TEMPLATE = '"{title}"'
ITEM_SEPARATOR = "\n"

# Tasks: next-item prediction, and one neighbour-list task per relation that declares one
# (graph/relations: COLLAB -> collab, SIMILAR -> semantic, SHARES_META -> meta). `iirg data` writes the
# DEFAULT_TASKS (the IIRG paper's three) unless --tasks names others.
_RELATION_TASKS = {name: spec.task for name, spec in task_relations().items()}
TASKS = ("nip", *_RELATION_TASKS)
DEFAULT_TASKS = ("nip", *(name for name, task in _RELATION_TASKS.items() if task.default))
TASK_NAMES = {"nip": "next-item prediction",
              **{name: task.description for name, task in _RELATION_TASKS.items()}}

INSTRUCTIONS = {
    "nip": "Here is a user's interaction history, one item per line, oldest first. "
           "Recommend the item the user will interact with next.",
    **{name: task.instruction for name, task in _RELATION_TASKS.items()},
}

# Alpaca layout for tokenizers without a chat template.
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def format_item(title: str) -> str:
    return ITEM_TEMPLATE.format(title=title)


def format_items(titles: Iterable[str]) -> str:
    return ITEM_SEPARATOR.join(format_item(t) for t in titles)


def parse_items(text: str, title_to_id: dict[str, str]) -> list[str | None]:
    """Map answer text back to item ids, line by line (None for a line that is no item)."""
    out = []
    for line in text.split(ITEM_SEPARATOR):
        line = line.strip()
        title = line[1:-1] if len(line) >= 2 and line[0] == '"' and line[-1] == '"' else None
        out.append(title_to_id.get(title) if title is not None else None)
    return out


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


def item_tokens(tokenizer, titles: Iterable[str]) -> list[list[int]]:
    """Token ids of each item as a complete single-item answer (with EOS), as the trie stores it."""
    encoder = AnswerEncoder(tokenizer)
    return [encoder.encode(format_item(t)) for t in titles]
