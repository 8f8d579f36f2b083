"""The unit of work: one use case, one transaction, committed once by the edge.

A use case takes the ``Session`` (SQLAlchemy's unit of work) and never commits or
rolls back: it writes, flushes when it needs ids or constraint checks, and returns
or raises. The edge that opened the session (an API view, a USSD hop, an SMS
callback, a worker job, a command) commits once when the use case returned and
rolls back when it raised; ``db.session.unit_of_work`` and
``db.session.run_in_transaction`` do exactly that.

What must happen only once the change is durable is registered on the unit of work
instead of being done in the middle of it:

* ``defer(session, job)``: a typed job for a worker (``SendB2C(payout_id)``), handed
  to the job queue right after the commit and forgotten on a rollback. The queue maps
  each job type to its worker function (``workers.runner``); core never names one.
* SMS and e-mail go through the outbox (``core.messaging.outbox``): rows written in
  the same transaction, handed to delivery after the commit the same way.

A refusal that is itself a fact (a wrong PIN counts towards the lock; a withdrawal
refused for a recent SIM swap is recorded) is raised with ``keep(exc)``: the edge
then commits what the use case wrote before it re-raises. Nothing else a use case
wrote before an error is ever committed.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
_JOBS_KEY = "sacco.deferred_jobs"
E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class Job:
    """A piece of work for a worker, taking only ids (so it survives a queue).

    Subclasses are frozen dataclasses whose fields are the job's arguments in order."""

    def args(self) -> tuple[Any, ...]:
        return astuple(self)


def defer(session: Session, job: Job) -> None:
    """Hand ``job`` to the job queue once this unit of work has committed."""
    session.info.setdefault(_JOBS_KEY, []).append(job)


def deferred(session: Session) -> list[Job]:
    """The jobs this unit of work will hand over when it commits (for tests and logs)."""
    return list(session.info.get(_JOBS_KEY, ()))


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A SAVEPOINT inside the unit of work: on an error its writes are undone and the
    jobs deferred inside it forgotten, the rest of the unit of work stays usable."""
    before = deferred(session)
    try:
        with session.begin_nested():
            yield
    except BaseException:
        session.info[_JOBS_KEY] = before
        raise


def take_deferred(session: Session) -> list[Job]:
    """Take the deferred jobs out of this unit of work: they will not be handed over."""
    return list(session.info.pop(_JOBS_KEY, ()))


def keep(exc: E) -> E:
    """Mark a refusal whose bookkeeping must be committed before it reaches the caller
    (``raise keep(PinInvalid(...))``); the edge commits, then re-raises."""
    exc.keep_work = True  # type: ignore[attr-defined]
    return exc


_installed: weakref.WeakSet[Any] = weakref.WeakSet()


def install_jobs(factory: sessionmaker[Session], submit: Callable[[Job], None]) -> None:
    """After each commit of a session from ``factory``, hand its deferred jobs to
    ``submit``; a rollback forgets them. Installed once per factory by the composition
    root (the M-Pesa wiring, which owns the job queue). ``submit`` failing is logged,
    never raised: the change is committed, and reconciliation sends what was not queued.
    """
    if factory in _installed:
        return
    _installed.add(factory)

    # SQLAlchemy fires both events for a SAVEPOINT too (released / rolled back), while
    # the unit of work goes on: jobs are handed over only when the outermost transaction
    # commits, and ``savepoint`` itself forgets the jobs of a savepoint rolled back.
    def after_commit(session: Session) -> None:
        if session.in_nested_transaction():
            return
        for job in session.info.pop(_JOBS_KEY, ()):
            try:
                submit(job)
            except Exception as exc:  # committed: reconciliation picks it up
                log.error("could not queue %r after commit: %s", job, type(exc).__name__)

    def after_rollback(session: Session) -> None:
        if session.in_nested_transaction():
            return
        session.info.pop(_JOBS_KEY, None)

    event.listen(factory, "after_commit", after_commit)
    event.listen(factory, "after_rollback", after_rollback)
