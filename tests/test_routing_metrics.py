"""RouteLLM's metrics, reproduced exactly: thresholds, curve, APGR, CPT, random and oracle rows."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.routing.metrics import (
    oracle_curve,
    oracle_metrics,
    quality_curve,
    random_metrics,
    router_metrics,
)

pytestmark = pytest.mark.unit


def routellm_reference(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> dict[str, float]:
    """RouteLLM's evaluate/generate_results code, transcribed with pandas (its percent units)."""
    pd = pytest.importorskip("pandas")
    data = pd.DataFrame({"score": score, "weak": weak.astype(float), "strong": strong.astype(float)})
    _, thresholds = pd.qcut(data["score"], 10, retbins=True)
    rows = []
    for i, threshold in enumerate(thresholds):
        selection = data["score"] >= threshold if i != len(thresholds) - 1 else data["score"] > threshold
        results = np.where(selection, data["strong"], data["weak"])
        rows.append(
            {
                "accuracy": sum(results) / len(results) * 100,
                "strong_percentage": selection.sum() / len(data) * 100,
            }
        )
    frame = pd.DataFrame(rows).sort_values(by=["strong_percentage"])
    weak_acc, strong_acc = data["weak"].mean() * 100, data["strong"].mean() * 100
    out = {}
    for pct in (0.2, 0.5, 0.8):
        out[f"cpt{round(pct * 100)}"] = (
            np.interp(pct * (strong_acc - weak_acc) + weak_acc, frame["accuracy"], frame["strong_percentage"])
            / 100
        )
    x = frame["strong_percentage"] / 100
    auc = np.trapezoid(frame["accuracy"], x)
    weak_auc, strong_auc = (
        np.trapezoid(np.full(len(x), weak_acc), x),
        np.trapezoid(np.full(len(x), strong_acc), x),
    )
    out["apgr"] = (auc - weak_auc) / (strong_auc - weak_auc)
    return out


def labels(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n) < 0.65, rng.random(n) < 0.85


def test_metrics_match_routellm_code_line_by_line() -> None:
    weak, strong = labels(1000)
    rng = np.random.default_rng(7)
    for score in (rng.random(1000), (~weak & strong) + rng.normal(0, 0.8, 1000)):
        ours = router_metrics(score, weak, strong)
        reference = routellm_reference(score, weak, strong)
        for name in ("apgr", "cpt20", "cpt50", "cpt80"):
            assert getattr(ours, name) == pytest.approx(reference[name], abs=1e-12)


def test_curve_spans_all_small_to_all_large() -> None:
    weak, strong = labels(500)
    curve = quality_curve(np.random.default_rng(0).random(500), weak, strong)
    assert curve.shape == (11, 2)
    assert curve[0, 0] == 0
    assert curve[0, 1] == pytest.approx(weak.mean())
    assert curve[-1, 0] == 1
    assert curve[-1, 1] == pytest.approx(strong.mean())


def test_random_router_scores_a_half() -> None:
    weak, strong = labels(2000)
    figures = random_metrics(weak, strong, draws=100)
    assert figures.apgr == pytest.approx(0.5, abs=0.02)
    assert figures.cpt50 == pytest.approx(0.5, abs=0.03)
    assert figures.cpt80 == pytest.approx(0.8, abs=0.03)


def test_oracle_curve_values() -> None:
    weak = np.array([1, 1, 0, 0, 0, 1, 1, 0, 1, 1], dtype=bool)
    strong = np.array([1, 0, 1, 1, 0, 1, 1, 1, 1, 0], dtype=bool)  # 3 strong wins
    curve = oracle_curve(weak, strong)
    assert curve[:, 0] == pytest.approx(np.linspace(0, 1, 11))
    assert curve[:, 1] == pytest.approx([0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    figures = oracle_metrics(weak, strong)
    # PGR = (q - 0.6) / (0.7 - 0.6): 0, 1, 2, 3, then 3 to the end; trapezoid over shares of 0.1
    assert figures.apgr == pytest.approx(0.1 * (0.5 + 1.5 + 2.5 + 3 * 7))
    assert figures.cpt50 == pytest.approx(0.05)


def test_a_score_that_knows_the_winners_beats_always_large() -> None:
    weak, strong = labels(1000)
    assert router_metrics((~weak & strong).astype(float), weak, strong).apgr > 1.0
    assert router_metrics(-(~weak & strong).astype(float), weak, strong).apgr < 0.5
