"""The database layer on a real PostgreSQL: replicas that start together, and a restart under it."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from hybrid import database
from tests.servers import _postgres_bindir, fresh_database, postgres_server

pytestmark = pytest.mark.e2e
CONFIG = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


def test_replicas_creating_the_tables_at_once_do_not_collide(postgres_admin_url: str) -> None:
    url = fresh_database(postgres_admin_url)
    opened: list[database.Database] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(database._postgres(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with opened[0].engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(database.reviews)).scalar() == 0
    finally:
        for db in opened:
            db.close()


def test_a_postgresql_restart_delays_queries_instead_of_failing_them() -> None:
    with postgres_server() as admin:
        url = fresh_database(admin)
        db = database._postgres(url)
        try:
            with db.engine.connect() as connection:  # a pooled connection, and a checkpointer one
                connection.execute(sa.text("SELECT 1"))
            assert (
                db.checkpointer.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}) is None
            )

            _restart(admin)

            with db.engine.connect() as connection:  # the stale connection is replaced, not used
                assert connection.execute(sa.text("SELECT 1")).scalar() == 1
            assert (
                db.checkpointer.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}) is None
            )
            assert database.is_unavailable(sa.exc.OperationalError("x", {}, Exception("down")))
        finally:
            db.close()


def _restart(admin_url: str) -> None:
    """`pg_ctl restart -m fast` on the server behind `admin_url` (tests.servers' layout)."""
    import psycopg

    with psycopg.connect(admin_url) as connection:
        data = connection.execute("SHOW data_directory").fetchone()[0]
    as_postgres = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") and _root() else []
    log = str(Path(data).parent / "log")
    subprocess.run(
        [
            *as_postgres,
            str(_postgres_bindir() / "pg_ctl"),
            "-D",
            data,
            "-l",
            log,
            "-m",
            "fast",
            "-w",
            "restart",
        ],
        check=True,
        capture_output=True,
    )


def _root() -> bool:
    import os

    return os.geteuid() == 0
