"""Download a registered dataset, check it against its pinned sha256 and put it where `resolve()`
looks for it (`<data dir>/<entry.folder>/`).

    iirg download ml-1m                          # -> <data dir>/ml-1m/ratings.dat, movies.dat, ...
    iirg download amazon-beauty --release 2018   # Amazon: one release per folder (default: the first)
    iirg download ml-25m --force                 # download again and replace the folder

    from ingest.download import download
    download(lookup("ml-1m"), data_dir)          # what the command calls; tests pass their own entry

Each file is fetched to `<data dir>/.downloads/<host>/<path>.part`; a second run resumes it with an
HTTP Range request (a server that ignores Range answers 200 and the file restarts from zero).
A finished file's sha256 is compared with `entry.sha256[<file name>]`: a mismatch moves the file
aside to `<file>.sha256-mismatch` and stops; a file without a pin is kept, with a loud warning that
prints its sha256. Only when every file is verified is the folder built: zips extracted (their one
top-level folder dropped, members that would land outside the folder rejected), other files (Amazon
`.json.gz`, read gzipped by ingest/amazon.py) linked in as downloaded. The folder is written under a
temporary name and renamed (common.files.atomic_dir), so it is complete or absent, never half
there. `.iirg-download` in it records the URLs and the sha256 of every file placed, so a later run
can verify a present dataset and do nothing.

Mirror: `mirror=` (the command reads $IIRG_DOWNLOAD_MIRROR) fetches `<mirror>/<host>/<path>` instead
of each URL, the layout of `.downloads/` itself and of `wget -x`; tests serve fixtures this way.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import ssl
import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from common.files import atomic_dir
from ingest.errors import ChecksumMismatch, ConfigError, DownloadError
from ingest.registry import NOT_PINNED, RegistryEntry

MIRROR_ENV = "IIRG_DOWNLOAD_MIRROR"
CACHE = ".downloads"  # under the data dir: partial and not yet placed downloads, laid out <host>/<path>
RECORD = ".iirg-download"  # JSON, but no .json suffix: ingest/amazon.py reads every *.json in the folder
USER_AGENT = "iirg-download/0.1"  # some hosts refuse urllib's default agent
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0  # per connect and per read, not for the whole file
RETRIES = 3  # extra attempts after a dropped connection or a 5xx, each resuming where the last stopped
# Network failures worth another attempt. HTTPError is a URLError: 4xx other than 408/429 are
# turned into DownloadError before they get here.
TRANSIENT = (URLError, HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


class _Interrupted(Exception):
    """The body ended before Content-Length bytes (http.client's read(n) returns b"" instead of raising)."""


@dataclass
class FileRecord:
    """One downloaded file: where it came from and what it hashed to."""

    url: str
    name: str
    bytes: int
    sha256: str
    pinned: bool  # True: equal to entry.sha256[name]; False: no pin, NOT verified


@dataclass
class DownloadResult:
    name: str
    folder: Path
    release: str | None
    status: str  # "downloaded", "present" (verified) or "present-unverified" (no pin, no record)
    files: list[FileRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- what to download ---------------------------------------------------------------------------

def release_files(entry: RegistryEntry, release: str | None = None) -> tuple[str | None, tuple[str, ...],
                                                                               tuple[str, ...]]:
    """(release label or None, urls, files that must be present) of one file set of `entry`.

    Amazon categories have one file set per release (2014/2018/2023); `release=None` takes the first.
    """
    if not entry.releases:
        if release is not None:
            raise ConfigError(f"dataset {entry.name!r} has no releases to choose from (drop --release)")
        return None, entry.urls, entry.files
    labels = [label for label, _ in entry.releases]
    index = 0 if release is None else labels.index(release) if release in labels else -1
    if index < 0:
        raise ConfigError(f"dataset {entry.name!r} has no release {release!r}; it has {', '.join(labels)}")
    label, urls = entry.releases[index]
    return label, urls, entry.file_sets()[index]


def pin_of(entry: RegistryEntry, name: str) -> str | None:
    """The pinned sha256 of a file name, None when not pinned."""
    pin = entry.sha256.get(name)
    return None if pin in (None, NOT_PINNED) else pin


def file_name(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name


def cache_path(data_dir: Path, url: str) -> Path:
    """`<data dir>/.downloads/<host>/<path>`: one place per URL (2014 and 2018 Amazon share names)."""
    parts = urlsplit(url)
    return data_dir / CACHE / parts.netloc / parts.path.lstrip("/")


def mirror_url(url: str, mirror: str | None) -> str:
    """`<mirror>/<host>/<path>` for a mirror, else the URL itself."""
    if not mirror:
        return url
    parts = urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


# -- the stage ----------------------------------------------------------------------------------

def download(entry: RegistryEntry, data_dir: str | os.PathLike, *, release: str | None = None,
             force: bool = False, progress: bool = True, mirror: str | None = None, timeout_s: float = TIMEOUT_S,
             retries: int = RETRIES, log: Callable[[str], None] = print) -> DownloadResult:
    """Download `entry` (one release of it) into `<data_dir>/<entry.folder>/`, verified and unpacked.

    Does nothing when the dataset is already there and matches its pins or its download record,
    unless `force`. Messages (and the loud warning for unpinned files) go to `log`.

    Raises:
        ConfigError: the entry has no such release.
        DownloadError: HTTP error, timeout, dropped connection after `retries` resumes, a bad
            archive, no disk space, or a folder that holds other files (pass force to replace it).
        ChecksumMismatch: a file differs from its pin (it is moved aside, nothing is placed).
    """
    data_dir = Path(data_dir)
    label, urls, files = release_files(entry, release)
    folder = data_dir / entry.folder
    result = DownloadResult(name=entry.name, folder=folder, release=label, status="downloaded")
    what = entry.name + (f" ({label} release)" if label else "")

    if not force:
        present = verify_present(entry, folder, files, progress=progress)
        if present is not None:
            found, verified = present
            result.folder = found
            if verified:
                result.status = "present"
                log(f"{what} is already present and verified in {found} (--force downloads it again)")
            else:
                result.status = "present-unverified"
                log(f"{what} is already present in {found}, but was not placed by `iirg download` and has "
                    "no pinned sha256, so it cannot be verified (--force downloads it again)")
            return result
        if folder.exists() and any(folder.iterdir()):
            raise DownloadError(f"{folder} exists but does not hold {what} ({', '.join(files)}); move it away "
                                "or pass --force to replace it", url=urls[0], file=str(folder))

    downloaded: list[Path] = []
    for url in urls:
        path = cache_path(data_dir, url)
        record = fetch_verified(url, path, pin_of(entry, file_name(url)), source=mirror_url(url, mirror),
                                force=force, progress=progress, timeout_s=timeout_s, retries=retries, log=log)
        if not record.pinned:
            result.warnings.append(f"{record.name}: no pinned sha256; got {record.sha256}")
        result.files.append(record)
        downloaded.append(path)

    place(entry, folder, files, downloaded, result, progress=progress)
    for path in downloaded:
        path.unlink(missing_ok=True)  # zips are unpacked, other files are linked into the folder
        _prune_empty(path.parent, stop=data_dir / CACHE)
    log(f"{what}: {len(urls)} file(s) {'verified' if not result.warnings else 'downloaded (NOT all verified)'}, "
        f"placed in {folder}")
    return result


def verify_present(entry: RegistryEntry, folder: Path, files: tuple[str, ...], *,
                   progress: bool = True) -> tuple[Path, bool] | None:
    """(folder holding `files`, verified?) or None when they are not all there.

    Verified: every required or optional file with a pin or a sha256 in the download record matches
    it. None of them has one (files placed by hand, no pin): (folder, False).

    Raises:
        DownloadError: a file differs from its pin or its record (pass force to download again).
    """
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    found = next((c for c in candidates if all((c / f).is_file() for f in files)), None)
    if found is None:
        return None
    recorded = _read_record(found)
    checked = 0
    for name in (*files, *entry.optional):
        path = found / name
        expected = pin_of(entry, name) or recorded.get(name)
        if expected is None or not path.is_file():
            continue
        actual = sha256_of(path, progress=progress)
        if actual != expected:
            source = "pinned in ingest/registry.py" if pin_of(entry, name) else f"recorded in {RECORD} when placed"
            raise DownloadError(f"present but differs from the sha256 {source} (expected {expected}, got "
                                f"{actual}); pass --force to download it again", url=entry.urls[0], file=str(path))
        checked += 1
    return found, checked > 0


def _read_record(folder: Path) -> dict[str, str]:
    try:
        return dict(json.loads((folder / RECORD).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# -- one file -----------------------------------------------------------------------------------

def fetch_verified(url: str, path: Path, expected: str | None, *, source: str | None = None, force: bool = False,
                   progress: bool = True, timeout_s: float = TIMEOUT_S, retries: int = RETRIES,
                   log: Callable[[str], None] = print) -> FileRecord:
    """`url` (fetched from `source`, a mirror, when given) at `path`, checked against `expected`.

    A file already at `path` passed this check before (it is renamed there only after it) and is
    checked again rather than downloaded. Unpinned (`expected` None): a loud warning through `log`.

    Raises:
        ChecksumMismatch: the download is moved to `<path>.sha256-mismatch`.
        DownloadError: see `fetch`.
    """
    source = source or url
    part = path.with_name(path.name + ".part")
    if force:
        path.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    if not path.exists():
        fetch(source, part, progress=progress, timeout_s=timeout_s, retries=retries, log=log)
        candidate = part
    else:
        candidate = path
    actual = sha256_of(candidate, progress=progress)
    if expected is not None and actual != expected:
        aside = path.with_name(path.name + ".sha256-mismatch")
        os.replace(candidate, aside)
        raise ChecksumMismatch(
            f"sha256 mismatch: expected {expected} (pinned in ingest/registry.py), got {actual}. A corrupted "
            f"transfer, a tampered mirror or a new upstream upload; the file was moved aside to {aside} and "
            "nothing was unpacked", url=source, file=str(path), expected=expected, actual=actual)
    if candidate is part:
        os.replace(part, path)
    if expected is None:
        log(f"WARNING: {path.name} was NOT verified: it has NO pinned sha256.\n"
            f"WARNING:   url    {url}\n"
            f"WARNING:   sha256 {actual}\n"
            "WARNING: compare it with a trusted copy before relying on results, then pin it in ingest/registry.py.")
    return FileRecord(url=url, name=path.name, bytes=path.stat().st_size, sha256=actual, pinned=expected is not None)


def fetch(url: str, part: Path, *, progress: bool = True, timeout_s: float = TIMEOUT_S, retries: int = RETRIES,
          log: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep) -> None:
    """Download `url` into `part`, resuming what is already there; retry dropped transfers.

    Raises:
        DownloadError: HTTP 4xx, no disk space, another process downloading the same file, or still
            failing after `retries` further attempts (the partial file is kept for the next run).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(part, url):
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, part, progress=progress, timeout_s=timeout_s, log=log)
                return
            except (*TRANSIENT, _Interrupted) as error:
                have = part.stat().st_size if part.exists() else 0
                if attempt == retries:
                    raise DownloadError(f"download failed after {attempt + 1} attempt(s): {_describe(error)}; "
                                        f"{have:,} bytes are kept in the .part file, run the command again to "
                                        "resume", url=url, file=str(part)) from error
                delay_s = min(2 ** attempt, 30)
                log(f"{url}: {_describe(error)}; resuming at {have:,} bytes in {delay_s} s")
                sleep(delay_s)


def _fetch_once(url: str, part: Path, *, progress: bool, timeout_s: float, log: Callable[[str], None],
                may_restart: bool = True) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout_s)
    except HTTPError as error:
        if error.code == 416 and offset:
            # Range not satisfiable: the .part is complete (its hash decides) or longer than the file.
            total = _content_range(error.headers.get("Content-Range", ""))[2]
            if total == offset:
                return
            if may_restart:
                part.unlink()
                return _fetch_once(url, part, progress=progress, timeout_s=timeout_s, log=log, may_restart=False)
        if error.code in (408, 429) or error.code >= 500:
            raise
        raise DownloadError(f"HTTP {error.code} {error.reason}", url=url, file=str(part)) from error
    with response:
        length = response.headers.get("Content-Length")
        if offset and response.status == 206:
            start, _, total = _content_range(response.headers.get("Content-Range", ""))
            total = total or (offset + int(length) if length else None)
            if start != offset:
                if not may_restart:
                    raise DownloadError(f"asked for bytes from {offset}, the server sent from {start}",
                                        url=url, file=str(part))
                part.unlink()
                return _fetch_once(url, part, progress=progress, timeout_s=timeout_s, log=log, may_restart=False)
            mode = "ab"
        elif response.status == 200:
            if offset:
                log(f"{url}: the server ignores Range requests; downloading from the start")
            offset, mode = 0, "wb"
            total = offset + int(length) if length else None
        else:
            raise DownloadError(f"unexpected HTTP status {response.status}", url=url, file=str(part))
        if total is not None:
            _require_space(part.parent, total - offset, url=url, file=part)
        with _open_part(part, mode, url) as out, tqdm(
                total=total, initial=offset, desc=part.name.removesuffix(".part"), unit="B", unit_scale=True,
                unit_divisor=1024, disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                try:
                    out.write(chunk)
                except OSError as error:
                    raise DownloadError(f"cannot write: {error}", url=url, file=str(part)) from error
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"connection closed after {size:,} of {total:,} bytes")
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(f"got {size:,} bytes, more than the announced {total:,}; the partial file was "
                            "deleted", url=url, file=str(part))


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """`bytes 100-199/1000` -> (100, 199, 1000); `bytes */1000` -> (None, None, 1000)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None, None
    start, end, total = match.groups()
    return (int(start) if start else None, int(end) if end else None,
            int(total) if total and total != "*" else None)


def _describe(error: BaseException) -> str:
    if isinstance(error, HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, URLError):
        return f"cannot connect ({error.reason})"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


@contextmanager
def _open_part(part: Path, mode: str, url: str):
    try:
        out = open(part, mode)  # noqa: SIM115 - closed by the `with` below; only opening is wrapped
    except OSError as error:
        raise DownloadError(f"cannot write: {error}", url=url, file=str(part)) from error
    with out:
        yield out


@contextmanager
def _exclusive(part: Path, url: str) -> Iterator[None]:
    """Two processes appending to one .part would corrupt it: the second one stops instead."""
    lock = part.with_name(part.name + ".lock")
    with open(lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise DownloadError("another process is downloading this file", url=url, file=str(part)) from error
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def _require_space(folder: Path, needed: int, *, url: str, file: Path) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(f"needs {needed:,} bytes, {folder} has {free:,} free", url=url, file=str(file))


def sha256_of(path: Path, *, progress: bool = True) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(total=size, desc=f"sha256 {path.name.removesuffix('.part')}", unit="B",
                                     unit_scale=True, unit_divisor=1024, leave=False,
                                     disable=not progress or size < (64 << 20)) as bar:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


# -- placing ------------------------------------------------------------------------------------

def place(entry: RegistryEntry, folder: Path, files: tuple[str, ...], downloads: list[Path],
          result: DownloadResult, *, progress: bool = True) -> None:
    """Build `folder` from verified downloads in a temporary sibling and rename it into place."""
    with atomic_dir(folder) as tmp:
        placed: dict[str, str] = {}
        for path, record in zip(downloads, result.files):
            if path.suffix == ".zip":
                placed.update(extract_zip(path, tmp, url=record.url, progress=progress))
            else:
                _link_or_copy(path, tmp / path.name)
                placed[path.name] = record.sha256
        for name in files:
            if not (tmp / name).is_file():
                raise DownloadError(f"the download holds no {name} (has: {', '.join(sorted(placed)[:10])})",
                                    url=result.files[0].url, file=str(folder))
        for name, digest in placed.items():  # e.g. ml-100k's u.data: pinned beyond the zip itself
            if pin_of(entry, name) not in (None, digest):
                raise ChecksumMismatch(f"unpacked {name} differs from its pin (expected {pin_of(entry, name)}, "
                                       f"got {digest}); nothing was placed", url=result.files[0].url,
                                       file=name, expected=pin_of(entry, name), actual=digest)
        (tmp / RECORD).write_text(json.dumps({
            "dataset": entry.name, "release": result.release,
            "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sources": [asdict(record) for record in result.files],
            "files": placed}, indent=2))


def _prune_empty(folder: Path, *, stop: Path) -> None:
    """Remove `folder` and its parents up to and including `stop` while they are empty."""
    while folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link keeps the verified download until the folder is in place (same file system)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def extract_zip(archive: Path, into: Path, *, url: str, progress: bool = True) -> dict[str, str]:
    """Unpack `archive` into `into`, dropping a top-level folder that holds everything
    (ml-1m/ratings.dat -> ratings.dat); {relative path: sha256} of every file written.

    Raises:
        DownloadError: not a zip, a CRC error, no disk space, or a member that is a symlink or
            whose name would land outside `into` (absolute, drive letter, `..`).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info, _member_parts(info, archive, url)) for info in zf.infolist()]
            members = [(info, parts) for info, parts in members if parts and parts[0] != "__MACOSX"]
            tops = {parts[0] for _, parts in members}
            strip = 1 if len(tops) == 1 and all(len(parts) > 1 or info.is_dir() for info, parts in members) else 0
            _require_space(into, sum(info.file_size for info, _ in members), url=url, file=archive)
            root = into.resolve()
            written: dict[str, str] = {}
            with tqdm(total=sum(info.file_size for info, _ in members), desc=f"unzip {archive.name}", unit="B",
                      unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
                for info, parts in members:
                    relative = parts[strip:]
                    if not relative:
                        continue
                    target = into.joinpath(*relative)
                    if not target.resolve().is_relative_to(root):
                        raise DownloadError(f"zip member {info.filename!r} would be written outside {into}",
                                            url=url, file=str(archive))
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    with zf.open(info) as src, open(target, "xb") as out:
                        while chunk := src.read(CHUNK_BYTES):
                            digest.update(chunk)
                            out.write(chunk)
                            bar.update(len(chunk))
                    written["/".join(relative)] = digest.hexdigest()
            return written
    except zipfile.BadZipFile as error:
        raise DownloadError(f"not a valid zip archive: {error}", url=url, file=str(archive)) from error
    except FileExistsError as error:
        raise DownloadError(f"zip archive lists {error.filename} twice", url=url, file=str(archive)) from error


def _member_parts(info: zipfile.ZipInfo, archive: Path, url: str) -> tuple[str, ...]:
    """A member name's path parts; DownloadError for names that escape the folder, and symlinks."""
    name = info.filename.replace("\\", "/")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DownloadError(f"unsafe path in zip: member {info.filename!r} would be written outside the dataset "
                            "folder; nothing was unpacked", url=url, file=str(archive))
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DownloadError(f"zip member {info.filename!r} is a symbolic link; nothing was unpacked",
                            url=url, file=str(archive))
    return parts
