"""The learned verifier's signals, combiner, rules and calibration, with a deterministic fake embedder."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from graphs.state import Draft, Hit
from hybrid.verification.calibration import (
    auroc,
    calibrate,
    choose_threshold,
    expected_calibration_error,
)
from hybrid.verification.data import is_good, token_f1
from hybrid.verification.features import FEATURE_NAMES, measure
from hybrid.verification.judge import HEURISTIC_THRESHOLD, apply_rules, judge_draft
from hybrid.verification.model import ARTIFACT_VERSION, VerifierModel
from tests.fakes import small_draft

pytestmark = pytest.mark.unit

PASSAGE = "The Panthers defense gave up just 308 points, ranking sixth in the league under coach Ron Rivera."
QUESTION = "How many points did the Panthers defense surrender?"


def fake_embed(texts: list[str]) -> np.ndarray:
    """Bag of hashed words, unit length: texts sharing words are similar, others are not."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.strip(".,?!").encode()).hexdigest(), 16) % 64] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def draft(text: str, *, error: str | None = None, finish: str = "stop", meta: dict | None = None) -> Draft:
    """A draft with the token probabilities of a confident small model unless `meta` says otherwise."""
    confident = {"mean_token_logprob": -0.3, "min_token_prob": 0.2}
    return small_draft(text, error=error, finish=finish, meta=confident if meta is None else meta)


def hit(text: str) -> Hit:
    return Hit(id="1", text=text, source="doc.md", score=0.8, similarity=0.8, ranks={}, metadata={})


def signals(answer: str, passages: tuple[str, ...] = (PASSAGE,), **kwargs: object) -> dict[str, float | None]:
    options = {"finish_reason": "stop", "model_meta": {"mean_token_logprob": -0.3, "min_token_prob": 0.2}}
    options |= kwargs
    return measure(QUESTION, answer, passages, embedder=fake_embed, **options).values  # type: ignore[arg-type]


# -- signals -------------------------------------------------------------------------------------


def test_every_feature_is_measured_for_a_draft_with_sources_and_logprobs() -> None:
    values = signals("The Panthers defense gave up 308 points.")
    assert set(values) == set(FEATURE_NAMES)
    assert all(v is not None for v in values.values())
    assert values["no_context"] == values["no_logprobs"] == values["no_embedding"] == 0.0
    assert values["mean_token_prob"] == pytest.approx(math.exp(-0.3))
    assert values["term_grounding"] == 1.0
    assert values["unsupported_numbers"] == values["unsupported_names"] == 0.0
    assert values["context_similarity"] > 0.5


def test_grounding_signals_catch_invented_numbers_names_and_off_topic_answers() -> None:
    invented = signals("The Panthers defense gave up 512 points under coach Bill Belichick.")
    assert invented["unsupported_numbers"] == 1.0
    assert invented["unsupported_names"] == 2.0  # "bill", "belichick"
    off_topic = signals("Bananas are rich in potassium.")
    grounded = signals("The Panthers defense gave up 308 points.")
    assert off_topic["context_similarity"] < grounded["context_similarity"]
    assert off_topic["term_grounding"] == 0.0
    assert off_topic["question_similarity"] < grounded["question_similarity"]


@pytest.mark.parametrize(
    ("answer", "finish", "flag"),
    [
        ("I'm sorry, the sources do not mention it.", "stop", "refusal"),
        (QUESTION, "stop", "echo"),
        ("points points points points points points points points", "stop", "repetition"),
        ("The Panthers defense gave up", "length", "truncated"),
        ("The Panthers defense was strong.", "stop", "answer_type_mismatch"),
    ],
)
def test_degenerate_output_is_flagged(answer: str, finish: str, flag: str) -> None:
    assert signals(answer, finish_reason=finish)[flag] == 1.0


def test_missing_signals_are_none_with_their_indicator_never_a_fake_zero() -> None:
    no_sources = signals("308 points.", passages=())
    assert no_sources["no_context"] == 1.0
    assert all(no_sources[n] is None for n in ("term_grounding", "context_similarity", "unsupported_numbers"))
    assert no_sources["question_similarity"] is not None

    no_logprobs = signals("308 points.", model_meta={})
    assert no_logprobs["no_logprobs"] == 1.0
    assert no_logprobs["mean_token_prob"] is None
    assert no_logprobs["min_token_prob"] is None

    def broken(_texts: list[str]) -> np.ndarray:
        raise RuntimeError("no embedding model")

    no_embedding = measure(
        QUESTION, "308 points.", (PASSAGE,), finish_reason="stop", model_meta={}, embedder=broken
    )
    assert no_embedding.values["no_embedding"] == 1.0
    assert no_embedding.values["question_similarity"] is None
    assert no_embedding.values["term_grounding"] == 1.0  # lexical signals still measured


# -- labels --------------------------------------------------------------------------------------


def test_the_labelling_rule_credits_containment_and_token_f1() -> None:
    assert is_good("The Panthers defense gave up 308 points.", ["308"])
    assert is_good("Denver Broncos", ["the Denver Broncos"])  # articles and case do not matter
    assert not is_good("They gave up 3080 points.", ["308"])  # tokens, not substrings
    assert not is_good("I do not know.", ["308"])
    assert token_f1("Santa Clara, California", "Santa Clara") == pytest.approx(0.8)


