"""Fixed deposits (issue 14, part 1; docs/savings/fixed-deposits.md).

A member moves money from their savings into a fixed deposit under a product of kind
``fixed_deposit`` (its term in months, rate, when interest is paid, the penalty for
breaking it early: ``core.savings.products.FixedTerms``); the terms are **locked** on the
deposit when it opens. Each deposit has its own ledger account (purpose
``fixed_deposit``, coded ``2000-<member number>-FD<n>``, a liability).

**Interest is computed exactly when it is paid**, not accrued in the savings accrual:
interest earned from the start to day ``d`` is ``principal × rate × days / 365`` in the
accrual's units (``core.savings.interest.DENOMINATOR``), floored to the cent once
(``interest_through``). A payment pays what was earned to its day less what was paid
before, so the payments of a term sum to exactly the term's interest and no cent is lost
or counted twice. Interest is paid at maturity, or monthly on the day of the month the
deposit opened (to savings), with withholding tax at the rate in force on the day
(``withholding_tax_rates``, as savings interest): Dr interest on deposits / Cr the
member (net) / Cr withholding tax.

**Maturity** runs in the daily savings job (``core.savings.interest.accrue_day`` calls
``run_day`` for its date): per the member's rollover instruction the principal (and
interest) goes to savings and the deposit closes, or a new term starts on the same
ledger account at the product's current terms (``rolled_from_id``). Keys
``fd:<id>:…``, and the row is locked and its state moved in the same transaction: run a
day twice, it writes once.

**Premature closure** (staff, ``close_early``): ``forfeit_interest`` pays no interest and
takes back the net interest already paid from the principal; ``rate`` pays the interest
earned to date and charges a percent of the principal (fee income). The rest of the
principal goes to savings. Audited.

Never commits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import MemberAccount, Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans.due_dates import add_months
from core.loans.products import decimal_text
from core.members.registration import get_member, member_account_ids
from core.members.status import MemberStatus
from core.savings import products, rules
from core.savings.interest import DENOMINATOR, rate_units, tax_cents, withholding_rate
from core.savings.vocabulary import (
    FdInterestAt,
    FdPenalty,
    FdRollover,
    FdStatus,
    ProductKind,
    TaxKind,
)
from db.models import Account, Member
from db.models_savings import FixedDeposit, SavingsProduct

PERMISSION = "fixed_deposits:manage"


class FixedDepositRefused(DomainError):
    """A fixed deposit that cannot be opened or closed (``reason``: ``not_fixed_deposit``,
    ``not_active``, ``matured``)."""

    code = "fixed_deposit_refused"


@dataclass(frozen=True)
class FixedDepositView:
    id: int
    reference: str
    member_id: int
    product_code: str
    account_id: int
    principal_cents: int
    balance_cents: int
    rate_percent: str
    term_months: int
    interest_at: str
    penalty: str
    penalty_rate_percent: str
    rollover: str
    start_date: date
    maturity_date: date
    interest_paid_cents: int
    tax_cents: int
    penalty_cents: int
    earned_to_date_cents: int  # earned and not yet paid (what the SACCO owes so far)
    term_interest_cents: int  # the whole term's interest, as maturity will pay it
    status: str
    rolled_from_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ pure


def interest_through(principal_cents: int, rate_percent: Decimal, start: date, day: date) -> int:
    """Whole cents earned from ``start`` to ``day`` (actual/365, floored once)."""
    days = max((day - start).days, 0)
    return principal_cents * rate_units(rate_percent) * days // DENOMINATOR


def payment_dates(start: date, term_months: int, interest_at: FdInterestAt) -> list[date]:
    """The days interest is paid: each month on the opening day, or at maturity only."""
    if interest_at is FdInterestAt.MONTHLY:
        return [add_months(start, k) for k in range(1, term_months + 1)]
    return [add_months(start, term_months)]


def penalty_cents(principal_cents: int, rate_percent: Decimal) -> int:
    """A rate penalty on the principal, to the nearest cent (half up), at most the principal."""
    return min(tax_cents(principal_cents, rate_percent), principal_cents)


# ------------------------------------------------------------------ reading


def _code(session: Session, product_id: int) -> str:
    return str(session.scalar(select(SavingsProduct.code).where(SavingsProduct.id == product_id)))


def view(session: Session, fd: FixedDeposit, today: date) -> FixedDepositView:
    earned = 0
    if fd.status == FdStatus.ACTIVE:
        earned = (
            interest_through(
                fd.principal_cents, fd.rate_percent, fd.start_date, min(today, fd.maturity_date)
            )
            - fd.interest_paid_cents
        )
    return FixedDepositView(
        id=fd.id, reference=fd.reference, member_id=fd.member_id,
        product_code=_code(session, fd.product_id), account_id=fd.account_id,
        principal_cents=fd.principal_cents,
        balance_cents=(
            ledger.get_balance(session, fd.account_id).balance_cents
            if fd.status == FdStatus.ACTIVE else 0
        ),
        rate_percent=decimal_text(fd.rate_percent), term_months=fd.term_months,
        interest_at=fd.interest_at, penalty=fd.penalty,
        penalty_rate_percent=decimal_text(fd.penalty_rate_percent),
        rollover=fd.rollover, start_date=fd.start_date, maturity_date=fd.maturity_date,
        interest_paid_cents=fd.interest_paid_cents, tax_cents=fd.tax_cents,
        penalty_cents=fd.penalty_cents, earned_to_date_cents=max(earned, 0),
        term_interest_cents=interest_through(
            fd.principal_cents, fd.rate_percent, fd.start_date, fd.maturity_date
        ),
        status=fd.status, rolled_from_id=fd.rolled_from_id,
    )  # fmt: skip


def get_fixed_deposit(session: Session, fd_id: int) -> FixedDeposit:
    fd = session.get(FixedDeposit, fd_id)
    if fd is None:
        raise NotFound("no such fixed deposit")
    return fd


def member_fixed_deposits(session: Session, member_id: int) -> list[FixedDeposit]:
    """Every term of the member's fixed deposits, newest first."""
    return list(
        session.scalars(
            select(FixedDeposit)
            .where(FixedDeposit.member_id == member_id)
            .order_by(FixedDeposit.id.desc())
        )
    )


