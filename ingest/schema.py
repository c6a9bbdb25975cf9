"""The canonical dataset every loader produces and every later stage reads.

Items
    item_id (str)      the source's own id, as text ("1", "B000123", ...)
    title (str)        cleaned, *unique* identifier the LLM uses to name the item
    raw_title (str)    the title as found in the source
    description (str)  free text ("" when absent)
    categories (list[str]), brand (str), attributes (str: a JSON object of the rest)

Interactions (one row per event, ordered)
    user_id (str), item_id (str)
    pos (int64)        0-based position in the user's sequence
    ts (Int64)         Unix seconds when the source has timestamps, else <NA>; within years 1..9999
                       (MIN_TS..MAX_TS), and never <NA> for some events and not others
    rating (Float64)   explicit rating when known, else <NA>
    split (str)        leave-one-out label: the last item of each sequence is "test", the one
                       before it "valid", everything earlier "train" (the standard protocol)

Sequences are ordered by (ts, source order): ties in timestamps (common in MovieLens) keep the
order in which the source listed them, so the order is stable and reproducible.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from common.files import atomic_dir
from ingest.errors import IngestError

ITEM_COLUMNS = ["item_id", "title", "raw_title", "description", "categories", "brand", "attributes"]
INTERACTION_COLUMNS = ["user_id", "item_id", "pos", "ts", "rating", "split"]
SPLITS = ("train", "valid", "test")
MAX_EXAMPLES = 5  # first examples kept per error class in the report

_WHITESPACE = re.compile(r"\s+")
# Valid timestamps: years 1..9999, what datetime and ISO 8601 can write. Anything beyond (1e30,
# 2**63) is a data error, and would overflow int64 when converted (milliseconds, floats).
MIN_TS = -62135596800  # 0001-01-01T00:00:00Z
MAX_TS = 253402300799  # 9999-12-31T23:59:59Z


def ts_out_of_range(seconds) -> np.ndarray:
    """True where a Unix-seconds value lies outside MIN_TS..MAX_TS; missing values (NaN/NA) are not."""
    values = pd.to_numeric(pd.Series(seconds), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(values) & ~((values >= MIN_TS) & (values <= MAX_TS))


@dataclass
class IngestReport:
    """Counts of skipped input by error class, with the first examples (file:line, field)."""

    strict: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    # Values that were repaired, not skipped (titles that were no names): never an error, also
    # not in strict mode, and not part of `skipped`.
    fixed: dict[str, int] = field(default_factory=dict)
    fixed_examples: dict[str, list[str]] = field(default_factory=dict)

    def problem(self, kind: str, message: str, *, file: str | None = None, line: int | None = None,
                field: str | None = None) -> None:
        """Record one bad record; in strict mode raise instead of skipping it."""
        error = IngestError(message, file=file, line=line, field=field)
        if self.strict:
            raise error
        self.counts[kind] = self.counts.get(kind, 0) + 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(str(error))

    def bulk(self, kind: str, count: int, examples: list[str], *, first: IngestError | None = None) -> None:
        """Record `count` bad records found by a vectorized check (examples already formatted).

        In strict mode raise `first` (the first bad record, with its file, line and field) when
        given, else a summary error.
        """
        if count == 0:
            return
        if self.strict:
            if first is not None:
                raise first
            raise IngestError(f"{count} bad records ({kind}); first: {examples[0]}")
        self.counts[kind] = self.counts.get(kind, 0) + count
        shown = self.examples.setdefault(kind, [])
        shown.extend(examples[: MAX_EXAMPLES - len(shown)])

    def fix(self, kind: str, count: int, examples: list[str]) -> None:
        """Record `count` values repaired by rule `kind` (examples already formatted)."""
        if count == 0:
            return
        self.fixed[kind] = self.fixed.get(kind, 0) + count
        shown = self.fixed_examples.setdefault(kind, [])
        shown.extend(examples[: MAX_EXAMPLES - len(shown)])

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {"strict": self.strict, "skipped": self.skipped, "counts": self.counts,
                "examples": self.examples, "fixed": self.fixed, "fixed_examples": self.fixed_examples}


@dataclass
class RawData:
    """What a loader returns: the frames `build_dataset` takes, the files read and the choices made."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    files: list[Path]
    options: dict = field(default_factory=dict)


