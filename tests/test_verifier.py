"""The verifier's checks, each on a real computation over question, answer and sources."""

from __future__ import annotations

import pytest

from graphs.state import Draft, Hit
from hybrid.arithmetic import arithmetic_in
from hybrid.verification.heuristic import verify_draft
from tests.fakes import small_draft as draft

pytestmark = pytest.mark.unit


def hit(text: str) -> Hit:
    return Hit(id="1", text=text, source="doc.md", score=0.8, metadata={})


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("What is 17 * 23?", 391),
        ("what is 12 plus 5", 17),
        ("Calculate (2+3)*4", 20),
        ("What is 2^10?", 1024),
        ("What is 100 - 37?", 63),
        ("What happened in 1990-2000?", None),
        ("How many legs do 3 spiders have?", None),
        ("What is 2 * 3 and 4 * 5?", None),
    ],
)
def test_arithmetic_is_recomputed_from_the_question(question: str, value: float | None) -> None:
    assert arithmetic_in(question) == value


def test_a_good_answer_passes_with_no_problem_found() -> None:
    result = verify_draft("What is the capital of France?", draft("The capital of France is Paris."), [], 0.6)
    assert result["passed"]
    assert result["score"] == 1.0
    assert result["reasons"] == ["score 1.00 >= 0.60", "no problem found"]


@pytest.mark.parametrize(
    ("question", "answer", "signal"),
    [
        ("What is the capital of France?", "", "empty"),
        ("What is the capital of France?", "I'm sorry, I cannot help with that.", "refusal"),
        ("What is the capital of France?", "What is the capital of France?", "echo"),
        ("Tell me about Paris.", "Paris is big. " * 12, "repetition"),
        ("What is 17 * 23?", "17 * 23 = 381", "arithmetic"),
        ("How many moons does Mars have?", "Mars has moons.", "answer_type"),
        ("Who wrote Hamlet?", "it was written long ago", "answer_type"),
    ],
)
def test_bad_answers_fail_and_the_reason_names_the_problem(question: str, answer: str, signal: str) -> None:
    result = verify_draft(question, draft(answer), [], 0.6)
    assert not result["passed"]
    assert signal in result["signals"]
    assert len(result["reasons"]) >= 2


def test_correct_arithmetic_is_credited() -> None:
    result = verify_draft("What is 17 * 23?", draft("It is 391."), [], 0.6)
    assert result["passed"]
    assert "arithmetic checks out (391)" in result["reasons"]


def test_truncated_answers_are_penalised() -> None:
    result = verify_draft("Describe Paris.", draft("Paris is the capital", finish="length"), [], 0.6)
    assert result["signals"]["truncated"] == 0.6
    assert result["score"] == pytest.approx(0.6)


def test_model_errors_score_zero() -> None:
    result = verify_draft("Hi?", draft("", error="TimeoutError: slow"), [], 0.6)
    assert result["score"] == 0.0
    assert "model call failed: TimeoutError: slow" in result["reasons"][1]


@pytest.mark.parametrize("failed", [draft("", error="TimeoutError: slow"), draft("   ")])
def test_no_answer_never_passes_even_at_a_threshold_of_zero(failed: Draft) -> None:
    assert verify_draft("Hi?", failed, [], 0.0)["passed"] is False


def test_answers_must_be_grounded_in_the_sources() -> None:
    sources = [hit("Hybrid dev serves the graph on port 2025 with langgraph dev.")]
    grounded = verify_draft("Which port does hybrid dev use?", draft("It uses port 2025."), sources, 0.6)
    assert grounded["passed"]
    assert grounded["signals"]["grounding"] >= 0.5

    invented = verify_draft("Which port does hybrid dev use?", draft("It uses port 8080."), sources, 0.6)
    assert "unsupported_numbers" in invented["signals"]

    off_topic = verify_draft(
        "Which port does hybrid dev use?", draft("Bananas contain potassium and vitamins."), sources, 0.6
    )
    assert off_topic["signals"]["grounding"] < 0.5
    assert not off_topic["passed"]


def test_low_token_confidence_lowers_the_score() -> None:
    sure = verify_draft("Capital of France?", draft("Paris.", meta={"mean_token_logprob": -0.05}), [], 0.6)
    unsure = verify_draft("Capital of France?", draft("Paris.", meta={"mean_token_logprob": -2.0}), [], 0.6)
    assert sure["score"] == 1.0
    assert unsure["score"] < sure["score"]
