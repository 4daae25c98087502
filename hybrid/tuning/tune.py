"""`hybrid tune`: from labelled pairs of the served models to a router, a verifier per tier, and
thresholds calibrated together to one target, stored as a new registry version.

1. Each tier's verifier learns from that tier's own drafts whether a draft was good (the signals
   of `hybrid.verification.features`, a logistic regression; `hybrid.verification.training`).
2. The router learns, from the question alone (and retrieval's confidence), which of the four
   outcomes to expect: both wrong, only the large model right, only the small one, both right
   (`hybrid.routing`); its score is `need_large`.
3. Out-of-fold scores of both (folds grouped, so no question is scored by a model that saw its
   group) go to `hybrid.tuning.calibrate`, which picks the three thresholds together.
4. The final models are fitted on every pair, the thresholds written into them, and the folder
   (router/, verifier-small/, verifier-large/, manifest.json) is the version.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.errors import NotEnoughToLearn
from hybrid.tuning import DEFAULT_CONFIDENCE
from hybrid.tuning.calibrate import Choice, Plan, Scores, choose
from hybrid.tuning.pairs import Pair
from hybrid.verification.data import GOOD_RULE, LabelledDraft

Log = Callable[[str], None]
TIERS = ("small", "large")
ROUTER_EDGE = 1.01
"""need_large lies in [-1, 1]: a threshold of 1.01 never starts on the large model, -1.01 always."""


@dataclass
class TuneReport:
    folder: Path
    pairs: int
    choice: Choice
    verifiers: dict[str, dict[str, Any]]
    router: dict[str, Any]
    seconds: float


def drafts_of(pairs: Sequence[Pair], tier: str) -> list[LabelledDraft]:
    """One tier's drafts as the verifier's labelled rows."""
    rows = []
    for pair in pairs:
        draft = pair.small if tier == "small" else pair.large
        rows.append(
            LabelledDraft(
                question=pair.question,
                answer=draft.text,
                good=int(pair.small_good if tier == "small" else pair.large_good),
                passages=pair.passages,
                finish_reason=draft.finish_reason,
                model_meta=draft.model_meta,
                group=pair.group,
            )
        )
    return rows


def router_examples(pairs: Sequence[Pair]) -> list[Any]:
    from hybrid.routing.model import Example

    return [
        Example(
            query=pair.question,
            small_correct=pair.small_good,
            large_correct=pair.large_good,
            group=pair.group,
            extra={"retrieval_confidence": pair.retrieval_confidence}
            if pair.retrieval_confidence is not None
            else {},
        )
        for pair in pairs
    ]


def _router_config(pairs: Sequence[Pair]) -> Any:
    from hybrid.routing.model import TrainConfig

    # Neighbourhoods no larger than a fold's share of the data; groups held out, so a question is
    # never routed by its own article's other questions.
    ks = tuple(k for k in (5, 10, 30, 100) if k < len(pairs) // 3) or (5,)
    return TrainConfig(ks=ks, holdout="group")


def _grouped_folds(groups: Sequence[str], k: int) -> np.ndarray:
    from hybrid.verification.training import grouped_folds

    return grouped_folds(np.asarray(groups), k)


def out_of_fold_scores(
    pairs: Sequence[Pair], *, folds: int, cache_dir: Path | None, log: Log = lambda _m: None
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """P(good) of each tier's drafts and the router's need_large, each from a model that never saw
    the question's group; with the verifiers' out-of-fold metrics."""
    from hybrid.routing.embedding import embed_cached
    from hybrid.routing.training import cross_validated_need_large
    from hybrid.verification.calibration import score_metrics
    from hybrid.verification.pipeline import rule_adjusted
    from hybrid.verification.training import group_ids, out_of_fold, row_signals, rows_embedder

    p: dict[str, np.ndarray] = {}
    metrics: dict[str, Any] = {}
    for tier in TIERS:
        rows = drafts_of(pairs, tier)
        log(f"{tier} tier: signals of {len(rows)} drafts ...")
        signals = row_signals(rows, rows_embedder(rows, cache_dir))
        y = np.array([r.good for r in rows])
        p[tier] = rule_adjusted(rows, out_of_fold(signals, y, group_ids(rows), folds))
        metrics[tier] = {**score_metrics(p[tier], y), "good": int(y.sum()), "drafts": len(rows)}
    log("router: out-of-fold need_large ...")
    examples = router_examples(pairs)
    config = _router_config(pairs)
    embeddings = embed_cached([e.text for e in examples], cache_dir, layer=config.embedding_layer)
    need_large = cross_validated_need_large(
        examples, embeddings, config, _grouped_folds([p.group for p in pairs], folds)
    )
    return p, need_large, metrics


def scores_of(pairs: Sequence[Pair], p: dict[str, np.ndarray], need_large: np.ndarray) -> Scores:
    return Scores(
        need_large=np.asarray(need_large, dtype=float),
        p_small=p["small"],
        p_large=p["large"],
        quality_small=np.array([x.small_quality for x in pairs]),
        quality_large=np.array([x.large_quality for x in pairs]),
        cost_small=np.array([x.small.cost for x in pairs]),
        cost_large=np.array([x.large.cost for x in pairs]),
        groups=np.array([x.group for x in pairs]),
    )


def _stored(value: float, low: float, high: float) -> float:
    """A threshold as stored: the ends of the grid (always, never) as values the score cannot pass."""
    if math.isinf(value):
        return high if value > 0 else low
    return round(float(value), 6)


def fit_and_write(
    pairs: Sequence[Pair],
    plan: Plan,
    folder: Path,
    *,
    models: dict[str, str],
    cache_dir: Path | None,
    description: str,
    calibration: dict[str, Any],
    log: Log = lambda _m: None,
) -> None:
    """The final router and verifiers, fitted on every pair, with the plan's thresholds, in `folder`."""
    from hybrid.routing.embedding import embed_cached
    from hybrid.routing.training import fit_router_model
    from hybrid.verification.model import VerifierModel
    from hybrid.verification.training import (
        artifact_meta,
        fit_verifier,
        group_ids,
        row_signals,
        rows_embedder,
    )

    folder.mkdir(parents=True, exist_ok=True)
    thresholds = {"small": plan.small, "large": plan.large}
    for tier in TIERS:
        log(f"fitting the {tier} tier's verifier on {len(pairs)} drafts ...")
        rows = drafts_of(pairs, tier)
        signals = row_signals(rows, rows_embedder(rows, cache_dir))
        y = np.array([r.good for r in rows])
        model = fit_verifier(signals, y, group_ids(rows))
        meta = artifact_meta(model, description=f"{description}: {models[tier]}'s drafts", rows=rows)
        meta |= {
            "model": models[tier],
            "threshold": {
                "value": _stored(thresholds[tier], 0.0, 1.01),
                "rule": "chosen with the router's and the other tier's by hybrid tune",
                **calibration,
            },
        }
        VerifierModel(meta).save(folder / f"verifier-{tier}")
    log(f"fitting the router on {len(pairs)} pairs ...")
    examples = router_examples(pairs)
    config = _router_config(pairs)
    embeddings = embed_cached([e.text for e in examples], cache_dir, layer=config.embedding_layer)
    router = fit_router_model(examples, embeddings, config, description=description)
    router.with_meta(
        models={"small": models["small"], "large": models["large"]},
        threshold={
            "value": _stored(plan.router, -ROUTER_EDGE, ROUTER_EDGE),
            "rule": "chosen with both verifiers' by hybrid tune",
            **calibration,
        },
    ).save(folder / "router")


