"""Benchmark: trie-constrained vs unconstrained beam search, and LoRA training throughput, on real data.

    .venv/bin/python bench/bench_llm.py --run runs/ml-100k            # needs `iirg build` output
    .venv/bin/python bench/bench_llm.py --run runs/ml-100k --model runs/ml-100k/llm/tiny --adapter ...

Decoding: the same model, beam width, batch size and users for every variant, run in one process,
interleaved over `--repeats` rounds (the median is reported, so a burst of load from other jobs
hits all variants alike):
    none      unconstrained beam search (the baseline: the cost of the constraint is relative to it)
    mask      the vectorized trie logits mask (train.llm.decode.TrieLogitsProcessor), the default
    callback  transformers' prefix_allowed_tokens_fn with a per-beam Python trie walk
Each variant reports users/s and ms per generation step: unconstrained beams may stop at a
different length than constrained ones, so the per-step time is the like-for-like cost.

Training: `finetune` (LoRA, Trainer, weighted loss) for `--train-steps` steps on next-item samples;
tokens/s counts the non-padding tokens of every micro-batch.

Without --model, a tiny model (the `iirg tiny-model` default size, 300 title pre-training steps)
is built in a temporary folder, so the bench needs nothing but the run's export.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder with an export (iirg build)")
    parser.add_argument("--model", help="base model folder (default: build a tiny model)")
    parser.add_argument("--adapter", help="LoRA adapter to decode with (default: the bare model)")
    parser.add_argument("--users", type=int, default=32, help="test users decoded per variant")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-history", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import torch

    from graph.export import load_export
    from graph.rundir import RunPaths
    from evaluate.cases import eval_cases
    from train.llm.data import DataConfig, item_texts, select_users, write_instruction_data
    from train.llm.decode import DecodeConfig, ItemTrie, recommend
    from train.llm.finetune import TrainConfig, finetune
    from train.llm.modeling import load_adapter_model, load_tokenizer
    from train.llm.tiny import TinyModelConfig, build_tiny_model

    torch.set_num_threads(args.threads)
    run = RunPaths.of(args.run)
    export = load_export(run.export)
    scratch = Path(tempfile.mkdtemp(prefix="bench_llm."))
    model_dir = args.model
    if model_dir is None:
        model_dir = str(scratch / "tiny")
        build_tiny_model(export.items["title"].tolist(), model_dir, TinyModelConfig())
    tokenizer = load_tokenizer(model_dir)
    model = load_adapter_model(model_dir, args.adapter)
    texts = item_texts(export.items, "title")
    trie = ItemTrie.from_texts(tokenizer, list(texts), list(texts.values()))
    cases = eval_cases(export, "test")
    cases = cases[cases["user_id"].isin(select_users(cases["user_id"], args.users))]
    cases = [{"user_id": u, "history": list(h)} for u, h in zip(cases["user_id"], cases["history"])]

    variants = ["none", "mask", "callback"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            config = DecodeConfig(num_beams=args.num_beams, batch_size=args.batch_size, constraint=variant)
            result = recommend(model, tokenizer, trie, texts, cases, args.max_history, config,
                               progress=False)
            runs[variant].append(result.stats)

    def median(variant: str, key: str) -> float:
        return statistics.median(s[key] for s in runs[variant])

    decode_rows = []
    base_step = median("none", "seconds") / max(median("none", "decode_steps"), 1)
    base_user = median("none", "seconds") / len(cases)
    for variant in variants:
        seconds = median(variant, "seconds")
        steps = median(variant, "decode_steps")
        decode_rows.append({
            "variant": variant, "users_per_s": len(cases) / seconds, "seconds": seconds,
            "steps": steps, "ms_per_step": 1000 * seconds / max(steps, 1),
            "time_vs_none": (seconds / len(cases)) / base_user,
            "step_time_vs_none": (seconds / max(steps, 1)) / base_step,
            "invalid_rate": statistics.median(s["invalid_rate"] for s in runs[variant])})

    processor_rows = processor_costs(trie, cases, args, len(tokenizer))

    data_dir = scratch / "data"
    write_instruction_data(export, DataConfig(tasks=("nip",), max_users=100, max_history=args.max_history),
                           data_dir)
    train = finetune(TrainConfig(model=model_dir, data=str(data_dir), out=str(scratch / "adapter"),
                                 max_steps=args.train_steps, save_steps=args.train_steps, eval_users=0,
                                 batch_size=args.train_batch_size, logging_steps=max(1, args.train_steps)))
    m = train.metrics

    console = Console()
    table = Table(title=f"beam search, {len(cases)} users, {args.num_beams} beams, batch {args.batch_size}, "
                        f"{args.threads} thread(s), median of {args.repeats}")
    for column in ("variant", "users/s", "steps", "ms/step", "time vs none", "step time vs none", "invalid rate"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for r in decode_rows:
        table.add_row(r["variant"], f"{r['users_per_s']:.2f}", f"{r['steps']:.0f}", f"{r['ms_per_step']:.1f}",
                      f"{r['time_vs_none']:.2f}x", f"{r['step_time_vs_none']:.2f}x", f"{r['invalid_rate']:.3f}")
    console.print(table)
    table = Table(title=f"constraint cost per generation step, processor only ({args.batch_size} users x "
                        f"{args.num_beams} beams = {args.batch_size * args.num_beams} rows)")
    for column in ("vocabulary", "answer tokens so far", "mask ms", "callback ms"):
        table.add_column(column, justify="right")
    for r in processor_rows:
        table.add_row(str(r["vocab"]), str(r["depth"]), f"{r['mask_ms']:.1f}", f"{r['callback_ms']:.1f}")
    console.print(table)
    table = Table(title=f"LoRA training, {args.train_steps} steps, batch {args.train_batch_size}")
    for column in ("model", "parameters (trainable)", "tokens", "seconds", "tokens/s"):
        table.add_column(column, justify="right" if column != "model" else "left")
    table.add_row(Path(model_dir).name, str(m["trainable_parameters"]), str(m["tokens_seen"]),
                  f"{m['train_runtime_s']:.1f}", f"{m['tokens_per_s']:.0f}")
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"decode": decode_rows, "processor": processor_rows, "train": m, "args": vars(args),
                                               "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2,
                                              default=str))
    return 0


def processor_costs(trie, cases, args, vocab: int, repeats: int = 5) -> list[dict]:
    """Time one call of each constraint on real beam states, without the model.

    Rows follow random item prefixes of the given depth (items outside each user's history, so
    every state is reachable). The score matrices are copied before timing: beam search hands the
    processor its own log-prob tensor, so the copy is not part of the constraint's cost. The second
    vocabulary size is Qwen2.5's, to show the cost at a real LLM's vocabulary.
    """
    import random
    import time as clock

    import torch
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    from train.llm.decode import TrieLogitsProcessor, callback_constraint

    rng = random.Random(0)
    users = cases[:args.batch_size]
    excluded = [trie.index_of(c["history"]) for c in users]
    rows = len(users) * args.num_beams
    prompt = torch.zeros((rows, 8), dtype=torch.long)
    out = []
    for size in (vocab, 151_936):
        for depth in (1, 5, 10):
            answers = []
            for u in range(len(users)):
                allowed = [s for i, s in enumerate(trie.sequences) if len(s) > depth and i not in set(excluded[u])]
                answers += [rng.choice(allowed)[:depth] for _ in range(args.num_beams)]
            ids = torch.cat([prompt, torch.tensor(answers)], 1)
            result = {"vocab": size, "depth": depth}
            eos = trie.sequences[0][-1]
            for name, proc in (("mask", TrieLogitsProcessor(trie, 8, args.num_beams, excluded)),
                               ("callback", PrefixConstrainedLogitsProcessor(
                                   callback_constraint(trie, 8, excluded, eos), args.num_beams))):
                scores = [torch.randn(rows, size) for _ in range(repeats + 1)]
                proc(ids, scores[0])
                start = clock.perf_counter()
                for s in scores[1:]:
                    proc(ids, s)
                result[f"{name}_ms"] = 1000 * (clock.perf_counter() - start) / repeats
            out.append(result)
    return out


if __name__ == "__main__":
    sys.exit(main())
