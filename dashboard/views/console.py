"""Cypher console page: run a read-only query with $parameters, a row limit and a timeout; see the
result as a table and, when it holds nodes and relationships, as a drawing.

Read-only on both backends through `graph.console.run_read_query`: a query guard refuses writing,
administrative and file-touching statements, and the store is opened in the database's own read-only
mode. Example queries (one per dashboard page concept) come from graph/dashboard_queries.py.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.drawing import legend_for, result_dot, result_graph
from graph.console import run_read_query
from graph.dashboard_queries import CONSOLE_EXAMPLES
from graph.errors import ReadOnlyViolation, StoreUnavailable
from graph.uri import redact_uri
from common.errors import IirgError

try:
    from neo4j_viz.streamlit import display_widget   # optional: `pip install 'iirg[dashboard]'`
except ImportError:
    display_widget = None

ctx = cache.context(require_graph=False)
config = ctx.settings.store
dialect = config.dialect
st.title("Cypher console")
st.caption(f"Read-only Cypher on {redact_uri(config.describe())} ({'Neo4j' if dialect == 'neo4j' else 'LadybugDB'} "
           "dialect). Writes, schema changes, file access and admin commands are refused. Values go in "
           "as `$parameters` (a JSON object).")

if "console_query" not in st.session_state:
    st.session_state["console_query"] = CONSOLE_EXAMPLES[0].text(dialect)
    st.session_state["console_params"] = json.dumps(CONSOLE_EXAMPLES[0].params)


def load_example() -> None:
    title = st.session_state["console_example"]
    example = next(e for e in CONSOLE_EXAMPLES if e.title == title)
    st.session_state["console_query"] = example.text(dialect)
    st.session_state["console_params"] = json.dumps(example.params)
    st.session_state.pop("console_result", None)


st.selectbox("Example queries", [e.title for e in CONSOLE_EXAMPLES], key="console_example",
             on_change=load_example, index=0)
query = st.text_area("Query", key="console_query", height=150)
c1, c2, c3, c4 = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
params_text = c1.text_input("Parameters (JSON object)", key="console_params")
row_limit = c2.number_input("Row limit", min_value=1, max_value=10_000, value=200, step=50, key="console_limit")
timeout = c3.number_input("Timeout (s)", min_value=1, max_value=300, value=10, key="console_timeout")
run_clicked = c4.button("Run", type="primary", key="console_run", width="stretch")

if run_clicked:
    st.session_state.pop("console_result", None)
    st.session_state.pop("console_error", None)
    try:
        params = json.loads(params_text) if params_text.strip() else {}
        if not isinstance(params, dict):
            raise ValueError("the parameters must be a JSON object, e.g. {\"user_id\": \"1\"}")
    except ValueError as e:
        st.session_state["console_error"] = ("error", f"Bad parameters: {e}")
    else:
        try:
            with st.spinner("Running the query…", show_time=True):
                st.session_state["console_result"] = run_read_query(config, query, params,
                                                                    row_limit=int(row_limit),
                                                                    timeout_s=float(timeout))
        except ReadOnlyViolation as e:
            st.session_state["console_error"] = ("refused", redact_uri(e))
        except StoreUnavailable as e:
            st.session_state["console_error"] = ("unavailable", redact_uri(e))
        except IirgError as e:   # GraphError: syntax errors, unknown labels, timeouts
            st.session_state["console_error"] = ("error", redact_uri(e))

error = st.session_state.get("console_error")
if error:
    kind, message = error
    if kind == "refused":
        st.error(f"**Refused: this console is read-only.** {message}", icon=":material/block:")
    elif kind == "unavailable":
        st.error(f"**The graph is not available.** {message}")
    else:
        st.error(f"**The query failed.** {message}")


def cell(value, depth: int = 0):
    """A readable table cell: nodes as (:Label {id, title}), relationships as [:TYPE {...}], long
    lists (embeddings) shortened."""
    if isinstance(value, dict):
        if "_NODES" in value:
            return " ".join(str(cell(n, depth + 1)) for n in value["_NODES"])
        label = value.get("_LABEL")
        props = {k: v for k, v in value.items() if not k.startswith("_") and k not in ("embedding", "description")}
        shown = ", ".join(f"{k}: {cell(v, depth + 1)}" for k, v in list(props.items())[:5])
        if label and "_SRC" in value:
            return f"[:{label} {{{shown}}}]"
        if label:
            return f"(:{label} {{{shown}}})"
        return "{" + shown + "}"
    if isinstance(value, (list, tuple)):
        items = [str(cell(v, depth + 1)) for v in value[:8]]
        return "[" + ", ".join(items) + (f", … {len(value)} items" if len(value) > 8 else "") + "]"
    if depth and isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:59] + "…")
    return value


result = st.session_state.get("console_result")
if result is not None:
    frame = result.frame
    note = f"{len(frame)} row{'s' if len(frame) != 1 else ''} in {result.elapsed_s * 1000:.0f} ms"
    if result.truncated:
        st.warning(f"Only the first {result.row_limit} rows are shown: raise the row limit for more.")
    st.caption(note)
    display = frame.map(cell) if len(frame) else frame
    for column in display.columns:   # mixed Python objects -> text, so Arrow can show the column
        if display[column].dtype == object:
            display[column] = display[column].map(lambda v: "" if v is None else str(v))
    if result.nodes:
        # The drawing's tab comes first (shown): neo4j-viz sizes its canvas when it is created, and
        # in a hidden tab it could come up empty.
        graph_tab, table_tab = st.tabs([f"Graph ({len(result.nodes)} nodes, "
                                        f"{len(result.relationships)} relationships)", "Table"])
        with table_tab:
            st.dataframe(display, hide_index=True)
        with graph_tab:
            graph = result_graph(result.nodes, result.relationships) if display_widget is not None else None
            # Interactive (neo4j-viz: zoom, pan, select) by default from 13 nodes, where a static
            # layered drawing grew to thousands of pixels; small results read better static.
            views = ["interactive", "static"] if graph is not None else ["static"]
            default = "interactive" if graph is not None and len(result.nodes) > 12 else "static"
            mode = st.segmented_control("Drawing", views, default=default, key=f"console_drawing_{len(result.nodes)}",
                                        help="interactive: neo4j-viz (zoom, pan, select a node to open it); "
                                             "static: Graphviz, a deterministic layered layout") or default
            if mode == "interactive":
                widget = graph.render_widget(height="560px")
                display_widget(widget, key="console_graph")
                by_id = {str(n.id): n for n in result.nodes}
                picked = [by_id[i] for i in (widget.selected.nodeIds or []) if i in by_id]
                for n in picked[:10]:
                    if n.label == "Item" and n.properties.get("id") is not None:
                        st.page_link("views/items.py", label=f"Open item {n.properties.get('title') or n.properties['id']}",
                                     query_params={"item": str(n.properties["id"])}, icon=":material/category:")
                if not picked:
                    st.caption("Scroll to zoom, drag to pan; select an item node to get a link to it.")
            else:
                # Natural size (readable text) up to the page width; larger drawings scale down to fit.
                st.graphviz_chart(result_dot(result.nodes, result.relationships), width="content")
            st.caption(legend_for(r.type for r in result.relationships), unsafe_allow_html=True)
            if len(result.nodes) > 150:
                st.caption("Only the first 150 nodes are drawn.")
    else:
        st.dataframe(pd.DataFrame(display), hide_index=True)
