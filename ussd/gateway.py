"""What Africa's Talking's USSD gateway posts to us, read into the typed values core takes.

The end-of-session notification (``POST /ussd/events``): ``sessionId``, ``phoneNumber``,
``status``, ``serviceCode``, ``networkCode``, ``hopsCount``, ``durationInMillis``,
``cost``, ``errorMessage``, ``date``. Only ``sessionId`` is required; every other field is
cut to its column or dropped when it is odd, since the gateway signs nothing and a
support record is worth keeping even when a field is strange. (The hop's own fields are
read by ``ussd.views``.)
"""

from __future__ import annotations

from collections.abc import Mapping

from core.kernel.errors import InvalidInput
from core.kernel.identity import normalize_msisdn
from core.messaging.ussd_sessions import SessionEnd

STATUSES = ("Success", "Incomplete", "Failed")  # anything else is stored as "Other"
MAX_SESSION_ID = 100


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        return None
    return int(text)


def parse_session_end(form: Mapping[str, str]) -> SessionEnd:
    """The gateway's form fields -> ``SessionEnd``; only ``sessionId`` is required
    (``InvalidInput`` without a usable one)."""
    session_id = (form.get("sessionId") or "").strip()
    if not session_id or len(session_id) > MAX_SESSION_ID:
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
