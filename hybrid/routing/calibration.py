"""Choosing the router's threshold from labelled data, RouteLLM-style, with bootstrap intervals.

A threshold on need_large sends the queries at or above it to the large model. Quality is the
share answered correctly (large model's correctness where routed large, small's elsewhere); a
target quality is a fraction of the large model's own accuracy, as in RouteLLM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold and what it is expected to give, with bootstrap 95 % intervals."""

    threshold: float
    rule: str
    quality: float
    quality_ci: tuple[float, float]
    large_share: float
    large_share_ci: tuple[float, float]
    small_accuracy: float
    large_accuracy: float
    examples: int

    def as_dict(self) -> dict[str, object]:
        """JSON-able record (stored in router.json under `threshold`)."""
        return {"value": self.threshold, **{k: v for k, v in asdict(self).items() if k != "threshold"}}


def _outcome(
    score: np.ndarray, small: np.ndarray, large: np.ndarray, threshold: float
) -> tuple[float, float]:
    routed = score >= threshold
    return float(np.where(routed, large, small).mean()), float(routed.mean())


def choose_threshold(
    score: np.ndarray,
    small_correct: np.ndarray,
    large_correct: np.ndarray,
    *,
    target_quality: float | None = None,
    max_large_share: float | None = None,
) -> float:
    """The highest threshold reaching `target_quality` × large accuracy, or the lowest one whose
    large-model share stays within `max_large_share` (exactly one of the two)."""
    if (target_quality is None) == (max_large_share is None):
        raise ValueError("give exactly one of target_quality and max_large_share")
    score = np.asarray(score, dtype=float)
    small = np.asarray(small_correct, dtype=float)
    large = np.asarray(large_correct, dtype=float)
    never = float(np.nextafter(score.max(), np.inf))  # above every score: nothing goes large
    candidates = np.unique(score)[::-1]  # highest first: large share grows along the way
    if max_large_share is not None:
        best = never
        for t in candidates:
            if (score >= t).mean() > max_large_share + 1e-12:
                break
            best = float(t)
        return best
    goal = target_quality * large.mean()  # type: ignore[operator]
    if small.mean() >= goal:
        return never
    for t in candidates:
        if _outcome(score, small, large, float(t))[0] >= goal:
            return float(t)
    return float(candidates[-1])


def calibrate(
    score: np.ndarray,
    small_correct: np.ndarray,
    large_correct: np.ndarray,
    *,
    target_quality: float | None = None,
    max_large_share: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Calibration:
    """Choose the threshold and estimate its quality and large-model share (bootstrap over examples)."""
    score = np.asarray(score, dtype=float)
    small = np.asarray(small_correct, dtype=float)
    large = np.asarray(large_correct, dtype=float)
    threshold = choose_threshold(
        score, small, large, target_quality=target_quality, max_large_share=max_large_share
    )
    quality, share = _outcome(score, small, large, threshold)
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            _outcome(score[i], small[i], large[i], threshold)
            for i in rng.integers(0, len(score), (resamples, len(score)))
        ]
    )
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    rule = (
        f"target_quality={target_quality}"
        if target_quality is not None
        else f"max_large_share={max_large_share}"
    )
    return Calibration(
        threshold=threshold,
        rule=rule,
        quality=round(quality, 4),
        quality_ci=(round(float(low[0]), 4), round(float(high[0]), 4)),
        large_share=round(share, 4),
        large_share_ci=(round(float(low[1]), 4), round(float(high[1]), 4)),
        small_accuracy=round(float(small.mean()), 4),
        large_accuracy=round(float(large.mean()), 4),
        examples=len(score),
    )
