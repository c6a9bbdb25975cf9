"""Where each stage reads and writes inside a run directory (`iirg build --run runs/ml-100k`), and how
a build changes a run all at once.

    runs/<name>/
      config.json            resolved configs of every stage run here, plus the git commit
      dataset/               canonical dataset (ingest.schema.Dataset.save)
      store/graph.lbdb       embedded LadybugDB store (+ its .wal; absent when the run uses Neo4j)
      export/                relations + dataset as Parquet/JSONL with manifest.json (graph.export)
      build_report.json      seconds and counts of the last build
      analysis/              segments per evaluated user (evaluate.segments)
      models/<model>/        one folder per evaluated model: recommendations.parquet, metrics.json
      report/                iirg report output: tables (JSON, CSV) and PNG plots
      llm/                   instruction data, adapters and checkpoints (train)
      .lock                  held (fcntl.flock) by the build or export running here; holds its pid
      .commit.lock           held while config.json or committed parts are being replaced
      .commit.json           journal of a commit in progress (rolled forward on the next open)
      .build.*/              staging folder of a build in progress (new/, old/)

A build writes every new part (dataset/, store/, export/, build_report.json, config.json) into its
staging folder, then commits: it writes the journal (the list of parts) with one atomic rename, and
swaps the parts in one by one. The journal is the commit point: a crash before it leaves the run as it
was (the staging folder is removed by the next build); a crash after it is rolled forward by whoever
next opens the run (`RunPaths.of`, the next build, `record_config`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from common.files import file_lock, fsync_dir, write_json
from graph.errors import GraphError

LOCK_FILE = ".lock"
COMMIT_LOCK_FILE = ".commit.lock"
JOURNAL_FILE = ".commit.json"
STAGING_PREFIX = ".build."
# Temporary folders that only a build (or `iirg export`) makes in the run folder, always under the
# run lock: whoever holds the lock knows their owner is dead. `.store.*`/`.export.*` are the temporary
# siblings of earlier versions' atomic_dir, and `.dataset.*` of an `iirg ingest` (which saves under
# the lock too).
STALE_PREFIXES = (STAGING_PREFIX, ".store.", ".export.", ".dataset.")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike) -> "RunPaths":
        """The run at `root`; a commit interrupted by a crash is finished first (see module docstring)."""
        run = cls(Path(root))
        run.recover()
        return run

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def store_dir(self) -> Path:
        """The embedded store's folder, swapped in whole on a rebuild (the database has a .wal beside it)."""
        return self.root / "store"

    @property
    def store(self) -> Path:
        return self.store_dir / "graph.lbdb"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def build_report(self) -> Path:
        return self.root / "build_report.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models / name

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def llm(self) -> Path:
        return self.root / "llm"

    def record_config(self, stage: str, config: dict) -> None:
        """Merge one stage's resolved config (and the git commit) into config.json."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Under the commit lock: a build committing its own config.json re-reads it there, so
        # neither loses the other's entry.
        with file_lock(self.root / COMMIT_LOCK_FILE):
            _roll_forward(self.root)
            write_json(self.config, _merged_config(self.config, {stage: config}), fsync=True)

    # -- the build lock -------------------------------------------------------------------------
    @contextmanager
    def lock(self, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the run's build lock: one build (or export) per run folder at a time.

        A second caller waits (telling `on_wait` why) or, with wait=False, raises RunBusy. The lock
        is an fcntl.flock on <run>/.lock, so the kernel drops it when its holder dies, even by
        kill -9. Once held, an interrupted commit is rolled forward and stale staging folders of
        dead builds are removed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                if not wait:
                    raise RunBusy(f"another build is running in {self.root} (pid {holder}); "
                                  "wait for it, or leave out --no-wait to queue behind it")
                if on_wait:
                    on_wait(f"waiting for the build already running in {self.root} (pid {holder}) "
                            "to finish (--no-wait refuses instead)")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self.recover()
            self.clean_stale()
            yield  # closing the file releases the lock

    def recover(self) -> bool:
        """Roll an interrupted commit forward; True when there was one."""
        if not (self.root / JOURNAL_FILE).exists():  # the usual case: no lock file touched
            return False
        with file_lock(self.root / COMMIT_LOCK_FILE):
            return _roll_forward(self.root)

    def clean_stale(self) -> list[str]:
        """Remove temporary folders of dead builds. Only call it holding the lock (see STALE_PREFIXES)."""
        removed = []
        for path in self.root.iterdir() if self.root.is_dir() else []:
            if path.name.startswith(STALE_PREFIXES) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    @contextmanager
    def staging(self) -> Iterator["Staging"]:
        """A staging folder for a build's new parts; removed when the block fails (call it under lock())."""
        stage = Staging(self)
        try:
            yield stage
        finally:
            # Once the journal names the folder, its parts belong to the commit: an exception in the
            # middle of the swaps (Ctrl-C) leaves them for the roll-forward instead of deleting them.
            if not (self.root / JOURNAL_FILE).exists():
                shutil.rmtree(stage.dir, ignore_errors=True)


