"""Replay: what a version's router and verifiers would have done with labelled pairs, without
running a model. For each pair the version's router scores the question, each tier's verifier
scores the stored draft, and the version's thresholds decide as the graph would
(`hybrid.tuning.calibrate.simulate`). The curve moves the router's threshold from "always
small" to "always large", the verifiers' thresholds as calibrated, so it answers "what would this
threshold have saved us last week".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid import registry
from hybrid.settings import Settings
from hybrid.tuning.calibrate import Plan, Scores, expected_figures, simulate
from hybrid.tuning.pairs import Pair
from hybrid.tuning.tune import drafts_of, router_examples

CURVE_POINTS = 11


def _p_good(folder: Path | None, pairs: Sequence[Pair], tier: str) -> tuple[np.ndarray, float]:
    """A tier's verifier scores of the stored drafts, and its threshold (heuristic without one)."""
    from hybrid.verification.heuristic import verify_draft
    from hybrid.verification.judge import HEURISTIC_THRESHOLD, LARGE_HEURISTIC_THRESHOLD, load_verifier
    from hybrid.verification.pipeline import rule_adjusted
    from hybrid.verification.training import predict, row_signals, rows_embedder

    rows = drafts_of(pairs, tier)
    model, _problem = load_verifier(folder) if folder else (None, None)
    if model is None:
        default = HEURISTIC_THRESHOLD if tier == "small" else LARGE_HEURISTIC_THRESHOLD
        scores = [
            verify_draft(r.question, {"text": r.answer, "error": None, "finish_reason": r.finish_reason,  # type: ignore[typeddict-item]
                                      "model_meta": r.model_meta, "tier": tier, "model": ""},
                         [{"text": p} for p in r.passages], default)["score"]  # type: ignore[typeddict-item]
            for r in rows
        ]  # fmt: skip
        return np.array(scores), default
    p = rule_adjusted(rows, predict(model, row_signals(rows, rows_embedder(rows, None))))
    return p, model.threshold if model.threshold is not None else HEURISTIC_THRESHOLD


def _need_large(folder: Path | None, pairs: Sequence[Pair]) -> tuple[np.ndarray, float]:
    from hybrid.routing.heuristic import HEURISTIC_THRESHOLD, difficulty_score, difficulty_signals
    from hybrid.routing.model import RouterModel
    from retrieval.embeddings import embed

    if folder is None:
        return np.array(
            [difficulty_score(difficulty_signals(p.question))[0] for p in pairs]
        ), HEURISTIC_THRESHOLD
    model = RouterModel.load(folder)
    examples = router_examples(pairs)
    texts = [e.text for e in examples]
    embeddings = embed(texts, layer=model.embedding_layer) if model.use_embedding else None
    return model.need_large(texts, embeddings, [dict(e.extra) for e in examples]), model.threshold


def replay_version(settings: Settings, version: str, pairs: Sequence[Pair]) -> dict[str, Any]:
    """A version's figures on the pairs at its thresholds, and its curve over the router's threshold."""
    paths = registry.version_paths(settings, version)
    need_large, router_threshold = _need_large(paths["router"], pairs)
    p_small, small_threshold = _p_good(paths["small"], pairs, "small")
    p_large, large_threshold = _p_good(paths["large"], pairs, "large")
    scores = Scores(
        need_large=need_large,
        p_small=p_small,
        p_large=p_large,
        quality_small=np.array([p.small_quality for p in pairs]),
        quality_large=np.array([p.large_quality for p in pairs]),
        cost_small=np.array([p.small.cost for p in pairs]),
        cost_large=np.array([p.large.cost for p in pairs]),
        groups=np.array([p.group for p in pairs]),
    )
    plan = Plan(router_threshold, small_threshold, large_threshold)
    large_cost = max(float(scores.cost_large.sum()), 1e-12)
    curve = []
    for threshold in [np.inf, *np.quantile(need_large, np.linspace(1, 0, CURVE_POINTS)), -np.inf]:
        out = simulate(scores, Plan(float(threshold), small_threshold, large_threshold))
        curve.append(
            {
                "router_threshold": None if np.isinf(threshold) else round(float(threshold), 4),
                "cost_share": round(float(out.cost.sum()) / large_cost, 4),
                "quality": round(float(out.quality.mean()), 4),
                "review_share": round(float(out.review.mean()), 4),
            }
        )
    return {
        "version": version,
        "plan": plan.__dict__,
        "figures": expected_figures(scores, plan),
        "curve": curve,
    }


def replay(settings: Settings, pairs: Sequence[Pair], versions: Sequence[str]) -> dict[str, Any]:
    """Each version, and always-small and always-large, on the same labelled pairs."""
    small_quality = np.array([p.small_quality for p in pairs])
    large_quality = np.array([p.large_quality for p in pairs])
    large_cost = max(sum(p.large.cost for p in pairs), 1e-12)
    return {
        "pairs": len(pairs),
        "always_small": {"quality": round(float(small_quality.mean()), 4),
                         "cost_share": round(sum(p.small.cost for p in pairs) / large_cost, 4)},
        "always_large": {"quality": round(float(large_quality.mean()), 4), "cost_share": 1.0},
        "versions": {v: replay_version(settings, v, pairs) for v in versions},
    }  # fmt: skip


def format_replay(report: dict[str, Any]) -> str:
    lines = [
        f"{report['pairs']} labelled pairs",
        f"  always-small: quality {report['always_small']['quality']:.3f} at "
        f"{report['always_small']['cost_share']:.1%} of always-large's cost",
        f"  always-large: quality {report['always_large']['quality']:.3f}",
    ]
    for version, result in report["versions"].items():
        value = {
            name: figure["value"] for name, figure in result["figures"].items() if isinstance(figure, dict)
        }
        lines.append(
            f"  {version}: quality {value['quality']:.3f} ({value['quality_vs_large']:.1%} of always-large), "
            f"saving {value['saving_vs_large']:.1%}, review {value['review_share']:.1%}"
        )
        points = ", ".join(f"{p['cost_share']:.0%}:{p['quality']:.3f}" for p in result["curve"])
        lines.append(f"    curve (cost share: quality) as its router threshold moves: {points}")
    return "\n".join(lines)
