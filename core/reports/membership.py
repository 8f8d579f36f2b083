"""Membership figures (issue 16, part 3): growth per month (joined, exited), members by
state at a date (active, dormant, suspended, pending KYC, exited), and members by the
size of their deposits at a date, in bands given as data.

"Deposits" here are what the SACCO owes a member that is not share capital: savings,
non-withdrawable deposits and further savings accounts (the member's deposit
liabilities; shares are equity). Balances at a date are the sums of postings with value
dates up to it, one set-based statement (no loop over members).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.ledger.chart import Purpose
from core.members.status import MemberStatus
from db.models import Account, JournalEntry, Member, Posting
from db.models_exit import MemberExit

DEPOSIT_PURPOSES = (Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.PRODUCT_SAVINGS)
# Deposit bands in cents, lower bound included, upper excluded (None: no upper bound). Data:
# change the list, not the code. KES 0-1,000; 1,000-10,000; 10,000-50,000; 50,000-100,000;
# 100,000-500,000; 500,000-1,000,000; 1,000,000 and over (the shape of SASRA's deposit
# return bands; the figures are the SACCO's to choose).
DEPOSIT_BANDS_CENTS: tuple[tuple[int, int | None], ...] = (
    (0, 1_000_00),
    (1_000_00, 10_000_00),
    (10_000_00, 50_000_00),
    (50_000_00, 100_000_00),
    (100_000_00, 500_000_00),
    (500_000_00, 1_000_000_00),
    (1_000_000_00, None),
)
MAX_MONTHS = 120


@dataclass(frozen=True, slots=True)
class MonthGrowth:
    month: str  # YYYY-MM
    joined: int
    exited: int
    members_at_end: int  # joined by the month's end and not exited by then


@dataclass(frozen=True, slots=True)
class Band:
    low_cents: int
    high_cents: int | None
    members: int
    total_cents: int


def month_starts(first: date, last: date) -> list[date]:
    """The first day of every month from ``first``'s to ``last``'s (pure)."""
    if last < first:
        raise InvalidInput("the range ends before it starts", field="to", reason="range")
    out, d = [], first.replace(day=1)
    while d <= last:
        out.append(d)
        d = (d + timedelta(days=32)).replace(day=1)
    if len(out) > MAX_MONTHS:
        raise InvalidInput(f"at most {MAX_MONTHS} months", field="to", reason="range")
    return out


def _end_of(day: date) -> datetime:
    """The first instant after ``day`` (UTC) — members created before it joined by then."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def growth(session: Session, first: date, last: date) -> list[MonthGrowth]:
    """Joined (registered) and exited (exit completed) per month, and members at each
    month's end."""
    months = month_starts(first, last)
    out = []
    for start in months:
        end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        lo, hi = _end_of(start - timedelta(days=1)), _end_of(end)
        joined = session.scalar(
            select(func.count()).where(Member.created_at >= lo, Member.created_at < hi)
        )
        exited = session.scalar(
            select(func.count()).where(MemberExit.completed_at >= lo, MemberExit.completed_at < hi)
        )
        total = session.scalar(select(func.count()).where(Member.created_at < hi))
        gone = session.scalar(select(func.count()).where(MemberExit.completed_at < hi))
        out.append(
            MonthGrowth(
                f"{start:%Y-%m}",
                int(joined or 0),
                int(exited or 0),
                int(total or 0) - int(gone or 0),
            )  # fmt: skip
        )
    return out


def by_state(session: Session) -> dict[str, int]:
    """Members now by state; ``active`` splits into ``active`` and ``dormant`` (their
    savings marked dormant: ``core.savings.dormancy``)."""
    counts = dict.fromkeys(("dormant", *(s.value for s in MemberStatus)), 0)  # every state
    for status, count in session.execute(
        select(Member.status, func.count()).group_by(Member.status)
    ):
        counts[status] = counts.get(status, 0) + int(count)
    dormant = session.scalar(
        select(func.count(func.distinct(Account.member_id)))
        .join(Member, Member.id == Account.member_id)
        .where(
            Member.status == "active",
            Account.purpose == Purpose.SAVINGS,
            Account.dormant_since.is_not(None),
        )
    )
    counts["dormant"] = int(dormant or 0)
    counts["active"] -= counts["dormant"]
    return counts


def place_in_bands(
    balances: Sequence[int], bands: Sequence[tuple[int, int | None]] = DEPOSIT_BANDS_CENTS
) -> list[Band]:
    """Pure: how many balances fall in each band and their total. A balance below the
    first band (none should be: deposit accounts do not overdraw) counts in the first."""
    counts = [0] * len(bands)
    totals = [0] * len(bands)
    for cents in balances:
        index = next(
            (
                i
                for i, (low, high) in enumerate(bands)
                if cents >= low and (high is None or cents < high)
            ),
            0,
        )
        counts[index] += 1
        totals[index] += cents
    return [Band(low, high, counts[i], totals[i]) for i, (low, high) in enumerate(bands)]


def deposits_by_band(
    session: Session, at: date, bands: Sequence[tuple[int, int | None]] = DEPOSIT_BANDS_CENTS
) -> list[Band]:
    """Members (registered by ``at``) by their deposits at the end of ``at``; a member
    with no deposits counts in the lowest band."""
    delta = func.sum(-Posting.amount_cents)  # liabilities: a credit (negative) raises them
    balances = (
        select(Account.member_id.label("member_id"), delta.label("cents"))
        .join(Posting, Posting.account_id == Account.id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Account.purpose.in_(DEPOSIT_PURPOSES), JournalEntry.value_date <= at)
        .group_by(Account.member_id)
        .subquery()
    )
    rows = session.execute(
        select(func.coalesce(balances.c.cents, 0))
        .select_from(Member)
        .outerjoin(balances, balances.c.member_id == Member.id)
        .where(Member.created_at < _end_of(at))
    ).scalars()
    return place_in_bands([int(c) for c in rows], bands)


@dataclass(frozen=True, slots=True)
class MonthBalances:
    month: str  # YYYY-MM
    deposits_cents: int  # members' savings, deposits and further savings at the month's end
    shares_cents: int
    loans_cents: int  # principal and charges owed on loan accounts at the month's end


def balances_by_month(session: Session, first: date, last: date) -> list[MonthBalances]:
    """Month-end totals from the ledger (postings by value date), for the growth chart."""
    out = []
    for start in month_starts(first, last):
        end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        rows = dict(
            session.execute(
                select(Account.purpose, func.coalesce(func.sum(Posting.amount_cents), 0))
                .join(Posting, Posting.account_id == Account.id)
                .join(JournalEntry, JournalEntry.id == Posting.entry_id)
                .where(Account.member_id.is_not(None), JournalEntry.value_date <= end)
                .group_by(Account.purpose)
            )
            .tuples()
            .all()
        )
        # debit-positive: member liabilities and shares are credits, loans are debits
        deposits = -sum(int(rows.get(p, 0)) for p in DEPOSIT_PURPOSES)
        out.append(
            MonthBalances(
                f"{start:%Y-%m}",
                deposits,
                -int(rows.get(Purpose.SHARES, 0)),
                int(rows.get(Purpose.LOAN, 0)),
            )  # fmt: skip
        )
    return out
