"""`iirg analyze | report`: memorization segments of every evaluated user, and the report that
re-scores every recorded model (registered by cli.py).

    iirg analyze --run runs/ml-100k                  # label users of both splits, print segments
    iirg report --run runs/ml-100k [--compare sasrec popularity]

Needs `iirg build` to have written runs/<name>/export/. The test split's segments go to the run's
graph store when it exists (or Neo4j with --neo4j); --no-graph skips that. Stores are opened here, in
the command layer, and handed to the evaluate modules; the models' commands (train.commands) use
`graph_store` and `write_model_to_graph` for their RECOMMENDED edges.
"""

from __future__ import annotations

import argparse

from common.config import add_config_flags, config_from_args
from common.errors import IirgError


def register(sub, common) -> None:
    """Add analyze and report."""
    from evaluate.report import ReportConfig
    from evaluate.segments import SegmentConfig

    p = sub.add_parser("analyze", parents=[common["run"], common["store"]],
                       help="label every evaluated user with its memorization segment",
                       description="Label the users of both splits (one_hop, two_hop, three_hop, "
                                   "semantic_only, beyond, unreachable), save analysis/, write the "
                                   "test labels onto the User nodes and print the segment table.")
    add_config_flags(p, SegmentConfig, table="analyze")
    p.add_argument("--no-graph", action="store_true", help="do not write labels to the graph")
    p.set_defaults(handler=_analyze)

    p = sub.add_parser("report", parents=[common["run"]],
                       help="per-segment tables, memorization and gain decomposition of all models",
                       description="Tables for every model in models/ (JSON, CSV, PNG in report/).")
    add_config_flags(p, ReportConfig, table="report")
    p.set_defaults(handler=_report)


# --------------------------------------------------------------------------------------------
# The graph store, for every command that writes results to it
# --------------------------------------------------------------------------------------------
def graph_store(args: argparse.Namespace, ctx):
    """The store to write to, or None (asked not to, or no embedded database in this run)."""
    if getattr(args, "no_graph", False) or ctx.store is None:
        return None
    if ctx.store.backend == "embedded" and not ctx.store.path.exists():
        print(f"note: no graph store at {ctx.store.path}; results are saved in the run folder only")
        return None
    return ctx.store


def write_model_to_graph(ctx, store, model: str, split: str) -> int:
    """Replace `model`'s RECOMMENDED edges of `split` with the lists `record_model` saved."""
    from evaluate.errors import EvaluationError
    from evaluate.record import recorded_lists, write_recommendations
    from graph.store import open_store

    frame = recorded_lists(ctx.run, model, split)
    try:
        with ctx.run.lock(on_wait=print), open_store(store) as graph:  # no build swaps the store meanwhile
            return write_recommendations(graph, model, split, frame)
    except IirgError as e:  # the results are saved: say so rather than lose them in a traceback
        raise EvaluationError(f"{model} ({split}) is evaluated and saved in {ctx.run.model(model)}, but "
                              f"writing its RECOMMENDED edges to {store.describe()} failed: {e}") from e


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------
def _analyze(args: argparse.Namespace, ctx) -> int:
    from evaluate.display import make_console, table_to_rich
    from evaluate.segments import SegmentConfig, analyze, segment_table, write_segments
    from graph.export import load_export
    from graph.store import open_store

    config = config_from_args(SegmentConfig, args, table="analyze")
    export = load_export(ctx.run.export)
    store = graph_store(args, ctx)
    frames = analyze(ctx.run, export, config=config)
    if store is not None:
        with ctx.run.lock(on_wait=print), open_store(store) as graph:  # no build swaps the store meanwhile
            write_segments(graph, frames["test"])
    console = make_console()
    for split, frame in frames.items():
        console.print(table_to_rich(segment_table(frame), title=f"{export.manifest.get('dataset')} "
                                    f"{split}: users per memorization segment"))
    where = f" and the graph ({store.describe()})" if store else ""
    console.print(f"saved {ctx.run.analysis}/segments_{{valid,test}}.parquet{where}")
    return 0


def _report(args: argparse.Namespace, ctx) -> int:
    from evaluate.display import print_report
    from evaluate.report import ReportConfig, make_report

    report = make_report(ctx.run, config_from_args(ReportConfig, args, table="report"))
    print_report(report)
    return 0
