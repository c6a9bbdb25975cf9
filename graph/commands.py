"""`iirg build | export | cypher`: the graph stage's subcommands (registered by cli.py).

    iirg build --dataset ml-100k --run runs/ml-100k            # ingest -> relations -> export
    iirg build --run runs/ml-100k --include-valid              # rebuild from the run's dataset
    iirg build --run runs/ml-100k --config build.toml          # settings from [ingest] and [build]
    iirg export --run runs/ml-100k                              # re-export from the store
    iirg cypher --run runs/ml-100k "MATCH (i:Item) RETURN i.title LIMIT 5" --format csv
"""

from __future__ import annotations

import json
import sys
import time

from common.config import add_config_flags, config_from_args, config_values
from graph.config import GraphConfig
from graph.errors import GraphError
from graph.relations import RELATIONS, enabled_relations
from ingest.commands import add_arguments as add_ingest_arguments


def register(sub, common) -> None:
    build = sub.add_parser(
        "build", parents=[common["run"], common["store"]],
        help="ingest a dataset, build NEXT/COLLAB/SIMILAR relations with Cypher, export them",
        description="Ingest -> relations -> export into the run folder. Without --dataset, rebuilds "
                    "from the dataset already ingested in the run folder.")
    add_ingest_arguments(build)
    add_config_flags(build, GraphConfig, table="build")
    build.add_argument("--no-wait", action="store_true",
                       help="refuse (exit 2) instead of waiting when another build holds the run folder")
    build.set_defaults(handler=run_build)

    export = sub.add_parser("export", parents=[common["run"], common["store"]],
                            help="write the graph's relations and the dataset to <run>/export")
    export.set_defaults(handler=run_export)

    cypher = sub.add_parser(
        "cypher", parents=[common["run"], common["store"]],
        help="run a read-only Cypher query against the run's graph",
        description="Writes (CREATE, MERGE, SET, DELETE, ...), file and server access (COPY TO, LOAD CSV, "
                    "INSTALL, ATTACH, admin procedures) are refused; the store is opened read-only.")
    cypher.add_argument("query", help="the Cypher query (values as $parameters)")
    cypher.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="query parameter; VALUE is parsed as JSON when it can be (repeatable)")
    cypher.add_argument("--format", default="table", choices=["table", "csv", "json"])
    cypher.add_argument("--limit", type=int, default=1000, help="at most this many rows (default: 1000)")
    cypher.add_argument("--timeout", type=float, default=30.0, help="seconds before the query is stopped")
    cypher.set_defaults(handler=run_cypher)


def run_build(args, ctx) -> int:
    from rich.console import Console

    from graph.build import build_run
    from ingest import IngestConfig, load_dataset
    from ingest.commands import config_from_args as ingest_config_from_args
    from ingest.schema import Dataset

    console = Console()
    config = config_from_args(GraphConfig, args, table="build")
    enabled_relations(config)  # an unknown extra relation name fails here, before any work
    ingest_values = config_values(IngestConfig, args, table="ingest")
    # --no-progress covers ingest, build, embedding and top-k bars
    progress = ingest_values.get("progress") is not False
    start = time.perf_counter()
    ingest_config = None
    if ingest_values.get("dataset"):
        ingest_config = ingest_config_from_args(args, ctx.env)
        dataset = load_dataset(ingest_config)
        ingest_config = ingest_config.to_dict()
    elif (ctx.run.dataset / "dataset.json").exists():
        dataset = Dataset.load(ctx.run.dataset)
    else:
        raise GraphError(f"{ctx.run.root} has no ingested dataset: pass --dataset (or set it in [ingest])")
    ingest_seconds = time.perf_counter() - start
    # Nothing in the run folder changes before build_run commits: a failed build leaves it as it was.
    manifest, report = build_run(
        ctx.run, dataset, ctx.store, config, progress, ingest_config=ingest_config,
        ingest_seconds=ingest_seconds, wait=not args.no_wait,
        on_wait=lambda message: print(f"iirg build: {message}", file=sys.stderr, flush=True))
    print_build_summary(console, dataset, manifest, report, ctx, ingest_seconds)
    return 0


