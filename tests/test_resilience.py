"""Bad days, with fake models: fallbacks, retries, cooldown, deadlines, degradation by policy."""

from __future__ import annotations

import threading

import pytest

from hybrid import api
from hybrid.models.resilience import breaker, is_transient
from tests.fakes import FakeModels
from tests.servers import free_port, serving


class Flaky:
    """Fails with `error` the first `failures` calls, then answers."""

    def __init__(self, failures: int, error: Exception, answer: str) -> None:
        self.failures, self.error, self.answer, self.calls = failures, error, answer, 0

    def __call__(self, messages):
        self.calls += 1
        return self.error if self.calls <= self.failures else self.answer


@pytest.fixture
def tiers(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> FakeModels:
    """Two models per tier: fake:small,fake:small2 and fake:large,fake:large2."""
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "fake:small,fake:small2")
    monkeypatch.setenv("HYBRID_LARGE_MODEL", "fake:large,fake:large2")
    return fakes


@pytest.mark.integration
def test_transient_errors_are_retried_with_backoff(tiers: FakeModels) -> None:
    flaky = Flaky(2, ConnectionError("reset by peer"), "The capital of France is Paris.")
    tiers.set("small", flaky)

    answer = api.ask("What is the capital of France?")

    assert answer.answered_by == "fake:small"
    assert [a["outcome"] for a in answer.drafts[0]["attempts"]] == ["error", "error", "ok"]
    assert answer.drafts[0]["fallback"] is False


@pytest.mark.integration
def test_a_failing_model_falls_back_to_the_next_in_its_tier(tiers: FakeModels) -> None:
    tiers.set("small", ConnectionError("refused"))
    tiers.set("small2", "The capital of France is Paris.")

    answer = api.ask("What is the capital of France?")

    assert answer.answered_by == "fake:small2"
    assert answer.drafts[0]["fallback"] is True
    attempts = [(a["model"], a["outcome"]) for a in answer.drafts[0]["attempts"]]
    assert attempts == [("fake:small", "error")] * 3 + [("fake:small2", "ok")]
    assert "fallback to fake:small2 after fake:small failed" in answer.explanation


@pytest.mark.integration
def test_a_model_that_keeps_failing_is_put_in_cooldown(tiers: FakeModels, monkeypatch) -> None:
    monkeypatch.setenv("HYBRID_BREAKER_FAILURES", "2")
    monkeypatch.setenv("HYBRID_MODEL_RETRIES", "0")
    tiers.set("small", ConnectionError("refused"))
    tiers.set("small2", "The capital of France is Paris.")

    for _ in range(2):
        api.ask("What is the capital of France?")
    assert breaker.open_for("fake:small") > 0
    third = api.ask("What is the capital of France?")

    first_attempt = third.drafts[0]["attempts"][0]
    assert (first_attempt["model"], first_attempt["outcome"]) == ("fake:small", "skipped")
    assert "cooldown" in first_attempt["error"]
    assert third.answered_by == "fake:small2"


@pytest.mark.integration
def test_errors_that_retrying_cannot_fix_are_not_retried(tiers: FakeModels) -> None:
    from hybrid.errors import ContextWindowExceeded

    tiers.set("small", ContextWindowExceeded("prompt of 9000 tokens does not fit"))
    tiers.set("small2", "The capital of France is Paris.")

    answer = api.ask("What is the capital of France?")

    assert [a["outcome"] for a in answer.drafts[0]["attempts"]] == ["error", "ok"]


@pytest.mark.integration
def test_no_request_runs_past_its_deadline(tiers: FakeModels) -> None:
    release, finished = threading.Event(), []

    def stuck(messages: object) -> str:
        release.wait(timeout=60)  # answers only once the test lets it (or a minute later)
        finished.append(messages)
        return "too late"

    for name in ("small", "small2", "large", "large2"):
        tiers.set(name, stuck)

    try:
        answer = api.ask("What is the capital of France?", request_deadline_s=1.0)
        # The answer came while every model call was still stuck: the deadline ended the request,
        # not the models (had it waited for them, they would have finished first).
        assert finished == []
    finally:
        release.set()
    assert answer.status == "pending_review"  # nothing lost: a person can still answer
    assert [d["error_kind"] for d in answer.drafts] == ["deadline", "deadline"]


