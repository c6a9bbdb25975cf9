"""`iirg download` against a local HTTP server on 127.0.0.1 (never the internet): fixture archives
built here in the real MovieLens / Amazon layouts, served with Range support, dropped connections,
a server that ignores Range, and one that stalls.

The registered URLs are fetched through the mirror (`mirror=` / $IIRG_DOWNLOAD_MIRROR), so the real
registry entries are used; tests that need their fixture's pin pass a copy of the entry with it
(`dataclasses.replace(entry, sha256=...)`), the way the download function takes its entry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import socket
import threading
import time
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import cli
import ingest.download as download_module
from ingest.download import MIRROR_ENV, RECORD, cache_path, download
from ingest.errors import ChecksumMismatch, DownloadError
from ingest.registry import ENTRIES, NOT_PINNED, lookup, resolve

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_PATH = urlsplit(ML1M_URL).netloc + urlsplit(ML1M_URL).path  # where the mirror serves it


# -- the local server ---------------------------------------------------------------------------

class FixtureServer:
    """Serves `files` ({"host/path": bytes}) as `<url>/host/path`, honouring `Range: bytes=N-`.

    `drop_after[path] = n`: the next response for that path sends n body bytes, then closes.
    `ignore_range`: answer 200 with the whole file to every Range request.
    `stall_s`: wait this long before the body (client timeouts).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.ignore_range = False
        self.stall_s = 0.0
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                body = server.files.get(path)
                range_header = self.headers.get("Range")
                if body is None:
                    server.requests.append((path, range_header, 404))
                    self.send_error(404)
                    return
                start = 0
                if range_header and not server.ignore_range:
                    start = int(range_header.removeprefix("bytes=").rstrip("-"))
                if start >= len(body) and start > 0:
                    server.requests.append((path, range_header, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206 if start else 200
                server.requests.append((path, range_header, status))
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                time.sleep(server.stall_s)
                drop = server.drop_after.pop(path, None)
                if drop is not None:
                    self.wfile.write(body[start:start + drop])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FixtureServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Safety net: any URL the downloader opens must be on 127.0.0.1 (this machine is offline, and
    a test that forgot its mirror must fail here rather than try the real host)."""
    real = download_module.urlopen

    def guarded(request, *args, **kwargs):
        host = urlsplit(request.full_url).hostname
        assert host == "127.0.0.1", f"a test tried to reach {request.full_url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download_module, "urlopen", guarded)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


# -- fixture archives ---------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ml1m_zip(padding_bytes: int = 0, extra: dict[str, bytes] | None = None) -> bytes:
    """A MovieLens-1M-shaped zip: ml-1m/ratings.dat, movies.dat, README (+ incompressible padding
    so a transfer can be cut in the middle)."""
    ratings = "".join(f"{user}::{item}::{1 + (user + item) % 5}::{978300000 + 10 * user + item}\n"
                      for user in range(1, 6) for item in range(1, 6))
    movies = "".join(f"{item}::Movie {item} ({1990 + item})::Drama\n" for item in range(1, 6))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-1m/", b"")
        zf.writestr("ml-1m/ratings.dat", ratings)
        zf.writestr("ml-1m/movies.dat", movies)
        zf.writestr("ml-1m/README", "fixture")
        if padding_bytes:
            zf.writestr(zipfile.ZipInfo("ml-1m/padding.bin"), random.Random(0).randbytes(padding_bytes))
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def pinned_ml1m(data: bytes):
    """The registered ml-1m entry with its zip pinned to the fixture's hash."""
    return replace(lookup("ml-1m"), sha256={"ml-1m.zip": sha256(data)})


def gz_lines(lines: list[str]) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode(), mtime=0)


def no_leftovers(data_dir: Path, name: str) -> None:
    """No temporary folder of an interrupted placement (atomic_dir's `.<name>.*`)."""
    assert not [p for p in data_dir.iterdir() if p.name.startswith(f".{name}.")]


# -- tests --------------------------------------------------------------------------------------

def test_download_verifies_unpacks_and_resolve_finds_it(server, tmp_path, capsys):
    data = ml1m_zip()
    server.files[ML1M_PATH] = data
    entry = pinned_ml1m(data)
    result = download(entry, tmp_path, mirror=server.url, progress=False)

    assert result.status == "downloaded" and result.folder == tmp_path / "ml-1m"
    assert [(f.name, f.sha256, f.pinned) for f in result.files] == [("ml-1m.zip", sha256(data), True)]
    assert not result.warnings and "WARNING" not in capsys.readouterr().out
    folder = tmp_path / "ml-1m"
    assert (folder / "ratings.dat").is_file() and (folder / "movies.dat").is_file()  # ml-1m/ dropped
    record = json.loads((folder / RECORD).read_text())
    assert record["sources"][0]["url"] == ML1M_URL and record["sources"][0]["sha256"] == sha256(data)
    assert record["files"]["ratings.dat"] == sha256((folder / "ratings.dat").read_bytes())
    assert not (tmp_path / ".downloads").exists()  # the zip is gone once unpacked
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: data dirs are shared
    no_leftovers(tmp_path, "ml-1m")

    target = resolve("ml-1m", data_dir=tmp_path)
    assert target.path == folder and target.format == "movielens"
    assert cli.main(["ingest", "--dataset", "ml-1m", "--data-dir", str(tmp_path), "--run",
                     str(tmp_path / "run"), "--no-progress"]) == 0

    # A second run finds it present and verified: no request, nothing changed.
    before = len(server.requests)
    again = download(entry, tmp_path, mirror=server.url, progress=False)
    assert again.status == "present" and len(server.requests) == before
    assert "already present and verified" in capsys.readouterr().out


def test_resume_after_dropped_connection(server, tmp_path):
    data = ml1m_zip(padding_bytes=200_000)
    server.files[ML1M_PATH] = data
    server.drop_after[ML1M_PATH] = 50_000
    entry = pinned_ml1m(data)
    part = cache_path(tmp_path, ML1M_URL).with_name("ml-1m.zip.part")

    with pytest.raises(DownloadError, match="run the command again to resume") as error:
        download(entry, tmp_path, mirror=server.url, progress=False, retries=0)
    assert ML1M_PATH in str(error.value) and str(part) in str(error.value)
    assert part.stat().st_size == 50_000
    assert not (tmp_path / "ml-1m").exists()

    result = download(entry, tmp_path, mirror=server.url, progress=False, retries=0)
    assert server.requests[-1] == (ML1M_PATH, "bytes=50000-", 206)
    assert result.files[0].sha256 == sha256(data) and (tmp_path / "ml-1m" / "padding.bin").is_file()
    assert not part.exists()


def test_dropped_connection_is_resumed_within_one_call(server, tmp_path):
    data = ml1m_zip(padding_bytes=100_000)
    server.files[ML1M_PATH] = data
    server.drop_after[ML1M_PATH] = 30_000
    messages = []
    download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False, retries=1, log=messages.append)
    assert [r[1:] for r in server.requests] == [(None, 200), ("bytes=30000-", 206)]
    assert any("resuming at 30,000 bytes" in m for m in messages)


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = ml1m_zip(padding_bytes=50_000)
    server.files[ML1M_PATH] = data
    server.ignore_range = True
    part = cache_path(tmp_path, ML1M_URL).with_name("ml-1m.zip.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # appended to, this would never hash right
    messages = []
    result = download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False, log=messages.append)
    assert server.requests == [(ML1M_PATH, "bytes=1000-", 200)]
    assert any("ignores Range" in m for m in messages)
    assert result.files[0].sha256 == sha256(data) and (tmp_path / "ml-1m" / "ratings.dat").is_file()


