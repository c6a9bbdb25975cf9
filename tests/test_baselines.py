"""Baselines and leakage on real data (ml-100k through the real graph build), plus the shared top-K
ranking on hand-built data. Real-data tests skip, saying why, when ../shared/data is absent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from graph.build import build_run
from graph.config import GraphConfig
from evaluate.cases import build_cases
from evaluate.lists import prepare_lists
from evaluate.metrics import gains, hit_ranks
from evaluate.segments import label_users
from graph.export import Export, load_export
from graph.rundir import RunPaths
from graph.store import StoreConfig
from test_segments import SEQUENCES, SIMILAR, make_run
from train.baselines import popularity_counts, rank_users
from train.baselines import cooccurrence, markov, popularity

WINDOW = 3


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory, ml100k_dir):
    """ml-100k through the real ingest and graph build (no embeddings: not needed here)."""
    from ingest import IngestConfig, load_dataset

    run = RunPaths.of(tmp_path_factory.mktemp("h3_ml100k"))
    dataset = load_dataset(IngestConfig(dataset=str(ml100k_dir), progress=False))
    dataset.save(run.dataset)
    build_run(run, dataset, StoreConfig(path=run.store), GraphConfig(semantic=False, window=WINDOW),
              progress=False)
    return run, load_export(run.export)


# ---- leakage --------------------------------------------------------------------------------
def _positions(export: Export):
    inter = export.interactions.sort_values(["user_id", "pos"])
    return (inter["user_id"].to_numpy(), inter["item_id"].astype(str).to_numpy(),
            inter["split"].to_numpy())


def test_next_edges_are_exactly_the_training_transitions(ml100k):
    _, export = ml100k
    users, items, split = _positions(export)
    same = users[1:] == users[:-1]
    train_pair = same & (split[1:] == "train") & (split[:-1] == "train")
    held_pair = same & ~train_pair  # a pair touching a valid or test position
    ref = pd.DataFrame({"src_item_id": items[:-1][train_pair], "dst_item_id": items[1:][train_pair]})
    ref = ref[ref["src_item_id"] != ref["dst_item_id"]]  # the graph leaves out immediate repeats
    ref = ref.groupby(["src_item_id", "dst_item_id"]).size().rename("count").reset_index()
    got = export.next.sort_values(["src_item_id", "dst_item_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["src_item_id", "dst_item_id"]].astype(str),
                                  ref[["src_item_id", "dst_item_id"]], check_dtype=False)
    assert (got["count"].to_numpy() == ref["count"].to_numpy()).all()
    # pairs that occur only at held-out positions (e.g. last history item -> test target) never
    # became an edge
    train_set = set(zip(ref["src_item_id"], ref["dst_item_id"]))
    held_only = set(zip(items[:-1][held_pair], items[1:][held_pair])) - train_set
    assert len(held_only) > 500
    assert not held_only & set(zip(got["src_item_id"], got["dst_item_id"]))


def test_collab_edges_come_from_training_windows_only(ml100k):
    _, export = ml100k
    users, items, split = _positions(export)
    train = split == "train"
    u, it = users[train], items[train]
    pairs = set()
    for w in range(1, WINDOW + 1):
        same = u[w:] == u[:-w]
        pairs |= set(zip(it[:-w][same], it[w:][same])) | set(zip(it[w:][same], it[:-w][same]))
    cooc = export.collab[export.collab["source"] == "cooccur"]
    got = set(zip(cooc["item_id"].astype(str), cooc["neighbor_id"].astype(str)))
    assert got and got <= pairs
    # the held-out items of each user only co-occur in training parts through other users
    test_pairs = set(zip(items[:-1][(split[1:] == "test") & (users[1:] == users[:-1])],
                         items[1:][(split[1:] == "test") & (users[1:] == users[:-1])]))
    assert not (test_pairs - pairs) & got


# ---- baselines on real data -----------------------------------------------------------------
def test_markov_hits_uncovered_users_only_through_popularity(ml100k):
    _, export = ml100k
    cases = build_cases(export, "test")
    labels = label_users(export, "test", cases=cases)
    recs = markov.recommend(export, cases, k=20)
    recs = recs.merge(labels[["user_id", "one_hop", "target_item_id"]], on="user_id")
    hit = recs["item_id"] == recs["target_item_id"]
    successor = recs["source"] == "successor"
    assert not (hit & successor & ~recs["one_hop"]).any()          # by construction
    assert (hit & successor & recs["one_hop"]).sum() > 50           # and it does memorize
    # successor slots are the last item's successors, most frequent first
    nxt = export.next.astype({"src_item_id": str, "dst_item_id": str})
    user = labels.iloc[0]
    succ = nxt[nxt["src_item_id"] == user["last_item_id"]].sort_values("count", ascending=False)
    mine = recs[(recs["user_id"] == user["user_id"]) & successor]
    assert set(mine["item_id"]) <= set(succ["dst_item_id"])
    counts = succ.set_index("dst_item_id").loc[mine["item_id"], "count"].to_numpy()
    assert (np.diff(counts) <= 0).all()


def test_popularity_and_cooc_lists(ml100k):
    _, export = ml100k
    cases = build_cases(export, "test")
    pop = popularity.recommend(export, cases, k=10)
    assert pop.groupby("user_id").size().eq(10).all()
    hist = set(zip(cases.user_ids[cases.history_rows], cases.item_ids[cases.history]))
    assert not any(pair in hist for pair in zip(pop["user_id"], pop["item_id"]))
    counts = pd.Series(popularity_counts(export), index=cases.item_ids)
    first = pop[pop["user_id"] == cases.user_ids[0]]
    assert (np.diff(counts.loc[first["item_id"]].to_numpy()) <= 0).all()
    cooc = cooccurrence.recommend(export, cases, k=10, decay=0.6, weight="count")
    assert not any(pair in hist for pair in zip(cooc["user_id"], cooc["item_id"]))
    r_pop = gains(hit_ranks(cases, prepare_lists(cases, pop)), 10)[0].mean()
    r_cooc = gains(hit_ranks(cases, prepare_lists(cases, cooc)), 10)[0].mean()
    assert r_cooc > r_pop  # the co-occurrence graph carries signal beyond popularity


def test_sasrec_learns_and_reloads_identically(ml100k, tmp_path):
    import torch

    from train.baselines import sasrec

    run, export = ml100k
    users = sorted(export.interactions["user_id"].unique())[:300]
    small = dataclasses.replace(export, interactions=export.interactions[
        export.interactions["user_id"].isin(users)].reset_index(drop=True))
    cfg = sasrec.SASRecConfig(max_len=30, dim=32, layers=1, max_epochs=2, lr=5e-3, batch_size=32,
                              threads=1, seed=1)
    result = sasrec.train(small, cfg, progress=False, log=lambda _: None)
    untrained = result.history[0]["valid_recall@10"]
    assert result.epochs == 2 and result.best_valid_recall > untrained
    path = tmp_path / "sasrec" / sasrec.CHECKPOINT
    sasrec.save_checkpoint(path, result, cfg, small)
    model, max_len, ckpt = sasrec.load_checkpoint(path, small)
    cases = build_cases(small, "test")
    rows = np.arange(50)
    before = sasrec.scorer(result.model, cases, result.max_len)(rows)
    after = sasrec.scorer(model, cases, max_len)(rows)
    np.testing.assert_array_equal(before, after)
    assert ckpt["summary"]["params"] == sum(p.numel() for p in model.parameters())
    assert torch.get_num_threads() == 1
    budget = dataclasses.replace(cfg, max_epochs=5, time_budget_min=1e-6)
    short = sasrec.train(small, budget, progress=False, log=lambda _: None)
    assert short.epochs == 1 and short.stopped == "time budget" and short.best_epoch == 1


# ---- the shared ranking on hand-built data --------------------------------------------------
def test_rank_users_backfills_and_masks_history(tmp_path):
    _, export = make_run(tmp_path, SEQUENCES, SIMILAR)
    cases = build_cases(export, "test")
    recs = markov.recommend(export, cases, k=5)
    u_one = recs[recs["user_id"] == "u_one"]
    # last item x1 has two successors (x2 from f1, q6 from u_any): first, then popularity back-fill
    assert set(u_one["item_id"].iloc[:2]) == {"x2", "q6"}
    assert u_one["source"].tolist() == ["successor"] * 2 + ["popularity"] * 3
    assert not set(u_one["item_id"]) & {"p1", "q1", "x1"}
    keep = markov.recommend(export, cases, k=5, keep_history=True)
    assert (keep["user_id"] == "u_one").sum() == 5
    pop = popularity_counts(export)
    scores = rank_users(cases, lambda rows: np.broadcast_to(pop, (len(rows), len(pop))), k=3,
                        keep_history=True, chunk_size=2)
    assert scores.groupby("user_id")["item_id"].apply(tuple).nunique() == 1  # same list for all
