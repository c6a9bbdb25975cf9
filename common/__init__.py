"""What every stage shares and nothing else: the project's error classes, atomic file writes and the
one way settings become flags and TOML tables (`common.config`).

The lowest floor: `common` imports no other iirg package, and ingest, graph, evaluate, train and
dashboard all import from it.
"""

from common.errors import ConfigError, IirgError
from common.files import atomic_dir, atomic_file, replace_dir, write_json, write_parquet, write_text

__all__ = ["ConfigError", "IirgError", "atomic_dir", "atomic_file", "replace_dir", "write_json",
           "write_parquet", "write_text"]
