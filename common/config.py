"""One way from a settings dataclass to command-line flags and to a table of a TOML file.

A command's settings are a dataclass: each field has a default (or none, when it is required) and
`metadata={"help": ...}`; `Literal[...]` spells out the choices; `__post_init__` raises
`ConfigError` for a bad value or combination. That dataclass is the only place a setting is
documented: `iirg <command> --help` prints its help. This module turns it into

    flags          one per field, `--semantic-k 5` for `semantic_k`; a bool is `--name/--no-name`
                   (a field named `no_x` is the switch `--no-x`); a `tuple[str, ...]` is written
                   `a,b,c`; a fixed-length tuple such as `tuple[str, str]` takes that many values
    a TOML table   `--config file.toml` with one [table] per dataclass, e.g. [report]

and resolves the values in this order: the dataclass defaults, then the command's table of the
TOML file, then the flags given on the command line. A key the dataclass does not have, a table no
command reads and a value of the wrong type are errors that name the file, the table and the key.

    add_config_flags(parser, ReportConfig, table="report")       # when the command is registered
    cfg = config_from_args(ReportConfig, args, table="report")    # in its handler

Flags that only steer one invocation and are no setting of a result (`--no-graph`, `--no-wait`,
`--resume`, `--out`) stay plain argparse options of the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Literal

from common.errors import ConfigError, IirgError

CONFIG_FLAG = "--config"
# Every table some command reads (filled as commands register): a table no command reads is a typo.
KNOWN_TABLES: set[str] = set()


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------
def _strip_optional(hint):
    """`X | None` -> X (TOML has no null and a flag is either given or not)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _is_variable_tuple(hint) -> bool:
    args = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis


def _parse_text(text: str, hint):
    """A list item from its command-line spelling."""
    if typing.get_origin(hint) is Literal:
        if text not in typing.get_args(hint):
            raise ValueError(f"must be one of {', '.join(map(str, typing.get_args(hint)))}")
        return text
    return hint(text)


def _split_list(item_hint):
    def parse(text: str):
        return tuple(_parse_text(part.strip(), item_hint) for part in text.split(",") if part.strip())
    parse.__name__ = "comma-separated list"  # argparse names the type in its error messages
    return parse


def _type_name(hint) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text",
            Path: "a path (text)"}.get(hint, str(hint))


def _coerce(value, hint, where: str):
    """A TOML value checked against the field's type (ints are accepted for floats)."""
    hint = _strip_optional(hint)
    origin = typing.get_origin(hint)
    problem = f"{where} = {value!r}: expected {_type_name(hint)}"
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(problem)
        return value
    if origin is tuple:
        if isinstance(value, str):  # "nip,collab", as on the command line
            try:
                return _split_list(typing.get_args(hint)[0])(value)
            except ValueError:
                raise ConfigError(problem) from None
        if not isinstance(value, list):
            raise ConfigError(problem)
        if _is_variable_tuple(hint):
            return tuple(_coerce(v, typing.get_args(hint)[0], where) for v in value)
        args = typing.get_args(hint)
        if len(value) != len(args):
            raise ConfigError(f"{where} = {value!r}: expected {len(args)} values")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint in (str, Path):
        ok = isinstance(value, str)
        value = Path(value) if ok and hint is Path else value
    else:
        ok = True
    if not ok:
        raise ConfigError(problem)
    return value


