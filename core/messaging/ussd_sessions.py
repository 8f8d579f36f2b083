"""Recording the USSD gateway's end-of-session notifications (support and resume)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.kernel.identity import normalize_msisdn
from db.models import UssdSessionEvent
from db.session import insert_for

STATUSES = ("Success", "Incomplete", "Failed")


@dataclass(frozen=True, slots=True)
class SessionEnd:
    session_id: str
    status: str  # Success / Incomplete / Failed, anything else stored as Other
    msisdn: str | None
    service_code: str = ""
    network_code: str = ""
    hops_count: int | None = None
    duration_ms: int | None = None
    cost: str = ""
    error_message: str = ""
    gateway_date: str = ""


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        return None
    return int(text)


def parse_session_end(form: dict[str, str]) -> SessionEnd:
    """The gateway's form fields -> ``SessionEnd``; only ``sessionId`` is required."""
    session_id = (form.get("sessionId") or "").strip()
    if not session_id or len(session_id) > 100:
        raise InvalidInput("sessionId missing or too long", field="sessionId")
    try:
        msisdn: str | None = normalize_msisdn(form.get("phoneNumber") or "")
    except InvalidInput:
        msisdn = None
    status = (form.get("status") or "").strip()
    return SessionEnd(
        session_id=session_id,
        status=status if status in STATUSES else "Other",
        msisdn=msisdn,
        service_code=(form.get("serviceCode") or "")[:40],
        network_code=(form.get("networkCode") or "")[:10],
        hops_count=_int_or_none(form.get("hopsCount")),
        duration_ms=_int_or_none(form.get("durationInMillis")),
        cost=(form.get("cost") or "")[:20],
        error_message=(form.get("errorMessage") or "")[:200],
        gateway_date=(form.get("date") or "")[:40],
    )


def record_session_end(session: Session, event: SessionEnd, *, now: datetime) -> bool:
    """Store the notification once per session (a repeat is ignored).

    Returns True when this call stored it, False for a repeat.
    """
    result = session.execute(
        insert_for(session, UssdSessionEvent)
        .values(
            session_id=event.session_id,
            msisdn=event.msisdn,
            service_code=event.service_code,
            network_code=event.network_code,
            status=event.status,
            hops_count=event.hops_count,
            duration_ms=event.duration_ms,
            cost=event.cost,
            error_message=event.error_message,
            gateway_date=event.gateway_date,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["session_id"])
    )
    session.flush()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def last_session_end(session: Session, msisdn: str) -> UssdSessionEvent | None:
    return session.scalar(
        select(UssdSessionEvent)
        .where(UssdSessionEvent.msisdn == msisdn)
        .order_by(UssdSessionEvent.id.desc())
        .limit(1)
    )
