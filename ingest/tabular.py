"""Generic CSV/TSV/Parquet interactions (+ optional item file) with a column mapping.

    iirg ingest --dataset clicks.csv --format csv --user-col uid --item-col sku \\
        --timestamp-col time --items-path products.parquet --title-col name --run runs/clicks
    load_dataset(IngestConfig(dataset="clicks.csv", format="csv", user_col="uid", item_col="sku"))

Defaults: columns user_id, item_id, timestamp (optional), rating (optional); item file columns
item_id, title, description / categories (split on "|") / brand when present, every other column
goes to attributes. A folder may hold interactions.<ext> (or ratings.<ext>) and items.<ext>. Files without a header
line take `column_names` (e.g. Amazon's ratings_<Cat>.csv: user_id,item_id,rating,timestamp).
Ids are opaque text (Parquet integers become their decimal text). Timestamps: Unix seconds,
milliseconds (auto: values above 1e11) or date text (ISO 8601), stored as Unix seconds; when the
file has a timestamp column, an event without one is skipped (missing_value), never held out.
For Parquet, the "line" in error messages is the 1-based row number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest.config import IngestConfig
from ingest.errors import IngestError
from ingest.readers import (FLOAT_PATTERN, INT_PATTERN, LINE, SOURCE_LINE, drop_bad_timestamps, drop_rows,
                            file_column, free_line_name, order_by_exact_time, parse_numbers, read_delimited,
                            read_header, require_content)
from ingest.schema import IngestReport, RawData

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq", ".csv.gz", ".tsv.gz")
INTERACTION_STEMS = ("interactions", "ratings", "reviews", "events")
ITEM_STEMS = ("items", "item", "products", "movies")
EXACT = "_exact_seconds"  # float timestamp column kept beside the whole seconds, for ordering


def is_table_file(path: Path) -> bool:
    return path.name.lower().endswith(TABLE_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def tabular_files(folder: Path) -> tuple[Path, Path | None] | None:
    """(interactions, items or None) by file name in a folder; None when there is no such file."""
    tables = [p for p in sorted(folder.iterdir()) if p.is_file() and is_table_file(p)]
    inter = [p for p in tables if _stem(p) in INTERACTION_STEMS]
    items = [p for p in tables if _stem(p) in ITEM_STEMS]
    if not inter:
        return None
    return inter[0], (items[0] if items else None)


def load_tabular(path: Path, config: IngestConfig, report: IngestReport) -> RawData:
    items_path = Path(config.items_path) if config.items_path else None
    if path.is_dir():
        found = tabular_files(path)
        if found is None:
            raise IngestError(f"no interactions file ({'/'.join(INTERACTION_STEMS)}.csv/.tsv/.parquet) in folder",
                              file=str(path))
        path, default_items = found
        items_path = items_path or default_items
    if items_path is not None and not items_path.is_file():
        raise IngestError("item file not found", file=str(items_path))

    user_col, item_col = _col(config.user_col) or "user_id", _col(config.item_col) or "item_id"
    names = [n.strip() for n in config.column_names.split(",")] if config.column_names else None
    table = read_table(path, config, report, names=names)
    file = str(path)
    columns = table.column_names
    _require(columns, [user_col, item_col], path, "user_col/item_col")
    ts_col = _col(config.timestamp_col) or ("timestamp" if "timestamp" in columns else None)
    rating_col = _col(config.rating_col) or ("rating" if "rating" in columns else None)
    _require(columns, [_col(c) for c in (config.timestamp_col, config.rating_col) if c], path,
             "timestamp_col/rating_col")

    for column, name in ((user_col, "user"), (item_col, "item")):
        table = drop_rows(table, pc.equal(pc.utf8_trim_whitespace(table[column]), ""), report, "missing_value",
                          file=file, field=column, describe=lambda v, n=name: f"missing {n} id")
    unit = None
    if ts_col:
        table, unit = parse_timestamps(table, ts_col, config.timestamp_unit or "auto", report, file=file)
    if rating_col:
        table = parse_numbers(table, rating_col, report, file=file, kind="float", optional=True)
    line = table["line"].to_numpy()
    frame = pd.DataFrame({
        "user_id": pc.utf8_trim_whitespace(table[user_col]).to_pandas(),
        "item_id": pc.utf8_trim_whitespace(table[item_col]).to_pandas(),
        # ts keeps whole seconds; sub-second times (ms, ISO fractions) still order events
        "order": order_by_exact_time(table[EXACT].to_numpy(zero_copy_only=False).astype("float64"), line)
        if ts_col else line,
        "line": line,
    })
    if ts_col:
        frame["ts"] = pd.array(table[ts_col].to_pandas(), dtype="Int64")
    if rating_col:
        frame["rating"] = pd.array(table[rating_col].to_pandas(), dtype="Float64")
    frame["file"] = file_column(len(frame), file)

    options = {"interactions": path.name, "user_col": user_col, "item_col": item_col, "timestamp_col": ts_col,
               "timestamp_unit": unit, "rating_col": rating_col}
    files = [path]
    if items_path is not None:
        items, item_options = read_items(items_path, config, report)
        files.append(items_path)
        options.update(item_options)
    else:
        ids = frame["item_id"].drop_duplicates()
        items = pd.DataFrame({"item_id": ids.to_numpy(), "raw_title": ""})
        options["items"] = "none: items are the ids seen, titled 'Item <id>'"
    return RawData(items=items, interactions=frame, files=files, options=options)


def _col(name: str | None) -> str | None:
    """A mapped column name as the readers expose it (a source column `line` is `line_`)."""
    return free_line_name(name) if name else name


def _require(columns: list[str], wanted: list[str], path: Path, option: str) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        have = ", ".join(c for c in columns if c != "line")
        raise IngestError(f"missing column(s) {', '.join(repr(c) for c in missing)} (columns: {have}); "
                          f"map yours with {option}", file=str(path), line=1, field=missing[0])


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def read_table(path: Path, config: IngestConfig, report: IngestReport, *,
               names: list[str] | None = None) -> pa.Table:
    """A CSV/TSV (with a header line unless `names` are given) or Parquet file as string
    columns + `line`."""
    if is_parquet(path):
        return read_parquet_as_text(path)
    require_content(path)
    sep = config.delimiter or _default_delimiter(path, config.encoding or "utf-8")
    return read_delimited(path, report, sep=sep, quote=True, names=names, encoding=config.encoding or "utf-8",
                          progress=config.progress)


def _default_delimiter(path: Path, encoding: str) -> str:
    name = path.name.lower()
    if name.endswith((".tsv", ".tab", ".tsv.gz")):
        return "\t"
    if name.endswith(".txt"):
        header = read_header(path, sep="\t", quote=True, encoding=encoding)
        return "\t" if len(header) > 1 else ","
    return ","


def read_parquet_as_text(path: Path) -> pa.Table:
    """Parquet columns as text (so CSV and Parquet share one checking path), `line` = row number."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise IngestError(f"not a readable Parquet file: {e}", file=str(path)) from e
    if table.num_rows == 0:
        raise IngestError("file has no data rows", file=str(path))
    columns = []
    for name in table.column_names:
        columns.append(_column_as_text(table[name], str(path), name))
    out = pa.table(dict(zip([free_line_name(c) for c in table.column_names], columns)))
    return out.append_column("line", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))