# -- the combiner --------------------------------------------------------------------------------


def tiny_meta(**changes: object) -> dict:
    """A hand-made artifact: grounding helps, refusal and invented numbers hurt."""
    coefficients = dict.fromkeys(FEATURE_NAMES, 0.0)
    coefficients |= {"context_similarity": 1.5, "refusal": -2.0, "unsupported_numbers": -1.0}
    return {
        "version": ARTIFACT_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "coefficients": [coefficients[n] for n in FEATURE_NAMES],
        "intercept": 0.0,
        "means": [0.5] * len(FEATURE_NAMES),
        "scales": [0.25] * len(FEATURE_NAMES),
        "training_data": {"rows": 10, "with_passages": 10, "without_passages": 0, "with_logprobs": 10},
        "threshold": {"value": 0.55, "rule": "target_precision=0.9"},
        **changes,
    }


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    folder = tmp_path / "verifier"
    VerifierModel(tiny_meta()).save(folder)
    return folder


def test_missing_features_take_the_mean_and_contribute_nothing() -> None:
    model = VerifierModel(tiny_meta())
    measured = measure(QUESTION, "308 points.", (), finish_reason="stop", model_meta={}, embedder=fake_embed)
    score = model.score(measured)
    assert "context_similarity" in score.missing
    assert "context_similarity" not in [name for name, _, _ in score.contributions]
    assert 0.0 < score.p_good < 1.0
    magnitudes = [abs(c) for _, c, _ in score.contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_the_learned_verdict_gives_probability_threshold_and_reasons(artifact: Path) -> None:
    good = judge_draft(QUESTION, draft("The Panthers gave up 308 points."), [hit(PASSAGE)], None,
                       verifier_path=artifact, embedder=fake_embed)  # fmt: skip
    bad = judge_draft(QUESTION, draft("I'm sorry, I don't know."), [hit(PASSAGE)], None,
                      verifier_path=artifact, embedder=fake_embed)  # fmt: skip
    assert good["calibrated"]
    assert bad["calibrated"]
    assert good["threshold"] == bad["threshold"] == 0.55  # the calibrated one
    assert good["score"] > bad["score"]
    assert good["signals"]["p_good"] == good["score"]
    assert not bad["passed"]
    assert bad["reasons"][0].startswith(f"P(good) {bad['score']:.2f} < 0.55 (calibrated threshold")
    assert any(r.startswith("refuses or does not know -") for r in bad["reasons"])


def test_a_configured_threshold_beats_the_calibrated_one(artifact: Path) -> None:
    verdict = judge_draft(QUESTION, draft("I'm sorry."), [hit(PASSAGE)], 0.0, verifier_path=artifact,
                          embedder=fake_embed)  # fmt: skip
    assert verdict["passed"]
    assert verdict["threshold"] == 0.0
    assert "(configured threshold" in verdict["reasons"][0]


def test_failed_calls_and_empty_answers_score_zero(artifact: Path) -> None:
    failed = judge_draft(QUESTION, draft("", error="TimeoutError: slow"), [hit(PASSAGE)], None,
                         verifier_path=artifact, embedder=fake_embed)  # fmt: skip
    empty = judge_draft(
        QUESTION, draft("  "), [hit(PASSAGE)], None, verifier_path=artifact, embedder=fake_embed
    )
    assert failed["score"] == empty["score"] == 0.0
    assert failed["reasons"][1] == "model call failed: TimeoutError: slow"
    assert empty["reasons"][1] == "empty answer"
    for no_answer in (draft("", error="TimeoutError: slow"), draft("  ")):  # whatever the threshold
        judged = judge_draft(
            QUESTION, no_answer, [hit(PASSAGE)], 0.0, verifier_path=artifact, embedder=fake_embed
        )
        assert judged["passed"] is False


def test_a_wrong_sum_fails_at_any_threshold(artifact: Path) -> None:
    # A tuned threshold may accept every draft of a tier; a result the answer contradicts still fails.
    for answer in ("17 * 23.", "It is 381."):
        verdict = judge_draft("What is 17 * 23?", draft(answer), [hit(PASSAGE)], 0.0,
                              verifier_path=artifact, embedder=fake_embed)  # fmt: skip
        assert verdict["passed"] is False
        assert verdict["reasons"][0].endswith("fails whatever the threshold")
        assert verdict["reasons"][1].startswith("arithmetic is wrong: expected 391")
    right = judge_draft("What is 17 * 23?", draft("391."), [hit(PASSAGE)], 0.0,
                        verifier_path=artifact, embedder=fake_embed)  # fmt: skip
    assert right["passed"]


def test_arithmetic_is_a_rule_on_top_of_the_learned_score() -> None:
    assert apply_rules("What is 17 * 23?", "It is 381.", 0.8) == (
        0.02,
        "arithmetic is wrong: expected 391, answer has 381",
    )
    assert apply_rules("What is 17 * 23?", "17 * 23 = 391", 0.3) == (0.9, "arithmetic checks out (391)")
    assert apply_rules("Who wrote Hamlet?", "Shakespeare.", 0.3) == (0.3, None)


def test_without_an_artifact_the_heuristic_judges_and_says_so(tmp_path: Path) -> None:
    verdict = judge_draft(
        QUESTION, draft("308 points."), [hit(PASSAGE)], None, verifier_path=tmp_path / "none"
    )
    assert verdict["calibrated"] is False
    assert verdict["threshold"] == HEURISTIC_THRESHOLD
    assert "learned verifier not used (no verifier artifact at" in verdict["reasons"][-1]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "verifier.json").write_text("{not json")
    verdict = judge_draft(QUESTION, draft("308 points."), [hit(PASSAGE)], None, verifier_path=broken)
    assert verdict["calibrated"] is False
    assert "unreadable" in verdict["reasons"][-1]

    (broken / "verifier.json").write_text(json.dumps(tiny_meta(version=99)))
    assert "version 99" in judge_draft(QUESTION, draft("x y"), [], None, verifier_path=broken)["reasons"][-1]


