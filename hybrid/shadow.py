"""Shadow runs: labels from live traffic, off the user's path.

With `HYBRID_SHADOW_RATE` above 0, that share of answered turns (chosen by a hash of the turn's
trace id) becomes a pair: the answer the user got and the other tier's answer to the same prompt.
A turn that was escalated already holds both, so nothing runs; otherwise the other tier answers in
a background thread, after the user has the answer:

- only while no user request is running in this process, and an embedded model's shadow
  generation stops within one token when one arrives (it is tried again later, at most three
  times), so a shadow run never makes a user wait;
- the queue is bounded (`HYBRID_SHADOW_QUEUE_SIZE`): past it, a new shadow run is dropped and
  counted;
- never to a tier the turn's data boundary forbids (sensitive data stays on local models), and not
  once the budget is spent;
- priced and reported apart (`hybrid_shadow_runs`, `hybrid_shadow_cost` metrics; the pair's cost),
  and counted against the daily budget like any model call.

The pair (both drafts, their costs and latencies, the route taken, the artefact versions, and a
reference answer when the question came from an evaluation set) is stored in the database
(`hybrid_shadow_pairs`); `hybrid.tuning.labels` labels it and `hybrid tune --from-traffic` learns
from it. A shadow run that fails or times out is recorded as such and never touches the user's
answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hybrid import budget, costs, observability
from hybrid.database import database_for, insert_ignore, shadow_pairs
from hybrid.errors import GenerationPreempted
from hybrid.settings import Settings

MAX_TRIES = 3
QUIET_S = 0.25


@dataclass
class Job:
    settings: Settings
    trace_id: str
    thread_id: str
    values: dict[str, Any]
    """The turn as the graph recorded it, its answer's message left out (the prompt's state)."""
    tier: str | None
    """The tier to run in the background; None when both drafts exist already."""
    reference: list[str] | None = None
    tries: int = 0
    queued_at: float = field(default_factory=time.monotonic)


class _Runner:
    """The background worker, its bounded queue, and the count of user runs it yields to."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.user_runs = 0
        self.jobs: queue.Queue[Job] | None = None
        self.worker: threading.Thread | None = None
        self.busy = False

    def start(self, size: int) -> queue.Queue[Job]:
        with self.lock:
            if self.jobs is None or self.jobs.maxsize != size:
                self.jobs = queue.Queue(maxsize=size)
            if self.worker is None or not self.worker.is_alive():
                self.worker = threading.Thread(target=self._work, name="hybrid-shadow", daemon=True)
                self.worker.start()
            return self.jobs

    def _wait_for_idle(self) -> None:
        """Until no user request has run for `QUIET_S` (back-to-back requests leave no gap to fill)."""
        with self.lock:
            while True:
                self.lock.wait_for(lambda: self.user_runs == 0)
                if not self.lock.wait_for(lambda: self.user_runs > 0, timeout=QUIET_S):
                    return

    def _work(self) -> None:
        while True:
            jobs = self.jobs
            assert jobs is not None
            job = jobs.get()
            try:
                self._wait_for_idle()
                with self.lock:
                    self.busy = True
                run(job)
            except GenerationPreempted:
                job.tries += 1
                if job.tries < MAX_TRIES:
                    try:
                        jobs.put_nowait(job)
                        observability.SHADOW_RUNS.labels("preempted").inc()
                    except queue.Full:
                        observability.SHADOW_RUNS.labels("dropped").inc()
                else:
                    observability.SHADOW_RUNS.labels("dropped").inc()
            except Exception as exc:  # a shadow run never reaches the user; it is logged and counted
                observability.logger.warning("shadow run failed: %s: %s", type(exc).__name__, exc)
                observability.SHADOW_RUNS.labels("failed").inc()
            finally:
                with self.lock:
                    self.busy = False
                    self.lock.notify_all()
                jobs.task_done()

    @property
    def preempting(self) -> bool:
        return self.user_runs > 0


_runner = _Runner()


@contextlib.contextmanager
def user_run() -> Iterator[None]:
    """Mark a user request as running: shadow runs wait, and an embedded one in progress stops."""
    with _runner.lock:
        _runner.user_runs += 1
    try:
        yield
    finally:
        with _runner.lock:
            _runner.user_runs -= 1
            _runner.lock.notify_all()


def user_runs() -> int:
    """How many user requests are running in this process now."""
    return _runner.user_runs


def drain(timeout: float) -> bool:
    """Wait until no shadow run is queued or running (True), or `timeout` seconds (False)."""
    ends = time.monotonic() + timeout
    jobs = _runner.jobs
    if jobs is None:
        return True
    with _runner.lock:
        return _runner.lock.wait_for(
            lambda: jobs.unfinished_tasks == 0 and not _runner.busy, timeout=max(0.0, ends - time.monotonic())
        )


