"""Streamlit glue: the dashboard's settings, the cached read-only store and cached queries.

Settings (run folder, store) come from the environment `iirg dashboard` sets: dashboard/settings.py.
The store is opened once per process (`st.cache_resource`), read-only: LadybugDB allows many
read-only openers of one file, and Neo4j sessions run in READ access mode. Query results are cached
per store version (`st.cache_data`, ttl): for the embedded store the version includes the database
files' modification times, so a rebuild or `iirg analyze` shows up without restarting the app.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.settings import ENV_RUN, Settings, settings_from_env
from graph.errors import GraphError, StoreUnavailable
from graph.store import GraphStore, StoreConfig, open_store

TTL = 600  # seconds a query result is reused (the store version key catches rebuilds sooner)


class SerializedStore:
    """One store shared by every browser session, one query at a time (a LadybugDB connection is
    not meant for concurrent use from several threads; dashboard queries take milliseconds)."""

    def __init__(self, store: GraphStore):
        self._store = store
        self._lock = threading.Lock()
        self.dialect = store.dialect
        self.read_only = store.read_only

    def run(self, query: str, params: dict | None = None) -> list[dict]:
        with self._lock:
            return self._store.run(query, params)

    def run_df(self, query: str, params: dict | None = None) -> pd.DataFrame:
        with self._lock:
            return self._store.run_df(query, params)

    def close(self) -> None:
        with self._lock:
            self._store.close()


def _close(store: SerializedStore) -> None:
    store.close()


@st.cache_resource(show_spinner="Opening the graph…", max_entries=4, on_release=_close)
def _open_store(version: str, _config: StoreConfig) -> SerializedStore:
    return SerializedStore(open_store(_config, read_only=True))


# -- page context ----------------------------------------------------------------------------------
@dataclass
class Context:
    settings: Settings
    store: SerializedStore | None
    store_error: str | None

    @property
    def version(self) -> str:
        return self.settings.store_version


def context(require_graph: bool = True) -> Context:
    """Settings and store for a page; shows a clear message and stops the page when they are missing."""
    settings = settings_from_env()
    if settings is None:
        st.error("No run folder configured. Start the dashboard with `iirg dashboard --run <run dir>` "
                 f"(or set {ENV_RUN} before `streamlit run dashboard/app.py`).")
        st.stop()
    try:
        store = _open_store(settings.store_version, settings.store)
        return Context(settings, store, None)
    except (StoreUnavailable, GraphError, ValueError) as e:
        message = str(e)
    ctx = Context(settings, None, message)
    if require_graph:
        show_store_error(ctx)
        st.stop()
    return ctx


def show_store_error(ctx: Context) -> None:
    where = ctx.settings.store.describe()
    st.error(f"**The graph is not available** ({where}).\n\n{ctx.store_error}")
    if ctx.settings.store.backend == "neo4j":
        st.info("Start Neo4j (`docker compose up -d neo4j`), check the URI and credentials, then reload.")
    else:
        st.info(f"Build the graph first: `iirg build --dataset <name> --run {ctx.settings.run}`, then reload.")


# -- cached queries (the store is `_store`: not hashed; `version` keys the cache) ------------------
@st.cache_data(ttl=TTL, show_spinner=False, max_entries=512)
def user_view(_store, version: str, user_id: str, k: int, run: str, files: str) -> data.UserView:
    """`files` (files_version) keys the models folder: a newly evaluated model shows up."""
    return data.user_view(_store, user_id, k=k, run_root=Path(run))


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=512)
def item_view(_store, version: str, item_id: str, limit: int) -> data.ItemView:
    return data.item_view(_store, item_id, limit=limit)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=256)
def search_titles(_store, version: str, text: str, limit: int) -> pd.DataFrame:
    return data.search_titles(_store, text, limit=limit)


@st.cache_data(ttl=TTL, show_spinner=False)
def graph_counts(_store, version: str) -> dict:
    return data.graph_counts(_store)


@st.cache_data(ttl=TTL, show_spinner=False)
def segment_counts(_store, version: str) -> pd.DataFrame:
    return data.segment_counts(_store)


@st.cache_data(ttl=TTL, show_spinner=False)
def recommended_models(_store, version: str) -> pd.DataFrame:
    return data.recommended_models(_store)


def files_version(run: Path) -> str:
    """Modification times of the files the overview reads (the cache key of file-based results)."""
    stamps = []
    for pattern in ("models/*/metrics_*.json", "models/*/recommendations_*.parquet",
                    "models/*/users_*.parquet", "analysis/segments_*.parquet", "export/manifest.json"):
        for p in sorted(Path(run).glob(pattern)):
            try:
                stamps.append(f"{p}:{p.stat().st_mtime_ns}")
            except OSError:
                continue
    return "|".join(stamps)


@st.cache_data(ttl=TTL, show_spinner=False)
def model_metrics(run: str, split: str, version: str) -> tuple[list[data.ModelMetrics], list[str]]:
    return data.load_model_metrics(Path(run), split)


@st.cache_data(ttl=TTL, show_spinner="Decomposing the gain…")
def gain_decomposition(run: str, split: str, _a: data.ModelMetrics, _b: data.ModelMetrics, metric: str,
                       k: int, version: str, models: tuple[str, str]) -> data.Decomposition:
    return data.gain_decomposition(Path(run), split, _a, _b, metric, k)
