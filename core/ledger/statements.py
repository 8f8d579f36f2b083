"""Read-only views of a member's money across their accounts, for statements and balances.

``recent_movements`` merges the postings of every account the member owns
(savings, deposits, shares, and loan accounts once loans exist), newest first.
``loans_outstanding_cents`` sums the member's loan accounts (purpose ``loan``:
assets, so a positive balance is what the member owes).

``STATEMENT_LABELS`` names every entry kind on a member's statement: each
``EntryKind`` has a ``StatementLabel``, whose text each channel keeps in its
catalogues in both languages (USSD: ``kind_<label>``). A kind the ledger does
not know (a row older than this vocabulary) shows as ``other``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.ledger.chart import Purpose
from core.ledger.entries import normal_delta
from core.ledger.vocabulary import EntryKind
from db.models import Account, JournalEntry, Posting

LOAN_PURPOSE = Purpose.LOAN


class StatementLabel(StrEnum):
    """What a member reads on a statement line; texts: ``kind_<value>`` in the catalogues."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"
    SUSPENSE = "suspense"
    LOAN = "loan"  # a loan paid out (and, on the loan account, the principal owed)
    REPAYMENT = "repayment"
    RECOVERY = "recovery"  # a defaulted loan repaid from deposits or a guarantor's pledge
    FEE = "fee"
    INTEREST = "interest"
    OTHER = "other"


# Every kind core can post, by the label a member reads. A parked M-Pesa payment that
# staff assign to a member is, to that member, a deposit.
STATEMENT_LABELS: Mapping[str, StatementLabel] = {
    EntryKind.DEPOSIT_MPESA: StatementLabel.DEPOSIT,
    EntryKind.DEPOSIT_CASH: StatementLabel.DEPOSIT,
    EntryKind.DEPOSIT_BANK: StatementLabel.DEPOSIT,
    EntryKind.MPESA_SUSPENSE_ASSIGN: StatementLabel.DEPOSIT,
    EntryKind.TRANSFER_OWN: StatementLabel.TRANSFER,
    EntryKind.SHARE_TRANSFER: StatementLabel.TRANSFER,  # shares to or from another member
    # Fixed deposits: savings into and out of the deposit, and its interest.
    EntryKind.FIXED_DEPOSIT_OPEN: StatementLabel.TRANSFER,
    EntryKind.FIXED_DEPOSIT_CLOSE: StatementLabel.TRANSFER,
    EntryKind.FIXED_DEPOSIT_INTEREST: StatementLabel.INTEREST,
    EntryKind.WITHDRAWAL_MPESA: StatementLabel.WITHDRAWAL,
    EntryKind.MPESA_SUSPENSE: StatementLabel.SUSPENSE,  # SACCO accounts only
    EntryKind.ADJUSTMENT_MANUAL: StatementLabel.ADJUSTMENT,  # SACCO accounts only
    EntryKind.REVERSAL: StatementLabel.REVERSAL,
    EntryKind.LOAN_DISBURSEMENT: StatementLabel.LOAN,
    EntryKind.LOAN_REPAYMENT: StatementLabel.REPAYMENT,
    EntryKind.LOAN_RECOVERY_DEPOSITS: StatementLabel.RECOVERY,
    EntryKind.LOAN_RECOVERY_PLEDGE: StatementLabel.RECOVERY,
    EntryKind.LOAN_RECOVERY_LOAN: StatementLabel.RECOVERY,
    EntryKind.LOAN_ACCRUAL: StatementLabel.INTEREST,  # SACCO accounts only
    EntryKind.LOAN_PROVISION: StatementLabel.ADJUSTMENT,  # SACCO accounts only
    EntryKind.LOAN_WRITE_OFF: StatementLabel.ADJUSTMENT,  # the loan account's last line
    EntryKind.LOAN_RECOVERY: StatementLabel.REPAYMENT,
    EntryKind.LOAN_RESCHEDULE: StatementLabel.INTEREST,  # interest and fees added to the loan
    EntryKind.WITHDRAWAL_CASH: StatementLabel.WITHDRAWAL,
    EntryKind.TILL_DIFFERENCE: StatementLabel.ADJUSTMENT,  # SACCO accounts only
    EntryKind.MEMBER_EXIT_TRANSFER: StatementLabel.TRANSFER,  # deposits, shares -> savings
    EntryKind.MEMBER_EXIT_REFUND: StatementLabel.WITHDRAWAL,  # paid out on exit
    EntryKind.MEMBER_ESTATE_TRANSFER: StatementLabel.TRANSFER,  # savings -> the payees
    EntryKind.MEMBER_ESTATE_PAYOUT: StatementLabel.WITHDRAWAL,  # a payee paid at the branch
    EntryKind.SAVINGS_ACCRUAL: StatementLabel.INTEREST,  # SACCO accounts only
    EntryKind.SAVINGS_INTEREST: StatementLabel.INTEREST,  # interest earned, net of tax
    EntryKind.YEAR_END_DECLARE: StatementLabel.ADJUSTMENT,  # SACCO accounts only
    EntryKind.YEAR_END_TAX: StatementLabel.ADJUSTMENT,  # SACCO accounts only
    EntryKind.YEAR_END_CREDIT: StatementLabel.INTEREST,  # dividend and rebate, net of tax
    EntryKind.CHECKOFF_RECEIPT: StatementLabel.ADJUSTMENT,  # SACCO accounts only
    EntryKind.DEPOSIT_CHECKOFF: StatementLabel.DEPOSIT,  # deducted from pay by the employer
    EntryKind.WITHDRAWAL_BANK: StatementLabel.WITHDRAWAL,  # a loan sent to the bank account
    EntryKind.FLOAT_SWEEP: StatementLabel.TRANSFER,  # SACCO accounts only
}


