"""Loan products and funded members for loan-book tests.

Products are written straight into the product tables (migration 0014): the products'
own use cases (maker-checker) belong to another part of issue 12. This and
``core.loans.terms`` are the only places the book's tests and code touch those columns.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any
from uuid import uuid4

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Member
from db.models_loans import Loan, LoanProduct, LoanProductFee, LoanProductVersion
from tests.ussdutil import make_member

_phones = itertools.count(1)

# A development loan: 1% a month reducing, 1-48 months, KES 1,000-5,000,000, 3x deposits,
# guarantors for whatever own deposits do not cover, 1% processing fee deducted.
DEVELOPMENT: dict[str, Any] = {
    "name": "Development loan",
    "rate_percent": Decimal("1.0000"),
    "rate_period": "monthly",
    "method": "reducing_equal_instalments",
    "frequency": "monthly",
    "min_term": 1,
    "max_term": 48,
    "min_amount_cents": 100_000,
    "max_amount_cents": 500_000_000,
    "deposit_multiplier": Decimal("3.00"),
    "min_membership_months": 0,
    "min_deposits_cents": 0,
    "penalty_rate_percent": Decimal("1.0000"),
    "penalty_rate_period": "monthly",
    "grace_instalments": 0,
    "penalty_grace_days": 7,
    "guarantor_policy": "required",
    "guarantor_cover_percent": Decimal("100.00"),
    "max_guarantees_per_guarantor": 3,
    "self_guarantee_allowed": False,
    "pledge_release": "pro_rata",
    "rounding": "shilling",
    "auto_approve_ceiling_cents": 0,
    "channels": "sms staff ussd",
    "active": True,
}
PROCESSING_1PC = {"kind": "processing", "percent": Decimal("1.0000"), "timing":
                  "deducted_at_disbursement"}  # fmt: skip


def make_product(
    session: Session,
    deps: CoreDeps,
    *,
    code: str | None = None,
    fees: list[dict[str, Any]] | None = None,
    **changes: Any,
) -> LoanProduct:
    now = deps.now()
    product = LoanProduct(
        code=code or f"D{uuid4().hex[:6].upper()}", current_version=1, created_at=now,
        updated_at=now,
    )  # fmt: skip
    session.add(product)
    session.flush()
    version = LoanProductVersion(
        product_id=product.id, version=1, created_at=now, **{**DEVELOPMENT, **changes}
    )
    session.add(version)
    session.flush()
    for position, fee in enumerate([PROCESSING_1PC] if fees is None else fees):
        session.add(LoanProductFee(version_id=version.id, position=position, **fee))
    session.flush()
    return product


def funded_member(
    session: Session,
    deps: CoreDeps,
    *,
    deposits_cents: int = 0,
    savings_cents: int = 0,
    status: str = "active",
    name: str = "Amina Wanjiru",
) -> Member:
    """An active member (unless ``status``) with deposits and savings paid in cash."""
    n = next(_phones)
    member = make_member(
        session, deps, msisdn=f"+2547{n:08d}", national_id=f"{30_000_000 + n}", name=name,
        status="active",
    )  # fmt: skip
    for target, cents in (("deposits", deposits_cents), ("savings", savings_cents)):
        if cents:
            key = f"fund:{member.id}:{target}:{uuid4().hex[:8]}"
            credit_member(
                session, deps,
                Credit(member.id, target, cents, CreditSource.CASH, key, key),
            )  # fmt: skip
    if status != "active":
        from core.members import registration

        registration.set_status(session, member.id, status)
    session.flush()
    return member


def disbursed_loan(
    session: Session,
    deps: CoreDeps,
    *,
    amount_cents: int = 10_000_000,
    term: int = 12,
    deposits_cents: int = 5_000_000,
    savings_cents: int = 0,
    guarantor_deposits_cents: int = 0,
    pledge_cents: int = 0,
    key: str | None = None,
    fees: list[dict[str, Any]] | None = None,
    **product_changes: Any,
) -> tuple[Loan, Member, Member | None]:
    """A loan disbursed to savings by auto-approval (KES 100,000 at 1% a month reducing over
    12 months, to the cent, no fee unless ``fees``, unless changed): (loan, borrower,
    guarantor or None).
    With ``pledge_cents`` a guarantor pledges that much and the loan needs guarantors."""
    from sqlalchemy import select

    from core.loans import book, guarantees

    changes: dict[str, Any] = {
        "rounding": "cent",
        "auto_approve_ceiling_cents": 500_000_000,
        "guarantor_policy": "required" if pledge_cents else "none",
        **product_changes,
    }
    product = make_product(session, deps, fees=fees or [], **changes)
    borrower = funded_member(session, deps, deposits_cents=deposits_cents,
                             savings_cents=savings_cents)  # fmt: skip
    application = book.apply_for_loan(
        session, deps, borrower.id, product.code, amount_cents, term, "staff",
        key or f"apply-{uuid4().hex[:12]}",
    )  # fmt: skip
    guarantor = None
    if pledge_cents:
        guarantor = funded_member(session, deps, deposits_cents=guarantor_deposits_cents,
                                  name="Otieno Kamau")  # fmt: skip
        asked = guarantees.request_guarantee(
            session, deps, application_id=application.id, borrower_id=borrower.id,
            guarantor=guarantor.member_number or "", amount_cents=pledge_cents,
        )  # fmt: skip
        guarantees.accept_guarantee(session, deps, guarantee_id=asked.id,
                                    guarantor_id=guarantor.id)  # fmt: skip
    loan = session.scalars(select(Loan).where(Loan.application_id == application.id)).one()
    return loan, borrower, guarantor


def pay(session: Session, deps: CoreDeps, loan: Loan, cents: int, key: str) -> Any:
    """An M-Pesa repayment of ``cents`` to ``loan`` (``repay_loan``), keyed ``key``."""
    from core.loans.repayments import Repayment, repay_loan
    from core.loans.vocabulary import RepaymentSource

    return repay_loan(
        session, deps,
        Repayment(amount_cents=cents, source=RepaymentSource.MPESA, idempotency_key=key,
                  business_key=f"loan_repayment:{key}", loan_id=loan.id),
    )  # fmt: skip
