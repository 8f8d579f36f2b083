"""The feature-phone simulator: ``GET /simulator`` and its SMS inbox, demo/development only.

A single page (vanilla JS, no CDN) with a number, a 160-character screen, a
keypad and the SMS inbox of that number. It drives the real ``POST /ussd``
with the gateway's exact form fields (a new ``sessionId`` per dial and the
cumulative ``*``-joined ``text``) and posts the session-end notification to
``/ussd/events``, so staff train on the same code path members use.

It is registered only when ``SACCO_ENV`` is ``demo`` or ``development``; in
``test`` and ``production`` the routes do not exist (404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
from flask import Blueprint, Flask, current_app, jsonify, render_template, request

from config import Settings
from core.kernel.errors import InvalidInput
from core.kernel.identity import normalize_msisdn
from core.messaging.notifications import messages_for

ENABLED_IN = ("demo", "development")
NAIROBI = ZoneInfo("Africa/Nairobi")
INBOX_LIMIT = 20
STANDIN_TIMEOUT_S = 2
# Numbers offered in the page's picker: the `make demo` members, then a new phone.
DEMO_PHONES = (
    ("+254712000001", "Amina (active, EN)"),
    ("+254722000002", "Otieno (active, SW)"),
    ("+254110000003", "Fatuma (pending KYC)"),
    ("+254733000004", "Kiprop (suspended)"),
    ("+254712000006", "Wanjiku (repaying a loan)"),
    ("+254722000007", "Achieng (asked to guarantee)"),
    ("+254733000008", "Juma (loan pending approval)"),
    ("+254711000009", "Mwangi (waiting for a guarantor)"),
    ("+254700000099", "a new phone (not registered)"),
)

bp = Blueprint(
    "simulator",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/simulator/static",
)


def _settings() -> Settings:
    return current_app.config["SACCO_SETTINGS"]  # type: ignore[no-any-return]


def _callback_query() -> str:
    """The secret-token query the gateway's callback URL carries, when one is configured."""
    token = _settings().ussd_callback_token
    return f"?token={quote(token, safe='')}" if token else ""


@bp.get("/simulator")
def page() -> Any:
    settings = _settings()
    query = _callback_query()
    return render_template(
        "simulator/phone.html",
        sacco_name=settings.sacco_name,
        service_code=settings.ussd_service_code,
        ussd_url=f"/ussd{query}",
        events_url=f"/ussd/events{query}",
        phones=DEMO_PHONES,
    )


@bp.get("/simulator/inbox")
def inbox() -> Any:
    """The SMS for one number: queued in the outbox and, when the Africa's Talking
    stand-in is configured, accepted by it. Newest first."""
    raw = request.args.get("phone", "")
    try:
        msisdn = normalize_msisdn(raw)
    except InvalidInput as exc:
        return jsonify(error="invalid_phone", reason=exc.detail), 400
    runtime = current_app.extensions["sacco"]
    with runtime.session() as session:
        queued = messages_for(session, msisdn, INBOX_LIMIT)
    items: list[tuple[datetime, dict[str, Any]]] = [
        (
            m.created_at,
            {
                "id": str(m.id),
                "source": "outbox",
                "status": m.status,
                "template": m.template,
                "body": m.body,
                "at": _local(m.created_at),
            },
        )
        for m in queued
    ]
    gateway_error = None
    standin = _settings().simulator_sms_standin_url
    if standin:
        try:
            items += _standin_messages(standin, msisdn)
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            gateway_error = f"SMS stand-in unreachable or unreadable ({type(exc).__name__})"
    items.sort(key=lambda pair: pair[0], reverse=True)
    body: dict[str, Any] = {"phone": msisdn, "messages": [m for _, m in items[:INBOX_LIMIT]]}
    if gateway_error:
        body["gateway_error"] = gateway_error
    return jsonify(body)


def _local(at: datetime) -> str:
    return at.astimezone(NAIROBI).strftime("%d %b %H:%M")


def _standin_messages(base_url: str, msisdn: str) -> list[tuple[datetime, dict[str, Any]]]:
    """What the Africa's Talking stand-in accepted for this number (``GET /_messages``)."""
    resp = requests.get(
        f"{base_url.rstrip('/')}/_messages",
        params={"to": msisdn},
        timeout=STANDIN_TIMEOUT_S,
    )
    with resp:
        resp.raise_for_status()
        records = resp.json()["messages"]
    found = []
    for rec in records:
        if rec.get("to") != msisdn:
            continue
        sent = datetime.fromisoformat(str(rec["sentAt"]))
        sent = sent if sent.tzinfo else sent.replace(tzinfo=UTC)
        found.append(
            (
                sent,
                {
                    "id": str(rec.get("id")),
                    "source": "gateway",
                    "status": str(rec.get("deliveryStatus") or "accepted"),
                    "template": "",
                    "body": str(rec["message"]),
                    "at": _local(sent),
                },
            )
        )
    return found


def init_app(app: Flask) -> None:
    """Register the simulator only in demo/development; elsewhere its URLs are 404."""
    if app.config["SACCO_SETTINGS"].sacco_env in ENABLED_IN:
        app.register_blueprint(bp)
