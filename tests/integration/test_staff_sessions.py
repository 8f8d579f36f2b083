"""Refresh tokens under real concurrency: two presentations of one token at once rotate it
once; the other is treated as reuse and ends the session (no grace period)."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from core.kernel.deps import CoreDeps
from core.staff import accounts as staff_core
from core.staff.permissions import SYSTEM
from db.models import StaffSession
from db.session import make_session_factory, unit_of_work


def test_one_refresh_token_presented_twice_at_once(committed_pg: Engine, deps: CoreDeps) -> None:
    factory = make_session_factory(committed_pg)
    policy = staff_core.AuthPolicy()
    with unit_of_work(factory) as s:
        staff_core.create_staff(s, deps, SYSTEM, username="racer", full_name="R",
                                role="auditor", password="a good long passphrase")  # fmt: skip
    with unit_of_work(factory) as s:
        first = staff_core.login(
            s, deps, policy, username="racer", password="a good long passphrase"
        )
    assert first.refresh_token is not None
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def present() -> None:
        barrier.wait()
        with unit_of_work(factory) as s:
            try:
                staff_core.refresh(s, deps, policy, first.refresh_token or "")
                outcomes.append("rotated")
            except staff_core.RefreshReused:
                outcomes.append("reused")
            except staff_core.SessionInvalid:
                outcomes.append("revoked")

    threads = [threading.Thread(target=present) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["reused", "rotated"]
    with unit_of_work(factory) as s:
        row = s.get(StaffSession, first.session_id)
        assert row is not None and row.revoked_reason == "refresh_reuse"
