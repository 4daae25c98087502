"""The public Python API: the one façade the CLI, the UI and the server all use.

    from hybrid import ask
    answer = ask("What is the capital of France?")
    print(answer.answer, answer.explanation)

Each call takes per-run overrides as keywords (any field of `RunContext`), which win over
`HYBRID_*` environment variables, which win over defaults.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field, ValidationError

from graphs.explain import explain
from graphs.graph import compile_graph
from graphs.nodes import check_question
from graphs.state import (
    Draft,
    Hit,
    Retrieval,
    Review,
    ReviewDecision,
    ReviewRequest,
    RouteDecision,
    Status,
    TokenUsage,
    Verification,
)
from hybrid.errors import ReviewError
from hybrid.settings import RunContext, Settings, resolve_settings
from retrieval.ingest import IngestReport, Progress

__all__ = [
    "Answer",
    "Event",
    "PendingReview",
    "ReviewDecision",
    "answer_for",
    "ask",
    "ingest",
    "pending_reviews",
    "resume",
    "search",
    "stream",
]


class Answer(BaseModel):
    """Everything Hybrid AI did with one question: the answer and every decision behind it."""

    thread_id: str
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
    total_cost: float

    @property
    def tier(self) -> Literal["small", "large", "human"] | None:
        """Which tier produced the final answer."""
        if self.answered_by is None:
            return None
        if self.answered_by.startswith("human:") or (self.review and self.review["action"] == "edit"):
            return "human"
        return self.drafts[-1]["tier"] if self.drafts else None


class PendingReview(BaseModel):
    """A case waiting for a reviewer."""

    thread_id: str
    request: ReviewRequest


class Event(BaseModel):
    """One streamed event: a token of a draft, a finished node, or the final answer."""

    kind: Literal["token", "node", "answer"]
    node: str | None = None
    text: str | None = None
    update: dict[str, Any] | None = None
    answer: Answer | None = None


class _Store:
    """The compiled graph over one checkpoint database, opened once per process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path), check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        self.checkpointer = SqliteSaver(self.connection)
        self.checkpointer.setup()
        self.graph: CompiledStateGraph = compile_graph(self.checkpointer)

    def close(self) -> None:
        self.connection.close()


_ANSWER_NODES = {"answer_small", "escalate"}
_stores: dict[Path, _Store] = {}
_stores_lock = threading.Lock()


def _store(settings: Settings) -> _Store:
    path = settings.checkpoint_path.resolve()
    with _stores_lock:
        if path not in _stores:
            _stores[path] = _Store(path)
        return _stores[path]


def reset() -> None:
    """Close databases and stores and forget compiled graphs (as a process restart would)."""
    from retrieval import lexical, store

    with _stores_lock:
        for opened in _stores.values():
            opened.close()
        _stores.clear()
    store.reset()
    lexical.reset()


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _build_answer(thread_id: str, values: Mapping[str, Any], interrupts: Iterable[Any]) -> Answer:
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
    return Answer(
        thread_id=thread_id,
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
        total_cost=round(sum(cost.values()), 8),
    )


def _run_settings(overrides: Mapping[str, Any]) -> tuple[Settings, Any]:
    context = RunContext(**{k: v for k, v in overrides.items() if v is not None})
    return resolve_settings(context), context


def _refuse_if_pending(graph: CompiledStateGraph, thread_id: str) -> None:
    if graph.get_state(_config(thread_id)).interrupts:
        raise ReviewError(f"conversation {thread_id} is waiting for a review; resolve it before asking again")


def answer_for(thread_id: str) -> Answer:
    """The latest answer of a conversation (pending, answered or rejected)."""
    snapshot = _store(resolve_settings()).graph.get_state(_config(thread_id))
    if not snapshot.values:
        raise ReviewError(f"no conversation with thread id {thread_id!r}")
    return _build_answer(thread_id, snapshot.values, snapshot.interrupts)


def ask(question: str, *, thread_id: str | None = None, **overrides: Any) -> Answer:
    """Answer a question, continuing the conversation `thread_id` if given.

    Returns an `Answer` whose `status` is `answered`, `pending_review` (resume it with `resume`)
    or `rejected`. Raises `InvalidQuestion` for an empty or oversized question, before anything runs.
    """
    settings, context = _run_settings(overrides)
    question = check_question(question, settings)
    thread_id = thread_id or uuid.uuid4().hex
    graph = _store(settings).graph
    _refuse_if_pending(graph, thread_id)
    graph.invoke({"question": question}, _config(thread_id), context=context)
    return answer_for(thread_id)


