"""What `hybrid verifier build-data|train|calibrate` and `hybrid eval verifier` do, as functions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.settings import Settings
from hybrid.verification.calibration import (
    Calibration,
    accept_figures,
    calibrate,
    choose_threshold,
    score_metrics,
)
from hybrid.verification.data import LabelledDraft
from hybrid.verification.model import VerifierModel
from hybrid.verification.training import (
    artifact_meta,
    fit_verifier,
    group_ids,
    heuristic_scores,
    out_of_fold,
    row_signals,
    rows_embedder,
)

Log = Callable[[str], None]


def embedding_cache(settings: Settings) -> Path:
    """MiniLM vectors of questions, answers and passages, shared with the router's tools."""
    return settings.data_dir / "embedding-cache"


def default_output_dir(settings: Settings) -> Path:
    """A new versioned folder for a trained verifier under the data directory."""
    return settings.data_dir / "verifier" / f"verifier-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def rule_adjusted(rows: Sequence[LabelledDraft], p: np.ndarray) -> np.ndarray:
    """Scores after the verifier's rules (arithmetic), exactly as the graph applies them."""
    from hybrid.verification.judge import apply_rules

    return np.array([apply_rules(r.question, r.answer, float(v))[0] for r, v in zip(rows, p, strict=True)])


@dataclass(frozen=True)
class TrainReport:
    """Where a trained verifier was written and how it did out of fold."""

    path: Path
    rows: int
    metrics: dict[str, Any]
    seconds: float


def train_verifier(
    rows: Sequence[LabelledDraft],
    out: Path,
    *,
    description: str,
    cache_dir: Path | None,
    cv_folds: int = 5,
    log: Log = lambda _m: None,
) -> TrainReport:
    """Fit on every row, with out-of-fold metrics (heuristic beside it), and save to `out`."""
    began = time.perf_counter()
    log(f"measuring the signals of {len(rows)} drafts ...")
    signals = row_signals(rows, rows_embedder(rows, cache_dir))
    y = np.array([r.good for r in rows], dtype=int)
    groups = group_ids(rows)
    metrics: dict[str, Any] = {}
    folds = min(cv_folds, len(np.unique(groups)))
    if folds >= 2:
        log(f"{folds}-fold grouped cross-validation ...")
        p = rule_adjusted(rows, out_of_fold(signals, y, groups, folds))
        metrics = {
            "cv_folds": folds,
            "out_of_fold": {
                "calibrated": score_metrics(p, y),
                "heuristic": score_metrics(heuristic_scores(rows), y),
            },
        }
    log("fitting on every row ...")
    model = fit_verifier(signals, y, groups)
    meta = artifact_meta(model, description=description, rows=rows) | {"metrics": metrics}
    VerifierModel(meta).save(out)
    return TrainReport(Path(out), len(rows), metrics, time.perf_counter() - began)


