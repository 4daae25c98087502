"""Every path through the graph, driven through the public API with fake models."""

from __future__ import annotations

import pytest

from hybrid import api
from hybrid.errors import InvalidQuestion, ReviewError
from tests.fakes import FakeModels


@pytest.mark.integration
def test_small_answer_that_verifies_is_accepted(fakes: FakeModels) -> None:
    fakes.set("small", "The capital of France is Paris.")
    fakes.set("large", "unused")

    answer = api.ask("What is the capital of France?")

    assert answer.status == "answered"
    assert answer.answer == "The capital of France is Paris."
    assert answer.answered_by == "fake:small"
    assert answer.tier == "small"
    assert answer.route["route"] == "small"
    assert answer.route["difficulty"] < answer.route["threshold"]
    assert [v["tier"] for v in answer.verifications] == ["small"]
    assert answer.verifications[0]["passed"]
    assert fakes.calls("large") == []
    assert set(answer.timings_ms) == {"classify", "answer_small", "verify", "accept"}
    assert answer.usage["fake:small"]["output_tokens"] == 6
    assert "small model fake:small answered" in answer.explanation


@pytest.mark.integration
def test_failed_small_answer_escalates_and_large_answer_is_verified(fakes: FakeModels) -> None:
    fakes.set("small", "I'm sorry, I don't know.")
    fakes.set("large", "William Shakespeare wrote Hamlet.")

    answer = api.ask("Who wrote Hamlet?")

    assert answer.status == "answered"
    assert answer.answered_by == "fake:large"
    assert [d["tier"] for d in answer.drafts] == ["small", "large"]
    assert [v["passed"] for v in answer.verifications] == [False, True]
    assert any("refuses" in reason for reason in answer.verifications[0]["reasons"])
    assert "escalated to the large model" in answer.explanation
    assert "escalate" in answer.timings_ms


@pytest.mark.integration
def test_hard_query_starts_on_the_large_model(fakes: FakeModels) -> None:
    fakes.set("small", "unused")
    fakes.set("large", "17 * 23 = 391")

    answer = api.ask("What is 17 * 23?", router="heuristic")

    assert answer.route["route"] == "large"
    assert answer.route["router"] == "heuristic"
    assert answer.route["signals"]["arithmetic"] == 1.0
    assert [d["tier"] for d in answer.drafts] == ["large"]
    assert answer.answer == "17 * 23 = 391"
    assert fakes.calls("small") == []


@pytest.mark.integration
def test_when_both_answers_fail_the_case_waits_for_a_reviewer(fakes: FakeModels) -> None:
    fakes.set("small", "381")
    fakes.set("large", "17")

    answer = api.ask("What is 17 * 23?", route_threshold=1.0)

    assert answer.status == "pending_review"
    assert answer.answer is None
    assert answer.pending_review is not None
    assert answer.pending_review["question"] == "What is 17 * 23?"
    assert [d["text"] for d in answer.pending_review["drafts"]] == ["381", "17"]
    assert "arithmetic is wrong" in answer.pending_review["verifications"][-1]["reasons"][1]
    assert [p.thread_id for p in api.pending_reviews()] == [answer.thread_id]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("decision", "status", "final", "answered_by"),
    [
        ({"action": "approve", "reviewer": "ana"}, "answered", "17", "fake:large"),
        ({"action": "edit", "answer": "391", "reviewer": "ana"}, "answered", "391", "human:ana"),
        ({"action": "reject", "reason": "off topic", "reviewer": "ana"}, "rejected", None, None),
    ],
)
def test_review_survives_a_restart_and_resolves(
    fakes: FakeModels, decision: dict, status: str, final: str | None, answered_by: str | None
) -> None:
    fakes.set("small", "381")
    fakes.set("large", "17")
    pending = api.ask("What is 17 * 23?", route_threshold=1.0)

    api.reset()  # as if the process had restarted: new connection, new compiled graph
    assert [p.thread_id for p in api.pending_reviews()] == [pending.thread_id]
    resolved = api.resume(pending.thread_id, decision)

    assert resolved.status == status
    assert resolved.answer == final
    assert resolved.answered_by == answered_by
    assert resolved.review is not None
    assert resolved.review["reviewer"] == "ana"
    assert api.pending_reviews() == []
    assert api.answer_for(pending.thread_id).status == status


