"""Bad input, one class at a time, on hand-made files: malformed lines, non-integer ids and
timestamps, unknown item ids, missing columns, wrong encodings, empty files, invalid JSON.
Default mode skips and reports (counts + first examples with file:line and field); strict mode
raises IngestError naming the file, line and field. A failed ingest never leaves partial output.

    pytest tests/test_ingest_bad_input.py -q
"""

from __future__ import annotations

import gzip
import json
import os

import pandas as pd
import pytest

import cli
from ingest import IngestConfig, IngestError, load_dataset

GOOD_ITEMS = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x/{i}|" + "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
              for i in range(1, 6)]
# User 1 has four events: leave-one-out then leaves it one training transition (1 -> 2), which a
# dataset needs (see test_no_training_transitions_is_one_clear_error).
GOOD_DATA = ["1\t1\t5\t10", "1\t2\t4\t20", "1\t3\t3\t30", "2\t1\t5\t10", "2\t4\t4\t20", "2\t5\t3\t30",
             "1\t4\t2\t40"]


def ml_folder(tmp_path, data=GOOD_DATA, items=GOOD_ITEMS, data_bytes=None, item_bytes=None):
    folder = tmp_path / "ml"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_bytes(data_bytes if data_bytes is not None else ("\n".join(data) + "\n").encode())
    (folder / "u.item").write_bytes(item_bytes if item_bytes is not None
                                    else ("\n".join(items) + "\n").encode("latin-1"))
    return folder


def load(path, **options):
    return load_dataset(IngestConfig(dataset=str(path), progress=False, **options))


def strict_error(path, **options) -> IngestError:
    with pytest.raises(IngestError) as e:
        load(path, strict=True, **options)
    return e.value


def test_clean_input_has_an_empty_report(tmp_path):
    ds = load(ml_folder(tmp_path))
    assert ds.report.skipped == 0 and ds.report.counts == {}


# -- malformed lines ---------------------------------------------------------------------------

def test_wrong_field_count_is_skipped_with_its_line(tmp_path):
    data = GOOD_DATA[:2] + ["1\t3\t3", "", "1\t3\t3\t30\textra"] + GOOD_DATA[2:]
    folder = ml_folder(tmp_path, data)
    ds = load(folder)
    assert ds.report.counts == {"malformed_line": 2}
    examples = ds.report.examples["malformed_line"]
    assert examples[0].startswith(f"{folder / 'u.data'}:3:") and "expected 4 fields" in examples[0]
    assert examples[1].startswith(f"{folder / 'u.data'}:5:")
    assert len(ds.interactions) == 7  # the blank line 4 is ignored, not an error
    error = strict_error(folder)
    assert (error.file, error.line) == (str(folder / "u.data"), 3)


