"""Beam search constrained by a token trie of all catalogue items: every generation is a real item.

The trie holds, for every item of the catalogue, the token ids of the single-item answer
(`train.llm.prompts.text_tokens`: `"<title>"` + EOS, or the SID's code tokens + EOS for SID data,
`<a_48><b_1><c_50><d_0>` = 4 tokens + EOS). Its leaves are items, so a finished beam maps back to
exactly one item id without parsing text. TIGER (train/baselines/tiger.py) decodes with the same trie.

Constraint (default, `constraint="mask"`): `TrieLogitsProcessor`, a vectorized logits mask. Each
step it walks every beam's generated tokens through the trie with `searchsorted` over sorted edge
keys (no Python per beam), gathers the children of all beams' nodes at once and builds one boolean
mask. `constraint="callback"` uses transformers' `prefix_allowed_tokens_fn` with a Python walk per
beam, kept for comparison (bench/bench_llm.py measures both); `constraint="none"` is unconstrained
beam search (its invalid rate shows what the constraint prevents).

History exclusion (default on, as in the shared evaluator): items of the user's history are masked
out *inside the trie*, per user: each node keeps how many items lie below it, a user's history
subtracts its items along their paths, and a child with nothing left is not allowed. So the beams
are spent on new items only and the top-K list is complete; nothing is dropped afterwards.

Items are ranked by their summed log-probability (length_penalty=0), i.e. by the probability the
model gives to the whole item; with that, transformers' early stop is exact. The end token that
closes a finished item is forced and costs nothing (`ItemEndIsFree`): it is not part of the item,
and a model trained to go on after an item (`nip_mode="continuation"` answers with several) would
otherwise pay, per item, its belief that the answer stops there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from common.errors import ConfigError, IirgError
from train.llm import prompts

UNFILLED_SCORE = -1e8  # transformers fills unused finished-beam slots with -1e9


class DecodeError(IirgError):
    """The catalogue cannot be decoded (e.g. two items tokenize identically)."""


class ItemTrie:
    """Token trie over item answers; node 0 is the root, every leaf is one item.

    Flat arrays (CSR by parent) so torch can walk and expand it for all beams at once:
    edges sorted by (parent, token); `child_start[n]:child_start[n+1]` are the edges of node n.
    """

    def __init__(self, item_ids: list[str], sequences: list[list[int]]):
        children: dict[tuple[int, int], int] = {}
        leaf_item = [-1]
        paths = []
        for index, seq in enumerate(sequences):
            node, path = 0, []
            for token in seq:
                child = children.get((node, token))
                if child is None:
                    child = len(leaf_item)
                    children[(node, token)] = child
                    leaf_item.append(-1)
                node = child
                path.append(node)
            if leaf_item[node] != -1:
                raise DecodeError(f"items {item_ids[leaf_item[node]]!r} and {item_ids[index]!r} have the same "
                                  f"token ids; titles must tokenize uniquely")
            if any(leaf_item[n] != -1 for n in path[:-1]):
                raise DecodeError(f"item {item_ids[index]!r} continues past the end (EOS) of another item")
            leaf_item[node] = index
            paths.append(path)
        self.item_ids = list(item_ids)
        self.sequences = [list(s) for s in sequences]
        self.num_nodes = len(leaf_item)
        self.leaf_item = np.array(leaf_item, dtype=np.int64)
        edges = np.array([(p, t, c) for (p, t), c in children.items()], dtype=np.int64).reshape(-1, 3)
        edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
        self.edge_parent, self.edge_token, self.edge_child = edges[:, 0], edges[:, 1], edges[:, 2]
        self.base = int(self.edge_token.max()) + 1 if len(edges) else 1
        self.edge_key = self.edge_parent * self.base + self.edge_token
        self.child_start = np.searchsorted(self.edge_parent, np.arange(self.num_nodes + 1))
        self.item_paths = [np.array(p, dtype=np.int64) for p in paths]
        self.leaf_count = np.zeros(self.num_nodes, dtype=np.int64)
        for path in self.item_paths:
            self.leaf_count[path] += 1
        self.leaf_count[0] = len(sequences)
        self.node_parent = np.full(self.num_nodes, -1, dtype=np.int64)
        self.node_token = np.full(self.num_nodes, -1, dtype=np.int64)
        self.node_parent[self.edge_child] = self.edge_parent
        self.node_token[self.edge_child] = self.edge_token
        self.max_depth = max((len(s) for s in sequences), default=0)
        self._index = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self._children = {p: {} for p in range(self.num_nodes)}
        for (p, t), c in children.items():
            self._children[p][t] = c

    @classmethod
    def from_texts(cls, tokenizer, item_ids: list[str], texts: list[str]) -> "ItemTrie":
        """The trie of items written as `texts` (quoted titles or SID strings, `prompts.item_text`)."""
        return cls(list(item_ids), prompts.text_tokens(tokenizer, texts))

    @classmethod
    def from_titles(cls, tokenizer, item_ids: list[str], titles: list[str]) -> "ItemTrie":
        return cls(list(item_ids), prompts.item_tokens(tokenizer, titles))

    def index_of(self, item_ids) -> list[int]:
        """Catalogue indices of the given item ids (ids not in the catalogue are skipped)."""
        return [self._index[i] for i in item_ids if i in self._index]

    def walk(self, tokens) -> int:
        """Node reached by a token sequence from the root (-1 when it leaves the trie)."""
        node = 0
        for token in tokens:
            node = self._children[node].get(int(token), -1)
            if node < 0:
                return -1
        return node

    def item_of(self, tokens) -> str | None:
        """The item a generated answer spells (tokens after EOS ignored), None if it is none."""
        node = 0
        for token in tokens:
            node = self._children[node].get(int(token), -1)
            if node < 0:
                return None
            if self.leaf_item[node] >= 0:
                return self.item_ids[self.leaf_item[node]]
        return None

    def excluded_counts(self, excluded: list[int]) -> dict[int, int]:
        """Node -> number of excluded items below it (the root included)."""
        counts: dict[int, int] = {}
        for index in excluded:
            for node in self.item_paths[index]:
                counts[int(node)] = counts.get(int(node), 0) + 1
        return counts

    def allowed(self, node: int, excluded: dict[int, int] | None = None) -> list[int]:
        """Tokens that continue node toward an item that is not excluded (Python version)."""
        if node < 0:
            return []
        excluded = excluded or {}
        return [t for t, c in self._children[node].items() if self.leaf_count[c] - excluded.get(c, 0) > 0]


class TrieLogitsProcessor:
    """Vectorized trie mask for `model.generate` (a transformers LogitsProcessor).

    Per step, for all rows (prompts x beams) at once: walk each row's answer so far through the
    trie (one `searchsorted` per answer token), gather the scores of the children of each row's
    node, fill the scores with -inf in place and write the gathered scores back, then forbid the
    children whose items are all excluded for that row's user. Work is proportional to the number
    of allowed tokens plus one fill of the score matrix (no per-beam Python, no second vocabulary-
    sized mask).

    Args:
        prompt_len: length of the (left-padded) prompt batch; tokens after it are the answer so far.
        excluded: for each prompt of the batch, catalogue indices to forbid (its history).
    """

    def __init__(self, trie: ItemTrie, prompt_len: int, num_beams: int,
                 excluded: list[list[int]] | None = None, device=None):
        import torch

        self.trie, self.prompt_len, self.num_beams = trie, prompt_len, num_beams
        as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
        self.edge_key = as_tensor(trie.edge_key)
        self.edge_token = as_tensor(trie.edge_token)
        self.edge_child = as_tensor(trie.edge_child)
        self.child_start = as_tensor(trie.child_start)
        # Blocked edges: (user row, parent node) -> token of a child whose items are all excluded.
        keys, tokens = [], []
        for row, indices in enumerate(excluded or []):
            for node, count in trie.excluded_counts(indices).items():
                if node and trie.leaf_count[node] == count:
                    keys.append(row * trie.num_nodes + int(trie.node_parent[node]))
                    tokens.append(int(trie.node_token[node]))
        order = np.argsort(keys, kind="stable")
        self.blocked_key = as_tensor(np.asarray(keys, dtype=np.int64)[order])
        self.blocked_token = as_tensor(np.asarray(tokens, dtype=np.int64)[order])

    def nodes(self, input_ids):
        """Trie node of every row's answer so far (-1: left the trie). Shape (rows,)."""
        import torch

        answer = input_ids[:, self.prompt_len:]
        node = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        keys = self.edge_key
        for step in range(answer.shape[1]):
            token = answer[:, step]
            key = node.clamp(min=0) * self.trie.base + token.clamp(max=self.trie.base - 1)
            pos = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
            found = (keys[pos] == key) & (node >= 0) & (token < self.trie.base)
            node = torch.where(found, self.edge_child[pos], torch.full_like(node, -1))
        return node

    @staticmethod
    def _expand(lo, counts):
        """Row index and flat position of every element of the ranges [lo, lo + counts)."""
        import torch

        rows = torch.repeat_interleave(torch.arange(len(lo), device=lo.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        flat = (torch.arange(int(counts.sum()), device=lo.device)
                - torch.repeat_interleave(starts, counts) + torch.repeat_interleave(lo, counts))
        return rows, flat

    def __call__(self, input_ids, scores):
        import torch

        rows = input_ids.shape[0]
        node = self.nodes(input_ids)
        alive = node >= 0
        safe = node.clamp(min=0)
        lo = self.child_start[safe]
        counts = torch.where(alive, self.child_start[safe + 1] - lo, torch.zeros_like(lo))
        row_of, edge = self._expand(lo, counts)                 # (allowed,) each
        token = self.edge_token[edge]
        kept = scores[row_of, token]
        scores.fill_(float("-inf"))
        scores[row_of, token] = kept
        if len(self.blocked_key):
            key = (torch.arange(rows, device=scores.device) // self.num_beams) * self.trie.num_nodes + safe
            lo = torch.searchsorted(self.blocked_key, key)
            counts = torch.where(alive, torch.searchsorted(self.blocked_key, key, right=True) - lo,
                                 torch.zeros_like(lo))
            row_of, flat = self._expand(lo, counts)
            scores[row_of, self.blocked_token[flat]] = float("-inf")
        return scores


class ItemEndIsFree:
    """A logits processor run after the trie constraint: a row whose only allowed token is EOS (its
    item is complete) gets log-probability 0 for it, so a beam's score is its item's own tokens."""

    def __init__(self, eos: int):
        self.eos = eos

    def __call__(self, input_ids, scores):
        import torch

        finite = torch.isfinite(scores)
        done = finite[:, self.eos] & (finite.sum(dim=1) == 1)
        scores[done, self.eos] = 0.0
        return scores


class StepCounter:
    """A no-op logits processor counting generation steps (one call per step)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        return scores


def callback_constraint(trie: ItemTrie, prompt_len: int, excluded: list[list[int]] | None, eos: int):
    """The same constraint as a per-beam Python `prefix_allowed_tokens_fn` (slower; for comparison)."""
    per_user = [trie.excluded_counts(e) for e in (excluded or [])]

    def allowed_tokens(batch_id: int, sent) -> list[int]:
        node = trie.walk(sent[prompt_len:].tolist())
        tokens = trie.allowed(node, per_user[batch_id] if per_user else None)
        return tokens or [eos]  # a beam off the trie already scores -inf; let it end

    return allowed_tokens


@dataclass
class DecodeConfig:
    """How recommendations are generated."""

    num_beams: int = field(default=20, metadata={"help": "beam width = number of items returned per user"})
    batch_size: int = field(default=8, metadata={"help": "users per generate call"})
    keep_history: bool = field(default=False, metadata={
        "help": "allow items of the user's history (else they are masked in the trie)"})
    constraint: Literal["mask", "callback", "none"] = field(default="mask", metadata={
        "help": "mask: vectorized trie mask; callback: per-beam Python prefix_allowed_tokens_fn; "
                "none: unconstrained beam search"})
    shared_prefill: bool = field(default=True, metadata={
        "help": "run each prompt through the model once and copy its KV cache to the beams "
                "(transformers would run it once per beam); same results, faster"})

    def __post_init__(self):
        if self.num_beams < 1 or self.batch_size < 1:
            raise ConfigError("num_beams and batch_size must be >= 1")
        if self.constraint not in ("mask", "callback", "none"):
            raise ConfigError(f"constraint must be mask, callback or none, got {self.constraint!r}")


def prompt_cache(model, ids, mask, num_beams: int):
    """KV cache of every prompt but its last token, computed once and repeated for each beam.

    `generate` then only runs the last prompt token: beam search normally expands the batch to
    batch * num_beams *before* the prompt pass, computing the same prompt num_beams times.
    Positions follow the attention mask, as `generate` computes them for left-padded prompts.
    """
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                use_cache=True, logits_to_keep=1)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    cache.batch_repeat_interleave(num_beams)
    return cache


@dataclass
class DecodeResult:
    recommendations: pd.DataFrame  # user_id, item_id, rank (1-based), score (summed log-prob)
    stats: dict


def recommend(model, tokenizer, trie: ItemTrie, item_texts: dict[str, str], cases: list[dict],
              max_history: int, config: DecodeConfig, *, progress: bool = True) -> DecodeResult:
    """Top-`num_beams` items per user by beam search.

    Args:
        cases: dicts with `user_id` and `history` (item ids, oldest first; the prompt shows the last
            `max_history`, exclusion uses all of them).
        item_texts: item_id -> the item as written in prompts (`prompts.item_text`: the quoted
            title or the SID string), the same texts the trie was built from.

    Returns the ranked items and stats: users, returned, invalid (not an item, or a history item
    when excluded), invalid_rate, missing (beams that found no item), decode_steps (generation
    steps summed over batches), seconds, users_per_s.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig, LogitsProcessorList

    device = next(model.parameters()).device
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    instruction = prompts.INSTRUCTIONS["nip"]
    inputs = [prompts.join_items(item_texts[i] for i in list(c["history"])[-max_history:] if i in item_texts)
              for c in cases]
    encoded = prompts.encode_prompts(tokenizer, [instruction] * len(cases), inputs)
    order = sorted(range(len(cases)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    eos = int(tokenizer.eos_token_id)
    generation = GenerationConfig(
        num_beams=config.num_beams, num_return_sequences=config.num_beams, do_sample=False,
        max_new_tokens=trie.max_depth, length_penalty=0.0, early_stopping=False,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        return_dict_in_generate=True, output_scores=True)
    rows, invalid, missing, returned, steps = [], 0, 0, 0, 0
    start = time.perf_counter()
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    try:
        for batch in tqdm(batches, desc=f"beam search ({config.constraint})", unit="batch", disable=not progress):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]):] = 1
            history = [trie.index_of(cases[i]["history"]) for i in batch]
            excluded = None if config.keep_history else history
            counter = StepCounter()
            kwargs = {"logits_processor": LogitsProcessorList([counter])}
            if config.constraint == "mask":
                kwargs["logits_processor"].append(
                    TrieLogitsProcessor(trie, width, config.num_beams, excluded, device=device))
            elif config.constraint == "callback":
                kwargs["prefix_allowed_tokens_fn"] = callback_constraint(trie, width, excluded, eos)
            if config.constraint != "none":  # transformers runs it after the prefix constraint, too
                kwargs["logits_processor"].append(ItemEndIsFree(eos))
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad():
                if config.shared_prefill:
                    kwargs["cache"] = prompt_cache(model, ids, mask, config.num_beams)
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation, **kwargs)
            steps += counter.calls
            sequences = out.sequences[:, width:].cpu().view(len(batch), config.num_beams, -1)
            scores = out.sequences_scores.cpu().view(len(batch), config.num_beams)
            for r, i in enumerate(batch):
                seen = set() if config.keep_history else set(cases[i]["history"])
                rank = 0
                for b in range(config.num_beams):
                    score = float(scores[r, b])
                    if score <= UNFILLED_SCORE:
                        missing += 1
                        continue
                    returned += 1
                    item_id = trie.item_of(sequences[r, b].tolist())
                    if item_id is None or item_id in seen:
                        invalid += 1
                        continue
                    rank += 1
                    rows.append((cases[i]["user_id"], item_id, rank, score))
    finally:
        tokenizer.padding_side = padding_side
    seconds = time.perf_counter() - start
    recs = pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])
    stats = {"users": len(cases), "num_beams": config.num_beams, "constraint": config.constraint,
             "returned": returned, "invalid": invalid,
             "invalid_rate": invalid / returned if returned else 0.0, "missing": missing,
             "decode_steps": steps, "seconds": round(seconds, 3), "users_per_s": round(len(cases) / seconds, 3) if seconds else None}
    return DecodeResult(recommendations=recs, stats=stats)
