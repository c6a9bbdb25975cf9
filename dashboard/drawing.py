"""Graph drawings as Graphviz DOT text, rendered by `st.graphviz_chart`.

Why Graphviz: Streamlit renders DOT in the browser with its bundled Graphviz (WebAssembly), so the
drawing works offline with no system graphviz and no extra package; the layout is deterministic
(same user, same picture, which screenshots and comparisons need) and the layered `dot` layout suits
a path read left to right. `neo4j-viz` would give an interactive canvas but is not installed and
talks only to Neo4j-shaped data; a memorization path has at most a few dozen nodes, where a static
layered drawing reads better than a force layout.

    memorization_dot(view)            # user explorer: history, target, NEXT path, COLLAB/SIMILAR
    result_dot(nodes, relationships)  # Cypher console: any subgraph found in a result

Colours are Streamlit's own palette, so the markdown legend (`:red[...]`, `:blue[...]`) matches.
"""

from __future__ import annotations

import textwrap

from dashboard.data import UserView

COLORS = {
    "red": "#ff4b4b", "orange": "#ffa421", "blue": "#1c83e1", "green": "#21c354", "gray": "#808495",
    "violet": "#803df5", "yellow": "#faca2b",
}
# Relationship type -> (Streamlit colour name, DOT style) for drawings and legends.
EDGE_STYLES = {
    "NEXT": ("red", "solid"),
    "PATH": ("orange", "solid"),
    "COLLAB": ("blue", "dashed"),
    "SIMILAR": ("green", "dashed"),
    "HISTORY": ("gray", "dotted"),
    "INTERACTED": ("gray", "dotted"),
    "RECOMMENDED": ("violet", "dashed"),
}

MEMORIZATION_LEGEND = (
    ":red[**━ NEXT last → target**] one-hop memorization (a training transition) · "
    ":orange[**━ NEXT path**] shortest multi-hop path of training transitions · "
    ":red[─ NEXT] other history item → target · "
    ":blue[**┅ COLLAB**] target is a collaborative neighbour (rank) · "
    ":green[**┅ SIMILAR**] target is a semantic neighbour (cosine) · "
    ":gray[┈ history order]"
)


