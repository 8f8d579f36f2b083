"""The close-of-day run at the edge (issue 13; docs/loans/close-of-day.md): what
``manage.py close-day`` and the scheduler call.

``run_close_day`` holds PostgreSQL's advisory lock for the whole run on a connection of
its own (a second run at the same time is refused with ``CloseDayBusy``; a process that
dies lets go of it with its connection), asks core which dates are still to close, and
runs each date's steps in order, each step its own unit of work
(``db.session.run_in_transaction``: committed when done, run again whole on a deadlock).
``stop_after`` stops after one step of the first date (``close-day --stop-after accrue``):
the run is left ``running`` and the next run resumes it at the following step, which is
also how the tests stop a run half-way without a mock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from config import Settings
from core.kernel.deps import CoreDeps
from core.loans import close_of_day
from core.loans.close_of_day import CloseDayBusy, StepResult
from core.loans.notices import NoticePolicy
from core.loans.vocabulary import CLOSE_DAY_STEPS, CloseDayStep
from db.session import run_in_transaction, unit_of_work


@dataclass
class CloseDayReport:
    dates: list[date] = field(default_factory=list)  # dates this call worked on
    steps: list[StepResult] = field(default_factory=list)
    stopped: bool = False  # stopped on purpose after ``stop_after``

    def __str__(self) -> str:
        if not self.dates:
            return "nothing to close: every date up to then is closed"
        lines = []
        for r in self.steps:
            state = "ran" if r.ran else "already done"
            penalty = sum(r.detail.get("penalty_cents_by_product", {}).values())
            lines.append(
                f"{r.business_date} {r.step:<9} {state:<12} loans={r.loans} "
                f"amount_cents={r.amount_cents}"
                + (f" penalty_cents={penalty}" if r.step == CloseDayStep.ACCRUE else "")
            )
        if self.stopped:
            lines.append("stopped on request: run close-day again to resume")
        return "\n".join(lines)


def notice_policy(settings: Settings) -> NoticePolicy:
    """The ``notify`` step's settings (``config.Settings``)."""
    return NoticePolicy(
        due_soon_days=settings.notice_due_soon_days,
        listing_threshold_cents=settings.bureau_listing_threshold_cents,
        listing_notice_days=settings.bureau_listing_notice_days,
        send_from_hour=settings.notice_send_from_hour,
    )


@contextmanager
def advisory_lock(engine: Engine | None) -> Iterator[None]:
    """The run's advisory lock on its own connection, refused at once when held."""
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": close_of_day.ADVISORY_LOCK_KEY}
        ).scalar_one()
        conn.commit()
        if not got:
            raise CloseDayBusy("another close of day is running")
        try:
            yield
        finally:
            conn.execute(
                text("SELECT pg_advisory_unlock(:k)"), {"k": close_of_day.ADVISORY_LOCK_KEY}
            )
            conn.commit()


def _step(
    deps: CoreDeps, day: date, step: CloseDayStep, policy: NoticePolicy | None
) -> Callable[[Session], StepResult]:
    def work(session: Session) -> StepResult:
        return close_of_day.run_step(session, deps, day, step, policy=policy)

    return work


def run_close_day(
    session_factory: Callable[[], Session],
    deps: CoreDeps,
    *,
    through: date | None = None,
    lock_engine: Engine | None = None,
    stop_after: CloseDayStep | None = None,
    notices: NoticePolicy | None = None,
) -> CloseDayReport:
    """Close every date still open up to ``through`` (default yesterday), oldest first;
    ``notices``: the ``notify`` step's settings (``notice_policy(settings)``)."""
    report = CloseDayReport()
    with advisory_lock(lock_engine):
        with unit_of_work(session_factory) as session:
            dates = close_of_day.dates_to_close(session, deps, through)
        for day in dates:
            report.dates.append(day)
            for step in CLOSE_DAY_STEPS:
                result = run_in_transaction(session_factory, _step(deps, day, step, notices))
                report.steps.append(result)
                if stop_after is not None and step == stop_after:
                    report.stopped = True
                    return report
    return report
