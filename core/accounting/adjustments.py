"""Manual ledger adjustments between the SACCO's own accounts: maker-checker only
(``ledger.adjustment``, maker permission ``ledger:adjust``), posted once as
``adjustment.manual`` with the approval as its idempotency key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, payload_amount, register
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.ledger import entries as ledger
from core.ledger.vocabulary import EntryKind
from db.models import Account, ApprovalRequest


def _system_account(session: Session, code: Any, field: str) -> int:
    account = session.scalar(select(Account).where(Account.code == str(code)))
    if account is None or account.member_id is not None:
        raise InvalidInput(f"no such SACCO account {code}", field=field, reason="unknown")
    return account.id


def _check_adjustment(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    debit = _system_account(session, p.get("debit_account"), "debit_account")
    credit = _system_account(session, p.get("credit_account"), "credit_account")
    if debit == credit:
        raise InvalidInput("debit and credit accounts must differ", field="credit_account")
    memo = str(p.get("memo", "")).strip()
    if not 3 <= len(memo) <= 160:
        raise InvalidInput("memo: 3-160 characters", field="memo")
    return payload_amount(p)


def _exec_adjustment(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    amount = payload_amount(p)
    posted = ledger.post_entry(
        session,
        kind=EntryKind.ADJUSTMENT_MANUAL,
        now=deps.now(),
        legs=[
            ledger.Leg(_system_account(session, p["debit_account"], "debit_account"), amount),
            ledger.Leg(_system_account(session, p["credit_account"], "credit_account"), -amount),
        ],
        idempotency_key=f"approval:{req.id}",
        memo=str(p["memo"])[:160],
    )
    return {"entry": posted.reference}


def register_actions() -> None:
    register(
        "ledger.adjustment",
        ActionSpec(
            "ledger:adjust", "manual ledger adjustment", False, _check_adjustment, _exec_adjustment
        ),
    )