def print_build_summary(console, dataset, manifest, report, ctx, ingest_seconds: float) -> None:
    from rich.table import Table

    stats = dataset.stats()
    table = Table(title=f"iirg build: {dataset.name} -> {ctx.store.describe()}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("users", "items", "interactions"):
        table.add_row(key, f"{stats[key]:,}")
    table.add_row("train / valid / test", " / ".join(f"{stats['splits'][s]:,}" for s in ("train", "valid", "test")))
    table.add_row("skipped input records", f"{stats['skipped_records']:,}")
    counts = manifest["counts"]
    table.add_row("NEXT edges (one-hop transitions)", f"{counts['next']:,}")
    table.add_row("COLLAB edges (of which semantic back-fill)",
                  f"{counts['collab']:,} ({counts['collab_backfilled']:,})")
    table.add_row("SIMILAR edges", f"{counts['similar']:,}")
    for name in manifest["params"].get("extra_relations", {}):
        spec = RELATIONS[name]
        table.add_row(f"{name} edges ({spec.summary.split(',')[0]})", f"{counts[spec.export_name]:,}")
    params = manifest["params"]
    table.add_row("window / k / semantic k", f"{params['window']} / {params['k']} / {params['semantic_k']}")
    table.add_row("relations built from", " + ".join(params["splits"]))
    seconds = {"ingest": round(ingest_seconds, 2), **report.seconds}
    table.add_row("seconds per stage", ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    if report.embedding:
        e = report.embedding
        rate = f", {e.items_per_s:.0f} items/s" if e.items_per_s else " (all from cache)"
        table.add_row("embedded texts", f"{e.embedded:,} of {e.items:,}{rate}")
    table.add_row("export", str(ctx.run.export))
    console.print(table)


def run_export(args, ctx) -> int:
    if not (ctx.run.dataset / "dataset.json").exists():  # checked before the lock creates the folder
        raise GraphError(f"{ctx.run.root} has no ingested dataset: run `iirg build` first")
    # Under the build lock: the export must not interleave with a build swapping the store.
    with ctx.run.lock(on_wait=lambda message: print(f"iirg export: {message}", file=sys.stderr, flush=True)):
        manifest = _export_run(ctx)
    print(f"exported {json.dumps(manifest['counts'])} to {ctx.run.export}")
    return 0


def _export_run(ctx) -> dict:
    from graph.build import export_params, read_relations
    from graph.export import write_export
    from graph.store import open_store
    from ingest.schema import Dataset

    if not (ctx.run.dataset / "dataset.json").exists():
        raise GraphError(f"{ctx.run.root} has no ingested dataset: run `iirg build` first")
    dataset = Dataset.load(ctx.run.dataset)
    config_path = ctx.run.root / "config.json"
    recorded = json.loads(config_path.read_text()).get("graph") if config_path.exists() else None
    if not recorded:
        raise GraphError(f"{config_path} does not say how the graph was built: run `iirg build`")
    config = GraphConfig(**{k: v for k, v in recorded.items() if k != "store"})
    with open_store(ctx.store, read_only=True) as store:
        relations = read_relations(store, config)
    return write_export(ctx.run.export, dataset, popularity=relations.popularity, relations=relations.edges,
                        params=export_params(config), backend=ctx.store.describe())


def run_cypher(args, ctx) -> int:
    from graph.console import format_result, parse_params, run_read_query

    result = run_read_query(ctx.store, args.query, parse_params(args.param), row_limit=args.limit,
                            timeout_s=args.timeout)
    print(format_result(result.frame, args.format))
    if result.truncated:
        print(f"(first {args.limit} rows shown; raise --limit for more)")
    return 0
