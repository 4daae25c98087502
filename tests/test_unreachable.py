"""A configuration no model can be reached with, through the graph, the façade, the command and the
server: fake models (through the real factory) raise the real clients' connection errors."""

from __future__ import annotations

import openai
import pytest

from hybrid import api
from hybrid.errors import ModelsUnreachable
from hybrid.models.reachability import REFUSED
from hybrid.models.resilience import breaker
from tests.fakes import FakeModels
from tests.servers import free_port, refused

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"


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