def sampled(trace_id: str, rate: float) -> bool:
    """Whether a turn is in the shadow sample (stable: the same turn, the same answer)."""
    if rate >= 1:
        return True
    bucket = int(hashlib.sha256(f"shadow:{trace_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < rate


def _usable(drafts: Sequence[Mapping[str, Any]], tier: str) -> Mapping[str, Any] | None:
    return next((d for d in reversed(drafts) if d["tier"] == tier and d["text"] and not d["error"]), None)


def schedule(
    settings: Settings,
    values: Mapping[str, Any],
    *,
    thread_id: str,
    reference: Sequence[str] | None = None,
) -> str:
    """Queue a finished turn for a shadow run if it is sampled; returns what happened (for tests
    and logs): not_sampled, skipped_*, queued, dropped."""
    if settings.shadow_rate <= 0 or values.get("status") != "answered" or values.get("cached"):
        return "not_sampled"
    trace_id = values.get("trace_id") or ""
    if not sampled(trace_id, settings.shadow_rate):
        return "not_sampled"
    policies = (values.get("route") or {}).get("policies") or {}
    if "hash" in (policies.get("prompts"), policies.get("answers")):
        # A pair keeps the question and both answers verbatim; this tier's retention keeps hashes.
        observability.SHADOW_RUNS.labels("skipped_retention").inc()
        return "skipped_retention"
    drafts = values.get("drafts") or []
    answered_by = values.get("answered_by") or ""
    answered = next((d["tier"] for d in reversed(drafts) if d["model"] == answered_by), None)
    if answered is None:  # a reviewer wrote it: nothing to pair
        return "not_sampled"
    other = "large" if answered == "small" else "small"
    tier: str | None = None if _usable(drafts, other) else other
    if tier is not None:
        route = values.get("route") or {}
        if tier not in route.get("allowed_tiers", []) or not route.get("models", {}).get(tier):
            observability.SHADOW_RUNS.labels("skipped_boundary").inc()
            return "skipped_boundary"
        if budget.exhausted(settings):
            observability.SHADOW_RUNS.labels("skipped_budget").inc()
            return "skipped_budget"
    state = dict(values)
    state["messages"] = list(values.get("messages") or [])[:-1]  # the prompt held the question last
    job = Job(settings, trace_id, thread_id, state, tier, list(reference) if reference else None)
    try:
        _runner.start(settings.shadow_queue_size).put_nowait(job)
    except queue.Full:
        observability.SHADOW_RUNS.labels("dropped").inc()
        return "dropped"
    return "queued"


def _draft_record(draft: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("tier", "model", "text", "error", "finish_reason", "model_meta", "usage", "cost", "latency_ms")
    return {k: draft.get(k) for k in keys}


def _embedded(model: Any) -> bool:
    from hybrid.models.llamacpp import EmbeddedChatModel
    from hybrid.models.replay import RecordedChatModel

    inner = model.inner if isinstance(model, RecordedChatModel) else model
    return isinstance(inner, EmbeddedChatModel)


def _answer(job: Job) -> tuple[dict[str, Any], str]:
    """The other tier's draft for the turn's prompt, and how the run ended."""
    from graphs.prompts import answer_messages
    from hybrid.answering import reply_signals
    from hybrid.models import get_chat_model

    settings, tier = job.settings, job.tier
    assert tier is not None
    spec = job.values["route"]["models"][tier][0]
    messages = answer_messages(job.values, settings)
    model = get_chat_model(spec, settings)
    started = time.monotonic()
    deadline = started + settings.shadow_timeout_s
    kwargs: dict[str, Any] = {}
    if _embedded(model):
        kwargs = {"deadline": deadline, "yield_to": lambda: _runner.preempting}
    draft: dict[str, Any] = {
        "tier": tier,
        "model": spec,
        "text": "",
        "error": None,
        "finish_reason": None,
        "model_meta": {},
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "cost": 0.0,
    }
    try:
        reply = model.invoke(messages, **kwargs)
    except GenerationPreempted:
        raise
    except TimeoutError as exc:
        draft["error"] = f"TimeoutError: {exc}"
        outcome = "timeout"
    except Exception as exc:  # recorded with the pair; never the user's concern
        draft["error"] = f"{type(exc).__name__}: {exc}"[:500]
        outcome = "failed"
    else:
        text, finish, meta = reply_signals(reply)
        usage = reply.usage_metadata or {}
        tokens = {
            "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)),
        }
        seconds = time.monotonic() - started
        draft |= {
            "text": text,
            "finish_reason": finish,
            "model_meta": meta,
            "usage": tokens,
            "cost": costs.call_cost(spec, tokens["input_tokens"], tokens["output_tokens"], seconds, settings),
        }
        outcome = "ok"
    draft["latency_ms"] = round((time.monotonic() - started) * 1000, 2)
    return draft, outcome


def run(job: Job) -> None:
    """Answer with the other tier (unless both drafts exist) and store the pair."""
    values = job.values
    drafts = values.get("drafts") or []
    shadow_cost, outcome = 0.0, "observed"
    pair = {tier: _usable(drafts, tier) for tier in ("small", "large")}
    if job.tier is not None:
        draft, outcome = _answer(job)
        pair[job.tier] = draft
        shadow_cost = float(draft["cost"])
        budget.add_spend(job.settings, shadow_cost)
        observability.SHADOW_COST.labels(draft["model"]).inc(shadow_cost)
    observability.SHADOW_RUNS.labels(outcome).inc()
    route = values.get("route") or {}
    retrieval = values.get("retrieval") or {}
    insert_ignore(
        database_for(job.settings).engine,
        shadow_pairs,
        {
            "trace_id": job.trace_id,
            "at": datetime.now(UTC),
            "thread_id": job.thread_id,
            "question": values["question"],
            "passages": [hit["text"] for hit in retrieval.get("hits") or []],
            "retrieval_confidence": retrieval.get("confidence"),
            "answered_by": values.get("answered_by"),
            "route": {
                "route": route.get("route"),
                "need_large": (route.get("signals") or {}).get("need_large"),
                "versions": route.get("versions") or {},
            },
            "small": _draft_record(pair["small"]) if pair["small"] else None,
            "large": _draft_record(pair["large"]) if pair["large"] else None,
            "shadow_tier": job.tier,
            "shadow_outcome": outcome,
            "shadow_cost": shadow_cost,
            "reference": job.reference,
            "version": (route.get("versions") or {}).get("version"),
        },
        "trace_id",
    )
