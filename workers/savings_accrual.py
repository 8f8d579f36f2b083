"""Savings interest accrual at the edge (issue 14; docs/savings/products.md): what
``manage.py savings-accrue`` and the scheduler call.

Holds a PostgreSQL advisory lock of its own for the whole run (a second run is refused
with ``AccrualBusy``; it never waits on the loans' close of day), asks core which dates
are still to accrue, and runs each date as its own unit of work
(``db.session.run_in_transaction``): the accrual, then the date's fixed deposits
(interest due, maturities: ``core.savings.fixed_deposits.run_day``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError
from core.savings import fixed_deposits, interest
from core.savings.interest import AccrualResult
from db.session import run_in_transaction, unit_of_work

# "SAVACCRU" in ASCII: not the close of day's key, so the two never block each other.
ADVISORY_LOCK_KEY = 0x534156414343_5255


class AccrualBusy(DomainError):
    """Another savings accrual is running (the advisory lock is held)."""

    code = "accrual_busy"


@dataclass
class AccrualReport:
    results: list[AccrualResult] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.results:
            return "nothing to accrue: every date up to then is accrued"
        return "\n".join(
            f"{r.business_date} {'ran' if r.ran else 'already done':<12} accounts={r.accounts} "
            f"accrued_cents={r.accrued_cents} posted_accounts={r.posted_accounts} "
            f"gross_cents={r.posted_gross_cents} tax_cents={r.posted_tax_cents} "
            f"forfeited_cents={r.forfeited_cents} fd_interest_cents={r.fd_interest_cents} "
            f"fd_matured={r.fd_matured}"
            for r in self.results
        )


def run_savings_accrual(
    session_factory: Callable[[], Session],
    deps: CoreDeps,
    *,
    through: date | None = None,
    lock_engine: Engine | None = None,
) -> AccrualReport:
    """Accrue every date still open up to ``through`` (default yesterday), oldest first."""
    report = AccrualReport()
    postgres = lock_engine is not None and lock_engine.dialect.name == "postgresql"
    conn = lock_engine.connect() if postgres and lock_engine is not None else None
    held = False
    try:
        if conn is not None:
            held = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}
            ).scalar_one()
            conn.commit()
            if not held:
                raise AccrualBusy("another savings accrual is running")
        with unit_of_work(session_factory) as session:
            dates = interest.dates_to_accrue(session, deps, through)
        for day in dates:

            def work(session: Session, day: date = day) -> AccrualResult:
                result = interest.accrue_day(session, deps, day)
                if result.ran:  # the date's fixed deposits, once with the date
                    fd = fixed_deposits.run_day(session, deps, day)
                    result.fd_interest_cents, result.fd_matured = fd.gross_cents, fd.matured
                return result

            report.results.append(run_in_transaction(session_factory, work))
    finally:
        if conn is not None and held:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
        if conn is not None:
            conn.close()
    return report
