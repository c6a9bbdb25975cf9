"""COLLAB: collaborative neighbours, the top-k items co-occurring with an item within a window.

Co-occurrence (Cypher): items within W positions of each other in the training part of a sequence,
both directions; `count` = number of position pairs, `hop` = the smallest distance seen. Top-k per
item by count desc, then the neighbour's training popularity desc, then its source order asc (the
IIRG reference). Items with fewer than k neighbours are back-filled (when SIMILAR is built) with the
co-occurrence neighbours of their nearest semantic neighbours, in (semantic rank, collaborative rank)
order: source='semantic_backfill', via=<that semantic neighbour>. graph/reference.py is the plain
Python yardstick the tests compare these edges with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from graph.config import MAX_WINDOW
from graph.dialect import PerDialect
from graph.relations.spec import BuildContext, Column, ItemView, Legend, Relation, Task

if TYPE_CHECKING:
    from graph.store import GraphSession

# Co-occurrence within a window of W positions, both directions: count = number of position pairs
# (u, p, q) with 1 <= |p - q| <= W, hop = the smallest |p - q| seen.
#
# Each sequence is a path of events (graph/queries.py), so the pairs with p < q <= p + W are the
# paths of 1..W NEXT_EVENT steps: O(n * W) per user of n interactions. The query returns these forward
# pairs (a before b); numpy files both orders of a pair under one unordered key (`read_pairs`) and
# writes each pair out in both directions (`both_directions`): exactly "both directions". The old
# join of every user's INTERACTED edges with each other (COOCCURRENCE_JOIN_QUERY, kept for
# bench/bench_cooccur.py) is O(n^2) per user.
# Alternatives measured on LadybugDB, ml-100k, W = 5 (query only, best of 3, 2 shared cores): this
# path pattern 0.32 s; a keyed join on (event id + d, same user) over UNWIND range(1, $window) 1.6 s
# (planned as a hash join over all events); W fixed-length patterns joined by UNION ALL 1.1 s; the
# O(n^2) join 1.2 s; folding both directions inside Cypher (UNWIND [[x, y], [y, x]] and a second
# aggregation) 0.69 s, against 0.32 s + ~0.05 s for the numpy fold; reading the item through OF_ITEM
# 0.87 s, hence `Event.item_idx`. The hop is `b.pos - a.pos` (= the path's length, positions being
# consecutive) because `length(r)` makes LadybugDB build every path (0.55 s). bench/bench_cooccur.py
# compares the whole step with a vectorized numpy anchor and the old join, and its scaling.
# Neither dialect takes a parameter as a variable-length bound, so W is written into the text:
# an int checked here, never user text. LadybugDB caps the bound at 30 (GraphConfig checks it).
# On Neo4j only this build's copy of the graph (graph/queries.py: build stamp); paths never leave it.
#
# Each path comes back as one int64, `pair` = (a's idx * $item_stride + b's idx) * 32 + hop (the
# stride a power of two >= the number of items, so numpy takes it apart with shifts), and numpy
# counts and folds them (`reduce_packed`). On LadybugDB the paths are returned one row each, not
# aggregated in Cypher: its hash aggregation on (item, neighbour) with count and min(hop) took 60%
# of the query (Yelp, W = 5: 0.63 s aggregated by two columns, 0.54 s by the packed key, 0.37 s
# not aggregated, + 0.06 s for numpy's sort of the 0.84M paths), and it holds no hash table in the
# buffer pool. On Neo4j the rows cross the network, so they are counted per (pair, hop) there.
PAIR_HOP_BITS = 5      # the hop (1..MAX_WINDOW) in the low bits of `pair`
assert MAX_WINDOW < 1 << PAIR_HOP_BITS


def cooccurrence_query(window: int) -> PerDialect[str]:
    """Forward co-occurrence paths within `window` positions, as `pair` = (Item.idx of a * $item_stride
    + Item.idx of a later b) * 32 + their distance, for the anchor events with `$lo <= a.id < $hi` (one
    chunk, `read_pairs`): one row per path on LadybugDB; with `count` per distinct pair on Neo4j."""
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be an int in 1..{MAX_WINDOW}, got {window!r}")
    # `b.id < $hi + W` always holds (b is at most W events after a); written out, it limits the
    # events whose properties the query fetches for b to the chunk's.
    tail = f"""-[:NEXT_EVENT*1..{window}]->(b:Event)
