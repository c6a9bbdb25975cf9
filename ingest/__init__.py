"""ingest: raw dataset files -> one canonical, validated `Dataset` (no database here).

Stage 1 of iirg. Loaders for MovieLens, LC-Rec/LETTER, P5/IIRG, raw Amazon reviews and generic
CSV/Parquet all produce the same `Dataset` (see `ingest.schema`), which `graph` then loads.
"""
