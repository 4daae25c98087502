"""Feedback as labelled examples: users' thumbs and reviewers' verdicts say whether the small model
was good enough for a query, which is exactly what the router learns to predict.

`small_ok` is 1 when the small model's answer was judged good, 0 when it was judged not good
enough, and None when the feedback says nothing about the small model (e.g. a thumbs-up on a
large-model answer to a query the small model never saw).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from hybrid.database import database_for, feedback, insert_ignore, insert_row
from hybrid.settings import Settings


def small_ok_from_rating(rating: Literal["up", "down"], tier: str | None, small_tried: bool) -> int | None:
    """What a user's rating says about the small model."""
    if tier == "small":
        return 1 if rating == "up" else 0
    if small_tried:  # the small draft was not good enough to be shown: escalation was right
        return 0
    return None


def small_ok_from_review(action: str, approved_tier: str | None, small_tried: bool) -> int | None:
    """What a reviewer's verdict says about the small model."""
    if not small_tried:
        return None
    return 1 if action == "approve" and approved_tier == "small" else 0


def _store(settings: Settings, values: dict[str, Any], key: str | None) -> None:
    row = {"at": datetime.now(UTC), **values, "event_key": key}
    engine = database_for(settings).engine
    if key:
        insert_ignore(engine, feedback, row, "event_key")
    else:
        insert_row(engine, feedback, row)


def record_user_feedback(
    settings: Settings, answer: Any, rating: Literal["up", "down"], comment: str | None
) -> None:
    """A thumbs up or down on an `Answer` (the latest rating of an answer counts)."""
    small_tried = any(d["tier"] == "small" for d in answer.drafts)
    _store(
        settings,
        {
            "thread_id": answer.thread_id,
            "trace_id": answer.trace_id,
            "source": "user",
            "rating": rating,
            "comment": comment,
            # A service tier that keeps only hashes of prompts (hybrid.policy) keeps only that here too.
            "question": answer.question
            if (answer.route.get("policies") or {}).get("prompts") != "hash"
            else "sha256:" + hashlib.sha256(answer.question.encode()).hexdigest(),
            "context": "",
            "answered_by": answer.answered_by,
            "tier": answer.tier,
            "small_ok": small_ok_from_rating(rating, answer.tier, small_tried),
        },
        None,
    )


def record_review_feedback(
    settings: Settings,
    *,
    case_id: str,
    thread_id: str,
    trace_id: str | None,
    question: str,
    action: str,
    approved_tier: str | None,
    small_tried: bool,
) -> None:
    """A reviewer's verdict as a label (recorded once per case)."""
    _store(
        settings,
        {
            "thread_id": thread_id,
            "trace_id": trace_id,
            "source": "reviewer",
            "rating": "up" if action == "approve" else "down",
            "comment": action,
            "question": question,
            "context": "",
            "answered_by": None,
            "tier": approved_tier,
            "small_ok": small_ok_from_review(action, approved_tier, small_tried),
        },
        f"{case_id}:feedback",
    )


def labelled_examples(settings: Settings) -> list[dict[str, Any]]:
    """Every feedback row that says something about the small model, oldest first."""
    with database_for(settings).engine.connect() as connection:
        rows = connection.execute(
            sa.select(feedback)
            .where(feedback.c.small_ok.is_not(None))
            .where(~feedback.c.question.startswith("sha256:"))  # kept as a hash only: nothing to learn
            .order_by(feedback.c.id)
        ).all()
    return [
        {"query": row.question, "context": row.context, "label": row.small_ok, "source": row.source}
        for row in rows
    ]
