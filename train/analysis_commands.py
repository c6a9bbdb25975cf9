"""`iirg analyze | baseline | report`: memorization segments, baselines and the shared report.

    iirg analyze --run runs/ml-100k                  # label users of both splits, print segments
    iirg baseline markov --run runs/ml-100k          # popularity | markov | cooc | sasrec
    iirg report --run runs/ml-100k [--compare sasrec popularity]

Needs `iirg build` to have written runs/<name>/export/. Segments (test split) and RECOMMENDED edges
go to the run's graph store when it exists (or Neo4j with --neo4j); --no-graph skips that.
"""

from __future__ import annotations

import argparse
import dataclasses

def register(sub, common) -> None:
    """Add analyze, baseline and report."""
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
    p.add_argument("name", choices=["popularity", "markov", "cooc", "sasrec"], help="baseline")
    p.add_argument("--split", choices=["valid", "test"], default="test",
                   help="test: select on valid, then evaluate test; valid: selection only")
    p.add_argument("--k", type=int, default=20, help="length of each ranked list (default 20)")
    p.add_argument("--keep-history", action="store_true",
                   help="allow history items in the lists (datasets with repeat visits, e.g. Yelp)")
    p.add_argument("--no-graph", action="store_true", help="do not write RECOMMENDED edges")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from train.baselines.sasrec import SASRecConfig  # light: torch is imported inside functions
    for f in dataclasses.fields(SASRecConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None,
                       help=f"sasrec: {f.metadata.get('help', '')} (default {f.default})")
    p.set_defaults(handler=_baseline)

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
    if args.name == "sasrec":
        from train.baselines.sasrec import SASRecConfig, run_sasrec
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SASRecConfig)
                     if getattr(args, f.name) is not None}
        cfg = SASRecConfig(**overrides)
        out = run_sasrec(ctx.run, export, cfg, k=args.k, progress=not args.quiet, **common)
        ctx.run.record_config("baseline.sasrec", {**dataclasses.asdict(cfg), "k": args.k, **common,
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


def _report(args: argparse.Namespace, ctx) -> int:
    from train.report import ReportConfig, make_report, print_report

    cfg = ReportConfig(split=args.split, k=args.k, compare=tuple(args.compare) if args.compare else None,
                       n_boot=args.bootstrap, seed=args.seed)
    report = make_report(ctx.run, cfg)
    print_report(report)
    return 0
