"""The graph's nodes. Each reads the state and the run's settings and returns an update; the
decisions themselves live in `router`, `verifier` and the pure edge functions of `routing`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graphs import prompts
from graphs.router import LearnedScore, decide_route, rescore_with_retrieval, routing_text, score_query
from graphs.state import (
    REVIEW_ACTIONS,
    Draft,
    Hit,
    Retrieval,
    Review,
    ReviewAction,
    ReviewDecision,
    ReviewRequest,
    RouteDecision,
    State,
    Tier,
    decision_schema,
)
from graphs.verifier import judge_draft
from hybrid import audit, budget, cache, costs, observability, reviews
from hybrid.errors import InvalidQuestion
from hybrid.feedback import record_review_feedback
from hybrid.injection import looks_like_injection
from hybrid.models import is_local_model, model_version
from hybrid.models.resilience import Attempt, TierDown, call_tier
from hybrid.models.state import estimated_tokens, model_state
from hybrid.reviews import case_id_for
from hybrid.sensitivity import find_sensitive
from hybrid.settings import Settings, resolve_settings

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
            with observability.tracer().start_as_current_span(
                f"hybrid.{name}", record_exception=False, set_status_on_exception=False
            ) as span:
                update = node(state, runtime)
                trace_id = update.get("trace_id") or state.get("trace_id")
                span.set_attribute("hybrid.trace_id", trace_id or "")
                span.set_attribute("hybrid.node", name)
        finally:
            observability.current_trace_id.reset(token)
        elapsed = time.perf_counter() - started
        observability.NODE_SECONDS.labels(name).observe(elapsed)
        timings = dict(update["timings_ms"] if "timings_ms" in update else state.get("timings_ms") or {})
        timings[name] = round(elapsed * 1000, 2)
        return {**update, "timings_ms": timings}

    return wrapper


def check_question(question: object, settings: Settings) -> str:
    """The question, stripped, or a clear error if it is not a usable question."""
    if isinstance(question, bytes | bytearray):
        try:
            question = bytes(question).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidQuestion(f"the question is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be text, not {type(question).__name__}")
    # Undecodable bytes from a terminal arrive as lone surrogates (Python's surrogateescape).
    if any("\ud800" <= ch <= "\udfff" for ch in question):
        raise InvalidQuestion("the question is not valid UTF-8 (it holds undecodable bytes)")
    stripped = question.strip()
    if not stripped:
        raise InvalidQuestion("the question is empty")
    if len(stripped) > settings.max_question_chars:
        raise InvalidQuestion(
            f"the question is {len(stripped):,} characters long; the limit is "
            f"{settings.max_question_chars:,} (HYBRID_MAX_QUESTION_CHARS)"
        )
    controls = sum(1 for ch in stripped if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    if "\x00" in stripped or controls > max(2, len(stripped) // 20):
        raise InvalidQuestion("the question looks like binary data (NUL or control characters), not text")
    return stripped


def conversation_turns(messages: Sequence[AnyMessage], limit: int) -> list[tuple[str, str]]:
    """The last `limit` answered (question, answer) pairs of a conversation."""
    pairs: list[tuple[str, str]] = []
    for earlier, later in itertools.pairwise(messages):
        if isinstance(earlier, HumanMessage) and isinstance(later, AIMessage):
            pairs.append((earlier.text, later.text))
    return pairs[-limit:] if limit else []


def _knowledge_coverage(question: str, settings: Settings) -> tuple[float, bool, str | None, str]:
    """Term coverage of the question by the knowledge base, whether it has content, any error,
    and the knowledge base's version."""
    if settings.retrieval == "never":
        return 0.0, False, None, "none"
    try:
        from retrieval.lexical import lexical_index

        index = lexical_index(settings)
    except Exception as exc:  # retrieval trouble must not stop an answer
        return 0.0, False, f"{type(exc).__name__}: {exc}", "unavailable"
    return index.coverage(question), index.documents > 0, None, index.version


def _prompt_tokens(question: str, history: Sequence[AnyMessage], settings: Settings, sources: bool) -> int:
    """A conservative size of the prompt before retrieval: rules, recent turns, question, room for sources."""
    turns = "".join(q + a for q, a in conversation_turns(history, settings.history_turns))
    room = settings.retrieval_k * settings.chunk_size // 4 if sources else 0
    return estimated_tokens(prompts.ANSWER_WITH_SOURCES_SYSTEM + turns + question) + room


