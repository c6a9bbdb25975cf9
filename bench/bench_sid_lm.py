"""Benchmark: the tiny LLM with items as semantic IDs vs as titles, on the same users, side by side.

    .venv/bin/python bench/bench_sid_lm.py --run runs/ml-100k            # needs `iirg build` + `iirg sid`
    .venv/bin/python bench/bench_sid_lm.py --run runs/ml-100k --train-steps 60 --decode-users 128 --json out.json

For each item representation (`iirg data --item-repr title|sid`), in one process:
- a tiny model (`iirg tiny-model` default size; `--item-repr sid` adds the SID code tokens to its
  vocabulary), pre-trained for `--pretrain-steps` on item texts only (speed does not need more);
- instruction data on ALL users (nip + collab + semantic, the IIRG tasks), as `iirg data` writes it:
  samples per task and answer+prompt tokens per sample (mean over a seeded sample of 2,000 per task),
  hence the tokens of one IIRG epoch and of one NIP-only epoch;
- LoRA training (`finetune`, LoRA r 64 as in configs/tiny_cpu.toml; SID rows trainable for sid) for
  `--train-steps` steps on the whole data: tokens/s and samples/s of training only (no valid
  decoding), the set-up time (loading + tokenizing every sample), and the projected hours per epoch;
- constrained beam search (`recommend`, the evaluator's path) for the first `--decode-users` test
  users, the same users for both: users/s, generation steps per batch, invalid rate (must be 0).
The two representations alternate over `--repeats` decoding rounds (median reported), so a burst of
load from other jobs hits both alike. The load average is printed: other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

REPRS = ("title", "sid")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def mean_tokens(tokenizer, rows: list[dict], n: int = 2000, seed: int = 0) -> float:
    """Mean prompt + answer tokens of a seeded sample of rows (what the trainer sees per sample)."""
    from train.llm.finetune import encode_samples

    sample = random.Random(seed).sample(rows, min(n, len(rows)))
    encoded, _ = encode_samples(tokenizer, sample, 10**9)
    return statistics.fmean(len(e["input_ids"]) for e in encoded)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder with an export and SIDs (iirg build, iirg sid)")
    parser.add_argument("--max-history", type=int, default=20, help="history items per prompt (iirg data default)")
    parser.add_argument("--pretrain-steps", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--decode-users", type=int, default=64)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="users per generate call")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved decoding rounds (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import torch

    from evaluate.cases import eval_cases
    from graph.export import load_export
    from graph.rundir import RunPaths
    from train.llm.data import (DataConfig, item_texts, load_instruction_data, load_item_sids, select_users,
                                write_instruction_data)
    from train.llm.decode import DecodeConfig, ItemTrie, recommend
    from train.llm.finetune import TrainConfig, finetune
    from train.llm.modeling import load_adapter_model, load_tokenizer
    from train.llm.tiny import TinyModelConfig, build_tiny_model

    torch.set_num_threads(args.threads)
    console = Console()
    run = RunPaths.of(args.run)
    export = load_export(run.export)
    sids, _ = load_item_sids(export)
    titles = export.items["title"].tolist()
    scratch = Path(tempfile.mkdtemp(prefix="bench_sid_lm."))
    cases = eval_cases(export, "test")
    cases = cases[cases["user_id"].isin(select_users(cases["user_id"], args.decode_users))]
    cases = [{"user_id": u, "history": list(h)} for u, h in zip(cases["user_id"], cases["history"])]
    console.print(f"load average before: {load()}  ({args.threads} torch thread(s), scratch {scratch})")

    out: dict[str, dict] = {}
    models = {}
    for item_repr in REPRS:
        row: dict = {}
        model_dir = scratch / f"tiny-{item_repr}"
        start = time.perf_counter()
        summary = build_tiny_model(titles, model_dir, TinyModelConfig(item_repr=item_repr,
                                                                       pretrain_steps=args.pretrain_steps),
                                   sids=[sids[i] for i in export.items["item_id"]] if item_repr == "sid" else None)
        row["tiny_build_s"] = time.perf_counter() - start
        row["parameters"] = summary["parameters"]
        row["vocabulary"] = summary["vocab_size"]
        row["tokens_per_item"] = summary["item_tokens"]["mean"]

        data_dir = scratch / f"data-{item_repr}"
        start = time.perf_counter()
        meta = write_instruction_data(export, DataConfig(item_repr=item_repr, max_history=args.max_history), data_dir)
        row["data_s"] = time.perf_counter() - start
        data = load_instruction_data(data_dir)
        tokenizer = load_tokenizer(str(model_dir), padding_side="right")
        row["users"] = meta["users"]
        row["samples"] = {t: len(r) for t, r in data.train.items()}
        row["tokens_per_sample"] = {t: mean_tokens(tokenizer, r) for t, r in data.train.items()}
        row["epoch_tokens_iirg"] = sum(row["samples"][t] * row["tokens_per_sample"][t] for t in data.train)
        row["epoch_tokens_nip"] = row["samples"]["nip"] * row["tokens_per_sample"]["nip"]

        start = time.perf_counter()
        trained = finetune(TrainConfig(model=str(model_dir), data=str(data_dir), out=str(scratch / f"adapter-{item_repr}"),
                                       max_steps=args.train_steps, save_steps=args.train_steps, eval_users=0,
                                       batch_size=args.train_batch_size, lora_r=64, lora_alpha=128, lr=2e-3,
                                       logging_steps=args.train_steps, threads=args.threads))
        m = trained.metrics
        row["train_setup_s"] = time.perf_counter() - start - m["train_runtime_s"]
        row["train_tokens_per_s"] = m["tokens_per_s"]
        row["train_samples_per_s"] = args.train_steps * args.train_batch_size / m["train_runtime_s"]
        row["trainable_parameters"] = m["trainable_parameters"]
        row["epoch_hours_iirg"] = row["epoch_tokens_iirg"] / m["tokens_per_s"] / 3600
        row["epoch_hours_nip"] = row["epoch_tokens_nip"] / m["tokens_per_s"] / 3600
        decode_tokenizer = load_tokenizer(str(scratch / f"adapter-{item_repr}"))
        model = load_adapter_model(str(model_dir), str(scratch / f"adapter-{item_repr}"),
                                   vocab_size=len(decode_tokenizer))
        texts = item_texts(export.items, item_repr, sids)
        trie = ItemTrie.from_texts(decode_tokenizer, list(texts), list(texts.values()))
        models[item_repr] = (model, decode_tokenizer, trie, texts)
        row["decode"] = []
        out[item_repr] = row
        console.print(f"{item_repr}: model, data and training done; load average {load()}")

    for _ in range(args.repeats):
        for item_repr in REPRS:
            model, tokenizer, trie, texts = models[item_repr]
            result = recommend(model, tokenizer, trie, texts, cases, args.max_history,
                               DecodeConfig(num_beams=args.num_beams, batch_size=args.batch_size), progress=False)
            out[item_repr]["decode"].append(result.stats)
    for item_repr in REPRS:
        runs = out[item_repr]["decode"]
        seconds = statistics.median(s["seconds"] for s in runs)
        out[item_repr]["decode_users_per_s"] = len(cases) / seconds
        out[item_repr]["decode_steps_per_batch"] = statistics.median(s["decode_steps"] for s in runs) \
            / -(-len(cases) // args.batch_size)
        out[item_repr]["decode_ms_per_step"] = 1000 * seconds / statistics.median(s["decode_steps"] for s in runs)
        out[item_repr]["invalid_rate"] = max(s["invalid_rate"] for s in runs)
        out[item_repr]["all_test_users_minutes"] = len(export.interactions["user_id"].unique()) \
            / out[item_repr]["decode_users_per_s"] / 60

    t, s = out["title"], out["sid"]
    table = Table(title=f"tiny LLM, items as titles vs semantic IDs: {run.root.name}, all {t['users']} users, "
                        f"max history {args.max_history}, {args.threads} thread(s)")
    for column in ("", "title", "sid", "sid / title"):
        table.add_column(column, justify="left" if not column else "right")

    def add(label, key=None, fmt="{:.1f}", value=None, ratio=True):
        a, b = value if value else (t[key], s[key])
        table.add_row(label, fmt.format(a), fmt.format(b), f"{b / a:.2f}x" if ratio and a else "-")

    add("parameters (vocabulary)", value=(t["parameters"], s["parameters"]), fmt="{:,.0f}")
    add("vocabulary", "vocabulary", "{:,.0f}")
    add("tokens per item (+ EOS)", "tokens_per_item", "{:.2f}")
    for task in t["samples"]:
        add(f"{task}: samples", value=(t["samples"][task], s["samples"][task]), fmt="{:,.0f}")
        add(f"{task}: tokens per sample", value=(t["tokens_per_sample"][task], s["tokens_per_sample"][task]))
    add("tokens per epoch, IIRG (M)", value=(t["epoch_tokens_iirg"] / 1e6, s["epoch_tokens_iirg"] / 1e6), fmt="{:.2f}")
    add("tokens per epoch, NIP-only (M)", value=(t["epoch_tokens_nip"] / 1e6, s["epoch_tokens_nip"] / 1e6), fmt="{:.2f}")
    add("trainable parameters (LoRA + SID rows)", "trainable_parameters", "{:,.0f}")
    add(f"training tokens/s (batch {args.train_batch_size})", "train_tokens_per_s", "{:,.0f}")
    add("training samples/s", "train_samples_per_s")
    add("training set-up s (load + tokenize all)", "train_setup_s")
    add("hours per epoch, IIRG (projected)", "epoch_hours_iirg", "{:.2f}")
    add("hours per epoch, NIP-only (projected)", "epoch_hours_nip", "{:.2f}")
    add(f"decoding users/s ({args.num_beams} beams, batch {args.batch_size})", "decode_users_per_s", "{:.2f}")
    add("generation steps per batch", "decode_steps_per_batch")
    add("ms per generation step", "decode_ms_per_step")
    add("minutes to decode all users (one split)", "all_test_users_minutes", "{:.1f}")
    add("invalid rate (must be 0)", "invalid_rate", "{:.3f}", ratio=False)
    console.print(table)
    console.print(f"load average after: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": out,
                                               "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
