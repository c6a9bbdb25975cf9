"""Memorization segments on hand-built sequences whose answer is known by construction, and the
vectorized hop distances against scipy's BFS on random graphs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.sparse import csgraph

from evaluate.cases import build_cases, eval_cases
from evaluate.segments import (HOP_CAP, SEGMENTS, SegmentConfig, analyze, hop_distances, label_users,
                               load_segments, segment_table)
from graph.export import Export, load_export, write_export
from graph.rundir import RunPaths
from ingest.schema import IngestReport, build_dataset


# ---- a tiny run built from sequences (shared by the other test files of this issue) ------------
def training_transitions(dataset) -> pd.DataFrame:
    """Consecutive pairs inside training parts, counted (plain Python: the reference)."""
    counts: dict[tuple[str, str], int] = {}
    for seq in dataset.sequences(("train",)).values():
        for a, b in zip(seq, seq[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    return pd.DataFrame([(a, b, c) for (a, b), c in counts.items()],
                        columns=["src_item_id", "dst_item_id", "count"])


def make_dataset(sequences: dict[str, list[str]], name: str = "tiny"):
    items = sorted({i for seq in sequences.values() for i in seq})
    rows = [(u, i, n) for u, seq in sequences.items() for n, i in enumerate(seq)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "order"])
    return build_dataset(name, pd.DataFrame({"item_id": items, "raw_title": [f"title {i}" for i in items]}),
                         inter, IngestReport(), source={"test": True})


def make_run(tmp_path, sequences: dict[str, list[str]], similar: list[tuple[str, str]] = ()) -> tuple[RunPaths, Export]:
    """A run folder with an export whose NEXT edges are the training transitions, COLLAB the
    (symmetric) training transitions ranked by count, SIMILAR the given pairs."""
    dataset = make_dataset(sequences)
    nxt = training_transitions(dataset)
    both = pd.concat([nxt.rename(columns={"src_item_id": "item_id", "dst_item_id": "neighbor_id"}),
                      nxt.rename(columns={"dst_item_id": "item_id", "src_item_id": "neighbor_id"})])
    collab = both.groupby(["item_id", "neighbor_id"], as_index=False)["count"].sum()
    collab = collab[collab["item_id"] != collab["neighbor_id"]]
    collab = collab.sort_values(["item_id", "count", "neighbor_id"], ascending=[True, False, True])
    collab["rank"] = collab.groupby("item_id").cumcount() + 1
    collab = collab.assign(hop=1, source="cooccur", via_item_id=None)
    sim = pd.DataFrame(list(similar), columns=["item_id", "neighbor_id"])
    sim["rank"] = sim.groupby("item_id").cumcount() + 1
    sim["score"] = 0.9
    popularity = dataset.interactions[dataset.interactions["split"] == "train"]["item_id"].value_counts()
    run = RunPaths.of(tmp_path / "run")
    write_export(run.export, dataset, popularity=popularity, next_edges=nxt, collab=collab, similar=sim,
                 params={"window": 1, "k": 10}, backend="test")
    return run, load_export(run.export)


# Filler users' training parts make the chain x1 -> x2 -> x3 -> x4 -> x5 (x5 has no successor) and
# the 2-cycle c1 <-> c2. Evaluated users are [p, q, LAST, TARGET]: their training part p -> q is an
# isolated edge, LAST is the valid item, TARGET the test item.
SEQUENCES = {
    "f1": ["x1", "x2", "x3", "x4", "x5", "z1", "z2"],   # z1 valid, z2 test: never in NEXT
    "f2": ["c1", "c2", "c1", "z3", "z4"],
    "u_one": ["p1", "q1", "x1", "x2"],
    "u_two": ["p2", "q2", "x1", "x3"],
    "u_three": ["p3", "q3", "x1", "x4"],
    "u_beyond": ["p4", "q4", "x1", "x5"],
    "u_unreach": ["p5", "q5", "x5", "x1"],
    "u_any": ["x1", "q6", "x5", "x2"],                   # x1 -> x2 from an earlier item only
    "u_sem": ["p7", "s7", "x5", "t7"],                   # SIMILAR(s7, t7), t7 unreachable
    "u_sem_far": ["p8", "s8", "x1", "x5"],               # SIMILAR(s8, x5), x5 four hops away
    "u_cycle": ["p9", "q9", "c1", "c1"],                 # target = last, back via c2: 2 hops
    "u_self": ["p10", "q10", "x2", "x2"],                # target = last, no cycle: unreachable
    "u_valid": ["x2", "x3", "x4", "z5"],                 # valid: x3 -> x4 is a transition (f1)
}
SIMILAR = [("s7", "t7"), ("s8", "x5")]
EXPECTED = {  # user: (segment, hop, one_hop, any_hop, semantic_only)
    "u_one": ("one_hop", 1, True, True, False),
    "u_two": ("two_hop", 2, False, False, False),
    "u_three": ("three_hop", 3, False, False, False),
    "u_beyond": ("beyond", HOP_CAP, False, False, False),
    "u_unreach": ("unreachable", None, False, False, False),
    "u_any": ("unreachable", None, False, True, False),
    "u_sem": ("semantic_only", None, False, False, True),
    "u_sem_far": ("semantic_only", HOP_CAP, False, False, True),
    "u_cycle": ("two_hop", 2, False, False, False),
    "u_self": ("unreachable", None, False, False, False),
}


@pytest.fixture
def tiny(tmp_path):
    return make_run(tmp_path, SEQUENCES, SIMILAR)


def test_cases_follow_leave_one_out(tiny):
    _, export = tiny
    test = eval_cases(export, "test").set_index("user_id")
    assert test.loc["u_two", "history"] == ["p2", "q2", "x1"]
    assert test.loc["u_two", "target_item_id"] == "x3"
    assert test.loc["f1", "history"] == ["x1", "x2", "x3", "x4", "x5", "z1"]
    valid = eval_cases(export, "valid").set_index("user_id")
    assert valid.loc["u_two", "history"] == ["p2", "q2"]
    assert valid.loc["u_two", "target_item_id"] == "x1"
    assert set(test.index) == set(SEQUENCES)


def test_held_out_items_are_not_transitions(tiny):
    _, export = tiny
    pairs = set(zip(export.next["src_item_id"], export.next["dst_item_id"]))
    assert ("x5", "z1") not in pairs and ("z1", "z2") not in pairs and ("q1", "x1") not in pairs
    assert ("x1", "x2") in pairs and ("c2", "c1") in pairs


def test_segments_known_by_construction(tiny):
    _, export = tiny
    frame = label_users(export, "test").set_index("user_id")
    for user, (segment, hop, one_hop, any_hop, semantic_only) in EXPECTED.items():
        row = frame.loc[user]
        got = (row["segment"], None if pd.isna(row["hop"]) else int(row["hop"]), bool(row["one_hop"]),
               bool(row["any_hop"]), bool(row["semantic_only"]))
        assert got == (segment, hop, one_hop, any_hop, semantic_only), user
    assert frame.loc["u_cycle", "target_in_history"] and not frame.loc["u_two", "target_in_history"]
    assert frame.loc["u_sem", "last_item_id"] == "x5" and frame.loc["u_sem", "target_item_id"] == "t7"
    # the partition: one segment per user; the flag equals the segment
    assert set(frame["segment"]) <= set(SEGMENTS)
    assert (frame["semantic_only"] == (frame["segment"] == "semantic_only")).all()


def test_semantic_k_limits_the_neighbours(tmp_path):
    _, export = make_run(tmp_path, SEQUENCES, [("s7", "x3"), ("s7", "t7")])  # t7 is rank 2
    assert label_users(export, "test").set_index("user_id").loc["u_sem", "segment"] == "semantic_only"
    narrow = label_users(export, "test", SegmentConfig(semantic_k=1)).set_index("user_id")
    assert narrow.loc["u_sem", "segment"] == "unreachable"


def test_valid_split_uses_training_part(tiny):
    _, export = tiny
    frame = label_users(export, "valid").set_index("user_id")
    # u_two: history [p2, q2] -> target x1; q2 has no successor
    assert frame.loc["u_two", "segment"] == "unreachable"
    # f1: history x1..x5 -> target z1, a held-out item that no transition reaches
    assert frame.loc["f1", "segment"] == "unreachable"
    assert frame.loc["u_valid", "segment"] == "one_hop"
    assert label_users(export, "test").set_index("user_id").loc["u_valid", "segment"] == "unreachable"


def test_analyze_saves_both_splits_and_table(tiny):
    run, export = tiny
    frames = analyze(run, export)
    for split in ("valid", "test"):
        stored = load_segments(run, split, export)
        pd.testing.assert_frame_equal(stored, frames[split])
    table = segment_table(frames["test"]).set_index("segment")
    assert table.loc["all", "n_users"] == len(SEQUENCES)
    assert table.loc[list(SEGMENTS), "n_users"].sum() == len(SEQUENCES)
    assert table.loc["semantic_only", "n_users"] == 2


def _reference_hops(adj: sp.csr_matrix, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Shortest non-empty path with scipy's BFS: for s == t, 1 + min over predecessors p of d(s, p)."""
    dist = csgraph.shortest_path(adj, unweighted=True, directed=True)
    n = adj.shape[0]
    out = np.zeros(len(src), dtype=np.int64)
    for i, (s, t) in enumerate(zip(src, dst)):
        if s != t:
            d = dist[s, t]
        else:
            preds = adj[:, t].nonzero()[0]
            d = min((dist[s, p] + 1 for p in preds), default=np.inf)
        out[i] = 0 if np.isinf(d) else min(int(d), HOP_CAP)
    assert n == adj.shape[1]
    return out