def _learned_score(
    question: str, previous: Sequence[str], settings: Settings
) -> tuple[LearnedScore | None, str | None]:
    """The learned router's score, or why there is none (off, forced, artifact unreadable)."""
    if settings.router != "learned" or settings.force_route:
        return None, None
    try:
        return score_query(routing_text(question, previous), settings), None
    except Exception as exc:  # a broken artifact degrades to the heuristic, visibly
        observability.logger.warning("learned router unavailable: %s: %s", type(exc).__name__, exc)
        return None, f"{type(exc).__name__}: {exc}"


@timed
def classify(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Validate the question and route it; starts a new turn."""
    settings = resolve_settings(runtime.context)
    question = check_question(state.get("question"), settings)
    history = state.get("messages") or []
    previous = [m.text for m in history if isinstance(m, HumanMessage)]
    kb_score, kb_available, kb_error, kb_version = _knowledge_coverage(question, settings)
    learned, learned_error = _learned_score(question, previous, settings)
    route = decide_route(
        question,
        previous_questions=previous,
        kb_score=kb_score,
        kb_available=kb_available,
        model_is_local=lambda spec: is_local_model(spec, settings),
        settings=settings,
        budget_exhausted=budget.exhausted(settings),
        model_states={
            spec: model_state(spec, settings)
            for tier in ("small", "large")
            for spec in settings.tier_specs(tier)
        },
        prompt_tokens=_prompt_tokens(
            question,
            history,
            settings,
            sources=kb_available
            and (
                settings.retrieval == "always"
                or (settings.retrieval == "auto" and kb_score >= settings.kb_need_threshold)
            ),
        ),
        learned=learned,
        learned_error=learned_error,
    )
    if kb_error:
        route["reasons"].append(f"knowledge base unavailable: {kb_error}")
    context = "\n".join(f"{q}\n{a}" for q, a in conversation_turns(history, settings.history_turns))
    cache_scope = cache.scope(context, kb_version)
    if settings.force_route:
        hit, cache_reason = None, "cache bypassed: route forced"
    else:
        hit, cache_reason = cache.lookup(settings, question, cache_scope)
    route["reasons"].append(cache_reason)
    return {
        "question": question,
        "messages": [HumanMessage(question)],
        "route": route,
        "retrieval": None,
        "drafts": [],
        "verifications": [],
        "review": None,
        "answer": None,
        "answered_by": None,
        "status": None,
        "timings_ms": {},
        "trace_id": uuid.uuid4().hex,
        "review_round": 0,
        "deadline_at": time.time() + settings.request_deadline_s,
        "cache_scope": cache_scope,
        "cached": dataclasses.asdict(hit) if hit else None,
    }


@timed
def retrieve(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Fetch passages from the knowledge base; keep those similar enough to the question."""
    settings = resolve_settings(runtime.context)
    retrieval = Retrieval(
        mode=settings.retrieval_mode,
        hits=[],
        dropped=0,
        confidence=0.0,
        min_score=settings.retrieval_min_score,
    )
    try:
        from retrieval.search import search

        found: list[Hit] = search(settings, state["question"], settings.retrieval_k)  # type: ignore[assignment]
    except Exception as exc:  # answer without the knowledge base rather than not at all
        retrieval["error"] = f"{type(exc).__name__}: {exc}"
        return {"retrieval": retrieval}
    similar = [hit for hit in found if hit["similarity"] >= settings.retrieval_min_score]
    for hit in similar:
        hit["flags"] = [name for name, on in _hit_flags(hit).items() if on]
    kept = [hit for hit in similar if "prompt_injection" not in hit["flags"]]
    retrieval.update(
        hits=kept,
        dropped=len(found) - len(similar),
        flagged=[
            {"id": h["id"], "source": h["source"], "flags": h["flags"]} for h in similar if h not in kept
        ],
        confidence=max((hit["similarity"] for hit in kept), default=0.0),
    )
    update: dict[str, Any] = {"retrieval": retrieval}
    route = _rescored_route(state, retrieval["confidence"], settings)
    route = _tightened_route(route, kept, settings)
    if route is not state["route"]:
        update["route"] = route
    return update


def _rescored_route(state: State, confidence: float, settings: Settings) -> RouteDecision:
    """Let a learned router that reads retrieval confidence judge the query again with it."""
    route = state["route"]
    if not route.get("router", "").startswith("learned") or route["forced"]:
        return route
    try:
        from hybrid.routing.model import RouterModel

        if "retrieval_confidence" not in RouterModel.load(settings.router_path).informative_extras:
            return route
        previous = [m.text for m in state.get("messages", [])[:-1] if isinstance(m, HumanMessage)]
        text = routing_text(state["question"], previous)
        rescored = score_query(text, settings, {"retrieval_confidence": confidence})
    except Exception as exc:  # the first decision stands
        observability.logger.warning("re-scoring with retrieval failed: %s", exc)
        return route
    return rescore_with_retrieval(route, rescored, confidence)


def _hit_flags(hit: Hit) -> dict[str, bool]:
    meta = hit.get("metadata") or {}
    return {
        "prompt_injection": bool(meta.get("injection")) or looks_like_injection(hit["text"]),
        "sensitive": meta.get("sensitivity", "none") != "none" or bool(find_sensitive(hit["text"])),
    }


def _tightened_route(route: RouteDecision, hits: list[Hit], settings: Settings) -> RouteDecision:
    """Sensitive passages make the whole prompt sensitive: only local models may see it."""
    if not any("sensitive" in hit.get("flags", []) for hit in hits):
        return route
    models = {
        tier: [s for s in specs if is_local_model(s, settings)] for tier, specs in route["models"].items()
    }
    if models == route["models"]:
        return route
    dropped = sorted(
        {s for specs in route["models"].values() for s in specs} - {s for v in models.values() for s in v}
    )
    return {
        **route,
        "models": models,
        "allowed_tiers": [tier for tier in ("small", "large") if models.get(tier)],  # type: ignore[misc]
        "sensitivity": "secret" if route["sensitivity"] == "secret" else "personal",
        "reasons": [
            *route["reasons"],
            f"retrieved passages hold sensitive data: not used: {', '.join(dropped)}",
        ],
    }


def answer_messages(state: State, settings: Settings) -> list[BaseMessage]:
    """The prompt for an answering model: rules, recent turns, then quoted sources and the question."""
    hits = (state.get("retrieval") or {}).get("hits") or []
    messages: list[BaseMessage] = [
        SystemMessage(prompts.ANSWER_WITH_SOURCES_SYSTEM if hits else prompts.ANSWER_SYSTEM)
    ]
    history = (state.get("messages") or [])[:-1]  # the last message is this turn's question
    for question, answer in conversation_turns(history, settings.history_turns):
        messages += [HumanMessage(question), AIMessage(answer)]
    if hits:
        sources = "\n\n".join(
            prompts.SOURCE.format(
                number=n, file=Path(hit["source"]).name, text=prompts.quote_source(hit["text"])
            )
            for n, hit in enumerate(hits, start=1)
        )
        messages.append(
            HumanMessage(prompts.QUESTION_WITH_SOURCES.format(sources=sources, question=state["question"]))
        )
    else:
        messages.append(HumanMessage(state["question"]))
    return messages


def reply_signals(reply: BaseMessage) -> tuple[str, str | None, dict[str, float | str]]:
    """A model reply's text, finish reason and the extra signals the verifier reads."""
    metadata = reply.response_metadata
    finish = metadata.get("finish_reason") or metadata.get("done_reason")
    meta = {
        k: v
        for k, v in metadata.items()
        if isinstance(v, float | str) and k in ("mean_token_logprob", "min_token_prob", "model_name")
    }
    return reply.text.strip(), finish, meta


def _draft(tier: Tier, state: State, settings: Settings) -> Draft:
    specs = state["route"]["models"][tier]
    started = time.perf_counter()
    remaining = state.get("deadline_at", time.time() + settings.request_deadline_s) - time.time()
    text, error, error_kind, finish, meta, spec = "", None, None, None, {}, specs[0]
    usage = {"input_tokens": 0, "output_tokens": 0}
    attempts: list[Attempt] = []
    try:
        reply, spec, attempts = call_tier(
            specs, answer_messages(state, settings), settings, time.monotonic() + remaining
        )
        text, finish, meta = reply_signals(reply)
        if reply.usage_metadata:
            usage = {
                "input_tokens": int(reply.usage_metadata.get("input_tokens", 0)),
                "output_tokens": int(reply.usage_metadata.get("output_tokens", 0)),
            }
    except TierDown as exc:  # recorded and routed around, never fatal
        error, error_kind, attempts = (
            str(exc),
            "deadline" if exc.deadline_passed else "tier_down",
            exc.attempts,
        )
        spec = next((a.model for a in reversed(attempts) if a.outcome != "skipped"), specs[0])
    compute_s = sum(a.latency_ms for a in attempts if a.model == spec and a.outcome == "ok") / 1000
    draft = Draft(
        tier=tier,
        model=spec,
        text=text,
        error=error,
        error_kind=error_kind,
        finish_reason=finish,
        usage=usage,  # type: ignore[typeddict-item]
        cost=costs.call_cost(spec, usage["input_tokens"], usage["output_tokens"], compute_s, settings),
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        model_meta=meta,
        attempts=[a.as_dict() for a in attempts],
        fallback=spec != specs[0] and error is None,
    )
    observability.record_draft(draft)  # type: ignore[arg-type]
    costs.observe(spec, compute_s, usage["output_tokens"])
    budget.add_spend(settings, draft["cost"])
    return draft


@timed
def answer_small(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Draft an answer with the small model."""
    settings = resolve_settings(runtime.context)
    return {"drafts": [*state.get("drafts", []), _draft("small", state, settings)]}


@timed
def escalate(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Draft an answer with the large model."""
    settings = resolve_settings(runtime.context)
    if state.get("drafts"):
        observability.ESCALATIONS.inc()
    return {"drafts": [*state.get("drafts", []), _draft("large", state, settings)]}


@timed
def verify(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Judge the latest draft."""
    settings = resolve_settings(runtime.context)
    draft = state["drafts"][-1]
    threshold = (
        settings.small_accept_threshold if draft["tier"] == "small" else settings.large_accept_threshold
    )
    hits = (state.get("retrieval") or {}).get("hits") or []
    started = time.perf_counter()
    verification = judge_draft(
        state["question"], draft, hits, threshold, verifier_path=settings.verifier_path
    )
    verification["cost"] = round((time.perf_counter() - started) * settings.verifier_price_per_s, 8)
    budget.add_spend(settings, verification["cost"])
    return {"verifications": [*state.get("verifications", []), verification]}


def usable_draft(state: State) -> Draft | None:
    """The latest draft that has text, if any."""
    return next((d for d in reversed(state.get("drafts") or []) if d["text"] and not d["error"]), None)


def _thread_id() -> str:
    return str(get_config()["configurable"].get("thread_id", ""))


def _turn(state: State) -> int:
    return sum(isinstance(m, HumanMessage) for m in state.get("messages") or [])


def allowed_actions(state: State) -> tuple[ReviewAction, ...]:
    """What a reviewer may do: approve only an existing answer, escalate only to an unused large tier."""
    large_tried = any(d["tier"] == "large" for d in state.get("drafts") or [])
    return tuple(
        action
        for action in REVIEW_ACTIONS
        if (action != "approve" or usable_draft(state))
        and (action != "escalate" or ("large" in state["route"]["allowed_tiers"] and not large_tried))
    )


def review_request(state: State, case_id: str) -> ReviewRequest:
    """What the reviewer sees for this case."""
    route = state["route"]
    verifications = state.get("verifications") or []
    if state.get("review_round"):
        why = "the large model's answer, requested by a reviewer, failed verification"
    elif route["route"] == "human":
        why = "route forced to human review" if route["forced"] else "no tier may answer this query"
    elif verifications:
        last = verifications[-1]
        why = (
            f"the {last['tier']} model's answer failed verification "
            f"({last['score']:.2f} < {last['threshold']:.2f})"
        )
    else:
        why = "no model could answer"
    return ReviewRequest(
        case_id=case_id,
        actions=list(allowed_actions(state)),
        question=state["question"],
        why=why,
        drafts=state.get("drafts") or [],
        verifications=verifications,
        hits=(state.get("retrieval") or {}).get("hits") or [],
        route=route,
    )


@timed
def human_review(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Open a review case and pause for the verdict (approve, edit, reject or escalate); record it.

    Everything before `interrupt` runs again on resume, so it only reads state or writes
    idempotently (the case and its audit row are keyed by the case id).
    """
    settings = resolve_settings(runtime.context)
    thread_id = _thread_id()
    case_id = case_id_for(thread_id, _turn(state), state.get("review_round") or 0)
    request = review_request(state, case_id)
    trace_id = state.get("trace_id")
    origin = "langgraph-api" if runtime.server_info is not None else "local"
    if reviews.open_case(
        settings,
        case_id=case_id,
        thread_id=thread_id,
        trace_id=trace_id,
        request=dict(request),
        origin=origin,
    ):
        observability.REVIEWS.labels("opened").inc()
        observability.REQUESTS.labels("human", "pending_review").inc()
        audit.record(
            settings,
            "review_requested",
            data={"why": request["why"], "actions": request["actions"], "origin": origin},
            trace_id=trace_id,
            thread_id=thread_id,
            case_id=case_id,
            key=f"{case_id}:requested",
        )
    # The schema says what the reviewer may do; LangGraph refuses any other verdict and keeps
    # the case pending, so a bad verdict loses nothing.
    decision: ReviewDecision = interrupt(request, response_schema=decision_schema(allowed_actions(state)))
    verdict = decision.model_dump(exclude={"claim"}, exclude_none=True)
    reviews.confirm(settings, case_id, decision.claim, reviewer=decision.reviewer, decision=verdict)
    review = Review(
        case_id=case_id,
        action=decision.action,
        reviewer=decision.reviewer,
        answer=decision.answer,
        reason=decision.reason,
        resolved_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    audit.record(
        settings,
        "review_resolved",
        data=verdict,
        trace_id=trace_id,
        thread_id=thread_id,
        case_id=case_id,
        actor=decision.reviewer,
        key=f"{case_id}:resolved",
    )
    approved = usable_draft(state) if decision.action == "approve" else None
    record_review_feedback(
        settings,
        case_id=case_id,
        thread_id=thread_id,
        trace_id=trace_id,
        question=state["question"],
        action=decision.action,
        approved_tier=approved["tier"] if approved else None,
        small_tried=any(d["tier"] == "small" for d in state.get("drafts") or []),
    )
    observability.REVIEWS.labels(decision.action).inc()
    update: dict[str, Any] = {"review": review, "review_round": (state.get("review_round") or 0) + 1}
    if decision.action == "escalate":
        update["deadline_at"] = time.time() + settings.request_deadline_s  # the clock starts again
    if decision.action == "reject":
        observability.REQUESTS.labels("human", "rejected").inc()
        update |= {"status": "rejected", "answer": None, "answered_by": None}
    return update


@timed
def accept(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
    """Make the accepted (or reviewer-approved, or reviewer-written) answer final, and audit it."""
    review = state.get("review")
    cached = state.get("cached")
    verified = False
    if cached:
        answer, answered_by = cached["answer"], f"cache:{cached['answered_by']}"
        observability.CACHE_HITS.labels(cached["kind"]).inc()
    elif review and review["action"] == "edit":
        answer, answered_by, verified = review["answer"] or "", f"human:{review['reviewer']}", True
    else:
        draft = usable_draft(state)
        if draft is None:  # routing never accepts without a draft; guard the invariant anyway
            raise RuntimeError("accept reached without an answer")
        answer, answered_by = draft["text"], draft["model"]
        index = (state.get("drafts") or []).index(draft)
        checks = state.get("verifications") or []
        verified = bool(review and review["action"] == "approve") or (
            index < len(checks) and checks[index]["passed"]
        )
    settings = resolve_settings(runtime.context)
    if verified:
        cache.store(
            settings,
            question=state["question"],
            scope_key=state.get("cache_scope") or "",
            answer=answer,
            answered_by=answered_by,
            trace_id=state.get("trace_id"),
        )
    tier = (
        "human"
        if answered_by.startswith("human:")
        else "cache"
        if cached
        else next(
            (d["tier"] for d in reversed(state.get("drafts") or []) if d["model"] == answered_by), "small"
        )
    )
    observability.REQUESTS.labels(tier, "answered").inc()
    observability.logger.info(
        "answered by %s (%s tier) in %.0f ms: %s",
        answered_by,
        tier,
        sum((state.get("timings_ms") or {}).values()),
        state["question"][:200],
    )
    audit.record(
        settings,
        "answered",
        data={
            "question": state["question"],
            "answered_by": answered_by,
            "route": state["route"],
            "retrieval": {k: v for k, v in (state.get("retrieval") or {}).items() if k != "hits"}
            | {"sources": [h["source"] for h in (state.get("retrieval") or {}).get("hits", [])]},
            "drafts": [
                {k: d[k] for k in ("tier", "model", "error", "usage", "cost", "latency_ms", "finish_reason")}
                | {"model_version": model_version(d["model"])}
                for d in state.get("drafts") or []
            ],
            "verifications": state.get("verifications") or [],
            "review": review,
            "timings_ms": state.get("timings_ms") or {},
            # What the dashboard charts: spend against sending everything to the large model.
            "cost": costs.request_costs(state, settings),
        },
        trace_id=state.get("trace_id"),
        thread_id=_thread_id(),
        key=f"{state.get('trace_id')}:answered",
    )
    return {
        "answer": answer,
        "answered_by": answered_by,
        "status": "answered",
        "messages": [AIMessage(answer)],
    }
