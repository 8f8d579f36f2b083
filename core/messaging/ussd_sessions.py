"""Recording the USSD gateway's end-of-session notifications (support and resume).

The USSD channel reads the gateway's form (``ussd.gateway.parse_session_end``) and hands
over a ``SessionEnd``; core never sees the gateway's field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import UssdSessionEvent
from db.session import insert_for


@dataclass(frozen=True, slots=True)
class SessionEnd:
    session_id: str
    status: str  # Success / Incomplete / Failed / Other
    msisdn: str | None
    service_code: str = ""
    network_code: str = ""
    hops_count: int | None = None
    duration_ms: int | None = None
    cost: str = ""
    error_message: str = ""
    gateway_date: str = ""


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
