"""Dormant savings (issue 14, part 3; docs/savings/tills-and-dormancy.md).

A member's savings account (the main one, and each further savings account such as a
holiday account, on its own activity) with no member-initiated activity for
``DORMANCY_MONTHS`` is marked dormant (``accounts.dormant_since``) by ``mark_dormant``, one ``UPDATE`` run by
``manage.py mark-dormant`` and the scheduler. Withdrawals from a dormant account (USSD,
M-Pesa, the teller) are refused with ``AccountDormant`` until staff reactivate it
(``reactivate``, audited; it wakes every dormant savings account of the member);
a withdrawal asks about the account it leaves; deposits still come in and do not wake it by themselves. The
report of dormant accounts and their balances is the unclaimed balances register.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, String, column, select, text
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.kernel.permissions import Principal
from core.ledger.chart import Purpose
from core.ledger.vocabulary import EntryKind
from core.members.backoffice import visible_member
from core.members.status import MemberStatus
from db.base import UTCDateTime
from db.models import Account

# What a member does with their savings themselves (at the counter, on USSD, by M-Pesa);
# interest, loan payouts, recoveries and adjustments are the SACCO's and wake nothing.
MEMBER_KINDS: tuple[EntryKind, ...] = (
    EntryKind.DEPOSIT_MPESA,
    EntryKind.DEPOSIT_CASH,
    EntryKind.DEPOSIT_BANK,
    EntryKind.MPESA_SUSPENSE_ASSIGN,
    EntryKind.TRANSFER_OWN,
    EntryKind.WITHDRAWAL_MPESA,
    EntryKind.WITHDRAWAL_CASH,
    EntryKind.LOAN_REPAYMENT,
)


class AccountDormant(DomainError):
    """A withdrawal from savings marked dormant: staff must reactivate it first."""

    code = "account_dormant"


class NotDormant(DomainError):
    code = "not_dormant"


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (the month's last day when
    that month is shorter: 31 March less one month is 28 or 29 February)."""
    year, month0 = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return moment.replace(year=year, month=month0 + 1, day=min(moment.day, last))


_KINDS_SQL = ", ".join(f"'{kind.value}'" for kind in MEMBER_KINDS)

# One statement: every savings account of a member who has not exited, older than the
# cutoff (or reactivated before it), not yet dormant, with no member-initiated posting
# since the cutoff.
_MARK = text(f"""
UPDATE accounts AS a SET dormant_since = :now
WHERE a.purpose IN (:savings, :further) AND a.dormant_since IS NULL AND a.closed_at IS NULL
  AND COALESCE(a.reactivated_at, a.created_at) < :cutoff
  AND EXISTS (SELECT 1 FROM members m WHERE m.id = a.member_id AND m.status <> :exited)
  AND NOT EXISTS (
      SELECT 1 FROM postings p JOIN journal_entries e ON e.id = p.entry_id
      WHERE p.account_id = a.id AND e.created_at >= :cutoff AND e.kind IN ({_KINDS_SQL}))
""")  # noqa: S608 - the kinds are our own enum values


