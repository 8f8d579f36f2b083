"""The M-Pesa collections float swept to the bank (issue 15, part 4).

Money members pay by M-Pesa collects on the paybill (asset 1010, M-Pesa collections
float); the treasurer moves it to the SACCO's bank account from Safaricom's org portal
("withdraw to bank"), quoting the sweep's reference. ``sweep_float`` records that move as
one entry between the two asset accounts (Dr 1000 Bank / Cr 1010 M-Pesa collections
float): the float never goes below zero, the same idempotency key twice is one sweep.
Above ``threshold_cents`` the edge asks a checker first (maker-checker ``bank.sweep``).
The bank statement's reconciliation (``core.payments.bank.statement``) then matches the
money's arrival by the reference.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict, InsufficientFunds, InvalidInput
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.entries import MAX_POSTING_CENTS
from core.ledger.vocabulary import EntryKind
from db.models import Account
from db.models_bank import BankSweep


def check_sweep(session: Session, amount_cents: object) -> int:
    """A valid amount the float holds now, or the refusal."""
    if type(amount_cents) is not int or not 0 < amount_cents <= MAX_POSTING_CENTS:
        raise InvalidInput("amount_cents must be a positive number of cents", field="amount_cents")
    float_id = ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    # The float's row locked before its balance is read: two sweeps never both take it.
    session.execute(select(Account.id).where(Account.id == float_id).with_for_update())
    if ledger.get_balance(session, float_id).available_cents < amount_cents:
        raise InsufficientFunds("the M-Pesa collections float holds less than that")
    return amount_cents


def sweep_float(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    amount_cents: int,
    idempotency_key: str,
    approval_id: int | None = None,
) -> BankSweep:
    """Move ``amount_cents`` from the M-Pesa collections float to the bank (see the module).
    The same key twice returns the first sweep; the same key for another amount is refused."""
    if not idempotency_key or len(idempotency_key) > 100:
        raise InvalidInput("an idempotency key of 1 to 100 characters", field="idempotency_key")
    key = f"bank.sweep:{idempotency_key}"
    existing = session.scalar(select(BankSweep).where(BankSweep.idempotency_key == key))
    if existing is not None:
        if existing.amount_cents != amount_cents:
            raise IdempotencyConflict("that key swept another amount")
        return existing
    check_sweep(session, amount_cents)
    now = deps.now()
    reference = "SW" + ledger.new_reference()[1:]
    bank = ledger.account_id_by_code(session, SystemAccount.BANK)
    float_id = ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    try:
        posted = ledger.post_entry(
            session,
            kind=EntryKind.FLOAT_SWEEP,
            legs=[ledger.Leg(bank, amount_cents), ledger.Leg(float_id, -amount_cents)],
            idempotency_key=key,
            now=now,
            memo=f"M-Pesa float to bank ref {reference}",
        )
    except InsufficientFunds:
        raise InsufficientFunds("the M-Pesa collections float holds less than that") from None
    row = BankSweep(
        reference=reference,
        idempotency_key=key,
        amount_cents=amount_cents,
        entry_id=posted.entry_id,
        approval_id=approval_id,
        made_by=actor.name[:80],
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "bank.sweep", target_type="bank_sweep", target_id=row.id,
        after={"reference": reference, "amount": format_cents(amount_cents),
               "entry": posted.reference, "approval_id": approval_id},
        now=now,
    )  # fmt: skip
    return row


def sweep_dict(row: BankSweep) -> dict[str, object]:
    return {
        "id": row.id,
        "reference": row.reference,
        "amount_cents": row.amount_cents,
        "approval_id": row.approval_id,
        "made_by": row.made_by,
        "created_at": row.created_at.isoformat(),
    }
