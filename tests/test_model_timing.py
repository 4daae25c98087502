"""The model server's time, taken at the HTTP boundary, and what the server reports from it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from hybrid import api
from hybrid.models.timing import server_time, timed_http_client
from hybrid.server import _model_times
from tests.servers import free_port, serving


class _Body(httpx2.SyncByteStream):
    """A body that arrives from the network, as a real transport's does (a `content=` body would
    count as read already)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self):
        yield self.body


def _answering(body: bytes) -> httpx2.MockTransport:
    return httpx2.MockTransport(lambda request: httpx2.Response(200, stream=_Body(body)))


@pytest.mark.unit
def test_each_exchange_inside_the_block_is_timed_once() -> None:
    client = timed_http_client(_answering(b'{"ok": true}'))
    with server_time() as spent:
        assert client.post("http://model.test/v1/chat/completions", json={}).json() == {"ok": True}
        client.get("http://model.test/v1/models").read()
    assert len(spent) == 2
    assert all(ms >= 0 for ms in spent)


@pytest.mark.unit
def test_a_stream_is_timed_when_its_body_ends() -> None:
    client = timed_http_client(_answering(b"data: a\n\ndata: b\n\n"))
    url = "http://model.test/v1/chat/completions"
    with server_time() as spent, client.stream("POST", url, json={}) as response:
        assert spent == []  # headers are in; the body is still the server's
        assert b"".join(response.iter_bytes()) == b"data: a\n\ndata: b\n\n"
    assert len(spent) == 1


@pytest.mark.unit
def test_a_failed_exchange_counts_too() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    client = timed_http_client(httpx2.MockTransport(refuse))
    with server_time() as spent, pytest.raises(httpx2.ConnectError):
        client.get("http://model.test/v1/models")
    assert len(spent) == 1


@pytest.mark.unit
def test_outside_a_block_nothing_is_collected() -> None:
    client = timed_http_client(_answering(b"{}"))
    client.get("http://model.test/v1/models").read()
    with server_time() as spent:
        pass
    assert spent == []


class _Clock:
    """`time.perf_counter` for the timing module, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_only_the_exchange_on_the_wire_is_the_servers_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.models import timing

    clock = _Clock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    seen: list[str] = []

    def exchange(request: httpx2.Request) -> httpx2.Response:
        trace = request.extensions["trace"]
        clock.now += 0.004  # the connection pool and the request's bytes: our side
        trace("http11.send_request_headers.started", {})
        clock.now += 0.002  # writing the request out: still ours
        trace("http11.send_request_body.complete", {})
        clock.now += 0.010  # the server answers
        trace("http11.receive_response_body.complete", {})
        clock.now += 0.003  # parsing the reply: our side again
        return httpx2.Response(200, stream=_Body(b"{}"))

    client = timed_http_client(httpx2.MockTransport(exchange))
    with server_time() as spent:
        client.get(
            "http://model.test/v1/models", extensions={"trace": lambda name, _: seen.append(name)}
        ).read()
    assert spent == [pytest.approx(10.0)]
    # a trace hook of the caller's own still sees every event
    assert seen == [
        "http11.send_request_headers.started",
        "http11.send_request_body.complete",
        "http11.receive_response_body.complete",
    ]


@pytest.mark.unit
def test_a_new_connections_connect_is_the_servers_time_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # A direct client pays the connect as well; only the request's writing after it is ours.
    from hybrid.models import timing

    clock = _Clock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)

    def exchange(request: httpx2.Request) -> httpx2.Response:
        trace = request.extensions["trace"]
        clock.now += 0.004
        trace("connection.connect_tcp.started", {})
        clock.now += 0.001
        trace("http11.send_request_headers.started", {})
        clock.now += 0.002
        trace("http11.send_request_body.complete", {})
        clock.now += 0.010
        trace("http11.receive_response_body.complete", {})
        clock.now += 0.003
        return httpx2.Response(200, stream=_Body(b"{}"))

    client = timed_http_client(httpx2.MockTransport(exchange))
    with server_time() as spent:
        client.get("http://model.test/v1/models").read()
    assert spent == [pytest.approx(13.0)]


class _Answer:
    def __init__(self, drafts: list[dict]) -> None:
        self.drafts = drafts


@pytest.mark.unit
def test_only_the_servers_part_of_a_timed_call_is_model_time() -> None:
    answer = _Answer(
        [
            {"latency_ms": 5.0, "server_ms": 1.5},  # over HTTP: 3.5 ms were our client library's
            {"latency_ms": 40.0, "server_ms": None},  # in-process: all of it is the model's
            {"latency_ms": 2.0},  # recorded before the field existed
        ]
    )
    model_ms, library_ms = _model_times(answer)  # type: ignore[arg-type]
    assert model_ms == pytest.approx(1.5 + 40.0 + 2.0)
    assert library_ms == pytest.approx(3.5)


@pytest.fixture
def stub_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both tiers on a real OpenAI-compatible server (the overhead benchmark's instant stub)."""
    port = free_port()
    command = [sys.executable, "-m", "hybrid.evals.stub", "--port", str(port)]
    with serving(command, f"http://127.0.0.1:{port}/health", tmp_path / "stub.log"):
        monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
        monkeypatch.setenv("HYBRID_SMALL_MODEL", "openai:stub-small")
        monkeypatch.setenv("HYBRID_LARGE_MODEL", "openai:stub-large")
        monkeypatch.setenv("HYBRID_ROUTER", "heuristic")
        monkeypatch.setenv("HYBRID_CACHE", "off")
        yield f"http://127.0.0.1:{port}"


