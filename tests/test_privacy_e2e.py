"""Nothing leaves the machine unasked: `hybrid ingest`, `ask`, `serve`, `ui` and `dev` run under
`strace -f`, and every connection or datagram they send goes to an endpoint configured for them.

Each process is given one loopback endpoint it must use (an OpenTelemetry collector, a Chroma
server): seeing that connection in the trace proves the trace sees the process's network calls,
so an empty list of strangers means something.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import REPO
from tests.servers import CaptureServer, free_port, serving

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")
CHROMA = str(Path(sys.executable).parent / "chroma")
STRACE = "/usr/bin/strace"
# ONNX Runtime's telemetry sent DNS queries 6-20 s apart once a session existed: a long-lived
# process is watched for longer than that after it has answered.
OBSERVE_S = 30
QUESTION = "How do I resolve a pending review case?"
# Name-service lookups over a local socket are DNS queries too.
RESOLVER_SOCKETS = ("/var/run/nscd/socket", "/run/nscd/socket", "/run/systemd/resolve/io.systemd.Resolve")

_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"')
_UNIX = re.compile(r'sa_family=AF_UNIX, sun_path=@?"([^"]*)"')
_CALL = re.compile(r"^(\d+)\s+(connect|sendto|sendmsg|sendmmsg)\(")


@dataclass(frozen=True)
class NetworkCall:
    syscall: str
    family: str
    address: str
    port: int
    line: str


def network_calls(trace: Path) -> list[NetworkCall]:
    """Every connect/send* with a destination address, from an `strace -f` log."""
    calls = []
    for line in trace.read_text(errors="replace").splitlines():
        call = _CALL.match(line)
        if not call:
            continue
        if match := _INET.search(line):
            calls.append(NetworkCall(call[2], "inet", match[2], int(match[1]), line))
        elif match := _INET6.search(line):
            calls.append(NetworkCall(call[2], "inet6", match[2], int(match[1]), line))
        elif match := _UNIX.search(line):
            calls.append(NetworkCall(call[2], "unix", match[1], 0, line))
    return calls


def _loopback(call: NetworkCall) -> bool:
    return call.address.startswith("127.") or call.address in ("::1", "::ffff:127.0.0.1")


def strangers(calls: list[NetworkCall], allowed_ports: set[int]) -> list[str]:
    """Calls to anything but the allowed loopback ports: other hosts, DNS, local resolvers."""
    found = []
    for call in calls:
        if call.family == "unix":
            if call.address in RESOLVER_SOCKETS:
                found.append(call.line)
        elif call.port == 53 or not _loopback(call) or call.port not in allowed_ports:
            found.append(call.line)
    return found


def reached(calls: list[NetworkCall], port: int) -> bool:
    return any(c.family != "unix" and _loopback(c) and c.port == port for c in calls)


def traced(command: list[str], trace: Path) -> list[str]:
    return [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace), *command]


@pytest.fixture
def collector() -> Iterator[CaptureServer]:
    """An OpenTelemetry collector on loopback: the endpoint every traced process is configured with."""
    capture = CaptureServer()
    yield capture
    capture.close()


@pytest.fixture
def chroma_server(isolated: Path) -> Iterator[int]:
    port = free_port()
    command = [CHROMA, "run", "--path", str(isolated.parent / "chroma-server"), "--host", "127.0.0.1"]
    with serving(
        [*command, "--port", str(port)],
        f"http://127.0.0.1:{port}/api/v2/heartbeat",
        isolated.parent / "chroma.log",
    ):
        yield port


def environment(data_dir: Path, collector: CaptureServer, **settings: str) -> dict[str, str]:
    """A clean environment: no HYBRID_* or telemetry switch from outside, so the product's own
    defaults are what is tested."""
    from hybrid.privacy import TELEMETRY_OFF, TRACING_VARIABLES

    ours = set(TELEMETRY_OFF) | set(TRACING_VARIABLES)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HYBRID_", "STREAMLIT_")) and k not in ours
    }
    # SmolLM2's answers pass at a low bar: the pages then show an answer, not a review notice.
    return env | {
        "HYBRID_DATA_DIR": str(data_dir),
        "HYBRID_OTEL_ENDPOINT": collector.url,
        "HYBRID_SMALL_ACCEPT_THRESHOLD": "0.1",
        **settings,
    }


def port_of(url: str) -> int:
    return urlparse(url).port or 80


def run_traced(command: list[str], trace: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        traced(command, trace), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ingest_and_ask_reach_only_their_configured_endpoints(
    isolated: Path, collector: CaptureServer, chroma_server: int
) -> None:
    knowledge = str(REPO / "data" / "knowledge")
    traces = isolated.parent / "traces"
    traces.mkdir()

    # Into a Chroma server (the configured endpoint), and into the embedded store (none at all).
    served = environment(isolated / "a", collector, HYBRID_CHROMA_URL=f"http://127.0.0.1:{chroma_server}")
    run_traced([HYBRID, "ingest", knowledge], traces / "ingest-server", served)
    embedded = environment(isolated / "b", collector)
    run_traced([HYBRID, "ingest", knowledge], traces / "ingest-embedded", embedded)
    answer = run_traced(
        [HYBRID, "ask", QUESTION, "--set", "retrieval=always", "--json"], traces / "ask", embedded
    )
    assert '"status"' in answer

    ingest_server = network_calls(traces / "ingest-server")
    assert reached(ingest_server, chroma_server), "the trace must show the configured Chroma server"
    assert strangers(ingest_server, {chroma_server, port_of(collector.url)}) == []
    assert strangers(network_calls(traces / "ingest-embedded"), {port_of(collector.url)}) == []
    asked = network_calls(traces / "ask")
    assert reached(asked, port_of(collector.url)), "the trace must show the spans sent to the collector"
    assert strangers(asked, {port_of(collector.url)}) == []


@contextlib.contextmanager
def traced_server(command: list[str], health: str, trace: Path, env: dict[str, str]) -> Iterator[None]:
    with serving(traced(command, trace), health, trace.with_suffix(".log"), timeout=300, env=env):
        yield


def test_long_running_servers_reach_only_their_configured_endpoints(
    isolated: Path, collector: CaptureServer, chroma_server: int
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS

    traces = isolated.parent / "traces"
    traces.mkdir()
    otel = port_of(collector.url)
    serve_port, ui_port, dev_port = free_port(), free_port(), free_port()
    serve_env = environment(
        isolated / "serve", collector, HYBRID_CHROMA_URL=f"http://127.0.0.1:{chroma_server}"
    )
    ui_env = environment(isolated / "ui", collector)
    dev_env = environment(isolated / "dev", collector)
    subprocess.run(
        [HYBRID, "ingest", str(REPO / "data" / "knowledge")], env=serve_env, check=True, capture_output=True
    )
    serve = f"http://127.0.0.1:{serve_port}"
    ui = f"http://127.0.0.1:{ui_port}"
    dev = f"http://127.0.0.1:{dev_port}"
    with (
        traced_server(
            [HYBRID, "serve", "--port", str(serve_port)], f"{serve}/health", traces / "serve", serve_env
        ),
        traced_server(
            [HYBRID, "ui", "--server.port", str(ui_port)], f"{ui}/_stcore/health", traces / "ui", ui_env
        ),
        traced_server([HYBRID, "dev", "--port", str(dev_port)], f"{dev}/ok", traces / "dev", dev_env),
    ):
        ask = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}
        ask["hybrid"] = {"overrides": {"retrieval": "always"}}
        assert httpx.post(f"{serve}/v1/chat/completions", json=ask, timeout=300).status_code in (200, 202)
        with httpx.stream(
            "POST", f"{serve}/v1/chat/completions", json=ask | {"stream": True}, timeout=300
        ) as streamed:
            assert "[DONE]" in streamed.read().decode()

        thread = httpx.post(f"{dev}/threads", json={}, timeout=30).json()["thread_id"]
        run = {"assistant_id": "hybrid", "input": {"question": "What is the capital of France?"}}
        result = httpx.post(f"{dev}/threads/{thread}/runs/wait", json=run, timeout=300).json()
        assert result.get("answer") or result.get("status"), result

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(ui)
            box = page.get_by_placeholder("Ask a question")
            box.wait_for(timeout=120_000)
            box.fill("What is the capital of France?")
            box.press("Enter")
            reply = page.locator('[data-testid="stChatMessage"]').last
            expect(reply.locator(".stMarkdownBadge").first).to_be_visible(timeout=300_000)
            browser.close()
        time.sleep(OBSERVE_S)  # a fixed observation window, not a wait for a state

    for name in ("serve", "ui", "dev"):
        calls = network_calls(traces / name)
        assert reached(calls, otel), f"{name}: the trace must show the spans sent to the collector"
        allowed = {otel, chroma_server} if name == "serve" else {otel}
        assert strangers(calls, allowed) == [], name
