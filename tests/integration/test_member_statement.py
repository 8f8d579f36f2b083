"""Member statements against the real ledger: running balances are the ledger's, the
closing balance is the account's, periods cut cleanly, and the PDF says what the ledger
holds (text extracted with pypdf)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from core.reports.member_statement import build_statement, statement_csv, statement_pdf
from db.models import Account, Posting
from tests.ussdutil import make_member

DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KINDS = {  # what a member reads, by the entry kind posted
    "deposit": EntryKind.DEPOSIT_MPESA,
    "withdrawal": EntryKind.WITHDRAWAL_MPESA,
}
ACCOUNTS = ("savings", "deposits", "shares")

# (day offset, account, +cents in / -cents out)
moves = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=120),
        st.sampled_from(ACCOUNTS),
        st.integers(min_value=-900_000, max_value=2_000_000).filter(lambda c: c != 0),
    ),
    min_size=1,
    max_size=25,
)


def post_moves(
    session: Session, ids: dict[str, int], plan: list[tuple[int, str, int]]
) -> dict[str, int]:
    """Post ``plan`` in day order (a withdrawal only while the account can pay it);
    returns the expected balance per account."""
    float_id = ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    expected = dict.fromkeys(ACCOUNTS, 0)
    for day, account, cents in sorted(plan, key=lambda m: m[0]):
        if expected[account] + cents < 0:
            continue
        kind = KINDS["deposit" if cents > 0 else "withdrawal"]
        ledger.post_entry(
            session,
            kind=kind,
            legs=[ledger.Leg(float_id, cents), ledger.Leg(ids[account], -cents)],
            idempotency_key=uuid4().hex,
            now=DAY0 + timedelta(days=day),
        )
        expected[account] += cents
    session.flush()
    return expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=moves, cut=st.integers(min_value=0, max_value=120))
def test_running_balances_are_the_ledgers(
    db_session: Session, deps: CoreDeps, plan: list[tuple[int, str, int]], cut: int
) -> None:
    nested = db_session.begin_nested()
    try:
        member = make_member(db_session, deps, msisdn=f"+2547{uuid4().int % 10**8:08d}",
                             national_id=str(30000000 + uuid4().int % 10**7))  # fmt: skip
        ids = member_account_ids(db_session, member.id)
        expected = post_moves(db_session, ids, plan)
        start = (DAY0 + timedelta(days=cut)).date()
        end = (DAY0 + timedelta(days=200)).date()
        whole = build_statement(db_session, member.id, DAY0.date(), end, now=DAY0)
        part = build_statement(db_session, member.id, start, end, now=DAY0)
        for section in whole.sections:
            if section.purpose not in ACCOUNTS:
                continue
            ledger_rows = db_session.execute(
                select(Posting.id, Posting.balance_after_cents)
                .where(Posting.account_id == section.account_id)
                .order_by(Posting.id)
            ).all()
            assert section.opening_cents == 0
            assert [(r.posting_id, r.balance_cents) for r in section.rows] == [
                tuple(r) for r in ledger_rows
            ]
            balance = db_session.scalar(
                select(Account.balance_cents).where(Account.id == section.account_id)
            )
            assert section.closing_cents == balance == expected[section.purpose]
        for section in part.sections:
            # the period's opening is the balance before it; the movements after it close it
            assert section.opening_cents + sum(r.amount_cents for r in section.rows) == (
                section.closing_cents
            )
            full = next(s for s in whole.sections if s.account_id == section.account_id)
            assert section.closing_cents == full.closing_cents
            assert all(r.value_date >= start for r in section.rows)
            before = [r for r in full.rows if r.value_date < start]
            assert section.opening_cents == (before[-1].balance_cents if before else 0)
    finally:
        nested.rollback()


def test_the_pdf_and_csv_say_what_the_ledger_holds(db_session: Session, deps: CoreDeps) -> None:
    member = make_member(db_session, deps, name="Amina Wanjiru", language="sw")
    ids = member_account_ids(db_session, member.id)
    post_moves(db_session, ids, [(0, "savings", 1_500_00), (3, "savings", -250_50),
                                 (5, "shares", 2_000_00)])  # fmt: skip
    statement = build_statement(db_session, member.id, date(2026, 3, 1), date(2026, 3, 31),
                                now=DAY0)  # fmt: skip
    pdf = statement_pdf(statement)
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "Taarifa ya mwanachama" in text and "Amina Wanjiru" in text  # Swahili: her language
    assert "Akiba" in text and "Hisa" in text and "Amana" in text
    assert "+1,500" in text and "-250.50" in text and "1,249.50" in text
    english = PdfReader(io.BytesIO(statement_pdf(statement, "en"))).pages[0].extract_text()
    assert (
        "Member statement" in english and "Withdrawal" in english and "Opening balance" in english
    )

    rows = statement_csv(statement, "en").splitlines()
    assert rows[0].startswith("account,date,reference,details,amount_cents,balance_cents")
    savings = [r for r in rows if r.startswith("Savings,")]
    assert [r.split(",")[3:6] for r in savings] == [
        ["Opening balance", "", "0"],
        ["Deposit", "150000", "150000"],
        ["Withdrawal", "-25050", "124950"],
        ["Closing balance", "", "124950"],
    ]


def test_a_long_statement_runs_over_pages(db_session: Session, deps: CoreDeps) -> None:
    member = make_member(db_session, deps)
    ids = member_account_ids(db_session, member.id)
    post_moves(db_session, ids, [(i % 28, "savings", 100_00 + i) for i in range(120)])
    statement = build_statement(db_session, member.id, date(2026, 3, 1), date(2026, 3, 31),
                                now=DAY0)  # fmt: skip
    reader = PdfReader(io.BytesIO(statement_pdf(statement, "en")))
    assert len(reader.pages) == 3  # 120 lines of 5 mm and the headings on A4
    last = reader.pages[-1].extract_text()
    assert "Page 3/3" in last and "Closing balance" in last
    total = sum(100_00 + i for i in range(120))
    assert f"{total // 100:,}.{total % 100:02d}" in last


def test_bad_periods_and_unknown_members_are_refused(db_session: Session, deps: CoreDeps) -> None:
    member = make_member(db_session, deps)
    with pytest.raises(InvalidInput):
        build_statement(db_session, member.id, date(2026, 3, 2), date(2026, 3, 1), now=DAY0)
    with pytest.raises(InvalidInput):
        build_statement(db_session, member.id, date(2020, 1, 1), date(2026, 3, 1), now=DAY0)
    with pytest.raises(NotFound):
        build_statement(db_session, 999_999_999, date(2026, 3, 1), date(2026, 3, 2), now=DAY0)
