"""Ingest-stage errors; all subclass `common.errors.IirgError`."""

from __future__ import annotations

from common.errors import ConfigError, IirgError

__all__ = ["ChecksumMismatch", "ConfigError", "DatasetNotFound", "DownloadError", "IirgError", "IngestError"]


class IngestError(IirgError):
    """Bad input data. Names the file, the line (1-based, when the format has lines) and the field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [where] if where else []
        if field:
            parts.append(f"field {field!r}")
        super().__init__(f"{' '.join(parts)}: {message}" if parts else message)


class DatasetNotFound(IirgError):
    """A registered dataset is not on disk; the message says what to download and where to put it."""


class DownloadError(IirgError):
    """`iirg download` failed: names the URL and the local file, and what is left on disk."""

    def __init__(self, message: str, *, url: str, file: str | None = None):
        self.url, self.file = url, file
        where = f"{url} -> {file}" if file else url
        super().__init__(f"{where}: {message}")


class ChecksumMismatch(DownloadError):
    """A downloaded file's sha256 differs from the registry's pin."""

    def __init__(self, message: str, *, url: str, file: str, expected: str, actual: str):
        self.expected, self.actual = expected, actual
        super().__init__(message, url=url, file=file)
