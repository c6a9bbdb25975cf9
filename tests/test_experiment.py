"""`iirg experiment` on a small synthetic CSV (40 users, 30 items, semantic neighbours from the local
MiniLM): end to end with popularity, Markov and a tiny SID LM of a few steps (NIP and IIRG); an
interrupted experiment resumes without redoing finished stages; a changed setting reruns its stage and
the stages downstream only; two experiments on one run keep each other's stages and never run the same
stage (or one whose input is being written) at once; every shipped experiment config parses.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

import cli
from common.config import build_config, read_table
from common.errors import ConfigError
from graph.rundir import RunPaths
from train.experiment import (ExperimentConfig, ExperimentError, claim_stage, plan, run_experiment,
                              write_summary)

pytest.importorskip("torch", reason="the LLM stages need the train extra (torch)")
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

CONFIG = """
[ingest]
dataset = "{data}/clicks.csv"
format = "csv"
items_path = "{data}/items.csv"

[build]
collab_k = 3
semantic_k = 3
cache_dir = "{cache}"

[sid]
levels = 2
codebook_size = 4

[experiment]
baselines = ["popularity", "markov"]
item_reprs = ["sid"]
variants = ["nip", "iirg"]
graph = false

[tiny]
vocab_size = 300
hidden_size = 32
intermediate_size = 64
num_heads = 2
num_layers = 1
pretrain_steps = 3
pretrain_batch_size = 16
threads = 1

[data]
max_history = {max_history}

[train]
max_steps = 2
batch_size = 8
save_steps = 2
eval_users = 0
threads = 1

[evaluate]
num_beams = 20
batch_size = 16
threads = 1

[report]
n_boot = 50
"""


def _write_config(tmp_path: Path, max_history: int = 5) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rng = random.Random(0)
    # a walk on 30 items: mostly item i -> i+1, so Markov has something to find
    rows = ["user_id,item_id,timestamp"]
    for u in range(40):
        item = rng.randrange(30)
        for t in range(7):
            rows.append(f"u{u},i{item},{t}")
            item = (item + 1) % 30 if rng.random() < 0.7 else rng.randrange(30)
    (data / "clicks.csv").write_text("\n".join(rows) + "\n")
    (data / "items.csv").write_text("item_id,title,description\n" + "".join(
        f"i{i},Thing {i},A plain object number {i} for an office desk\n" for i in range(30)))
    path = tmp_path / "experiment.toml"
    path.write_text(CONFIG.format(data=data, cache=tmp_path / "cache", max_history=max_history))
    return path


def _args(config: Path, run: Path) -> list[str]:
    return ["experiment", "--config", str(config), "--run", str(run)]


def _invoke(config: Path, run: Path, **kwargs) -> dict:
    """The command's own path, with a hook: parse as cli.main does and call run_experiment."""
    args = cli.build_parser().parse_args(_args(config, run))
    ctx = cli.Context(run=RunPaths.of(run), store=cli.store_config(args, RunPaths.of(run)), env={})
    cfg = build_config(ExperimentConfig, read_table(config, "experiment", ExperimentConfig), table="experiment")
    return run_experiment(cfg, config.resolve(), RunPaths.of(run), args.commands, ctx, **kwargs)


