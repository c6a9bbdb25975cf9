"""`iirg baseline | sid | ensemble` and the LLM commands (`train.llm.commands`), registered by cli.py.

    iirg sid --run runs/ml-100k                      # semantic IDs (needed by tiger)
    iirg baseline markov --run runs/ml-100k          # popularity | markov | cooc | sasrec | tiger
    iirg ensemble --run runs/ml-100k --covered markov --uncovered tiger

Models hand their ranked lists to `evaluate.record.record_model`; `iirg analyze` and `iirg report`
are evaluate's commands. Needs `iirg build` to have written runs/<name>/export/. RECOMMENDED edges
(and the SIDs) go to the run's graph store when it exists (or Neo4j with --neo4j); --no-graph skips
that. Stores are opened here, never in the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib

from common.config import add_config_flags, config_from_args, flags_given
from common.errors import ConfigError
from evaluate.commands import graph_store, write_model_to_graph
from train.llm import commands as llm_commands

# Baselines without training: name -> module with candidates() and recommend(export, cases, ...).
BASELINES = {"popularity": "train.baselines.popularity", "markov": "train.baselines.markov",
             "cooc": "train.baselines.cooccurrence"}
TRAINED_BASELINES = ("sasrec", "tiger")


def _trained_baseline_configs() -> dict:
    # light imports: torch and transformers are imported inside the training functions
    from train.baselines.sasrec import SASRecConfig
    from train.baselines.tiger import TIGERConfig
    return {"sasrec": SASRecConfig, "tiger": TIGERConfig}


def register(sub, common) -> None:
    """Add baseline, sid and ensemble, then the LLM commands."""
    from train.baselines import BaselineConfig
    from train.ensemble import EnsembleConfig
    from train.sid import SIDConfig

    p = sub.add_parser("baseline", parents=[common["run"], common["store"]],
                       help="train/tune a non-LLM baseline and evaluate it",
                       description="Tune on valid Recall@10, then rank the test split once and "
                                   "record it with the shared evaluator (models/<name>/).")
    p.add_argument("name", choices=[*BASELINES, *TRAINED_BASELINES], help="baseline")
    add_config_flags(p, BaselineConfig, table="baseline")
    for name, cls in _trained_baseline_configs().items():
        add_config_flags(p, cls, table=name, title="settings of sasrec ([sasrec]) and tiger ([tiger])")
    p.add_argument("--no-graph", action="store_true", help="do not write RECOMMENDED edges")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="tiger: continue from models/tiger/last.pt")
    p.set_defaults(handler=_baseline)

    p = sub.add_parser("sid", parents=[common["run"], common["store"]],
                       help="semantic IDs of every item (residual k-means or RQ-VAE on its embedding)",
                       description="Quantize the item embeddings of the graph into unique code tuples "
                                   "(export/sids.parquet, sid.json; `sid` on the Item nodes).")
    add_config_flags(p, SIDConfig, table="sid")
    p.add_argument("--no-graph", action="store_true", help="do not write the SIDs to the Item nodes")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=_sid)

    p = sub.add_parser("ensemble", parents=[common["run"], common["store"]],
                       help="memorization-aware ensemble of two recorded models",
                       description="Routes each user to --covered or --uncovered by the successor mass "
                                   "of its last history item in the training data (never the target); "
                                   "the threshold (or tau) is chosen on valid Recall@10.")
    add_config_flags(p, EnsembleConfig, table="ensemble")
    p.add_argument("--no-graph", action="store_true", help="do not write RECOMMENDED edges")
    p.set_defaults(handler=_ensemble)

    llm_commands.register(sub, common)
    _register_experiment(sub, common)


def _register_experiment(sub, common) -> None:
    from train.experiment import ExperimentConfig

    p = sub.add_parser("experiment", parents=[common["run"], common["store"]],
                       help="the paper's table in one command: build .. baselines .. LLMs .. report",
                       description=importlib.import_module("train.experiment").__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p, ExperimentConfig, table="experiment")
    p.add_argument("--only", type=lambda text: tuple(t for t in text.split(",") if t), default=(),
                   metavar="STAGE,...", help="run only these stages (a name such as train:sid-nip, or a "
                                             "prefix such as baseline); the others are left as they are")
    p.add_argument("--force", type=lambda text: tuple(t for t in text.split(",") if t), default=(),
                   metavar="STAGE,...", help="rerun these stages even when up to date")
    # every subcommand's parser, filled by the time a handler runs (the experiment calls their handlers)
    p.set_defaults(handler=_experiment, commands=sub.choices)


def _experiment(args: argparse.Namespace, ctx) -> int:
    from pathlib import Path

    from train.experiment import ExperimentConfig, run_experiment, write_summary

    if not args.config:
        raise ConfigError("--config is required: the experiment's TOML file (e.g. configs/experiment_cpu_sid.toml)")
    cfg = config_from_args(ExperimentConfig, args, table="experiment")
    config_path = Path(args.config).resolve()
    this_run = run_experiment(cfg, config_path, ctx.run, args.commands, ctx, only=args.only, force=args.force)
    path = write_summary(cfg, config_path, ctx.run, this_run)
    print(f"wrote {path}")
    return 0


def _export(ctx):
    from graph.export import load_export
    return load_export(ctx.run.export)


def _baseline(args: argparse.Namespace, ctx) -> int:
    from evaluate.display import print_model_summary
    from train.baselines import BaselineConfig, select_and_record

    settings = config_from_args(BaselineConfig, args, table="baseline")
    trained = _trained_baseline_configs()
    own = set(flags_given(args, trained[args.name])) if args.name in trained else set()
    foreign = {flag for cls in trained.values() for flag in flags_given(args, cls)} - own
    if foreign:
        raise ConfigError(f"{', '.join(sorted(foreign))}: not a setting of baseline {args.name}")
    export = _export(ctx)
    store = graph_store(args, ctx)
    common = dict(split=settings.split, keep_history=settings.keep_history)
    if args.name in trained:
        cfg = config_from_args(trained[args.name], args, table=args.name)
        if args.name == "sasrec":
            from train.baselines.sasrec import run_sasrec
            out = run_sasrec(ctx.run, export, cfg, k=settings.k, progress=args.progress, **common)
        else:
            from train.baselines.tiger import run_tiger
            out = run_tiger(ctx.run, export, cfg, k=settings.k, progress=args.progress,
                            resume=args.resume, **common)
        record = dataclasses.asdict(cfg)
    else:
        module = importlib.import_module(BASELINES[args.name])
        out = select_and_record(
            ctx.run, args.name, export, module.candidates(),
            lambda cases, params: module.recommend(export, cases, k=settings.k,
                                                   keep_history=settings.keep_history, **params),
            info={"k": settings.k}, **common)
        record = {"params": out["best"]}
    if store is not None:
        write_model_to_graph(ctx, store, args.name, settings.split)
    ctx.run.record_config(f"baseline.{args.name}", {**record, "k": settings.k, **common,
                                                     "store": store.describe() if store else None})
    print_model_summary(out.get("test") or out["valid"])
    return 0


def _sid(args: argparse.Namespace, ctx) -> int:
    import pandas as pd

    from evaluate.display import make_console, table_to_rich
    from graph.store import open_store
    from train.sid import SIDConfig, SIDError, make_sids, read_embeddings, save_sids, write_sids_to_graph

    cfg = config_from_args(SIDConfig, args, table="sid")
    export = _export(ctx)
    graph = graph_store(args, ctx)
    if ctx.store is None:
        raise SIDError("semantic IDs need the run's graph (item embeddings live on the Item nodes)")
    with open_store(ctx.store, read_only=True) as store:
        embeddings = read_embeddings(store, export.items["item_id"].astype(str).to_numpy())
    frame, stats = make_sids(export, cfg, embeddings, progress=args.progress)
    with ctx.run.lock(on_wait=print):  # the export and the store belong to the run's last build
        save_sids(ctx.run.export, frame, stats)
        if graph is not None:
            with open_store(graph) as store:
                write_sids_to_graph(store, frame)
    ctx.run.record_config("sid", dataclasses.asdict(cfg))
    console = make_console()
    usage = pd.DataFrame(stats["usage"])
    console.print(table_to_rich(usage, title=f"{export.manifest.get('dataset')}: codebook use per level "
                                             f"({stats['method']}, {stats['seconds']} s)"))
    console.print(f"collisions before disambiguation: {stats['colliding_items']} of {stats['n_items']} "
                  f"items ({stats['collision_rate']:.2%}), at most {stats['max_items_per_tuple']} per "
                  f"tuple; every item now has a unique {stats['n_codes']}-code SID")
    where = f" and the Item nodes ({graph.describe()})" if graph else ""
    console.print(f"saved {ctx.run.export}/sids.parquet, sid.json{where}")
    return 0


def _ensemble(args: argparse.Namespace, ctx) -> int:
    from evaluate.display import print_model_summary
    from train.ensemble import EnsembleConfig, run_ensemble

    cfg = config_from_args(EnsembleConfig, args, table="ensemble")
    store = graph_store(args, ctx)
    out = run_ensemble(ctx.run, _export(ctx), cfg)
    if store is not None:
        write_model_to_graph(ctx, store, cfg.name, cfg.split)
    ctx.run.record_config(f"ensemble.{cfg.name}", {**cfg.combination(), "chosen": out["best"],
                                                    "split": cfg.split})
    print_model_summary(out.get("test") or out["valid"])
    return 0
