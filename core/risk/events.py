"""SIM-swap events for staff: withdrawals the SIM-swap guard refused (or let through on
a failed check, by the SACCO's setting), as a work queue.

``core.payments.mpesa.flows.guard_sim_swap`` writes an event and texts the member to come to the
office with their ID. Staff list the open events (``list_events``, branch-bound
staff only their branch's members, phones masked) and close each one with what
they found (``review_event``: who, when, a note; audited). Reviewing does not
lift the guard: a withdrawal is allowed again once the swap is older than the
SACCO's window (``SIM_SWAP_WINDOW_DAYS``), or sooner if staff **clear** the swap:
a maker-checker request (``sim_swap.clear`` in ``core.approvals.engine``, made after
seeing the member's ID at the counter) that ``check_clearance`` validates and
``clear_event`` executes. The guard then allows this phone's swaps up to the
cleared one; a later swap, or the SIM moving again, is refused as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.identity import mask_msisdn
from core.kernel.permissions import Principal, can_access_branch
from core.messaging.notifications import notify
from core.risk.vocabulary import SimSwapOutcome
from db.models import ApprovalRequest, Member
from db.models_mpesa import SimSwapEvent

STATUSES = ("open", "reviewed", "all")
NOTE_MAX = 200


class SimSwapEventReviewed(DomainError):
    code = "sim_swap_event_reviewed"


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    member_id: int
    member_number: str
    member_name: str
    msisdn_masked: str
    outcome: str  # recent_swap | check_failed
    decision: str  # refused | allowed
    amount_cents: int
    last_swap_at: datetime | None
    error: str | None
    created_at: datetime
    reviewed_at: datetime | None
    reviewed_by_id: int | None
    review_note: str | None
    cleared_at: datetime | None


def _view(event: SimSwapEvent, member: Member) -> EventView:
    return EventView(
        id=event.id,
        member_id=member.id,
        member_number=str(member.member_number or ""),
        member_name=member.full_name,
        msisdn_masked=mask_msisdn(event.msisdn),
        outcome=event.outcome,
        decision=event.decision,
        amount_cents=event.amount_cents,
        last_swap_at=event.last_swap_at,
        error=event.error,
        created_at=event.created_at,
        reviewed_at=event.reviewed_at,
        reviewed_by_id=event.reviewed_by_id,
        review_note=event.review_note,
        cleared_at=event.cleared_at,
    )


def list_events(
    session: Session,
    actor: Principal,
    *,
    status: str = "open",
    limit: int = 50,
    after_id: int = 0,
) -> list[EventView]:
    """Events in id order after ``after_id``: ``open`` (not reviewed), ``reviewed`` or ``all``."""
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    query = (
        select(SimSwapEvent, Member)
        .join(Member, Member.id == SimSwapEvent.member_id)
        .where(SimSwapEvent.id > after_id)
        .order_by(SimSwapEvent.id)
        .limit(max(1, min(limit, 500)))
    )
    if status == "open":
        query = query.where(SimSwapEvent.reviewed_at.is_(None))
    elif status == "reviewed":
        query = query.where(SimSwapEvent.reviewed_at.is_not(None))
    if actor.branch is not None:
        query = query.where(Member.branch == actor.branch)
    return [_view(event, member) for event, member in session.execute(query).tuples()]


def review_event(
    session: Session, deps: CoreDeps, actor: Principal, event_id: int, *, note: str
) -> EventView:
    """Close an event with what staff found (e.g. "member came with ID, SIM replaced
    after loss"). Once only; audited."""
    text = " ".join((note or "").split())
    if not 3 <= len(text) <= NOTE_MAX:
        raise InvalidInput(f"note: 3-{NOTE_MAX} characters", field="note")
    row = session.execute(
        select(SimSwapEvent, Member)
        .join(Member, Member.id == SimSwapEvent.member_id)
        .where(SimSwapEvent.id == event_id)
        .with_for_update(of=SimSwapEvent)
    ).one_or_none()
    if row is None or not can_access_branch(actor, row[1].branch):
        raise NotFound("no such SIM-swap event")
    event, member = row
    if event.reviewed_at is not None:
        raise SimSwapEventReviewed(f"SIM-swap event {event.id} was already reviewed")
    event.reviewed_at = deps.now()
    event.reviewed_by_id = actor.id if actor.kind == "staff" else None
    event.review_note = text
    audit.record(
        session, actor, "mpesa.sim_swap_reviewed", target_type="member", target_id=member.id,
        after={"event": event.id, "outcome": event.outcome, "note": text}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return _view(event, member)


# ------------------------------------------------------------------ clearance


def event_member_id(session: Session, actor: Principal, event_id: int) -> int:
    """Whose event this is, if the caller may see them (``NotFound`` otherwise)."""
    row = session.execute(
        select(Member.id, Member.branch)
        .join(SimSwapEvent, SimSwapEvent.member_id == Member.id)
        .where(SimSwapEvent.id == event_id)
    ).one_or_none()
    if row is None or not can_access_branch(actor, row.branch):
        raise NotFound("no such SIM-swap event")
    return int(row.id)


def _clearable(session: Session, member_id: int | None, payload: dict[str, Any]) -> SimSwapEvent:
    event_id = payload.get("event_id")
    event = session.get(SimSwapEvent, event_id) if type(event_id) is int else None
    if event is None or event.member_id != member_id:
        raise InvalidInput("no such SIM-swap event for this member", field="event_id")
    if event.outcome != SimSwapOutcome.RECENT_SWAP or event.last_swap_at is None:
        raise InvalidInput(
            "only a swap with a known date can be cleared (a failed check has none)",
            field="event_id", reason="not_clearable",
        )  # fmt: skip
    if event.cleared_at is not None:
        raise SimSwapEventReviewed(f"SIM-swap event {event.id} is already cleared")
    return event


def check_clearance(
    session: Session, deps: CoreDeps, member_id: int | None, payload: dict[str, Any]
) -> None:
    """The maker's side: an event of this member, a dated swap, not yet cleared, and the
    maker saw the member in person with their ID (``in_person``)."""
    _clearable(session, member_id, payload)
    if payload.get("in_person") is not True:
        raise InvalidInput(
            "clear a SIM swap only after seeing the member's ID at the counter (in_person)",
            field="in_person", reason="in_person_required",
        )  # fmt: skip


def clear_event(
    session: Session, deps: CoreDeps, request: ApprovalRequest, payload: dict[str, Any]
) -> dict[str, Any]:
    """The checker approved ``request``: this phone's swaps up to this one no longer stop
    withdrawals, and the member is told so by SMS."""
    event = _clearable(session, request.member_id, payload)
    now = deps.now()
    event.cleared_at = now
    event.cleared_by_request_id = request.id
    if event.reviewed_at is None:
        event.reviewed_at, event.reviewed_by_id = now, request.maker_id
        event.review_note = (request.maker_note or "cleared after an ID check")[:NOTE_MAX]
    notify(
        session,
        template="withdrawals_resumed",
        business_key=f"sim_swap_clear:{event.id}",
        now=deps.now(),
        member=session.get_one(Member, event.member_id),
        data={"sacco": deps.sacco_name, "ussd_code": deps.ussd_code},
    )
    session.flush()
    assert event.last_swap_at is not None
    return {"event": event.id, "cleared_swap_at": event.last_swap_at.isoformat()}