def test_complete_part_is_not_downloaded_again(server, tmp_path):
    """A .part that already holds the whole file (interrupted between download and rename): 416."""
    data = ml1m_zip()
    server.files[ML1M_PATH] = data
    part = cache_path(tmp_path, ML1M_URL).with_name("ml-1m.zip.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False)
    assert server.requests == [(ML1M_PATH, f"bytes={len(data)}-", 416)]
    assert (tmp_path / "ml-1m" / "movies.dat").is_file()


def test_sha256_mismatch_stops_before_unpacking(server, tmp_path, monkeypatch, capsys):
    """The real registry pin against a fixture zip: the command fails naming both hashes."""
    data = ml1m_zip()
    server.files[ML1M_PATH] = data
    monkeypatch.setenv(MIRROR_ENV, server.url)
    assert cli.main(["download", "ml-1m", "--data-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    expected = lookup("ml-1m").sha256["ml-1m.zip"]
    assert f"expected {expected}" in err and f"got {sha256(data)}" in err and "ml-1m.zip" in err
    assert not (tmp_path / "ml-1m").exists()
    no_leftovers(tmp_path, "ml-1m")
    cached = cache_path(tmp_path, ML1M_URL)
    assert not cached.exists() and not cached.with_name("ml-1m.zip.part").exists()
    assert cached.with_name("ml-1m.zip.sha256-mismatch").read_bytes() == data  # kept aside to inspect

    with pytest.raises(ChecksumMismatch) as error:  # the next run starts over, and fails the same way
        download(lookup("ml-1m"), tmp_path, mirror=server.url, progress=False)
    assert (error.value.expected, error.value.actual) == (expected, sha256(data))
    assert server.requests[-1] == (ML1M_PATH, None, 200)


@pytest.mark.parametrize("member", ["../evil.dat", "ml-1m/../../evil.dat", "/tmp/evil.dat", "C:/evil.dat",
                                    "ml-1m\\..\\..\\evil.dat"])
def test_path_traversal_zip_is_rejected(server, tmp_path, member):
    data = ml1m_zip(extra={member: b"pwned"})
    server.files[ML1M_PATH] = data
    data_dir = tmp_path / "data"
    with pytest.raises(DownloadError, match="unsafe path in zip"):
        download(pinned_ml1m(data), data_dir, mirror=server.url, progress=False)
    assert not (data_dir / "ml-1m").exists() and not list(tmp_path.rglob("evil.dat"))
    no_leftovers(data_dir, "ml-1m")


def test_symlink_member_is_rejected(server, tmp_path):
    link = zipfile.ZipInfo("ml-1m/passwd")
    link.external_attr = (0o120777 << 16)  # S_IFLNK
    buffer = io.BytesIO(ml1m_zip())
    with zipfile.ZipFile(buffer, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    data = buffer.getvalue()
    server.files[ML1M_PATH] = data
    with pytest.raises(DownloadError, match="symbolic link"):
        download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False)
    assert not (tmp_path / "ml-1m").exists()


def test_unpinned_amazon_files_warn_print_their_hash_and_ingest(server, tmp_path, monkeypatch, capsys):
    base = "snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
    reviews = gz_lines([json.dumps({"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 4.0,
                                    "unixReviewTime": 1000 * u + i}) for u in range(4) for i in range(5)])
    meta = gz_lines([repr({"asin": f"B{i}", "title": f"Product {i}", "categories": [["Sports"]]})
                     for i in range(5)])
    server.files[base + "reviews_Sports_and_Outdoors_5.json.gz"] = reviews
    server.files[base + "meta_Sports_and_Outdoors.json.gz"] = meta
    monkeypatch.setenv(MIRROR_ENV, server.url + "/")
    argv = ["download", "amazon-sports", "--release", "2014", "--data-dir", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.count("NO pinned sha256") == 2
    assert sha256(reviews) in captured.err and sha256(meta) in captured.err
    assert "NOT all verified" in captured.out
    folder = tmp_path / "amazon-sports"
    assert (folder / "reviews_Sports_and_Outdoors_5.json.gz").read_bytes() == reviews  # gzipped, as ingest reads
    assert resolve("amazon-sports", data_dir=tmp_path).format == "amazon"
    assert cli.main(["ingest", "--dataset", "amazon-sports", "--data-dir", str(tmp_path), "--run",
                     str(tmp_path / "run"), "--no-progress"]) == 0

    # Present: verified against the hashes recorded when the files were placed.
    assert cli.main(argv) == 0
    assert "already present and verified" in capsys.readouterr().out
    # Another release of the same category would mix two releases in one folder: refused.
    assert cli.main([*argv[:3], "2018", *argv[4:]]) == 2
    assert "pass --force to replace it" in capsys.readouterr().err


def test_unpacked_files_with_pins_are_checked_too(server, tmp_path):
    """ml-100k pins its unpacked files (u.data, ...) beside the zip: both must match."""
    data = ml1m_zip()
    server.files[ML1M_PATH] = data
    entry = replace(lookup("ml-1m"), sha256={"ml-1m.zip": sha256(data), "ratings.dat": "0" * 64})
    with pytest.raises(ChecksumMismatch, match="unpacked ratings.dat differs from its pin"):
        download(entry, tmp_path, mirror=server.url, progress=False)
    assert not (tmp_path / "ml-1m").exists()
    no_leftovers(tmp_path, "ml-1m")


def test_present_but_changed_is_an_error(server, tmp_path):
    data = ml1m_zip()
    server.files[ML1M_PATH] = data
    entry = pinned_ml1m(data)
    download(entry, tmp_path, mirror=server.url, progress=False)
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1::5::1\n")
    with pytest.raises(DownloadError, match=f"differs from the sha256 recorded in {RECORD}"):
        download(entry, tmp_path, mirror=server.url, progress=False)
    result = download(entry, tmp_path, mirror=server.url, progress=False, force=True)
    assert result.status == "downloaded" and "5::1\n" not in (tmp_path / "ml-1m" / "ratings.dat").read_text()


def test_present_without_pin_or_record_is_left_alone_unverified(tmp_path):
    folder = tmp_path / "ml-1m" / "ml-1m"  # unzipped by hand, one folder deeper
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::1::5::1\n")
    (folder / "movies.dat").write_text("1::A (1990)::Drama\n")
    messages = []
    result = download(lookup("ml-1m"), tmp_path, progress=False, log=messages.append)
    assert result.status == "present-unverified" and result.folder == folder
    assert "cannot be verified" in messages[0]


def test_other_files_in_the_folder_need_force(server, tmp_path):
    data = ml1m_zip()
    server.files[ML1M_PATH] = data
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="--force"):
        download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False)
    assert server.requests == []
    download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False, force=True)
    assert not (tmp_path / "ml-1m" / "notes.txt").exists() and (tmp_path / "ml-1m" / "ratings.dat").is_file()


def test_http_errors_and_timeouts_name_the_url(server, tmp_path):
    entry = pinned_ml1m(b"")
    with pytest.raises(DownloadError, match="HTTP 404") as error:
        download(entry, tmp_path, mirror=server.url, progress=False)
    assert f"{server.url}/{ML1M_PATH}" in str(error.value)

    server.files[ML1M_PATH] = ml1m_zip()
    server.stall_s = 1.0
    with pytest.raises(DownloadError, match="timed out") as error:
        download(entry, tmp_path, mirror=server.url, progress=False, timeout_s=0.2, retries=0)
    assert ML1M_PATH in str(error.value)
    assert not (tmp_path / "ml-1m").exists()


def test_archive_without_the_dataset_files_is_an_error(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-1m/README", "no ratings here")
    data = buffer.getvalue()
    server.files[ML1M_PATH] = data
    with pytest.raises(DownloadError, match="holds no ratings.dat"):
        download(pinned_ml1m(data), tmp_path, mirror=server.url, progress=False)
    assert not (tmp_path / "ml-1m").exists()
    no_leftovers(tmp_path, "ml-1m")


def test_unknown_release_and_unknown_name(tmp_path, capsys):
    assert cli.main(["download", "amazon-beauty", "--release", "1999", "--data-dir", str(tmp_path)]) == 2
    assert "no release '1999'" in capsys.readouterr().err
    assert cli.main(["download", "ml-2m", "--data-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'ml-2m'" in capsys.readouterr().err


def test_every_movielens_zip_is_pinned_and_amazon_is_not():
    for entry in ENTRIES.values():
        for url in entry.urls:
            name = url.rsplit("/", 1)[1]
            pin = entry.sha256.get(name)
            assert pin is not None and len(pin) == 64 and int(pin, 16) >= 0, (entry.name, name)
    beauty = lookup("amazon-beauty")
    assert all(beauty.sha256.get(url.rsplit("/", 1)[1], NOT_PINNED) == NOT_PINNED for url in beauty.urls)