def _quote(text: str) -> str:
    """A DOT double-quoted string (ids and labels come from the data: escape, never trust)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _wrap(title: str | None, width: int = 24, lines: int = 2) -> str:
    parts = textwrap.wrap(str(title or ""), width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1] + "…"
    return "\n".join(parts)


def _header() -> list[str]:
    return [
        "digraph G {",
        '  rankdir=LR; bgcolor="transparent"; nodesep=0.25; ranksep=0.45;',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
        f'fillcolor="#f0f2f6", color="{COLORS["gray"]}", penwidth=1];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
    ]


def _edge(src: str, dst: str, kind: str, label: str = "", *, bold: bool = False, extra: str = "") -> str:
    colour, style = EDGE_STYLES[kind]
    attrs = [f'color="{COLORS[colour]}"', f"style={style}", f"penwidth={3 if bold else 1.4}"]
    if label:
        attrs.append(f"label={_quote(label)}, fontcolor=\"{COLORS[colour]}\"")
    if extra:
        attrs.append(extra)
    return f"  {_quote(src)} -> {_quote(dst)} [{', '.join(attrs)}];"


def memorization_dot(view: UserView, *, recent: int = 5, max_linked: int = 10) -> str:
    """The user's memorization path: recent history, linked history items, NEXT path, target.

    Shown history items: the last `recent` ones, plus up to `max_linked` (most recent first) of those
    with a NEXT, COLLAB or SIMILAR edge into the target. Consecutive shown items are joined by a
    dotted history-order edge labelled with how many items were skipped.
    """
    if view.target is None or view.last is None:
        raise ValueError("the view has no target to draw")
    history = view.history
    target_id = view.target["item_id"]
    linked_ids = set()
    for frame in (view.next_links, view.collab_links, view.similar_links):
        if len(frame):
            linked_ids |= set(frame["item_id"].astype(str))
    positions = history["pos"].tolist()
    ids = history["item_id"].astype(str).tolist()
    shown = set(range(max(0, len(ids) - recent), len(ids)))
    linked_rows = [i for i in range(len(ids) - 1, -1, -1) if ids[i] in linked_ids]
    # Keep each linked item once (its latest position), at most max_linked of them.
    seen: set[str] = set()
    for i in linked_rows:
        if ids[i] in seen or len(seen) >= max_linked:
            continue
        seen.add(ids[i])
        if not any(ids[j] == ids[i] for j in shown):
            shown.add(i)
    shown_rows = sorted(shown)
    titles = dict(zip(ids, history["title"].tolist()))
    titles[target_id] = view.target["title"]
    if view.path:
        titles.update(zip(view.path.item_ids, view.path.titles))

    lines = _header()
    drawn: set[str] = set()
    last_id = view.last["item_id"]
    pos_of = {ids[i]: positions[i] for i in shown_rows}

    def node(item_id: str, role: str) -> None:
        if item_id in drawn:
            return
        drawn.add(item_id)
        title = _wrap(titles.get(item_id))
        if item_id == target_id:
            label = f"TARGET (held out)\n{title}"
            attrs = f'fillcolor="#fff3c4", color="{COLORS["yellow"]}", penwidth=2.5'
        elif item_id == last_id:
            label = f"LAST · pos {pos_of.get(item_id, '')}\n{title}"
            attrs = f'fillcolor="#dbeafe", color="{COLORS["blue"]}", penwidth=2'
        elif role == "history":
            label = f"pos {pos_of.get(item_id, '')}\n{title}"
            attrs = 'fillcolor="#f0f2f6"'
        else:  # an item on the NEXT path that is not in the shown history
            label = title
            attrs = f'fillcolor="#ffffff", color="{COLORS["orange"]}", style="rounded,dashed,filled"'
        lines.append(f"  {_quote(item_id)} [label={_quote(label)}, {attrs}];")

    for i in shown_rows:
        node(ids[i], "history")
    node(target_id, "target")
    # History order between consecutive shown items.
    for a, b in zip(shown_rows, shown_rows[1:]):
        if ids[a] != ids[b]:
            skipped = b - a - 1
            lines.append(_edge(ids[a], ids[b], "HISTORY", f"+{skipped} more" if skipped else "",
                               extra="arrowhead=none, constraint=true"))
    if shown_rows and shown_rows[0] > 0:
        lines.append(f'  "__earlier" [label={_quote(f"{shown_rows[0]} earlier items")}, shape=plaintext, '
                     f'style="", fontcolor="{COLORS["gray"]}"];')
        lines.append(_edge("__earlier", ids[shown_rows[0]], "HISTORY", extra="arrowhead=none"))
    # NEXT path (one-hop edge in bold red, longer paths in orange).
    on_path: set[tuple[str, str]] = set()
    if view.path:
        for item_id in view.path.item_ids[1:-1]:
            node(item_id, "path")
        one_hop = view.path.hops == 1
        for a, b, count in zip(view.path.item_ids, view.path.item_ids[1:], view.path.counts):
            on_path.add((a, b))
            kind = "NEXT" if one_hop else "PATH"
            lines.append(_edge(a, b, kind, f"NEXT ×{count}" + (" (one hop)" if one_hop else ""), bold=True))
    # Other history items -> target, per relation type.
    for frame, kind in ((view.next_links, "NEXT"), (view.collab_links, "COLLAB"), (view.similar_links, "SIMILAR")):
        for row in frame.drop_duplicates("item_id").itertuples(index=False):
            src = str(row.item_id)
            if src not in drawn or (kind == "NEXT" and (src, target_id) in on_path):
                continue
            label = {"NEXT": lambda r: f"NEXT ×{r.count}",
                     "COLLAB": lambda r: f"COLLAB #{r.rank}" + (" (backfill)" if r.source == "semantic_backfill" else ""),
                     "SIMILAR": lambda r: f"SIMILAR {r.score:.2f}"}[kind](row)
            lines.append(_edge(src, target_id, kind, label, extra="constraint=false" if kind != "NEXT" else ""))
    lines.append("}")
    return "\n".join(lines)


def result_dot(nodes, relationships, *, max_nodes: int = 150) -> str:
    """A console result's subgraph (graph.console GraphNode / GraphRel), at most max_nodes nodes."""
    lines = _header()
    kept = {}
    for n in nodes[:max_nodes]:
        props = n.properties
        name = props.get("title") or props.get("id") or n.id
        label = f":{n.label}\n{_wrap(name)}" if n.label else _wrap(name)
        fill = {"User": "#e8dcfd", "Item": "#f0f2f6"}.get(n.label or "", "#ffffff")
        kept[n.id] = True
        lines.append(f"  {_quote(n.id)} [label={_quote(label)}, fillcolor=\"{fill}\"];")
    for r in relationships:
        if r.src not in kept or r.dst not in kept:
            continue
        kind = r.type if r.type in EDGE_STYLES else "HISTORY"
        props = r.properties
        detail = next((f"{key} {props[key]:.2f}" if isinstance(props[key], float) else f"{key} {props[key]}"
                       for key in ("count", "rank", "score", "pos") if key in props), "")
        lines.append(_edge(r.src, r.dst, kind, f"{r.type} {detail}".strip()))
    lines.append("}")
    return "\n".join(lines)


def legend_for(types) -> str:
    """Markdown legend of the relationship types present in a console drawing."""
    parts = []
    for t in sorted(set(types)):
        colour, _ = EDGE_STYLES.get(t, EDGE_STYLES["HISTORY"])
        parts.append(f":{colour}[**━ {t}**]")
    return " · ".join(parts)
