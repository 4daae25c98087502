"""The model server's own time, measured at the HTTP boundary, apart from the client library's.

A call through LangChain and the OpenAI client spends time in Python on our side (building the
request, parsing the reply into messages) before and after the server's part. Counting all of it as
"the model's time" under-reports our overhead: a client measures the whole hop. So `openai:` models
get an HTTP client that times each exchange on the wire: from the first byte of the connection (or
the request's last, on a reused one) to the last byte of the response body (a stream included), through
the connection layer's `trace` hook, so the connection pool's bookkeeping and the building of the
request stay ours. `call_tier` collects those times per attempt through a context variable (the
call runs in a worker thread with a copy of the caller's context). A transport that reports no wire
events (a mock) is timed around its whole exchange instead.

Providers without such a hook (in-process llama.cpp, fakes) report nothing, and their whole call
counts as model time, as before.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_spent: ContextVar[list[float] | None] = ContextVar("hybrid_model_server_ms", default=None)


@contextlib.contextmanager
def server_time() -> Iterator[list[float]]:
    """Collect the milliseconds of each HTTP exchange with a model server made inside the block."""
    spent: list[float] = []
    token = _spent.set(spent)
    try:
        yield spent
    finally:
        _spent.reset(token)


# The connection layer's trace events (httpcore's names, "http11." or "http2." before them) that
# open and close an exchange on the wire. On a reused connection the server's part begins once the
# whole request is written: serialising and writing it is the client library's work. A new
# connection's connect and TLS handshake are the server's to pay as much as a direct client's, so
# there it begins with them.
_WIRE_OPENS = ("connect_tcp.started", "start_tls.started", "send_request_body.complete")
_WIRE_CLOSES = ("receive_response_body.complete",)


class WireMarks:
    """A `trace` hook: when the exchange first touched the wire, and when its body was all in.
    A hook the caller had set still gets every event."""

    def __init__(self, chained: Any = None) -> None:
        self.chained = chained
        self.opened: float | None = None
        self.closed: float | None = None

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        if self.opened is None and name.endswith(_WIRE_OPENS):
            self.opened = time.perf_counter()
        elif name.endswith(_WIRE_CLOSES):
            self.closed = time.perf_counter()
        if self.chained is not None:
            self.chained(name, info)

    def milliseconds(self, started: float) -> float:
        """The exchange's time on the wire; from `started` where nothing was traced, and until now
        where its body never completed (an error, a stream closed early)."""
        opened = started if self.opened is None else self.opened
        return ((self.closed or time.perf_counter()) - opened) * 1000


def timed_http_client(inner: Any = None, **kwargs: Any) -> Any:
    """The OpenAI SDK's default HTTP client (its limits and timeouts), with a timing transport
    around `inner` (default: an `httpx2.HTTPTransport` with the SDK's connection limits)."""
    import httpx2
    import openai

    class _TimedStream(httpx2.SyncByteStream):
        def __init__(self, inner: Any, started: float, spent: list[float], marks: WireMarks) -> None:
            self._inner, self._started, self._spent, self._marks = inner, started, spent, marks
            self._closed = False

        def __iter__(self) -> Iterator[bytes]:
            yield from self._inner

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                if not self._closed:
                    self._closed = True
                    self._spent.append(self._marks.milliseconds(self._started))

    class _TimedTransport(httpx2.BaseTransport):
        def __init__(self, inner: httpx2.BaseTransport) -> None:
            self._inner = inner

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            spent, started = _spent.get(), time.perf_counter()
            if spent is None:  # nobody collects: no hook to run
                return self._inner.handle_request(request)
            marks = WireMarks(request.extensions.get("trace"))
            request.extensions["trace"] = marks
            try:
                response = self._inner.handle_request(request)
            except BaseException:
                spent.append(marks.milliseconds(started))
                raise
            response.stream = _TimedStream(response.stream, started, spent, marks)
            return response

        def close(self) -> None:
            self._inner.close()

    from openai._constants import DEFAULT_CONNECTION_LIMITS

    transport = _TimedTransport(inner or httpx2.HTTPTransport(limits=DEFAULT_CONNECTION_LIMITS))
    return openai.DefaultHttpxClient(transport=transport, **kwargs)