def statement_label(kind: str) -> StatementLabel:
    """The label of an entry kind as stored (``other`` for a kind no longer posted)."""
    return STATEMENT_LABELS.get(kind, StatementLabel.OTHER)


@dataclass(frozen=True, slots=True)
class Movement:
    posting_id: int
    reference: str
    kind: str
    memo: str
    created_at: datetime
    value_date: date
    account_purpose: str
    amount_cents: int  # + raised the member's balance on that account, - lowered it
    balance_after_cents: int

    @property
    def label(self) -> StatementLabel:
        return statement_label(self.kind)


def recent_movements(
    session: Session, member_id: int, *, limit: int = 5, account_id: int | None = None
) -> list[Movement]:
    """The member's last ``limit`` postings over all their accounts (or only
    ``account_id``, one of theirs), newest first."""
    query = (
        select(Posting, JournalEntry, Account.purpose, Account.normal_side)
        .join(Account, Account.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Account.member_id == member_id)
    )
    if account_id is not None:
        query = query.where(Account.id == account_id)
    rows = session.execute(
        query.order_by(Posting.id.desc()).limit(max(1, min(limit, 100)))
    ).tuples()
    return [
        Movement(
            posting_id=p.id,
            reference=e.reference,
            kind=e.kind,
            memo=e.memo,
            created_at=e.created_at,
            value_date=e.value_date,
            account_purpose=purpose,
            amount_cents=normal_delta(side, p.amount_cents),
            balance_after_cents=p.balance_after_cents,
        )
        for p, e, purpose, side in rows
    ]


def loans_outstanding(member_id: int) -> Select[tuple[int]]:
    """The statement of ``loans_outstanding_cents`` (a sub-query of the appraisal's facts)."""
    return select(func.coalesce(func.sum(Account.balance_cents), 0)).where(
        Account.member_id == member_id, Account.purpose == LOAN_PURPOSE
    )


def loans_outstanding_cents(session: Session, member_id: int) -> int:
    """What the member owes on all their loan accounts (0 when they have none)."""
    return int(session.scalar(loans_outstanding(member_id)) or 0)


def loans_owed_cents(session: Session, member_id: int) -> int | None:
    """What the member owes on their loan accounts, or None when they have none (a
    member who never borrowed is shown no loans line; one who repaid sees KES 0)."""
    count, total = session.execute(
        select(func.count(Account.id), func.coalesce(func.sum(Account.balance_cents), 0)).where(
            Account.member_id == member_id, Account.purpose == LOAN_PURPOSE
        )
    ).one()
    return int(total) if count else None
