"""A deceased member's estate paid by M-Pesa (issue 14, part 3; docs/members/death.md):
one beneficiary's payable (``core.members.death``) sent by B2C to the phone of the
nomination.

``pay_estate_payable`` (the staff API; the SIM-swap status of the beneficiary's phone
assessed first, before any lock, as for every payout): the payable must be open and its
beneficiary have a phone; the whole shillings (at least the withdrawal minimum, at most
``MpesaPolicy.loan_payout_max_cents``, Safaricom's per-transaction limit: above it, or
below, staff pay at the branch) are held on the payable account and a ``B2CPayout``
(purpose ``estate``, keyed ``estate.payable:<id>:mpesa:<its id>``; the payable's row lock
and state make a second request return the first payout) stored with ``SendB2C`` deferred;
the odd cents M-Pesa cannot send are paid at the branch in the same transaction
(``member.estate_payout``, keyed ``estate.payable:<id>:cents``). A recent SIM swap of that
phone, or a failed check the setting refuses, refuses the payout (``SimSwapBlocked``;
nothing written). The payable is then ``paying``.

The result (``flows``): paid, the hold is posted (the payable -> the disbursement float),
the payable ``paid`` and its account closed, the beneficiary told (``estate_share_paid``);
failed, the hold is released and the payable ``open`` again, for staff to pay at the
branch (they are alerted).
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members import death
from core.payments.mpesa.flows import ESTATE_PURPOSE
from core.payments.mpesa.payouts import open_payout, payout_amount
from core.payments.mpesa.rules import LimitExceeded, MpesaPolicy, SimSwapBlocked, sim_swap_decision
from core.risk.sim_swap import SimSwapChecker
from core.risk.sim_swap import assess as assess_sim_swap
from db.models_exit import EstatePayable
from db.models_mpesa import B2CPayout


def pay_estate_payable(
    session: Session,
    deps: CoreDeps,
    *,
    payable_id: int,
    policy: MpesaPolicy,
    sim_swap: SimSwapChecker,
) -> B2CPayout:
    """Start the M-Pesa payment of one payable (see the module); the same payable again
    returns its payout."""
    phone = death.beneficiary_phone(session, deps, payable_id)
    if phone is None:
        raise InvalidInput("the payee has no phone in the nomination: pay at the branch",
                           field="method", reason="no_phone")  # fmt: skip
    payable = session.get_one(EstatePayable, payable_id)
    assessment = assess_sim_swap(
        session, deps, sim_swap, member_id=payable.member_id, msisdn=phone,
        policy=policy.sim_swap,
    )  # fmt: skip
    row = death.lock_payable(session, payable_id)
    if row.status == death.PayableStatus.PAYING and row.payout_id is not None:
        return session.get_one(B2CPayout, row.payout_id)  # asked twice: the one payout
    if row.status != death.PayableStatus.OPEN:
        raise death.PayableNotOpen(f"the payable is {row.status}", reason=row.status)
    amount = payout_amount(row.amount_cents)
    if amount < policy.withdrawal_min_cents:
        raise LimitExceeded("below M-Pesa's minimum: pay at the branch", reason="below_minimum",
                            limit_cents=policy.withdrawal_min_cents)  # fmt: skip
    if amount > policy.loan_payout_max_cents:
        raise LimitExceeded("above M-Pesa's per-transaction limit: pay at the branch",
                            reason="above_maximum", limit_cents=policy.loan_payout_max_cents)  # fmt: skip
    refused = sim_swap_decision(assessment.status, amount_cents=amount, policy=policy)
    if refused is not None:
        raise SimSwapBlocked("the payee's SIM changed recently (or the check failed): "
                             "pay at the branch against their ID", reason=refused)  # fmt: skip
    now = deps.now()
    cents = ledger.get_balance(session, row.account_id).balance_cents - amount
    if cents:
        ledger.post_entry(
            session, kind=EntryKind.MEMBER_ESTATE_PAYOUT,
            legs=[ledger.Leg(row.account_id, cents),
                  ledger.Leg(ledger.account_id_by_code(session, SystemAccount.BANK), -cents)],
            idempotency_key=f"estate.payable:{row.id}:cents", now=now,
            memo="Estate payout: the cents M-Pesa cannot send, at the branch",
        )  # fmt: skip
    # A new attempt after a failed one is a new payout: its key is new too.
    payout = open_payout(
        session, deps, member_id=row.member_id, msisdn=phone, amount_cents=amount,
        idempotency_key=f"estate.payable:{row.id}:mpesa:{uuid.uuid4()}",
        purpose=ESTATE_PURPOSE, reason="Estate share to M-Pesa", account_id=row.account_id,
    )  # fmt: skip
    row.status, row.method, row.payout_id = (
        death.PayableStatus.PAYING,
        death.PayMethod.MPESA,
        payout.id,
    )
    session.flush()
    return payout
