"""The database: LangGraph checkpoints plus our own tables (review cases, audit log, feedback,
conversation owners, spend and rate limits, the answer cache, the registry of router and verifier
versions, shadow pairs).

SQLite in the data directory by default; PostgreSQL when `HYBRID_CHECKPOINT_URL` is a
`postgresql://` URL, so several processes or machines share one review queue. Our tables go
through SQLAlchemy Core, which speaks both.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from langgraph.checkpoint.base import BaseCheckpointSaver

from hybrid.settings import Settings

metadata = sa.MetaData()

reviews = sa.Table(
    "hybrid_reviews",
    metadata,
    sa.Column("case_id", sa.String(200), primary_key=True),
    sa.Column("thread_id", sa.String(200), nullable=False, index=True),
    sa.Column("trace_id", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending | claimed | resolved
    # local: our checkpointer holds the conversation; langgraph-api: a LangGraph server's store does
    sa.Column("origin", sa.String(20), nullable=False, default="local"),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claim_token", sa.String(64)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("reviewer", sa.String(200)),
    sa.Column("action", sa.String(16)),
    sa.Column("decision", sa.JSON),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
)

audit = sa.Table(
    "hybrid_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("trace_id", sa.String(64), index=True),
    sa.Column("thread_id", sa.String(200), index=True),
    sa.Column("case_id", sa.String(200)),
    sa.Column("actor", sa.String(200)),
    sa.Column("data", sa.JSON, nullable=False),
    # Events a node may record again when LangGraph re-runs it carry a key, so they land once.
    sa.Column("event_key", sa.String(300), unique=True),
)

feedback = sa.Table(
    "hybrid_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("thread_id", sa.String(200), nullable=False, index=True),
    sa.Column("trace_id", sa.String(64)),
    sa.Column("source", sa.String(16), nullable=False),  # user | reviewer
    sa.Column("rating", sa.String(8), nullable=False),  # up | down
    sa.Column("comment", sa.Text),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=False, default=""),
    sa.Column("answered_by", sa.String(200)),
    sa.Column("tier", sa.String(16)),
    sa.Column("small_ok", sa.Integer),  # the label the router learns: 1 small sufficed, 0 it did not
    sa.Column("event_key", sa.String(300), unique=True),
)


answer_cache = sa.Table(
    "hybrid_answer_cache",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(64), nullable=False, index=True),  # context hash + knowledge-base version
    sa.Column("normalized", sa.Text, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("embedding", sa.LargeBinary),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("answered_by", sa.String(200), nullable=False),
    sa.Column("trace_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("scope", "normalized", name="uq_cache_scope_question"),
)

spend = sa.Table(
    "hybrid_spend",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),  # UTC date, YYYY-MM-DD
    sa.Column("user_id", sa.String(200), primary_key=True),  # "" for requests without a user
    sa.Column("cost", sa.Float, nullable=False, default=0.0),
)

artifact_versions = sa.Table(
    "hybrid_artifact_versions",
    metadata,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),  # what it was trained on, its labels and metrics
    sa.Column("archive", sa.LargeBinary, nullable=False),  # the artefact folder, tar.gz
)

artifact_events = sa.Table(
    "hybrid_artifact_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # promote | rollback | canary | canary_stop
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("share", sa.Float),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text),
)

shadow_pairs = sa.Table(
    "hybrid_shadow_pairs",
    metadata,
    sa.Column("trace_id", sa.String(64), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("thread_id", sa.String(200), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("passages", sa.JSON, nullable=False),
    sa.Column("retrieval_confidence", sa.Float),
    sa.Column("answered_by", sa.String(200)),
    sa.Column("route", sa.JSON, nullable=False),  # the route taken, need_large, artefact versions
    sa.Column("small", sa.JSON),  # each tier's draft (text, model, cost, latency, signals)
    sa.Column("large", sa.JSON),
    sa.Column("shadow_tier", sa.String(8)),  # the tier run in the background; None: both drafts existed
    sa.Column("shadow_outcome", sa.String(16), nullable=False),  # ok | timeout | failed | observed
    sa.Column("shadow_cost", sa.Float, nullable=False, default=0.0),
    sa.Column("reference", sa.JSON),  # reference answers, when the question came from an evaluation set
    sa.Column("version", sa.String(64), index=True),
    sa.Column("labels", sa.JSON),  # filled by hybrid.tuning.labels (judge verdicts are kept here)
)


# Policies (hybrid.policy): who owns each conversation, what each tenant spent, each key's rate.
threads = sa.Table(
    "hybrid_threads",
    metadata,
    sa.Column("thread_id", sa.String(200), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False, index=True),  # "" for the operator's own
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

tenant_spend = sa.Table(
    "hybrid_tenant_spend",
    metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),  # "" for requests without a tenant
    sa.Column("period", sa.String(10), primary_key=True),  # UTC day YYYY-MM-DD, or month YYYY-MM
    # Spent, plus what calls in flight hold (a call holds its most, then settles to its cost).
    sa.Column("cost", sa.Float, nullable=False, default=0.0),
)

rate_limits = sa.Table(
    "hybrid_rate_limits",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("tat", sa.Float, nullable=False),  # GCRA's theoretical arrival time, epoch seconds
)


@dataclass
class Database:
    """One database: the SQLAlchemy engine for our tables and the LangGraph checkpointer."""

    url: str
    engine: sa.Engine
    checkpointer: BaseCheckpointSaver
    _closers: list[Any]

    def close(self) -> None:
        for close in self._closers:
            close()
        self.engine.dispose()


def _sqlite(settings: Settings) -> Database:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = settings.database_path
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    # WAL: readers do not block the writer. synchronous=NORMAL, SQLite's advice for WAL: durable
    # across process crashes; a power cut may lose the last commits. FULL cost an fsync per step.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    checkpointer = SqliteSaver(connection)
    checkpointer.setup()
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
    # The checkpointer holds its lock for each of its operations: the hot writers share it.
    checkpointer.lock = _writer_turns[engine] = threading.RLock()

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    return Database(f"sqlite:///{path}", engine, checkpointer, [connection.close])


# How long a request waits for PostgreSQL to come back (a restart, a fail-over) before it fails:
# a restart here takes 1-3 s, so the requests of those seconds are answered late, not refused.
RECONNECT_S = 30.0


def _postgres(url: str) -> Database:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        # A connection the server closed (restart) is found and replaced when taken, not used;
        # while the server is down, taking one waits for the pool to reconnect.
        check=ConnectionPool.check_connection,
        timeout=RECONNECT_S,
        reconnect_timeout=300,
        open=True,
    )
    checkpointer = PostgresSaver(pool)
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), pool_pre_ping=True, pool_timeout=RECONNECT_S
    )

    @sa.event.listens_for(engine, "do_connect")
    def _connect_when_back(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        import psycopg

        deadline = time.monotonic() + RECONNECT_S
        delay = 0.1
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except psycopg.OperationalError:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(1.0, delay * 2)

    # Replicas that start together would create the same tables at once and collide (measured:
    # "duplicate key ... checkpoint_migrations" on a fresh database): one at a time. The others
    # try the lock again and again rather than wait inside a statement: the checkpointer's
    # CREATE INDEX CONCURRENTLY waits for every open statement, a waiting one included.
    with pool.connection() as connection:
        try_lock = "SELECT pg_try_advisory_lock(%s) AS taken"
        while not connection.execute(try_lock, (SCHEMA_LOCK,)).fetchone()["taken"]:
            time.sleep(0.1)
        try:
            checkpointer.setup()
            metadata.create_all(engine)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    return Database(url, engine, checkpointer, [pool.close])


SCHEMA_LOCK = 0x487962726964  # any constant: the key of the advisory lock taken to create tables


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached right now (retry later), as opposed
    to a bug or bad data."""
    import sqlalchemy.exc

    try:
        import psycopg
        from psycopg_pool import PoolTimeout
    except ImportError:  # SQLite only
        return isinstance(error, sqlalchemy.exc.OperationalError)
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sqlalchemy.exc.OperationalError | psycopg.OperationalError | PoolTimeout)


