"""`iirg experiment`: the paper's table in one command, each stage skipped when it is up to date.

    iirg experiment --config configs/experiment_cpu_sid.toml --run runs/exp-ml-100k
    iirg experiment --config ... --run ... --only build,analyze,baseline   # some stages (name or prefix)
    iirg experiment --config ... --run ... --force train:sid-iirg          # rerun one even if up to date

One TOML file holds every stage's table ([ingest], [build], [sid], [analyze], [baseline], [sasrec],
[tiger], [data], [tiny], [train], [evaluate], [report]) and [experiment], which says what to run
(`ExperimentConfig`). Each stage is the command's own handler, called in-process with that file as
its `--config` and the flags the experiment adds (paths, --tasks, --item-repr, --compare):

    build -> sid -> analyze -> baseline:<name>... -> per item_repr r:
        data:r -> tiny:r (base_model = "tiny") -> per variant v: train:r-v -> evaluate:r-v
    -> report:<r-iirg>_vs_<r-nip> ... -> <run>/report/experiment.md

Identity of a stage = sha256 of its resolved settings (the dataclass defaults <- its TOML tables <-
the flags the experiment adds; paths relative to the run), the identities of the stages it reads
from and the sha256 of the files it reads (the export's manifest.json, sids.parquet, the data
folder's data_config.json, the tiny model's tiny_model.json, the adapter's files). It is recorded in
<run>/experiment.json when the stage finishes. A stage whose identity matches its record and whose
outputs exist is skipped ("skipped: up to date"): an interrupted experiment resumes where it
stopped, and a changed setting reruns its stage and, through the identities, everything downstream.
A training interrupted mid-way (same identity, a checkpoint left) continues with --resume.

Two experiments may share a run folder (say `--only train:sid-nip` and `--only train:sid-iirg`, one per
core): each stage is claimed with a lock (<run>/.experiment-running/<stage>.lock, holding the pid), so
a stage another experiment is running, or one whose input stage is running, is refused; and every
change to experiment.json is a read-modify-write under <run>/.experiment.lock, so neither loses the
other's stages.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Literal

from common.config import config_values, defaults_of, read_table
from common.errors import ConfigError, IirgError
from common.files import file_lock, write_json, write_text
from graph.rundir import RunPaths, git_commit

RECORD_FILE = "experiment.json"
RECORD_LOCK = ".experiment.lock"        # held around every read-modify-write of RECORD_FILE
RUNNING_DIR = ".experiment-running"     # <stage>.lock: flock-ed (and holding the pid) while it runs
# Settings that change how a stage runs, never what it produces: left out of its identity.
NOT_RESULTS = frozenset({"progress", "threads", "data_dir", "cache_dir", "device", "resume",
                         "dataloader_workers", "logging_steps", "verify_checksums"})
# Keys the experiment sets itself (per item_repr and variant): refused in the TOML tables.
SET_BY_EXPERIMENT = {"train": ("model", "data", "out", "tasks"), "data": ("item_repr",),
                     "tiny": ("item_repr",), "evaluate": ("adapter", "no_adapter", "name", "item_repr"),
                     "report": ("compare",)}


class ExperimentError(IirgError):
    """A stage failed or the experiment's settings are inconsistent."""


def variant_tasks(variant: str) -> tuple[str, ...]:
    """`iirg` = the paper's three tasks; otherwise task names joined by '-' (nip, nip-collab, ...)."""
    from train.llm.prompts import DEFAULT_TASKS, TASKS

    if variant == "iirg":
        return tuple(DEFAULT_TASKS)
    tasks = tuple(variant.split("-"))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"variant {variant!r}: unknown task(s) {unknown}; a variant is `iirg` or task "
                          f"names joined by '-' from {', '.join(TASKS)}")
    return tasks


