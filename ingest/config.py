"""`IngestConfig`: everything that decides how raw files become a canonical dataset.

    from ingest import IngestConfig, load_dataset
    ds = load_dataset(IngestConfig(dataset="ml-100k", data_dir="../shared/data"))
    ds = load_dataset(IngestConfig(dataset="clicks.csv", format="csv", user_col="uid", item_col="sku"))

Round-trips through `to_dict()` / `IngestConfig.from_dict()` (unknown keys are errors), which is
what `iirg ingest` records in the run's config.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from common.config import build_config
from ingest.errors import ConfigError

Format = Literal["auto", "movielens", "lcrec", "p5", "amazon", "csv"]
TimestampUnit = Literal["auto", "s", "ms", "iso"]

# Options that only the generic CSV/Parquet loader reads.
CSV_OPTIONS = ("user_col", "item_col", "timestamp_col", "rating_col", "timestamp_unit", "delimiter", "column_names",
               "items_path", "item_id_col", "title_col", "description_col", "categories_col",
               "brand_col", "categories_sep")


@dataclass
class IngestConfig:
    dataset: str = field(metadata={"help": "registered name (ml-100k, ml-1m, ml-20m, amazon-office, "
                                           "amazon-<category>, yelp; `iirg datasets` lists them) or a path "
                                           "to a folder or file"})
    format: Format = field(default="auto", metadata={
        "help": "input format; auto = the registry's format for a name, detected from the files for a path"})
    data_dir: str | None = field(default=None, metadata={
        "help": "folder holding one sub-folder per registered dataset (default: $IIRG_DATA_DIR, "
                "else <repo>/../shared/data, else ./data)"})
    name: str | None = field(default=None, metadata={
        "help": "dataset name stored in the output (default: the registry name or the folder/file name)"})
    strict: bool = field(default=False, metadata={
        "help": "raise on the first bad record (file, line, field) instead of skipping and counting it"})
    min_interactions: int = field(default=0, metadata={
        "help": "k-core filter: repeatedly drop users and items with fewer than k interactions (0 = keep all)"})
    encoding: str | None = field(default=None, metadata={
        "help": "text encoding of the input (default: per format; MovieLens item files: UTF-8, else Latin-1)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars for big files"})
    verify_checksums: bool = field(default=True, metadata={
        "help": "compare files of registered datasets with their pinned sha256 (a mismatch is a warning, "
                "an error in strict mode)"})
    # -- P5 ---------------------------------------------------------------------------------
    item_id_offset: int | None = field(default=None, metadata={
        "help": "P5 only: item JSON key = sequence item id - offset (Yelp.item.json: 1); "
                "default: detected from the keys and checked against the file's size"})
    # -- generic CSV / Parquet ----------------------------------------------------------------
    user_col: str | None = field(default=None, metadata={"help": "CSV: user id column (default user_id)"})
    item_col: str | None = field(default=None, metadata={"help": "CSV: item id column (default item_id)"})
    timestamp_col: str | None = field(default=None, metadata={
        "help": "CSV: timestamp column (default: `timestamp` when present, else no timestamps)"})
    rating_col: str | None = field(default=None, metadata={
        "help": "CSV: rating column (default: `rating` when present)"})
    timestamp_unit: TimestampUnit | None = field(default=None, metadata={
        "help": "CSV: s, ms, iso (date text) or auto (numbers above 1e11 are milliseconds)"})
    delimiter: str | None = field(default=None, metadata={
        "help": "CSV: field separator (default: tab for .tsv/.tab, comma otherwise)"})
    column_names: str | None = field(default=None, metadata={
        "help": "CSV: comma-separated column names for an interactions file WITHOUT a header line "
                "(e.g. Amazon ratings_<Cat>.csv: user_id,item_id,rating,timestamp)"})
    items_path: str | None = field(default=None, metadata={
        "help": "CSV: item file (CSV/TSV/Parquet); without it items are the ids seen, titled by id"})
    item_id_col: str | None = field(default=None, metadata={"help": "CSV item file: id column (default item_id)"})
    title_col: str | None = field(default=None, metadata={"help": "CSV item file: title column (default title)"})
    description_col: str | None = field(default=None, metadata={
        "help": "CSV item file: description column (default: `description` when present)"})
    categories_col: str | None = field(default=None, metadata={
        "help": "CSV item file: categories column (default: `categories` when present)"})
    brand_col: str | None = field(default=None, metadata={
        "help": "CSV item file: brand column (default: `brand` when present)"})
    categories_sep: str | None = field(default=None, metadata={
        "help": "CSV item file: separator inside the categories field (default |)"})

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError("dataset must be a registered name or a path")
        if self.format not in get_args(Format):
            raise ConfigError(f"format must be one of {get_args(Format)}, not {self.format!r}")
        if isinstance(self.min_interactions, bool) or not isinstance(self.min_interactions, int) \
                or self.min_interactions < 0:
            raise ConfigError(f"min_interactions must be an integer >= 0, not {self.min_interactions!r}")
        if self.item_id_offset is not None and (not isinstance(self.item_id_offset, int)
                                                or isinstance(self.item_id_offset, bool)):
            raise ConfigError(f"item_id_offset must be an integer, not {self.item_id_offset!r}")
        if self.item_id_offset is not None and self.format not in ("auto", "p5"):
            raise ConfigError("item_id_offset only applies to format 'p5'")
        if self.timestamp_unit is not None and self.timestamp_unit not in get_args(TimestampUnit):
            raise ConfigError(f"timestamp_unit must be one of {get_args(TimestampUnit)}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError(f"delimiter must be one character, not {self.delimiter!r}")
        if self.column_names is not None:
            names = [n.strip() for n in self.column_names.split(",")]
            if not all(names) or len(set(names)) != len(names):
                raise ConfigError(f"column_names must be distinct, non-empty, comma-separated: {self.column_names!r}")
        if self.categories_sep is not None and not self.categories_sep:
            raise ConfigError("categories_sep must not be empty")
        if self.encoding is not None:
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError as e:
                raise ConfigError(f"unknown encoding {self.encoding!r}") from e
        given = [name for name in CSV_OPTIONS if getattr(self, name) is not None]
        if given and self.format not in ("auto", "csv"):
            raise ConfigError(f"{', '.join(given)} only apply to format 'csv', not {self.format!r}")

    def csv_options_given(self) -> list[str]:
        return [name for name in CSV_OPTIONS if getattr(self, name) is not None]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "IngestConfig":
        return build_config(cls, values, table="ingest")
