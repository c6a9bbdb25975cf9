"""User explorer page: one user's history, held-out target and memorization path, beside each
model's top-K with badges (hit, memorized, collaborative / semantic neighbourhood).

State lives in the URL (`/users?user=<id>&top=10`; not `k`, which the Overview binds): a shared link
opens the same user, every user shown is a browser history entry (Back returns to the previous user),
and a link or Back/Forward that changes `user` wins over the id box. The box and Top-K also persist
across page switches.
"""

from __future__ import annotations

import html
import random
import re
from datetime import datetime, timezone
from urllib.parse import quote

import streamlit as st

from dashboard import cache, data, palette
from dashboard.drawing import MAX_LINKED, MEMORIZATION_LEGEND, linked_items, memorization_dot
from graph.dashboard_queries import MAX_PATH_HOPS
from graph.errors import GraphError

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:])")
K_OPTIONS = [5, 10, 20]


def md(text) -> str:
    """Data text shown inside markdown: every markdown (and Streamlit :colour[]) character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def item_link(title, item_id) -> str:
    """An item title as a link to the item view, as inline HTML: Streamlit opens markdown links in a new
    tab, this one stays in the tab (target _self), so Back returns to this user. The title is escaped
    for HTML, then for markdown (the text between the tags is still markdown)."""
    href = html.escape("items?item=" + quote(str(item_id), safe=""))
    return f'<a href="{href}" target="_self">{md(html.escape(str(title), quote=False))}</a>'


def when(ts) -> str:
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d")
    except (ValueError, OverflowError, OSError):
        return ""


ctx = cache.context()
store, version = ctx.store, ctx.version
run = ctx.settings.run
st.title("User explorer")

try:
    segments = cache.segment_counts(store, version)
except GraphError as e:
    st.error(f"Reading the segments failed: {e}")
    st.stop()

# -- state from the URL (before the widgets exist, so it can set them) ----------------------------
# The URL wins only when it differs from what this page last wrote there: a shared or clicked link,
# or Back / Forward. Coming back through the page menu (no query) keeps the session's user.
url = {"user": st.query_params.get("user", ""), "top": st.query_params.get("top", "")}
if url != st.session_state.get("_users_url"):
    if url["user"]:
        st.session_state["user_id"] = url["user"]
    if url["top"].isdigit() and int(url["top"]) in K_OPTIONS:
        st.session_state["user_k"] = int(url["top"])


def draw_random(segment: str | None, n_users: int) -> None:
    """Button callback: put a random user of `segment` into the id box (before it is drawn)."""
    try:
        user = data.random_user(store, segment, n_users, random.Random())
    except GraphError as e:
        st.session_state["user_pick_error"] = f"Drawing a random user failed: {e}"
        return
    if user is not None:
        st.session_state["user_id"] = user


# The user is read before the segment box is drawn, so the box can show the shown user's segment.
user_id = str(st.session_state.get("user_id") or "").strip()
k = int(st.session_state.get("user_k", 10))
view, load_error = None, None
if user_id:
    try:
        with st.spinner(f"Reading user {user_id} from the graph…"):
            view = cache.user_view(store, version, user_id, k, str(run), cache.files_version(run))
    except GraphError as e:
        load_error = f"Reading user {user_id} failed: {e}"
    if view is not None and view.segment and not segments.empty and view.segment in set(segments["segment"]):
        st.session_state["user_segment"] = view.segment

with st.container(border=True):
    c1, c2, c3, c4 = st.columns([2, 3, 2, 1], vertical_alignment="bottom")
    c1.text_input("User id", key="user_id", placeholder="e.g. 1", persist_state="session")
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
        segment = c2.selectbox("Segment", list(options), format_func=options.get, key="user_segment",
                               persist_state="session",
                               help="Follows the user shown; pick one to draw a random user of it.")
        n = int(segments.loc[segments["segment"] == segment, "n_users"].iloc[0])
        c3.button("Random user of this segment", key="random_user", on_click=draw_random, args=(segment, n))
    c4.selectbox("Top-K", K_OPTIONS, index=1, key="user_k", persist_state="session")

if "user_pick_error" in st.session_state:
    st.error(st.session_state.pop("user_pick_error"))
if not user_id:
    st.info("Enter a user id, or draw a random user of a memorization segment.")
    if segments.empty:
        st.caption(f"No segments yet: run `iirg analyze --run {run}` to label test users.")
    st.stop()
# One browser history entry per user shown (Streamlit pushes a new entry when the query changes).
wanted = {"user": user_id, "top": str(k)}
if {key: st.query_params.get(key) for key in wanted} != wanted:
    st.query_params.from_dict(wanted)
st.session_state["_users_url"] = wanted

if load_error:
    st.error(load_error)
    st.stop()
if not view.found or view.problem:
    st.warning(view.problem)
    st.stop()

# -- header ----------------------------------------------------------------------------------------
label = data.segment_label(view.segment)
st.subheader(f"User {view.user_id} · {label}")
st.markdown(
    f"{palette.chip(label, palette.segment_color(view.segment), title='memorization segment (iirg analyze)')} "
    f"&nbsp;{len(view.history)} history items · target = the held-out test item · "
    f"{sum(view.seconds.values()) * 1000:.0f} ms of graph queries ({len(view.seconds)} queries, first load)",
    unsafe_allow_html=True)

# The drawing gets the full width: in a narrower column it was scaled down to 9-11 px text.
with st.container():
    st.markdown("**Memorization path**")
    last, target = view.last, view.target
    if view.path and view.path.hops == 1:
        st.markdown(f"**One-hop memorization:** the training sequences go from *{md(last['title'])}* "
                    f"straight to *{md(target['title'])}* ({view.path.counts[0]} time{'s' if view.path.counts[0] != 1 else ''}).")
    elif view.path:
        via = " → ".join(f"*{md(t)}*" for t in view.path.titles[1:-1])
        st.markdown(f"**{view.path.hops}-hop path:** no training transition from the last item to "
                    f"the target; the shortest chain of transitions goes via {via}.")
    elif last["item_id"] == target["item_id"]:
        st.markdown("The target is the last history item again (a repeat); no path is drawn for a cycle.")
    else:
        st.markdown(f"**No NEXT path** of at most {MAX_PATH_HOPS} hops from the last item to the target.")
    if not view.one_hop:
        # Segments measure hops from the last item only; say so when other items point at the target.
        direct = len(view.next_links)
        st.caption("Hops are counted from the **last** history item (what a next-item model conditions on "
                   "most), not from the whole history"
                   + (f": {direct} other history item{'s' if direct != 1 else ''} "
                      f"{'have' if direct != 1 else 'has'} a direct NEXT edge into the target (solid lines, "
                      "listed under *Full history*), which does not make this user one-hop covered."
                      if direct else "."))
    if not view.has_explanation:
        st.info("No explanation in the graph: the target is not reachable from the last item within "
                f"{MAX_PATH_HOPS} training transitions, and no history item has it among its collaborative "
                "or semantic neighbours. Only generalization could recommend it.")
    st.graphviz_chart(memorization_dot(view), width="content")
    st.caption(MEMORIZATION_LEGEND, unsafe_allow_html=True)
    n_linked = len(linked_items(view))
    if n_linked > MAX_LINKED:
        st.caption(f"{n_linked} history items have an edge into the target; the {MAX_LINKED} with the most relation "
                   "types (then the most recent) are drawn, all are listed under *Full history* below.")

BADGES = [("hit", "hit", palette.RELATION["HIT"], "the held-out target"),
          ("memorized", "memorized", palette.RELATION["NEXT"], "a training successor of the last item (NEXT)"),
          ("collab", "collab", palette.RELATION["COLLAB"], "a collaborative neighbour of the last item (COLLAB)"),
          ("semantic", "semantic", palette.RELATION["SIMILAR"], "a semantic neighbour of the last item (SIMILAR)")]

with st.container():
    st.markdown(f"**Top-{k} of each model**")
    recs = view.recommendations
    if recs.empty:
        st.info("No model's recommendations are in the graph for this user yet. `iirg baseline <model> "
                f"--run {run}` (or `iirg evaluate`) writes them.")
    colors = palette.model_colors(recs["model"]) if len(recs) else {}
    grid = st.columns(3, gap="small")
    for i, (model, group) in enumerate(recs.groupby("model", sort=True)):
        hit = group[group["hit"]]
        summary = f"hit at rank {int(hit['rank'].iloc[0])}" if len(hit) else "target not in the list"
        with grid[i % 3].container(border=True):
            st.markdown(f"{palette.chip(model, colors[model], title='model')} · {summary} · "
                        f"{int(group['memorized'].sum())} memorized", unsafe_allow_html=True)
            lines = []
            for row in group.itertuples(index=False):
                badges = [palette.chip(text, colour, title=tip) for column, text, colour, tip in BADGES
                          if getattr(row, column)]
                lines.append(f"{int(row.rank)}. {item_link(row.title, row.item_id)} {' '.join(badges)}")
            st.markdown("\n".join(lines), unsafe_allow_html=True)
    if not recs.empty:
        st.caption(" · ".join(f"{palette.chip(text, colour)} {tip}" for _, text, colour, tip in BADGES)
                   + " · titles open the item", unsafe_allow_html=True)

# -- history ---------------------------------------------------------------------------------------
st.markdown("**History** (most recent last)")
history = view.history
recent = history.tail(12)
lines = []
if len(history) > len(recent):
    lines.append(f":gray[… {len(history) - len(recent)} earlier items]")
for row in recent.itertuples(index=False):
    date = when(row.ts)
    lines.append(f"- `{row.pos}` {':gray[' + date + ']' if date else ''} {item_link(row.title, row.item_id)}"
                 + (" :gray-badge[valid]" if row.split == "valid" else ""))
target_date = when(target.get("ts"))
lines.append(f"- {palette.chip('target', palette.ORANGE)} {item_link(target['title'], target['item_id'])} "
             f"{':gray[' + target_date + ']' if target_date else ''}")
st.markdown("\n".join(lines), unsafe_allow_html=True)
with st.expander(f"Full history ({len(history)} items) and the history items connected to the target"):
    st.dataframe(history[["pos", "split", "item_id", "title", "popularity"]], hide_index=True, height=260)
    for label, frame in (("NEXT (history item → target transitions)", view.next_links),
                         ("COLLAB (target among the item's collaborative neighbours)", view.collab_links),
                         ("SIMILAR (target among the item's semantic neighbours)", view.similar_links)):
        st.markdown(f"{label}: {len(frame)}")
        if len(frame):
            st.dataframe(frame, hide_index=True)
