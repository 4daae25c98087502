"""The router's decisions: difficulty, knowledge-base need, sensitivity, overrides."""

from __future__ import annotations

import pytest

from graphs.state import RouteDecision
from hybrid.routing.decision import decide_route, routing_text
from hybrid.routing.heuristic import difficulty_score, difficulty_signals
from hybrid.settings import resolve_settings

pytestmark = pytest.mark.unit

LOCAL = {"small": True, "large": True}


def route(question: str, *, kb_score: float = 0.0, local: dict | None = None, **overrides) -> RouteDecision:
    previous, kb_available = overrides.pop("previous", []), overrides.pop("kb_available", True)
    settings = resolve_settings(overrides)
    tier_of = {spec: tier for tier in ("small", "large") for spec in settings.tier_specs(tier)}
    return decide_route(
        question,
        previous_questions=previous,
        kb_score=kb_score,
        kb_available=kb_available,
        model_is_local=lambda spec: (local or LOCAL)[tier_of[spec]],
        settings=settings,
    )


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "Who wrote Hamlet?", "Define photosynthesis."],
)
def test_simple_factual_questions_start_small(question: str) -> None:
    decision = route(question)
    assert decision["route"] == "small"
    assert decision["difficulty"] < decision["threshold"]
    assert decision["reasons"][0].startswith(f"difficulty {decision['difficulty']:.2f} < 0.50")


@pytest.mark.parametrize(
    ("question", "signal"),
    [
        ("What is 17 * 23?", "arithmetic"),
        ("Write a Python function that parses ISO dates and explain the edge cases.", "code"),
        (
            "Janet has 16 eggs, eats 3 each morning and bakes 4 into muffins; she sells the remaining "
            "eggs for $2 each. How much does she make every day?",
            "several_numbers",
        ),
    ],
)
def test_hard_questions_start_large_and_say_why(question: str, signal: str) -> None:
    decision = route(question)
    assert decision["route"] == "large"
    assert decision["signals"][signal] > 0
    assert decision["difficulty"] >= 0.5


def test_difficulty_is_a_noisy_or_of_the_signals() -> None:
    signals = difficulty_signals("Why is 2 + 2 equal to 4? Explain.")
    score, contributions = difficulty_score(signals)
    survive = 1.0
    for _, p in contributions:
        survive *= 1 - p
    assert score == pytest.approx(1 - survive)
    assert contributions[0][0] == "arithmetic"


def test_threshold_comes_from_configuration() -> None:
    question = "Explain why the sky is blue."
    assert route(question)["route"] == "small"
    assert route(question, route_threshold=0.2)["route"] == "large"


def test_short_follow_ups_are_judged_with_the_previous_question() -> None:
    assert routing_text("and in 2019?", ["What was 15% of the 2018 revenue of 2.4 million?"]).startswith(
        "What"
    )
    assert routing_text("Are you sure?", ["What is 2+2?"]) == "What is 2+2?\nAre you sure?"
    assert routing_text("Who wrote Hamlet?", ["What is 2+2?"]) == "Who wrote Hamlet?"
    decision = route("and what about 2019?", previous=["What is 17 * 23 + 5?"])
    assert decision["route"] == "large"
    assert "follow-up" in decision["reasons"][1]


def test_knowledge_base_is_consulted_by_coverage_or_by_setting() -> None:
    assert route("How do I configure the verifier?", kb_score=0.8)["needs_kb"]
    assert not route("What is the capital of France?", kb_score=0.2)["needs_kb"]
    assert not route("anything", kb_score=0.9, retrieval="never")["needs_kb"]
    assert route("anything", kb_score=0.0, retrieval="always")["needs_kb"]
    assert not route("anything", kb_score=0.0, retrieval="always", kb_available=False)["needs_kb"]


def test_sensitive_queries_are_kept_off_non_local_models() -> None:
    decision = route("What is 12 * 7? My card is 4111 1111 1111 1111", local={"small": True, "large": False})
    assert decision["sensitivity"] == "secret"
    assert decision["allowed_tiers"] == ["small"]
    assert decision["route"] == "small"  # the router wanted large; large is not allowed
    assert decision["models"] == {"small": ["llamacpp:smollm2-135m-instruct"], "large": []}
    assert any("not local, not used: llamacpp:gemma-3-270m" in reason for reason in decision["reasons"])

    nowhere = route("mail me at a.b@example.com", local={"small": False, "large": False})
    assert nowhere["route"] == "human"


def test_forced_routes_bypass_the_router_and_say_so() -> None:
    decision = route("What is 17 * 23?", force_route="small")
    assert decision["route"] == "small"
    assert decision["forced"]
    assert decision["reasons"][0] == "route forced to small by configuration (router bypassed)"
