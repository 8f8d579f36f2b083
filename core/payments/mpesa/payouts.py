"""The one way the SACCO itself pays a member's savings out by M-Pesa B2C (a loan's net,
a year-end net): shared by ``loan_payouts`` and ``dividend_payouts``.

``open_payout`` holds the amount on the member's savings (no fee: these are the
SACCO's payments, not the member's withdrawals), records a ``B2CPayout`` under the
caller's idempotency key and defers ``SendB2C`` on the unit of work. The same key again
returns the first payout (and defers its send again: the worker claims only a payout
still ``requested``). From there it is a withdrawal like any other: the worker, the result
callback, reconciliation, staff ``payout.resolve``; paid, the hold is posted (savings ->
the disbursement float); failed, the hold is released and the money stays in savings
(the member is told with the purpose's own words: ``flows.FAILED_TEMPLATES``).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.members.registration import member_account_ids
from core.payments.mpesa.jobs import SendB2C
from core.payments.mpesa.rules import CENTS
from core.payments.mpesa.vocabulary import PayoutStatus
from db.models_mpesa import B2CPayout


def payout_amount(net_cents: int) -> int:
    """What M-Pesa can send of ``net_cents``: whole shillings (the cents stay in savings)."""
    return net_cents - net_cents % CENTS


def payout_by_key(session: Session, key: str) -> B2CPayout | None:
    return session.scalar(select(B2CPayout).where(B2CPayout.idempotency_key == key))


def open_payout(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    msisdn: str,
    amount_cents: int,
    idempotency_key: str,
    purpose: str,
    reason: str,
    account_id: int | None = None,
) -> B2CPayout:
    """Hold ``amount_cents`` on savings (or on ``account_id``: an estate's payable) and
    record the payout to send (``SendB2C`` deferred). The caller holds the member row lock
    and has checked the amount and the SIM-swap guard."""
    existing = payout_by_key(session, idempotency_key)
    if existing is not None:
        uow.defer(session, SendB2C(existing.id))  # the worker claims only ``requested``
        return existing
    ocid = str(uuid.uuid4())
    hold = ledger.reserve_hold(
        session,
        account_id=(
            account_id
            if account_id is not None
            else member_account_ids(session, member_id)[Purpose.SAVINGS]
        ),
        amount_cents=amount_cents,
        idempotency_key=f"mpesa:b2c:{ocid}:hold",
        now=deps.now(),
        reason=reason,
    )
    payout = B2CPayout(
        originator_conversation_id=ocid,
        reference="W" + ledger.new_reference()[1:],
        idempotency_key=idempotency_key,
        purpose=purpose,
        member_id=member_id,
        msisdn=msisdn,
        amount_cents=amount_cents,
        fee_cents=0,
        hold_id=hold.hold_id,
        status=PayoutStatus.REQUESTED,
        attempts=0,
        created_at=deps.now(),
    )
    session.add(payout)
    session.flush()
    uow.defer(session, SendB2C(payout.id))
    return payout
