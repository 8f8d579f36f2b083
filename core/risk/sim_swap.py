"""The one SIM-swap policy: has this member's SIM changed recently?

A recent SIM swap is how account takeover starts (the thief's new SIM receives the
member's USSD session, PIN-reset code and M-Pesa payout), so every step that moves
money out or hands over the account asks here: withdrawals and payouts
(``core.payments.mpesa.flows.guard_sim_swap``), remote PIN resets (``core.approvals.engine``) and, next,
loan disbursements. Two parts:

* ``swap_status`` — pure: a provider verdict, the time, the window and the staff
  clearances give ``none``, ``recent``, ``cleared`` or ``unknown``.
* ``assess`` — the verb: the cached verdict if fresh, else ask the checker (a good
  answer is cached in ``sim_swap_checks``), plus the clearances staff recorded
  (``core.risk.events``), through ``swap_status``.

Edge of the window: a swap exactly ``window`` ago is still **recent** (``<=``); it
stops counting the instant after. When in doubt the guard refuses, so a swap at the
edge waits one more tick rather than passing one tick early. A swap dated in the
future (clocks disagree) is recent too. ``unknown`` (the check failed, or gave no
verdict) is never ``none``: each caller decides what no verdict costs, and it costs
at least as much as a swap would, apart from the small capped allowance withdrawals
have (``core.payments.mpesa.rules.sim_swap_decision``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from db.models_members import MemberPhoneChange
from db.models_mpesa import SimSwapCheck, SimSwapEvent
from db.session import insert_for

log = logging.getLogger(__name__)

SwapStatus = Literal["none", "recent", "cleared", "unknown"]
# What lets a sensitive step through without more ado.
PASSES: frozenset[str] = frozenset({"none", "cleared"})


@dataclass(frozen=True, slots=True)
class SimSwapVerdict:
    """A provider's answer as plain values. ``ok`` False: the check itself failed."""

    ok: bool
    swapped: bool | None
    last_swap_at: datetime | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SimSwapPolicy:
    """``window``: a swap this recent (or more) counts; ``cache``: how long a good verdict
    is reused (short: a cached "not swapped" must not hide a swap made right after it)."""

    window: timedelta = timedelta(days=7)
    cache: timedelta = timedelta(seconds=60)


