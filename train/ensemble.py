"""Memorization-aware ensemble: route each user to the model that suits its one-hop evidence.

    iirg ensemble --run runs/ml-100k --covered sasrec --uncovered tiger [--mode route|interpolate]

Memorizing models (Markov, and per the paper LLM recommenders) win on users whose next item is a
training successor of their last item; other models win elsewhere. The ensemble takes the
`--covered` model's list for users that *look* one-hop covered and the `--uncovered` model's list for
the rest. Whether a user is covered is only known with the target, so the indicator uses training
data alone: the **successor mass** of the user's last history item, i.e. how many training
transitions leave it (the sum of its NEXT edge counts). The held-out item is never read.

- `route`: users with successor mass >= t get the covered model's list, the others the uncovered
  model's; t is chosen on valid Recall@10 from a grid of mass quantiles.
- `interpolate`: each item gets w * 1/(c + rank_A) + (1 - w) * 1/(c + rank_B), w = m / (m + tau) for a
  user with mass m (reciprocal-rank fusion weighted by the indicator; raw scores of two models are not
  comparable); tau is chosen on valid.
Both read the models' saved lists (`models/<name>/recommendations_{valid,test}.parquet`), so any two
recorded models combine, and the result is recorded through the shared evaluator as its own model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd

from common.errors import ConfigError
from evaluate.cases import Cases, build_cases, item_codes
from evaluate.errors import EvaluationError
from evaluate.lists import prepare_lists
from evaluate.metrics import gains, hit_ranks
from evaluate.record import record_model
from graph.export import Export
from graph.rundir import RunPaths
from train.baselines import SELECT_K

RRF_C = 10.0  # reciprocal-rank offset: the top item of a 20-item list weighs 1.9x the 10th


@dataclass
class EnsembleConfig:
    """Which models to combine and how."""

    covered: str = field(default="markov", metadata={"help": "model for users that look one-hop covered"})
    uncovered: str = field(default="sasrec", metadata={"help": "model for the other users"})
    mode: Literal["route", "interpolate"] = field(default="route", metadata={
        "help": "route: one model's list per user; interpolate: indicator-weighted rank fusion"})
    name: str = field(default="", metadata={"help": "model name to record (default ensemble-<A>-<B>)"})
    k: int = field(default=20, metadata={"help": "length of each combined list"})
    split: Literal["valid", "test"] = field(default="test", metadata={
        "help": "test: choose on valid, then combine test once; valid: the choice only"})

    def __post_init__(self):
        if self.mode not in ("route", "interpolate"):
            raise ConfigError(f"mode must be route or interpolate, not {self.mode!r}")
        if self.covered == self.uncovered:
            raise ConfigError("--covered and --uncovered must be two different models")
        if self.k < 1:
            raise ConfigError("k must be >= 1")
        if not self.name:
            self.name = f"ensemble-{self.covered}-{self.uncovered}" + ("-interp" if self.mode == "interpolate" else "")

    def combination(self) -> dict:
        """What the combined lists depend on (every setting but the split, which the records key by)."""
        return {k: v for k, v in asdict(self).items() if k != "split"}


def successor_mass(export: Export, last_items: np.ndarray) -> np.ndarray:
    """(n,) number of training transitions leaving each given item (item codes of the export).

    Reads only the training transitions (NEXT edges) and the users' last history items.
    """
    src = item_codes(export, export.next["src_item_id"], "next.parquet")
    mass = np.bincount(src, weights=export.next["count"].to_numpy(dtype=np.float64),
                       minlength=len(export.items))
    return mass[last_items]


def user_indicator(export: Export, cases: Cases) -> np.ndarray:
    """Successor mass of each evaluated user's last history item (history only, never the target)."""
    return successor_mass(export, cases.last)


def _load_lists(run: RunPaths, model: str, split: str) -> pd.DataFrame:
    path = run.model(model) / f"recommendations_{split}.parquet"
    if not path.exists():
        raise EvaluationError(f"{path} is missing: record model {model!r} on the {split} split first "
                              f"(e.g. `iirg baseline {model} --run {run.root}`)")
    frame = pd.read_parquet(path, columns=["user_id", "item_id", "rank"])
    return frame.astype({"user_id": str, "item_id": str})