def _column_as_text(column: pa.ChunkedArray, file: str, name: str) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        seconds = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
        text = pc.cast(seconds, pa.string())
    elif pa.types.is_floating(kind):
        # Ids stored as float (a NaN made pandas upcast them): 7.0 -> "7".
        finite = pc.fill_null(pc.is_finite(column), True)
        integral = pc.fill_null(pc.equal(pc.floor(column), column), True)
        if pc.all(pc.and_(finite, integral)).as_py() is not False:
            text = pc.cast(pc.cast(column, pa.int64()), pa.string())
        else:
            text = pc.cast(column, pa.string())
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_decimal(kind):
        text = pc.cast(column, pa.string())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.cast(column, pa.string())
    elif pa.types.is_dictionary(kind):
        text = pc.cast(column.cast(kind.value_type), pa.string())
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        # Category lists: join with "|" so the categories separator applies.
        text = pa.chunked_array([pc.binary_join(pc.cast(chunk, pa.list_(pa.string())), "|")
                                 for chunk in column.chunks], type=pa.string())
    else:
        raise IngestError(f"column type {kind} is not supported", file=file, field=name)
    return pc.fill_null(text, "")


def parse_timestamps(table: pa.Table, column: str, unit: str, report: IngestReport, *,
                     file: str) -> tuple[pa.Table, str]:
    """Replace a text timestamp column by Unix seconds (int64).

    Rows with an empty timestamp (also a truncated last line `3,4,`) are skipped as
    "missing_value": kept, they would sort last and so become the user's test item. Rows outside
    years 1..9999 (`1e30`, `9223372036854775808`) are skipped as "bad_value".
    """
    values = pc.utf8_trim_whitespace(table[column])
    table = drop_rows(table.set_column(table.column_names.index(column), column, values),
                      pc.equal(values, ""), report, "missing_value", file=file, field=column,
                      describe=lambda v: "missing timestamp")
    values = table[column]
    present = pc.not_equal(values, "")
    numeric = pc.or_(pc.match_substring_regex(values, INT_PATTERN), pc.match_substring_regex(values, FLOAT_PATTERN))
    if unit == "auto":
        n_present = pc.sum(present).as_py() or 0
        n_numeric = pc.sum(pc.and_(present, numeric)).as_py() or 0
        if n_present == 0 or n_numeric * 2 >= n_present:
            numbers = pc.cast(pc.filter(values, pc.and_(present, numeric)), pa.float64())
            median = float(np.median(np.abs(numbers.to_numpy()))) if len(numbers) else 0.0
            unit = "ms" if median > 1e11 else "s"
        else:
            unit = "iso"
    if unit in ("s", "ms"):
        table = parse_numbers(table.append_column("_text", values), column, report, file=file, kind="float")
        seconds = table[column]
        if unit == "ms":
            seconds = pc.divide(seconds, 1000.0)
        table = table.set_column(table.column_names.index(column), column, seconds)
        table = drop_bad_timestamps(table, column, report, file=file, text_column="_text")
        table = table.append_column(EXACT, table[column])
        seconds = pc.cast(pc.floor(table[column]), pa.int64())
        return table.set_column(table.column_names.index(column), column, seconds).drop_columns(["_text"]), unit
    parsed = pd.to_datetime(pd.Series(values.to_pylist(), dtype=object).replace("", None), errors="coerce",
                            utc=True, format="mixed")
    exact = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    bad = pa.array((parsed.isna() & pd.Series(present.to_pylist())).to_numpy())
    table = table.append_column("_text", values).append_column(EXACT, pa.array(exact.to_numpy(), pa.float64()))
    table = table.set_column(table.column_names.index(column), column,
                             pa.array(pd.array(np.floor(exact), dtype="Int64"), type=pa.int64()))
    table = drop_rows(table, bad, report, "bad_value", file=file, field=column, column="_text",
                      describe=lambda v: f"not a date/time: {v!r}")
    table = drop_bad_timestamps(table, column, report, file=file, text_column="_text")
    return table.drop_columns(["_text"]), "iso"