def test_double_colon_separator_checked(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::10\n1:x:2::5::20\n1::2::5::30\n1::3::5::40\n1::5::5::50\n")
    (folder / "movies.dat").write_text("1::A (1990)::Drama\n2::B (1991)::Drama\n3::C (1992)::Drama\n"
                                       "4::D::Drama::extra\n5::E (1993)::Drama\n")
    ds = load(folder)
    assert ds.report.counts == {"malformed_line": 2}
    assert f"{folder / 'ratings.dat'}:2: fields must be separated by '::'" in ds.report.examples["malformed_line"]
    assert any("movies.dat:4:" in e for e in ds.report.examples["malformed_line"])
    assert ds.sequences() == {"1": ["1", "2", "3", "5"]}


def test_p5_line_with_only_a_user_and_duplicate_user(tmp_path):
    folder = tmp_path / "p5"
    folder.mkdir()
    (folder / "sequential_data.txt").write_text("1 1 2 3 1\n2\n3 3 2 1\n1 2 2\n")
    (folder / "X.item.json").write_text(json.dumps({str(i): {"title": f"I{i}"} for i in range(3)}))
    ds = load(folder)
    assert ds.report.counts == {"malformed_line": 1, "duplicate_user": 1}
    assert ds.report.examples["malformed_line"][0].startswith(f"{folder / 'sequential_data.txt'}:2:")
    assert ds.sequences() == {"1": ["1", "2", "3", "1"], "3": ["3", "2", "1"]}
    assert strict_error(folder).line == 2


# -- non-integer ids / timestamps ----------------------------------------------------------------

def test_non_integer_ids_and_timestamps(tmp_path):
    data = GOOD_DATA + ["x1\t1\t5\t10", "3\t2.5\t5\t10", "3\t1\t5\tyesterday", "3\t2\tfive\t11", "3\t3\t4\t12",
                        "3\t4\t4\t13"]
    folder = ml_folder(tmp_path, data)
    ds = load(folder)
    assert ds.report.counts == {"bad_value": 4}
    examples = ds.report.examples["bad_value"]
    assert examples[0] == f"{folder / 'u.data'}:8 field 'user_id': not an integer: 'x1'"
    assert f"{folder / 'u.data'}:9 field 'item_id': not an integer: '2.5'" in examples
    assert f"{folder / 'u.data'}:10 field 'ts': not an integer: 'yesterday'" in examples
    assert f"{folder / 'u.data'}:11 field 'rating': not a number: 'five'" in examples
    assert ds.sequences()["3"] == ["3", "4"]
    error = strict_error(folder)
    assert (error.line, error.field) == (8, "user_id")


def test_missing_value_overflow_hex_and_nan(tmp_path):
    data = GOOD_DATA + ["3\t\t5\t10", "3\t1\t5\t99999999999999999999", "3\t0x2\t5\t11", "3\t4\tnan\t11",
                        "3\t2\t5\t11", "3\t3\t5\t12"]
    ds = load(ml_folder(tmp_path, data))
    assert ds.report.counts == {"missing_value": 1, "bad_value": 3}
    examples = ds.report.examples["bad_value"]
    assert any("out of range" in e for e in examples)
    assert any("not an integer: '0x2'" in e for e in examples) and any("not a number: 'nan'" in e for e in examples)
    assert ds.sequences()["3"] == ["2", "3"]


def test_p5_non_integer_item_skips_the_whole_line(tmp_path):
    folder = tmp_path / "p5"
    folder.mkdir()
    (folder / "sequential_data.txt").write_text("1 1 2 3 1\n2 1 b7 3\nu3 1 2\n4 3 2 1\n")
    (folder / "X.item.json").write_text(json.dumps({str(i): {"title": f"I{i}"} for i in range(3)}))
    ds = load(folder)
    assert ds.report.counts == {"bad_value": 2}
    assert ds.report.examples["bad_value"][0] == \
        f"{folder / 'sequential_data.txt'}:2 field 'item_id (field 3)': not an integer id: 'b7'; line skipped"
    assert sorted(ds.sequences()) == ["1", "4"]
    error = strict_error(folder)
    assert (error.line, error.field) == (2, "item_id (field 3)")


def test_lcrec_non_integer_item_skips_the_user(tmp_path):
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "A.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [1, "2", 0], "2": "oops",
                                                     "3": [2, 1, 0, 1]}, indent=4))
    (folder / "A.item.json").write_text(json.dumps({str(i): {"title": f"I{i}"} for i in range(3)}, indent=4))
    ds = load(folder)
    assert ds.report.counts == {"bad_value": 1, "malformed_record": 1}
    assert ds.report.examples["bad_value"][0].startswith(f"{folder / 'A.inter.json'}:7 field '1'")
    assert sorted(ds.sequences()) == ["0", "3"]


# -- unknown items -----------------------------------------------------------------------------

