"""What a running process holds: the database, the core's dependencies, Redis.

Built by the composition root (``app_factory.build_runtime``) and handed to
channels via ``app.extensions["sacco"]`` and to workers and commands directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.deps import CoreDeps


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
        """A new unit of work; use as ``with runtime.session() as s:``."""
        return self.session_factory()
