"""Dashboard logic on a real ml-100k graph, driven by Streamlit's AppTest (no browser).

The runs are built once per session by tests/dashboard_support.py through the real `iirg` commands;
tests skip, saying why, when the shared data is absent. Every page is checked for its content
against what the run's files and graph say, plus the empty states: no segments / no models yet, an
unknown user, a user whose target nothing in the graph explains, a missing graph, a Neo4j that is
down, and the console's read-only refusals (with the graph unchanged afterwards).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import dashboard_support as support
from dashboard import data, palette
from dashboard.commands import dashboard_env, streamlit_command
from dashboard.drawing import memorization_dot
from graph.store import StoreConfig, open_store

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
TIMEOUT = 120


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return support.built_run(tmp_path_factory)


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> Path:
    support.require_commands("analyze", "baseline", "report")
    return support.analyzed_run(tmp_path_factory)


def app(monkeypatch, run: Path, neo4j: str | None = None, password: str = "not-the-password"):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("IIRG_DASHBOARD_RUN", str(run))
    for name in ("IIRG_DASHBOARD_NEO4J", "IIRG_DASHBOARD_NEO4J_USER", "IIRG_DASHBOARD_NEO4J_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    if neo4j:
        monkeypatch.setenv("IIRG_DASHBOARD_NEO4J", neo4j)
        monkeypatch.setenv("NEO4J_PASSWORD", password)
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def graphviz_specs(at) -> list[str]:
    return [g.proto.spec for g in at.get("graphviz_chart")]


def store_of(run: Path):
    return open_store(StoreConfig(path=run / "store" / "graph.lbdb"), read_only=True)


def open_user(at, user_id: str):
    at.switch_page("views/users.py").run()
    at.text_input(key="user_id").set_value(user_id).run()
    no_exception(at)
    return at


# -- overview -------------------------------------------------------------------------------------
def test_overview_of_a_fresh_build_shows_counts_and_empty_states(monkeypatch, built):
    at = app(monkeypatch, built).run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "943" and metrics["Items"] == "1,682"
    assert metrics["Interactions"] == "100,000"
    with store_of(built) as store:
        counts = data.graph_counts(store)
    assert metrics["NEXT edges"] == f"{counts['NEXT']:,}" and counts["SIMILAR"] > 0
    infos = " ".join(texts(at, "info"))
    assert "No user is labelled with a segment yet" in infos and "iirg analyze" in infos
    assert "No model has been evaluated on the test split yet" in infos


def test_overview_segments_metrics_and_gain_decomposition(monkeypatch, analyzed):
    at = app(monkeypatch, analyzed).run()
    no_exception(at)
    seg = support.segments(analyzed)["segment"].value_counts()
    table = at.dataframe[0].value
    shown = dict(zip(table["label"], table["n_users"]))
    for name, n in seg.items():
        assert shown[data.segment_label(name)] == n
    assert table["share"].sum() == pytest.approx(1.0)

    # Per-segment table: one column per model, values from the metrics files (NDCG@10 by default).
    wide = at.dataframe[1].value
    for model in ("popularity", "markov"):
        m = support.metrics(analyzed, model)
        row = wide[wide["group"] == data.segment_label("one_hop")]
        assert row[model].iloc[0] == pytest.approx(m["segments"]["one_hop"]["ndcg@10"])
        assert wide[wide["group"] == "all users"][model].iloc[0] == pytest.approx(m["overall"]["ndcg@10"])

    # Gain decomposition: defaults to the best model vs popularity; Δ equals the overall difference and
    # the report's bootstrap intervals are joined in.
    assert at.selectbox(key="a").value == "markov" and at.selectbox(key="b").value == "popularity"
    a, b = support.metrics(analyzed, "markov"), support.metrics(analyzed, "popularity")
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["Δ NDCG@10 (A − B)"]) == pytest.approx(a["overall"]["ndcg@10"] - b["overall"]["ndcg@10"], abs=1e-4)
    dec = at.dataframe[-1].value
    assert {"delta_ci_low", "delta_ci_high"} <= set(dec.columns)
    assert any("95% bootstrap interval" in c for c in texts(at, "caption"))
    # markov gains more than the whole difference on covered users (it loses elsewhere): explained.
    share = float(shown["Share of Δ from one-hop covered users"].rstrip("%")) / 100
    notes = [c for c in texts(at, "caption") if c.startswith("The share is")]
    assert (share > 1 or share < 0) == bool(notes), (share, notes)

    # Switching the metric re-decomposes Recall@10.
    at.segmented_control(key="metric").set_value("Recall").run()
    no_exception(at)
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["Δ Recall@10 (A − B)"]) == pytest.approx(
        a["overall"]["recall@10"] - b["overall"]["recall@10"], abs=1e-4)


def test_gain_decomposition_matches_the_evaluator(analyzed):
    """The dashboard reads files only; its decomposition equals evaluate.metrics.compare_gains."""
    from evaluate.cases import build_cases
    from evaluate.lists import prepare_lists
    from evaluate.metrics import compare_gains, gains, hit_ranks
    from evaluate.segments import SEGMENTS
    from graph.export import load_export

    models, _ = data.load_model_metrics(analyzed, "test")
    by_name = {m.model: m for m in models}
    dec = data.gain_decomposition(analyzed, "test", by_name["markov"], by_name["popularity"], "ndcg", 10)
    export = load_export(analyzed / "export")
    cases = build_cases(export, "test")
    seg = support.segments(analyzed)
    per_model = {}
    for model in ("markov", "popularity"):
        lists = pd.read_parquet(analyzed / "models" / model / "recommendations_test.parquet")
        ranks = hit_ranks(cases, prepare_lists(cases, lists[["user_id", "item_id", "rank"]], where=model))
        per_model[model] = gains(ranks, 10)[1]
    reference = compare_gains(per_model["markov"], per_model["popularity"], seg["segment"].to_numpy(),
                              SEGMENTS, n_boot=10)
    assert dec.delta == pytest.approx(reference["delta"])
    for row in dec.table.itertuples():
        assert row.contribution == pytest.approx(reference["segments"][row.segment]["contribution"])
    assert dec.covered_share == pytest.approx(reference["covered_share_of_gain"])


# -- user explorer --------------------------------------------------------------------------------
def test_user_explorer_one_hop_user_with_badges(monkeypatch, analyzed):
    seg = support.segments(analyzed)
    recs = pd.read_parquet(analyzed / "models" / "markov" / "recommendations_test.parquet")
    hits = recs[recs["rank"] <= 10].merge(seg[seg["segment"] == "one_hop"],
                                          left_on=["user_id", "item_id"], right_on=["user_id", "target_item_id"])
    assert len(hits), "markov hits no one-hop covered user on ml-100k?"
    user = str(hits["user_id"].iloc[0])
    row = seg.set_index("user_id").loc[user]
    at = open_user(app(monkeypatch, analyzed).run(), user)

    assert f"User {user}" in at.subheader[0].value and "one-hop covered" in at.subheader[0].value
    markdown = "\n".join(texts(at, "markdown"))
    assert "One-hop memorization" in markdown
    dot = graphviz_specs(at)[0]
    # The bold NEXT edge last -> target is drawn, in NEXT red.
    edge = re.search(rf'"{re.escape(row["last_item_id"])}" -> "{re.escape(row["target_item_id"])}" \[([^\]]*)\]', dot)
    assert edge and "penwidth=3" in edge.group(1) and palette.RELATION["NEXT"] in edge.group(1) and "one hop" in edge.group(1)
    assert "TARGET (held out)" in dot and "LAST" in dot
    # Each model's top-10 beside it, with the hit and memorized badges on markov's list.
    model_blocks = [m for m in texts(at, "markdown") if ">markov</span>" in m or ">popularity</span>" in m]
    assert len(model_blocks) == 2
    markov = next(m for m in model_blocks if ">markov</span>" in m)
    assert f"hit at rank {int(hits['rank'].iloc[0])}" in markov
    lists = [m for m in texts(at, "markdown") if m.startswith("1. ")]
    assert any(">hit</span>" in m and ">memorized</span>" in m for m in lists)
    # Titles link to the item view (same tab), the target's among them.
    assert any(f"<a href=\"items?item={row['target_item_id']}\" target=\"_self\">" in m for m in lists)


def test_user_view_badges_agree_with_the_graph(analyzed):
    seg = support.segments(analyzed)
    user = str(seg[seg["segment"] == "two_hop"]["user_id"].iloc[0])
    with store_of(analyzed) as store:
        # markov ran with --no-graph: its list comes from models/markov/, badged like popularity's.
        view = data.user_view(store, user, k=20, run_root=analyzed)
        last = view.last["item_id"]
        successors = set(store.run_df("MATCH (a:Item {id: $i})-[:NEXT]->(b:Item) RETURN b.id AS id", {"i": last})["id"])
        collab = set(store.run_df("MATCH (a:Item {id: $i})-[:COLLAB]->(b:Item) RETURN b.id AS id", {"i": last})["id"])
    assert view.segment == "two_hop" and view.path is not None and view.path.hops == 2
    assert view.path.item_ids[0] == last and view.path.item_ids[-1] == view.target["item_id"]
    recs = view.recommendations
    assert set(recs["model"]) == {"markov", "popularity"} and recs.groupby("model").size().max() == 20
    assert (recs["memorized"] == recs["item_id"].isin(successors)).all()
    assert (recs["collab"] == recs["item_id"].isin(collab)).all()
    assert not recs["hit"].any() or set(recs.loc[recs["hit"], "item_id"]) == {view.target["item_id"]}
    # markov ranks the last item's training successors first: its memorized items are a prefix.
    memorized = recs[recs["model"] == "markov"]["memorized"].to_numpy()
    assert memorized.any() and memorized[:memorized.sum()].all()


def test_user_explorer_user_with_no_path(monkeypatch, analyzed):
    seg = support.segments(analyzed)
    candidates = seg[seg["segment"] == "unreachable"]["user_id"].astype(str).tolist()
    if not candidates:
        pytest.skip("no unreachable test user in this ml-100k build")
    with store_of(analyzed) as store:
        user = next((u for u in candidates if not data.user_view(store, u).has_explanation), None)
    assert user is not None, "every unreachable user has a COLLAB/SIMILAR link?"
    at = open_user(app(monkeypatch, analyzed).run(), user)
    assert "unreachable" in at.subheader[0].value
    assert any("No explanation in the graph" in i for i in texts(at, "info"))
    assert any("No NEXT path" in m for m in texts(at, "markdown"))
    dot = graphviz_specs(at)[0]
    assert "TARGET (held out)" in dot and "#ffa421" not in dot  # target drawn, no path edge


def test_user_explorer_random_user_of_a_segment(monkeypatch, analyzed):
    at = app(monkeypatch, analyzed).run()
    at.switch_page("views/users.py").run()
    no_exception(at)
    assert any("Enter a user id" in i for i in texts(at, "info"))
    at.selectbox(key="user_segment").set_value("three_hop").run()
    at.button(key="random_user").click().run()
    no_exception(at)
    user = at.text_input(key="user_id").value
    seg = support.segments(analyzed).set_index("user_id")
    assert seg.loc[user, "segment"] == "three_hop"
    assert "3-hop" in at.subheader[0].value
    assert any("3-hop path" in m for m in texts(at, "markdown"))


def test_user_explorer_keeps_the_user_across_pages_and_follows_the_url(monkeypatch, analyzed):
    seg = support.segments(analyzed)
    first = str(seg[seg["segment"] == "one_hop"]["user_id"].iloc[0])
    second = str(seg[seg["segment"] == "two_hop"]["user_id"].iloc[0])
    at = open_user(app(monkeypatch, analyzed).run(), first)
    at.selectbox(key="user_k").set_value(5).run()
    query = {k: v if isinstance(v, str) else v[0] for k, v in dict(at.query_params).items()}
    assert query == {"user": first, "top": "5"}, query
    # Away and back through the page menu (no query string): same user, same Top-K.
    at.switch_page("views/items.py").run()
    at.switch_page("views/users.py").run()
    no_exception(at)
    assert at.subheader[0].value.startswith(f"User {first} ")
    assert at.selectbox(key="user_k").value == 5
    # A link or Back/Forward changes the URL: it wins over the box, and the segment box follows.
    at.query_params["user"] = second
    at.run()
    no_exception(at)
    assert at.text_input(key="user_id").value == second
    assert at.subheader[0].value.startswith(f"User {second} ")
    assert at.selectbox(key="user_segment").value == "two_hop"


def test_user_explorer_unknown_user_and_fresh_build(monkeypatch, built):
    at = open_user(app(monkeypatch, built).run(), "no-such-user")
    assert any("no user with id 'no-such-user'" in w for w in texts(at, "warning"))
    at.text_input(key="user_id").set_value("1").run()
    no_exception(at)
    assert "not labelled" in at.subheader[0].value
    assert any("No model's recommendations are in the graph" in i for i in texts(at, "info"))
    assert graphviz_specs(at)


# -- item explorer --------------------------------------------------------------------------------
def test_item_explorer_search_and_neighbours(monkeypatch, built):
    at = app(monkeypatch, built).run()
    at.switch_page("views/items.py").run()
    no_exception(at)
    at.text_input(key="item_search").set_value("star wars").run()
    no_exception(at)
    assert at.subheader[0].value == "Star Wars (1977)"
    item_id = at.selectbox(key="item_pick").value
    export_next = pd.read_parquet(built / "export" / "next.parquet")
    out = export_next[export_next["src_item_id"] == item_id]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Successors (NEXT out)"] == f"{len(out):,}"
    assert shown["Transitions out"] == f"{int(out['count'].sum()):,}"
    successors = at.dataframe[0].value
    assert successors["count"].tolist() == sorted(out["count"], reverse=True)[:len(successors)]
    similar = pd.read_parquet(built / "export" / "similar.parquet")
    assert at.dataframe[3].value["item_id"].tolist() == \
        similar[similar["item_id"] == item_id].sort_values("rank")["neighbor_id"].tolist()
    at.text_input(key="item_search").set_value("zzzz no such title").run()
    assert any("No item title contains" in w for w in texts(at, "warning"))


def sid_prefix_counts(run: Path, item_id: str) -> list[int]:
    """Other items sharing each prefix of the item's SID, from export/sids.parquet (not the graph)."""
    sids = pd.read_parquet(run / "export" / "sids.parquet")
    codes = {str(i): list(c) for i, c in zip(sids["item_id"], sids["sid_codes"])}
    mine = codes[item_id]
    return [sum(1 for other, c in codes.items() if other != item_id and c[:n] == mine[:n])
            for n in range(1, len(mine) + 1)]


