"""Loans disbursed by M-Pesa (issue 12, part 7): the loan's entry to savings, then in the
same transaction a hold and a B2C payout of what reached savings; the result posts the
hold (savings back where it was before the loan) or releases it (the money stays in
savings, the member is told). Refusals (SIM swap, above M-Pesa's limit, no M-Pesa here)
write nothing."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.permissions import SYSTEM, Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.loans import approval_actions, book, disbursement
from core.members.registration import member_account_ids
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.jobs import SendB2C
from core.payments.mpesa.loan_payouts import loan_payout_of, prepare_loan_payout
from core.payments.mpesa.rules import MpesaPolicy
from db.models import Hold, Member, OutboxMessage, StaffUser
from db.models_loans import Loan, LoanApplication, LoanInstalment
from db.models_mpesa import B2CPayout, SimSwapEvent
from db.session import make_session_factory, unit_of_work
from tests.integration.test_mpesa_exactly_once import race
from tests.loanutil import PROCESSING_1PC, funded_member, make_product

KES = 100
POLICY = MpesaPolicy()  # loan payouts up to KES 150,000, no withdrawal fee on them
NOW = datetime(2026, 6, 10, 7, 0, tzinfo=UTC)
_names = itertools.count(1)


@dataclass(frozen=True)
class Checker:
    """The SIM-swap provider: never swapped, swapped ``days`` ago, or failing."""

    ok: bool = True
    swapped: bool | None = False
    last_swap_at: datetime | None = None
    error: str | None = None

    def check(self, msisdn: str) -> Checker:
        return self


NEVER = Checker()


@pytest.fixture
def clock(deps: CoreDeps) -> CoreDeps:
    return replace(deps, now=lambda: NOW)


def staff(s: Session, role: str) -> Principal:
    name = f"{role}.{next(_names)}.{uuid4().hex[:6]}"
    user = StaffUser(username=name, full_name=name, role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def savings(s: Session, member: Member) -> tuple[int, int]:
    """(balance, held) of the member's savings."""
    view = ledger.get_balance(s, member_account_ids(s, member.id)["savings"])
    return view.balance_cents, view.held_cents


def sms(s: Session, member: Member, template: str) -> list[str]:
    query = select(OutboxMessage.body).where(
        OutboxMessage.member_id == member.id, OutboxMessage.template == template
    )
    return list(s.scalars(query))


def apply(
    s: Session,
    deps: CoreDeps,
    *,
    amount_kes: int = 50_000,
    disburse_to: str = "mpesa",
    ceiling_kes: int = 0,
    payout: disbursement.LoanPayout | None = None,
    savings_kes: int = 1_000,
) -> tuple[LoanApplication, Member]:
    """A member with KES 20,000 deposits (limit 60,000) applies under a product with a 1%
    processing fee deducted, shilling rounding and no guarantors."""
    product = make_product(
        s, deps, fees=[PROCESSING_1PC], guarantor_policy="none",
        auto_approve_ceiling_cents=ceiling_kes * KES,
    )  # fmt: skip
    member = funded_member(s, deps, deposits_cents=20_000 * KES, savings_cents=savings_kes * KES)
    application = book.apply_for_loan(
        s, deps, member.id, product.code, amount_kes * KES, 6, "staff",
        f"apply-{uuid4().hex[:10]}", disburse_to=disburse_to, payout=payout,
    )  # fmt: skip
    return application, member


def port(
    s: Session,
    deps: CoreDeps,
    member: Member,
    checker: Checker = NEVER,
    policy: MpesaPolicy = POLICY,
) -> disbursement.LoanPayout:
    return prepare_loan_payout(s, deps, member_id=member.id, policy=policy, sim_swap=checker)