def combine(lists_a: pd.DataFrame, lists_b: pd.DataFrame, weight_a: pd.Series, k: int) -> pd.DataFrame:
    """Per user, items ranked by w * 1/(c + rank_A) + (1 - w) * 1/(c + rank_B) (missing rank: 0).

    weight_a: user_id -> w in [0, 1]; w = 1 returns A's list, w = 0 B's (ties keep A's order first).
    """
    a = lists_a.assign(part=1.0 / (RRF_C + lists_a["rank"]), src=0)
    b = lists_b.assign(part=1.0 / (RRF_C + lists_b["rank"]), src=1)
    both = pd.concat([a, b], ignore_index=True)
    w = both["user_id"].map(weight_a).fillna(0.5).to_numpy()
    both["score"] = np.where(both["src"] == 0, w, 1.0 - w) * both["part"]
    # tie-break: A's rank, then B's rank, so w = 1 (or 0) reproduces A's (or B's) list exactly
    both["tie"] = np.where(both["src"] == 0, both["rank"], both["rank"] + 1e6 * (w > 0))
    agg = both.groupby(["user_id", "item_id"], sort=False).agg(score=("score", "sum"), tie=("tie", "min"))
    agg = agg[agg["score"] > 0].reset_index()
    agg = agg.sort_values(["user_id", "score", "tie"], ascending=[True, False, True], kind="stable")
    agg["rank"] = agg.groupby("user_id", sort=False).cumcount() + 1
    out = agg[agg["rank"] <= k]
    return out[["user_id", "item_id", "rank", "score"]].reset_index(drop=True)


def _recall(cases: Cases, lists: pd.DataFrame) -> float:
    prepared = prepare_lists(cases, lists, keep_history=True)
    return float(gains(hit_ranks(cases, prepared), SELECT_K)[0].mean())


def candidates(cfg: EnsembleConfig, mass: np.ndarray) -> list[float]:
    """Thresholds (route) or tau values (interpolate) tried on valid."""
    levels = sorted({float(v) for v in np.quantile(mass, np.linspace(0.0, 1.0, 21))} | {0.0, np.inf})
    if cfg.mode == "route":
        return levels
    return [t for t in levels if 0 < t < np.inf] or [1.0]


def weights_for(cfg: EnsembleConfig, users: np.ndarray, mass: np.ndarray, param: float) -> pd.Series:
    """user_id -> weight of the covered model."""
    if cfg.mode == "route":
        w = (mass >= param).astype(np.float64) if np.isfinite(param) else np.zeros(len(mass))
    else:
        w = mass / (mass + param)
    return pd.Series(w, index=pd.Index(users, dtype=str))


def run_ensemble(run: RunPaths, export: Export, cfg: EnsembleConfig, *,
                 log: Callable[[str], None] = print) -> dict:
    """Choose the threshold / tau on valid, record valid, then combine and record test once."""
    keep = {m: _keep_history(run, m) for m in (cfg.covered, cfg.uncovered)}
    if len(set(keep.values())) > 1:
        raise EvaluationError(f"the two models differ in keep_history ({keep}): their lists cannot be combined")
    keep_history = keep[cfg.covered]
    valid = build_cases(export, "valid")
    mass_v = user_indicator(export, valid)
    a_v, b_v = _load_lists(run, cfg.covered, "valid"), _load_lists(run, cfg.uncovered, "valid")
    selection, best, best_score = [], None, -1.0
    for param in candidates(cfg, mass_v):
        lists = combine(a_v, b_v, weights_for(cfg, valid.user_ids, mass_v, param), cfg.k)
        score = _recall(valid, lists)
        covered = float((weights_for(cfg, valid.user_ids, mass_v, param) >= 0.5).mean())
        selection.append({"param": param, f"valid_recall@{SELECT_K}": score, "share_to_covered_model": covered})
        if score > best_score:
            best, best_score = param, score
    assert best is not None
    what = "threshold" if cfg.mode == "route" else "tau"
    log(f"{cfg.name}: {what} {best:g} (successor mass of the last item), valid Recall@{SELECT_K} "
        f"{best_score:.4f}; {len(selection)} settings tried")
    info = {"config": cfg.combination(), what: best, "indicator": "successor mass of the last history item "
            "(training NEXT counts); the target is never read", "selection": selection,
            "selected_by": f"valid recall@{SELECT_K}"}
    out = {"best": best, "selection": selection}
    splits = ("valid", "test") if cfg.split == "test" else ("valid",)
    for name in splits:
        cases = valid if name == "valid" else build_cases(export, "test")
        mass = mass_v if name == "valid" else user_indicator(export, cases)
        a, b = (a_v, b_v) if name == "valid" else (_load_lists(run, cfg.covered, name),
                                                   _load_lists(run, cfg.uncovered, name))
        weights = weights_for(cfg, cases.user_ids, mass, best)
        lists = combine(a, b, weights, cfg.k)
        out[name] = record_model(run, cfg.name, lists, split=name,
                                 info={**info, "share_to_covered_model": float((weights >= 0.5).mean())},
                                 keep_history=keep_history, export=export)
    return out


def _keep_history(run: RunPaths, model: str) -> bool:
    import json

    path = run.model(model) / "metrics_valid.json"
    if not path.exists():
        raise EvaluationError(f"{path} is missing: record model {model!r} on the valid split first")
    return bool(json.loads(path.read_text()).get("keep_history", False))
