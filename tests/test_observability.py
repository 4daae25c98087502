"""Trace ids, metrics, masked logs, OpenTelemetry spans and LangSmith tracing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hybrid import api
from hybrid.observability import configure_logging, render_metrics
from tests.conftest import REPO
from tests.fakes import FakeModels
from tests.servers import CaptureServer

pytestmark = pytest.mark.integration

ASK_WITH_FAKES = (
    "from hybrid import api\n"
    "from hybrid.models import register_provider\n"
    "from tests.fakes import FakeModels\n"
    "fakes = FakeModels(); register_provider('fake', fakes.build)\n"
    "fakes.set('small', 'The capital of France is Paris.')\n"
    "answer = api.ask('What is the capital of France?')\n"
)


def run_child(script: str, **env: str) -> str:
    child_env = {**os.environ, "HYBRID_SMALL_MODEL": "fake:small", "HYBRID_LARGE_MODEL": "fake:small", **env}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_metrics_count_routes_latency_tokens_escalations_and_fallbacks(fakes: FakeModels) -> None:
    before = render_metrics().decode()
    fakes.set("small", "The capital of France is Paris.")
    api.ask("What is the capital of France?")
    fakes.set("small", RuntimeError("down"))
    fakes.set("large", "Paris.")
    api.ask("What is the capital of France?")
    after = render_metrics().decode()

    def grew(prefix: str) -> float:
        return metric(after, prefix) - metric(before, prefix)

    assert grew('hybrid_requests_total{route="small",status="answered"}') == 1
    assert grew('hybrid_requests_total{route="large",status="answered"}') == 1
    assert grew("hybrid_escalations_total") == 1
    assert grew('hybrid_fallbacks_total{tier="small"}') == 1
    assert grew('hybrid_node_seconds_count{node="classify"}') == 2
    assert grew('hybrid_model_seconds_count{model="fake:small"}') == 1
    assert grew('hybrid_tokens_total{direction="output",model="fake:small"}') == 6


def test_logs_carry_the_trace_id_and_mask_sensitive_values(
    fakes: FakeModels, capfd: pytest.CaptureFixture
) -> None:
    configure_logging("INFO")
    fakes.set("small", "Noted, I will write back.")
    try:
        answer = api.ask("Please email me at jane.doe@example.com about the plan")
    finally:
        configure_logging("WARNING")
    err = capfd.readouterr().err
    line = next(line for line in err.splitlines() if "answered by fake:small" in line)
    assert f"trace={answer.trace_id}" in line
    assert "[EMAIL]" in line
    assert "jane.doe" not in err


def test_opentelemetry_spans_are_exported_per_node_with_the_trace_id() -> None:
    receiver = CaptureServer()
    try:
        run_child(
            ASK_WITH_FAKES + "from opentelemetry import trace\ntrace.get_tracer_provider().force_flush()\n",
            HYBRID_OTEL_ENDPOINT=receiver.url,
        )
    finally:
        receiver.close()
    posts = [body for method, path, body in receiver.requests if method == "POST" and path == "/v1/traces"]
    assert posts, receiver.requests
    payload = b"".join(posts)
    for node in (b"hybrid.classify", b"hybrid.answer_small", b"hybrid.verify", b"hybrid.accept"):
        assert node in payload
    assert b"hybrid.trace_id" in payload


def test_spans_go_to_a_tracer_provider_the_application_set_up_itself() -> None:
    # No HYBRID_OTEL_ENDPOINT: the spans are skipped only while no provider is set at all.
    out = run_child(
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter(); provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        + ASK_WITH_FAKES.replace(
            "answer = api.ask",
            "api.ask('What is the capital of Spain?')\ntrace.set_tracer_provider(provider)\nanswer = api.ask",
        )
        + "for s in exporter.get_finished_spans():\n"
        "    print(s.name, s.attributes['hybrid.node'], s.attributes['hybrid.trace_id'] == answer.trace_id)\n"
    )
    assert out.splitlines() == [
        f"hybrid.{node} {node} True" for node in ("classify", "answer_small", "verify", "accept")
    ]


def test_langsmith_tracing_works_through_its_usual_variables() -> None:
    receiver = CaptureServer()
    try:
        run_child(
            ASK_WITH_FAKES
            + "from langchain_core.tracers.langchain import wait_for_all_tracers\nwait_for_all_tracers()\n",
            LANGSMITH_TRACING="true",
            LANGSMITH_ENDPOINT=receiver.url,
            LANGSMITH_API_KEY="test-key",
            LANGSMITH_PROJECT="hybrid-tests",
        )
    finally:
        receiver.close()
    payload = b"".join(body for method, _, body in receiver.requests if method == "POST")
    assert b"classify" in payload
    assert b"answer_small" in payload
