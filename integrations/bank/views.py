"""The bank's callback route. Thin: check where it came from and the URL token, then
``callbacks.receive``.

``POST /hooks/bank/transfer-result?token=<BANK_CALLBACK_TOKEN>`` (the URL given to the
bank at onboarding). The bank signs nothing: the source address must be in
``BANK_CALLBACK_ALLOWED_NETWORKS`` when that is set (the bank's published or agreed
addresses), and the token must match. Either failing is answered 403, logged, and
nothing is stored.
"""

from __future__ import annotations

import hmac
import logging
from datetime import date

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from core.payments.bank.statement import BankStatementLine
from core.payments.bank.transfers import BankUnavailable
from integrations.bank import callbacks
from integrations.bank.client import BankError
from integrations.bank.wiring import BankContext, allowed, policy_from_settings
from observability.metrics import count_callback

log = logging.getLogger(__name__)
bp = Blueprint("bank", __name__, url_prefix="/hooks/bank")
_HEADERS_KEPT = 40


@bp.post("/transfer-result")
def transfer_result() -> tuple[Response, int]:
    ctx: BankContext = current_app.extensions["sacco_bank"]
    settings = ctx.settings
    address = request.remote_addr or ""
    given = request.args.get("token", "")
    token = settings.bank_callback_token
    if not allowed(settings.bank_callback_allowed_networks, address) or not (
        token and hmac.compare_digest(given.encode(), token.encode())
    ):
        log.warning("bank callback refused from %s", address)
        count_callback("bank", "transfer_result", "forbidden")
        return jsonify({"status": "forbidden"}), 403
    rt = current_app.extensions["sacco"]
    headers = dict(list(request.headers.items())[:_HEADERS_KEPT])
    answer = callbacks.receive(
        rt.session_factory, rt.deps, headers=headers,
        body=request.get_data(cache=False), remote_addr=address,
    )  # fmt: skip
    count_callback(
        "bank", "transfer_result", answer.outcome if answer.outcome in ("malformed", "error")
        else "processed",
    )  # fmt: skip
    return jsonify({"status": answer.outcome}), answer.status


def init_app(app: Flask) -> BankContext | None:
    """Register the callback and keep a ``BankContext`` (``app.extensions["sacco_bank"]``)
    and the payout policy (``["sacco_bank_policy"]``) when the bank is configured."""
    settings = app.config["SACCO_SETTINGS"]
    if not settings.bank_enabled:
        app.extensions["sacco_bank"] = None
        app.extensions["sacco_bank_policy"] = None
        app.extensions["sacco_bank_statement"] = None
        return None
    ctx = BankContext(settings, policy_from_settings(settings))
    app.extensions["sacco_bank"] = ctx
    app.extensions["sacco_bank_statement"] = lambda start, end: read_statement(ctx, start, end)
    app.extensions["sacco_bank_policy"] = ctx.policy
    app.register_blueprint(bp)
    return ctx


def read_statement(ctx: BankContext, start: date, end: date) -> list[BankStatementLine]:
    """The bank's full statement as typed lines; the bank failing is ``BankUnavailable``
    (a core error the API answers with a problem, never a 500)."""
    try:
        return ctx.client.statement(start, end)
    except (BankError, ValueError, KeyError) as exc:
        raise BankUnavailable(f"the bank did not answer: {exc}", reason="bank_error") from None
