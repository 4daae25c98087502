"""The learned router: labels, training on a synthetic set, numpy-vs-sklearn parity, artifacts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hybrid.routing.model import (
    CLASSES,
    Example,
    RouterModel,
    RouterScore,
    TrainConfig,
    decide_with_model,
    gain_auc,
)
from hybrid.routing.training import (
    cross_validated_need_large,
    fit_forest,
    fit_linear,
    fit_router_model,
    prior_need_large,
)

pytestmark = pytest.mark.unit

TOPICS = {
    "math": "What is {a} times {b} plus the number of {thing} in the box?",
    "capitals": "What is the capital city of country number {a} in the {thing} atlas?",
    "authors": "Who wrote book {a} of the {thing} series, volume {b}?",
}
THINGS = ("apples", "pens", "stones", "coins", "maps")


def synthetic(n_per_topic: int = 40, seed: int = 0) -> tuple[list[Example], np.ndarray]:
    """Three topics with their own embedding direction; math is always a win for the large model."""
    rng = np.random.default_rng(seed)
    centres = {name: rng.normal(size=16) for name in TOPICS}
    examples, vectors = [], []
    for name, template in TOPICS.items():
        for i in range(n_per_topic):
            text = template.format(a=i + 2, b=3 * i + 1, thing=THINGS[i % len(THINGS)])
            large_wins = name == "math"
            examples.append(Example(text, small_correct=not large_wins, large_correct=True, group=name))
            vectors.append(centres[name] + rng.normal(scale=0.3, size=16))
    vectors = np.array(vectors, dtype=np.float32)
    return examples, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_labels_map_to_the_four_outcome_classes() -> None:
    assert Example("q", small_correct=False, large_correct=False).outcome == CLASSES.index("both_wrong")
    assert Example("q", small_correct=False, large_correct=True).outcome == CLASSES.index("strong_wins")
    assert Example("q", small_correct=True, large_correct=False).outcome == CLASSES.index("weak_wins")
    assert Example("q", small_ok=1).outcome == CLASSES.index("both_right")
    assert Example("q", small_ok=0).outcome == CLASSES.index("strong_wins")
    assert (
        Example("and Germany?", small_ok=1, context="Capital of France?").text
        == "Capital of France?\nand Germany?"
    )
    with pytest.raises(ValueError, match="not both"):
        Example("q", small_ok=1, small_correct=True, large_correct=True)
    with pytest.raises(ValueError, match="positive"):
        Example("q", small_ok=1, weight=0)


def test_a_topic_the_small_model_always_fails_is_routed_large() -> None:
    examples, vectors = synthetic()
    model = fit_router_model(examples[1:], vectors[1:], description="synthetic")  # examples[0]: unseen
    assert model.level2 == "lr"  # few examples: the logistic level 2
    maths = model.score(examples[0].query, vectors[0])
    others = [model.score(e.query, v) for e, v in zip(examples[40:], vectors[40:], strict=True)]
    assert isinstance(maths, RouterScore)
    assert model.threshold == 0.5  # not calibrated yet
    assert decide_with_model(maths, model.threshold)[0] == "large"
    assert all(decide_with_model(s, model.threshold)[0] == "small" for s in others)
    assert maths.need_large > 0.5 > maths.p_small_ok
    assert min(s.p_small_ok for s in others) > 0.5
    assert sum(maths.probabilities.values()) == pytest.approx(1.0)
    assert maths.top_signals  # explained
    route, reason = decide_with_model(maths, 0.2)
    assert route == "large"
    assert reason.startswith(f"learned need_large {maths.need_large:.2f} >= 0.20")


def test_knn_columns_can_be_turned_off() -> None:
    examples, vectors = synthetic()
    model = fit_router_model(examples[1:], vectors[1:], TrainConfig(ks=()), description="no kNN")

    assert not any(name.startswith("knn") for name in model.column_names)
    maths, capitals = (model.score(examples[i].query, vectors[i]).need_large for i in (0, 40))
    assert maths > capitals + 0.1


def test_only_extra_features_that_varied_in_training_count_as_informative() -> None:
    examples, vectors = synthetic()
    constant = fit_router_model(examples, vectors, TrainConfig(ks=(5,)), description="no retrieval")
    varied = [replace(e, extra={"retrieval_confidence": i % 3 / 2}) for i, e in enumerate(examples)]
    learned = fit_router_model(varied, vectors, TrainConfig(ks=(5,)), description="with retrieval")

    assert constant.extra_features == learned.extra_features == ("retrieval_confidence",)
    assert constant.informative_extras == ()
    assert learned.informative_extras == ("retrieval_confidence",)


def test_feedback_weights_move_the_model() -> None:
    examples, vectors = synthetic()
    # Feedback says the small model was fine on math after all; weighted, it outvotes the pairs.
    feedback = [Example(e.query, small_ok=1, weight=5.0, group="feedback") for e in examples[:40]]
    plain = fit_router_model(examples, vectors)
    taught = fit_router_model(examples + feedback, np.vstack([vectors, vectors[:40]]))
    query, vector = "What is 99 times 4 plus the number of pens in the box?", vectors[5]
    assert taught.score(query, vector).need_large < plain.score(query, vector).need_large


def test_numpy_trees_match_sklearn() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    y = (x[:, 0] > 0).astype(int) * 2 + (x[:, 1] + 0.3 * x[:, 2] > 0).astype(int)
    config = TrainConfig(hgb_iterations=25, hgb_min_leaf=10, hgb_learning_rate=0.1)
    arrays = fit_forest(x, y, np.ones(len(y)), config)
    reference = HistGradientBoostingClassifier(
        max_iter=25, learning_rate=0.1, max_leaf_nodes=config.hgb_leaves, min_samples_leaf=10,
        l2_regularization=1.0, early_stopping="auto", random_state=0,
    ).fit(x, y)  # fmt: skip
    model = RouterModel(arrays, {"ks": [], "use_embedding": False, "extra_features": [], "level2": "hgb",
                                 "columns": [f"f{i}" for i in range(8)]})  # fmt: skip
    test = rng.normal(size=(200, 8))
    assert np.abs(model.proba_from_level1(test) - reference.predict_proba(test)).max() < 1e-12
    # Saabas contributions add up to each logit minus the trees' roots.
    forest = model.forest
    assert forest is not None
    contributions = forest.contributions(test[:3]).sum(2)
    roots = np.array([forest.nodes["value"][forest.offsets[forest.tree_class == c]].sum() for c in range(4)])
    assert contributions == pytest.approx(forest.logits(test[:3]) - forest.baseline - roots)


def test_numpy_logistic_regression_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5))
    for y in (rng.integers(0, 4, 300), np.where(x[:, 0] > 0, 3, 1)):  # 4 classes, and feedback's 2
        linear = fit_linear(x, y, np.ones(300), 0.5)
        mu, sd = x.mean(0), x.std(0) + 1e-6
        reference = LogisticRegression(C=0.5, max_iter=3000).fit((x - mu) / sd, y)
        ours = linear.proba(x)
        assert ours[:, reference.classes_] == pytest.approx(reference.predict_proba((x - mu) / sd), abs=1e-9)
        assert ours.sum(1) == pytest.approx(1.0)


def test_artifact_round_trip(tmp_path: Path) -> None:
    examples, vectors = synthetic(60)
    config = TrainConfig(level2="blend", hgb_iterations=30, hgb_min_leaf=5, ks=(3, 10))
    model = fit_router_model(examples, vectors, config, description="synthetic topics")
    folder = model.save(tmp_path / "router-v1")
    assert sorted(p.name for p in folder.iterdir()) == ["router.json", "router.npz"]
    with np.load(folder / "router.npz", allow_pickle=False) as stored:  # numpy arrays only
        assert stored["reference"].dtype == np.int8
    meta = json.loads((folder / "router.json").read_text())
    for key in ("version", "created", "training_data", "label_scheme", "columns", "threshold_semantics"):
        assert meta[key]
    assert meta["training_data"] == "synthetic topics"
    loaded = RouterModel.load(folder)
    assert RouterModel.load(folder) is loaded  # once per process
    texts = [e.text for e in examples]
    assert loaded.need_large(texts, vectors) == pytest.approx(model.need_large(texts, vectors), abs=1e-12)
    loaded.with_meta(threshold={"value": 0.25}).save_meta(folder)
    reloaded = RouterModel.load(folder)
    assert reloaded is not loaded
    assert reloaded.threshold == 0.25


def test_int8_reference_is_close_to_float32() -> None:
    examples, vectors = synthetic()
    exact = fit_router_model(examples, vectors, TrainConfig(reference_dtype="float32"))
    small = fit_router_model(examples, vectors, TrainConfig(reference_dtype="int8"))
    assert np.abs(exact.reference - small.reference).max() < 0.01


def test_gain_auc_orders_wins_first() -> None:
    outcome = np.array([1, 1, 3, 0, 2, 2])
    best = gain_auc(np.array([6, 5, 4, 3, 2, 1]), outcome)
    assert best > 0
    assert gain_auc(np.array([1, 2, 3, 4, 5, 6]), outcome) == pytest.approx(-best)


def test_a_linear_level_fitted_on_one_outcome_predicts_that_outcome() -> None:
    x = np.random.default_rng(0).normal(size=(12, 3))
    linear = fit_linear(x, np.full(12, 3), np.ones(12), 1.0)
    assert np.allclose(linear.proba(x)[:, 3], 1.0)


def test_a_fold_that_trains_on_one_outcome_scores_its_held_out_examples_by_the_prior() -> None:
    examples, vectors = synthetic(n_per_topic=12)
    # Fold 0 holds math back; the other two topics are all both_right, one outcome, nothing to learn.
    folds = np.array([0 if e.group == "math" else 1 for e in examples])
    config = TrainConfig(ks=(5,), holdout="group")

    score = cross_validated_need_large(examples, vectors, config, folds)

    # Held-out math, scored from the two topics the small model always gets right: no lean.
    assert np.allclose(score[folds == 0], 0.0)
    # Held-out capitals and authors, scored from math alone: the large model always won there.
    assert np.allclose(score[folds == 1], (12 + 1 - 1) / (12 + 4))


def test_folds_with_both_outcomes_still_learn() -> None:
    examples, vectors = synthetic(n_per_topic=12)
    folds = np.arange(len(examples)) % 3
    score = cross_validated_need_large(examples, vectors, TrainConfig(ks=(5,)), folds)
    maths = np.array([e.group == "math" for e in examples])
    assert score[maths].min() > score[~maths].max()


def test_the_prior_leans_large_as_the_large_model_wins_more() -> None:
    wins = [Example("q", small_correct=False, large_correct=True)] * 6
    ties = [Example("q", small_correct=True, large_correct=True)] * 6
    assert prior_need_large(wins) == pytest.approx((6 + 1 - 1) / (6 + 4))
    assert prior_need_large(ties) == pytest.approx(0.0)
    assert prior_need_large(wins) > prior_need_large(wins[:3] + ties[:3]) > prior_need_large(ties)
