"""The OpenAI-compatible server, in-process, driven by the official clients, with fake models."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from hybrid.server import create_app
from tests.fakes import FakeModels

QUESTION = "What is the capital of France?"


@pytest.fixture
def http(fakes: FakeModels) -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def client(http: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)


@pytest.mark.integration
def test_the_openai_client_gets_an_answer_with_the_route(fakes: FakeModels, client: openai.OpenAI) -> None:
    fakes.set("small", "The capital of France is Paris.")

    raw = client.chat.completions.with_raw_response.create(
        model="hybrid", messages=[{"role": "user", "content": QUESTION}]
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "The capital of France is Paris."
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6
    extra = completion.model_extra["hybrid"]
    assert (extra["status"], extra["route"], extra["answered_by"]) == ("answered", "small", "fake:small")
    assert extra["explanation"].startswith("small model fake:small answered")
    assert extra["verifier"]["passed"] is True
    assert raw.headers["x-hybrid-route"] == "small"
    assert raw.headers["x-hybrid-trace-id"] == extra["trace_id"]


@pytest.mark.integration
def test_the_reported_time_runs_until_the_response_body_is_built(
    fakes: FakeModels, http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client measuring the hop counts building the body too: the clock stops after it.
    from hybrid import server

    fakes.set("small", "The capital of France is Paris.")
    request = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}
    http.post("/v1/chat/completions", json=request)  # what loads once is loaded
    usage = server._usage

    def slow_usage(answer: Any) -> Any:
        time.sleep(0.3)
        return usage(answer)

    monkeypatch.setattr(server, "_usage", slow_usage)
    timings = http.post("/v1/chat/completions", json=request).json()["hybrid"]["timings_ms"]

    assert timings["total"] - sum(timings["nodes"].values()) >= 300  # the graph's own time aside
    assert timings["overhead"] >= 300


@pytest.mark.integration
def test_langchains_chatopenai_works_unchanged(fakes: FakeModels, http: TestClient) -> None:
    from langchain_openai import ChatOpenAI

    fakes.set("small", "The capital of France is Paris.")
    model = ChatOpenAI(model="hybrid", base_url="http://testserver/v1", api_key="unused", http_client=http)

    reply = model.invoke(QUESTION)

    assert reply.text == "The capital of France is Paris."
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == 6


@pytest.mark.integration
def test_the_whole_conversation_is_considered(fakes: FakeModels, client: openai.OpenAI) -> None:
    fakes.set("small", lambda m: "Berlin." if any("France" in x.text for x in m) else "I don't know.")
    completion = client.chat.completions.create(
        model="hybrid",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Germany?"},
        ],
    )
    assert completion.choices[0].message.content == "Berlin."
    prompt = fakes.calls("small")[-1]
    assert [m.text for m in prompt[1:]] == [QUESTION, "Paris.", "And of Germany?"]


@pytest.mark.integration
def test_streaming_holds_drafts_until_verified_by_default(fakes: FakeModels, client: openai.OpenAI) -> None:
    fakes.set("small", "I don't know.")
    fakes.set("large", "Paris is the capital of France.")

    chunks = list(
        client.chat.completions.create(
            model="hybrid", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital of France."  # the failed draft never reached the client
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["hybrid"]["answered_by"] == "fake:large"


@pytest.mark.integration
def test_streaming_drafts_with_a_correction_on_escalation(fakes: FakeModels, client: openai.OpenAI) -> None:
    fakes.set("small", "I don't know.")
    fakes.set("large", "Paris is the capital of France.")

    chunks = list(
        client.chat.completions.create(
            model="hybrid",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"hybrid": {"stream_policy": "correct"}},
        )
    )

    events, shown = [], ""
    for chunk in chunks:
        extra = (chunk.model_extra or {}).get("hybrid") or {}
        if extra.get("event") == "correction":
            events.append(("correction", shown))
            shown = ""
        elif chunk.choices and chunk.choices[0].delta.content:
            shown += chunk.choices[0].delta.content
    assert events == [("correction", "I don't know.")]  # the draft streamed, then was withdrawn
    assert shown == "Paris is the capital of France."
    assert chunks[-1].usage is not None


@pytest.mark.integration
def test_a_pending_review_is_202_and_can_be_polled_and_resolved(fakes: FakeModels, http: TestClient) -> None:
    fakes.set("small", "A draft.")
    body = {
        "model": "hybrid",
        "messages": [{"role": "user", "content": QUESTION}],
        "hybrid": {"overrides": {"force_route": "human"}},
    }

    pending = http.post("/v1/chat/completions", json=body)

    assert pending.status_code == 202
    thread = pending.json()["hybrid"]["thread_id"]
    assert pending.json()["hybrid"]["status"] == "pending_review"
    assert http.get(f"/v1/hybrid/threads/{thread}").status_code == 202
    listed = http.get("/v1/hybrid/reviews").json()["data"]
    assert [case["thread_id"] for case in listed] == [thread]

    resolved = http.post(
        f"/v1/hybrid/reviews/{thread}", json={"action": "edit", "answer": "Paris.", "reviewer": "ana"}
    )
    assert resolved.status_code == 200
    polled = http.get(f"/v1/hybrid/threads/{thread}")
    assert polled.status_code == 200
    assert polled.json()["choices"][0]["message"]["content"] == "Paris."

    again = http.post(f"/v1/hybrid/reviews/{thread}", json={"action": "approve", "reviewer": "bo"})
    assert again.status_code == 409
    assert "already resolved (edit) by ana" in again.json()["error"]["message"]


@pytest.mark.integration
def test_conversation_and_review_errors_get_statuses_by_type(fakes: FakeModels, http: TestClient) -> None:
    fakes.set("small", "A draft.")
    body = {
        "model": "hybrid",
        "messages": [{"role": "user", "content": QUESTION}],
        "hybrid": {"overrides": {"force_route": "human"}},
    }
    thread = http.post("/v1/chat/completions", json=body).json()["hybrid"]["thread_id"]

    # Asking again on a conversation that waits for a reviewer is a conflict, not "not found".
    asked_again = http.post(
        "/v1/chat/completions",
        json={
            "model": "hybrid",
            "messages": [{"role": "user", "content": "And?"}],
            "hybrid": {"thread_id": thread},
        },
    )
    assert asked_again.status_code == 409
    assert asked_again.json()["error"]["code"] == "conversation_busy"
    # An edit without the reviewer's answer is an invalid decision, and the case stays pending.
    empty_edit = http.post(f"/v1/hybrid/reviews/{thread}", json={"action": "edit", "reviewer": "ana"})
    assert empty_edit.status_code == 422
    assert "needs the reviewer's answer" in empty_edit.json()["error"]["message"]
    assert [case["thread_id"] for case in http.get("/v1/hybrid/reviews").json()["data"]] == [thread]
    assert http.get("/v1/hybrid/threads/nonexistent").status_code == 404
    assert http.post("/v1/hybrid/reviews/nonexistent", json={"action": "reject"}).status_code == 404


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "hybrid", "messages": [{"role": "user", "content": "   "}]}, 400, "the question is empty"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}, 404, "does not exist"),
        ({"model": "hybrid", "messages": []}, 400, "last message must come from the user"),
        (
            {
                "model": "hybrid",
                "messages": [{"role": "user", "content": QUESTION}],
                "hybrid": {"overrides": {"retrieval": "x"}},
            },
            400,
            "retrieval='x'",
        ),
        (
            {"model": "hybrid:gpu", "messages": [{"role": "user", "content": QUESTION}]},
            400,
            "unknown profile 'gpu'",
        ),
        ({"model": "hybrid"}, 400, "messages"),
    ],
)
def test_errors_use_openais_shape_and_status_codes(
    fakes: FakeModels, http: TestClient, body: dict, status: int, fragment: str
) -> None:
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"]
    assert fakes.calls("small") == []


@pytest.mark.unit
def test_the_official_client_raises_its_own_errors(fakes: FakeModels, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="the question is empty"):
        client.chat.completions.create(model="hybrid", messages=[{"role": "user", "content": ""}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])


@pytest.mark.integration
def test_bearer_keys_guard_everything_and_nothing_runs_without_one(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch, http: TestClient
) -> None:
    monkeypatch.setenv("HYBRID_API_KEYS", "key-one, key-two")
    fakes.set("small", "The capital of France is Paris.")
    body = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}

    denied = http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401
    assert denied.json()["error"]["type"] == "authentication_error"
    assert http.post("/v1/chat/completions", json=body).status_code == 401
    assert http.get("/v1/models").status_code == 401
    assert fakes.calls("small") == []

    allowed = openai.OpenAI(base_url="http://testserver/v1", api_key="key-two", http_client=http)
    assert (
        allowed.chat.completions.create(**body).choices[0].message.content
        == "The capital of France is Paris."
    )
    assert http.get("/health").status_code == 200  # health and metrics stay open for probes


@pytest.mark.integration
def test_models_health_and_metrics(fakes: FakeModels, http: TestClient, client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} >= {"hybrid", "hybrid:embedded", "hybrid:ollama"}
    assert http.get("/health").json() == {"status": "ok"}
    fakes.set("small", "The capital of France is Paris.")
    client.chat.completions.create(model="hybrid", messages=[{"role": "user", "content": QUESTION}])
    metrics = http.get("/metrics").text
    assert 'hybrid_requests_total{route="small",status="answered"}' in metrics


@pytest.mark.integration
def test_feedback_endpoint_records_a_rating(
    fakes: FakeModels, http: TestClient, client: openai.OpenAI
) -> None:
    from hybrid.feedback import labelled_examples
    from hybrid.settings import resolve_settings

    fakes.set("small", "The capital of France is Paris.")
    completion = client.chat.completions.create(
        model="hybrid", messages=[{"role": "user", "content": QUESTION}]
    )
    thread = completion.model_extra["hybrid"]["thread_id"]

    response = http.post("/v1/hybrid/feedback", json={"thread_id": thread, "rating": "up"})

    assert response.json() == {"status": "recorded"}
    assert labelled_examples(resolve_settings())[-1]["label"] == 1


@pytest.mark.unit
def test_stream_errors_before_the_stream_starts_are_http_errors(fakes: FakeModels, http: TestClient) -> None:
    body = {"model": "hybrid", "messages": [{"role": "user", "content": ""}], "stream": True}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert json.loads(response.text)["error"]["message"] == "the question is empty"


@pytest.mark.integration
def test_prepare_loads_what_answering_uses_and_reports_what_it_cannot(
    fakes: FakeModels, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid import api
    from hybrid.errors import InvalidSetting

    fakes.set("small", "Paris.")
    fakes.set("large", "Paris.")
    assert api.prepare() == []
    assert set(fakes.models) == {"small", "large"}  # both tiers' clients are built
    assert not fakes.calls("small")  # and nothing was asked of them
    monkeypatch.setenv("HYBRID_ROUTER_PATH", str(isolated / "no-router-here"))
    problems = api.prepare()
    assert len(problems) == 1
    assert problems[0].startswith("router: ")
    with pytest.raises(InvalidSetting, match="router"):
        api.prepare(router="nonsense")


@pytest.mark.integration
def test_the_server_prepares_and_freezes_its_start_up_objects_before_serving(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    fakes.set("large", "Paris.")
    try:
        with TestClient(create_app()) as http:  # runs the start-up
            assert gc.get_freeze_count() > 0  # a full collection no longer walks them
            assert http.get("/health").status_code == 200
    finally:
        gc.unfreeze()


def _numbered_question(n: int) -> dict[str, object]:
    return {"model": "hybrid", "messages": [{"role": "user", "content": f"{QUESTION} ({n})"}]}


def metric(name: str) -> float:
    """A sample of the registry `/metrics` serves (counters add up over the whole test session)."""
    from hybrid.observability import REGISTRY

    return REGISTRY.get_sample_value(name) or 0.0


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait, in a model call, until `condition()` holds: a state that stays once reached."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"did not happen within a minute: {what}")
        time.sleep(0.005)


async def until_async(condition: Callable[[], bool], what: str) -> None:
    """`until`, on the event loop the app runs on."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"did not happen within a minute: {what}")
        await asyncio.sleep(0.005)


