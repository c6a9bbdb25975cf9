"""What one item-item relation is, everywhere it shows: `Relation`, the spec every relation module fills.

A relation module (graph/relations/<name>.py) defines one `RELATION = Relation(...)`; the registry in
graph/relations/__init__.py lists it. From the spec:
- graph/build.py builds it (`build`, in an order that honours `build_after`) and graph/queries.py puts
  its LadybugDB table into the schema (`ladybug_table`);
- graph/export.py writes `<export_name>.parquet` (+ `.jsonl` when `jsonl_columns`) and reads it back;
  `iirg export` reads the edges from the store with `read_query`;
- train/llm/data.py and prompts.py turn it into an instruction task (`task`);
- the dashboard draws it in the legend's colour and line (`legend`) and lists an item's neighbours
  in the item view (`item_view`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import pandas as pd

from graph.dialect import Query

if TYPE_CHECKING:
    from graph.config import GraphConfig
    from graph.store import GraphSession
    from ingest.schema import Dataset


@dataclass(frozen=True)
class Task:
    """The IIRG instruction task made from a relation: anchor item -> its neighbours in rank order."""

    name: str                      # `iirg data --tasks nip,<name>`
    description: str               # shown by `iirg data`
    instruction: str               # the prompt's instruction text
    default: bool = False          # among the tasks `iirg data` writes when --tasks is not given
    k_setting: str | None = None   # DataConfig field capping neighbours per sample (None: all exported)


@dataclass(frozen=True)
class Legend:
    """How the dashboard draws the relation: a palette colour name (dashboard/palette.py) and a line."""

    label: str                     # legend text of an edge into the target ("COLLAB: ... (#rank)")
    colour: str                    # a palette constant: VERMILLION, ORANGE, SKY_BLUE, BLUISH_GREEN, ...
    line: Literal["solid", "dashed", "dotted"] = "dashed"


@dataclass(frozen=True)
class Column:
    """One column of the item view's neighbour table (besides rank, title and id)."""

    key: str                       # the query's column
    label: str
    kind: Literal["count", "score", "text"] = "text"   # count/score: a bar scaled to the column's max
    help: str | None = None
    max_value: float | None = None  # a score's fixed upper end (cosine: 1.0); None: the column's max
    only_if_any: bool = False      # left out when every value is null (COLLAB's `via`)


@dataclass(frozen=True)
class ItemView:
    """The dashboard item view's table of an item's neighbours by this relation."""

    title: str                     # "Collaborative neighbours"
    query: str                     # $item_id -> rank, item_id, title and the columns' keys, by rank
    columns: tuple[Column, ...]
    empty: str                     # caption when the item has none


@dataclass
class BuildContext:
    """What a relation's `build` gets: the open session, the data, and what earlier stages made."""

    session: "GraphSession"
    dataset: "Dataset"
    config: "GraphConfig"
    popularity: pd.Series          # item_id -> training interactions
    order: pd.Series               # item_id -> position in the source (the last tie-break)
    embeddings: np.ndarray | None  # L2-normalised item-text embeddings, None without --semantic
    built: dict[str, pd.DataFrame]  # relations built so far, by name
    counts: dict[str, int]         # the build report's counts (a relation may add its own)
    stage: Callable[[str], Any]    # `with ctx.stage("cooccur"):` times one step in the build report
    progress: bool = True

    @property
    def params(self) -> dict:
        """The parameters of the aggregation queries: which splits feed relations, the window."""
        return {"splits": self.config.splits, "window": self.config.window}

    @property
    def item_ids(self) -> np.ndarray:
        """Item ids by `Item.idx` (`Event.item_idx`): the row order of dataset.items."""
        return self.dataset.items["item_id"].to_numpy(dtype=object)

    def read(self, query: Query, params: dict, columns: list[str]) -> pd.DataFrame:
        """A read as a DataFrame with known columns (also when there are no rows)."""
        return self.session.run_columns(query, params)[columns]

    def write(self, relation: "Relation", frame: pd.DataFrame) -> None:
        """Create the frame's rows as `relation` edges (endpoint columns first, then properties)."""
        src, dst = relation.endpoints
        rest = [c for c in frame.columns if c not in (src, dst)]
        self.session.bulk_create(relation.name, frame[[src, dst, *rest]], relation.create_query)


@dataclass(frozen=True)
class Relation:
    """One relation type between items. See the module docstring for who reads which field."""

    name: str                      # relationship type and LadybugDB table, e.g. "COLLAB"
    summary: str                   # one line: what an edge means
    ladybug_table: str             # CREATE REL TABLE IF NOT EXISTS <name>(FROM Item TO Item, ...)
    create_query: str              # UNWIND $rows AS row ... CREATE: how Neo4j writes the rows, stamped
                                   # with $build (graph/queries.py: build stamp)
    read_query: str                # every edge with the columns `build` returns (`iirg export`)
    build: Callable[[BuildContext], pd.DataFrame]  # computes, writes and returns the edges
    export_name: str               # <export_name>.parquet in the export folder, key in its counts
    export_columns: tuple[str, ...]
    endpoints: tuple[str, str] = ("item_id", "neighbor_id")
    sort_by: tuple[str, ...] = ("item_id", "rank")
    jsonl_columns: tuple[str, ...] | None = None   # also <export_name>.jsonl, one anchor per line
    optional: bool = False         # built only when named in GraphConfig.extra_relations
    build_after: tuple[str, ...] = ()              # relations whose edges `build` reads
    stages: Callable[["GraphConfig"], tuple[str, ...]] = lambda config: ()  # build stages, for the progress bar
    extra_counts: Callable[[pd.DataFrame], dict[str, int]] = lambda frame: {}   # besides <export_name>: n
    params: Callable[["GraphConfig"], dict] = lambda config: {}   # what the manifest records (optional relations)
    tidy: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame  # dtypes after reading back
    task: Task | None = None
    legend: Legend | None = None
    item_view: ItemView | None = None

    def enabled(self, config: "GraphConfig") -> bool:
        return not self.optional or self.name in config.extra_relations

