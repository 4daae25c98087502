"""Every threshold at once: the router's, and each tier's verifier's, chosen together on
out-of-fold scores so that the whole product meets one stated target.

For each question we know, from scores the models never trained on: the router's `need_large`,
each tier's P(good), how good each tier's answer is, and what each tier costs. A plan
(router threshold, small threshold, large threshold) then decides every question as the graph
would:

- `need_large` at or above the router's threshold: the large model answers; its draft is
  delivered when its P(good) reaches the large threshold, else the question goes to review;
- below it: the small model answers; delivered when its P(good) reaches the small threshold,
  else escalated to the large model, which is then judged as above.

A question sent to review scores 0 (nobody has answered it yet). Targets, one of:

- `target_quality`: mean quality at least this share of always-large's, at the lowest cost;
- `max_large_share`: the large model called for at most this share, at the best quality;

and always `max_review_share` (default 15 %) at most. Among plans that meet the target on the
out-of-fold data, the cheapest (or best) wins; the figures it is expected to reach come with 95 %
bootstrap intervals, resampled by group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hybrid.tuning import DEFAULT_CONFIDENCE

GRID = 33
"""Candidate thresholds per score: its quantiles, plus always and never."""


@dataclass(frozen=True)
class Scores:
    """What the plan decides from and what each decision yields, one entry per question."""

    need_large: np.ndarray
    p_small: np.ndarray
    p_large: np.ndarray
    quality_small: np.ndarray
    quality_large: np.ndarray
    cost_small: np.ndarray
    cost_large: np.ndarray
    groups: np.ndarray


@dataclass(frozen=True)
class Plan:
    router: float
    small: float
    large: float


@dataclass
class Outcomes:
    """What a plan yields per question."""

    quality: np.ndarray
    cost: np.ndarray
    large: np.ndarray
    review: np.ndarray
    small_delivered: np.ndarray
    started_large: np.ndarray


def simulate(scores: Scores, plan: Plan) -> Outcomes:
    """Each question decided as the graph would decide it under `plan`."""
    start_large = scores.need_large >= plan.router
    small_ok = ~start_large & (scores.p_small >= plan.small)
    large_called = ~small_ok
    large_ok = large_called & (scores.p_large >= plan.large)
    review = large_called & ~large_ok
    quality = np.where(small_ok, scores.quality_small, np.where(large_ok, scores.quality_large, 0.0))
    cost = np.where(start_large, 0.0, scores.cost_small) + np.where(large_called, scores.cost_large, 0.0)
    return Outcomes(
        quality, cost, large_called.astype(float), review.astype(float), small_ok.astype(float),
        start_large.astype(float),
    )  # fmt: skip


def _candidates(values: np.ndarray) -> np.ndarray:
    """Quantiles of a score, and the two ends: -inf (everything passes) and inf (nothing does)."""
    quantiles = np.quantile(values, np.linspace(0, 1, GRID)) if len(values) else np.array([])
    return np.unique(np.concatenate([[-np.inf, np.inf], quantiles]))


def _all_plans(scores: Scores) -> tuple[np.ndarray, ...]:
    """Mean quality, cost, large share and review share of every plan on the grid, vectorised."""
    r_grid, s_grid, l_grid = (_candidates(v) for v in (scores.need_large, scores.p_small, scores.p_large))
    start_large = scores.need_large[None, :] >= r_grid[:, None]  # (R, n)
    small_pass = scores.p_small[None, :] >= s_grid[:, None]  # (S, n)
    large_pass = scores.p_large[None, :] >= l_grid[:, None]  # (L, n)
    small_ok = ~start_large[:, None, :] & small_pass[None, :, :]  # (R, S, n)
    called = ~small_ok
    # (R, S, L, n) would be large; sum over n with einsum-style products instead.
    q_small = (small_ok * scores.quality_small).sum(-1)  # (R, S)
    q_large = np.einsum("rsn,ln->rsl", called.astype(float), large_pass * scores.quality_large)
    reviewed = np.einsum("rsn,ln->rsl", called.astype(float), (~large_pass).astype(float))
    cost = (~start_large * scores.cost_small).sum(-1)[:, None, None] + (called * scores.cost_large).sum(-1)[
        :, :, None
    ]
    n = len(scores.need_large)
    quality = (q_small[:, :, None] + q_large) / n
    large_share = np.broadcast_to((called.sum(-1) / n)[:, :, None], quality.shape)
    return (
        r_grid,
        s_grid,
        l_grid,
        quality,
        np.broadcast_to(cost / n, quality.shape),
        large_share,
        reviewed / n,
    )


@dataclass
class Choice:
    plan: Plan
    target: dict[str, float]
    expected: dict[str, Any] = field(default_factory=dict)
    met: bool = True
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "target": self.target,
            "expected": self.expected,
            "met": self.met,
            "note": self.note,
        }


def _interval(
    values: np.ndarray, groups: np.ndarray, statistic: Any = np.mean, samples: int = 500
) -> list[float]:
    names = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in names]
    rng = np.random.default_rng(0)
    draws = [
        statistic(values[np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])])
        for _ in range(samples)
    ]
    return [round(float(np.percentile(draws, 2.5)), 4), round(float(np.percentile(draws, 97.5)), 4)]


def expected_figures(scores: Scores, plan: Plan) -> dict[str, Any]:
    """What the plan reaches on these questions, with 95 % intervals."""
    out = simulate(scores, plan)
    large_quality = float(scores.quality_large.mean()) or 1e-12
    large_cost = float(scores.cost_large.sum()) or 1e-12

    def figure(values: np.ndarray, statistic: Any = np.mean) -> dict[str, Any]:
        return {
            "value": round(float(statistic(values)), 4),
            "ci95": _interval(values, scores.groups, statistic),
        }

    ratio = np.column_stack([out.quality, scores.quality_large])
    saving = np.column_stack([out.cost, scores.cost_large])
    return {
        "quality": figure(out.quality),
        "quality_vs_large": figure(ratio, lambda a: a[:, 0].mean() / max(a[:, 1].mean(), 1e-12)),
        "cost": figure(out.cost, np.sum),
        "saving_vs_large": figure(saving, lambda a: 1 - a[:, 0].sum() / max(a[:, 1].sum(), 1e-12)),
        "large_share": figure(out.large),
        "review_share": figure(out.review),
        "small_delivered_share": figure(out.small_delivered),
        "started_large_share": figure(out.started_large),
        "always_large_quality": round(large_quality, 4),
        "always_large_cost": round(large_cost, 8),
        "questions": len(out.quality),
    }


CANDIDATES = 400
"""Plans, best first, checked against bootstrap resamples for the confidence of meeting the target."""
RESAMPLES = 200


def _resamples(groups: np.ndarray, count: int = RESAMPLES) -> list[np.ndarray]:
    names = np.unique(groups)
    members = [np.flatnonzero(groups == name) for name in names]
    rng = np.random.default_rng(1)
    return [
        np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))]) for _ in range(count)
    ]


def _confidence(scores: Scores, plan: Plan, check: Any, resamples: Sequence[np.ndarray]) -> float:
    """Share of resampled question sets on which `plan` meets the target."""
    out = simulate(scores, plan)
    return float(np.mean([check(out, index) for index in resamples]))


def choose(
    scores: Scores,
    *,
    target_quality: float | None = None,
    max_large_share: float | None = None,
    max_review_share: float = 0.15,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Choice:
    """The plan that meets the target: cheapest at the quality, or best at the large share.

    Thresholds picked on one sample of questions meet a target on it by a hair, and fall short on
    the next sample about half the time. So the plan must meet the target (and the review bound)
    on at least `confidence` of the question sets resampled (by group) from these, not only on
    these; among the plans that do, the cheapest (or best) wins."""
    if (target_quality is None) == (max_large_share is None):
        target_quality = 0.95 if max_large_share is None else None
    r_grid, s_grid, l_grid, quality, cost, large_share, review = _all_plans(scores)
    large_quality = float(scores.quality_large.mean())
    feasible = review <= max_review_share + 1e-12
    target: dict[str, float] = {"max_review_share": max_review_share, "confidence": confidence}
    if target_quality is not None:
        target["target_quality"] = target_quality
        meets = feasible & (quality >= target_quality * large_quality - 1e-12)
        # Cheapest; among equally cheap plans the best, then the one sending fewest to review.
        key = np.where(meets, cost - 1e-9 * quality + 1e-12 * review, np.inf)

        def check(out: Outcomes, index: np.ndarray) -> bool:
            reference = max(float(scores.quality_large[index].mean()), 1e-12)
            return (
                out.quality[index].mean() >= target_quality * reference - 1e-12
                and out.review[index].mean() <= max_review_share + 1e-12
            )
    else:
        target["max_large_share"] = float(max_large_share)  # type: ignore[arg-type]
        meets = feasible & (large_share <= max_large_share + 1e-12)  # type: ignore[operator]
        key = np.where(meets, -quality + 1e-9 * cost, np.inf)

        def check(out: Outcomes, index: np.ndarray) -> bool:
            return (
                out.large[index].mean() <= max_large_share + 1e-12  # type: ignore[operator]
                and out.review[index].mean() <= max_review_share + 1e-12
            )

    met = bool(np.isfinite(key).any())
    chosen, note = None, ""
    if met:
        resamples = _resamples(scores.groups)
        order = np.argsort(key, axis=None)[:CANDIDATES]
        for flat in order[np.isfinite(key.ravel()[order])]:
            r, s, large = np.unravel_index(int(flat), key.shape)
            plan = Plan(float(r_grid[r]), float(s_grid[s]), float(l_grid[large]))
            if _confidence(scores, plan, check, resamples) >= confidence:
                chosen = plan
                break
        if chosen is None:
            note = f"no plan meets the target on {confidence:.0%} of resamples: the one that meets it here"
            r, s, large = np.unravel_index(int(np.argmin(key)), key.shape)
            chosen = Plan(float(r_grid[r]), float(s_grid[s]), float(l_grid[large]))
    else:
        # Nothing meets it: the plan closest to it (best quality within the review bound, else overall).
        key = np.where(feasible, -quality, np.inf) if feasible.any() else -quality + review
        r, s, large = np.unravel_index(int(np.argmin(key)), key.shape)
        chosen = Plan(float(r_grid[r]), float(s_grid[s]), float(l_grid[large]))
        note = "no plan meets the target on these questions: the closest is given"
    return Choice(chosen, target, expected_figures(scores, chosen), met, note)
