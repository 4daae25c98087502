"""The model server's own time, measured at the HTTP boundary, apart from the client library's.

A call through LangChain and the OpenAI client spends time in Python on our side (building the
request, parsing the reply into messages) before and after the server's part. Counting all of it as
"the model's time" under-reports our overhead: a client measures the whole hop. So `openai:` models
get an HTTP client whose transport times each exchange, from sending the request to the end of the
response body (a stream included), and `call_tier` collects those times per attempt through a
context variable (the call runs in a worker thread with a copy of the caller's context).

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


def _record(spent: list[float] | None, started: float) -> None:
    if spent is not None:
        spent.append((time.perf_counter() - started) * 1000)


def timed_http_client(inner: Any = None, **kwargs: Any) -> Any:
    """The OpenAI SDK's default HTTP client (its limits and timeouts), with a timing transport
    around `inner` (default: an `httpx2.HTTPTransport` with the SDK's connection limits)."""
    import httpx2
    import openai

    class _TimedStream(httpx2.SyncByteStream):
        def __init__(self, inner: Any, started: float, spent: list[float] | None) -> None:
            self._inner, self._started, self._spent = inner, started, spent
            self._closed = False

        def __iter__(self) -> Iterator[bytes]:
            yield from self._inner

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                if not self._closed:
                    self._closed = True
                    _record(self._spent, self._started)

    class _TimedTransport(httpx2.BaseTransport):
        def __init__(self, inner: httpx2.BaseTransport) -> None:
            self._inner = inner

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            spent, started = _spent.get(), time.perf_counter()
            try:
                response = self._inner.handle_request(request)
            except BaseException:
                _record(spent, started)
                raise
            response.stream = _TimedStream(response.stream, started, spent)
            return response

        def close(self) -> None:
            self._inner.close()

    from openai._constants import DEFAULT_CONNECTION_LIMITS

    transport = _TimedTransport(inner or httpx2.HTTPTransport(limits=DEFAULT_CONNECTION_LIMITS))
    return openai.DefaultHttpxClient(transport=transport, **kwargs)
