"""The audit log: every decision, appended, in the same database as the conversations."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from hybrid.database import audit, database_for, insert_ignore, insert_row, threads
from hybrid.sensitivity import mask
from hybrid.settings import Settings

EXPORT_COLUMNS = ("id", "at", "event", "trace_id", "thread_id", "case_id", "actor", "data")


def masked(value: Any) -> Any:
    """A JSON value with sensitive data masked in every string (the audit log never holds it)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    return value


def record(
    settings: Settings,
    event: str,
    *,
    data: dict[str, Any],
    trace_id: str | None = None,
    thread_id: str | None = None,
    case_id: str | None = None,
    actor: str | None = None,
    key: str | None = None,
) -> None:
    """Append an event. With a `key`, recording the same event again (a node re-run) adds nothing."""
    values = {
        "at": datetime.now(UTC),
        "event": event,
        "trace_id": trace_id,
        "thread_id": thread_id,
        "case_id": case_id,
        "actor": actor,
        "data": masked(json.loads(json.dumps(data, default=str))),
        "event_key": key,
    }
    engine = database_for(settings).engine
    if key:
        insert_ignore(engine, audit, values, "event_key")
    else:
        insert_row(engine, audit, values)


def events(
    settings: Settings,
    *,
    since: datetime | None = None,
    thread_id: str | None = None,
    tenant: str | None = None,
) -> list[dict]:
    """Events in order, optionally since a time, for one conversation, or of one tenant's
    conversations (`hybrid.policy.tenancy`)."""
    query = sa.select(audit).order_by(audit.c.id)
    if tenant is not None:
        query = query.where(
            audit.c.thread_id.in_(sa.select(threads.c.thread_id).where(threads.c.tenant == tenant))
        )
    if since is not None:
        query = query.where(audit.c.at >= since)
    if thread_id is not None:
        query = query.where(audit.c.thread_id == thread_id)
    with database_for(settings).engine.connect() as connection:
        rows = connection.execute(query).all()
    out = []
    for row in rows:
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
        out.append({column: getattr(row, column) for column in EXPORT_COLUMNS} | {"at": at.isoformat()})
    return out


def export(
    settings: Settings,
    *,
    since: datetime | None = None,
    fmt: Literal["jsonl", "csv"] = "jsonl",
    tenant: str | None = None,
) -> Iterator[str]:
    """The audit log as JSON lines or CSV rows (the `data` column as JSON text)."""
    rows = events(settings, since=since, tenant=tenant)
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(row | {"data": json.dumps(row["data"])})
    yield buffer.getvalue()
