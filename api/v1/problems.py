"""Every API error as ``application/problem+json`` (RFC 9457).

Body: ``type``, ``title``, ``status``, ``detail``, plus ``code`` (a stable
snake_case code, the core's ``SaccoError.code`` where there is one) and
``errors`` (field -> list of messages) for invalid input. Only paths under
``/api/`` get this shape; other channels (USSD, SMS) keep their own.

Domain errors carry no HTTP status (``core`` knows nothing of HTTP): ``STATUS_BY_CODE``
below is the one place that gives a core error code its status.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException

from core.kernel.errors import SaccoError

PROBLEM_TYPE = "https://docs.sacco.example/problems/"
MIMETYPE = "application/problem+json"

# The HTTP status of each core error code. An error is looked up by its own code, then
# by the codes of the classes it derives from, so an error added to core without a row
# here answers with its family's status: ``invalid_input`` 422, ``domain_error`` 409,
# ``error`` (any other ``SaccoError``) 400. Never a 500: a unit test walks every
# ``SaccoError`` in core through the API (tests/unit/test_error_statuses.py).
STATUS_BY_CODE: dict[str, int] = {
    "error": 400,
    "invalid_input": 422,
    "domain_error": 409,
    "not_found": 404,
    "unbalanced_entry": 422,
    "limit_exceeded": 422,
    "pin_invalid": 401,
    "invalid_credentials": 401,
    "session_invalid": 401,
    "mfa_invalid": 401,
    "refresh_token_reused": 401,
    "member_not_allowed": 403,
    "self_approval": 403,
    "forbidden": 403,  # not a checker of this request (core.approvals.engine.NotAChecker)
    "above_till_limit": 403,
    "approval_required": 403,
    "sim_swap_recent": 403,
    "pin_locked": 423,
    "account_locked": 423,
    "crb_file_invalid": 422,  # the submission file failed its own layout's rules
    "close_day_behind": 409,
}
DEFAULT_STATUS = 400


def status_for(exc: SaccoError) -> int:
    """The HTTP status of a domain error (``STATUS_BY_CODE``, along its class's ancestry)."""
    codes = [exc.code, *(vars(cls).get("code") for cls in type(exc).__mro__)]
    for code in codes:
        if isinstance(code, str) and code in STATUS_BY_CODE:
            return STATUS_BY_CODE[code]
    return DEFAULT_STATUS


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def problem(
    status: int,
    code: str,
    detail: str = "",
    *,
    title: str | None = None,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=MIMETYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class ApiProblem(Exception):
    """Raised inside the API for an answer that is not a domain error (401, 403)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def _flatten(messages: Any) -> dict[str, list[str]]:
    """webargs ``{"json": {"field": ["msg"]}}`` -> ``{"field": ["msg"]}``."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.setdefault(prefix or "body", []).extend(value)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                walk(f"{prefix}.{i}", sub)
        else:
            out.setdefault(prefix or "body", []).append(str(value))

    if isinstance(messages, dict):
        for location, value in messages.items():
            if isinstance(value, dict):
                walk("", value)
            else:
                walk(str(location), value)
    return out


def _is_api() -> bool:
    return request.path.startswith("/api/")


def handle_http(exc: HTTPException) -> Any:
    if not _is_api():
        return exc
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = _flatten(data.get("messages") or data.get("errors") or {})
    headers = dict(data.get("headers") or {})
    detail = exc.description or ""
    if status == 422:
        detail = "the request has invalid fields: see errors"
    elif status == 400 and errors:
        detail = "; ".join(m for msgs in errors.values() for m in msgs)
    elif status == 413:
        detail = "the request body is too large"
    if exc.response is not None:
        for key in ("Retry-After", "Allow"):
            if key in exc.response.headers:
                headers[key] = exc.response.headers[key]
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    code = "invalid_input" if status == 422 else _snake(exc.name or "error")
    return problem(status, code, detail, errors=errors or None, headers=headers)


def handle_sacco(exc: SaccoError) -> Any:
    if not _is_api():
        raise exc
    errors = None
    field = exc.context.get("field")
    if field:
        errors = {str(field): [exc.detail]}
    headers = {}
    status = status_for(exc)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="sacco"'
    return problem(status, exc.code, exc.detail, errors=errors, headers=headers)


def handle_api_problem(exc: ApiProblem) -> Any:
    return problem(exc.status, exc.code, exc.detail, headers=exc.headers)


def handle_unexpected(exc: Exception) -> Any:
    if not _is_api():
        raise exc  # other channels keep Flask's own handling (and tests see the traceback)
    if isinstance(exc, HTTPException):  # pragma: no cover - routed to handle_http
        return handle_http(exc)
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return problem(500, "internal_error", "something went wrong; the error was logged")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(SaccoError, handle_sacco)
    app.register_error_handler(ApiProblem, handle_api_problem)
    app.register_error_handler(Exception, handle_unexpected)
