"""What the SACCO knows of a thin-file member, as the scorecard's features: read from the
ledger and the loan book in ONE statement, as of a business date (docs/loans/scoring.md).

Every feature is an integer in its own unit, so the inputs a score keeps (JSON) replay
exactly:

* ``membership_months``: whole months since registration (``months_between``).
* ``deposit_months_12``: of the 12 calendar months ending with ``as_of``'s, how many saw
  money in (an entry of a deposit kind crediting one of the member's accounts).
* ``deposit_balance_cents``: the deposits account's balance at the end of ``as_of``.
* ``deposit_trend_cents``: that balance less the balance six months earlier.
* ``max_days_past_due``: the most days past due any own loan reached, from close of day's
  category history (``loan_category_changes``, the days past due at each change) and each
  loan's latest day state classified by ``as_of``; 0 for a member who never borrowed.
* ``loans_repaid``: own loans closed (repaid in full) by ``as_of``.
* ``guarantees_outstanding``: pledges the member held for others at the end of ``as_of``.
* ``mpesa_inflows_count`` / ``mpesa_inflows_cents``: M-Pesa deposits (STK push and
  paybill, entry kind ``deposit.mpesa``) in the 12 months ending ``as_of``.

``as_of`` earlier than today reads the book as it stood then (the fit reads each loan's
features on its disbursement date); what was posted on a day counts by its value date.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.kernel.calendar import NAIROBI
from core.ledger.chart import Purpose
from core.ledger.vocabulary import EntryKind
from core.loans.appraisal import months_between
from core.loans.vocabulary import GuaranteeStatus, LoanStatus
from db.models import Account, JournalEntry, Member, Posting
from db.models_close_day import LoanCategoryChange, LoanDayState
from db.models_loans import Loan, LoanGuarantee

FEATURES: tuple[str, ...] = (
    "membership_months",
    "deposit_months_12",
    "deposit_balance_cents",
    "deposit_trend_cents",
    "max_days_past_due",
    "loans_repaid",
    "guarantees_outstanding",
    "mpesa_inflows_count",
    "mpesa_inflows_cents",
)

DEPOSIT_KINDS = (
    EntryKind.DEPOSIT_MPESA,
    EntryKind.DEPOSIT_CASH,
    EntryKind.DEPOSIT_BANK,
    EntryKind.MPESA_SUSPENSE_ASSIGN,
)
MEMBER_PURPOSES = (Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.SHARES)
# Pledges standing: accepted now, or given back / called after the day in question.
_PLEDGED = (GuaranteeStatus.ACCEPTED, GuaranteeStatus.RELEASED, GuaranteeStatus.CALLED)


def month_start(day: date, back: int) -> date:
    """The first day of the month ``back`` months before ``day``'s."""
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def end_of(day: date) -> datetime:
    """The instant the Nairobi business day ``day`` ends (the next day's midnight)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=NAIROBI)


def _month_index(column: ColumnElement[date]) -> ColumnElement[int]:
    return func.extract("year", column) * 12 + func.extract("month", column)


def _balance_on(member_id: int, day: date) -> ColumnElement[int]:
    """The deposits account's balance at the end of ``day`` (credit-normal: minus the sum
    of its debit-positive postings valued by then)."""
    return (
        select(func.coalesce(-func.sum(Posting.amount_cents), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            Account.member_id == member_id,
            Account.purpose == Purpose.DEPOSITS,
            JournalEntry.value_date <= day,
        )
        .scalar_subquery()
    )


def gather(session: Session, member: Member, as_of: date) -> dict[str, int]:
    """The member's features on ``as_of`` (see the module), one statement."""
    since = month_start(as_of, 11)
    cutoff = end_of(as_of)
    deposits = (
        select(JournalEntry.kind, JournalEntry.value_date, (-Posting.amount_cents).label("cents"))
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            Account.member_id == member.id,
            Account.purpose.in_(MEMBER_PURPOSES),
            Posting.amount_cents < 0,
            JournalEntry.kind.in_(DEPOSIT_KINDS),
            JournalEntry.value_date >= since,
            JournalEntry.value_date <= as_of,
        )
        .subquery()
    )
    mpesa = deposits.c.kind == EntryKind.DEPOSIT_MPESA
    own_loans = select(Loan.id).where(Loan.member_id == member.id, Loan.disbursed_on <= as_of)
    history_dpd = (
        select(func.max(LoanCategoryChange.days_past_due))
        .where(
            LoanCategoryChange.loan_id.in_(own_loans),
            LoanCategoryChange.business_date <= as_of,
        )
        .scalar_subquery()
    )
    state_dpd = (
        select(func.max(LoanDayState.days_past_due))
        .where(LoanDayState.loan_id.in_(own_loans), LoanDayState.classified_on <= as_of)
        .scalar_subquery()
    )
    repaid = (
        select(func.count(Loan.id))
        .where(
            Loan.member_id == member.id,
            Loan.status == LoanStatus.CLOSED,
            Loan.closed_at < cutoff,
        )
        .scalar_subquery()
    )
    guarantees = (
        select(func.count(LoanGuarantee.id))
        .where(
            LoanGuarantee.guarantor_id == member.id,
            LoanGuarantee.status.in_(_PLEDGED),
            LoanGuarantee.decided_at < cutoff,
            or_(LoanGuarantee.released_at.is_(None), LoanGuarantee.released_at >= cutoff),
        )
        .scalar_subquery()
    )
    row = session.execute(
        select(
            func.count(func.distinct(_month_index(deposits.c.value_date))),
            func.count(case((mpesa, 1))),
            func.coalesce(func.sum(case((mpesa, deposits.c.cents), else_=0)), 0),
            _balance_on(member.id, as_of),
            _balance_on(member.id, _six_months_before(as_of)),
            func.coalesce(history_dpd, 0),
            func.coalesce(state_dpd, 0),
            repaid,
            guarantees,
        ).select_from(deposits)
    ).one()
    months, mpesa_count, mpesa_cents, balance, balance_then, dpd_a, dpd_b, loans, pledges = row
    joined = member.created_at.astimezone(NAIROBI).date()
    return {
        "membership_months": months_between(joined, as_of),
        "deposit_months_12": int(months),
        "deposit_balance_cents": int(balance),
        "deposit_trend_cents": int(balance) - int(balance_then),
        "max_days_past_due": max(int(dpd_a), int(dpd_b)),
        "loans_repaid": int(loans),
        "guarantees_outstanding": int(pledges),
        "mpesa_inflows_count": int(mpesa_count),
        "mpesa_inflows_cents": int(mpesa_cents),
    }


def _six_months_before(day: date) -> date:
    """The same day six months earlier (the month's last day when shorter)."""
    first = month_start(day, 6)
    following = month_start(day, 5)
    return min(first.replace(day=1) + timedelta(days=day.day - 1), following - timedelta(days=1))