def test_item_explorer_shows_the_sid_and_its_prefix_siblings(monkeypatch, analyzed):
    at = app(monkeypatch, analyzed)
    at.switch_page("views/items.py")
    at.query_params["item"] = "50"
    at.run()
    no_exception(at)
    sids = pd.read_parquet(analyzed / "export" / "sids.parquet")
    sid = sids.set_index(sids["item_id"].astype(str)).loc["50", "sid"]
    markdown = "\n".join(texts(at, "markdown"))
    assert f"**Semantic ID** `{sid}`" in markdown
    expected = sid_prefix_counts(analyzed, "50")
    shown = [m for m in at.metric if m.label.startswith("first ") or m.label == "full SID"]
    assert [int(m.value.replace(",", "")) for m in shown] == expected
    assert expected[0] > 0 and expected[-1] == 0          # the full SID names one item
    # Links to the siblings of the coarsest prefix: same first code, each opening the item view.
    links = at.get("page_link")
    assert 0 < len(links) <= 5 * len(expected)
    first = sid.split(">")[0] + ">"
    linked = [l.proto.query_string for l in links]
    assert all(q.startswith("item=") for q in linked)
    linked_ids = {q.split("=", 1)[1] for q in linked}
    assert all(sids.set_index(sids["item_id"].astype(str)).loc[i, "sid"].startswith(first) for i in linked_ids)
    # Following a link: the URL's item wins over the one in the box.
    at.query_params["item"] = sorted(linked_ids)[0]
    at.run()
    no_exception(at)
    assert at.text_input(key="item_id_box").value == sorted(linked_ids)[0]


