"""Every input format on small hand-made files (written into tmp_path): MovieLens 100k/1m/20m
layouts, LC-Rec, P5 (offset detection and override, datamaps only), Amazon 2014/2018/2023 gzip
dumps, generic CSV/TSV/Parquet with a column mapping; plus config validation and the registry.

    pytest tests/test_ingest_formats.py -q
"""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from ingest import ConfigError, DatasetNotFound, IngestConfig, IngestError, load_dataset
from ingest.registry import default_data_dir, detect_format, lookup, resolve

GENRE_FLAGS = "|".join(["0"] * 19)


def load(path, **options):
    return load_dataset(IngestConfig(dataset=str(path), progress=False, **options))


def seqs(ds):
    return ds.sequences()


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def write_gz(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def flags(*on):
    values = ["0"] * 19
    for i in on:
        values[i] = "1"
    return "|".join(values)


def ml100k_folder(tmp_path, data_lines, item_lines=None, encoding="latin-1"):
    folder = tmp_path / "ml"
    if item_lines is None:
        item_lines = [f"{i}|Movie {i} (199{i})|01-Jan-199{i}||http://imdb/{i}|{flags(1, 8)}" for i in range(1, 6)]
    write(folder / "u.data", "\n".join(data_lines) + "\n")
    write(folder / "u.item", "\n".join(item_lines) + "\n", encoding=encoding)
    return folder


# -- MovieLens ------------------------------------------------------------------------------------

def test_movielens_100k_order_ties_and_genres(tmp_path):
    folder = ml100k_folder(tmp_path, [
        "1\t3\t4\t200", "1\t1\t5\t100", "2\t2\t3\t50", "1\t2\t1\t100", "2\t1\t2\t60", "2\t5\t2\t70",
        "1\t5\t2\t300"])
    ds = load(folder)
    # user 1: ts 100 (item 1, then item 2: file order breaks the tie), 200, 300
    assert seqs(ds)["1"] == ["1", "2", "3", "5"]
    assert seqs(ds)["2"] == ["2", "1", "5"]
    inter = ds.interactions.set_index(["user_id", "item_id"])
    assert inter.loc[("1", "5"), "split"] == "test" and inter.loc[("1", "3"), "split"] == "valid"
    assert inter.loc[("1", "1"), "rating"] == 5.0 and inter.loc[("1", "1"), "ts"] == 100
    items = ds.items.set_index("item_id")
    assert items.loc["4", "categories"] == ["Action", "Drama"]
    assert json.loads(items.loc["4", "attributes"]) == {"year": 1994, "release_date": "01-Jan-1994",
                                                          "imdb_url": "http://imdb/4"}
    assert ds.source["options"]["variant"] == "100k"


def test_movielens_item_file_latin1_and_utf8_copies_read_the_same(tmp_path):
    lines = [f"1|Misérables, Les (1995)|01-Jan-1995||http://x|{flags(8)}",
             f"2|Other (1995)|01-Jan-1995||http://y|{flags(5)}"]
    data = ["1\t1\t5\t10", "1\t2\t5\t11", "1\t1\t5\t12", "1\t2\t5\t13"]
    latin = load(ml100k_folder(tmp_path / "a", data, lines, encoding="latin-1"))
    utf8 = load(ml100k_folder(tmp_path / "b", data, lines, encoding="utf-8"))
    for ds, encoding in ((latin, "latin-1"), (utf8, "utf-8")):
        assert ds.items.set_index("item_id").loc["1", "title"] == "Misérables, Les (1995)"
        assert ds.source["options"]["item_encoding"] == encoding
    # forcing the wrong encoding gives mojibake, proving the choice matters
    forced = load(ml100k_folder(tmp_path / "c", data, lines, encoding="utf-8"), encoding="latin-1")
    assert forced.items.set_index("item_id").loc["1", "title"] == "MisÃ©rables, Les (1995)"


def test_movielens_1m_dat_layout(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::20::5::978300760\n1::10::3::978300761\n2::10::4::978300000\n"
                                  "2::30::4::978300001\n1::30::5::978300762\n1::20::4::978300763\n")
    write(folder / "movies.dat", "10::Star Wars: Episode IV (1977)::Action|Sci-Fi\n20::Amélie (2001)::Comedy|Romance\n"
                                 "30::Heat (1995)::(no genres listed)\n", encoding="latin-1")
    ds = load(folder)
    assert ds.source["options"] == {"variant": "dat", "item_encoding": "latin-1"}
    items = ds.items.set_index("item_id")
    assert items.loc["10", "title"] == "Star Wars: Episode IV (1977)"
    assert items.loc["20", "title"] == "Amélie (2001)"
    assert items.loc["10", "categories"] == ["Action", "Sci-Fi"] and items.loc["30", "categories"] == []
    assert seqs(ds) == {"1": ["20", "10", "30", "20"], "2": ["10", "30"]}


def test_movielens_csv_layout_with_links(tmp_path):
    folder = tmp_path / "ml-latest-small"
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
                                  "2,1,2.5,964982224\n2,3,3.0,964982931\n1,1,3.0,964990000\n1,3,3.0,964990001\n")
    write(folder / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                 '3,"American President, The (1995)",Comedy|Drama|Romance\n')
    write(folder / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n3,0112346,9087\n")
    assert detect_format(folder) == "movielens"
    ds = load(folder)
    items = ds.items.set_index("item_id")
    assert items.loc["3", "title"] == "American President, The (1995)"
    assert json.loads(items.loc["1", "attributes"]) == {"year": 1995, "imdbId": "0114709", "tmdbId": "862"}
    assert seqs(ds)["1"] == ["3", "1", "1", "3"]
    assert ds.interactions["rating"].tolist().count(4.5) == 1


def test_movielens_ratings_csv_missing_column(tmp_path):
    folder = tmp_path / "ml"
    write(folder / "ratings.csv", "userId,movieId,rating\n1,1,4\n")
    write(folder / "movies.csv", "movieId,title,genres\n1,A (1990),Drama\n")
    with pytest.raises(IngestError) as e:
        load(folder, format="movielens")
    assert e.value.field == "timestamp" and e.value.line == 1 and e.value.file.endswith("ratings.csv")


# -- LC-Rec ---------------------------------------------------------------------------------------

def test_lcrec(tmp_path):
    folder = tmp_path / "beauty"
    write(folder / "Beauty.inter.json", json.dumps({"0": [0, 1, 2], "1": [2, 1, 0, 3]}, indent=4))
    write(folder / "Beauty.item.json", json.dumps({
        "0": {"title": "Lip &amp; Cheek", "description": "", "brand": "X", "categories": "Beauty, Makeup"},
        "1": {"title": "", "description": "A soft brush for blush", "brand": "", "categories": "Beauty, Tools"},
        "2": {"title": "Soap", "description": "d", "brand": "", "categories": ["Beauty", ["Bath", "Body"]]},
        "3": {"title": "Soap", "description": "d", "brand": "", "categories": ""}}, indent=4))
    ds = load(folder)
    items = ds.items.set_index("item_id")
    assert items.loc["0", "title"] == "Lip & Cheek" and items.loc["0", "categories"] == ["Beauty", "Makeup"]
    assert items.loc["1", "title"] == "A soft brush for blush"
    assert items.loc["2", "categories"] == ["Beauty", "Bath", "Body"]
    assert (items.loc["2", "title"], items.loc["3", "title"]) == ("Soap (#2)", "Soap (#3)")
    assert seqs(ds) == {"0": ["0", "1", "2"], "1": ["2", "1", "0", "3"]}
    assert ds.interactions["ts"].isna().all()
    # a path to the .inter.json file works as well as the folder
    assert load(folder / "Beauty.inter.json").checksum() == ds.checksum()


# -- P5 -------------------------------------------------------------------------------------------

def p5_folder(tmp_path, keys_from=0, lines=("1 1 2 3 1", "2 3 2 1")):
    folder = tmp_path / "p5"
    write(folder / "sequential_data.txt", "\n".join(lines) + "\n")
    write(folder / "datamaps.json", json.dumps({"user2id": {}, "item2id": {}, "id2user": {},
                                                "id2item": {"1": "bizA", "2": "bizB", "3": "bizC"}}))
    names = ["Cafe", "Bar", "Cafe"]
    write(folder / "Toy.item.json", json.dumps(
        {str(i + keys_from): {"title": n, "description": f"Food, Cat{i}"} for i, n in enumerate(names)}, indent=2))
    return folder


def test_p5_zero_based_item_json_detected(tmp_path):
    ds = load(p5_folder(tmp_path, keys_from=0))
    assert ds.source["options"]["item_id_offset"] == 1
    items = ds.items.set_index("item_id")
    assert items.loc["1", "raw_title"] == "Cafe" and items.loc["2", "raw_title"] == "Bar"
    assert items.loc["1", "title"] == "Cafe (#1)" and items.loc["3", "title"] == "Cafe (#3)"
    assert json.loads(items.loc["2", "attributes"])["raw_id"] == "bizB"
    assert items.loc["2", "categories"] == ["Food", "Cat1"]
    assert seqs(ds) == {"1": ["1", "2", "3", "1"], "2": ["3", "2", "1"]}  # the repeat of item 1 is kept


def test_p5_one_based_item_json_detected_and_override(tmp_path):
    folder = p5_folder(tmp_path, keys_from=1, lines=("1 1 2 3 1 2 3", "2 3 2 1"))
    ds = load(folder)
    assert ds.source["options"]["item_id_offset"] == 0
    assert ds.items.set_index("item_id").loc["2", "raw_title"] == "Bar"
    # forcing offset 1 on 1-based keys: item 1 has no metadata, its interactions are reported
    forced = load(folder, item_id_offset=1)
    assert forced.report.counts["unknown_item"] == 3
    assert "set by item_id_offset" in forced.source["options"]["offset_evidence"]


def test_p5_unalignable_item_json_raises(tmp_path):
    folder = p5_folder(tmp_path, keys_from=7)
    with pytest.raises(IngestError, match="cannot align item keys"):
        load(folder)


def test_p5_datamaps_only_titles_are_raw_ids(tmp_path):
    folder = p5_folder(tmp_path)
    (folder / "Toy.item.json").unlink()
    ds = load(folder)
    assert ds.items.set_index("item_id")["title"].to_dict() == {"1": "bizA", "2": "bizB", "3": "bizC"}


# -- Amazon ---------------------------------------------------------------------------------------

def test_amazon_2014_reviews_and_python_literal_meta(tmp_path):
    folder = tmp_path / "amazon-beauty"
    write_gz(folder / "reviews_Beauty_5.json.gz", [
        json.dumps({"reviewerID": "U1", "asin": "B1", "overall": 5.0, "unixReviewTime": 300, "reviewText": "x"}),
        json.dumps({"reviewerID": "U1", "asin": "B2", "overall": 4.0, "unixReviewTime": 100}),
        json.dumps({"reviewerID": "U2", "asin": "B1", "overall": 3.0, "unixReviewTime": 100,
                    "helpful": [1, 2]}),
        json.dumps({"reviewerID": "U2", "asin": "B3", "overall": 2.0, "unixReviewTime": 50}),
        json.dumps({"reviewerID": "U1", "asin": "B3", "overall": 2.0, "unixReviewTime": 400}),
        json.dumps({"reviewerID": "U1", "asin": "B2", "overall": 2.0, "unixReviewTime": 500})])
    write_gz(folder / "meta_Beauty.json.gz", [
        "{'asin': 'B1', 'title': 'Rose &amp; Oud', 'price': 3.17, 'salesRank': {'Beauty': 10}, "
        "'categories': [['Beauty', 'Fragrance'], ['Beauty', 'Women']], 'related': {'also_bought': ['B9']}}",
        "{'asin': 'B2', 'title': 'Comb', 'brand': 'Acme', 'description': 'A <b>wide</b> comb', "
        "'categories': [['Beauty']]}",
        "{'asin': 'B9', 'title': 'never reviewed: not even parsed', 'categories': [[]]}",
        '{"asin": "B3", "title": "Soap", "categories": [["Bath"]]}'])
    assert detect_format(folder) == "amazon"
    ds = load(folder)
    assert ds.source["options"]["release"] == "2014/2018"
    items = ds.items.set_index("item_id")
    assert sorted(items.index) == ["B1", "B2", "B3"]
    assert items.loc["B1", "title"] == "Rose & Oud"
    assert items.loc["B1", "categories"] == ["Beauty", "Fragrance", "Women"]
    assert json.loads(items.loc["B1", "attributes"]) == {"price": 3.17, "salesRank": {"Beauty": 10}}
    assert items.loc["B2", "description"] == "A wide comb" and items.loc["B2", "brand"] == "Acme"
    assert seqs(ds) == {"U1": ["B2", "B1", "B3", "B2"], "U2": ["B3", "B1"]}
    assert ds.interactions.set_index(["user_id", "item_id"]).loc[("U1", "B1"), "ts"] == 300


def test_amazon_2018_five_core(tmp_path):
    folder = tmp_path / "amazon-x"
    write_gz(folder / "Luxury_Beauty_5.json.gz", [
        json.dumps({"reviewerID": "U1", "asin": "A", "overall": 5.0, "unixReviewTime": 10, "vote": "2",
                    "style": {"Size:": " 1 oz"}}),
        json.dumps({"reviewerID": "U1", "asin": "B", "overall": 4.0, "unixReviewTime": 20, "verified": True}),
        json.dumps({"reviewerID": "U1", "asin": "A", "overall": 4.0, "unixReviewTime": 30}),
        json.dumps({"reviewerID": "U1", "asin": "B", "overall": 4.0, "unixReviewTime": 40})])
    write_gz(folder / "meta_Luxury_Beauty.json.gz", [
        json.dumps({"asin": "A", "title": "Cream", "description": ["Rich", "cream"], "brand": "L",
                    "category": ["Luxury Beauty", "Skin"], "main_cat": "Luxury Beauty", "also_buy": ["B"]}),
        json.dumps({"asin": "B", "title": "Serum", "description": [], "category": []}),
        json.dumps({"asin": "B", "title": "Serum", "description": [], "category": []})])  # verbatim repeat
    ds = load(folder)
    items = ds.items.set_index("item_id")
    assert items.loc["A", "description"] == "Rich cream" and items.loc["A", "categories"] == ["Luxury Beauty", "Skin"]
    assert json.loads(items.loc["A", "attributes"]) == {"main_cat": "Luxury Beauty"}
    assert ds.report.skipped == 0  # identical repeated metadata is not an error
    assert seqs(ds) == {"U1": ["A", "B", "A", "B"]}


def test_amazon_2023_jsonl_parent_asin_and_milliseconds(tmp_path):
    folder = tmp_path / "amazon-all-beauty"
    write_gz(folder / "All_Beauty.jsonl.gz", [
        json.dumps({"rating": 5.0, "title": "t", "text": "x", "asin": "C1", "parent_asin": "P1",
                    "user_id": "AE1", "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": True}),
        json.dumps({"rating": 3.0, "asin": "C2", "parent_asin": "P2", "user_id": "AE1", "timestamp": 1588687728000}),
        json.dumps({"rating": 4.0, "asin": "C1", "parent_asin": "P1", "user_id": "AE1", "timestamp": 1588687729000}),
        json.dumps({"rating": 4.0, "asin": "C2", "parent_asin": "P2", "user_id": "AE1", "timestamp": 1588687730000})])
    write_gz(folder / "meta_All_Beauty.jsonl.gz", [
        json.dumps({"main_category": "All Beauty", "title": "Brush", "average_rating": 4.8, "rating_number": 10,
                    "features": [], "description": ["Soft", "brush"], "store": "Acme", "categories": [],
                    "details": {"Brand": "Acme"}, "parent_asin": "P1"}),
        json.dumps({"title": "Comb", "store": None, "categories": ["Tools"], "parent_asin": "P2"})])
    ds = load(folder)
    assert ds.source["options"]["release"] == "2023"
    assert seqs(ds) == {"AE1": ["P2", "P1", "P1", "P2"]}  # 1588687728000 ms < 1588687728923 ms
    assert ds.interactions["ts"].tolist() == [1588687728, 1588687728, 1588687729, 1588687730]
    items = ds.items.set_index("item_id")
    assert items.loc["P1", "brand"] == "Acme" and items.loc["P1", "description"] == "Soft brush"
    assert items.loc["P2", "categories"] == ["Tools"] and items.loc["P2", "brand"] == ""


# -- generic CSV / Parquet --------------------------------------------------------------------------

def test_csv_with_mapping_item_file_and_iso_dates(tmp_path):
    inter = write(tmp_path / "events.csv", "uid,sku,when,stars\nu1,s2,2021-01-02T00:00:00Z,4\n"
                                           "u1,s1,2021-01-01,5\nu2,s1,2021-01-03 10:00:00,\nu2,s3,2021-01-04,3\n"
                                           "u1,s3,2021-01-05,2\nu1,s2,2021-01-06,2\n")
    items = write(tmp_path / "products.tsv", "sku\tname\ttags\tmaker\tcolor\ns1\tRed pen\tpens|red\tPilot\tred\n"
                                             "s2\tBlue pen\tpens\tPilot\t\ns3\tPad\t\t\tyellow\n")
    ds = load(inter, format="csv", user_col="uid", item_col="sku", timestamp_col="when", rating_col="stars",
              items_path=str(items), item_id_col="sku", title_col="name", categories_col="tags", brand_col="maker")
    assert seqs(ds) == {"u1": ["s1", "s2", "s3", "s2"], "u2": ["s1", "s3"]}
    assert ds.source["options"]["timestamp_unit"] == "iso"
    inter_rows = ds.interactions.set_index(["user_id", "item_id"])
    assert inter_rows.loc[("u1", "s1"), "ts"] == 1609459200
    assert pd.isna(inter_rows.loc[("u2", "s1"), "rating"])
    table = ds.items.set_index("item_id")
    assert table.loc["s1", "categories"] == ["pens", "red"] and table.loc["s1", "brand"] == "Pilot"
    assert json.loads(table.loc["s1", "attributes"]) == {"color": "red"}
    assert table.loc["s3", "categories"] == []


def test_csv_defaults_milliseconds_and_no_item_file(tmp_path):
    path = write(tmp_path / "clicks.csv", "user_id,item_id,timestamp\na,x,1600000000500\na,y,1600000000400\n"
                                          "b,x,1600000000100\nb,y,1600000000200\na,x,1600000000600\n"
                                          "a,y,1600000000700\n")
    ds = load(path)
    assert ds.source["format"] == "csv" and ds.source["options"]["timestamp_unit"] == "ms"
    assert seqs(ds) == {"a": ["y", "x", "x", "y"], "b": ["x", "y"]}
    assert ds.items.set_index("item_id")["title"].to_dict() == {"x": "Item x", "y": "Item y"}


def test_parquet_typed_columns_and_folder_layout(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    pd.DataFrame({"user_id": [1, 1, 2, 2, 1, 1], "item_id": [10.0, 20.0, 20.0, 10.0, 10.0, 20.0],
                  "timestamp": pd.to_datetime(["2020-01-02", "2020-01-01", "2020-01-01", "2020-01-03",
                                               "2020-01-04", "2020-01-05"]),
                  "rating": [1.0, 2.0, 3.0, 4.0, 5.0, 1.0]}).to_parquet(folder / "interactions.parquet")
    pd.DataFrame({"item_id": [10, 20], "title": ["Ten", "Twenty"],
                  "categories": [["a", "b"], []]}).to_parquet(folder / "items.parquet")
    ds = load(folder)
    assert seqs(ds) == {"1": ["20", "10", "10", "20"], "2": ["20", "10"]}
    assert ds.interactions["ts"].min() == 1577836800
    assert ds.items.set_index("item_id").loc["10", "categories"] == ["a", "b"]
    assert [f["name"] for f in ds.source["files"]] == ["interactions.parquet", "items.parquet"]


def test_tsv_delimiter_option(tmp_path):
    path = write(tmp_path / "log.txt", "user_id;item_id\nu;a\nu;b\nu;c\nu;d\n")
    ds = load(path, format="csv", delimiter=";")
    assert seqs(ds) == {"u": ["a", "b", "c", "d"]}
    assert ds.interactions["split"].tolist() == ["train", "train", "valid", "test"]


def test_source_column_named_line_survives(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,line\nu,a,1\nu,b,2\nu,a,3\nu,b,4\n")
    (tmp_path / "items.csv").write_text("item_id,title,line\na,A,Pro\nb,B,Basic\n")
    ds = load(tmp_path / "log.csv", items_path=str(tmp_path / "items.csv"))
    assert json.loads(ds.items.set_index("item_id").loc["a", "attributes"]) == {"line": "Pro"}
    ordered = load(tmp_path / "log.csv", timestamp_col="line")
    assert ordered.interactions["ts"].tolist() == [1, 2, 3, 4]


def test_headerless_csv_with_column_names(tmp_path):
    # Amazon's ratings_<Cat>.csv: user,item,rating,timestamp and no header line
    path = write(tmp_path / "ratings_Beauty.csv", "A1,0205616461,5.0,1369699200\nA1,0558925278,3.0,1355443200\n"
                                                  "A2,0205616461,4.0,1404691200\nA1,0205616461,4.0,1370000000\n"
                                                  "A1,0558925278,2.0,1400000000\n")
    ds = load(path, column_names="user_id,item_id,rating,timestamp")
    assert ds.sequences() == {"A1": ["0558925278", "0205616461", "0205616461", "0558925278"], "A2": ["0205616461"]}
    assert ds.interactions["rating"].tolist() == [3.0, 5.0, 4.0, 2.0, 4.0]
    with pytest.raises(ConfigError):
        IngestConfig(dataset="x.csv", column_names="a,,b")


def test_min_interactions_kcore(tmp_path):
    lines = [f"{u}\t{i}\t5\t{u * 10 + i}" for u in (1, 2, 3) for i in (1, 2, 3, 4)] + ["4\t1\t5\t1", "4\t5\t5\t2"]
    ds = load(ml100k_folder(tmp_path, lines), min_interactions=3)
    assert sorted(ds.interactions["user_id"].unique()) == ["1", "2", "3"]
    assert ds.source["min_interactions"] == 3
    assert len(ds.items) == 5  # the catalogue is kept; only interactions are filtered


# -- config and registry ----------------------------------------------------------------------------

def test_config_validation_and_round_trip():
    config = IngestConfig(dataset="x.csv", format="csv", user_col="u", min_interactions=5, delimiter="\t")
    assert IngestConfig.from_dict(config.to_dict()) == config
    for bad in ({"format": "xml"}, {"min_interactions": -1}, {"min_interactions": True}, {"delimiter": "::"},
                {"format": "p5", "user_col": "u"}, {"format": "lcrec", "item_id_offset": 1},
                {"encoding": "no-such-codec"}, {"timestamp_unit": "days"}):
        with pytest.raises(ConfigError):
            IngestConfig(dataset="x", **bad)
    with pytest.raises(ConfigError):
        IngestConfig(dataset="  ")
    with pytest.raises(ConfigError, match=r"\[ingest\] has unknown setting\(s\) usr_col"):
        IngestConfig.from_dict({"dataset": "x", "usr_col": "u"})


def test_csv_options_rejected_for_other_detected_formats(tmp_path):
    folder = ml100k_folder(tmp_path, ["1\t1\t5\t1", "1\t2\t5\t2"])
    with pytest.raises(IngestError, match="only apply to CSV"):
        load(folder, user_col="uid")


def test_registry_names_and_missing_dataset_message(tmp_path):
    assert lookup("ml-100k").sha256["u.data"].startswith("06416e59")
    assert lookup("amazon-office").format == "lcrec"
    beauty = lookup("amazon-beauty")
    assert beauty.files == ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz")
    assert lookup("amazon-video-games").alternatives  # 2018 and 2023 spellings too
    assert lookup("amazon-nonsense") is None
    with pytest.raises(DatasetNotFound) as e:
        resolve("ml-20m", data_dir=tmp_path)
    message = str(e.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-20m.zip" in message
    assert str(tmp_path / "ml-20m") in message and "ratings.csv" in message
    assert "ml-20m.zip 96f243c338a8665f" in message and "iirg download ml-20m" in message  # the zip is pinned
    with pytest.raises(DatasetNotFound) as e:
        resolve("ml-100k", data_dir=tmp_path)
    assert "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490" in str(e.value)
    with pytest.raises(DatasetNotFound, match="reviews_Toys_and_Games_5.json.gz"):
        resolve("amazon-toys", data_dir=tmp_path)
    with pytest.raises(DatasetNotFound, match="unknown dataset 'nope'"):
        resolve("nope", data_dir=tmp_path)
    with pytest.raises(DatasetNotFound, match="does not exist"):
        resolve(str(tmp_path / "missing.csv"), data_dir=tmp_path)


def test_registry_finds_unzipped_subfolder_and_flags_changed_files(tmp_path):
    inner = ml100k_folder(tmp_path / "data" / "ml-100k", ["1\t1\t5\t1", "1\t2\t5\t2", "1\t3\t5\t3", "1\t4\t5\t4"])
    assert inner == tmp_path / "data" / "ml-100k" / "ml"  # like ml-100k.zip unpacked into ml-100k/
    ds = load_dataset(IngestConfig(dataset="ml-100k", data_dir=str(tmp_path / "data"), progress=False))
    files = {f["name"]: f for f in ds.source["files"]}
    assert files["u.data"]["verified"] is False and ds.source["warnings"]
    with pytest.raises(IngestError, match="differs from the pinned ml-100k release"):
        load_dataset(IngestConfig(dataset="ml-100k", data_dir=str(tmp_path / "data"), strict=True, progress=False))
    quiet = load_dataset(IngestConfig(dataset="ml-100k", data_dir=str(tmp_path / "data"), progress=False,
                                      verify_checksums=False))
    assert "warnings" not in quiet.source


def test_default_data_dir_prefers_env(tmp_path):
    assert default_data_dir({"IIRG_DATA_DIR": str(tmp_path)}) == tmp_path
    assert default_data_dir({}).name == "data"


def test_detect_format(tmp_path, ml100k_dir, office_dir, yelp_dir):
    assert detect_format(ml100k_dir) == "movielens"
    assert detect_format(ml100k_dir / "u.data") == "movielens"
    assert detect_format(office_dir) == "lcrec"
    assert detect_format(yelp_dir) == "p5"
    write(tmp_path / "x" / "ratings.csv", "user,item\n1,2\n")  # not MovieLens: no movieId / movies.csv
    assert detect_format(tmp_path / "x") == "csv"
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="cannot detect"):
        detect_format(tmp_path / "empty")


def test_big_files_show_progress_and_small_ones_do_not(tmp_path, monkeypatch, capsys):
    import ingest.readers as readers

    folder = ml100k_folder(tmp_path, ["1\t1\t5\t1", "1\t2\t5\t2", "1\t3\t5\t3", "1\t4\t5\t4"])
    load_dataset(IngestConfig(dataset=str(folder)))
    assert "u.data" not in capsys.readouterr().err
    monkeypatch.setattr(readers, "PROGRESS_MIN_BYTES", 0)  # every file counts as big
    load_dataset(IngestConfig(dataset=str(folder)))
    err = capsys.readouterr().err
    assert "u.data" in err and "sha256 u.data" in err
    load_dataset(IngestConfig(dataset=str(folder), progress=False))
    assert capsys.readouterr().err == ""


def test_every_format_choice_has_a_loader():
    """`--format` choices (a Literal, so `--help` lists them) and the loader table cannot drift."""
    from typing import get_args

    from ingest.config import Format
    from ingest.pipeline import LOADERS

    assert set(get_args(Format)) == {"auto", *LOADERS}