WHERE a.id >= $lo AND a.id < $hi AND b.id < $hi + {window}
  AND a.split IN $splits AND b.split IN $splits AND a.item_idx <> b.item_idx
RETURN (a.item_idx * $item_stride + b.item_idx) * {1 << PAIR_HOP_BITS} + b.pos - a.pos AS pair"""
    return PerDialect(ladybug="\nMATCH (a:Event)" + tail + "\n",
                      neo4j="\nMATCH (a:Event {build: $build})" + tail + ", count(*) AS count\n")


# The build reads the co-occurrence in chunks of GraphConfig.cooccur_chunk_events consecutive events
# (Event ids are row numbers in (user, pos) order, so a chunk is a run of whole sequences, cut at
# most once inside one). LadybugDB's working memory for a chunk (variable-length extend, the join
# fetching b's properties, the aggregation; in its buffer pool) grows with the chunk, and every query
# also costs a fixed ~0.5 s per million events of the whole graph (its recursive extend sets up
# per-node state), so chunks are as large as the pool allows: a chunk that does not fit is split in
# two and read again. Ranges of anchor *items* made each chunk's pairs final but reach ~W times more
# distinct b events (anchors scattered over all sequences): a 2.5M-event item chunk of the 20M
# synthetic MovieLens did not fit a 3 GB pool. So pairs repeat across chunks and are merged here,
# chunk by chunk, in compact dtypes (bench/bench_scale.py measures it).
def event_chunks(n_events: int, chunk_events: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of Event.id, chunk_events each (the last one shorter)."""
    return [(lo, min(lo + chunk_events, n_events)) for lo in range(0, max(n_events, 1), chunk_events)]


def is_pool_full(error: Exception) -> bool:
    """LadybugDB's error for a query whose working memory does not fit its buffer pool."""
    return "buffer pool is full" in str(error)


def read_chunked(session: "GraphSession", query, params: dict, chunks: list[tuple[int, int]], columns: list[str] | None,
                 merge, desc: str, progress: bool = False):
    """Run `query` once per event range ($lo, $hi), folding each result into the previous ones with
    `merge(accumulated or None, frame)`. A range whose query fills LadybugDB's buffer pool is split in
    two and each half read on its own (the bar counts events)."""
    from tqdm.auto import tqdm

    from graph.errors import GraphError

    merged = None
    pending = list(reversed(chunks))
    total = sum(hi - lo for lo, hi in chunks)
    with tqdm(total=total, desc=desc, unit="event", unit_scale=True, leave=False, disable=not progress) as bar:
        while pending:
            lo, hi = pending.pop()
            try:
                frame = session.run_columns(query, {**params, "lo": lo, "hi": hi})
                frame = frame[columns] if columns is not None else frame
            except GraphError as e:
                if not is_pool_full(e) or hi - lo < 2:
                    raise
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]
                continue
            merged = merge(merged, frame)
            bar.update(hi - lo)
    return merged


HOP_MASK = (1 << PAIR_HOP_BITS) - 1