@pytest.mark.integration
def test_a_reviewer_who_answers_twice_gets_a_clear_error(fakes: FakeModels) -> None:
    fakes.set("small", "381")
    fakes.set("large", "17")
    pending = api.ask("What is 17 * 23?", route_threshold=1.0)
    api.resume(pending.thread_id, {"action": "edit", "answer": "391", "reviewer": "ana"})

    with pytest.raises(ReviewError, match=r"already resolved \(edit\) by ana"):
        api.resume(pending.thread_id, {"action": "approve", "reviewer": "bo"})
    assert api.answer_for(pending.thread_id).answer == "391"


@pytest.mark.integration
def test_malformed_review_decisions_are_refused_and_the_case_stays_pending(fakes: FakeModels) -> None:
    fakes.set("small", "381")
    fakes.set("large", "17")
    pending = api.ask("What is 17 * 23?", route_threshold=1.0)

    with pytest.raises(ReviewError, match="needs the reviewer's answer"):
        api.resume(pending.thread_id, {"action": "edit"})
    with pytest.raises(ReviewError, match="invalid review decision"):
        api.resume(pending.thread_id, {"action": "maybe"})
    with pytest.raises(ReviewError, match="no conversation"):
        api.resume("no-such-thread", {"action": "approve"})

    assert [p.thread_id for p in api.pending_reviews()] == [pending.thread_id]


