"""The dashboard's settings: which run folder, which store. No Streamlit here (the `iirg dashboard`
handler uses it before the app starts).

`iirg dashboard` starts `streamlit run dashboard/app.py` with these environment variables (they are
the app's command line: Streamlit scripts have no argv of their own, and the Neo4j password must not
appear in a process listing):

    IIRG_DASHBOARD_RUN             the run folder (required)
    IIRG_DASHBOARD_NEO4J           bolt:// URI: use Neo4j instead of the run's embedded store
    IIRG_DASHBOARD_NEO4J_USER      Neo4j user (default neo4j)
    IIRG_DASHBOARD_NEO4J_DATABASE  Neo4j database (default: the server's)
    NEO4J_PASSWORD                 Neo4j password
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from graph.rundir import RunPaths
from graph.store import StoreConfig

ENV_RUN = "IIRG_DASHBOARD_RUN"
ENV_NEO4J = "IIRG_DASHBOARD_NEO4J"
ENV_NEO4J_USER = "IIRG_DASHBOARD_NEO4J_USER"
ENV_NEO4J_DATABASE = "IIRG_DASHBOARD_NEO4J_DATABASE"
ENV_PASSWORD = "NEO4J_PASSWORD"


@dataclass(frozen=True)
class Settings:
    run: Path
    store: StoreConfig

    @property
    def store_version(self) -> str:
        """Changes whenever the graph may have changed: the cache key of every query."""
        if self.store.backend == "neo4j":
            return f"neo4j|{self.store.uri}|{self.store.user}|{self.store.database}"
        path = Path(self.store.path)
        stamps = []
        for p in (path, path.with_name(path.name + ".wal")):
            try:
                stamps.append(str(p.stat().st_mtime_ns))
            except OSError:
                stamps.append("-")
        return f"embedded|{path.resolve()}|{'|'.join(stamps)}"


def settings_from_env(env: dict | None = None) -> Settings | None:
    """Settings from the environment `iirg dashboard` set; None when IIRG_DASHBOARD_RUN is missing."""
    env = os.environ if env is None else env
    run = env.get(ENV_RUN)
    if not run:
        return None
    run_path = Path(run)
    if env.get(ENV_NEO4J):
        # A URI may carry `user:pw@` (copied from a connection string): the driver refuses that, and the
        # URI is shown on every page, so the credentials move into the config's own fields. The
        # environment's user and password win when both are given.
        from graph.uri import split_uri_credentials

        uri, uri_user, uri_password = split_uri_credentials(env[ENV_NEO4J])
        config = StoreConfig(backend="neo4j", uri=uri, user=env.get(ENV_NEO4J_USER) or uri_user or "neo4j",
                             password=env.get(ENV_PASSWORD) or uri_password,
                             database=env.get(ENV_NEO4J_DATABASE) or None)
    else:
        config = StoreConfig(backend="embedded", path=RunPaths.of(run_path).store)
    return Settings(run=run_path, store=config)
