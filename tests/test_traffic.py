"""Recorded traffic, rebuilt from the audit log: what the dashboard charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybrid import api, audit
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels


@pytest.mark.integration
def test_the_answered_event_carries_the_answers_costs(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HYBRID_PRICES", '{"fake:small": {"per_second": 10.0}, "fake:large": {"per_second": 100.0}}'
    )
    fakes.set("small", "I don't know.")
    fakes.set("large", "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    (event,) = [e for e in audit.events(resolve_settings()) if e["event"] == "answered"]
    cost = event["data"]["cost"]
    assert cost["total"] == pytest.approx(answer.total_cost)
    assert cost["large_only"] == pytest.approx(answer.large_only_cost)
    assert cost["saved"] == pytest.approx(answer.saved)
    assert cost["basis"] == answer.large_only_basis


@pytest.mark.integration
def test_each_turn_records_its_outcome_calls_checks_and_costs(fakes: FakeModels) -> None:
    fakes.set("small", lambda m: "Paris." if "France" in m[-1].text else "I don't know.")
    fakes.set("large", lambda m: "Berlin is the capital." if "Germany" in m[-1].text else "I don't know.")
    small = api.ask("What is the capital of France?")
    large = api.ask("What is the capital of Germany?")
    pending = api.ask("Who discovered the element hafnium?")
    rejected = api.ask("Who discovered the element rhenium?")
    api.resume(rejected.thread_id, {"action": "reject", "reason": "no", "reviewer": "ana"})
    edited = api.ask("Who discovered the element iridium?")
    api.resume(edited.thread_id, {"action": "edit", "answer": "Smithson Tennant.", "reviewer": "bo"})

    turns = {t.trace_id: t for t in api.traffic()}

    assert [turns[a.trace_id].outcome for a in (small, large, pending, rejected, edited)] == [
        "small",
        "large",
        "pending",
        "rejected",
        "human",
    ]
    first = turns[small.trace_id]
    assert first.question == "What is the capital of France?"
    assert first.thread_id == small.thread_id
    assert not first.escalated
    assert not first.reviewed
    assert [(c.model, c.tier) for c in first.calls] == [("fake:small", "small")]
    assert [(c.tier, c.passed) for c in first.checks] == [("small", True)]
    # Audited by `accept` itself, so without accept's own time.
    assert first.latency_ms == pytest.approx(sum(ms for n, ms in small.timings_ms.items() if n != "accept"))
    assert first.total_cost == small.total_cost
    escalated = turns[large.trace_id]
    assert escalated.escalated
    assert [c.passed for c in escalated.checks] == [False, True]
    assert turns[pending.trace_id].reviewed
    assert turns[pending.trace_id].escalated  # what the reviewer was shown: both drafts
    assert turns[pending.trace_id].total_cost == pending.total_cost
    assert turns[pending.trace_id].question == "Who discovered the element hafnium?"
    assert turns[edited.trace_id].answered_by == "human:bo"


@pytest.mark.integration
def test_the_time_range_keeps_turns_first_recorded_in_it(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    api.ask("What is the capital of France?")
    now = datetime.now(UTC)

    assert len(api.traffic(since=now - timedelta(hours=1))) == 1
    assert api.traffic(since=now + timedelta(seconds=1)) == []
    assert api.traffic(until=now - timedelta(hours=1)) == []


@pytest.mark.integration
def test_summary_rates_and_savings(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_PRICES", '{"fake:large": {"input_per_million": 1000000}}')
    fakes.set("small", lambda m: "Paris." if "France" in m[-1].text else "I don't know.")
    fakes.set("large", lambda m: "Berlin is the capital." if "Germany" in m[-1].text else "I don't know.")
    answers = [
        api.ask("What is the capital of France?"),
        api.ask("What is the capital of Germany?"),
        api.ask("Who discovered the element hafnium?"),
    ]

    summary = api.traffic_summary(api.traffic())

    assert summary.turns == 3
    assert summary.outcomes == {
        "small": 1, "large": 1, "human": 0, "cache": 0, "rejected": 0, "pending": 1, "unreachable": 0
    }  # fmt: skip
    assert summary.escalation_rate == pytest.approx(2 / 3)  # Germany and hafnium both went to the large model
    assert summary.review_rate == pytest.approx(1 / 3)
    answered = answers[:2]
    assert summary.total_cost == pytest.approx(sum(a.total_cost for a in answers))
    assert summary.large_only_cost == pytest.approx(sum(a.large_only_cost for a in answered))
    assert summary.saved == pytest.approx(sum(a.saved for a in answered))
    assert summary.saved > 0  # France never touched the priced large model
    assert summary.input_tokens == sum(u["input_tokens"] for a in answers for u in a.usage.values())


@pytest.mark.unit
def test_latency_percentiles_per_model() -> None:
    from hybrid.traffic import ModelCall, Turn

    def turn(*latencies: float, error: str | None = None) -> Turn:
        calls = [
            ModelCall(
                model="m", tier="small", latency_ms=ms, input_tokens=1, output_tokens=1, cost=0, error=error
            )
            for ms in latencies
        ]
        return Turn(trace_id="t", thread_id="x", at=datetime.now(UTC), outcome="small", calls=calls)

    (latency,) = api.latency_by_model([turn(*range(1, 101)), turn(10_000, error="boom")])

    assert (latency.model, latency.calls) == ("m", 100)
    assert latency.p50_ms == pytest.approx(50.5)
    assert latency.p95_ms == pytest.approx(95.05)
