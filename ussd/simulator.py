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

from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, current_app, jsonify, render_template, request

from core.errors import InvalidInput
from core.identity import normalize_msisdn
from core.notifications import messages_for

ENABLED_IN = ("demo", "development")
NAIROBI = ZoneInfo("Africa/Nairobi")
INBOX_LIMIT = 20
# Numbers offered in the page's picker: the `make demo` members, then a new phone.
DEMO_PHONES = (
    ("+254712000001", "Amina (active, EN)"),
    ("+254722000002", "Otieno (active, SW)"),
    ("+254110000003", "Fatuma (pending KYC)"),
    ("+254733000004", "Kiprop (suspended)"),
    ("+254700000099", "a new phone (not registered)"),
)

bp = Blueprint(
    "simulator",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/simulator/static",
)


def _settings() -> Any:
    return current_app.config["SACCO_SETTINGS"]


def _callback_query() -> str:
    """The secret-token query the gateway's callback URL carries, when one is configured."""
    token = getattr(_settings(), "ussd_callback_token", "") or ""
    return f"?token={token}" if token else ""


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
    raw = request.args.get("phone", "")
    try:
        msisdn = normalize_msisdn(raw)
    except InvalidInput as exc:
        return jsonify(error="invalid_phone", reason=exc.detail), 400
    runtime = current_app.extensions["sacco"]
    with runtime.session() as session:
        messages = messages_for(session, msisdn, INBOX_LIMIT)
    return jsonify(
        phone=msisdn,
        messages=[
            {
                "id": m.id,
                "source": "outbox",
                "status": m.status,
                "template": m.template,
                "body": m.body,
                "at": m.created_at.astimezone(NAIROBI).strftime("%d %b %H:%M"),
            }
            for m in messages
        ],
    )


def init_app(app: Flask) -> None:
    """Register the simulator only in demo/development; elsewhere its URLs are 404."""
    if app.config["SACCO_SETTINGS"].sacco_env in ENABLED_IN:
        app.register_blueprint(bp)
