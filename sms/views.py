"""Africa's Talking SMS callbacks: ``POST /sms/inbound`` and ``POST /sms/delivery``.

Thin: parse the form, call one core verb, answer 200 (the gateway retries
anything else). Garbage gets a 400 with a reason, never a 500. A delivery report is
stored raw and committed first (like the M-Pesa callbacks), answered 200 once stored and
applied after that; if even storing fails (the database is down) the answer is 503, so a
gateway that retries sends it again. When
``SMS_CALLBACK_TOKEN`` is set, each URL must carry ``?token=<it>`` (the gateway
signs nothing); a wrong or missing token gets 403.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue

from core.kernel.errors import InvalidInput
from core.messaging.outbox import (
    REPORT_STATUSES,
    DeliveryReport,
    OutboxPolicy,
    apply_delivery_report,
    store_delivery_report,
)
from core.messaging.sms_commands import InboundSms, clean_text, handle_inbound_sms
from observability.metrics import count_callback, status_class_result
from runtime import Runtime

bp = Blueprint("sms", __name__, url_prefix="/sms")
log = logging.getLogger(__name__)


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["sacco"]
    return runtime


def _field(name: str, max_len: int) -> str:
    value = request.form.get(name, "")
    return clean_text(value, max_len * 2).strip()[:max_len] if isinstance(value, str) else ""


@bp.before_request
def _check_token() -> ResponseReturnValue | None:
    expected = current_app.config["SACCO_SETTINGS"].sms_callback_token
    if not expected:
        return None
    given = request.args.get("token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return "forbidden", 403, {"Content-Type": "text/plain"}
    return None


@bp.post("/inbound")
def inbound() -> ResponseReturnValue:
    gateway_id = _field("id", 64)
    sender = _field("from", 32)
    if not gateway_id or not sender:
        return "missing id or from", 400, {"Content-Type": "text/plain"}
    sms = InboundSms(
        gateway_id=gateway_id,
        sender=sender,
        text=_field("text", 1000),
        to=_field("to", 20),
        link_id=_field("linkId", 64) or None,
        network_code=_field("networkCode", 8) or None,
    )
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as session:
            result = handle_inbound_sms(session, runtime.deps, sms)
    except InvalidInput as exc:
        return f"invalid {exc.field}", 400, {"Content-Type": "text/plain"}
    log.info("sms inbound %s: %s%s", gateway_id, result.command, " (dup)" * result.duplicate)
    return "OK", 200, {"Content-Type": "text/plain"}


@bp.post("/delivery")
def delivery() -> ResponseReturnValue:
    message_id = _field("id", 64)
    status = _field("status", 16)
    if not message_id or status not in REPORT_STATUSES:
        return "missing id or unknown status", 400, {"Content-Type": "text/plain"}
    retry = _field("retryCount", 6)
    report = DeliveryReport(
        provider_message_id=message_id,
        status=status,
        failure_reason=_field("failureReason", 64) or None,
        retry_count=int(retry) if retry.isdecimal() else None,
        network_code=_field("networkCode", 8) or None,
        phone_number=_field("phoneNumber", 20) or None,
    )
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as session:
            report_id = store_delivery_report(session, report, runtime.deps.now())
    except Exception:
        log.exception("sms delivery report %s could not be stored", message_id)
        return "temporarily unavailable", 503, {"Content-Type": "text/plain", "Retry-After": "30"}
    policy = OutboxPolicy.from_settings(current_app.config["SACCO_SETTINGS"])
    try:  # stored: whatever happens now, the sweeper applies it later
        with runtime.unit_of_work() as session:
            apply_delivery_report(session, report_id, policy, runtime.deps.now())
    except Exception:
        log.exception("sms delivery report #%s stored, not applied yet", report_id)
    return "OK", 200, {"Content-Type": "text/plain"}


@bp.after_request
def _count(response: Response) -> Response:
    """Every callback's answer (a 500 too: Flask runs this for the error's response)."""
    kind = {"sms.inbound": "sms_inbound", "sms.delivery": "sms_delivery"}.get(
        request.endpoint or "", "other"
    )
    count_callback("africastalking", kind, status_class_result(response.status_code))
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
