"""Graph drawings as Graphviz DOT text, rendered by `st.graphviz_chart`.

Why Graphviz for the user explorer: Streamlit renders DOT in the browser with its bundled Graphviz
(WebAssembly), offline and with no extra package; the layout is deterministic (same user, same
picture, which screenshots and comparisons need) and the layered `dot` layout tells the story
"history -> last item -> path -> target" left to right, which a force layout scrambles. The Cypher
console's results are arbitrary subgraphs that grew to thousands of pixels as static drawings: there
`result_graph` hands them to neo4j-viz (Neo4j's own NVL renderer as a Streamlit component, its
JavaScript shipped in the wheel, so it works offline) for zoom, pan and selection; Graphviz remains
one click away and is the fallback when neo4j-viz is not installed.

    memorization_dot(view)            # user explorer: history, target, NEXT path, COLLAB/SIMILAR
    result_dot(nodes, relationships)  # Cypher console: any subgraph found in a result (static)
    result_graph(nodes, relationships)  # the same, interactive (neo4j-viz), None without it

Colours come from dashboard/palette.py (colour-blind safe, the same on every page) and the legends
are HTML in the same colours. Every drawn item links to the item view (`items?item=<id>`, same tab):
a click opens it, the browser's Back returns to the drawing.
"""

from __future__ import annotations

import textwrap
from urllib.parse import quote

from dashboard import palette
from dashboard.data import UserView
from graph.relations import RELATIONS

MAX_LINKED = 5  # linked history items drawn besides the recent ones
# Node text in points. The page shows a drawing at its natural size when it fits the column, so this is
# close to the size on screen (the old 12 pt drawings were scaled down to 9-11 px).
FONT_PT = 14

# Relationship type -> DOT line style (item-item relations: their specs' `Legend.line`); the colour is
# palette.RELATION[type].
EDGE_STYLES = {
    **{name: spec.legend.line for name, spec in RELATIONS.items() if spec.legend is not None},
    "PATH": "solid",
    "HISTORY": "dotted",
    "INTERACTED": "dotted",
    "RECOMMENDED": "dashed",
}
LINE_GLYPH = {"solid": "━", "dashed": "┅", "dotted": "┈"}


def _legend(entries) -> str:
    """HTML legend: (relation kind, label) pairs as coloured line glyphs."""
    return " · ".join(palette.swatch(label, palette.RELATION[kind], LINE_GLYPH[EDGE_STYLES[kind]])
                      for kind, label in entries)


MEMORIZATION_LEGEND = _legend([
    ("NEXT", "NEXT last → target (bold): one-hop memorization, a training transition"),
    ("PATH", "shortest multi-hop NEXT path from the last item (×count)"),
    *((name, RELATIONS[name].legend.label) for name in ("NEXT", "COLLAB", "SIMILAR")),
    ("HISTORY", "history order"),
]) + " · click an item to open it"


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
        f'  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize={FONT_PT}, '
        f'margin="0.1,0.05", fillcolor="#f0f2f6", fontcolor="#111111", color="{palette.GREY}", penwidth=1];',
        f'  edge [fontname="Helvetica", fontsize={FONT_PT - 2}, arrowsize=0.8];',
    ]


def item_link(item_id: str) -> str:
    """Node attributes that make a drawn item a link to the item view (relative: works under any base
    path; target _self: same tab, so Back returns to the drawing)."""
    href = "items?item=" + quote(str(item_id), safe="")
    return f'URL={_quote(href)}, target="_self", tooltip={_quote("open item " + str(item_id))}'


