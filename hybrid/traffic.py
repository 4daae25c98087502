"""Recorded traffic: one record per turn, rebuilt from the audit log, and the figures over it.

A turn is everything audited under one trace id: `answered` (route, drafts, verifications,
timings, costs), `review_requested`, `review_resolved`, `review_expired` and
`models_unreachable`. The dashboard reads only this, so it shows what happened, including in
other processes sharing the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, Field

from hybrid.audit import masked
from hybrid.database import audit, database_for, reviews, threads
from hybrid.settings import Settings

Outcome = Literal["small", "large", "human", "cache", "rejected", "pending", "unreachable"]
OUTCOMES: tuple[Outcome, ...] = ("small", "large", "human", "cache", "rejected", "pending", "unreachable")


class ModelCall(BaseModel):
    """One model call of a turn."""

    model: str
    tier: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost: float
    error: str | None = None


class Check(BaseModel):
    """One verifier judgement of a turn."""

    tier: str
    model: str
    score: float
    passed: bool


class Turn(BaseModel):
    """One question and what became of it, as the audit log recorded it."""

    trace_id: str
    thread_id: str | None
    at: datetime = Field(description="When the turn was first recorded (sent to review, or answered).")
    question: str = Field("", description="As audited: sensitive data masked.")
    outcome: Outcome = Field(
        description="Who answered (small, large, human, cache), or rejected, or still pending review, "
        "or unreachable (no model could be reached: no answer, no review case)."
    )
    answered_by: str | None = None
    escalated: bool = Field(False, description="The large model was called after a small draft.")
    reviewed: bool = Field(False, description="A reviewer was asked.")
    expired: bool = Field(False, description="A review deadline passed and the fallback decided.")
    latency_ms: float | None = Field(None, description="Wall time of the graph's nodes (answered turns).")
    calls: list[ModelCall] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    total_cost: float | None = None
    large_only_cost: float | None = None
    saved: float | None = None
    version: str | None = Field(None, description="The router and verifier version that decided it.")


def _outcome(data: dict[str, Any]) -> Outcome:
    answered_by = data.get("answered_by") or ""
    if data.get("review") or answered_by.startswith("human:"):
        return "human"
    if answered_by.startswith("cache:"):
        return "cache"
    tier = next((d["tier"] for d in reversed(data.get("drafts") or []) if d["model"] == answered_by), "small")
    return "large" if tier == "large" else "small"


def _calls(drafts: list[dict[str, Any]]) -> list[ModelCall]:
    return [
        ModelCall(
            model=d["model"],
            tier=d["tier"],
            latency_ms=d["latency_ms"],
            input_tokens=d["usage"]["input_tokens"],
            output_tokens=d["usage"]["output_tokens"],
            cost=d["cost"],
            error=d.get("error"),
        )
        for d in drafts
    ]


def _checks(verifications: list[dict[str, Any]]) -> list[Check]:
    return [
        Check(tier=v["tier"], model=v["model"], score=v["score"], passed=v["passed"]) for v in verifications
    ]


def _escalated(drafts: list[dict[str, Any]]) -> bool:
    tiers = [d["tier"] for d in drafts]
    return "small" in tiers and "large" in tiers[tiers.index("small") :]


def _turn(trace_id: str, rows: list[dict[str, Any]], case: dict[str, Any] | None) -> Turn:
    """Fold a turn's audit rows (oldest first) and its latest review case into one record."""
    turn = Turn(trace_id=trace_id, thread_id=rows[0]["thread_id"], at=rows[0]["at"], outcome="pending")
    if case is not None:
        # What the reviewer was shown: the only record of drafts of a pending or rejected turn.
        request = case["request"] or {}
        drafts, verifications = request.get("drafts") or [], request.get("verifications") or []
        turn.question = masked(case["question"])
        turn.escalated, turn.calls, turn.checks = _escalated(drafts), _calls(drafts), _checks(verifications)
        turn.total_cost = round(
            sum(d["cost"] for d in drafts) + sum(v.get("cost", 0.0) for v in verifications), 8
        )
        turn.version = ((request.get("route") or {}).get("versions") or {}).get("version")
    for row in rows:
        data, event = row["data"], row["event"]
        if event == "review_requested":
            turn.reviewed = True
            turn.version = data.get("version") or turn.version
        elif event == "review_expired":
            turn.expired = True
        elif event == "review_resolved" and data.get("action") == "reject":
            turn.outcome = "rejected"
        elif event == "models_unreachable":
            drafts = data.get("drafts") or []
            turn.question = data.get("question") or turn.question
            turn.outcome = "unreachable"
            turn.latency_ms = round(sum((data.get("timings_ms") or {}).values()), 2)
            turn.calls = _calls(drafts)
            turn.total_cost = round(sum(d.get("cost") or 0.0 for d in drafts), 8)
        elif event == "answered":
            drafts = data.get("drafts") or []
            cost = data.get("cost") or {}
            turn.question = data.get("question") or turn.question
            turn.outcome = _outcome(data)
            turn.answered_by = data.get("answered_by")
            turn.escalated = _escalated(drafts)
            turn.latency_ms = round(sum((data.get("timings_ms") or {}).values()), 2)
            turn.calls = _calls(drafts)
            turn.checks = _checks(data.get("verifications") or [])
            # Rows written before costs were audited have none: leave them unknown, not zero.
            turn.total_cost = cost.get("total")
            turn.large_only_cost = cost.get("large_only")
            turn.saved = cost.get("saved")
            turn.version = ((data.get("route") or {}).get("versions") or {}).get("version") or turn.version
    return turn