def test_item_explorer_without_sids_says_how_to_get_them(monkeypatch, built):
    at = app(monkeypatch, built)
    at.switch_page("views/items.py")
    at.query_params["item"] = "50"
    at.run()
    no_exception(at)
    assert at.subheader[0].value == "Star Wars (1977)"
    assert any("No semantic IDs in this graph" in c and "iirg sid" in c for c in texts(at, "caption"))
    assert not at.get("page_link")


def test_overview_token_level_table_matches_the_report(monkeypatch, analyzed):
    at = app(monkeypatch, analyzed).run()
    no_exception(at)
    assert "Token-level memorization (semantic IDs)" in texts(at, "subheader")
    csv = pd.read_csv(analyzed / "report" / "token_level_test.csv", dtype={"model": str})
    recall = next(c for c in csv.columns if c.startswith("recall@"))
    table = next(d.value for d in at.dataframe if "token_level" in d.value.columns)
    for group in ("uncovered", "all"):
        if group == "all":
            at.segmented_control(key="token_group").set_value("all").run()
            table = next(d.value for d in at.dataframe if "token_level" in d.value.columns)
        rows = csv[csv["group"] == group]
        for model in ("popularity", "markov"):
            want = rows[rows["model"] == model].set_index("token_level")[recall]
            got = table.set_index("token_level")[model]
            pd.testing.assert_series_equal(got.reindex(want.index), want, check_names=False)
        assert table["users"].tolist() == rows.drop_duplicates("token_level")["n_users"].tolist()