def mark_dormant(session: Session, deps: CoreDeps, *, months: int) -> int:
    """Mark savings dormant after ``months`` without member activity; how many were marked."""
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise InvalidInput("months must be a whole number of at least 1", field="months")
    now = deps.now()
    result = session.execute(
        _MARK,
        {
            "now": now,
            "cutoff": months_before(now, months),
            "savings": Purpose.SAVINGS.value,
            "further": Purpose.PRODUCT_SAVINGS.value,
            "exited": MemberStatus.EXITED.value,
        },
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def dormant_since(
    session: Session, member_id: int, account_id: int | None = None
) -> datetime | None:
    """When the member's main savings (or the savings account ``account_id``) went dormant."""
    where = (
        Account.id == account_id if account_id is not None else Account.purpose == Purpose.SAVINGS
    )
    return session.scalar(
        select(Account.dormant_since).where(Account.member_id == member_id, where)
    )


def check_not_dormant(session: Session, member_id: int, account_id: int | None = None) -> None:
    """``AccountDormant`` when the savings account money leaves (the main one unless
    ``account_id``) is dormant (every withdrawal asks)."""
    since = dormant_since(session, member_id, account_id)
    if since is not None:
        raise AccountDormant(
            "the savings account is dormant (no activity for a long time): staff must "
            "reactivate it before any withdrawal",
            reason="dormant",
            since=since.isoformat(),
        )


def reactivate(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int, *, note: str
) -> datetime:
    """Lift dormancy from a member's savings (the member came in with their ID); audited.
    Returns when it had been marked dormant."""
    member = visible_member(session, actor, member_id)
    text_note = " ".join((note or "").split())
    if not 3 <= len(text_note) <= 200:
        raise InvalidInput("note: 3-200 characters (what the member showed)", field="note")
    now = deps.now()
    accounts = session.scalars(
        select(Account)
        .where(
            Account.member_id == member.id,
            Account.purpose.in_([Purpose.SAVINGS, Purpose.PRODUCT_SAVINGS]),
            Account.dormant_since.is_not(None),
        )
        .order_by(Account.id)
        .with_for_update()
    ).all()
    if not accounts:
        raise NotDormant("the member's savings are not dormant", reason="not_dormant")
    since = min(a.dormant_since for a in accounts if a.dormant_since is not None)
    for account in accounts:
        account.dormant_since = None
        account.reactivated_at = now
    audit.record(
        session, actor, "member.savings_reactivate", target_type="member", target_id=member.id,
        before={"dormant_since": since.isoformat()}, after={"note": text_note}, now=now,
    )  # fmt: skip
    session.flush()
    return since


@dataclass(frozen=True, slots=True)
class DormantAccount:
    account_id: int
    member_id: int
    member_number: str
    full_name: str
    branch: str | None
    account_code: str
    balance_cents: int
    dormant_since: datetime
    last_activity_at: datetime | None


@dataclass(frozen=True, slots=True)
class DormantReport:
    accounts: list[DormantAccount]
    count: int  # every dormant account the caller may see, not only this page
    total_cents: int


def dormant_report(
    session: Session, actor: Principal, *, limit: int, after_id: int = 0
) -> DormantReport:
    """Dormant savings and their balances (unclaimed), by account id; totals set-based."""
    params = {
        "p": Purpose.SAVINGS.value,
        "further": Purpose.PRODUCT_SAVINGS.value,
        "branch": actor.branch,
        "after": after_id,
        "limit": limit,
    }
    scope = (
        "FROM accounts a JOIN members m ON m.id = a.member_id "
        "WHERE a.purpose IN (:p, :further) AND a.dormant_since IS NOT NULL "
        "AND (CAST(:branch AS VARCHAR) IS NULL OR m.branch = :branch)"
    )
    count, total = session.execute(
        text(f"SELECT count(*), COALESCE(sum(a.balance_cents), 0) {scope}"), params
    ).one()  # noqa: S608 - no input in the SQL text
    query = text(
        "SELECT a.id, m.id, m.member_number, m.full_name, m.branch, a.code, "
        "a.balance_cents, a.dormant_since, "
        "(SELECT max(e.created_at) FROM postings p JOIN journal_entries e "
        f" ON e.id = p.entry_id WHERE p.account_id = a.id AND e.kind IN ({_KINDS_SQL})) "
        f"{scope} AND a.id > :after ORDER BY a.id LIMIT :limit"
    ).columns(  # typed, so both databases give datetimes
        column("account_id", BigInteger), column("member_id", BigInteger),
        column("member_number", String), column("full_name", String), column("branch", String),
        column("code", String), column("balance_cents", BigInteger),
        column("dormant_since", UTCDateTime()), column("last_activity_at", UTCDateTime()),
    )  # fmt: skip  # noqa: S608 - the kinds are our own enum values
    rows = session.execute(query, params).all()
    return DormantReport([DormantAccount(*row) for row in rows], int(count), int(total))
