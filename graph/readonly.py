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

How it works: the query is tokenized the way the database's own lexer splits it (see "tokenizer"
below: `LIMIT 1LOAD` is `1` and `LOAD`, `$1SET` is `$1` and `SET`; string literals, backtick-quoted
names, `$parameters`, `//` and `/* */` comments are single tokens and never match a keyword), so `WHERE i.title CONTAINS 'set'`, a
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

`check_plan` is an independent check on what the database itself plans for the statement (EXPLAIN):
`graph.console.run_read_query` runs it after this guard, so a bug in one of them is not enough.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from graph.dialect import Dialect
from graph.errors import ReadOnlyViolation

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


# -- tokenizer -------------------------------------------------------------------------------------
#
# The guard is only as good as its idea of where one token ends and the next begins: wherever it
# glues two tokens that the database splits, a keyword can hide (`LIMIT 1LOAD FROM ...`, `$1SET`).
# So the scanner below follows the lexers of both databases (LadybugDB/Kùzu: src/antlr4/Cypher.g4;
# Neo4j: the Cypher lexer of @neo4j-cypher/language-support and the "Parsing" page of the Cypher
# manual), and where they differ it takes the choice that shows the database's keywords:
# - a word is a run of identifier characters that BOTH lexers accept (ASCII letters, digits and `_`;
#   other letters, marks and digits only when Python also calls them identifier characters). Anything
#   else ends the word: LadybugDB lets currency signs continue a name (`a$b`), Neo4j does not, so `$`
#   and `€` split here.
# - a number is LadybugDB's: `0` or a non-zero digit and digits, an optional `.digits` and an optional
#   `e-?digits`. It never swallows letters: `1LOAD` is `1` and `LOAD` in LadybugDB (Neo4j rejects it
#   as one malformed number), so the guard sees LOAD. `0xCSET`, `1_000`, `1e+5` split the same way.
# - `$` starts a parameter only when a name, a backtick-quoted name or a decimal integer follows:
#   `$1SET` is `$1` and SET (as in LadybugDB).
# - strings: a backslash escapes the next character; a quote written twice is two strings (both
#   databases). Backtick names: a backtick written twice is part of the name.
# - comments: Neo4j ends `/* */` at the first `*/`; LadybugDB pairs a `*` with the character after it,
#   so `/***/` is not closed there and `/* a **/ x /* */` is one comment. `//` runs to the end of the
#   line in Neo4j; in LadybugDB it must end with \n, \r\n or the end of the query (a lone \r leaves
#   `//` as two slashes). The scanner follows the dialect, and a comment that is not closed is refused.
# - Neo4j resolves `\uXXXX` escapes anywhere in the query text (the Cypher manual's example is
#   `M\u0041TCH (m) RETURN m`), so on Neo4j the query is checked twice: as written and with the
#   escapes resolved; a refusal in either is final.
# Whitespace is everything either lexer skips (Unicode Zs/Zl/Zp, \t\n\v\f\r, \x1c-\x1f, U+0085,
# U+180E) and format characters (Cf, e.g. zero-width space): treating more characters as separators
# only ever shows more keywords.

_ASCII_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_EXTRA_SPACE = frozenset("\x1c\x1d\x1e\x1f\x85\u180e")
_UNICODE_ESCAPE = re.compile(r"\\u+([0-9A-Fa-f]{4})")


def _is_space(char: str) -> bool:
    if char.isspace() or char in _EXTRA_SPACE:
        return True
    return char > "\x7f" and unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cf", "Cc")


def _is_word_start(char: str) -> bool:
    if char < "\x80":
        return char in _ASCII_WORD and not char.isdigit()
    return char.isidentifier() and unicodedata.category(char) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nl")


