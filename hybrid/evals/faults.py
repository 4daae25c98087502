"""A fault-injecting HTTP proxy to put in front of a real model server.

Modes: `pass` (forward as is, streaming included), `error` (answer 503 without forwarding),
`slow` (wait `delay` seconds, then forward).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `upstream`, injecting the faults of its current mode."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.delay = 0.0
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _forward(self) -> None:
                proxy.requests += 1
                if proxy.mode == "error":
                    body = b'{"error": {"message": "injected fault", "type": "server_error"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if proxy.mode == "slow":
                    time.sleep(proxy.delay)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                try:
                    with httpx.stream(
                        self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=None
                    ) as response:
                        self.send_response(response.status_code)
                        for key, value in response.headers.items():
                            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                                self.send_header(key, value)
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for chunk in response.iter_raw():
                            self.wfile.write(chunk)
                            self.wfile.flush()
                except httpx.HTTPError:
                    self.send_response(502)
                    self.end_headers()

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
