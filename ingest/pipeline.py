"""`load_dataset`: the one entry point from a dataset name or path to a canonical `Dataset`.

    from ingest import IngestConfig, load_dataset
    ds = load_dataset(IngestConfig(dataset="yelp", data_dir="../shared/data"))
    ds.save("runs/yelp/dataset")      # temp folder + rename: never half-written

It resolves the name/path (ingest.registry), runs the loader of the format, hashes every file it
read (sha256, compared with the registry's pinned values), and builds the canonical dataset
(ingest.schema.build_dataset: unique titles, stable order, leave-one-out splits, optional k-core).
`dataset.source` records the format, the files with their sha256, and the loader's choices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ingest.amazon import load_amazon
from ingest.config import IngestConfig
from ingest.errors import IngestError
from ingest.lcrec import load_lcrec
from ingest.movielens import load_movielens
from ingest.p5 import load_p5
from ingest.readers import file_sha256
from ingest.registry import RegistryEntry, Target, default_data_dir, resolve
from ingest.schema import Dataset, IngestReport, RawData, build_dataset
from ingest.tabular import load_tabular

Loader = Callable[[Path, IngestConfig, IngestReport], RawData]
LOADERS: dict[str, Loader] = {"movielens": load_movielens, "lcrec": load_lcrec, "p5": load_p5,
                              "amazon": load_amazon, "csv": load_tabular}


def load_dataset(config: IngestConfig) -> Dataset:
    """Read the raw files named by `config` into a canonical, split-labelled `Dataset`.

    Raises:
        DatasetNotFound: a registered dataset is not on disk (the message says what to download).
        IngestError: unreadable input, or (strict mode) the first bad record / checksum mismatch.
    """
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    target = resolve(config.dataset, data_dir=data_dir, format=config.format, name=config.name)
    if config.csv_options_given() and target.format != "csv":
        raise IngestError(f"{', '.join(config.csv_options_given())} only apply to CSV/Parquet input, but "
                          f"{config.dataset!r} is {target.format}", file=str(target.path))
    report = IngestReport(strict=config.strict)
    raw = LOADERS[target.format](target.path, config, report)
    files, warnings = describe_files(raw.files, target.entry, strict=config.strict and config.verify_checksums,
                                     verify=config.verify_checksums, progress=config.progress)
    source = {
        "format": target.format,
        "dataset": config.dataset,
        "registry_name": target.entry.name if target.entry else None,
        "path": str(target.path.resolve()),
        "files": files,
        "options": raw.options,
        "strict": config.strict,
    }
    if warnings:
        source["warnings"] = warnings
    if target.entry is not None:
        source["urls"] = list(target.entry.urls)
    return build_dataset(target.name, raw.items, raw.interactions, report, source=source,
                         min_interactions=config.min_interactions)


def describe_files(paths: list[Path], entry: RegistryEntry | None, *, strict: bool, verify: bool = True,
                   progress: bool = True) -> tuple[list[dict], list[str]]:
    """[{name, path, bytes, sha256, expected_sha256?, verified?}] and mismatch warnings."""
    files, warnings = [], []
    for path in paths:
        digest = file_sha256(path, progress=progress)
        record = {"name": path.name, "path": str(path.resolve()), "bytes": os.path.getsize(path), "sha256": digest}
        expected = entry.sha256.get(path.name) if entry is not None and verify else None
        if expected is not None:
            record["expected_sha256"] = expected
            record["verified"] = digest == expected
            if digest != expected:
                message = (f"{path.name} differs from the pinned {entry.name} release (sha256 {digest[:12]}..., "
                           f"expected {expected[:12]}...): results may not match published numbers")
                if strict:
                    raise IngestError(message, file=str(path))
                warnings.append(message)
        files.append(record)
    return files, warnings


__all__ = ["load_dataset", "LOADERS", "Target"]
