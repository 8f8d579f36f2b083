"""Death of a member on real PostgreSQL (core.members.death; docs/members/death.md): the
record stops the member's channels at once, a manager approves the settlement, the loans
are offset against deposits, savings and shares through the one repayment use case, and
the estate is shared per the nomination into one payable account per beneficiary (or held
whole for the legal representative), each paid once at the branch or by M-Pesa. Run
twice: once. Real threads: two managers approving at once settle once."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members import death
from core.members.nominations import Beneficiary, replace_beneficiaries
from core.members.registration import member_account_ids
from core.messaging.sms_commands import InboundSms, handle_inbound_sms
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.estate_payouts import pay_estate_payable
from core.payments.mpesa.rules import MpesaPolicy, SimSwapBlocked
from db.models import Account, JournalEntry, Member, OutboxMessage, StaffUser
from db.models_exit import EstatePayable, MemberDeath
from db.models_loans import Loan
from db.models_mpesa import B2CPayout
from db.session import make_session_factory, unit_of_work
from tests.integration.test_loan_mpesa_disbursement import NEVER, Checker
from tests.loanutil import disbursed_loan, funded_member
from tests.ussdutil import Phone

KES = 100
T0 = datetime(2026, 4, 6, 7, 0, tzinfo=UTC)
THRESHOLD = 50_000 * KES


def at(deps: CoreDeps, when: datetime = T0) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: when)


def staff(s: Session, role: str) -> Principal:
    name = f"{role}.{uuid4().hex[:8]}"
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def code_balance(s: Session, code: str) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def nominate(s: Session, deps: CoreDeps, member: Member, *shares: tuple[str, str | None]) -> None:
    replace_beneficiaries(s, deps, member.id, [
        Beneficiary(f"Nominee {'ABCDEFGHIJ'[i]} Otieno", "child", "birth_certificate",
                    f"BC{1000 + i}", Decimal(share), phone)
        for i, (share, phone) in enumerate(shares)
    ])  # fmt: skip


def record(s: Session, deps: CoreDeps, member: Member) -> MemberDeath:
    row, created = death.record_death(
        s, deps, staff(s, "manager"), member_id=member.id, died_on=date(2026, 4, 1),
        certificate_ref="dc 123/456", document_ref="docs/death/123.pdf",
        large_threshold_cents=THRESHOLD,
    )  # fmt: skip
    assert created
    return row


def approve(s: Session, deps: CoreDeps, row: MemberDeath) -> None:
    assert row.approval_id is not None
    done = approvals.decide(s, deps, staff(s, "manager"), row.approval_id, approve=True)
    assert done.status == "approved", done.result
    s.expire_all()


def sms_reply(s: Session, deps: CoreDeps, msisdn: str, body: str) -> str | None:
    """What the SMS channel answers the phone (the reply's template)."""
    result = handle_inbound_sms(s, deps, InboundSms(f"death-sms-{uuid4().hex[:8]}", msisdn, body))
    return result.reply_template


def payables(s: Session, row: MemberDeath) -> list[EstatePayable]:
    s.expire_all()
    return death.payables_of(s, row.id)


def test_a_death_offsets_the_loan_and_shares_the_estate_per_the_nomination(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d = at(deps)
    loan, member, _ = disbursed_loan(s, d, amount_cents=30_000 * KES, deposits_cents=40_000 * KES,
                                     savings_cents=5_000 * KES + 1)  # fmt: skip
    nominate(s, d, member, ("33.33", "+254722000111"), ("33.33", None), ("33.34", None))
    bank0 = code_balance(s, SystemAccount.BANK)
    ids = member_account_ids(s, member.id)
    held = sum(ledger.get_balance(s, ids[p]).balance_cents for p in ("savings", "deposits"))
    row = record(s, d, member)
    assert row.certificate_ref == "DC123/456"
    assert s.get_one(Member, member.id).status == "deceased"
    # The member's phone is refused at once, with a clear message.
    phone = Phone(client, member.msisdn)
    assert phone.dial().startswith("END Your membership of")
    assert sms_reply(s, d, member.msisdn, "BAL") == "sms_not_active"  # no balance by SMS
    assert row.status == "awaiting_approval"
    # The maker cannot approve: a manager does.
    s.expire_all()

    approve(s, d, row)
    s.expire_all()
    loan_after = s.get_one(Loan, loan.id)
    assert loan_after.status == "closed"
    row = s.get_one(MemberDeath, row.id)
    assert row.status == "settled"
    assert row.loans_offset_cents >= 30_000 * KES  # the loan's payoff
    estate = held - row.loans_offset_cents
    assert row.estate_cents == estate
    parts = payables(s, row)
    assert [p.amount_cents for p in parts] == death.split_estate(
        estate, [Decimal("33.33"), Decimal("33.33"), Decimal("33.34")]
    )
    assert sum(p.amount_cents for p in parts) == estate
    for p in parts:  # each in its own payable account, holding exactly its share
        assert ledger.get_balance(s, p.account_id).balance_cents == p.amount_cents
    for purpose in ("savings", "deposits", "shares"):
        account = s.get_one(Account, ids[purpose])
        assert account.balance_cents == 0 and account.closed_at is not None
    told = s.scalars(
        select(OutboxMessage.recipient).where(OutboxMessage.template == "estate_share_ready")
    ).all()
    assert told == ["+254722000111"]  # only the beneficiary with a phone
    assert code_balance(s, SystemAccount.BANK) == bank0  # nothing paid out yet
    assert verify_ledger(s).ok

    # Run again: nothing new.
    again = death.settle_estate(s, d, row.id, approval_id=row.approval_id or 0)
    assert not again.created
    assert s.scalar(
        select(func.count(JournalEntry.id)).where(JournalEntry.kind == "member.estate_transfer")
    ) == 1  # fmt: skip

    # Paid at the branch, once.
    first = parts[1]
    paid, created = death.pay_at_branch(s, d, staff(s, "teller"), payable_id=first.id,
                                        method="cash", reference="RCPT-0001")  # fmt: skip
    assert created and paid.status == "paid"
    _, twice = death.pay_at_branch(s, d, staff(s, "teller"), payable_id=first.id,
                                   method="cash", reference="RCPT-0001")  # fmt: skip
    assert not twice
    assert code_balance(s, SystemAccount.BANK) == bank0 - first.amount_cents
    assert s.get_one(Account, first.account_id).closed_at is not None
    assert verify_ledger(s).ok


def test_without_a_nomination_the_estate_is_held_for_the_legal_representative(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = funded_member(s, at(deps), deposits_cents=7_000 * KES, savings_cents=250 * KES)
    row = record(s, at(deps), member)
    approve(s, at(deps), row)
    [held] = payables(s, row)
    assert (held.payee, held.amount_cents, held.beneficiary_id) == (
        "legal_representative", 7_250 * KES, None)  # fmt: skip
    assert [r["payee"] for r in death.estate_report(s)].count("legal_representative") >= 1
    assert verify_ledger(s).ok


def test_a_pledge_blocks_for_staff_and_a_rejection_restores(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d = at(deps)
    _, _, member = disbursed_loan(s, d, amount_cents=60_000 * KES, deposits_cents=20_000 * KES,
                                  guarantor_deposits_cents=50_000 * KES,
                                  pledge_cents=40_000 * KES)  # fmt: skip
    assert member is not None
    row = record(s, d, member)  # a guarantor: the pledge must be released or replaced first
    assert (row.status, row.blocked_reason, row.approval_id) == (
        "blocked", "guarantees_loan", None)  # fmt: skip
    assert s.get_one(Member, member.id).status == "deceased"  # channels stop all the same
    # Asked again while the pledge stands: still blocked, nothing before a manager.
    again = death.ask_settlement(s, d, staff(s, "manager"), member_id=member.id,
                                 large_threshold_cents=THRESHOLD)  # fmt: skip
    assert (again.status, again.approval_id) == ("blocked", None)

    # A death recorded in error: rejected, the member's status comes back.
    other = funded_member(s, d, deposits_cents=1_000 * KES, name="Baraka Mwangi")
    wrong = record(s, d, other)
    assert wrong.approval_id is not None
    approvals.decide(s, d, staff(s, "manager"), wrong.approval_id, approve=False, note="error")
    s.expire_all()
    assert s.get_one(Member, other.id).status == "active"
    assert s.get_one(MemberDeath, wrong.id).status == "rejected"
    assert Phone(client, other.msisdn).dial().startswith("CON ")


def test_a_beneficiary_is_paid_by_mpesa_and_a_failure_opens_the_payable_again(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d = at(deps)
    member = funded_member(s, d, deposits_cents=9_000 * KES, savings_cents=1_000 * KES + 33)
    nominate(s, d, member, ("50", "+254733000222"), ("50", None))
    row = record(s, d, member)
    approve(s, d, row)
    first, second = payables(s, row)
    with pytest.raises(InvalidInput):  # no phone in the nomination: the branch pays
        pay_estate_payable(s, d, payable_id=second.id, policy=MpesaPolicy(), sim_swap=NEVER)
    swapped = Checker(swapped=True, last_swap_at=T0 - timedelta(days=1))
    with pytest.raises(SimSwapBlocked):
        pay_estate_payable(s, d, payable_id=first.id, policy=MpesaPolicy(), sim_swap=swapped)

    d = at(deps, T0 + timedelta(minutes=5))  # the swapped verdict's cache has expired
    float0 = code_balance(s, SystemAccount.MPESA_DISBURSEMENT_FLOAT)
    payout = pay_estate_payable(s, d, payable_id=first.id, policy=MpesaPolicy(), sim_swap=NEVER)
    assert (payout.msisdn, payout.amount_cents, payout.purpose) == (
        "+254733000222", first.amount_cents - first.amount_cents % KES, "estate")  # fmt: skip
    again = pay_estate_payable(s, d, payable_id=first.id, policy=MpesaPolicy(), sim_swap=NEVER)
    assert again.id == payout.id
    failed = mpesa.settle_b2c(s, d, mpesa.B2COutcome(payout.originator_conversation_id, 2001, "x"))
    assert failed == "failed"
    s.expire_all()
    assert s.get_one(EstatePayable, first.id).status == "open"
    retry = pay_estate_payable(s, d, payable_id=first.id, policy=MpesaPolicy(), sim_swap=NEVER)
    assert retry.id != payout.id
    paid = mpesa.settle_b2c(
        s, d, mpesa.B2COutcome(retry.originator_conversation_id, 0, "ok", receipt="EST1234567")
    )
    assert paid == "paid"
    s.expire_all()
    done = s.get_one(EstatePayable, first.id)
    assert (done.status, done.method, done.paid_reference) == ("paid", "mpesa", "EST1234567")
    assert ledger.get_balance(s, done.account_id).balance_cents == 0
    assert code_balance(s, SystemAccount.MPESA_DISBURSEMENT_FLOAT) == float0 - retry.amount_cents
    assert s.scalars(
        select(OutboxMessage.recipient).where(OutboxMessage.template == "estate_share_paid")
    ).all() == ["+254733000222"]  # fmt: skip
    assert verify_ledger(s).ok


def test_a_payout_queued_before_the_death_is_not_sent(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    d = at(deps)
    member = funded_member(s, d, deposits_cents=2_000 * KES, savings_cents=3_000 * KES)
    # A withdrawal asked before the death, still waiting for the worker:
    held = ledger.reserve_hold(
        s, account_id=member_account_ids(s, member.id)["savings"], amount_cents=1_000 * KES,
        idempotency_key=f"hold-{uuid4().hex[:8]}", now=T0,
    )  # fmt: skip
    payout = B2CPayout(
        originator_conversation_id=str(uuid4()), reference=f"W{uuid4().hex[:9].upper()}",
        idempotency_key=f"w-{uuid4().hex}", purpose="withdrawal", member_id=member.id,
        msisdn=member.msisdn, amount_cents=1_000 * KES, fee_cents=0, hold_id=held.hold_id,
        status="requested", attempts=0, created_at=T0,
    )  # fmt: skip
    s.add(payout)
    s.flush()
    record(s, d, member)
    assert mpesa.claim_b2c(s, d, payout.id) is None
    s.expire_all()
    assert s.get_one(B2CPayout, payout.id).status == "failed"
    assert ledger.get_balance(s, member_account_ids(s, member.id)["savings"]).held_cents == 0


def test_two_managers_approving_at_once_settle_the_estate_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    d = at(deps)
    with unit_of_work(factory) as s:
        member = funded_member(s, d, deposits_cents=6_000 * KES, savings_cents=700 * KES)
        nominate(s, d, member, ("70", None), ("30", None))
        row = record(s, d, member)
        request_id, death_id = row.approval_id, row.id
        managers = [staff(s, "manager"), staff(s, "manager")]
    assert request_id is not None
    start = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def decide(manager: Principal) -> None:
        try:
            start.wait()
            with unit_of_work(factory) as s:
                outcomes.append(approvals.decide(s, d, manager, request_id, approve=True).status)
        except DomainError as exc:
            outcomes.append(exc.code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert outcomes.count("approved") == 1, outcomes
    with unit_of_work(factory) as s:
        parts = death.payables_of(s, death_id)
        assert [p.amount_cents for p in parts] == [4_690 * KES, 2_010 * KES]
        assert verify_ledger(s).ok
