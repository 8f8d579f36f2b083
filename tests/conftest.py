"""Shared fixtures: real PostgreSQL (and SQLite for the embedded default), real Redis.

* The schema is migrated once per run with Alembic (never ``create_all``).
* ``db_session``: each test runs inside one outer transaction rolled back at
  the end (SQLAlchemy's ``join_transaction_mode="create_savepoint"`` recipe);
  the code under test may commit freely. Constraints are made IMMEDIATE so
  the ledger's deferred balance trigger still checks every entry.
* ``committed_pg`` / ``committed_engine``: for tests that need real commits
  from several threads or processes; the database is restored to its
  migrated seed rows afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app_factory import create_app
from config import Settings, load_settings
from core.actions import register_all
from core.kernel.deps import CoreDeps
from core.kernel.passwords import StaffPasswords
from core.kernel.pins import PinHasher
from core.kernel.security import PiiVault
from integrations.africastalking.standin import StandinHandle, start_standin
from runtime import Runtime
from tests import preflight
from tests.dbutil import Snapshot, create_pg_database, fresh_migrated_engine
from tests.settings import PG_URL, REDIS_URL

# As the composition root does (app_factory.build_runtime): tests that call core directly
# ask and decide maker-checker requests too.
register_all()

TEST_PII_KEY = Fernet.generate_key()


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    problem = preflight.check()
    if problem:
        pytest.exit(problem, returncode=2)
    create_pg_database()
    engine = fresh_migrated_engine(PG_URL)
    engine.info_snapshot = Snapshot(engine)  # type: ignore[attr-defined]
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("sqlite") / "ledger.db"
    engine = fresh_migrated_engine(f"sqlite:///{path}")
    engine.info_snapshot = Snapshot(engine)  # type: ignore[attr-defined]
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on PostgreSQL and on the embedded SQLite default."""
    name = "pg_engine" if request.param == "postgresql" else "sqlite_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _isolated(engine: Engine) -> Iterator[sessionmaker[Session]]:
    conn = engine.connect()
    trans = conn.begin()
    if engine.dialect.name == "postgresql":
        conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    factory = sessionmaker(
        bind=conn,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    try:
        yield factory
    finally:
        trans.rollback()
        conn.close()


@pytest.fixture
def session_factory(pg_engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions that all join one per-test transaction on PostgreSQL, rolled back after."""
    yield from _isolated(pg_engine)


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def any_session(any_engine: Engine) -> Iterator[Session]:
    """Per-test isolated session on PostgreSQL and on SQLite."""
    for factory in _isolated(any_engine):
        with factory() as session:
            yield session


def _restore(engine: Engine) -> None:
    engine.info_snapshot.restore()  # type: ignore[attr-defined]


@pytest.fixture
def committed_engine(any_engine: Engine) -> Iterator[Engine]:
    """Real commits on PostgreSQL and SQLite; seed rows restored afterwards."""
    _restore(any_engine)
    yield any_engine
    _restore(any_engine)


@pytest.fixture
def committed_pg(pg_engine: Engine) -> Iterator[Engine]:
    _restore(pg_engine)
    yield pg_engine
    _restore(pg_engine)


@pytest.fixture(scope="session")
def deps() -> CoreDeps:
    # Cheap Argon2 parameters: the hashing is the same code, a thousand times less work.
    return CoreDeps(
        pins=PinHasher(b"test-pepper-not-for-production", time_cost=1, memory_cost=8),
        passwords=StaffPasswords(time_cost=1, memory_cost=8, parallelism=1),
        vault=PiiVault([TEST_PII_KEY], b"test-blind-index-key-0123456789"),
    )


@pytest.fixture
def standin() -> Iterator[StandinHandle]:
    """The Africa's Talking stand-in (SMS, delivery reports, the SIM-swap check) on a free
    port, for one test; tests that need delivery reports posted back start their own."""
    with start_standin(port=0, delivery_delay=0.05) as handle:
        yield handle


@pytest.fixture
def redis_client() -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings() -> Settings:
    # Tests replay many sessions from one phone within seconds (the fuzz test hundreds):
    # the per-phone hop limit is tested on its own, in tests/integration/test_ussd_gate.py.
    return load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL, ussd_rate_limit="10000/minute"
    )


@pytest.fixture
def runtime(
    pg_engine: Engine,
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
    redis_client: redis_lib.Redis,
) -> Runtime:
    """The app's runtime, its sessions joined to the per-test transaction."""
    return Runtime(
        engine=pg_engine,
        session_factory=session_factory,
        deps=deps,
        redis=redis_client,
        sacco_name="Umoja SACCO",
    )


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> Flask:
    flask_app = create_app(settings, runtime)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