# -- console --------------------------------------------------------------------------------------
def test_console_runs_examples_as_table_and_graph(monkeypatch, analyzed):
    at = app(monkeypatch, analyzed).run()
    at.switch_page("views/console.py").run()
    no_exception(at)
    at.button(key="console_run").click().run()       # default example: users per segment
    no_exception(at)
    frame = at.dataframe[0].value
    assert sorted(frame["segment"]) == sorted(support.segments(analyzed)["segment"].unique())
    at.selectbox(key="console_example").set_value(
        "Item explorer: training successors of an item (drawn)").run()
    at.button(key="console_run").click().run()
    no_exception(at)
    assert len(at.dataframe[0].value) == 15
    # 16 nodes: drawn interactively (neo4j-viz) by default; the static Graphviz drawing on request.
    assert at.segmented_control(key="console_drawing_16").value == "interactive"
    assert not graphviz_specs(at)
    assert any("neo4j_viz_graph" in str(e.proto) for e in at.get("bidi_component"))
    at.segmented_control(key="console_drawing_16").set_value("static").run()
    no_exception(at)
    dot = graphviz_specs(at)[0]
    assert dot.count("->") == 15 and "NEXT" in dot
    # Parameters and the row limit.
    at.text_area(key="console_query").set_value("MATCH (i:Item) RETURN i.id AS item_id").run()
    at.number_input(key="console_limit").set_value(7).run()
    at.button(key="console_run").click().run()
    assert len(at.dataframe[0].value) == 7 and any("Only the first 7 rows" in w for w in texts(at, "warning"))
    at.text_input(key="console_params").set_value("[1, 2]").run()
    at.button(key="console_run").click().run()
    assert any("Bad parameters" in e for e in texts(at, "error"))