def _mtimes(run: Path, stages: dict) -> dict:
    return {name: [p.stat().st_mtime_ns for p in stage.outputs] for name, stage in stages.items()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One full experiment (the expensive part, shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("experiment")
    config = _write_config(tmp)
    run = tmp / "run"
    assert cli.main(_args(config, run)) == 0
    return config, run


def test_runs_end_to_end_and_writes_the_summary(finished):
    config, run = finished
    md = (run / "report" / "experiment.md").read_text()
    record = json.loads((run / "experiment.json").read_text())
    assert set(record["last_invocation"]) == {"build", "sid", "analyze", "baseline:popularity", "baseline:markov",
                                             "data:sid", "tiny:sid", "train:sid-nip", "evaluate:sid-nip",
                                             "train:sid-iirg", "evaluate:sid-iirg",
                                             "report:llm-sid-iirg_vs_llm-sid-nip"}
    assert all(v["status"] == "ran" for v in record["last_invocation"].values())
    for needle in ("Recall@10 / NDCG@10 per memorization segment", "llm-sid-iirg - llm-sid-nip",
                   "one_hop", "rest (not one_hop)", "memorization@10", "Wall time per stage",
                   "segments_test.png", "markov"):
        assert needle in md, needle
    assert (run / "report" / "report_test_llm-sid-iirg_vs_llm-sid-nip.json").exists()
    assert json.loads((run / "llm" / "adapters" / "sid-nip" / "train_config.json").read_text())[
        "config"]["tasks"] == ["nip"]


def test_a_second_run_skips_every_stage(finished, capsys):
    config, run = finished
    cfg = build_config(ExperimentConfig, read_table(config, "experiment", ExperimentConfig), table="experiment")
    stages = {s.name: s for s in plan(cfg, RunPaths.of(run), config.resolve())}
    before = _mtimes(run, stages)
    this_run = _invoke(config, run)
    assert {v["status"] for v in this_run.values()} == {"skipped"}
    assert "skipped: up to date" in capsys.readouterr().out
    assert _mtimes(run, stages) == before


def test_killed_mid_way_resumes_without_redoing_finished_stages(tmp_path):
    config = _write_config(tmp_path)
    run = tmp_path / "run"

    def interrupt(name, status):
        if name == "baseline:markov":
            raise KeyboardInterrupt  # as Ctrl-C right after the stage finished

    with pytest.raises(KeyboardInterrupt):
        _invoke(config, run, on_stage_end=interrupt)
    record = json.loads((run / "experiment.json").read_text())
    assert set(record["stages"]) == {"build", "sid", "analyze", "baseline:popularity", "baseline:markov"}
    cfg = build_config(ExperimentConfig, read_table(config, "experiment", ExperimentConfig), table="experiment")
    stages = {s.name: s for s in plan(cfg, RunPaths.of(run), config.resolve())}
    finished_outputs = {n: [p.stat().st_mtime_ns for p in stages[n].outputs] for n in record["stages"]}
    # the second run: the finished stages are skipped, the rest run (up to the tiny model, to stay cheap)
    this_run = _invoke(config, run, only=("build", "sid", "analyze", "baseline", "data", "tiny"))
    assert {n: this_run[n]["status"] for n in record["stages"]} == {n: "skipped" for n in record["stages"]}
    assert this_run["data:sid"]["status"] == "ran" and this_run["tiny:sid"]["status"] == "ran"
    assert this_run["train:sid-nip"]["status"] == "not selected"
    # the summary says which report is missing rather than printing an empty table
    summary = write_summary(cfg, config.resolve(), RunPaths.of(run), this_run).read_text()
    assert "has not written report_test_llm-sid-iirg_vs_llm-sid-nip.json" in summary
    assert {n: [p.stat().st_mtime_ns for p in stages[n].outputs] for n in record["stages"]} == finished_outputs


def test_a_changed_setting_reruns_its_stage_and_downstream_only(finished, tmp_path):
    config, run = finished
    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text().replace("max_history = 5", "max_history = 4"))
    this_run = _invoke(changed, run)
    status = {n: v["status"] for n, v in this_run.items()}
    assert status == {"build": "skipped", "sid": "skipped", "analyze": "skipped",
                      "baseline:popularity": "skipped", "baseline:markov": "skipped",
                      "data:sid": "ran", "tiny:sid": "skipped", "train:sid-nip": "ran",
                      "evaluate:sid-nip": "ran", "train:sid-iirg": "ran", "evaluate:sid-iirg": "ran",
                      "report:llm-sid-iirg_vs_llm-sid-nip": "ran"}


def test_two_experiments_on_one_run_keep_each_others_stages(tmp_path):
    """A second experiment on the run finishes baseline:markov between two stages of the first (started
    from the first one's hook, as another process on another core would); the first then runs
    baseline:popularity and must not write back the record it read before the second one's stage."""
    config = _write_config(tmp_path)
    run = tmp_path / "run"
    second: dict = {}

    def start_second(name, status):
        if name == "analyze":
            second.update(_invoke(config, run, only=("baseline:markov",)))

    first = _invoke(config, run, only=("build", "sid", "analyze", "baseline:popularity"), on_stage_end=start_second)
    assert second["baseline:markov"]["status"] == "ran" and first["baseline:popularity"]["status"] == "ran"
    stages = json.loads((run / "experiment.json").read_text())["stages"]
    assert all("identity" in stages[n] for n in ("build", "analyze", "baseline:markov", "baseline:popularity"))
    again = _invoke(config, run, only=("baseline",))
    assert {again[n]["status"] for n in ("baseline:popularity", "baseline:markov")} == {"skipped"}


def test_a_stage_another_experiment_runs_is_refused(finished):
    """While another process holds baseline:markov (an flock: a second open file in this process
    conflicts the same way), running it, or the report that reads it, is refused."""
    config, run = finished
    with claim_stage(RunPaths.of(run), "baseline:markov"):
        with pytest.raises(ExperimentError, match=r"stage baseline:markov is running in another .*\(pid \d+\)"):
            _invoke(config, run, only=("baseline:markov",))
        with pytest.raises(ExperimentError, match=r"reads baseline:markov, which another `iirg experiment`"):
            _invoke(config, run, only=("report",))
    assert _invoke(config, run, only=("baseline:markov",))["baseline:markov"]["status"] == "skipped"


def test_keys_the_experiment_sets_are_refused(tmp_path):
    config = _write_config(tmp_path)
    config.write_text(config.read_text().replace("[train]\n", '[train]\nmodel = "x"\n'))
    with pytest.raises(ConfigError, match=r"\[train\] model: set by `iirg experiment`"):
        _invoke(config, tmp_path / "run")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("experiment_*.toml")), ids=lambda p: p.name)
