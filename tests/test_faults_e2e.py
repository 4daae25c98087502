"""Bad days with a real model server: llama-cpp-python's OpenAI-compatible server serving a real
GGUF on 127.0.0.1, killed, frozen and made to fail, while the graph keeps answering."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid import api
from hybrid.evals.faults import FaultProxy
from tests.servers import free_port, serving

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"


@pytest.fixture
def model_server(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, FaultProxy]]:
    """SmolLM2 served over HTTP behind a fault proxy; the small tier prefers it over the embedded copy."""
    from hybrid.models.llamacpp import resolve_gguf

    port = str(free_port())
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_gguf("smollm2-135m-instruct")),
        "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", port, "--n_threads", "1",
    ]  # fmt: skip
    with serving(command, f"http://127.0.0.1:{port}/v1/models", isolated.parent / "server.log") as process:
        proxy = FaultProxy(f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", f"{proxy.url}/v1")
        monkeypatch.setenv("HYBRID_SMALL_MODEL", "openai:smollm2,llamacpp:smollm2-135m-instruct")
        # Generous for a healthy server on a busy machine; the tests that need a timeout set one.
        monkeypatch.setenv("HYBRID_MODEL_TIMEOUT_S", "120")
        monkeypatch.setenv("HYBRID_MODEL_RETRIES", "1")
        try:
            yield process, proxy
        finally:
            proxy.close()
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)


def test_the_http_model_answers_when_healthy(model_server) -> None:
    answer = api.ask(QUESTION)
    assert answer.answered_by == "openai:smollm2"
    assert "Paris" in (answer.answer or "")
    assert answer.usage["openai:smollm2"]["output_tokens"] > 0


def test_a_killed_server_falls_back_and_then_cools_down(model_server, monkeypatch) -> None:
    process, _ = model_server
    assert api.ask(QUESTION).answered_by == "openai:smollm2"
    process.kill()
    process.wait(timeout=10)
    monkeypatch.setenv("HYBRID_BREAKER_FAILURES", "2")

    answers = [api.ask(QUESTION) for _ in range(3)]

    assert [a.answered_by for a in answers] == ["llamacpp:smollm2-135m-instruct"] * 3
    first = answers[0].drafts[0]["attempts"]
    assert [(a["model"], a["outcome"]) for a in first] == [
        ("openai:smollm2", "error"),
        ("openai:smollm2", "error"),
        ("llamacpp:smollm2-135m-instruct", "ok"),
    ]
    assert "502" in first[0]["error"]  # the proxy, like a load balancer, answers 502 for a dead upstream
    assert answers[2].drafts[0]["attempts"][0]["outcome"] == "skipped"  # in cooldown: not even tried
    assert "fallback to llamacpp:smollm2-135m-instruct" in answers[2].explanation


def test_a_frozen_server_times_out_and_the_tier_falls_back(model_server, monkeypatch) -> None:
    process, _ = model_server
    monkeypatch.setenv("HYBRID_MODEL_TIMEOUT_S", "2")
    monkeypatch.setenv("HYBRID_MODEL_RETRIES", "0")
    os.kill(process.pid, signal.SIGSTOP)  # the server is really there, really not answering
    try:
        answer = api.ask(QUESTION)  # a frozen server that held the call for ever would hang here
    finally:
        os.kill(process.pid, signal.SIGCONT)

    assert answer.answered_by == "llamacpp:smollm2-135m-instruct"
    frozen = answer.drafts[0]["attempts"][0]
    assert (frozen["model"], frozen["outcome"]) == ("openai:smollm2", "timeout")
    assert frozen["latency_ms"] >= 1900  # it was given its 2 s, then left


def test_server_errors_are_retried_then_routed_around(model_server) -> None:
    _, proxy = model_server
    proxy.mode = "error"

    answer = api.ask(QUESTION)

    assert answer.answered_by == "llamacpp:smollm2-135m-instruct"
    errors = [a for a in answer.drafts[0]["attempts"] if a["model"] == "openai:smollm2"]
    assert len(errors) >= 2  # a 503 is transient: retried before falling back
    assert all("503" in a["error"] or "InternalServer" in a["error"] for a in errors)
    proxy.mode = "pass"
    assert api.ask(QUESTION).answered_by == "openai:smollm2"  # recovered: no cooldown yet


def test_a_slow_server_within_the_timeout_still_answers(model_server) -> None:
    _, proxy = model_server
    proxy.mode, proxy.delay = "slow", 1.0
    answer = api.ask(QUESTION)
    assert answer.answered_by == "openai:smollm2"
    assert answer.drafts[0]["latency_ms"] >= 1000


def test_the_robustness_report_runs_every_suite_and_loses_nothing(isolated: Path) -> None:
    import json
    import subprocess

    result = subprocess.run(
        [str(Path(sys.executable).parent / "hybrid"), "eval", "robustness", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=dict(os.environ),
    )

    report = json.loads(result.stdout) if result.stdout.lstrip().startswith("{") else {}
    bad = [case for case in report.get("cases", []) if case["outcome"] in ("failed", "hung", "lost")]
    assert result.returncode == 0, bad or result.stderr[-3000:]
    assert set(report) >= {"tried", "answered", "degraded", "failed", "hung", "lost", "cases"}
    assert (report["failed"], report["hung"], report["lost"]) == (0, 0, 0)
    assert report["tried"] == len(report["cases"]) >= 19
    assert {case["suite"] for case in report["cases"]} == {"fault", "injection", "input"}
    assert report["refused"] == sum(case["suite"] == "input" for case in report["cases"])
