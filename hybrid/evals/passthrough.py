"""A proxy that only forwards: what one hop costs on this machine, for `hybrid eval overhead --passthrough`.

    python -m hybrid.evals.passthrough --port N --upstream http://127.0.0.1:STUB_PORT [--host 127.0.0.1]

Each request goes on to the upstream as it came (method, path, query, body, content type) over one
pooled async connection per concurrent request, and its answer comes back as it came, with
`x-passthrough-overhead-ms`: the proxy's own account of its overhead, kept the way `hybrid serve`
keeps its own. Its clock starts when the request's bytes arrive (`arrival_stamping_protocol`) and
stops before the answer is written; the upstream's part is the exchange on the wire, from the
request's last byte written to the answer's last byte read (`WireMarks`), as for our `openai:`
models.

No key check, no parsing, no state, one thread: the least a proxy in Python on uvicorn adds to a
hop, and the least its own account misses of what a client measures. Both are floors the same
benchmark can set ours against, on the same machine in the same rounds.

A request carrying `x-passthrough-hold-ms: T` is held for T milliseconds before it is forwarded,
the proxy working the whole time (a busy loop, counted in its own account): a proxy that takes as
long as another one, doing nothing a client could see. How much of a hop a proxy's own clock misses
grows with how long the client waits for it, on this kind of machine (a client that waited longer
takes longer to wake up, docs/benchmarks.md); the held pass-through measures that part at a given
latency. Holds are served one at a time (the loop is busy): meant for concurrency 1.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

OVERHEAD_HEADER = "x-passthrough-overhead-ms"
HOLD_HEADER = "x-passthrough-hold-ms"
MAX_HOLD_MS = 10_000.0
# Not copied: the hop's own framing (its body goes out whole, with its own length) and the
# upstream's compression, which its client has already undone.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding", b"host"}
)
_HOLD = HOLD_HEADER.encode()
_NOT_FORWARDED = _HOP_BY_HOP | {_HOLD}  # the hold is the hop's, not the upstream's


def hold_ms(headers: list[tuple[bytes, bytes]]) -> float:
    """The hold a request asks for (`x-passthrough-hold-ms`), 0 without one; `ValueError` for a
    value that is not a number of milliseconds from 0 to `MAX_HOLD_MS`."""
    for name, value in headers:
        if name.lower() == _HOLD:
            try:
                held = float(value)
            except ValueError:
                held = math.nan
            if not 0.0 <= held <= MAX_HOLD_MS:  # nan too
                raise ValueError(f"{HOLD_HEADER} must be 0 to {MAX_HOLD_MS:g} ms, not {value.decode()!r}")
            return held
    return 0.0


def _busy(milliseconds: float) -> None:
    # Working, not sleeping: a process asleep leaves its core idle, and how long a wake-up takes
    # depends on how idle the machine is, which is what a hold is there to reproduce.
    deadline = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < deadline:
        pass


class Passthrough:
    """The ASGI application: every HTTP request forwarded to `upstream` (a base URL)."""

    def __init__(self, upstream: str, transport: Any = None) -> None:
        self.upstream = upstream.rstrip("/")
        self._transport = transport  # tests hand in a mock; else httpx's own pool
        self._client: Any = None

    def _http(self) -> Any:
        import httpx

        if self._client is None:  # made on the serving loop, at first use
            self._client = httpx.AsyncClient(base_url=self.upstream, transport=self._transport, timeout=60)
        return self._client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        import httpx

        from hybrid.models.timing import WireMarks

        received = scope.get("state", {}).get("received_at") or time.perf_counter()
        try:
            held = hold_ms(scope["headers"])
        except ValueError as exc:
            content = json.dumps({"error": {"message": str(exc)}}).encode()
            await _answer(send, 400, [(b"content-type", b"application/json")], content)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        _busy(held)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _NOT_FORWARDED]
        target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
        marks = WireMarks()

        async def trace(name: str, info: dict[str, Any]) -> None:
            marks(name, info)

        started = time.perf_counter()
        try:
            answer = await self._http().request(
                scope["method"], target, content=bytes(body), headers=headers, extensions={"trace": trace}
            )
            status, content = answer.status_code, answer.content
            answer_headers = [
                (k.encode(), v.encode()) for k, v in answer.headers.items() if k.encode() not in _HOP_BY_HOP
            ]
        except httpx.HTTPError as exc:
            status = 502
            content = json.dumps({"error": {"message": f"upstream: {type(exc).__name__}"}}).encode()
            answer_headers = [(b"content-type", b"application/json")]
        overhead = (time.perf_counter() - received) * 1000 - marks.milliseconds(started)
        answer_headers.append((OVERHEAD_HEADER.encode(), f"{max(0.0, overhead):.3f}".encode()))
        await _answer(send, status, answer_headers, content)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Any, status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> None:
    """Send a whole answer, with its own length."""
    headers = [*headers, (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def main(argv: list[str] | None = None) -> None:
    """Serve the pass-through with uvicorn as `hybrid serve` is served: one process, no access log,
    requests stamped when their bytes arrive."""
    import uvicorn

    from hybrid.server import arrival_stamping_protocol

    parser = argparse.ArgumentParser(
        prog="python -m hybrid.evals.passthrough", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="Base URL requests are forwarded to.")
    args = parser.parse_args(argv)
    uvicorn.run(
        Passthrough(args.upstream),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        http=arrival_stamping_protocol(),
    )


if __name__ == "__main__":
    main()