def _edge(src: str, dst: str, kind: str, label: str = "", *, bold: bool = False, extra: str = "") -> str:
    colour, style = palette.RELATION[kind], EDGE_STYLES[kind]
    attrs = [f'color="{colour}"', f"style={style}", f"penwidth={3.5 if bold else 1.6}"]
    if label:
        attrs.append(f"label={_quote(label)}, fontcolor=\"{colour}\"")
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
            attrs = f'fillcolor="#fbf6c2", color="{palette.ORANGE}", penwidth=3'
        elif item_id == last_id:
            label = f"LAST · pos {pos_of.get(item_id, '')}\n{title}"
            attrs = f'fillcolor="#d9eefa", color="{palette.SKY_BLUE}", penwidth=2.5'
        elif role == "path":
            label = title
            attrs = f'fillcolor="#ffffff", color="{palette.ORANGE}", style="rounded,dashed,filled"'
        else:
            label = f"pos {pos_of.get(item_id, '')}\n{title}"
            attrs = 'fillcolor="#f0f2f6"'
        lines.append(f"  {_quote(item_id)} [label={_quote(label)}, {attrs}, {item_link(item_id)}];")

    for item_id in chain:
        node(item_id, "history")
    for a, b in zip(chain, chain[1:]):
        lines.append(_edge(a, b, "HISTORY", extra="arrowhead=none"))
    for item_id in path_inner:
        node(item_id, "path")
    node(target_id, "target")
    if linked:
        lines.append("  subgraph cluster_linked {")
        lines.append(f'    label="other history items linked to the target"; fontsize={FONT_PT - 2}; '
                     f'fontcolor="{palette.GREY}"; style="rounded,dashed"; color="{palette.GREY}";')
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
        fill = {"User": "#f3dcea", "Item": "#f0f2f6"}.get(n.label or "", "#ffffff")
        kept[n.id] = True
        link = f", {item_link(props['id'])}" if n.label == "Item" and props.get("id") is not None else ""
        lines.append(f"  {_quote(n.id)} [label={_quote(label)}, fillcolor=\"{fill}\"{link}];")
    for r in relationships:
        if r.src not in kept or r.dst not in kept:
            continue
        kind = r.type if r.type in EDGE_STYLES else "HISTORY"   # unknown types: grey, dotted
        props = r.properties
        detail = next((f"{key} {props[key]:.2f}" if isinstance(props[key], float) else f"{key} {props[key]}"
                       for key in ("count", "rank", "score", "pos") if key in props), "")
        lines.append(_edge(r.src, r.dst, kind, f"{r.type} {detail}".strip()))
    lines.append("}")
    return "\n".join(lines)


def legend_for(types) -> str:
    """HTML legend of the relationship types present in a console drawing (unknown types: grey)."""
    return _legend((t if t in EDGE_STYLES else "HISTORY", t) for t in sorted(set(types))) \
        + " · click an item to open it"


def result_graph(nodes, relationships, *, max_nodes: int = 150):
    """A console result's subgraph for neo4j-viz (interactive: zoom, pan, select), in the palette's
    colours; None when neo4j-viz is not installed (the page then draws with Graphviz)."""
    try:
        from neo4j_viz import Node, Relationship, VisualizationGraph
    except ImportError:
        return None
    kept, out_nodes = set(), []
    for n in nodes[:max_nodes]:
        props = n.properties
        name = str(props.get("title") or props.get("id") or n.id)
        colour = palette.RELATION["RECOMMENDED"] if n.label == "User" else palette.SKY_BLUE
        kept.add(n.id)
        shown = {k: v for k, v in props.items() if k not in ("embedding", "description", "sid_codes")}
        # The colour tells users from items, so the caption is all title (neo4j-viz truncates it).
        caption = f"User {name}" if n.label == "User" else name
        out_nodes.append(Node(id=str(n.id), caption=caption, color=colour,
                              properties={**shown, "label": n.label}))
    out_rels = []
    for i, r in enumerate(relationships):
        if r.src not in kept or r.dst not in kept:
            continue
        colour = palette.RELATION.get(r.type, palette.GREY)
        out_rels.append(Relationship(id=f"r{i}", source=str(r.src), target=str(r.dst), caption=r.type,
                                     color=colour, properties=dict(r.properties)))
    return VisualizationGraph(nodes=out_nodes, relationships=out_rels)
