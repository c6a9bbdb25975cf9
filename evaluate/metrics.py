"""Metrics of ranked lists against held-out targets, and the gain decomposition between two models.

For a single held-out target at rank r in a user's evaluated list (0 = not in it):

    Recall@K = 1 if r <= K else 0
    NDCG@K   = 1 / log2(r + 1) if r <= K else 0      (the ideal DCG of one relevant item is 1)

Users without a list score 0. Memorization rate@K: the share of a model's top-K slots holding a
training successor of the user's last history item (a `NEXT` edge). One-hop hits@K: hits on one-hop
covered users (`evaluate.segments`).

Gain decomposition between models A and B over the users both were evaluated on: with per-user gain
difference d_u = g_A(u) - g_B(u) and segment shares n_s / n,

    delta = mean_u d_u = sum_s (n_s / n) * mean_{u in s} d_u = sum_s contribution_s     (exact)

and the share of the gain from one-hop covered users is contribution_one_hop / delta. 95% confidence
intervals come from a seeded, vectorized paired bootstrap over users (`compare_gains`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from evaluate.cases import Cases, is_member
from evaluate.errors import EvaluationError, examples
from evaluate.lists import RankedLists
from evaluate.segments import SEGMENTS

KS = (1, 5, 10, 20)


def hit_ranks(cases: Cases, lists: RankedLists) -> np.ndarray:
    """(n_users,) rank of the target in each user's evaluated list, 0 when it is not there."""
    hit = lists.item == cases.target[lists.row]
    ranks = np.zeros(cases.n_users, dtype=np.int64)
    ranks[lists.row[hit]] = lists.rank[hit]  # items are unique per user: at most one hit
    return ranks