def approve(
    s: Session,
    deps: CoreDeps,
    application: LoanApplication,
    ports: dict[str, object] | None = None,
    **recommend: str,
) -> str:
    req = approval_actions.recommend(
        s, deps, staff(s, "loan_officer"), application.id, large_threshold_cents=10**12,
        **recommend,
    )  # fmt: skip
    decided = approvals.decide(
        s, deps, staff(s, "manager"), req.id, approve=True, ports=ports or {}
    )
    return decided.status if decided.status == "approved" else f"failed:{decided.result}"


def loan_of(s: Session, application: LoanApplication) -> Loan | None:
    return s.scalars(select(Loan).where(Loan.application_id == application.id)).one_or_none()


def test_approval_by_mpesa_pays_savings_then_holds_and_sends_the_net(
    db_session: Session, clock: CoreDeps
) -> None:
    s, deps = db_session, clock
    application, member = apply(s, deps)
    before = savings(s, member)
    assert application.status == "pending_approval" and application.disburse_to == "mpesa"

    assert approve(s, deps, application, {"loan_payout": port(s, deps, member)}) == "approved"

    loan = loan_of(s, application)
    assert loan is not None and loan.status == "active" and application.status == "disbursed"
    assert ledger.get_balance(s, loan.account_id).balance_cents == 50_000 * KES
    payout = loan_payout_of(s, loan.id)
    assert payout is not None
    assert (payout.purpose, payout.amount_cents, payout.fee_cents, payout.status) == (
        "loan", 49_500 * KES, 0, "requested",
    )  # fmt: skip
    assert payout.msisdn == member.msisdn
    # The loan's entry reached savings; the net is held there until M-Pesa answers.
    assert savings(s, member) == (before[0] + 49_500 * KES, 49_500 * KES)
    assert s.get_one(Hold, payout.hold_id).status == "pending"
    assert SendB2C(payout.id) in uow.deferred(s)
    [told] = sms(s, member, "loan_disbursed_mpesa")
    assert f"loan {loan.reference} of KES 50,000: KES 49,500 on its way to M-Pesa" in told
    first = s.scalars(
        select(LoanInstalment).where(LoanInstalment.loan_id == loan.id, LoanInstalment.number == 1)
    ).one()
    assert f"1st instalment KES {first.due_cents // KES:,} due {first.due_on:%d/%m/%Y}" in told
    assert sms(s, member, "loan_disbursed") == []
    assert verify_ledger(s).ok

    # M-Pesa pays: the hold is posted and savings is back where it was before the loan.
    assert mpesa.claim_b2c(s, deps, payout.id) is not None
    paid = mpesa.B2COutcome(payout.originator_conversation_id, 0, "ok", "AG_1", "QLN0000001")
    assert mpesa.settle_b2c(s, deps, paid) == "paid"
    assert savings(s, member) == before
    assert s.get_one(Hold, payout.hold_id).status == "posted"
    assert ledger.get_balance(s, loan.account_id).balance_cents == 50_000 * KES
    assert loan.status == "active"
    [receipt] = sms(s, member, "withdrawal_paid")
    assert "KES 49,500 sent to M-Pesa" in receipt and "QLN0000001" in receipt
    report = verify_ledger(s)
    assert report.ok, report.problems


@pytest.mark.parametrize("how", ["result", "status_query"])
def test_a_failed_payout_leaves_the_money_in_savings_and_tells_the_member(
    db_session: Session, clock: CoreDeps, how: str
) -> None:
    s, deps = db_session, clock
    application, member = apply(s, deps)
    before = savings(s, member)
    assert approve(s, deps, application, {"loan_payout": port(s, deps, member)}) == "approved"
    loan = loan_of(s, application)
    assert loan is not None
    payout = loan_payout_of(s, loan.id)
    assert payout is not None and mpesa.claim_b2c(s, deps, payout.id) is not None
    ocid = payout.originator_conversation_id
    if how == "result":
        outcome = mpesa.B2COutcome(ocid, 2001, "The initiator information is invalid.")
        assert mpesa.settle_b2c(s, deps, outcome) == "failed"
    else:
        mpesa.record_b2c_accepted(s, deps, payout.id, conversation_id="AG_2")
        answer = mpesa.StatusOutcome(
            query_id="q-9", original_originator_conversation_id=ocid, found=True,
            completed=False, failed=True, detail="failed",
        )  # fmt: skip
        assert mpesa.settle_status(s, deps, answer) == "failed"
    assert s.get_one(Hold, payout.hold_id).status == "released"
    assert savings(s, member) == (before[0] + 49_500 * KES, 0)  # in savings, free to use
    assert loan.status == "active"  # it was disbursed: to the member's account
    [told] = sms(s, member, "loan_payout_failed")
    assert "KES 49,500 not sent to M-Pesa" in told and "It is in your savings" in told
    assert sms(s, member, "withdrawal_failed") == []
    report = verify_ledger(s)
    assert report.ok, report.problems