def read_items(path: Path, config: IngestConfig, report: IngestReport) -> tuple[pd.DataFrame, dict]:
    table = read_table(path, config, report)
    columns = table.column_names
    id_col = _col(config.item_id_col) or "item_id"
    title_col = _col(config.title_col) or "title"
    _require(columns, [id_col], path, "item_id_col")
    _require(columns, [_col(c) for c in (config.title_col, config.description_col, config.categories_col,
                                         config.brand_col) if c], path, "title_col/description_col/...")
    file = str(path)
    table = drop_rows(table, pc.equal(pc.utf8_trim_whitespace(table[id_col]), ""), report, "missing_value",
                      file=file, field=id_col, describe=lambda v: "missing item id")
    frame = table.to_pandas()
    picked = {"item_id": id_col,
              "raw_title": title_col if title_col in columns else None,
              "description": _col(config.description_col) or ("description" if "description" in columns else None),
              "categories": _col(config.categories_col) or ("categories" if "categories" in columns else None),
              "brand": _col(config.brand_col) or ("brand" if "brand" in columns else None)}
    items = pd.DataFrame({"item_id": frame[id_col].str.strip(), "line": frame["line"]})
    for target, source in picked.items():
        if target != "item_id":
            items[target] = frame[source] if source else ""
    sep = config.categories_sep or "|"
    items["categories"] = [[c.strip() for c in s.split(sep) if c.strip()] if s else []
                           for s in items["categories"]]
    rest = [c for c in columns if c not in set(picked.values()) | {"line"}]
    records = frame[rest].to_dict("records") if rest else [{} for _ in range(len(frame))]
    items["attributes"] = [json.dumps({(LINE if k == SOURCE_LINE else k): v for k, v in r.items()
                                       if v not in ("", None)}, ensure_ascii=False) for r in records]
    items["file"] = file
    used = {f"items_{k}_col": v for k, v in picked.items()}
    return items, {"items": path.name, **used, "categories_sep": sep}
