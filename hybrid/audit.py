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
    """`value` as JSON would hold it, with sensitive data masked in every string (the audit log
    never holds it): tuples become lists, keys strings, and anything JSON has no type for its
    `str()`, masked too.

    The same value `json.loads(json.dumps(value, default=str))` gives, masked, in one walk: the
    database's JSON column serialises it once more anyway (tests/test_properties.py compares the two)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {_json_key(k): masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask(str(value))


def _json_key(key: Any) -> str:
    """A dict key as `json.dumps` writes it."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | float):
        return json.dumps(key)
    if isinstance(key, int):
        return str(int(key))  # an IntEnum as its number
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


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
        "data": masked(data),
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