def test_a_recent_sim_swap_refuses_the_approval_and_writes_nothing(
    db_session: Session, clock: CoreDeps
) -> None:
    s, deps = db_session, clock
    application, member = apply(s, deps)
    before = savings(s, member)
    swapped = Checker(swapped=True, last_swap_at=NOW - timedelta(days=2))
    result = approve(s, deps, application, {"loan_payout": port(s, deps, member, swapped)})
    assert result.startswith("failed:") and "sim_swap_recent" in result
    assert application.status == "pending_approval" and loan_of(s, application) is None
    assert savings(s, member) == before
    assert s.scalar(select(func.count()).select_from(B2CPayout).where(
        B2CPayout.member_id == member.id)) == 0  # fmt: skip
    assert s.scalar(select(func.count()).select_from(SimSwapEvent).where(
        SimSwapEvent.member_id == member.id)) == 0  # fmt: skip
    # Staff saw the member's ID: recommended again to savings, it is paid there.
    assert approve(s, deps, application, disburse_to="savings") == "approved"
    loan = loan_of(s, application)
    assert loan is not None and loan_payout_of(s, loan.id) is None
    assert savings(s, member) == (before[0] + 49_500 * KES, 0)
    assert len(sms(s, member, "loan_disbursed")) == 1
    assert verify_ledger(s).ok


def test_a_net_above_the_mpesa_limit_or_no_mpesa_here_is_refused_before_anything_is_written(
    db_session: Session, clock: CoreDeps
) -> None:
    s, deps = db_session, clock
    application, member = apply(s, deps)
    before = savings(s, member)
    small = replace(POLICY, loan_payout_max_cents=40_000 * KES)
    result = approve(s, deps, application, {"loan_payout": port(s, deps, member, policy=small)})
    assert result.startswith("failed:") and "limit_exceeded" in result
    assert approve(s, deps, application) == (
        'failed:{"detail":"M-Pesa payouts are not available here: disburse to savings or '
        'approve where M-Pesa is configured","error":"loan_state"}'
    )
    other = funded_member(s, deps, deposits_cents=1_000 * KES)
    result = approve(s, deps, application, {"loan_payout": port(s, deps, other)})
    assert "loan_state" in result  # a port made for someone else pays nobody
    assert application.status == "pending_approval" and loan_of(s, application) is None
    assert savings(s, member) == before
    assert verify_ledger(s).ok


def test_disbursing_twice_pays_once(db_session: Session, clock: CoreDeps) -> None:
    s, deps = db_session, clock
    application, member = apply(s, deps)
    disbursement.approve_application(s, deps, SYSTEM, application.id)
    first = disbursement.disburse(s, deps, SYSTEM, application.id, payout=port(s, deps, member))
    again = disbursement.disburse(s, deps, SYSTEM, application.id, payout=port(s, deps, member))
    assert again.id == first.id
    count = select(func.count()).select_from(B2CPayout).where(B2CPayout.member_id == member.id)
    assert s.scalar(count) == 1
    assert len(sms(s, member, "loan_disbursed_mpesa")) == 1
    assert verify_ledger(s).ok


