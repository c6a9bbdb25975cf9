"""A run changes whole or not at all (issue 8, "Nothing lost on failure"), with real subprocesses and a
real LadybugDB on disk: kill -9 at random points of a rebuild, a Neo4j build against a closed port,
two builds into one run folder, concurrent writers of the embedding cache, a dataset with no training
transitions, and --no-progress.

The data is a slice of ml-100k (the first 15,000 ratings, all 1,682 items) built with --no-semantic,
so a build takes about two seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graph.rundir import RunPaths
from graph.semantic import EmbeddingCache
from graph.store import StoreConfig, open_store

REPO = Path(__file__).resolve().parents[1]
# Two ways to build the same run, told apart by their window: B also drops users with < 10 ratings,
# so its dataset differs too.
VARIANTS = {"A": ["--window", "5"], "B": ["--window", "3", "--min-interactions", "10"]}
WINDOW_OF = {"A": 5, "B": 3}
PARTS = ("dataset", "config.json", "store", "export", "build_report.json")
PROGRESS_BAR = re.compile(r"\d+%\||\d+/\d+ \[|it/s|stage/s")


@pytest.fixture(scope="session")
def ml_slice(tmp_path_factory, ml100k_dir) -> Path:
    folder = tmp_path_factory.mktemp("ml-slice") / "ml-slice"
    folder.mkdir()
    for name in ("u.item", "u.user", "u.genre", "u.info", "u.occupation", "README"):
        shutil.copy(ml100k_dir / name, folder / name)
    lines = (ml100k_dir / "u.data").read_text().splitlines(keepends=True)[:15000]
    (folder / "u.data").write_text("".join(lines))
    return folder


def _iirg(*args, **popen):
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "cli", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, **popen)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _build_args(ml_slice, run, variant, *extra):
    return ["build", "--dataset", ml_slice, "--run", run, "--no-semantic", "--no-progress",
            *VARIANTS[variant], *extra]


def _run_hash(root: Path) -> str:
    """sha256 over the names and bytes of every file of the run's committed parts."""
    h = hashlib.sha256()
    for part in PARTS:
        path = root / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _variant_of(root: Path) -> str:
    """Which variant the run holds, after checking that its parts agree with each other and the graph
    opens read-only and answers."""
    config = json.loads((root / "config.json").read_text())
    manifest = json.loads((root / "export" / "manifest.json").read_text())
    dataset = json.loads((root / "dataset" / "dataset.json").read_text())
    window = config["graph"]["window"]
    variant = {5: "A", 3: "B"}[window]
    assert manifest["params"]["window"] == window
    assert manifest["dataset_checksum"] == dataset["checksum"]
    assert (config["ingest"]["min_interactions"] or 0) == (10 if variant == "B" else 0)
    assert dataset["stats"]["users"] == manifest["dataset_stats"]["users"]
    with open_store(StoreConfig(path=root / "store" / "graph.lbdb"), read_only=True) as store:
        items = store.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"]
        users = store.run("MATCH (u:User) RETURN count(u) AS n")[0]["n"]
        windows = store.run("MATCH ()-[c:COLLAB]->() RETURN DISTINCT c.window AS w")
    assert items == manifest["counts"]["items"] > 0
    assert users == dataset["stats"]["users"]
    assert [r["w"] for r in windows] == [window]
    return variant


def _temp_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("."))


