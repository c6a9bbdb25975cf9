"""The rows of a bench table with each value's ratio to a reference run, and the JSON save, shared by
the bench scripts that take `--save` / `--reference`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def add_ratio_rows(table, rows: list[tuple[str, Any, str]], names: list[str], results: dict, before: dict,
                   value: Callable[[dict, Any], float | None], *, skip_empty: bool = False) -> None:
    """One table row per (label, key, format): each column `name` shows value(results[name], key),
    followed by "(N.NNx ref)" when the reference run `before` has a non-zero value for it."""
    for label, key, fmt in rows:
        cells = []
        for name in names:
            now = value(results[name], key)
            cell = fmt.format(now) if now is not None else "-"
            old = value(before[name], key) if name in before and now else None
            if old:
                cell += f" ({now / old:.2f}x ref)"
            cells.append(cell)
        if not skip_empty or any(c != "-" for c in cells):
            table.add_row(label, *cells)


def save_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"saved {path}")
