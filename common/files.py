"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of one.

Everything is written under a temporary sibling name (a dot-name, so globs such as `*.parquet` never
list it) and renamed into place once complete; on error the temporary is removed. `file_lock` is the
advisory lock writers of one shared file (a run's config.json, experiment.json) take around their
read-modify-write.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


@contextmanager
def atomic_file(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; on success it replaces `path`.

    `fsync=True` flushes the file and its folder to disk (for files a crash must not lose, such as
    the run's commit journal); plain writes only need the rename to be atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive fcntl.flock on `path` (created if missing), waiting for it; the kernel drops
    it when the holder dies, even by kill -9."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
    with atomic_file(path, fsync=fsync) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, value: Any, *, default: Callable[[Any], Any] | None = str,
               fsync: bool = False) -> None:
    write_text(path, json.dumps(value, indent=2, default=default), fsync=fsync)


def write_parquet(path: str | os.PathLike, frame) -> None:
    """A pandas DataFrame to parquet, without its index."""
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to write into; when the block succeeds it replaces
    `target` whole, when it raises it is removed. A reader never sees a half-written folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(_dir_mode())  # mkdtemp makes it 0700; the folder it becomes may be shared
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _dir_mode() -> int:
    """0o777 minus the process umask: the mode a plain mkdir would have given."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def replace_dir(new: Path, target: Path) -> None:
    """Swap a finished folder into place: the old one is removed only once the new one is ready."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
