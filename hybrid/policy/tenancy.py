"""Tenancy as a security boundary: every conversation belongs to the tenant whose key started it,
and a tenant's key may only see and act on its own.

The owner is recorded before a conversation's first turn runs (by the façade, or by the
`langgraph dev` auth handler when a thread is created), in one table every replica shares. Review
cases, audit rows and feedback all carry their conversation's id, so "this tenant's" means "of a
conversation this tenant owns". Conversations started without a tenant (the operator's, or from
before tenancy) belong to "" and only admins see them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from hybrid.database import database_for, insert_ignore, threads
from hybrid.errors import Forbidden
from hybrid.policy.callers import Caller
from hybrid.settings import Settings


def owner(settings: Settings, thread_id: str) -> str | None:
    """The tenant a conversation belongs to ("" for none), or None if it was never recorded."""
    with database_for(settings).engine.connect() as connection:
        return connection.execute(
            sa.select(threads.c.tenant).where(threads.c.thread_id == thread_id)
        ).scalar_one_or_none()


def owners(settings: Settings, thread_ids: Iterable[str]) -> dict[str, str]:
    """The recorded owner of each of these conversations."""
    ids = list(dict.fromkeys(thread_ids))
    if not ids:
        return {}
    with database_for(settings).engine.connect() as connection:
        rows = connection.execute(
            sa.select(threads.c.thread_id, threads.c.tenant).where(threads.c.thread_id.in_(ids))
        )
        return {row.thread_id: row.tenant for row in rows}


def _forbidden(thread_id: str) -> Forbidden:
    # The same answer whether the conversation is another tenant's or does not exist at all: a
    # key learns nothing about conversations that are not its own.
    return Forbidden(f"this key may not see conversation {thread_id}")


def check(settings: Settings, caller: Caller, thread_id: str) -> None:
    """Raise `Forbidden` unless the caller may see this conversation (admins see all)."""
    if caller.admin:
        return
    if owner(settings, thread_id) != caller.tenant:
        raise _forbidden(thread_id)


def claim(settings: Settings, caller: Caller, thread_id: str, exists: Callable[[], bool]) -> None:
    """Before a turn runs: record a new conversation as the caller's, or check an existing one is.

    `exists` says whether the conversation already has turns; one without a recorded owner (from
    before tenancy) is left to admins."""
    current = owner(settings, thread_id)
    if current is None:
        if not caller.admin and exists():
            raise _forbidden(thread_id)
        # Unless a concurrent first turn recorded it first, the owner is the one just recorded.
        current = caller.owner if record(settings, thread_id, caller.owner) else owner(settings, thread_id)
    if not caller.admin and current != caller.tenant:
        raise _forbidden(thread_id)


def record(settings: Settings, thread_id: str, tenant: str) -> bool:
    """Record a conversation's owner unless it has one; True if this recorded it."""
    return insert_ignore(
        database_for(settings).engine,
        threads,
        {"thread_id": thread_id, "tenant": tenant, "created_at": datetime.now(UTC)},
        "thread_id",
    )


def owned_by(tenant: str) -> sa.Select:
    """The ids of a tenant's conversations, as a subquery for filtering other tables."""
    return sa.select(threads.c.thread_id).where(threads.c.tenant == tenant)


def visible(settings: Settings, caller: Caller, thread_ids: Iterable[str]) -> set[str]:
    """Which of these conversations the caller may see."""
    ids = set(thread_ids)
    if caller.admin:
        return ids
    return {thread for thread, tenant in owners(settings, ids).items() if tenant == caller.tenant}
