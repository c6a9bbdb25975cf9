"""Export of the canonical dataset and the graph's relations, for training without a database.

    export/
      manifest.json        dataset name + checksum, relation parameters, counts, git commit
      items.parquet        canonical items + popularity (training interactions)
      interactions.parquet canonical interactions with split labels
      next.parquet         src_item_id, dst_item_id, count
      collab.parquet       item_id, neighbor_id, rank, count, hop, source, via_item_id
      similar.parquet      item_id, neighbor_id, rank, score
      collab.jsonl, similar.jsonl   one anchor per line with its ordered neighbours (title included)
      shares_meta.parquet, shares_meta.jsonl   only when built with --extra-relations SHARES_META
      sids.parquet, sid.json        semantic IDs, added later by `iirg sid` (train/sid.py)

Which files a relation gets, and their columns, come from its spec (graph/relations):
`<export_name>.parquet` with `export_columns`, and `<export_name>.jsonl` when it has `jsonl_columns`.

`load_export` needs only pandas + pyarrow, so `iirg train` runs on a GPU machine with no graph store.
The folder is written to a temporary sibling and renamed, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from common.files import atomic_dir
from graph.errors import GraphError
from graph.relations import RELATIONS
from graph.rundir import git_commit
from ingest.schema import Dataset

EXPORT_VERSION = 1


@dataclass
class Export:
    items: pd.DataFrame
    interactions: pd.DataFrame
    next: pd.DataFrame
    collab: pd.DataFrame
    similar: pd.DataFrame
    manifest: dict
    directory: Path | None = None  # where it was read from (optional files such as sids.parquet)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # optional relations exported, by name

    @property
    def titles(self) -> dict[str, str]:
        return dict(zip(self.items["item_id"], self.items["title"]))

    def edges(self, name: str) -> pd.DataFrame | None:
        """The exported edges of relation `name` (None: an optional relation this export lacks)."""
        core = {"NEXT": self.next, "COLLAB": self.collab, "SIMILAR": self.similar}
        return core[name] if name in core else self.extra.get(name)


def _neighbour_jsonl(path: Path, edges: pd.DataFrame, titles: dict[str, str], extra: list[str]) -> None:
    """One line per anchor item with its neighbours in rank order.

    Plain lists, not a pandas groupby: one group per item (20k on Yelp) made this the slowest step.
    """
    edges = edges.sort_values(["item_id", "rank"], kind="stable")
    columns = {c: edges[c].astype(object).where(edges[c].notna(), None).tolist() for c in extra}
    anchors, neighbours = edges["item_id"].tolist(), edges["neighbor_id"].tolist()
    with path.open("w", encoding="utf-8") as out:
        start = 0
        while start < len(anchors):
            stop = start
            while stop < len(anchors) and anchors[stop] == anchors[start]:
                stop += 1
            line = {"item_id": anchors[start], "title": titles.get(anchors[start], ""),
                    "neighbors": [{"item_id": neighbours[r], "title": titles.get(neighbours[r], ""),
                                   **{c: columns[c][r] for c in extra}} for r in range(start, stop)]}
            out.write(json.dumps(line, ensure_ascii=False, default=int) + "\n")
            start = stop


def write_export(directory: str | os.PathLike, dataset: Dataset, *, popularity: pd.Series,
                 params: dict, backend: str, relations: dict[str, pd.DataFrame] | None = None,
                 next_edges: pd.DataFrame | None = None, collab: pd.DataFrame | None = None,
                 similar: pd.DataFrame | None = None) -> dict:
    """Write the export folder atomically and return its manifest.

    `relations` maps relation names to their edges (`Relations.edges`); `next_edges`, `collab` and
    `similar` are the same for NEXT, COLLAB and SIMILAR. Every relation that is not optional must be
    given; optional ones are written when given.
    """
    directory = Path(directory)
    edges = dict(relations or {})
    edges.update({name: frame for name, frame in (("NEXT", next_edges), ("COLLAB", collab),
                                                  ("SIMILAR", similar)) if frame is not None})
    missing = [name for name, spec in RELATIONS.items() if not spec.optional and name not in edges]
    if missing:
        raise GraphError(f"write_export needs the edges of {missing}")
    specs = [spec for name, spec in RELATIONS.items() if name in edges]
    with atomic_dir(directory) as tmp:
        items = dataset.items.copy()
        items["popularity"] = items["item_id"].map(popularity).fillna(0).astype("int64")
        titles = dict(zip(items["item_id"], items["title"]))
        items.to_parquet(tmp / "items.parquet", index=False)
        dataset.interactions.to_parquet(tmp / "interactions.parquet", index=False)
        for spec in specs:
            edges[spec.name][list(spec.export_columns)].to_parquet(tmp / f"{spec.export_name}.parquet", index=False)
        for spec in specs:
            if spec.jsonl_columns is not None:
                _neighbour_jsonl(tmp / f"{spec.export_name}.jsonl", edges[spec.name], titles,
                                 list(spec.jsonl_columns))
        counts = {"items": len(items), "interactions": len(dataset.interactions)}
        counts.update({spec.export_name: len(edges[spec.name]) for spec in specs})
        for spec in specs:
            counts.update(spec.extra_counts(edges[spec.name]))
        manifest = {
            "version": EXPORT_VERSION,
            "dataset": dataset.name,
            "dataset_checksum": dataset.checksum(),
            "dataset_stats": dataset.stats(),
            "params": params,
            "backend": backend,
            "counts": counts,
            "files": sorted(p.name for p in tmp.iterdir()),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def load_export(directory: str | os.PathLike) -> Export:
    """Read an export folder (from `iirg build` / `iirg export`)."""
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise GraphError(f"{directory} is not an iirg export (no manifest.json); run `iirg build` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("version") != EXPORT_VERSION:
        raise GraphError(f"{manifest_path}: export version {manifest.get('version')} is not "
                         f"{EXPORT_VERSION}; rebuild it with this iirg")
    items = pd.read_parquet(directory / "items.parquet")
    items["categories"] = items["categories"].map(list)
    extra = {name: pd.read_parquet(directory / f"{spec.export_name}.parquet")
             for name, spec in RELATIONS.items()
             if spec.optional and (directory / f"{spec.export_name}.parquet").exists()}
    return Export(items=items,
                  interactions=pd.read_parquet(directory / "interactions.parquet"),
                  next=pd.read_parquet(directory / "next.parquet"),
                  collab=pd.read_parquet(directory / "collab.parquet"),
                  similar=pd.read_parquet(directory / "similar.parquet"),
                  manifest=manifest, directory=directory, extra=extra)