def reduce_packed(packed: np.ndarray, count: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of `packed` = key * 32 + hop with the same key as one: (keys, summed counts as int32 (each
    row counts 1 when `count` is None), the smallest hop as int8).

    One sort of the packed int64 (keys < 2^58), so the first row of each key holds its smallest hop;
    1.5x faster than np.lexsort on (key, hop), and a plain sort (no argsort) when rows count 1.
    """
    if count is None:
        packed = np.sort(packed)
    else:
        order = np.argsort(packed)
        packed, count = packed[order], count[order]
        del order
    keys = packed >> PAIR_HOP_BITS
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    if count is None:
        summed = np.diff(np.r_[starts, len(keys)])
    else:
        summed = np.add.reduceat(count, starts, dtype=np.int64) if len(starts) else count.astype(np.int64)
    return keys[starts], summed.astype(np.int32), (packed[starts] & HOP_MASK).astype(np.int8)


def to_unordered(packed: np.ndarray, item_bits: int) -> np.ndarray:
    """Packed forward pairs ((a << item_bits) | b) * 32 + hop -> the same with the smaller idx first,
    so (a, b) and (b, a) share one key: their counts add up and the smaller hop wins, as both
    directions need. Shifts and masks, not // and % (3x faster on int64)."""
    pair = packed >> PAIR_HOP_BITS
    first, second = pair >> item_bits, pair & ((1 << item_bits) - 1)
    return (((np.minimum(first, second) << item_bits) | np.maximum(first, second)) << PAIR_HOP_BITS) \
        | (packed & HOP_MASK)


def read_pairs(session: "GraphSession", window: int, splits: list[str], chunks: list[tuple[int, int]],
               n_items: int, progress: bool = False) -> pd.DataFrame:
    """The co-occurring item pairs over all event ranges, each once with the smaller idx first:
    (item_idx, neighbor_idx, count of both orders, smallest hop), in compact dtypes (int32 item
    positions and counts, int8 hops: 13 bytes a pair where Arrow's int64s take 32; ~30M pairs on 20M
    interactions). `both_directions` writes them out per anchor."""
    item_bits = max(int(n_items - 1).bit_length(), 1)     # the query's $item_stride is 2^item_bits
    if 2 * item_bits + PAIR_HOP_BITS > 63:
        raise ValueError(f"{n_items:,} items: an item pair and its hop do not fit one int64")

    def merge(acc, frame):
        packed = to_unordered(frame["pair"].to_numpy(dtype=np.int64), item_bits)
        count = frame["count"].to_numpy(dtype=np.int32) if "count" in frame else None   # None: one path a row
        del frame
        if acc is not None:
            keys, acc_count, hop = acc
            new_count = count if count is not None else np.ones(len(packed), dtype=np.int32)
            packed = np.concatenate([(keys << PAIR_HOP_BITS) | hop.astype(np.int64), packed])
            count = np.concatenate([acc_count, new_count])
            del keys, acc_count, hop, new_count
        return reduce_packed(packed, count)

    keys, count, hop = read_chunked(session, cooccurrence_query(window),
                                    {"splits": splits, "item_stride": 1 << item_bits}, chunks, None, merge,
                                    "co-occurrence", progress)
    return pd.DataFrame({"item_idx": (keys >> item_bits).astype(np.int32),
                         "neighbor_idx": (keys & ((1 << item_bits) - 1)).astype(np.int32), "count": count, "hop": hop})


def both_directions(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each unordered pair of `read_pairs` as (i, j) and (j, i), same count and hop (rows not sorted)."""
    first, second = pairs["item_idx"].to_numpy(), pairs["neighbor_idx"].to_numpy()
    return pd.DataFrame({"item_idx": np.concatenate([first, second]), "neighbor_idx": np.concatenate([second, first]),
                         "count": np.tile(pairs["count"].to_numpy(), 2), "hop": np.tile(pairs["hop"].to_numpy(), 2)})


def read_cooccurrence(session: "GraphSession", item_ids: np.ndarray, window: int, splits: list[str]) -> pd.DataFrame:
    """Co-occurrence of every item pair within `window` positions of the `splits` parts, both
    directions: rows of (item_id, neighbor_id, count, hop). `item_ids[k]` is the item whose
    `Item.idx` is k (dataset.items' order). One chunk: for tests and benchmarks; the build reads
    `read_pairs` in chunks and keeps integer positions."""
    n_events = session.run("MATCH (e:Event) RETURN count(e) AS n")[0]["n"]
    pairs = both_directions(read_pairs(session, window, splits, [(0, max(n_events, 1))], len(item_ids)))
    item_ids = np.asarray(item_ids, dtype=object)
    return pd.DataFrame({"item_id": item_ids[pairs["item_idx"].to_numpy()],
                         "neighbor_id": item_ids[pairs["neighbor_idx"].to_numpy()],
                         "count": pairs["count"].to_numpy(dtype=np.int64),
                         "hop": pairs["hop"].to_numpy(dtype=np.int64)})


# The O(n^2)-per-user join this module used before sequences were paths, with the same output as
# `read_cooccurrence`: only bench/bench_cooccur.py runs it, as the baseline.
COOCCURRENCE_JOIN_QUERY = """
MATCH (u:User)-[a:INTERACTED]->(i:Item), (u)-[b:INTERACTED]->(j:Item)
WHERE a.split IN $splits AND b.split IN $splits
  AND b.pos <> a.pos AND b.pos >= a.pos - $window AND b.pos <= a.pos + $window
  AND i <> j
RETURN i.id AS item_id, j.id AS neighbor_id, count(*) AS count, min(abs(b.pos - a.pos)) AS hop
"""


# Back-fill candidates for items with fewer than k collaborative neighbours: the co-occurrence
# neighbours of their semantic neighbours, in (semantic rank, collaborative rank) order.
BACKFILL_CANDIDATES_QUERY = PerDialect(
    ladybug="""
UNWIND $item_ids AS anchor_id
MATCH (i:Item {id: anchor_id})-[s:SIMILAR]->(m:Item)-[c:COLLAB]->(j:Item)
WHERE c.source = 'cooccur' AND j.id <> i.id
RETURN i.id AS item_id, j.id AS neighbor_id, m.id AS via_item_id, s.rank AS similar_rank,
       c.rank AS collab_rank
""",
    neo4j="""
UNWIND $item_ids AS anchor_id
MATCH (i:Item {id: anchor_id, build: $build})-[s:SIMILAR]->(m:Item)-[c:COLLAB]->(j:Item)
WHERE c.source = 'cooccur' AND j.id <> i.id
RETURN i.id AS item_id, j.id AS neighbor_id, m.id AS via_item_id, s.rank AS similar_rank,
       c.rank AS collab_rank
""")

CREATE_COLLAB_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (a:Item {id: row.item_id, build: $build})
MATCH (b:Item {id: row.neighbor_id, build: $build})
CREATE (a)-[:COLLAB {rank: row.rank, count: row.count, hop: row.hop, source: row.source,
                     via_item_id: row.via_item_id, window: row.window, k: row.k,
                     split_scope: row.split_scope, build: $build}]->(b)
"""

READ_COLLAB_QUERY = """
MATCH (a:Item)-[r:COLLAB]->(b:Item)
RETURN a.id AS item_id, b.id AS neighbor_id, r.rank AS rank, r.count AS count, r.hop AS hop,
       r.source AS source, r.via_item_id AS via_item_id, r.window AS window, r.k AS k,
       r.split_scope AS split_scope
"""

ITEM_COLLAB_QUERY = """
MATCH (a:Item {id: $item_id})-[r:COLLAB]->(b:Item)
RETURN r.rank AS rank, b.id AS item_id, b.title AS title, r.count AS count, r.hop AS hop,
       r.source AS source, r.via_item_id AS via_item_id
ORDER BY rank
"""

COLUMNS = ("item_id", "neighbor_id", "rank", "count", "hop", "source", "via_item_id")

# The builder's statement at the default window, for Neo4j's linter (tests/test_cypher_lint.py).
LINT_EXAMPLES_NEO4J = [cooccurrence_query(5).neo4j]


def select_top_collab(pairs: pd.DataFrame, popularity_by_idx: np.ndarray, item_ids: np.ndarray,
                      k: int, block_rows: int = 4_000_000) -> pd.DataFrame:
    """Top-k co-occurrence neighbours per item: count desc, popularity desc, source order asc.

    `pairs` holds integer item positions (`both_directions`); ids are looked up for the kept rows
    only. Anchors are ranked in blocks of about `block_rows` pairs (an anchor is never split), so
    the sort keys and their argsort exist for one block at a time: on the 20M MovieLens shape (~60M
    pairs) ranking all at once held five 0.5 GB int64 temporaries beside the pairs themselves. When
    the three keys fit one int64 (anchor, count, the neighbour's rank by (popularity desc, position
    asc)), one argsort replaces the four-key np.lexsort.
    """
    anchor_all = pairs["item_idx"].to_numpy()
    n = len(popularity_by_idx)
    pop = np.asarray(popularity_by_idx, dtype=np.int64)
    by_pop = np.lexsort((np.arange(n), -pop))          # neighbours in tie-break order
    pop_rank = np.empty(n, dtype=np.int64)
    pop_rank[by_pop] = np.arange(n)
    item_bits = max(int(n - 1).bit_length(), 1)

    # Block edges on anchor idx: cut where the running row count passes a multiple of block_rows.
    rows_through = np.cumsum(np.bincount(anchor_all, minlength=n)) if len(anchor_all) else np.zeros(n, np.int64)
    cuts = np.searchsorted(rows_through, np.arange(block_rows, len(anchor_all), block_rows)) + 1
    edges = np.unique(np.r_[0, cuts, n])
    kept_rows, kept_ranks = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        one_block = len(edges) == 2
        rows = np.arange(len(anchor_all)) if one_block else np.flatnonzero((anchor_all >= lo) & (anchor_all < hi))
        anchor = anchor_all[rows].astype(np.int64)
        neighbour = pairs["neighbor_idx"].to_numpy()[rows].astype(np.int64)
        count = pairs["count"].to_numpy()[rows].astype(np.int64)
        top_count = int(count.max(initial=0))
        count_bits = max(top_count.bit_length(), 1)
        if 2 * item_bits + count_bits <= 63:
            ranked = np.argsort((anchor << (count_bits + item_bits)) | ((top_count - count) << item_bits)
                                | pop_rank[neighbour])
        else:   # np.lexsort: the last key is the primary one
            ranked = np.lexsort((neighbour, -pop[neighbour], -count, anchor))
        del neighbour, count
        anchor_sorted = anchor[ranked]
        starts = np.r_[0, np.flatnonzero(np.diff(anchor_sorted)) + 1] if len(ranked) else np.zeros(0, np.int64)
        rank = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)])) + 1
        keep = rank <= k
        kept_rows.append(rows[ranked[keep]])
        kept_ranks.append(rank[keep])
    rows = np.concatenate(kept_rows) if kept_rows else np.zeros(0, np.int64)
    item_ids = np.asarray(item_ids, dtype=object)
    return pd.DataFrame({"item_id": item_ids[anchor_all[rows]],
                         "neighbor_id": item_ids[pairs["neighbor_idx"].to_numpy()[rows]],
                         "rank": (np.concatenate(kept_ranks) if kept_ranks else rows).astype(np.int64),
                         "count": pairs["count"].to_numpy()[rows].astype(np.int64),
                         "hop": pairs["hop"].to_numpy()[rows].astype(np.int64),
                         "source": "cooccur", "via_item_id": None})


