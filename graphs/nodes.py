"""The graph's nodes. Each reads the run's settings, calls one domain function of `hybrid` and
returns its update; the decisions are made there, and the edges between nodes are `graphs.edges`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graphs import prompts
from graphs.state import ReviewDecision, State, Tier
from hybrid import observability, turns
from hybrid.answering import write_draft
from hybrid.grounding import gather_sources
from hybrid.history import questions_asked
from hybrid.settings import resolve_settings

Node = Callable[[State, Runtime[Any]], dict[str, Any]]


def timed(node: Node) -> Node:
    """Time the node into `timings_ms` and the metrics, in a span carrying the turn's trace id.

    (A node that resets `timings_ms`, the first of a turn, starts them afresh.)
    """
    name = node.__name__

    @functools.wraps(node)
    def wrapper(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
        started = time.perf_counter()
        observability.setup_tracing(resolve_settings(runtime.context).otel_endpoint)  # once per process
        token = observability.current_trace_id.set(state.get("trace_id"))
        try:
            with observability.span(f"hybrid.{name}") as attributes:
                update = node(state, runtime)
                trace_id = update.get("trace_id") or state.get("trace_id")
                attributes |= {"hybrid.trace_id": trace_id or "", "hybrid.node": name}
        finally:
            observability.current_trace_id.reset(token)
        elapsed = time.perf_counter() - started
        observability.NODE_SECONDS.labels(name).observe(elapsed)
        timings = dict(update["timings_ms"] if "timings_ms" in update else state.get("timings_ms") or {})
        timings[name] = round(elapsed * 1000, 2)
        return {**update, "timings_ms": timings}

    return wrapper


def _thread_id() -> str:
    return str(get_config()["configurable"].get("thread_id", ""))


@timed
def classify(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Validate the question and route it; starts a new turn."""
    settings = resolve_settings(runtime.context)
    start = turns.start_turn(
        state.get("question"),
        state.get("messages") or [],
        settings,
        prompt_overhead=prompts.ANSWER_WITH_SOURCES_SYSTEM,
        thread_id=_thread_id(),
    )
    return {
        "question": start.question,
        "messages": [HumanMessage(start.question)],
        "route": start.route,
        "retrieval": None,
        "drafts": [],
        "verifications": [],
        "review": None,
        "answer": None,
        "answered_by": None,
        "status": None,
        "timings_ms": {},
        "trace_id": start.trace_id,
        "review_round": 0,
        "deadline_at": start.deadline_at,
        "cache_scope": start.cache_scope,
        "cached": start.cached,
    }


@timed
def retrieve(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Fetch passages from the knowledge base; keep those similar enough to the question."""
    settings = resolve_settings(runtime.context)
    previous = questions_asked((state.get("messages") or [])[:-1])  # the last one is this turn's
    retrieval, route = gather_sources(state["question"], state["route"], previous, settings)
    return {"retrieval": retrieval} | ({} if route is state["route"] else {"route": route})


def _answer(tier: Tier, state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    settings = resolve_settings(runtime.context)
    draft = write_draft(
        tier,
        state["route"]["models"][tier],
        prompts.answer_messages(state, settings),
        deadline_at=state.get("deadline_at", time.time() + settings.request_deadline_s),
        settings=settings,
        escalation=tier == "large" and bool(state.get("drafts")),
        tenant=state["route"].get("policies", {}).get("tenant"),
        thread_id=_thread_id(),
    )
    return {"drafts": [*state.get("drafts", []), draft]}


@timed
def answer_small(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Draft an answer with the small model."""
    return _answer("small", state, runtime)


@timed
def escalate(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Draft an answer with the large model."""
    return _answer("large", state, runtime)


@timed
def verify(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Judge the latest draft."""
    settings = resolve_settings(runtime.context)
    hits = (state.get("retrieval") or {}).get("hits") or []
    verification = turns.judge_turn_draft(
        state["question"], state["drafts"][-1], hits, state["route"], settings
    )
    return {"verifications": [*state.get("verifications", []), verification]}


@timed
def human_review(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Open a review case and pause for the verdict (approve, edit, reject or escalate); record it.

    Everything before `interrupt` runs again on resume, so `open_review` writes idempotently (the
    case and its audit row are keyed by the case id).
    """
    settings = resolve_settings(runtime.context)
    thread_id = _thread_id()
    withheld = turns.review_withheld(state, thread_id=thread_id, settings=settings)
    if withheld is not None:  # the service tier has no human review: no case, no pause
        return withheld
    origin = "langgraph-api" if runtime.server_info is not None else "local"
    request = turns.open_review(state, thread_id=thread_id, origin=origin, settings=settings)
    # The schema says what the reviewer may do; LangGraph refuses any other verdict and keeps
    # the case pending, so a bad verdict loses nothing.
    decision: ReviewDecision = interrupt(request, response_schema=turns.verdict_schema(state))
    return turns.apply_verdict(
        state, decision, case_id=request["case_id"], thread_id=thread_id, settings=settings
    )


@timed
def accept(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Make the accepted (or reviewer-approved, or reviewer-written) answer final, and audit it."""
    settings = resolve_settings(runtime.context)
    final = turns.finish_turn(state, thread_id=_thread_id(), settings=settings)
    return {
        "answer": final.answer,
        "answered_by": final.answered_by,
        "status": "answered",
        "messages": [AIMessage(final.answer)],
    }


@timed
def unreachable(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """End a turn no model could be reached for: no answer and no review case, and say so."""
    settings = resolve_settings(runtime.context)
    return turns.refuse_unreachable(state, thread_id=_thread_id(), settings=settings)
