"""Conversations as people see them: a list to reopen, every turn of one, ratings per answer.

The list comes from the audit log (one row per conversation that got an answer or a review
case, in any process sharing the database); the turns come from the conversation's checkpoints,
so a reopened conversation shows exactly the `Answer` records it showed when it was live.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field

from hybrid import traffic
from hybrid.database import audit, database_for, feedback
from hybrid.errors import ConversationNotFound, NoAnswer
from hybrid.policy import authenticate, tenancy
from hybrid.settings import resolve_settings
from hybrid.threads import Answer, build_answer, compiled_graph, thread_config


class Conversation(BaseModel):
    """One conversation in a list of them."""

    thread_id: str
    title: str = Field(description="Its first question, as audited (sensitive data masked).")
    started_at: datetime
    updated_at: datetime
    turns: int
    status: traffic.Outcome = Field(description="Outcome of its latest turn (`pending` while in review).")


def conversations(limit: int = 50, *, key: str | None = None) -> list[Conversation]:
    """Recent conversations, most recently active first (with a tenant's `key`: its own)."""
    settings = resolve_settings()
    tenant = authenticate(settings, key).tenant
    latest = sa.func.max(audit.c.at).label("latest")
    query = (
        sa.select(audit.c.thread_id, latest)
        .where(audit.c.thread_id.is_not(None), audit.c.trace_id.is_not(None))
        .group_by(audit.c.thread_id)
        .order_by(latest.desc())
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(audit.c.thread_id.in_(tenancy.owned_by(tenant)))
    with database_for(settings).engine.connect() as connection:
        thread_ids = [row.thread_id for row in connection.execute(query)]
    by_thread: dict[str, list[traffic.Turn]] = {}
    for turn in traffic.turns(settings, thread_ids=thread_ids):
        by_thread.setdefault(turn.thread_id or "", []).append(turn)
    result = [
        Conversation(
            thread_id=thread_id,
            title=turns[0].question or "(untitled)",
            started_at=turns[0].at,
            updated_at=turns[-1].at,
            turns=len(turns),
            status=turns[-1].outcome,
        )
        for thread_id in thread_ids
        if (turns := by_thread.get(thread_id))
    ]
    return sorted(result, key=lambda c: c.updated_at, reverse=True)


def conversation(thread_id: str, *, key: str | None = None) -> list[Answer]:
    """Every turn of a conversation, oldest first, each as the `Answer` it ended with.

    A turn ends when the graph finishes (answered or rejected) or pauses for a reviewer; a turn
    that never got there (the process died mid-answer) is left out. Raises
    `ConversationNotFound` if there is no such conversation; `Forbidden` if a tenant's `key` asks
    for another's.
    """
    settings = resolve_settings()
    tenancy.check(settings, authenticate(settings, key), thread_id)
    graph = compiled_graph(settings)
    answers = []
    for index, snapshot in enumerate(graph.get_state_history(thread_config(thread_id))):
        # Newest first. Only the newest snapshot can be paused on a review: asking again is
        # refused while one is pending, and resolving it moves the conversation on.
        if (index == 0 and snapshot.interrupts) or (not snapshot.next and snapshot.values.get("route")):
            answers.append(build_answer(thread_id, snapshot.values, snapshot.interrupts, settings))
    if not answers and not graph.get_state(thread_config(thread_id)).values:
        raise ConversationNotFound(f"no conversation with thread id {thread_id!r}")
    return answers[::-1]


def rate(
    thread_id: str,
    trace_id: str,
    rating: Literal["up", "down"],
    *,
    comment: str | None = None,
    key: str | None = None,
) -> None:
    """Record a thumbs up or down on one answer of a conversation (`feedback` rates the latest)."""
    from hybrid.feedback import record_user_feedback

    answer = next((a for a in conversation(thread_id, key=key) if a.trace_id == trace_id), None)
    if answer is None:
        raise ConversationNotFound(f"conversation {thread_id} has no turn {trace_id!r}")
    if answer.status != "answered":
        raise NoAnswer(f"conversation {thread_id} has no answer to rate ({answer.status})")
    record_user_feedback(resolve_settings(), answer, rating, comment)


def ratings(thread_id: str, *, key: str | None = None) -> dict[str, str]:
    """The latest user rating of each rated answer of a conversation: trace id → `up` or `down`."""
    settings = resolve_settings()
    tenancy.check(settings, authenticate(settings, key), thread_id)
    query = (
        sa.select(feedback.c.trace_id, feedback.c.rating)
        .where(feedback.c.thread_id == thread_id, feedback.c.source == "user")
        .order_by(feedback.c.id)
    )
    with database_for(settings).engine.connect() as connection:
        return {row.trace_id: row.rating for row in connection.execute(query) if row.trace_id}