def _check_split(drafts: list[dict]) -> None:
    assert drafts
    for draft in drafts:
        ok = [a for a in draft["attempts"] if a["outcome"] == "ok"]
        assert ok
        assert all(isinstance(a["server_ms"], float) for a in ok)
        assert 0 < draft["server_ms"] <= draft["latency_ms"]


@pytest.mark.integration
def test_an_openai_call_through_the_factory_records_the_servers_part(stub_upstream: str) -> None:
    answer = api.ask("What is the capital of France?")
    assert answer.status == "answered"
    _check_split(answer.drafts)


@pytest.mark.integration
def test_a_streamed_openai_call_records_it_too(stub_upstream: str) -> None:
    events = list(api.stream("What is the capital of Italy?"))
    assert any(e.kind == "token" for e in events)  # the model was called streaming
    (final,) = [e for e in events if e.kind == "answer"]
    _check_split(final.answer.drafts)


class _Socket:
    """The transport a protocol writes to: what it wrote, nothing sent."""

    def __init__(self) -> None:
        self.written = b""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        pass


@pytest.mark.unit
def test_hybrid_serve_stamps_each_request_when_its_bytes_arrive() -> None:
    # Before the headers are parsed and the app is called: what a client waits for on our side.
    import asyncio
    import time

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from hybrid.server import arrival_stamping_protocol

    stamps: list[float] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        stamps.append(scope["state"]["received_at"])
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def two_requests_on_one_connection() -> list[tuple[float, float]]:
        protocol_class = arrival_stamping_protocol()
        config = Config(app=app, http=protocol_class, lifespan="off", log_level="warning")
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
        socket = _Socket()
        protocol.connection_made(socket)
        windows = []
        for _ in range(2):
            before = time.perf_counter()
            protocol.data_received(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
            windows.append((before, time.perf_counter()))
            while socket.written.count(b"HTTP/1.1 204") < len(windows):
                await asyncio.sleep(0.01)
        return windows

    windows = asyncio.run(two_requests_on_one_connection())
    assert len(stamps) == 2
    for stamp, (before, after) in zip(stamps, windows, strict=True):
        assert before <= stamp <= after
