"""IIRG instruction data (train.llm.data, train.llm.prompts, `iirg data`) on a hand-made 5-user export.

Sequences (leave-one-out: last = test, second to last = valid, the rest = train):
    u1: 1 2 3 4 5      train 1 2 3      u2: 2 3 6 7        train 2 3
    u3: 1 3            train -          u4: 5 6 7 8 1 2    train 5 6 7 8
    u10: 8 7 6         train 8          (u10 sorts after u4 in natural order)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import cli
from common.errors import ConfigError
from graph.export import load_export, write_export
from graph.rundir import RunPaths
from ingest.schema import IngestReport, build_dataset
from train.llm import prompts
from train.llm.data import (DataConfig, LlmDataError, build_samples, load_instruction_data, select_users,
                            write_instruction_data)

SEQUENCES = {"u1": ["1", "2", "3", "4", "5"], "u2": ["2", "3", "6", "7"], "u3": ["1", "3"],
             "u4": ["5", "6", "7", "8", "1", "2"], "u10": ["8", "7", "6"]}
TITLES = {"1": "Alpha (1990)", "2": "Beta", "3": "Gamma \"Quoted\"", "4": "Delta, The", "5": "Beta (#5)",
          "6": "Zeta", "7": "Eta", "8": "Theta"}


def make_export(directory, *, similar: bool = True):
    items = pd.DataFrame({"item_id": list(TITLES), "raw_title": list(TITLES.values())})
    rows = [{"user_id": u, "item_id": i, "order": n} for u, seq in SEQUENCES.items() for n, i in enumerate(seq)]
    dataset = build_dataset("toy", items, pd.DataFrame(rows), IngestReport(), source={"format": "test"})
    # Ranks deliberately out of row order: the data must follow `rank`, not the frame order.
    collab = pd.DataFrame({"item_id": ["2", "2", "2", "3"], "neighbor_id": ["1", "3", "6", "2"],
                           "rank": [3, 1, 2, 1], "count": [1, 3, 2, 3], "hop": [1, 1, 1, 1],
                           "source": ["cooccur"] * 4, "via_item_id": [None] * 4})
    sim = pd.DataFrame({"item_id": ["1", "1", "6"], "neighbor_id": ["5", "2", "7"], "rank": [2, 1, 1],
                        "score": [0.5, 0.9, 0.8]}) if similar else \
        pd.DataFrame({"item_id": [], "neighbor_id": [], "rank": [], "score": []})
    nxt = pd.DataFrame({"src_item_id": ["1"], "dst_item_id": ["2"], "count": [1]})
    write_export(directory, dataset, popularity=pd.Series(dtype="int64"), next_edges=nxt, collab=collab,
                 similar=sim, params={"window": 1, "k": 3, "semantic_k": 2}, backend="test")
    return load_export(directory)


@pytest.fixture
def export(tmp_path):
    return make_export(tmp_path / "export")


def test_titles_are_unique_and_round_trip_through_the_answer_format(export):
    title_to_id = {t: i for i, t in export.titles.items()}
    assert len(title_to_id) == len(export.titles)
    text = prompts.format_items(export.titles[i] for i in ["3", "5", "1"])
    assert prompts.parse_items(text, title_to_id) == ["3", "5", "1"]
    assert prompts.parse_items('"Not an item"\nBeta', title_to_id) == [None, None]


def test_nip_prefixes_cover_every_training_transition_and_nothing_held_out(export):
    per_task, _ = build_samples(export, DataConfig(tasks=("nip",)))
    nip = per_task["nip"]
    # one sample per training position >= 1: u1 2, u2 1, u3 0, u4 3, u10 0
    assert len(nip) == 6
    pairs = {(s["user_id"], s["target_item_id"]) for s in nip}
    assert pairs == {("u1", "2"), ("u1", "3"), ("u2", "3"), ("u4", "6"), ("u4", "7"), ("u4", "8")}
    held_out = {(u, i) for u, seq in SEQUENCES.items() for i in seq[-2:]}
    assert not pairs & held_out
    sample = next(s for s in nip if s["user_id"] == "u4" and s["target_item_id"] == "8")
    assert sample["input"] == prompts.format_items([TITLES["5"], TITLES["6"], TITLES["7"]])
    assert sample["output"] == prompts.format_item(TITLES["8"])
    assert sample["instruction"] == prompts.INSTRUCTIONS["nip"]


def test_nip_last_mode_and_history_window(export):
    per_task, _ = build_samples(export, DataConfig(tasks=("nip",), nip_mode="last", max_history=2))
    got = {s["user_id"]: (s["input"], s["target_item_id"]) for s in per_task["nip"]}
    assert set(got) == {"u1", "u2", "u4"}
    assert got["u4"] == (prompts.format_items([TITLES["6"], TITLES["7"]]), "8")
    assert got["u2"] == (prompts.format_items([TITLES["2"]]), "3")


def test_nip_continuation_trains_the_same_transitions_in_fewer_samples(export):
    prefixes, _ = build_samples(export, DataConfig(tasks=("nip",)))
    per_task, _ = build_samples(export, DataConfig(tasks=("nip",), nip_mode="continuation", nip_span=2,
                                                   max_history=2))
    nip = per_task["nip"]
    # u4's training part is 5 6 7 8: spans [6 7] after (5) and [8] after (6 7); u1: [2 3]; u2: [3]
    assert len(nip) == 4
    targets = {(s["user_id"], i) for s in nip for i in s["target_item_ids"]}
    assert targets == {(s["user_id"], s["target_item_id"]) for s in prefixes["nip"]}
    last = next(s for s in nip if s["user_id"] == "u4" and s["target_item_id"] == "8")
    assert last["input"] == prompts.format_items([TITLES["6"], TITLES["7"]])
    first = next(s for s in nip if s["user_id"] == "u4" and s["target_item_id"] == "6")
    assert first["output"] == prompts.format_items([TITLES["6"], TITLES["7"]])
    with pytest.raises(ConfigError):
        DataConfig(nip_mode="continuation", nip_span=0)


def test_neighbour_tasks_follow_rank_order_and_k(export):
    per_task, _ = build_samples(export, DataConfig(tasks=("collab", "semantic"), collab_k=2))
    collab = {s["anchor_item_id"]: s["neighbor_item_ids"] for s in per_task["collab"]}
    assert collab == {"2": ["3", "6"], "3": ["2"]}
    semantic = {s["anchor_item_id"]: s for s in per_task["semantic"]}
    assert semantic["1"]["neighbor_item_ids"] == ["2", "5"]
    assert semantic["1"]["output"] == f'"{TITLES["2"]}"\n"{TITLES["5"]}"'
    assert semantic["1"]["input"] == f'"{TITLES["1"]}"'


def test_task_weights_and_validation(export):
    per_task, _ = build_samples(export, DataConfig(weights=(1, 0.5, 2)))
    assert {t: {s["weight"] for s in rows} for t, rows in per_task.items()} == \
        {"nip": {1.0}, "collab": {0.5}, "semantic": {2.0}}
    assert DataConfig(tasks=("nip", "collab")).weights == (1.0, 1.0)
    assert DataConfig(weights=(3,)).weights == (3.0, 3.0, 3.0)
    for bad in ({"tasks": ("nip", "ratings")}, {"weights": (1, 2)}, {"weights": (0, 0, 0)},
                {"nip_mode": "all"}, {"max_history": 0}, {"tasks": ("nip", "nip")}):
        with pytest.raises(ConfigError):
            DataConfig(**bad)


def test_user_subset_is_the_first_users_in_natural_order(export):
    assert select_users(["u10", "u2", "u1", "3", "20", "u2"], None) == ["3", "20", "u1", "u10", "u2"]
    assert select_users(["10", "9", "100"], 2) == ["9", "10"]
    per_task, valid = build_samples(export, DataConfig(tasks=("nip",), max_users=2))
    assert {s["user_id"] for s in per_task["nip"]} == {"u1"}  # users u1, u10 (u10 has one train item)
    assert [v["user_id"] for v in valid] == ["u1", "u10"]


def test_written_folder_round_trips_with_llama_factory_registry(export, tmp_path):
    out = tmp_path / "data"
    meta = write_instruction_data(export, DataConfig(weights=(1, 1, 0.5)), out)
    assert meta["counts"] == {"nip": 6, "collab": 2, "semantic": 2, "valid": 4, "items": 8}
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"iirg_nip", "iirg_collab", "iirg_semantic", "iirg_valid"}
    for entry in info.values():
        assert (out / entry["file_name"]).exists()
        assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    data = load_instruction_data(out)
    assert {t: len(r) for t, r in data.train.items()} == {"nip": 6, "collab": 2, "semantic": 2}
    for rows in data.train.values():
        assert all({"instruction", "input", "output", "task", "weight"} <= set(r) for r in rows)
    valid = {v["user_id"]: v for v in data.valid}
    # valid: training history -> valid item; exclusion uses the whole training history
    assert valid["u4"]["target_item_id"] == "1" and valid["u4"]["history_item_ids"] == ["5", "6", "7", "8"]
    assert "u3" not in valid  # no training history
    assert dict(zip(data.items["item_id"], data.items["title"])) == export.titles
    only_nip = load_instruction_data(out, ("nip",))
    assert list(only_nip.train) == ["nip"]
    with pytest.raises(LlmDataError, match="no samples for task"):
        load_instruction_data(write_and_path(export, tmp_path / "nip-only"), ("collab",))


def write_and_path(export, path):
    write_instruction_data(export, DataConfig(tasks=("nip",)), path)
    return path


def test_missing_relations_fail_without_writing_anything(tmp_path):
    export = make_export(tmp_path / "export", similar=False)
    with pytest.raises(LlmDataError, match="semantic"):
        write_instruction_data(export, DataConfig(), tmp_path / "data")
    assert not (tmp_path / "data").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data")]


def test_cli_data_reads_toml_then_flags(tmp_path, capsys):
    run = RunPaths.of(tmp_path / "run")
    make_export(run.export)
    config = tmp_path / "cfg.toml"
    config.write_text('[data]\ntasks = ["nip", "collab"]\nweights = [1.0, 0.25]\nnip_mode = "prefixes"\n')
    code = cli.main(["data", "--run", str(run.root), "--config", str(config), "--nip-mode", "last"])
    assert code == 0
    meta = json.loads((run.llm / "data" / "data_config.json").read_text())
    assert meta["config"]["tasks"] == ["nip", "collab"]
    assert meta["config"]["weights"] == [1.0, 0.25]
    assert meta["config"]["nip_mode"] == "last"  # the flag wins over the file
    assert meta["counts"]["nip"] == 3
    assert "collaborative-neighbour generation" in capsys.readouterr().out
    config.write_text('[data]\nnip_mod = "last"\n')
    assert cli.main(["data", "--run", str(run.root), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: [data] has unknown key `nip_mod`" in err


# experiment_*.toml hold every stage's table: tests/test_experiment.py checks them against all dataclasses
@pytest.mark.parametrize("path", sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.toml")
                                        if not p.name.startswith("experiment_")), ids=lambda p: p.name)
def test_shipped_configs_only_use_known_settings(path):
    import tomllib

    from common.config import build_config, read_table
    from train.llm.evaluation import EvaluateConfig
    from train.llm.finetune import TrainConfig
    from train.llm.tiny import TinyModelConfig

    sections = {"data": DataConfig, "tiny": TinyModelConfig, "train": TrainConfig, "evaluate": EvaluateConfig}
    document = tomllib.loads(path.read_text())
    assert document and set(document) <= set(sections)
    for name in document:
        values = read_table(path, name, sections[name])  # unknown keys and wrong types raise
        if name != "evaluate":  # evaluate needs --adapter or --no-adapter from the command line
            build_config(sections[name], values, table=name)
