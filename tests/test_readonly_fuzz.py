"""Property-based tests of the read-only console: refused keywords with their token boundaries
mutated (digits, `$1`, strings, backtick names, comments, unicode whitespace glued before and after,
random case), first against the guard alone on both dialects, then end to end on a real LadybugDB store
(no statement may read a file, write a file or change the database files) and on Neo4j (through the
testcontainers fixture of tests/neo4j_support.py; skipped where no Docker daemon answers).

    .venv/bin/python -m pytest -q tests/test_readonly_fuzz.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import ladybug
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.console import run_read_query
from graph.errors import GraphError, ReadOnlyViolation
from graph.readonly import check_read_only
from graph.store import StoreConfig

pytest_plugins = ["neo4j_support"]

CANARY = "canary-3f9a1c"            # the content of the file the statements try to read

# Statements that read a file, write a file or write the graph when KW is the keyword named beside
# them. {canary} is a file holding CANARY, {out} a path that must never appear.
ATTACKS: list[tuple[str, str]] = [
    ("LOAD", "UNWIND [1] AS x WITH x LIMIT 1{kw} FROM '{canary}' (file_format='csv', header=false) RETURN *"),
    ("LOAD", "{kw} FROM '{canary}' (file_format='csv', header=false) RETURN *"),
    ("COPY", "{kw} (MATCH (i:Item) RETURN i.id) TO '{out}.csv'"),
    ("EXPORT", "{kw} DATABASE '{out}'"),
    ("CREATE", "MATCH (i:Item) WITH i LIMIT 1{kw} (:Item {{id: 'fuzz'}})"),
    ("SET", "MATCH (i:Item) WITH i LIMIT 1{kw} i.title = 'fuzz'"),
    ("MERGE", "UNWIND [1] AS x WITH x LIMIT 1{kw} (:Item {{id: 'fuzz'}})"),
    ("DELETE", "MATCH (i:Item) WITH i LIMIT 1 DETACH {kw} i"),
    ("DETACH", "MATCH (i:Item) WITH i LIMIT 1{kw} DELETE i"),
    ("REMOVE", "MATCH (i:Item) WITH i LIMIT 1{kw} i.title"),
    ("DROP", "{kw} TABLE NEXT"),
    ("ALTER", "{kw} TABLE Item ADD fuzz STRING"),
    ("ATTACH", "{kw} '{out}.lbdb' AS other (dbtype lbug)"),
    ("INSTALL", "{kw} httpfs"),
    ("CHECKPOINT", "{kw}"),
    ("IMPORT", "{kw} DATABASE '{out}'"),
    ("FOREACH", "MATCH (i:Item) WITH collect(i) AS xs {kw} (x IN xs | SET x.title = 'fuzz')"),
]

# What may sit directly before / after a keyword without becoming part of it, in either database.
SPACES = [" ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u1680", "\u180e", "\u2000",
          "\u2003", "\u2007", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b"]
COMMENTS = ["/**/", "/* c */", "/* * / */", "/*\n*/", "// c\n", "// c\r\n"]
# (Not `$p`, `0x1` or `1_0`: `$pLOAD`, `0x1LOAD`, `1_0LOAD` end in a name in both databases.)
BEFORE = ["", "1", "0", "01", "1.5", "1e5", "1e-5", ".5", "$1", "$0", "$`p`", "'s'", '"s"',
          "'\\''", "`n`", "`a``b`", ")", "]", "}", "*", "-", "+", "=", "<>", ",", "|", "€", "\u00b2"]
AFTER = ["", "(", "'s'", "`n`", "[", "{", "-", "*", "/**/"]


def _case(draw, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.lower() if flip else c.upper() for c, flip in zip(word, flips))


@st.composite
def glued_attack(draw) -> tuple[str, str]:
    """(keyword, statement template with the keyword's boundaries mutated)."""
    keyword, template = draw(st.sampled_from(ATTACKS))
    before = draw(st.sampled_from(BEFORE)) + "".join(draw(st.lists(st.sampled_from(SPACES + COMMENTS), max_size=2)))
    after = "".join(draw(st.lists(st.sampled_from(SPACES + COMMENTS), max_size=2)))
    after = after or draw(st.sampled_from(AFTER))
    return keyword, template.replace("{kw}", before + _case(draw, keyword) + after, 1)


def _fill(template: str, tmp: Path) -> str:
    return template.replace("{canary}", str(tmp / "canary.csv")).replace("{out}", str(tmp / "out"))


# -- the guard alone, both dialects ----------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(glued_attack())
def test_guard_refuses_keywords_whatever_is_glued_around_them(attack):
    keyword, template = attack
    statement = _fill(template, Path("/tmp/iirg-fuzz"))
    for dialect in ("ladybug", "neo4j"):
        with pytest.raises(ReadOnlyViolation):
            check_read_only(statement, dialect)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ATTACKS), st.data())
