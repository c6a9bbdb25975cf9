"""`iirg analyze | sid | baseline | ensemble | report`: memorization segments, baselines and the shared report.

    iirg analyze --run runs/ml-100k                  # label users of both splits, print segments
    iirg sid --run runs/ml-100k                      # semantic IDs (needed by tiger)
    iirg baseline markov --run runs/ml-100k          # popularity | markov | cooc | sasrec | tiger
    iirg ensemble --run runs/ml-100k --covered markov --uncovered tiger
    iirg report --run runs/ml-100k [--compare sasrec popularity]

Needs `iirg build` to have written runs/<name>/export/. Segments (test split) and RECOMMENDED edges
go to the run's graph store when it exists (or Neo4j with --neo4j); --no-graph skips that.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

def register(sub, common) -> None:
    """Add analyze, baseline, sid, ensemble and report."""
    p = sub.add_parser("analyze", parents=[common["run"], common["store"]],
                       help="label every evaluated user with its memorization segment",
                       description="Label the users of both splits (one_hop, two_hop, three_hop, "
                                   "semantic_only, beyond, unreachable), save analysis/, write the "
                                   "test labels onto the User nodes and print the segment table.")
    p.add_argument("--semantic-k", type=int, default=None,
                   help="use the top-k SIMILAR neighbours only (default: all exported)")
    p.add_argument("--no-graph", action="store_true", help="do not write labels to the graph")
    p.set_defaults(handler=_analyze)

    p = sub.add_parser("baseline", parents=[common["run"], common["store"]],
                       help="train/tune a non-LLM baseline and evaluate it",
                       description="Tune on valid Recall@10, then rank the test split once and "
                                   "record it with the shared evaluator (models/<name>/).")
    p.add_argument("name", choices=["popularity", "markov", "cooc", "sasrec", "tiger"], help="baseline")
    p.add_argument("--split", choices=["valid", "test"], default="test",
                   help="test: select on valid, then evaluate test; valid: selection only")
    p.add_argument("--k", type=int, default=20, help="length of each ranked list (default 20)")
    p.add_argument("--keep-history", action="store_true",
                   help="allow history items in the lists (datasets with repeat visits, e.g. Yelp)")
    p.add_argument("--no-graph", action="store_true", help="do not write RECOMMENDED edges")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="tiger: continue from models/tiger/last.pt")
    _add_config_flags(p, _trained_baseline_configs())
    p.set_defaults(handler=_baseline)

    p = sub.add_parser("sid", parents=[common["run"], common["store"]],
                       help="semantic IDs of every item (residual k-means or RQ-VAE on its embedding)",
                       description="Quantize the item embeddings of the graph into unique code tuples "
                                   "(export/sids.parquet, sid.json; `sid` on the Item nodes).")
    p.add_argument("--no-graph", action="store_true", help="do not write the SIDs to the Item nodes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from train.sid import SIDConfig
    _add_config_flags(p, {"sid": SIDConfig})
    p.set_defaults(handler=_sid)

    p = sub.add_parser("ensemble", parents=[common["run"], common["store"]],
                       help="memorization-aware ensemble of two recorded models",
                       description="Routes each user to --covered or --uncovered by the successor mass "
                                   "of its last history item in the training data (never the target); "
                                   "the threshold (or tau) is chosen on valid Recall@10.")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--no-graph", action="store_true", help="do not write RECOMMENDED edges")
    from train.ensemble import EnsembleConfig
    _add_config_flags(p, {"ensemble": EnsembleConfig})
    p.set_defaults(handler=_ensemble)

    p = sub.add_parser("report", parents=[common["run"]],
                       help="per-segment tables, memorization and gain decomposition of all models",
                       description="Tables for every model in models/ (JSON, CSV, PNG in report/).")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--k", type=int, default=10, help="cut-off shown in the tables (default 10)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="decompose A - B (default: every model against popularity)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(handler=_report)


def _trained_baseline_configs() -> dict:
    # light imports: torch and transformers are imported inside the training functions
    from train.baselines.sasrec import SASRecConfig
    from train.baselines.tiger import TIGERConfig
    return {"sasrec": SASRecConfig, "tiger": TIGERConfig}


def _add_config_flags(parser: argparse.ArgumentParser, configs: dict) -> None:
    """One --flag per config field (dataclass -> flags); a field several models share is one flag."""
    owners: dict[str, list] = {}
    choices: dict[str, tuple] = {}
    for model, cls in configs.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append((model, f))
            if typing.get_origin(hints[f.name]) is typing.Literal:
                choices[f.name] = typing.get_args(hints[f.name])
    for name, fs in owners.items():
        kind = type(fs[0][1].default)
        helps = "; ".join(f"{m}: {f.metadata.get('help', '')} (default {f.default})" for m, f in fs)
        if len(configs) == 1:
            helps = f"{fs[0][1].metadata.get('help', '')} (default {fs[0][1].default})"
        # argparse %-formats help strings: a literal "10%" would crash `--help`.
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, choices=choices.get(name),
                            help=helps.replace("%", "%%"))


def _config_from_flags(cls, args: argparse.Namespace):
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if getattr(args, f.name, None) is not None}
    try:
        return cls(**overrides)
    except ValueError as e:
        from train.evaluate import EvaluationError
        raise EvaluationError(str(e)) from e


def _graph_store(args, ctx):
    """The store to write to, or None (asked not to, or no embedded database in this run)."""
    if args.no_graph or ctx.store is None:
        return None
    if ctx.store.backend == "embedded" and not ctx.store.path.exists():
        print(f"note: no graph store at {ctx.store.path}; results are saved in the run folder only")
        return None
    return ctx.store


def _export(ctx):
    from graph.export import load_export
    return load_export(ctx.run.export)


def _analyze(args: argparse.Namespace, ctx) -> int:
    from train.report import make_console, table_to_rich
    from train.segments import SegmentConfig, analyze, segment_table

    export = _export(ctx)
    store = _graph_store(args, ctx)
    frames = analyze(ctx.run, export, config=SegmentConfig(semantic_k=args.semantic_k), store=store)
    console = make_console()
    for split, frame in frames.items():
        console.print(table_to_rich(segment_table(frame), title=f"{export.manifest.get('dataset')} "
                                    f"{split}: users per memorization segment"))
    where = f" and the graph ({store.describe()})" if store else ""
    console.print(f"saved {ctx.run.analysis}/segments_{{valid,test}}.parquet{where}")
    return 0


def _baseline(args: argparse.Namespace, ctx) -> int:
    from train.baselines import select_and_record
    from train.report import print_model_summary

    export = _export(ctx)
    store = _graph_store(args, ctx)
    common = dict(split=args.split, keep_history=args.keep_history, store=store)
    if args.name in ("sasrec", "tiger"):
        cfg = _config_from_flags(_trained_baseline_configs()[args.name], args)
        if args.name == "sasrec":
            from train.baselines.sasrec import run_sasrec
            out = run_sasrec(ctx.run, export, cfg, k=args.k, progress=not args.quiet, **common)
        else:
            from train.baselines.tiger import run_tiger
            out = run_tiger(ctx.run, export, cfg, k=args.k, progress=not args.quiet,
                            resume=args.resume, **common)
        ctx.run.record_config(f"baseline.{args.name}", {**dataclasses.asdict(cfg), "k": args.k, **common,
                                                         "store": store.describe() if store else None})
    else:
        from train.baselines import cooccurrence, markov, popularity
        module = {"popularity": popularity, "markov": markov, "cooc": cooccurrence}[args.name]
        out = select_and_record(
            ctx.run, args.name, export, module.candidates(),
            lambda cases, params: module.recommend(export, cases, k=args.k,
                                                   keep_history=args.keep_history, **params),
            info={"k": args.k}, **common)
        ctx.run.record_config(f"baseline.{args.name}", {"params": out["best"], "k": args.k, **common,
                                                         "store": store.describe() if store else None})
    print_model_summary(out.get("test") or out["valid"])
    return 0


def _sid(args: argparse.Namespace, ctx) -> int:
    import pandas as pd

    from train.report import make_console, table_to_rich
    from train.sid import SIDConfig, make_sids

    cfg = _config_from_flags(SIDConfig, args)
    export = _export(ctx)
    graph = _graph_store(args, ctx)
    stats = make_sids(ctx.run, export, cfg, store=ctx.store, graph_store=graph, progress=not args.quiet)
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
    from train.ensemble import EnsembleConfig, run_ensemble
    from train.report import print_model_summary

    cfg = _config_from_flags(EnsembleConfig, args)
    store = _graph_store(args, ctx)
    out = run_ensemble(ctx.run, _export(ctx), cfg, split=args.split, store=store)
    ctx.run.record_config(f"ensemble.{cfg.name}", {**dataclasses.asdict(cfg), "chosen": out["best"],
                                                    "split": args.split})
    print_model_summary(out.get("test") or out["valid"])
    return 0


def _report(args: argparse.Namespace, ctx) -> int:
    from train.report import ReportConfig, make_report, print_report

    cfg = ReportConfig(split=args.split, k=args.k, compare=tuple(args.compare) if args.compare else None,
                       n_boot=args.bootstrap, seed=args.seed)
    report = make_report(ctx.run, cfg)
    print_report(report)
    return 0
