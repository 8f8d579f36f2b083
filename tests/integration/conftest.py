"""Fixtures for integration tests that commit for real and start real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_session_factory
from integrations.africastalking.standin import StandinHandle
from tests.workerprocs import Processes


@pytest.fixture
def procs(
    tmp_path: Path, standin: StandinHandle, redis_client: redis_lib.Redis
) -> Iterator[Processes]:
    p = Processes(tmp_path, standin.url)
    yield p
    p.stop_all()


@pytest.fixture
def factory(committed_pg: Engine) -> sessionmaker[Session]:
    """Sessions that really commit (other processes see the rows); seed rows restored after."""
    return make_session_factory(committed_pg)
