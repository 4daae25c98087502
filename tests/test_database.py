"""SQLite: the writers of a process take turns instead of sleeping on the file's lock, and a one-row
write goes through the DB-API connection with the same stored values as SQLAlchemy's own path."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from hybrid.database import audit, database_for, insert_ignore, insert_row, reviews, threads, writer_turn
from hybrid.settings import resolve_settings

pytestmark = pytest.mark.integration


def test_a_write_waits_for_the_checkpointers_turn_and_goes_as_soon_as_it_ends() -> None:
    database = database_for(resolve_settings())
    done = threading.Event()
    row = {"thread_id": "t-1", "tenant": "", "created_at": datetime.now(UTC)}

    def claim() -> None:
        insert_ignore(database.engine, threads, row, "thread_id")
        done.set()

    with database.checkpointer.lock:  # LangGraph's saver in the middle of an operation
        writer = threading.Thread(target=claim)
        writer.start()
        assert not done.wait(0.2)  # its turn has not come
    assert done.wait(30)  # SQLite's busy timeout is 30 s: this is the turn, not a retry
    writer.join()
    assert not insert_ignore(database.engine, threads, row, "thread_id")  # written once


def test_the_turn_is_reentrant_for_a_caller_inside_the_checkpointers_operation() -> None:
    database = database_for(resolve_settings())
    with database.checkpointer.lock, writer_turn(database.engine):
        row = {"thread_id": "t-2", "tenant": "", "created_at": datetime.now(UTC)}
        assert insert_ignore(database.engine, threads, row, "thread_id")


def _stored(engine: sa.Engine, table: sa.Table) -> list[dict]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table))]


def test_rows_written_directly_read_back_as_sqlalchemy_writes_them(tmp_path) -> None:
    fast = database_for(resolve_settings()).engine
    reference = sa.create_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    audit.metadata.create_all(reference)
    at = datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=UTC)
    row = {
        "at": at,
        "event": "answered",
        "trace_id": "t",
        "thread_id": "th",
        "case_id": None,
        "actor": None,
        "data": {"route": "small", "reasons": ["a", "é"], "score": 0.25, "nested": {"n": [1, None]}},
        "event_key": None,
    }
    insert_row(fast, audit, row)
    with reference.begin() as connection:  # SQLAlchemy's own path, to compare with
        connection.execute(sa.insert(audit), row)
    assert _stored(fast, audit) == _stored(reference, audit)
    assert _stored(fast, audit)[0]["data"] == row["data"]


def test_a_column_left_out_gets_its_default_and_a_duplicate_key_is_ignored() -> None:
    engine = database_for(resolve_settings()).engine
    now = datetime.now(UTC)
    case = {
        "case_id": "c-1",
        "thread_id": "th",
        "status": "pending",
        "question": "q",
        "request": {"actions": ["approve"]},
        "created_at": now,
        "deadline": now,
    }  # no `origin`: its default is "local"
    assert insert_ignore(engine, reviews, case, "case_id")
    assert not insert_ignore(engine, reviews, {**case, "question": "other"}, "case_id")
    [stored] = _stored(engine, reviews)
    assert stored["origin"] == "local"
    assert (stored["question"], stored["request"]) == ("q", {"actions": ["approve"]})


def test_a_failed_direct_write_raises_sqlalchemys_error_and_leaves_nothing() -> None:
    engine = database_for(resolve_settings()).engine
    row = {"thread_id": "t-3", "tenant": None, "created_at": datetime.now(UTC)}
    with pytest.raises(sa.exc.IntegrityError):  # tenant is NOT NULL
        insert_ignore(engine, threads, row, "thread_id")
    assert _stored(engine, threads) == []
    assert insert_ignore(engine, threads, {**row, "tenant": ""}, "thread_id")  # the connection is usable
