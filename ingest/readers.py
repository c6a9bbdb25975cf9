"""Reading raw files with exact error locations: the shared layer under every loader.

Big delimited files are parsed in bulk by pyarrow (serial reader, so every skipped row keeps its
1-based line number), values are checked with vectorized pyarrow compute, and only a broken file
falls back to a line-by-line pass that finds and reports the bad lines. Every problem goes through
`IngestReport`: skipped and counted by default, raised as `IngestError(file, line, field)` in strict
mode. Gzip files (detected by their magic bytes) are read transparently.

    from ingest.readers import read_delimited, parse_numbers
    table = read_delimited("u.data", report, sep="\\t", names=["user_id", "item_id", "rating", "ts"])
    table = parse_numbers(table, "ts", report, file="u.data", kind="int")
"""

from __future__ import annotations

import ast
import codecs
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
from tqdm import tqdm

from ingest.errors import IngestError
from ingest.schema import MAX_EXAMPLES, IngestReport, ts_out_of_range

PROGRESS_MIN_BYTES = 16 << 20  # smaller files load in well under a second: no bar
BLOCK_BYTES = 16 << 20  # JSON-lines block handed to pyarrow at once
INT_PATTERN = r"^[+-]?[0-9]+$"
FLOAT_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
GZIP_MAGIC = b"\x1f\x8b"


# -- files ------------------------------------------------------------------------------------

def is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextmanager
def open_binary(path: str | os.PathLike, *, desc: str | None = None, progress: bool = True):
    """Open a file for binary reading, decompressing gzip; a byte-progress bar for big files."""
    path = Path(path)
    size = path.stat().st_size
    bar = tqdm(total=size, desc=desc or path.name, unit="B", unit_scale=True, unit_divisor=1024,
               leave=False, disable=not progress or size < PROGRESS_MIN_BYTES)
    raw = open(path, "rb")
    try:
        # The bar counts bytes read from disk (compressed bytes for gzip), so it ends at 100%.
        counted = _CountingReader(raw, bar)
        if is_gzip(path):
            with gzip.GzipFile(fileobj=counted, mode="rb") as f:
                yield f
        else:
            yield counted
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IngestError(f"cannot read file: {e}", file=str(path)) from e
    finally:
        raw.close()
        bar.close()


class _CountingReader(io.RawIOBase):
    """A read-only file wrapper that advances a tqdm bar by the bytes it hands out."""

    def __init__(self, raw, bar: tqdm):
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.bar.update(n)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bar.update(len(data))
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.bar.update(len(data))
        return data

    def seekable(self) -> bool:
        return False


def read_bytes(path: str | os.PathLike, *, progress: bool = True) -> bytes:
    with open_binary(path, progress=progress) as f:
        return f.read()


def file_sha256(path: str | os.PathLike, *, progress: bool = True) -> str:
    """sha256 of the file as stored on disk (compressed bytes for .gz)."""
    path = Path(path)
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(total=size, desc=f"sha256 {path.name}", unit="B", unit_scale=True,
                                      leave=False, disable=not progress or size < PROGRESS_MIN_BYTES) as bar:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def require_content(path: str | os.PathLike) -> None:
    """Raise IngestError for a missing or empty (or whitespace-only) file."""
    path = Path(path)
    if not path.is_file():
        raise IngestError("file not found", file=str(path))
    with open_binary(path, progress=False) as f:
        head = f.read(1 << 16)
        while head and not head.strip():
            head = f.read(1 << 16)
    if not head.strip():
        raise IngestError("file is empty", file=str(path))


# -- text -------------------------------------------------------------------------------------

def _decode_error(path: Path, data: bytes, error: UnicodeDecodeError, encoding: str) -> IngestError:
    line_start = data.rfind(b"\n", 0, error.start) + 1
    line = data.count(b"\n", 0, error.start) + 1
    return IngestError(f"not valid {encoding}: byte 0x{data[error.start]:02x} at column "
                       f"{error.start - line_start + 1} (wrong encoding?)", file=str(path), line=line)