def _fingerprint(run: Path) -> tuple:
    with store_of(run) as store:
        counts = data.graph_counts(store)
        labelled = store.run_df("MATCH (u:User) WHERE u.segment IS NOT NULL RETURN count(*) AS n")["n"].iloc[0]
    files = sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest())
                   for p in (run / "store").iterdir() if p.is_file())
    return counts, int(labelled), files


WRITES = [
    "MATCH (i:Item) DETACH DELETE i",
    "MATCH (u:User) SET u.segment = 'hacked' RETURN count(u) AS n",
    "CREATE (:Item {id: 'x'})",
    "MERGE (i:Item {id: '1'}) RETURN i",
    "COPY (MATCH (i:Item) RETURN i.id) TO '/tmp/iirg-dashboard-leak.csv'",
    "LOAD FROM '/etc/passwd' RETURN *",
    "MATCH (i:Item) RETURN i.id AS id; MATCH (i:Item) DELETE i",
    "CALL threads=1",
]


def test_console_refuses_writes_and_leaves_the_graph_unchanged(monkeypatch, analyzed):
    before = _fingerprint(analyzed)
    at = app(monkeypatch, analyzed).run()
    at.switch_page("views/console.py").run()
    for query in WRITES:
        at.text_area(key="console_query").set_value(query).run()
        at.button(key="console_run").click().run()
        no_exception(at)
        errors = texts(at, "error")
        assert errors and "Refused: this console is read-only" in errors[0], (query, errors)
        assert not at.dataframe
    assert _fingerprint(analyzed) == before
    assert not os.path.exists("/tmp/iirg-dashboard-leak.csv")


