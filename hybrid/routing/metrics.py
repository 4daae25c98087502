"""RouteLLM's router metrics, computed exactly as lm-sys/RouteLLM computes them.

From `routellm/evals/benchmarks.py` (`MMLU.evaluate`, `GSM8K.evaluate`) and `evaluate.py`
(`generate_results`):

- thresholds are `pd.qcut(score, 10, retbins=True)` bin edges, i.e. the linearly interpolated
  quantiles at 0, 0.1, ..., 1; at each edge the strong model takes the queries with score `>=` the
  edge, except at the last edge where it is `>` (so the curve always spans 0 % to 100 % strong);
- each edge gives a point (share of strong calls, accuracy), sorted by share;
- APGR = (AUC − weak AUC) / (strong AUC − weak AUC), trapezoid areas over the share;
- CPT(x) = `np.interp(weak + x·(strong − weak), accuracy, share)` on the points as they are
  (RouteLLM does not force the accuracy column to be monotone, and neither do we).

`pd.qcut` refuses duplicate edges (a score with many ties); we keep them, as RouteLLM's comment
"including duplicates" intends: identical edges give identical points and leave the area unchanged.
Shares and accuracies here are fractions, not RouteLLM's percentages; every figure is the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

N_THRESHOLDS = 10  # RouteLLM's num_results: 10 quantile bins, 11 points


@dataclass(frozen=True)
class RouterMetrics:
    """A router's RouteLLM figures. CPT values are shares of strong-model calls, in [0, 1]."""

    apgr: float
    cpt20: float
    cpt50: float
    cpt80: float

    def as_dict(self) -> dict[str, float]:
        """The figures by name, rounded to 4 digits."""
        return {k: round(v, 4) for k, v in asdict(self).items()}


def quality_curve(score: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> np.ndarray:
    """(share of strong calls, accuracy) at each of RouteLLM's 11 thresholds, sorted by share.

    `score`: higher means send to the strong model. `weak`, `strong`: each model's correctness.
    """
    score = np.asarray(score, dtype=float)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    thresholds = np.quantile(score, np.linspace(0, 1, N_THRESHOLDS + 1))  # == pd.qcut's bin edges
    points = []
    for i, threshold in enumerate(thresholds):
        chosen = score >= threshold if i != len(thresholds) - 1 else score > threshold
        points.append((chosen.mean(), np.where(chosen, strong, weak).mean()))
    curve = np.array(points)
    return curve[np.argsort(curve[:, 0], kind="stable")]


def metrics_from_curve(curve: np.ndarray, weak_accuracy: float, strong_accuracy: float) -> RouterMetrics:
    """APGR and CPT(20/50/80 %) of a (share, accuracy) curve sorted by share."""
    share, accuracy = curve[:, 0], curve[:, 1]
    cpt = [
        float(np.interp(x * (strong_accuracy - weak_accuracy) + weak_accuracy, accuracy, share))
        for x in (0.2, 0.5, 0.8)
    ]
    area = np.trapezoid(accuracy, share)
    weak_area = np.trapezoid(np.full(len(share), weak_accuracy), share)
    strong_area = np.trapezoid(np.full(len(share), strong_accuracy), share)
    return RouterMetrics(float((area - weak_area) / (strong_area - weak_area)), *cpt)


def router_metrics(score: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> RouterMetrics:
    """RouteLLM's figures for a router score (higher = strong model) on labelled queries."""
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    return metrics_from_curve(quality_curve(score, weak, strong), weak.mean(), strong.mean())


def oracle_curve(weak: ArrayLike, strong: ArrayLike) -> np.ndarray:
    """RouteLLM's `get_optimal_accuracy` at 0, 10, ..., 100 % strong calls.

    The oracle sends a query to the strong model only where the weak one is wrong and the strong
    one right, so it beats always-strong (its APGR exceeds 1).
    """
    weak = np.asarray(weak, dtype=bool)
    strong = np.asarray(strong, dtype=bool)
    n = len(weak)
    strong_wins = int(np.sum(~weak & strong))
    shares = np.linspace(0, 1, N_THRESHOLDS + 1)
    return np.array([(s, (weak.sum() + min(n * s, strong_wins)) / n) for s in shares])


def oracle_metrics(weak: ArrayLike, strong: ArrayLike) -> RouterMetrics:
    """The oracle router's figures."""
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    return metrics_from_curve(oracle_curve(weak, strong), weak.mean(), strong.mean())


def random_metrics(weak: ArrayLike, strong: ArrayLike, draws: int = 200, seed: int = 0) -> RouterMetrics:
    """Mean figures of a uniformly random router over `draws` seeded draws (≈ 0.5, 0.5, 0.8)."""
    rng = np.random.default_rng(seed)
    rows = [asdict(router_metrics(rng.random(len(np.asarray(weak))), weak, strong)) for _ in range(draws)]
    return RouterMetrics(**{k: float(np.mean([r[k] for r in rows])) for k in rows[0]})


def mean_metrics(rows: list[RouterMetrics]) -> RouterMetrics:
    """Figure by figure mean (over CV seeds)."""
    return RouterMetrics(
        *(float(np.mean([getattr(r, f) for r in rows])) for f in ("apgr", "cpt20", "cpt50", "cpt80"))
    )
