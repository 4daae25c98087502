"""Recorded traffic, rebuilt from the audit log: what the dashboard charts."""

from __future__ import annotations

import pytest

from hybrid import api, audit
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels


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
