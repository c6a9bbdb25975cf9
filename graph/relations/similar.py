"""SIMILAR: semantic neighbours, the exact top-k items by cosine of their text embeddings.

Item text is the title plus the start of the description (graph.semantic.item_texts), embedded with
sentence-transformers (cached by text hash); the top-k is computed exactly in row blocks
(graph.semantic.topk_cosine: ties by row index). Built only with `semantic` on (the default); the
export then still holds an empty similar.parquet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graph.relations.spec import BuildContext, Column, ItemView, Legend, Relation, Task
from graph.semantic import topk_cosine

CREATE_SIMILAR_QUERY = """
UNWIND $rows AS row
MATCH (a:Item {id: row.item_id}), (b:Item {id: row.neighbor_id})
CREATE (a)-[:SIMILAR {rank: row.rank, score: row.score, model: row.model, k: row.k}]->(b)
"""

DELETE_SIMILAR_QUERY = "MATCH (:Item)-[r:SIMILAR]->(:Item) DELETE r"

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


def build(ctx: BuildContext) -> pd.DataFrame:
    if ctx.embeddings is None:
        return pd.DataFrame(columns=list(COLUMNS))
    config = ctx.config
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
    create_query=CREATE_SIMILAR_QUERY,
    delete_query=DELETE_SIMILAR_QUERY,
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
