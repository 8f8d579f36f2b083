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


def test_a_further_savings_account_goes_dormant_on_its_own_activity(
    db_session: Session, deps: CoreDeps
) -> None:
    """A holiday account is marked by its own activity, a withdrawal asks about the
    account it leaves, and reactivation wakes every dormant savings account of the member."""
    from uuid import uuid4

    import pytest

    from core.kernel.permissions import Principal, permissions_for_role
    from core.savings import member_accounts, products
    from core.savings.dormancy import AccountDormant, check_not_dormant, reactivate
    from db.models import StaffUser

    s = db_session
    d0 = at(deps, T0)
    name = f"manager.{uuid4().hex[:6]}"
    user = StaffUser(username=name, full_name="Manager", role="manager", password_hash="x")
    s.add(user)
    s.flush()
    manager = Principal("staff", user.id, name, "manager", None, permissions_for_role("manager"))
    products.create_product(
        s, d0, manager, "HOLI",
        products.parse_terms({**products.DEFAULTS, "name": "Holiday", "kind": "ordinary_savings"}),
    )  # fmt: skip
    m = members_core.register_member(
        s, d0, full_name="Wanjiku Holidorm", msisdn="+254722009901", national_id="31009901",
        consent=True,
    )  # fmt: skip
    holiday = member_accounts.open_savings_account(s, d0, member_id=m.id, product_code="HOLI")
    for target, when in (("savings", T0), ("@HOLI", T0), ("@HOLI", T0 + timedelta(days=340))):
        key = f"dorm-holi-{target}-{when.isoformat()}"
        credit_member(s, at(deps, when), Credit(m.id, target, 1_000_00, CreditSource.MPESA,
                                                key, key))  # fmt: skip
    a_year_on = T0 + timedelta(days=366)
    assert mark_dormant(s, at(deps, a_year_on), months=12) == 1  # the main savings only
    assert dormant_since(s, m.id) == a_year_on
    assert dormant_since(s, m.id, holiday.account_id) is None
    with pytest.raises(AccountDormant):
        check_not_dormant(s, m.id)
    check_not_dormant(s, m.id, holiday.account_id)  # its own activity keeps it awake
    later = a_year_on + timedelta(days=365)
    assert mark_dormant(s, at(deps, later), months=12) == 1  # now the holiday account too
    with pytest.raises(AccountDormant):
        check_not_dormant(s, m.id, holiday.account_id)
    assert reactivate(s, at(deps, later), manager, m.id, note="ID seen") == a_year_on
    assert dormant_since(s, m.id) is None
    assert dormant_since(s, m.id, holiday.account_id) is None
    assert mark_dormant(s, at(deps, later + timedelta(days=1)), months=12) == 0