def select_backfill(candidates: pd.DataFrame, top: pd.DataFrame, item_ids: list[str], k: int) -> pd.DataFrame:
    """Fill each short item up to k from its semantic neighbours' co-occurrence neighbours.

    Candidates are taken in (semantic rank, collaborative rank) order; a neighbour already present
    (or the item itself) is skipped; each keeps the semantic neighbour it came through (`via`).
    """
    have = top.groupby("item_id").size()
    present = set(zip(top["item_id"], top["neighbor_id"]))
    ordered = candidates.sort_values(["item_id", "similar_rank", "collab_rank"], kind="stable")
    ordered = ordered.drop_duplicates(["item_id", "neighbor_id"], keep="first")
    keep = [(a, n) not in present for a, n in zip(ordered["item_id"], ordered["neighbor_id"])]
    ordered = ordered[np.array(keep, dtype=bool)] if len(ordered) else ordered
    ordered = ordered.assign(slot=ordered.groupby("item_id", sort=False).cumcount()
                             + ordered["item_id"].map(have).fillna(0).astype(int).to_numpy() + 1)
    fill = ordered[ordered["slot"] <= k]
    fill = fill[fill["item_id"].isin(item_ids)]
    return pd.DataFrame({"item_id": fill["item_id"].to_numpy(), "neighbor_id": fill["neighbor_id"].to_numpy(),
                         "rank": fill["slot"].to_numpy(dtype=np.int64), "count": np.zeros(len(fill), np.int64),
                         "hop": pd.array([pd.NA] * len(fill), dtype="Int64"),
                         "source": "semantic_backfill", "via_item_id": fill["via_item_id"].to_numpy()})