class SimSwapResultLike(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def swapped(self) -> bool | None: ...
    @property
    def last_swap_at(self) -> datetime | None: ...
    @property
    def error(self) -> str | None: ...


class SimSwapChecker(Protocol):
    def check(self, msisdn: str) -> SimSwapResultLike: ...


# ------------------------------------------------------------------ the decision


def swap_status(
    verdict: SimSwapVerdict,
    *,
    now: datetime,
    window: timedelta,
    cleared_swap_at: datetime | None = None,
    phone_changed_at: datetime | None = None,
) -> SwapStatus:
    """The one SIM-swap decision (pure).

    * ``unknown``: no verdict (the check failed, or answered without one).
    * ``none``: not swapped, or the last swap is older than ``window``.
    * ``cleared``: a recent swap no later than ``cleared_swap_at`` — the latest swap of
      this phone that staff cleared after seeing the member's ID (maker-checker).
    * ``recent``: swapped at most ``window`` before ``now`` (the edge included), after
      ``now``, or swapped with no date (we cannot show it is old, nor that it is the
      one staff cleared).

    ``phone_changed_at``: when staff last moved the member to a new number
    (``core.members.phone_change``). A new line is a new SIM whatever the provider says,
    so a change within ``window`` is ``recent`` (or ``cleared`` once staff cleared it,
    unless the provider reports something worse).
    """
    status = _provider_status(verdict, now=now, window=window, cleared_swap_at=cleared_swap_at)
    if phone_changed_at is None or now - phone_changed_at > window:
        return status
    if cleared_swap_at is not None and phone_changed_at <= cleared_swap_at:
        return "cleared" if status == "none" else status
    return "recent"


def _provider_status(
    verdict: SimSwapVerdict,
    *,
    now: datetime,
    window: timedelta,
    cleared_swap_at: datetime | None,
) -> SwapStatus:
    if not verdict.ok or verdict.swapped is None:
        return "unknown"
    if not verdict.swapped:
        return "none"
    last = verdict.last_swap_at
    if last is None:
        return "recent"
    if now - last > window:
        return "none"
    if cleared_swap_at is not None and last <= cleared_swap_at:
        return "cleared"
    return "recent"


# ------------------------------------------------------------------ the verb


@dataclass(frozen=True, slots=True)
class SimSwapAssessment:
    status: SwapStatus
    verdict: SimSwapVerdict


def fetch_verdict(
    session: Session,
    deps: CoreDeps,
    checker: SimSwapChecker,
    msisdn: str,
    *,
    cache: timedelta,
) -> SimSwapVerdict:
    """The cached verdict if fresher than ``cache``, else ask the checker; a good answer
    is cached (an upsert: concurrent checks of one number must not collide). A checker
    that raises gives no verdict, as a failed check does. Flushes, never commits."""
    now = deps.now()
    cached = session.get(SimSwapCheck, msisdn)
    if cached is not None and now - cached.checked_at < cache:
        return SimSwapVerdict(True, cached.swapped, cached.last_swap_at)
    try:
        result = checker.check(msisdn)
        verdict = SimSwapVerdict(result.ok, result.swapped, result.last_swap_at, result.error)
    except Exception as exc:  # a checker must not turn a refusal into a crash
        log.exception("SIM-swap checker raised")
        return SimSwapVerdict(False, None, None, f"checker raised {type(exc).__name__}")
    if verdict.ok and verdict.swapped is not None:
        values = {
            "swapped": verdict.swapped,
            "last_swap_at": verdict.last_swap_at,
            "checked_at": now,
        }
        session.execute(
            insert_for(session, SimSwapCheck)
            .values(msisdn=msisdn, **values)
            .on_conflict_do_update(index_elements=["msisdn"], set_=values)
        )
    return verdict


def cleared_swap_at(session: Session, member_id: int, msisdn: str) -> datetime | None:
    """The latest swap of this member's phone that staff cleared (``core.risk.events``)."""
    value: datetime | None = session.scalar(
        select(func.max(SimSwapEvent.last_swap_at)).where(
            SimSwapEvent.member_id == member_id,
            SimSwapEvent.msisdn == msisdn,
            SimSwapEvent.cleared_at.is_not(None),
        )
    )
    return value


def assess(
    session: Session,
    deps: CoreDeps,
    checker: SimSwapChecker,
    *,
    member_id: int,
    msisdn: str,
    policy: SimSwapPolicy,
) -> SimSwapAssessment:
    """This member's SIM-swap status now: ``fetch_verdict``, the staff clearances and the
    member's last change of phone number through ``swap_status``. When the change of
    number is what makes it ``recent``, the assessment's verdict carries the change's
    time as the swap's, so the event the guard records can be cleared like any swap."""
    verdict = fetch_verdict(session, deps, checker, msisdn, cache=policy.cache)
    changed = phone_changed_at(session, member_id)
    status = swap_status(
        verdict,
        now=deps.now(),
        window=policy.window,
        cleared_swap_at=cleared_swap_at(session, member_id, msisdn),
        phone_changed_at=changed,
    )
    if changed is not None and status == "recent" and deps.now() - changed <= policy.window:
        provider = swap_status(verdict, now=deps.now(), window=policy.window)
        if provider != "recent":
            verdict = SimSwapVerdict(True, True, changed, verdict.error)
    return SimSwapAssessment(status, verdict)


def phone_changed_at(session: Session, member_id: int) -> datetime | None:
    """When staff last moved this member to a new phone number (maker-checker)."""
    value: datetime | None = session.scalar(
        select(func.max(MemberPhoneChange.changed_at)).where(
            MemberPhoneChange.member_id == member_id
        )
    )
    return value
