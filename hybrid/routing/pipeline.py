"""What `hybrid router train` and `hybrid router calibrate` do, as functions the CLI calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.routing.calibration import Calibration, calibrate
from hybrid.routing.embedding import embed_cached
from hybrid.routing.metrics import router_metrics
from hybrid.routing.model import Example, RouterModel, TrainConfig
from hybrid.routing.training import cross_validated_need_large, fit_router_model, grouped_folds, holdout_ids
from hybrid.settings import Settings


@dataclass(frozen=True)
class TrainReport:
    """Where a trained router was written and how it did out of fold."""

    path: Path
    examples: int
    level2: str
    metrics: dict[str, Any]
    seconds: float


def default_output_dir(settings: Settings) -> Path:
    """A new versioned folder for a trained router under the data directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir / "router" / f"router-{stamp}"


def _correctness(example: Example) -> tuple[bool, bool]:
    """(small correct, large correct), a single feedback label read as the label scheme says."""
    if example.small_correct is not None:
        return bool(example.small_correct), bool(example.large_correct)
    return bool(example.small_ok), True


def _paired(examples: Sequence[Example]) -> np.ndarray:
    return np.array([e.small_correct is not None for e in examples], dtype=bool)


def out_of_fold_metrics(examples: Sequence[Example], score: np.ndarray) -> dict[str, Any]:
    """RouteLLM figures of out-of-fold scores, over all examples with both labels and per source."""
    paired = _paired(examples)
    out: dict[str, Any] = {}
    sources = {"all": paired}
    for prefix in sorted({(e.group or "").split(":")[0] for e in examples if e.group}):
        sources[prefix] = paired & np.array([(e.group or "").split(":")[0] == prefix for e in examples])
    for name, mask in sources.items():
        if mask.sum() < 20:
            continue
        small = np.array([examples[i].small_correct for i in np.where(mask)[0]], dtype=bool)
        large = np.array([examples[i].large_correct for i in np.where(mask)[0]], dtype=bool)
        if small.mean() == large.mean():
            continue
        out[name] = {**router_metrics(score[mask], small, large).as_dict(), "examples": int(mask.sum())}
    return out


def train_router(
    examples: Sequence[Example],
    out: Path,
    *,
    description: str,
    cache_dir: Path | None,
    config: TrainConfig | None = None,
    cv_folds: int = 5,
    threads: int = 1,
    log: Callable[[str], None] = lambda _m: None,
) -> TrainReport:
    """Train on `examples`, score them out of fold (for metrics and calibration), save to `out`."""
    began = time.perf_counter()
    config = config or TrainConfig()
    log(f"embedding {len(examples)} queries ...")
    embeddings = embed_cached(
        [e.text for e in examples], cache_dir, threads=threads, layer=config.embedding_layer
    )
    arrays: dict[str, np.ndarray] = {}
    metrics: dict[str, Any] = {}
    ids = holdout_ids(examples, "text")
    if cv_folds >= 2 and len(np.unique(ids)) >= cv_folds:
        log(f"{cv_folds}-fold cross-validation for out-of-fold scores ...")
        score = cross_validated_need_large(
            examples, embeddings, config, grouped_folds(ids, cv_folds, config.seed)
        )
        # Kept for `hybrid router calibrate` without --data: scores of queries the scoring model never
        # saw. A feedback label stands for its class (small_ok=1: both right; 0: only large right).
        arrays["oof_need_large"] = score.astype(np.float32)
        arrays["oof_small_correct"] = np.array([_correctness(e)[0] for e in examples], dtype=bool)
        arrays["oof_large_correct"] = np.array([_correctness(e)[1] for e in examples], dtype=bool)
        metrics = {"out_of_fold": out_of_fold_metrics(examples, score), "cv_folds": cv_folds}
    log("fitting on every example ...")
    model = fit_router_model(examples, embeddings, config, description=description)
    model = RouterModel({**model.arrays, **arrays}, {**model.meta, "metrics": metrics})
    model.save(out)
    return TrainReport(Path(out), len(examples), model.level2, metrics, time.perf_counter() - began)


def calibrate_router(
    router_dir: Path,
    examples: Sequence[Example] | None,
    *,
    target_quality: float | None,
    max_large_share: float | None,
    cache_dir: Path | None,
    source: str,
) -> Calibration:
    """Choose the router's threshold on labelled data (or its out-of-fold scores) and save it."""
    model = RouterModel.load(router_dir)
    if examples is None:
        if "oof_need_large" not in model.arrays:
            raise ValueError(f"{router_dir} has no out-of-fold scores: give --data")
        score = model.arrays["oof_need_large"].astype(float)
        small, large = model.arrays["oof_small_correct"], model.arrays["oof_large_correct"]
    else:
        paired = [e for e in examples if e.small_correct is not None]
        if len(paired) < 2:
            raise ValueError("calibration needs examples with both small_correct and large_correct")
        texts = [e.text for e in paired]
        embeddings = (
            embed_cached(texts, cache_dir, layer=model.embedding_layer) if model.use_embedding else None
        )
        score = model.need_large(texts, embeddings, [dict(e.extra) for e in paired])
        small = np.array([e.small_correct for e in paired], dtype=bool)
        large = np.array([e.large_correct for e in paired], dtype=bool)
    result = calibrate(score, small, large, target_quality=target_quality, max_large_share=max_large_share)
    record = {
        **result.as_dict(),
        "calibrated_on": source,
        "calibrated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    model.with_meta(threshold=record).save_meta(router_dir)
    return result
