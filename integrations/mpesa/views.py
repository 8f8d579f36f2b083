"""Daraja callback routes. Thin: check the URL token, then ``callbacks.receive``.

``/mpesa/stk/callback``, ``/mpesa/c2b/validation``, ``/mpesa/c2b/confirmation``,
``/mpesa/b2c/result``, ``/mpesa/b2c/timeout``, ``/mpesa/status/result``,
``/mpesa/status/timeout`` — each ``POST ...?token=<MPESA_CALLBACK_TOKEN>``, and the
same under ``/hooks/mobile/...``, which is what Daraja is given (it blocks callback
URLs containing "mpesa").
A wrong or missing token is answered 403 and nothing is stored.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from integrations.mpesa import callbacks
from integrations.mpesa.client import CALLBACK_PREFIX
from integrations.mpesa.wiring import JobQueue, MpesaContext, build_context
from observability.metrics import count_callback

# What a callback's processing did, as the metric's small set of results; every other
# outcome (credited, duplicate, a validation code, …) counts as "processed".
_RESULTS = frozenset({"not_stored", "malformed", "error"})

log = logging.getLogger(__name__)
bp = Blueprint("mpesa", __name__, url_prefix="/mpesa")

ROUTES = {
    "/stk/callback": "stk",
    "/c2b/validation": "c2b_validation",
    "/c2b/confirmation": "c2b_confirmation",
    "/b2c/result": "b2c_result",
    "/b2c/timeout": "b2c_timeout",
    "/status/result": "status_result",
    "/status/timeout": "status_timeout",
}
_HEADERS_KEPT = 40


def _context() -> MpesaContext:
    ctx: MpesaContext = current_app.extensions["mpesa"]
    return ctx


def _token_ok(expected: str) -> bool:
    given = request.args.get("token", "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _handle(kind: str) -> Response | tuple[Response, int]:
    ctx = _context()
    if not _token_ok(ctx.settings.mpesa_callback_token):
        log.warning("mpesa %s callback with a wrong token from %s", kind, request.remote_addr)
        count_callback("mpesa", kind, "forbidden")
        return jsonify({"ResultCode": 1, "ResultDesc": "Forbidden"}), 403
    headers = dict(list(request.headers.items())[:_HEADERS_KEPT])
    headers["X-Remote-Addr"] = request.remote_addr or ""
    answer = callbacks.receive(
        ctx.runtime.session_factory,
        ctx.runtime.deps,
        ctx.policy,
        kind=kind,
        headers=headers,
        body=request.get_data(cache=False),
        shortcode=ctx.shortcode,
    )
    count_callback("mpesa", kind, answer.outcome if answer.outcome in _RESULTS else "processed")
    return jsonify(answer.body), answer.status


def _view(kind: str):  # type: ignore[no-untyped-def]
    def view() -> Response | tuple[Response, int]:
        return _handle(kind)

    view.__name__ = f"mpesa_{kind}"
    return view


for _path, _kind in ROUTES.items():
    bp.add_url_rule(_path, view_func=_view(_kind), methods=["POST"])


def init_app(app: Flask, jobs: JobQueue) -> MpesaContext:
    """Register the routes and keep an ``MpesaContext`` in ``app.extensions["mpesa"]``.

    The same views answer under ``/hooks/mobile`` (``CALLBACK_PREFIX``: the URLs we
    give Daraja, which blocks callback URLs containing "mpesa") and under ``/mpesa``
    (the design's names, for tools and tests that post directly)."""
    ctx = build_context(app.config["SACCO_SETTINGS"], app.extensions["sacco"], jobs)
    app.extensions["mpesa"] = ctx
    app.register_blueprint(bp)
    app.register_blueprint(bp, url_prefix=CALLBACK_PREFIX, name="mpesa_hooks")
    return ctx
