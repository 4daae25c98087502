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
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

OVERHEAD_HEADER = "x-passthrough-overhead-ms"
# Not copied: the hop's own framing (its body goes out whole, with its own length) and the
# upstream's compression, which its client has already undone.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding", b"host"}
)


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
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
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
        answer_headers.append((b"content-length", str(len(content)).encode()))
        answer_headers.append((OVERHEAD_HEADER.encode(), f"{max(0.0, overhead):.3f}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": content})

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
