"""`iirg` subcommands of the ingest stage (registered by cli.py).

    iirg ingest --dataset ml-100k --run runs/ml-100k            # registered name, under $IIRG_DATA_DIR
    iirg ingest --dataset ~/data/clicks.csv --format csv --user-col uid --item-col sku --run runs/clicks
    iirg ingest --dataset yelp --run runs/yelp --strict --min-interactions 5
    iirg datasets                                               # what is registered / present / where
    iirg download ml-1m                                         # fetch, check sha256, unzip into the data dir

`add_arguments` and `config_from_args` are reused by `iirg build`, so both commands take the same
ingest options. Values come from the defaults, then an optional TOML file (`--config`, its
[ingest] table), then the command line (`common.config`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from common.config import add_config_flags, build_config, config_values
from ingest.config import IngestConfig


def register(sub, common) -> None:
    """Add this stage's subcommands to the `iirg` parser; `common` holds shared parent parsers."""
    parser = sub.add_parser(
        "ingest", parents=[common["run"]], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="read a raw dataset into the run's canonical dataset/ (items, ordered interactions, splits)",
        description="Read a registered dataset or a path (MovieLens, LC-Rec, P5, Amazon reviews, CSV/Parquet)\n"
                    "into <run>/dataset: unique item titles, sequences ordered by time then source order,\n"
                    "leave-one-out splits. Bad records are skipped and counted (--strict: stop at the first).",
        epilog="examples:\n"
               "  iirg ingest --dataset ml-100k --run runs/ml-100k\n"
               "  iirg ingest --dataset data/clicks.parquet --user-col uid --item-col sku --run runs/clicks\n"
               "  iirg datasets        # registered names and where their files go")
    add_arguments(parser)
    parser.set_defaults(handler=run_ingest)

    listing = sub.add_parser("datasets", help="list registered datasets, their folders and whether they are present")
    listing.add_argument("--data-dir", default=None, help="data folder (default: $IIRG_DATA_DIR, "
                                                          "<repo>/../shared/data, ./data)")
    listing.set_defaults(handler=run_datasets)
    _register_download(sub)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ingest settings as flags (IngestConfig's fields) and `--config` with its [ingest] table."""
    add_config_flags(parser, IngestConfig, table="ingest")


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> IngestConfig:
    """Defaults <- TOML (--config [ingest]) <- command line; the data dir falls back to $IIRG_DATA_DIR."""
    from ingest.registry import default_data_dir

    values = config_values(IngestConfig, args, table="ingest")
    if not values.get("data_dir"):
        values["data_dir"] = str(default_data_dir(env))
    if values.get("delimiter") == "\\t":
        values["delimiter"] = "\t"  # typed on a shell as a two-character escape
    return build_config(IngestConfig, values, table="ingest")


def run_ingest(args: argparse.Namespace, ctx) -> int:
    from ingest.pipeline import load_dataset

    config = config_from_args(args, ctx.env)
    dataset = load_dataset(config)
    # the run lock: a build must not stage or swap the dataset while it is replaced here
    with ctx.run.lock(on_wait=lambda message: print(message, flush=True)):
        out = dataset.save(ctx.run.dataset)
    ctx.run.record_config("ingest", {**config.to_dict(), "format_used": dataset.source["format"],
                                     "path_used": dataset.source["path"], "checksum": dataset.checksum(),
                                     "report": dataset.report.to_dict()})
    print_summary(dataset, out)
    return 0


def _kind_table(title: str, kind_header: str, counts: dict, examples: dict, examples_header: str):
    """Rich table of report kinds by count, with their first three examples."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column(kind_header)
    table.add_column("count", justify="right")
    table.add_column(examples_header, overflow="fold")
    for kind, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(kind, str(count), "\n".join(examples.get(kind, [])[:3]))
    return table


def print_summary(dataset, out: Path | None = None) -> None:
    """Rich tables: dataset stats, files read, skipped records and warnings."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    stats = dataset.stats()
    table = Table(title=f"dataset {dataset.name} ({dataset.source.get('format')})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for label, value in (("users", stats["users"]), ("items", stats["items"]),
                         ("items with interactions", stats["interacted_items"]),
                         ("interactions", stats["interactions"]),
                         ("train / valid / test", " / ".join(str(stats["splits"][s]) for s in ("train", "valid", "test"))),
                         ("mean sequence length", stats["mean_sequence_length"]),
                         ("skipped records", stats["skipped_records"]),
                         ("min interactions (k-core)", dataset.source.get("min_interactions", 0)),
                         ("checksum", dataset.checksum()[:16])):
        table.add_row(label, str(value))
    console.print(table)

    files = Table(title="files read")
    for column in ("file", "bytes", "sha256", "pinned"):
        files.add_column(column)
    for f in dataset.source.get("files", []):
        pinned = "-" if "verified" not in f else ("[green]match[/]" if f["verified"] else "[red]DIFFERENT[/]")
        files.add_row(f["name"], f"{f['bytes']:,}", f["sha256"][:16], pinned)
    console.print(files)

    report = dataset.report
    if report.counts:
        console.print(_kind_table(f"skipped records: {report.skipped}", "problem", report.counts,
                                  report.examples, "first examples (file:line field: message)"))
    else:
        console.print("no records skipped")
    if report.fixed:
        console.print(_kind_table(f"titles cleaned: {sum(report.fixed.values())}", "rule", report.fixed,
                                  report.fixed_examples, "first examples (file:line field: raw -> title)"))
    for warning in dataset.source.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")
    if out is not None:
        console.print(f"wrote {out}")


def run_datasets(args: argparse.Namespace, ctx) -> int:
    from rich.console import Console
    from rich.table import Table

    from ingest.errors import DatasetNotFound
    from ingest.registry import ENTRIES, default_data_dir, find_folder

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(ctx.env)
    table = Table(title=f"registered datasets in {data_dir}",
                  caption="each lives in <data dir>/<name>/; ingesting a missing one prints what to download")
    table.add_column("name", no_wrap=True)
    table.add_column("format", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("description")
    for entry in ENTRIES.values():
        try:
            folder = find_folder(entry, data_dir)
            status = "[green]present[/]" + ("" if folder == data_dir / entry.folder else f" ({folder.name}/)")
        except DatasetNotFound:
            status = "[red]missing[/]"
        table.add_row(entry.name, entry.format, status, entry.description)
    table.add_row("amazon-<category>", "amazon", "-", "raw Amazon reviews + metadata (2014, 2018 or 2023 "
                  "release), e.g. amazon-beauty, amazon-toys, amazon-video-games")
    Console().print(table)
    return 0


def _register_download(sub) -> None:
    parser = sub.add_parser(
        "download", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="download a registered dataset, check its pinned sha256 and unpack it into the data dir",
        description="Download a registered dataset into <data dir>/<name>/, where --dataset <name> finds it.\n"
                    "Interrupted downloads resume (<data dir>/.downloads/, HTTP Range). Each file is checked\n"
                    "against its sha256 pinned in ingest/registry.py: a mismatch stops before anything is\n"
                    "unpacked; a file without a pin (Amazon) is kept with a loud warning printing its sha256.\n"
                    "A dataset already present and verified is left alone (--force downloads it again).\n"
                    "$IIRG_DOWNLOAD_MIRROR=URL fetches <URL>/<host>/<path> instead of each original URL.",
        epilog="examples:\n"
               "  iirg download ml-1m && iirg build --dataset ml-1m --run runs/ml-1m\n"
               "  iirg download amazon-beauty --release 2014     # P5's Beauty: the 2014 5-core files\n"
               "  IIRG_DOWNLOAD_MIRROR=http://127.0.0.1:8000 iirg download ml-20m")
    parser.add_argument("name", help="registered name: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, "
                                     "ml-latest-small, amazon-office, yelp, amazon-<category>")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $IIRG_DATA_DIR, "
                                                         "<repo>/../shared/data, ./data)")
    parser.add_argument("--release", default=None, metavar="YEAR",
                        help="amazon-<category>: 2014, 2018 or 2023 (default: the first the category exists in)")
    parser.add_argument("--force", action="store_true",
                        help="download again (no resume) and replace the dataset folder, even when present")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(handler=run_download)


def run_download(args: argparse.Namespace, ctx) -> int:
    from rich.console import Console

    from ingest.download import MIRROR_ENV, download
    from ingest.errors import DatasetNotFound
    from ingest.registry import default_data_dir, lookup, registered_names

    entry = lookup(args.name)
    if entry is None:
        raise DatasetNotFound(f"unknown dataset {args.name!r}: registered names are {', '.join(registered_names())}")
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(ctx.env)
    stderr = Console(stderr=True, highlight=False)

    def log(message: str) -> None:
        if message.startswith("WARNING"):
            stderr.print(message, style="bold yellow", markup=False, soft_wrap=True)  # hashes stay on one line
        else:
            print(message, flush=True)

    result = download(entry, data_dir, release=args.release, force=args.force, progress=args.progress,
                      mirror=ctx.env.get(MIRROR_ENV) or None, log=log)
    if result.status == "downloaded":
        where = f" --data-dir {data_dir}" if args.data_dir else ""
        print(f"next: iirg build --dataset {entry.name}{where} --run runs/{entry.name}")
    return 0
