"""The gateway's callbacks: ``POST /ussd`` (one hop) and ``POST /ussd/events``.

Every hop answers 200 ``text/plain`` ``CON ...``/``END ...`` whatever the
input, except a wrong callback token (403: that caller is not the gateway).
Hops are rate-limited per phone number (``USSD_RATE_LIMIT``, moving windows keyed on
the form's ``phoneNumber`` normalised, counted only once the token is right, in the same
Redis round trip that reads the session's state: ``ussd.store``): over the limit the
caller gets a polite ``END`` with 200, and the hop never reaches the menus.
The request log carries the session id, the masked phone and the *shape* of
``text`` (``x*x*xxxx``), never its characters: a PIN rides in it.
"""

from __future__ import annotations

import hmac
import logging
import time
import traceback
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from config import Settings
from core.kernel.identity import mask_msisdn
from core.members.exit import ExitPolicy, SharesOnExit
from observability.metrics import count_callback, observe_hop
from ussd.actions import MoneyPorts
from ussd.service import UssdConfig, UssdService
from ussd.store import MemoryStore, RedisStore, windows
from ussd.texts import mask

bp = Blueprint("ussd", __name__)
log = logging.getLogger("sacco.ussd")
EXTENSION = "sacco.ussd"


def _service() -> UssdService:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def _token_ok() -> bool:
    settings: Settings = current_app.config["SACCO_SETTINGS"]
    expected = settings.ussd_callback_token
    if not expected:
        return True
    given = request.args.get("token", "")
    return hmac.compare_digest(given.encode(), expected.encode())


def _plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _field(name: str) -> str:
    value = request.form.get(name, "")
    return value if isinstance(value, str) else ""


def _log_failure(what: str, session_id: str, exc: BaseException) -> None:
    # The exception's message may quote input (a PIN): log its type and frames only.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "%s failed session=%s error=%s\n%s", what, session_id[:100], type(exc).__name__, frames
    )


@bp.post("/ussd")
def ussd_hop() -> Response:
    if not _token_ok():
        observe_hop("none", "forbidden", None)
        return _plain("Forbidden", 403)
    started = time.perf_counter()
    session_id, text = _field("sessionId"), _field("text")
    service = _service()
    try:
        outcome = service.hop(session_id, _field("phoneNumber"), text, _field("serviceCode"))
        result = "refused" if outcome.screen.startswith("refused:") else None
        if outcome.throttled is not None:  # 200: the gateway shows a member nothing else
            observe_hop(outcome.screen, "throttled", None)
            log.warning(
                "ussd hop throttled session=%s phone=%s limit=%s",
                session_id[:100],
                mask_msisdn(_field("phoneNumber")),
                outcome.throttled,
            )
            return _plain(outcome.body)
    except Exception as exc:  # never a 500 to the gateway: the member sees a polite END
        _log_failure("ussd hop", session_id, exc)
        outcome = service.refuse("internal_error")
        result = "error"
    observe_hop(
        outcome.screen,
        result or ("end" if outcome.end else "continue"),
        time.perf_counter() - started,
    )
    log.info(
        "ussd hop session=%s phone=%s net=%s text=%s screen=%s reply=%s ms=%.1f",
        session_id[:100],
        mask_msisdn(_field("phoneNumber")),
        _field("networkCode")[:10],
        mask(text),
        outcome.screen,
        "END" if outcome.end else "CON",
        (time.perf_counter() - started) * 1000,
    )
    return _plain(outcome.body)


@bp.post("/ussd/events")
def ussd_events() -> Response:
    if not _token_ok():
        count_callback("africastalking", "ussd_event", "forbidden")
        return _plain("Forbidden", 403)
    session_id = _field("sessionId")
    try:
        stored = _service().session_ended(request.form.to_dict())
        result = "ok" if stored else "rejected"
    except Exception as exc:  # acknowledge anyway; the gateway would only retry
        _log_failure("ussd event", session_id, exc)
        stored, result = False, "error"
    count_callback("africastalking", "ussd_event", result)
    log.info(
        "ussd session end session=%s status=%s stored=%s",
        session_id[:100],
        _field("status")[:12],
        stored,
    )
    return _plain("OK")


def init_app(app: Flask, money: MoneyPorts | None = None) -> None:
    """``money``: the M-Pesa policy, SIM-swap checker and job queue (the app's M-Pesa
    context); without it the menus offer no Deposit or Withdraw."""
    settings: Settings = app.config["SACCO_SETTINGS"]
    runtime: Any = app.extensions["sacco"]
    store = RedisStore(runtime.redis) if runtime.redis is not None else MemoryStore()
    service = app.extensions[EXTENSION] = UssdService(
        runtime,
        store,
        UssdConfig(
            sacco_name=settings.sacco_name,
            help_phone=settings.sacco_help_phone,
            terms_url=settings.sacco_terms_url,
            sms_code=settings.sacco_sms_code,
            service_code=settings.ussd_service_code,
            session_ttl_seconds=settings.ussd_session_ttl_seconds,
            resume_ttl_seconds=settings.ussd_resume_ttl_seconds,
            rate_limits=windows(settings.ussd_rate_limit),
        ),
        money=money,
        exit_policy=ExitPolicy(settings.exit_notice_days, SharesOnExit(settings.exit_shares)),
    )
    # The staff API calls these once an approval has committed (a phone change ends the
    # member's live session on the old number); the API never imports the USSD.
    app.extensions.setdefault("sacco_after_approval", []).append(service.after_approval)
    app.register_blueprint(bp)
