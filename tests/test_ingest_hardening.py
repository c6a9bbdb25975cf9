"""Issue 8 "Hardening", bad input: each test below failed before its fix.

- huge / overflowing timestamps are `bad_value` records with file:line (not a traceback)
- a missing timestamp (empty field, truncated last line) is skipped and counted, never held out
- repeated keys in LC-Rec / P5 JSON documents are duplicate_user / duplicate_item (first kept)
- a dataset without a single training transition is one clear error in `ingest` and `build`
- titles that are no names (HTML residue, a cleaner's trailing ".", bare category names) are
  cleaned or fall back, and counted in the report's `fixed` section

    pytest tests/test_ingest_hardening.py -q
"""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

import cli
from ingest import IngestError
from ingest.schema import IngestReport, build_dataset
from test_ingest_bad_input import load, strict_error

HEADER = "user_id,item_id,timestamp\n"
GOOD = "u,a,10\nu,b,20\nu,c,30\nu,d,40\n"  # lines 2-5: one user, one training transition (a -> b)


def held_out(ds) -> dict[str, str]:
    test = ds.interactions[ds.interactions["split"] == "test"]
    return dict(zip(test["user_id"], test["item_id"]))


# -- huge or overflowing timestamps ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["1e30", "9223372036854775808", "-1e15", "300000000000000"])
def test_huge_csv_timestamp_is_a_bad_value(tmp_path, value):
    path = tmp_path / "log.csv"
    path.write_text(HEADER + GOOD + f"u,e,{value}\n")
    ds = load(path)
    assert ds.report.counts == {"bad_value": 1}
    assert ds.report.examples["bad_value"] == [
        f"{path}:6 field 'timestamp': timestamp out of range (years 1..9999): {value!r}"]
    assert ds.sequences() == {"u": ["a", "b", "c", "d"]}
    error = strict_error(path)
    assert (error.file, error.line, error.field) == (str(path), 6, "timestamp")


def test_huge_millisecond_timestamp_is_a_bad_value(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "u,a,1600000000000\nu,b,1600000001000\nu,c,1600000002000\nu,d,1600000003000\n"
                    "u,e,9223372036854775808000\n")
    ds = load(path)
    assert ds.source["options"]["timestamp_unit"] == "ms" and ds.report.counts == {"bad_value": 1}
    assert strict_error(path).line == 6


