"""Exit refunds paid by M-Pesa (issue 14, part 3; docs/members/exit.md): the B2C leg of
``core.members.exit``.

The members domain may not import payments, so the exit asks for a
``core.members.exit.RefundPayout`` and the edge that decides the ``member.exit`` request
(the staff API's approval) passes one made here by ``prepare_exit_refund``: the member's
SIM-swap status is assessed first (it may call out, so before any lock). In the exit's
transaction ``pay``

* sends whole shillings (M-Pesa pays no cents; the odd cents are refunded at the branch
  with the exit's reference);
* refuses M-Pesa, and the exit pays the whole refund at the branch instead, when the
  amount is below the withdrawal minimum or above ``MpesaPolicy.loan_payout_max_cents``
  (Safaricom's per-transaction B2C limit, ``MPESA_LOAN_PAYOUT_MAX_KES``): one payout or
  none, never a refund split over several payouts that could half fail; when the
  member's phone changed since it was checked; or when the SIM-swap guard of withdrawals
  (``flows.guard_sim_swap``) refuses (its event and SMS are kept with the exit);
* otherwise holds the amount on the member's savings and stores a ``B2CPayout`` (purpose
  ``exit``, keyed ``member.exit:<exit id>:mpesa``, no fee: the B2C charge is the SACCO's, as
  for a loan payout) with ``SendB2C`` deferred on the unit of work.

From there it is a payout like any other (the worker, the result callback, reconciliation,
staff ``payout.resolve``). ``flows`` then calls ``core.members.exit.refund_settled``: paid,
the savings account (now at zero) is closed and the member gets ``exit_refund_paid``;
failed, the hold is released and the same amount is refunded at the branch instead
(``exit_refund_failed``). Nothing stays in an exited member's account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import NotFound
from core.kernel.money import format_cents
from core.members.exit import RefundSent
from core.payments.mpesa.flows import EXIT_PURPOSE, guard_sim_swap
from core.payments.mpesa.payouts import open_payout, payout_amount
from core.payments.mpesa.rules import MpesaPolicy, SimSwapBlocked
from core.risk.sim_swap import SimSwapAssessment, SimSwapChecker
from core.risk.sim_swap import assess as assess_sim_swap
from db.models import Member
from db.models_mpesa import B2CPayout


@dataclass(frozen=True)
class MpesaExitRefund:
    """A ``core.members.exit.RefundPayout`` for one member (``prepare_exit_refund``)."""

    member_id: int
    msisdn: str  # the phone the assessment was made for
    policy: MpesaPolicy
    assessment: SimSwapAssessment

    def pay(
        self, session: Session, deps: CoreDeps, member: Member, amount_cents: int, key: str
    ) -> RefundSent:
        existing = session.scalar(select(B2CPayout).where(B2CPayout.idempotency_key == key))
        if existing is not None:
            return RefundSent(existing.id, existing.amount_cents, None, existing.reference)
        amount = payout_amount(amount_cents)
        if amount < self.policy.withdrawal_min_cents:
            return RefundSent(None, 0, "below_minimum")
        if amount > self.policy.loan_payout_max_cents:
            return RefundSent(None, 0, "above_maximum")
        if member.id != self.member_id or member.msisdn != self.msisdn:
            return RefundSent(None, 0, "phone_changed")
        try:
            guard_sim_swap(
                session, deps, member=member, amount_cents=amount, policy=self.policy,
                assessment=self.assessment,
            )  # fmt: skip
        except SimSwapBlocked as refused:  # its event and SMS stay, committed with the exit
            return RefundSent(None, 0, refused.reason)
        payout = open_payout(
            session, deps, member_id=member.id, msisdn=self.msisdn, amount_cents=amount,
            idempotency_key=key, purpose=EXIT_PURPOSE,
            reason=f"Exit refund to M-Pesa {format_cents(amount)}",
        )  # fmt: skip
        return RefundSent(payout.id, amount, None, payout.reference)


def prepare_exit_refund(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    policy: MpesaPolicy,
    sim_swap: SimSwapChecker,
) -> MpesaExitRefund:
    """Assess the member's SIM-swap status (may call the provider: call before taking any
    lock) and return the refund port the exit uses."""
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member")
    assessment = assess_sim_swap(
        session, deps, sim_swap, member_id=member.id, msisdn=member.msisdn, policy=policy.sim_swap
    )
    session.flush()
    return MpesaExitRefund(member.id, member.msisdn, policy, assessment)
