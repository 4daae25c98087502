"""Real servers for tests: started on a free loopback port, stopped when the block ends."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hybrid.evals.servers import free_port, running

__all__ = ["CaptureServer", "free_port", "fresh_database", "postgres_server", "serving"]


@contextlib.contextmanager
def serving(
    command: list[str], health_url: str, log: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Run a server process until the block ends; fail the test with its log if it does not come up."""
    try:
        context = running(command, health_url, log, timeout, env)
        process = context.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield process
    finally:
        context.__exit__(None, None, None)


def _postgres_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed: run scripts/test-services.sh (make test does)")
    return candidates[-1].parent


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free loopback port; yields its admin URL."""
    import shutil
    import tempfile

    bindir = _postgres_bindir()
    data = Path(tempfile.mkdtemp(prefix="hybrid-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda *args: subprocess.run([*as_postgres, *args], check=True, capture_output=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -h 127.0.0.1 -k {data} -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-o", options, "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


class CaptureServer:
    """An HTTP endpoint on a free loopback port that records every request and answers 200 `{}`."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str, bytes]] = []
        captured = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                captured.append((self.command, self.path, self.rfile.read(length) if length else b""))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def refused() -> httpx.ConnectError:
    """The error httpx really raises for a loopback port nothing listens on."""
    try:
        httpx.get(f"http://127.0.0.1:{free_port()}/", timeout=5)
    except httpx.ConnectError as exc:
        return exc
    raise AssertionError("something listens on a free port")