# SQLite lets one transaction write at a time, and a writer that finds the file locked sleeps (1 ms,
# then 2, 5, 10 ... ms) before it tries again, however soon the lock is free: under load, requests
# slept on it several times each. The writers of every request (a conversation's claim, its audit
# rows, LangGraph's checkpoints) take turns on one lock of this process instead, the next going as
# soon as the last commits (docs/benchmarks.md). Reentrant: the checkpointer holds it while a
# caller iterates `list`. PostgreSQL locks rows, not the whole database: no turns there.
_writer_turns: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()


def writer_turn(engine: sa.Engine) -> contextlib.AbstractContextManager[Any]:
    """Hold around a short write transaction on `engine` (nothing to hold on PostgreSQL)."""
    return _writer_turns.get(engine) or contextlib.nullcontext()


def insert_ignore(engine: sa.Engine, table: sa.Table, values: dict[str, Any], key: str | list[str]) -> bool:
    """Insert a row unless one with the same `key` (column or unique columns) exists; True if inserted.

    Atomic on both engines."""
    statement = _insert_ignore(engine.dialect.name, table, (key,) if isinstance(key, str) else tuple(key))
    return _write(engine, statement, values) is not None


def insert_row(engine: sa.Engine, table: sa.Table, values: dict[str, Any]) -> None:
    """Insert a row, in a transaction of its own."""
    _write(engine, _insert(table), values)


