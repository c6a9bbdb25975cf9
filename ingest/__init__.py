"""ingest: raw dataset files -> one canonical, validated `Dataset` (no database here).

Stage 1 of iirg. Loaders for MovieLens, LC-Rec/LETTER, P5/IIRG, raw Amazon reviews and generic
CSV/Parquet all produce the same `Dataset` (see `ingest.schema`), which `graph` then loads.

    from ingest import IngestConfig, load_dataset
    ds = load_dataset(IngestConfig(dataset="ml-100k"))
    ds.stats(), ds.report.to_dict(), ds.source
"""

from ingest.config import IngestConfig
from ingest.errors import ConfigError, DatasetNotFound, IirgError, IngestError
from ingest.pipeline import load_dataset
from ingest.schema import Dataset, IngestReport

__all__ = ["load_dataset", "IngestConfig", "Dataset", "IngestReport", "IngestError", "DatasetNotFound",
           "ConfigError", "IirgError"]
