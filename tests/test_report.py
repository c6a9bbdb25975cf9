"""`iirg report` and the analysis commands end to end on a tiny run with a real embedded graph."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from cli import main
from graph.build import build_run
from graph.config import GraphConfig
from evaluate.errors import EvaluationError
from evaluate.record import record_model
from evaluate.report import ReportConfig, make_report
from evaluate.segments import SEGMENTS
from graph.export import load_export
from graph.rundir import RunPaths
from graph.store import StoreConfig
from test_segments import SEQUENCES, SIMILAR, make_dataset, make_run

A = pd.DataFrame([("u_one", "x2", 1), ("u_two", "x3", 1), ("u_three", "x4", 2), ("u_three", "x9", 1)],
                 columns=["user_id", "item_id", "rank"]).query("item_id != 'x9'")
B = pd.DataFrame([("u_one", "x3", 1), ("u_one", "x2", 2), ("f1", "z2", 1)],
                 columns=["user_id", "item_id", "rank"])


def test_report_tables_files_and_exact_decomposition(tmp_path):
    run, export = make_run(tmp_path, SEQUENCES, SIMILAR)
    ma = record_model(run, "model_a", A, export=export)
    mb = record_model(run, "popularity", B, export=export)
    report = make_report(run, ReportConfig(k=5, n_boot=200))
    files = set(report["files"])
    assert {"segments_test.csv", "summary_test.csv", "decomposition_test.csv", "report_test.json",
            "segments_test.png", "memorization_test.png",
            "decomposition_model_a_vs_popularity_test.png"} <= files
    for name in files:
        assert (run.report / name).stat().st_size > 0
    seg = pd.read_csv(run.report / "segments_test.csv")
    assert set(seg["model"]) == {"model_a", "popularity"}
    assert set(seg["segment"]) == {*SEGMENTS, "all"}
    all_a = seg[(seg["model"] == "model_a") & (seg["segment"] == "all")].iloc[0]
    assert all_a["recall@5"] == pytest.approx(ma["overall"]["recall@5"])
    dec = pd.read_csv(run.report / "decomposition_test.csv")
    for metric, g in dec.groupby("metric"):
        total = g[g["segment"] == "all"]["delta"].iloc[0]
        assert math.isclose(g[g["segment"] != "all"]["contribution"].sum(), total, abs_tol=1e-12)
    expected = ma["overall"]["recall@5"] - mb["overall"]["recall@5"]
    recall = report["decompositions"]["model_a vs popularity"]["recall@5"]
    assert recall["delta"] == pytest.approx(expected)
    saved = json.loads((run.report / "report_test.json").read_text())
    assert saved["models"] == ["model_a", "popularity"] and not saved["warnings"]


def test_report_compare_and_errors(tmp_path):
    run, export = make_run(tmp_path, SEQUENCES, SIMILAR)
    with pytest.raises(EvaluationError, match="no model has test recommendations"):
        make_report(run, ReportConfig())
    record_model(run, "model_a", A, export=export)
    record_model(run, "model_b", B, export=export, keep_history=True)
    report = make_report(run, ReportConfig(compare=("model_b", "model_a"), n_boot=50))
    assert list(report["decompositions"]) == ["model_b vs model_a"]
    assert any("keep_history" in w for w in report["warnings"])
    with pytest.raises(EvaluationError, match="--compare"):
        make_report(run, ReportConfig(compare=("model_a", "nope"), n_boot=50))


def test_cli_analyze_baseline_report(tmp_path, capsys):
    run = RunPaths.of(tmp_path / "cli_run")
    dataset = make_dataset(SEQUENCES)
    dataset.save(run.dataset)
    build_run(run, dataset, StoreConfig(path=run.store), GraphConfig(semantic=False, window=1),
              progress=False)
    root = str(run.root)
    assert main(["analyze", "--run", root]) == 0
    assert "users per memorization segment" in capsys.readouterr().out
    for name in ("popularity", "markov", "cooc"):
        assert main(["baseline", name, "--run", root, "--k", "5"]) == 0
    assert main(["baseline", "sasrec", "--run", root, "--max-epochs", "2", "--dim", "8",
                 "--threads", "1", "--no-progress", "--no-graph"]) == 0
    out = capsys.readouterr().out
    assert "memorization rate@10" in out
    assert main(["report", "--run", root, "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "share of the gain from one-hop users" in out and "markov" in out
    config = json.loads((run.root / "config.json").read_text())
    assert {"analyze", "baseline.markov", "baseline.cooc", "baseline.sasrec"} <= set(config)
    info = json.loads((run.model("cooc") / "info.json").read_text())
    assert len(info["splits"]["test"]["config"]["selection"]) == 15
    assert (run.model("sasrec") / "checkpoint.pt").exists()
    assert main(["baseline", "markov", "--run", str(tmp_path / "nothing")]) == 2  # no export: clear error
    assert "iirg build" in capsys.readouterr().err
    load_export(run.export)