def active_count(session: Session, member_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(FixedDeposit.id)).where(
                FixedDeposit.member_id == member_id, FixedDeposit.status == FdStatus.ACTIVE
            )
        )
        or 0
    )


# ------------------------------------------------------------------ opening


def _fd_product(session: Session, product_code: Any) -> products.SavingsProductView:
    if not isinstance(product_code, str) or not product_code.strip():
        raise InvalidInput("product_code is required", field="product_code")
    code = product_code.strip().upper()
    pid = session.scalar(select(SavingsProduct.id).where(SavingsProduct.code == code))
    if pid is None:
        raise NotFound(f"no savings product {code}")
    product = products.get_product(session, pid)
    terms = product.terms
    if terms.kind is not ProductKind.FIXED_DEPOSIT or terms.fixed is None or not terms.active:
        raise FixedDepositRefused(f"{code} is not an active fixed-deposit product",
                                  reason="not_fixed_deposit")  # fmt: skip
    return product


def _new_term(
    session: Session, deps: CoreDeps, *, member_id: int, product: products.SavingsProductView,
    account_id: int, reference: str, principal_cents: int, rollover: FdRollover, start: date,
    opened_by: int | None, rolled_from_id: int | None,
) -> FixedDeposit:  # fmt: skip
    fixed = product.terms.fixed
    assert fixed is not None
    fd = FixedDeposit(
        reference=reference, member_id=member_id, product_id=product.id,
        product_version=product.version, account_id=account_id, rolled_from_id=rolled_from_id,
        principal_cents=principal_cents, rate_percent=product.terms.rate_percent,
        term_months=fixed.term_months, interest_at=fixed.interest_at.value,
        penalty=fixed.penalty.value, penalty_rate_percent=fixed.penalty_rate_percent,
        rollover=rollover.value, start_date=start,
        maturity_date=add_months(start, fixed.term_months), interest_paid_cents=0,
        interest_paid_through=start, tax_cents=0, penalty_cents=0, status=FdStatus.ACTIVE,
        opened_by=opened_by, created_at=deps.now(),
    )  # fmt: skip
    session.add(fd)
    session.flush()
    return fd


