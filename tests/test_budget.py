"""Daily budgets: once spent, the large tier is skipped by policy, and the answer says so."""

from __future__ import annotations

import pytest

from hybrid import api
from hybrid.budget import spent_today
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels

pytestmark = pytest.mark.integration

PRICES = '{"fake:large": {"input_per_million": 1000000, "output_per_million": 1000000}}'


@pytest.fixture(autouse=True)
def one_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spend of a test falls on one day, even one that runs across midnight UTC."""
    from hybrid import budget

    monkeypatch.setattr(budget, "_today", lambda: "2026-12-06")


@pytest.fixture
def priced(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> FakeModels:
    monkeypatch.setenv("HYBRID_PRICES", PRICES)  # a dollar a token for the large model
    fakes.set("small", "I don't know.")
    fakes.set("large", "Paris is the capital of France.")
    return fakes


def test_spend_accumulates_per_day_and_user(priced: FakeModels) -> None:
    answer = api.ask("What is the capital of France?", user_id="ana")
    assert spent_today(resolve_settings()) == pytest.approx(answer.total_cost)
    assert spent_today(resolve_settings(), "ana") == pytest.approx(answer.total_cost)
    assert spent_today(resolve_settings(), "bo") == 0


def test_a_spent_daily_budget_skips_the_large_tier(
    priced: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = api.ask("What is the capital of France?")
    assert first.answered_by == "fake:large"
    monkeypatch.setenv("HYBRID_DAILY_BUDGET", str(first.total_cost))
    calls = len(priced.calls("large"))

    second = api.ask("What is the capital of Italy?")

    assert len(priced.calls("large")) == calls
    assert second.route["models"]["large"] == []
    assert any(
        "daily budget spent" in reason and "large tier skipped" in reason
        for reason in second.route["reasons"]
    )
    assert second.status == "pending_review"  # the small answer failed; a person decides


def test_a_users_budget_only_limits_that_user(priced: FakeModels, monkeypatch: pytest.MonkeyPatch) -> None:
    spent = api.ask("What is the capital of France?", user_id="ana").total_cost
    monkeypatch.setenv("HYBRID_USER_DAILY_BUDGET", str(spent))

    ana = api.ask("What is the capital of Italy?", user_id="ana")
    bo = api.ask("What is the capital of Italy?", user_id="bo")

    assert ana.route["models"]["large"] == []
    assert any("daily budget of user ana spent" in reason for reason in ana.route["reasons"])
    assert bo.answered_by == "fake:large"


def test_cost_counts_compute_time_the_verifier_and_both_calls_of_an_escalation(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv(
        "HYBRID_PRICES",
        '{"fake:small": {"per_second": 10.0}, '
        '"fake:large": {"output_per_million": 1000000, "per_second": 100.0}}',
    )
    monkeypatch.setenv("HYBRID_VERIFIER_PRICE_PER_S", "1000")
    fakes.set("small", lambda m: time.sleep(0.05) or "I don't know.")
    fakes.set("large", lambda m: time.sleep(0.05) or "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    small, large = answer.drafts
    assert small["cost"] >= 0.5  # 0.05 s of compute at 10/s
    assert large["cost"] >= 6 + 5  # 6 output tokens at 1 each, 0.05 s at 100/s
    assert answer.verifier_cost > 0
    assert answer.total_cost == pytest.approx(small["cost"] + large["cost"] + answer.verifier_cost)
    assert answer.large_only_cost == large["cost"]
    assert answer.large_only_basis == "the large model's actual call"
    assert answer.saved == pytest.approx(answer.large_only_cost - answer.total_cost)
    assert answer.saved < 0  # escalating cost more than going to the large model directly


def test_savings_of_a_small_answer_are_estimated_at_the_large_models_rates(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HYBRID_PRICES", '{"fake:large": {"input_per_million": 1000000, "output_per_million": 2000000}}'
    )
    fakes.set("small", "The capital of France is Paris.")

    answer = api.ask("What is the capital of France?")

    usage = answer.usage["fake:small"]
    assert answer.total_cost == 0
    assert answer.large_only_cost == pytest.approx(usage["input_tokens"] + 2 * usage["output_tokens"])
    assert answer.saved == answer.large_only_cost
    assert "this request's tokens at fake:large's prices" in answer.large_only_basis
