"""The M-Pesa org portal's statement compared with what we recorded.

``compare_statement`` is the rule, pure (a property test drives it);
``reconcile_statement`` loads our side from the database and calls it;
``reconcile_statement_file`` compares a whole export (``manage.py reconcile-statement``);
``import_statement`` is the staff upload (``POST /api/v1/mpesa/statement-reconciliations``),
audited. All of them read only: a difference is for staff to look into (a suspense
item, a missing callback replayed by reconciliation), never corrected from a file.

Core never reads the file: the M-Pesa integration does (``integrations.mpesa.statement``:
the org portal's CSV, its columns, Nairobi times and amounts) and hands over a
``StatementFile`` of typed lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, true
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.permissions import Principal
from core.payments.mpesa.rules import parse_bill_ref
from core.payments.mpesa.vocabulary import PayoutStatus, StkStatus
from db.models import Member
from db.models_mpesa import B2CPayout, C2BPayment, StkRequest

SLACK = timedelta(minutes=10)  # clocks and settlement delays around the statement's period


@dataclass(frozen=True, slots=True)
class StatementLine:
    receipt: str
    completed_at: datetime | None
    paid_in_cents: int
    withdrawn_cents: int
    details: str = ""
    account_no: str = ""  # the paybill account / STK AccountReference ("A/C No.")
    reason_type: str = ""

    @property
    def is_charge(self) -> bool:
        """M-Pesa's own fee, listed as a line of its own under the transaction's receipt."""
        return "charge" in f"{self.details} {self.reason_type}".lower()


@dataclass(frozen=True, slots=True)
class StatementFile:
    """An org-portal statement export as the M-Pesa integration read it: its completed
    ``lines``; ``skipped``, how many lines of another status it had (failed or cancelled:
    they moved no money, so they are not compared); the file's SHA-256 and size in
    bytes, which the audit of an import records."""

    lines: tuple[StatementLine, ...]
    skipped: int = 0
    sha256: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class Recorded:
    """One payment of ours that carries an M-Pesa receipt."""

    kind: str  # stk, c2b, b2c
    cents: int  # signed on the float's side: payouts negative
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Unreceipted:
    """An STK deposit settled by a status query: credited, but Daraja gave no receipt."""

    stk_id: int
    member_number: str
    target: str
    cents: int
    created_at: datetime
    settled_at: datetime | None


@dataclass
class StatementReport:
    lines: int = 0  # completed lines compared (charge lines apart)
    skipped: int = 0  # lines of another status (failed, cancelled...), not compared
    matched: int = 0
    missing_in_ledger: list[StatementLine] = field(default_factory=list)
    missing_in_statement: list[tuple[str, str, int]] = field(
        default_factory=list
    )  # kind, receipt, cents
    amount_mismatches: list[tuple[str, int, int]] = field(
        default_factory=list
    )  # receipt, ours, theirs
    # STK deposits settled by a status query carry no receipt (Daraja's query answer
    # has none); a statement line with the same account reference, amount and time
    # is theirs. Counted in ``matched``: (statement receipt, STK request id).
    matched_by_account: list[tuple[str, int]] = field(default_factory=list)
    # M-Pesa's charges (lines saying "charge"): totalled, not compared, because the
    # ledger does not book M-Pesa's charges per transaction.
    charge_lines: int = 0
    charges_cents: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing_in_ledger or self.missing_in_statement or self.amount_mismatches)


_ACC_IN_DETAILS = re.compile(r"\bAcc\.\s*(\S+)")


def statement_period(
    lines: Sequence[StatementLine], slack: timedelta = SLACK
) -> tuple[datetime, datetime] | None:
    """The statement's first and last completion times, widened by ``slack``."""
    times = [line.completed_at for line in lines if line.completed_at is not None]
    return (min(times) - slack, max(times) + slack) if times else None


def compare_statement(
    lines: Sequence[StatementLine],
    ours: dict[str, Recorded],
    unreceipted: Sequence[Unreceipted] = (),
    *,
    slack: timedelta = SLACK,
) -> StatementReport:
    """The rule, pure. ``ours``: our payments by receipt (at least those with the
    statement's receipts and those inside its period); ``unreceipted``: our STK
    deposits without a receipt around the period.

    Every non-charge receipt of the statement ends in exactly one of matched,
    ``amount_mismatches`` or ``missing_in_ledger``; a receipt of ours inside the
    period that the statement lacks is ``missing_in_statement`` (receipt-less STK
    deposits as ``STK#<request id>``).
    """
    report = StatementReport()
    theirs: dict[str, StatementLine] = {}
    for line in lines:
        if line.is_charge:
            report.charge_lines += 1
            report.charges_cents += line.withdrawn_cents - line.paid_in_cents
            continue
        report.lines += 1
        seen = theirs.get(line.receipt)
        if seen is not None:  # the same receipt twice: compare what it adds up to
            line = replace(
                seen,
                paid_in_cents=seen.paid_in_cents + line.paid_in_cents,
                withdrawn_cents=seen.withdrawn_cents + line.withdrawn_cents,
            )
        theirs[line.receipt] = line
    period = statement_period(lines, slack)
    candidates = sorted(unreceipted, key=lambda u: (u.created_at, u.stk_id))
    for receipt, line in theirs.items():
        mine = ours.get(receipt)
        if mine is None:
            taken = _take_unreceipted(candidates, line, slack)
            if taken is not None:
                report.matched += 1
                report.matched_by_account.append((receipt, taken.stk_id))
            else:
                report.missing_in_ledger.append(line)
            continue
        amount = line.paid_in_cents - line.withdrawn_cents
        if amount != mine.cents:
            report.amount_mismatches.append((receipt, mine.cents, amount))
        else:
            report.matched += 1
    if period is None:
        return report
    start, end = period
    for receipt, mine in sorted(ours.items()):
        if receipt not in theirs and mine.at is not None and start <= mine.at <= end:
            report.missing_in_statement.append((mine.kind, receipt, mine.cents))
    # Receipt-less STK deposits no line claimed: we credited money M-Pesa doesn't show.
    for left in candidates:
        if start <= left.created_at <= end:
            report.missing_in_statement.append(("stk", f"STK#{left.stk_id}", left.cents))
    return report


