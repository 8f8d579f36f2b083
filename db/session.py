"""Engine and session factory, and a retry for transient database conflicts.

One session per request or job: ``with session_factory() as session: ...``.
A session that leaves its ``with`` block uncommitted rolls back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

# PostgreSQL SQLSTATEs that mean "try the whole transaction again".
_TRANSIENT_PGCODES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine for PostgreSQL (production, tests) or SQLite (the embedded demo).

    SQLite gets WAL, foreign keys, a busy timeout and ``BEGIN IMMEDIATE`` for
    every transaction (SQLAlchemy's documented pysqlite recipe), so concurrent
    writers queue instead of failing with "database is locked" mid-transaction.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip on every checkout (9 instead of 8 per ledger
        # entry). A connection that died (database restart) is invalidated on first use and
        # `run_in_transaction` retries the unit of work on a fresh one instead.
        pool_pre_ping=False,
        pool_recycle=1800,
    )


def insert_for(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` in the session's dialect, so ``.on_conflict_do_nothing(...)`` works on
    PostgreSQL and on the SQLite demo alike (the idempotent writes use it)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def make_session_factory(
    engine: Engine, *, ledger_shards: int | None = None
) -> sessionmaker[Session]:
    """Sessions on ``engine``. ``ledger_shards`` (the ``LEDGER_SHARDS`` setting) is how many
    shards of each sharded account new postings spread over (``core.ledger.shards``); None
    uses every shard the database has."""
    info = {} if ledger_shards is None else {"ledger_shards": ledger_shards}
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False, info=info)


def is_transient(exc: BaseException) -> bool:
    """True for a deadlock, serialization failure, dropped connection or busy SQLite:
    safe to retry the whole unit of work."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:  # the server went away; a fresh connection may work
            return True
        code = getattr(exc.orig, "pgcode", None)
        if code in _TRANSIENT_PGCODES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


def _commit_kept(session: Session, exc: BaseException) -> None:
    """A refusal marked ``keep_work`` (``core.kernel.uow.keep``) commits what the use
    case recorded before it reaches the caller; any other error rolls back."""
    if getattr(exc, "keep_work", False):
        session.commit()
    else:
        session.rollback()


@contextmanager
def unit_of_work(session_factory: Callable[[], Session]) -> Iterator[Session]:
    """One use case's transaction at the edge: committed once when the block ends,
    rolled back when it raises (committed first for a refusal marked ``keep_work``).

    ``with unit_of_work(factory) as session: use_case(session, ...)``
    """
    with session_factory() as session:
        try:
            yield session
        except BaseException as exc:
            _commit_kept(session, exc)
            raise
        session.commit()


def run_in_transaction(
    session_factory: Callable[[], Session],
    work: Callable[[Session], T],
    *,
    attempts: int = 5,
    backoff_s: float = 0.01,
) -> T:
    """``work`` in a fresh unit of work, committed once it returns (see
    ``unit_of_work``), run again whole on a transient conflict (deadlock, serialization
    failure, dropped connection, busy SQLite).

    ``work`` must not commit and must be safe to repeat, which every money use case
    is through its idempotency key.
    """
    for attempt in range(1, attempts + 1):
        try:
            with unit_of_work(session_factory) as session:
                return work(session)
        except DBAPIError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
        time.sleep(backoff_s * (2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover
