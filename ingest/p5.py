"""P5 / IIRG format: `sequential_data.txt` (`user item item ...`, one user per line, 1-based ids in
time order) + item metadata from `datamaps.json` (id2item: raw business ids) and/or an item JSON
such as LETTER's `Yelp.item.json` ({"<key>": {"title", "description"}}).

    from ingest.p5 import load_p5
    raw = load_p5(Path("data/yelp"), IngestConfig(dataset="yelp"), IngestReport())

The item JSON's keys are 0-based in the published files: key = P5 item id - 1. The offset is
detected (the one whose shifted keys cover the sequence ids, checked against the number of keys)
or set with `item_id_offset`; the choice and its evidence are recorded in the dataset source.
Without an item JSON, titles are the raw ids from datamaps.json. Repeated items in a sequence are
real repeat visits and are kept.
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
from ingest.lcrec import read_item_table
from ingest.readers import (canonical_ids, file_column, iter_lines, parse_numbers, read_json_document)
from ingest.schema import IngestReport, RawData

SEQUENCES = "sequential_data.txt"
DATAMAPS = "datamaps.json"
DEFAULT_OFFSET = 1  # published P5 item JSON files (LETTER, APAO) are 0-based against 1-based P5 ids


def find_item_json(folder: Path) -> Path | None:
    found = sorted(folder.glob("*.item.json"))
    if len(found) > 1:
        raise IngestError(f"several item JSON files ({', '.join(p.name for p in found)}); keep one",
                          file=str(folder))
    return found[0] if found else None


def load_p5(path: Path, config: IngestConfig, report: IngestReport) -> RawData:
    folder = path if path.is_dir() else path.parent
    seq_path = path if path.is_file() else folder / SEQUENCES
    if not seq_path.is_file():
        raise IngestError(f"no {SEQUENCES} in folder", file=str(folder))
    interactions = read_p5_sequences(seq_path, report, progress=config.progress)
    files = [seq_path]
    options: dict = {}

    id2item = None
    if (folder / DATAMAPS).is_file():
        files.append(folder / DATAMAPS)
        maps, _ = read_json_document(folder / DATAMAPS, report, progress=config.progress)
        id2item = maps.get("id2item") if isinstance(maps, dict) else None
        if not isinstance(id2item, dict):
            raise IngestError("expected an object with an `id2item` map", file=str(folder / DATAMAPS),
                              field="id2item")
    item_json = find_item_json(folder)
    if item_json is None and id2item is None:
        raise IngestError(f"no item metadata: need {DATAMAPS} or an X.item.json next to {SEQUENCES}",
                          file=str(folder))
    if item_json is not None:
        files.append(item_json)
        document = read_json_document(item_json, report, progress=config.progress,
                                      duplicate_kind="duplicate_item", record="item")
        if not isinstance(document[0], dict):
            raise IngestError("expected a JSON object of item id -> fields", file=str(item_json), line=1)
        offset, evidence = choose_offset(item_json, list(document[0]), interactions, id2item,
                                         config.item_id_offset)
        items = read_item_table(item_json, report, id_offset=offset, document=document)
        options.update(item_json=item_json.name, item_id_offset=offset, offset_evidence=evidence)
        has_categories = any(isinstance(r, dict) and "categories" in r for r in document[0].values())
        if not has_categories:
            # LETTER's Yelp.item.json stores the business categories as the description text.
            items["categories"] = [[c.strip() for c in d.split(",") if c.strip()] for d in items["description"]]
            options["categories"] = "split from description (the item JSON has no categories field)"
        if id2item is not None:
            # Keep the raw business id next to the name: it joins back to the Yelp/Amazon source.
            raw_ids = items["item_id"].map(id2item)
            items["attributes"] = [_with(a, "raw_id", r) for a, r in zip(items["attributes"], raw_ids)]
    else:
        items = pd.DataFrame({"item_id": list(id2item), "raw_title": [str(v) for v in id2item.values()]})
        items["attributes"] = [json.dumps({"raw_id": str(v)}) for v in id2item.values()]
        options.update(titles="raw ids from datamaps.json id2item (no item JSON)")
    return RawData(items=items, interactions=interactions, files=files, options=options)


def _with(attributes: str, key: str, value) -> str:
    if not isinstance(value, str):
        return attributes
    data = json.loads(attributes)
    data[key] = value
    return json.dumps(data, ensure_ascii=False)


def read_p5_sequences(path: Path, report: IngestReport, *, progress: bool = True) -> pd.DataFrame:
    """`user item item ...` lines -> user_id, item_id, order, line. Ids must be integers."""
    users, items, lines = [], [], []
    seen: dict[str, int] = {}
    for number, text in iter_lines(path, report, progress=progress):
        parts = text.split()
        if not parts:
            continue
        if len(parts) < 2:
            report.problem("malformed_line", "expected `user item [item ...]`, found only one field",
                           file=str(path), line=number)
            continue
        if parts[0] in seen:
            report.problem("duplicate_user", f"user {parts[0]} already has a sequence on line "
                           f"{seen[parts[0]]}; this line is skipped", file=str(path), line=number, field="user_id")
            continue
        seen[parts[0]] = number
        users.append(parts[0])
        items.append(parts[1:])
        lines.append(number)
    if not users:
        raise IngestError("file has no sequences", file=str(path))
    lengths = np.fromiter((len(s) for s in items), dtype=np.int64, count=len(items))
    line_of_row = np.repeat(np.asarray(lines, dtype=np.int64), lengths)
    table = pa.table({
        "user_id": pa.array(np.repeat(np.asarray(users, dtype=object), lengths), type=pa.string()),
        "item_id": pa.array([i for seq in items for i in seq], type=pa.string()),
        "line": line_of_row,
        # Field number within the line (1 = user): names the bad token in error examples.
        "token": np.concatenate([np.arange(2, n + 2) for n in lengths]),
    })
    # A non-integer user invalidates the whole line; a non-integer item only its own entry would
    # shift the sequence, so the line's user is skipped as a whole too.
    user_ok = pc.match_substring_regex(table["user_id"], r"^[0-9]+$")
    item_ok = pc.match_substring_regex(table["item_id"], r"^[0-9]+$")
    bad_lines = set(pc.filter(table["line"], pc.invert(pc.and_(user_ok, item_ok))).to_pylist())
    if bad_lines:
        bad = table.filter(pc.is_in(table["line"], pa.array(sorted(bad_lines), pa.int64())))
        bad = bad.filter(pc.invert(pc.and_(pc.match_substring_regex(bad["user_id"], r"^[0-9]+$"),
                                           pc.match_substring_regex(bad["item_id"], r"^[0-9]+$"))))
        first_per_line = bad.to_pandas().drop_duplicates("line")
        examples = []
        for row in first_per_line.head(5).itertuples():
            user_bad = not row.user_id.isdigit()
            field = "user_id" if user_bad else f"item_id (field {row.token})"
            value = row.user_id if user_bad else row.item_id
            examples.append(IngestError(f"not an integer id: {value!r}; line skipped", file=str(path),
                                        line=row.line, field=field))
        report.bulk("bad_value", len(bad_lines), [str(e) for e in examples], first=examples[0])
        table = table.filter(pc.invert(pc.is_in(table["line"], pa.array(sorted(bad_lines), pa.int64()))))
    if table.num_rows == 0:
        raise IngestError("file has no valid sequences", file=str(path))
    table = parse_numbers(table, "user_id", report, file=str(path), kind="int")
    table = parse_numbers(table, "item_id", report, file=str(path), kind="int")
    frame = pd.DataFrame({"user_id": canonical_ids(table["user_id"]).to_pandas(),
                          "item_id": canonical_ids(table["item_id"]).to_pandas(),
                          "order": np.arange(table.num_rows, dtype=np.int64),
                          "line": table["line"].to_numpy()})
    frame["file"] = file_column(len(frame), str(path))
    return frame


def choose_offset(item_json: Path, item_keys: list[str], interactions: pd.DataFrame, id2item: dict | None,
                  forced: int | None) -> tuple[int, str]:
    """Offset to add to item JSON keys to get P5 ids, with a sentence saying why.

    Auto: of the offsets 1 (published files) and 0, the one whose shifted keys cover every sequence
    item id; the key count must equal the number of P5 items (datamaps id2item when present, else
    the largest sequence id). Neither fits -> error saying which ids are missing.
    """
    keys = {int(k) for k in item_keys if k.strip().lstrip("-").isdigit()}
    seq_ids = {int(i) for i in interactions["item_id"].unique()}
    n_items = len(id2item) if id2item is not None else max(seq_ids)
    if forced is not None:
        missing = len(seq_ids - {k + forced for k in keys})
        return forced, (f"set by item_id_offset; {missing} sequence item ids have no entry" if missing
                        else "set by item_id_offset; all sequence item ids have an entry")
    fits = {}
    for offset in (DEFAULT_OFFSET, 0):
        shifted = {k + offset for k in keys}
        fits[offset] = len(seq_ids - shifted)
    candidates = [o for o in (DEFAULT_OFFSET, 0) if fits[o] == 0]
    size_ok = len(item_keys) == n_items
    if candidates:
        offset = candidates[0]
        return offset, (f"keys + {offset} cover all {len(seq_ids)} sequence item ids; "
                        f"{len(item_keys)} keys {'=' if size_ok else '!='} {n_items} items")
    best = min(fits, key=fits.get)
    raise IngestError(f"cannot align item keys with sequence ids: with offset 1, {fits[1]} ids lack an entry; "
                      f"with offset 0, {fits[0]}. Set item_id_offset (--item-id-offset) if this is intended "
                      f"(offset {best} fits best)", file=str(item_json))
