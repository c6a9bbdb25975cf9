"""The dashboard in a real browser: `streamlit run` on a free localhost port, driven by Playwright with
Debian's chromium. Visits every page, opens a one-hop covered and an uncovered user, searches an item,
runs Cypher queries (a read, a drawn subgraph, a refused write), checks the expected text and that no
exception box is shown, and saves a screenshot per step to tests/artifacts/ (git-ignored).

Needs /usr/bin/chromium and the playwright package (installed by .ci/run); skips, saying why, otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import dashboard_support as support
from dashboard.commands import dashboard_env, streamlit_command
from dashboard.data import segment_label
from graph.store import StoreConfig

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> Path:
    support.require_commands("analyze", "baseline", "report")
    return support.analyzed_run(tmp_path_factory)


@pytest.fixture(scope="module")
def server(analyzed, tmp_path_factory):
    """The dashboard served by `streamlit run`, as `iirg dashboard` starts it; yields its base URL."""
    port = support.free_port()
    env = dashboard_env(analyzed, StoreConfig(path=analyzed / "store" / "graph.lbdb"), dict(os.environ))
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(streamlit_command("127.0.0.1", port), env=env, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=tmp_path_factory.getbasetemp())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def page(server):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium package; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 2200})
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        yield tab
        context.close()
        browser.close()


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (the status widget is gone)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(400)


def check(page, name: str, *expected: str) -> None:
    for text in expected:
        page.get_by_text(text, exact=False).first.wait_for(state="visible")
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: an exception is shown"
    page.screenshot(path=str(ARTIFACTS / f"dashboard_{name}.png"), full_page=True)


def users_of(run: Path) -> tuple[str, str]:
    """A one-hop covered user and an uncovered one (3-hop: a multi-hop path to draw)."""
    seg = support.segments(run)
    covered = str(seg[seg["segment"] == "one_hop"]["user_id"].iloc[0])
    uncovered = str(seg[seg["segment"] == "three_hop"]["user_id"].iloc[0])
    return covered, uncovered


@pytest.mark.slow
def test_every_page_in_a_browser(page, server, analyzed):
    page.goto(server + "/")
    check(page, "1_overview", "Test users per memorization segment", "one-hop covered", "Gain decomposition",
          "Share of Δ from one-hop covered users")

    covered, uncovered = users_of(analyzed)
    page.goto(f"{server}/users?user={covered}")
    check(page, "2_user_covered", f"User {covered}", "One-hop memorization", "Top-10 of each model", "markov")
    svg = page.locator('[data-testid="stGraphVizChart"] svg').first
    assert "TARGET (held out)" in svg.text_content() and "one hop" in svg.text_content()

    page.goto(f"{server}/users?user={uncovered}")
    check(page, "3_user_uncovered", f"User {uncovered}", "3-hop path", "3-hop")
    assert "TARGET (held out)" in page.locator('[data-testid="stGraphVizChart"] svg').first.text_content()

    # Random user of a segment through the widgets.
    page.get_by_role("button", name="Random user of this segment").click()
    settle(page)
    check(page, "4_user_random", "Memorization path")

    page.goto(server + "/items")
    check(page, "5_items_empty", "Search for an item by title")
    search = page.get_by_label("Search titles")
    search.fill("star wars")
    search.press("Enter")
    check(page, "6_items_star_wars", "Star Wars (1977)", "Training successors", "Semantic neighbours")

    page.goto(server + "/console")
    check(page, "7_console", "Cypher console", "Example queries")
    page.get_by_role("button", name="Run").click()
    check(page, "8_console_result", "rows in")

    query = page.get_by_label("Query")
    query.fill("MATCH (a:Item {id: '50'})-[n:NEXT]->(b:Item)\nRETURN a, n, b\nORDER BY n.count DESC\nLIMIT 8")
    query.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run").click()
    check(page, "9_console_rows", "8 rows in")
    page.get_by_role("tab", name="Graph").click()
    svg = page.locator('[data-testid="stGraphVizChart"] svg').first
    svg.wait_for(state="visible")
    assert "Star Wars (1977)" in svg.text_content() and "NEXT" in svg.text_content()
    check(page, "10_console_graph", "Graph (9 nodes, 8 relationships)")

    query.fill("MATCH (i:Item) DETACH DELETE i")
    query.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run").click()
    check(page, "11_console_refused", "Refused: this console is read-only")


def selectbox_text(page, label: str) -> str:
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    return box.text_content() + " " + " ".join(i.input_value() for i in box.locator("input").all())


def subheader(page) -> str:
    page.locator('[data-testid="stHeading"] h3').first.wait_for(state="visible")
    return page.locator('[data-testid="stHeading"] h3').first.text_content()


@pytest.mark.slow
def test_links_back_and_shared_urls(page, server, analyzed):
    """Issue 13: drawn items and top-K titles open the item view; Back returns to the previous user;
    a shared Overview URL reproduces its settings."""
    covered, uncovered = users_of(analyzed)
    seg = support.segments(analyzed).set_index("user_id")
    page.goto(f"{server}/users?user={covered}")
    check(page, "12_user_first", f"User {covered}")

    # Another user through the id box: a new history entry, so Back returns to the first one.
    box = page.get_by_role("textbox", name="User id")
    box.fill(uncovered)
    box.press("Enter")
    page.wait_for_url(f"**/users?user={uncovered}*")
    check(page, "13_user_second", f"User {uncovered}")
    assert subheader(page).startswith(f"User {uncovered}")
    # The segment box follows the user shown.
    assert segment_label(seg.loc[uncovered, "segment"]) in selectbox_text(page, "Segment")
    page.go_back()
    page.wait_for_url(f"**/users?user={covered}*")
    settle(page)
    assert subheader(page).startswith(f"User {covered}")
    assert page.get_by_role("textbox", name="User id").input_value() == covered

    # Click the target node of the drawing: the item view of the target, in the same tab.
    target = str(seg.loc[covered, "target_item_id"])
    node = page.locator('[data-testid="stGraphVizChart"] svg a').filter(has_text="TARGET (held out)").first
    node.click()
    page.wait_for_url(f"**/items?item={target}")
    check(page, "14_item_from_node", "Item explorer", "Training successors")
    assert page.get_by_role("textbox", name="Item id").input_value() == target
    page.go_back()
    page.wait_for_url(f"**/users?user={covered}*")
    settle(page)
    assert subheader(page).startswith(f"User {covered}")

    # A top-K title: the first item of the first list.
    link = page.locator('[data-testid="stMarkdownContainer"] ol a[target="_self"]').first
    href = link.get_attribute("href")
    title = link.text_content()
    link.click()
    page.wait_for_url(f"**/{href}")
    check(page, "15_item_from_title", "Item explorer")
    assert page.locator('[data-testid="stHeading"] h3').first.text_content() == title

    # A row of a neighbour table opens that item; Back returns to the previous item.
    page.goto(f"{server}/items?item=50")
    check(page, "15b_item_star_wars", "Star Wars (1977)", "Training successors")
    grid = page.locator('[data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)   # the first row's selection marker
    page.wait_for_url(lambda url: "item=50" not in url and "item=" in url)
    settle(page)
    assert page.locator('[data-testid="stHeading"] h3').first.text_content() != "Star Wars (1977)"
    page.go_back()
    page.wait_for_url("**/items?item=50")
    settle(page)
    assert page.locator('[data-testid="stHeading"] h3').first.text_content() == "Star Wars (1977)"

    # A shared Overview URL: split, metric, K and both models come back as they were.
    page.goto(f"{server}/?metric=Recall&k=5&a=popularity&b=markov")
    check(page, "16_overview_shared_url", "Gain decomposition", "Δ Recall@5 (A − B)")
    assert "popularity" in selectbox_text(page, "Model A")
    assert "markov" in selectbox_text(page, "Model B (reference)")
    # Changing a setting writes it back into the URL.
    page.locator('[data-testid="stButtonGroup"] button', has_text="valid").click()
    settle(page)
    assert "split=valid" in page.url and "metric=Recall" in page.url


@pytest.mark.slow
def test_dark_mode_labels_are_readable(page, server):
    """The Overview in the browser's dark mode: the percentage labels of the segment chart are light
    (they were black on the dark background); the screenshot is kept for a look."""
    from PIL import Image

    context = page.context.browser.new_context(viewport={"width": 1440, "height": 2200}, color_scheme="dark")
    try:
        dark = context.new_page()
        dark.set_default_timeout(TIMEOUT_MS)
        dark.goto(server + "/")
        check(dark, "17_overview_dark", "Test users per memorization segment", "Gain decomposition")
        background = dark.evaluate("() => getComputedStyle(document.querySelector('.stApp')).backgroundColor")
        rgb = [int(v) for v in background[background.index("(") + 1:background.index(")")].split(",")[:3]]
        assert sum(rgb) / 3 < 60, f"not dark: {background}"
        chart = dark.locator('[data-testid="stVegaLiteChart"]').first
        chart.wait_for(state="visible")
        path = ARTIFACTS / "dashboard_17_segment_chart_dark.png"
        chart.screenshot(path=str(path))
        image = Image.open(path).convert("RGB")
        w, h = image.size
        # Light, neutral (grey-white) pixels inside the plot area, right of the axis labels and above
        # the x axis: only the percentage labels can be there (bars are coloured, gridlines dark).
        light = sum(1 for x in range(int(w * 0.3), w) for y in range(0, int(h * 0.6))
                    if min(image.getpixel((x, y))) > 180
                    and max(image.getpixel((x, y))) - min(image.getpixel((x, y))) < 25)
        assert light > 40, f"percentage labels not readable in dark mode ({light} light pixels)"
    finally:
        context.close()


@pytest.mark.slow
def test_console_draws_large_results_interactively(page, server):
    """A 16-node result is drawn by neo4j-viz (a canvas with zoom and pan, fixed height) instead of a
    tall static drawing; selecting the hub item offers a link to its item view."""
    pytest.importorskip("neo4j_viz", reason="neo4j-viz is not installed (pip install 'iirg[dashboard]')")
    page.goto(server + "/console")
    check(page, "18_console", "Cypher console")
    page.get_by_label("Example queries").locator("..").click()
    page.get_by_role("option", name="Item explorer: training successors of an item (drawn)").click()
    settle(page)
    page.get_by_role("button", name="Run").click()
    check(page, "18_console_rows", "15 rows in")
    page.get_by_role("tab", name="Graph").click()
    drawing = page.locator('[data-testid="stBidiComponentIsolated"]').first
    drawing.wait_for(state="visible")
    page.wait_for_timeout(3000)   # the force layout settles
    box = drawing.bounding_box()
    assert 400 <= box["height"] <= 700, box   # fixed height, not thousands of pixels
    page.screenshot(path=str(ARTIFACTS / "dashboard_19_console_interactive.png"), full_page=True)
    # The source item is the hub, which the layout centres. Select it: a link to its item view appears.
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    settle(page)
    link = page.get_by_role("link").filter(has_text="Open item Toy Story (1995)")
    link.first.wait_for(state="visible")
    link.first.click()
    page.wait_for_url("**/items?item=1")
    check(page, "20_item_from_console", "Item explorer", "Toy Story (1995)")
