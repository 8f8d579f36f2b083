"""Fixtures for integration tests that start real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from integrations.africastalking.standin import StandinHandle
from tests.workerprocs import Processes


@pytest.fixture
def procs(
    tmp_path: Path, standin: StandinHandle, redis_client: redis_lib.Redis
) -> Iterator[Processes]:
    p = Processes(tmp_path, standin.url)
    yield p
    p.stop_all()
