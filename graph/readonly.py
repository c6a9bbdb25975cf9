"""Read-only guard for ad-hoc Cypher (`iirg cypher`, the dashboard's query box).

    from graph.readonly import check_read_only
    check_read_only("MATCH (i:Item) RETURN i.title AS title", "ladybug")   # returns None
    check_read_only("MATCH (i:Item) DETACH DELETE i", "neo4j")              # raises ReadOnlyViolation

This is the second line of defence. The first is the database's own read-only mode: the console opens
Neo4j sessions in READ access mode and LadybugDB with `Database(path, read_only=True)`. The guard
exists because that first line has holes: a read-only LadybugDB still runs `COPY ... TO` and
`EXPORT DATABASE` (they write files), `LOAD FROM` (reads any file), `CALL threads=...` (changes a
setting) and `CHECKPOINT` (which leaves the read-only database in a panic state), and a READ session in
Neo4j still runs `LOAD CSV` and admin procedures the user is allowed to call.

How it works: the query is tokenized (string literals, backtick-quoted names, `$parameters`, `//` and
`/* */` comments are single tokens and never match a keyword), so `WHERE i.title CONTAINS 'set'`, a
property `i.created` or a label `:Delete` pass. A word right after `.`, `:` or `AS`, or right before
`:` (a map key), is a name, not a keyword. Any other word that starts a writing or administrative
clause is refused, naming the clause and where it is. A variable that happens to be called like such a
keyword (`WITH 1 AS x RETURN set`) is refused too: backtick-quote it (`set`).

Refused on both dialects: CREATE, MERGE, DELETE, DETACH (DELETE / DATABASE), SET, REMOVE, DROP, ALTER,
FOREACH, LOAD (LOAD CSV, LOAD FROM, LOAD EXTENSION), COPY, EXPORT, IMPORT, INSTALL, UNINSTALL, ATTACH,
USE, CHECKPOINT, BEGIN, COMMIT, ROLLBACK, anything with TRANSACTION(S) (`CALL { } IN TRANSACTIONS`,
`SHOW/TERMINATE TRANSACTIONS`), GRANT, DENY, REVOKE, RENAME, START/STOP DATABASE, ENABLE SERVER,
(DE|RE)ALLOCATE, COMMENT ON, and more than one statement (`;` followed by anything but comments).

Procedures (`CALL name(...)`) are checked against an allow-list, because a deny-list cannot know
every plugin:
- Neo4j: `NEO4J_READ_PROCEDURES` (schema introspection: db.labels, db.relationshipTypes,
  db.propertyKeys, db.schema.*, db.indexes/db.constraints on old servers, db.info, db.ping, full-text and
  vector index queries, apoc.meta.* read procedures). Everything else, including every `dbms.*`,
  `tx.*`, `db.create*`, `db.index.*create*`, `db.clear*`, `db.checkpoint`, `apoc.*` write / load /
  export / `cypher.run*` and `gds.*`, is refused. `SHOW INDEXES / CONSTRAINTS / FUNCTIONS / PROCEDURES`
  are allowed; other SHOW commands (users, roles, privileges, databases, settings, servers,
  transactions) are refused.
- LadybugDB: `LADYBUG_READ_TABLE_FUNCTIONS` (show_tables, table_info, show_connection, ... and the
  full-text/vector index queries). Everything else is refused, notably the file readers (read_csv,
  read_parquet, ...), project_graph / drop_projected_graph, clear_warnings and settings
  (`CALL threads=4`).
Function calls outside CALL are read-only in both databases, except Neo4j plugin functions that run
Cypher or touch files or the server (`NEO4J_REFUSED_FUNCTION_NAMESPACES`, e.g. apoc.cypher.*).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from graph.errors import ReadOnlyViolation

Dialect = Literal["ladybug", "neo4j"]

# Clause keyword -> why it is refused. Matched case-insensitively on word tokens in keyword position.
REFUSED_KEYWORDS: dict[str, str] = {
    "CREATE": "creates nodes, relationships, tables, indexes or databases",
    "MERGE": "creates nodes or relationships",
    "DELETE": "deletes nodes or relationships",
    "DETACH": "deletes nodes (DETACH DELETE) or detaches a database",
    "SET": "writes properties or labels",
    "REMOVE": "removes properties or labels",
    "DROP": "drops tables, indexes, constraints or databases",
    "ALTER": "changes the schema or the server",
    "RENAME": "renames schema or server objects",
    "FOREACH": "runs update clauses for each element",
    "LOAD": "reads files or loads extensions",
    "COPY": "copies data from or to files",
    "EXPORT": "writes the database to files",
    "IMPORT": "loads a database from files",
    "INSTALL": "installs an extension",
    "UNINSTALL": "uninstalls an extension",
    "ATTACH": "attaches another database",
    "USE": "switches to another database",
    "CHECKPOINT": "forces a checkpoint (writes to disk)",
    "BEGIN": "opens a transaction",
    "COMMIT": "commits a transaction",
    "ROLLBACK": "rolls back a transaction",
    "TRANSACTION": "controls transactions",
    "TRANSACTIONS": "runs batched write transactions or manages running transactions",
    "GRANT": "changes privileges",
    "DENY": "changes privileges",
    "REVOKE": "changes privileges",
    "DEALLOCATE": "moves databases between servers",
    "REALLOCATE": "moves databases between servers",
    "DRYRUN": "plans server administration",
}

# Keywords refused only when the next word matches: as plain words they are common variable names.
CONTEXTUAL_KEYWORDS: dict[str, tuple[frozenset[str], str]] = {
    "START": (frozenset({"DATABASE"}), "starts a database"),
    "STOP": (frozenset({"DATABASE"}), "stops a database"),
    "ENABLE": (frozenset({"SERVER"}), "enables a server"),
    "TERMINATE": (frozenset({"TRANSACTION", "TRANSACTIONS"}), "terminates transactions"),
    "COMMENT": (frozenset({"ON"}), "writes a table comment"),
}

# Words that make a refused clause's name clearer in the message (LOAD CSV, DETACH DELETE, ...).
_CLAUSE_SECOND_WORDS = {
    "LOAD": {"CSV", "FROM", "EXTENSION"},
    "DETACH": {"DELETE", "DATABASE"},
    "EXPORT": {"DATABASE"},
    "IMPORT": {"DATABASE"},
    "CREATE": {"OR", "NODE", "REL", "INDEX", "CONSTRAINT", "DATABASE", "MACRO", "SEQUENCE", "USER", "ROLE"},
    "DROP": {"TABLE", "INDEX", "CONSTRAINT", "DATABASE", "MACRO", "SEQUENCE", "USER", "ROLE"},
    "BEGIN": {"TRANSACTION"},
}

# SHOW <what>: only schema listings are allowed.
SHOW_ALLOWED_OBJECTS = frozenset({"INDEX", "INDEXES", "CONSTRAINT", "CONSTRAINTS", "FUNCTION",
                                  "FUNCTIONS", "PROCEDURE", "PROCEDURES"})
SHOW_REFUSED_OBJECTS = frozenset({"USER", "USERS", "ROLE", "ROLES", "PRIVILEGE", "PRIVILEGES", "DATABASE",
                                  "DATABASES", "SERVER", "SERVERS", "SETTING", "SETTINGS", "TRANSACTION",
                                  "TRANSACTIONS", "ALIAS", "ALIASES", "SUPPORTED", "CURRENT"})

# Neo4j procedures that only read the graph or its schema (compared case-insensitively).
NEO4J_READ_PROCEDURES = frozenset(name.lower() for name in (
    "db.labels", "db.relationshipTypes", "db.propertyKeys",
    "db.schema.visualization", "db.schema.nodeTypeProperties", "db.schema.relTypeProperties",
    "db.indexes", "db.constraints",          # Neo4j 4 names; Neo4j 5 uses SHOW INDEXES / CONSTRAINTS
    "db.info", "db.ping",
    "db.index.fulltext.queryNodes", "db.index.fulltext.queryRelationships",
    "db.index.fulltext.listAvailableAnalyzers",
    "db.index.vector.queryNodes", "db.index.vector.queryRelationships",
    "apoc.meta.schema", "apoc.meta.stats", "apoc.meta.data", "apoc.meta.graph", "apoc.meta.nodeTypeProperties",
    "apoc.meta.relTypeProperties",
))

# Neo4j function namespaces refused even outside CALL: they run Cypher, read files or reach the server.
NEO4J_REFUSED_FUNCTION_NAMESPACES = ("apoc.cypher.", "apoc.load.", "apoc.import.", "apoc.export.",
                                     "apoc.periodic.", "apoc.trigger.", "apoc.custom.", "apoc.systemdb.",
                                     "dbms.", "tx.")

# LadybugDB table functions that only report on the database (compared case-insensitively).
LADYBUG_READ_TABLE_FUNCTIONS = frozenset({
    "show_tables", "table_info", "show_connection", "show_functions", "show_indexes", "show_macros",
    "show_sequences", "show_graphs", "show_projected_graphs", "projected_graph_info",
    "show_attached_databases", "show_loaded_extensions", "show_official_extensions", "show_warnings",
    "db_version", "catalog_version", "storage_version", "current_setting", "stats_info", "storage_info",
    "query_fts_index", "query_vector_index",
})


@dataclass(frozen=True)
class Token:
    kind: Literal["word", "name", "string", "number", "param", "punct"]
    text: str
    offset: int


_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>`(?:[^`]|``)*`)
  | (?P<param>\$(?:\w+|`(?:[^`]|``)*`))
  | (?P<number>\d[\w.]*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<word>[^\W\d]\w*)
  | (?P<punct>\S)
""", re.VERBOSE | re.DOTALL)

