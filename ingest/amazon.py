"""Raw Amazon review dumps (McAuley lab): 2014, 2018 and 2023 releases, reviews + item metadata.

    2014  reviews_<Cat>_5.json.gz / reviews_<Cat>.json.gz   + meta_<Cat>.json.gz (Python dict literals)
    2018  <Cat>_5.json.gz / <Cat>.json.gz                    + meta_<Cat>.json.gz (JSON lines)
    2023  <Cat>.jsonl(.gz)                                   + meta_<Cat>.jsonl(.gz)

    from ingest.amazon import load_amazon
    raw = load_amazon(Path("data/amazon-beauty"), IngestConfig(dataset="amazon-beauty"), IngestReport())

Each review is one interaction: user = reviewerID (2014/2018) or user_id (2023); item = asin
(2014/2018) or parent_asin (2023, the id its metadata uses); ts = unixReviewTime seconds or
timestamp milliseconds / 1000; rating = overall or rating. Reviews are parsed in bulk by pyarrow;
metadata lines are parsed only for items that have reviews (a regex finds the id first), JSON
first and as a Python literal for the 2014 files. Items without metadata are reported as
unknown items and their reviews dropped (use --min-interactions to restore a k-core afterwards).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest.config import IngestConfig
from ingest.errors import IngestError
from ingest.readers import file_column, iter_records, order_by_exact_time, read_json_lines
from ingest.schema import MAX_EXAMPLES, IngestReport, RawData, ts_out_of_range

REVIEW_SCHEMA = pa.schema([
    ("reviewerID", pa.string()), ("user_id", pa.string()),
    ("asin", pa.string()), ("parent_asin", pa.string()),
    ("unixReviewTime", pa.int64()), ("timestamp", pa.int64()),
    ("overall", pa.float64()), ("rating", pa.float64()),
])
_META_ID = re.compile(r"""["'](parent_asin|asin)["']\s*:\s*["']([^"']+)["']""")
_TAGS = re.compile(r"<[^>]{0,2000}>")
# Scalar metadata worth keeping; big lists (also_buy, related, images, reviews) are left out.
# Big id lists in the metadata that nothing here reads; cut out before parsing (speed).
UNUSED_META = ("related", "also_buy", "also_view", "similar_item", "imageURL", "imageURLHighRes", "images",
               "videos", "bought_together")
ATTRIBUTE_FIELDS = ("price", "main_cat", "main_category", "salesRank", "rank", "date", "average_rating",
                    "rating_number", "details")


def amazon_files(folder: Path) -> tuple[Path, Path] | None:
    """(reviews, meta) in a folder, or None when it holds no Amazon review file."""
    metas = [p for p in sorted(folder.iterdir()) if p.is_file() and p.name.startswith("meta_")
             and _is_json_lines_name(p.name)]
    reviews = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith("meta_")
               and _is_json_lines_name(p.name) and not p.name.endswith((".inter.json", ".item.json"))]
    if not reviews:
        return None
    if len(reviews) > 1:
        # reviews_X_5 and reviews_X side by side: prefer the 5-core file, as the papers do.
        five = [p for p in reviews if _category_of(p.name).endswith("_5")]
        if len(five) == 1:
            reviews = five
        else:
            raise IngestError(f"several review files ({', '.join(p.name for p in reviews)}): pass the path of one",
                              file=str(folder))
    return reviews[0], meta_for(reviews[0], metas)


def _is_json_lines_name(name: str) -> bool:
    return name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz"))


def _category_of(name: str) -> str:
    for suffix in (".jsonl.gz", ".json.gz", ".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[len("reviews_"):] if name.startswith("reviews_") else name


def meta_for(reviews: Path, metas: list[Path] | None = None) -> Path:
    """The metadata file that belongs to a review file (meta_<Cat>.*, without the _5)."""
    category = _category_of(reviews.name)
    base = category[:-2] if category.endswith("_5") else category
    if metas is None:
        metas = [p for p in sorted(reviews.parent.glob("meta_*")) if _is_json_lines_name(p.name)]
    for candidate in metas:
        if _category_of(candidate.name) == f"meta_{base}":
            return candidate
    if len(metas) == 1:
        return metas[0]
    raise IngestError(f"no metadata file meta_{base}.json(.gz) / meta_{base}.jsonl(.gz) next to {reviews.name}",
                      file=str(reviews.parent / f"meta_{base}.json.gz"))


def load_amazon(path: Path, config: IngestConfig, report: IngestReport) -> RawData:
    if path.is_file():
        reviews_path, meta_path = path, meta_for(path)
    else:
        found = amazon_files(path)
        if found is None:
            raise IngestError("no Amazon review file (reviews_<Cat>_5.json.gz, <Cat>_5.json.gz or "
                              "<Cat>.jsonl.gz) in folder", file=str(path))
        reviews_path, meta_path = found
    interactions, release = read_reviews(reviews_path, report, progress=config.progress)
    items = read_meta(meta_path, set(interactions["item_id"].unique()), report, progress=config.progress)
    return RawData(items=items, interactions=interactions, files=[reviews_path, meta_path],
                   options={"release": release, "reviews": reviews_path.name, "meta": meta_path.name})


def read_reviews(path: Path, report: IngestReport, *, progress: bool = True) -> tuple[pd.DataFrame, str]:
    """Reviews -> user_id, item_id, ts (seconds), rating, order, line; plus the release guessed
    from the field names ("2014/2018" or "2023")."""
    frame = read_json_lines(path, report, REVIEW_SCHEMA, progress=progress)
    file = str(path)
    is_2023 = frame["user_id"].notna() & frame["reviewerID"].isna()
    release = "2023" if is_2023.mean() > 0.5 else "2014/2018"
    user = frame["reviewerID"].where(frame["reviewerID"].notna(), frame["user_id"])
    item = frame["parent_asin"].where(frame["parent_asin"].notna(), frame["asin"])
    seconds = _numbers(frame["unixReviewTime"])
    millis = _numbers(frame["timestamp"])
    ts = seconds.where(seconds.notna(), np.floor(millis / 1000))
    raw_rating = frame["overall"].where(frame["overall"].notna(), frame["rating"])
    rating = _numbers(raw_rating)
    exact = seconds.where(seconds.notna(), millis / 1000)
    out = pd.DataFrame({"user_id": user, "item_id": item, "ts": ts, "rating": rating, "line": frame["line"],
                        "exact": exact})
    checks = [
        ("missing_field", out["user_id"].isna() | (out["user_id"].astype(str).str.strip() == ""),
         "reviewerID/user_id", lambda r: "missing user id (reviewerID or user_id)"),
        ("missing_field", out["item_id"].isna() | (out["item_id"].astype(str).str.strip() == ""),
         "asin/parent_asin", lambda r: "missing item id (asin or parent_asin)"),
        ("bad_value", _not_number(frame["unixReviewTime"]) | _not_number(frame["timestamp"]),
         "unixReviewTime/timestamp", lambda r: "timestamp is not a number"),
        ("missing_field", ts.isna() & ~(_not_number(frame["unixReviewTime"]) | _not_number(frame["timestamp"])),
         "unixReviewTime/timestamp", lambda r: "missing timestamp (unixReviewTime or timestamp)"),
        ("bad_value", pd.Series(ts_out_of_range(ts), index=out.index), "unixReviewTime/timestamp",
         lambda r: f"timestamp out of range (years 1..9999): {r.ts:g}"),
        ("bad_value", _not_number(raw_rating), "overall/rating", lambda r: "rating is not a number"),
    ]
    keep = pd.Series(True, index=out.index)
    for kind, bad, field, describe in checks:
        bad = bad & keep
        if bad.any():
            rows = out[bad].head(MAX_EXAMPLES)
            errors = [IngestError(describe(r), file=file, line=int(line), field=field) for r, line in
                      zip(rows.itertuples(), rows["line"])]
            report.bulk(kind, int(bad.sum()), [str(e) for e in errors], first=errors[0])
            keep &= ~bad
    out = out[keep].reset_index(drop=True)
    if out.empty:
        raise IngestError("no usable reviews", file=file)
    out["user_id"] = out["user_id"].astype(str).str.strip()
    out["item_id"] = out["item_id"].astype(str).str.strip()
    out["ts"] = pd.array(out["ts"], dtype="Int64")
    out["rating"] = pd.array(out["rating"], dtype="Float64")
    # 2023 timestamps are milliseconds: keep their order within a second.
    out["order"] = order_by_exact_time(out.pop("exact").to_numpy(dtype="float64"), out["line"].to_numpy())
    out["file"] = file_column(len(out), file)
    return out, release


def _numbers(values: pd.Series) -> pd.Series:
    if values.dtype == object:
        return pd.to_numeric(values.where(values.map(_is_number)), errors="coerce").astype("float64")
    return values.astype("float64")


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return bool(np.isfinite(value))
    if isinstance(value, str):
        try:
            return bool(np.isfinite(float(value)))
        except ValueError:
            return False
    return False


def _not_number(values: pd.Series) -> pd.Series:
    """Present but not a number (only possible on the line-by-line path, which keeps raw values)."""
    if values.dtype != object:
        return pd.Series(False, index=values.index)
    return values.notna() & ~values.map(_is_number)


def read_meta(path: Path, wanted: set[str], report: IngestReport, *, progress: bool = True) -> pd.DataFrame:
    """Metadata of the wanted items -> raw item frame. Lines whose id is not wanted are not parsed."""

    def keep(text: str) -> bool:
        match = _META_ID.search(text)
        return match is None or match.group(2) in wanted

    rows = []
    for line, record in iter_records(path, report, literal_fallback=True, keep=keep, skip_keys=UNUSED_META,
                                     progress=progress):
        item_id = record.get("parent_asin") or record.get("asin")
        if not isinstance(item_id, str) or not item_id.strip():
            report.problem("missing_field", "record has no asin / parent_asin", file=str(path), line=line,
                           field="asin")
            continue
        if item_id not in wanted:
            continue
        rows.append(_item_row(record, item_id.strip(), line))
    if not rows:
        raise IngestError("no metadata for any reviewed item (wrong meta file?)", file=str(path))
    frame = pd.DataFrame(rows)
    # The 2018 metadata repeats some products verbatim: identical copies are no error (different
    # ones are, and build_dataset reports them as duplicate items).
    same = frame.drop(columns=["line", "categories"]).assign(categories=frame["categories"].map(tuple))
    frame = frame[~same.duplicated(keep="first")].reset_index(drop=True)
    frame["file"] = str(path)
    return frame


def _item_row(record: dict, item_id: str, line: int) -> dict:
    # The title stays raw: build_dataset's title rules remove HTML residue from every loader's
    # titles alike and count what they changed.
    title = record.get("title")
    title = "" if title is None or (isinstance(title, float) and np.isnan(title)) else str(title)
    description = record.get("description")
    if isinstance(description, list):
        description = " ".join(str(d) for d in description if d)
    brand = record.get("brand") or record.get("store") or ""
    categories = record.get("categories", record.get("category", []))
    attributes = {}
    for key in ATTRIBUTE_FIELDS:
        value = record.get(key)
        if value not in (None, "", [], {}):
            attributes[key] = value
    return {"item_id": item_id, "raw_title": title, "description": _strip_tags(description),
            "brand": str(brand), "categories": _flatten(categories),
            "attributes": json.dumps(attributes, ensure_ascii=False, default=str), "line": line}


def _strip_tags(value) -> str:
    """Metadata text sometimes carries HTML markup (2018): keep the words, not the tags."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return _TAGS.sub(" ", str(value))


def _flatten(values) -> list[str]:
    """2014: [["A", "B"], ["A", "C"]]; 2018/2023: ["A", "B"]; -> unique names in first-seen order."""
    out: list[str] = []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return out
    for v in values:
        if isinstance(v, (list, tuple)):
            out.extend(_flatten(v))
        elif v is not None and str(v).strip():
            out.append(str(v).strip())
    return list(dict.fromkeys(out))