def test_guard_sees_unicode_escaped_keywords_on_neo4j(attack, data):
    """Neo4j resolves \\uXXXX anywhere in the query (`M\\u0041TCH`): an escaped letter must not hide a
    keyword from the guard."""
    keyword, template = attack
    at = data.draw(st.integers(min_value=0, max_value=len(keyword) - 1))
    escaped = keyword[:at] + f"\\u{ord(keyword[at]):04X}" + keyword[at + 1:]
    statement = " " + template.replace("{kw}", " " + escaped, 1).replace("{canary}", "/tmp/c").replace("{out}", "/tmp/o")
    with pytest.raises(ReadOnlyViolation):
        check_read_only(statement, "neo4j")


# -- end to end on a real LadybugDB store --------------------------------------------------------

def _store_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.parent.glob(path.name + "*")):     # graph.lbdb and its .wal, if any
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "canary.csv").write_text(f"{CANARY},1\n{CANARY},2\n")
    config = StoreConfig(backend="embedded", path=root / "graph.lbdb")
    db = ladybug.Database(str(config.path))
    conn = ladybug.Connection(db)
    for statement in ("CREATE NODE TABLE Item(id STRING PRIMARY KEY, title STRING)",
                      "CREATE REL TABLE NEXT(FROM Item TO Item, count INT64)",
                      "CREATE (:Item {id: '1', title: 'Heat'}), (:Item {id: '2', title: 'Casino'})",
                      "MATCH (a:Item {id: '1'}), (b:Item {id: '2'}) CREATE (a)-[:NEXT {count: 2}]->(b)"):
        conn.execute(statement)
    conn.close()
    db.close()
    return root, config


MUTATIONS = st.one_of(glued_attack(), st.tuples(st.sampled_from([k for k, _ in ATTACKS]),
                                                st.sampled_from([t for _, t in ATTACKS])))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attack=MUTATIONS)
def test_no_statement_reads_or_writes_files_on_a_real_store(fuzz_store, attack):
    root, config = fuzz_store
    before = _store_hash(config.path)
    statement = _fill(attack[1], root)
    try:
        result = run_read_query(config, statement, row_limit=50, timeout_s=10)
    except GraphError:                  # refused (ReadOnlyViolation) or failed: both are fine here
        pass
    else:
        assert CANARY not in result.frame.to_string(), f"read the canary file: {statement!r}"
    assert _store_hash(config.path) == before, f"the database files changed: {statement!r}"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith("out")]
    assert not leftovers, f"{statement!r} wrote {leftovers}"


# -- end to end on Neo4j (Docker) ------------------------------------------------------------------

@pytest.mark.neo4j
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attack=MUTATIONS)
def test_no_statement_writes_on_neo4j(neo4j_config, attack):
    from graph.neo4j_store import Neo4jStore
    count = "MATCH (n) RETURN count(n) AS n"
    with Neo4jStore.connect(neo4j_config, read_only=True) as store:
        before = store.run(count)
    statement = _fill(attack[1], Path("/tmp/iirg-fuzz"))
    with pytest.raises(GraphError):
        run_read_query(neo4j_config, statement, row_limit=50, timeout_s=10)
    with Neo4jStore.connect(neo4j_config, read_only=True) as store:
        assert store.run(count) == before