_UNTERMINATED = {"'": "string literal", '"': "string literal", "`": "backtick-quoted name",
                 "/*": "block comment"}


def tokenize(query: str) -> list[Token]:
    """Significant tokens of a Cypher query (comments and whitespace dropped)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN_RE.match(query, pos)
        kind = match.lastgroup
        text = match.group()
        if kind == "punct" and (text in "'\"`" or query.startswith("/*", pos)):
            # An opening quote or comment that the patterns above could not close.
            what = _UNTERMINATED["/*" if text == "/" else text]
            raise ReadOnlyViolation(f"cannot check the query: unterminated {what} at {_where(query, pos)}")
        if kind not in ("space", "line_comment", "block_comment"):
            tokens.append(Token(kind, text, pos))
        pos = match.end()
    return tokens


def check_read_only(query: str, dialect: Dialect) -> None:
    """Raise ReadOnlyViolation if `query` could write, administer, or reach files; else return None."""
    if dialect not in ("ladybug", "neo4j"):
        raise ValueError(f"unknown dialect {dialect!r} (expected 'ladybug' or 'neo4j')")
    tokens = tokenize(query)
    if not tokens:
        raise ReadOnlyViolation("the query is empty")
    for i, token in enumerate(tokens):
        if token.kind == "punct" and token.text == ";":
            if i + 1 < len(tokens):
                _refuse(query, tokens[i + 1], "a second statement",
                        "only one statement can run at a time (remove the ';')")
            continue
        if (dialect == "neo4j" and token.kind in ("word", "name") and not (i > 0 and tokens[i - 1].text == ".")
                and _is_function_call(tokens, i)):
            # Checked before the name rules: `{x: apoc.cypher.run(...)}` puts the call after a ':'.
            name = _dotted_name(tokens, i)[0]
            if name.lower().startswith(NEO4J_REFUSED_FUNCTION_NAMESPACES) and not _after_call(tokens, i):
                _refuse(query, token, f"function {name}", "it runs Cypher, reads files or reaches the server")
        if token.kind != "word" or _is_name(tokens, i):
            continue
        word = token.text.upper()
        if word in REFUSED_KEYWORDS:
            _refuse(query, token, _clause_name(tokens, i), "it " + REFUSED_KEYWORDS[word], keyword=True)
        if word in CONTEXTUAL_KEYWORDS:
            followers, reason = CONTEXTUAL_KEYWORDS[word]
            nxt = _next_word(tokens, i)
            if nxt is not None and nxt.upper() in followers:
                _refuse(query, token, f"{word} {nxt.upper()}", "it " + reason, keyword=True)
        if word == "SHOW" and dialect == "neo4j":
            _check_show(query, tokens, i)
        if word == "CALL":
            _check_call(query, tokens, i, dialect)


# -- helpers -------------------------------------------------------------------------------------

def _is_name(tokens: list[Token], i: int) -> bool:
    """A word used as a property key, label, type, alias or map key rather than as a keyword."""
    if i > 0:
        prev = tokens[i - 1]
        if prev.kind == "punct" and prev.text in ".:":
            return True
        if prev.kind == "word" and prev.text.upper() == "AS" and not _is_name(tokens, i - 1):
            return True
    if i + 1 < len(tokens):
        nxt = tokens[i + 1]
        # `{create: 1}` (map key) or `(set:Item)` (a variable in a pattern). No clause keyword is
        # ever directly followed by ':'.
        if nxt.kind == "punct" and nxt.text == ":":
            return True
    return False


def _next_word(tokens: list[Token], i: int) -> str | None:
    if i + 1 < len(tokens) and tokens[i + 1].kind == "word":
        return tokens[i + 1].text
    return None


def _clause_name(tokens: list[Token], i: int) -> str:
    word = tokens[i].text.upper()
    nxt = _next_word(tokens, i)
    if nxt is not None and nxt.upper() in _CLAUSE_SECOND_WORDS.get(word, ()):
        return f"{word} {nxt.upper()}"
    if word in ("TRANSACTION", "TRANSACTIONS") and i > 0:
        prev = tokens[i - 1]
        if prev.kind == "word" and prev.text.upper() in ("SHOW", "TERMINATE"):
            return f"{prev.text.upper()} {word}"
        if prev.kind in ("number", "param") or prev.text.upper() in ("IN", "CONCURRENT"):
            return "CALL { ... } IN TRANSACTIONS"
    return word


def _dotted_name(tokens: list[Token], i: int) -> tuple[str, int]:
    """`a.b.c` starting at token i -> ("a.b.c", index after the name)."""
    parts = [tokens[i].text.strip("`")]
    j = i + 1
    while j + 1 < len(tokens) and tokens[j].text == "." and tokens[j + 1].kind in ("word", "name"):
        parts.append(tokens[j + 1].text.strip("`"))
        j += 2
    return ".".join(parts), j


def _after_call(tokens: list[Token], i: int) -> bool:
    """Token i names a procedure (`CALL name`): _check_call reports it, as a procedure."""
    return i > 0 and tokens[i - 1].kind == "word" and tokens[i - 1].text.upper() == "CALL"


def _is_function_call(tokens: list[Token], i: int) -> bool:
    name, j = _dotted_name(tokens, i)
    return "." in name and j < len(tokens) and tokens[j].text == "("


def _check_call(query: str, tokens: list[Token], i: int, dialect: Dialect) -> None:
    if i + 1 >= len(tokens):
        _refuse(query, tokens[i], "CALL", "it has nothing to call")
    nxt = tokens[i + 1]
    if nxt.text == "{":
        return                                  # subquery; its clauses are checked like any other
    if nxt.text == "(" and dialect == "neo4j":
        # CALL (x, y) { ... }: a subquery with a variable scope clause.
        depth, j = 0, i + 1
        while j < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[j].text, 0) if tokens[j].kind == "punct" else 0
            if depth == 0:
                break
            j += 1
        if j + 1 < len(tokens) and tokens[j + 1].text == "{":
            return
        _refuse(query, tokens[i], "CALL", "it is neither a subquery nor a procedure call")
    if nxt.kind not in ("word", "name"):
        _refuse(query, tokens[i], "CALL", "it is neither a subquery nor a procedure call")
    name, _ = _dotted_name(tokens, i + 1)
    if dialect == "neo4j":
        if name.lower() not in NEO4J_READ_PROCEDURES:
            _refuse(query, nxt, f"procedure {name}",
                    "it is not on the read-only allow-list (graph.readonly.NEO4J_READ_PROCEDURES)")
    elif name.lower() not in LADYBUG_READ_TABLE_FUNCTIONS:
        _refuse(query, nxt, f"CALL {name}",
                "it is not a read-only table function (graph.readonly.LADYBUG_READ_TABLE_FUNCTIONS); "
                "settings such as CALL threads=4 are refused too")


def _check_show(query: str, tokens: list[Token], i: int) -> None:
    j = i + 1
    while j < len(tokens) and tokens[j].kind == "word":
        word = tokens[j].text.upper()
        if word in SHOW_ALLOWED_OBJECTS:
            return
        if word in SHOW_REFUSED_OBJECTS or word in ("YIELD", "WHERE", "RETURN"):
            break
        j += 1
    what = tokens[j].text.upper() if j < len(tokens) else ""
    _refuse(query, tokens[i], f"SHOW {what}".strip(),
            "only SHOW INDEXES, CONSTRAINTS, FUNCTIONS and PROCEDURES are allowed")


def _where(query: str, offset: int) -> str:
    line = query.count("\n", 0, offset) + 1
    column = offset - (query.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _refuse(query: str, token: Token, clause: str, reason: str, *, keyword: bool = False) -> None:
    hint = " (a variable named like this keyword must be backtick-quoted)" if keyword else ""
    raise ReadOnlyViolation(
        f"refused {clause} at {_where(query, token.offset)}: {reason}. Only read queries run here{hint}.")