@lru_cache(maxsize=64)
def _insert_ignore(dialect: str, table: sa.Table, keys: tuple[str, ...]) -> Any:
    # One statement per table, the values bound per call: a statement built with its values is
    # built and keyed for SQLAlchemy's compiled cache again on every insert, twice the insert's time.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT.
    return insert(table).on_conflict_do_nothing(index_elements=list(keys)).returning(table.c[keys[0]])


@lru_cache(maxsize=64)
def _insert(table: sa.Table) -> Any:
    return sa.insert(table)


def _write(engine: sa.Engine, statement: Any, values: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run a one-statement write transaction; the first row it returns, if any.

    On SQLite the statement is compiled once per set of columns and run on the pool's DB-API
    connection: SQLAlchemy's per-execution work (compiled-cache lookup, parameter processing,
    result wrapping) cost as much as SQLite's own insert and commit, for the conversation's claim
    and the audit row of every request (docs/benchmarks.md). The parameters still go through each
    column type's own bind processor, so the stored values are the same."""
    if engine.dialect.name == "sqlite":
        prepared = _sqlite_prepared(engine.dialect, statement, tuple(values))
        if prepared is not None:
            return _sqlite_write(engine, prepared, values)
    with writer_turn(engine), engine.begin() as connection:
        return connection.execute(statement, values).first()


@dataclass(frozen=True)
class _Prepared:
    sql: str
    # Per positional parameter: the column, its constant default when `values` leaves it out
    # (_ABSENT: it must be given), and its type's bind processor.
    parameters: tuple[tuple[str, Any, Any], ...]


_ABSENT = object()


@lru_cache(maxsize=256)
def _sqlite_prepared(dialect: sa.Dialect, statement: Any, columns: tuple[str, ...]) -> _Prepared | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    table = statement.table
    parameters = []
    for name in compiled.positiontup or ():
        default: Any = _ABSENT
        if name not in columns:
            column_default = table.c[name].default  # an insert's parameters are its columns
            if column_default is None or not column_default.is_scalar:
                return None  # a default computed per row: SQLAlchemy's own path runs it
            default = column_default.arg
        column_type = compiled.binds[name].type.dialect_impl(dialect)  # SQLite's DATETIME, not DateTime
        parameters.append((name, default, column_type.bind_processor(dialect)))
    return _Prepared(str(compiled), tuple(parameters))


def _sqlite_write(engine: sa.Engine, prepared: _Prepared, values: dict[str, Any]) -> tuple[Any, ...] | None:
    parameters = []
    for name, default, process in prepared.parameters:
        value = values[name] if default is _ABSENT else values.get(name, default)
        parameters.append(process(value) if process is not None else value)
    with writer_turn(engine):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(prepared.sql, parameters)
                row = cursor.fetchone()
            finally:
                cursor.close()
            connection.commit()
        except engine.dialect.loaded_dbapi.Error as exc:
            connection.rollback()
            # The same exception types as SQLAlchemy's own path (callers tell transient ones apart).
            raise sa.exc.DBAPIError.instance(
                prepared.sql, parameters, exc, engine.dialect.loaded_dbapi.Error, dialect=engine.dialect
            ) from exc
        finally:
            connection.close()  # back to the pool
    return None if row is None else tuple(row)


_databases: dict[str, Database] = {}
_lock = threading.Lock()


def database_for(settings: Settings) -> Database:
    """The configured database, opened (and its tables created) once per process."""
    key = settings.checkpoint_url or f"sqlite:///{settings.database_path}"
    with _lock:
        if key not in _databases:
            if settings.checkpoint_url:
                if not settings.checkpoint_url.startswith(("postgresql://", "postgres://")):
                    raise ValueError("HYBRID_CHECKPOINT_URL must be a postgresql:// URL")
                opened = _postgres(settings.checkpoint_url.replace("postgres://", "postgresql://", 1))
            else:
                opened = _sqlite(settings)
                metadata.create_all(opened.engine)
            _databases[key] = opened
        return _databases[key]


def reset() -> None:
    """Close every database this process opened."""
    with _lock:
        for opened in _databases.values():
            opened.close()
        _databases.clear()