def stream(question: str, *, thread_id: str | None = None, **overrides: Any) -> Iterator[Event]:
    """Like `ask`, yielding draft tokens and finished nodes as they happen, then the `Answer`."""
    settings, context = _run_settings(overrides)
    question = check_question(question, settings)
    thread_id = thread_id or uuid.uuid4().hex
    graph = _store(settings).graph
    _refuse_if_pending(graph, thread_id)
    for mode, chunk in graph.stream(
        {"question": question},
        _config(thread_id),
        context=context,
        stream_mode=["messages", "updates"],
    ):
        if mode == "messages":
            message, meta = chunk
            # Only model output is a draft token; messages the nodes write to state also pass here.
            if meta.get("langgraph_node") in _ANSWER_NODES and message.text:
                yield Event(kind="token", node=meta["langgraph_node"], text=message.text)
        else:
            for node, update in chunk.items():
                if node != "__interrupt__":
                    yield Event(kind="node", node=node, update=update if isinstance(update, dict) else None)
    yield Event(kind="answer", answer=answer_for(thread_id))


def resume(thread_id: str, decision: ReviewDecision | Mapping[str, Any]) -> Answer:
    """Resolve a pending review with approve, edit or reject, and return the final answer.

    Raises `ReviewError` if the conversation does not exist, is not waiting for review (for
    instance because someone already resolved it), or the decision is malformed.
    """
    graph = _store(resolve_settings()).graph
    snapshot = graph.get_state(_config(thread_id))
    if not snapshot.values:
        raise ReviewError(f"no conversation with thread id {thread_id!r}")
    if not snapshot.interrupts:
        review = snapshot.values.get("review")
        if review:
            raise ReviewError(
                f"conversation {thread_id} has no pending review: already resolved "
                f"({review['action']}) by {review['reviewer']} at {review['resolved_at']}"
            )
        raise ReviewError(f"conversation {thread_id} has no pending review")
    try:
        verdict = decision if isinstance(decision, ReviewDecision) else ReviewDecision(**decision)
        schema = snapshot.interrupts[0].response_schema or {}
        allowed = schema.get("properties", {}).get("action", {}).get("enum")
        if allowed and verdict.action not in allowed:
            raise ReviewError(
                f"cannot {verdict.action} conversation {thread_id}: no model produced an answer; "
                f"choose one of: {', '.join(allowed)}"
            )
    except ValidationError as exc:
        raise ReviewError(f"invalid review decision: {exc.errors()[0]['msg']}") from None
    graph.invoke(Command(resume=verdict.model_dump(exclude_none=True)), _config(thread_id))
    return answer_for(thread_id)


def pending_reviews() -> list[PendingReview]:
    """Every conversation waiting for a reviewer, oldest first."""
    store = _store(resolve_settings())
    latest: dict[str, None] = {}
    for checkpoint in store.checkpointer.list(None):
        latest.setdefault(checkpoint.config["configurable"]["thread_id"], None)
    pending = []
    for thread_id in reversed(list(latest)):
        snapshot = store.graph.get_state(_config(thread_id))
        if snapshot.interrupts:
            pending.append(PendingReview(thread_id=thread_id, request=snapshot.interrupts[0].value))
    return pending


def ingest(
    paths: Iterable[str | Path],
    *,
    collection: str | None = None,
    sync: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Add files and folders to the knowledge base (Markdown, text, HTML, PDF, JSON/JSONL corpora).

    Unchanged chunks are skipped; with `sync`, chunks of deleted or changed files under `paths`
    are removed. Unreadable files are listed in the report's `failed`, the rest is ingested.
    """
    from retrieval.ingest import ingest as run_ingest

    return run_ingest(paths, resolve_settings(), collection=collection, sync=sync, progress=progress)


def search(query: str, *, k: int | None = None, collection: str | None = None, **overrides: Any) -> list[Hit]:
    """Search the knowledge base directly, with the configured (or overridden) ranking mode."""
    from retrieval.search import search as run_search

    settings, _ = _run_settings(overrides)
    return run_search(settings, query, k or settings.retrieval_k, collection=collection)  # type: ignore[return-value]
