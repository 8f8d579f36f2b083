"""The gateway's session-end notification: parsed defensively, stored once, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.messaging.ussd_sessions import last_session_end, record_session_end
from db.base import utcnow
from db.models import UssdSessionEvent
from ussd.gateway import parse_session_end


def test_parse_keeps_what_support_needs_and_tolerates_odd_values() -> None:
    event = parse_session_end(
        {
            "sessionId": " ATUid_1 ",
            "phoneNumber": "0712345678",
            "status": "Incomplete",
            "cost": "KES 0.10",
            "durationInMillis": "41000",
            "hopsCount": "many",
            "errorMessage": "x" * 500,
            "input": "1*4826",
        }
    )
    assert (event.session_id, event.msisdn, event.status) == (
        "ATUid_1",
        "+254712345678",
        "Incomplete",
    )
    assert (event.duration_ms, event.hops_count, event.cost) == (41000, None, "KES 0.10")
    assert len(event.error_message) == 200
    assert "4826" not in repr(event)
    assert (
        parse_session_end({"sessionId": "a", "status": "Weird", "phoneNumber": "x"}).status
        == "Other"
    )
    assert parse_session_end({"sessionId": "a", "phoneNumber": "x"}).msisdn is None
    with pytest.raises(InvalidInput):
        parse_session_end({"status": "Success"})
    with pytest.raises(InvalidInput):
        parse_session_end({"sessionId": "s" * 101})


def test_stored_once_per_session_on_postgresql_and_sqlite(any_session: Session) -> None:
    event = parse_session_end(
        {"sessionId": "ATUid_2", "phoneNumber": "+254712345678", "status": "Success"}
    )
    assert record_session_end(any_session, event, now=utcnow()) is True
    assert record_session_end(any_session, event, now=utcnow()) is False
    count = any_session.scalar(select(func.count()).select_from(UssdSessionEvent))
    assert count == 1
    last = last_session_end(any_session, "+254712345678")
    assert last is not None and last.status == "Success"
