"""graph: the item graph. Stores (embedded LadybugDB, Neo4j), schema, Cypher, relations, export.

Stage 2 of iirg: loads a canonical `ingest.schema.Dataset`, builds NEXT / COLLAB / SIMILAR relations
with Cypher and exports them for training. `train` and `dashboard` read from here.
"""
