"""`iirg data | tiny-model | train | evaluate`: IIRG instruction data, LoRA fine-tuning, evaluation.

    iirg data       --run runs/ml-100k [--tasks nip,collab,semantic] [--weights 1,1,1] [--item-repr sid]
    iirg tiny-model --run runs/ml-100k [--pretrain-steps 300] [--item-repr sid]   # CPU model, no downloads
    iirg train      --run runs/ml-100k --model runs/ml-100k/llm/tiny [--tasks nip] [--max-steps 500]
    iirg evaluate   --run runs/ml-100k --adapter runs/ml-100k/llm/adapters/iirg

Options come from the config dataclasses (DataConfig, TinyModelConfig, TrainConfig, EvaluateConfig)
through `common.config`: their defaults, then an optional `--config file.toml` table ([data], [tiny],
[train], [evaluate]), then the flags given on the command line. Heavy imports (torch, transformers)
happen in handlers.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from common.config import add_config_flags, config_from_args
from common.errors import IirgError


def _print_table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


# ------------------------------------------------------------------ handlers

def run_data(args, ctx) -> int:
    from graph.export import load_export
    from train.llm.data import DataConfig, write_instruction_data
    from train.llm.prompts import TASK_NAMES

    config = config_from_args(DataConfig, args, table="data")
    out = Path(args.out) if args.out else ctx.run.llm / "data"
    export = load_export(ctx.run.export)
    meta = write_instruction_data(export, config, out)
    ctx.run.record_config("llm_data", {"out": str(out), **config.to_dict(), "counts": meta["counts"]})
    rows = [[t, TASK_NAMES[t], w, meta["counts"][t]] for t, w in config.task_weights.items()]
    rows.append(["valid", "next item (valid split, model selection)", "-", meta["counts"]["valid"]])
    _print_table(f"instruction data -> {out}  (items as {config.item_repr}, nip mode: {config.nip_mode}, "
                 f"max history {config.max_history}, users {meta['users']})",
                 ["task", "what", "weight", "samples"], rows)
    return 0


def run_tiny(args, ctx) -> int:
    import json

    from graph.export import load_export
    from train.llm.data import load_item_sids
    from train.llm.tiny import TinyModelConfig, build_tiny_model

    config = config_from_args(TinyModelConfig, args, table="tiny")
    if config.item_repr is None:  # as the run's instruction data, else titles
        meta_path = ctx.run.llm / "data" / "data_config.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        config.item_repr = meta.get("config", {}).get("item_repr", "title")
    out = Path(args.out) if args.out else ctx.run.llm / "tiny"
    export = load_export(ctx.run.export)
    sids, sid_file = load_item_sids(export) if config.item_repr == "sid" else (None, None)
    summary = build_tiny_model(export.items["title"].tolist(), out, config,
                               sids=[sids[i] for i in export.items["item_id"]] if sids else None,
                               source={"run": str(ctx.run.root), "dataset": export.manifest.get("dataset"),
                                       "sid_file": sid_file})
    ctx.run.record_config("llm_tiny_model", {"out": str(out), **summary["config"]})
    _print_table(f"tiny model -> {out}  (items as {config.item_repr})", ["", "value"], [
        ["parameters", summary["parameters"]], ["vocabulary", summary["vocab_size"]],
        ["SID code tokens", summary["sid_tokens"]],
        ["items", summary["items"]], ["tokens per item (mean / max)",
                                      f"{summary['item_tokens']['mean']} / {summary['item_tokens']['max']}"],
        ["pre-training loss (first -> last)",
         f"{summary['pretrain_loss']['first']} -> {summary['pretrain_loss']['last']}"]])
    return 0


def default_run_name(data_dir: Path, tasks) -> str:
    """iirg when the three default tasks are trained, else the tasks joined (nip, nip-collab, ...)."""
    import json

    from train.llm.prompts import DEFAULT_TASKS

    if not tasks:
        meta_path = data_dir / "data_config.json"
        tasks = json.loads(meta_path.read_text())["config"]["tasks"] if meta_path.exists() else DEFAULT_TASKS
    return "iirg" if set(tasks) == set(DEFAULT_TASKS) else "-".join(tasks)


def run_train(args, ctx) -> int:
    from train.llm.finetune import TrainConfig, finetune

    config = config_from_args(TrainConfig, args, table="train")
    if not config.model:
        raise IirgError("--model is required (a local folder such as runs/<name>/llm/tiny, or a hub id)")
    config.data = config.data or str(ctx.run.llm / "data")
    name = args.name or default_run_name(Path(config.data), config.tasks)
    config.out = config.out or str(ctx.run.llm / "adapters" / name)
    result = finetune(config)
    if ctx.env.get("RANK", "0") != "0":  # data-parallel launch (torchrun/accelerate): rank 0 reports
        return 0
    ctx.run.record_config(f"llm_train:{name}", config.to_dict())
    m = result.metrics
    what = "whole model" if config.method == "full" else "LoRA adapter"
    _print_table(f"{what} -> {result.out}", ["", "value"], [
        ["optimizer steps (this run)", f"{m['global_step']} ({m['steps_this_run']})"],
        ["resumed from step", m["resumed_from_step"]], ["training loss", m["train_loss"]],
        ["tokens/s", round(m["tokens_per_s"] or 0, 1)], ["samples per task", m["samples"]],
        ["best valid Recall@10", m["best_valid_recall@10"]], ["selected", m["selected"]]])
    return 0


def run_evaluate(args, ctx) -> int:
    from evaluate.commands import graph_store, write_model_to_graph
    from train.llm.evaluation import EvaluateConfig, evaluate_llm

    config = config_from_args(EvaluateConfig, args, table="evaluate")
    # Recommendations go to the graph too when the run has one (or Neo4j was given).
    store = graph_store(args, ctx)
    result = evaluate_llm(ctx.run, config)
    if store is not None:
        write_model_to_graph(ctx, store, result["model"], config.split)
    ctx.run.record_config(f"llm_evaluate:{result['model']}", dataclasses.asdict(config))
    metrics = result["metrics"]
    overall = metrics.get("overall", metrics) if isinstance(metrics, dict) else {}
    rows = [[k, v] for k, v in overall.items() if isinstance(v, (int, float))]
    d = result["decode"]
    rows += [["invalid rate", d["invalid_rate"]], ["users/s", d["users_per_s"]], ["users", d["users"]]]
    _print_table(f"{result['model']} on {config.split}", ["metric", "value"], rows)
    return 0


# ------------------------------------------------------------------ registration

def register(sub, common) -> None:
    """Add data, tiny-model, train and evaluate."""
    from train.llm.data import DataConfig
    from train.llm.evaluation import EvaluateConfig
    from train.llm.finetune import TrainConfig
    from train.llm.tiny import TinyModelConfig

    p = sub.add_parser("data", parents=[common["run"]], help="IIRG instruction data from the run's export",
                       description=_doc_of("train.llm.data"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p, DataConfig, table="data")
    p.add_argument("--out", help="output folder (default: <run>/llm/data)")
    p.set_defaults(handler=run_data)

    p = sub.add_parser("tiny-model", parents=[common["run"]],
                       help="build a small Llama model + BPE tokenizer on the item titles (CPU, offline)",
                       description=_doc_of("train.llm.tiny"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p, TinyModelConfig, table="tiny")
    p.add_argument("--out", help="model folder (default: <run>/llm/tiny)")
    p.set_defaults(handler=run_tiny)

    p = sub.add_parser("train", parents=[common["run"]], help="LoRA fine-tuning on instruction data",
                       description=_doc_of("train.llm.finetune"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p, TrainConfig, table="train")
    p.add_argument("--name", help="adapter name (default: iirg for all tasks, else the tasks, e.g. nip)")
    p.set_defaults(handler=run_train)

    p = sub.add_parser("evaluate", parents=[common["run"], common["store"]],
                       help="constrained generation for held-out users -> shared evaluator -> report")
    add_config_flags(p, EvaluateConfig, table="evaluate")
    p.add_argument("--no-graph", action="store_true", help="do not write RECOMMENDED edges")
    p.set_defaults(handler=run_evaluate)


def _doc_of(module: str) -> str:
    import importlib

    return (importlib.import_module(module).__doc__ or "").strip()