def test_unknown_item_ids_are_dropped_and_reported(tmp_path):
    folder = ml_folder(tmp_path, GOOD_DATA + ["3\t99\t5\t1", "3\t1\t5\t2", "3\t2\t5\t3", "3\t3\t5\t4"])
    ds = load(folder)
    assert ds.report.counts == {"unknown_item": 1}
    assert ds.report.examples["unknown_item"] == [
        f"{folder / 'u.data'}:8 field 'item_id': unknown item id '99' (not in the item file)"]
    assert ds.sequences()["3"] == ["1", "2", "3"]
    error = strict_error(folder)
    assert (error.file, error.line, error.field) == (str(folder / "u.data"), 8, "item_id")


def test_lcrec_unknown_item_points_at_the_user_key(tmp_path):
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "A.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 1, 0, 1, 7]}, indent=4))
    (folder / "A.item.json").write_text(json.dumps({str(i): {"title": f"I{i}"} for i in range(3)}, indent=4))
    ds = load(folder)
    assert ds.report.examples["unknown_item"][0].startswith(f"{folder / 'A.inter.json'}:7 field 'item_id'")


def test_duplicate_item_ids_in_item_file(tmp_path):
    folder = ml_folder(tmp_path, items=GOOD_ITEMS + [GOOD_ITEMS[0].replace("Movie 1", "Other")])
    ds = load(folder)
    assert ds.report.counts == {"duplicate_item": 1}
    assert ds.report.examples["duplicate_item"][0].startswith(f"{folder / 'u.item'}:6 field 'item_id'")
    assert ds.items.set_index("item_id").loc["1", "title"] == "Movie 1 (1995)"


# -- missing columns -----------------------------------------------------------------------------

def test_csv_missing_column_names_the_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,product\nu,a\n")
    with pytest.raises(IngestError) as e:
        load(path)  # missing columns are fatal in every mode: there is nothing to skip
    assert (e.value.file, e.value.line, e.value.field) == (str(path), 1, "item_id")
    assert "product" in str(e.value) and "item_col" in str(e.value)


def test_parquet_missing_configured_column(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}).to_parquet(path)
    with pytest.raises(IngestError) as e:
        load(path, timestamp_col="time")
    assert e.value.field == "time"


