"""Router features on hand-made inputs: arithmetic re-checking, final answers, query shapes."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.routing.features import (
    MATH_WORD_FEATURE_NAMES,
    QUERY_FEATURE_NAMES,
    QUERY_VECTOR_NAMES,
    RESPONSE_FEATURE_NAMES,
    binding_mismatch,
    check_annotations,
    check_equations,
    evaluate_arithmetic,
    math_word_features,
    query_feature_vector,
    query_features,
    response_check_features,
    split_options,
)

pytestmark = pytest.mark.unit

QUESTION = "Tom has 3 boxes with 4 apples each. He buys 5 more apples. How many apples does he have?"


def feature(vector: np.ndarray, name: str) -> float:
    return float(vector[RESPONSE_FEATURE_NAMES.index(name)])


def test_an_arithmetic_chain_with_an_error_is_flagged() -> None:
    assert check_equations("3 x 4 = 12 apples\n12 + 5 = 17 apples") == (2, 0, 1.0)
    wrong = check_equations("3 x 4 = 12 apples\n12 + 5 = 18 apples")
    assert (wrong.checked, wrong.errors) == (2, 1)
    assert 0 < wrong.first_error_at < 1  # the second line


def test_equation_checks_allow_units_money_percent_and_written_rounding() -> None:
    assert check_equations("2 centimeters x 5 hours = 10").errors == 0
    assert check_equations("$1,200 * 2 = $2,400").errors == 0
    assert check_equations("20% of 50 is 50 * 20% = 10").errors == 0
    assert check_equations("10 / 3 = 3.33").errors == 0
    assert check_equations("7x + 11x = 162").checked == 0  # algebra, not arithmetic


def test_gsm8k_annotations_are_recomputed() -> None:
    assert check_annotations("<<3*4=12>>12 then <<12+5=17>>17") == (2, 0, 0)
    assert check_annotations("<<3*4=12>>12 then <<12+5=18>>18") == (2, 1, 0)
    assert check_annotations("<<3*4=12>>13") == (1, 0, 1)


def test_evaluate_arithmetic_is_plain_arithmetic_only() -> None:
    assert evaluate_arithmetic("2 + 3 * 4") == 14.0
    assert evaluate_arithmetic("2^3") == 8.0
    assert evaluate_arithmetic("1 / 0") is None
    assert evaluate_arithmetic("__import__('os')") is None
    # Floats overflow at once; exact integers would compute for hours, and the unit tier's timeout
    # would stop the test in seconds.
    assert evaluate_arithmetic("9**9**9**9") is None


def test_response_checks_read_the_worked_answer() -> None:
    good = "3 x 4 = 12 apples. 12 + 5 = 17 apples.\n#### 17"
    bad = "3 x 4 = 12 apples. 12 + 5 = 18 apples.\n#### 18"
    vague = "He has about 17.5 apples, approximately"
    good_v, bad_v, vague_v = (response_check_features(QUESTION, r) for r in (good, bad, vague))
    assert len(good_v) == len(RESPONSE_FEATURE_NAMES) == 48
    assert feature(good_v, "any_arith_err") == 0
    assert feature(bad_v, "any_arith_err") == 1
    assert feature(good_v, "no_final") == 0
    assert feature(vague_v, "no_final") == 1
    assert feature(vague_v, "final_nonint") == 1
    assert feature(vague_v, "hedge_any") == 1
    assert feature(good_v, "final_matches_last_result") == 1
    assert feature(vague_v, "q_nums_unused") == 3  # 3, 4 and 5 never used
    assert np.isfinite(response_check_features("", "")).all()


def test_binding_mismatch_catches_a_changed_quantity() -> None:
    question = "She painted 6 paintings and sold 2 paintings."
    assert binding_mismatch(question, "She has 7 paintings left.", set()) == 1
    assert binding_mismatch(question, "She has 4 paintings left.", {4.0}) == 0


def test_query_features_see_multiple_choice_negation_and_math() -> None:
    prompt = "Which of these is NOT a prime?\nA. 2\nB. 3\nC. 9\nD. 11\nAnswer:"
    stem, options = split_options(prompt)
    assert stem == "Which of these is NOT a prime?"
    assert options == ["2", "3", "9", "11"]
    vector = query_features(prompt)
    named = dict(zip(QUERY_FEATURE_NAMES, vector, strict=True))
    assert named["n_options"] == 4
    assert named["negation"] == 1
    assert named["wh_start"] == 1
    assert named["has_answer_cue"] == 1
    words = dict(zip(MATH_WORD_FEATURE_NAMES, math_word_features(QUESTION), strict=True))
    assert words["mw_per"] == 1
    assert words["mw_n_numbers"] == 3
    assert query_feature_vector(QUESTION).shape == (len(QUERY_VECTOR_NAMES),) == (55,)


def test_query_feature_vector_is_cached_and_read_only() -> None:
    vector = query_feature_vector(QUESTION)
    assert query_feature_vector(QUESTION) is vector
    with pytest.raises(ValueError, match="read-only"):
        vector[0] = 1.0
