"""``verify-ledger``: recompute everything from the postings and report any mismatch.

Each check is one set-based query, so it scales to millions of postings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session, aliased

from core.ledger.entries import trial_balance
from core.ledger.vocabulary import HoldStatus
from db.models import Account, Hold, JournalEntry, Posting


@dataclass
class LedgerReport:
    entries: int = 0
    postings: int = 0
    accounts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _delta() -> ColumnElement[int]:
    return case((Account.normal_side == "D", Posting.amount_cents), else_=-Posting.amount_cents)


def verify_ledger(session: Session, *, max_problems: int = 50) -> LedgerReport:
    report = LedgerReport(
        entries=session.scalar(select(func.count()).select_from(JournalEntry)) or 0,
        postings=session.scalar(select(func.count()).select_from(Posting)) or 0,
        accounts=session.scalar(select(func.count()).select_from(Account)) or 0,
    )
    add = report.problems.append

    # 1. Every entry has 2+ postings summing to zero.
    legs = (
        select(
            JournalEntry.id.label("entry_id"),
            func.coalesce(func.sum(Posting.amount_cents), 0).label("total"),
            func.count(Posting.id).label("n"),
        )
        .outerjoin(Posting, Posting.entry_id == JournalEntry.id)
        .group_by(JournalEntry.id)
        .subquery()
    )
    for row in session.execute(
        select(legs).where((legs.c.total != 0) | (legs.c.n < 2)).limit(max_problems)
    ):
        add(f"entry {row.entry_id}: {row.n} postings summing to {row.total}")

    # 2. Every account's stored balance equals the sum of its postings.
    sums = (
        select(
            Account.id.label("account_id"),
            Account.code,
            Account.balance_cents,
            func.coalesce(func.sum(_delta()), 0).label("computed"),
        )
        .outerjoin(Posting, Posting.account_id == Account.id)
        .group_by(Account.id, Account.code, Account.balance_cents)
        .subquery()
    )
    for row in session.execute(
        select(sums).where(sums.c.balance_cents != sums.c.computed).limit(max_problems)
    ):
        add(f"account {row.code}: stored {row.balance_cents}, postings give {row.computed}")

    # 3. Held amounts equal the pending holds.
    holds = (
        select(
            Account.id.label("account_id"),
            Account.code,
            Account.held_cents,
            func.coalesce(
                func.sum(
                    case((Hold.status == HoldStatus.PENDING, Hold.amount_cents), else_=literal(0))
                ),
                0,
            ).label("pending"),
        )
        .outerjoin(Hold, Hold.account_id == Account.id)
        .group_by(Account.id, Account.code, Account.held_cents)
        .subquery()
    )
    for row in session.execute(
        select(holds).where(holds.c.held_cents != holds.c.pending).limit(max_problems)
    ):
        add(f"account {row.code}: held {row.held_cents}, pending holds {row.pending}")

    # 4. No forbidden negative.
    for row in session.execute(
        select(Account.code, Account.balance_cents, Account.held_cents)
        .where(Account.no_overdraft, Account.balance_cents - Account.held_cents < 0)
        .limit(max_problems)
    ):
        add(f"account {row.code}: available {row.balance_cents - row.held_cents} below zero")

    # 5. Each posting's running balance is the running sum of the account's postings.
    running = (
        select(
            Posting.id,
            Account.code,
            Posting.balance_after_cents,
            func.sum(_delta())
            .over(partition_by=Posting.account_id, order_by=Posting.id)
            .label("expected"),
        )
        .join(Account, Account.id == Posting.account_id)
        .subquery()
    )
    for row in session.execute(
        select(running)
        .where(running.c.balance_after_cents != running.c.expected)
        .limit(max_problems)
    ):
        add(
            f"posting {row.id} on {row.code}: running balance {row.balance_after_cents}, "
            f"expected {row.expected}"
        )

    # 6. A shard keeps its parent's type and normal side (so the trial balance and every
    # report that sums the parent with its shards mean what they meant unsharded).
    parent = aliased(Account)
    for row in session.execute(
        select(Account.code, parent.code.label("parent_code"))
        .join(parent, parent.id == Account.parent_id)
        .where((Account.type != parent.type) | (Account.normal_side != parent.normal_side))
        .limit(max_problems)
    ):
        add(f"shard {row.code}: type or normal side differs from {row.parent_code}")

    # 7. The books balance.
    total = session.scalar(select(func.coalesce(func.sum(Posting.amount_cents), 0))) or 0
    if total != 0:
        add(f"all postings sum to {total}, not zero")
    tb = trial_balance(session)
    if not tb.balanced:
        add(f"trial balance: debits {tb.debit_total_cents} != credits {tb.credit_total_cents}")
    return report