def gains(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (recall@k, ndcg@k) from target ranks (0 = not ranked)."""
    hit = (ranks >= 1) & (ranks <= k)
    ndcg = np.zeros(len(ranks))
    ndcg[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return hit.astype(float), ndcg


def metric_table(ranks: np.ndarray, ks: Iterable[int] = KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        recall, ndcg = gains(ranks, k)
        out[f"recall@{k}"] = float(recall.mean()) if len(ranks) else 0.0
        out[f"ndcg@{k}"] = float(ndcg.mean()) if len(ranks) else 0.0
    return out


def successor_mask(cases: Cases, lists: RankedLists, transitions: np.ndarray) -> np.ndarray:
    """Per list entry: the item is a training successor of the user's last history item."""
    keys = cases.last[lists.row].astype(np.int64) * cases.n_items + lists.item
    return is_member(keys, transitions)


def compute_metrics(cases: Cases, lists: RankedLists, segments: pd.DataFrame,
                    transitions: np.ndarray, *, evaluated: np.ndarray | None = None,
                    ks: Iterable[int] = KS) -> dict:
    """Overall and per-segment metrics, memorization rate and one-hop hits.

    Args:
        segments: `evaluate.segments.label_users` output aligned with the cases (same user order).
        transitions: `next_keys(export)`.
        evaluated: (n_users,) bool mask of the users to score (default: all cases).
    """
    ks = tuple(ks)
    if not np.array_equal(segments["user_id"].to_numpy().astype(str), cases.user_ids.astype(str)):
        raise EvaluationError("segments are not aligned with the evaluation cases; rerun `iirg analyze`")
    mask = np.ones(cases.n_users, dtype=bool) if evaluated is None else evaluated
    ranks = hit_ranks(cases, lists)
    seg = segments["segment"].to_numpy()
    one_hop = segments["one_hop"].to_numpy(dtype=bool)
    per_segment = {}
    for name in SEGMENTS:
        m = mask & (seg == name)
        per_segment[name] = {"n_users": int(m.sum()), "share": float(m.sum() / max(mask.sum(), 1)),
                             **metric_table(ranks[m], ks)}
    groups = {}
    for name, m in (("covered", mask & one_hop), ("uncovered", mask & ~one_hop),
                    ("any_hop", mask & segments["any_hop"].to_numpy(dtype=bool))):
        groups[name] = {"n_users": int(m.sum()), **metric_table(ranks[m], ks)}
    in_mask = mask[lists.row]
    succ = successor_mask(cases, lists, transitions) & in_mask
    memorization, one_hop_hits = {}, {}
    for k in ks:
        slots = in_mask & (lists.rank <= k)
        memorization[f"@{k}"] = float(succ[slots].mean()) if slots.any() else 0.0
        hits = mask & (ranks >= 1) & (ranks <= k)
        covered_hits = int((hits & one_hop).sum())
        one_hop_hits[f"@{k}"] = {"hits": int(hits.sum()), "covered_hits": covered_hits,
                                 "share_of_hits": covered_hits / hits.sum() if hits.any() else 0.0}
    lengths = np.bincount(lists.row[in_mask], minlength=cases.n_users)[mask & lists.listed]
    return {
        "n_users": int(mask.sum()),
        "n_users_with_list": int((mask & lists.listed).sum()),
        "n_missing": int((mask & ~lists.listed).sum()),
        "history_items_dropped": lists.history_dropped,
        "mean_list_length": float(lengths.mean()) if len(lengths) else 0.0,
        "min_list_length": int(lengths.min()) if len(lengths) else 0,
        "overall": metric_table(ranks[mask], ks),
        "segments": per_segment,
        "groups": groups,
        "memorization_rate": memorization,
        "one_hop_hits": one_hop_hits,
    }


def segment_codes(segment: np.ndarray, segment_names: Iterable[str]) -> np.ndarray:
    """Position of each user's segment label in `segment_names`; raises on an unknown label."""
    code = pd.Categorical(segment, categories=list(segment_names)).codes
    if (code < 0).any():
        raise EvaluationError(f"unknown segment label(s): {examples(pd.unique(segment[code < 0]))}")
    return code


def decompose(gain_a: np.ndarray, gain_b: np.ndarray, segment: np.ndarray,
              segment_names: Iterable[str]) -> pd.DataFrame:
    """Point estimates of the gain decomposition (see module docstring), one row per segment name.

    Columns: segment, n_users, share, mean_a, mean_b, delta (mean of g_A - g_B in the segment, 0 when
    empty), contribution (sum of g_A - g_B in the segment / n). The contributions add up to
    mean(gain_a - gain_b).
    """
    names = list(segment_names)
    code = segment_codes(segment, names)
    a, b = np.asarray(gain_a, float), np.asarray(gain_b, float)
    d = a - b
    n, s = len(d), len(names)
    if n == 0:
        raise EvaluationError("no users to compare")
    counts = np.bincount(code, minlength=s)
    sums = np.bincount(code, weights=d, minlength=s)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.divide(np.bincount(code, weights=values, minlength=s), counts, out=np.zeros(s),
                         where=counts > 0)

    return pd.DataFrame({"segment": names, "n_users": counts, "share": counts / n,
                         "mean_a": mean(a), "mean_b": mean(b),
                         "delta": np.divide(sums, counts, out=np.zeros(s), where=counts > 0),
                         "contribution": sums / n})


def decompose_means(segments: Iterable[str], n_users: Iterable[int], mean_a: Iterable[float],
                    mean_b: Iterable[float]) -> pd.DataFrame:
    """The decomposition from per-segment means instead of per-user gains (e.g. two metrics files):
    contribution = share x (mean_a - mean_b). Same columns as `decompose`, and the same values when
    both models were scored on the same users."""
    table = pd.DataFrame({"segment": list(segments), "n_users": np.asarray(list(n_users), dtype=np.int64),
                          "mean_a": np.asarray(list(mean_a), dtype=float),
                          "mean_b": np.asarray(list(mean_b), dtype=float)})
    n = int(table["n_users"].sum())
    table["share"] = table["n_users"] / n if n else 0.0
    table["delta"] = table["mean_a"] - table["mean_b"]
    table["contribution"] = table["share"] * table["delta"]
    return table[["segment", "n_users", "share", "mean_a", "mean_b", "delta", "contribution"]]


def compare_gains(gain_a: np.ndarray, gain_b: np.ndarray, segment: np.ndarray,
                  segment_names: Iterable[str], *, covered: str = "one_hop", n_boot: int = 1000,
                  seed: int = 0, level: float = 0.95, chunk: int = 100) -> dict:
    """Gain decomposition of mean(gain_a - gain_b) over segments, with paired bootstrap CIs.

    delta = sum over segments of share_s * delta_s exactly (contribution_s = sum_{u in s} d_u / n;
    point estimates from `decompose`). Bootstrap: users are resampled with replacement (same resample
    for every quantity), `n_boot` times in chunks of `chunk` resamples, seeded.
    """
    names = list(segment_names)
    point = decompose(gain_a, gain_b, segment, names)
    code = segment_codes(segment, names)
    d = np.asarray(gain_a, float) - np.asarray(gain_b, float)
    n, s = len(d), len(names)
    counts = point["n_users"].to_numpy()
    delta = float(d.sum() / n)
    contribution = point["contribution"].to_numpy()
    seg_delta = point["delta"].to_numpy()
    rng = np.random.default_rng(seed)
    boot_delta, boot_contrib, boot_seg = [], [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        di, ci = d[idx], code[idx] + (np.arange(b)[:, None] * s)
        bsum = np.bincount(ci.ravel(), weights=di.ravel(), minlength=b * s).reshape(b, s)
        bcnt = np.bincount(ci.ravel(), minlength=b * s).reshape(b, s)
        boot_delta.append(di.mean(axis=1))
        boot_contrib.append(bsum / n)
        boot_seg.append(np.divide(bsum, bcnt, out=np.full((b, s), np.nan), where=bcnt > 0))
    boot_delta = np.concatenate(boot_delta)
    boot_contrib = np.concatenate(boot_contrib)
    boot_seg = np.concatenate(boot_seg)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100

    def ci(values: np.ndarray) -> list[float]:
        values = values[np.isfinite(values)]
        return [float(np.percentile(values, lo)), float(np.percentile(values, hi))] if len(values) else [float("nan")] * 2

    out_segments = {}
    for j, name in enumerate(names):
        out_segments[name] = {"n_users": int(counts[j]), "share": float(counts[j] / n),
                              "delta": float(seg_delta[j]), "delta_ci": ci(boot_seg[:, j]),
                              "contribution": float(contribution[j]),
                              "contribution_ci": ci(boot_contrib[:, j])}
    covered_share = None
    covered_ci = [float("nan")] * 2
    if covered in names and delta != 0:
        j = names.index(covered)
        covered_share = float(contribution[j] / delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            covered_ci = ci(boot_contrib[:, j] / boot_delta)
    return {"n_users": n, "delta": delta, "delta_ci": ci(boot_delta),
            "significant": bool(not (ci(boot_delta)[0] <= 0 <= ci(boot_delta)[1])),
            "segments": out_segments, "covered_segment": covered,
            "covered_share_of_gain": covered_share, "covered_share_ci": covered_ci,
            "n_boot": n_boot, "seed": seed, "level": level}
