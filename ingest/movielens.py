"""MovieLens loaders: ml-100k (u.data/u.item), ml-1m and ml-10m (ratings.dat/movies.dat with `::`),
ml-20m/25m/32m/latest (ratings.csv/movies.csv).

    from ingest.movielens import load_movielens
    raw = load_movielens(Path("data/ml-100k"), IngestConfig(dataset="ml-100k"), IngestReport())

Every rating is one interaction (ratings kept in the `rating` column); sequences are ordered by
timestamp and, for equal timestamps, by the line order of the ratings file. Item files of the old
releases are Latin-1: they are decoded as UTF-8 when that works (re-encoded copies) and as Latin-1
otherwise; `--encoding` forces one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest.config import IngestConfig
from ingest.errors import IngestError
from ingest.readers import (canonical_ids, decode_text, drop_bad_timestamps, drop_rows, file_column,
                            parse_numbers, read_bytes, read_delimited, require_content)
from ingest.schema import IngestReport, RawData

# u.genre of ml-100k, used when the file is absent.
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                 "Sci-Fi", "Thriller", "War", "Western"]
NO_GENRES = "(no genres listed)"
_YEAR = re.compile(r"\((\d{4})\)\s*$")

# variant -> (ratings file, items file)
VARIANTS = {"100k": ("u.data", "u.item"), "dat": ("ratings.dat", "movies.dat"),
            "csv": ("ratings.csv", "movies.csv")}


def movielens_variant(folder: Path) -> str | None:
    """Which MovieLens layout a folder holds (None when it is not MovieLens)."""
    for variant, (ratings, _) in VARIANTS.items():
        if (folder / ratings).is_file():
            return variant
    return None


def load_movielens(path: Path, config: IngestConfig, report: IngestReport) -> RawData:
    folder = path if path.is_dir() else path.parent
    variant = movielens_variant(folder)
    if variant is None:
        raise IngestError("no MovieLens ratings file (u.data, ratings.dat or ratings.csv) in folder",
                          file=str(folder))
    ratings_name, items_name = VARIANTS[variant]
    ratings_path, items_path = folder / ratings_name, folder / items_name
    require_content(items_path)
    progress = config.progress
    if variant == "100k":
        table = read_delimited(ratings_path, report, sep="\t", names=["user_id", "item_id", "rating", "ts"],
                               progress=progress)
    elif variant == "dat":
        # `::` is two single-character separators with an empty field between: pyarrow's fast
        # reader needs one character, so split on ':' and require the in-between fields to be empty.
        table = read_delimited(ratings_path, report, sep=":", progress=progress,
                               names=["user_id", "_1", "item_id", "_2", "rating", "_3", "ts"])
        not_double = pc.or_(pc.or_(pc.not_equal(table["_1"], ""), pc.not_equal(table["_2"], "")),
                            pc.not_equal(table["_3"], ""))
        table = drop_rows(table, not_double, report, "malformed_line", file=str(ratings_path), field=None,
                          column="user_id", describe=lambda v: "fields must be separated by '::'")
        table = table.drop_columns(["_1", "_2", "_3"])
    else:
        table = read_delimited(ratings_path, report, sep=",", progress=progress)
        mapping = {"userId": "user_id", "movieId": "item_id", "rating": "rating", "timestamp": "ts"}
        _require_columns(table, mapping, ratings_path)
        table = table.select([*mapping, "line"]).rename_columns([*mapping.values(), "line"])
    interactions = _interactions(table, str(ratings_path), report)

    if variant == "100k":
        items, encoding = _items_100k(folder, config, report)
    elif variant == "dat":
        items, encoding = _items_dat(items_path, config, report)
    else:
        items, encoding = _items_csv(folder, config, report)
    files = [ratings_path, items_path] + [p for p in (folder / "u.genre", folder / "links.csv")
                                           if p.is_file() and variant != "dat"]
    return RawData(items=items, interactions=interactions, files=files,
                   options={"variant": variant, "item_encoding": encoding})


def _require_columns(table: pa.Table, columns, path: Path) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise IngestError(f"missing column(s) {', '.join(missing)}; header has {', '.join(table.column_names[:-1])}",
                          file=str(path), line=1, field=missing[0])


def _interactions(table: pa.Table, file: str, report: IngestReport) -> pd.DataFrame:
    for column in ("user_id", "item_id", "ts"):
        table = parse_numbers(table, column, report, file=file, kind="int")
    table = drop_bad_timestamps(table, "ts", report, file=file)
    table = parse_numbers(table, "rating", report, file=file, kind="float")
    frame = pd.DataFrame({
        "user_id": canonical_ids(table["user_id"]).to_pandas(),
        "item_id": canonical_ids(table["item_id"]).to_pandas(),
        "ts": pd.array(table["ts"].to_numpy(), dtype="Int64"),
        "rating": pd.array(table["rating"].to_numpy(), dtype="Float64"),
        "order": table["line"].to_numpy(),
        "line": table["line"].to_numpy(),
    })
    frame["file"] = file_column(len(frame), file)
    return frame


def _text(path: Path, config: IngestConfig, report: IngestReport) -> tuple[str, str]:
    data = read_bytes(path, progress=False)
    if config.encoding:
        return decode_text(data, path, report, encoding=config.encoding)
    return decode_text(data, path, report, encoding="utf-8", fallback="latin-1")


def _years(titles: pd.Series) -> list:
    """Release year from a title ending in "(1995)", else None."""
    return [int(y) if isinstance(y, str) else None for y in titles.str.extract(_YEAR, expand=False)]


def _attributes(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    records = frame[columns].to_dict("records")
    return [json.dumps({k: v for k, v in r.items() if (isinstance(v, str) and v) or isinstance(v, int)},
                       ensure_ascii=False) for r in records]


def _items_100k(folder: Path, config: IngestConfig, report: IngestReport) -> tuple[pd.DataFrame, str]:
    path = folder / "u.item"
    genres = ML100K_GENRES
    if (folder / "u.genre").is_file():
        text, _ = _text(folder / "u.genre", config, report)
        pairs = [line.rsplit("|", 1) for line in text.splitlines() if line.strip()]
        if pairs and all(len(p) == 2 and p[1].strip().isdigit() for p in pairs):
            genres = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]
    text, encoding = _text(path, config, report)
    names = ["item_id", "raw_title", "release_date", "video_release_date", "imdb_url", *genres]
    table = read_delimited(path, report, sep="|", names=names, data=text.encode("utf-8"))
    table = parse_numbers(table, "item_id", report, file=str(path), kind="int")
    frame = table.to_pandas()
    flags = frame[genres]
    bad = ~flags.isin(["0", "1"])
    if bad.to_numpy().any():
        rows, cols = np.nonzero(bad.to_numpy())
        examples = [IngestError(f"genre flag must be 0 or 1, not {flags.iat[r, c]!r} (flag ignored)",
                                file=str(path), line=int(frame["line"].iat[r]), field=genres[c])
                    for r, c in zip(rows[:5], cols[:5])]
        report.bulk("bad_value", len(rows), [str(e) for e in examples], first=examples[0])
    flag_matrix = (flags == "1").to_numpy()
    frame["categories"] = [[g for g, on in zip(genres, row) if on] for row in flag_matrix]
    frame["year"] = pd.Series(_years(frame["raw_title"]), index=frame.index, dtype=object)
    frame["item_id"] = canonical_ids(table["item_id"]).to_pandas()
    frame["attributes"] = _attributes(frame, ["year", "release_date", "video_release_date", "imdb_url"])
    frame["file"] = str(path)
    return frame[["item_id", "raw_title", "categories", "attributes", "line", "file"]], encoding


def _items_dat(path: Path, config: IngestConfig, report: IngestReport) -> tuple[pd.DataFrame, str]:
    text, encoding = _text(path, config, report)
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3:
            report.problem("malformed_line", f"expected 3 fields separated by '::', found {len(parts)}",
                           file=str(path), line=number)
            continue
        rows.append((parts[0].strip(), parts[1], parts[2], number))
    if not rows:
        raise IngestError("file has no data rows", file=str(path))
    table = pa.table({"item_id": [r[0] for r in rows], "raw_title": [r[1] for r in rows],
                      "genres": [r[2] for r in rows], "line": [r[3] for r in rows]})
    return _movies_frame(table, str(path), report), encoding


def _items_csv(folder: Path, config: IngestConfig, report: IngestReport) -> tuple[pd.DataFrame, str]:
    path = folder / "movies.csv"
    encoding = config.encoding or "utf-8"
    table = read_delimited(path, report, sep=",", quote=True, encoding=encoding, progress=False)
    mapping = {"movieId": "item_id", "title": "raw_title", "genres": "genres"}
    _require_columns(table, mapping, path)
    table = table.select([*mapping, "line"]).rename_columns([*mapping.values(), "line"])
    frame = _movies_frame(table, str(path), report)
    links = folder / "links.csv"
    if links.is_file():
        # imdbId / tmdbId let users join external metadata.
        link_table = read_delimited(links, report, sep=",", quote=True, progress=False)
        if "movieId" in link_table.column_names:
            link_table = parse_numbers(link_table, "movieId", report, file=str(links), kind="int")
            link_frame = link_table.to_pandas().drop(columns="line")
            link_frame["movieId"] = canonical_ids(link_table["movieId"]).to_pandas()
            extra = link_frame.drop_duplicates("movieId").set_index("movieId").reindex(frame["item_id"])
            merged = []
            for attrs, row in zip(frame["attributes"], extra.fillna("").to_dict("records")):
                values = json.loads(attrs)
                values.update({k: v for k, v in row.items() if isinstance(v, str) and v})
                merged.append(json.dumps(values, ensure_ascii=False))
            frame["attributes"] = merged
    return frame, encoding


def _movies_frame(table: pa.Table, file: str, report: IngestReport) -> pd.DataFrame:
    table = parse_numbers(table, "item_id", report, file=file, kind="int")
    frame = table.to_pandas()
    frame["item_id"] = canonical_ids(table["item_id"]).to_pandas()
    genres = frame["genres"].fillna("").str.strip()
    frame["categories"] = [[g for g in s.split("|") if g and g != NO_GENRES] for s in genres]
    frame["year"] = pd.Series(_years(frame["raw_title"]), index=frame.index, dtype=object)
    frame["attributes"] = _attributes(frame, ["year"])
    frame["file"] = file
    return frame[["item_id", "raw_title", "categories", "attributes", "line", "file"]]

