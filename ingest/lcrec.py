"""LC-Rec / LETTER format: `X.inter.json` (user -> list of item indices) + `X.item.json`
(item index -> {title, description, brand, categories}).

    from ingest.lcrec import load_lcrec
    raw = load_lcrec(Path("data/amazon-office"), IngestConfig(dataset="amazon-office"), IngestReport())

There are no timestamps: each user's list order is the sequence order. Keys are strings and list
entries integers; both become the text ids of the canonical dataset ("0", "1", ...).
`categories` may be one ", "-joined string (the raw text is kept in attributes.categories_text,
since category names can themselves contain ", ") or a list.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.config import IngestConfig
from ingest.errors import IngestError
from ingest.readers import KeyLines, read_json_document
from ingest.schema import IngestReport, RawData

ITEM_FIELDS = ("title", "description", "brand", "categories")


def lcrec_files(folder: Path) -> tuple[Path, Path] | None:
    """(inter, item) files of the one LC-Rec dataset in a folder, None when there is none."""
    inters = sorted(folder.glob("*.inter.json"))
    if not inters:
        return None
    if len(inters) > 1:
        raise IngestError(f"several LC-Rec datasets ({', '.join(p.name for p in inters)}): pass the "
                          "path of one .inter.json file", file=str(folder))
    stem = inters[0].name[: -len(".inter.json")]
    return inters[0], folder / f"{stem}.item.json"


def load_lcrec(path: Path, config: IngestConfig, report: IngestReport) -> RawData:
    if path.is_file():
        if not path.name.endswith((".inter.json", ".item.json")):
            raise IngestError("expected an LC-Rec X.inter.json or X.item.json file", file=str(path))
        stem = path.name.rsplit(".", 2)[0]
        inter_path, item_path = path.parent / f"{stem}.inter.json", path.parent / f"{stem}.item.json"
    else:
        found = lcrec_files(path)
        if found is None:
            raise IngestError("no LC-Rec X.inter.json file in folder", file=str(path))
        inter_path, item_path = found
    if not item_path.is_file():
        raise IngestError(f"item file {item_path.name} is missing next to {inter_path.name}", file=str(item_path))
    interactions = read_sequences(inter_path, report, progress=config.progress)
    items = read_item_table(item_path, report, progress=config.progress)
    return RawData(items=items, interactions=interactions, files=[inter_path, item_path],
                   options={"id_base": "keys of X.item.json"})


def read_sequences(path: Path, report: IngestReport, *, progress: bool = True) -> pd.DataFrame:
    """{"user": [item, ...]} -> user_id, item_id, order (list order), line (of the user's key)."""
    value, text = read_json_document(path, report, progress=progress, duplicate_kind="duplicate_user",
                                     record="user")
    key_line = KeyLines(text)
    if not isinstance(value, dict):
        raise IngestError(f"expected a JSON object of user -> item list, found {type(value).__name__}",
                          file=str(path), line=1)
    users, items, lines = [], [], []
    for user, sequence in value.items():
        if not isinstance(sequence, list):
            report.problem("malformed_record", f"expected a list of item ids, found {type(sequence).__name__}",
                           file=str(path), line=key_line(user), field=user)
            continue
        good = [i for i in sequence if isinstance(i, int) and not isinstance(i, bool)]
        if len(good) != len(sequence):
            bad = next(i for i in sequence if not (isinstance(i, int) and not isinstance(i, bool)))
            # A sequence with a hole would invent a transition that never happened: skip the user.
            report.problem("bad_value", f"item ids must be integers, found {json.dumps(bad)}; user skipped",
                           file=str(path), line=key_line(user), field=user)
            continue
        users.append(np.full(len(good), user, dtype=object))
        items.append(np.asarray(good, dtype=np.int64))
        lines.append(np.full(len(good), key_line(user) or 0, dtype=np.int64))
    if not users:
        raise IngestError("no user sequences", file=str(path))
    item_ids = np.concatenate(items)
    frame = pd.DataFrame({"user_id": pd.array(np.concatenate(users), dtype="str"),
                          "item_id": pd.array(item_ids.astype(str), dtype="str"),
                          "order": np.arange(len(item_ids), dtype=np.int64),
                          "line": np.concatenate(lines)})
    frame["file"] = str(path)
    return frame


def read_item_table(path: Path, report: IngestReport, *, progress: bool = True, id_offset: int = 0,
                    document: tuple[object, str] | None = None) -> pd.DataFrame:
    """{"id": {title, description, brand, categories, ...}} -> raw item frame.

    `id_offset` is added to each key to get the canonical item id (P5 item JSON: +1). `document`
    is the (value, text) of an already parsed file.
    """
    value, text = document if document is not None else read_json_document(
        path, report, progress=progress, duplicate_kind="duplicate_item", record="item")
    key_line = KeyLines(text)
    if not isinstance(value, dict):
        raise IngestError(f"expected a JSON object of item id -> fields, found {type(value).__name__}",
                          file=str(path), line=1)
    rows = []
    for key, record in value.items():
        if not isinstance(record, dict):
            report.problem("malformed_record", f"expected an object of item fields, found {type(record).__name__}",
                           file=str(path), line=key_line(key), field=key)
            continue
        item_id = key
        if id_offset:
            if not key.strip().lstrip("-").isdigit():
                report.problem("bad_value", f"item key must be an integer to apply offset {id_offset}",
                               file=str(path), line=key_line(key), field=key)
                continue
            item_id = str(int(key) + id_offset)
        title = record.get("title", "")
        categories = record.get("categories", [])
        attributes = {k: v for k, v in record.items() if k not in ITEM_FIELDS}
        if isinstance(categories, str):
            attributes["categories_text"] = categories
            categories = [c for c in (s.strip() for s in categories.split(", ")) if c]
        elif isinstance(categories, list):
            categories = _flatten(categories)
        else:
            categories = []
        description = record.get("description", "")
        if isinstance(description, list):
            description = " ".join(str(d) for d in description)
        rows.append({"item_id": item_id, "raw_title": "" if title is None else str(title),
                     "description": "" if description is None else str(description),
                     "brand": "" if record.get("brand") is None else str(record.get("brand")),
                     "categories": categories,
                     "attributes": json.dumps(attributes, ensure_ascii=False, default=str),
                     "line": key_line(key)})
    if not rows:
        raise IngestError("no items", file=str(path))
    frame = pd.DataFrame(rows)
    frame["line"] = pd.array(frame["line"], dtype="Int64")
    frame["file"] = str(path)
    return frame


def _flatten(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, list):
            out.extend(_flatten(v))
        elif v is not None and str(v).strip():
            out.append(str(v))
    return list(dict.fromkeys(out))
