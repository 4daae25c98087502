"""Conversations to reopen, their turns, ratings per answer, and the choices a UI offers."""

from __future__ import annotations

import pytest

from hybrid import api
from hybrid.errors import ReviewError
from hybrid.feedback import labelled_examples
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels


@pytest.mark.integration
def test_conversations_are_listed_most_recent_first_with_their_first_question(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    first = api.ask("What is the capital of France?")
    api.ask("And of Italy?", thread_id=first.thread_id)
    second = api.ask("Tell me about hafnium", force_route="human")

    listed = api.conversations()

    assert [c.thread_id for c in listed] == [second.thread_id, first.thread_id]
    assert [(c.title, c.turns, c.status) for c in listed] == [
        ("Tell me about hafnium", 1, "pending"),
        ("What is the capital of France?", 2, "small"),
    ]
    assert api.conversations(limit=1)[0].thread_id == second.thread_id


@pytest.mark.integration
@pytest.mark.parametrize("durability", ["exit", "sync"])  # checkpoints once per turn, or per node
def test_a_conversation_reopens_with_every_turn_as_it_ended(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    monkeypatch.setenv("HYBRID_CHECKPOINT_DURABILITY", durability)
    fakes.set("small", lambda m: f"Answer to: {m[-1].text.splitlines()[-1]}")
    first = api.ask("What is the capital of France?")
    second = api.ask("And of Italy?", thread_id=first.thread_id, force_route="human")

    turns = api.conversation(first.thread_id)
    assert [(t.question, t.status) for t in turns] == [
        ("What is the capital of France?", "answered"),
        ("And of Italy?", "pending_review"),
    ]
    assert turns[0].model_dump() == first.model_dump()
    assert turns[1].trace_id == second.trace_id

    api.resume(first.thread_id, {"action": "edit", "answer": "Rome.", "reviewer": "ana"})
    assert [(t.answer, t.status) for t in api.conversation(first.thread_id)] == [
        (first.answer, "answered"),
        ("Rome.", "answered"),
    ]


@pytest.mark.unit
def test_reopening_an_unknown_conversation_is_an_error() -> None:
    with pytest.raises(ReviewError, match="no conversation"):
        api.conversation("nope")


@pytest.mark.integration
def test_any_answer_of_a_conversation_can_be_rated(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    first = api.ask("What is the capital of France?")
    second = api.ask("Are you sure?", thread_id=first.thread_id)

    api.rate(first.thread_id, first.trace_id, "down", comment="wrong city")
    api.rate(first.thread_id, second.trace_id, "up")
    api.rate(first.thread_id, second.trace_id, "down")  # the latest rating counts

    assert api.ratings(first.thread_id) == {first.trace_id: "down", second.trace_id: "down"}
    examples = labelled_examples(resolve_settings())
    assert [e["query"] for e in examples] == [
        "What is the capital of France?",
        "Are you sure?",
        "Are you sure?",
    ]


@pytest.mark.integration
def test_only_answers_can_be_rated(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    pending = api.ask("What is the capital of France?", force_route="human")
    with pytest.raises(ReviewError, match="no answer to rate"):
        api.rate(pending.thread_id, pending.trace_id or "", "up")
    with pytest.raises(ReviewError, match="no turn"):
        api.rate(pending.thread_id, "other", "up")


@pytest.mark.unit
def test_run_choices_list_profiles_routes_and_retrieval_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_PROFILES", '{"cloud": {"small": "ollama:a", "large": "openai:b"}}')
    monkeypatch.setenv("HYBRID_RETRIEVAL", "never")

    choices = api.run_choices()

    assert choices.profile == "embedded"
    assert choices.profiles["cloud"] == {"small": ["ollama:a"], "large": ["openai:b"]}
    assert "embedded" in choices.profiles
    assert choices.routes == ["small", "large", "human"]
    assert choices.retrieval_modes == ["auto", "always", "never"]
    assert choices.retrieval == "never"
