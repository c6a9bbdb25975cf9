"""SHARES_META: items sharing categories or brand, the top-k per item by IDF-weighted overlap.

Optional (`iirg build --extra-relations SHARES_META [--extra-k 10]`), and made from the item
catalogue alone (categories and brand of every item, MovieLens genres land in categories): no
interaction, so nothing of a held-out item leaks in.

Tokens are an item's distinct categories and its brand (a brand and a category of the same name
are different tokens). With N items and df(t) the number of items holding token t, the weight of a
shared token is its IDF, ln(N / df(t)), counted in millionths and rounded to an integer, so that
sums are exact and ties deterministic. For item i, neighbour j scores

    score(i, j) = sum over tokens t held by both of round(1e6 * ln(N / df(t))) / 1e6

and the top-k neighbours are kept by score desc, then the neighbour's source order asc; `shared` is
the number of tokens in common. A token held by every item (weight 0) or by more than MAX_ITEMS items
is left out: it says little, and its df^2 pairs would dominate the build (Yelp's "Restaurants" alone
holds 13,747 of 20,033 items, 189M ordered pairs).

Cypher (same text on both dialects) finds the pairs per shared token and counts them per document
frequency; numpy weighs, sums and ranks them (the same split as COLLAB: the graph aggregates,
Python applies the exact tie-breaks). tests/test_relations.py compares the edges with an independent
pandas computation on ml-100k (genres) and Amazon Office (categories and brands).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graph.dialect import PerDialect
from graph.relations.spec import BuildContext, Column, ItemView, Legend, Relation, Task

MAX_ITEMS = 2000   # tokens held by more items than this are ignored (see the module docstring)
WEIGHT_UNIT = 1_000_000   # IDF weights are integers in millionths

# Both pair queries end alike: from one tag's item list (df = how many items hold the tag), every
# ordered pair of distinct items, with how many such tags they share.
_PAIRS_OF_TAG_GROUPS = """
WITH item_ids, size(item_ids) AS df
WHERE df > 1 AND df < $n_items AND df <= $max_items
UNWIND item_ids AS item_id
UNWIND item_ids AS neighbor_id
WITH item_id, neighbor_id, df
WHERE item_id <> neighbor_id
RETURN item_id, neighbor_id, df, count(*) AS n
"""

# Ordered pairs of distinct items sharing a category, counted per document frequency of the category.
# On Neo4j the items of this build's copy only (graph/queries.py: build stamp).
SHARED_CATEGORY_PAIRS_QUERY = PerDialect(
    ladybug="""
MATCH (i:Item)
UNWIND i.categories AS category
WITH DISTINCT category, i.id AS item_id
WITH category, collect(item_id) AS item_ids
""" + _PAIRS_OF_TAG_GROUPS.lstrip("\n"),
    neo4j="""
MATCH (i:Item {build: $build})
UNWIND i.categories AS category
WITH DISTINCT category, i.id AS item_id
WITH category, collect(item_id) AS item_ids
""" + _PAIRS_OF_TAG_GROUPS.lstrip("\n"))

# The same for the brand (one token per item; an empty brand is none).
SHARED_BRAND_PAIRS_QUERY = PerDialect(
    ladybug="""
MATCH (i:Item)
WHERE i.brand IS NOT NULL AND i.brand <> ''
WITH i.brand AS brand, collect(i.id) AS item_ids
""" + _PAIRS_OF_TAG_GROUPS.lstrip("\n"),
    neo4j="""
MATCH (i:Item {build: $build})
WHERE i.brand IS NOT NULL AND i.brand <> ''
WITH i.brand AS brand, collect(i.id) AS item_ids
""" + _PAIRS_OF_TAG_GROUPS.lstrip("\n"))

CREATE_SHARES_META_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (a:Item {id: row.item_id, build: $build})
MATCH (b:Item {id: row.neighbor_id, build: $build})
CREATE (a)-[:SHARES_META {rank: row.rank, score: row.score, shared: row.shared, k: row.k,
                          build: $build}]->(b)
"""

READ_SHARES_META_QUERY = """
MATCH (a:Item)-[r:SHARES_META]->(b:Item)
RETURN a.id AS item_id, b.id AS neighbor_id, r.rank AS rank, r.score AS score, r.shared AS shared
"""

ITEM_SHARES_META_QUERY = """
MATCH (a:Item {id: $item_id})-[r:SHARES_META]->(b:Item)
RETURN r.rank AS rank, b.id AS item_id, b.title AS title, r.score AS score, r.shared AS shared
ORDER BY rank
"""