class RunBusy(GraphError):
    """Another build holds the run's lock and the caller chose not to wait."""


class Staging:
    """New versions of run parts, written inside <run>/.build.*/new and swapped in together by commit()."""

    def __init__(self, run: RunPaths):
        self.run = run
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=run.root))
        (self.dir / "new").mkdir()
        self.parts: dict[str, Path] = {}   # staged name -> target path

    def path(self, target: Path) -> Path:
        """Where to write the new version of `target` (a folder or a file; on the run's file system)."""
        name = f"{len(self.parts)}-{target.name}"
        self.parts[name] = Path(target)
        return self.dir / "new" / name

    def commit(self, config: dict | None = None) -> None:
        """Swap every staged part in; `config` (stage -> dict) is merged into config.json with them."""
        root = self.run.root
        with file_lock(root / COMMIT_LOCK_FILE):
            _roll_forward(root)
            if config is not None:
                write_json(self.path(self.run.config), _merged_config(self.run.config, config), fsync=True)
            for name, target in self.parts.items():
                # A rename across file systems fails, and must not fail after the commit point.
                target.parent.mkdir(parents=True, exist_ok=True)
                if os.stat(target.parent).st_dev != os.stat(self.dir).st_dev:
                    raise GraphError(f"{target} is on another file system than the run {root}: "
                                     "keep the store inside (or beside) the run folder")
                _fsync_tree(self.dir / "new" / name)
            journal = {"staging": self.dir.name,
                       "parts": [[name, os.path.relpath(target, root)] for name, target in self.parts.items()]}
            write_json(root / JOURNAL_FILE, journal, fsync=True)  # the commit point
            _roll_forward(root)


# -- helpers ---------------------------------------------------------------------------------------
def _roll_forward(root: Path) -> bool:
    """Finish the journalled commit in `root`, if any (caller holds the commit lock).

    Each staged part still present is swapped in (the part it replaces goes to the staging folder's
    old/); parts already moved are skipped, so running this again after a crash in here is safe.
    """
    journal_path = root / JOURNAL_FILE
    if not journal_path.exists():
        return False
    journal = json.loads(journal_path.read_text())
    staging = root / journal["staging"]
    old = staging / "old"
    old.mkdir(parents=True, exist_ok=True)
    for name, target_rel in journal["parts"]:
        new = staging / "new" / name
        target = Path(os.path.normpath(root / target_rel))
        if not new.exists():
            continue  # swapped in before the crash
        if target.exists():
            target.rename(old / name)
        new.rename(target)
        fsync_dir(target.parent)
    journal_path.unlink()
    fsync_dir(root)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def _merged_config(path: Path, updates: dict) -> dict:
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(updates)
    merged["git_commit"] = git_commit()
    return merged



def _fsync_tree(path: Path) -> None:
    """Flush a staged part to disk before the journal names it (a power cut must not commit holes)."""
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)



def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