@dataclass
class ExperimentConfig:
    """What `iirg experiment` runs; every stage's own settings are its table of the same file."""

    baselines: tuple[Literal["popularity", "markov", "cooc", "sasrec", "tiger"], ...] = field(
        default=("popularity", "markov", "sasrec", "tiger"), metadata={"help": "baselines to run, in order"})
    sid: bool = field(default=True, metadata={
        "help": "run `iirg sid` (needed by tiger and by item_reprs = sid)"})
    item_reprs: tuple[Literal["title", "sid"], ...] = field(default=("sid",), metadata={
        "help": "items in the LLM data as titles, as SID tokens, or both (one LLM per repr and variant)"})
    variants: tuple[str, ...] = field(default=("nip", "iirg"), metadata={
        "help": "LLM trainings: iirg (nip,collab,semantic) or task names joined by '-', e.g. nip"})
    base_model: str = field(default="tiny", metadata={
        "help": "tiny: build one with `iirg tiny-model` per item_repr ([tiny] table); else a local "
                "folder or Hugging Face id"})
    compare: tuple[str, str] = field(default=("iirg", "nip"), metadata={
        "help": "variants A B of `iirg report --compare llm-<repr>-A llm-<repr>-B`, per item_repr"})
    graph: bool = field(default=True, metadata={
        "help": "write SIDs, segments and RECOMMENDED edges to the run's graph (off: --no-graph)"})

    def __post_init__(self):
        for v in self.variants:
            variant_tasks(v)
        if len(set(self.variants)) != len(self.variants) or len(set(self.item_reprs)) != len(self.item_reprs):
            raise ConfigError("variants and item_reprs must not repeat")
        if not self.sid and ("tiger" in self.baselines or "sid" in self.item_reprs):
            raise ConfigError("tiger and item_reprs = sid need semantic IDs: set sid = true")
        if not self.base_model:
            raise ConfigError("base_model must be `tiny` or a model folder / Hugging Face id")


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One command of the experiment: `iirg <command> --run <run> --config <toml> <argv>`."""

    name: str
    command: str
    argv: list[str]
    outputs: list[Path]
    upstream: list[str] = field(default_factory=list)   # stages whose identities this one includes
    reads: list[Path] = field(default_factory=list)     # files whose sha256 this one includes
    tables: tuple[str, ...] | None = None               # config tables in the identity (None: all)
    clean: Path | None = None                           # removed before a fresh (non-resume) run
    resume_flag: str | None = None                      # continue an interrupted run of the same identity
    resume_from: Path | None = None                     # ... when this exists
    after: Callable[[], None] | None = None             # e.g. keep a copy of the report of one pair


def _split_of(config_path: Path, table: str, cls) -> str:
    return read_table(config_path, table, cls).get("split", "test")


def plan(cfg: ExperimentConfig, run: RunPaths, config_path: Path) -> list[Stage]:
    """The stages in order (see module docstring)."""
    from evaluate.report import ReportConfig
    from train.baselines import BaselineConfig
    from train.llm.evaluation import EvaluateConfig
    from train.llm.finetune import TrainConfig

    manifest = run.export / "manifest.json"
    sids = [run.export / "sids.parquet"] if cfg.sid else []
    no_graph = [] if cfg.graph else ["--no-graph"]
    stages = [Stage("build", "build", ["--no-progress"], [manifest, run.dataset / "dataset.json"],
                    tables=("ingest", "build"))]
    if cfg.sid:
        stages.append(Stage("sid", "sid", ["--no-progress", *no_graph], sids + [run.export / "sid.json"],
                            ["build"], [manifest], tables=("sid",)))
    stages.append(Stage("analyze", "analyze", no_graph, [run.analysis / "segments_test.parquet"],
                        ["build"], [manifest], tables=("analyze",)))
    baseline_split = _split_of(config_path, "baseline", BaselineConfig)
    models = []
    for name in cfg.baselines:
        tiger = name == "tiger"
        stages.append(Stage(
            f"baseline:{name}", "baseline", [name, *no_graph, "--no-progress"],
            [run.model(name) / f"recommendations_{baseline_split}.parquet"],
            ["build", *(["sid"] if tiger else [])], [manifest, *(sids if tiger else [])],
            tables=("baseline", *([name] if name in ("sasrec", "tiger") else [])),
            resume_flag="--resume" if tiger else None, resume_from=run.model(name) / "last.pt"))
        models.append(f"baseline:{name}")
    eval_split = _split_of(config_path, "evaluate", EvaluateConfig)
    # what `iirg train` leaves: a LoRA adapter, or the whole model ([train] method = "full")
    trained_files = TrainConfig(method=read_table(config_path, "train", TrainConfig).get("method", "lora")
                                ).output_files
    for repr_ in cfg.item_reprs:
        data = run.llm / f"data-{repr_}"
        reads = [manifest, *(sids if repr_ == "sid" else [])]
        up = ["build", *(["sid"] if repr_ == "sid" else [])]
        stages.append(Stage(f"data:{repr_}", "data", ["--item-repr", repr_, "--out", str(data)],
                            [data / "data_config.json"], up, reads, tables=("data",)))
        model, model_stage = cfg.base_model, []
        if cfg.base_model == "tiny":
            tiny = run.llm / f"tiny-{repr_}"
            stages.append(Stage(f"tiny:{repr_}", "tiny-model", ["--item-repr", repr_, "--out", str(tiny)],
                                [tiny / "tiny_model.json"], up, reads, tables=("tiny",)))
            model, model_stage = str(tiny), [f"tiny:{repr_}"]
        for variant in cfg.variants:
            label = f"{repr_}-{variant}"
            adapter = run.llm / "adapters" / label
            model_reads = [Path(model) / "tiny_model.json"] if model_stage else []
            stages.append(Stage(
                f"train:{label}", "train",
                ["--model", model, "--data", str(data), "--out", str(adapter),
                 "--tasks", ",".join(variant_tasks(variant)), "--name", label],
                [adapter / "train_config.json", adapter / trained_files[0]],
                [f"data:{repr_}", *model_stage], [data / "data_config.json", *model_reads],
                tables=("train",), clean=adapter, resume_flag="--resume", resume_from=adapter / "checkpoints"))
            stages.append(Stage(
                f"evaluate:{label}", "evaluate", ["--adapter", str(adapter), "--name", f"llm-{label}", *no_graph],
                [run.model(f"llm-{label}") / f"recommendations_{eval_split}.parquet"],
                [f"train:{label}"], [adapter / "train_config.json", adapter / trained_files[1]],
                tables=("evaluate",)))
            models.append(f"evaluate:{label}")
    report_split = _split_of(config_path, "report", ReportConfig)
    for repr_ in cfg.item_reprs:
        a, b = (f"llm-{repr_}-{v}" for v in cfg.compare)
        if not all(v in cfg.variants for v in cfg.compare):
            continue
        pair = report_copy(run, report_split, a, b)
        source = run.report / f"report_{report_split}.json"
        stages.append(Stage(f"report:{a}_vs_{b}", "report", ["--compare", a, b], [pair],
                            ["analyze", *models], tables=("report",),
                            after=lambda source=source, pair=pair: shutil.copyfile(source, pair)))
    return stages


def report_copy(run: RunPaths, split: str, a: str, b: str) -> Path:
    """The report of one compared pair, kept beside report_<split>.json (which the next pair replaces)."""
    return run.report / f"report_{split}_{a}_vs_{b}.json"


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------

def resolved_settings(parser, args, tables: tuple[str, ...] | None) -> dict:
    """table -> the dataclass defaults <- the TOML table <- the flags given, minus NOT_RESULTS."""
    classes = parser.__dict__.get("config_classes", {})
    out = {}
    for table, cls in classes.items():
        if tables is not None and table not in tables:
            continue
        values = {**defaults_of(cls), **config_values(cls, args, table=table)}
        out[table] = {k: v for k, v in sorted(values.items()) if k not in NOT_RESULTS}
    return out


def sha256_file(path: Path) -> str | None:
    """The file's sha256; for the export's manifest.json, of the build's part only (`iirg sid` adds its
    `sids` entry to the manifest: the SIDs count through sids.parquet, and a stage that reads the
    manifest before `iirg sid` ran must keep its identity after)."""
    if not path.exists():
        return None
    if path.name == "manifest.json":
        from evaluate.token_level import SID_STATS_FILE, SIDS_FILE

        manifest = json.loads(path.read_text())
        manifest.pop("sids", None)
        manifest["files"] = sorted(set(manifest.get("files", [])) - {SIDS_FILE, SID_STATS_FILE})
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identity(stage: Stage, settings: dict, upstream: dict[str, str | None], run: RunPaths) -> str:
    """sha256 of the stage's settings, its upstream identities and the files it reads (run-relative)."""
    root = str(run.root.resolve())

    def rel(path: Path) -> str:
        return str(path.resolve()).replace(root, "<run>")

    document = {"stage": stage.name, "settings": settings, "upstream": upstream,
                "reads": {rel(p): sha256_file(p) for p in stage.reads}}
    text = json.dumps(document, sort_keys=True, default=str).replace(root, "<run>")
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def load_record(run: RunPaths) -> dict:
    path = run.root / RECORD_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    record.setdefault("stages", {})
    return record


