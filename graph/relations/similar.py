"""SIMILAR: semantic neighbours, the top-k items by cosine of their text embeddings.

Item text is the title plus the start of the description (graph.semantic.item_texts), embedded with
sentence-transformers (cached by text hash). Built only with `semantic` on (the default); the export
then still holds an empty similar.parquet.

The embedded store computes the top-k exactly in numpy, in row blocks (graph.semantic.topk_cosine:
ties by row index). Neo4j finds it in the server with a vector index over `Item.embedding` (cosine,
HNSW): `db.index.vector.queryNodes` per item, itself excluded, ranked by score desc then source order
(`idx`, the same tie-break), written in batches of inner transactions. The index is approximate: on a
large catalogue a few neighbours (and so ranks) can differ from the exact top-k, and scores are
float32. Neo4j scores cosine as (1 + cos) / 2; the edges store cos, like the embedded store.

While a Neo4j build runs, the previous build's items are in the index too (graph/queries.py: build
stamp), so each query asks for (k + 1) x copies candidates and keeps this build's: with the same
items in both copies that still holds the top k + 1; with a very different previous catalogue an
item may get fewer than k neighbours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graph.relations.spec import BuildContext, Column, ItemView, Legend, Relation, Task
from graph.semantic import topk_cosine

# The spec's `create_query` (rows computed in Python, written by Neo4j). Neo4j builds make their SIMILAR
# edges in the server with the vector index below instead, so no build sends it today; it stays the
# one statement for loading numpy rows (e.g. an exact top-k) into a Neo4j build.
CREATE_SIMILAR_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (a:Item {id: row.item_id, build: $build})
MATCH (b:Item {id: row.neighbor_id, build: $build})
CREATE (a)-[:SIMILAR {rank: row.rank, score: row.score, model: row.model, k: row.k, build: $build}]->(b)
"""

# -- Neo4j: SIMILAR from a vector index --------------------------------------------------------------
VECTOR_INDEX_NAME = "item_embedding"
VECTOR_INDEX_TIMEOUT_S = 600     # population of a 20k-item index takes seconds; a stuck one fails the build


def vector_index_query(dimensions: int) -> str:
    """CREATE VECTOR INDEX over the item embeddings, cosine. The width is written into the text (the
    Neo4j 5 manual only shows literal OPTIONS): an integer the build takes from its embedding
    matrix, never user input."""
    if isinstance(dimensions, bool) or int(dimensions) != dimensions or not 1 <= dimensions <= 4096:
        raise ValueError(f"vector index dimensions must be an integer in 1..4096, got {dimensions!r}")
    return ("CREATE VECTOR INDEX item_embedding IF NOT EXISTS FOR (i:Item) ON (i.embedding) "
            f"OPTIONS {{indexConfig: {{`vector.dimensions`: {int(dimensions)}, "
            "`vector.similarity_function`: 'cosine'}}")


VECTOR_INDEX_DIMENSIONS_QUERY_NEO4J = """
SHOW VECTOR INDEXES YIELD name, options
WHERE name = 'item_embedding'
RETURN options.indexConfig['vector.dimensions'] AS dimensions
"""

# An index of another width (another --embed-model) cannot index these embeddings: replaced. The
# current copy's SIMILAR edges are already written, so it loses nothing.
DROP_VECTOR_INDEX_QUERY_NEO4J = "DROP INDEX item_embedding IF EXISTS"

AWAIT_VECTOR_INDEX_QUERY_NEO4J = "CALL db.awaitIndex('item_embedding', $timeout_s)"

# How many copies of the graph have embedded items in the index (this build's, and the current one's).
EMBEDDED_COPIES_QUERY_NEO4J = """
MATCH (i:Item)
WHERE i.embedding IS NOT NULL
RETURN count(DISTINCT coalesce(i.build, -1)) AS copies
"""

# Per item of this build: its nearest items of this build, itself excluded, by score desc then source
# order; rank 1..k. A server-side row source, so it commits in inner transactions of $batch_rows items.
CREATE_SIMILAR_FROM_INDEX_QUERY_NEO4J = """
MATCH (i:Item {build: $build})
WHERE i.embedding IS NOT NULL
CALL (i) {
  CALL db.index.vector.queryNodes('item_embedding', $candidates, i.embedding) YIELD node, score
  WITH i, node AS j, score
  WHERE j.build = $build AND j <> i
  WITH i, j, score
  ORDER BY score DESC, j.idx ASC
  LIMIT $k
  WITH i, collect([j, score]) AS ranked
  UNWIND range(1, size(ranked)) AS rank
  WITH i, ranked[rank - 1][0] AS j, 2 * ranked[rank - 1][1] - 1 AS cosine, rank
  CREATE (i)-[:SIMILAR {rank: rank, score: cosine, model: $model, k: $k, build: $build}]->(j)
} IN TRANSACTIONS OF $batch_rows ROWS
"""

