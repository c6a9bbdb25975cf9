"""Relations as specs (graph/relations), and the metadata relation SHARES_META proved end to end:
its edges equal an independent pandas computation on real catalogues (ml-100k genres, Amazon Office
categories and brands), the other exports stay byte-identical when it is built, `iirg export`
rewrites it unchanged, `iirg data` turns it into the `meta` task, and the dashboard shows it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dashboard import data, drawing, palette
from graph.build import build_run, read_relations
from graph.config import GraphConfig
from graph.dialect import PerDialect
from graph.export import load_export
from graph.queries import TABLES_LADYBUG
from graph.relations import RELATIONS, build_order, enabled_relations, task_relations
from graph.relations.shares_meta import MAX_ITEMS, select_top_shared
from graph.rundir import RunPaths
from graph.store import StoreConfig, open_store
from ingest import IngestConfig, load_dataset
from ingest.schema import IngestReport, build_dataset
from neo4j_support import BOTH_BACKENDS
from train.llm import prompts

REPO = Path(__file__).resolve().parents[1]
META = GraphConfig(extra_relations=("SHARES_META",))


# -- the registry ----------------------------------------------------------------------------------
def test_every_registered_relation_is_wired_the_same_way():
    names = list(RELATIONS)
    assert names[:3] == ["NEXT", "COLLAB", "SIMILAR"] and "SHARES_META" in names
    assert len({spec.export_name for spec in RELATIONS.values()}) == len(names)
    for name, spec in RELATIONS.items():
        assert spec.ladybug_table.startswith(f"CREATE REL TABLE IF NOT EXISTS {name}(FROM Item TO Item")
        assert TABLES_LADYBUG[name] == spec.ladybug_table
        assert f"[:{name} " in spec.create_query and spec.create_query.lstrip().startswith("UNWIND $rows AS row")
        assert f"[r:{name}]" in spec.read_query
        # Neo4j writes them inside a stamped build: endpoints of this build's copy, the edge stamped.
        assert spec.create_query.count("build: $build") == 3, spec.create_query
        assert spec.legend is not None and spec.legend.colour in palette.COLOURS
        assert palette.RELATION[name] == palette.COLOURS[spec.legend.colour]
        assert drawing.EDGE_STYLES[name] == spec.legend.line
        if spec.item_view is not None:
            assert f"[r:{name}]" in spec.item_view.query and "$item_id" in spec.item_view.query
    tasks = task_relations()
    assert list(tasks) == ["collab", "semantic", "meta"] and "nip" not in tasks
    assert prompts.TASKS == ("nip", "collab", "semantic", "meta", "title2sid", "sid2title")
    assert prompts.DEFAULT_TASKS == ("nip", "collab", "semantic")     # the IIRG paper's three
    assert prompts.INSTRUCTIONS["meta"] == RELATIONS["SHARES_META"].task.instruction


def test_build_order_and_optional_relations():
    assert [s.name for s in build_order(enabled_relations(META))] == ["NEXT", "SIMILAR", "COLLAB", "SHARES_META"]
    assert [s.name for s in enabled_relations(GraphConfig())] == ["NEXT", "COLLAB", "SIMILAR"]
    with pytest.raises(ValueError, match="unknown extra relation"):
        enabled_relations(GraphConfig(extra_relations=("COLLAB",)))   # not optional: always built
    with pytest.raises(ValueError, match="unknown extra relation"):
        enabled_relations(GraphConfig(extra_relations=("NO_SUCH",)))


# -- SHARES_META against an independent computation --------------------------------------------------
def expected_shares_meta(items: pd.DataFrame, k: int) -> dict[str, list[tuple]]:
    """From the catalogue alone, with pandas joins: item -> [(neighbour, rank, shared, score)]."""
    rows = [(item_id, "category", c) for item_id, cs in zip(items["item_id"], items["categories"]) for c in set(cs)]
    rows += [(item_id, "brand", b) for item_id, b in zip(items["item_id"], items["brand"]) if b]
    tokens = pd.DataFrame(rows, columns=["item_id", "kind", "value"])
    n = len(items)
    df = tokens.groupby(["kind", "value"]).size().rename("df").reset_index()
    df = df[(df["df"] > 1) & (df["df"] < n) & (df["df"] <= MAX_ITEMS)]
    df["weight"] = [round(1_000_000 * math.log(n / d)) for d in df["df"]]
    held = tokens.merge(df, on=["kind", "value"])
    pairs = held.merge(held[["kind", "value", "item_id"]], on=["kind", "value"], suffixes=("", "_nb"))
    pairs = pairs[pairs["item_id"] != pairs["item_id_nb"]]
    agg = pairs.groupby(["item_id", "item_id_nb"]).agg(score=("weight", "sum"), shared=("weight", "size"))
    agg = agg.reset_index()
    agg["position"] = agg["item_id_nb"].map({i: p for p, i in enumerate(items["item_id"])})
    agg = agg.sort_values(["item_id", "score", "position"], ascending=[True, False, True])
    agg["rank"] = agg.groupby("item_id").cumcount() + 1
    top = agg[agg["rank"] <= k]
    return {i: [(r.item_id_nb, int(r.rank), int(r.shared), r.score / 1_000_000) for r in g.itertuples()]
            for i, g in top.groupby("item_id")}


def as_lists(edges: pd.DataFrame) -> dict[str, list[tuple]]:
    edges = edges.sort_values(["item_id", "rank"])
    return {i: [(r.neighbor_id, int(r.rank), int(r.shared), float(r.score)) for r in g.itertuples()]
            for i, g in edges.groupby("item_id")}


def _build(tmp_path_factory, name: str, dataset_name: str, config: GraphConfig):
    run = RunPaths.of(tmp_path_factory.mktemp(name))
    dataset = load_dataset(IngestConfig(dataset=dataset_name, progress=False))
    manifest, _ = build_run(run, dataset, StoreConfig(path=run.store), config, progress=False)
    return run, dataset, manifest


@pytest.fixture(scope="module")
def ml100k_meta(tmp_path_factory, ml100k_dir):
    return _build(tmp_path_factory, "ml100k_meta", "ml-100k", META)


@pytest.fixture(scope="module")
def ml100k_plain(tmp_path_factory, ml100k_dir):
    return _build(tmp_path_factory, "ml100k_plain", "ml-100k", GraphConfig())


@pytest.fixture(scope="module")
def office_meta(tmp_path_factory, office_dir):
    return _build(tmp_path_factory, "office_meta", "amazon-office", GraphConfig(semantic=False, extra_k=7,
                                                                               extra_relations=("SHARES_META",)))


@pytest.mark.parametrize("fixture", ["ml100k_meta", "office_meta"])
def test_shares_meta_equals_an_independent_pandas_computation(fixture, request):
    run, dataset, manifest = request.getfixturevalue(fixture)
    k = manifest["params"]["extra_relations"]["SHARES_META"]["k"]
    expected = expected_shares_meta(dataset.items, k)
    with open_store(StoreConfig(path=run.store), read_only=True) as store:
        graph_edges = read_relations(store, GraphConfig(extra_relations=("SHARES_META",))).edges["SHARES_META"]
    exported = load_export(run.export).edges("SHARES_META")
    assert as_lists(graph_edges) == expected
    assert as_lists(exported) == expected
    assert not (exported["item_id"] == exported["neighbor_id"]).any() and (exported["score"] > 0).all()
    assert manifest["counts"]["shares_meta"] == len(exported) > 0.8 * k * len(dataset.items)
    if fixture == "office_meta":   # brands count: some neighbours share only the brand
        brands = dict(zip(dataset.items["item_id"], dataset.items["brand"]))
        cats = {i: set(c) for i, c in zip(dataset.items["item_id"], dataset.items["categories"])}
        only_brand = [(a, b) for a, b in zip(exported["item_id"], exported["neighbor_id"])
                      if brands[a] and brands[a] == brands[b] and not cats[a] & cats[b]]
        assert only_brand


def test_select_top_shared_breaks_ties_by_source_order():
    order = pd.Series(range(4), index=["d", "c", "b", "a"])   # source order d, c, b, a
    pairs = pd.DataFrame({"item_id": ["a", "a", "a", "a", "b"], "neighbor_id": ["b", "c", "c", "d", "a"],
                          "df": [2, 2, 3, 2, 2], "n": [1, 1, 1, 1, 1]})
    top = select_top_shared(pairs, order, k=2)
    # a: c shares two tokens (highest), then b and d tie on one token of df 2: d comes first in the source
    assert top[top["item_id"] == "a"]["neighbor_id"].tolist() == ["c", "d"]
    assert top[top["item_id"] == "a"]["shared"].tolist() == [2, 1]
    assert top[top["item_id"] == "b"]["rank"].tolist() == [1]


# A hand-made catalogue on both backends: a universal category (weight 0, left out), a brand that
# is also a category name (two different tokens), an item without metadata, ties.
CATALOGUE = pd.DataFrame({
    "item_id": ["a", "b", "c", "d", "e", "f"],
    "raw_title": ["A", "B", "C", "D", "E", "F"],
    "categories": [["all", "x", "y"], ["all", "x"], ["all", "y", "Acme"], ["all", "x", "y"], ["all"], ["all"]],
    "brand": ["Acme", "Acme", "", "Zed", "Zed", ""],
})
SEQUENCES = {"u1": ["a", "b", "c", "d"], "u2": ["b", "c", "e", "f"], "u3": ["d", "a", "f", "e"]}


@pytest.mark.parametrize("store_config", BOTH_BACKENDS, indirect=True)
def test_shares_meta_on_both_backends(store_config, tmp_path):
    rows = [(u, i, n) for u, seq in SEQUENCES.items() for n, i in enumerate(seq)]
    dataset = build_dataset("catalogue", CATALOGUE, pd.DataFrame(rows, columns=["user_id", "item_id", "order"]),
                            IngestReport(), source={"format": "test"})
    config = GraphConfig(semantic=False, extra_relations=("SHARES_META",), extra_k=3)
    build_run(RunPaths.of(tmp_path / "run"), dataset, store_config, config, progress=False)
    with open_store(store_config, read_only=True) as store:
        edges = read_relations(store, config).edges["SHARES_META"]
        k = store.run("MATCH ()-[r:SHARES_META]->() RETURN DISTINCT r.k AS k")
    assert as_lists(edges) == expected_shares_meta(dataset.items, 3)
    assert k == [{"k": 3}]
    assert "e" in set(edges["item_id"]) and "f" not in set(edges["item_id"])   # f has only "all"


# -- the other outputs, `iirg export`, `iirg data`, the dashboard ------------------------------------
def _iirg(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=REPO)


def test_an_extra_relation_leaves_the_other_exports_unchanged(ml100k_meta, ml100k_plain):
    meta_run, _, meta_manifest = ml100k_meta
    plain_run, _, plain_manifest = ml100k_plain
    for name in ("items.parquet", "interactions.parquet", "next.parquet", "collab.parquet", "similar.parquet",
                 "collab.jsonl", "similar.jsonl"):
        assert (meta_run.export / name).read_bytes() == (plain_run.export / name).read_bytes(), name
    assert set(meta_manifest["files"]) - set(plain_manifest["files"]) == {"shares_meta.parquet", "shares_meta.jsonl"}
    assert "extra_relations" not in plain_manifest["params"]
    assert {k: v for k, v in meta_manifest["params"].items() if k != "extra_relations"} == plain_manifest["params"]
    first = json.loads((meta_run.export / "shares_meta.jsonl").read_text().splitlines()[0])
    assert first["title"] and {"score", "shared", "title"} <= set(first["neighbors"][0])


def test_iirg_export_rewrites_the_same_shares_meta(ml100k_meta):
    run, _, _ = ml100k_meta
    before = (run.export / "shares_meta.parquet").read_bytes()
    out = _iirg("export", "--run", str(run.root))
    assert out.returncode == 0, out.stderr
    assert (run.export / "shares_meta.parquet").read_bytes() == before
    assert json.loads((run.export / "manifest.json").read_text())["counts"]["shares_meta"] > 0


def test_iirg_data_writes_the_meta_task(ml100k_meta, ml100k_plain, tmp_path):
    run, _, _ = ml100k_meta
    out = _iirg("data", "--run", str(run.root), "--tasks", "nip,collab,semantic,meta", "--max-users", "50",
                "--out", str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr
    assert "meta" in out.stdout and "same-category/brand" in out.stdout
    meta = json.loads((tmp_path / "data" / "data_config.json").read_text())
    assert meta["config"]["tasks"] == ["nip", "collab", "semantic", "meta"]
    assert meta["format"]["instructions"]["meta"] == RELATIONS["SHARES_META"].task.instruction
    samples = [json.loads(line) for line in (tmp_path / "data" / "train_meta.jsonl").read_text().splitlines()]
    export = load_export(run.export)
    edges = export.edges("SHARES_META")
    assert len(samples) == edges["item_id"].nunique() == meta["counts"]["meta"]
    sample = samples[0]
    expected = edges[edges["item_id"] == sample["anchor_item_id"]].sort_values("rank")["neighbor_id"].tolist()
    assert sample["task"] == "meta" and sample["neighbor_item_ids"] == expected
    assert sample["instruction"] == RELATIONS["SHARES_META"].task.instruction
    assert "iirg_meta" in json.loads((tmp_path / "data" / "dataset_info.json").read_text())
    # A run built without the relation says how to get it.
    plain_run, _, _ = ml100k_plain
    refused = _iirg("data", "--run", str(plain_run.root), "--tasks", "nip,meta", "--out", str(tmp_path / "no"))
    assert refused.returncode == 2 and "--extra-relations SHARES_META" in refused.stderr, refused.stderr


def test_dashboard_shows_shares_meta(monkeypatch, ml100k_meta, ml100k_plain):
    from streamlit.testing.v1 import AppTest

    run, _, _ = ml100k_meta
    with open_store(StoreConfig(path=run.store), read_only=True) as store:
        view = data.item_view(store, "50")
        counts = data.graph_counts(store)
    edges = load_export(run.export).edges("SHARES_META")
    assert view.neighbours["SHARES_META"]["item_id"].tolist() == \
        edges[edges["item_id"] == "50"].sort_values("rank")["neighbor_id"].tolist()
    assert list(view.neighbours) == ["COLLAB", "SIMILAR", "SHARES_META"]
    assert counts["SHARES_META"] == len(edges)
    plain_run, _, _ = ml100k_plain
    with open_store(StoreConfig(path=plain_run.store), read_only=True) as store:
        assert "SHARES_META" not in data.item_view(store, "50").neighbours   # table there, no edges
        assert data.graph_counts(store)["SHARES_META"] == 0

    monkeypatch.setenv("IIRG_DASHBOARD_RUN", str(run.root))
    for name in ("IIRG_DASHBOARD_NEO4J", "IIRG_DASHBOARD_NEO4J_USER", "IIRG_DASHBOARD_NEO4J_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["SHARES_META edges"] == f"{len(edges):,}"
    at.switch_page("views/items.py")
    at.query_params["item"] = "50"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    markdown = "\n".join(str(m.value) for m in at.markdown)
    assert "Same category or brand" in markdown and palette.RELATION["SHARES_META"] in markdown
    tables = [t.value for t in at.dataframe]
    assert any(list(t.get("item_id", [])) == view.neighbours["SHARES_META"]["item_id"].tolist()
               and "shared" in t for t in tables)


def test_graph_without_the_relation_table_still_counts(tmp_path):
    """A graph built before SHARES_META existed has no table for it: counts say 0, no binder error."""
    path = tmp_path / "store" / "graph.lbdb"
    path.parent.mkdir()
    old_schema = PerDialect(ladybug=tuple(ddl for name, ddl in TABLES_LADYBUG.items() if name != "SHARES_META"),
                            neo4j=())
    with open_store(StoreConfig(path=path)) as store:
        with store.rebuild(old_schema) as session:
            session.run("CREATE (:Item {id: '1'})")
            session.run("CREATE (:User {id: 'u'})")
    with open_store(StoreConfig(path=path), read_only=True) as store:
        counts = data.graph_counts(store)
        assert counts["SHARES_META"] == 0 and counts["NEXT"] == 0 and counts["items"] == 1
        assert [spec.name for spec in data.graph_relations(store)] == ["NEXT", "COLLAB", "SIMILAR"]