def post_together(bodies: list[dict[str, object]]) -> list[httpx.Response]:
    """POST the chat bodies to one app concurrently."""

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for body in bodies))

    return asyncio.run(send_all())


@pytest.mark.integration
@pytest.mark.parametrize("limit", [1, 2])
def test_requests_beyond_the_run_limit_wait_their_turn_and_the_wait_is_reported(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setenv("HYBRID_MAX_ACTIVE_RUNS", str(limit))
    active, most = [0], [0]
    lock = threading.Lock()
    together = threading.Barrier(2, timeout=60)
    held: list[float] = []  # limit 1: when the running request saw the other wait, and let go

    def answer(_messages: object) -> str:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        if limit == 2:
            together.wait()  # both runs are in a model at once (else the barrier breaks)
        elif not held:  # the first run keeps its slot until the other request waits for one
            until(lambda: metric("hybrid_runs_waiting") == 1, "a request waiting for the run slot")
            held.append(time.perf_counter())
        with lock:
            active[0] -= 1
        if limit == 1 and len(held) == 1:
            held.append(time.perf_counter())
        return "The capital of France is Paris."

    fakes.set("small", answer)
    fakes.set("large", answer)

    responses = post_together([_numbered_question(n) for n in range(2)])

    assert [r.status_code for r in responses] == [200, 200]
    assert most[0] == limit  # never more graph runs at once than allowed, and no fewer
    timings = sorted((r.json()["hybrid"]["timings_ms"] for r in responses), key=lambda t: t["queued"])
    if limit == 1:  # the second waited, from before it was seen waiting until after the first let go
        seen, let_go = held
        assert timings[1]["queued"] >= (let_go - seen) * 1000
    for t in timings:  # the wait is neither the models' time nor the graph's own
        assert t["overhead"] == pytest.approx(t["total"] - t["queued"] - t["models"], abs=0.05)
    metrics = TestClient(create_app()).get("/metrics").text
    assert "hybrid_queue_seconds_count" in metrics
    assert "hybrid_runs_waiting 0.0" in metrics


@pytest.mark.unit
def test_a_request_whose_client_left_while_it_waited_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.server import OpenAIError, _Admission

    monkeypatch.setenv("HYBRID_MAX_ACTIVE_RUNS", "1")

    class HungUp:
        async def is_disconnected(self) -> bool:
            return True

    async def scenario() -> tuple[list[str], OpenAIError, float]:
        admission, ran = _Admission(), []

        async def wait_then_find_it_gone() -> OpenAIError:
            with pytest.raises(OpenAIError) as caught:
                async with admission.slot(HungUp()):  # type: ignore[arg-type]
                    ran.append("after waiting")
            return caught.value

        async with admission.slot():  # the only slot is taken: the next request waits
            waiter = asyncio.create_task(wait_then_find_it_gone())
            await asyncio.sleep(0)
        error = await waiter
        slots = admission._limits()
        given_back = slots.total - slots.active
        # Admitted at once, a request is not asked whether its client is still there: it runs.
        async with admission.slot(HungUp()):  # type: ignore[arg-type]
            ran.append("at once")
        return ran, error, given_back

    ran, error, given_back = asyncio.run(scenario())
    assert ran == ["at once"]
    assert given_back == 1
    assert (error.status, error.kind) == (499, "client_closed_request")


@pytest.mark.integration
def test_beyond_the_waiting_limit_requests_get_429_with_retry_after(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_MAX_ACTIVE_RUNS", "1")
    monkeypatch.setenv("HYBRID_MAX_WAITING_RUNS", "1")
    refused_before = metric("hybrid_requests_refused_total")
    running, release = threading.Event(), threading.Event()

    def held_answer(_messages: object) -> str:
        running.set()
        release.wait(timeout=60)  # the run keeps its slot until the test has seen the others
        return "The capital of France is Paris."

    fakes.set("small", held_answer)
    fakes.set("large", held_answer)

    async def scenario() -> tuple[list[httpx.Response], float]:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            def post(n: int) -> Any:
                return http.post("/v1/chat/completions", json=_numbered_question(n) | {"stream": n == 3})

            runs = asyncio.create_task(post(0))
            await until_async(running.is_set, "the first request running")
            waits = asyncio.create_task(post(1))
            await until_async(lambda: metric("hybrid_runs_waiting") == 1, "the second request waiting")
            seen = time.perf_counter()
            refused = [await post(2), await post(3)]  # one waits already: no room, streaming or not
            release.set()
            waited_at_least = time.perf_counter() - seen
            return [await runs, await waits, *refused], waited_at_least

    responses, waited_at_least = asyncio.run(scenario())

    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    refused = responses[2]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "server_at_capacity"
    assert int(refused.headers["retry-after"]) >= 1
    assert responses[1].json()["hybrid"]["timings_ms"]["queued"] >= waited_at_least * 1000  # it did run
    metrics = TestClient(create_app()).get("/metrics").text
    assert f"hybrid_requests_refused_total {refused_before + 2}" in metrics