def decode_text(data: bytes, path: str | os.PathLike, report: IngestReport, *, encoding: str = "utf-8",
                fallback: str | None = None, on_error: Literal["drop_line", "replace"] = "drop_line",
                ) -> tuple[str, str]:
    """Decode a whole (small) file; returns (text, encoding used).

    `fallback` is tried when `encoding` fails (MovieLens: UTF-8 first, then the Latin-1 of the
    original releases). Otherwise each undecodable line is reported (kind "encoding") and then
    dropped ("drop_line", keeps line numbering) or decoded with U+FFFD ("replace"); strict mode raises.
    """
    path = Path(path)
    if data.startswith(codecs.BOM_UTF8) and encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as e:
        first = e
    if fallback is not None:
        return data.decode(fallback), fallback
    if report.strict:
        raise _decode_error(path, data, first, encoding)
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode(encoding))
        except UnicodeDecodeError as e:
            report.problem("encoding", f"not valid {encoding}: byte 0x{raw[e.start]:02x} at column "
                           f"{e.start + 1} (wrong encoding?); line "
                           f"{'skipped' if on_error == 'drop_line' else 'decoded with U+FFFD'}",
                           file=str(path), line=number)
            out.append("" if on_error == "drop_line" else raw.decode(encoding, errors="replace"))
    return "\n".join(out), encoding