def turns(
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    thread_ids: Sequence[str] | None = None,
    tenant: str | None = None,
) -> list[Turn]:
    """Turns first recorded in [since, until), oldest first (optionally of some conversations
    only, or of one tenant's)."""
    in_range = sa.select(audit.c.trace_id).where(audit.c.trace_id.is_not(None))
    if tenant is not None:
        owned = sa.select(threads.c.thread_id).where(threads.c.tenant == tenant)
        in_range = in_range.where(audit.c.thread_id.in_(owned))
    if since is not None:
        in_range = in_range.where(audit.c.at >= since)
    if until is not None:
        in_range = in_range.where(audit.c.at < until)
    if thread_ids is not None:
        in_range = in_range.where(audit.c.thread_id.in_(list(thread_ids)))
    # Every row of those turns, so a turn that started before `since` is still complete.
    query = sa.select(audit).where(audit.c.trace_id.in_(in_range.distinct())).order_by(audit.c.id)
    engine = database_for(settings).engine
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
        traces = {row["trace_id"] for row in rows}
        # A turn still waiting for review, or rejected, has no `answered` row: its case tells more.
        cases = {
            case["trace_id"]: case
            for case in connection.execute(
                sa.select(reviews.c.trace_id, reviews.c.question, reviews.c.request)
                .where(reviews.c.trace_id.in_(traces))
                .order_by(reviews.c.created_at)
            ).mappings()
        }
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        grouped.setdefault(row["trace_id"], []).append({**row, "at": at})
    result = [_turn(trace, events, cases.get(trace)) for trace, events in grouped.items()]
    result = [t for t in result if (since is None or t.at >= since) and (until is None or t.at < until)]
    return sorted(result, key=lambda t: t.at)


class Summary(BaseModel):
    """Headline figures over some turns."""

    turns: int
    outcomes: dict[str, int] = Field(description="Turns per outcome, every outcome listed.")
    escalation_rate: float = Field(description="Share of turns whose small draft was escalated.")
    review_rate: float = Field(description="Share of turns sent to a reviewer.")
    input_tokens: int
    output_tokens: int
    total_cost: float = Field(description="What every turn cost (rejected and pending ones too).")
    large_only_cost: float = Field(description="What the answered turns would have cost on the large model.")
    saved: float = Field(description="Large-only cost minus actual cost, over the answered turns.")


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summarize(records: Sequence[Turn]) -> Summary:
    """Counts, rates, tokens and costs over `records`."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for turn in records:
        outcomes[turn.outcome] += 1
    compared = [t for t in records if t.large_only_cost is not None]
    return Summary(
        turns=len(records),
        outcomes=outcomes,
        escalation_rate=_rate(sum(t.escalated for t in records), len(records)),
        review_rate=_rate(sum(t.reviewed for t in records), len(records)),
        input_tokens=sum(c.input_tokens for t in records for c in t.calls),
        output_tokens=sum(c.output_tokens for t in records for c in t.calls),
        total_cost=round(sum(t.total_cost or 0.0 for t in records), 8),
        large_only_cost=round(sum(t.large_only_cost or 0.0 for t in compared), 8),
        saved=round(sum(t.saved or 0.0 for t in compared), 8),
    )


class ModelLatency(BaseModel):
    """Latency of one model's successful calls."""

    model: str
    tier: str
    calls: int
    p50_ms: float
    p95_ms: float


def latency_by_model(records: Iterable[Turn]) -> list[ModelLatency]:
    """p50 and p95 latency of each model's successful calls (linear interpolation between calls)."""
    by_model: dict[tuple[str, str], list[float]] = {}
    for turn in records:
        for call in turn.calls:
            if call.error is None:
                by_model.setdefault((call.model, call.tier), []).append(call.latency_ms)
    return [
        ModelLatency(
            model=model,
            tier=tier,
            calls=len(values),
            p50_ms=round(float(np.percentile(values, 50)), 2),
            p95_ms=round(float(np.percentile(values, 95)), 2),
        )
        for (model, tier), values in sorted(by_model.items())
    ]
