"""SQLite: the writers of a process take turns instead of sleeping on the file's lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from hybrid.database import database_for, insert_ignore, threads, writer_turn
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