def build(ctx: BuildContext) -> pd.DataFrame:
    config = ctx.config
    edge_params = {"window": config.window, "k": config.collab_k, "split_scope": config.split_scope}
    with ctx.stage("cooccur"):
        popularity = ctx.popularity.reindex(ctx.order.index).fillna(0).to_numpy(dtype=np.int64)
        chunks = event_chunks(len(ctx.dataset.interactions), config.cooccur_chunk_events)
        pairs = both_directions(read_pairs(ctx.session, config.window, config.splits, chunks, len(ctx.item_ids),
                                           ctx.progress))
        ctx.counts["cooccur_pairs"] = len(pairs)
        top = select_top_collab(pairs, popularity, ctx.item_ids, config.collab_k)
        del pairs
        top["hop"] = top["hop"].astype("Int64")
        ctx.write(RELATION, top.assign(**edge_params))

    backfill = top.iloc[0:0]
    if ctx.embeddings is not None:   # SIMILAR is built (build_after): fill short items from it
        with ctx.stage("backfill"):
            have = top.groupby("item_id").size()
            short = [i for i in ctx.dataset.items["item_id"] if have.get(i, 0) < config.collab_k]
            candidates = ctx.read(BACKFILL_CANDIDATES_QUERY, {"item_ids": short},
                                  ["item_id", "neighbor_id", "via_item_id", "similar_rank", "collab_rank"])
            backfill = select_backfill(candidates, top, short, config.collab_k)
            ctx.write(RELATION, backfill.assign(**edge_params))
    return pd.concat([top, backfill], ignore_index=True).sort_values(["item_id", "rank"], ignore_index=True)


