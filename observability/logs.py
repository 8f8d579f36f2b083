"""Logs as JSON lines with a request id, and a filter that scrubs secrets from every record.

One object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id`` and the
record's extras (``log.info("...", extra={"screen": "home"})``), then ``exc`` for a traceback.

The request id is the caller's ``X-Request-ID`` (8–64 of ``A-Za-z0-9._-``) or a fresh one,
answered in the response's ``X-Request-ID``; it rides into RQ jobs in the job's ``meta``
(``job_meta()``; ``workers.queue`` and ``workers.runner`` pass it) and back into the
worker's log lines (``RequestIdWorker``, ``workers/rq_worker.py``).

``ScrubFilter`` sits on the handler, so it sees every record from every logger: phone
numbers become ``+2547*****678`` (``core.kernel.identity.mask_msisdn``), values after a
secret's name (``pin=``, ``token=``, ``"password": ``, ``Bearer``…) and JSON web tokens
become ``[redacted]``, and a standalone 7–8 digit number (the shape of a Kenyan national
ID) becomes ``[id]`` — over-masking a number costs a log reader less than an ID leaked.
The channels already log no PIN (``ussd/views.py`` logs the shape of ``text``); the filter
is the second line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.kernel.identity import mask_msisdn

if TYPE_CHECKING:  # the workers import this module and need no Flask
    from flask import Flask, Response

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sacco_request_id", default=None
)
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def new_request_id() -> str:
    return secrets.token_hex(8)


def valid_request_id(given: str | None) -> str | None:
    return given if given and _VALID_ID.fullmatch(given) else None


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


@contextmanager
def request_id_bound(rid: str | None) -> Iterator[str | None]:
    """Run a block (a job, a command) with ``rid`` as the request id of its log lines."""
    token = _REQUEST_ID.set(rid)
    try:
        yield rid
    finally:
        _REQUEST_ID.reset(token)


def job_meta() -> dict[str, Any]:
    """What an enqueued RQ job carries of the request that queued it."""
    rid = _REQUEST_ID.get()
    return {"request_id": rid} if rid else {}


# ----------------------------------------------------------------- scrubbing

_SECRET_NAMES = (
    r"pin|new_pin|old_pin|pin_hash|password|passwd|passkey|secret|client_secret|token|"
    r"access_token|refresh_token|api_key|apikey|x-api-key|authorization|national_id|"
    r"id_number|idnumber|reset_code|otp|totp|totp_secret|initiator_password|securitycredential"
)
_KEY_VALUE = re.compile(
    rf"""(?ix)
    (?P<key>["']?\b(?:{_SECRET_NAMES})\b["']?)   # a secret's name, maybe quoted
    (?P<sep>\s*[=:]\s*["']?)                      # = or : and maybe a quote
    (?P<value>[^\s&"',;)}}\]]+)                   # its value
    """
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# Kenyan mobile numbers in every spelling the gateways use: +2547…, 2547…, 07…, 01…
_PHONE = re.compile(r"(?<![\w+*])(?:\+?254|0)(?:7|1)\d{8}(?!\d)")
_NATIONAL_ID = re.compile(r"(?<![\w.,*+-])\d{7,8}(?![\w.,*])")
REDACTED = "[redacted]"
SECRET_KEYS = frozenset(_SECRET_NAMES.split("|"))


def _mask_phone(match: re.Match[str]) -> str:
    raw = match.group(0)
    e164 = "+254" + raw[-9:]
    return mask_msisdn(e164)


def scrub(text: str) -> str:
    """A log line's text with phone numbers masked and secrets and national IDs removed."""
    if not text:
        return text
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
    text = _PHONE.sub(_mask_phone, text)
    return _NATIONAL_ID.sub("[id]", text)


def scrub_value(key: str, value: Any) -> Any:
    if key.lower() in SECRET_KEYS:
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value("", v) for v in value]
    return value


# What every LogRecord has; anything else on a record is an extra.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class ScrubFilter(logging.Filter):
    """Rewrites the record in place: its message (formatted once), its extras and its
    traceback text, scrubbed. Put on a handler, it sees every logger's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sacco_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, drop the arguments
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            record.exc_info = None  # the scrubbed text is what any formatter shows
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, scrub_value(key, value))
        if not hasattr(record, "request_id"):
            record.request_id = _REQUEST_ID.get()
        record._sacco_scrubbed = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``ts`` in UTC, ISO 8601 with milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _REQUEST_ID.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


_HANDLER_MARK = "_sacco_json_handler"


def configure_logging(level: str = "INFO", *, stream: Any = None, json_lines: bool = True) -> None:
    """The process's one log handler on the root logger: JSON lines (or plain text for a
    person at a terminal: ``LOG_FORMAT=text``), scrubbed. Called by ``create_app`` and by
    ``manage.py`` before a worker or the scheduler starts; calling it again replaces it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ScrubFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())


def init_app(app: Flask) -> None:
    """Bind a request id to each request (and answer it in ``X-Request-ID``)."""
    from flask import g, request

    @app.before_request
    def _bind() -> None:
        rid = valid_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        g.request_id = rid
        g._sacco_rid_token = _REQUEST_ID.set(rid)

    @app.after_request
    def _answer(response: Response) -> Response:
        rid = _REQUEST_ID.get()
        if rid:
            response.headers.setdefault(REQUEST_ID_HEADER, rid)
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("_sacco_rid_token", None)
        if token is not None:
            try:
                _REQUEST_ID.reset(token)
            except ValueError:  # set in another context (should not happen): just clear
                _REQUEST_ID.set(None)
