"""User explorer page: one user's history, held-out target and memorization path, beside each
model's top-K with badges (hit, memorized, collaborative / semantic neighbourhood).

The user comes from the `?user=<id>` URL parameter, the id box, or a random draw from a segment.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone

import streamlit as st

from dashboard import cache, data
from dashboard.drawing import MAX_LINKED, MEMORIZATION_LEGEND, linked_items, memorization_dot
from graph.dashboard_queries import MAX_PATH_HOPS
from graph.errors import GraphError

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:])")


def md(text) -> str:
    """Data text shown inside markdown: every markdown (and Streamlit :colour[]) character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def when(ts) -> str:
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d")
    except (ValueError, OverflowError, OSError):
        return ""


ctx = cache.context()
store, version = ctx.store, ctx.version
st.title("User explorer")

try:
    segments = cache.segment_counts(store, version)
except GraphError as e:
    st.error(f"Reading the segments failed: {e}")
    st.stop()

if "user_id" not in st.session_state:
    st.session_state["user_id"] = st.query_params.get("user", "")


def draw_random(segment: str | None, n_users: int) -> None:
    """Button callback: put a random user of `segment` into the id box (before it is drawn)."""
    try:
        user = data.random_user(store, segment, n_users, random.Random())
    except GraphError as e:
        st.session_state["user_pick_error"] = f"Drawing a random user failed: {e}"
        return
    if user is not None:
        st.session_state["user_id"] = user


with st.container(border=True):
    c1, c2, c3, c4 = st.columns([2, 3, 2, 1], vertical_alignment="bottom")
    c1.text_input("User id", key="user_id", placeholder="e.g. 1")
    if segments.empty:
        try:
            n_all = cache.graph_counts(store, version)["users"]
        except GraphError as e:
            st.error(f"Counting the users failed: {e}")
            st.stop()
        c2.selectbox("Segment", ["any user"], key="user_segment", disabled=True,
                     help="Segments appear after `iirg analyze`.")
        c3.button("Random user", key="random_user", on_click=draw_random, args=(None, n_all))
    else:
        options = {row.segment: f"{row.label} ({row.n_users:,} users)" for row in segments.itertuples()}
        segment = c2.selectbox("Segment", list(options), format_func=options.get, key="user_segment")
        n = int(segments.loc[segments["segment"] == segment, "n_users"].iloc[0])
        c3.button("Random user of this segment", key="random_user", on_click=draw_random, args=(segment, n))
    k = c4.selectbox("Top-K", [5, 10, 20], index=1, key="user_k")

if "user_pick_error" in st.session_state:
    st.error(st.session_state.pop("user_pick_error"))
user_id = st.session_state["user_id"].strip()
if not user_id:
    st.info("Enter a user id, or draw a random user of a memorization segment.")
    if segments.empty:
        st.caption(f"No segments yet: run `iirg analyze --run {ctx.settings.run}` to label test users.")
    st.stop()
st.query_params["user"] = user_id

try:
    view = cache.user_view(store, version, user_id, k, str(ctx.settings.run), cache.files_version(ctx.settings.run))
except GraphError as e:
    st.error(f"Reading user {user_id} failed: {e}")
    st.stop()
if not view.found or view.problem:
    st.warning(view.problem)
    st.stop()

# -- header ----------------------------------------------------------------------------------------
colour = {"one_hop": "red", "two_hop": "orange", "three_hop": "orange", "beyond": "gray",
          "semantic_only": "green", "unreachable": "gray"}.get(view.segment or "", "gray")
st.subheader(f"User {md(view.user_id)} :{colour}-badge[{data.segment_label(view.segment)}]")
st.caption(f"{len(view.history)} history items · target = the held-out test item · "
           f"{sum(view.seconds.values()) * 1000:.0f} ms of graph queries ({len(view.seconds)} queries, first load)")