@pytest.mark.parametrize("seed, n, edges", [(0, 60, 70), (1, 60, 110), (2, 200, 260), (3, 40, 200)])
def test_hop_distances_match_bfs(seed, n, edges):
    # Sparse random graphs: many small strongly connected components, so the condensation search
    # (not only the giant component shortcut) decides reachability.
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, edges), rng.integers(0, n, edges)
    adj = sp.csr_matrix((np.ones(edges, dtype=np.float32), (src, dst)), shape=(n, n))
    adj.sum_duplicates()
    adj.data[:] = 1
    qs, qt = rng.integers(0, n, 400), rng.integers(0, n, 400)
    qt[:40] = qs[:40]  # target = last item
    expected = _reference_hops(adj, qs, qt)
    got = hop_distances(adj, qs, qt)
    np.testing.assert_array_equal(got, expected)
    assert len(set(expected.tolist())) >= 3  # the case mix is not degenerate


def test_cases_reject_a_duplicate_target(tiny):
    _, export = tiny
    broken = export.interactions.copy()
    broken.loc[broken.index[0], "split"] = "test"  # f1 now has two test rows
    with pytest.raises(Exception, match="several 'test' rows"):
        build_cases(Export(export.items, broken, export.next, export.collab, export.similar,
                           export.manifest), "test")
