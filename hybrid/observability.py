"""Metrics, spans and logs: every request carries its trace id through all three.

- Prometheus metrics (prometheus-client) in a registry of our own, served by `hybrid serve` at
  `/metrics` and rendered by `render_metrics()`.
- OpenTelemetry spans per node through the API, which is a no-op until a tracer provider is set:
  `HYBRID_OTEL_ENDPOINT` (OTLP/HTTP) sets one up, or the application sets its own.
- Logs under the `hybrid` logger, with the trace id and with sensitive values masked.
LangSmith tracing needs nothing from us: LangChain reads its usual `LANGSMITH_*` variables.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

logger = logging.getLogger("hybrid")
current_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("hybrid_trace_id", default=None)

REGISTRY = CollectorRegistry(auto_describe=True)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
REQUESTS = Counter(
    "hybrid_requests", "Questions finished, by final route and status", ["route", "status"], registry=REGISTRY
)
NODE_SECONDS = Histogram(
    "hybrid_node_seconds", "Time in each graph node", ["node"], registry=REGISTRY, buckets=_SECONDS
)
MODEL_SECONDS = Histogram(
    "hybrid_model_seconds", "Time of successful model calls", ["model"], registry=REGISTRY, buckets=_SECONDS
)
TOKENS = Counter("hybrid_tokens", "Tokens by model and direction", ["model", "direction"], registry=REGISTRY)
COST = Counter(
    "hybrid_cost", "Estimated cost by model, in the configured currency", ["model"], registry=REGISTRY
)
ESCALATIONS = Counter("hybrid_escalations", "Questions sent on to the large tier", registry=REGISTRY)
FALLBACKS = Counter(
    "hybrid_fallbacks", "Failed model attempts routed around, by tier", ["tier"], registry=REGISTRY
)
CACHE_HITS = Counter(
    "hybrid_cache_hits", "Answers served from the cache, by match kind", ["kind"], registry=REGISTRY
)
QUEUE_SECONDS = Histogram(
    "hybrid_queue_seconds",
    "Time a request waited for a free run slot in `hybrid serve`",
    registry=REGISTRY,
    buckets=_SECONDS,
)
ABANDONED = Counter(
    "hybrid_requests_abandoned",
    "Requests not run because their client left while they waited for a run slot",
    registry=REGISTRY,
)
REFUSED = Counter(
    "hybrid_requests_refused", "Requests answered 429 because too many already waited", registry=REGISTRY
)
RUNS_WAITING = Gauge("hybrid_runs_waiting", "Requests waiting for a free run slot", registry=REGISTRY)
REVIEWS = Counter(
    "hybrid_reviews", "Review cases opened and resolved, by action", ["action"], registry=REGISTRY
)
LARGE_SHARE = Gauge(
    "hybrid_large_share",
    "Share of recent answered turns that called the large model, by artefact version",
    ["version"],
    registry=REGISTRY,
)
SMALL_ACCEPTANCE = Gauge(
    "hybrid_small_acceptance",
    "Share of recent small-model drafts the verifier accepted, by artefact version",
    ["version"],
    registry=REGISTRY,
)
DRIFT = Gauge(
    "hybrid_drift",
    "1 while a signal (large_share, small_acceptance) is outside the band its version expects",
    ["signal", "version"],
    registry=REGISTRY,
)
SHADOW_RUNS = Counter(
    "hybrid_shadow_runs",
    "Shadow runs by outcome: ok, timeout, failed, observed (both drafts existed), preempted, dropped, "
    "skipped_boundary, skipped_budget, skipped_retention",
    ["outcome"],
    registry=REGISTRY,
)
SHADOW_COST = Counter(
    "hybrid_shadow_cost",
    "Estimated cost of shadow runs by model (apart from answers)",
    ["model"],
    registry=REGISTRY,
)


POLICY_RELOADS = Counter(
    "hybrid_policy_reloads",
    "Policy files read: loaded, or refused (invalid: the last good policy stays)",
    ["outcome"],
    registry=REGISTRY,
)
THRESHOLD_SHIFT = Gauge(
    "hybrid_threshold_shift",
    "Latest rise of a service tier's routing threshold, by cause (load, budget)",
    ["tier", "cause"],
    registry=REGISTRY,
)
LARGE_P95_SECONDS = Gauge(
    "hybrid_large_p95_seconds", "p95 latency of the large tier's recent calls", registry=REGISTRY
)
POLICY_DECISIONS = Counter(
    "hybrid_policy_decisions",
    "Questions a policy rule or restriction decided, by rule and action",
    ["rule", "action"],
    registry=REGISTRY,
)
LIMITED = Counter(
    "hybrid_requests_limited",
    "Requests refused by a key's rate limit or a spent budget (429)",
    ["reason"],
    registry=REGISTRY,
)


def render_metrics() -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(REGISTRY)


class _TraceAndMask(logging.Filter):
    """Adds `trace_id` to every record and masks sensitive values in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        from hybrid.sensitivity import mask

        record.trace_id = current_trace_id.get() or "-"
        message = record.getMessage()
        record.msg, record.args = mask(message), None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (it may have been replaced)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_lock = threading.Lock()
_configured: dict[str, Any] = {"handler": None, "otel_endpoint": None}


def configure_logging(level: str = "WARNING") -> None:
    """Send `hybrid` logs to stderr, with trace ids, masked (once per process; the level may change)."""
    with _lock:
        if _configured["handler"] is None:
            handler = _StderrHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s trace=%(trace_id)s %(message)s")
            )
            handler.addFilter(_TraceAndMask())
            logger.addHandler(handler)
            logger.propagate = False
            _configured["handler"] = handler
        logger.setLevel(level.upper())


def setup_tracing(endpoint: str | None) -> None:
    """Export OpenTelemetry spans over OTLP/HTTP to `endpoint` (once per process)."""
    if not endpoint:
        return
    with _lock:
        if _configured["otel_endpoint"] == endpoint:
            return
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "hybrid-ai"}))
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _configured["otel_endpoint"] = endpoint


def tracer() -> Any:
    """The `hybrid` OpenTelemetry tracer (a no-op one unless a provider is configured)."""
    from opentelemetry import trace

    return trace.get_tracer("hybrid")


def record_draft(draft: dict[str, Any]) -> None:
    """Metrics of one model answer (or failure)."""
    for attempt in draft.get("attempts", []):
        if attempt["outcome"] == "ok":
            MODEL_SECONDS.labels(attempt["model"]).observe(attempt["latency_ms"] / 1000)
        elif attempt["outcome"] != "skipped":
            FALLBACKS.labels(draft["tier"]).inc()
    TOKENS.labels(draft["model"], "input").inc(draft["usage"]["input_tokens"])
    TOKENS.labels(draft["model"], "output").inc(draft["usage"]["output_tokens"])
    COST.labels(draft["model"]).inc(draft["cost"])
