"""Fixtures shared by the M-Pesa end-to-end tests: both stand-ins and the app serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from core.kernel.deps import CoreDeps
from integrations.africastalking.standin import StandinHandle as AtHandle
from integrations.africastalking.standin import start_standin as start_at
from integrations.mpesa.standin import StandinHandle, start_standin
from tests.e2e.mpesa_harness import Env, post, serve


@pytest.fixture(scope="module")
def daraja() -> Iterator[StandinHandle]:
    """The Daraja stand-in, sending its callbacks at once."""
    handle = start_standin(port=0, delay=0)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def at() -> Iterator[AtHandle]:
    """The Africa's Talking stand-in (SMS and SIM-swap)."""
    handle = start_at(port=0)
    yield handle
    handle.stop()


@pytest.fixture
def env(committed_pg: Engine, deps: CoreDeps, daraja: StandinHandle, at: AtHandle) -> Iterator[Env]:
    """The app on a real HTTP port with both stand-ins reset, on committed PostgreSQL."""
    post(daraja.url + "/_reset", {})
    post(at.url + "/_reset", {})
    yield from serve(committed_pg, deps, daraja, at)
