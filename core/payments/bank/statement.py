"""The bank statement compared with what we recorded (issue 15, part 4), like the M-Pesa
one (``core.payments.mpesa.statement``): read only; a difference is for staff.

Core never reads the bank's answer: the bank integration does (``integrations.bank``, the
Co-op-style full statement) and hands over typed ``BankStatementLine``s. A line is ours
when its narration or reference carries one of our references: a transfer's (``BT…``,
money out) or a sweep's (``SW…``, money in from the M-Pesa float).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.payments.bank.vocabulary import TransferStatus
from db.models_bank import BankSweep, BankTransfer

_OURS = re.compile(r"\b((?:BT|SW)[0-9A-Z]{6,18})\b")


@dataclass(frozen=True, slots=True)
class BankStatementLine:
    value_date: date | None
    narration: str
    bank_reference: str
    debit_cents: int
    credit_cents: int

    def our_reference(self) -> str | None:
        found = _OURS.search(f"{self.narration} {self.bank_reference}".upper())
        return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class Ours:
    reference: str
    amount_cents: int
    direction: str  # "out" (a transfer) or "in" (a sweep)
    settled: bool  # a transfer that succeeded; a sweep is always posted


@dataclass
class BankStatementReport:
    matched: list[str] = field(default_factory=list)
    amount_differs: list[dict[str, object]] = field(default_factory=list)
    unsettled_here: list[str] = field(default_factory=list)  # on the statement, open with us
    unmatched_lines: list[dict[str, object]] = field(default_factory=list)  # not ours
    missing: list[str] = field(default_factory=list)  # ours, settled, not on the statement

    @property
    def clean(self) -> bool:
        return not (self.amount_differs or self.unsettled_here or self.missing)

    def as_dict(self) -> dict[str, object]:
        return {
            "clean": self.clean,
            "matched": self.matched,
            "amount_differs": self.amount_differs,
            "unsettled_here": self.unsettled_here,
            "unmatched_lines": self.unmatched_lines,
            "missing": self.missing,
        }


def compare_statement(
    lines: Sequence[BankStatementLine], ours: Mapping[str, Ours]
) -> BankStatementReport:
    """Pure: every line matched to one of ours by reference, once."""
    report = BankStatementReport()
    seen: set[str] = set()
    for line in lines:
        ref = line.our_reference()
        mine = ours.get(ref) if ref else None
        if mine is None or ref in seen:
            report.unmatched_lines.append(
                {"narration": line.narration, "bank_reference": line.bank_reference,
                 "debit_cents": line.debit_cents, "credit_cents": line.credit_cents,
                 "value_date": line.value_date.isoformat() if line.value_date else None}
            )  # fmt: skip
            continue
        seen.add(mine.reference)
        amount = line.debit_cents if mine.direction == "out" else line.credit_cents
        if amount != mine.amount_cents:
            report.amount_differs.append(
                {"reference": mine.reference, "ours_cents": mine.amount_cents,
                 "bank_cents": amount}
            )  # fmt: skip
        elif not mine.settled:
            report.unsettled_here.append(mine.reference)
        else:
            report.matched.append(mine.reference)
    report.missing = sorted(r for r, o in ours.items() if o.settled and r not in seen)
    return report


def our_side(session: Session, start: date, end: date) -> dict[str, Ours]:
    """Transfers and sweeps made from ``start`` to ``end`` (dates, inclusive)."""
    out: dict[str, Ours] = {}
    transfers: Iterable[BankTransfer] = session.scalars(
        select(BankTransfer).where(
            BankTransfer.status != TransferStatus.FAILED,
            BankTransfer.created_at >= _start(start),
            BankTransfer.created_at < _start(end, 1),
        )
    )
    for t in transfers:
        out[t.reference] = Ours(
            t.reference, t.amount_cents, "out", t.status == TransferStatus.SUCCEEDED
        )
    sweeps: Iterable[BankSweep] = session.scalars(
        select(BankSweep).where(
            BankSweep.created_at >= _start(start), BankSweep.created_at < _start(end, 1)
        )
    )
    for s in sweeps:
        out[s.reference] = Ours(s.reference, s.amount_cents, "in", True)
    return out


def _start(day: date, plus_days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=plus_days)


def reconcile_bank_statement(
    session: Session, lines: Sequence[BankStatementLine], start: date, end: date
) -> BankStatementReport:
    return compare_statement(lines, our_side(session, start, end))