def test_drafts_without_sources_are_left_to_the_heuristic_when_training_had_none(artifact: Path) -> None:
    verdict = judge_draft(
        QUESTION, draft("308 points."), [], None, verifier_path=artifact, embedder=fake_embed
    )
    assert verdict["calibrated"] is False
    assert "trained only on answers with retrieved sources" in verdict["reasons"][-1]

    covered = artifact.parent / "covered"
    VerifierModel(tiny_meta(training_data={"without_passages": 5, "rows": 5, "with_logprobs": 5})).save(
        covered
    )
    verdict = judge_draft(
        QUESTION, draft("308 points."), [], None, verifier_path=covered, embedder=fake_embed
    )
    assert verdict["calibrated"] is True
    assert any(r.startswith("not measured (no contribution): ") for r in verdict["reasons"])


def test_drafts_without_logprobs_are_left_to_the_heuristic_when_training_had_none(artifact: Path) -> None:
    verdict = judge_draft(QUESTION, draft("308 points.", meta={}), [hit(PASSAGE)], None,
                          verifier_path=artifact, embedder=fake_embed)  # fmt: skip
    assert verdict["calibrated"] is False
    assert "trained only on answers with token log-probabilities" in verdict["reasons"][-1]

    covered = artifact.parent / "covered"
    VerifierModel(tiny_meta(training_data={"rows": 10, "with_logprobs": 5, "with_passages": 10})).save(
        covered
    )
    verdict = judge_draft(QUESTION, draft("308 points.", meta={}), [hit(PASSAGE)], None,
                          verifier_path=covered, embedder=fake_embed)  # fmt: skip
    assert verdict["calibrated"] is True
    assert "not measured (no contribution): mean_token_prob, min_token_prob" in verdict["reasons"]


def test_the_artifact_is_loaded_once_and_again_when_it_changes(artifact: Path) -> None:
    first = VerifierModel.load(artifact)
    assert VerifierModel.load(artifact) is first
    first.with_meta(threshold={"value": 0.7}).save(artifact)
    assert VerifierModel.load(artifact).threshold == 0.7


# -- calibration ---------------------------------------------------------------------------------


def test_threshold_rules() -> None:
    score = np.linspace(0.0, 1.0, 100)
    good = (score > 0.5).astype(int)
    assert choose_threshold(score, good, target_precision=0.9) == pytest.approx(score[45])  # 50 of 55
    assert choose_threshold(score, good, max_reject_share=0.3) == pytest.approx(score[30])
    never = choose_threshold(score, np.zeros(100), target_precision=0.9)
    assert never > score.max()
    with pytest.raises(ValueError, match="exactly one"):
        choose_threshold(score, good)


def test_calibration_reports_bootstrap_intervals() -> None:
    rng = np.random.default_rng(1)
    score = rng.random(400)
    good = (rng.random(400) < score).astype(int)  # calibrated by construction
    result = calibrate(score, good, max_reject_share=0.4, resamples=200)
    assert result.accept_share == pytest.approx(0.6, abs=0.01)
    assert result.precision_ci[0] <= result.precision <= result.precision_ci[1]
    assert result.recall_ci[0] <= result.recall <= result.recall_ci[1]
    assert expected_calibration_error(score, good) < 0.08
    assert auroc(score, good) > 0.7
    assert auroc(np.array([0.1, 0.9, 0.5, 0.5]), np.array([0, 1, 0, 1])) == pytest.approx(0.875)


def test_rows_from_one_group_keep_the_first_strength_without_an_empty_fold() -> None:
    # Nothing can be held out of one group: no fold to learn on, so no mean of nothing (a warning).
    import warnings

    from hybrid.verification.training import CS, choose_c

    values = [{name: float(i % 3) for name in FEATURE_NAMES} for i in range(8)]
    labels = np.array([0, 1] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_c(values, labels, np.zeros(8, dtype=int)) == CS[0]
        assert choose_c(values, labels, np.arange(8) % 4) in CS  # four groups: a real choice
