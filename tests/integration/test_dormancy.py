"""Marking savings dormant is one statement that works on both databases, counts only
member-initiated activity and never marks an account twice (issue 14, part 3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.members import registration as members_core
from core.savings.accounts import Credit, CreditSource, credit_member
from core.savings.dormancy import dormant_since, mark_dormant, months_before

T0 = datetime(2025, 3, 31, 9, 0, tzinfo=UTC)


def at(deps: CoreDeps, moment: datetime) -> CoreDeps:
    return replace(deps, now=lambda: moment)


def test_months_before_keeps_the_day_or_takes_the_months_last() -> None:
    assert months_before(T0, 1) == datetime(2025, 2, 28, 9, 0, tzinfo=UTC)
    assert months_before(T0, 12) == datetime(2024, 3, 31, 9, 0, tzinfo=UTC)
    assert months_before(datetime(2024, 3, 30, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert months_before(datetime(2025, 1, 15, tzinfo=UTC), 13) == datetime(
        2023, 12, 15, tzinfo=UTC
    )


def test_mark_dormant_counts_member_activity_only_on_both_databases(
    any_session: Session, deps: CoreDeps
) -> None:
    s = any_session
    members = [
        members_core.register_member(
            s,
            at(deps, T0),
            full_name=f"Achieng {'ABC'[n]}dorm",
            msisdn=f"+25472200{n:04d}",
            national_id=f"3100{n:04d}",
            consent=True,
        )  # fmt: skip
        for n in range(3)
    ]
    idle, saver, fresh = members
    for m in (idle, saver):
        credit_member(s, at(deps, T0), Credit(
            member_id=m.id, target="savings", amount_cents=500_00, source=CreditSource.CASH,
            idempotency_key=f"dorm-{m.id}", business_key=f"dorm-{m.id}",
        ))  # fmt: skip
    a_year_on = T0 + timedelta(days=366)
    credit_member(s, at(deps, a_year_on - timedelta(days=20)), Credit(
        member_id=saver.id, target="savings", amount_cents=100, source=CreditSource.MPESA,
        idempotency_key="dorm-saver-late", business_key="dorm-saver-late",
    ))  # fmt: skip
    fresh.created_at = a_year_on  # joined late: its savings are too young to be dormant
    s.flush()
    s.execute(
        text("UPDATE accounts SET created_at = :t WHERE member_id = :m"),
        {"t": a_year_on - timedelta(days=10), "m": fresh.id},
    )
    assert mark_dormant(s, at(deps, a_year_on), months=12) == 1
    assert dormant_since(s, idle.id) == a_year_on
    assert dormant_since(s, saver.id) is None and dormant_since(s, fresh.id) is None
    assert mark_dormant(s, at(deps, a_year_on + timedelta(days=1)), months=12) == 0
