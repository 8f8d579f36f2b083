"""The M-Pesa org portal's statement export, read into what core compares.

``read_statement(data)`` turns the bytes of an export (uploaded to the staff API or
given to ``manage.py reconcile-statement``) into ``core``'s ``StatementFile``: the
completed lines as typed ``StatementLine`` values, how many lines of another status
were left out, and the file's SHA-256 and size. The CSV itself (preamble, columns taken
by name, Nairobi times, amounts in cents) is read by ``formats.parse_statement_csv``.
Pure: no I/O, no database.
"""

from __future__ import annotations

import hashlib

from core.payments.mpesa.statement import StatementFile, StatementLine
from integrations.mpesa.formats import MalformedStatement, decode_statement, parse_statement_csv

__all__ = ["MalformedStatement", "read_statement"]

COMPARED_STATUSES = ("", "completed")  # failed or cancelled lines moved no money


def read_statement(data: bytes) -> StatementFile:
    """An org-portal statement export → the lines core compares with the ledger.

    Raises ``MalformedStatement`` (naming the line) on anything that can't be read
    without guessing: better a loud failure than a silently dropped payment.
    """
    rows = parse_statement_csv(decode_statement(data))
    lines = tuple(
        StatementLine(
            receipt=r.receipt,
            completed_at=r.completed_at,
            paid_in_cents=r.paid_in_cents,
            withdrawn_cents=r.withdrawn_cents,
            details=r.details,
            account_no=r.account_no,
            reason_type=r.reason_type,
        )
        for r in rows
        if r.status.lower() in COMPARED_STATUSES
    )
    return StatementFile(
        lines=lines,
        skipped=len(rows) - len(lines),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