def test_huge_timestamp_in_movielens_and_amazon(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    # fits int64, but is no time: years 1..9999 only
    (folder / "u.data").write_text("1\t1\t5\t10\n1\t2\t5\t20\n1\t3\t5\t30\n1\t4\t5\t40\n1\t5\t5\t9223372036854775807\n")
    (folder / "u.item").write_text("".join(f"{i}|M{i} (1990)|||x|" + "|".join(["0"] * 19) + "\n" for i in range(1, 6)))
    ds = load(folder)
    assert ds.report.counts == {"bad_value": 1}
    assert ds.report.examples["bad_value"][0].startswith(f"{folder / 'u.data'}:5 field 'ts': timestamp out of range")
    assert strict_error(folder).line == 5

    amazon = tmp_path / "amazon-x"
    amazon.mkdir()
    reviews = [{"reviewerID": "U", "asin": a, "overall": 5.0, "unixReviewTime": t}
               for a, t in (("A", 1), ("B", 2), ("C", 3), ("D", 4), ("E", 9223372036854775808), ("F", 1e30))]
    with gzip.open(amazon / "X_5.json.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in reviews))
    with gzip.open(amazon / "meta_X.json.gz", "wt") as f:
        f.write("".join(json.dumps({"asin": a, "title": f"Thing {a}"}) + "\n" for a in "ABCDEF"))
    ds = load(amazon)
    assert ds.report.counts == {"bad_value": 2}
    assert ds.report.examples["bad_value"][0].startswith(
        f"{amazon / 'X_5.json.gz'}:5 field 'unixReviewTime/timestamp': timestamp out of range")
    assert ds.sequences() == {"U": ["A", "B", "C", "D"]}
    assert strict_error(amazon).line == 5


# -- missing timestamps never choose the held-out item ---------------------------------------------

@pytest.mark.parametrize("text, line", [
    (HEADER + "u,a,10\nu,z,\nu,b,20\nu,c,30\nu,d,40\n", 3),   # an empty timestamp
    (HEADER + GOOD + "u,z,", 6),                                # a truncated last line
    (HEADER + GOOD + "u,z, \n", 6),                             # only blanks
])
def test_missing_timestamp_is_skipped_not_held_out(tmp_path, text, line):
    path = tmp_path / "log.csv"
    path.write_text(text)
    ds = load(path)
    assert held_out(ds) == {"u": "d"}
    assert ds.report.counts == {"missing_value": 1}
    assert ds.report.examples["missing_value"] == [f"{path}:{line} field 'timestamp': missing timestamp"]
    error = strict_error(path)
    assert (error.line, error.field) == (line, "timestamp")


def test_missing_iso_timestamp_is_skipped_not_held_out(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "u,a,2021-01-01\nu,b,2021-01-02\nu,c,2021-01-03\nu,d,2021-01-04\nu,z,\n")
    ds = load(path, timestamp_unit="iso")
    assert held_out(ds) == {"u": "d"} and ds.report.counts == {"missing_value": 1}


def test_build_dataset_itself_never_holds_out_a_missing_timestamp():
    # The same rule for any caller of build_dataset, not only the loaders that check as they parse.
    items = pd.DataFrame({"item_id": list("abcdz"), "raw_title": list("ABCDZ")})
    inter = pd.DataFrame({"user_id": ["u"] * 5, "item_id": list("abcdz"),
                          "ts": pd.array([1, 2, 3, 4, None], dtype="Int64"),
                          "file": "log.csv", "line": [2, 3, 4, 5, 6]})
    report = IngestReport()
    ds = build_dataset("t", items, inter, report, source={})
    assert held_out(ds) == {"u": "d"}
    assert report.examples["missing_value"] == [
        "log.csv:6 field 'ts': missing timestamp (other events have one); event skipped"]
    with pytest.raises(IngestError) as e:
        build_dataset("t", items, inter.assign(ts=pd.array([1, 2, 3, 4, 10 ** 15], dtype="Int64")),
                      IngestReport(strict=True), source={})
    assert (e.value.file, e.value.line, e.value.field) == ("log.csv", 6, "ts")


# -- duplicate JSON keys ----------------------------------------------------------------------------

def lcrec_folder(tmp_path, inter_text, item_text):
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "A.inter.json").write_text(inter_text)
    (folder / "A.item.json").write_text(item_text)
    return folder


ITEMS = json.dumps({str(i): {"title": f"Item title {i}"} for i in range(4)}, indent=4)


def test_lcrec_duplicate_user_key_keeps_the_first(tmp_path):
    inter = '{\n    "0": [0, 1, 2, 3],\n    "1": [3, 2, 1, 0],\n    "0": [2, 0, 1, 3]\n}'
    folder = lcrec_folder(tmp_path, inter, ITEMS)
    ds = load(folder)
    assert ds.report.counts == {"duplicate_user": 1}
    assert ds.report.examples["duplicate_user"] == [
        f"{folder / 'A.inter.json'}:4 field '0': user '0' appears again (first on line 2); the first one is kept"]
    assert ds.sequences()["0"] == ["0", "1", "2", "3"]
    error = strict_error(folder)
    assert (error.file, error.line, error.field) == (str(folder / "A.inter.json"), 4, "0")


def test_lcrec_duplicate_item_key_and_field(tmp_path):
    inter = json.dumps({"0": [0, 1, 2, 3], "1": [3, 2, 1, 0]})
    item = ('{\n    "0": {"title": "Pen"},\n    "1": {"title": "Pad"},\n    "2": {"title": "Ink"},\n'
            '    "3": {"title": "Box", "title": "Crate"},\n    "1": {"title": "Other"}\n}')
    folder = lcrec_folder(tmp_path, inter, item)
    ds = load(folder)
    assert ds.report.counts == {"duplicate_item": 1, "duplicate_key": 1}
    assert ds.report.examples["duplicate_item"] == [
        f"{folder / 'A.item.json'}:6 field '1': item '1' appears again (first on line 3); the first one is kept"]
    assert ds.report.examples["duplicate_key"][0].startswith(f"{folder / 'A.item.json'}:5 field '3.title'")
    titles = ds.items.set_index("item_id")["title"]
    assert (titles["1"], titles["3"]) == ("Pad", "Box")
    assert strict_error(folder).line == 5  # the first problem in the file: "title" twice in item 3


def test_p5_item_json_duplicate_key_uses_the_same_check(tmp_path):
    folder = tmp_path / "p5"
    folder.mkdir()
    (folder / "sequential_data.txt").write_text("1 1 2 3 1\n2 3 2 1\n")
    (folder / "X.item.json").write_text('{"0": {"title": "A"}, "1": {"title": "B"}, "2": {"title": "C"}, '
                                        '"1": {"title": "Other"}}')
    ds = load(folder)
    assert ds.report.counts == {"duplicate_item": 1}
    assert ds.items.set_index("item_id").loc["2", "title"] == "B"  # key 1 = P5 item 2
    assert strict_error(folder).line == 1


# -- no training transitions --------------------------------------------------------------------------

@pytest.mark.parametrize("rows, why", [
    ("u,a,1\nu,b,2\nu,c,3\nv,a,1\nv,b,2\nw,c,1\n", "no user has more than 3 event(s)"),
    ("u,a,1\nu,a,2\nu,b,3\nu,c,4\n", "the training events only ever repeat the previous item"),
])
def test_no_training_transitions_is_one_clear_error(tmp_path, capsys, monkeypatch, rows, why):
    monkeypatch.setenv("IIRG_DATA_DIR", str(tmp_path / "nodata"))
    path = tmp_path / "short.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(IngestError, match="no training transitions") as e:
        load(path)
    assert why in str(e.value)
    for command in ("ingest", "build"):
        assert cli.main([command, "--dataset", str(path), "--run", str(tmp_path / command), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"iirg {command}: error: dataset 'short' has no training transitions")
        assert not (tmp_path / command / "dataset").exists()


# -- titles that are no names -------------------------------------------------------------------------

def titled_folder(tmp_path, records: dict[str, dict]) -> object:
    n = len(records)
    inter = json.dumps({"0": list(range(n)), "1": list(range(n))[::-1]})
    return lcrec_folder(tmp_path, inter, json.dumps(records, indent=4))


def test_html_residue_is_removed_and_counted(tmp_path):
    folder = titled_folder(tmp_path, {
        "0": {"title": "Pen Set <br/>"},
        "1": {"title": "Stapler&quot; /&gt;"},                       # escaped residue, as in Amazon dumps
        "2": {"title": "<span class=\"t\">Desk Lamp</span>"},
        "3": {"title": "Monitor Arm, For Monitors &lt;= 30 in"},     # a comparison, not a tag
        "4": {"title": "<img src=\"x.jpg\" />", "description": "A paper tray"},
    })
    ds = load(folder)
    titles = ds.items.set_index("item_id")["title"].to_dict()
    assert titles == {"0": "Pen Set", "1": "Stapler", "2": "Desk Lamp", "3": "Monitor Arm, For Monitors <= 30 in",
                      "4": "A paper tray"}
    assert ds.report.fixed == {"title_html": 4} and ds.report.skipped == 0
    assert ds.report.fixed_examples["title_html"][0] == (
        f"{folder / 'A.item.json'}:2 field 'title': HTML residue removed: 'Pen Set <br/>' -> 'Pen Set'")
    assert load(folder, strict=True).report.fixed == {"title_html": 4}  # repaired, not an error


def test_cleaner_trailing_dot_is_stripped_but_abbreviations_kept(tmp_path):
    # LC-Rec/UniSRec-style cleaners append "." to every field: most titles end in one.
    folder = titled_folder(tmp_path, {
        "0": {"title": "Post-it Notes."}, "1": {"title": "Tiffany & Co."}, "2": {"title": "32 Chicken St."},
        "3": {"title": "Warner Family Practice, P.C."}, "4": {"title": "Wait..."}, "5": {"title": "Stapler."},
        "6": {"title": "Bob's Diner Jr."}, "7": {"title": "No dot here"}})
    ds = load(folder)
    titles = ds.items.set_index("item_id")["title"].tolist()
    assert titles == ["Post-it Notes", "Tiffany & Co.", "32 Chicken St.", "Warner Family Practice, P.C.", "Wait...",
                      "Stapler", "Bob's Diner Jr.", "No dot here"]
    assert ds.report.fixed == {"title_trailing_dot": 2}


def test_a_few_dotted_titles_are_the_source_own_and_kept(tmp_path):
    # Real Office/Yelp: 7 of 2420 and 28 of 20033 titles end in "." -- no cleaner ran, keep them.
    records = {str(i): {"title": f"Product {i}"} for i in range(6)}
    records["6"] = {"title": "Includes Kraft Envelopes."}
    ds = load(titled_folder(tmp_path, records))
    assert ds.items.set_index("item_id").loc["6", "title"] == "Includes Kraft Envelopes."
    assert ds.report.fixed == {}


def test_category_name_as_title_falls_back(tmp_path):
    records = {str(i): {"title": f"Shop {i}", "description": "Food, Restaurants", "categories": "Food, Restaurants"}
               for i in range(8)}
    records["8"] = {"title": "Restaurants", "description": "Pizza place on Main", "categories": "Pizza"}  # many
    records["9"] = {"title": "soap", "description": "", "categories": "Bath, Soap"}  # its own category
    records["10"] = {"title": "Pizza", "description": "Slices", "categories": "Pizza"}  # own, only 2 items
    ds = load(titled_folder(tmp_path, records))
    titles = ds.items.set_index("item_id")["title"]
    assert (titles["8"], titles["9"], titles["10"]) == ("Pizza place on Main", "Item 9", "Slices")
    assert ds.report.fixed == {"title_category": 3}
    assert "a category name" in ds.report.fixed_examples["title_category"][0]


def test_title_rules_apply_to_every_loader(tmp_path):
    # CSV item file and raw Amazon metadata go through the same rules as LC-Rec.
    (tmp_path / "log.csv").write_text(HEADER + "u,a,1\nu,b,2\nu,c,3\nu,d,4\n")
    (tmp_path / "items.csv").write_text('item_id,title,categories\na,Pens <b>,Office\nb,Office,Office\n'
                                        'c,Pad,Office\nd,Ink,Office\n')
    ds = load(tmp_path / "log.csv", items_path=str(tmp_path / "items.csv"))
    assert ds.items.set_index("item_id")["title"].to_dict() == {"a": "Pens", "b": "Item b", "c": "Pad", "d": "Ink"}
    assert ds.report.fixed == {"title_html": 1, "title_category": 1}
    amazon = tmp_path / "amazon-x"
    amazon.mkdir()
    with gzip.open(amazon / "X_5.json.gz", "wt") as f:
        f.write("".join(json.dumps({"reviewerID": "U", "asin": a, "overall": 5.0, "unixReviewTime": t}) + "\n"
                        for t, a in enumerate("ABCD")))
    with gzip.open(amazon / "meta_X.json.gz", "wt") as f:
        f.write("".join(json.dumps({"asin": a, "title": f"Thing {a} <br>"}) + "\n" for a in "ABCD"))
    ds = load(amazon)
    assert ds.items["title"].tolist() == ["Thing A", "Thing B", "Thing C", "Thing D"]
    assert ds.items["raw_title"].tolist()[0] == "Thing A <br>" and ds.report.fixed == {"title_html": 4}


def test_cleaned_titles_survive_save_and_load(tmp_path):
    from ingest import Dataset

    folder = titled_folder(tmp_path, {"0": {"title": "A <br>"}, "1": {"title": "B"}, "2": {"title": "C"},
                                      "3": {"title": "D"}})
    ds = load(folder)
    again = Dataset.load(ds.save(tmp_path / "out"))
    assert again.report.fixed == {"title_html": 1} and again.report.fixed_examples == ds.report.fixed_examples


def test_atomic_dir_gives_the_folder_the_umask_mode(tmp_path):
    """mkdtemp creates 0700 folders; a dataset or export folder in a shared place must not be one."""
    import os

    from common.files import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "f").read_text() == "x"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
