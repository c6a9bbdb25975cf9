"""Ingest on the real shared datasets (ml-100k, Amazon Office LC-Rec copy, Yelp P5): counts,
text cleaning, unique titles, deterministic order and leave-one-out splits.

    pytest tests/test_ingest_real.py -q
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from ingest import Dataset, IngestConfig, load_dataset
from ingest.schema import clean_text


def _load(path, **options) -> Dataset:
    return load_dataset(IngestConfig(dataset=str(path), progress=False, **options))


@pytest.fixture(scope="module")
def ml100k(ml100k_dir) -> Dataset:
    return _load(ml100k_dir)


@pytest.fixture(scope="module")
def office(office_dir) -> Dataset:
    return _load(office_dir)


@pytest.fixture(scope="module")
def yelp(yelp_dir) -> Dataset:
    return _load(yelp_dir)


def _items(ds: Dataset) -> pd.DataFrame:
    return ds.items.set_index("item_id")


def _check_splits(ds: Dataset) -> None:
    inter = ds.interactions
    per_user = inter.groupby("user_id")["split"].value_counts().unstack(fill_value=0)
    assert (per_user["test"] == 1).all() and (per_user["valid"] == 1).all()
    # test is the last position and valid the one before it, in every sequence
    last = inter.groupby("user_id")["pos"].transform("max")
    assert (inter.loc[inter["split"] == "test", "pos"] == last[inter["split"] == "test"]).all()
    assert (inter.loc[inter["split"] == "valid", "pos"] == last[inter["split"] == "valid"] - 1).all()
    # positions are 0..n-1 per user
    assert (inter.groupby("user_id")["pos"].apply(lambda p: list(p) == list(range(len(p))))).all()


def test_ml100k_counts_and_source(ml100k):
    stats = ml100k.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["skipped_records"] == 0
    assert ml100k.source["format"] == "movielens"
    names = {f["name"]: f for f in ml100k.source["files"]}
    assert names["u.data"]["sha256"] == "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
    assert ml100k.source["options"]["item_encoding"] == "latin-1"


def test_ml100k_titles(ml100k):
    items = _items(ml100k)
    assert items.loc["543", "title"] == "Misérables, Les (1995)"
    assert items["title"].is_unique
    # 18 titles occur twice: both copies get the id appended
    suffixed = items[items["title"] != items["raw_title"].str.strip()]
    duplicated = suffixed[suffixed["title"].str.contains(r" \(#\d+\)$")]
    assert duplicated["raw_title"].nunique() == 18 and len(duplicated) == 36
    assert items.loc["267", "title"] == "Item 267"  # raw title "unknown" falls back
    assert items.loc["1", "categories"] == ["Animation", "Children's", "Comedy"]
    assert '"year": 1995' in items.loc["1", "attributes"]


def test_ml100k_order_is_deterministic(ml100k, ml100k_dir):
    again = _load(ml100k_dir)
    assert again.checksum() == ml100k.checksum()
    inter = ml100k.interactions
    # sorted by timestamp within each user; ties keep the u.data line order (first line first)
    assert (inter.groupby("user_id")["ts"].apply(lambda t: t.is_monotonic_increasing)).all()
    raw = pd.read_csv(ml100k_dir / "u.data", sep="\t", names=["user_id", "item_id", "rating", "ts"], dtype=str)
    raw["line"] = range(1, len(raw) + 1)
    merged = inter.merge(raw[["user_id", "item_id", "line"]], on=["user_id", "item_id"])
    assert len(merged) == 100000
    tie_groups = merged.groupby(["user_id", "ts"])
    assert (tie_groups["line"].apply(lambda s: s.is_monotonic_increasing)).all()
    assert (tie_groups.size() > 1).sum() == 25211  # SOURCE.md: ties are common


def test_ml100k_splits(ml100k):
    _check_splits(ml100k)
    assert ml100k.stats()["splits"] == {"train": 98114, "valid": 943, "test": 943}


def test_office_counts_and_text(office):
    stats = office.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (4905, 2420, 53258)
    items = _items(office)
    assert items.loc["2", "title"].startswith("AT&T 210")
    assert items.loc["2", "raw_title"].startswith("AT&amp;T 210")  # the source text is kept as found
    assert "&nbsp;" not in " ".join(items["description"]) and "&amp;" not in " ".join(items["title"])
    assert items["title"].is_unique
    # empty titles fall back to the description start, or to "Item <id>" when that is empty too
    assert items.loc["1786", "title"] == "Item 1786"
    for item in ("828", "1429"):
        assert items.loc[item, "title"] and items.loc[item, "title"] != f"Item {item}"
        assert items.loc[item, "description"].startswith(items.loc[item, "title"])
    assert items.loc["0", "categories"] == ["Office Electronics", "Telephones & Accessories", "Cordless Telephones"]
    assert items.loc["0", "brand"] == "VTech"
    # no timestamps: the list order of Office.inter.json is the sequence order
    assert office.interactions["ts"].isna().all()
    first = office.interactions[office.interactions["user_id"] == "1"]["item_id"].tolist()
    assert first == [str(i) for i in range(5, 14)]
    _check_splits(office)


def test_yelp_counts_repeats_and_names(yelp):
    stats = yelp.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (30431, 20033, 316354)
    items = _items(yelp)
    assert items.loc["1", "raw_title"] == "The Great Greek"
    assert items.loc["2", "title"] == "Sal's Pizza"
    assert items.loc["6", "raw_title"] == "Chipotle Mexican Grill"
    assert items["title"].is_unique
    chains = items[items["raw_title"].duplicated(keep=False)]
    assert chains["raw_title"].nunique() == 1434
    assert (chains["title"] == chains["raw_title"] + " (#" + chains.index + ")").all()
    assert yelp.source["options"]["item_id_offset"] == 1
    assert "Greek" in items.loc["1", "categories"]
    # repeat visits are kept: 11830 repeated (user, item) interactions
    inter = yelp.interactions
    assert inter.duplicated(["user_id", "item_id"]).sum() == 11830
    # sequence of user 2 is exactly its line in sequential_data.txt
    assert inter[inter["user_id"] == "2"]["item_id"].tolist() == ["57", "58", "59", "60", "61"]
    _check_splits(yelp)


def test_title_rules_on_real_data(ml100k, office, yelp):
    """What the title rules (issue 8) change on the real files: one Yelp title, nothing else.

    No cleaner's trailing "." (7 of 2420 Office and 28 of 20033 Yelp titles end in ".", mostly
    "Co."/"St."), no HTML tags ("&lt;= 30 in" in two Office titles is a comparison), no category
    names except Yelp's "Noodles" (a category of 311 businesses; its own are Asian Fusion, ...).
    """
    assert ml100k.report.fixed == {} and office.report.fixed == {}
    assert yelp.report.fixed == {"title_category": 1}
    items = _items(yelp)
    assert items.loc["4294", "raw_title"] == "Noodles"
    assert items.loc["4294", "title"] == "Asian Fusion, Restaurants, Chinese, Dim Sum, Korean"
    dotted = items[items["raw_title"].str.endswith(".")]
    assert len(dotted) == 28 and (dotted["title"].str.replace(r" \(#\d+\)$", "", regex=True) == dotted["raw_title"]).all()
    office_items = _items(office)
    assert office_items["title"].str.contains("<= 30 in", regex=False).sum() == 2
    # every other Office title is its raw text, unescaped: only empty and shared titles differ
    cleaned = office_items["raw_title"].map(clean_text)
    changed = office_items[office_items["title"] != cleaned]
    suffixed = changed["title"] == cleaned[changed.index] + " (#" + changed.index + ")"
    assert (suffixed | (changed["raw_title"] == "")).all() and (changed["raw_title"] == "").sum() == 3


def test_yelp_is_fast(yelp_dir):
    start = time.perf_counter()
    _load(yelp_dir)
    assert time.perf_counter() - start < 10


def test_saved_dataset_round_trips(ml100k, tmp_path):
    out = ml100k.save(tmp_path / "dataset")
    back = Dataset.load(out)
    assert back.checksum() == ml100k.checksum()
    assert back.source["files"][0]["sha256"] == ml100k.source["files"][0]["sha256"]
    assert back.items.loc[back.items["item_id"] == "543", "categories"].iloc[0] == ["Drama", "Musical"]


def test_a_registered_name_wins_over_a_same_named_local_folder(ml100k_dir, tmp_path, monkeypatch):
    from ingest.registry import resolve

    (tmp_path / "ml-100k").mkdir()  # an unrelated folder in the working directory
    monkeypatch.chdir(tmp_path)
    target = resolve("ml-100k", data_dir=ml100k_dir.parent)
    assert target.path == ml100k_dir and target.format == "movielens"
    with pytest.raises(Exception, match="cannot detect"):
        resolve("./ml-100k", data_dir=ml100k_dir.parent)  # an explicit path means the local folder