@pytest.mark.integration
def test_a_model_that_raises_is_recorded_and_routed_around(fakes: FakeModels) -> None:
    fakes.set("small", RuntimeError("connection refused"))
    fakes.set("large", "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    assert answer.status == "answered"
    assert answer.answered_by == "fake:large"
    assert "fake:small: RuntimeError: connection refused" in answer.drafts[0]["error"]
    assert answer.drafts[0]["error_kind"] == "tier_down"
    assert [a["outcome"] for a in answer.drafts[0]["attempts"]] == ["error"]  # not transient: no retry
    assert answer.verifications[0]["score"] == 0.0


@pytest.mark.integration
def test_a_failed_call_is_never_accepted_even_at_a_threshold_of_zero(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_SMALL_ACCEPT_THRESHOLD", "0")
    fakes.set("small", RuntimeError("connection refused"))
    fakes.set("large", "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    assert answer.answered_by == "fake:large"
    assert answer.verifications[0]["passed"] is False


@pytest.mark.integration
def test_when_every_model_raises_the_reviewer_must_write_or_reject(fakes: FakeModels) -> None:
    fakes.set("small", RuntimeError("down"))
    fakes.set("large", TimeoutError("slow"))

    pending = api.ask("What is the capital of France?")
    assert pending.status == "pending_review"

    with pytest.raises(ReviewError, match="no model produced an answer"):
        api.resume(pending.thread_id, {"action": "approve"})
    resolved = api.resume(pending.thread_id, {"action": "edit", "answer": "Paris.", "reviewer": "ana"})
    assert resolved.answer == "Paris."


@pytest.mark.unit
@pytest.mark.parametrize(
    ("question", "problem"),
    [("", "empty"), ("   \n\t ", "empty"), ("x" * 8001, "8,001 characters"), ("a\x00b", "NUL")],
)
def test_bad_questions_get_a_clear_error_and_leave_nothing_behind(
    fakes: FakeModels, question: str, problem: str
) -> None:
    fakes.set("small", "unused")
    fakes.set("large", "unused")

    with pytest.raises(InvalidQuestion, match=problem):
        api.ask(question, thread_id="t1")

    assert fakes.calls("small") == []
    with pytest.raises(ReviewError, match="no conversation"):
        api.answer_for("t1")


@pytest.mark.integration
def test_a_pending_conversation_refuses_a_new_question_until_reviewed(fakes: FakeModels) -> None:
    fakes.set("small", "unused")
    fakes.set("large", "unused")
    pending = api.ask("Anything", force_route="human")
    assert pending.status == "pending_review"

    with pytest.raises(ReviewError, match="waiting for a review"):
        api.ask("Another question", thread_id=pending.thread_id)


@pytest.mark.integration
def test_forced_routes_are_obeyed_and_explained(fakes: FakeModels) -> None:
    fakes.set("small", "I don't know.")
    fakes.set("large", "Paris.")

    small = api.ask("What is the capital of France?", force_route="small")
    assert small.status == "answered"
    assert small.answered_by == "fake:small"
    assert not small.verifications[0]["passed"]  # recorded, not hidden
    assert "accepted unverified because the route was forced" in small.explanation

    large = api.ask("What is the capital of France?", force_route="large")
    assert [d["tier"] for d in large.drafts] == ["large"]
    assert "forced to large" in large.explanation

    human = api.ask("What is the capital of France?", force_route="human")
    assert human.status == "pending_review"
    assert human.pending_review is not None
    assert human.pending_review["why"] == "route forced to human review"


@pytest.mark.integration
def test_follow_up_questions_carry_the_conversation(fakes: FakeModels) -> None:
    fakes.set("small", lambda messages: "Paris." if "France" in messages[-1].text else "Berlin.")
    fakes.set("large", "unused")

    first = api.ask("What is the capital of France?")
    second = api.ask("And of Germany?", thread_id=first.thread_id)

    assert second.answer == "Berlin."
    prompt = fakes.calls("small")[-1]
    assert [m.text for m in prompt[1:]] == ["What is the capital of France?", "Paris.", "And of Germany?"]


@pytest.mark.integration
def test_cost_is_estimated_from_configured_prices(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HYBRID_PRICES",
        '{"fake:large": {"input_per_million": 1000000, "output_per_million": 2000000}}',
    )
    fakes.set("small", "I don't know.")
    fakes.set("large", "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    large_usage = answer.usage["fake:large"]
    assert answer.cost["fake:small"] == 0.0
    assert answer.cost["fake:large"] == large_usage["input_tokens"] * 1 + large_usage["output_tokens"] * 2
    assert answer.total_cost == answer.cost["fake:large"]


@pytest.mark.integration
def test_sensitive_questions_never_reach_a_non_local_model(fakes: FakeModels) -> None:
    from hybrid.models import register_provider

    register_provider("remote", fakes.build, is_local=False)
    fakes.set("small", "I can't help with that.")
    fakes.set("large", "unused")

    answer = api.ask("Email jane.doe@example.com the card 4111 1111 1111 1111", large_model="remote:large")

    assert answer.route["sensitivity"] == "secret"
    assert answer.route["allowed_tiers"] == ["small"]
    assert answer.status == "pending_review"
    assert fakes.calls("large") == []


@pytest.mark.integration
def test_stream_yields_draft_tokens_node_events_and_the_answer(fakes: FakeModels) -> None:
    fakes.set("small", "The capital of France is Paris.")
    fakes.set("large", "unused")

    events = list(api.stream("What is the capital of France?"))

    tokens = "".join(e.text or "" for e in events if e.kind == "token")
    assert tokens == "The capital of France is Paris."
    assert {e.node for e in events if e.kind == "token"} == {"answer_small"}
    assert [e.node for e in events if e.kind == "node"] == ["classify", "answer_small", "verify", "accept"]
    assert events[-1].kind == "answer"
    assert events[-1].answer is not None
    assert events[-1].answer.answer == "The capital of France is Paris."


@pytest.mark.unit
def test_unknown_settings_are_refused_before_anything_runs(fakes: FakeModels) -> None:
    fakes.set("small", "unused")
    with pytest.raises(ValueError, match="profile"):
        api.ask("Hello?", profile="nope")
    with pytest.raises(ValueError, match="route_threshhold"):
        api.ask("Hello?", route_threshhold=0.3)
    assert fakes.calls("small") == []


@pytest.mark.integration
def test_approving_after_a_failed_escalation_keeps_the_usable_draft(fakes: FakeModels) -> None:
    fakes.set("small", "381")
    fakes.set("large", ConnectionError("large tier down"))
    pending = api.ask("What is 17 * 23?", route_threshold=1.0)
    assert [bool(d["error"]) for d in pending.drafts] == [False, True]

    resolved = api.resume(pending.thread_id, {"action": "approve", "reviewer": "ana"})

    assert resolved.answer == "381"
    assert resolved.answered_by == "fake:small"
    assert resolved.explanation.startswith("reviewer ana approved the answer of fake:small")


@pytest.mark.unit
def test_the_drawn_graph_shows_every_way_a_deciding_node_can_go() -> None:
    # The deciding nodes choose their successor themselves (`Command`); LangGraph Studio and
    # `get_graph` still draw each choice their edge function can make.
    from graphs.graph import build_graph

    drawn = build_graph().compile().get_graph()
    going = {(e.source, e.target) for e in drawn.edges}
    answers = ("answer_small", "escalate", "human_review")
    assert {("classify", n) for n in ("accept", "retrieve", *answers)} <= going
    assert {("retrieve", n) for n in answers} <= going
    assert {("verify", n) for n in ("accept", "unreachable", *answers)} <= going
    assert {("human_review", n) for n in ("accept", "escalate", "__end__")} <= going
    assert {("answer_small", "verify"), ("escalate", "verify"), ("accept", "__end__")} <= going
