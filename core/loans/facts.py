"""What the SACCO knows of a member when lending: read from the ledger and the loan book,
never written. ``member_facts`` gathers the appraisal's ``MemberFacts``.

* **Free deposits**: the deposits account's balance less what is held on it (pledges for
  others' loans are holds). Share capital is never counted.
* **Principal outstanding**: the balances of the member's loan accounts (purpose ``loan``;
  ``core.ledger.statements``).
* **Joined on**: the Nairobi business date of the member's registration.
* **In arrears**: an active loan of the member's with an instalment past its due date (due
  before today) and not paid in full.
* **Leaving**: the member has given notice to leave (``member_exits``, docs/members/exit.md):
  from then on the appraisal counts them not active, so they cannot borrow.
* **Guarantees a defaulted loan**: an accepted guarantee (a pledge still standing) on a
  written-off loan, or on an active loan whose category at the last close of day is in
  ``DEFAULTED_CATEGORIES`` (doubtful or loss: the loans default recovery takes,
  core/loans/recovery.py). A guarantor whose pledge was called by a recovery has paid
  their part and is no longer held back by that loan.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Exists, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.ledger.chart import Purpose
from core.ledger.statements import loans_outstanding
from core.loans.appraisal import MemberFacts
from core.loans.vocabulary import GuaranteeStatus, LoanStatus
from core.members.status import MemberStatus
from core.risk.vocabulary import LoanCategory
from db.models import Account, Member
from db.models_close_day import LoanDayState
from db.models_exit import MemberExit
from db.models_loans import Loan, LoanGuarantee, LoanInstalment

# A loan in one of these categories at the last close of day is defaulted
# (docs/loans/recovery.md): recovery may take it, its guarantors may not borrow.
DEFAULTED_CATEGORIES = frozenset({LoanCategory.DOUBTFUL, LoanCategory.LOSS})


def deposits_account(session: Session, member_id: int) -> Account:
    return session.scalars(
        select(Account).where(Account.member_id == member_id, Account.purpose == Purpose.DEPOSITS)
    ).one()


def _free_deposits(member_id: int) -> Select[tuple[int]]:
    free = Account.balance_cents - Account.held_cents
    return select(case((free > 0, free), else_=0)).where(
        Account.member_id == member_id, Account.purpose == Purpose.DEPOSITS
    )


def free_deposits_cents(session: Session, member_id: int) -> int:
    """Deposits not pledged: balance less holds (never below zero)."""
    return int(session.scalar(_free_deposits(member_id)) or 0)


def _in_arrears(member_id: int, today: date) -> Exists:
    paid = (
        LoanInstalment.paid_principal_cents
        + LoanInstalment.paid_interest_cents
        + LoanInstalment.paid_fee_cents
    )
    due = LoanInstalment.principal_cents + LoanInstalment.interest_cents + LoanInstalment.fee_cents
    return exists().where(
        LoanInstalment.loan_id == Loan.id,
        Loan.member_id == member_id,
        Loan.status == LoanStatus.ACTIVE,
        LoanInstalment.due_on < today,
        paid < due,
    )


def in_arrears(session: Session, member_id: int, today: date) -> bool:
    return bool(session.scalar(select(_in_arrears(member_id, today))))


def _guarantees_defaulted_loan(member_id: int) -> Exists:
    classified_defaulted = exists().where(
        LoanDayState.loan_id == Loan.id,
        LoanDayState.category.in_(sorted(DEFAULTED_CATEGORIES)),
    )
    return exists().where(
        LoanGuarantee.loan_id == Loan.id,
        LoanGuarantee.guarantor_id == member_id,
        LoanGuarantee.status == GuaranteeStatus.ACCEPTED,
        or_(
            Loan.status == LoanStatus.WRITTEN_OFF,
            and_(Loan.status == LoanStatus.ACTIVE, classified_defaulted),
        ),
    )


def guarantees_defaulted_loan(session: Session, member_id: int) -> bool:
    return bool(session.scalar(select(_guarantees_defaulted_loan(member_id))))


def active_guarantees(session: Session, member_id: int) -> int:
    """How many pledges the member holds for others now (accepted guarantees)."""
    return int(
        session.scalar(
            select(func.count(LoanGuarantee.id)).where(
                LoanGuarantee.guarantor_id == member_id,
                LoanGuarantee.status == GuaranteeStatus.ACCEPTED,
            )
        )
        or 0
    )


def _leaving(member_id: int) -> Exists:
    return exists().where(MemberExit.member_id == member_id)


def leaving(session: Session, member_id: int) -> bool:
    """Whether the member gave notice to leave: no new loans, no new pledges."""
    return bool(session.scalar(select(_leaving(member_id))))


def member_facts(session: Session, member: Member, today: date) -> MemberFacts:
    """The appraisal's facts in ONE statement (each figure a sub-query of the functions
    above): the loans screens read them on each hop that appraises, and the apply path
    once more when it approves."""
    row = session.execute(
        select(
            _free_deposits(member.id).scalar_subquery(),
            loans_outstanding(member.id).scalar_subquery(),
            _in_arrears(member.id, today),
            _guarantees_defaulted_loan(member.id),
            _leaving(member.id),
        )
    ).one()
    free, outstanding, arrears, defaulted, exiting = row
    return MemberFacts(
        today=today,
        joined_on=business_date(member.created_at),
        active=member.status == MemberStatus.ACTIVE and not exiting,
        free_deposits_cents=int(free or 0),
        principal_outstanding_cents=int(outstanding or 0),
        in_arrears=bool(arrears),
        guarantees_defaulted_loan=bool(defaulted),
    )
