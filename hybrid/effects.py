"""What a turn writes outside its own state, in one place.

- a draft written: model metrics, compute time per output token, the spend against budgets;
- a draft judged: the verifier's own spend;
- a turn paused for review: the review case (idempotent, keyed by its id), its audit row, metrics;
- a review resolved: the claim confirmed, the audit row, the reviewer's verdict as a routing label,
  metrics;
- a turn answered: the answer cache (verified answers only), metrics, the log line, the audit row.
- a turn no model could be reached for: metrics, the log line, the audit row.

The graph's nodes decide nothing here: they call these after the domain functions decided.
Every write is idempotent by key where a node may run again (code before `interrupt` re-runs on
resume), so a retried step never writes twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from hybrid import audit, budget, cache, costs, drift, observability, reviews
from hybrid.decisions import Draft, ReviewDecision, ReviewRequest, Verification
from hybrid.feedback import record_review_feedback
from hybrid.models import model_version
from hybrid.policy import shifts
from hybrid.settings import Settings

TurnValues = Mapping[str, Any]
"""The turn so far, as the graph's state records it (`graphs.state.State`)."""


def draft_written(settings: Settings, draft: Draft, compute_s: float, *, escalation: bool) -> None:
    """A model answered (or failed): its metrics and its spend."""
    if escalation:
        observability.ESCALATIONS.inc()
    observability.record_draft(draft)  # type: ignore[arg-type]
    costs.observe(draft["model"], compute_s, draft["usage"]["output_tokens"])
    budget.add_spend(settings, draft["cost"])
    if draft["tier"] == "large" and draft.get("error_kind") != "budget":
        shifts.record_large_call(draft["latency_ms"] / 1000)  # what load-aware routing watches


def draft_judged(settings: Settings, verification: Verification) -> None:
    """The verifier's own compute counts against the budget too."""
    budget.add_spend(settings, verification.get("cost", 0.0))


def review_opened(
    settings: Settings, request: ReviewRequest, *, thread_id: str, trace_id: str | None, origin: str
) -> None:
    """A turn paused for a reviewer: the case in the queue and its audit row, once per case id."""
    case_id = request["case_id"]
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
            data={
                "why": request["why"],
                "actions": request["actions"],
                "origin": origin,
                "version": (request["route"].get("versions") or {}).get("version"),
            },
            trace_id=trace_id,
            thread_id=thread_id,
            case_id=case_id,
            key=f"{case_id}:requested",
        )


def review_resolved(
    settings: Settings,
    values: TurnValues,
    decision: ReviewDecision,
    *,
    case_id: str,
    thread_id: str,
    approved: Draft | None,
) -> None:
    """A reviewer's verdict applied: the claim confirmed, audited, kept as a routing label."""
    verdict = decision.model_dump(exclude={"claim"}, exclude_none=True)
    trace_id = values.get("trace_id")
    reviews.confirm(settings, case_id, decision.claim, reviewer=decision.reviewer, decision=verdict)
    audit.record(
        settings,
        "review_resolved",
        data=verdict
        | ({"answer": _kept(values, verdict["answer"], "answers")} if "answer" in verdict else {}),
        trace_id=trace_id,
        thread_id=thread_id,
        case_id=case_id,
        actor=decision.reviewer,
        key=f"{case_id}:resolved",
    )
    record_review_feedback(
        settings,
        case_id=case_id,
        thread_id=thread_id,
        trace_id=trace_id,
        question=_kept(values, values["question"], "prompts") or "",
        action=decision.action,
        approved_tier=approved["tier"] if approved else None,
        small_tried=any(d["tier"] == "small" for d in values.get("drafts") or []),
    )
    observability.REVIEWS.labels(decision.action).inc()
    if decision.action == "reject":
        observability.REQUESTS.labels("human", "rejected").inc()


def review_withheld(
    settings: Settings, values: TurnValues, *, thread_id: str, case_id: str, message: str
) -> None:
    """A turn that needed a reviewer, in a service tier without review: counted and audited."""
    observability.REQUESTS.labels("human", "rejected").inc()
    audit.record(
        settings,
        "review_withheld",
        data={"question": _kept(values, values["question"], "prompts"), "reason": message},
        trace_id=values.get("trace_id"),
        thread_id=thread_id,
        case_id=case_id,
        actor="policy",
        key=f"{case_id}:withheld",
    )


