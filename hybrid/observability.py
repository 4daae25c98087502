"""Metrics, spans and logs: every request carries its trace id through all three.

- Prometheus metrics (prometheus-client) in a registry of our own, served by `hybrid serve` at
  `/metrics` and rendered by `render_metrics()`.
- OpenTelemetry spans per node through the API, which is a no-op until a tracer provider is set:
  `HYBRID_OTEL_ENDPOINT` (OTLP/HTTP) sets one up, or the application sets its own.
- Logs under the `hybrid` logger, with the trace id and with sensitive values masked.
LangSmith tracing needs nothing from us: LangChain reads its usual `LANGSMITH_*` variables.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

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

HTTP_REQUESTS = Counter(
    "hybrid_http_requests",
    "HTTP responses of `hybrid serve`, by method, route and status code",
    ["method", "route", "code"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "hybrid_http_request_seconds",
    "Time until the response started, by route (a stream's own length is not included)",
    ["route"],
    registry=REGISTRY,
    buckets=_SECONDS,
)
# The process itself: resident memory, open file descriptors, CPU (process_*, python_*).
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)


class _StoreCollector:
    """Database connections per pool, and what Prometheus alerts need beside the counters: the
    review backlog and its oldest case, the daily budget, and the router's target large share.

    The backlog is read from the database by a sampler thread every `BACKLOG_EVERY_S` seconds,
    never during a scrape: a scrape must answer at once, with the database down too."""

    BACKLOG_EVERY_S = 15.0

    def __init__(self) -> None:
        self._backlog: tuple[float, float] | None = None  # (pending cases, age of the oldest in s)
        self._sampler: threading.Thread | None = None
        self._lock = threading.Lock()

    FAMILIES = (
        "hybrid_db_connections",
        "hybrid_reviews_pending",
        "hybrid_reviews_oldest_pending_seconds",
        "hybrid_review_timeout_seconds",
        "hybrid_daily_budget",
        "hybrid_router_large_share_target",
    )

    def describe(self) -> list[Any]:
        """Every family this may report (some only when there is a value), for the registry."""
        return [GaugeMetricFamily(name, name) for name in self.FAMILIES]

    def _sample_backlog(self) -> None:
        import time

        while True:
            with contextlib.suppress(Exception):  # database down: keep the last figure
                self._backlog = _review_backlog() or self._backlog
            time.sleep(self.BACKLOG_EVERY_S)

    def start(self) -> None:
        with self._lock:
            if self._sampler is None:
                self._sampler = threading.Thread(target=self._sample_backlog, name="backlog", daemon=True)
                self._sampler.start()

    def collect(self) -> Any:
        connections = GaugeMetricFamily(
            "hybrid_db_connections", "Open database connections by pool and state", labels=["pool", "state"]
        )
        for pool, in_use, idle in _pool_statistics():
            connections.add_metric([pool, "in_use"], in_use)
            connections.add_metric([pool, "idle"], idle)
        yield connections
        if self._backlog is not None:
            pending, oldest = self._backlog
            yield GaugeMetricFamily("hybrid_reviews_pending", "Review cases not yet resolved", value=pending)
            yield GaugeMetricFamily(
                "hybrid_reviews_oldest_pending_seconds",
                "Age of the oldest unresolved review case",
                value=oldest,
            )
            yield GaugeMetricFamily(
                "hybrid_review_timeout_seconds",
                "How long a case may wait (review_timeout_s)",
                value=_setting("review_timeout_s"),
            )
        budget = _setting("daily_budget")
        if budget is not None:
            yield GaugeMetricFamily(
                "hybrid_daily_budget", "The configured cost budget per UTC day", value=budget
            )
        share = _router_large_share()
        if share is not None:
            yield GaugeMetricFamily(
                "hybrid_router_large_share_target",
                "Share of questions the learned router was calibrated to send to the large model",
                value=share,
            )


def _setting(name: str) -> Any:
    from hybrid.settings import resolve_settings

    try:
        return getattr(resolve_settings(), name)
    except Exception:
        return None


def _pool_statistics() -> list[tuple[str, int, int]]:
    """(pool, connections in use, idle connections) of every database this process opened."""
    from hybrid import database

    found = []
    for opened in list(database._databases.values()):
        pool = opened.engine.pool
        with contextlib.suppress(AttributeError):
            found.append(("tables", pool.checkedout(), pool.checkedin()))  # type: ignore[attr-defined]
        checkpoints = getattr(opened.checkpointer, "conn", None)
        if hasattr(checkpoints, "get_stats"):
            stats = checkpoints.get_stats()
            size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
            found.append(("checkpoints", size - available, available))
    return found


def _review_backlog() -> tuple[float, float] | None:
    """From the database this process already uses (none opened for it: a scrape of a process
    that has not served yet reports no backlog rather than creating a database)."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from hybrid import database
    from hybrid.database import reviews

    opened = list(database._databases.values())
    if not opened:
        return None
    engine = opened[0].engine
    query = sa.select(sa.func.count(), sa.func.min(reviews.c.created_at)).where(
        reviews.c.status != "resolved"
    )
    with engine.connect() as connection:
        pending, oldest = connection.execute(query).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return float(pending), max(0.0, age)


_router_share: dict[str, float | None] = {}


def _router_large_share() -> float | None:
    import json

    path = _setting("router_path")
    if path is None or _setting("router") != "learned":
        return None
    key = str(path)
    if key not in _router_share:
        try:
            _router_share[key] = float(
                json.loads((path / "router.json").read_text())["threshold"]["large_share"]
            )
        except (OSError, ValueError, KeyError, TypeError):
            _router_share[key] = None
    return _router_share[key]


STORES = _StoreCollector()
REGISTRY.register(STORES)


class HTTPMetrics:
    """ASGI middleware: every response counted by method, route template and status code.

    The route is the template (`/v1/hybrid/threads/{thread_id}`), never the raw path: a client
    inventing paths cannot inflate the number of series."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time

        # The handlers' own clock starts when the request arrived (`request.state.received_at`):
        # their reported overhead then covers parsing and validation, as a client measuring the hop
        # sees it. `hybrid serve`'s protocol stamps the bytes' arrival; under another server, here.
        began = scope.setdefault("state", {}).setdefault("received_at", time.perf_counter())
        seen: dict[str, int] = {}

        async def record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["code"] = message["status"]
                route = getattr(scope.get("route"), "path", "other")
                HTTP_SECONDS.labels(route).observe(time.perf_counter() - began)
                HTTP_REQUESTS.labels(scope.get("method", "?"), route, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, record)
        except Exception:
            if "code" not in seen:  # the server answers 500 for it
                route = getattr(scope.get("route"), "path", "other")
                HTTP_REQUESTS.labels(scope.get("method", "?"), route, "500").inc()
            raise


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
    """The metrics in Prometheus' text format (starts the backlog sampler on first use)."""
    STORES.start()
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


@contextlib.contextmanager
def span(name: str) -> Iterator[dict[str, str]]:
    """A span named `name` around the block, where spans go anywhere: a tracer provider is set
    (`setup_tracing`'s, or one the embedding application set up). The block fills the dict it is
    given with the span's attributes. Without a provider, OpenTelemetry's no-op span would still
    cost a context switch in and out on every node, for nothing. An exception passes through
    unrecorded (callers report their own errors)."""
    from opentelemetry import trace

    attributes: dict[str, str] = {}
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield attributes
        return
    with trace.get_tracer("hybrid").start_as_current_span(
        name, record_exception=False, set_status_on_exception=False
    ) as current:
        yield attributes
        current.set_attributes(attributes)


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
