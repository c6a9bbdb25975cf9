"""Item explorer page: search items by title; an item's training successors and predecessors (NEXT
counts), and its neighbours by every other relation the graph has, laid out from the relation's spec
(graph/relations): collaborative (COLLAB rank and co-occurrence count), semantic (SIMILAR cosine),
and extra relations such as SHARES_META (shared categories or brand). The item comes from the
`?item=<id>` URL parameter or the search.
"""

from __future__ import annotations

import streamlit as st

from dashboard import cache, data, palette
from dashboard.drawing import LINE_GLYPH
from graph.errors import GraphError
from graph.relations import RELATIONS

ctx = cache.context()
store, version = ctx.store, ctx.version
st.title("Item explorer")

# The URL names the item: a link (SID siblings, drawings, top-K titles), Back/Forward or a shared
# URL changes it, and it then wins over the box; typing an id or picking a search hit writes it back.
url_item = st.query_params.get("item", "")
if url_item and url_item != st.session_state.get("_items_url"):
    st.session_state["item_id_box"] = url_item
    st.session_state["item_search"] = ""
st.session_state["_items_url"] = url_item

c1, c2, c3 = st.columns([2, 4, 1], vertical_alignment="bottom")
text = c1.text_input("Search titles", key="item_search", placeholder="e.g. star wars")
box = c3.text_input("Item id", key="item_id_box", help="used when the search box is empty")
picked = None
if text.strip():
    try:
        found = cache.search_titles(store, version, text.strip(), 50)
    except GraphError as e:
        st.error(f"Search failed: {e}")
        st.stop()
    if found.empty:
        c2.warning(f"No item title contains {text.strip()!r}.")
    else:
        labels = {str(row.item_id): f"{row.title}  ·  id {row.item_id}  ·  {row.popularity:,} training interactions"
                  for row in found.itertuples()}
        picked = c2.selectbox(f"{len(found)} match{'es' if len(found) != 1 else ''} (most popular first)",
                              list(labels), format_func=labels.get, key="item_pick")

item_id = str(picked or box or "").strip()
if not item_id:
    st.info("Search for an item by title, or enter its id.")
    st.stop()
st.query_params["item"] = item_id
st.session_state["_items_url"] = item_id
try:
    with st.spinner(f"Reading item {item_id} from the graph…"):
        view = cache.item_view(store, version, item_id, 25)
except GraphError as e:
    st.error(f"Reading item {item_id} failed: {e}")
    st.stop()
if not view.found:
    st.warning(f"There is no item with id {item_id!r} in the graph.")
    st.stop()

item = view.item
st.subheader(item["title"])
meta = [f"id `{item['item_id']}`", f"{item.get('popularity') or 0:,} training interactions"]
if item.get("brand"):
    meta.append(f"brand {item['brand']}")
categories = item.get("categories")
if categories is not None and len(categories):
    meta.append("categories: " + ", ".join(str(c) for c in categories))
st.caption(" · ".join(meta))
if item.get("description"):
    with st.expander("Description"):
        st.write(str(item["description"])[:2000])

d = view.degree
cols = st.columns(4)
cols[0].metric("Successors (NEXT out)", f"{d.get('successors', 0):,}", help="distinct items that follow it in training sequences")
cols[1].metric("Transitions out", f"{d.get('out_transitions', 0):,}")
cols[2].metric("Predecessors (NEXT in)", f"{d.get('predecessors', 0):,}")
cols[3].metric("Transitions in", f"{d.get('in_transitions', 0):,}")

# -- semantic ID -----------------------------------------------------------------------------------
def code(text: str) -> str:
    """Graph text shown inside markdown backticks: a backtick in it would end the code span."""
    return str(text).replace("`", "'")


if view.has_sids and view.sid:
    stats = data.sid_stats(ctx.settings.run) or {}
    semantic_levels = int(stats.get("levels") or len(view.sid_levels))
    st.markdown(f"**Semantic ID** `{code(view.sid)}`")
    st.caption(
        "Residual quantization of the item's text embedding (`iirg sid`"
        + (f", {stats['method']}" if stats.get("method") else "") + "): the first code is the coarsest "
        "cluster, each next code refines it; items sharing a prefix are close in embedding space, and a "
        "generative recommender (TIGER) emits these codes one by one."
        + (f" The last code only separates items whose {semantic_levels} codes collide "
           f"({stats['collision_rate']:.1%} of items)." if "collision_rate" in stats else ""))
    cols = st.columns(len(view.sid_levels))
    for col, level in zip(cols, view.sid_levels):
        with col.container(border=True):
            disambiguation = level.level > semantic_levels
            name = "full SID" if disambiguation else f"first {level.level} code{'s' if level.level > 1 else ''}"
            st.metric(name, f"{level.n_items:,}", help=f"other items whose SID starts with {level.prefix}",
                      border=False)
            st.caption(f"`{code(level.prefix)}`")
            if disambiguation:
                st.caption("unique: names this item only")
            for row in level.items.head(5).itertuples(index=False):
                st.page_link("views/items.py", label=str(row.title), query_params={"item": str(row.item_id)},
                             help=f"id {row.item_id} · {row.sid}")
            if level.n_items > 5:
                st.caption(f"… and {level.n_items - 5:,} more (Cypher console: `STARTS WITH`)")
