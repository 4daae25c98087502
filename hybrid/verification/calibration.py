"""Choosing the verifier's threshold on P(good), with bootstrap intervals, and its quality metrics.

A threshold accepts the drafts whose p_good is at or above it. Precision is the share of accepted
drafts that are good; recall the share of good drafts accepted; the accept share the share of
all drafts accepted. Scores must be out of fold (from models that never saw the row).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

MIN_ACCEPTED = 10  # a precision target must hold on at least this many accepted drafts


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold and what it is expected to give, with bootstrap 95 % intervals."""

    threshold: float
    rule: str
    precision: float | None
    """None when nothing is accepted (no threshold reaches the target precision)."""
    precision_ci: tuple[float | None, float | None]
    accept_share: float
    accept_share_ci: tuple[float, float]
    recall: float
    recall_ci: tuple[float, float]
    good_share: float
    examples: int

    def as_dict(self) -> dict[str, object]:
        """JSON-able record (stored in verifier.json under `threshold`)."""
        return {"value": self.threshold, **{k: v for k, v in asdict(self).items() if k != "threshold"}}


def accept_figures(score: np.ndarray, good: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(precision, accept share, recall) at a threshold; precision is NaN when nothing is accepted."""
    accepted = score >= threshold
    n_accepted = int(accepted.sum())
    precision = float(good[accepted].mean()) if n_accepted else float("nan")
    recall = float(good[accepted].sum() / good.sum()) if good.sum() else float("nan")
    return precision, float(accepted.mean()), recall


def choose_threshold(
    score: np.ndarray,
    good: np.ndarray,
    *,
    target_precision: float | None = None,
    max_reject_share: float | None = None,
) -> float:
    """The lowest threshold whose accepted drafts (at least `MIN_ACCEPTED`) reach `target_precision`,
    or the highest one that rejects at most `max_reject_share` of drafts (exactly one of the two).

    When no threshold reaches the precision, one above every score: nothing is accepted.
    """
    if (target_precision is None) == (max_reject_share is None):
        raise ValueError("give exactly one of target_precision and max_reject_share")
    score = np.asarray(score, dtype=float)
    good = np.asarray(good, dtype=float)
    never = float(np.nextafter(score.max(), np.inf))
    candidates = np.unique(score)  # lowest first: the accept share shrinks along the way
    if max_reject_share is not None:
        best = float(candidates[0])
        for t in candidates:
            if (score < t).mean() > max_reject_share + 1e-12:
                break
            best = float(t)
        return best
    for t in candidates:
        accepted = score >= t
        if accepted.sum() >= MIN_ACCEPTED and good[accepted].mean() >= target_precision:  # type: ignore[operator]
            return float(t)
    return never


def calibrate(
    score: np.ndarray,
    good: np.ndarray,
    *,
    target_precision: float | None = None,
    max_reject_share: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Calibration:
    """Choose the threshold; estimate precision, accept share and recall (bootstrap over drafts)."""
    score = np.asarray(score, dtype=float)
    good = np.asarray(good, dtype=float)
    threshold = choose_threshold(
        score, good, target_precision=target_precision, max_reject_share=max_reject_share
    )
    precision, share, recall = accept_figures(score, good, threshold)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(score), (resamples, len(score)))
    draws = np.array([accept_figures(score[i], good[i], threshold) for i in samples])
    with warnings.catch_warnings():  # a column that is NaN in every draw (nothing accepted) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    rule = (
        f"target_precision={target_precision}"
        if target_precision is not None
        else f"max_reject_share={max_reject_share}"
    )

    def r(value: float) -> float | None:  # None, not NaN, when undefined: the record is JSON
        return None if math.isnan(value) else round(float(value), 4)

    return Calibration(
        threshold=threshold,
        rule=rule,
        precision=r(precision),
        precision_ci=(r(low[0]), r(high[0])),
        accept_share=r(share),
        accept_share_ci=(r(low[1]), r(high[1])),
        recall=r(recall),
        recall_ci=(r(low[2]), r(high[2])),
        good_share=r(good.mean()),
        examples=len(score),
    )


# ---------------------------------------------------------------------------------------------
# Quality of a score as a probability of a good answer
# ---------------------------------------------------------------------------------------------


def auroc(score: np.ndarray, good: np.ndarray) -> float:
    """Area under the ROC curve (ties count half): the chance a good draft outscores a bad one;
    NaN when every draft is good or every one is bad."""
    from sklearn.metrics import roc_auc_score

    good = np.asarray(good, dtype=bool)
    if good.all() or not good.any():
        return float("nan")
    return float(roc_auc_score(good, np.asarray(score, dtype=float)))


def brier(score: np.ndarray, good: np.ndarray) -> float:
    """Mean squared error of the score as a probability of a good answer."""
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(np.asarray(good, dtype=bool), np.asarray(score, dtype=float)))


def expected_calibration_error(score: np.ndarray, good: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |mean score − good rate| over `bins` equal-width score bins."""
    score = np.asarray(score, dtype=float)
    good = np.asarray(good, dtype=float)
    index = np.minimum((score * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(score[mask].mean() - good[mask].mean())
    return float(total / len(score))


def score_metrics(score: np.ndarray, good: np.ndarray) -> dict[str, float]:
    """AUROC, Brier score and expected calibration error, rounded to 4 digits."""
    return {
        "auroc": round(auroc(score, good), 4),
        "brier": round(brier(score, good), 4),
        "ece": round(expected_calibration_error(score, good), 4),
    }