def calibrate_verifier(
    folder: Path,
    rows: Sequence[LabelledDraft],
    *,
    target_precision: float | None,
    max_reject_share: float | None,
    cache_dir: Path | None,
    source: str,
    held_out: bool = False,
    cv_folds: int = 5,
) -> Calibration:
    """Choose the threshold on out-of-fold scores of `rows` (or, if they are `held_out` from training,
    the saved model's own scores) and save it into `verifier.json`."""
    model = VerifierModel.load(folder)
    signals = row_signals(rows, rows_embedder(rows, cache_dir))
    y = np.array([r.good for r in rows], dtype=int)
    if held_out:
        from hybrid.verification.training import predict

        p = predict(model, signals)
        how = "the saved model's scores of held-out rows"
    else:
        groups = group_ids(rows)
        folds = min(cv_folds, len(np.unique(groups)))
        if folds < 2:
            raise ValueError("out-of-fold calibration needs rows of at least two groups (or --held-out)")
        p = out_of_fold(signals, y, groups, folds)
        how = f"{folds}-fold grouped out-of-fold scores"
    result = calibrate(
        rule_adjusted(rows, p), y, target_precision=target_precision, max_reject_share=max_reject_share
    )
    record = {
        **result.as_dict(),
        "calibrated_on": f"{source} ({how})",
        "calibrated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    model.with_meta(threshold=record).save(folder)
    return result


def evaluate_verifier(
    rows: Sequence[LabelledDraft],
    *,
    cache_dir: Path | None,
    folds: int = 5,
    target_precision: float | None = 0.9,
    max_reject_share: float | None = None,
    heuristic_threshold: float = 0.6,
    log: Log = lambda _m: None,
) -> dict[str, Any]:
    """Cross-validated figures: nothing sees its test fold. Per outer fold the model (and its C) is
    fitted on the other folds and the threshold chosen on their inner out-of-fold scores."""
    signals = row_signals(rows, rows_embedder(rows, cache_dir))
    y = np.array([r.good for r in rows], dtype=int)
    groups = group_ids(rows)
    k = min(folds, len(np.unique(groups)))
    if k < 2:
        raise ValueError("the evaluation needs questions of at least two articles")
    thresholds = np.zeros(len(rows))
    chosen: list[float] = []

    def pick_threshold(_model: VerifierModel | None, train: np.ndarray, test: np.ndarray) -> None:
        sub = [rows[i] for i in train]
        inner = out_of_fold([signals[i] for i in train], y[train], groups[train], k)
        t = choose_threshold(
            rule_adjusted(sub, inner),
            y[train],
            target_precision=target_precision,
            max_reject_share=max_reject_share,
        )
        thresholds[test] = t
        chosen.append(round(t, 4))

    log(f"{k}-fold grouped cross-validation over {len(rows)} drafts ...")
    p = rule_adjusted(rows, out_of_fold(signals, y, groups, k, on_fold=pick_threshold))
    heuristic = heuristic_scores(rows)
    precision, share, recall = accept_figures(p - thresholds, y, 0.0)
    h_precision, h_share, h_recall = accept_figures(heuristic, y, heuristic_threshold)
    rule = (
        f"target_precision={target_precision}"
        if target_precision is not None
        else f"max_reject_share={max_reject_share}"
    )
    conditions = sorted({r.condition for r in rows if r.condition})
    return {
        "rows": len(rows),
        "good_share": round(float(y.mean()), 4),
        "conditions": {c: int(sum(r.condition == c for r in rows)) for c in conditions},
        "folds": k,
        "heuristic": score_metrics(heuristic, y),
        "calibrated": score_metrics(p, y),
        "at_threshold": {
            "rule": rule,
            "thresholds": chosen,
            "precision": _figure(precision),
            "recall": _figure(recall),
            "accept_share": _figure(share),
        },
        "heuristic_at_threshold": {
            "threshold": heuristic_threshold,
            "precision": _figure(h_precision),
            "recall": _figure(h_recall),
            "accept_share": _figure(h_share),
        },
    }


def _figure(value: float) -> float | None:
    """Rounded, or None when undefined (a precision with nothing accepted), so the JSON stays JSON."""
    return None if np.isnan(value) else round(float(value), 4)


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as a small table."""
    h, c = report["heuristic"], report["calibrated"]
    t, ht = report["at_threshold"], report["heuristic_at_threshold"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    lines = [
        f"{report['rows']} drafts ({', '.join(f'{v} {k}' for k, v in report['conditions'].items())}), "
        f"{report['good_share']:.1%} good; {report['folds']}-fold grouped cross-validation",
        "",
        f"{'score':<12}{'AUROC':>8}{'Brier':>8}{'ECE':>8}",
        f"{'heuristic':<12}{h['auroc']:>8.3f}{h['brier']:>8.3f}{h['ece']:>8.3f}",
        f"{'calibrated':<12}{c['auroc']:>8.3f}{c['brier']:>8.3f}{c['ece']:>8.3f}",
        "",
        f"calibrated, threshold chosen per fold ({t['rule']}; "
        f"{', '.join(f'{v:.3f}' for v in t['thresholds'])}): "
        f"precision {pct(t['precision'])}, recall {pct(t['recall'])}, accepted {pct(t['accept_share'])}",
        f"heuristic at {ht['threshold']:.2f}: precision {pct(ht['precision'])}, "
        f"recall {pct(ht['recall'])}, accepted {pct(ht['accept_share'])}",
    ]
    return "\n".join(lines)
