"""Recording a model: validate its ranked lists, score them, save them in the run folder.

A model (baseline, ensemble, TIGER, LLM) only hands in a ranked list per user (`user_id, item_id,
rank`, rank 1-based) and calls `record_model`. The evaluator ranks over *all* items (no sampled
negatives): a user whose target is not in the list scores 0, and users missing from the list count
as 0 (and are reported). See `evaluate.lists` for history removal and `evaluate.metrics` for the
metrics.

Outputs, per model folder `runs/<name>/models/<model>/`:
    recommendations_<split>.parquet   the evaluated lists (user_id, item_id, rank after history
                                      removal, model_rank as handed in, plus any score/source column)
    metrics_<split>.json              overall, per segment, memorization, one-hop hits
    info.json                         the config that produced the model, per split

The graph gets the lists as (:User)-[:RECOMMENDED {model, rank, split}]->(:Item) edges through
`write_recommendations`, on a store the command opened.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from common.files import write_json, write_parquet
from evaluate.cases import SPLITS, build_cases, next_keys
from evaluate.errors import EvaluationError
from evaluate.lists import evaluated_lists_frame, prepare_lists
from evaluate.metrics import KS, compute_metrics
from evaluate.segments import segments_for
from graph.export import Export, load_export
from graph.rundir import RunPaths, git_commit
from graph.store import GraphStore

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (Path, np.ndarray)):
        return str(value) if isinstance(value, Path) else value.tolist()
    return str(value)


def record_model(run: RunPaths, model: str, recommendations: pd.DataFrame, *, split: str = "test",
                 info: dict | None = None, keep_history: bool = False,
                 users: Iterable[str] | None = None, export: Export | None = None) -> dict:
    """Validate, evaluate and save a model's ranked lists (the graph gets them from
    `write_recommendations`).

    Args:
        recommendations: user_id, item_id, rank (1-based), optionally score and source.
        info: the config that produced the lists; saved in models/<model>/info.json.
        keep_history: do not remove history items from the lists (repeat-visit datasets).
        users: evaluate only these users (e.g. a seeded sample for a slow model); default all
            evaluated users of the split. Users of this set without a list score 0.
        export: an already loaded export of this run (default: load run/export).

    Returns:
        The metrics dict also written to models/<model>/metrics_<split>.json.

    Raises:
        EvaluationError: invalid lists (see `prepare_lists`) or model name.
    """
    if not MODEL_NAME.match(model):
        raise EvaluationError(f"model name {model!r} must be letters, digits, '.', '_' or '-'")
    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {SPLITS}, not {split!r}")
    export = load_export(run.export) if export is None else export
    cases = build_cases(export, split)  # type: ignore[arg-type]
    where = f"{model} recommendations ({split})"
    lists = prepare_lists(cases, recommendations, keep_history=keep_history, where=where)
    mask = None
    if users is not None:
        rows = cases.rows_of(users)
        if (rows < 0).any():
            raise EvaluationError(f"{where}: `users` holds {int((rows < 0).sum())} user(s) not "
                                  f"evaluated in split {split!r}")
        mask = np.zeros(cases.n_users, dtype=bool)
        mask[rows] = True
        if (lists.listed & ~mask).any():
            raise EvaluationError(f"{where}: lists for users outside the `users` subset")
    labels = segments_for(run, export, split, cases=cases)  # type: ignore[arg-type]
    metrics = compute_metrics(cases, lists, labels, next_keys(export, cases.n_items), evaluated=mask)
    metrics = {"model": model, "split": split, "keep_history": keep_history,
               "subset": users is not None, "dataset": export.manifest.get("dataset"),
               "dataset_checksum": export.manifest.get("dataset_checksum"), "ks": list(KS),
               **metrics,
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "git_commit": git_commit()}

    folder = run.model(model)
    folder.mkdir(parents=True, exist_ok=True)
    frame = evaluated_lists_frame(cases, lists)
    write_parquet(folder / f"recommendations_{split}.parquet", frame)
    if mask is not None:
        write_parquet(folder / f"users_{split}.parquet",
                       pd.DataFrame({"user_id": cases.user_ids[mask].astype(str)}))
    elif (folder / f"users_{split}.parquet").exists():
        (folder / f"users_{split}.parquet").unlink()
    write_json(folder / f"metrics_{split}.json", metrics, default=_json_default)
    info_path = folder / "info.json"
    saved = json.loads(info_path.read_text()) if info_path.exists() else {}
    saved.update({"model": model, "keep_history": keep_history})
    saved.setdefault("splits", {})[split] = {
        "config": info or {}, "recorded_at": metrics["created_at"], "git_commit": metrics["git_commit"]}
    write_json(info_path, saved, default=_json_default)
    compact = {k: v for k, v in (info or {}).items() if k not in ("history", "selection")}
    run.record_config(f"model.{model}.{split}", {"keep_history": keep_history, **compact,
                                                 "info": str(info_path)})
    return metrics


def recorded_lists(run: RunPaths, model: str, split: str) -> pd.DataFrame:
    """The evaluated lists `record_model` saved for this model and split."""
    path = run.model(model) / f"recommendations_{split}.parquet"
    if not path.exists():
        raise EvaluationError(f"{path} is missing: record model {model!r} on the {split} split first")
    return pd.read_parquet(path)


def write_recommendations(graph: GraphStore, model: str, split: str, frame: pd.DataFrame,
                          *, max_rank: int = max(KS)) -> int:
    """Replace the model's RECOMMENDED edges for this split with `frame` (ranks <= max_rank).

    Hold the run lock around the call: a build must not swap the store during the write.
    """
    from graph import analysis_queries as AQ

    rows = frame.loc[frame["rank"] <= max_rank, ["user_id", "item_id", "rank"]].assign(
        model=model, split=split)[["user_id", "item_id", "model", "rank", "split"]]
    rows["rank"] = rows["rank"].astype("int64")
    params = {"model": model, "split": split}
    if graph.dialect == "ladybug" and int(graph.run(AQ.COUNT_RECOMMENDED_QUERY, params)[0]["edges"]):
        # A performance difference, not a capability: LadybugDB deletes 10^5 edges one by one in
        # minutes, so a re-recorded model swaps the whole table instead (Neo4j deletes in seconds).
        _rebuild_recommended_ladybug(graph, params, rows)
        return len(rows)
    graph.run(AQ.DELETE_RECOMMENDED_QUERY, params)
    return graph.bulk_create("RECOMMENDED", rows, AQ.CREATE_RECOMMENDED_QUERY)


def _rebuild_recommended_ladybug(graph: GraphStore, params: dict, rows: pd.DataFrame) -> None:
    """Swap one model/split's edges: keep the others, re-create the table, COPY all back."""
    from graph import analysis_queries as AQ
    from graph.queries import TABLES_LADYBUG

    kept = graph.run_df(AQ.READ_OTHER_RECOMMENDED_QUERY_LADYBUG, params)
    graph.run(AQ.DROP_RECOMMENDED_TABLE_QUERY_LADYBUG)
    graph.run(TABLES_LADYBUG["RECOMMENDED"])
    graph.bulk_create("RECOMMENDED", pd.concat([kept.astype({"rank": "int64"}), rows], ignore_index=True),
                      AQ.CREATE_RECOMMENDED_QUERY)