def iter_lines(path: str | os.PathLike, report: IngestReport, *, encoding: str = "utf-8",
               progress: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, text without the line break) for each line; undecodable lines are reported."""
    path = Path(path)
    with open_binary(path, progress=progress) as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                report.problem("encoding", f"not valid {encoding}: byte 0x{raw[e.start]:02x} at column "
                               f"{e.start + 1} (wrong encoding?); line skipped", file=str(path), line=number)
                continue
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text.rstrip("\r\n")


# -- delimited tables -------------------------------------------------------------------------

def read_delimited(path: str | os.PathLike, report: IngestReport, *, sep: str,
                   names: list[str] | None = None, quote: bool = False, encoding: str = "utf-8",
                   progress: bool = True, data: bytes | None = None) -> pa.Table:
    """Read a delimited file into string columns plus `line` (int64, 1-based line in the file).

    `names=None` takes the column names from the first line (a header); otherwise the file has no
    header. Rows with the wrong number of fields are reported as "malformed_line" and skipped,
    blank lines are ignored, undecodable lines are reported as "encoding" and skipped.
    `data` parses these bytes instead of reading `path` (which then only names the file in errors).
    Raises IngestError for an empty file or one without data rows.
    """
    path = Path(path)
    encoding = "utf8" if encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig") else encoding
    if data is None:
        require_content(path)
    elif not data.strip():
        raise IngestError("file is empty", file=str(path))
    invalid: list[tuple[int, str, int, int]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    def parse(source) -> pa.Table:
        read_opts = pcsv.ReadOptions(use_threads=False, column_names=names, encoding=encoding,
                                     block_size=1 << 22)
        parse_opts = pcsv.ParseOptions(delimiter=sep, quote_char='"' if quote else False,
                                       ignore_empty_lines=False, invalid_row_handler=on_invalid)
        column_names = names if names is not None else read_header(path, sep=sep, quote=quote,
                                                                    encoding=encoding, data=data)
        convert = pcsv.ConvertOptions(column_types={name: pa.string() for name in column_names},
                                      strings_can_be_null=False, quoted_strings_can_be_null=False)
        return pcsv.read_csv(source, read_options=read_opts, parse_options=parse_opts,
                             convert_options=convert)

    try:
        if data is not None:
            table = parse(io.BytesIO(data))
        else:
            with open_binary(path, progress=progress) as f:
                table = parse(f)
    except pa.ArrowInvalid as e:
        if "utf8" not in str(e).lower() and "utf-8" not in str(e).lower():
            raise IngestError(f"cannot parse as {sep!r}-separated text: {e}", file=str(path)) from e
        # Some line is not valid text: blank out exactly those lines (keeps the numbering), reparse.
        invalid.clear()
        raw = data if data is not None else read_bytes(path, progress=progress)
        text, _ = decode_text(raw, path, report, encoding="utf-8")
        encoding = "utf8"
        table = parse(io.BytesIO(text.encode("utf-8")))
    if names is None:
        table = table.rename_columns([c.lstrip("\ufeff").strip() for c in table.column_names])
    table = table.rename_columns([free_line_name(c) for c in table.column_names])
    first_line = 1 if names is None else 0  # line of the row before the first data row
    bad_lines = np.array(sorted(number for number, *_ in invalid), dtype=np.int64)
    total = table.num_rows + len(bad_lines)
    lines = np.arange(first_line + 1, first_line + 1 + total, dtype=np.int64)
    if len(bad_lines):
        lines = np.setdiff1d(lines, bad_lines, assume_unique=True)
    table = table.append_column("line", pa.array(lines))
    # Blank lines arrive as rows of empty fields: ignore them silently, like every CSV reader.
    if table.num_rows and table.num_columns > 1:
        blank = None
        for name in table.column_names[:-1]:
            empty = pc.equal(table[name], "")
            blank = empty if blank is None else pc.and_(blank, empty)
        table = table.filter(pc.invert(blank))
    invalid = [row for row in invalid if row[1].strip()]
    if invalid:
        errors = [IngestError(f"expected {expected} fields separated by {sep!r}, found {actual}: "
                              f"{_clip(text)!r}", file=str(path), line=number)
                  for number, text, expected, actual in sorted(invalid)[:MAX_EXAMPLES]]
        report.bulk("malformed_line", len(invalid), [str(e) for e in errors], first=errors[0])
    if table.num_rows == 0:
        raise IngestError("file has no data rows", file=str(path))
    return table


LINE = "line"  # the column every reader adds: 1-based line (row) of the record in its file
SOURCE_LINE = "line_"  # what a source column that is itself called "line" is renamed to


def free_line_name(name: str) -> str:
    """Keep the name `line` for our line numbers: a source column `line` becomes `line_`."""
    return SOURCE_LINE if name == LINE else name


def read_header(path: str | os.PathLike, *, sep: str, quote: bool = True, encoding: str = "utf-8",
                data: bytes | None = None) -> list[str]:
    """Column names from the first line (every column is then read as text: ids such as "0042"
    must not turn into numbers before they are checked)."""
    import csv

    if data is not None:
        first = data.split(b"\n", 1)[0]
    else:
        with open_binary(path, progress=False) as f:
            first = f.readline()
    try:
        text = first.decode(encoding).lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise IngestError(f"header is not valid {encoding}", file=str(path), line=1) from e
    row = next(csv.reader([text], delimiter=sep, quotechar='"' if quote else None,
                          quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE), [])
    return row


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# -- vectorized value checks ------------------------------------------------------------------

def drop_rows(table: pa.Table, bad, report: IngestReport, kind: str, *, file: str, field: str | None,
              describe: Callable[[object], str], column: str | None = None) -> pa.Table:
    """Report the rows where `bad` is true (first examples with file:line) and remove them.

    `describe` turns the row's value in `column` (default: `field`) into the message.
    """
    bad = pc.fill_null(bad, True)
    count = pc.sum(bad).as_py() or 0
    if not count:
        return table
    shown = table.filter(bad).slice(0, MAX_EXAMPLES)
    values = shown[column or field].to_pylist() if (column or field) in shown.column_names else [None] * shown.num_rows
    lines = shown["line"].to_pylist() if "line" in shown.column_names else [None] * shown.num_rows
    errors = [IngestError(describe(v), file=file, line=line, field=field) for v, line in zip(values, lines)]
    report.bulk(kind, int(count), [str(e) for e in errors], first=errors[0])
    return table.filter(pc.invert(bad))


def drop_bad_timestamps(table: pa.Table, column: str, report: IngestReport, *, file: str,
                        field: str | None = None, text_column: str | None = None) -> pa.Table:
    """Report ("bad_value") and remove rows whose Unix seconds in `column` lie outside years
    1..9999 (schema.MIN_TS..MAX_TS); nulls are left alone. `text_column` holds the value as written."""
    bad = ts_out_of_range(table[column].to_numpy(zero_copy_only=False))
    return drop_rows(table, pa.array(bad), report, "bad_value", file=file, field=field or column,
                     column=text_column or column,
                     describe=lambda v: f"timestamp out of range (years 1..9999): {_clip(str(v))!r}")


def parse_numbers(table: pa.Table, column: str, report: IngestReport, *, file: str,
                  kind: Literal["int", "float"] = "int", field: str | None = None,
                  optional: bool = False) -> pa.Table:
    """Replace a string column by int64/float64 values; rows that do not parse are reported
    ("missing_value" for empty, "bad_value" otherwise) and dropped. `optional` keeps empty as null."""
    field = field or column
    target = pa.int64() if kind == "int" else pa.float64()
    try:
        # Fast path: clean columns cast in one C++ pass; anything odd takes the checked path below.
        parsed = pc.cast(table[column], target)
        if kind == "float" and not pc.all(pc.is_finite(parsed)).as_py():
            raise pa.ArrowInvalid("non-finite value")
        if kind == "int" and pc.any(pc.match_substring(table[column], "x", ignore_case=True)).as_py():
            raise pa.ArrowInvalid("hexadecimal")  # Arrow reads "0x10" as 16; an id like that is text
        return table.set_column(table.column_names.index(column), column, parsed)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = pc.utf8_trim_whitespace(table[column])
    table = table.set_column(table.column_names.index(column), column, values)
    empty = pc.equal(values, "")
    if not optional:
        table = drop_rows(table, empty, report, "missing_value", file=file, field=field, column=column,
                          describe=lambda v: "missing value")
        values = table[column]
        empty = pc.equal(values, "")
    pattern = INT_PATTERN if kind == "int" else FLOAT_PATTERN
    bad = pc.and_(pc.invert(pc.match_substring_regex(values, pattern)), pc.invert(empty))
    noun = "an integer" if kind == "int" else "a number"
    table = drop_rows(table, bad, report, "bad_value", file=file, field=field, column=column,
                      describe=lambda v: f"not {noun}: {_clip(str(v))!r}")
    values = table[column]
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    try:
        parsed = pc.cast(values, target)
    except pa.ArrowInvalid:
        # Matches the pattern but overflows int64: find those rows the slow way.
        def fits(v):
            return v is None or _fits(v, kind)
        ok = pa.array([fits(v) for v in values.to_pylist()])
        table = drop_rows(table, pc.invert(ok), report, "bad_value", file=file, field=field, column=column,
                          describe=lambda v: f"out of range: {_clip(str(v))!r}")
        values = table[column]
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        parsed = pc.cast(values, target)
    return table.set_column(table.column_names.index(column), column, parsed)


def _fits(value: str, kind: str) -> bool:
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        return False
    return -(2 ** 63) <= number < 2 ** 63 if kind == "int" else np.isfinite(number)


def file_column(n: int, file: str) -> pd.Categorical:
    """A constant `file` column that costs one byte per row."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[file])