@dataclass
class Dataset:
    """A canonical dataset: items + ordered, split-labelled interactions (see module docstring)."""

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    report: IngestReport = field(default_factory=IngestReport)
    source: dict = field(default_factory=dict)  # format, files, options: how it was made

    def checksum(self) -> str:
        """sha256 of the canonical content (ids, order, splits, titles), independent of file format."""
        h = hashlib.sha256()
        # Column by column, hashing each column's values as one Arrow text array (UTF-8 bytes +
        # int64 offsets): the same values always give the same bytes, and 20M rows take a second
        # instead of the minute a CSV rendering takes.
        for frame, columns in ((self.interactions, ("user_id", "item_id", "pos", "split")),
                               (self.items, ("item_id", "title", "description"))):
            for column in columns:
                h.update(f"\x1e{column}\x1e{len(frame)}".encode())
                text = pa.array(frame[column].astype(str), from_pandas=True)
                if isinstance(text, pa.ChunkedArray):
                    text = text.combine_chunks()
                text = text.cast(pa.large_string())
                _, offsets, data = text.buffers()
                ends = np.frombuffer(offsets, dtype=np.int64)[text.offset: text.offset + len(text) + 1]
                h.update((ends - ends[0]).tobytes())
                if data is not None:
                    h.update(memoryview(data)[ends[0]: ends[-1]])
        return h.hexdigest()

    def stats(self) -> dict:
        inter = self.interactions
        lengths = inter.groupby("user_id").size()
        return {
            "users": int(inter["user_id"].nunique()),
            "items": int(len(self.items)),
            "interacted_items": int(inter["item_id"].nunique()),
            "interactions": int(len(inter)),
            "splits": {s: int((inter["split"] == s).sum()) for s in SPLITS},
            "mean_sequence_length": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "skipped_records": self.report.skipped,
        }

    def sequences(self, splits: tuple[str, ...] = SPLITS) -> dict[str, list[str]]:
        """user_id -> item ids in order, keeping only the given split labels."""
        inter = self.interactions[self.interactions["split"].isin(splits)]
        return {u: g.tolist() for u, g in inter.groupby("user_id", sort=False)["item_id"]}

    # -- persistence: written to a temporary folder, then renamed, so nothing is half-written --
    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self.items.to_parquet(tmp / "items.parquet", index=False)
            self.interactions.to_parquet(tmp / "interactions.parquet", index=False)
            meta = {"name": self.name, "source": self.source, "checksum": self.checksum(),
                    "stats": self.stats(), "report": self.report.to_dict()}
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Dataset":
        directory = Path(directory)
        meta_path = directory / "dataset.json"
        if not meta_path.exists():
            raise IngestError("not a canonical dataset folder (no dataset.json)", file=str(directory))
        meta = json.loads(meta_path.read_text())
        saved = meta["report"]
        report = IngestReport(strict=saved["strict"], counts=saved["counts"], examples=saved["examples"],
                              fixed=saved.get("fixed", {}), fixed_examples=saved.get("fixed_examples", {}))
        items = pd.read_parquet(directory / "items.parquet")
        items["categories"] = items["categories"].map(list)
        return cls(name=meta["name"], items=items,
                   interactions=pd.read_parquet(directory / "interactions.parquet"),
                   report=report, source=meta["source"])



def clean_text(value: object) -> str:
    """html.unescape (twice: sources such as Amazon double-escape `&amp;amp;`) and collapse whitespace."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = html.unescape(html.unescape(str(value)))
    return _WHITESPACE.sub(" ", text).strip()


# -- titles: rules for text that is no name --------------------------------------------------
# A complete tag (`<br/>`, `</span>`, `<a href="..">`, `<!-- -->`); "<= 30 in" or "a < b" are no tags.
_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?|!--.*?--)>")
# The end of a tag whose start was cut off or stripped by a cleaner: `" />`, `alt="x" />`, `class="a">`.
_TAG_TAIL = re.compile(r"""(?:\s*[A-Za-z_:][\w:.-]*\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))+\s*/?>|\s*["']?\s*/>""")
# The start of a tag cut off at the end of the text: `... <img src="a.jpg`.
_TAG_HEAD = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9:-]*)(?:\s[^<>]*)?$")
# A final "." that belongs to the name: abbreviations ("Tiffany & Co.", "32 Chicken St.", "Jr."),
# initials ("P.C.", "John Q."), ellipses ("Wait..."). Never stripped.
_ABBREVIATION = re.compile(r"(?i)(?:\b(?:co|corp|inc|ltd|llc|plc|bros|st|ave|blvd|rd|hwy|dr|jr|sr|mr|mrs|ms|"
                           r"mt|ft|no|vol|etc|dept|intl|assn|est|jan|feb|mar|apr|aug|sept?|oct|nov|dec)"
                           r"|\b[a-z]|\.)\.$")
