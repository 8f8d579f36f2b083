"""What a running process holds: the database, the core's dependencies, Redis.

Built by the composition root (``app_factory.build_runtime``) and handed to
channels via ``app.extensions["sacco"]`` and to workers and commands directly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from db.session import run_in_transaction, unit_of_work

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