COLUMNS = ("item_id", "neighbor_id", "rank", "score", "shared")


def idf_weights(df: np.ndarray, n_items: int) -> np.ndarray:
    """round(1e6 * ln(N / df)) as int64: the weight of a token held by `df` of `n_items` items."""
    return np.rint(WEIGHT_UNIT * np.log(n_items / np.asarray(df, dtype=np.float64))).astype(np.int64)


def select_top_shared(pairs: pd.DataFrame, order: pd.Series, k: int) -> pd.DataFrame:
    """Top-k neighbours per item from (item_id, neighbor_id, df, n) rows: score desc, source order asc.

    Summed on integer item positions and integer weights: exact, and fast on millions of rows.
    """
    ids = order.index.to_numpy(dtype=object)
    n_items = len(ids)
    value_set = pa.array(ids)
    anchor = pc.index_in(pa.array(pairs["item_id"].to_numpy(dtype=object)), value_set=value_set).to_numpy()
    neighbour = pc.index_in(pa.array(pairs["neighbor_id"].to_numpy(dtype=object)), value_set=value_set).to_numpy()
    count = pairs["n"].to_numpy(dtype=np.int64)
    weight = idf_weights(pairs["df"].to_numpy(), n_items) * count
    keys, inverse = np.unique(anchor.astype(np.int64) * n_items + neighbour, return_inverse=True)
    score = np.zeros(len(keys), dtype=np.int64)
    shared = np.zeros(len(keys), dtype=np.int64)
    np.add.at(score, inverse, weight)
    np.add.at(shared, inverse, count)
    a, b = keys // n_items, keys % n_items
    ranked = np.lexsort((b, -score, a))            # the last key is the primary one
    a_sorted = a[ranked]
    starts = np.r_[0, np.flatnonzero(np.diff(a_sorted)) + 1]
    rank = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)])) + 1
    keep = ranked[rank <= k]
    top = pd.DataFrame({"item_id": ids[a[keep]], "neighbor_id": ids[b[keep]],
                        "rank": rank[rank <= k].astype(np.int64),
                        "score": score[keep] / WEIGHT_UNIT, "shared": shared[keep]})
    return top.sort_values(["item_id", "rank"], ignore_index=True)


def build(ctx: BuildContext) -> pd.DataFrame:
    with ctx.stage("meta"):
        params = {"n_items": len(ctx.dataset.items), "max_items": MAX_ITEMS}
        columns = ["item_id", "neighbor_id", "df", "n"]
        pairs = pd.concat([ctx.read(SHARED_CATEGORY_PAIRS_QUERY, params, columns),
                           ctx.read(SHARED_BRAND_PAIRS_QUERY, params, columns)], ignore_index=True)
        ctx.counts["shares_meta_pairs"] = len(pairs)
        edges = select_top_shared(pairs, ctx.order, ctx.config.extra_k)
        ctx.write(RELATION, edges.assign(k=ctx.config.extra_k))
    return edges


RELATION = Relation(
    name="SHARES_META",
    summary="item j shares categories or the brand with item i (top-k by IDF-weighted overlap)",
    ladybug_table="CREATE REL TABLE IF NOT EXISTS SHARES_META(FROM Item TO Item, rank INT64, score DOUBLE, "
                  "shared INT64, k INT64)",
    create_query=CREATE_SHARES_META_QUERY_NEO4J,
    read_query=READ_SHARES_META_QUERY,
    build=build,
    export_name="shares_meta",
    export_columns=COLUMNS,
    jsonl_columns=("score", "shared"),
    optional=True,
    stages=lambda config: ("meta",),
    params=lambda config: {"k": config.extra_k, "weight": "idf", "max_items": MAX_ITEMS},
    task=Task(name="meta", description="same-category/brand neighbour generation",
              instruction="Here is an item. List the items that share its most distinctive categories "
                          "or its brand, one per line, closest first."),
    legend=Legend("SHARES_META: the target shares categories or the brand (IDF score)", "REDDISH_PURPLE",
                  "dotted"),
    item_view=ItemView(
        title="Same category or brand", query=ITEM_SHARES_META_QUERY,
        columns=(Column("score", "IDF score", "score",
                        help="sum of ln(N / df) over the categories and brand both items have"),
                 Column("shared", "shared", "count", help="categories and brand in common")),
        empty="No item shares a category or the brand with this one (or only very common ones)."),
)