elif view.has_sids:
    st.caption("This item has no semantic ID (it was added after `iirg sid` ran).")
else:
    st.caption(f"No semantic IDs in this graph: `iirg sid --run {ctx.settings.run}` quantizes the item "
               "embeddings into TIGER-style codes; the item's SID and the items sharing its prefixes then "
               "show here.")

# Widths in pixels so every column fits a half-page table without sideways scrolling (a "large" title
# pushed the count, cosine and source columns off-screen); long titles are cut, the full one is its tooltip.
ID = st.column_config.TextColumn("id", width=60)
TITLE = st.column_config.TextColumn("title", width=260)


def count_column(frame, column: str, label: str):
    top = int(frame[column].max()) if len(frame) else 1
    return st.column_config.ProgressColumn(label, min_value=0, max_value=max(top, 1), format="%d", width=110)


def table(frame, name: str, **kwargs) -> None:
    """A neighbour table whose rows open their item: selecting a row writes it into the URL (a new
    browser history entry, so Back returns here). The key includes the shown item, so the next item's
    tables start without a selection."""
    event = st.dataframe(frame, hide_index=True, height=320, on_select="rerun", selection_mode="single-row",
                         key=f"{name}_{item_id}", **kwargs)
    rows = event.selection.rows if event is not None else []
    if rows:
        st.query_params["item"] = str(frame.iloc[rows[0]]["item_id"])
        st.rerun()


def neighbour_table(spec, frame) -> None:
    """An item's neighbours by one relation, laid out from its spec (graph/relations: `item_view`)."""
    shown = spec.item_view
    line = LINE_GLYPH[spec.legend.line] if spec.legend else "━"
    colour = palette.RELATION.get(spec.name, palette.GREY)
    st.markdown(f"**{palette.swatch(shown.title, colour, line)}** ({spec.name}, top {len(frame)})",
                unsafe_allow_html=True)
    if frame.empty:
        st.caption(shown.empty)
        return
    # Optional columns (COLLAB's "via" only matters for back-filled neighbours) are left out when
    # every value is null: the width goes to the title.
    columns = [c for c in shown.columns if c.key in frame and not (c.only_if_any and not frame[c.key].notna().any())]
    config = {"rank": st.column_config.NumberColumn("#", width=40), "item_id": ID,
              "title": st.column_config.TextColumn("title", width=200 if len(columns) > 1 else 260)}
    for c in columns:
        if c.kind == "count":
            config[c.key] = count_column(frame, c.key, c.label)
        elif c.kind == "score":
            top = c.max_value if c.max_value is not None else max(float(frame[c.key].max()), 1e-9)
            config[c.key] = st.column_config.ProgressColumn(c.label, min_value=0.0, max_value=top,
                                                            format="%.3f", width=110, help=c.help)
        else:
            config[c.key] = st.column_config.TextColumn(c.label, width=90 if not c.only_if_any else 50,
                                                        help=c.help)
    table(frame, spec.name.lower(), column_order=["rank", "title", *(c.key for c in columns), "item_id"],
          column_config=config)


st.caption("Select a row to open that item.")
left, right = st.columns(2, gap="large")
with left:
    st.markdown(f"**{palette.swatch('Training successors', palette.RELATION['NEXT'])}** (top {len(view.successors)} of {d.get('successors', 0):,}, by count)", unsafe_allow_html=True)
    if view.successors.empty:
        st.caption("No item follows it in a training sequence.")
    else:
        table(view.successors, "successors", column_order=["title", "count", "item_id"],
                     column_config={"item_id": ID, "title": TITLE,
                                    "count": count_column(view.successors, "count", "transitions")})
with right:
    st.markdown(f"**{palette.swatch('Training predecessors', palette.RELATION['NEXT'])}** (top {len(view.predecessors)} of {d.get('predecessors', 0):,}, by count)", unsafe_allow_html=True)
    if view.predecessors.empty:
        st.caption("No item precedes it in a training sequence.")
    else:
        table(view.predecessors, "predecessors", column_order=["title", "count", "item_id"],
                     column_config={"item_id": ID, "title": TITLE,
                                    "count": count_column(view.predecessors, "count", "transitions")})
# Neighbour lists of every relation the graph has (COLLAB, SIMILAR, extra relations), two per row.
for i, (name, frame) in enumerate(view.neighbours.items()):
    with (left if i % 2 == 0 else right):
        neighbour_table(RELATIONS[name], frame)