# Cleaners such as LC-Rec's/UniSRec's `clean_text` append "." to every field. When at least this
# share of the titles ends in ".", the dot is that artifact and is stripped; otherwise a final "." is
# the source's own (real data: 7 of 2420 Office titles, 28 of 20033 Yelp titles) and is kept.
CLEANER_DOT_SHARE = 0.5
# A title equal to a category name carried by at least this many items (and at least
# CATEGORY_TITLE_SHARE of all items) is a placeholder, not a name (Yelp: "Noodles", 311 items).
CATEGORY_TITLE_MIN_ITEMS = 5
CATEGORY_TITLE_SHARE = 0.01
_JUNK_TITLE = r"(?i)(unknown|n/?a|none|null|-+|\.+)?"  # placeholders that fall back, like ""


def strip_html(text: str) -> str:
    """Remove tags and tag fragments left in a (clean_text'ed) title; keep the words between them."""
    if "<" not in text and ">" not in text:
        return text
    text = _TAG_HEAD.sub(" ", _TAG_TAIL.sub(" ", _TAG.sub(" ", text)))
    return _WHITESPACE.sub(" ", text).strip()


def unique_titles(items: pd.DataFrame, max_fallback_chars: int = 60,
                  report: IngestReport | None = None) -> pd.Series:
    """Clean titles and make each one name exactly one item.

    Text that is no name is cleaned (HTML tags and tag fragments; the "." a cleaner appended to
    every title) or, when it is a bare category name (one of the item's own categories, or one
    many items carry), replaced by the fallback. Empty or junk titles fall back to the start of the
    description, then to "Item <id>". Each rule's changes are counted in `report.fixed`
    (title_html, title_trailing_dot, title_category) with examples. Titles shared by several items
    (18 in ml-100k, 1434 chains in Yelp) get " (#<item_id>)" appended on every sharing item, so the
    LLM's text maps back to exactly one item id.
    """
    cleaned = items["raw_title"].map(clean_text)
    titles = cleaned.map(strip_html)
    rules = {"title_html": titles != cleaned}

    dotted = titles.str.endswith(".") & ~titles.str.fullmatch(r"\.*")
    nonempty = int((titles != "").sum())
    strip_dot = pd.Series(False, index=titles.index)
    if nonempty and dotted.sum() >= CLEANER_DOT_SHARE * nonempty:
        strip_dot = dotted & ~titles.str.contains(_ABBREVIATION)
        titles = titles.where(~strip_dot, titles.str.slice(0, -1).str.rstrip())
    rules["title_trailing_dot"] = strip_dot

    folded = titles.str.casefold()
    categories = items["categories"] if "categories" in items else pd.Series([[]] * len(items), index=items.index)
    own = [[c.casefold() for c in cs] if isinstance(cs, (list, tuple, np.ndarray)) else [] for cs in categories]
    carried: dict[str, int] = {}
    for names in own:
        for name in set(names):
            carried[name] = carried.get(name, 0) + 1
    many = max(CATEGORY_TITLE_MIN_ITEMS, int(np.ceil(CATEGORY_TITLE_SHARE * len(items))))
    junk = titles.str.fullmatch(_JUNK_TITLE)  # falls back anyway (ml-100k's "unknown" is also a genre)
    category = pd.Series([t in names or carried.get(t, 0) >= many for t, names in zip(folded, own)],
                         index=titles.index, dtype=bool) & ~junk
    titles = titles.where(~category, "")
    rules["title_category"] = category

    junk = titles.str.fullmatch(_JUNK_TITLE)
    fallback = items["description"].map(clean_text).str.slice(0, max_fallback_chars).str.strip()
    titles = titles.where(~junk, fallback)
    titles = titles.where(titles != "", "Item " + items["item_id"])
    shared = titles.duplicated(keep=False)
    titles = titles.where(~shared, titles + " (#" + items["item_id"] + ")")
    # A suffixed title could still collide with a real title of that exact text: suffix again.
    while titles.duplicated().any():
        again = titles.duplicated(keep="first")
        titles = titles.where(~again, titles + " (#" + items["item_id"] + ")")
    if report is not None:
        why = {"title_html": "HTML residue removed", "title_trailing_dot": "cleaner's trailing '.' removed",
               "title_category": "a category name, not a name: falls back like an empty title"}
        for kind, changed in rules.items():
            rows = items[changed.to_numpy()].head(MAX_EXAMPLES)
            examples = [str(IngestError(f"{why[kind]}: {raw!r} -> {titles.at[i]!r}",
                                        file=str(rows.at[i, "file"]) if "file" in rows else None,
                                        line=None if "line" not in rows or pd.isna(rows.at[i, "line"])
                                        else int(rows.at[i, "line"]), field="title"))
                        for i, raw in zip(rows.index, rows["raw_title"])]
            report.fix(kind, int(changed.sum()), examples)
    return titles


