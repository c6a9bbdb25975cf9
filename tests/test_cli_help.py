"""`iirg <command> --help` renders for every command (argparse %-formats help strings, so one stray
"%" in a config field's help text breaks the help of a whole command)."""

from __future__ import annotations

import argparse

import pytest

import cli


def _subparsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _subparsers(sub, prefix + (name,))


COMMANDS = list(_subparsers(cli.build_parser()))


def test_every_command_is_found():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"build", "cypher", "baseline", "sid", "ensemble", "report", "train", "dashboard"} <= names


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_renders(path, parser):
    text = parser.format_help()
    assert text.startswith("usage: iirg")
