"""The demo's loan book, seeded by ``manage.py seed-demo`` through the real use cases.

Four loans in four states, each made the way a member and the staff would make it
(``core.loans.book``, ``guarantees``, ``approval_actions`` and the approvals engine,
``repayments``), never by inserting rows:

* **closed**: Achieng took an instant mobile loan (approved and paid out by the system,
  within the product's auto-approval ceiling) and repaid it by M-Pesa on its due date;
* **repaying**: Wanjiku's development loan, half covered by her own deposits and half by
  Juma's pledge (he accepted), recommended by the loan officer, approved by the manager,
  paid to savings, and every instalment due so far paid on its due date by M-Pesa;
* **pending approval**: Juma's emergency loan, covered by his own free deposits and
  recommended by the loan officer: the manager's approval queue has it;
* **awaiting a guarantor**: Mwangi's development loan, with a guarantee request to
  Achieng that she has not answered.

Each runs with a clock set back (``at``: a copy of the runtime's ``CoreDeps`` whose
``now()`` is so many days ago), so the history reads as months of real use: joined,
saved, borrowed, repaid. Times are relative to the seeding day, so a demo seeded on any
date (or under ``make test-clock``) tells the same story. Each loan is one unit of work,
skipped when its borrower already has an application: seeding again adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.loans import approval_actions, book, guarantees, repayments
from core.loans.vocabulary import RepaymentSource
from core.members.registration import find_by_msisdn
from core.staff.accounts import principal_for
from db.models import StaffUser
from db.models_loans import Loan, LoanApplication, LoanGuarantee, LoanInstalment

KES = 100
# Who decides in the demo (manage.py DEMO_STAFF): the loan officer recommends, the manager
# approves (maker-checker: never the same person).
OFFICER, MANAGER = "loans", "manager"


def at(deps: CoreDeps, base: datetime, days_ago: float) -> CoreDeps:
    """``deps`` whose clock reads ``days_ago`` days before ``base``."""
    when = base - timedelta(days=days_ago)
    return replace(deps, now=lambda: when)


@dataclass(frozen=True)
class Seeding:
    """What a loan scenario needs: the runtime's deps, the seeding instant and the manager
    threshold (settings)."""

    deps: CoreDeps
    base: datetime
    large_threshold_cents: int

    def at(self, days_ago: float) -> CoreDeps:
        return at(self.deps, self.base, days_ago)


def _member_id(session: Session, msisdn: str) -> int:
    member = find_by_msisdn(session, msisdn)
    if member is None:
        raise RuntimeError(f"demo member {msisdn} is missing: seed the members first")
    return member.id


def _staff(session: Session, username: str) -> Principal:
    row = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if row is None:
        raise RuntimeError(f"demo staff {username!r} is missing: seed the staff first")
    return principal_for(row)


def has_applied(session: Session, msisdn: str) -> bool:
    """Whether the member with this phone has ever applied (their loan is seeded)."""
    found = session.scalar(
        select(LoanApplication.id)
        .where(LoanApplication.member_id == _member_id(session, msisdn))
        .limit(1)
    )
    return found is not None


def _apply(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    product: str,
    kes: int,
    term: int,
    key: str,
) -> LoanApplication:
    return book.apply_for_loan(session, deps, member_id, product, kes * KES, term, "ussd", key)


def _ask_and_accept(
    session: Session,
    s: Seeding,
    application: LoanApplication,
    guarantor_msisdn: str,
    kes: int,
    *,
    days_ago: float,
    accept: bool,
) -> LoanGuarantee:
    asked = guarantees.request_guarantee(
        session, s.at(days_ago), application_id=application.id,
        borrower_id=application.member_id, guarantor=guarantor_msisdn, amount_cents=kes * KES,
    )  # fmt: skip
    if accept:
        guarantees.accept_guarantee(
            session, s.at(days_ago - 0.3), guarantee_id=asked.id,
            guarantor_id=asked.guarantor_id,
        )  # fmt: skip
    return asked


def _recommend(session: Session, s: Seeding, application: LoanApplication, days_ago: float) -> int:
    req = approval_actions.recommend(
        session, s.at(days_ago), _staff(session, OFFICER), application.id,
        note="demo: a regular saver", large_threshold_cents=s.large_threshold_cents,
    )  # fmt: skip
    return req.id


def _loan_of(session: Session, application: LoanApplication) -> Loan:
    loan = session.scalar(select(Loan).where(Loan.application_id == application.id))
    if loan is None:
        raise RuntimeError(f"application {application.reference} was not disbursed")
    return loan


def _repay_due_instalments(session: Session, s: Seeding, loan: Loan, tag: str) -> int:
    """Pay every instalment due before the seeding day on its due date, by M-Pesa (the
    paybill, the loan reference as the account); returns how many."""
    rows = session.scalars(
        select(LoanInstalment)
        .where(LoanInstalment.loan_id == loan.id)
        .order_by(LoanInstalment.number)
    ).all()
    today = business_date(s.base)
    paid = 0
    for row in rows:
        if row.due_on >= today:
            break
        days_ago = (today - row.due_on).days - 0.4  # mid-morning in Nairobi on the due date
        deps = s.at(days_ago)
        due = repayments.position(session, deps, loan.id).due_now_cents
        if due <= 0:
            continue
        receipt = f"SD{tag}{row.number:02d}X".upper()[:10]
        repayments.repay_loan(
            session, deps,
            repayments.Repayment(
                amount_cents=due, source=RepaymentSource.MPESA,
                idempotency_key=f"mpesa:receipt:{receipt}",
                business_key=f"loan_repayment:demo-{receipt}", reference=loan.reference,
                receipt=receipt,
            ),
        )  # fmt: skip
        paid += 1
    return paid


# ------------------------------------------------------------------ the four loans


def closed_instant_loan(session: Session, s: Seeding, msisdn: str) -> str:
    """An instant mobile loan, paid out by the system at once, repaid in full on its due
    date: closed."""
    member_id = _member_id(session, msisdn)
    application = _apply(session, s.at(200), member_id, "INST", 3_000, 1, "demo-inst-0001")
    loan = _loan_of(session, application)
    _repay_due_instalments(session, s, loan, f"I{member_id}")
    session.refresh(loan)
    return f"{loan.reference} instant loan KES 3,000: {loan.status}"


def repaying_development_loan(
    session: Session, s: Seeding, msisdn: str, guarantor_msisdn: str
) -> str:
    """A development loan with a guarantor, approved by maker-checker, partly repaid."""
    member_id = _member_id(session, msisdn)
    application = _apply(session, s.at(105), member_id, "DEV", 30_000, 12, "demo-dev-0001")
    _ask_and_accept(session, s, application, guarantor_msisdn, 15_000, days_ago=104.9,
                    accept=True)  # fmt: skip
    request_id = _recommend(session, s, application, 103)
    engine.decide(session, s.at(102), _staff(session, MANAGER), request_id, approve=True,
                  note="demo: guarantor and deposits in order")  # fmt: skip
    loan = _loan_of(session, application)
    paid = _repay_due_instalments(session, s, loan, f"D{member_id}")
    position = repayments.position(session, s.deps, loan.id)
    return (
        f"{loan.reference} development loan KES 30,000: {paid} instalments paid, "
        f"balance {format_cents(position.payoff_cents)}"
    )


def pending_emergency_loan(session: Session, s: Seeding, msisdn: str) -> str:
    """An emergency loan covered by the member's own free deposits, recommended by the loan
    officer: waiting for the manager."""
    member_id = _member_id(session, msisdn)
    application = _apply(session, s.at(3), member_id, "EMG", 20_000, 6, "demo-emg-0001")
    _recommend(session, s, application, 2)
    return f"{application.reference} emergency loan KES 20,000: {application.status}, recommended"


def awaiting_guarantor_loan(
    session: Session, s: Seeding, msisdn: str, guarantor_msisdn: str
) -> str:
    """A development loan whose cover needs a guarantor; the one asked has not answered."""
    member_id = _member_id(session, msisdn)
    application = _apply(session, s.at(1), member_id, "DEV", 40_000, 24, "demo-dev-0002")
    _ask_and_accept(session, s, application, guarantor_msisdn, 20_000, days_ago=0.9,
                    accept=False)  # fmt: skip
    return f"{application.reference} development loan KES 40,000: {application.status}"
