"""The one config mechanism (`common.config`): a dataclass -> flags and a TOML table; defaults, then
the file's table, then the flags; unknown tables, keys and wrong types are errors naming the file,
the table and the key. Also: every command with settings uses it, and each of their dataclasses
round-trips through a TOML table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

import cli
from common.config import add_config_flags, build_config, config_from_args, defaults_of, read_table
from common.errors import ConfigError

COMMANDS_WITH_SETTINGS = {
    "ingest": ["ingest"], "build": ["ingest", "build"], "baseline": ["baseline", "sasrec", "tiger"],
    "analyze": ["analyze"], "report": ["report"], "sid": ["sid"], "ensemble": ["ensemble"],
    "data": ["data"], "tiny-model": ["tiny"], "train": ["train"], "evaluate": ["evaluate"],
    "experiment": ["experiment"],
}


@dataclass
class Example:
    """Every kind of field the mechanism supports."""

    name: str = field(metadata={"help": "required text"})
    count: int = field(default=3, metadata={"help": "an int"})
    rate: float = field(default=0.5, metadata={"help": "a float, at most 100%"})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "a choice"})
    enabled: bool = field(default=True, metadata={"help": "a bool"})
    no_cache: bool = field(default=False, metadata={"help": "a negative switch"})
    tags: tuple[str, ...] = field(default=("a", "b"), metadata={"help": "a list"})
    weights: tuple[float, ...] | None = field(default=None, metadata={"help": "an optional list"})
    pair: tuple[str, str] | None = field(default=None, metadata={"help": "two values"})
    limit: int | None = field(default=None, metadata={"help": "an optional int"})
    folder: Path = field(default=Path("out"), metadata={"help": "a path"})

    def __post_init__(self):
        if self.count < 0:
            raise ConfigError("count must be >= 0")
        if self.rate > 1:
            raise ValueError("rate must be <= 1")  # a plain ValueError becomes a ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="example")
    add_config_flags(p, Example, table="example")
    return p


def resolve(*argv: str) -> Example:
    return config_from_args(Example, parser().parse_args(list(argv)), table="example")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)  # ints, floats and strings are spelled alike in JSON and TOML


def write_toml(path: Path, tables: dict[str, dict]) -> Path:
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_flags_cover_every_field_kind():
    cfg = resolve("--name", "x", "--count", "7", "--rate", "0.25", "--mode", "slow", "--no-enabled",
                  "--no-cache", "--tags", "p,q,r", "--weights", "1,0.5", "--pair", "A", "B", "--limit", "4",
                  "--folder", "somewhere")
    assert cfg == Example(name="x", count=7, rate=0.25, mode="slow", enabled=False, no_cache=True,
                          tags=("p", "q", "r"), weights=(1.0, 0.5), pair=("A", "B"), limit=4,
                          folder=Path("somewhere"))
    assert resolve("--name", "x") == Example(name="x")  # nothing given: the dataclass defaults
    assert resolve("--name", "x", "--enabled").enabled is True


def test_help_renders_with_percent_signs_and_defaults():
    text = parser().format_help()
    assert "at most 100%" in text and "--enabled, --no-enabled" in text and "(default: 3)" in text
    assert "[example] table" in text and "--config TOML" in text


def test_toml_round_trip(tmp_path):
    cfg = Example(name="x", count=7, rate=0.25, mode="slow", enabled=False, no_cache=True, tags=("p", "q"),
                  weights=(1.0, 0.5), pair=("A", "B"), limit=4, folder=Path("f"))
    path = write_toml(tmp_path / "example.toml", {"example": dataclasses.asdict(cfg)})
    assert resolve("--config", str(path)) == cfg
    assert build_config(Example, read_table(path, "example", Example), table="example") == cfg


def test_flag_beats_toml_beats_default(tmp_path):
    path = write_toml(tmp_path / "c.toml", {"example": {"name": "from-file", "count": 5, "mode": "slow"}})
    cfg = resolve("--config", str(path), "--count", "9")
    assert (cfg.name, cfg.count, cfg.mode, cfg.rate) == ("from-file", 9, "slow", 0.5)


def test_unknown_key_names_file_table_and_key(tmp_path):
    path = write_toml(tmp_path / "typo.toml", {"example": {"name": "x", "cuont": 5}})
    with pytest.raises(ConfigError) as error:
        resolve("--config", str(path))
    assert f"{path}: [example] has unknown key `cuont`" in str(error.value)


def test_unknown_table_and_keys_outside_tables_are_errors(tmp_path):
    path = write_toml(tmp_path / "t.toml", {"exampel": {"name": "x"}})
    with pytest.raises(ConfigError, match=r"t\.toml: unknown table \[exampel\]"):
        resolve("--config", str(path))
    bare = tmp_path / "bare.toml"
    bare.write_text('name = "x"\n')
    with pytest.raises(ConfigError, match=r"bare\.toml: `name` is outside a table"):
        resolve("--config", str(bare))
    broken = tmp_path / "broken.toml"
    broken.write_text("[example\n")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        resolve("--config", str(broken))


def test_literal_choices_are_enforced_on_flags_and_in_toml(tmp_path, capsys):
    with pytest.raises(SystemExit):
        resolve("--name", "x", "--mode", "medium")
    assert "invalid choice: 'medium'" in capsys.readouterr().err
    path = write_toml(tmp_path / "c.toml", {"example": {"name": "x", "mode": "medium"}})
    with pytest.raises(ConfigError, match=r"\[example\] mode = 'medium': expected one of 'fast', 'slow'"):
        resolve("--config", str(path))


@pytest.mark.parametrize("key,value", [("count", "3"), ("count", True), ("rate", "high"), ("enabled", 1),
                                       ("tags", 5), ("pair", ["only-one"]), ("name", 3)])
def test_wrong_types_in_toml_name_the_key(tmp_path, key, value):
    path = write_toml(tmp_path / "c.toml", {"example": {"name": "x", key: value}})
    with pytest.raises(ConfigError, match=rf"c\.toml: \[example\] {key} = "):
        resolve("--config", str(path))


def test_ints_are_floats_in_toml(tmp_path):
    path = write_toml(tmp_path / "c.toml", {"example": {"name": "x", "rate": 1, "weights": [1, 2]}})
    cfg = resolve("--config", str(path))
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float) and cfg.weights == (1.0, 2.0)


def test_validation_and_required_fields_are_config_errors():
    with pytest.raises(ConfigError, match="count must be >= 0"):
        resolve("--name", "x", "--count", "-1")
    with pytest.raises(ConfigError, match="rate must be <= 1"):
        resolve("--name", "x", "--rate", "2")
    with pytest.raises(ConfigError, match=r"--name is required \(or `name = \.\.\.` in \[example\]\)"):
        resolve()


def test_fields_shared_by_two_tables_become_one_flag(tmp_path):
    @dataclass
    class Other:
        count: int = field(default=1, metadata={"help": "another int"})
        extra: str = field(default="e", metadata={"help": "only here"})

    p = argparse.ArgumentParser()
    add_config_flags(p, Example, table="example", title="both")
    add_config_flags(p, Other, table="other", title="both")
    text = p.format_help()
    assert "example: an int (default: 3); other: another int (default: 1)" in " ".join(text.split())
    assert "[example], [other] tables set" in " ".join(text.split())
    args = p.parse_args(["--name", "n", "--count", "4"])
    assert config_from_args(Example, args, table="example").count == 4
    assert config_from_args(Other, args, table="other").count == 4
    path = write_toml(tmp_path / "c.toml", {"example": {"name": "n", "count": 2}, "other": {"count": 8}})
    args = p.parse_args(["--config", str(path)])
    assert config_from_args(Example, args, table="example").count == 2
    assert config_from_args(Other, args, table="other").count == 8


# -- every command -----------------------------------------------------------------------------
def _commands() -> dict[str, argparse.ArgumentParser]:
    root = cli.build_parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_with_settings_takes_a_config_file():
    commands = _commands()
    for name, tables in COMMANDS_WITH_SETTINGS.items():
        assert list(getattr(commands[name], "config_classes", {})) == tables, name
        assert "--config" in commands[name]._option_string_actions, name



def test_every_settings_dataclass_documents_its_fields_and_round_trips_through_toml(tmp_path):
    seen = {}
    for parser in _commands().values():
        seen.update(getattr(parser, "config_classes", {}))
    assert set(seen) == {t for tables in COMMANDS_WITH_SETTINGS.values() for t in tables}
    for table, cls in seen.items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            hint = typing.get_type_hints(cls)[f.name]
            assert hint is not typing.Any, f"{cls.__name__}.{f.name}"
        values = defaults_of(cls)
        path = write_toml(tmp_path / f"{table}.toml", {table: values})
        read = read_table(path, table, cls)
        assert read == {k: v for k, v in values.items() if v is not None}, table
        required = {f.name: "x" for f in dataclasses.fields(cls) if f.name not in values}
        extra = {"adapter": "a"} if table == "evaluate" else {}  # evaluate needs an adapter or --no-adapter
        built = build_config(cls, {**read, **required, **extra}, table=table)
        assert built == cls(**{**values, **required, **extra}), table
