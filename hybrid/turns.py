"""One turn of a conversation, step by step: how it starts (a checked question, its route, a cached
answer if one serves), what a reviewer is shown and may do, and which answer is final.

These are the domain functions the graph's nodes call; what a turn writes elsewhere (cache, audit,
metrics, the review queue) is in `hybrid.effects`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import AnyMessage

from hybrid import budget, cache, effects, observability, registry
from hybrid import policy as policies
from hybrid.decisions import (
    REVIEW_ACTIONS,
    Draft,
    Hit,
    Review,
    ReviewAction,
    ReviewDecision,
    ReviewRequest,
    RouteDecision,
    Verification,
    decision_schema,
)
from hybrid.history import conversation_turns, questions_asked, turn_number
from hybrid.models import is_local_model
from hybrid.models.reachability import describe_unreachable, unreachable_models
from hybrid.models.state import estimated_tokens, model_state
from hybrid.registry import ArtifactSet
from hybrid.reviews import case_id_for
from hybrid.routing.decision import (
    LearnedScore,
    decide_route,
    prefetch_query_embedding,
    routing_text,
    score_query,
)
from hybrid.sensitivity import find_sensitive
from hybrid.settings import Settings
from hybrid.validation import check_question
from hybrid.verification.judge import HEURISTIC_THRESHOLD, LARGE_HEURISTIC_THRESHOLD, judge_draft

TurnValues = Mapping[str, Any]
"""The turn so far, as the graph's state records it (`graphs.state.State`)."""


# ---------------------------------------------------------------------------------------------
# The start of a turn
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnStart:
    """What the first step of a turn decided."""

    question: str
    route: RouteDecision
    cache_scope: str
    cached: dict[str, Any] | None
    trace_id: str
    deadline_at: float


def knowledge_coverage(question: str, settings: Settings) -> tuple[float, bool, str | None, str]:
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


def learned_score(
    question: str, previous: Sequence[str], settings: Settings, artifacts: ArtifactSet
) -> tuple[LearnedScore | None, str | None]:
    """The learned router's score, or why there is none (off, forced, artifact unreadable)."""
    if settings.router != "learned" or settings.force_route:
        return None, None
    router = artifacts.path("router")
    if router is None:
        return None, f"no router in artefact version {artifacts.version}"
    try:
        return score_query(
            routing_text(question, previous), router, label=artifacts.labels.get("router")
        ), None
    except Exception as exc:  # a broken artifact degrades to the heuristic, visibly
        observability.logger.warning("learned router unavailable: %s: %s", type(exc).__name__, exc)
        return None, f"{type(exc).__name__}: {exc}"


def prefetch_learned_score(question: str, settings: Settings, thread_id: str | None) -> None:
    """Begin the learned router's embedding of a conversation's first question while the turn is
    checked and recorded (a later question's routing text may include the one before it). The
    conversation id picks the artefact version, as `route_question` does; without one, the stable
    version's (a canary reading another layer would embed again: correct, only slower)."""
    if settings.router != "learned" or settings.force_route:
        return
    try:
        router = registry.resolve(settings, thread_id).path("router")
        if router is not None:
            prefetch_query_embedding(question, router)  # a first question is routed as it is
    except Exception:  # `learned_score` reports a broken artefact when it scores
        pass


def retrieves(kb_score: float, kb_available: bool, settings: Settings) -> bool:
    return kb_available and (
        settings.retrieval == "always"
        or (settings.retrieval == "auto" and kb_score >= settings.kb_need_threshold)
    )


def turn_policy(
    question: str,
    thread_id: str | None,
    settings: Settings,
    large_in_flight: int = 0,
    *,
    tenant: str | None = None,
    tier: str | None = None,
    preview: bool = False,
) -> policies.TurnPolicy | None:
    """What the policy file says about this turn (the conversation owner's tier, the rules, the
    threshold shifts); None without a policy file. `tenant` and `tier` stand in for the owner's
    (previews)."""
    if policies.current_policy(settings) is None:
        return None
    if thread_id and tenant is None:
        from hybrid.policy.tenancy import owner

        tenant = owner(settings, thread_id)
    return policies.for_turn(
        settings, question, tenant, large_in_flight=large_in_flight, tier=tier, preview=preview
    )


