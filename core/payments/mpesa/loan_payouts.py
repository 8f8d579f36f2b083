"""Loans disbursed by M-Pesa (issue 12, part 7): the B2C leg of ``core.loans.disbursement``.

The loans domain may not import payments, so it asks for a ``core.loans.disbursement.LoanPayout``
and the edge that has M-Pesa (the staff API's approval, the USSD apply) passes one made
here by ``prepare_loan_payout``: the member's SIM-swap status is assessed first (it may
call out, so before any lock), then the disbursement calls

* ``check`` before it writes anything: the member's row is locked (the lock order of every
  withdrawal: member, then accounts), the amount is what reached savings in whole
  shillings (M-Pesa pays no cents; odd cents stay in savings), at least the withdrawal
  minimum and at most ``MpesaPolicy.loan_payout_max_cents`` (Safaricom's per-transaction
  limit, a setting), and the SIM-swap guard of withdrawals
  (``core.payments.mpesa.flows.guard_sim_swap``) allows it. The member's daily
  withdrawal limit does not apply: it caps what a member takes out of savings they built
  on the phone; a loan payout is the SACCO's decision, made once per loan, and its own
  limit is the per-transaction maximum;
* ``pay`` after the loan's entry credited savings: a hold on savings of that amount
  (no withdrawal fee: the product's fees were deducted in the loan's entry) and a
  ``B2CPayout`` (purpose ``loan``, keyed ``loan.payout:<loan id>``) with ``SendB2C``
  deferred on the unit of work, all in the disbursement's transaction
  (``core.payments.mpesa.payouts.open_payout``, shared with the year-end payouts).

From there the payout is a withdrawal like any other (the worker, the result callback,
reconciliation, staff ``payout.resolve``): paid, the hold is posted (savings -> the
disbursement float); failed, the hold is released, the money stays in savings and the
member is told (``loan_payout_failed``). The loan stays active either way: it was paid
to the member's account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.members.status import MemberStatus
from core.payments.mpesa.flows import guard_sim_swap
from core.payments.mpesa.payouts import open_payout, payout_amount
from core.payments.mpesa.rules import LimitExceeded, MpesaPolicy, SimSwapBlocked
from core.risk.sim_swap import SimSwapAssessment, SimSwapChecker
from core.risk.sim_swap import assess as assess_sim_swap
from db.models import Member
from db.models_loans import Loan
from db.models_mpesa import B2CPayout

LOAN_PURPOSE = "loan"  # ``mpesa_b2c_payouts.purpose``


def payout_key(loan_id: int) -> str:
    return f"loan.payout:{loan_id}"


@dataclass(frozen=True)
class MpesaLoanPayout:
    """A ``core.loans.disbursement.LoanPayout`` for one member (``prepare_loan_payout``)."""

    member_id: int
    msisdn: str  # the phone the assessment was made for
    policy: MpesaPolicy
    assessment: SimSwapAssessment

    def check(self, session: Session, deps: CoreDeps, net_cents: int) -> int:
        member = session.scalar(
            select(Member)
            .where(Member.id == self.member_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if member is None:
            raise NotFound("no such member")
        if member.status != MemberStatus.ACTIVE:
            raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
        amount = payout_amount(net_cents)
        if amount < self.policy.withdrawal_min_cents:
            raise LimitExceeded(
                reason="below_minimum", limit_cents=self.policy.withdrawal_min_cents
            )
        if amount > self.policy.loan_payout_max_cents:
            raise LimitExceeded(
                "above M-Pesa's per-transaction limit: disburse to savings",
                reason="above_maximum",
                limit_cents=self.policy.loan_payout_max_cents,
            )
        if member.msisdn != self.msisdn:  # the phone changed since it was checked
            raise SimSwapBlocked("the phone number changed: check it again", reason="check_failed")
        guard_sim_swap(
            session, deps, member=member, amount_cents=amount, policy=self.policy,
            assessment=self.assessment,
        )  # fmt: skip
        return amount

    def pay(self, session: Session, deps: CoreDeps, loan: Loan, amount_cents: int) -> str:
        payout = open_payout(
            session, deps, member_id=loan.member_id, msisdn=self.msisdn,
            amount_cents=amount_cents, idempotency_key=payout_key(loan.id),
            purpose=LOAN_PURPOSE,
            reason=f"Loan {loan.reference} to M-Pesa {format_cents(amount_cents)}",
        )  # fmt: skip
        return payout.reference


def prepare_loan_payout(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    policy: MpesaPolicy,
    sim_swap: SimSwapChecker,
) -> MpesaLoanPayout:
    """Assess the member's SIM-swap status (may call the provider: call before taking any
    lock) and return the payout port the loan book's disbursement uses."""
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member")
    assessment = assess_sim_swap(
        session, deps, sim_swap, member_id=member.id, msisdn=member.msisdn, policy=policy.sim_swap
    )
    session.flush()
    return MpesaLoanPayout(member.id, member.msisdn, policy, assessment)


def loan_payout_of(session: Session, loan_id: int) -> B2CPayout | None:
    """The M-Pesa payout of a loan disbursed by M-Pesa, if any."""
    return session.scalar(select(B2CPayout).where(B2CPayout.idempotency_key == payout_key(loan_id)))
