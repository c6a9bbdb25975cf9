"""The item trie and its vectorized logits mask (train.llm.decode) on hand-made token sequences.

Items (token ids, 2 = EOS):  a = 5 6 2,  b = 5 6 7 2,  c = 5 8 2,  d = 9 2
"""

from __future__ import annotations

import math

import pytest
import torch

from train.llm.decode import DecodeError, ItemEndIsFree, ItemTrie, TrieLogitsProcessor, callback_constraint

EOS = 2
ITEMS = ["a", "b", "c", "d"]
SEQS = [[5, 6, EOS], [5, 6, 7, EOS], [5, 8, EOS], [9, EOS]]
PROMPT = [11, 10]  # two prompt tokens before the answer


@pytest.fixture
def trie():
    return ItemTrie(ITEMS, SEQS)


def allowed(trie, answers: list[list[int]], excluded=None, num_beams=1, vocab=12):
    """Tokens the processor leaves finite for each row (rows = prompts * beams)."""
    width = max(len(a) for a in answers)
    rows = [PROMPT + a + [0] * (width - len(a)) for a in answers]
    assert all(len(a) == width for a in answers), "rows of one step have equal answer lengths"
    processor = TrieLogitsProcessor(trie, len(PROMPT), num_beams, excluded)
    scores = processor(torch.tensor(rows), torch.zeros(len(rows), vocab))
    return [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in scores]


def test_trie_walks_and_maps_tokens_back_to_items(trie):
    assert trie.max_depth == 4
    assert [trie.item_of(s + [0, 0]) for s in SEQS] == ITEMS  # padding after EOS is ignored
    assert trie.item_of([5, 6, 7]) is None and trie.item_of([4]) is None
    assert trie.allowed(0) == [5, 9] and sorted(trie.allowed(trie.walk([5, 6]))) == [EOS, 7]
    assert trie.leaf_count[0] == 4 and trie.leaf_count[trie.walk([5])] == 3


def test_mask_allows_exactly_the_trie_children(trie):
    assert allowed(trie, [[]]) == [{5, 9}]
    assert allowed(trie, [[5], [9]]) == [{6, 8}, {EOS}]
    assert allowed(trie, [[5, 6], [5, 8], [9, EOS]]) == [{7, EOS}, {EOS}, set()]
    assert allowed(trie, [[4, 4]]) == [set()]  # off the trie: nothing (the beam already scores -inf)


def test_history_exclusion_prunes_exhausted_branches_per_user(trie):
    # two prompts x two beams; prompt 0 excludes c, prompt 1 excludes a and b
    excluded = [[2], [0, 1]]
    got = allowed(trie, [[5], [5], [5], [5]], excluded, num_beams=2)
    assert got == [{6}, {6}, {8}, {8}]
    got = allowed(trie, [[], [], [], []], excluded, num_beams=2)
    assert got == [{5, 9}] * 4
    got = allowed(trie, [[5, 6]] * 4, [[0], []], num_beams=2)
    assert got == [{7}, {7}, {7, EOS}, {7, EOS}]  # a excluded: b (7 ...) still reachable
    assert allowed(trie, [[]], [[3]]) == [{5}]
    assert allowed(trie, [[]], [[0, 1, 2]]) == [{9}]


def test_callback_constraint_matches_the_vectorized_mask(trie):
    excluded = [[2], [0, 1]]
    fn = callback_constraint(trie, len(PROMPT), excluded, EOS)
    for batch_id, answer in [(0, []), (0, [5]), (1, [5]), (0, [5, 6]), (1, [9])]:
        via_mask = allowed(trie, [answer], [excluded[batch_id]])[0]
        assert set(fn(batch_id, torch.tensor(PROMPT + answer))) == via_mask
    # A state the constraint never lets a beam reach (user 1 excluded everything below 5 6):
    # transformers rejects an empty list, so the callback lets such a beam end.
    assert fn(1, torch.tensor(PROMPT + [5, 6])) == [EOS]


def test_items_that_tokenize_identically_are_rejected():
    with pytest.raises(DecodeError, match="same token ids"):
        ItemTrie(["x", "y"], [[5, EOS], [5, EOS]])


def test_processor_keeps_scores_of_allowed_tokens(trie):
    processor = TrieLogitsProcessor(trie, len(PROMPT), 1)
    scores = torch.log_softmax(torch.randn(1, 12), -1)
    out = processor(torch.tensor([PROMPT + [5]]), scores.clone())
    assert torch.equal(out[0, [6, 8]], scores[0, [6, 8]])
    assert all(math.isinf(out[0, t]) for t in range(12) if t not in (6, 8))


def test_the_end_of_a_finished_item_costs_nothing(trie):
    """After the trie mask, a row allowed only EOS (item c is complete) scores it 0; a row where EOS
    competes with a longer item (a is a prefix of b) keeps the model's scores."""
    import torch

    rows = torch.tensor([PROMPT + [5, 8], PROMPT + [5, 6]])
    logp = torch.log_softmax(torch.randn(2, 12), dim=-1)
    scores = TrieLogitsProcessor(trie, len(PROMPT), 1)(rows, logp.clone())
    done = ItemEndIsFree(EOS)(rows, scores.clone())
    assert done[0, EOS] == 0 and torch.isinf(done[0]).sum() == 11
    assert torch.equal(done[1], scores[1]) and done[1, EOS] == logp[1, EOS]