@dataclass(frozen=True)
class Routed:
    """A question's route, and what the cache lookup needs."""

    route: RouteDecision
    policy: policies.TurnPolicy | None
    turns: list[tuple[str, str]]
    kb_version: str


def route_question(
    question: str,
    history: Sequence[AnyMessage],
    settings: Settings,
    *,
    prompt_overhead: str,
    thread_id: str | None = None,
    tenant: str | None = None,
    tier: str | None = None,
    preview: bool = False,
) -> Routed:
    """Route a checked question: the policy, the router, the rules. Runs no model and writes
    nothing (a `preview` leaves even the load shift alone). The conversation id (`thread_id`)
    keeps a conversation on one artefact version while a canary runs."""
    artifacts = registry.resolve(settings, thread_id or None)
    states = {
        spec: model_state(spec, settings) for t in ("small", "large") for spec in settings.tier_specs(t)
    }
    in_flight = sum(states[s].in_flight for s in settings.tier_specs("large"))
    policy = turn_policy(question, thread_id, settings, in_flight, tenant=tenant, tier=tier, preview=preview)
    previous = questions_asked(history)
    turns = conversation_turns(history, settings.history_turns)
    kb_score, kb_available, kb_error, kb_version = knowledge_coverage(question, settings)
    # Before the router, which may wait for an embedding begun at arrival: this work needs none.
    findings = find_sensitive(question)
    learned, learned_error = learned_score(question, previous, settings, artifacts)
    room = settings.passages * settings.chunk_size // 4 if retrieves(kb_score, kb_available, settings) else 0
    route = decide_route(
        question,
        previous_questions=previous,
        kb_score=kb_score,
        kb_available=kb_available,
        model_is_local=lambda spec: is_local_model(spec, settings),
        settings=settings,
        budget_exhausted=budget.exhausted(settings) or (policy.small_only if policy else None),
        model_states=states,
        # A conservative size of the prompt before retrieval: rules, recent turns, question, sources.
        prompt_tokens=estimated_tokens(prompt_overhead + "".join(q + a for q, a in turns) + question) + room,
        learned=learned,
        learned_error=learned_error,
        policy=policy,
        findings=findings,
    )
    if kb_error:
        route["reasons"].append(f"knowledge base unavailable: {kb_error}")
    route["versions"] = artifacts.record()
    if artifacts.stale:
        route["reasons"].append(
            f"artefacts {artifacts.version} are stale: {'; '.join(artifacts.stale)} (run `hybrid tune`)"
        )
    return Routed(route, policy, turns, kb_version)


def start_turn(
    question: object,
    history: Sequence[AnyMessage],
    settings: Settings,
    *,
    prompt_overhead: str,
    thread_id: str | None = None,
) -> TurnStart:
    """Check the question, route it, and look for a cached answer.

    `history` is the conversation before this question; `prompt_overhead` is the fixed text every
    answering prompt carries (its rules), counted when checking context windows. The conversation
    id (`thread_id`) keeps a conversation on one artefact version while a canary runs. A policy
    refusal or a spent budget that refuses raises (`PolicyRefused`, `BudgetExhausted`) before
    anything runs.
    """
    question = check_question(question, settings)
    routed = route_question(question, history, settings, prompt_overhead=prompt_overhead, thread_id=thread_id)
    route, policy = routed.route, routed.policy
    if policy is not None:
        policy.screen()
        if policy.verdict.rule is not None:
            observability.POLICY_DECISIONS.labels(policy.verdict.rule.name, policy.verdict.rule.action).inc()
    context = "\n".join(f"{q}\n{a}" for q, a in routed.turns)
    if policy is not None and policy.tenant:  # a tenant never gets an answer cached for another
        context = f"tenant {policy.tenant}\n{context}"
    cache_scope = cache.scope(context, routed.kb_version)
    if settings.force_route:
        hit, cache_reason = None, "cache bypassed: route forced"
    elif route["route"] == "human" and route["policies"].get("rule"):
        hit, cache_reason = None, f"cache bypassed: policy rule {route['policies']['rule']!r} asks a person"
    else:
        hit, cache_reason = cache.lookup(settings, question, cache_scope)
    route["reasons"].append(cache_reason)
    return TurnStart(
        question=question,
        route=route,
        cache_scope=cache_scope,
        cached=dataclasses.asdict(hit) if hit else None,
        trace_id=uuid.uuid4().hex,
        deadline_at=time.time() + settings.request_deadline_s,
    )


