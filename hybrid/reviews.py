"""The review queue: one row per case, with an atomic claim so each case is resolved exactly once.

The graph's checkpoint is the source of truth for a case's state; this table indexes the cases
and arbitrates between reviewers. A resolution claims its case first (`pending` → `claimed`, a
compare-and-set in the database), so of two reviewers acting at once exactly one resumes the
graph and the other is told who got there first. A claim whose resolution never finished (the
process died) expires after a lease and the case is claimable again; a case whose checkpoint
shows it was applied is marked resolved the next time anyone looks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hybrid.database import database_for, insert_ignore, reviews
from hybrid.errors import CaseAlreadyResolved, ConversationNotFound
from hybrid.settings import Settings


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class Case:
    """A review case as recorded in the queue."""

    case_id: str
    thread_id: str
    trace_id: str | None
    status: str
    origin: str
    question: str
    request: dict[str, Any]
    created_at: datetime
    deadline: datetime
    reviewer: str | None
    action: str | None
    claimed_at: datetime | None
    resolved_at: datetime | None
    claim_token: str | None

    @classmethod
    def from_row(cls, row: Any) -> Case:
        return cls(
            case_id=row.case_id,
            thread_id=row.thread_id,
            trace_id=row.trace_id,
            status=row.status,
            origin=row.origin,
            question=row.question,
            request=row.request,
            created_at=_aware(row.created_at),  # type: ignore[arg-type]
            deadline=_aware(row.deadline),  # type: ignore[arg-type]
            reviewer=row.reviewer,
            action=row.action,
            claimed_at=_aware(row.claimed_at),
            resolved_at=_aware(row.resolved_at),
            claim_token=row.claim_token,
        )

    def describe(self) -> str:
        """Who has the case, for a reviewer who came second."""
        when = (self.resolved_at or self.claimed_at or self.created_at).isoformat(timespec="seconds")
        verb = "already resolved" if self.status == "resolved" else "being resolved"
        return f"{verb} ({self.action}) by {self.reviewer} at {when}"


def case_id_for(thread_id: str, turn: int, round_: int) -> str:
    """A case's id: the conversation, the question's turn, and the review round within it."""
    return f"{thread_id}:{turn}:{round_}"


def case_position(case_id: str) -> tuple[int, int]:
    """(turn, round) of a case id."""
    _, turn, round_ = case_id.rsplit(":", 2)
    return int(turn), int(round_)


def open_case(
    settings: Settings,
    *,
    case_id: str,
    thread_id: str,
    trace_id: str | None,
    request: dict,
    origin: str = "local",
) -> bool:
    """Record a new pending case; True if it was new (recording it again changes nothing)."""
    created = now()
    return insert_ignore(
        database_for(settings).engine,
        reviews,
        {
            "case_id": case_id,
            "thread_id": thread_id,
            "trace_id": trace_id,
            "status": "pending",
            "origin": origin,
            "question": request["question"],
            "request": request,
            "created_at": created,
            "deadline": created + timedelta(seconds=settings.review_timeout_s),
        },
        "case_id",
    )


def get_case(settings: Settings, case_id: str) -> Case | None:
    """A case by id."""
    with database_for(settings).engine.connect() as connection:
        row = connection.execute(sa.select(reviews).where(reviews.c.case_id == case_id)).first()
    return Case.from_row(row) if row else None


def latest_case(settings: Settings, thread_id: str) -> Case | None:
    """The newest case of a conversation."""
    with database_for(settings).engine.connect() as connection:
        row = connection.execute(
            sa.select(reviews)
            .where(reviews.c.thread_id == thread_id)
            .order_by(reviews.c.created_at.desc(), reviews.c.case_id.desc())
            .limit(1)
        ).first()
    return Case.from_row(row) if row else None


def open_cases(settings: Settings, origin: str = "local") -> list[Case]:
    """Cases not resolved yet (pending, or claimed by a resolution in progress), oldest first."""
    with database_for(settings).engine.connect() as connection:
        rows = connection.execute(
            sa.select(reviews)
            .where(reviews.c.status.in_(("pending", "claimed")))
            .where(reviews.c.origin == origin)
            .order_by(reviews.c.created_at, reviews.c.case_id)
        ).all()
    return [Case.from_row(row) for row in rows]


def claim(settings: Settings, case_id: str, *, reviewer: str, decision: dict[str, Any]) -> str:
    """Take a case for resolution; returns the claim token. Raises `CaseAlreadyResolved` if someone has it."""
    token = uuid.uuid4().hex
    at = now()
    stale = at - timedelta(seconds=settings.review_claim_lease_s)
    with database_for(settings).engine.begin() as connection:
        result = connection.execute(
            sa.update(reviews)
            .where(reviews.c.case_id == case_id)
            .where(
                (reviews.c.status == "pending")
                | ((reviews.c.status == "claimed") & (reviews.c.claimed_at < stale))
            )
            .values(
                status="claimed",
                claim_token=token,
                claimed_at=at,
                reviewer=reviewer,
                action=decision.get("action"),
                decision=decision,
            )
        )
    if result.rowcount != 1:
        current = get_case(settings, case_id)
        if current is None:
            raise ConversationNotFound(f"no review case {case_id}")
        raise CaseAlreadyResolved(f"case {current.thread_id} is {current.describe()}")
    return token


def confirm(settings: Settings, case_id: str, token: str | None, *, reviewer: str, decision: dict) -> str:
    """Inside the graph: check the verdict holds the case's claim.

    A verdict without a claim came straight to the graph (a LangGraph server's API): the case is
    claimed and recorded resolved here, as no façade is there to do it afterwards.
    """
    if token is None:
        token = claim(settings, case_id, reviewer=reviewer, decision=decision)
        mark_resolved(settings, case_id, reviewer=reviewer, action=decision.get("action"))
        return token
    current = get_case(settings, case_id)
    if current is None or current.claim_token != token:
        raise CaseAlreadyResolved(
            f"case {case_id} is {current.describe()}" if current else f"no review case {case_id}"
        )
    return token


def release(settings: Settings, case_id: str, token: str) -> None:
    """Give a claimed case back (its resolution failed), so it can be resolved again."""
    with database_for(settings).engine.begin() as connection:
        connection.execute(
            sa.update(reviews)
            .where(
                (reviews.c.case_id == case_id)
                & (reviews.c.claim_token == token)
                & (reviews.c.status == "claimed")
            )
            .values(
                status="pending", claim_token=None, claimed_at=None, reviewer=None, action=None, decision=None
            )
        )


def mark_resolved(settings: Settings, case_id: str, *, reviewer: str | None, action: str | None) -> None:
    """Record that the case's verdict is applied to the conversation."""
    with database_for(settings).engine.begin() as connection:
        values: dict[str, Any] = {"status": "resolved", "resolved_at": now()}
        if reviewer:
            values["reviewer"] = reviewer
        if action:
            values["action"] = action
        connection.execute(sa.update(reviews).where(reviews.c.case_id == case_id).values(**values))
