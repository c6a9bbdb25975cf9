"""Semantic IDs, the TIGER baseline, token-level memorization and the memorization-aware ensemble.

Pure functions are checked on hand-made arrays; the pipeline on a real ml-100k build (embedded store,
MiniLM embeddings) with a real T5 model, trained for a few seconds (a time budget), which is enough
to check decoding, saving, reloading and resuming, not quality.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import cli
from evaluate.cases import Cases, build_cases
from evaluate.token_level import SIDError, load_sids, token_level_coverage
from graph.export import load_export
from graph.rundir import RunPaths
from graph.store import StoreConfig, open_store
from train.sid import SIDConfig, codebook_usage, disambiguate, rq_kmeans, sid_strings

torch = pytest.importorskip("torch", reason="TIGER needs the train extra (torch)")


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------
def test_disambiguation_makes_every_sid_unique_and_counts_collisions():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 4]])
    full, stats = disambiguate(codes)
    assert full.tolist() == [[0, 1, 0], [0, 1, 1], [2, 3, 0], [0, 1, 2], [2, 4, 0]]
    assert len({tuple(r) for r in full.tolist()}) == len(codes)
    assert stats == {"collision_rate": 0.6, "colliding_items": 3, "max_items_per_tuple": 3, "unique_tuples": 3}
    assert sid_strings(full[:1]) == ["<a_0><b_1><c_0>"]
    usage = codebook_usage(full, 4)
    assert [u["used"] for u in usage] == [2, 3, 3]
    assert usage[0]["share_used"] == 0.5


def test_rq_kmeans_levels_refine_and_duplicates_get_told_apart():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 16))
    x = np.repeat(centers, 25, axis=0) + 0.01 * rng.normal(size=(200, 16))
    x[1] = x[0]  # two identical embeddings must still get two SIDs
    codes = rq_kmeans(x.astype(np.float32), levels=2, k=8, seed=0, log=lambda _: None)
    # level 1 recovers the 8 clusters exactly
    assert len(np.unique(codes[:, 0])) == 8
    assert all(len(np.unique(codes[i * 25:(i + 1) * 25, 0])) == 1 for i in range(8))
    full, _ = disambiguate(codes)
    assert len({tuple(r) for r in full.tolist()}) == 200


def test_auto_codebook_size_scales_with_the_catalogue():
    cfg = SIDConfig()
    assert cfg.codes_per_level(1682) == 64
    assert cfg.codes_per_level(20000) == 128
    assert cfg.codes_per_level(10) == 10
    assert SIDConfig(codebook_size=256).codes_per_level(1682) == 256
    with pytest.raises(ValueError):
        SIDConfig(method="kmeans")


def test_token_level_coverage_by_prefix():
    # items 0..3; codes share level-1 prefixes {0,1} -> a, {2,3} -> b
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    src, dst = np.array([0]), np.array([2])  # one training transition: item 0 -> item 2 (a -> b)
    last = np.array([0, 1, 1, 2])
    target = np.array([2, 3, 0, 0])
    cover = token_level_coverage(codes, src, dst, last, target)
    assert cover.tolist() == [[True, True],    # the transition itself: item-level one-hop
                              [True, False],   # 1 -> 3 is a -> b at level 1 only
                              [False, False],  # a -> a never occurs
                              [False, False]]  # b -> a never occurs


def test_tiger_training_samples_are_every_prefix_of_the_training_parts():
    from train.baselines.tiger import SIDVocab, contexts, encoder_inputs, training_samples

    cases = Cases(split="valid", user_ids=np.array(["u1", "u2"], dtype=object),
                  indptr=np.array([0, 3, 5]), history=np.array([4, 5, 6, 7, 8]),
                  target=np.array([0, 1]), item_ids=np.array([str(i) for i in range(9)], dtype=object))
    ctx, target = training_samples(cases, max_history=2)
    assert target.tolist() == [5, 6, 8]
    assert ctx.tolist() == [[-1, 4], [4, 5], [-1, 7]]
    assert contexts(cases, np.array([0, 1]), 2).tolist() == [[5, 6], [7, 8]]
    vocab = SIDVocab.from_codes(np.array([[i % 3, i // 3] for i in range(9)]))
    assert vocab.level_sizes == (3, 3) and vocab.size == 2 + 6
    assert encoder_inputs(vocab, np.array([[-1, 4]])).tolist() == [[0, 0, 3, 6]]


# --------------------------------------------------------------------------------------------
# Real ml-100k pipeline
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(ml100k_dir, tmp_path_factory) -> RunPaths:
    root = tmp_path_factory.mktemp("tiger") / "ml-100k"
    assert cli.main(["build", "--dataset", "ml-100k", "--data-dir", str(ml100k_dir.parent), "--run", str(root),
                     "--no-progress"]) == 0
    assert cli.main(["sid", "--run", str(root), "--no-progress"]) == 0
    return RunPaths.of(root)


@pytest.fixture(scope="module")
def export(run):
    return load_export(run.export)


def test_sids_are_unique_and_stored_in_export_manifest_and_graph(run, export):
    codes, stats = load_sids(export)
    assert codes.shape == (len(export.items), 4)
    assert len({tuple(r) for r in codes.tolist()}) == len(codes)
    assert 0 <= stats["collision_rate"] < 0.5 and stats["codes_per_level"] == 64
    manifest = json.loads((run.export / "manifest.json").read_text())
    assert manifest["sids"]["n_codes"] == 4 and "sids.parquet" in manifest["files"]
    with open_store(StoreConfig(path=run.store), read_only=True) as graph:
        rows = graph.run_df("MATCH (i:Item) RETURN i.id AS item_id, i.sid AS sid, i.sid_codes AS codes")
    saved = pd.read_parquet(run.export / "sids.parquet")
    merged = rows.merge(saved, on="item_id")
    assert len(merged) == len(export.items)
    assert (merged["sid_x"] == merged["sid_y"]).all()
    assert all(list(a) == list(b) for a, b in zip(merged["codes"], merged["sid_codes"]))


def test_sids_of_another_build_are_refused(run, export):
    other = load_export(run.export)
    other.manifest = {**other.manifest, "dataset_checksum": "something else"}
    with pytest.raises(SIDError, match="another dataset build"):
        load_sids(other)


def _tiny_cfg(**overrides):
    from train.baselines.tiger import TIGERConfig

    base = dict(d_model=32, d_ff=64, layers=1, heads=2, max_history=10, batch_size=128, max_epochs=1,
                eval_users=64, time_budget_min=0.05, warmup_steps=10, threads=1, num_beams=20)
    return TIGERConfig(**{**base, **overrides})


def test_tiger_decodes_only_catalogue_items_outside_the_history(run, export):
    from train.baselines.tiger import recommend, sid_trie, train

    codes, _ = load_sids(export)
    result = train(run, export, codes, _tiny_cfg(), progress=False, log=lambda _: None)
    trie = sid_trie(result.vocab, export.items["item_id"].astype(str).to_numpy())
    cases = build_cases(export, "test")
    rows = np.arange(100)
    recs, stats = recommend(result.model, result.vocab, trie, cases, _tiny_cfg(), rows=rows)
    assert stats["invalid"] == 0 and stats["returned"] == 100 * 20
    assert set(recs["item_id"]) <= set(export.items["item_id"].astype(str))
    history = {(u, cases.item_ids[i]) for r in rows for u, i in
               [(cases.user_ids[r], h) for h in cases.history[cases.indptr[r]:cases.indptr[r + 1]]]}
    assert not any((u, i) in history for u, i in zip(recs["user_id"], recs["item_id"]))
    # without the trie, a barely trained model spells codes that are no item: the constraint matters
    _, free = recommend(result.model, result.vocab, trie, cases, _tiny_cfg(), rows=rows, constrained=False)
    assert free["invalid"] > 0


def test_saved_tiger_reloads_to_identical_scores(run, export):
    from train.baselines.tiger import CHECKPOINT, load_checkpoint, recommend, sid_trie

    assert cli.main(["baseline", "tiger", "--run", str(run.root), "--no-graph", "--no-progress", "--d-model", "32",
                     "--d-ff", "64", "--layers", "1", "--heads", "2", "--max-history", "10",
                     "--max-epochs", "1", "--eval-users", "64", "--time-budget-min", "0.05",
                     "--threads", "1"]) == 0
    saved = pd.read_parquet(run.model("tiger") / "recommendations_test.parquet")
    metrics = json.loads((run.model("tiger") / "metrics_test.json").read_text())
    info = json.loads((run.model("tiger") / "info.json").read_text())
    assert metrics["n_users"] == 943 and info["splits"]["test"]["config"]["decode_test"]["invalid"] == 0
    model, vocab, cfg, _ = load_checkpoint(run.model("tiger") / CHECKPOINT, export)
    trie = sid_trie(vocab, export.items["item_id"].astype(str).to_numpy())
    recs, _ = recommend(model, vocab, trie, build_cases(export, "test"), cfg)
    merged = saved.merge(recs, on=["user_id", "rank"], suffixes=("_saved", "_reloaded"))
    assert len(merged) == len(saved)
    assert (merged["item_id_saved"] == merged["item_id_reloaded"]).all()
    np.testing.assert_allclose(merged["score_saved"], merged["score_reloaded"], rtol=1e-5, atol=1e-5)


def test_tiger_resume_continues_at_the_saved_step(run, export):
    from train.baselines.tiger import train

    codes, _ = load_sids(export)
    first = train(run, export, codes, _tiny_cfg(time_budget_min=0.02), progress=False, log=lambda _: None)
    assert [r["epoch"] for r in first.history] == [0, 1]
    steps = first.steps
    second = train(run, export, codes, _tiny_cfg(time_budget_min=0.02, max_epochs=2), resume=True,
                   progress=False, log=lambda _: None)
    assert [r["epoch"] for r in second.history] == [0, 1, 2]
    assert second.history[1] == first.history[1]
    assert second.history[2]["step"] == second.steps > steps
    with pytest.raises(Exception, match="another d_model"):
        train(run, export, codes, _tiny_cfg(d_model=16, heads=2), resume=True, progress=False, log=lambda _: None)


def test_ensemble_indicator_never_reads_the_held_out_item(export):
    from train.ensemble import user_indicator

    cases = build_cases(export, "test")
    mass = user_indicator(export, cases)
    rng = np.random.default_rng(0)
    shuffled = Cases(split=cases.split, user_ids=cases.user_ids, indptr=cases.indptr, history=cases.history,
                     target=rng.permutation(cases.target), item_ids=cases.item_ids)
    assert np.array_equal(user_indicator(export, shuffled), mass)
    # and it is the training successor count of the last history item
    last = cases.item_ids[cases.last[0]]
    expected = export.next.loc[export.next["src_item_id"] == last, "count"].sum()
    assert mass[0] == expected


def test_ensemble_routes_and_is_recorded(run, export):
    for model in ("popularity", "markov"):
        assert cli.main(["baseline", model, "--run", str(run.root), "--no-graph", "--no-progress"]) == 0
    assert cli.main(["ensemble", "--run", str(run.root), "--covered", "markov", "--uncovered", "popularity",
                     "--no-graph"]) == 0
    info = json.loads((run.model("ensemble-markov-popularity") / "info.json").read_text())
    metrics = {m: json.loads((run.model(m) / "metrics_valid.json").read_text())["overall"]["recall@10"]
               for m in ("markov", "popularity", "ensemble-markov-popularity")}
    # the threshold is chosen on valid, and the grid contains "everyone to A" and "everyone to B"
    assert metrics["ensemble-markov-popularity"] >= max(metrics["markov"], metrics["popularity"]) - 1e-12
    assert info["splits"]["valid"]["config"]["selected_by"] == "valid recall@10"


def test_report_has_token_level_memorization(run, export):
    from evaluate.report import ReportConfig, make_report

    assert cli.main(["analyze", "--run", str(run.root), "--no-graph"]) == 0
    report = make_report(run, ReportConfig(n_boot=50))
    table = report["tables"]["token_level"]
    assert set(table["model"]) >= {"tiger", "markov"}
    users = table[(table["model"] == "tiger") & (table["group"] == "all")]
    assert users["n_users"].sum() == 943
    # item-level coverage (all 4 levels) is exactly the one-hop segment
    one_hop = report["segment_counts"]["one_hop"]
    assert int(users.loc[users["token_level"] == 4, "n_users"].iloc[0]) == one_hop
