"""What a running process holds, built by the composition root: the database engine and
session factory (with the outbox's after-commit dispatch), the core's dependencies and
the Redis client. It also registers every domain's maker-checker actions
(``core.actions.register_all``).

``build_runtime(settings)`` builds it for the web app (``app_factory.create_app`` puts it
in ``app.extensions["sacco"]``), for the workers and for ``manage.py``; channels and
workers receive it and read it, ``core`` never sees it (import-linter: core imports no
``runtime``, Redis or RQ). Nothing here imports Flask or a channel, so a worker process
builds its runtime without building an app.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from core.actions import register_all
from core.kernel.deps import CoreDeps
from core.kernel.pins import PinHasher
from core.kernel.security import PiiVault
from db.session import make_engine, make_session_factory, run_in_transaction, unit_of_work
from integrations.bureaus.wiring import build_bureau

T = TypeVar("T")


@dataclass
class Runtime:
    engine: Engine
    session_factory: sessionmaker[Session]
    deps: CoreDeps
    redis: Any | None  # redis.Redis when REDIS_URL is set; None in the embedded demo
    sacco_name: str
    # The after-commit outbox hand-off (workers.dispatch); ``close()`` it on shutdown.
    outbox_dispatch: Any | None = None
    # Reports only (REPLICA_DATABASE_URL): sessions on the streaming replica; None = the
    # primary. Never handed to a use case that writes (tests/unit/test_replica_guard.py).
    replica_session_factory: sessionmaker[Session] | None = None

    def report_session(self) -> Session:
        """A read-only session for reports: the replica when configured, else the primary
        (rolled back at the end: ``with runtime.report_session() as s:``)."""
        return (self.replica_session_factory or self.session_factory)()

    def session(self) -> Session:
        """A session for reading; use as ``with runtime.session() as s:`` (it rolls back)."""
        return self.session_factory()

    def unit_of_work(self) -> AbstractContextManager[Session]:
        """One use case's transaction, committed when the ``with`` block ends
        (``db.session.unit_of_work``)."""
        return unit_of_work(self.session_factory)

    def run_in_transaction(self, work: Callable[[Session], T]) -> T:
        """``work`` in a fresh unit of work, committed when it returns and run again whole
        on a deadlock or a serialization failure (``db.session.run_in_transaction``)."""
        return run_in_transaction(self.session_factory, work)


def build_runtime(settings: Settings, *, dispatch: bool = True) -> Runtime:
    """``dispatch``: hand messages queued in a committed session to delivery (RQ with
    Redis, in-process without); operator commands pass False and leave them to the
    workers and the sweeper."""
    register_all()  # every domain's maker-checker actions, before any request
    engine = make_engine(settings.database_url)
    deps = CoreDeps(
        pins=PinHasher(settings.pin_pepper.encode()),
        vault=PiiVault.from_settings(settings),
        sacco_name=settings.sacco_name,
        ussd_code=settings.ussd_service_code,
        bureau=build_bureau(settings),
    )
    client = (
        # One quick retry at most: a USSD hop must answer within the gateway's 15 s,
        # so a Redis outage has to fail fast (the hop then ends politely).
        redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        )
        if settings.redis_url
        else None
    )
    session_factory = make_session_factory(engine, ledger_shards=settings.ledger_shards)
    dispatcher = None
    if dispatch:
        from workers.dispatch import install_outbox_dispatch

        dispatcher = install_outbox_dispatch(settings, session_factory, client)
    replica = (
        make_session_factory(make_engine(settings.replica_database_url, pool_size=4))
        if settings.replica_database_url
        else None
    )
    return Runtime(
        engine=engine,
        session_factory=session_factory,
        deps=deps,
        redis=client,
        sacco_name=settings.sacco_name,
        outbox_dispatch=dispatcher,
        replica_session_factory=replica,
    )