def tune(
    pairs: Sequence[Pair],
    folder: Path,
    *,
    models: dict[str, str],
    description: str,
    target_quality: float | None = None,
    max_large_share: float | None = None,
    max_review_share: float = 0.15,
    confidence: float = DEFAULT_CONFIDENCE,
    folds: int = 5,
    cache_dir: Path | None = None,
    actor: str = "anonymous",
    log: Log = lambda _m: None,
) -> TuneReport:
    """Train, calibrate and write one artefact set from labelled pairs."""
    began = time.perf_counter()
    if len({p.group for p in pairs}) < 2:
        raise NotEnoughToLearn(
            "tuning needs pairs from at least two groups (articles, or conversations of traffic)"
        )
    for tier in TIERS:
        labels = {p.small_good if tier == "small" else p.large_good for p in pairs}
        if len(labels) < 2:
            raise NotEnoughToLearn(
                f"every {tier}-tier draft of the {len(pairs)} pairs was "
                f"{'right' if labels == {True} else 'wrong'}: nothing to learn a verifier from; "
                "tune on more traffic or a question set the models sometimes miss"
            )
    folds = min(folds, len({p.group for p in pairs}))
    p, need_large, verifier_metrics = out_of_fold_scores(pairs, folds=folds, cache_dir=cache_dir, log=log)
    scores = scores_of(pairs, p, need_large)
    choice = choose(
        scores,
        target_quality=target_quality,
        max_large_share=max_large_share,
        max_review_share=max_review_share,
        confidence=confidence,
    )
    calibration = {
        "calibrated_on": f"{len(pairs)} pairs, {folds}-fold grouped out-of-fold scores",
        "calibrated": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": choice.target,
        "met": choice.met,
    }
    fit_and_write(
        pairs,
        choice.plan,
        folder,
        models=models,
        cache_dir=cache_dir,
        description=description,
        calibration=calibration,
        log=log,
    )
    from hybrid.routing.pipeline import out_of_fold_metrics

    router_metrics = out_of_fold_metrics(router_examples(pairs), need_large).get("all", {})
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_by": actor,
        "trained_on": {
            "description": description,
            "pairs": len(pairs),
            "groups": len({p.group for p in pairs}),
            "label_sources": {
                s: sum(p.source == s for p in pairs) for s in sorted({p.source for p in pairs})
            },
            "small_good": sum(p.small_good for p in pairs),
            "large_good": sum(p.large_good for p in pairs),
            "label_rule": GOOD_RULE,
        },
        "models": models,
        "calibrated_for": {
            "router": f"{models['small']} -> {models['large']}",
            "small": models["small"],
            "large": models["large"],
        },
        "plan": choice.as_dict(),
        "verifiers": verifier_metrics,
        "router": router_metrics,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=float))
    return TuneReport(
        folder, len(pairs), choice, verifier_metrics, router_metrics, time.perf_counter() - began
    )