# ---------------------------------------------------------------------------------------------
# Judging a draft
# ---------------------------------------------------------------------------------------------


def judge_turn_draft(
    question: str, draft: Draft, hits: Sequence[Hit], route: RouteDecision, settings: Settings
) -> Verification:
    """Judge a turn's latest draft with its tier's verifier and threshold, and price the verifier's
    own compute. The verifier is the one of the artefact version that routed the turn."""
    small = draft["tier"] == "small"
    threshold = settings.small_accept_threshold if small else settings.large_accept_threshold
    paths = (route.get("versions") or {}).get("paths") or {}
    if not paths:  # a turn routed before versions were recorded
        paths = registry.resolve(settings).paths
    folder = paths.get(draft["tier"])
    started = time.perf_counter()
    verification = judge_draft(
        question,
        draft,
        hits,
        threshold,
        verifier_path=Path(folder) if folder else None,
        default_threshold=HEURISTIC_THRESHOLD if small else LARGE_HEURISTIC_THRESHOLD,
    )
    verification["cost"] = round((time.perf_counter() - started) * settings.verifier_price_per_s, 8)
    effects.draft_judged(settings, verification)
    return verification


# ---------------------------------------------------------------------------------------------
# Review
# ---------------------------------------------------------------------------------------------


def usable_draft(values: TurnValues) -> Draft | None:
    """The latest draft that has text, if any."""
    return next((d for d in reversed(values.get("drafts") or []) if d["text"] and not d["error"]), None)


def allowed_actions(values: TurnValues) -> tuple[ReviewAction, ...]:
    """What a reviewer may do: approve only an existing answer, escalate only to an unused large tier."""
    large_tried = any(d["tier"] == "large" for d in values.get("drafts") or [])
    return tuple(
        action
        for action in REVIEW_ACTIONS
        if (action != "approve" or usable_draft(values))
        and (action != "escalate" or ("large" in values["route"]["allowed_tiers"] and not large_tried))
    )


def review_request(values: TurnValues, case_id: str, settings: Settings) -> ReviewRequest:
    """What the reviewer sees for this case."""
    route = values["route"]
    verifications = values.get("verifications") or []
    drafts = values.get("drafts") or []
    if values.get("review_round"):
        why = "the large model's answer, requested by a reviewer, failed verification"
    elif route["route"] == "human" and (rule := (route.get("policies") or {}).get("rule")):
        why = f"policy rule {rule!r} asks a person"
    elif route["route"] == "human":
        why = "route forced to human review" if route["forced"] else "no tier may answer this query"
    elif drafts and all(d.get("error_kind") == "unreachable" for d in drafts):
        # Only when the configuration asks for review in this case (`unreachable_models`).
        why = describe_unreachable(unreachable_models(drafts, settings))
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
        actions=list(allowed_actions(values)),
        question=values["question"],
        why=why,
        drafts=values.get("drafts") or [],
        verifications=verifications,
        hits=(values.get("retrieval") or {}).get("hits") or [],
        route=route,
    )


