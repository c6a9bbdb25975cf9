"""The item-item relations of the graph: one module per relation, registered here.

    from graph.relations import RELATIONS, relation
    RELATIONS["COLLAB"].task.instruction
    for spec in enabled_relations(config): ...

Adding a relation: write graph/relations/<name>.py with one `RELATION = Relation(...)` (see
graph/relations/spec.py, and shares_meta.py for a complete example), then add it to `_REGISTERED`
below. Build, schema, export, `iirg export`, the instruction task and the dashboard's legend and
item view follow from the spec. The order below is the order of export files, tasks and legends;
the build order also honours each spec's `build_after`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graph.relations import collab, shares_meta, similar, transitions
from graph.relations.spec import BuildContext, Column, ItemView, Legend, Relation, Task

if TYPE_CHECKING:
    from graph.config import GraphConfig

_REGISTERED: tuple[Relation, ...] = (
    transitions.RELATION,
    collab.RELATION,
    similar.RELATION,
    shares_meta.RELATION,
)

RELATIONS: dict[str, Relation] = {spec.name: spec for spec in _REGISTERED}
OPTIONAL_RELATIONS: tuple[str, ...] = tuple(name for name, spec in RELATIONS.items() if spec.optional)

__all__ = ["BuildContext", "Column", "ItemView", "Legend", "OPTIONAL_RELATIONS", "RELATIONS", "Relation",
           "Task", "build_order", "enabled_relations", "relation", "task_relations"]


def relation(name: str) -> Relation:
    try:
        return RELATIONS[name]
    except KeyError:
        raise KeyError(f"unknown relation {name!r}; known: {', '.join(RELATIONS)}") from None


def enabled_relations(config: "GraphConfig") -> list[Relation]:
    """The relations a build with `config` makes and exports, in registry order.

    Raises:
        ValueError: config.extra_relations names a relation that is unknown or not optional.
    """
    unknown = [name for name in config.extra_relations if name not in OPTIONAL_RELATIONS]
    if unknown:
        raise ValueError(f"unknown extra relation(s) {unknown}; optional relations: "
                         f"{', '.join(OPTIONAL_RELATIONS) or 'none'}")
    return [spec for spec in RELATIONS.values() if spec.enabled(config)]


def build_order(specs: list[Relation]) -> list[Relation]:
    """`specs` ordered so that every relation comes after those in its `build_after` (when built at
    all); otherwise registry order."""
    names = {spec.name for spec in specs}
    done: list[Relation] = []
    waiting = list(specs)
    while waiting:
        ready = [s for s in waiting if all(d in {x.name for x in done} or d not in names for d in s.build_after)]
        if not ready:
            raise ValueError(f"relations wait for each other: {[s.name for s in waiting]}")
        done.append(ready[0])
        waiting.remove(ready[0])
    return done


def task_relations() -> dict[str, Relation]:
    """Instruction task name -> the relation it is made from (registry order)."""
    return {spec.task.name: spec for spec in RELATIONS.values() if spec.task is not None}
