"""`iirg ingest` and `iirg datasets` through the real CLI entry point (cli.main), with the data
folder taken from $IIRG_DATA_DIR.

    pytest tests/test_ingest_cli.py -q
"""

from __future__ import annotations

import argparse
import json

import pytest

import cli
from ingest import Dataset
from ingest.commands import add_arguments, config_from_args

ITEMS = "\n".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x/{i}|" + "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
                  for i in range(1, 5)) + "\n"
DATA = "1\t1\t5\t10\n1\t2\t4\t20\n1\t3\t3\t30\n2\t1\t5\t10\n2\t4\t4\t20\n2\t2\t3\t30\n2\t9\t3\t40\n2\tx\t3\t50\n1\t4\t2\t60\n"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data folder with a (tiny, not the real) ml-100k, found through $IIRG_DATA_DIR."""
    root = tmp_path / "data"
    (root / "ml-100k").mkdir(parents=True)
    (root / "ml-100k" / "u.data").write_text(DATA)
    (root / "ml-100k" / "u.item").write_text(ITEMS)
    monkeypatch.setenv("IIRG_DATA_DIR", str(root))
    return root


def test_ingest_registered_name_from_env_data_dir(data_dir, tmp_path, capsys):
    run = tmp_path / "runs" / "ml"
    assert cli.main(["ingest", "--dataset", "ml-100k", "--run", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dataset ml-100k (movielens)" in out and "skipped records: 2" in out
    assert "unknown_item" in out and "bad_value" in out and "DIFFERENT" in out  # not the pinned release
    ds = Dataset.load(run / "dataset")
    assert ds.stats()["interactions"] == 7 and ds.report.counts == {"unknown_item": 1, "bad_value": 1}
    config = json.loads((run / "config.json").read_text())
    assert config["ingest"]["dataset"] == "ml-100k" and config["ingest"]["data_dir"] == str(data_dir)
    assert config["ingest"]["format_used"] == "movielens" and config["ingest"]["checksum"] == ds.checksum()
    assert config["ingest"]["report"]["skipped"] == 2


def test_ingest_strict_stops_with_file_line_field(data_dir, tmp_path, capsys):
    code = cli.main(["ingest", "--dataset", "ml-100k", "--run", str(tmp_path / "r"), "--strict", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{data_dir / 'ml-100k' / 'u.data'}:8 field 'item_id': not an integer: 'x'" in err
    assert not (tmp_path / "r" / "dataset").exists()


def test_ingest_missing_dataset_says_what_to_download(data_dir, tmp_path, capsys):
    assert cli.main(["ingest", "--dataset", "ml-1m", "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in err
    assert str(data_dir / "ml-1m") in err


def test_ingest_csv_options_and_toml_config(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IIRG_DATA_DIR", raising=False)
    log = tmp_path / "log.tsv"
    log.write_text("uid\tsku\tt\nu\ta\t3\nu\tb\t1\nu\tc\t2\nu\td\t4\n")
    toml = tmp_path / "ingest.toml"
    toml.write_text('[ingest]\nuser_col = "uid"\nitem_col = "wrong"\nmin_interactions = 0\n')
    run = tmp_path / "r"
    argv = ["ingest", "--dataset", str(log), "--config", str(toml), "--item-col", "sku", "--timestamp-col", "t",
            "--delimiter", "\\t", "--run", str(run), "--no-progress"]
    assert cli.main(argv) == 0
    assert Dataset.load(run / "dataset").sequences() == {"u": ["b", "c", "a", "d"]}
    config = json.loads((run / "config.json").read_text())["ingest"]
    assert (config["user_col"], config["item_col"], config["delimiter"]) == ("uid", "sku", "\t")


def test_bad_option_is_a_clean_error(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id\nu,a\n")
    assert cli.main(["ingest", "--dataset", str(log), "--delimiter", "ab", "--run", str(tmp_path / "r")]) == 2
    assert "delimiter must be one character" in capsys.readouterr().err


def test_datasets_lists_registry_and_presence(data_dir, capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k" in out and "present" in out and "missing" in out and "amazon-<category>" in out


def test_add_arguments_reusable_by_other_commands(data_dir):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "yelp", "--min-interactions", "5", "--strict"])
    config = config_from_args(args, {"IIRG_DATA_DIR": "/data"})
    assert (config.dataset, config.min_interactions, config.strict, config.data_dir) == ("yelp", 5, True, "/data")
    assert config.format == "auto" and config.progress is True