READ_BUILD_SIMILAR_QUERY_NEO4J = """
MATCH (a:Item {build: $build})-[r:SIMILAR]->(b:Item)
RETURN a.id AS item_id, b.id AS neighbor_id, r.rank AS rank, r.score AS score
"""

LINT_EXAMPLES_NEO4J = [vector_index_query(384)]

READ_SIMILAR_QUERY = """
MATCH (a:Item)-[r:SIMILAR]->(b:Item)
RETURN a.id AS item_id, b.id AS neighbor_id, r.rank AS rank, r.score AS score, r.model AS model,
       r.k AS k
"""

ITEM_SIMILAR_QUERY = """
MATCH (a:Item {id: $item_id})-[r:SIMILAR]->(b:Item)
RETURN r.rank AS rank, b.id AS item_id, b.title AS title, r.score AS score
ORDER BY rank
"""

COLUMNS = ("item_id", "neighbor_id", "rank", "score")


def candidates(k: int, copies: int) -> int:
    """Index candidates per item: k neighbours + the item itself, in every copy of the graph."""
    return (k + 1) * max(copies, 1)


def build_from_vector_index(ctx: BuildContext) -> pd.DataFrame:
    """Neo4j: SIMILAR edges from the `item_embedding` vector index (see the module docstring)."""
    session, config = ctx.session, ctx.config
    dimensions = int(ctx.embeddings.shape[1])
    existing = session.run(VECTOR_INDEX_DIMENSIONS_QUERY_NEO4J)
    if existing and existing[0]["dimensions"] != dimensions:
        session.run(DROP_VECTOR_INDEX_QUERY_NEO4J)
    session.run(vector_index_query(dimensions))
    session.run(AWAIT_VECTOR_INDEX_QUERY_NEO4J, {"timeout_s": VECTOR_INDEX_TIMEOUT_S})
    copies = session.run(EMBEDDED_COPIES_QUERY_NEO4J)[0]["copies"]
    session.run_in_batches(CREATE_SIMILAR_FROM_INDEX_QUERY_NEO4J, {
        "candidates": candidates(config.semantic_k, copies), "k": config.semantic_k,
        "model": config.embed_model})
    similar = session.run_df(READ_BUILD_SIMILAR_QUERY_NEO4J)[list(COLUMNS)]
    # In the order the embedded build returns: source order of the item, then rank.
    similar = similar.assign(_order=similar["item_id"].map(ctx.order)).sort_values(["_order", "rank"])
    similar = similar.drop(columns="_order").reset_index(drop=True)
    return similar.astype({"rank": np.int64, "score": np.float64})


def build(ctx: BuildContext) -> pd.DataFrame:
    if ctx.embeddings is None:
        return pd.DataFrame(columns=list(COLUMNS))
    config = ctx.config
    # The algorithm differs by backend, not just the text: Neo4j has a vector index in the server,
    # LadybugDB's vector extension needs a download, so there numpy computes the exact top-k.
    if ctx.session.dialect == "neo4j":
        with ctx.stage("semantic"):
            return build_from_vector_index(ctx)
    with ctx.stage("semantic"):
        neighbours, scores = topk_cosine(ctx.embeddings, config.semantic_k, config.similarity_batch_rows,
                                         ctx.progress)
        ids = ctx.dataset.items["item_id"].to_numpy()
        kk = neighbours.shape[1]
        similar = pd.DataFrame({
            "item_id": np.repeat(ids, kk), "neighbor_id": ids[neighbours.ravel()],
            "rank": np.tile(np.arange(1, kk + 1, dtype=np.int64), len(ids)),
            "score": scores.ravel().astype(np.float64)})
        ctx.write(RELATION, similar.assign(model=config.embed_model, k=config.semantic_k))
    return similar


RELATION = Relation(
    name="SIMILAR",
    summary="item j is among the top-k items whose text embedding is closest (cosine) to item i's",
    ladybug_table="CREATE REL TABLE IF NOT EXISTS SIMILAR(FROM Item TO Item, rank INT64, score DOUBLE, "
                  "model STRING, k INT64)",
    create_query=CREATE_SIMILAR_QUERY_NEO4J,
    read_query=READ_SIMILAR_QUERY,
    build=build,
    export_name="similar",
    export_columns=COLUMNS,
    jsonl_columns=("score",),
    stages=lambda config: ("semantic",) if config.semantic else (),
    task=Task(name="semantic", description="semantic-neighbour generation", default=True, k_setting="semantic_k",
              instruction="Here is an item. List the items whose content is most similar to it, one per "
                          "line, most similar first."),
    legend=Legend("SIMILAR: the target is a semantic neighbour (cosine)", "BLUISH_GREEN", "dashed"),
    item_view=ItemView(
        title="Semantic neighbours", query=ITEM_SIMILAR_QUERY,
        columns=(Column("score", "cosine", "score", max_value=1.0),),
        empty="No semantic neighbours (the graph was built without --semantic, or the item has no text)."),
)