# -- unavailable graph ----------------------------------------------------------------------------
def test_neo4j_down_shows_a_clear_message_on_every_page(monkeypatch, built):
    port = support.closed_port()
    at = app(monkeypatch, built, neo4j=f"bolt://127.0.0.1:{port}").run()
    no_exception(at)
    errors = texts(at, "error")
    assert errors and "The graph is not available" in errors[0] and f"127.0.0.1:{port}" in errors[0]
    assert any("docker compose up -d neo4j" in i for i in texts(at, "info"))
    assert "Traceback" not in " ".join(errors)
    for page in ("views/users.py", "views/items.py"):
        at.switch_page(page).run()
        no_exception(at)
        assert any("The graph is not available" in e for e in texts(at, "error"))
        assert not at.text_input  # the page stops before its widgets
    at.switch_page("views/console.py").run()
    at.button(key="console_run").click().run()
    no_exception(at)
    assert any("The graph is not available" in e for e in texts(at, "error"))


def test_missing_graph_and_missing_settings(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path / "no-run").run()
    no_exception(at)
    errors = texts(at, "error")
    assert errors and "no graph at" in errors[0]
    assert any("iirg build --dataset" in i for i in texts(at, "info"))
    monkeypatch.delenv("IIRG_DASHBOARD_RUN")
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    no_exception(at)
    assert any("No run folder configured" in e for e in texts(at, "error"))


# -- Neo4j backend (needs Docker: testcontainers starts Neo4j 5; skips, saying why, otherwise) ----
@pytest.mark.neo4j
@pytest.mark.slow
def test_neo4j_backend_shows_the_same_views(monkeypatch, analyzed, neo4j_config, tmp_path):
    from neo4j_support import wipe_neo4j

    wipe_neo4j(neo4j_config)
    run = tmp_path / "neo4j-run"
    monkeypatch.setenv("NEO4J_PASSWORD", neo4j_config.password)
    store_args = ["--neo4j", neo4j_config.uri, "--neo4j-user", neo4j_config.user]
    support._iirg("build", "--dataset", "ml-100k", "--run", str(run), *store_args)
    support._iirg("analyze", "--run", str(run), *store_args)
    support._iirg("baseline", "markov", "--run", str(run), "--no-progress", *store_args)
    support._iirg("sid", "--run", str(run), "--no-progress", *store_args)
    seg = support.segments(analyzed)
    users = seg.groupby("segment").head(2)["user_id"].astype(str).tolist()
    with store_of(analyzed) as embedded, open_store(neo4j_config, read_only=True) as neo:
        for user in users:
            # The analyzed run's markov has no RECOMMENDED edges: its list comes from models/.
            a, b = data.user_view(embedded, user, run_root=analyzed), data.user_view(neo, user)
            assert (a.segment, a.hop, a.target, a.last) == (b.segment, b.hop, b.target, b.last), user
            assert (a.path.hops if a.path else None) == (b.path.hops if b.path else None), user
            for attr in ("next_links", "collab_links", "similar_links"):
                assert sorted(getattr(a, attr)["item_id"]) == sorted(getattr(b, attr)["item_id"]), (user, attr)
            mine = a.recommendations[a.recommendations["model"] == "markov"].reset_index(drop=True)
            pd.testing.assert_frame_equal(mine, b.recommendations.reset_index(drop=True), check_dtype=False)
        item_a, item_b = data.item_view(embedded, "50"), data.item_view(neo, "50")
        assert item_a.degree == item_b.degree
        assert item_a.collab["item_id"].tolist() == item_b.collab["item_id"].tolist()
        # SID prefixes through STARTS WITH on Neo4j agree with the Neo4j run's own sids.parquet.
        assert item_b.has_sids and item_b.sid
        assert [level.n_items for level in item_b.sid_levels] == sid_prefix_counts(run, "50")
        assert data.search_titles(embedded, "star")["item_id"].tolist() == \
            data.search_titles(neo, "star")["item_id"].tolist()
        assert data.segment_counts(embedded).equals(data.segment_counts(neo))
        nodes_before = neo.run("MATCH (n) RETURN count(n) AS n")[0]["n"]

    covered = str(seg[seg["segment"] == "one_hop"]["user_id"].iloc[0])
    at = open_user(app(monkeypatch, run, neo4j=neo4j_config.uri, password=neo4j_config.password).run(), covered)
    assert any("One-hop memorization" in m for m in texts(at, "markdown"))
    at.switch_page("views/console.py").run()
    at.text_area(key="console_query").set_value("MATCH (n) DETACH DELETE n").run()
    at.button(key="console_run").click().run()
    assert "Refused: this console is read-only" in texts(at, "error")[0]
    with open_store(neo4j_config, read_only=True) as neo:
        assert neo.run("MATCH (n) RETURN count(n) AS n")[0]["n"] == nodes_before