def review_withheld(values: TurnValues, *, thread_id: str, settings: Settings) -> dict[str, Any] | None:
    """The turn's end when its service tier has no human review (the policy's `review.allowed`):
    rejected with the tier's message, no case opened. None when review is allowed."""
    policies_in_force = values["route"].get("policies") or {}
    if policies_in_force.get("review", "allowed") == "allowed":
        return None
    case_id = case_id_for(
        thread_id, turn_number(values.get("messages") or []), values.get("review_round") or 0
    )
    message = policies_in_force.get("review_message") or "human review is not part of this service tier"
    effects.review_withheld(settings, values, thread_id=thread_id, case_id=case_id, message=message)
    review = Review(
        case_id=case_id,
        action="reject",
        reviewer=f"policy:{policies_in_force.get('tier') or 'default'}",
        answer=None,
        reason=message,
        resolved_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return {
        "review": review,
        "review_round": (values.get("review_round") or 0) + 1,
        "status": "rejected",
        "answer": None,
        "answered_by": None,
    }


def open_review(values: TurnValues, *, thread_id: str, origin: str, settings: Settings) -> ReviewRequest:
    """Put the turn in the review queue (once per case: this runs again when the turn resumes)."""
    case_id = case_id_for(
        thread_id, turn_number(values.get("messages") or []), values.get("review_round") or 0
    )
    request = review_request(values, case_id, settings)
    effects.review_opened(
        settings, request, thread_id=thread_id, trace_id=values.get("trace_id"), origin=origin
    )
    return request


def verdict_schema(values: TurnValues) -> type[ReviewDecision]:
    """The verdicts this case allows (LangGraph refuses any other and keeps the case pending)."""
    return decision_schema(allowed_actions(values))


def apply_verdict(
    values: TurnValues, decision: ReviewDecision, *, case_id: str, thread_id: str, settings: Settings
) -> dict[str, Any]:
    """Record a reviewer's verdict, and the turn's update for it."""
    approved = usable_draft(values) if decision.action == "approve" else None
    effects.review_resolved(
        settings, values, decision, case_id=case_id, thread_id=thread_id, approved=approved
    )
    review = Review(
        case_id=case_id,
        action=decision.action,
        reviewer=decision.reviewer,
        answer=decision.answer,
        reason=decision.reason,
        resolved_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    update: dict[str, Any] = {"review": review, "review_round": (values.get("review_round") or 0) + 1}
    if decision.action == "escalate":
        update["deadline_at"] = time.time() + settings.request_deadline_s  # the clock starts again
    if decision.action == "reject":
        update |= {"status": "rejected", "answer": None, "answered_by": None}
    return update


# ---------------------------------------------------------------------------------------------
# A turn no model could be reached for
# ---------------------------------------------------------------------------------------------


def refuse_unreachable(values: TurnValues, *, thread_id: str, settings: Settings) -> dict[str, Any]:
    """End a turn without an answer or a review case because no model could be reached; the
    turn's update. The caller raises `ModelsUnreachable` from what the drafts recorded."""
    unreachable = unreachable_models(values.get("drafts") or [], settings)
    effects.turn_unreachable(settings, values, unreachable, thread_id=thread_id)
    return {"status": "unreachable", "answer": None, "answered_by": None}


# ---------------------------------------------------------------------------------------------
# The final answer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalAnswer:
    answer: str
    answered_by: str
    """Model spec, `human:<reviewer>`, or `cache:<spec>`."""
    verified: bool
    """Whether a verifier or a reviewer approved it (only verified answers are cached)."""


def finish_turn(values: TurnValues, *, thread_id: str, settings: Settings) -> FinalAnswer:
    """Make the turn's answer final and record it."""
    final = final_answer(values)
    effects.turn_answered(
        settings,
        values,
        answer=final.answer,
        answered_by=final.answered_by,
        verified=final.verified,
        thread_id=thread_id,
    )
    return final


def final_answer(values: TurnValues) -> FinalAnswer:
    """The answer a turn ends with: cached, written by a reviewer, or the latest usable draft."""
    review = values.get("review")
    cached = values.get("cached")
    if cached:
        return FinalAnswer(cached["answer"], f"cache:{cached['answered_by']}", False)
    if review and review["action"] == "edit":
        return FinalAnswer(review["answer"] or "", f"human:{review['reviewer']}", True)
    draft = usable_draft(values)
    if draft is None:  # routing never accepts without a draft; guard the invariant anyway
        raise RuntimeError("accept reached without an answer")
    index = (values.get("drafts") or []).index(draft)
    checks = values.get("verifications") or []
    verified = bool(review and review["action"] == "approve") or (
        index < len(checks) and checks[index]["passed"]
    )
    return FinalAnswer(draft["text"], draft["model"], verified)
