"""`iirg`: one command in front of every stage (ingest -> graph -> evaluate + train -> dashboard).

    iirg build --dataset ml-100k --run runs/ml-100k      # ingest + relations + export
    iirg cypher --run runs/ml-100k "MATCH (i:Item) RETURN count(i) AS n"
    iirg --help                                           # every stage

Each package registers its own subcommands (`<package>/commands.py: register(subparsers, common)`);
this file owns what they share: the run directory, the store options and the environment. Only this
file reads `sys.argv` and environment variables such as NEO4J_PASSWORD. Stores are opened by the
command handlers (from `Context.store`) and by the dashboard; everything below them gets an open
store passed in. Settings go through `common.config` (dataclass -> flags and a `--config` TOML table).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass

from graph.rundir import RunPaths
from graph.store import StoreConfig
from common.errors import IirgError

# Packages whose commands.py registers subcommands, in pipeline order. A package that is not
# installed with its extra (e.g. train without torch) still registers: its commands import heavy
# dependencies only when they run.
COMMAND_MODULES = ["ingest.commands", "graph.commands", "evaluate.commands", "train.commands",
                   "dashboard.commands"]


@dataclass
class Context:
    """What cli.py resolves for every command: the run folder and the store to use."""

    run: RunPaths | None
    store: StoreConfig | None
    env: dict[str, str]


def _common_parsers() -> dict[str, argparse.ArgumentParser]:
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--run", required=True, help="run directory (created if missing), e.g. runs/ml-100k")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--neo4j", metavar="URI", default=None,
                       help="use Neo4j at this bolt:// or neo4j:// URI instead of the embedded store")
    store.add_argument("--neo4j-user", default=None, help="Neo4j user (default: $NEO4J_USER or neo4j)")
    store.add_argument("--neo4j-password", default=None, help="Neo4j password (default: $NEO4J_PASSWORD)")
    store.add_argument("--neo4j-database", default=None, help="Neo4j database (default: server default)")
    store.add_argument("--buffer-pool-mb", type=int, default=None,
                       help="embedded store: LadybugDB buffer pool in MB (default 3072; LadybugDB's own "
                            "would be 80%% of RAM)")
    return {"run": run, "store": store}


def store_config(args: argparse.Namespace, run: RunPaths | None) -> StoreConfig | None:
    if getattr(args, "neo4j", None):
        from graph.neo4j_store import split_uri_credentials

        # Credentials written into the URI (bolt://user:pw@host) move to the user and password fields,
        # so the URI that gets printed, saved in config.json or handed to the dashboard has none.
        uri, uri_user, uri_password = split_uri_credentials(args.neo4j)
        password = args.neo4j_password or uri_password or os.environ.get("NEO4J_PASSWORD")
        if not password:
            raise IirgError("Neo4j needs a password: pass --neo4j-password or set NEO4J_PASSWORD")
        return StoreConfig(backend="neo4j", uri=uri,
                           user=args.neo4j_user or uri_user or os.environ.get("NEO4J_USER", "neo4j"),
                           password=password, database=args.neo4j_database)
    if run is None:
        return None
    return StoreConfig(backend="embedded", path=run.store, buffer_pool_mb=getattr(args, "buffer_pool_mb", None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iirg",
        description="Find and fix one-hop memorization in LLM recommenders with an item graph (IIRG).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Stages: ingest -> graph (build, cypher, export) -> analyze/baseline/report -> "
               "data/train/evaluate -> dashboard. `iirg <command> --help` for each.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    common = _common_parsers()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = RunPaths.of(args.run) if getattr(args, "run", None) else None
    try:
        ctx = Context(run=run, store=store_config(args, run), env=dict(os.environ))
        return int(args.handler(args, ctx) or 0)
    except IirgError as error:
        from graph.neo4j_store import redact_uri
        print(f"iirg {args.command}: error: {redact_uri(error)}", file=sys.stderr)   # no URI passwords
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