def test_kill_9_during_rebuild_keeps_the_previous_run(tmp_path, ml_slice):
    """Rebuilds killed at random moments leave the run byte-identical to before (or, past the commit
    point, wholly the new build), always openable; the next build succeeds and removes the leftovers."""
    root = tmp_path / "run"
    start = time.perf_counter()
    first = _iirg(*_build_args(ml_slice, root, "A"))
    duration = time.perf_counter() - start
    assert first.returncode == 0, first.stderr
    state, hashes, outcomes = "A", {"A": _run_hash(root)}, []
    for seed in range(8):
        rng = random.Random(seed)
        target = "B" if state == "A" else "A"
        proc = _iirg(*_build_args(ml_slice, root, target), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        # Python's imports take the first part of a build; its writes come in the later part.
        time.sleep(rng.uniform(0.35, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = [name for name in _temp_folders(root) if name.startswith(".build.")]
        RunPaths.of(root)  # the next open rolls an interrupted commit forward
        now = _run_hash(root)
        if now == hashes[state]:
            outcomes.append(f"seed {seed}: killed before the commit, run unchanged, staging left: {left}")
        else:
            assert _variant_of(root) == target, f"seed {seed}: the run changed but is not the new build"
            state = target
            hashes[state] = _run_hash(root)
            outcomes.append(f"seed {seed}: killed after the commit point (or done), run = new build")
        assert _variant_of(root) == state, outcomes
    print("\n".join(outcomes))
    # Some kills landed inside a build's writes (a staging folder was left), not only in its imports.
    assert any("unchanged" in o and "left: []" not in o for o in outcomes), outcomes

    target = "B" if state == "A" else "A"
    last = _iirg(*_build_args(ml_slice, root, target))
    assert last.returncode == 0, last.stderr
    assert _variant_of(root) == target
    assert _temp_folders(root) == []  # staging folders of the killed builds are gone


# Kills itself at an exact step of the commit: before the journal is written ("journal"), or before
# the n-th rename that swaps a part in ("n"; "n!" raises KeyboardInterrupt there instead). Path.rename / os.replace are wrapped only to find that moment;
# the build, the store and the kill are real.
COMMIT_KILLER = """
import os, signal, sys
from pathlib import Path
from graph import rundir
from graph.build import build_run
from graph.config import GraphConfig
from graph.store import StoreConfig
from ingest import IngestConfig, load_dataset

root, data, window, min_interactions, when = Path(sys.argv[1]), *sys.argv[2:]
journal = root / rundir.JOURNAL_FILE
renames, real_rename, real_replace = 0, Path.rename, os.replace

def rename(self, target):
    global renames
    if journal.exists():
        if str(renames) == when:
            os.kill(os.getpid(), signal.SIGKILL)
        if f"{renames}!" == when:  # an exception instead (Ctrl-C): the staged parts must survive it
            raise KeyboardInterrupt
        renames += 1
    return real_rename(self, target)

def replace(src, dst):
    if when == "journal" and Path(dst) == journal:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

Path.rename, os.replace = rename, replace
ingest = IngestConfig(dataset=data, min_interactions=int(min_interactions), progress=False)
run = rundir.RunPaths.of(root)
build_run(run, load_dataset(ingest), StoreConfig(path=run.store),
          GraphConfig(window=int(window), semantic=False), progress=False, ingest_config=ingest.to_dict())
"""


def test_kill_9_at_each_step_of_the_commit(tmp_path, ml_slice):
    """Killed just before the journal: the run is unchanged. Killed (or interrupted) between any two
    swaps after it: the next open finishes the commit and the run is wholly the new build."""
    root = tmp_path / "run"
    assert _iirg(*_build_args(ml_slice, root, "A")).returncode == 0
    state = "A"
    for when in ("journal", "0", "1", "4", "5!", "7", "9"):
        target = "B" if state == "A" else "A"
        before = _run_hash(root)
        args = [WINDOW_OF[target], 10 if target == "B" else 0, when]
        proc = subprocess.run([sys.executable, "-c", COMMIT_KILLER, root, ml_slice, *map(str, args)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == (-signal.SIGINT if when.endswith("!") else -signal.SIGKILL), proc.stderr
        RunPaths.of(root)
        if when == "journal":
            assert _run_hash(root) == before and _variant_of(root) == state
        else:
            assert _variant_of(root) == target, when
            state = target
    assert _iirg(*_build_args(ml_slice, root, "B" if state == "A" else "A")).returncode == 0
    assert _temp_folders(root) == []


def test_failed_neo4j_build_leaves_the_run_unchanged(tmp_path, ml_slice):
    root = tmp_path / "run"
    assert _iirg(*_build_args(ml_slice, root, "A")).returncode == 0
    before = _run_hash(root)
    out = _iirg(*_build_args(ml_slice, root, "B", "--neo4j", "bolt://127.0.0.1:1", "--neo4j-password", "x"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "Neo4j" in out.stderr
    assert _run_hash(root) == before
    assert _variant_of(root) == "A"
    assert _temp_folders(root) == []


def test_second_build_waits_or_refuses(tmp_path, ml_slice):
    root = tmp_path / "run"
    assert _iirg(*_build_args(ml_slice, root, "A")).returncode == 0
    before = _run_hash(root)
    with open(root / ".lock", "a+") as held:  # another build's lock, as the kernel sees it
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = _iirg(*_build_args(ml_slice, root, "B", "--no-wait"))
        assert refused.returncode == 2, refused.stderr
        assert "another build is running" in refused.stderr and "Traceback" not in refused.stderr
        assert _run_hash(root) == before

        log = tmp_path / "waiting.err"
        with open(log, "w") as err:
            waiting = _iirg(*_build_args(ml_slice, root, "B"), stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + 60
            while "waiting for the build" not in log.read_text() and time.monotonic() < deadline:
                assert waiting.poll() is None, log.read_text()
                time.sleep(0.2)
            assert "waiting for the build" in log.read_text()
            time.sleep(0.5)
            assert waiting.poll() is None and _run_hash(root) == before  # still queued, run untouched
            fcntl.flock(held, fcntl.LOCK_UN)
            assert waiting.wait(timeout=120) == 0, log.read_text()
    assert _variant_of(root) == "B"


def test_two_concurrent_builds_end_consistent(tmp_path, ml_slice):
    root = tmp_path / "run"
    assert _iirg(*_build_args(ml_slice, root, "A")).returncode == 0
    procs = [_iirg(*_build_args(ml_slice, root, v), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for v in ("B", "A")]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert any("waiting for the build" in err for _, err in results), results  # they did overlap
    _variant_of(root)
    assert _temp_folders(root) == []


def test_stale_temp_folders_of_dead_builds_are_removed(tmp_path, ml_slice):
    root = tmp_path / "run"
    assert _iirg(*_build_args(ml_slice, root, "A")).returncode == 0
    # What kill -9 leaves: earlier versions' temporary store folder, this version's staging folder.
    for name in (".store.k1ll3d", ".build.k1ll3d/new/2-store"):
        (root / name).mkdir(parents=True)
        (root / name / "graph.lbdb").write_bytes(os.urandom(1 << 20))
    (root / ".dataset.k1ll3d").mkdir()  # a killed `iirg ingest` (it saves under the run lock)
    assert _iirg(*_build_args(ml_slice, root, "B")).returncode == 0
    assert _temp_folders(root) == []


def test_ingest_waits_for_a_running_build(tmp_path, ml_slice):
    """`iirg ingest` replaces the dataset under the run lock, so it never swaps it mid-build."""
    from graph.rundir import RunPaths

    root = tmp_path / "run"
    assert _iirg(*_build_args(ml_slice, root, "A")).returncode == 0
    with RunPaths.of(root).lock():
        proc = _iirg("ingest", "--dataset", ml_slice, "--run", root, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # blocks until ingest has loaded the data and met the lock
        assert "waiting for the build" in first, first
        assert proc.poll() is None  # and it really waits
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def test_no_training_transitions_is_one_clear_line(tmp_path):
    """A run whose dataset has no two consecutive training items (ingest may reject such data, but a run
    made earlier can hold one): `iirg build` says so in one line, no traceback."""
    from ingest.schema import Dataset

    users = [f"u{u}" for u in range(6) for _ in range(3)]
    items = [f"i{(u + n) % 4}" for u in range(6) for n in range(3)]
    interactions = pd.DataFrame({
        "user_id": users, "item_id": items, "pos": np.tile(np.arange(3, dtype=np.int64), 6),
        "ts": pd.array(np.tile(np.arange(3), 6), dtype="Int64"), "rating": pd.array([None] * 18, dtype="Float64"),
        "split": ["train", "valid", "test"] * 6})
    catalogue = pd.DataFrame({"item_id": [f"i{i}" for i in range(4)], "title": [f"Item {i}" for i in range(4)],
                              "raw_title": [f"Item {i}" for i in range(4)], "description": [""] * 4,
                              "categories": [[] for _ in range(4)], "brand": [""] * 4, "attributes": ["{}"] * 4})
    run = RunPaths(tmp_path / "run")
    Dataset(name="one-train-item", items=catalogue, interactions=interactions).save(run.dataset)
    out = _iirg("build", "--run", run.root, "--no-semantic", "--no-progress")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "no training transitions" in out.stderr


def test_no_progress_silences_every_bar(tmp_path):
    """--no-progress on a build that ingests, embeds (a real forward pass), ranks and loads: no bar."""
    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(0)
    rows = ["user_id,item_id,timestamp"] + [f"u{u},i{rng.randrange(30)},{t}" for u in range(40) for t in range(6)]
    (data / "clicks.csv").write_text("\n".join(rows) + "\n")
    (data / "items.csv").write_text("item_id,title,description\n" + "".join(
        f"i{i},Thing {i},A plain object number {i} for an office desk\n" for i in range(30)))
    common = ["build", "--dataset", data / "clicks.csv", "--format", "csv", "--items-path", data / "items.csv",
              "--cache-dir", tmp_path / "cache", "--collab-k", "3", "--semantic-k", "3"]
    quiet = _iirg(*common, "--run", tmp_path / "quiet", "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert not PROGRESS_BAR.search(quiet.stderr), quiet.stderr


def test_embedding_cache_writers_keep_each_others_entries(tmp_path):
    """Two builds that opened the cache before either saved both keep their entries."""
    first, second = EmbeddingCache(tmp_path, "m"), EmbeddingCache(tmp_path, "m")
    first.put_many(["a", "b"], np.ones((2, 4), dtype=np.float32))
    second.put_many(["c"], np.zeros((1, 4), dtype=np.float32))
    first.save()
    second.save()
    reopened = EmbeddingCache(tmp_path, "m")
    assert all(reopened.get(k) is not None for k in "abc")


WRITER = """
import sys, numpy as np
from graph.semantic import EmbeddingCache
cache_dir, tag = sys.argv[1], sys.argv[2]
for batch in range(40):
    cache = EmbeddingCache(cache_dir, "m")            # a reader while the other process writes
    keys = [f"{tag}-{batch}-{j}" for j in range(5)]
    cache.put_many(keys, np.full((5, 4), batch, dtype=np.float32))
    cache.save()
"""


def test_embedding_cache_concurrent_processes(tmp_path):
    """Two processes saving 40 batches each at once (compaction included): every entry survives."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for tag in ("x", "y")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    cache = EmbeddingCache(tmp_path, "m")
    missing = [f"{t}-{b}-{j}" for t in "xy" for b in range(40) for j in range(5)
               if cache.get(f"{t}-{b}-{j}") is None]
    assert missing == []
