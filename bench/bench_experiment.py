"""Wall time per stage of `iirg experiment`: runs it (or reads a finished run) and prints a table.

    .venv/bin/python bench/bench_experiment.py --config configs/experiment_cpu_sid.toml --run runs/exp-ml-100k-sid
    .venv/bin/python bench/bench_experiment.py --config ... --run ... --only build,sid,analyze,baseline:popularity
    .venv/bin/python bench/bench_experiment.py --run runs/exp-ml-100k-sid --read   # table of a finished run

The seconds are the ones `iirg experiment` records in <run>/experiment.json when a stage finishes (a
stage skipped as up to date shows the seconds of the run that made it). Extra arguments after `--`
go to `iirg experiment` unchanged (e.g. `-- --force train`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment TOML (not needed with --read)")
    parser.add_argument("--run", required=True, help="run folder of the experiment")
    parser.add_argument("--only", help="stages to run (names or prefixes), as `iirg experiment --only`")
    parser.add_argument("--read", action="store_true", help="only print the table of the run's record")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    wall = None
    if not args.read:
        import cli

        if not args.config:
            parser.error("--config is required unless --read")
        argv = ["experiment", "--config", args.config, "--run", args.run, *extra]
        if args.only:
            argv += ["--only", args.only]
        start = time.perf_counter()
        code = cli.main(argv)
        wall = time.perf_counter() - start
        if code:
            return code
    record = json.loads((Path(args.run) / "experiment.json").read_text())
    from rich.console import Console
    from rich.table import Table

    last = record.get("last_invocation", {})
    table = Table(title=f"iirg experiment {Path(record.get('config', '?')).name}: wall time per stage ({args.run})")
    for column in ("stage", "this invocation", "seconds", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    names = list(last) or list(record["stages"])
    seconds = {n: record["stages"].get(n, {}).get("seconds") for n in names}
    total = sum(s or 0 for s in seconds.values())
    for n in names:
        s = seconds[n]
        table.add_row(n, last.get(n, {}).get("status", "-"), "-" if s is None else f"{s:.1f}",
                      "-" if not s or not total else f"{s / total:.0%}")
    table.add_row("[bold]total (stages' last runs)[/]", "", f"{total:.1f}", "")
    if wall is not None:
        table.add_row("[bold]this invocation, wall[/]", "", f"{wall:.1f}", "")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