def order_by_exact_time(exact: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Source-order ranks that follow sub-second time: `ts` holds whole seconds, so two events in
    the same second are ordered by this rank (exact time, then line) instead of by line alone."""
    exact = np.where(np.isnan(exact), np.inf, exact)
    order = np.empty(len(exact), dtype=np.int64)
    order[np.lexsort((line, exact))] = np.arange(len(exact), dtype=np.int64)
    return order


def canonical_ids(array) -> pa.Array:
    """int64 ids -> their decimal text ("007" and "7" become the same id)."""
    return pc.cast(array, pa.string())


# -- JSON -------------------------------------------------------------------------------------

def read_json_document(path: str | os.PathLike, report: IngestReport, *, progress: bool = True,
                       duplicate_kind: str = "duplicate_key", record: str = "entry") -> tuple[object, str]:
    """Parse a whole-document JSON file; returns (value, decoded text for locating keys).

    Invalid JSON cannot be skipped in part, so it raises IngestError (file, line) in every mode.
    Undecodable bytes are reported and replaced by U+FFFD (strict mode raises).
    A key repeated in one object keeps its FIRST value, as duplicate ids do everywhere else
    (json.loads would silently keep the last). Repeats are reported: top-level keys as
    `duplicate_kind` ("duplicate_user", "duplicate_item"; `record` names them in the message) with
    the repeat's line, keys inside a top-level value as "duplicate_key" with that value's line.
    """
    path = Path(path)
    require_content(path)
    text, _ = decode_text(read_bytes(path, progress=progress), path, report, on_error="replace")
    repeats: list[tuple[dict, str]] = []

    def first_wins(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                repeats.append((out, key))
            else:
                out[key] = value
        return out

    try:
        value = json.loads(text, object_pairs_hook=first_wins)
    except json.JSONDecodeError as e:
        raise IngestError(f"invalid JSON: {e.msg} (column {e.colno})", file=str(path), line=e.lineno) from e
    if repeats:
        _report_repeated_keys(path, text, value, repeats, report, duplicate_kind, record)
    return value, text


def _report_repeated_keys(path: Path, text: str, value: object, repeats: list[tuple[dict, str]],
                          report: IngestReport, kind: str, record: str) -> None:
    key_line = KeyLines(text)
    parent_of = {id(v): k for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}
    seen: dict[str, int] = {}
    for obj, key in repeats:
        if obj is value:
            seen[key] = seen.get(key, 0) + 1
            lines = key_line.all(key)
            first = lines[0] if lines else None
            # A one-line document is all line 1; otherwise the repeat's own line, when it starts one.
            line = lines[seen[key]] if len(lines) > seen[key] else (1 if key_line.one_line else None)
            where = f" (first on line {first})" if first is not None and not key_line.one_line else ""
            report.problem(kind, f"{record} {key!r} appears again{where}; the first one is kept",
                           file=str(path), line=line, field=key)
        else:
            parent = parent_of.get(id(obj))
            report.problem("duplicate_key", f"key {key!r} appears twice in one object; the first value is kept",
                           file=str(path), line=key_line(parent) if parent is not None else None,
                           field=key if parent is None else f"{parent}.{key}")


class KeyLines:
    """Line of a record's `"key":` in a JSON text, to point error messages at the record.

    json.loads keeps no positions, so one anchored regex pass (on first use) maps each key that
    starts a line (pretty-printed or one-record-per-line files) to its line. A single-line document
    is all line 1; keys found nowhere give None.
    """

    # Anchored at line starts: scanning every quote of 40k-character descriptions is 100x slower.
    _KEY = re.compile(r'^[ \t]*[{,]?[ \t]*"((?:[^"\\\n]|\\.)*+)"[ \t]*:', re.MULTILINE)

    def __init__(self, text: str):
        self.text = text
        self.one_line = "\n" not in text.rstrip("\n")
        self._lines: dict[str, list[int]] | None = None

    def __call__(self, key: str) -> int | None:
        lines = self.all(key)
        return lines[0] if lines else None

    def all(self, key: str) -> list[int]:
        """Every line on which `key` starts a line, in order (a repeated key has several)."""
        if self.one_line:
            return [1]
        if self._lines is None:
            self._lines, line, last = {}, 1, 0
            for match in self._KEY.finditer(self.text):
                line += self.text.count("\n", last, match.start())
                last = match.start()
                self._lines.setdefault(match.group(1), []).append(line)
        return self._lines.get(key, [])


def parse_record(text: str, *, literal_fallback: bool, skip_keys: re.Pattern | None = None) -> dict:
    """One JSON-lines record; with `literal_fallback`, Python dict literals too (Amazon 2014 meta).

    `skip_keys` (see `skip_keys_pattern`) cuts unneeded flat values out of the text first:
    ast.literal_eval costs ~0.4 ms for a 2014 metadata line, mostly in its `related` lists.
    Raises ValueError with the reason when the line is neither.
    """
    if skip_keys is not None:
        cut = skip_keys.sub("", text)
        if cut != text:
            try:
                return parse_record(cut, literal_fallback=literal_fallback)
            except ValueError:
                pass  # the cut text is broken (the pattern matched inside a string): parse it whole
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if not literal_fallback:
            raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from e
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e2:
            raise ValueError(f"neither JSON nor a Python literal: {e.msg} (column {e.colno})") from e2
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, found {type(value).__name__}")
    return value


def skip_keys_pattern(keys: tuple[str, ...]) -> re.Pattern:
    """Matches `"key": {flat dict}` / `"key": [flat list]` (either quote style) plus a trailing comma."""
    names = "|".join(re.escape(k) for k in keys)
    return re.compile(r"""(["'])(?:%s)\1\s*:\s*(?:\{[^{}]*\}|\[[^\[\]]*\])\s*,?\s*""" % names)


def iter_records(path: str | os.PathLike, report: IngestReport, *, literal_fallback: bool = False,
                 keep: Callable[[str], bool] | None = None, skip_keys: tuple[str, ...] = (),
                 progress: bool = True) -> Iterator[tuple[int, dict]]:
    """(line, record) for each JSON-lines record. Lines for which `keep(text)` is false are
    skipped unparsed (a cheap pre-filter); invalid lines are reported as "invalid_json".
    `skip_keys` are flat dict/list fields the caller never reads (dropped before parsing)."""
    path = Path(path)
    pattern = skip_keys_pattern(skip_keys) if skip_keys else None
    for number, text in iter_lines(path, report, progress=progress):
        if not text.strip() or (keep is not None and not keep(text)):
            continue
        try:
            yield number, parse_record(text, literal_fallback=literal_fallback, skip_keys=pattern)
        except ValueError as e:
            report.problem("invalid_json", str(e), file=str(path), line=number)


def read_json_lines(path: str | os.PathLike, report: IngestReport, schema: pa.Schema, *,
                    progress: bool = True) -> pd.DataFrame:
    """The fields of `schema` from every record of a JSON-lines file, plus `line`.

    Blocks of lines are parsed by pyarrow in bulk; a block pyarrow rejects (an invalid line, a
    field of another type) is re-read line by line so each bad line is reported and skipped.
    Fields absent from a record are null; the caller checks the values.
    """
    path = Path(path)
    require_content(path)
    parse_opts = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore",
                                    newlines_in_values=False)
    frames = []
    next_line = 1
    for block in _line_blocks(path, progress=progress):
        n_lines = block.count(b"\n")
        numbers = np.arange(next_line, next_line + n_lines, dtype=np.int64)
        next_line += n_lines
        if block.startswith(b"\n") or b"\n\n" in block or b"\n\r\n" in block:
            # Blank lines: drop them but keep every other line's number.
            lines = block.split(b"\n")[:-1]
            keep = [i for i, raw in enumerate(lines) if raw.strip()]
            numbers = numbers[keep]
            block = b"".join(lines[i] + b"\n" for i in keep)
            if not keep:
                continue
        try:
            table = pjson.read_json(io.BytesIO(block), read_options=pjson.ReadOptions(use_threads=True),
                                    parse_options=parse_opts)
            if table.num_rows != len(numbers):
                raise pa.ArrowInvalid("row count does not match line count")
            frame = table.to_pandas()
            frame["line"] = numbers
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            frame = _records_slowly(path, block.split(b"\n")[:len(numbers)], numbers, schema, report)
        frames.append(frame)
    if not frames:
        raise IngestError("file has no records", file=str(path))
    return pd.concat(frames, ignore_index=True)


def _line_blocks(path: Path, *, progress: bool) -> Iterator[bytes]:
    """The file (decompressed) in blocks of whole lines, each ending with a line break."""
    carry = b""
    with open_binary(path, progress=progress) as f:
        while True:
            chunk = f.read(BLOCK_BYTES)
            if not chunk:
                break
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            yield data[:cut + 1]
    if carry:
        yield carry + b"\n"


def _records_slowly(path: Path, lines: list[bytes], numbers: np.ndarray, schema: pa.Schema,
                    report: IngestReport) -> pd.DataFrame:
    rows, kept = [], []
    for raw, number in zip(lines, numbers.tolist()):
        try:
            text = raw.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as e:
            report.problem("encoding", f"not valid utf-8: byte 0x{raw[e.start]:02x} at column {e.start + 1} "
                           "(wrong encoding?); line skipped", file=str(path), line=number)
            continue
        try:
            record = parse_record(text, literal_fallback=False)
        except ValueError as e:
            report.problem("invalid_json", str(e), file=str(path), line=number)
            continue
        rows.append({name: record.get(name) for name in schema.names})
        kept.append(number)
    frame = pd.DataFrame(rows, columns=schema.names, dtype=object)
    frame["line"] = np.array(kept, dtype=np.int64)
    return frame