left, right = st.columns([3, 2], gap="medium")
with left:
    st.markdown("**Memorization path**")
    last, target = view.last, view.target
    if view.path and view.path.hops == 1:
        st.markdown(f":red[**One-hop memorization:**] the training sequences go from *{md(last['title'])}* "
                    f"straight to *{md(target['title'])}* ({view.path.counts[0]} time{'s' if view.path.counts[0] != 1 else ''}).")
    elif view.path:
        via = " → ".join(f"*{md(t)}*" for t in view.path.titles[1:-1])
        st.markdown(f":orange[**{view.path.hops}-hop path:**] no training transition from the last item to "
                    f"the target; the shortest chain of transitions goes via {via}.")
    elif last["item_id"] == target["item_id"]:
        st.markdown("The target is the last history item again (a repeat); no path is drawn for a cycle.")
    else:
        st.markdown(f":gray[**No NEXT path**] of at most {MAX_PATH_HOPS} hops from the last item to the target.")
    if not view.has_explanation:
        st.info("No explanation in the graph: the target is not reachable from the last item within "
                f"{MAX_PATH_HOPS} training transitions, and no history item has it among its collaborative "
                "or semantic neighbours. Only generalization could recommend it.")
    st.graphviz_chart(memorization_dot(view), width="stretch")
    st.caption(MEMORIZATION_LEGEND)
    n_linked = len(linked_items(view))
    if n_linked > MAX_LINKED:
        st.caption(f"{n_linked} history items have an edge into the target; the {MAX_LINKED} with the most relation "
                   "types (then the most recent) are drawn, all are listed under *Full history* below.")

with right:
    st.markdown(f"**Top-{k} of each model**")
    recs = view.recommendations
    if recs.empty:
        st.info("No model's recommendations are in the graph for this user yet. `iirg baseline <model> "
                f"--run {ctx.settings.run}` (or `iirg evaluate`) writes them.")
    for model, group in recs.groupby("model", sort=True):
        hit = group[group["hit"]]
        summary = f"hit at rank {int(hit['rank'].iloc[0])}" if len(hit) else "target not in the list"
        with st.container(border=True):
            st.markdown(f"**{md(model)}** · {summary} · {int(group['memorized'].sum())} memorized")
            lines = []
            for row in group.itertuples(index=False):
                badges = []
                if row.hit:
                    badges.append(":violet-badge[hit]")
                if row.memorized:
                    badges.append(":red-badge[memorized]")
                if row.collab:
                    badges.append(":blue-badge[collab]")
                if row.semantic:
                    badges.append(":green-badge[semantic]")
                lines.append(f"{int(row.rank)}. {md(row.title)} {' '.join(badges)}")
            st.markdown("\n".join(lines))
    if not recs.empty:
        st.caption(":violet-badge[hit] the held-out target · :red-badge[memorized] a training successor of "
                   "the last item (`NEXT`) · :blue-badge[collab] / :green-badge[semantic] a collaborative / "
                   "semantic neighbour of the last item (`COLLAB` / `SIMILAR`)")

# -- history ---------------------------------------------------------------------------------------
st.markdown("**History** (most recent last)")
history = view.history
recent = history.tail(12)
lines = []
if len(history) > len(recent):
    lines.append(f":gray[… {len(history) - len(recent)} earlier items]")
for row in recent.itertuples(index=False):
    date = when(row.ts)
    lines.append(f"- `{row.pos}` {':gray[' + date + ']' if date else ''} {md(row.title)}"
                 + (" :gray-badge[valid]" if row.split == "valid" else ""))
lines.append(f"- :orange-badge[target] {md(target['title'])} {':gray[' + when(target.get('ts')) + ']' if when(target.get('ts')) else ''}")
st.markdown("\n".join(lines))
with st.expander(f"Full history ({len(history)} items) and the history items connected to the target"):
    st.dataframe(history[["pos", "split", "item_id", "title", "popularity"]], hide_index=True, height=260)
    for label, frame in (("NEXT (history item → target transitions)", view.next_links),
                         ("COLLAB (target among the item's collaborative neighbours)", view.collab_links),
                         ("SIMILAR (target among the item's semantic neighbours)", view.similar_links)):
        st.markdown(f"{label}: {len(frame)}")
        if len(frame):
            st.dataframe(frame, hide_index=True)
