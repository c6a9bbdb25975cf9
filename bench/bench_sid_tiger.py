"""Benchmark: semantic IDs (rq-kmeans vs rq-vae) and TIGER (training, trie-constrained vs unconstrained
beam search) on real data.

    .venv/bin/python bench/bench_sid_tiger.py --sid-runs runs/ml-100k runs/amazon-office runs/yelp \
        --tiger-runs runs/ml-100k runs/amazon-office
    .venv/bin/python bench/bench_sid_tiger.py ... --reference bench/results/sid_tiger.json --save /tmp/new.json

Needs `iirg build` output (the item embeddings live on the graph's Item nodes). The run folders are
only read, except `models/tiger/` of the --tiger-runs, which `tiger.train` writes: pass copies of
runs someone else is using.

Part 1, semantic IDs (train/sid.py), per run: seconds of `rq_kmeans` and of `rq_vae` (SIDConfig's
default epochs; once per --rq-vae-threads value) on the same embeddings, the collision rate before
disambiguation, and codebook use per level (codes used / size, perplexity). `--kmeans-variants` adds
residual k-means with other settings (same seeds), interleaved with `rq_kmeans` over --sid-repeats
rounds, with the share of items whose codes equal the shipped function's (1.0 = equivalent). The
default variant, blas1, is the proposed fix: the same KMeans with BLAS capped at one thread (k-means++
initialisation is many tiny float64 BLAS calls, which two BLAS threads make 3-5x slower on a busy
2-core machine; see rq_kmeans_with).
Part 2, TIGER training (train/baselines/tiger.py `train`, default TIGERConfig, --threads): about
--train-steps optimizer steps (whole epochs, capped by --train-budget-min); samples/s counts training
time only (not the valid evaluations early stopping runs).
Part 3, decoding with that model (or, with --reuse-model, with models/tiger/last.pt left by an
earlier run, to repeat the decoding comparison with more --repeats without training again): `recommend(..., constrained=True)` and `constrained=False` on the same
test users, beams and batch size, interleaved over --repeats rounds (median reported, so a burst of
load from other jobs hits both alike). Both run exactly n_codes decoder steps (min = max new tokens),
so users/s compares like with like. The constrained invalid rate must be 0.

Every table shows the ratio between variants measured in the same run (rq-vae / rq-kmeans,
constrained / unconstrained) and, with --reference, "(x ref)" against an earlier saved run.
The load average (os.getloadavg) is recorded before and after each part: other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------------------------
# Part 1: semantic IDs
# --------------------------------------------------------------------------------------------
def rq_kmeans_with(x, levels: int, k: int, seed: int, blas_threads: int | None = None, **kmeans):
    """train.sid.rq_kmeans with other settings: (codes, final mean residual norm).

    blas_threads: cap BLAS (not OpenMP) threads around each fit: the proposed fix. k-means++
    initialisation computes distances in small float64 chunks (scikit-learn upcasts float32 input),
    i.e. many tiny BLAS calls whose threads spin against each other on a busy machine; Lloyd's
    iterations run in scikit-learn's own OpenMP loop, which keeps its threads.
    kmeans: keyword arguments for sklearn's KMeans (algorithm, max_iter, ...); with `minibatch=True`,
    MiniBatchKMeans instead. Same seeds as rq_kmeans.
    """
    import contextlib

    import numpy as np
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    options = {"n_init": 1, "max_iter": 100, **kmeans}
    cls = MiniBatchKMeans if options.pop("minibatch", False) else KMeans
    k = min(k, len(x))
    residual = x.astype(np.float32, copy=True)
    codes = np.zeros((len(x), levels), dtype=np.int64)
    for level in range(levels):
        with (threadpool_limits(blas_threads, user_api="blas") if blas_threads else contextlib.nullcontext()):
            km = cls(n_clusters=k, random_state=seed + level, **options).fit(residual)
        codes[:, level] = km.labels_
        residual -= km.cluster_centers_[km.labels_].astype(np.float32)
    return codes, float(np.linalg.norm(residual, axis=1).mean())


KMEANS_VARIANTS = {
    "blas1": {"blas_threads": 1},                 # the proposed fix: same KMeans, BLAS on one thread
    "elkan": {"algorithm": "elkan"},
    "lloyd-iter30": {"max_iter": 30},
    "minibatch": {"minibatch": True, "batch_size": 4096},
}


def sid_part(run_dir: Path, args) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from graph.export import load_export
    from graph.rundir import RunPaths
    from graph.store import StoreConfig, open_store
    from train.sid import SIDConfig, codebook_usage, disambiguate, read_embeddings, rq_kmeans, rq_vae

    run = RunPaths.of(run_dir)
    export = load_export(run.export)
    out: dict = {"load_before": load()}
    started = time.perf_counter()
    with open_store(StoreConfig(path=run.store), read_only=True) as graph:
        x = read_embeddings(graph, export.items["item_id"].astype(str).to_numpy())
    out["read_embeddings_s"] = time.perf_counter() - started
    cfg = SIDConfig(threads=args.threads)
    k = cfg.codes_per_level(len(x))
    out.update(n_items=len(x), dim=int(x.shape[1]), codes_per_level=k, levels=cfg.levels,
               rq_vae_epochs=cfg.epochs)

    def summarize(codes, seconds: float, extra: dict) -> dict:
        full, collisions = disambiguate(codes)
        return {"seconds": seconds, **collisions, "usage": codebook_usage(full, k), **extra}

    # k-means: the shipped function and the variants interleaved over --sid-repeats rounds (median)
    times: dict[str, list[float]] = {}
    found: dict[str, tuple] = {}
    with threadpool_limits(args.threads):  # scikit-learn's OpenMP/BLAS threads, like torch's
        for _ in range(args.sid_repeats):
            messages: list[str] = []
            started = time.perf_counter()
            codes = rq_kmeans(x, cfg.levels, k, cfg.seed, log=messages.append)
            times.setdefault("rq-kmeans", []).append(time.perf_counter() - started)
            found["rq-kmeans"] = (codes, float(messages[-1].rsplit(" ", 1)[-1]))
            for name in args.kmeans_variants:
                started = time.perf_counter()
                found[name] = rq_kmeans_with(x, cfg.levels, k, cfg.seed, **KMEANS_VARIANTS[name])
                times.setdefault(name, []).append(time.perf_counter() - started)
            print(f"  {run_dir.name}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()), flush=True)
        base = found["rq-kmeans"][0]
        for name, (codes, residual) in found.items():
            key = "rq-kmeans" if name == "rq-kmeans" else f"rq-kmeans/{name}"
            extra = {"residual_norm": residual, "seconds_all_rounds": times[name]}
            if name != "rq-kmeans":
                extra.update(same_codes_as_rq_kmeans=float((codes == base).all(axis=1).mean()),
                             same_level1_as_rq_kmeans=float((codes[:, 0] == base[:, 0]).mean()))
            out[key] = summarize(codes, statistics.median(times[name]), extra)
        for threads in args.rq_vae_threads if not args.skip_rq_vae else []:
            vae_cfg = SIDConfig(method="rq-vae", threads=threads)
            with threadpool_limits(threads):
                started = time.perf_counter()
                codes, summary = rq_vae(x, vae_cfg, progress=False, log=lambda m: None)
                seconds = time.perf_counter() - started
            key = "rq-vae" if threads == args.threads else f"rq-vae/{threads} thread(s)"
            out[key] = summarize(codes, seconds, {"training": summary, "threads": threads})
            print(f"  {run_dir.name}: {key} {seconds:.1f} s", flush=True)
    out["load_after"] = load()
    return out


# --------------------------------------------------------------------------------------------
# Parts 2 and 3: TIGER training and decoding
# --------------------------------------------------------------------------------------------
def tiger_part(run_dir: Path, args) -> dict:
    import numpy as np
    import torch

    from graph.export import load_export
    from graph.rundir import RunPaths
    from train.baselines.tiger import (LAST_STATE, SIDVocab, TIGERConfig, build_model, recommend, sid_trie, train,
                                       training_samples)
    from evaluate.cases import build_cases
    from evaluate.token_level import load_sids

    run = RunPaths.of(run_dir)
    export = load_export(run.export)
    codes, sid_stats = load_sids(export)
    valid = build_cases(export, "valid")
    n_samples = len(training_samples(valid, TIGERConfig().max_history)[1])
    steps_per_epoch = max(1, n_samples // TIGERConfig().batch_size)
    epochs = max(1, round(args.train_steps / steps_per_epoch))
    cfg = TIGERConfig(threads=args.threads, max_epochs=epochs, patience=epochs, eval_users=args.eval_users,
                      time_budget_min=args.train_budget_min)
    out: dict = {"load_before": load(), "sid_method": sid_stats.get("method"), "n_codes": int(codes.shape[1]),
                 "training_samples": n_samples, "steps_per_epoch": steps_per_epoch}
    last = run.model("tiger") / LAST_STATE
    if args.reuse_model and last.exists():  # decode only: the weights of an earlier bench's training
        saved = torch.load(last, map_location="cpu", weights_only=False)
        if not np.array_equal(saved["codes"], codes):
            raise SystemExit(f"{last} was trained on other SIDs: drop --reuse-model")
        cfg = TIGERConfig(**{**saved["config"], "threads": args.threads})
        vocab = SIDVocab.from_codes(codes)
        model = build_model(cfg, vocab)
        model.load_state_dict(saved["model"])
        out["reused_model"] = str(last)
    else:
        result = train(run, export, codes, cfg, progress=False, log=lambda m: print(f"  {m}", flush=True))
        model, vocab = result.model, result.vocab
        out["train"] = {**result.summary(), "train_s": float(sum(r.get("train_s", 0) for r in result.history))}
        out["load_after_train"] = load()

    torch.set_num_threads(args.threads)
    cases = build_cases(export, "test")
    rows = np.arange(cases.n_users)
    if args.users and args.users < len(rows):
        rows = np.sort(np.random.default_rng(0).choice(len(rows), args.users, replace=False))
    trie = sid_trie(vocab, export.items["item_id"].astype(str).to_numpy())
    runs: dict[str, list[dict]] = {"constrained": [], "unconstrained": []}
    for _ in range(args.repeats):
        for name in runs:
            recs, stats = recommend(model, vocab, trie, cases, cfg, rows=rows,
                                    constrained=name == "constrained")
            targets = dict(zip(cases.user_ids[rows], cases.item_ids[cases.target[rows]]))
            hits = recs[recs["item_id"].to_numpy() == recs["user_id"].map(targets).to_numpy()]
            stats["hit_rate@beams"] = hits["user_id"].nunique() / len(rows)
            runs[name].append(stats)
    if any(s["invalid"] for s in runs["constrained"]):
        raise AssertionError(f"{run_dir}: the constrained search returned invalid beams")
    decode = {}
    for name, stats in runs.items():
        seconds = statistics.median(s["seconds"] for s in stats)
        decode[name] = {"users": len(rows), "seconds": seconds, "users_per_s": len(rows) / seconds,
                        "seconds_all_rounds": [s["seconds"] for s in stats],
                        "invalid_rate": statistics.median(s["invalid_rate"] for s in stats),
                        "invalid": statistics.median(s["invalid"] for s in stats),
                        "returned": statistics.median(s["returned"] for s in stats),
                        "hit_rate@beams": stats[0]["hit_rate@beams"]}
    out["decode"] = decode
    out["decode_config"] = {"num_beams": cfg.num_beams, "eval_batch_size": cfg.eval_batch_size,
                            "repeats": args.repeats, "threads": args.threads}
    out["load_after"] = load()
    return out


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def ref_cell(text: str, now, before: dict, path: tuple) -> str:
    old = before
    for key in path:
        old = old.get(key) if isinstance(old, dict) else None
    if isinstance(old, (int, float)) and old and isinstance(now, (int, float)):
        return f"{text} ({now / old:.2f}x ref)"
    return text


def print_tables(results: dict, before: dict, args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=220)
    sids = results.get("sid", {})
    if sids:
        table = Table(title=f"Part 1: semantic IDs ({args.threads} threads; load "
                            f"{', '.join(r['load_before'] for r in sids.values())} before each dataset)")
        for column in ("dataset", "items", "k x levels", "method", "seconds", "vs rq-kmeans",
                       "collision rate", "max/tuple", "codes used per level (perplexity)", "residual norm"):
            table.add_column(column, justify="left" if column in ("dataset", "method") else "right")
        for name, r in sids.items():
            base = r["rq-kmeans"]["seconds"]
            methods = [m for m in r if m.startswith("rq-")]
            for i, method in enumerate(methods):
                m = r[method]
                use = " ".join(f"{u['used']}/{u['size']} ({u['perplexity']:.0f})" for u in m["usage"][:-1])
                residual = f"{m['residual_norm']:.4f}" if "residual_norm" in m else \
                    f"recon {m['training']['final_recon_mse']:.5f}"
                if "same_codes_as_rq_kmeans" in m:
                    residual += f", same codes {m['same_codes_as_rq_kmeans']:.1%}"
                table.add_row(name if i == 0 else "", str(r["n_items"]) if i == 0 else "",
                              f"{r['codes_per_level']} x {r['levels']}" if i == 0 else "", method,
                              ref_cell(f"{m['seconds']:.1f}", m["seconds"], before,
                                       ("sid", name, method, "seconds")),
                              f"{m['seconds'] / base:.2f}x", f"{m['collision_rate']:.2%}",
                              str(m["max_items_per_tuple"]), use, residual)
        console.print(table)
    tiger = results.get("tiger", {})
    if tiger:
        table = Table(title=f"Part 2: TIGER training, default TIGERConfig, {args.threads} threads")
        for column in ("dataset", "SIDs", "samples/epoch", "steps", "epochs", "train s", "samples/s",
                       "valid Recall@10", "load before / after"):
            table.add_column(column, justify="left" if column in ("dataset", "SIDs") else "right")
        for name, r in tiger.items():
            if "train" not in r:
                continue  # --reuse-model: decoding only
            t = r["train"]
            table.add_row(name, f"{r['sid_method']} ({r['n_codes']} codes)", str(r["training_samples"]),
                          str(t["steps"]), str(t["epochs"]), f"{t['train_s']:.0f}",
                          ref_cell(f"{t['samples_per_s']:.0f}", t["samples_per_s"], before,
                                   ("tiger", name, "train", "samples_per_s")),
                          f"{t['best_valid_recall@10']:.4f}", f"{r['load_before']} / {r['load_after_train']}")
        if table.row_count:
            console.print(table)
        any_run = next(iter(tiger.values()))["decode_config"]
        table = Table(title=f"Part 3: TIGER beam search, constrained (SID trie) vs unconstrained, same model, "
                            f"users, {any_run['num_beams']} beams, batch {any_run['eval_batch_size']}, "
                            f"{args.threads} threads, median of {any_run['repeats']} interleaved rounds")
        for column in ("dataset", "users", "constrained users/s", "unconstrained users/s",
                       "constrained / unconstrained time", "invalid rate (constr. / unconstr.)",
                       "hit rate@beams (constr. / unconstr.)", "load after"):
            table.add_column(column, justify="left" if column == "dataset" else "right")
        for name, r in tiger.items():
            c, u = r["decode"]["constrained"], r["decode"]["unconstrained"]
            table.add_row(name, str(c["users"]),
                          ref_cell(f"{c['users_per_s']:.1f}", c["users_per_s"], before,
                                   ("tiger", name, "decode", "constrained", "users_per_s")),
                          ref_cell(f"{u['users_per_s']:.1f}", u["users_per_s"], before,
                                   ("tiger", name, "decode", "unconstrained", "users_per_s")),
                          f"{c['seconds'] / u['seconds']:.2f}x (rounds: " + " ".join(
                              f"{a / b:.2f}" for a, b in zip(c["seconds_all_rounds"], u["seconds_all_rounds"])) + ")",
                          f"{c['invalid_rate']:.3f} / {u['invalid_rate']:.3f}",
                          f"{c['hit_rate@beams']:.3f} / {u['hit_rate@beams']:.3f}", r["load_after"])
        console.print(table)


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sid-runs", nargs="*", default=[], type=Path, help="run folders for part 1")
    parser.add_argument("--tiger-runs", nargs="*", default=[], type=Path,
                        help="run folders (with SIDs) for parts 2-3; models/tiger/ is written")
    parser.add_argument("--threads", type=int, default=2, help="torch / scikit-learn threads")
    parser.add_argument("--kmeans-variants", nargs="*", default=["blas1"], choices=list(KMEANS_VARIANTS),
                        help="extra residual k-means settings to time next to train.sid.rq_kmeans")
    parser.add_argument("--sid-repeats", type=int, default=2, help="interleaved k-means rounds (median)")
    parser.add_argument("--skip-rq-vae", action="store_true")
    parser.add_argument("--rq-vae-threads", nargs="*", type=int, default=[],
                        help="torch / scikit-learn threads for rq-vae runs (default: --threads)")
    parser.add_argument("--train-steps", type=int, default=300, help="about this many steps (whole epochs)")
    parser.add_argument("--train-budget-min", type=float, default=6.0, help="cap on training time")
    parser.add_argument("--eval-users", type=int, default=128, help="valid users for the per-epoch evaluation")
    parser.add_argument("--reuse-model", action="store_true",
                        help="parts 3 only: decode with models/tiger/last.pt of an earlier run instead of training")
    parser.add_argument("--users", type=int, default=256, help="test users decoded (seeded sample; 0 = all)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved decoding rounds (median reported)")
    parser.add_argument("--reference", type=Path, help="earlier results JSON to compare with")
    parser.add_argument("--save", type=Path, default=REPO / "bench" / "results" / "sid_tiger.json")
    args = parser.parse_args(argv)
    args.rq_vae_threads = args.rq_vae_threads or [args.threads]

    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "nproc": os.cpu_count(),
                     "load_start": load(), "args": {k: str(v) for k, v in vars(args).items()},
                     "sid": {}, "tiger": {}}
    for run_dir in args.sid_runs:
        print(f"part 1: {run_dir}", flush=True)
        results["sid"][run_dir.name] = sid_part(run_dir, args)
        save(results, args.save)  # after every dataset, so a long run leaves its numbers behind
    for run_dir in args.tiger_runs:
        print(f"parts 2-3: {run_dir}", flush=True)
        results["tiger"][run_dir.name] = tiger_part(run_dir, args)
        save(results, args.save)
    results["load_end"] = load()
    before = json.loads(args.reference.read_text()) if args.reference and args.reference.exists() else {}
    print_tables(results, before, args)
    print(f"load average (1/5/15 min) at start {results['load_start']}, at end {results['load_end']}, "
          f"{results['nproc']} cores")
    save(results, args.save)
    print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