@pytest.mark.integration
def test_small_tier_down_goes_to_the_large_tier(tiers: FakeModels) -> None:
    tiers.set("small", ConnectionError("down"))
    tiers.set("small2", ConnectionError("down"))
    tiers.set("large", "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    assert answer.answered_by == "fake:large"
    assert answer.drafts[0]["error_kind"] == "tier_down"


@pytest.mark.integration
def test_large_tier_down_goes_to_review_by_default(tiers: FakeModels) -> None:
    tiers.set("small", "I think it is Lyon.")
    tiers.set("large", ConnectionError("down"))
    tiers.set("large2", TimeoutError("slow"))

    answer = api.ask("What is the capital of France?", small_accept_threshold=1.01)

    assert answer.status == "pending_review"


@pytest.mark.integration
def test_large_tier_down_can_degrade_to_the_small_answer_unverified(tiers: FakeModels) -> None:
    tiers.set("small", "I think it is Lyon.")
    tiers.set("large", ConnectionError("down"))
    tiers.set("large2", ConnectionError("down"))

    answer = api.ask(
        "What is the capital of France?", small_accept_threshold=1.01, large_tier_down="unverified"
    )

    assert answer.status == "answered"
    assert answer.answered_by == "fake:small"
    assert not answer.verifications[0]["passed"]
    assert "large tier down" in answer.explanation
    assert "small answer given unverified, by policy" in answer.explanation


@pytest.mark.integration
def test_tokens_still_stream_from_models_called_under_a_timeout(tiers: FakeModels) -> None:
    tiers.set("small", "The capital of France is Paris.")
    tokens = [e.text for e in api.stream("What is the capital of France?") if e.kind == "token"]
    assert "".join(tokens) == "The capital of France is Paris."


@pytest.mark.unit
@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TimeoutError(), True),
        (ConnectionError(), True),
        (type("APIConnectionError", (Exception,), {})(), True),
        (type("HTTPError", (Exception,), {"status_code": 503})(), True),
        (type("HTTPError", (Exception,), {"status_code": 429})(), True),
        (type("HTTPError", (Exception,), {"status_code": 400})(), False),
        (ValueError("bad"), False),
        (RuntimeError("boom"), False),
    ],
)
def test_transient_errors_are_told_apart(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.unit
def test_an_attempt_is_recorded_with_every_field_as_a_plain_copy() -> None:
    import dataclasses

    from hybrid.models.resilience import Attempt

    attempt = Attempt("openai:small", "error", "ConnectError", 12.5, True, "refused", "http://x", 3.25)
    recorded = attempt.as_dict()
    assert recorded == dataclasses.asdict(attempt)
    recorded["outcome"] = "changed"
    assert attempt.outcome == "error"  # a copy: the draft's record does not alias the attempt


@pytest.mark.integration
# A healthy server gets a timeout no machine comes near; a slow one answers after ten times its timeout.
@pytest.mark.parametrize(("delay", "timeout"), [(0.0, 30.0), (5.0, 0.5)])
def test_an_http_model_keeps_to_its_timeout_on_the_callers_thread(
    delay: float, timeout: float, monkeypatch, tmp_path
) -> None:
    """OpenAI-compatible models are called without a thread hand-off: their HTTP client gives up
    after the timeout, and only our retries try again (one request per recorded attempt)."""
    import sys
    import time

    from langchain_core.messages import HumanMessage

    from hybrid.evals.faults import FaultProxy
    from hybrid.models import resilience
    from hybrid.models.factory import clear_model_cache
    from hybrid.settings import Settings

    port = free_port()
    stub = [sys.executable, "-m", "hybrid.evals.stub", "--port", str(port), "--answer", "Paris."]
    with serving(stub, f"http://127.0.0.1:{port}/health", tmp_path / "stub.log"):
        proxy = FaultProxy(f"http://127.0.0.1:{port}")
        proxy.mode, proxy.delay = ("slow", delay) if delay else ("pass", 0.0)
        monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", f"{proxy.url}/v1")
        monkeypatch.setattr(resilience._executor, "submit", lambda *a, **k: pytest.fail("handed to a thread"))
        clear_model_cache()
        breaker.reset()
        settings = Settings(model_timeout_s=timeout, model_retries=1, retry_backoff_s=0.01)
        messages = [HumanMessage("What is the capital of France?")]
        deadline = time.monotonic() + 60
        try:
            if delay:
                with pytest.raises(resilience.TierDown) as down:
                    resilience.call_tier(["openai:slow"], messages, settings, deadline)
                attempts = down.value.attempts
                assert [a.outcome for a in attempts] == ["timeout", "timeout"]
                assert all(a.latency_ms >= 450 for a in attempts)  # each was given its time, then left
                assert "no answer within 0.5s" in attempts[0].error
            else:
                reply, spec, attempts = resilience.call_tier(["openai:slow"], messages, settings, deadline)
                assert (reply.content, spec, [a.outcome for a in attempts]) == (
                    "Paris.",
                    "openai:slow",
                    ["ok"],
                )
            assert proxy.requests == len(attempts)  # the client library retried nothing by itself
        finally:
            proxy.close()
            clear_model_cache()
            breaker.reset()
