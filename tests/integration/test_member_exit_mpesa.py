"""Exit refunds paid by M-Pesa on real PostgreSQL (core.payments.mpesa.exit_refunds;
docs/members/exit.md, "How the refund is paid"): the approved exit holds the refund's
whole shillings on savings and starts one B2C payout to the member's registered phone, the
odd cents refunded at the branch; the result callback posts the hold and closes the last
account, or releases it and refunds the same amount at the branch instead. Above M-Pesa's
per-transaction limit or after a recent SIM swap the whole refund is paid at the branch.
Real threads: two managers approving at once and two results racing pay once."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members import exit as member_exit
from core.members.exit import ExitChannel, ExitPolicy, RefundMethod
from core.members.registration import member_account_ids
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.exit_refunds import prepare_exit_refund
from core.payments.mpesa.rules import MpesaPolicy
from db.models import Account, ApprovalRequest, Member, OutboxMessage, StaffUser
from db.models_mpesa import B2CPayout, SimSwapEvent
from db.session import make_session_factory, unit_of_work
from tests.integration.test_loan_mpesa_disbursement import NEVER, Checker
from tests.integration.test_mpesa_exactly_once import race
from tests.loanutil import funded_member

KES = 100
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
POLICY = ExitPolicy(notice_days=60)
MPESA = MpesaPolicy()  # B2C up to KES 150,000 a transaction
THRESHOLD = 50_000 * KES


def at(deps: CoreDeps, when: datetime) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: when)


D0 = T0
D60 = T0 + timedelta(days=60)


def staff(s: Session, role: str) -> Principal:
    name = f"{role}.{uuid4().hex[:8]}"
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def code_balance(s: Session, code: str) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def savings(s: Session, member: Member) -> Account:
    s.expire_all()
    return s.get_one(Account, member_account_ids(s, member.id)["savings"])


def sms(s: Session, member: Member, template: str) -> list[str]:
    query = select(OutboxMessage.body).where(
        OutboxMessage.member_id == member.id, OutboxMessage.template == template
    )
    return list(s.scalars(query))


def leaver(s: Session, deps: CoreDeps, *, savings_cents: int, deposits_cents: int,
           method: RefundMethod = RefundMethod.MPESA) -> tuple[Member, int]:  # fmt: skip
    """A member who gave notice at T0 (refund by ``method``) and the request the exit run
    put to a manager 60 days later."""
    member = funded_member(s, at(deps, D0), deposits_cents=deposits_cents,
                           savings_cents=savings_cents, name="Wanjiku Achieng")  # fmt: skip
    member_exit.request_exit(
        s, at(deps, D0), member_id=member.id, reason="moving abroad", policy=POLICY,
        channel=ExitChannel.STAFF, refund_method=method,
    )  # fmt: skip
    report = member_exit.exit_run(s, at(deps, D60), staff(s, "manager"), policy=POLICY,
                                  large_threshold_cents=THRESHOLD)  # fmt: skip
    [(_, request_id)] = report.asked
    return member, request_id


def approve(s: Session, deps: CoreDeps, member: Member, request_id: int,
            checker: Checker = NEVER, policy: MpesaPolicy = MPESA) -> ApprovalRequest:  # fmt: skip
    """What the API's approval does: the refund port first (its SIM-swap check), then the
    decision."""
    assert member_exit.refund_member(s, request_id) == member.id
    port = prepare_exit_refund(s, at(deps, D60), member_id=member.id, policy=policy,
                               sim_swap=checker)  # fmt: skip
    return approvals.decide(s, at(deps, D60), staff(s, "manager"), request_id, approve=True,
                            ports={"exit_refund": port})  # fmt: skip


def the_payout(s: Session, member: Member) -> B2CPayout:
    return s.scalars(select(B2CPayout).where(B2CPayout.member_id == member.id)).one()


def result(s: Session, deps: CoreDeps, payout: B2CPayout, code: int) -> str:
    return mpesa.settle_b2c(
        s, at(deps, D60 + timedelta(minutes=1)),
        mpesa.B2COutcome(payout.originator_conversation_id, code, "done",
                         receipt="RFD1234567" if code == 0 else None),
    )  # fmt: skip


def test_an_mpesa_refund_sends_the_shillings_and_the_callback_closes_the_last_account(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member, request_id = leaver(s, deps, savings_cents=3_000 * KES + 50,
                                deposits_cents=12_000 * KES)  # fmt: skip
    bank0, float0 = (
        code_balance(s, SystemAccount.BANK),
        code_balance(s, SystemAccount.MPESA_DISBURSEMENT_FLOAT),
    )
    done = approve(s, deps, member, request_id)
    assert done.status == "approved", done.result
    payout = the_payout(s, member)
    assert (payout.purpose, payout.amount_cents, payout.msisdn) == ("exit", 15_000 * KES,
                                                                     member.msisdn)  # fmt: skip
    # The 50 cents M-Pesa cannot send are refunded at the branch; the rest waits on hold.
    assert code_balance(s, SystemAccount.BANK) == bank0 - 50
    account = savings(s, member)
    assert (account.balance_cents, account.held_cents, account.closed_at) == (
        15_000 * KES, 15_000 * KES, None)  # fmt: skip
    assert s.get_one(Member, member.id).status == "exited"
    [told] = sms(s, member, "exit_done_mpesa")
    assert "Refund KES 15,000 " in told and member.msisdn in told
    assert verify_ledger(s).ok

    assert result(s, deps, payout, 0) == "paid"
    account = savings(s, member)
    assert (account.balance_cents, account.held_cents) == (0, 0)
    assert account.closed_at is not None
    assert code_balance(s, SystemAccount.MPESA_DISBURSEMENT_FLOAT) == float0 - 15_000 * KES
    [paid] = sms(s, member, "exit_refund_paid")
    assert "RFD1234567" in paid
    assert result(s, deps, payout, 0) == "duplicate"  # the callback again: nothing more
    assert verify_ledger(s).ok


def test_a_failed_mpesa_refund_is_paid_at_the_branch_instead(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member, request_id = leaver(s, deps, savings_cents=2_000 * KES, deposits_cents=8_000 * KES)
    bank0 = code_balance(s, SystemAccount.BANK)
    assert approve(s, deps, member, request_id).status == "approved"
    payout = the_payout(s, member)
    assert result(s, deps, payout, 2001) == "failed"
    account = savings(s, member)
    assert (account.balance_cents, account.held_cents) == (0, 0)
    assert account.closed_at is not None
    assert code_balance(s, SystemAccount.BANK) == bank0 - 10_000 * KES
    [told] = sms(s, member, "exit_refund_failed")
    assert "KES 10,000 " in told and "branch" in told
    assert sms(s, member, "withdrawal_failed") == []
    assert verify_ledger(s).ok


def test_above_the_mpesa_limit_the_whole_refund_is_paid_at_the_branch(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member, request_id = leaver(s, deps, savings_cents=1_000 * KES, deposits_cents=9_500 * KES)
    bank0 = code_balance(s, SystemAccount.BANK)
    small = dataclasses.replace(MPESA, loan_payout_max_cents=10_000 * KES)
    done = approve(s, deps, member, request_id, policy=small)
    assert done.status == "approved"
    assert json.loads(done.result or "{}")["mpesa_refused"] == "above_maximum"
    assert s.scalar(select(func.count(B2CPayout.id)).where(B2CPayout.member_id == member.id)) == 0
    assert code_balance(s, SystemAccount.BANK) == bank0 - 10_500 * KES
    assert savings(s, member).closed_at is not None
    assert len(sms(s, member, "exit_done")) == 1
    assert verify_ledger(s).ok


def test_a_recent_sim_swap_refuses_mpesa_and_the_branch_pays(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member, request_id = leaver(s, deps, savings_cents=500 * KES, deposits_cents=4_000 * KES)
    swapped = Checker(swapped=True, last_swap_at=D60 - timedelta(days=2))
    done = approve(s, deps, member, request_id, checker=swapped)
    assert done.status == "approved"
    assert json.loads(done.result or "{}")["mpesa_refused"] == "recent_swap"
    assert s.scalar(select(func.count(B2CPayout.id)).where(B2CPayout.member_id == member.id)) == 0
    event = s.scalars(select(SimSwapEvent).where(SimSwapEvent.member_id == member.id)).one()
    assert event.decision == "refused"
    assert savings(s, member).balance_cents == 0
    assert verify_ledger(s).ok


def test_without_mpesa_configured_the_approval_fails_and_nothing_moves(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member, request_id = leaver(s, deps, savings_cents=500 * KES, deposits_cents=4_000 * KES)
    done = approvals.decide(s, at(deps, D60), staff(s, "manager"), request_id, approve=True)
    assert done.status == "failed"
    assert "M-Pesa is not configured" in json.loads(done.result or "{}")["detail"]
    assert s.get_one(Member, member.id).status == "active"
    assert savings(s, member).balance_cents == 500 * KES


def test_two_managers_approving_at_once_start_one_payout_and_two_results_settle_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        member, request_id = leaver(s, deps, savings_cents=700 * KES, deposits_cents=5_000 * KES)
        member_id = member.id
        managers = [staff(s, "manager"), staff(s, "manager")]
    start = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def decide(manager: Principal) -> None:
        try:
            with unit_of_work(factory) as s:
                port = prepare_exit_refund(s, at(deps, D60), member_id=member_id, policy=MPESA,
                                           sim_swap=NEVER)  # fmt: skip
            start.wait()
            with unit_of_work(factory) as s:
                req = approvals.decide(s, at(deps, D60), manager, request_id, approve=True,
                                       ports={"exit_refund": port})  # fmt: skip
                outcomes.append(req.status)
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
        member = s.get_one(Member, member_id)
        payout = the_payout(s, member)  # exactly one
        ocid = payout.originator_conversation_id
    answers = race(factory, [
        lambda s: mpesa.settle_b2c(s, at(deps, D60), mpesa.B2COutcome(ocid, 0, "ok",
                                                                      receipt="RFD7654321")),
        lambda s: mpesa.settle_b2c(s, at(deps, D60), mpesa.B2COutcome(ocid, 0, "ok",
                                                                      receipt="RFD7654321")),
    ])  # fmt: skip
    assert answers == ["duplicate", "paid"]
    with unit_of_work(factory) as s:
        member = s.get_one(Member, member_id)
        account = savings(s, member)
        assert (account.balance_cents, account.held_cents) == (0, 0)
        assert account.closed_at is not None
        assert len(sms(s, member, "exit_refund_paid")) == 1
        assert verify_ledger(s).ok
