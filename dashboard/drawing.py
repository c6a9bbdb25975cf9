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

MAX_LINKED = 5  # linked history items drawn besides the recent ones

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
    ":orange[**━ NEXT path**] shortest multi-hop path of training transitions (×count) · "
    ":red[─ NEXT] other history item → target (×count) · "
    ":blue[**┅ COLLAB**] target is a collaborative neighbour (#rank) · "
    ":green[**┅ SIMILAR**] target is a semantic neighbour (cosine) · "
    ":gray[┈ history order]"
)


def _quote(text: str) -> str:
    """A DOT double-quoted string (ids and labels come from the data: escape, never trust)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _wrap(title: str | None, width: int = 16, lines: int = 3) -> str:
    parts = textwrap.wrap(str(title or ""), width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1] + "…"
    return "\n".join(parts)


def _header() -> list[str]:
    return [
        "digraph G {",
        '  rankdir=LR; bgcolor="transparent"; nodesep=0.15; ranksep=0.35; margin=0;',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=12, margin="0.08,0.04", '
        f'fillcolor="#f0f2f6", color="{COLORS["gray"]}", penwidth=1];',
        '  edge [fontname="Helvetica", fontsize=10, arrowsize=0.7];',
    ]


def _edge(src: str, dst: str, kind: str, label: str = "", *, bold: bool = False, extra: str = "") -> str:
    colour, style = EDGE_STYLES[kind]
    attrs = [f'color="{COLORS[colour]}"', f"style={style}", f"penwidth={3 if bold else 1.4}"]
    if label:
        attrs.append(f"label={_quote(label)}, fontcolor=\"{COLORS[colour]}\"")
    if extra:
        attrs.append(extra)
    return f"  {_quote(src)} -> {_quote(dst)} [{', '.join(attrs)}];"


def linked_items(view: UserView) -> list[str]:
    """Distinct history items with a NEXT, COLLAB or SIMILAR edge into the target, best explained first:
    items with several relation types, then the most recent."""
    kinds: dict[str, set[str]] = {}
    last_pos: dict[str, int] = {}
    for frame, kind in ((view.next_links, "NEXT"), (view.collab_links, "COLLAB"), (view.similar_links, "SIMILAR")):
        for item_id, pos in zip(frame.get("item_id", []), frame.get("pos", [])):
            kinds.setdefault(str(item_id), set()).add(kind)
            last_pos[str(item_id)] = max(int(pos), last_pos.get(str(item_id), -1))
    return sorted(kinds, key=lambda i: (-len(kinds[i]), -last_pos[i]))


def memorization_dot(view: UserView, *, recent: int = 3, max_linked: int = MAX_LINKED) -> str:
    """The user's memorization path, read left to right:

        recent history ┈ LAST ━ NEXT path ━▶ TARGET ◀┅ linked earlier history items

    Shown: the last `recent` history items as a chain, the shortest NEXT path from the last item to
    the target, and up to `max_linked` other history items with a NEXT / COLLAB / SIMILAR edge into
    the target (grouped in a box; the page lists all of them).
    """
    if view.target is None or view.last is None:
        raise ValueError("the view has no target to draw")
    history = view.history
    target_id, last_id = view.target["item_id"], view.last["item_id"]
    ids = history["item_id"].astype(str).tolist()
    positions = history["pos"].tolist()
    titles = dict(zip(ids, history["title"].tolist()))
    titles[target_id] = view.target["title"]
    if view.path:
        titles.update(zip(view.path.item_ids, view.path.titles))
    pos_of = dict(zip(ids, positions))  # an item seen twice keeps its latest position

    # The recent chain: distinct items of the last positions, in order; shorter when a multi-hop
    # path already widens the drawing (every rank costs width, and the page scales to fit).
    inner = len(view.path.item_ids) - 2 if view.path else 0
    recent = max(1, recent - inner)
    chain: list[str] = []
    for item_id in ids[max(0, len(ids) - recent):]:
        if item_id in chain:
            chain.remove(item_id)
        chain.append(item_id)
    path_inner = [i for i in (view.path.item_ids[1:-1] if view.path else []) if i not in chain]
    linked = [i for i in linked_items(view) if i not in chain and i != target_id][:max_linked]

    lines = _header()
    drawn: set[str] = set()

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
        elif role == "path":
            label = title
            attrs = f'fillcolor="#ffffff", color="{COLORS["orange"]}", style="rounded,dashed,filled"'
        else:
            label = f"pos {pos_of.get(item_id, '')}\n{title}"
            attrs = 'fillcolor="#f0f2f6"'
        lines.append(f"  {_quote(item_id)} [label={_quote(label)}, {attrs}];")

    for item_id in chain:
        node(item_id, "history")
    for a, b in zip(chain, chain[1:]):
        lines.append(_edge(a, b, "HISTORY", extra="arrowhead=none"))
    for item_id in path_inner:
        node(item_id, "path")
    node(target_id, "target")
    if linked:
        lines.append("  subgraph cluster_linked {")
        lines.append(f'    label="other history items linked to the target"; fontsize=10; '
                     f'fontcolor="{COLORS["gray"]}"; style="rounded,dashed"; color="{COLORS["gray"]}";')
        for item_id in linked:
            node(item_id, "history")
        lines.append("  }")

    on_path: set[tuple[str, str]] = set()
    if view.path:
        one_hop = view.path.hops == 1
        for a, b, count in zip(view.path.item_ids, view.path.item_ids[1:], view.path.counts):
            on_path.add((a, b))
            lines.append(_edge(a, b, "NEXT" if one_hop else "PATH",
                               f"NEXT ×{count} · one hop" if one_hop else f"×{count}", bold=True))
    # Short labels: the colour says the relation (legend), the label its strength.
    labels = {"NEXT": lambda r: f"×{r.count}",
              "COLLAB": lambda r: f"#{r.rank}" + (" (back-fill)" if r.source == "semantic_backfill" else ""),
              "SIMILAR": lambda r: f"{r.score:.2f}"}
    for frame, kind in ((view.next_links, "NEXT"), (view.collab_links, "COLLAB"), (view.similar_links, "SIMILAR")):
        for row in frame.drop_duplicates("item_id").itertuples(index=False):
            src = str(row.item_id)
            if src not in drawn or src == target_id or (kind == "NEXT" and (src, target_id) in on_path):
                continue
            # Linked items sit one rank before the target; chain items keep their place in the chain.
            extra = "" if src in linked else "constraint=false"
            lines.append(_edge(src, target_id, kind, labels[kind](row), extra=extra))
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