def _kept(values: TurnValues, text: str | None, what: str) -> str | None:
    """Text as the service tier's retention keeps it: itself, or only its SHA-256 (`prompts` or
    `answers: hash` in the policy)."""
    if text is None or not _hashes(values, what):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _hashes(values: TurnValues, what: str) -> bool:
    return ((values.get("route") or {}).get("policies") or {}).get(what) == "hash"


def _kept_review(values: TurnValues) -> Any:
    review = values.get("review")
    if not review or not review.get("answer"):
        return review
    return {**review, "answer": _kept(values, review["answer"], "answers")}


def _answering_tier(values: TurnValues, answered_by: str) -> str:
    if answered_by.startswith("human:"):
        return "human"
    if values.get("cached"):
        return "cache"
    drafts = values.get("drafts") or []
    return next((d["tier"] for d in reversed(drafts) if d["model"] == answered_by), "small")


def turn_answered(
    settings: Settings,
    values: TurnValues,
    *,
    answer: str,
    answered_by: str,
    verified: bool,
    thread_id: str,
) -> None:
    """A turn ended with an answer: cache it if it was verified, count it, log it, audit it."""
    cached = values.get("cached")
    if cached:
        observability.CACHE_HITS.labels(cached["kind"]).inc()
    if verified and not _hashes(values, "prompts"):  # a tier keeping only hashes caches no text
        cache.store(
            settings,
            question=values["question"],
            scope_key=values.get("cache_scope") or "",
            answer=answer,
            answered_by=answered_by,
            trace_id=values.get("trace_id"),
        )
    tier = _answering_tier(values, answered_by)
    observability.REQUESTS.labels(tier, "answered").inc()
    if not cached:
        drift.observe(settings, values)
    observability.logger.info(
        "answered by %s (%s tier) in %.0f ms: %s",
        answered_by,
        tier,
        sum((values.get("timings_ms") or {}).values()),
        (_kept(values, values["question"], "prompts") or "")[:200],
    )
    retrieval = values.get("retrieval") or {}
    audit.record(
        settings,
        "answered",
        data={
            "question": _kept(values, values["question"], "prompts"),
            "answered_by": answered_by,
            "route": values["route"],
            "retrieval": {k: v for k, v in retrieval.items() if k != "hits"}
            | {"sources": [h["source"] for h in retrieval.get("hits", [])]},
            "drafts": [
                {k: d[k] for k in ("tier", "model", "error", "usage", "cost", "latency_ms", "finish_reason")}
                | {"model_version": model_version(d["model"])}
                for d in values.get("drafts") or []
            ],
            "verifications": values.get("verifications") or [],
            "review": _kept_review(values),
            "timings_ms": values.get("timings_ms") or {},
            # What the dashboard charts: spend against sending everything to the large model.
            "cost": costs.request_costs(values, settings),
        },
        trace_id=values.get("trace_id"),
        thread_id=thread_id,
        key=f"{values.get('trace_id')}:answered",
    )


def turn_unreachable(
    settings: Settings, values: TurnValues, unreachable: list[dict[str, str]], *, thread_id: str
) -> None:
    """A turn ended without an answer because no model of any allowed tier could be reached: no
    review case, and the audit row says which models, where, why, and the fix."""
    observability.REQUESTS.labels("none", "unreachable").inc()
    observability.logger.info(
        "no model could be reached (%s): %s",
        "; ".join(f"{m['model']} at {m['endpoint']}: {m['reason']}" for m in unreachable),
        values["question"][:200],
    )
    audit.record(
        settings,
        "models_unreachable",
        data={
            "question": values["question"],
            "route": values["route"],
            "unreachable": unreachable,
            "drafts": [
                {k: d.get(k) for k in ("tier", "model", "error", "error_kind", "usage", "cost", "latency_ms")}
                | {"attempts": d.get("attempts") or []}
                for d in values.get("drafts") or []
            ],
            # What the caller got instead of an answer, and why there is no review case.
            "outcome": "error (ModelsUnreachable): no review case, by the unreachable_models policy",
            "timings_ms": values.get("timings_ms") or {},
        },
        trace_id=values.get("trace_id"),
        thread_id=thread_id,
        key=f"{values.get('trace_id')}:unreachable",
    )
