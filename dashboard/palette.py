"""One colour palette for every page: segments, models, relation types and badges.

The colours are Okabe & Ito's colour-blind-safe set (https://jfly.uni-koeln.de/color/), restricted to
the ones that read on both Streamlit's light and dark backgrounds (their blue #0072B2 is too dark on
dark, their yellow #F0E442 too light on white; both are left out of lines and text). Red/green
pairs are avoided: NEXT (memorization) is vermillion, SIMILAR is bluish green, which stay distinct
under deuteranopia and protanopia, and they also differ in line style (solid / dashed).

    segment_color("one_hop")          # the same colour in the Overview chart and the user badge
    model_colors(["sasrec", "tiger"])  # fixed colours for known models, then the rest in order
    chip("memorized", RELATION["NEXT"])  # an HTML badge (black text on the colour: readable in both themes)
"""

from __future__ import annotations

import html

from graph.relations import RELATIONS

VERMILLION = "#D55E00"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
BLUISH_GREEN = "#009E73"
REDDISH_PURPLE = "#CC79A7"
GREY = "#999999"
YELLOW = "#F0E442"   # fills only (the target node), never text

# Segments, from "memorized" (hot) to "nothing in the graph" (grey).
SEGMENT = {
    "one_hop": VERMILLION,
    "two_hop": ORANGE,
    "three_hop": YELLOW,
    "beyond": REDDISH_PURPLE,
    "semantic_only": BLUISH_GREEN,
    "unreachable": GREY,
}
# Groups of the per-segment table that are not segments.
GROUP = {"all": "#666666", "covered": VERMILLION, "uncovered": SKY_BLUE, "any_hop": ORANGE}

# The palette by name: a relation's spec names its colour (graph/relations, `Legend.colour`).
COLOURS = {"VERMILLION": VERMILLION, "ORANGE": ORANGE, "SKY_BLUE": SKY_BLUE, "BLUISH_GREEN": BLUISH_GREEN,
           "REDDISH_PURPLE": REDDISH_PURPLE, "GREY": GREY, "YELLOW": YELLOW}

# Relation types in drawings, legends and badges: the item-item relations in their specs' colours
# (NEXT, training transitions: vermillion; COLLAB sky blue; SIMILAR bluish green; ...), then the
# kinds that are not relations of the registry.
RELATION = {
    **{name: COLOURS[spec.legend.colour] for name, spec in RELATIONS.items() if spec.legend is not None},
    "PATH": ORANGE,             # a multi-hop chain of NEXT edges
    "HISTORY": GREY,
    "INTERACTED": GREY,
    "RECOMMENDED": REDDISH_PURPLE,
    "HIT": REDDISH_PURPLE,      # the held-out target in a top-K list
}

# Known models keep their colour across pages and runs; others take the remaining colours in name order.
MODEL = {"popularity": GREY, "markov": VERMILLION, "cooc": ORANGE, "sasrec": SKY_BLUE, "tiger": REDDISH_PURPLE}
_SPARE = [BLUISH_GREEN, "#0072B2", YELLOW, "#8C564B", "#7F7F7F", "#BCBD22"]

# Gain decomposition: positive vs negative contributions (blue/orange is the colour-blind-safe pair).
POSITIVE, NEGATIVE = SKY_BLUE, ORANGE


def segment_color(segment: str | None) -> str:
    return SEGMENT.get(segment or "", GREY)


def model_colors(models) -> dict[str, str]:
    """model -> colour for every model shown, stable: known models fixed, the rest sorted by name."""
    out, spare = {}, iter(_SPARE * 4)
    for model in sorted(set(models)):
        out[model] = MODEL.get(model) or next(spare)
    return out


def chip(label: str, color: str, *, title: str | None = None) -> str:
    """A small badge as HTML (for st.markdown(unsafe_allow_html=True)): black text on the colour reads in
    the light and the dark theme alike. `label` is escaped."""
    tip = f' title="{html.escape(title)}"' if title else ""
    return (f'<span{tip} style="background:{color};color:#000;border-radius:0.5rem;padding:0.05rem 0.45rem;'
            f'font-size:0.8em;font-weight:600;white-space:nowrap">{html.escape(label)}</span>')


def swatch(label: str, color: str, line: str = "━") -> str:
    """A legend entry as HTML: a coloured line glyph and the label in the page's own text colour."""
    return (f'<span style="color:{color};font-weight:700">{html.escape(line)}</span>&nbsp;'
            f'{html.escape(label)}')
