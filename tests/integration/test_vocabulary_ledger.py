"""The vocabulary against the database: the chart module is the seeded chart; entries,
holds, accounts, outbox rows and webhooks carry the injected clock and entries a value
date; a suspense reassignment reads Deposit; every money-in path asks the one rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import MemberNotAllowed
from core.kernel.money import Money
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SHARDED_ACCOUNTS, SystemAccount, shard_code
from core.ledger.statements import recent_movements
from core.ledger.vocabulary import EntryKind, HoldStatus
from core.members import registration as members
from core.members.backoffice import cash_deposit
from core.messaging.webhooks import publish_event, register_endpoint
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy
from core.payments.mpesa.vocabulary import SuspenseStatus
from core.savings import accounts as savings
from db.models import Account, Hold, JournalEntry, OutboxMessage, WebhookEndpoint
from db.models_mpesa import SuspenseItem
from tests.ussdutil import Phone, make_member

# 21:30 UTC on the last day of February is 00:30 on the 1st of March in Nairobi: the
# value date is the Nairobi business day, not the UTC one. Far from the wall clock, so a
# row stamped with the wall clock cannot pass for it.
T = datetime(2026, 2, 28, 21, 30, tzinfo=UTC)
NAIROBI_DAY = date(2026, 3, 1)


def test_the_chart_module_is_the_chart_the_database_was_seeded_with(
    any_session: Session,
) -> None:
    rows = {
        row.code: row
        for row in any_session.scalars(select(Account).where(Account.member_id.is_(None)))
        if not row.code.startswith("T")  # accounts other tests of this run made
    }
    shards = {code: row for code, row in rows.items() if row.parent_id is not None}
    rows = {code: row for code, row in rows.items() if row.parent_id is None}
    assert set(rows) == {str(account) for account in SystemAccount}
    # Migration 0040: eight shards (at least: a test may add more) of each sharded
    # account, with its type, normal side and purpose, hot.
    for account in SHARDED_ACCOUNTS:
        mine = [s for s in shards.values() if s.parent_id == rows[account].id]
        assert {shard_code(account, n) for n in range(1, 9)} <= {s.code for s in mine}
        for shard in mine:
            assert (shard.type, shard.normal_side, shard.purpose, shard.is_hot) == (
                account.account_type,
                account.normal_side,
                "system",
                True,
            ), shard.code
    assert {s.parent_id for s in shards.values()} == {rows[a].id for a in SHARDED_ACCOUNTS}
    for account in SystemAccount:
        row = rows[account]
        assert (row.name, row.type, row.normal_side, row.is_hot, row.purpose) == (
            account.label,
            account.account_type,
            account.normal_side,
            account.hot,
            "system",
        ), account.name


def test_entries_holds_accounts_and_outbox_rows_take_the_injected_clock(
    any_session: Session, deps: CoreDeps
) -> None:
    timed = replace(deps, now=lambda: T)
    member = make_member(any_session, timed, msisdn="+254712000931", national_id="23456931")
    accounts = any_session.scalars(select(Account).where(Account.member_id == member.id)).all()
    assert {a.created_at for a in accounts} == {T}
    welcome = any_session.scalars(
        select(OutboxMessage).where(OutboxMessage.member_id == member.id)
    ).all()
    assert welcome and {(m.created_at, m.next_attempt_at) for m in welcome} == {(T, T)}

    posted = savings.credit_member(
        any_session, timed,
        savings.Credit(
            member_id=member.id, target="savings", amount_cents=Money.of(500).cents,
            source=savings.CreditSource.CASH, idempotency_key="clock-cash-1",
            business_key="deposit_received:clock-cash-1",
        ),
    ).posted  # fmt: skip
    entry = any_session.get_one(JournalEntry, posted.entry_id)
    assert (entry.created_at, entry.value_date, entry.kind) == (T, NAIROBI_DAY, "deposit.cash")
    [line] = [
        m for m in recent_movements(any_session, member.id) if m.reference == posted.reference
    ]
    assert (line.created_at, line.value_date) == (T, NAIROBI_DAY)

    savings_id = members.member_account_ids(any_session, member.id)["savings"]
    later = T + timedelta(hours=5)
    hold = ledger.reserve_hold(
        any_session, account_id=savings_id, amount_cents=100, idempotency_key="clock-h", now=T
    )
    ledger.release_hold(any_session, hold_id=hold.hold_id, now=later)
    row = any_session.get_one(Hold, hold.hold_id)
    assert (row.created_at, row.settled_at, row.status) == (T, later, HoldStatus.RELEASED)

    # A use case may give the value date (interest, loan schedules); a reversal is dated
    # the day it is made, not back-dated.
    back = ledger.post_entry(
        any_session, kind=EntryKind.DEPOSIT_CASH, idempotency_key="clock-cash-2", now=later,
        value_date=date(2026, 2, 27),
        legs=[ledger.Leg(ledger.account_id_by_code(any_session, SystemAccount.BANK), 100),
              ledger.Leg(savings_id, -100)],
    )  # fmt: skip
    assert any_session.get_one(JournalEntry, back.entry_id).value_date == date(2026, 2, 27)
    rev = ledger.reverse_entry(any_session, entry_id=back.entry_id, idempotency_key="r", now=later)
    reversal = any_session.get_one(JournalEntry, rev.entry_id)
    assert (reversal.created_at, reversal.value_date) == (later, NAIROBI_DAY)


def test_a_webhook_event_and_its_endpoint_carry_the_injected_clock(
    db_session: Session, deps: CoreDeps
) -> None:
    timed = replace(deps, now=lambda: T)
    endpoint, _ = register_endpoint(db_session, timed, name="Bank", url="https://bank.example/h")
    assert db_session.get_one(WebhookEndpoint, endpoint.id).created_at == T
    [message] = publish_event(
        db_session, event_type="deposit.received", event_id="clock-1", data={"x": 1}, now=T
    )
    assert json.loads(message.body)["created"] == int(T.timestamp())
    assert (message.created_at, message.next_attempt_at) == (T, T)


def test_a_payment_staff_move_out_of_suspense_reads_deposit_on_the_mini_statement(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    amina = make_member(db_session, deps)
    parked = mpesa.C2BIn("QSU1234567", datetime.now(UTC), 70_000, "nobody", "174379")
    assert mpesa.record_c2b(db_session, deps, parked) == "suspense"
    item = db_session.scalars(
        select(SuspenseItem).where(SuspenseItem.source_ref == parked.trans_id)
    ).one()
    mpesa.assign_suspense(
        db_session, deps, item_id=item.id, member_id=amina.id, staff="teller", note="paid for Amina"
    )
    assert item.status == SuspenseStatus.ASSIGNED
    [move] = recent_movements(db_session, amina.id)
    assert move.kind == EntryKind.MPESA_SUSPENSE_ASSIGN
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("2")
    day = move.created_at.astimezone(mpesa.NAIROBI).strftime("%d/%m")
    assert (
        phone.send("4826") == f"CON Statement (KES) 1/1\n{day} Savings Deposit +700\n0 Back 00 Home"
    )


@pytest.mark.parametrize("status", ["suspended", "exited"])
def test_every_money_in_path_refuses_the_members_the_one_rule_refuses(
    db_session: Session, deps: CoreDeps, status: str
) -> None:
    member = make_member(db_session, deps, status=status)
    assert member.member_number is not None
    paths: dict[str, Callable[[], object]] = {
        "cash at the counter": lambda: cash_deposit(
            db_session, deps, SYSTEM, member_id=member.id, target="savings",
            amount_cents=100_00, idempotency_key="rule-cash-0001",
        ),
        "a bank transfer (credit_member)": lambda: savings.credit_member(
            db_session, deps,
            savings.Credit(
                member_id=member.id, target="savings", amount_cents=100_00,
                source=savings.CreditSource.BANK, idempotency_key="rule-bank",
                business_key="deposit_received:rule-bank",
            ),
        ),
        "STK push": lambda: mpesa.start_deposit(
            db_session, deps, member_id=member.id, target="savings", amount_cents=100_00,
            policy=MpesaPolicy(), idempotency_key="rule-stk",
        ),
    }  # fmt: skip
    for name, path in paths.items():
        with pytest.raises(MemberNotAllowed) as refused:
            path()
        assert refused.value.context["reason"] == status, name
    answer = mpesa.validate_c2b(
        db_session, bill_ref=f"{member.member_number}S", amount_cents=100_00, shortcode="1",
        expected_shortcode="1", policy=MpesaPolicy(),
    )  # fmt: skip
    assert answer == ("C2B00012", "Rejected")
    # The paybill money that comes anyway waits in suspense, and staff cannot assign it.
    paid = mpesa.C2BIn("QRU1234567", datetime.now(UTC), 10_000, f"{member.member_number}S", "1")
    assert mpesa.record_c2b(db_session, deps, paid) == "suspense"
    item = db_session.scalars(
        select(SuspenseItem).where(SuspenseItem.source_ref == paid.trans_id)
    ).one()
    with pytest.raises(MemberNotAllowed):
        mpesa.assign_suspense(db_session, deps, item_id=item.id, member_id=member.id, staff="t")