# -- pieces without Streamlit ---------------------------------------------------------------------
def test_store_description_never_shows_a_password():
    config = StoreConfig(backend="neo4j", uri="bolt://neo4j:s3cr@t@db.example:7687")
    assert config.describe() == "neo4j bolt://neo4j:***@db.example:7687"
    assert "s3cr" not in config.describe()


def test_settings_move_uri_credentials_out_of_the_uri(tmp_path):
    from dashboard.settings import settings_from_env

    env = {"IIRG_DASHBOARD_RUN": str(tmp_path), "IIRG_DASHBOARD_NEO4J": "bolt://alice:pa%40ss@db:7687"}
    settings = settings_from_env(env)
    assert settings.store.uri == "bolt://db:7687"
    assert settings.store.user == "alice" and settings.store.password == "pa@ss"
    assert "pa" not in settings.store.describe().replace("bolt://db", "") and "pa" not in settings.store_version
    # The environment's user and password win over the URI's.
    env.update({"IIRG_DASHBOARD_NEO4J_USER": "bob", "NEO4J_PASSWORD": "from-env"})
    settings = settings_from_env(env)
    assert (settings.store.user, settings.store.password) == ("bob", "from-env")


def test_drawing_escapes_titles_and_ids():
    view = data.UserView(user_id="u", found=True)
    view.history = pd.DataFrame({"pos": [0, 1], "split": ["train", "valid"], "ts": [None, None],
                                 "item_id": ['a"1', "b\\2"], "title": ['The "Quote" {x}', "Back\\slash"],
                                 "popularity": [1, 1]})
    view.target = {"item_id": "t", "title": "Target\nnewline", "pos": 2}
    view.last = {"item_id": "b\\2", "title": "Back\\slash", "pos": 1}
    view.path = data.NextPath(["b\\2", "t"], ["Back\\slash", "Target"], [3])
    dot = memorization_dot(view)
    assert '"a\\"1"' in dot and '"b\\\\2" -> "t"' in dot
    assert 'The \\"Quote\\" {x}' in dot and "Target\nnewline" not in dot


def test_dashboard_command_keeps_the_password_off_the_command_line(tmp_path):
    store = StoreConfig(backend="neo4j", uri="bolt://db:7687", user="neo4j", password="s3cret-pw")
    env = dashboard_env(tmp_path, store, {"PATH": "/usr/bin", "IIRG_DASHBOARD_NEO4J": "bolt://stale:1"})
    command = streamlit_command("127.0.0.1", 8599)
    assert "s3cret-pw" not in " ".join(command)
    assert env["NEO4J_PASSWORD"] == "s3cret-pw" and env["IIRG_DASHBOARD_NEO4J"] == "bolt://db:7687"
    assert env["IIRG_DASHBOARD_RUN"] == str(tmp_path.resolve())
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8599"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    embedded = dashboard_env(tmp_path, StoreConfig(path=tmp_path / "store" / "graph.lbdb"),
                             {"IIRG_DASHBOARD_NEO4J": "bolt://stale:1"})
    assert "IIRG_DASHBOARD_NEO4J" not in embedded


def test_dashboard_command_refuses_a_busy_port(tmp_path, capsys):
    import socket

    import cli

    (tmp_path / "run").mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        code = cli.main(["dashboard", "--run", str(tmp_path / "run"), "--port", str(port)])
    assert code == 2 and f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
