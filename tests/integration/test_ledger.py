"""The ledger on PostgreSQL and on SQLite: what the books must hold after each move."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from core.kernel.errors import (
    AlreadyReversed,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    UnbalancedEntry,
)
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.entries import Leg
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from db.base import utcnow
from db.models import JournalEntry, Posting
from tests.ledgerutil import fund, make_accounts


def count_entries(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(JournalEntry)) or 0


def test_a_balanced_entry_moves_both_balances(any_session: Session) -> None:
    float_id, (a, _b, _c) = make_accounts(any_session)
    posted = fund(any_session, float_id, a, 150_050)
    assert posted.created and posted.reference.startswith("S")
    assert ledger.get_balance(any_session, a).balance_cents == 150_050
    assert ledger.get_balance(any_session, float_id).balance_cents == 150_050
    assert verify_ledger(any_session).ok


@pytest.mark.parametrize(
    "legs_fn",
    [
        lambda f, a: [Leg(f, 100), Leg(a, -99)],
        lambda f, a: [Leg(f, 100)],
        lambda f, a: [Leg(f, 100), Leg(f, -100)],
        lambda f, a: [Leg(f, 0), Leg(a, 0)],
    ],
)
def test_unbalanced_or_malformed_entries_write_nothing(any_session: Session, legs_fn) -> None:  # type: ignore[no-untyped-def]
    float_id, (a, *_rest) = make_accounts(any_session)
    before = count_entries(any_session)
    with pytest.raises((UnbalancedEntry, InvalidInput)):
        ledger.post_entry(
            any_session,
            kind=EntryKind.DEPOSIT_MPESA,
            legs=legs_fn(float_id, a),
            idempotency_key="k1",
            now=utcnow(),
        )
    any_session.commit()
    assert count_entries(any_session) == before
    assert ledger.get_balance(any_session, a).balance_cents == 0


def test_same_key_returns_the_first_entry_and_writes_nothing(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    first = fund(any_session, float_id, a, 5_000, key="mpesa:NLJ7RT61SV")
    again = fund(any_session, float_id, a, 5_000, key="mpesa:NLJ7RT61SV")
    assert (again.entry_id, again.reference, again.created) == (
        first.entry_id,
        first.reference,
        False,
    )
    assert ledger.get_balance(any_session, a).balance_cents == 5_000
    with pytest.raises(IdempotencyConflict):
        fund(any_session, float_id, a, 6_000, key="mpesa:NLJ7RT61SV")
    assert ledger.get_balance(any_session, a).balance_cents == 5_000


def test_no_overdraft_refuses_and_leaves_nothing_written(any_session: Session) -> None:
    float_id, (a, b, _c) = make_accounts(any_session)
    fund(any_session, float_id, a, 1_000)
    before = count_entries(any_session)
    with pytest.raises(InsufficientFunds):
        ledger.post_entry(
            any_session,
            kind=EntryKind.TRANSFER_OWN,
            legs=[Leg(a, 1_001), Leg(b, -1_001)],
            idempotency_key="t1",
            now=utcnow(),
        )
    any_session.commit()
    assert count_entries(any_session) == before
    assert ledger.get_balance(any_session, a).balance_cents == 1_000
    assert ledger.get_balance(any_session, b).balance_cents == 0
    # exactly the balance is allowed
    ledger.post_entry(
        any_session,
        kind=EntryKind.TRANSFER_OWN,
        legs=[Leg(a, 1_000), Leg(b, -1_000)],
        idempotency_key="t2",
        now=utcnow(),
    )
    assert ledger.get_balance(any_session, a).balance_cents == 0
    assert verify_ledger(any_session).ok


def test_hold_reserves_then_partial_post_returns_the_rest(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    fees = ledger.account_id_by_code(any_session, SystemAccount.FEE_INCOME)
    payout = ledger.account_id_by_code(any_session, SystemAccount.MPESA_DISBURSEMENT_FLOAT)
    fund(any_session, float_id, a, 10_000)
    hold = ledger.reserve_hold(
        any_session, account_id=a, amount_cents=6_030, idempotency_key="h1", now=utcnow()
    )
    bal = ledger.get_balance(any_session, a)
    assert (bal.balance_cents, bal.available_cents) == (10_000, 3_970)
    with pytest.raises(InsufficientFunds):
        ledger.reserve_hold(
            any_session, account_id=a, amount_cents=3_971, idempotency_key="h2", now=utcnow()
        )
    # The same hold key again is the same hold.
    assert (
        ledger.reserve_hold(
            any_session, account_id=a, amount_cents=6_030, idempotency_key="h1", now=utcnow()
        ).hold_id
        == hold.hold_id
    )
    # Pay out 5,000 + 30 fee of the 6,030 held: 1,000 returns to available.
    ledger.post_hold(
        any_session,
        hold_id=hold.hold_id,
        kind=EntryKind.WITHDRAWAL_MPESA,
        idempotency_key="b2c:1",
        legs=[Leg(a, 5_030), Leg(payout, -5_000), Leg(fees, -30)],
        now=utcnow(),
    )
    bal = ledger.get_balance(any_session, a)
    assert (bal.balance_cents, bal.held_cents, bal.available_cents) == (4_970, 0, 4_970)
    with pytest.raises(HoldNotPending):
        ledger.release_hold(any_session, hold_id=hold.hold_id, now=utcnow())
    assert verify_ledger(any_session).ok


def test_released_hold_gives_the_money_back_once(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    fund(any_session, float_id, a, 2_000)
    hold = ledger.reserve_hold(
        any_session, account_id=a, amount_cents=2_000, idempotency_key="h", now=utcnow()
    )
    assert ledger.get_balance(any_session, a).available_cents == 0
    assert ledger.release_hold(any_session, hold_id=hold.hold_id, now=utcnow()).created
    assert not ledger.release_hold(any_session, hold_id=hold.hold_id, now=utcnow()).created
    assert ledger.get_balance(any_session, a).available_cents == 2_000
    assert verify_ledger(any_session).ok


def test_a_hold_cannot_post_more_than_it_holds(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    payout = ledger.account_id_by_code(any_session, SystemAccount.MPESA_DISBURSEMENT_FLOAT)
    fund(any_session, float_id, a, 5_000)
    hold = ledger.reserve_hold(
        any_session, account_id=a, amount_cents=1_000, idempotency_key="h", now=utcnow()
    )
    with pytest.raises(InvalidInput):
        ledger.post_hold(
            any_session,
            hold_id=hold.hold_id,
            kind=EntryKind.WITHDRAWAL_MPESA,
            idempotency_key="p",
            legs=[Leg(a, 1_001), Leg(payout, -1_001)],
            now=utcnow(),
        )
    assert ledger.get_balance(any_session, a).held_cents == 1_000


def test_reversal_restores_balances_and_happens_once(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    posted = fund(any_session, float_id, a, 7_500)
    rev = ledger.reverse_entry(
        any_session, entry_id=posted.entry_id, idempotency_key="rev-1", now=utcnow()
    )
    assert ledger.get_balance(any_session, a).balance_cents == 0
    assert ledger.get_balance(any_session, float_id).balance_cents == 0
    assert (
        ledger.reverse_entry(
            any_session, entry_id=posted.entry_id, idempotency_key="rev-1", now=utcnow()
        ).entry_id
        == rev.entry_id
    )
    with pytest.raises(AlreadyReversed):
        ledger.reverse_entry(
            any_session, entry_id=posted.entry_id, idempotency_key="rev-2", now=utcnow()
        )
    assert verify_ledger(any_session).ok


def test_statement_shows_running_balance_newest_first(any_session: Session) -> None:
    float_id, (a, b, _c) = make_accounts(any_session)
    fund(any_session, float_id, a, 1_000)
    fund(any_session, float_id, a, 2_500)
    ledger.post_entry(
        any_session,
        kind=EntryKind.TRANSFER_OWN,
        legs=[Leg(a, 700), Leg(b, -700)],
        idempotency_key="t",
        now=utcnow(),
    )
    lines = ledger.statement(any_session, a, limit=10)
    assert [(line.amount_cents, line.balance_after_cents) for line in lines] == [
        (-700, 2_800),
        (2_500, 3_500),
        (1_000, 1_000),
    ]
    older = ledger.statement(any_session, a, limit=2, before_posting_id=lines[1].posting_id)
    assert [line.amount_cents for line in older] == [1_000]


def test_trial_balance_balances(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    fund(any_session, float_id, a, 12_345)
    tb = ledger.trial_balance(any_session)
    assert tb.balanced and tb.debit_total_cents >= 12_345


def test_verify_ledger_catches_a_tampered_balance(any_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(any_session)
    fund(any_session, float_id, a, 1_000)
    any_session.execute(
        text("UPDATE accounts SET balance_cents = balance_cents + 1 WHERE id = :id"), {"id": a}
    )
    report = verify_ledger(any_session)
    assert not report.ok
    assert any("stored 1001, postings give 1000" in p for p in report.problems)


def test_postgres_itself_refuses_unbalanced_and_edited_history(db_session: Session) -> None:
    float_id, (a, *_rest) = make_accounts(db_session)
    posted = fund(db_session, float_id, a, 1_000)
    with pytest.raises(DBAPIError, match="unbalanced_entry"), db_session.begin_nested():
        db_session.execute(
            text(
                "INSERT INTO journal_entries (idempotency_key, fingerprint, reference, kind, memo, "
                "created_at, value_date) VALUES ('raw', 'x', 'SRAW', 'raw', '', now(), CURRENT_DATE)"
            )
        )
        entry_id = db_session.scalar(
            text("SELECT id FROM journal_entries WHERE idempotency_key = 'raw'")
        )
        db_session.execute(
            text(
                "INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents) VALUES (:e, :a, 5, 0), (:e, :f, -4, 0)"
            ),
            {"e": entry_id, "a": a, "f": float_id},
        )
    with pytest.raises(DBAPIError, match="immutable"), db_session.begin_nested():
        db_session.execute(update_posting_sql(), {"e": posted.entry_id})
    with pytest.raises(DBAPIError, match="immutable"), db_session.begin_nested():
        db_session.execute(
            text("DELETE FROM journal_entries WHERE id = :e"), {"e": posted.entry_id}
        )
    assert (
        db_session.scalar(
            select(func.count()).select_from(Posting).where(Posting.entry_id == posted.entry_id)
        )
        == 2
    )


def update_posting_sql() -> TextClause:
    return text("UPDATE postings SET amount_cents = amount_cents * 2 WHERE entry_id = :e")
