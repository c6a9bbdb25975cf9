"""graph: the item graph. Stores (embedded LadybugDB, Neo4j), schema, Cypher, relations, export.

Stage 2 of iirg: loads a canonical `ingest.schema.Dataset`, builds the item-item relations of
graph/relations (NEXT / COLLAB / SIMILAR, and optional ones such as SHARES_META) with Cypher and
exports them for training. `train` and `dashboard` read from here.
"""
