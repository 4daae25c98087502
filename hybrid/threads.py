"""Conversations as LangGraph threads: the graph compiled over the configured database (once per
process), a thread's config, and a thread's state turned into the `Answer` callers see.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

from graphs.graph import compile_graph
from hybrid import costs
from hybrid.database import database_for
from hybrid.decisions import (
    Draft,
    Retrieval,
    Review,
    ReviewRequest,
    RouteDecision,
    Status,
    TokenUsage,
    Verification,
)
from hybrid.explain import explain
from hybrid.settings import Settings


class Answer(BaseModel):
    """Everything Hybrid AI did with one question: the answer and every decision behind it."""

    thread_id: str
    trace_id: str | None = Field(None, description="Id of this turn in the audit log.")
    status: Status
    question: str
    answer: str | None = Field(description="Final answer; None while pending review or if rejected.")
    answered_by: str | None = Field(description="Model spec of the final answer, or human:<reviewer>.")
    explanation: str = Field(description="Why the query went where it went, in one line.")
    route: RouteDecision
    retrieval: Retrieval | None
    drafts: list[Draft]
    verifications: list[Verification]
    review: Review | None
    pending_review: ReviewRequest | None = Field(description="What the reviewer sees, while pending.")
    timings_ms: dict[str, float]
    usage: dict[str, TokenUsage] = Field(description="Tokens per model spec.")
    cost: dict[str, float] = Field(description="Estimated cost per model spec, from configured prices.")
    verifier_cost: float = Field(0.0, description="The verifier's own compute, priced.")
    total_cost: float = Field(description="Every model call and the verifier, priced.")
    large_only_cost: float = Field(
        0.0, description="What sending this question to the large model alone would cost."
    )
    large_only_basis: str = Field("", description="How `large_only_cost` was worked out.")
    saved: float = Field(
        0.0, description="large_only_cost - total_cost (negative when escalation cost more)."
    )

    @property
    def tier(self) -> Literal["small", "large", "human"] | None:
        """Which tier produced the final answer."""
        if self.answered_by is None:
            return None
        if self.answered_by.startswith("human:"):
            return "human"
        return next((d["tier"] for d in reversed(self.drafts) if d["model"] == self.answered_by), None)


_graphs: dict[str, CompiledStateGraph] = {}
_graphs_lock = threading.Lock()


def compiled_graph(settings: Settings) -> CompiledStateGraph:
    """The graph compiled over the configured database, once per process."""
    database = database_for(settings)
    with _graphs_lock:
        if database.url not in _graphs:
            _graphs[database.url] = compile_graph(database.checkpointer)
        return _graphs[database.url]


def forget_graphs() -> None:
    """Forget compiled graphs (their databases are closed by the caller)."""
    with _graphs_lock:
        _graphs.clear()


def thread_config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def build_answer(
    thread_id: str, values: Mapping[str, Any], interrupts: Iterable[Any], settings: Settings
) -> Answer:
    pending = next((i.value for i in interrupts), None)
    drafts: list[Draft] = list(values.get("drafts") or [])
    usage: dict[str, TokenUsage] = {}
    cost: dict[str, float] = {}
    for draft in drafts:
        total = usage.setdefault(draft["model"], {"input_tokens": 0, "output_tokens": 0})
        total["input_tokens"] += draft["usage"]["input_tokens"]
        total["output_tokens"] += draft["usage"]["output_tokens"]
        cost[draft["model"]] = round(cost.get(draft["model"], 0.0) + draft["cost"], 8)
    status = "pending_review" if pending is not None else values.get("status") or "answered"
    verifier_cost = round(sum(v.get("cost", 0.0) for v in values.get("verifications") or []), 8)
    total = round(sum(cost.values()) + verifier_cost, 8)
    large_only, basis = costs.large_only_cost(values, settings)
    return Answer(
        thread_id=thread_id,
        trace_id=values.get("trace_id"),
        status=status,
        question=values["question"],
        answer=values.get("answer"),
        answered_by=values.get("answered_by"),
        explanation=explain(values, pending is not None),
        route=values["route"],
        retrieval=values.get("retrieval"),
        drafts=drafts,
        verifications=values.get("verifications") or [],
        review=values.get("review"),
        pending_review=pending,
        timings_ms=values.get("timings_ms") or {},
        usage=usage,
        cost=cost,
        verifier_cost=verifier_cost,
        total_cost=total,
        large_only_cost=large_only,
        large_only_basis=basis,
        saved=round(large_only - total, 8),
    )