def open_fixed_deposit(
    session: Session, deps: CoreDeps, *, member_id: int, product_code: Any, amount_cents: Any,
    rollover: Any, actor: Principal | None = None,
) -> FixedDeposit:  # fmt: skip
    """Move ``amount_cents`` from the member's savings into a new fixed deposit under
    ``product_code`` (terms locked today). An active member; the savings product's minimum
    balance stays (``core.savings.rules``); the ledger refuses more than is available."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise InvalidInput("amount_cents must be a whole number of cents above 0",
                           field="amount_cents")  # fmt: skip
    if amount_cents > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount_cents is too large", field="amount_cents", reason="too_large")
    try:
        instruction = FdRollover(rollover)
    except ValueError:
        allowed = ", ".join(r.value for r in FdRollover)
        raise InvalidInput(f"rollover must be one of {allowed}", field="rollover") from None
    product = _fd_product(session, product_code)
    session.scalar(select(Member.id).where(Member.id == member_id).with_for_update())
    member = get_member(session, member_id)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    savings = member_account_ids(session, member.id)[Purpose.SAVINGS]
    rules.check_keeps_minimum(session, savings, amount_cents)
    number = member.member_number or str(member.id)
    n = 1 + int(
        session.scalar(
            select(func.count(Account.id)).where(
                Account.member_id == member.id, Account.purpose == Purpose.FIXED_DEPOSIT
            )
        )
        or 0
    )
    now = deps.now()
    account = ledger.create_account(
        session, code=f"{MemberAccount.SAVINGS.code_for(number)}-FD{n}",
        name=f"Fixed deposit {number} {n}"[:120], type_=MemberAccount.SAVINGS.account_type,
        purpose=Purpose.FIXED_DEPOSIT, no_overdraft=True, now=now, member_id=member.id,
    )  # fmt: skip
    reference = f"FD{number}-{n}"
    ledger.post_entry(
        session, kind=EntryKind.FIXED_DEPOSIT_OPEN,
        legs=[ledger.Leg(savings, amount_cents), ledger.Leg(account.id, -amount_cents)],
        idempotency_key=f"fd.open:{reference}", now=now,
        memo=f"Fixed deposit {reference} opened from savings",
    )  # fmt: skip
    fd = _new_term(
        session, deps, member_id=member.id, product=product, account_id=account.id,
        reference=reference, principal_cents=amount_cents, rollover=instruction,
        start=business_date(now), opened_by=actor.id if actor and actor.kind == "staff" else None,
        rolled_from_id=None,
    )  # fmt: skip
    if actor is not None:
        audit.record(
            session, actor, "fixed_deposit.opened", target_type="member", target_id=member.id,
            after={"reference": reference, "product": product.code, "amount_cents": amount_cents,
                   "rollover": instruction.value, "maturity_date": fd.maturity_date.isoformat()},
            now=now,
        )  # fmt: skip
    return fd


# ------------------------------------------------------------------ the daily run


@dataclass
class DayReport:
    interest_payments: int = 0
    gross_cents: int = 0
    tax_cents: int = 0
    matured: int = 0
    rolled_over: int = 0


def _pay_interest(
    session: Session, deps: CoreDeps, fd: FixedDeposit, pay_day: date, to_account: int,
    report: DayReport,
) -> None:  # fmt: skip
    earned = interest_through(fd.principal_cents, fd.rate_percent, fd.start_date, pay_day)
    gross = earned - fd.interest_paid_cents
    fd.interest_paid_through = pay_day
    if gross <= 0:
        return
    tax = tax_cents(gross, withholding_rate(session, TaxKind.INTEREST, pay_day))
    legs = [
        ledger.Leg(ledger.account_id_by_code(session, SystemAccount.INTEREST_ON_DEPOSITS), gross),
        ledger.Leg(to_account, -(gross - tax)),
    ]
    if tax:
        legs.append(ledger.Leg(ledger.account_id_by_code(session, SystemAccount.WITHHOLDING_TAX),
                               -tax))  # fmt: skip
    ledger.post_entry(
        session, kind=EntryKind.FIXED_DEPOSIT_INTEREST, legs=legs,
        idempotency_key=f"fd:{fd.id}:interest:{pay_day.isoformat()}", now=deps.now(),
        value_date=pay_day, memo=f"Fixed deposit {fd.reference} interest to {pay_day}",
    )  # fmt: skip
    fd.interest_paid_cents = earned
    fd.tax_cents += tax
    report.interest_payments += 1
    report.gross_cents += gross
    report.tax_cents += tax


def _mature(session: Session, deps: CoreDeps, fd: FixedDeposit, report: DayReport) -> None:
    savings = member_account_ids(session, fd.member_id)[Purpose.SAVINGS]
    instruction = FdRollover(fd.rollover)
    product = products.get_product(session, fd.product_id)
    can_roll = (
        instruction is not FdRollover.PAY_OUT
        and product.terms.active
        and product.terms.fixed is not None
        and get_member(session, fd.member_id).status == MemberStatus.ACTIVE
    )
    interest_to = fd.account_id if can_roll and instruction is FdRollover.PRINCIPAL_AND_INTEREST \
        else savings  # fmt: skip
    _pay_interest(session, deps, fd, fd.maturity_date, interest_to, report)
    now = deps.now()
    fd.status, fd.closed_at = FdStatus.MATURED, now
    report.matured += 1
    balance = ledger.get_balance(session, fd.account_id).balance_cents
    if can_roll:
        _new_term(
            session, deps, member_id=fd.member_id, product=product, account_id=fd.account_id,
            reference=f"{fd.reference.split('/')[0]}/{_term_number(fd) + 1}",
            principal_cents=balance, rollover=instruction, start=fd.maturity_date,
            opened_by=None, rolled_from_id=fd.id,
        )  # fmt: skip
        report.rolled_over += 1
        return
    if balance:
        ledger.post_entry(
            session, kind=EntryKind.FIXED_DEPOSIT_CLOSE,
            legs=[ledger.Leg(fd.account_id, balance), ledger.Leg(savings, -balance)],
            idempotency_key=f"fd:{fd.id}:mature", now=now, value_date=fd.maturity_date,
            memo=f"Fixed deposit {fd.reference} matured: paid to savings",
        )  # fmt: skip
    session.get_one(Account, fd.account_id).closed_at = now


def _term_number(fd: FixedDeposit) -> int:
    _, _, n = fd.reference.partition("/")
    return int(n) if n.isdigit() else 1


def run_day(session: Session, deps: CoreDeps, day: date) -> DayReport:
    """Pay the interest due and mature the deposits due on or before ``day`` (catching up
    missed days in order; a rollover's new term too). Idempotent: a day run twice writes
    once (the rows are locked and moved on in the same transaction)."""
    report = DayReport()
    while True:
        rows = session.scalars(
            select(FixedDeposit)
            .where(FixedDeposit.status == FdStatus.ACTIVE, FixedDeposit.start_date < day)
            .order_by(FixedDeposit.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        moved = False
        for fd in rows:
            for pay_day in payment_dates(fd.start_date, fd.term_months,
                                         FdInterestAt(fd.interest_at)):  # fmt: skip
                if fd.interest_paid_through < pay_day <= day and pay_day < fd.maturity_date:
                    savings = member_account_ids(session, fd.member_id)[Purpose.SAVINGS]
                    _pay_interest(session, deps, fd, pay_day, savings, report)
            if fd.maturity_date <= day:
                _mature(session, deps, fd, report)
                moved = True
        session.flush()
        if not moved:
            return report


# ------------------------------------------------------------------ breaking it early


def close_early(
    session: Session, deps: CoreDeps, actor: Principal, fd_id: Any, *, note: Any
) -> FixedDeposit:
    """Close an active deposit before maturity with its penalty (see the module); the rest
    to savings. ``matured`` when it is due: the daily job matures it."""
    if isinstance(fd_id, bool) or not isinstance(fd_id, int):
        raise InvalidInput("fixed deposit id must be a whole number", field="id")
    text_note = " ".join(note.split()) if isinstance(note, str) else ""
    if not 3 <= len(text_note) <= 200:
        raise InvalidInput("note: 3 to 200 characters (why it is broken)", field="note")
    fd = session.scalar(
        select(FixedDeposit).where(FixedDeposit.id == fd_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if fd is None:
        raise NotFound("no such fixed deposit")
    if fd.status != FdStatus.ACTIVE:
        raise FixedDepositRefused(f"the fixed deposit is {fd.status}", reason="not_active")
    now = deps.now()
    today = business_date(now)
    if today >= fd.maturity_date:
        raise FixedDepositRefused("the deposit is due: the daily savings job matures it",
                                  reason="matured")  # fmt: skip
    savings = member_account_ids(session, fd.member_id)[Purpose.SAVINGS]
    report = DayReport()
    if FdPenalty(fd.penalty) is FdPenalty.RATE:
        _pay_interest(session, deps, fd, today, savings, report)
        charge = penalty_cents(fd.principal_cents, fd.penalty_rate_percent)
        income = SystemAccount.FEE_INCOME
    else:  # forfeit: nothing more is paid; the net already paid comes back
        charge = fd.interest_paid_cents - fd.tax_cents
        income = SystemAccount.INTEREST_ON_DEPOSITS
    balance = ledger.get_balance(session, fd.account_id).balance_cents
    charge = min(charge, balance)
    legs = [ledger.Leg(fd.account_id, balance), ledger.Leg(savings, -(balance - charge))]
    if charge:
        legs.append(ledger.Leg(ledger.account_id_by_code(session, income), -charge))
    ledger.post_entry(
        session, kind=EntryKind.FIXED_DEPOSIT_CLOSE, legs=[g for g in legs if g.amount_cents],
        idempotency_key=f"fd:{fd.id}:close_early", now=now,
        memo=f"Fixed deposit {fd.reference} closed early: penalty {format_cents(charge)}",
    )  # fmt: skip
    fd.status, fd.closed_at, fd.penalty_cents = FdStatus.CLOSED_EARLY, now, charge
    fd.closed_by = actor.id if actor.kind == "staff" else None
    session.get_one(Account, fd.account_id).closed_at = now
    session.flush()
    audit.record(
        session, actor, "fixed_deposit.closed_early", target_type="member",
        target_id=fd.member_id,
        after={"reference": fd.reference, "penalty_cents": charge,
               "paid_to_savings_cents": balance - charge, "note": text_note},
        now=now,
    )  # fmt: skip
    return fd