# --------------------------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------------------------
def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(f: dataclasses.Field) -> str | None:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return None  # required: `build_config` says so when it is missing
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _help(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    default = _default_text(f)
    if default is not None:
        text = f"{text} (default: {default})" if text else f"default: {default}"
    return text.replace("%", "%%")  # argparse %-formats help: a literal "10%" would break --help


def _flag_arguments(name: str, hint) -> tuple[list[str], dict]:
    hint = _strip_optional(hint)
    origin = typing.get_origin(hint)
    kwargs: dict = {"dest": name, "default": None}
    if hint is bool:
        if name.startswith("no_"):
            # a negative field is a plain switch (BooleanOptionalAction would add --no-no-x)
            kwargs.update(action="store_const", const=True)
        else:
            kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is Literal:
        choices = typing.get_args(hint)
        kwargs.update(choices=list(choices), type=type(choices[0]))
    elif origin is tuple:
        items = typing.get_args(hint)
        if _is_variable_tuple(hint):
            kwargs.update(type=_split_list(items[0]), metavar="A,B,...")
        else:
            if len(set(items)) != 1:
                raise TypeError(f"field {name}: a fixed-length tuple must have one item type")
            kwargs.update(type=items[0], nargs=len(items),
                          metavar=tuple("ABCDEFGH"[i] for i in range(len(items))))
    elif hint in (int, float, str, Path):
        kwargs["type"] = hint
    else:
        raise TypeError(f"field {name}: no flag for type {hint!r}")
    return [flag_name(name)], kwargs


def _action_of(parser: argparse.ArgumentParser, dest: str) -> argparse.Action | None:
    return next((a for a in parser._actions if a.dest == dest), None)


def add_config_flags(parser: argparse.ArgumentParser, cls, *, table: str, title: str | None = None) -> None:
    """One flag per field of `cls`, all defaulting to None so that the TOML table and then the
    dataclass default apply; and `--config`, once per parser.

    Called for several dataclasses on one parser (e.g. SASRec's and TIGER's settings on `baseline`),
    a field they share becomes one flag whose help names each table.
    """
    KNOWN_TABLES.add(table)
    classes = parser.__dict__.setdefault("config_classes", {})  # table -> dataclass, in order
    classes[table] = cls
    tables = list(classes)
    shared = parser.__dict__.setdefault("_config_fields", {})  # field -> (flag kwargs, [(table, help)])
    config = _action_of(parser, "config")
    listing = ", ".join(f"[{t}]" for t in tables)
    config_help = (f"TOML file whose {listing} table{'s set' if len(tables) > 1 else ' sets'} these "
                   f"options; flags given here win")
    if config is None:
        parser.add_argument(CONFIG_FLAG, metavar="TOML", default=None, help=config_help)
    else:
        config.help = config_help
    groups = parser.__dict__.setdefault("_config_groups", {})
    group_title = title or f"settings ([{table}] table of --config)"
    if group_title not in groups:
        groups[group_title] = parser.add_argument_group(group_title)
    group = groups[group_title]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names, kwargs = _flag_arguments(f.name, hints[f.name])
        if f.name in shared:
            first, helps = shared[f.name]
            if _signature(first) != _signature(kwargs):
                raise TypeError(f"{names[0]}: [{helps[0][0]}] and [{table}] disagree on its type")
            helps.append((table, _help(f)))
            _action_of(parser, f.name).help = "; ".join(f"{t}: {h}" for t, h in helps)
            continue
        # in a group of several tables, each flag says whose setting it is
        group.add_argument(*names, help=f"{table}: {_help(f)}" if title else _help(f), **kwargs)
        shared[f.name] = (kwargs, [(table, _help(f))])


def _signature(kwargs: dict) -> dict:
    """What two fields sharing one flag must agree on (a type by its name: list parsers are closures)."""
    return {k: getattr(v, "__name__", v) if k == "type" else v for k, v in kwargs.items()}


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------
def read_table(path: str | Path, table: str, cls) -> dict:
    """The [table] of a TOML file, checked against `cls` (unknown tables and keys are errors)."""
    import tomllib

    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from e
    known_tables = KNOWN_TABLES | {table}
    for key, value in document.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: `{key}` is outside a table; settings go in tables such as [{table}]")
        if key not in known_tables:
            raise ConfigError(f"{path}: unknown table [{key}]; known tables: "
                              f"{', '.join(f'[{t}]' for t in sorted(known_tables))}")
    values = document.get(table, {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{path}: [{table}] has unknown key `{key}`; known keys: "
                              f"{', '.join(sorted(names))}")
        out[key] = _coerce(value, hints[key], f"{path}: [{table}] {key}")
    return out


def config_values(cls, args: argparse.Namespace, *, table: str) -> dict:
    """The --config file's [table], then the flags given (the dataclass defaults fill the rest in
    `build_config`; a command may add values it computes, e.g. from the environment, in between)."""
    values = {}
    path = getattr(args, "config", None)
    if path:
        values.update(read_table(path, table, cls))
    for f in dataclasses.fields(cls):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = tuple(given) if isinstance(given, list) else given  # nargs gives lists
    return values


def defaults_of(cls) -> dict:
    """field -> default value, for every field that has one (required fields are left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def build_config(cls, values: dict, *, table: str):
    """`cls(**values)`: missing required fields and bad values become a ConfigError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"[{table}] has unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and
               f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ConfigError(" and ".join(f"{flag_name(m)} is required (or `{m} = ...` in [{table}])"
                                       for m in missing))
    try:
        return cls(**values)
    except IirgError:  # ConfigError, or a stage's own error class: keep it
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[{table}]: {e}") from e


def config_from_args(cls, args: argparse.Namespace, *, table: str):
    """The resolved config: dataclass defaults <- --config [table] <- flags given."""
    return build_config(cls, config_values(cls, args, table=table), table=table)


def flags_given(args: argparse.Namespace, cls) -> list[str]:
    """The flags of `cls`'s fields that were given on the command line."""
    return [flag_name(f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None]