def _take_unreceipted(
    candidates: list[Unreceipted], line: StatementLine, slack: timedelta
) -> Unreceipted | None:
    """The oldest receipt-less STK deposit this paid-in line can be (and consume it)."""
    if line.paid_in_cents <= 0 or line.withdrawn_cents or line.completed_at is None:
        return None
    match = _ACC_IN_DETAILS.search(line.details)
    ref = parse_bill_ref(line.account_no or (match.group(1) if match else ""))
    if ref is None:
        return None
    for i, stk in enumerate(candidates):
        if (stk.member_number, stk.target, stk.cents) != (
            ref.member_number,
            ref.target,
            line.paid_in_cents,
        ):
            continue
        # Paid after we asked, and before we settled it (plus the clocks' slack).
        if (
            stk.created_at - slack
            <= line.completed_at
            <= (stk.settled_at or stk.created_at) + slack
        ):
            return candidates.pop(i)
    return None


# ------------------------------------------------------------------ our side


def reconcile_statement(
    session: Session, lines: Sequence[StatementLine], *, slack: timedelta = SLACK
) -> StatementReport:
    """Compare an M-Pesa statement with what we recorded. Reads only, and only what it
    needs: our payments with the statement's receipts or inside its period."""
    period = statement_period(lines, slack)
    receipts = sorted({line.receipt for line in lines if not line.is_charge})
    return compare_statement(
        lines,
        _our_receipts(session, receipts, period),
        _unreceipted_stk(session, period, slack),
        slack=slack,
    )


def _our_receipts(
    session: Session, receipts: list[str], period: tuple[datetime, datetime] | None
) -> dict[str, Recorded]:
    """Succeeded STK deposits with a receipt, paybill payments, succeeded payouts."""
    tables = (
        ("stk", StkRequest.receipt, func.coalesce(StkRequest.paid_cents, StkRequest.amount_cents),
         StkRequest.settled_at, StkRequest.status == StkStatus.SUCCEEDED),
        ("c2b", C2BPayment.trans_id, C2BPayment.amount_cents, C2BPayment.trans_time, true()),
        ("b2c", B2CPayout.receipt, B2CPayout.amount_cents, B2CPayout.settled_at,
         B2CPayout.status == PayoutStatus.SUCCEEDED),
    )  # fmt: skip
    ours: dict[str, Recorded] = {}
    for kind, receipt_col, cents_col, when_col, ok in tables:
        filters = [receipt_col.in_(receipts[i : i + 500]) for i in range(0, len(receipts), 500)]
        if period is not None:
            filters.append(when_col.between(*period))
        if not filters:
            continue
        for receipt, cents, when in session.execute(
            select(receipt_col, cents_col, when_col).where(
                ok, receipt_col.is_not(None), or_(*filters)
            )
        ):
            signed = -int(cents) if kind == "b2c" else int(cents or 0)
            if kind != "c2b" or receipt not in ours:  # an STK's receipt wins over its C2B twin
                ours[str(receipt)] = Recorded(kind, signed, when)
    return ours


def _unreceipted_stk(
    session: Session, period: tuple[datetime, datetime] | None, slack: timedelta
) -> list[Unreceipted]:
    if period is None:
        return []
    start, end = period
    rows = session.execute(
        select(
            StkRequest.id, Member.member_number, StkRequest.target,
            func.coalesce(StkRequest.paid_cents, StkRequest.amount_cents),
            StkRequest.created_at, StkRequest.settled_at,
        )
        .join(Member, Member.id == StkRequest.member_id)
        .where(
            StkRequest.status == StkStatus.SUCCEEDED, StkRequest.receipt.is_(None),
            StkRequest.created_at <= end, StkRequest.created_at >= start - slack,
        )
    )  # fmt: skip
    return [
        Unreceipted(int(i), str(number or ""), str(target), int(cents), created, settled)
        for i, number, target, cents, created, settled in rows
    ]


def reconcile_statement_file(session: Session, statement: StatementFile) -> StatementReport:
    """A whole statement export compared with the ledger. Reads only."""
    report = reconcile_statement(session, statement.lines)
    report.skipped = statement.skipped
    return report


def import_statement(
    session: Session, deps: CoreDeps, actor: Principal, statement: StatementFile
) -> StatementReport:
    """A member of staff's upload of an org-portal statement, compared with the ledger.

    Reads the ledger only; the comparison itself is audited (who, the file's
    SHA-256 and the counts), so a reconciliation can be shown to have been run.
    """
    report = reconcile_statement_file(session, statement)
    audit.record(
        session, actor, "mpesa.statement_reconciled", target_type="mpesa_statement",
        target_id=statement.sha256[:16],
        after={
            "sha256": statement.sha256, "bytes": statement.size,
            "lines": report.lines, "skipped": report.skipped, "matched": report.matched,
            "charge_lines": report.charge_lines,
            "missing_in_ledger": len(report.missing_in_ledger),
            "missing_in_statement": len(report.missing_in_statement),
            "amount_mismatches": len(report.amount_mismatches),
        }, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return report