def test_every_shipped_experiment_config_parses(path):
    """Every table of the file is checked against its dataclass (unknown keys are errors) and builds."""
    import tomllib

    from train.experiment import check_tables

    parser = cli.build_parser()
    document = tomllib.loads(path.read_text())
    classes = {}
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            classes.update(sub.__dict__.get("config_classes", {}))
    assert set(document) <= set(classes), set(document) - set(classes)
    for table in document:
        values = read_table(path, table, classes[table])
        if table == "evaluate":
            values["adapter"] = "adapter"  # set by the experiment per variant
        build_config(classes[table], values, table=table)
    check_tables(path)
    cfg = build_config(ExperimentConfig, read_table(path, "experiment", ExperimentConfig), table="experiment")
    names = [s.name for s in plan(cfg, RunPaths(Path("/tmp/x")), path)]
    assert names[0] == "build" and names[-1].startswith("report:")
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any("Command sequence" in line for line in header)
    assert any(f"iirg experiment --config configs/{path.name}" in line for line in header)


def test_full_finetune_changes_what_train_leaves_and_evaluate_reads(tmp_path):
    """[train] method = "full" leaves a whole model, not an adapter: the stage outputs follow, so a
    finished full training is recognised as done and its evaluation reads the weights it wrote."""
    source = REPO / "configs" / "experiment_cpu_office.toml"
    plans = {}
    for method in ("lora", "full"):
        path = tmp_path / f"{method}.toml"
        head, train = source.read_text().split("[train]\n")
        train = re.sub(r'(?m)^method = "\w+".*\n', "", train, count=1)  # the shipped config's own method
        path.write_text(f'{head}[train]\nmethod = "{method}"\n{train}')
        cfg = build_config(ExperimentConfig, read_table(path, "experiment", ExperimentConfig), table="experiment")
        plans[method] = {s.name: s for s in plan(cfg, RunPaths(tmp_path / "run"), path)}
    for method, weights in (("lora", "adapter_model.safetensors"), ("full", "model.safetensors")):
        train, evaluate = plans[method]["train:sid-nip"], plans[method]["evaluate:sid-nip"]
        assert {p.name for p in evaluate.reads} == {"train_config.json", weights}
        assert {p.name for p in train.outputs} == {"train_config.json",
                                                   "adapter_config.json" if method == "lora" else "config.json"}
