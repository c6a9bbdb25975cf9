"""Real ml-100k runs for the dashboard tests (tests/test_dashboard.py, tests/test_dashboard_browser.py).

Built once per pytest session under the session's base temp folder, through the real `iirg` commands
(ingest -> graph with semantic edges -> analyze -> baselines -> report): a later fixture call, also from
the other test file, reuses the finished folder (a marker file says it is complete).

    built_run     `iirg build` only: no segments, no evaluated model, no semantic IDs (the empty states)
    analyzed_run  a copy of it + `iirg analyze`, `iirg baseline popularity|markov` (markov with
                  --no-graph: a model known only from its models/ folder), `iirg sid`, `iirg report`
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest

import cli
from conftest import dataset_dir

DONE = ".dashboard-test-complete"


def _iirg(*args: str) -> None:
    code = cli.main(list(args))
    assert code == 0, f"iirg {' '.join(args)} exited with {code}"


def _cached(base: Path, name: str, make) -> Path:
    folder = base / name
    if (folder / DONE).exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    make(folder)
    (folder / DONE).write_text("ok")
    return folder


def built_run(tmp_path_factory) -> Path:
    dataset_dir("ml-100k")  # skips, saying why, when the shared data is absent
    base = tmp_path_factory.getbasetemp()

    def make(folder: Path) -> None:
        _iirg("build", "--dataset", "ml-100k", "--run", str(folder))

    return _cached(base, "dash-ml100k-built", make)


def analyzed_run(tmp_path_factory) -> Path:
    built = built_run(tmp_path_factory)
    base = tmp_path_factory.getbasetemp()

    def make(folder: Path) -> None:
        shutil.copytree(built, folder, ignore=shutil.ignore_patterns(DONE))
        _iirg("analyze", "--run", str(folder))
        _iirg("baseline", "popularity", "--run", str(folder), "--no-progress")
        # No RECOMMENDED edges: the user explorer must read its lists from models/markov/ (as for
        # any model evaluated without the graph), with the same badges.
        _iirg("baseline", "markov", "--run", str(folder), "--no-progress", "--no-graph")
        _iirg("sid", "--run", str(folder), "--no-progress")
        _iirg("report", "--run", str(folder), "--n-boot", "100")

    return _cached(base, "dash-ml100k-analyzed", make)


def segments(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "analysis" / "segments_test.parquet")


def metrics(run: Path, model: str) -> dict:
    return json.loads((run / "models" / model / "metrics_test.json").read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A localhost port nobody listens on (bound then released: connections are refused)."""
    return free_port()


def require_commands(*names: str) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [n for n in names if n not in sub.choices]
    if missing:
        pytest.skip(f"`iirg {' / '.join(missing)}` not available yet (issue 3's commands)")