def test_item_file_missing_configured_column(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id\nu,a\nu,b\n")
    (tmp_path / "meta.csv").write_text("item_id,name\na,A\nb,B\n")
    with pytest.raises(IngestError) as e:
        load(tmp_path / "log.csv", items_path=str(tmp_path / "meta.csv"), title_col="title")
    assert e.value.field == "title" and e.value.file == str(tmp_path / "meta.csv")


def test_csv_empty_ids_and_bad_ratings(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating,timestamp\nu,a,5,1\n,b,4,2\nu,,3,3\nu,c,great,4\nu,d,,5\nu,e,1,x\nu,f,2,6\n"
                    "u,g,2,7\n")
    ds = load(path)
    assert ds.report.counts == {"missing_value": 2, "bad_value": 2}
    assert f"{path}:5 field 'rating': not a number: 'great'" in ds.report.examples["bad_value"]
    assert f"{path}:7 field 'timestamp': not a number: 'x'" in ds.report.examples["bad_value"]
    assert ds.sequences() == {"u": ["a", "d", "f", "g"]}


# -- encodings -----------------------------------------------------------------------------------

def test_invalid_utf8_line_in_csv_is_skipped(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user_id,item_id\nu,a\nu,caf\xe9\nu,b\nu,c\nu,d\n")
    ds = load(path)
    assert ds.report.counts == {"encoding": 1}
    assert ds.report.examples["encoding"][0].startswith(f"{path}:3:") and "not valid utf-8" in \
        ds.report.examples["encoding"][0]
    assert ds.sequences() == {"u": ["a", "b", "c", "d"]}
    error = strict_error(path)
    assert (error.file, error.line) == (str(path), 3)
    # the right encoding reads the line
    assert load(path, encoding="latin-1").sequences() == {"u": ["a", "café", "b", "c", "d"]}


def test_movielens_item_file_must_be_latin1_not_mixed(tmp_path):
    # u.item is decoded as UTF-8 when it is valid UTF-8 (a re-encoded copy), else as Latin-1, so
    # real releases never fail; forcing UTF-8 on the Latin-1 original reports the line.
    items = GOOD_ITEMS[:2] + [GOOD_ITEMS[2].replace("Movie 3", "Misérables")] + GOOD_ITEMS[3:]
    # user 1's fifth event keeps a training transition once the line of item 3 is dropped
    folder = ml_folder(tmp_path, GOOD_DATA + ["1\t5\t1\t50"], item_bytes=("\n".join(items) + "\n").encode("latin-1"))
    assert load(folder).items.set_index("item_id").loc["3", "title"] == "Misérables (1995)"
    ds = load(folder, encoding="utf-8")
    assert ds.report.counts["encoding"] == 1
    assert ds.report.examples["encoding"][0].startswith(f"{folder / 'u.item'}:3:")
    error = strict_error(folder, encoding="utf-8")
    assert (error.file, error.line) == (str(folder / "u.item"), 3)


def test_json_lines_bad_byte_and_invalid_json(tmp_path):
    folder = tmp_path / "amazon-x"
    folder.mkdir()
    good = [json.dumps({"reviewerID": "U", "asin": a, "overall": 5.0, "unixReviewTime": t})
            for a, t in (("A", 1), ("B", 2), ("C", 3))]
    lines = [good[0].encode(), b'{"reviewerID": "U", "asin": "\xff", "overall": 5.0, "unixReviewTime": 9}',
             b'{"reviewerID": "U", "asin": "D", "overall": 5.0, ', good[1].encode(),
             json.dumps({"reviewerID": "U", "asin": "E", "overall": "five", "unixReviewTime": 4}).encode(),
             json.dumps({"asin": "F", "overall": 5.0, "unixReviewTime": 5}).encode(), good[2].encode(),
             json.dumps({"reviewerID": "U", "asin": "A", "overall": 5.0, "unixReviewTime": 6}).encode()]
    with gzip.open(folder / "X_5.json.gz", "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    with gzip.open(folder / "meta_X.json.gz", "wt") as f:
        f.write("\n".join(json.dumps({"asin": a, "title": a}) for a in "ABCDEF") + "\n{broken\n")
    ds = load(folder)
    assert ds.report.counts == {"encoding": 1, "invalid_json": 2, "bad_value": 1, "missing_field": 1}
    reviews = folder / "X_5.json.gz"
    assert ds.report.examples["encoding"][0].startswith(f"{reviews}:2:")
    assert ds.report.examples["invalid_json"][0].startswith(f"{reviews}:3:")
    # a metadata line without a recognisable id is parsed, so its damage is reported too
    assert ds.report.examples["invalid_json"][1].startswith(f"{folder / 'meta_X.json.gz'}:7:")
    assert ds.report.examples["bad_value"][0] == f"{reviews}:5 field 'overall/rating': rating is not a number"
    assert ds.report.examples["missing_field"][0].startswith(f"{reviews}:6 field 'reviewerID/user_id'")
    assert ds.sequences() == {"U": ["A", "B", "C", "A"]}
    error = strict_error(folder)
    assert (error.file, error.line) == (str(reviews), 2)


def test_python_literal_fallback_only_for_metadata(tmp_path):
    folder = tmp_path / "amazon-x"
    folder.mkdir()
    with gzip.open(folder / "X_5.json.gz", "wt") as f:
        f.write("{'reviewerID': 'U', 'asin': 'A', 'overall': 5.0, 'unixReviewTime': 1}\n")
        f.write('{"reviewerID": "U", "asin": "B", "overall": 5.0, "unixReviewTime": 2}\n')
        f.write('{"reviewerID": "U", "asin": "C", "overall": 5.0, "unixReviewTime": 3}\n')
        for t, asin in enumerate("DEB", 4):
            f.write(f'{{"reviewerID": "U", "asin": "{asin}", "overall": 5.0, "unixReviewTime": {t}}}\n')
    with gzip.open(folder / "meta_X.json.gz", "wt") as f:
        f.write("{'asin': 'B', 'title': 'Bee'}\n{'asin': 'C', 'title': 'Sea', 'x': open('f')}\n"
                "{'asin': 'D', 'title': 'Dee'}\n{'asin': 'E', 'title': 'Eee'}\n")
    ds = load(folder)
    assert ds.report.counts["invalid_json"] == 2  # review line 1 (not JSON), meta line 2 (not a literal)
    assert ds.report.counts["unknown_item"] == 1
    assert ds.items["title"].tolist() == ["Bee", "Dee", "Eee"]


# -- empty files and invalid JSON documents -------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_ratings_file(tmp_path, content):
    folder = ml_folder(tmp_path, data_bytes=content)
    with pytest.raises(IngestError) as e:
        load(folder)
    assert e.value.file == str(folder / "u.data") and "empty" in str(e.value)


def test_empty_and_header_only_files(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id\n")
    with pytest.raises(IngestError, match="no data rows"):
        load(tmp_path / "a.csv")
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "A.inter.json").write_text("")
    (folder / "A.item.json").write_text("{}")
    with pytest.raises(IngestError, match="empty"):
        load(folder)
    (folder / "A.inter.json").write_text("{}")
    with pytest.raises(IngestError, match="no user sequences"):
        load(folder)
    gz = tmp_path / "amazon-y"
    gz.mkdir()
    with gzip.open(gz / "Y_5.json.gz", "wb"):
        pass
    with gzip.open(gz / "meta_Y.json.gz", "wb") as f:
        f.write(b'{"asin": "A"}\n')
    with pytest.raises(IngestError, match="empty") as e:
        load(gz)
    assert e.value.file == str(gz / "Y_5.json.gz")


def test_invalid_json_document_names_line(tmp_path):
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "A.inter.json").write_text('{\n    "0": [0, 1, 2],\n    "1": [0, 1,, 2]\n}')
    (folder / "A.item.json").write_text(json.dumps({str(i): {"title": f"I{i}"} for i in range(3)}))
    with pytest.raises(IngestError) as e:
        load(folder)  # a broken document cannot be skipped in part: fatal in every mode
    assert (e.value.file, e.value.line) == (str(folder / "A.inter.json"), 3)
    assert "invalid JSON" in str(e.value)


def test_everything_filtered_out_is_an_error(tmp_path):
    folder = ml_folder(tmp_path, ["1\t9\t5\t1", "1\t8\t5\t2"])
    with pytest.raises(IngestError, match="no usable interactions"):
        load(folder)


# -- no partial output ----------------------------------------------------------------------------

def test_failed_ingest_leaves_previous_output_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("IIRG_DATA_DIR", str(tmp_path / "nodata"))
    run = tmp_path / "run"
    good = ml_folder(tmp_path / "good")
    assert cli.main(["ingest", "--dataset", str(good), "--run", str(run), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in (run / "dataset").iterdir()}
    bad = ml_folder(tmp_path / "bad", GOOD_DATA + ["3\tx\t5\t1"])
    assert cli.main(["ingest", "--dataset", str(bad), "--run", str(run), "--strict", "--no-progress"]) == 2
    assert {p.name: p.read_bytes() for p in (run / "dataset").iterdir()} == before
    # no temp folders left behind (the run folder's lock files stay)
    assert sorted(n for n in os.listdir(run) if n not in (".lock", ".commit.lock")) == ["config.json", "dataset"]
    fresh = tmp_path / "fresh"
    assert cli.main(["ingest", "--dataset", str(ml_folder(tmp_path / "empty", data_bytes=b"")), "--run",
                     str(fresh), "--no-progress"]) == 2
    assert not (fresh / "dataset").exists()
