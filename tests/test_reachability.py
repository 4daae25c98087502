"""Telling an unreachable model from one that was reached and failed, and what the graph does with it.

The errors are the real clients' own: raised against a loopback port nothing listens on, or built
the way the clients build them from a server's answer. The graph runs with fake models that raise
them, through the real factory.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import ollama
import openai
import pytest

from graphs.edges import after_verify, unreachable_next
from hybrid import api
from hybrid.errors import ModelsUnreachable, UnknownModel
from hybrid.models import reachability
from hybrid.models.reachability import (
    KEY_REFUSED,
    NO_CONNECTION,
    NOT_FOUND,
    REFUSED,
    UNKNOWN_HOST,
    UNKNOWN_MODEL,
    unreachable_reason,
)
from hybrid.models.resilience import breaker
from tests.fakes import FakeModels
from tests.servers import free_port

QUESTION = "What is the capital of France?"


def refused() -> httpx.ConnectError:
    """The error httpx really raises for a loopback port nothing listens on."""
    try:
        httpx.get(f"http://127.0.0.1:{free_port()}/", timeout=5)
    except httpx.ConnectError as exc:
        return exc
    raise AssertionError("something listens on a free port")


def _request() -> httpx.Request:
    return httpx.Request("POST", "http://127.0.0.1:8080/v1/chat/completions")


def _status_error(kind: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    return kind(f"Error code: {status}", response=httpx.Response(status, request=_request()), body=None)


# --- Classification ------------------------------------------------------------------------------


def test_a_refused_connection_is_unreachable_whichever_client_saw_it() -> None:
    assert unreachable_reason(refused()) == REFUSED

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIConnectionError) as caught:
        client.models.list()
    assert unreachable_reason(caught.value) == REFUSED  # the socket error is its cause

    with pytest.raises(ConnectionError) as bare:  # the Ollama client drops the cause
        ollama.Client(host=f"http://127.0.0.1:{free_port()}").list()
    assert unreachable_reason(bare.value) == NO_CONNECTION


def test_an_unknown_host_is_unreachable() -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get("http://no-such-host.invalid:8080/", timeout=5)
    assert unreachable_reason(caught.value) == UNKNOWN_HOST
    assert unreachable_reason(socket.gaierror(-2, "Name or service not known")) == UNKNOWN_HOST


def test_an_unknown_model_or_a_refused_key_is_unreachable() -> None:
    assert unreachable_reason(_status_error(openai.NotFoundError, 404)) == NOT_FOUND
    assert unreachable_reason(ollama.ResponseError('model "llama3.1:8b" not found', 404)) == NOT_FOUND
    assert unreachable_reason(_status_error(openai.AuthenticationError, 401)) == KEY_REFUSED
    assert unreachable_reason(_status_error(openai.PermissionDeniedError, 403)) == KEY_REFUSED
    assert unreachable_reason(UnknownModel("llamacpp model 'x' is neither ...")) == UNKNOWN_MODEL


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("no answer within 60.0s"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        ConnectionResetError("reset by peer"),
        ConnectionError("down"),
        ValueError("bad request"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_timeouts_and_errors_of_a_reached_server_are_not(error: Exception) -> None:
    assert unreachable_reason(error) is None


def test_status_errors_other_than_404_401_403_are_a_reached_server() -> None:
    assert unreachable_reason(_status_error(openai.InternalServerError, 500)) is None
    assert unreachable_reason(_status_error(openai.RateLimitError, 429)) is None
    timeout = openai.APITimeoutError(request=_request())  # a subclass of APIConnectionError
    timeout.__cause__ = httpx.ReadTimeout("timed out")
    assert unreachable_reason(timeout) is None


def test_fixes_say_what_to_do_for_each_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.settings import resolve_settings

    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", "http://127.0.0.1:9")
    settings = resolve_settings()
    assert "ollama serve" in reachability.fix_for("ollama:llama3.1:8b", REFUSED, settings, ["large"])
    assert "ollama pull llama3.1:8b" in reachability.fix_for("ollama:llama3.1:8b", UNKNOWN_MODEL, settings)
    assert "HYBRID_OPENAI_API_KEY" in reachability.fix_for("openai:gpt", KEY_REFUSED, settings)
    assert "HYBRID_SMALL_MODEL" in reachability.fix_for("openai:gpt", NOT_FOUND, settings, ["small"])
    assert "does not resolve" in reachability.fix_for("openai:gpt", UNKNOWN_HOST, settings)
    assert "make setup" in reachability.fix_for("llamacpp:x.gguf", UNKNOWN_MODEL, settings)


# --- The edges ------------------------------------------------------------------------------------


def _draft(tier: str, kind: str | None, text: str = "") -> dict[str, Any]:
    attempts = [
        {"model": f"x:{tier}", "outcome": "error", "unreachable": REFUSED if kind == "unreachable" else None}
    ]
    return {"tier": tier, "model": f"x:{tier}", "text": text, "error": "failed" if kind else None,
            "error_kind": kind, "attempts": attempts}  # fmt: skip


def _state(*drafts: dict[str, Any], route: str = "small", policy: str = "error", **extra: Any) -> Any:
    verdicts = [{"tier": d["tier"], "passed": False, "score": 0.0, "threshold": 0.5} for d in drafts]
    return {
        "route": {"route": route, "forced": False, "allowed_tiers": ["small", "large"],
                  "policies": {"large_tier_down": "review", "unreachable_models": policy}},
        "drafts": list(drafts), "verifications": verdicts, **extra,
    }  # fmt: skip


def test_every_allowed_tier_unreachable_ends_the_turn() -> None:
    state = _state(_draft("small", "unreachable"), _draft("large", "unreachable"))
    assert after_verify(state) == "unreachable"


def test_an_untried_tier_is_tried_before_calling_the_configuration_dead() -> None:
    assert after_verify(_state(_draft("small", "unreachable"))) == "escalate"
    large_first = _state(_draft("large", "unreachable"), route="large")
    assert after_verify(large_first) == "answer_small"


def test_a_small_draft_after_an_unreachable_large_tier_is_not_escalated_again() -> None:
    state = _state(_draft("large", "unreachable"), _draft("small", None, "Lyon."), route="large")
    assert after_verify(state) == "human_review"


def test_review_policy_and_review_rounds_keep_the_reviewer() -> None:
    dead = (_draft("small", "unreachable"), _draft("large", "unreachable"))
    assert after_verify(_state(*dead, policy="review")) == "human_review"
    assert unreachable_next(_state(*dead, review_round=1)) is None


def test_a_tier_reached_but_failing_is_a_bad_day_not_a_dead_configuration() -> None:
    assert (
        after_verify(_state(_draft("small", "unreachable"), _draft("large", "tier_down"))) == "human_review"
    )
    assert (
        after_verify(_state(_draft("small", "tier_down"), _draft("large", "unreachable"))) == "human_review"
    )


# --- Through the graph and the façade --------------------------------------------------------------


def test_no_model_reachable_raises_names_the_endpoints_and_opens_no_case(fakes: FakeModels) -> None:
    fakes.set("small", refused())
    fakes.set("large", refused())

    with pytest.raises(ModelsUnreachable) as caught:
        api.ask(QUESTION)

    error = caught.value
    assert "hybrid doctor" in str(error)
    assert [(m["tier"], m["model"], m["reason"]) for m in error.unreachable] == [
        ("small", "fake:small", REFUSED),
        ("large", "fake:large", REFUSED),
    ]
    assert api.pending_reviews() == []
    turn = api.answer_for(error.thread_id)
    assert turn.status == "unreachable"
    assert turn.explanation.startswith(
        "no model could be reached (fake:small at fake:small: connection refused"
    )
    events = [e for e in api.audit.events(api.resolve_settings()) if e["trace_id"] == error.trace_id]
    assert [e["event"] for e in events] == ["models_unreachable"]
    assert [m["model"] for m in events[0]["data"]["unreachable"]] == ["fake:small", "fake:large"]
    assert "no review case" in events[0]["data"]["outcome"]
    [recorded] = api.traffic()
    assert recorded.outcome == "unreachable"
    assert api.conversations()[0].status == "unreachable"


def test_the_configuration_may_ask_a_reviewer_instead(fakes: FakeModels) -> None:
    fakes.set("small", refused())
    fakes.set("large", refused())

    answer = api.ask(QUESTION, unreachable_models="review")

    assert answer.status == "pending_review"
    assert answer.pending_review is not None
    assert answer.pending_review["why"].startswith("no model could be reached: small tier: fake:small")


def test_a_large_first_question_falls_back_to_a_reachable_small_tier(fakes: FakeModels) -> None:
    fakes.set("small", "The capital of France is Paris.")
    fakes.set("large", refused())

    answer = api.ask(QUESTION, route_threshold=-1)  # every question starts on the large tier

    assert answer.route["route"] == "large"
    assert [d["tier"] for d in answer.drafts] == ["large", "small"]
    assert answer.answered_by == "fake:small"
    assert "large tier unreachable (fake:large at fake:large: connection refused)" in answer.explanation


def test_a_reached_tier_that_fails_keeps_the_review_fallback(fakes: FakeModels) -> None:
    fakes.set("small", refused())
    fakes.set("large", TimeoutError("slow"))

    answer = api.ask(QUESTION)

    assert answer.status == "pending_review"
    assert [d["error_kind"] for d in answer.drafts] == ["unreachable", "tier_down"]


def test_a_model_in_cooldown_after_being_unreachable_is_still_unreachable(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_BREAKER_FAILURES", "1")
    monkeypatch.setenv("HYBRID_MODEL_RETRIES", "0")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="x", max_retries=0)
    try:
        client.models.list()
    except openai.APIConnectionError as exc:  # transient: it opens the breaker
        connection_error = exc
    fakes.set("small", connection_error)
    fakes.set("large", connection_error)

    with pytest.raises(ModelsUnreachable):
        api.ask(QUESTION)
    assert breaker.open_for("fake:small") > 0
    with pytest.raises(ModelsUnreachable) as again:
        api.ask(QUESTION)

    assert len(fakes.calls("small")) == 1  # skipped the second time
    assert again.value.unreachable[0]["reason"] == REFUSED


def test_streaming_raises_the_same_error_after_the_events(fakes: FakeModels) -> None:
    fakes.set("small", refused())
    fakes.set("large", refused())
    seen: list[str | None] = []
    with pytest.raises(ModelsUnreachable):
        seen.extend(event.node for event in api.stream(QUESTION))  # kept up to the error
    assert "unreachable" in seen


def test_the_cli_exits_non_zero_with_the_error(fakes: FakeModels) -> None:
    from click.testing import CliRunner

    from hybrid.cli import cli

    fakes.set("small", refused())
    fakes.set("large", refused())
    result = CliRunner().invoke(cli, ["ask", QUESTION])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no model could be reached: small tier: fake:small")
    assert "Run `hybrid doctor`" in result.stderr


def test_the_server_answers_503_with_retry_after(fakes: FakeModels) -> None:
    from fastapi.testclient import TestClient

    from hybrid.server import create_app

    fakes.set("small", refused())
    fakes.set("large", refused())
    http = TestClient(create_app())
    body = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}

    response = http.post("/v1/chat/completions", json=body)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"  # the models' cooldown
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "models_unreachable")
    assert "fake:large" in error["message"]

    # Fake models have no probe, so the stream starts, and ends with the error as an event.
    streamed = http.post("/v1/chat/completions", json={**body, "stream": True})
    assert '"code": "models_unreachable"' in streamed.text
