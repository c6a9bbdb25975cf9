"""The shared evaluator against hand-computed Recall/NDCG, its input checks, what it writes (files and
graph edges), and the gain decomposition (exact sum, seeded bootstrap)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from evaluate.errors import EvaluationError
from evaluate.metrics import KS, compare_gains
from evaluate.record import record_model, recorded_lists, write_recommendations
from evaluate.segments import SEGMENTS, analyze, write_segments
from graph import analysis_queries as AQ
from graph.build import build_run
from graph.config import GraphConfig
from graph.export import load_export
from graph.rundir import RunPaths
from graph.store import open_store
from test_segments import SEQUENCES, SIMILAR, make_dataset, make_run

N_USERS = len(SEQUENCES)
LOG3, LOG4 = 1 / math.log2(3), 1 / math.log2(4)


@pytest.fixture
def tiny(tmp_path):
    return make_run(tmp_path, SEQUENCES, SIMILAR)


def lists(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


# u_one: target x2 at rank 1. u_two: target x3; p2 is history and is dropped -> x3 moves from model
# rank 4 to rank 3. u_three: target x4 after history item x1 -> rank 1 (rank 2 with keep_history).
HAND = lists([("u_one", "x2", 1),
              ("u_two", "p2", 1), ("u_two", "x5", 2), ("u_two", "x4", 3), ("u_two", "x3", 4),
              ("u_three", "x1", 1), ("u_three", "x4", 2)])


def test_metrics_match_hand_computation(tiny):
    run, export = tiny
    m = record_model(run, "hand", HAND, export=export)
    o = m["overall"]
    assert m["n_users"] == N_USERS and m["n_users_with_list"] == 3 and m["n_missing"] == N_USERS - 3
    assert o["recall@1"] == pytest.approx(2 / N_USERS)
    assert o["ndcg@1"] == pytest.approx(2 / N_USERS)
    assert o["recall@5"] == pytest.approx(3 / N_USERS)
    assert o["ndcg@5"] == pytest.approx((1 + LOG4 + 1) / N_USERS)
    assert o["ndcg@20"] == o["ndcg@5"]
    assert m["history_items_dropped"] == 2
    seg = m["segments"]
    assert seg["one_hop"]["n_users"] == 1 and seg["one_hop"]["recall@1"] == 1.0
    assert seg["two_hop"]["recall@1"] == 0.0 and seg["two_hop"]["ndcg@5"] == pytest.approx(LOG4 / seg["two_hop"]["n_users"])
    assert sum(s["n_users"] for s in seg.values()) == N_USERS
    # memorization: only x2 (u_one) is a successor of the last item x1; 5 slots in the top 5
    assert m["memorization_rate"]["@1"] == pytest.approx(1 / 3)
    assert m["memorization_rate"]["@5"] == pytest.approx(1 / 5)
    assert m["one_hop_hits"]["@1"] == {"hits": 2, "covered_hits": 1, "share_of_hits": 0.5}
    assert m["groups"]["covered"]["n_users"] == 1
    assert m["groups"]["uncovered"]["recall@5"] == pytest.approx(2 / (N_USERS - 1))


def test_keep_history_keeps_the_slots(tiny):
    run, export = tiny
    m = record_model(run, "hand", HAND, keep_history=True, export=export)
    assert m["history_items_dropped"] == 0
    assert m["overall"]["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5) + LOG3) / N_USERS)


def test_record_model_writes_lists_metrics_info(tiny):
    run, export = tiny
    m = record_model(run, "hand", HAND, split="test", info={"why": "test"}, export=export)
    folder = run.model("hand")
    saved = pd.read_parquet(folder / "recommendations_test.parquet")
    u_two = saved[saved["user_id"] == "u_two"]
    assert u_two["item_id"].tolist() == ["x5", "x4", "x3"] and u_two["rank"].tolist() == [1, 2, 3]
    assert u_two["model_rank"].tolist() == [2, 3, 4]
    assert json.loads((folder / "metrics_test.json").read_text())["overall"] == m["overall"]
    info = json.loads((folder / "info.json").read_text())
    assert info["splits"]["test"]["config"] == {"why": "test"}
    assert json.loads((run.root / "config.json").read_text())["model.hand.test"]["why"] == "test"
    assert m["ks"] == list(KS) and m["dataset_checksum"] == export.manifest["dataset_checksum"]


def test_users_subset(tiny):
    run, export = tiny
    m = record_model(run, "hand", HAND, users=["u_one", "u_two", "u_three", "u_beyond"], export=export)
    assert m["n_users"] == 4 and m["n_missing"] == 1
    assert m["overall"]["recall@5"] == pytest.approx(3 / 4)
    assert (run.model("hand") / "users_test.parquet").exists()


@pytest.mark.parametrize("rows, message", [
    ([("u_one", "nope", 1)], "unknown item id"),
    ([("u_one", "x2", 1), ("u_one", "x3", 1)], "duplicate rank"),
    ([("u_one", "x2", 1), ("u_one", "x2", 2)], "duplicate item_id"),
    ([("stranger", "x2", 1)], "not evaluated in split 'test'"),
    ([("u_one", "x2", 0)], "integer >= 1"),
    ([("u_one", "x2", 1.5)], "integer >= 1"),
])
def test_invalid_lists_are_rejected(tiny, rows, message):
    run, export = tiny
    with pytest.raises(EvaluationError, match=message):
        record_model(run, "bad", lists(rows), export=export)
    assert not run.model("bad").exists()  # nothing half-written


def test_missing_columns_and_bad_names(tiny):
    run, export = tiny
    with pytest.raises(EvaluationError, match="missing column"):
        record_model(run, "bad", HAND.drop(columns="rank"), export=export)
    with pytest.raises(EvaluationError, match="model name"):
        record_model(run, "../escape", HAND, export=export)


def test_decomposition_sums_exactly_and_bootstrap_is_seeded():
    rng = np.random.default_rng(7)
    n = 5000
    segment = rng.choice(np.array(SEGMENTS), size=n, p=[0.3, 0.3, 0.2, 0.05, 0.1, 0.05])
    a = (rng.random(n) < np.where(segment == "one_hop", 0.5, 0.1)).astype(float)
    b = (rng.random(n) < 0.12).astype(float)
    res = compare_gains(a, b, segment, SEGMENTS, n_boot=400, seed=3)
    total = sum(s["contribution"] for s in res["segments"].values())
    assert math.isclose(total, res["delta"], rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(res["delta"], a.mean() - b.mean(), rel_tol=1e-12)
    for s in res["segments"].values():
        assert math.isclose(s["contribution"], s["share"] * s["delta"], rel_tol=1e-9, abs_tol=1e-15)
    assert res["delta_ci"][0] < res["delta"] < res["delta_ci"][1]
    assert res["significant"]
    one = res["segments"]["one_hop"]
    assert res["covered_share_of_gain"] == pytest.approx(one["contribution"] / res["delta"])
    assert res["covered_share_of_gain"] > 0.5  # A's gain sits on one-hop users by construction
    again = compare_gains(a, b, segment, SEGMENTS, n_boot=400, seed=3)
    assert again["delta_ci"] == res["delta_ci"]
    other = compare_gains(a, b, segment, SEGMENTS, n_boot=400, seed=4)
    assert other["delta_ci"] != res["delta_ci"]


def test_decomposition_of_identical_models():
    seg = np.array(["one_hop", "beyond"] * 10)
    res = compare_gains(np.ones(20), np.ones(20), seg, SEGMENTS, n_boot=50)
    assert res["delta"] == 0 and res["covered_share_of_gain"] is None and not res["significant"]


# ---- real stores (the lead's schema; both backends, Neo4j skips without Docker) ----------------
def test_graph_gets_segments_and_replaced_recommendations(tmp_path, store_config):
    run = RunPaths.of(tmp_path / "graph_run")
    dataset = make_dataset(SEQUENCES)
    dataset.save(run.dataset)
    build_run(run, dataset, store_config, GraphConfig(semantic=False, window=1), progress=False)
    export = load_export(run.export)
    store = store_config

    def record(model, lists, **kwargs):  # what `iirg baseline` does: record, then write to the graph
        record_model(run, model, lists, export=export, **kwargs)
        with open_store(store) as graph:
            write_recommendations(graph, model, "test", recorded_lists(run, model, "test"))

    frames = analyze(run, export)
    with open_store(store) as graph:
        write_segments(graph, frames["test"])
    record("hand", HAND)
    record("other", HAND)
    record("hand", HAND)  # replaces, does not add
    record("hand", HAND.iloc[:1], split="test")
    with open_store(store) as graph:
        counts = graph.run_df(AQ.SEGMENT_COUNTS_QUERY).set_index("segment")["n_users"]
        models = graph.run_df(AQ.RECOMMENDED_MODELS_QUERY)
        hits = graph.run_df(AQ.HITS_BY_SEGMENT_QUERY, {"model": "hand", "k": 5})
        users = graph.run_df("MATCH (u:User) WHERE u.id = $id RETURN u.hop AS hop, "
                             "u.segment AS segment, u.last_item_id AS last", {"id": "u_unreach"})
    expected = frames["test"]["segment"].value_counts()
    assert counts.sort_index().to_dict() == expected.sort_index().to_dict()
    # HAND has 5 entries left after history removal; the other model's edges survive replacements
    assert models[["model", "split", "edges"]].values.tolist() == [["hand", "test", 1], ["other", "test", 5]]
    assert hits.values.tolist() == [["one_hop", 1]]
    assert users.iloc[0]["segment"] == "unreachable" and pd.isna(users.iloc[0]["hop"])
    assert users.iloc[0]["last"] == "x5"
    # relabelling with nothing but unreachable users still writes (null hops in a whole batch)
    with open_store(store) as graph:
        write_segments(graph, frames["test"][frames["test"]["hop"].isna()])