def _is_word_part(char: str) -> bool:
    if char < "\x80":
        return char in _ASCII_WORD
    return (("a" + char).isidentifier()
            and unicodedata.category(char) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Mn", "Mc", "Nd", "Pc"))


def _scan_word(query: str, pos: int) -> int:
    end = pos + 1
    while end < len(query) and _is_word_part(query[end]):
        end += 1
    return end


def _scan_integer(query: str, pos: int) -> int:
    """LadybugDB's DecimalInteger: `0`, or a non-zero digit and more digits (`01` is `0`, `1`)."""
    if query[pos] == "0":
        return pos + 1
    end = pos + 1
    while end < len(query) and "0" <= query[end] <= "9":
        end += 1
    return end


def _scan_digits(query: str, pos: int) -> int:
    while pos < len(query) and "0" <= query[pos] <= "9":
        pos += 1
    return pos


def _scan_number(query: str, pos: int) -> int:
    """The longest of LadybugDB's number tokens at pos: Digits* '.' Digits+ (then e-?Digits+),
    Digits+ e-?Digits+, or a DecimalInteger."""
    digits_end = _scan_digits(query, pos)               # == pos for `.5`
    if query.startswith(".", digits_end) and digits_end + 1 < len(query) and "0" <= query[digits_end + 1] <= "9":
        return _scan_exponent(query, _scan_digits(query, digits_end + 1))
    exponent_end = _scan_exponent(query, digits_end)
    return exponent_end if exponent_end > digits_end else _scan_integer(query, pos)


def _scan_exponent(query: str, pos: int) -> int:
    """`e-?digits` at pos (LadybugDB takes no `+`), or pos when there is none."""
    if pos < len(query) and query[pos] in "eE":
        start = pos + 1
        if start < len(query) and query[start] == "-":
            start += 1
        end = _scan_digits(query, start)
        if end > start:
            return end
    return pos


def _scan_string(query: str, pos: int) -> int | None:
    quote = query[pos]
    end = pos + 1
    while end < len(query):
        char = query[end]
        if char == "\\":
            end += 2
            continue
        if char == quote:
            return end + 1
        end += 1
    return None


def _scan_backticks(query: str, pos: int) -> int | None:
    end = pos
    while end < len(query) and query[end] == "`":
        close = query.find("`", end + 1)
        if close < 0:
            return None
        end = close + 1
    return end


def _scan_block_comment(query: str, pos: int, dialect: Dialect) -> int | None:
    if dialect == "neo4j":
        close = query.find("*/", pos + 2)
        return None if close < 0 else close + 2
    # LadybugDB: '/*' ( ~'*' | '*' ~'/' )* '*/' -- a '*' that is not followed by '/' takes the next
    # character with it, so a run of stars closes the comment only when its length is odd.
    end = pos + 2
    while end < len(query):
        char = query[end]
        if char != "*":
            end += 1
        elif end + 1 < len(query) and query[end + 1] == "/":
            return end + 2
        else:
            end += 2
    return None


def _scan_line_comment(query: str, pos: int, dialect: Dialect) -> int | None:
    end = pos + 2
    while end < len(query) and query[end] not in "\r\n":
        end += 1
    if dialect == "neo4j" or end == len(query) or query[end] == "\n":
        return end
    # LadybugDB: '//' ~[\r\n]* '\r'? ( '\n' | EOF ). After a lone '\r' the two slashes are not a comment.
    if end + 1 == len(query) or query[end + 1] == "\n":
        return end + 1
    return None


def tokenize(query: str, dialect: Dialect = "ladybug") -> list[Token]:
    """Significant tokens of a Cypher query (comments and whitespace dropped), split where the
    database's lexer splits them (see the notes above). Raises ReadOnlyViolation when a string,
    name or comment is not closed."""
    tokens: list[Token] = []
    pos = 0
    length = len(query)
    while pos < length:
        char = query[pos]
        nxt = query[pos + 1] if pos + 1 < length else ""
        kind: str | None = None
        end: int | None
        if _is_space(char):
            end = pos + 1
        elif char == "/" and nxt == "*":
            end = _scan_block_comment(query, pos, dialect)
            if end is None:
                raise ReadOnlyViolation(
                    f"cannot check the query: unterminated block comment at {_where(query, pos)}")
        elif char == "/" and nxt == "/":
            end = _scan_line_comment(query, pos, dialect)
            if end is None:
                raise ReadOnlyViolation(
                    f"cannot check the query: the // comment at {_where(query, pos)} ends in a lone "
                    "carriage return (end it with a newline)")
        elif char in "'\"":
            kind, end = "string", _scan_string(query, pos)
            if end is None:
                raise ReadOnlyViolation(
                    f"cannot check the query: unterminated string literal at {_where(query, pos)}")
        elif char == "`":
            kind, end = "name", _scan_backticks(query, pos)
            if end is None:
                raise ReadOnlyViolation(
                    f"cannot check the query: unterminated backtick-quoted name at {_where(query, pos)}")
        elif char == "$" and nxt == "`":
            kind, end = "param", _scan_backticks(query, pos + 1)
            if end is None:
                raise ReadOnlyViolation(
                    f"cannot check the query: unterminated backtick-quoted name at {_where(query, pos)}")
        elif char == "$" and nxt and "0" <= nxt <= "9":
            kind, end = "param", _scan_integer(query, pos + 1)
        elif char == "$" and nxt and _is_word_start(nxt):
            kind, end = "param", _scan_word(query, pos + 1)
        elif "0" <= char <= "9" or (char == "." and nxt and "0" <= nxt <= "9"):
            kind, end = "number", _scan_number(query, pos)
        elif _is_word_start(char):
            kind, end = "word", _scan_word(query, pos)
        elif char == "." and nxt == ".":
            kind, end = "punct", pos + 2
        else:
            kind, end = "punct", pos + 1
        if kind is not None:
            tokens.append(Token(kind, query[pos:end], pos))
        pos = end
    return tokens


def resolve_unicode_escapes(query: str) -> str:
    """`\\uXXXX` -> the character, as Neo4j reads the query text (a backslash that is itself escaped,
    `\\\\u0041`, stays as it is)."""
    def replace(match: re.Match) -> str:
        backslashes = match.start() - len(query[:match.start()].rstrip("\\"))
        if backslashes % 2:
            return match.group()
        return chr(int(match.group(1), 16))

    return _UNICODE_ESCAPE.sub(replace, query)


def check_read_only(query: str, dialect: Dialect) -> None:
    """Raise ReadOnlyViolation if `query` could write, administer, or reach files; else return None."""
    if dialect not in ("ladybug", "neo4j"):
        raise ValueError(f"unknown dialect {dialect!r} (expected 'ladybug' or 'neo4j')")
    _check_tokens(query, dialect)
    if dialect == "neo4j":
        resolved = resolve_unicode_escapes(query)
        if resolved != query:
            try:
                _check_tokens(resolved, dialect)
            except ReadOnlyViolation as e:
                raise ReadOnlyViolation(f"{e} (in the query with its \\u escapes resolved, as Neo4j "
                                        f"reads it: {resolved!r})") from None


def _check_tokens(query: str, dialect: Dialect) -> None:
    tokens = tokenize(query, dialect)
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


# -- the second layer: the database's own plan ------------------------------------------------------
#
# The token guard above is one piece of code; one bug in it would be enough to reach the files or the
# server. So before a query runs, the console also asks the database what the statement is (EXPLAIN:
# planned, never executed) and refuses anything but a plain read:
# - LadybugDB: every physical operator of the plan must be on LADYBUG_READ_OPERATORS, and every table
#   function it calls on LADYBUG_READ_TABLE_FUNCTIONS (plus the internal READ_FTABLE, which scans the
#   query's own intermediate results). COPY_TO, EXPORT_DATABASE, STANDALONE_CALL, ATTACH_DATABASE,
#   the writers and the file readers behind LOAD FROM (READ_CSV..., READ_PARQUET...) are not.
# - Neo4j: the summary's query type must be 'r' (read only), and the plan must hold no LoadCSV
#   operator (LOAD CSV reads files and URLs yet counts as a read).
# Names that are not on the lists are refused: a new operator is added here after checking it reads.

LADYBUG_READ_OPERATORS = frozenset({
    "AGGREGATE", "AGGREGATE_FINALIZE", "AGGREGATE_SCAN", "COUNT_REL_TABLE", "CROSS_PRODUCT", "DUMMY_SINK",
    "DUMMY_SIMPLE_SINK", "EMPTY_RESULT", "FILTER", "FLATTEN", "HASH_JOIN_BUILD", "HASH_JOIN_PROBE",
    "INTERSECT", "INTERSECT_BUILD", "LIMIT", "MULTIPLICITY_REDUCER", "PATH_PROPERTY_PROBE",
    "PRIMARY_KEY_SCAN_NODE_TABLE", "PROJECTION", "QUERY_PRIMARY_KEY_LOOKUP", "RECURSIVE_EXTEND",
    "RESULT_COLLECTOR", "SCAN_NODE_TABLE", "SCAN_REL_TABLE", "SEMI_MASKER", "SKIP", "TABLE_FUNCTION_CALL",
    "TOP_K", "TOP_K_SCAN", "ORDER_BY", "ORDER_BY_MERGE", "ORDER_BY_SCAN", "UNION_ALL_SCAN", "UNWIND",
})
LADYBUG_INTERNAL_READ_FUNCTIONS = frozenset({"read_ftable"})
NEO4J_REFUSED_OPERATORS = frozenset({"loadcsv"})

# "SCAN_NODE_TABLE[0]" / "Function: SHOW_TABLES" in LadybugDB's EXPLAIN output (a drawn plan: boxes,
# one per operator). Text from the query itself can only add matches, i.e. refusals, never hide one.
_LADYBUG_PLAN_OPERATOR = re.compile(r"([A-Z][A-Z0-9_]*)\[(\d+)\]")
_LADYBUG_PLAN_FUNCTION = re.compile(r"Function: ([A-Za-z0-9_]+)")


@dataclass(frozen=True)
class QueryPlan:
    """What the database says a statement is, from EXPLAIN (see `check_plan`)."""

    dialect: Dialect
    operators: tuple[str, ...]          # physical operator names (Neo4j: without "@neo4j")
    functions: tuple[str, ...] = ()     # LadybugDB: table functions the plan calls
    query_type: str | None = None       # Neo4j: 'r', 'rw', 'w' or 's'


def explain_statement(query: str, dialect: Dialect) -> str:
    """`EXPLAIN <query>`; a leading EXPLAIN or PROFILE of the query itself is replaced, not doubled."""
    tokens = tokenize(query, dialect)
    if tokens and tokens[0].kind == "word" and tokens[0].text.upper() in ("EXPLAIN", "PROFILE"):
        first = tokens[0]
        return query[:first.offset] + "EXPLAIN" + query[first.offset + len(first.text):]
    return "EXPLAIN " + query


def parse_ladybug_plan(text: str) -> QueryPlan:
    """LadybugDB's EXPLAIN output (one string, a drawn plan) -> QueryPlan."""
    return QueryPlan("ladybug", operators=tuple(name for name, _ in _LADYBUG_PLAN_OPERATOR.findall(text)),
                     functions=tuple(_LADYBUG_PLAN_FUNCTION.findall(text)))


def check_plan(plan: QueryPlan) -> None:
    """Raise ReadOnlyViolation unless the database's plan is a plain read (the second layer)."""
    if plan.dialect == "neo4j":
        if plan.query_type != "r":
            kinds = {"rw": "read-write", "w": "write", "s": "schema"}
            _refuse_plan(f"Neo4j plans it as a {kinds.get(plan.query_type, repr(plan.query_type))} query")
        for name in plan.operators:
            if name.split("@")[0].lower() in NEO4J_REFUSED_OPERATORS:
                _refuse_plan(f"its plan holds {name.split('@')[0]}, which reads files or URLs")
        return
    if "RESULT_COLLECTOR" not in plan.operators:
        _refuse_plan("its LadybugDB plan could not be read (no RESULT_COLLECTOR operator)")
    for name in plan.operators:
        if name not in LADYBUG_READ_OPERATORS:
            _refuse_plan(f"its LadybugDB plan holds the operator {name}, which is not on the read-only "
                         "list (graph.readonly.LADYBUG_READ_OPERATORS)")
    if plan.operators.count("TABLE_FUNCTION_CALL") > len(plan.functions):
        _refuse_plan("its LadybugDB plan calls a table function whose name could not be read")
    for name in plan.functions:
        if name.lower() not in LADYBUG_READ_TABLE_FUNCTIONS | LADYBUG_INTERNAL_READ_FUNCTIONS:
            _refuse_plan(f"its LadybugDB plan calls the table function {name}, which is not on the "
                         "read-only list (graph.readonly.LADYBUG_READ_TABLE_FUNCTIONS)")


def _refuse_plan(reason: str) -> None:
    raise ReadOnlyViolation(f"refused by the database's plan: {reason}. Only read queries run here.")


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
