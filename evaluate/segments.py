"""Memorization segments: how far each evaluated user's target is from their history in the item graph.

Run with `iirg analyze --run runs/<name>` (labels both splits, writes the test split onto the graph).

Definitions (evaluation cases as in `evaluate.cases`: test history = sequence without its last item;
valid history = training part). *Training transitions* are the consecutive pairs inside the training
parts of all users, i.e. the graph's `NEXT` edges (`export.next`), the same for both splits.

- one_hop (bool, the paper's memorizable users): (last history item -> target) is a training
  transition of some user.
- any_hop (bool, looser): (some history item -> target) is a training transition.
- hop: length of the shortest non-empty path over NEXT edges from the last history item to the
  target. NEXT has no self-loops (the build leaves out an item followed by itself), so a target equal
  to the last item never has hop 1: it gets the length of the shortest cycle back to the item, or is
  unreachable. Computed exactly for 1, 2 and 3 hops; longer paths are stored as HOP_CAP = 4, meaning
  "more than 3"; null (NA) when the target cannot be reached at all.
- semantic (bool): the target is among the top-k `SIMILAR` neighbours of some history item
  (k = every exported neighbour, or `SegmentConfig.semantic_k`).

Each user gets exactly one segment (a partition, so shares add up to 1 and the gain decomposition
in `evaluate.metrics` is exact), checked in this order:

    one_hop        hop == 1
    two_hop        hop == 2
    three_hop      hop == 3
    semantic_only  not within 3 hops, and semantic (takes precedence over beyond/unreachable)
    beyond         reachable in more than 3 hops, not semantic
    unreachable    not reachable over NEXT edges, not semantic

The `semantic_only` flag on a user equals (segment == "semantic_only"); such users keep their hop
(4 or NA), so "semantic but far" and "semantic and unreachable" can still be told apart.

Hop distances are vectorized: hops 1-3 by meeting forward and backward sparse frontiers per user
(A[last] @ A against A^T[target]), reachability beyond 3 through the strongly connected components
(one giant component holds >98% of the items in every dataset here) with a multi-source sparse BFS
on the condensation for the few pairs the giant component does not decide. No per-user Python loop.

Outputs: analysis/segments_<split>.parquet (one row per evaluated user) and analysis/segments.json
(dataset checksum + config per split); for the test split also the User node properties
segment, hop, one_hop, any_hop, semantic_only, target_item_id, last_item_id (`write_segments`, on a
store the command opened).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse import csgraph

from common.errors import ConfigError
from common.files import write_json, write_parquet
from evaluate.cases import Cases, SPLITS, build_cases, is_member, item_codes
from graph.export import Export
from graph.rundir import RunPaths, git_commit
from graph.store import GraphStore

SEGMENTS = ("one_hop", "two_hop", "three_hop", "semantic_only", "beyond", "unreachable")
# How pages and tables name each segment for a reader (same order as SEGMENTS).
SEGMENT_LABELS = {
    "one_hop": "one-hop covered",
    "two_hop": "2-hop",
    "three_hop": "3-hop",
    "semantic_only": "semantic only",
    "beyond": "beyond 3 hops",
    "unreachable": "unreachable",
}
HOP_CAP = 4  # stored hop for "reachable in more than 3 hops"
SEGMENT_COLUMNS = ["user_id", "segment", "hop", "one_hop", "any_hop", "semantic", "semantic_only",
                   "reachable", "target_item_id", "last_item_id", "history_length",
                   "target_in_history"]


@dataclass
class SegmentConfig:
    """How users are labelled (see module docstring)."""

    semantic_k: int | None = field(default=None, metadata={
        "help": "use only the top-k SIMILAR neighbours (rank <= k); default every exported one"})

    def __post_init__(self):
        if self.semantic_k is not None and self.semantic_k < 1:
            raise ConfigError("semantic_k must be >= 1")


def edge_matrix(export: Export, edges: pd.DataFrame, src: str, dst: str, where: str) -> sp.csr_matrix:
    """(n_items, n_items) 0/1 adjacency from an export edge frame."""
    s = item_codes(export, edges[src], where)
    d = item_codes(export, edges[dst], where)
    n = len(export.items)
    m = sp.csr_matrix((np.ones(len(s), dtype=np.float32), (s, d)), shape=(n, n))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _rowwise_overlap(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """Per row: do the two (same-shape) sparse rows share a nonzero column?"""
    prod = a.multiply(b).tocsr()
    prod.eliminate_zeros()
    return np.diff(prod.indptr) > 0


def _dag_reach(dag: sp.csr_matrix, sources: np.ndarray, targets: np.ndarray,
               allowed: np.ndarray) -> np.ndarray:
    """Per pair: is targets[i] reachable from sources[i] in the DAG restricted to `allowed` nodes?

    Multi-source BFS with one sparse frontier row per distinct source.
    """
    if len(sources) == 0:
        return np.zeros(0, dtype=bool)
    keep = sp.diags(allowed.astype(np.float32))
    restricted = (keep @ dag @ keep).tocsr()
    uniq, inv = np.unique(sources, return_inverse=True)
    n = dag.shape[0]
    frontier = sp.csr_matrix((np.ones(len(uniq), dtype=np.float32), (np.arange(len(uniq)), uniq)),
                             shape=(len(uniq), n))
    visited = frontier.copy()
    while frontier.nnz:
        step = (frontier @ restricted).tocsr()
        step.data[:] = 1.0
        step = (step - step.multiply(visited)).tocsr()
        step.eliminate_zeros()
        visited = (visited + step).tocsr()
        frontier = step
    return np.asarray(visited[inv, targets]).ravel() > 0


def hop_distances(adjacency: sp.csr_matrix, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Shortest non-empty path length src[i] -> dst[i]: 1, 2, 3, HOP_CAP (= more than 3), 0 = none."""
    a = adjacency.tocsr().astype(np.float32)
    at = a.T.tocsr()
    hop = np.zeros(len(src), dtype=np.int64)
    if len(src) == 0:
        return hop
    hop[np.asarray(a[src, dst]).ravel() > 0] = 1
    rest = np.flatnonzero(hop == 0)
    fwd = a[src[rest]]          # (users, items): items 1 hop after the last item
    back = at[dst[rest]]        # (users, items): items 1 hop before the target
    two = _rowwise_overlap(fwd, back)
    hop[rest[two]] = 2
    rest, fwd, back = rest[~two], fwd[~two], back[~two]
    fwd2 = (fwd @ a).tocsr()    # items 2 hops after the last item
    three = _rowwise_overlap(fwd2, back)
    hop[rest[three]] = 3
    rest = rest[~three]
    if len(rest):
        hop[rest[_reachable(a, src[rest], dst[rest])]] = HOP_CAP
    return hop


