"""Membership figures on PostgreSQL: joined and exited per month, members by state with
dormant split from active, members by deposits in bands at a date (from the ledger)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from core.reports.membership import (
    DEPOSIT_BANDS_CENTS,
    balances_by_month,
    by_state,
    deposits_by_band,
    growth,
    place_in_bands,
)
from db.models import Account, Member
from db.models_exit import MemberExit
from tests.ussdutil import make_member


def join(s: Session, deps: CoreDeps, at: datetime, **kw: str) -> Member:
    return make_member(s, replace(deps, now=lambda: at), msisdn=f"+2547{uuid4().int % 10**8:08d}",
                       national_id=str(30000000 + uuid4().int % 10**7), **kw)  # fmt: skip


def save(s: Session, member: Member, cents: int, on: date) -> None:
    float_id = ledger.account_id_by_code(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    savings = member_account_ids(s, member.id)["savings"]
    ledger.post_entry(s, kind=EntryKind.DEPOSIT_MPESA,
                      legs=[ledger.Leg(float_id, cents), ledger.Leg(savings, -cents)],
                      idempotency_key=uuid4().hex,
                      now=datetime(on.year, on.month, on.day, 9, tzinfo=UTC))  # fmt: skip


def test_growth_counts_joined_and_exited_per_month(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    before = growth(s, date(2019, 1, 1), date(2019, 4, 30))
    a = join(s, deps, datetime(2019, 1, 5, 8, tzinfo=UTC))
    join(s, deps, datetime(2019, 1, 31, 23, tzinfo=UTC))
    join(s, deps, datetime(2019, 3, 1, 0, 30, tzinfo=UTC))
    s.add(MemberExit(member_id=a.id, reason="moved", channel="staff", notice_days=60,
                     due_on=date(2019, 3, 6), status="done",
                     requested_at=datetime(2019, 1, 6, tzinfo=UTC),
                     completed_at=datetime(2019, 3, 10, 12, tzinfo=UTC)))  # fmt: skip
    s.flush()
    after = growth(s, date(2019, 1, 1), date(2019, 4, 30))
    assert [m.month for m in after] == ["2019-01", "2019-02", "2019-03", "2019-04"]
    diff = [(m.joined - b.joined, m.exited - b.exited, m.members_at_end - b.members_at_end)
            for m, b in zip(after, before, strict=True)]  # fmt: skip
    assert diff == [(2, 0, 2), (0, 0, 2), (1, 1, 2), (0, 0, 2)]


def test_states_split_dormant_from_active(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    before = by_state(s)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    active, sleepy = join(s, deps, now), join(s, deps, now)
    join(s, deps, now, status="suspended")
    join(s, deps, now, status="pending_kyc")
    account = s.get(Account, member_account_ids(s, sleepy.id)["savings"])
    assert account is not None and active.status == "active"
    account.dormant_since = now
    s.flush()
    after = by_state(s)
    assert {k: after[k] - before[k] for k in after} == {
        "active": 1, "dormant": 1, "suspended": 1, "pending_kyc": 1, "exited": 0, "deceased": 0,
    }  # fmt: skip


def test_deposits_by_band_at_a_date(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    day = date(2018, 6, 30)
    before = deposits_by_band(s, day)
    small, mid, rich = (join(s, deps, datetime(2018, 6, 1, tzinfo=UTC)) for _ in range(3))
    save(s, small, 999_99, date(2018, 6, 2))
    save(s, mid, 10_000_00, date(2018, 6, 3))
    save(s, rich, 600_000_00, date(2018, 6, 4))
    save(s, rich, 500_000_00, date(2018, 7, 1))  # after the date: not counted
    join(s, deps, datetime(2018, 7, 2, tzinfo=UTC))  # joined after the date
    s.flush()
    after = deposits_by_band(s, day)
    assert [
        (a.members - b.members, a.total_cents - b.total_cents)
        for a, b in zip(after, before, strict=True)
    ] == [  # fmt: skip
        (1, 999_99),
        (0, 0),
        (1, 10_000_00),
        (0, 0),
        (0, 0),
        (1, 600_000_00),
        (0, 0),
    ]


@given(st.lists(st.integers(min_value=0, max_value=10**12), max_size=200))
def test_bands_count_every_balance_once(balances: list[int]) -> None:
    bands = place_in_bands(balances)
    assert sum(b.members for b in bands) == len(balances)
    assert sum(b.total_cents for b in bands) == sum(balances)
    for band in bands:
        assert band.low_cents >= 0
    assert [(b.low_cents, b.high_cents) for b in bands] == list(DEPOSIT_BANDS_CENTS)


def test_month_end_balances_follow_the_ledger(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    before = balances_by_month(s, date(2017, 1, 1), date(2017, 3, 31))
    member = join(s, deps, datetime(2017, 1, 1, tzinfo=UTC))
    save(s, member, 1_000_00, date(2017, 1, 15))
    save(s, member, 500_00, date(2017, 3, 1))
    s.flush()
    after = balances_by_month(s, date(2017, 1, 1), date(2017, 3, 31))
    assert [
        (a.month, a.deposits_cents - b.deposits_cents, a.loans_cents - b.loans_cents)
        for a, b in zip(after, before, strict=True)
    ] == [  # fmt: skip
        ("2017-01", 1_000_00, 0),
        ("2017-02", 1_000_00, 0),
        ("2017-03", 1_500_00, 0),
    ]