def _tidy(collab: pd.DataFrame) -> pd.DataFrame:
    collab["hop"] = collab["hop"].astype("Int64")
    collab["via_item_id"] = collab["via_item_id"].astype(object).where(collab["via_item_id"].notna(), None)
    return collab


RELATION = Relation(
    name="COLLAB",
    summary="item j co-occurs with item i within the window (top-k by count), or back-fills a short list "
            "through a semantic neighbour",
    ladybug_table="CREATE REL TABLE IF NOT EXISTS COLLAB(FROM Item TO Item, rank INT64, count INT64, hop INT64, "
                  "source STRING, via_item_id STRING, window INT64, k INT64, split_scope STRING)",
    create_query=CREATE_COLLAB_QUERY_NEO4J,
    read_query=READ_COLLAB_QUERY,
    build=build,
    export_name="collab",
    export_columns=COLUMNS,
    jsonl_columns=("count", "source"),
    build_after=("SIMILAR",),
    stages=lambda config: ("cooccur", "backfill") if config.semantic else ("cooccur",),
    extra_counts=lambda frame: {"collab_backfilled": int((frame["source"] == "semantic_backfill").sum())},
    tidy=_tidy,
    task=Task(name="collab", description="collaborative-neighbour generation", default=True, k_setting="collab_k",
              instruction="Here is an item. List the items that users most often interact with shortly "
                          "before or after it, one per line, strongest first."),
    legend=Legend("COLLAB: the target is a collaborative neighbour (#rank)", "SKY_BLUE", "dashed"),
    item_view=ItemView(
        title="Collaborative neighbours", query=ITEM_COLLAB_QUERY,
        columns=(Column("count", "co-occur.", "count"),
                 Column("source", "source", help="cooccur: within the window; semantic_backfill: a "
                                                 "co-occurrence neighbour of a semantic neighbour (via)"),
                 Column("via_item_id", "via", only_if_any=True)),
        empty="No collaborative neighbours."),
)
