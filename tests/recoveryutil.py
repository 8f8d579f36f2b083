"""A defaulted loan with several guarantors, for the default-recovery tests (integration and
API): applied for, guaranteed by each pledge, auto-approved and paid to savings on ``start``;
one instalment that falls due a month later; closed once by close of day ``days`` after its
due date (191 days: doubtful under the SASRA bands of version 1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.loans import book, guarantees
from db.models import Member
from db.models_loans import Loan, LoanInstalment
from tests.loanutil import funded_member, make_product
from workers.close_day import run_close_day

KES = 100
NAMES = ["Baraka", "Chebet", "Daudi", "Esther", "Faraji", "Gathoni"]


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)  # noon in Nairobi
    return dataclasses.replace(deps, now=lambda: moment)


@dataclass
class Defaulted:
    loan: Loan
    borrower: Member
    guarantors: list[Member]
    closed_on: date  # the business date close of day classified the loan
    deps: CoreDeps  # the clock the morning after that close


def defaulted_loan(
    s: Session,
    factory: Callable[[], Session],
    deps: CoreDeps,
    *,
    start: date,
    amount_cents: int,
    deposits_cents: int,
    pledges: list[int],
    guarantor_deposits_cents: int | None = None,
    days: int = 191,
    commit: bool = False,
    **product: Any,
) -> Defaulted:
    """See the module. The pledges must add up to ``amount_cents − deposits_cents`` (the
    cover the product asks, 100 %, less the borrower's own free deposits). ``commit``: commit
    before close of day runs (its own sessions must see the loan on a committed engine)."""
    then = on(deps, start)
    # No penalty unless asked: the recovery tests reckon in principal and interest, and a
    # penalty (taken first by every repayment) would shift each figure by what it charged.
    product = {"penalty_rate_percent": Decimal(0), **product}
    code = make_product(
        s, then, fees=[], rounding="cent", auto_approve_ceiling_cents=500_000_000,
        max_guarantees_per_guarantor=9, **product,
    ).code  # fmt: skip
    borrower = funded_member(s, then, deposits_cents=deposits_cents, name="Amina Wanjiru")
    application = book.apply_for_loan(
        s, then, borrower.id, code, amount_cents, 1, "staff", f"rec-{uuid4().hex[:12]}"
    )
    people = []
    for n, pledge in enumerate(pledges):
        guarantor = funded_member(
            s, then, deposits_cents=guarantor_deposits_cents or pledge * 2,
            name=f"{NAMES[n % len(NAMES)]} Otieno",
        )  # fmt: skip
        asked = guarantees.request_guarantee(
            s, then, application_id=application.id, borrower_id=borrower.id,
            guarantor=guarantor.member_number or "", amount_cents=pledge,
        )  # fmt: skip
        guarantees.accept_guarantee(s, then, guarantee_id=asked.id, guarantor_id=guarantor.id)
        people.append(guarantor)
    loan = s.scalars(select(Loan).where(Loan.application_id == application.id)).one()
    due = s.scalar(select(func.min(LoanInstalment.due_on)).where(LoanInstalment.loan_id == loan.id))
    assert due is not None
    closed_on = due + timedelta(days=days)
    if commit:
        s.commit()
    run_close_day(factory, on(deps, closed_on + timedelta(days=1)), through=closed_on)
    s.expire_all()
    return Defaulted(loan, borrower, people, closed_on, on(deps, closed_on + timedelta(days=1)))