def kcore(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Iteratively drop users and items with fewer than k interactions until both hold."""
    if k <= 1:
        return interactions
    users = pd.factorize(interactions["user_id"])[0]
    items = pd.factorize(interactions["item_id"])[0]
    keep = np.ones(len(interactions), dtype=bool)
    while True:
        user_n = np.bincount(users[keep], minlength=users.max() + 1 if len(users) else 0)
        item_n = np.bincount(items[keep], minlength=items.max() + 1 if len(items) else 0)
        still = keep & (user_n[users] >= k) & (item_n[items] >= k)
        if (still == keep).all():
            return interactions[keep]
        keep = still


def sequence_order(user_id: pd.Series, ts: pd.Series, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order by (user_id, ts with missing last, order), stable; plus pos and length per sorted row.

    Integer codes + numpy lexsort: sorting 20M rows on strings and nullable ints in pandas is
    ~10x slower. Users come out in string order, as `sort_values("user_id")` would give.
    """
    codes = pd.factorize(user_id, sort=True)[0].astype(np.int64)
    missing = ts.isna().to_numpy()
    ts_values = ts.fillna(0).to_numpy(dtype="int64")
    present = ts_values[~missing]
    low = int(present.min()) if len(present) else 0
    span = (int(present.max()) - low + 2) if len(present) else 1
    if span < 2 ** 40 and (codes.max() + 1 if len(codes) else 0) < 2 ** 22:
        # One int64 key (user code, then ts with missing last): one stable radix sort instead of
        # a four-key lexsort. Rows already in source order need nothing more.
        key = (codes << 40) | np.where(missing, span - 1, ts_values - low)
        if len(order) < 2 or (np.diff(order) > 0).all():
            rows = np.argsort(key, kind="stable")
        else:
            rows = np.lexsort((order, key))
    else:
        rows = np.lexsort((order, ts_values, missing, codes))
    sorted_codes = codes[rows]
    counts = np.bincount(sorted_codes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(len(rows), dtype=np.int64) - starts[sorted_codes]
    return rows, pos, counts[sorted_codes]


def label_splits(n: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Leave-one-out labels from each row's sequence length n and position pos."""
    split = np.full(len(pos), "train", dtype=object)
    split[pos == n - 2] = "valid"
    split[pos == n - 1] = "test"
    return split


def _report_rows(report: IngestReport, kind: str, bad: pd.DataFrame, field: str, describe) -> None:
    """Report rows of a frame that carry their origin as `where` ("file:line") or `file` + `line`."""
    head = bad.head(MAX_EXAMPLES)
    errors = []
    for index, value in zip(head.index, head[field]):
        file, line = None, None
        if "where" in head:
            file, _, line_text = str(head.at[index, "where"]).rpartition(":")
            file, line = (file, int(line_text)) if line_text.isdigit() else (str(head.at[index, "where"]), None)
        else:
            if "file" in head:
                file = str(head.at[index, "file"])
            if "line" in head and not pd.isna(head.at[index, "line"]):
                line = int(head.at[index, "line"])
        errors.append(IngestError(describe(value), file=file, line=line, field=field))
    report.bulk(kind, len(bad), [str(e) for e in errors], first=errors[0])


def build_dataset(name: str, items: pd.DataFrame, interactions: pd.DataFrame, report: IngestReport,
                  *, source: dict, min_interactions: int = 0) -> Dataset:
    """Turn loader output into a canonical `Dataset`.

    Args:
        items: item_id, raw_title and optionally description, categories (list), brand, attributes.
        interactions: user_id, item_id, optional ts / rating, and `order`: the row's position in the
            source, used to break timestamp ties (and as the only order when there is no ts; row
            order when absent). Optional `where` ("file:line") or `file` + `line` columns locate
            rows in error examples; items may carry them too (duplicate ids are reported).
        min_interactions: k for optional k-core filtering (0 = keep everything).

    Raises:
        IngestError: when nothing usable is left (empty input or everything filtered out), or no
            training transition is (see `require_training_transitions`).
    """
    items = items.copy()
    for col, default in (("description", ""), ("brand", ""), ("attributes", "{}")):
        if col not in items:
            items[col] = default
        items[col] = items[col].fillna(default).astype(str)
    if "categories" not in items:
        items["categories"] = [[] for _ in range(len(items))]
    items["item_id"] = items["item_id"].astype(str)
    repeated = items["item_id"].duplicated(keep="first")
    if repeated.any():
        _report_rows(report, "duplicate_item", items[repeated], "item_id",
                     lambda iid: f"item id {iid!r} listed again; the first entry is kept")
        items = items[~repeated]
    items["description"] = items["description"].map(clean_text)
    items["brand"] = items["brand"].map(clean_text)
    items["categories"] = items["categories"].map(
        lambda cs: [clean_text(c) for c in cs if clean_text(c)] if isinstance(cs, (list, tuple, np.ndarray)) else [])
    items["title"] = unique_titles(items, report=report)
    items = items[ITEM_COLUMNS].reset_index(drop=True)

    inter = interactions.copy()
    inter["user_id"] = inter["user_id"].astype(str)
    inter["item_id"] = inter["item_id"].astype(str)
    if "order" not in inter:
        inter["order"] = np.arange(len(inter), dtype=np.int64)
    unknown = ~inter["item_id"].isin(items["item_id"])
    if unknown.any():
        _report_rows(report, "unknown_item", inter[unknown], "item_id",
                     lambda iid: f"unknown item id {iid!r} (not in the item file)")
        inter = inter[~unknown]
    if "ts" not in inter:
        inter["ts"] = pd.NA
    if "rating" not in inter:
        inter["rating"] = pd.NA
    # The loaders check timestamps as they parse them (naming the source field); these two checks
    # hold the same rules for every caller. A missing ts among present ones would sort last and so
    # silently become the user's test item: such events are skipped, never held out.
    huge = ts_out_of_range(inter["ts"])
    if huge.any():
        _report_rows(report, "bad_value", inter[huge], "ts",
                     lambda ts: f"timestamp out of range (years 1..9999): {ts!r}")
        inter = inter[~huge]
    missing = inter["ts"].isna().to_numpy()
    if missing.any() and not missing.all():
        _report_rows(report, "missing_value", inter[missing], "ts",
                     lambda ts: "missing timestamp (other events have one); event skipped")
        inter = inter[~missing]
    inter["ts"] = pd.array(inter["ts"], dtype="Int64")
    inter["rating"] = pd.array(inter["rating"], dtype="Float64")
    inter = kcore(inter, min_interactions)
    if inter.empty:
        raise IngestError(f"dataset {name!r} has no usable interactions after filtering")
    # Stable order: by user, then timestamp (missing last), then source order.
    rows, pos, n = sequence_order(inter["user_id"], inter["ts"], inter["order"].to_numpy())
    inter = inter.iloc[rows].reset_index(drop=True)
    inter["pos"] = pos
    inter["split"] = label_splits(n, pos)
    inter = inter[INTERACTION_COLUMNS]
    require_training_transitions(name, inter, n)
    return Dataset(name=name, items=items, interactions=inter, report=report,
                   source={**source, "min_interactions": min_interactions})


def require_training_transitions(name: str, inter: pd.DataFrame, lengths: np.ndarray) -> None:
    """Raise IngestError unless some user has two different items in a row in the train split.

    Every later stage learns from these transitions (the graph's NEXT/COLLAB relations, training
    examples); without one it has nothing to learn from, so ingest stops here with one clear line.
    `inter` is sorted by user and position; `lengths` is each row's sequence length.
    """
    users, items = inter["user_id"].to_numpy(), inter["item_id"].to_numpy()
    train = inter["split"].to_numpy() == "train"
    step = (users[1:] == users[:-1]) & train[1:] & train[:-1] & (items[1:] != items[:-1])
    if step.any():
        return
    longest = int(lengths.max()) if len(lengths) else 0
    why = (f"no user has more than {longest} event(s)" if longest < 4 else
           "the training events only ever repeat the previous item")
    raise IngestError(f"dataset {name!r} has no training transitions: {why}; leave-one-out holds out each "
                      "user's last two events (valid, test), so some user needs 4+ events with two "
                      "different items in a row before those")