def test_auto_approval_pays_by_mpesa_with_a_port_and_waits_for_staff_without_one(
    db_session: Session, clock: CoreDeps
) -> None:
    s, deps = db_session, clock
    member = funded_member(s, deps, deposits_cents=20_000 * KES)
    paid, _ = apply(s, deps, ceiling_kes=100_000, payout=port(s, deps, member))
    # (apply made its own member; a port for another member pays nobody: staff decide)
    assert paid.status == "pending_approval" and paid.reasons == "mpesa_unavailable"
    application, borrower = apply(s, deps, ceiling_kes=100_000, amount_kes=30_000)
    assert application.status == "pending_approval"
    assert application.reasons == "mpesa_unavailable" and loan_of(s, application) is None

    product = make_product(s, deps, fees=[], guarantor_policy="none",
                           auto_approve_ceiling_cents=100_000 * KES)  # fmt: skip
    application = book.apply_for_loan(
        s, deps, member.id, product.code, 30_000 * KES, 6, "ussd", "auto-mpesa-1",
        disburse_to="mpesa", payout=port(s, deps, member),
    )  # fmt: skip
    assert application.status == "disbursed"
    loan = loan_of(s, application)
    assert loan is not None
    payout = loan_payout_of(s, loan.id)
    assert payout is not None and payout.amount_cents == 30_000 * KES
    assert verify_ledger(s).ok


def test_bad_destinations_are_refused_and_write_nothing(
    db_session: Session, clock: CoreDeps
) -> None:
    s, deps = db_session, clock
    product = make_product(s, deps, guarantor_policy="none")
    member = funded_member(s, deps, deposits_cents=20_000 * KES)
    for bad in ("cheque", "", "MPESA", "x" * 5000):
        with pytest.raises(InvalidInput) as refused:
            book.apply_for_loan(
                s, deps, member.id, product.code, 10_000 * KES, 6, "staff",
                f"bad-dest-{uuid4().hex[:8]}", disburse_to=bad,
            )  # fmt: skip
        assert refused.value.field == "disburse_to"
    assert s.scalar(select(func.count()).select_from(LoanApplication).where(
        LoanApplication.member_id == member.id)) == 0  # fmt: skip
    application, _ = apply(s, deps)
    with pytest.raises(InvalidInput):
        approval_actions.recommend(
            s, deps, staff(s, "loan_officer"), application.id, large_threshold_cents=10**12,
            disburse_to="cash",
        )  # fmt: skip
    assert application.approval_id is None and application.disburse_to == "mpesa"


def _disburse_work(deps: CoreDeps, application_id: int, member_id: int) -> Callable[[Session], str]:
    def work(s: Session) -> str:
        payout = prepare_loan_payout(s, deps, member_id=member_id, policy=POLICY, sim_swap=NEVER)
        return disbursement.disburse(s, deps, SYSTEM, application_id, payout=payout).reference

    return work


def test_two_disbursements_of_one_application_at_once_make_one_loan_and_one_payout(
    committed_pg: Engine, clock: CoreDeps
) -> None:
    factory, deps = make_session_factory(committed_pg), clock
    for trial in range(3):
        with unit_of_work(factory) as s:
            application, member = apply(s, deps)
            disbursement.approve_application(s, deps, SYSTEM, application.id)
            application_id, member_id = application.id, member.id
            savings_before = savings(s, member)

        work = _disburse_work(deps, application_id, member_id)
        answers = race(factory, [work, work])
        assert len(set(answers)) == 1, (trial, answers)
        with unit_of_work(factory) as s:
            loans = s.scalars(select(Loan).where(Loan.application_id == application_id)).all()
            assert len(loans) == 1
            payouts = s.scalars(select(B2CPayout).where(B2CPayout.member_id == member_id)).all()
            assert [(p.amount_cents, p.purpose) for p in payouts] == [(49_500 * KES, "loan")]
            member = s.get_one(Member, member_id)
            assert savings(s, member) == (savings_before[0] + 49_500 * KES, 49_500 * KES)
            report = verify_ledger(s)
            assert report.ok, report.problems
