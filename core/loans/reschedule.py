"""Rescheduling a loan (issue 13, part 8; docs/loans/write-off-and-rescheduling.md).

Maker-checker (``loan.reschedule``): a holder of ``loans:reschedule`` proposes a new term
(number of instalments) or a new instalment (the largest the member can pay; the shortest
term whose first instalment is no more is chosen); another person decides with the
engine's amount rules (the principal outstanding). On approval, in the approval's
transaction, with the loan's row and then its day-state row locked (the order a repayment
takes them, so close of day and a rescheduling queue), on the rescheduling day ``today``:

1. every instalment not fully settled is **superseded**: kept as it stood in
   ``loan_superseded_instalments``; the interest accrued on it through ``today`` and its
   fees already due are **capitalised** (one ``loan.reschedule`` entry: Dr the loan's
   account; Cr interest receivable for what close of day had accrued, loan interest income
   for the rest, fee income for the fees: as if paid, ``repayments.settlement_legs``'
   rules) and counted paid on it; the instalment is then cut to what was paid (deleted
   when nothing was), so no instalment is owed twice and nothing due is forgiven;
2. a new schedule (``core.loans.schedule.build_schedule``, pure) over the principal
   outstanding after capitalisation, from ``today``, at the product version's rate,
   method, frequency and rounding, its fees not yet due spread over it; numbered after
   the instalments kept, its first one's interest period starting ``today``
   (``loan_instalments.starts_on``);
3. the loan is flagged ``restructured`` (close of day never upgrades its category);
   the member is told the new instalment and its date (``loan_rescheduled``).

The new schedule's principal sums exactly to the principal outstanding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine
from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import accrual, close_of_day
from core.loans.errors import LoanStateError
from core.loans.schedule import MAX_INSTALMENTS, Schedule, ScheduleTerms, build_schedule
from core.loans.terms import version_terms
from core.loans.vocabulary import LoanStatus
from core.loans.write_off import (
    ask_about_loan,
    loan_id_of,
    lock_loan,
    lock_state,
    principal_outstanding,
)
from core.members.registration import get_member
from core.messaging.notifications import notify
from core.staff import accounts as staff
from db.models import ApprovalRequest
from db.models_loans import Loan, LoanInstalment, LoanReschedule, LoanSupersededInstalment

ACTION = "loan.reschedule"
MAKER_PERMISSION = "loans:reschedule"


@dataclass(frozen=True, slots=True)
class Superseded:
    """What rescheduling does to one instalment not fully settled."""

    number: int
    capitalised_interest_cents: int  # accrued through the day, not paid
    capitalised_fee_cents: int  # fees due by the day, not paid
    carried_fee_cents: int  # fees not yet due: spread over the new schedule


@dataclass(frozen=True, slots=True)
class Plan:
    rescheduled_on: date
    superseded: tuple[Superseded, ...]
    outstanding_cents: int  # the loan account's balance before
    schedule: Schedule

    @property
    def capitalised_interest_cents(self) -> int:
        return sum(s.capitalised_interest_cents for s in self.superseded)

    @property
    def capitalised_fee_cents(self) -> int:
        return sum(s.capitalised_fee_cents for s in self.superseded)

    @property
    def carried_fee_cents(self) -> int:
        return sum(s.carried_fee_cents for s in self.superseded)


def _ask(p: dict[str, Any]) -> tuple[int | None, int | None]:
    """(term, instalment_cents): exactly one, each a whole number in range."""
    term, instalment = p.get("term"), p.get("instalment_cents")
    if (term is None) == (instalment is None):
        raise InvalidInput("give a new term or a new instalment, not both", field="term",
                           reason="one_of")  # fmt: skip
    for name, value, high in (("term", term, MAX_INSTALMENTS),
                              ("instalment_cents", instalment, ledger.MAX_POSTING_CENTS)):  # fmt: skip
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be a whole number", field=name, reason="format")
        if not 1 <= value <= high:
            raise InvalidInput(f"{name} must be from 1 to {high}", field=name, reason="range")
    return term, instalment


def _settled(row: LoanInstalment) -> bool:
    return (
        row.paid_principal_cents == row.principal_cents
        and row.paid_fee_cents == row.fee_cents
        and row.paid_interest_cents + row.waived_interest_cents == row.interest_cents
    )


def _rows(session: Session, loan: Loan, *, lock: bool) -> list[LoanInstalment]:
    query = select(LoanInstalment).where(LoanInstalment.loan_id == loan.id)
    query = query.order_by(LoanInstalment.number).execution_options(populate_existing=True)
    return list(session.scalars(query.with_for_update() if lock else query))


def plan(
    session: Session,
    loan: Loan,
    today: date,
    *,
    term: int | None,
    instalment_cents: int | None,
    rows: list[LoanInstalment] | None = None,
) -> Plan:
    """What rescheduling ``loan`` on ``today`` would do (writes nothing). ``LoanStateError``
    ``not_active``; ``InvalidInput`` for a term the schedule refuses or an instalment
    that repays the loan in no term (``instalment_too_small``)."""
    if loan.status != LoanStatus.ACTIVE:
        raise LoanStateError(f"this loan is {loan.status}", reason="not_active")
    rows = rows if rows is not None else _rows(session, loan, lock=False)
    starts = {r.number: r.starts_on for r in rows if r.starts_on is not None}
    periods = {
        p.number: p
        for p in accrual.periods(
            loan.disbursed_on,
            [(r.number, r.due_on, r.interest_cents, r.paid_interest_cents,
              r.waived_interest_cents) for r in rows],
            starts,
        )
    }  # fmt: skip
    superseded = []
    for row in rows:
        if _settled(row):
            continue
        period = periods[row.number]
        accrued = accrual.accrued_in_period(row.interest_cents, period.starts_on, row.due_on, today)
        interest = max(
            min(accrued, row.interest_cents - row.waived_interest_cents) - row.paid_interest_cents,
            0,
        )
        unpaid_fee = row.fee_cents - row.paid_fee_cents
        due = row.due_on <= today
        superseded.append(
            Superseded(row.number, interest, unpaid_fee if due else 0, 0 if due else unpaid_fee)
        )
    outstanding = principal_outstanding(session, loan)
    capitalised = sum(s.capitalised_interest_cents + s.capitalised_fee_cents for s in superseded)
    principal = outstanding + capitalised
    if principal <= 0:
        raise LoanStateError("nothing is outstanding on this loan", reason="nothing_owed")
    product = version_terms(session, loan.product_version_id)

    def build(n: int) -> Schedule:
        return build_schedule(
            ScheduleTerms(
                principal_cents=principal,
                rate=product.rate_percent / 100,
                rate_period=product.rate_period,  # type: ignore[arg-type]  # coerced
                method=product.method,  # type: ignore[arg-type]
                frequency=product.frequency,  # type: ignore[arg-type]
                instalments=n,
                disbursed_on=today,
                rounding=product.rounding,  # type: ignore[arg-type]
                scheduled_fee_cents=sum(s.carried_fee_cents for s in superseded),
            )
        )

    if term is not None:
        schedule = build(term)
    else:
        assert instalment_cents is not None
        schedule = _shortest(build, instalment_cents)
    return Plan(today, tuple(superseded), outstanding, schedule)


def _shortest(build: Any, instalment_cents: int) -> Schedule:
    """The schedule of the fewest instalments whose first instalment is at most
    ``instalment_cents`` (the instalment falls as the term grows: a binary search)."""

    def fits(n: int) -> Schedule | None:
        try:
            schedule: Schedule = build(n)
        except InvalidInput:
            return None
        return schedule if schedule.instalments[0].total_cents <= instalment_cents else None

    low, high = 1, MAX_INSTALMENTS
    best = fits(high)
    if best is None:
        raise InvalidInput(
            "that instalment never repays this loan", field="instalment_cents",
            reason="instalment_too_small",
        )  # fmt: skip
    while low < high:
        middle = (low + high) // 2
        found = fits(middle)
        if found is not None:
            best, high = found, middle
        else:
            low = middle + 1
    return best


def _check(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> int:
    loan = session.get(Loan, loan_id_of(p))
    if loan is None or (member_id is not None and loan.member_id != member_id):
        raise NotFound("no such loan")
    term, instalment = _ask(p)
    plan(session, loan, business_date(deps.now()), term=term, instalment_cents=instalment)
    return principal_outstanding(session, loan)


def propose_reschedule(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    loan_id: int,
    *,
    term: int | None = None,
    instalment_cents: int | None = None,
    note: str = "",
    large_threshold_cents: int,
) -> ApprovalRequest:
    """Ask for ``loan_id`` to be rescheduled over ``term`` instalments, or at about
    ``instalment_cents`` an instalment: a ``loan.reschedule`` request."""
    payload: dict[str, Any] = {}
    if term is not None:
        payload["term"] = term
    if instalment_cents is not None:
        payload["instalment_cents"] = instalment_cents
    return ask_about_loan(
        session, deps, actor, ACTION, loan_id, payload, note=note, what="reschedule",
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip


def _execute(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    checker = staff.checker_of(session, req)
    loan = lock_loan(session, loan_id_of(p), req.member_id)
    lock_state(session, loan.id)  # close of day and this queue on it, as with a repayment
    term, instalment = _ask(p)
    now = deps.now()
    today = business_date(now)
    rows = _rows(session, loan, lock=True)
    made = plan(session, loan, today, term=term, instalment_cents=instalment, rows=rows)
    record = LoanReschedule(
        loan_id=loan.id, approval_id=req.id, rescheduled_on=today,
        principal_cents=made.schedule.principal_cents,
        capitalised_interest_cents=made.capitalised_interest_cents,
        capitalised_fee_cents=made.capitalised_fee_cents,
        carried_fee_cents=made.carried_fee_cents, term=len(made.schedule.instalments),
        asked_term=term, asked_instalment_cents=instalment,
        instalment_cents=made.schedule.instalments[0].total_cents,
        first_due_on=made.schedule.instalments[0].due_on, created_at=now,
    )  # fmt: skip
    session.add(record)
    session.flush()
    by_number = {r.number: r for r in rows}
    for s in made.superseded:
        row = by_number[s.number]
        session.add(
            LoanSupersededInstalment(
                reschedule_id=record.id, loan_id=loan.id, number=row.number, due_on=row.due_on,
                principal_cents=row.principal_cents, interest_cents=row.interest_cents,
                fee_cents=row.fee_cents, paid_principal_cents=row.paid_principal_cents,
                paid_interest_cents=row.paid_interest_cents, paid_fee_cents=row.paid_fee_cents,
                waived_interest_cents=row.waived_interest_cents,
            )
        )  # fmt: skip
    record.entry_id = _capitalise(session, deps, loan, made, req.id, today)
    for s in made.superseded:
        row = by_number[s.number]
        row.paid_interest_cents += s.capitalised_interest_cents
        row.paid_fee_cents += s.capitalised_fee_cents
        row.principal_cents = row.paid_principal_cents
        row.interest_cents = row.paid_interest_cents + row.waived_interest_cents
        row.fee_cents = row.paid_fee_cents
        if row.principal_cents + row.interest_cents + row.fee_cents == 0:
            session.delete(row)
            del by_number[s.number]
    session.flush()
    kept = max(by_number, default=0)
    for offset, new in enumerate(made.schedule.instalments):
        session.add(
            LoanInstalment(
                loan_id=loan.id, number=kept + new.number, due_on=new.due_on,
                principal_cents=new.principal_cents, interest_cents=new.interest_cents,
                fee_cents=new.fee_cents, paid_principal_cents=0, paid_interest_cents=0,
                paid_fee_cents=0, waived_interest_cents=0,
                starts_on=today if offset == 0 else None,
            )
        )  # fmt: skip
    loan.restructured = True
    session.flush()
    first = made.schedule.instalments[0]
    member = get_member(session, loan.member_id)
    notify(
        session, template="loan_rescheduled", business_key=f"loan_rescheduled:{record.id}",
        now=now, member=member,
        data={"sacco": deps.sacco_name, "loan": loan.reference,
              "instalment": format_cents(first.total_cents),
              "due_on": first.due_on.strftime("%d/%m/%Y"),
              "balance": format_cents(made.schedule.principal_cents)},
    )  # fmt: skip
    result = {
        "loan": loan.reference, "reschedule_id": record.id,
        "principal_cents": record.principal_cents, "term": record.term,
        "instalment_cents": record.instalment_cents, "first_due_on": str(record.first_due_on),
        "capitalised_interest_cents": record.capitalised_interest_cents,
        "capitalised_fee_cents": record.capitalised_fee_cents,
        "superseded": [s.number for s in made.superseded],
    }  # fmt: skip
    audit.record(
        session, checker, "loan.reschedule", target_type="loan", target_id=loan.id,
        after=result, now=now,
    )  # fmt: skip
    return result


def _capitalise(
    session: Session, deps: CoreDeps, loan: Loan, made: Plan, approval_id: int, today: date
) -> int | None:
    """The ``loan.reschedule`` entry: the interest and fees capitalised onto the loan's
    account, settled as a repayment would settle them. Call before ``paid_*`` change."""
    interest, fees = made.capitalised_interest_cents, made.capitalised_fee_cents
    if interest + fees == 0:
        return None
    income = close_of_day.recognise_repayment(
        session, loan.id, loan.disbursed_on,
        {s.number: (s.capitalised_interest_cents, 0) for s in made.superseded},
    )  # fmt: skip
    account = ledger.account_id_by_code
    legs = [ledger.Leg(loan.account_id, interest + fees)]
    for code, cents in (
        (SystemAccount.LOAN_INTEREST_INCOME, income),
        (SystemAccount.INTEREST_RECEIVABLE, interest - income),
        (SystemAccount.FEE_INCOME, fees),
    ):
        if cents:
            legs.append(ledger.Leg(account(session, code), -cents))
    posted = ledger.post_entry(
        session, kind=EntryKind.LOAN_RESCHEDULE, legs=legs,
        idempotency_key=f"loan:{loan.id}:reschedule:{approval_id}", now=deps.now(),
        value_date=today, memo=f"Loan {loan.reference} rescheduled: interest and fees capitalised",
    )  # fmt: skip
    return posted.entry_id


def register_actions() -> None:
    engine.register(
        ACTION,
        engine.ActionSpec(MAKER_PERMISSION, "reschedule a loan", True, _check, _execute),
    )
