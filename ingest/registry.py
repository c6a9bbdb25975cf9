"""Registered datasets (name -> folder under the data directory, download URLs, pinned sha256) and
format detection for paths.

    from ingest.registry import resolve, default_data_dir
    target = resolve("ml-100k", data_dir=default_data_dir(os.environ))
    target.path, target.format          # data/ml-100k, "movielens"

Names: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small, amazon-office (LC-Rec copy
of Office Products), amazon-<category> (raw 2014, 2018 or 2023 review + metadata files; aliases
beauty, sports, toys, ...), yelp (P5 + LETTER). Resolving never downloads: a missing dataset raises
`DatasetNotFound` saying what to download, from where, and which folder to put it in
(`iirg download <name>`, ingest/download.py, does it and checks the pins below).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import DatasetNotFound, IngestError

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "IIRG_DATA_DIR"
NOT_PINNED = "not pinned"


@dataclass(frozen=True)
class RegistryEntry:
    """A dataset we know: where it lives under the data directory and how to get it."""

    name: str
    format: str
    folder: str
    files: tuple[str, ...]  # files that must be present (one set; `alternatives` for more)
    urls: tuple[str, ...]
    how: str  # what to do with the downloads; {files} and {folder} are filled in
    sha256: Mapping[str, str] = field(default_factory=dict)  # file name -> pin: downloads (zips) and files read
    optional: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, ...], ...] = ()  # other acceptable file sets (Amazon releases)
    description: str = ""
    releases: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (label, urls) per file set, when several

    def file_sets(self) -> tuple[tuple[str, ...], ...]:
        return (self.files, *self.alternatives)


GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
APAO = "https://raw.githubusercontent.com/yuyq18/APAO/e7ddb764fea0af49f0f60196d0e0b9a0cef58ce2/data/Office/"
P5_YELP = ("https://raw.githubusercontent.com/Wenyueh/LLM-RecSys-ID/"
           "77eaca3446b08a2c8cc44d165c791488e04c0d18/data/yelp/")
LETTER_YELP = ("https://raw.githubusercontent.com/HonghuiBao2000/LETTER/"
               "ce037d2c2986d144554e04a70ad5c9a1959eb44f/data/Yelp/")
AMAZON_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
AMAZON_2018_REVIEWS = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/"
AMAZON_2018_META = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/"
AMAZON_2023 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/"


# sha256 of the GroupLens zips (checked by `iirg download`), copied from published checksum lists,
# never computed here. Sources:
#   [TFDS]  tensorflow/datasets tensorflow_datasets/url_checksums/movielens.txt
#           @ 1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c (URL, size, sha256)
#   [DISCO] ankane/disco-cli src/download.rs @ d4449983c0f30def1143b3ae2b6f00b3ef848347
#   [OMNI]  ISG-Siegen/OmniRec src/omnirec/data_loaders/movielens_{100k,small,large}.py
#           @ d631a3375e1339b3cfb7d90e776316e89e5244e2
#   [KERAS] keras-team/keras-io examples/keras_rs/sequential_retrieval.py
#           @ 892ce2b0936058c2ef933ea5e7b058e899ac043c
# GroupLens has re-uploaded ml-latest* archives before (DISCO 15e4b4e8 changed ml-latest.zip's hash):
# a mismatch there may be a new upload rather than corruption.
MOVIELENS_ZIP_SHA256 = {
    "ml-100k.zip": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",  # TFDS, DISCO, OMNI
    "ml-1m.zip": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",  # TFDS, DISCO, OMNI, KERAS
    "ml-10m.zip": "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",  # OMNI only
    "ml-20m.zip": "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",  # TFDS, OMNI
    "ml-25m.zip": "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",  # TFDS, DISCO, OMNI
    "ml-32m.zip": "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",  # DISCO only (a287628e)
    "ml-latest-small.zip": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",  # TFDS, DISCO, OMNI
}


def _movielens(name: str, files: tuple[str, ...], archive: str, description: str,
               sha256: Mapping[str, str] | None = None, optional: tuple[str, ...] = ()) -> RegistryEntry:
    return RegistryEntry(
        name=name, format="movielens", folder=name, files=files, urls=(GROUPLENS + archive,),
        how=f"unzip {archive} and put {{files}} into {{folder}}/",
        sha256={archive: MOVIELENS_ZIP_SHA256[archive], **(sha256 or {})}, optional=optional,
        description=description)


ENTRIES: dict[str, RegistryEntry] = {e.name: e for e in [
    _movielens("ml-100k", ("u.data", "u.item"), "ml-100k.zip", "MovieLens 100K (943 users, 1682 movies)",
               optional=("u.genre",),
               sha256={  # the original GroupLens files (see the shared SOURCE.md)
                   "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                   "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
                   "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
                   "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
                   "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
                   "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
                   "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52"}),
    _movielens("ml-1m", ("ratings.dat", "movies.dat"), "ml-1m.zip", "MovieLens 1M (1M ratings, 6040 users)"),
    _movielens("ml-10m", ("ratings.dat", "movies.dat"), "ml-10m.zip",
               "MovieLens 10M (10M ratings; the zip unpacks to ml-10M100K/)"),
    _movielens("ml-20m", ("ratings.csv", "movies.csv"), "ml-20m.zip", "MovieLens 20M (20M ratings)", optional=("links.csv",)),
    _movielens("ml-25m", ("ratings.csv", "movies.csv"), "ml-25m.zip", "MovieLens 25M (25M ratings)", optional=("links.csv",)),
    _movielens("ml-32m", ("ratings.csv", "movies.csv"), "ml-32m.zip", "MovieLens 32M (32M ratings)", optional=("links.csv",)),
    _movielens("ml-latest-small", ("ratings.csv", "movies.csv"), "ml-latest-small.zip",
               "MovieLens latest, small (changes over time)", optional=("links.csv",)),
    RegistryEntry(
        name="amazon-office", format="lcrec", folder="amazon-office",
        files=("Office.inter.json", "Office.item.json"),
        urls=(APAO + "Office.inter.json", APAO + "Office.item.json"),
        how="put both files ({files}) into {folder}/",
        sha256={"Office.inter.json": "10f983c76de3d2443ae68bf50bc6231962ab493f4d08c7e716e2f183ae70d698",
                "Office.item.json": "df013666416847d0f3468f08d9f68877faf251f71b51247050e98da5b705b5c7"},
        description="Amazon Office Products 5-core, LC-Rec/LETTER copy (4905 users, 2420 items)"),
    RegistryEntry(
        name="yelp", format="p5", folder="yelp",
        files=("sequential_data.txt", "datamaps.json", "Yelp.item.json"),
        urls=(P5_YELP + "sequential_data.txt", P5_YELP + "datamaps.json", LETTER_YELP + "Yelp.item.json"),
        how="put the three files ({files}) into {folder}/",
        sha256={"sequential_data.txt": "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
                "datamaps.json": "52d07e709fc00e5e75fcf993af92db68a44b10f62a9c6b06b61732ae141367d1",
                "Yelp.item.json": "8f58a9d54111fc10ccd675f99e6f2afe988cd0ee70b40f1e37d04f9aea764c2d"},
        description="Yelp, P5 preprocessing (30431 users, 20033 businesses)"),
]}

# Amazon review categories per release (file-name spelling).
CATEGORIES_2014 = (
    "Books", "Electronics", "Movies_and_TV", "CDs_and_Vinyl", "Clothing_Shoes_and_Jewelry", "Home_and_Kitchen",
    "Kindle_Store", "Sports_and_Outdoors", "Cell_Phones_and_Accessories", "Health_and_Personal_Care",
    "Toys_and_Games", "Video_Games", "Tools_and_Home_Improvement", "Beauty", "Apps_for_Android",
    "Office_Products", "Pet_Supplies", "Automotive", "Grocery_and_Gourmet_Food", "Patio_Lawn_and_Garden",
    "Baby", "Digital_Music", "Musical_Instruments", "Amazon_Instant_Video")
CATEGORIES_2018 = (
    "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music",
    "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food", "Home_and_Kitchen", "Industrial_and_Scientific",
    "Kindle_Store", "Luxury_Beauty", "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments",
    "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Prime_Pantry", "Software",
    "Sports_and_Outdoors", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games")
CATEGORIES_2023 = (
    "All_Beauty", "Amazon_Fashion", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Baby_Products",
    "Beauty_and_Personal_Care", "Books", "CDs_and_Vinyl", "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food",
    "Handmade_Products", "Health_and_Household", "Health_and_Personal_Care", "Home_and_Kitchen",
    "Industrial_and_Scientific", "Kindle_Store", "Magazine_Subscriptions", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Software",
    "Sports_and_Outdoors", "Subscription_Boxes", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games")
# Short names used by papers (P5's Beauty/Sports/Toys are the 2014 5-core files).
AMAZON_ALIASES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games",
                  "office-products": "Office_Products", "grocery": "Grocery_and_Gourmet_Food",
                  "games": "Video_Games", "instruments": "Musical_Instruments", "arts": "Arts_Crafts_and_Sewing",
                  "clothing": "Clothing_Shoes_and_Jewelry", "cds": "CDs_and_Vinyl", "movies": "Movies_and_TV",
                  "home": "Home_and_Kitchen", "pets": "Pet_Supplies", "tools": "Tools_and_Home_Improvement",
                  "phones": "Cell_Phones_and_Accessories", "health": "Health_and_Personal_Care",
                  "fashion": "AMAZON_FASHION", "kindle": "Kindle_Store", "music": "Digital_Music"}


def _slug(category: str) -> str:
    return category.lower().replace("_", "-")


def amazon_entry(name: str) -> RegistryEntry | None:
    """The entry for `amazon-<category>` (raw review dumps), None when the category is unknown."""
    if not name.startswith("amazon-"):
        return None
    slug = name[len("amazon-"):].lower()
    category = AMAZON_ALIASES.get(slug)
    by_slug = {_slug(c): c for c in (*CATEGORIES_2014, *CATEGORIES_2018, *CATEGORIES_2023)}
    category = category or by_slug.get(slug)
    if category is None:
        return None
    sets, urls, releases = [], [], []
    for release, names, review, meta in (
            ("2014", CATEGORIES_2014, AMAZON_2014 + "reviews_{c}_5.json.gz", AMAZON_2014 + "meta_{c}.json.gz"),
            ("2018", CATEGORIES_2018, AMAZON_2018_REVIEWS + "{c}_5.json.gz", AMAZON_2018_META + "meta_{c}.json.gz"),
            ("2023", CATEGORIES_2023, AMAZON_2023 + "review_categories/{c}.jsonl.gz",
             AMAZON_2023 + "meta_categories/meta_{c}.jsonl.gz")):
        # Same category under the release's spelling (2018 AMAZON_FASHION is 2023 Amazon_Fashion).
        spelled = next((c for c in names if c.lower() == category.lower()), None)
        if spelled is None:
            continue
        review_url, meta_url = review.format(c=spelled), meta.format(c=spelled)
        sets.append((review_url.rsplit("/", 1)[1], meta_url.rsplit("/", 1)[1]))
        urls.extend([review_url, meta_url])
        releases.append((release, (review_url, meta_url)))
    # No sha256 (NOT_PINNED): no published checksum was found for these files, so `iirg download`
    # warns loudly and prints the hash it got.
    return RegistryEntry(
        name=name, format="amazon", folder=name, files=sets[0], alternatives=tuple(sets[1:]), urls=tuple(urls),
        how="put the review file and the metadata file of one release into {folder}/ (gzipped as downloaded)",
        description=f"Amazon {category.replace('_', ' ')}, raw review dump (2014, 2018 or 2023 release)",
        releases=tuple(releases))


def lookup(name: str) -> RegistryEntry | None:
    return ENTRIES.get(name) or amazon_entry(name)


def registered_names() -> list[str]:
    return [*ENTRIES, "amazon-<category>"]


# -- data directory -----------------------------------------------------------------------------

def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """$IIRG_DATA_DIR, else <repo>/../shared/data when it exists, else ./data."""
    env = env or {}
    if env.get(DATA_ENV):
        return Path(env[DATA_ENV]).expanduser()
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


# -- resolving a dataset spec -------------------------------------------------------------------

@dataclass
class Target:
    """A dataset spec resolved to files on disk."""

    name: str
    path: Path
    format: str
    entry: RegistryEntry | None = None


def resolve(spec: str, *, data_dir: str | os.PathLike | None = None, format: str = "auto",
            name: str | None = None) -> Target:
    """Turn a registered name or a path into (name, path, format).

    A registered name written without a path separator (`yelp`) is the registered dataset, even when
    the working folder happens to hold a folder of that name (write `./yelp` for that one). Any
    other spec that exists on disk is a path; the registered name's folder `<data_dir>/<name>` (or
    one sub-folder of it, as left by unzipping) must hold its files.
    `format` other than "auto" overrides the registry/detection.

    Raises:
        DatasetNotFound: unknown name, missing folder or missing files (says what to download).
        IngestError: a path whose format cannot be detected.
    """
    path = Path(spec).expanduser()
    bare_name = "/" not in spec and os.sep not in spec and lookup(spec) is not None
    if path.exists() and not bare_name:
        folder = path if path.is_dir() else path.parent
        entry = lookup(folder.name) if path.is_dir() else None
        fmt = format if format != "auto" else detect_format(path)
        if entry is not None and entry.format != fmt and not (entry.format == "amazon" and fmt == "lcrec"):
            entry = None  # a folder that happens to share a registered name
        return Target(name=name or _name_of(path), path=path, format=fmt, entry=entry)
    entry = lookup(spec)
    if entry is None:
        looks_like_path = os.sep in spec or "/" in spec or Path(spec).suffix != ""
        if looks_like_path:
            raise DatasetNotFound(f"path {spec!r} does not exist")
        raise DatasetNotFound(f"unknown dataset {spec!r}: not an existing path and not a registered name "
                              f"({', '.join(registered_names())}). Run `iirg datasets` for the list.")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = find_folder(entry, data_dir)
    fmt = format if format != "auto" else (detect_format(folder) if entry.format == "amazon" else entry.format)
    return Target(name=name or entry.name, path=folder, format=fmt, entry=entry)


def _name_of(path: Path) -> str:
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in (".inter.json", ".item.json", ".jsonl.gz", ".json.gz", ".csv.gz", ".tsv.gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.name not in ("u.data", "ratings.dat", "ratings.csv", "sequential_data.txt") \
        else path.parent.name


def find_folder(entry: RegistryEntry, data_dir: Path) -> Path:
    """The folder that holds a complete file set of `entry`, or DatasetNotFound saying what to do."""
    folder = data_dir / entry.folder
    candidates = [folder]
    if folder.is_dir():
        candidates += sorted(p for p in folder.iterdir() if p.is_dir())  # e.g. ml-10m/ml-10M100K/
    for candidate in candidates:
        for files in entry.file_sets():
            if all((candidate / f).is_file() for f in files):
                return candidate
    # The LC-Rec copy of a category is fine for amazon-<category> too.
    if entry.format == "amazon" and folder.is_dir() and any(folder.glob("*.inter.json")):
        return folder
    raise DatasetNotFound(not_found_message(entry, folder))


def not_found_message(entry: RegistryEntry, folder: Path) -> str:
    if not folder.is_dir():
        state = "does not exist"
    else:
        state = f"lacks {', '.join(f for f in entry.files if not (folder / f).is_file())}"
    head = f"dataset {entry.name!r} not found: {folder} {state}. Run `iirg download {entry.name}`, or"
    tail = f"Or point --data-dir / ${DATA_ENV} at the folder that holds {entry.folder}/."
    sets = entry.file_sets()
    if len(sets) == 1:
        how = entry.how.format(files=", ".join(entry.files + entry.optional), folder=folder)
        names = dict.fromkeys([*(url.rsplit("/", 1)[1] for url in entry.urls), *entry.files])
        pins = ", ".join(f"{f} {entry.sha256[f]}" for f in names if f in entry.sha256)
        pinned = f"Expected sha256: {pins}." if pins else f"(sha256 {NOT_PINNED}.)"
        return f"{head} download {' and '.join(entry.urls)}; {how}. {pinned} {tail}"
    releases = [f"{label}: {' and '.join(urls)}" for label, urls in entry.releases]
    how = entry.how.format(files="", folder=folder)
    return f"{head} download ONE release - {'; or '.join(releases)}; {how}. (sha256 {NOT_PINNED}.) {tail}"


# -- format detection ---------------------------------------------------------------------------

def detect_format(path: Path) -> str:
    """movielens, lcrec, p5, amazon or csv, from file names (and a CSV header for MovieLens)."""
    from ingest.amazon import amazon_files
    from ingest.movielens import movielens_variant
    from ingest.tabular import is_table_file, tabular_files

    if path.is_file():
        name = path.name
        folder = path.parent
        if name in ("u.data", "u.item", "ratings.dat", "movies.dat") or (
                name in ("ratings.csv", "movies.csv") and _movielens_csv(folder)):
            return "movielens"
        if name.endswith((".inter.json", ".item.json")):
            return "lcrec"
        if name == "sequential_data.txt":
            return "p5"
        if is_table_file(path):
            return "csv"
        if name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")):
            return "amazon"
        raise IngestError("cannot tell the format from the file name; pass --format", file=str(path))
    if not path.is_dir():
        raise DatasetNotFound(f"path {str(path)!r} does not exist")
    variant = movielens_variant(path)
    if variant in ("100k", "dat") or (variant == "csv" and _movielens_csv(path)):
        return "movielens"
    if (path / "sequential_data.txt").is_file():
        return "p5"
    if any(path.glob("*.inter.json")):
        return "lcrec"
    if amazon_files(path) is not None:
        return "amazon"
    if tabular_files(path) is not None:
        return "csv"
    raise IngestError("cannot detect the dataset format of this folder (expected MovieLens u.data / ratings.*, "
                      "LC-Rec X.inter.json, P5 sequential_data.txt, Amazon review dumps or "
                      "interactions.csv/.parquet); pass --format", file=str(path))


def _movielens_csv(folder: Path) -> bool:
    """ratings.csv is MovieLens when it has userId/movieId columns and movies.csv is beside it."""
    from ingest.readers import read_header

    ratings = folder / "ratings.csv"
    if not (ratings.is_file() and (folder / "movies.csv").is_file()):
        return False
    try:
        header = read_header(ratings, sep=",")
    except IngestError:
        return False
    return "userId" in header and "movieId" in header
