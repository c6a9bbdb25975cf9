"""Neo4j URIs in messages and settings: hide passwords, move credentials out of the URI.

No driver import here: the CLI, the dashboard settings and `StoreConfig.describe` use these without
loading the Neo4j driver (graph.neo4j_store re-exports both for older imports).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# `scheme://userinfo@` in any text; greedy up to the last '@' of the authority, so a password that
# itself holds '@' is hidden whole.
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\"]*)@")


def redact_uri(text: str) -> str:
    """Hide passwords written into URIs: `bolt://neo4j:secret@host:7687` -> `bolt://neo4j:***@host:7687`.

    Works on a bare URI or on any message that quotes one (the driver's errors repeat the URI)."""
    def hide(match: re.Match) -> str:
        user, colon, _ = match.group("userinfo").partition(":")
        return f"{match.group('scheme')}{user}{':***' if colon else ''}@"

    return _URI_USERINFO.sub(hide, str(text))


def split_uri_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """`bolt://user:pw@host:7687` -> ("bolt://host:7687", "user", "pw"); (uri, None, None) without userinfo.

    The driver refuses credentials inside a bolt:// URI, and a URI is printed in messages and saved in
    run folders: cli.py moves them into the store's user and password fields."""
    match = _URI_USERINFO.match(uri)
    if not match:
        return uri, None, None
    user, colon, password = (unquote(part) for part in match.group("userinfo").partition(":"))
    return match.group("scheme") + uri[match.end():], user or None, password if colon else None