def update_record(run: RunPaths, change: Callable[[dict], None]) -> dict:
    """Re-read experiment.json under its lock, apply `change`, write it back; returns the new record.

    Never write a record read earlier: another experiment on this run may have finished stages since.
    """
    run.root.mkdir(parents=True, exist_ok=True)
    with file_lock(run.root / RECORD_LOCK):
        record = load_record(run)
        change(record)
        write_json(run.root / RECORD_FILE, record)
    return record


def _stage_lock_path(run: RunPaths, name: str) -> Path:
    return run.root / RUNNING_DIR / (name.replace(":", "-").replace("/", "-") + ".lock")


def _running_pid(handle) -> str:
    handle.seek(0)
    return handle.read().strip() or "?"


@contextmanager
def claim_stage(run: RunPaths, name: str) -> Iterator[None]:
    """Hold stage `name` of this run for the block, or raise ExperimentError if another process does.

    An fcntl.flock, so the claim ends with its holder, even killed: a resumed experiment never sees a
    stale claim.
    """
    path = _stage_lock_path(run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentError(f"stage {name} is running in another `iirg experiment` on {run.root} "
                                  f"(pid {_running_pid(handle)}); wait for it, or leave it out with --only") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def running_elsewhere(run: RunPaths, name: str) -> str | None:
    """The pid of the process running stage `name` of this run now, or None."""
    path = _stage_lock_path(run, name)
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _running_pid(handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def check_tables(config_path: Path) -> None:
    """Keys the experiment sets per repr and variant must not be in the TOML (they would be overridden)."""
    import tomllib

    document = tomllib.loads(Path(config_path).read_text())
    for table, keys in SET_BY_EXPERIMENT.items():
        clash = sorted(set(document.get(table, {})) & set(keys))
        if clash:
            raise ConfigError(f"{config_path}: [{table}] {', '.join(clash)}: set by `iirg experiment` per "
                              f"item_repr and variant; use [experiment] (item_reprs, variants, base_model, "
                              f"compare)")


def _has_checkpoint(path: Path | None) -> bool:
    """TIGER's last.pt, or a Trainer checkpoint-<step> folder in the adapter's checkpoints/."""
    if path is None or not path.exists():
        return False
    return path.is_file() or any(path.glob("checkpoint-*"))


def _selected(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ":") for p in patterns)


def run_experiment(cfg: ExperimentConfig, config_path: Path, run: RunPaths, commands: dict, ctx, *,
                   only: tuple[str, ...] = (), force: tuple[str, ...] = (),
                   on_stage_end: Callable[[str, str], None] | None = None, console=None) -> dict:
    """Run the plan's stages in order; returns {stage: {"status", "seconds"}} of this invocation.

    `commands` maps subcommand names to their argparse parsers (each has the handler as default);
    `on_stage_end(name, status)` is called after each stage (tests interrupt from it).
    """
    from rich.console import Console

    console = console or Console()
    check_tables(config_path)
    stages = plan(cfg, run, config_path)
    names = [s.name for s in stages]
    for pattern in (*only, *force):
        if not any(_selected(n, (pattern,)) for n in names):
            raise ExperimentError(f"no stage {pattern!r}; stages: {', '.join(names)}")
    update_record(run, lambda r: r.update(config=str(config_path), experiment=dataclasses.asdict(cfg)))
    this_run: dict[str, dict] = {}
    identities: dict[str, str | None] = {}
    for i, stage in enumerate(stages, 1):
        done = load_record(run)["stages"]  # fresh: another experiment on this run may have finished some
        parser = commands[stage.command]
        argv = ["--run", str(run.root), "--config", str(config_path), *stage.argv]
        args = parser.parse_args(argv)
        settings = resolved_settings(parser, args, stage.tables)
        upstream = {u: identities.get(u, done.get(u, {}).get("identity")) for u in stage.upstream}
        ident = identity(stage, settings, upstream, run)
        identities[stage.name] = ident
        title = f"[bold][{i}/{len(stages)}] {stage.name}[/]"
        if only and not _selected(stage.name, only):
            this_run[stage.name] = {"status": "not selected", "seconds": None}
            identities[stage.name] = done.get(stage.name, {}).get("identity")
            continue
        for u in stage.upstream:
            pid = running_elsewhere(run, u)
            if pid is not None:
                raise ExperimentError(f"stage {stage.name} reads {u}, which another `iirg experiment` on "
                                      f"{run.root} is running (pid {pid}); wait for it to finish")
        with claim_stage(run, stage.name):
            previous = load_record(run)["stages"].get(stage.name, {})  # under the claim: final
            up_to_date = previous.get("identity") == ident and all(p.exists() for p in stage.outputs)
            if up_to_date and not _selected(stage.name, force):
                console.print(f"{title}  [green]skipped: up to date[/] ({previous.get('seconds', 0):.1f} s when run)")
                this_run[stage.name] = {"status": "skipped", "seconds": previous.get("seconds")}
            else:
                resume, seconds = _run_stage(stage, parser, argv, args, ident, previous, force, run, ctx,
                                             title, console)
                this_run[stage.name] = {"status": "resumed" if resume else "ran", "seconds": seconds}
        if on_stage_end:  # outside the claim (a hook may start another experiment on this run)
            on_stage_end(stage.name, this_run[stage.name]["status"])
    update_record(run, lambda r: r.__setitem__("last_invocation", this_run))
    return this_run


def _run_stage(stage: Stage, parser, argv: list[str], args, ident: str, previous: dict,
               force: tuple[str, ...], run: RunPaths, ctx, title: str, console) -> tuple[bool, float]:
    """Run one claimed stage (resuming an interrupted training) and record it; (resumed?, seconds)."""

    def set_stage(entry: dict) -> None:
        update_record(run, lambda r: r["stages"].__setitem__(stage.name, entry))

    resume = (stage.resume_flag and previous.get("started_identity") == ident
              and _has_checkpoint(stage.resume_from) and not _selected(stage.name, force))
    if resume:
        args = parser.parse_args([*argv, stage.resume_flag])
    elif stage.clean is not None and stage.clean.exists():
        shutil.rmtree(stage.clean)  # a stale adapter from other settings: train refuses to overwrite it
    console.print(f"{title}  [cyan]running[/]{' (resuming)' if resume else ''}: iirg {stage.command} "
                  f"{' '.join(stage.argv)}".replace(str(run.root), "<run>"))
    set_stage({**previous, "started_identity": ident,
               "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    start = time.perf_counter()
    code = args.handler(args, ctx)
    if code:
        raise ExperimentError(f"stage {stage.name} (iirg {stage.command}) exited with {code}")
    if stage.after:
        stage.after()
    seconds = round(time.perf_counter() - start, 2)
    missing = [str(p) for p in stage.outputs if not p.exists()]
    if missing:
        raise ExperimentError(f"stage {stage.name} finished without writing {', '.join(missing)}")
    set_stage({"identity": ident, "started_identity": ident, "seconds": seconds,
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": f"iirg {stage.command} {' '.join(stage.argv)}".replace(str(run.root), "<run>")})
    console.print(f"{title}  [green]done[/] in {seconds:.1f} s")
    return bool(resume), seconds


# --------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _ci(block: dict) -> str:
    low, high = block["delta_ci"]
    return f"{block['delta']:+.4f} [{low:+.4f}, {high:+.4f}]"


def write_summary(cfg: ExperimentConfig, config_path: Path, run: RunPaths, this_run: dict) -> Path:
    """<run>/report/experiment.md from the report files, the paired CIs and the stage times."""
    from evaluate.report import ReportConfig, one_hop_vs_rest
    from common.config import build_config
    from evaluate.segments import SEGMENTS

    report_cfg = build_config(ReportConfig, read_table(config_path, "report", ReportConfig), table="report")
    split, k = report_cfg.split, report_cfg.k
    record = load_record(run)
    lines = [f"# Experiment `{config_path.name}`", "",
             f"Run `{run.root}`, split `{split}`, git commit `{git_commit() or '-'}`, written "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}. Every number is re-scored by "
             f"`iirg report` from the saved lists (evaluate/metrics.py).", ""]
    reports = []
    for repr_ in cfg.item_reprs:
        a, b = (f"llm-{repr_}-{v}" for v in cfg.compare)
        path = report_copy(run, split, a, b)
        if path.exists():
            reports.append((a, b, json.loads(path.read_text())))
    if reports:
        report = reports[-1][2]
        models, metrics = report["models"], report["metrics"]
        lines += [f"## Recall@{k} / NDCG@{k} per memorization segment", "",
                  "Users per segment: " + ", ".join(f"{s} {n}" for s, n in report["segment_counts"].items()), ""]
        rows = []
        for m in models:
            res = metrics[m]
            cells = [f"{res['segments'][s][f'recall@{k}']:.4f} / {res['segments'][s][f'ndcg@{k}']:.4f}"
                     for s in SEGMENTS]
            rows.append([m, *cells, f"{res['overall'][f'recall@{k}']:.4f} / {res['overall'][f'ndcg@{k}']:.4f}"])
        lines += [_table(["model", *SEGMENTS, "all"], rows), ""]
        lines += [f"## IIRG vs NIP: paired bootstrap 95% CIs (A - B, {report_cfg.n_boot} resamples)", ""]
        rows = []
        for a, b, _ in reports:
            groups = one_hop_vs_rest(run, a, b, report_cfg)
            for metric, res in groups.items():
                rows.append([f"{a} - {b}", metric, _ci(res), _ci(res["segments"]["one_hop"]),
                             _ci(res["segments"]["rest"]), res["segments"]["one_hop"]["n_users"],
                             res["segments"]["rest"]["n_users"]])
        lines += [_table(["pair", "metric", "overall", "one_hop", "rest (not one_hop)", "n one_hop", "n rest"],
                         rows), "",
                  "Per-segment contributions (all six segments): `decomposition_" + split + ".csv` and the "
                  "decomposition plots below.", ""]
        lines += [f"## Memorization (share of top-{k} slots that are one-hop successors of the last item)", ""]
        rows = [[m, metrics[m]["memorization_rate"][f"@{k}"], metrics[m]["one_hop_hits"][f"@{k}"]["share_of_hits"],
                 metrics[m]["groups"]["covered"][f"recall@{k}"], metrics[m]["groups"]["uncovered"][f"recall@{k}"]]
                for m in models]
        columns = ["model", f"memorization@{k}", "one-hop share of hits", f"covered recall@{k}",
                   f"uncovered recall@{k}"]
        lines += [_table(columns, rows), ""]
        side = [r for r in rows if r[0].startswith("llm-") or r[0] == "tiger"]
        if any(r[0] == "tiger" for r in side):
            lines += ["### LLM vs TIGER (both generate semantic IDs or titles; same columns)", "",
                      _table(columns, side), ""]
        if report.get("warnings"):
            lines += ["## Warnings", "", *[f"- {w}" for w in report["warnings"]], ""]
        plots = sorted(p for p in report.get("files", []) if p.endswith(".png"))
        plots += [p.name for p in sorted(run.report.glob(f"decomposition_*_{split}.png")) if p.name not in plots]
        lines += ["## Plots", "", *[f"- [{p}]({p})" for p in plots], ""]
    else:
        # The report stage writes report_copy; it runs once both compared LLM variants are evaluated.
        expected = [report_copy(run, split, *(f"llm-{r}-{v}" for v in cfg.compare)).name for r in cfg.item_reprs]
        lines += [f"No report yet: the report stage has not written {', '.join(expected) or 'anything'} "
                  f"(it runs after both LLM variants of `compare` are evaluated; `--only report` runs it alone).", ""]
    lines += ["## Wall time per stage", "", _table(
        ["stage", "this invocation", "seconds (last run)", "command"],
        [[name, info["status"], record["stages"].get(name, {}).get("seconds"),
          f"`{record['stages'].get(name, {}).get('command', '')}`"] for name, info in this_run.items()]), ""]
    total = sum(record["stages"].get(n, {}).get("seconds") or 0 for n in this_run)
    lines += [f"Total of the stages' last runs: {total:.1f} s ({total / 3600:.2f} h).", ""]
    path = run.report / "experiment.md"
    write_text(path, "\n".join(lines))
    return path

