"""pytest fixtures for tests that need a real Neo4j server (loaded from tests/conftest.py with
`pytest_plugins = ["neo4j_support"]`).

- `neo4j_config` (session): starts Neo4j 5 community in Docker with testcontainers and returns a
  `StoreConfig(backend="neo4j", ...)`; skips, saying why, when no Docker daemon answers.
- `store_config` (parametrized "embedded" / "neo4j"): for contract tests that must hold on both
  backends: an embedded config with its database path in tmp_path, or the Neo4j one (its database is
  wiped before the test).

    @pytest.mark.parametrize("store_config", BOTH_BACKENDS, indirect=True)
    def test_something(store_config): ...

or simply use the `store_config` fixture: it is parametrized over both backends by default.
"""

from __future__ import annotations

import os

import pytest

from graph.store import StoreConfig

NEO4J_IMAGE = os.environ.get("IIRG_TEST_NEO4J_IMAGE", "neo4j:5-community")
NEO4J_TEST_PASSWORD = "iirg-test-password"     # a throwaway container's password, never a real one
BOTH_BACKENDS = ["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)]


def docker_unavailable_reason() -> str | None:
    """None when a Docker daemon answers, else why not (used as the skip reason)."""
    try:
        import docker
    except ImportError:
        return "the docker Python package is not installed (pip install 'iirg[test]')"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:   # docker raises DockerException, requests' ConnectionError, FileNotFoundError...
        return f"no Docker daemon answers ({type(e).__name__}: {str(e)[:160]}); Neo4j tests need Docker"
    return None


@pytest.fixture(scope="session")
def neo4j_config():
    """A running Neo4j 5 community server for the whole session (testcontainers), as a StoreConfig."""
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        from testcontainers.community.neo4j import Neo4jContainer
    except ImportError:          # testcontainers < 4.10 kept it at the top level
        from testcontainers.neo4j import Neo4jContainer
    container = Neo4jContainer(NEO4J_IMAGE, password=NEO4J_TEST_PASSWORD, username="neo4j")
    # Small heap: the tests load a handful of nodes, and CI machines share their memory.
    container.with_env("NEO4J_server_memory_heap_max__size", "512m")
    container.with_env("NEO4J_server_memory_pagecache_size", "128m")
    with container:
        yield StoreConfig(backend="neo4j", uri=container.get_connection_url(), user="neo4j",
                          password=NEO4J_TEST_PASSWORD)


def wipe_neo4j(config: StoreConfig) -> None:
    """Delete every node, relationship, constraint and index (tests share one server)."""
    from graph.neo4j_store import Neo4jStore

    with Neo4jStore.connect(config) as store:
        store.run("MATCH (n) DETACH DELETE n")
        for row in store.run("SHOW CONSTRAINTS YIELD name RETURN name"):
            store.run(f"DROP CONSTRAINT `{row['name']}` IF EXISTS")
        for row in store.run("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"):
            store.run(f"DROP INDEX `{row['name']}` IF EXISTS")


@pytest.fixture(params=BOTH_BACKENDS)
def store_config(request, tmp_path) -> StoreConfig:
    """An empty store of each backend: embedded (a fresh file in tmp_path) or the session's Neo4j."""
    if request.param == "embedded":
        (tmp_path / "store").mkdir(exist_ok=True)  # a folder of its own: build_run swaps it whole
        return StoreConfig(backend="embedded", path=tmp_path / "store" / "graph.lbdb")
    config = request.getfixturevalue("neo4j_config")
    wipe_neo4j(config)
    return config