def _reachable(a: sp.csr_matrix, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per pair: is there a non-empty NEXT path src -> dst? (via strongly connected components)."""
    n_comp, label = csgraph.connected_components(a, directed=True, connection="strong")
    size = np.bincount(label, minlength=n_comp)
    cs, ct = label[src], label[dst]
    # Inside one component of >= 2 items every item reaches every other and itself (via a cycle).
    reach = (cs == ct) & (size[cs] > 1)
    rows, cols = a.nonzero()
    cross = label[rows] != label[cols]
    dag = sp.csr_matrix((np.ones(int(cross.sum()), dtype=np.float32),
                         (label[rows][cross], label[cols][cross])), shape=(n_comp, n_comp))
    dag.sum_duplicates()
    giant = int(size.argmax())
    desc = np.zeros(n_comp, dtype=bool)
    desc[csgraph.breadth_first_order(dag, giant, directed=True, return_predecessors=False)] = True
    anc = np.zeros(n_comp, dtype=bool)
    anc[csgraph.breadth_first_order(dag.T.tocsr(), giant, directed=True,
                                    return_predecessors=False)] = True
    reach |= anc[cs] & desc[ct]  # through the giant component
    open_ = ~reach & (cs != ct)  # a one-item component has no path back to itself (no self-loops)
    # Remaining pairs cannot pass through the giant component: if the target is outside desc(giant)
    # the path avoids desc(giant); otherwise the source is outside anc(giant) and the path avoids
    # anc(giant). Searching those smaller DAGs keeps every frontier small.
    not_desc = open_ & ~desc[ct]
    reach[not_desc] = _dag_reach(dag, cs[not_desc], ct[not_desc], ~desc)
    in_desc = open_ & desc[ct]
    reach[in_desc] = _dag_reach(dag, cs[in_desc], ct[in_desc], ~anc)
    return reach


def label_users(export: Export, split: str, config: SegmentConfig | None = None, *,
                cases: Cases | None = None) -> pd.DataFrame:
    """One row per evaluated user of `split` with its segment (see module docstring)."""
    config = config or SegmentConfig()
    cases = build_cases(export, split) if cases is None else cases  # type: ignore[arg-type]
    nxt = edge_matrix(export, export.next, "src_item_id", "dst_item_id", "next.parquet")
    similar = export.similar
    if config.semantic_k is not None:
        similar = similar[similar["rank"] <= config.semantic_k]
    sim = edge_matrix(export, similar, "item_id", "neighbor_id", "similar.parquet")
    last, target = cases.last, cases.target
    hop = hop_distances(nxt, last, target)
    history = cases.history_matrix()
    any_hop = _rowwise_overlap(history, nxt.T.tocsr()[target])
    semantic = _rowwise_overlap(history, sim.T.tocsr()[target])
    segment = np.select([hop == 1, hop == 2, hop == 3, semantic, hop == HOP_CAP],
                        list(SEGMENTS[:5]), default="unreachable")
    hist_keys = cases.history_keys()
    frame = pd.DataFrame({
        "user_id": cases.user_ids.astype(str),
        "segment": segment.astype(str),
        "hop": pd.array(np.where(hop > 0, hop, 0), dtype="Int64"),
        "one_hop": hop == 1,
        "any_hop": any_hop,
        "semantic": semantic,
        "semantic_only": segment == "semantic_only",
        "reachable": hop > 0,
        "target_item_id": cases.item_ids[target].astype(str),
        "last_item_id": cases.item_ids[last].astype(str),
        "history_length": cases.history_length,
        "target_in_history": is_member(np.arange(cases.n_users, dtype=np.int64) * cases.n_items + target,
                                       hist_keys),
    })
    frame.loc[hop == 0, "hop"] = pd.NA
    return frame[SEGMENT_COLUMNS]


def segment_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Users per segment with shares, plus the one_hop / any_hop / semantic flag totals."""
    counts = frame["segment"].value_counts().reindex(list(SEGMENTS), fill_value=0)
    table = pd.DataFrame({"segment": list(SEGMENTS), "n_users": counts.to_numpy()})
    table["share"] = table["n_users"] / max(len(frame), 1)
    flags = pd.DataFrame({"segment": ["(flag) one_hop", "(flag) any_hop", "(flag) semantic",
                                      "(flag) target_in_history"],
                          "n_users": [int(frame[c].sum()) for c in
                                      ("one_hop", "any_hop", "semantic", "target_in_history")]})
    flags["share"] = flags["n_users"] / max(len(frame), 1)
    total = pd.DataFrame({"segment": ["all"], "n_users": [len(frame)], "share": [1.0]})
    return pd.concat([table, total, flags], ignore_index=True)


# --------------------------------------------------------------------------------------------
# Persistence: analysis/ and the graph
# --------------------------------------------------------------------------------------------
def _meta_path(run: RunPaths):
    return run.analysis / "segments.json"


def save_segments(run: RunPaths, split: str, frame: pd.DataFrame, export: Export,
                  config: SegmentConfig) -> None:
    run.analysis.mkdir(parents=True, exist_ok=True)
    path = run.analysis / f"segments_{split}.parquet"
    write_parquet(path, frame)
    meta_path = _meta_path(run)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta[split] = {"dataset": export.manifest.get("dataset"),
                   "dataset_checksum": export.manifest.get("dataset_checksum"),
                   "export_created_at": export.manifest.get("created_at"),
                   "config": asdict(config),
                   "counts": frame["segment"].value_counts().reindex(list(SEGMENTS), fill_value=0)
                   .astype(int).to_dict(),
                   "n_users": len(frame),
                   "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "git_commit": git_commit()}
    write_json(meta_path, meta)


def load_segments(run: RunPaths, split: str, export: Export | None = None) -> pd.DataFrame | None:
    """Stored labels of `split`, or None when absent or made from another export."""
    path = run.analysis / f"segments_{split}.parquet"
    if not path.exists() or not _meta_path(run).exists():
        return None
    meta = json.loads(_meta_path(run).read_text()).get(split)
    if meta is None:
        return None
    if export is not None and (meta.get("dataset_checksum") != export.manifest.get("dataset_checksum")
                               or meta.get("export_created_at") != export.manifest.get("created_at")):
        return None
    return pd.read_parquet(path)


def segments_for(run: RunPaths, export: Export, split: str, *, cases: Cases | None = None,
                 config: SegmentConfig | None = None) -> pd.DataFrame:
    """Stored labels when they match this export and cases; otherwise label now and save."""
    cases = build_cases(export, split) if cases is None else cases  # type: ignore[arg-type]
    frame = load_segments(run, split, export)
    if frame is not None and config is None and \
            np.array_equal(frame["user_id"].to_numpy().astype(str), cases.user_ids.astype(str)):
        return frame
    config = config or SegmentConfig()
    frame = label_users(export, split, config, cases=cases)
    save_segments(run, split, frame, export, config)
    return frame


def graph_rows(frame: pd.DataFrame) -> list[dict]:
    """User property rows for the graph (hop None when unreachable)."""
    hop = frame["hop"].astype("object").where(frame["hop"].notna(), None)
    return [{"user_id": u, "segment": s, "hop": None if h is None else int(h), "one_hop": bool(o),
             "any_hop": bool(a), "semantic_only": bool(so), "target_item_id": t, "last_item_id": li}
            for u, s, h, o, a, so, t, li in zip(
                frame["user_id"], frame["segment"], hop, frame["one_hop"], frame["any_hop"],
                frame["semantic_only"], frame["target_item_id"], frame["last_item_id"])]


def write_segments(graph: GraphStore, frame: pd.DataFrame) -> int:
    """Set the segment properties on the User nodes (test split), clearing them on all others.

    Hold the run lock around the call: a build must not swap the store during the write.
    """
    from graph import analysis_queries as AQ

    graph.run(AQ.CLEAR_USER_SEGMENTS_QUERY, {})
    return graph.write_batch(AQ.SET_USER_SEGMENTS_QUERY, graph_rows(frame))


def analyze(run: RunPaths, export: Export, *, config: SegmentConfig | None = None) -> dict[str, pd.DataFrame]:
    """Label both splits and save them in analysis/ (the test labels go to the graph with
    `write_segments`)."""
    config = config or SegmentConfig()
    frames = {}
    for split in SPLITS:
        frames[split] = label_users(export, split, config)
        save_segments(run, split, frames[split], export, config)
    run.record_config("analyze", asdict(config))
    return frames
