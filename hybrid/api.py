"""The public Python API: the one façade the CLI, the UI and the servers all use.

    from hybrid import ask
    answer = ask("What is the capital of France?")
    print(answer.answer, answer.explanation)

Each call takes per-run overrides as keywords (any field of `RunContext`), which win over
`HYBRID_*` environment variables, which win over defaults.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, GraphOutput
from pydantic import BaseModel, Field, ValidationError

from hybrid import audit, registry, reviews, shadow
from hybrid import policy as policies
from hybrid.decisions import (
    Hit,
    ReviewDecision,
    ReviewRequest,
    RouteDecision,
)
from hybrid.doctor import Readiness
from hybrid.doctor import Report as DoctorReport
from hybrid.errors import (
    CaseAlreadyResolved,
    ConversationBusy,
    ConversationNotFound,
    Forbidden,
    InvalidDecision,
    InvalidQuestion,
    InvalidSetting,
    ModelsUnreachable,
    NoAnswer,
    ReviewElsewhere,
)
from hybrid.policy import Caller
from hybrid.policy import tenancy as _tenancy
from hybrid.policy.turn import release_admission
from hybrid.settings import RunContext, Settings, invalid_setting, resolve_settings
from hybrid.threads import Answer, compiled_graph, forget_graphs
from hybrid.threads import build_answer as _build_answer
from hybrid.threads import thread_config as _config
from hybrid.validation import check_question
from retrieval.ingest import IngestReport, Progress

__all__ = [
    "Answer",
    "DoctorReport",
    "Event",
    "ModelsUnreachable",
    "PendingReview",
    "Readiness",
    "ReviewDecision",
    "answer_for",
    "ask",
    "audit_export",
    "check_reachable",
    "check_request",
    "doctor",
    "expire_reviews",
    "feedback",
    "ingest",
    "pending_reviews",
    "readiness",
    "resume",
    "search",
    "stream",
]


class PendingReview(BaseModel):
    """A case waiting for a reviewer."""

    thread_id: str
    case_id: str
    created_at: datetime
    deadline: datetime
    claimed_by: str | None = Field(None, description="Reviewer whose resolution is in progress, if any.")
    request: ReviewRequest


class Event(BaseModel):
    """One streamed event: a token of a draft, a finished node, or the final answer."""

    kind: Literal["token", "node", "answer"]
    node: str | None = None
    text: str | None = None
    update: dict[str, Any] | None = None
    answer: Answer | None = None


_ANSWER_NODES = {"answer_small", "escalate"}


def reset() -> None:
    """Close databases and stores and forget compiled graphs (as a process restart would)."""
    from hybrid import database
    from hybrid.doctor import forget_readiness
    from hybrid.policy import loading, shifts
    from retrieval import lexical, store

    forget_graphs()
    forget_readiness()
    database.reset()
    loading.reset()
    shifts.reset()
    store.reset()
    lexical.reset()


def _graph(settings: Settings) -> CompiledStateGraph:
    """The graph compiled over the configured database, once per process."""
    return compiled_graph(settings)


def _run_settings(overrides: Mapping[str, Any], caller: Caller | None = None) -> Settings:
    """The run's settings. The graph gets them whole as its context, so its nodes do not each
    resolve them again (resolving reads the environment). A tenant's key may send only the
    per-run settings its service tier allows (`Forbidden` otherwise)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        context = RunContext(**given)
    except ValidationError as exc:
        raise invalid_setting(exc, "per-run setting") from None
    settings = resolve_settings(context)
    if caller is not None and not caller.admin:
        loaded = policies.current_policy(settings)
        tier = loaded.tier(caller.tier) if loaded else None
        allowed = set(tier.allowed_overrides if tier else ()) | {"request_metadata"}
        refused = sorted(set(given) - allowed)
        if refused:
            raise Forbidden(
                f"the {caller.tier or 'default'} tier may not set {', '.join(refused)} per run "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
    return settings


def caller(key: str | None = None) -> Caller:
    """Who a key stands for: a tenant and its tier, or an admin (no key: the operator, who sees
    everything). Raises `Unauthenticated` for an unknown key."""
    return policies.authenticate(resolve_settings(), key)


def check_access(thread_id: str, *, key: str | None = None) -> None:
    """Raise `Forbidden` unless the key may see this conversation (reads nothing of it)."""
    settings = resolve_settings()
    _tenancy.check(settings, policies.authenticate(settings, key), thread_id)


def keys_required() -> bool:
    """Whether the servers and the web app ask for a key (keys are configured)."""
    return policies.keys_configured(resolve_settings())


def _screen(question: str, thread_id: str | None, settings: Settings, who: Caller) -> None:
    """Refuse before anything runs what the policy refuses (its rules, a spent budget), for the
    conversation's owner (a new conversation's is the caller)."""
    from hybrid.policy.turn import for_turn

    if policies.current_policy(settings) is None:
        return
    owner = _tenancy.owner(settings, thread_id) if thread_id else None
    turn = for_turn(settings, question, who.owner if owner is None else owner, preview=True)
    if turn is not None:
        turn.screen()


def _claim(settings: Settings, who: Caller, graph: CompiledStateGraph, thread_id: str, *, new: bool) -> None:
    """Record a new conversation as the caller's, or check an existing one is (`Forbidden`).

    A conversation whose id the façade just drew (`new`) cannot have an owner or turns yet: it is
    recorded without looking (two reads fewer per first turn)."""
    if new:
        _tenancy.record(settings, thread_id, who.owner)
        return
    _tenancy.claim(settings, who, thread_id, lambda: bool(graph.get_state(_config(thread_id)).values))


def _refuse_if_pending(graph: CompiledStateGraph, thread_id: str) -> None:
    if graph.get_state(_config(thread_id)).interrupts:
        raise ConversationBusy(
            f"conversation {thread_id} is waiting for a review; resolve it before asking again"
        )


def wait_for_shadow_runs(timeout: float | None = None) -> bool:
    """Wait until this process's shadow runs are done (True), or `timeout` seconds (default: the
    shadow timeout) pass (False)."""
    settings = resolve_settings()
    return shadow.drain(settings.shadow_timeout_s if timeout is None else timeout)


def answer_for(thread_id: str, *, key: str | None = None) -> Answer:
    """The latest answer of a conversation (pending, answered or rejected). With a tenant's `key`,
    only of that tenant's conversations (`Forbidden` otherwise)."""
    settings = resolve_settings()
    _tenancy.check(settings, policies.authenticate(settings, key), thread_id)
    return _latest_answer(thread_id, settings)


def _latest_answer(thread_id: str, settings: Settings) -> Answer:
    snapshot = _graph(settings).get_state(_config(thread_id))
    if not snapshot.values:
        raise ConversationNotFound(f"no conversation with thread id {thread_id!r}")
    return _build_answer(thread_id, snapshot.values, snapshot.interrupts, settings)


def _refuse_if_unreachable(answer: Answer, settings: Settings) -> Answer:
    """A turn no model could be reached for is an error for the caller, not an answer."""
    if answer.status == "unreachable":
        from hybrid.models.reachability import models_unreachable_error

        raise models_unreachable_error(
            answer.drafts, settings, thread_id=answer.thread_id, trace_id=answer.trace_id
        )
    return answer


def _turn_input(
    graph: CompiledStateGraph, thread_id: str, question: str, history: list[Mapping[str, str]] | None
) -> dict[str, Any]:
    """The graph input: the question, and earlier turns when a new thread starts from a transcript."""
    from langchain_core.messages import AIMessage, HumanMessage

    turn: dict[str, Any] = {"question": question}
    if history and not graph.get_state(_config(thread_id)).values:
        messages = []
        for item in history:
            role, content = item.get("role"), item.get("content")
            if role not in ("user", "assistant") or not isinstance(content, str):
                raise InvalidQuestion("history items need a role (user or assistant) and text content")
            messages.append(HumanMessage(content) if role == "user" else AIMessage(content))
        turn["messages"] = messages
    return turn


def prepare(**overrides: Any) -> list[str]:
    """Load what answering uses, so the first question does not wait for it: the graph and its
    database, the knowledge base's index, MiniLM, the router and verifier artifacts and the model
    clients. Embedded model weights still load on first use (the router counts them as cold).

    Returns what could not be prepared and why, without raising (the question that needs a broken
    piece reports it, or degrades as it would have anyway); invalid settings raise `InvalidSetting`.
    """
    from hybrid.models.factory import get_chat_model
    from hybrid.routing.decision import score_query
    from hybrid.verification.judge import load_verifier
    from retrieval.embeddings import embed_query
    from retrieval.lexical import lexical_index

    settings = _run_settings(overrides)
    artifacts = registry.resolve(settings)

    def verifier(tier: str) -> None:
        folder = artifacts.path(tier)  # None: that tier is judged by the heuristic, by design
        _, problem = load_verifier(folder) if folder else (None, None)  # reports, does not raise
        if problem:
            raise ValueError(f"{problem}; drafts get the heuristic score")

    steps: list[tuple[str, Callable[[], object]]] = [
        ("graph and database", lambda: _graph(settings)),
        ("MiniLM", lambda: embed_query("warm-up")),  # remembered: the router's warm-up reuses it
    ]
    if settings.retrieval != "never":
        steps.append(("knowledge base", lambda: lexical_index(settings)))
    router = artifacts.path("router")
    if settings.router == "learned" and router is not None:
        steps.append(("router", lambda: score_query("warm-up", router)))
    steps.append(("small-tier verifier", lambda: verifier("small")))
    steps.append(("large-tier verifier", lambda: verifier("large")))
    for tier in ("small", "large"):
        for spec in settings.tier_specs(tier):
            steps.append((f"model client {spec}", lambda spec=spec: get_chat_model(spec, settings)))
    problems = []
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # reported, never fatal: see the docstring
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return problems


def doctor(**overrides: Any) -> DoctorReport:
    """Check everything the settings rely on (models, MiniLM, the knowledge store, the database,
    the router and verifier, the policy file, telemetry); each check says what it found and the fix.

    It loads what it checks (embedded models, MiniLM), so it takes seconds; `readiness` is the cheap
    version."""
    from hybrid.doctor import run_checks

    return run_checks(_run_settings(overrides))


def readiness(**overrides: Any) -> Readiness:
    """Whether questions can be answered now: some tier has a model that may answer, and the
    database answers. Cheap (no generation) and cached for `readiness_cache_s`."""
    from hybrid.doctor import readiness as check

    return check(_run_settings(overrides))


def check_reachable(**overrides: Any) -> None:
    """Raise `ModelsUnreachable` when no configured model can be reached, by the cached probes of
    `readiness` (before a streamed answer starts, whose status code cannot change later)."""
    from hybrid.doctor import unreachable_configuration

    error = unreachable_configuration(_run_settings(overrides))
    if error is not None:
        raise error


def check_request(
    question: Any, *, key: str | None = None, thread_id: str | None = None, **overrides: Any
) -> str:
    """Validate a question, the caller's key and per-run settings without running anything, and
    refuse what the policy would (`PolicyRefused`, `BudgetExhausted`); the question, stripped."""
    settings = resolve_settings()
    who = policies.authenticate(settings, key)
    settings = _run_settings(overrides, who)
    question = check_question(question, settings)
    if thread_id and not who.admin and _tenancy.owner(settings, thread_id) is not None:
        _tenancy.check(settings, who, thread_id)  # (a new conversation is claimed when it starts)
    _screen(question, thread_id, settings, who)
    return question


def _finished(
    thread_id: str,
    settings: Settings,
    reference: Sequence[str] | None,
    output: GraphOutput | None = None,
) -> Answer:
    """The turn's answer; a sampled turn is queued for a shadow run (after the answer is built).

    `output` is what the run returned (its state, and its interrupts if it paused for review): the
    same as the checkpoint just saved, without reading it back. Without it, the checkpoint."""
    if output is None or not isinstance(output.value, Mapping) or "question" not in output.value:
        snapshot = _graph(settings).get_state(_config(thread_id))
        values, interrupts = snapshot.values, tuple(snapshot.interrupts)
    else:
        values, interrupts = dict(output.value), output.interrupts
    answer = _build_answer(thread_id, values, interrupts, settings)
    if settings.shadow_rate > 0 and not interrupts:
        shadow.schedule(settings, values, thread_id=thread_id, reference=reference)
    return answer


def ask(
    question: str,
    *,
    thread_id: str | None = None,
    history: list[Mapping[str, str]] | None = None,
    reference: Sequence[str] | None = None,
    key: str | None = None,
    **overrides: Any,
) -> Answer:
    """Answer a question, continuing the conversation `thread_id` if given.

    Returns an `Answer` whose `status` is `answered`, `pending_review` (resume it with `resume`;
    the final answer is then available from `answer_for(thread_id)`) or `rejected`. Raises
    `InvalidQuestion` for an empty or oversized question, before anything runs, and
    `ModelsUnreachable` when no model of any allowed tier could be reached (no review case is
    opened, unless `unreachable_models` is `review`). `history` (earlier `{"role", "content"}`
    turns) seeds a new conversation, as stateless clients send it. `reference` (answers known to
    be right, when the question comes from an evaluation set) labels the turn's shadow pair, if it
    gets one. With a tenant's `key`, the conversation is that tenant's: its tier's policy applies,
    and another tenant's conversation is `Forbidden`.
    """
    settings, question, thread_id, graph = _start(question, thread_id, key, overrides, history)
    try:
        with shadow.user_run():
            # v2: the state after each step, and interrupts as they come; v1 also streams each
            # node's update, only to look for interrupts in it (a stream put and read per step).
            output = graph.invoke(
                _turn_input(graph, thread_id, question, history),
                _config(thread_id),
                context=settings,
                durability=settings.checkpoint_durability,
                version="v2",
            )
    finally:
        release_admission(settings, thread_id)
    return _refuse_if_unreachable(_finished(thread_id, settings, reference, output), settings)


def _start(
    question: str,
    thread_id: str | None,
    key: str | None,
    overrides: Mapping[str, Any],
    history: list[Mapping[str, str]] | None = None,
) -> tuple[Settings, str, str, CompiledStateGraph]:
    """Everything checked before a turn runs: the key, the per-run settings it may send, the
    question, the conversation's owner, a pending review, the policy's refusals. The learned
    router's embedding of a new conversation's question runs meanwhile (`begin_routing`)."""
    who = policies.authenticate(resolve_settings(), key)
    settings = _run_settings(overrides, who)
    question = check_question(question, settings)
    new = not thread_id
    begin = _may_begin_routing(thread_id, history)
    thread_id = thread_id or uuid.uuid4().hex
    if begin:
        from hybrid.turns import prefetch_learned_score

        prefetch_learned_score(question, settings, thread_id)
    graph = _graph(settings)
    _claim(settings, who, graph, thread_id, new=new)
    if not new:  # a conversation just begun has no review pending
        _refuse_if_pending(graph, thread_id)
    _screen(question, thread_id, settings, who)
    _admit(question, thread_id, settings, graph)
    return settings, question, thread_id, graph


def begin_routing(
    question: str,
    *,
    thread_id: str | None = None,
    history: list[Mapping[str, str]] | None = None,
    **overrides: Any,
) -> None:
    """Begin what the learned router will read of a checked question (its MiniLM pass) on a
    background thread, so it overlaps the work before the turn runs (the server calls this once a
    request is admitted). Only a new conversation's question (a later one may be routed with the
    question before it), and only while no other turn runs in this process: then a core is spare,
    while under load the pass only moves between busy cores and costs more per request (measured:
    docs/benchmarks.md). Changes nothing a caller can see; `ask` and `stream` do it too."""
    if _may_begin_routing(thread_id, history):
        from hybrid.turns import prefetch_learned_score

        prefetch_learned_score(question, _run_settings(overrides), None)


def _may_begin_routing(thread_id: str | None, history: list[Mapping[str, str]] | None) -> bool:
    # Checked before anything is resolved: under load it is false for every request.
    return not thread_id and not history and shadow.user_runs() == 0


def _admit(question: str, thread_id: str, settings: Settings, graph: CompiledStateGraph) -> None:
    """Hold what the turn's first model call is expected to cost, if its tenant's budget refuses
    once spent (`BudgetExhausted` when it cannot): the rules, the conversation, the question and,
    if retrieval will run, a chunk per source. The call itself tops the hold up if it needs more."""
    from graphs.prompts import ANSWER_WITH_SOURCES_SYSTEM
    from hybrid.policy.turn import admit
    from hybrid.turns import knowledge_coverage, retrieves

    if policies.current_policy(settings) is None:
        return
    earlier = [m.text for m in graph.get_state(_config(thread_id)).values.get("messages") or []]
    kb_score, kb_available, _, _ = knowledge_coverage(question, settings)
    sources = settings.passages * settings.chunk_size if retrieves(kb_score, kb_available, settings) else 0
    admit(
        settings,
        _tenancy.owner(settings, thread_id) or "",
        thread_id=thread_id,
        prompt=ANSWER_WITH_SOURCES_SYSTEM + "".join(earlier) + question + " " * sources,
        messages=len(earlier) + 2,
    )


def stream(
    question: str,
    *,
    thread_id: str | None = None,
    history: list[Mapping[str, str]] | None = None,
    reference: Sequence[str] | None = None,
    key: str | None = None,
    **overrides: Any,
) -> Iterator[Event]:
    """Like `ask`, yielding draft tokens and finished nodes as they happen, then the `Answer`
    (or raising `ModelsUnreachable` instead, as `ask` does)."""
    settings, question, thread_id, graph = _start(question, thread_id, key, overrides, history)
    try:
        with shadow.user_run():
            yield from _stream_events(graph, thread_id, question, history, settings)
    finally:
        release_admission(settings, thread_id)
    yield Event(
        kind="answer", answer=_refuse_if_unreachable(_finished(thread_id, settings, reference), settings)
    )


def _stream_events(
    graph: CompiledStateGraph,
    thread_id: str,
    question: str,
    history: list[Mapping[str, str]] | None,
    settings: Settings,
) -> Iterator[Event]:
    for mode, chunk in graph.stream(
        _turn_input(graph, thread_id, question, history),
        _config(thread_id),
        context=settings,
        stream_mode=["messages", "updates"],
        durability=settings.checkpoint_durability,
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


def _heal(settings: Settings, graph: CompiledStateGraph, case: reviews.Case) -> bool:
    """Mark a case resolved if the conversation shows its verdict applied, or a later turn.

    A case is recorded just before its interrupt is checkpointed, so "no interrupt yet" does not
    mean "done": until the conversation records this case's review, it stays open.
    """
    values = graph.get_state(_config(case.thread_id)).values or {}
    review = values.get("review") or {}
    if review.get("case_id") == case.case_id:
        reviews.mark_resolved(
            settings, case.case_id, reviewer=review.get("reviewer"), action=review.get("action")
        )
        return True
    turn, round_ = reviews.case_position(case.case_id)
    turns = sum(1 for m in values.get("messages") or [] if m.type == "human")
    applied_turn, applied_round = reviews.case_position(review["case_id"]) if review else (0, -1)
    if turns > turn or (applied_turn == turn and applied_round > round_):
        reviews.mark_resolved(settings, case.case_id, reviewer=None, action=None)  # superseded
        return True
    return False


def resume(thread_id: str, decision: ReviewDecision | Mapping[str, Any], *, key: str | None = None) -> Answer:
    """Resolve a conversation's pending review (approve, edit, reject, escalate); return the answer.

    Exactly once: the case is claimed atomically before the graph resumes, so when two reviewers
    act at once one wins and the other gets `CaseAlreadyResolved` naming who resolved it. Raises
    `ConversationNotFound` if there is no such conversation and `InvalidDecision` if the decision
    is malformed or not allowed for the case. With a tenant's `key`, only that tenant's cases
    (`Forbidden` otherwise, before anything is read or changed).
    """
    settings = resolve_settings()
    _tenancy.check(settings, policies.authenticate(settings, key), thread_id)
    graph = _graph(settings)
    try:
        verdict = decision if isinstance(decision, ReviewDecision) else ReviewDecision(**decision)
    except ValidationError as exc:
        raise InvalidDecision(f"invalid review decision: {exc.errors()[0]['msg']}") from None
    case = reviews.latest_case(settings, thread_id)
    if case is None:
        if not graph.get_state(_config(thread_id)).values:
            raise ConversationNotFound(f"no conversation with thread id {thread_id!r}")
        raise CaseAlreadyResolved(f"conversation {thread_id} has no pending review")
    if case.origin != "local":
        raise ReviewElsewhere(
            f"conversation {thread_id} lives in a LangGraph server; resolve it through that server's API"
        )
    if case.status != "resolved" and _heal(settings, graph, case):
        case = reviews.get_case(settings, case.case_id) or case
    if case.status == "resolved":
        raise CaseAlreadyResolved(f"conversation {thread_id} has no pending review: {case.describe()}")
    allowed = case.request.get("actions")
    if allowed and verdict.action not in allowed:
        raise InvalidDecision(
            f"cannot {verdict.action} conversation {thread_id}: "
            + ("no model produced an answer; " if verdict.action == "approve" else "")
            + f"choose one of: {', '.join(allowed)}"
        )
    body = verdict.model_dump(exclude={"claim"}, exclude_none=True)
    token = reviews.claim(settings, case.case_id, reviewer=verdict.reviewer, decision=body)
    try:
        graph.invoke(
            Command(resume={**body, "claim": token}),
            _config(thread_id),
            context=settings,
            durability=settings.checkpoint_durability,
        )
    except BaseException:
        reviews.release(settings, case.case_id, token)
        raise
    reviews.mark_resolved(settings, case.case_id, reviewer=verdict.reviewer, action=verdict.action)
    return _latest_answer(thread_id, settings)


def pending_reviews(*, key: str | None = None) -> list[PendingReview]:
    """Every case waiting for a reviewer, oldest first, with what the reviewer needs to decide
    (with a tenant's `key`: that tenant's cases only)."""
    settings = resolve_settings()
    who = policies.authenticate(settings, key)
    graph = _graph(settings)
    pending = []
    cases = reviews.open_cases(settings)
    mine = _tenancy.visible(settings, who, [case.thread_id for case in cases])
    for case in cases:
        if case.thread_id not in mine:
            continue
        if _heal(settings, graph, case):
            continue
        pending.append(
            PendingReview(
                thread_id=case.thread_id,
                case_id=case.case_id,
                created_at=case.created_at,
                deadline=case.deadline,
                claimed_by=case.reviewer if case.status == "claimed" else None,
                request=case.request,  # type: ignore[arg-type]
            )
        )
    return pending


def expire_reviews(now: datetime | None = None) -> list[Answer]:
    """Resolve every case past its deadline with the configured fallback (escalate or reject)."""
    settings = resolve_settings()
    moment = now or datetime.now(UTC)
    resolved = []
    for case in pending_reviews():
        if case.deadline > moment:
            continue
        action = settings.review_fallback
        if action == "escalate" and "escalate" not in case.request["actions"]:
            action = "reject"  # nothing left to escalate to
        decision = {"action": action, "reviewer": "system:deadline"}
        if action == "reject":
            decision["reason"] = settings.review_fallback_message
        try:
            answer = resume(case.thread_id, decision)
        except CaseAlreadyResolved:
            continue  # a reviewer got there first
        audit.record(
            settings,
            "review_expired",
            data={"deadline": case.deadline.isoformat(), "fallback": action},
            thread_id=case.thread_id,
            case_id=case.case_id,
            actor="system:deadline",
            key=f"{case.case_id}:expired",
        )
        resolved.append(answer)
    return resolved


def feedback(
    thread_id: str, rating: Literal["up", "down"], *, comment: str | None = None, key: str | None = None
) -> None:
    """Record a user's thumbs up or down on the latest answer of a conversation."""
    from hybrid.feedback import record_user_feedback

    answer = answer_for(thread_id, key=key)
    if answer.status != "answered":
        raise NoAnswer(f"conversation {thread_id} has no answer to rate ({answer.status})")
    record_user_feedback(resolve_settings(), answer, rating, comment)


def audit_export(
    *, since: datetime | None = None, fmt: Literal["jsonl", "csv"] = "jsonl", key: str | None = None
) -> Iterator[str]:
    """The audit log, as JSON lines or CSV (with a tenant's `key`: the rows of its conversations)."""
    settings = resolve_settings()
    return audit.export(settings, since=since, fmt=fmt, tenant=policies.authenticate(settings, key).tenant)


def ingest(
    paths: Iterable[str | Path],
    *,
    collection: str | None = None,
    sync: bool = False,
    progress: Progress | None = None,
    key: str | None = None,
) -> IngestReport:
    """Add files and folders to the knowledge base (Markdown, text, HTML, PDF, JSON/JSONL corpora).

    Unchanged chunks are skipped; with `sync`, chunks of deleted or changed files under `paths`
    are removed. Unreadable files are listed in the report's `failed`, the rest is ingested.
    """
    from retrieval.ingest import ingest as run_ingest

    settings = resolve_settings()
    # Every tenant answers from the one knowledge base: only an admin changes it.
    policies.callers.require_admin(policies.authenticate(settings, key), "add to the knowledge base")
    return run_ingest(paths, settings, collection=collection, sync=sync, progress=progress)


def search(query: str, *, k: int | None = None, collection: str | None = None, **overrides: Any) -> list[Hit]:
    """Search the knowledge base directly, with the configured (or overridden) ranking mode."""
    from retrieval.search import search as run_search

    settings = _run_settings(overrides)
    return run_search(settings, query, k or settings.passages, collection=collection)  # type: ignore[return-value]


def compare_versions(
    versions: Sequence[str] = (), *, since: datetime | None = None, key: str | None = None
) -> dict[str, Any]:
    """Live figures per router/verifier version, and the difference between two (default: the
    current version and the canary), from recorded traffic (`hybrid tune compare`). They sum
    every tenant's traffic: an admin's (or the operator's) only, `Forbidden` for a tenant's key."""
    from hybrid.versions import compare

    settings = resolve_settings()
    policies.callers.require_admin(policies.authenticate(settings, key), "compare versions over all traffic")
    return compare(settings, list(versions), since=since)


def database_path() -> Path:
    """Where the default SQLite database lives (for people looking for their data)."""
    return resolve_settings().database_path


def traffic(
    *, since: datetime | None = None, until: datetime | None = None, key: str | None = None
) -> list[TrafficTurn]:
    """Recorded turns (route, drafts, scores, latency, tokens, cost) first seen in [since, until)
    (with a tenant's `key`: its own turns only)."""
    from hybrid.traffic import turns

    settings = resolve_settings()
    tenant = policies.authenticate(settings, key).tenant
    return turns(settings, since=since, until=until, tenant=tenant)


def policy_status() -> dict[str, Any]:
    """The policy in force: its file, version, when it was loaded, and why the latest version of
    the file was refused, if it was."""
    return policies.policy_status(resolve_settings())


def check_policy(path: str | Path) -> list[policies.Problem]:
    """Validate a policy file as `HYBRID_POLICY_FILE` would be: every problem with its line."""
    return policies.check_file(Path(path))[1]


class RuleCheck(BaseModel):
    """One policy rule as `explain_route` saw it."""

    rule: str
    action: str
    matched: bool
    detail: str


class RouteExplanation(BaseModel):
    """Where a question would go, and why, as the policy and the router see it now."""

    question: str
    tenant: str | None
    tier: str | None
    data_class: str
    rules: list[RuleCheck] = Field(description="The policy's rules in order, up to the one that decided.")
    refusal: str | None
    route: RouteDecision


def explain_route(
    question: str,
    *,
    key: str | None = None,
    tier: str | None = None,
    tenant: str | None = None,
    **overrides: Any,
) -> RouteExplanation:
    """Where a question would go and why, without running a model or writing anything: the policy
    rules that matched, the router's score against the (shifted) threshold, the tiers allowed.

    As asked with `key`, or as a tenant, or in a service tier (`tier` alone: as no tenant of it)."""
    from graphs.prompts import ANSWER_WITH_SOURCES_SYSTEM
    from hybrid.turns import route_question

    settings = _run_settings(overrides)
    question = check_question(question, settings)
    who = policies.authenticate(settings, key) if key else None
    loaded = policies.current_policy(settings)
    if loaded is not None:
        for name, known, what in (
            (tier, loaded.policy.tiers, "tier"),
            (tenant, loaded.policy.tenants, "tenant"),
        ):
            if name is not None and name not in known:
                raise InvalidSetting(f"unknown {what} {name!r}; the policy has: {', '.join(sorted(known))}")
    routed = route_question(
        question,
        [],
        settings,
        prompt_overhead=ANSWER_WITH_SOURCES_SYSTEM,
        tenant=who.owner if who else (tenant or ""),
        tier=tier,
        preview=True,
    )
    turn = routed.policy
    verdict = turn.verdict if turn else None
    return RouteExplanation(
        question=question,
        tenant=(turn.tenant or None) if turn else None,
        tier=turn.tier_name if turn else None,
        data_class=verdict.data_class if verdict else routed.route["sensitivity"],
        rules=[RuleCheck(**vars(c)) for c in verdict.checked] if verdict else [],
        refusal=str(refused) if turn and (refused := turn.refusal()) else None,
        route=routed.route,
    )


# Façade functions that live in their own modules (the UI's needs), re-exported here.
from hybrid.choices import RunChoices, run_choices  # noqa: E402
from hybrid.conversations import Conversation, conversation, conversations, rate, ratings  # noqa: E402
from hybrid.knowledge import CollectionStats, collection_stats, files_under, save_uploads  # noqa: E402
from hybrid.traffic import OUTCOMES as TRAFFIC_OUTCOMES  # noqa: E402
from hybrid.traffic import Summary as TrafficSummary  # noqa: E402
from hybrid.traffic import Turn as TrafficTurn  # noqa: E402
from hybrid.traffic import latency_by_model  # noqa: E402
from hybrid.traffic import summarize as traffic_summary  # noqa: E402

__all__ += [
    "TRAFFIC_OUTCOMES",
    "CollectionStats",
    "Conversation",
    "RunChoices",
    "TrafficSummary",
    "TrafficTurn",
    "collection_stats",
    "compare_versions",
    "conversation",
    "conversations",
    "files_under",
    "latency_by_model",
    "rate",
    "ratings",
    "run_choices",
    "save_uploads",
    "traffic",
    "traffic_summary",
]
