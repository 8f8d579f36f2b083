"""The scrubbing filter and the JSON-lines formatter (observability/logs.py), record by record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from observability.logs import (
    JsonFormatter,
    ScrubFilter,
    configure_logging,
    job_meta,
    request_id_bound,
    scrub,
    valid_request_id,
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("sms to +254712345678 queued", "sms to +2547*****678 queued"),
        ("MSISDN 254712345678 paid", "MSISDN +2547*****678 paid"),
        ("call 0712345678 now", "call +2547*****678 now"),
        ("airtel 0110345678", "airtel +2541*****678"),
        ('{"MSISDN": "254712345678"}', '{"MSISDN": "+2547*****678"}'),
        ("pin=4826 ok", "pin=[redacted] ok"),
        ("new_pin: 4826", "new_pin: [redacted]"),
        ('{"pin": "4826", "x": 1}', '{"pin": "[redacted]", "x": 1}'),
        ("GET /ussd?token=abcDEF123456789xyz&x=1", "GET /ussd?token=[redacted]&x=1"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: [redacted] [redacted]"),
        ("header Bearer s3cr3t-t0ken", "header Bearer [redacted]"),
        ("jwt eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl seen", "jwt [redacted] seen"),
        ("national_id=23456781", "national_id=[redacted]"),
        ("member with ID 23456781 registered", "member with ID [id] registered"),
        ("password='hunter2'", "password='[redacted]'"),
    ],
)
def test_secrets_and_phones_are_scrubbed(raw: str, shown: str) -> None:
    assert scrub(raw) == shown


@pytest.mark.parametrize(
    "kept",
    [
        "ussd hop session=ATUid_1 phone=+2547*****678 text=x*xxxx screen=home ms=17.7477",
        "deposit KES 1,500.00 credited to savings",
        "outbox 42 attempt 3: sent",
        "close of day 2026-11-27 done in 12.5 s",
        "mpesa c2b_confirmation callback 1234 processed",
        "wrong token from 10.20.0.5",  # a 'token' without a value is only a word
        "receipt RKO7E2EOBS credited",
    ],
)
def test_ordinary_log_lines_are_left_alone(kept: str) -> None:
    assert scrub(kept) == kept


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    configure_logging("DEBUG", stream=stream)
    yield logging.getLogger("sacco.test.scrub"), stream
    for handler in list(root.handlers):
        if handler not in before[0]:
            root.removeHandler(handler)
    root.setLevel(before[1])


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_request_id_and_extras_scrubbed(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    with request_id_bound("req-abcdef12"):
        log.info(
            "member %s paid %s",
            "+254712345678",
            "KES 100",
            extra={"screen": "home", "pin": "4826", "form": {"phoneNumber": "0712345678"}},
        )
    log.warning("no request")
    first, second = _lines(stream)
    assert first["message"] == "member +2547*****678 paid KES 100"
    assert first["request_id"] == "req-abcdef12"
    assert first["level"] == "INFO" and first["logger"] == "sacco.test.scrub"
    assert first["screen"] == "home"
    assert first["pin"] == "[redacted]"
    assert first["form"] == {"phoneNumber": "+2547*****678"}
    assert str(first["ts"]).endswith("+00:00")
    assert second["request_id"] is None
    assert "4826" not in stream.getvalue() and "712345678" not in stream.getvalue()


def test_a_traceback_quoting_input_is_scrubbed(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    try:
        raise ValueError("bad form: national_id=23456781 pin=4826 from 0712345678")
    except ValueError:
        log.exception("hop failed")
    (line,) = _lines(stream)
    assert line["message"] == "hop failed"
    assert "ValueError" in str(line["exc"])
    for secret in ("23456781", "4826", "712345678"):
        assert secret not in stream.getvalue()


def test_other_handlers_see_the_scrubbed_record_too(
    captured: tuple[logging.Logger, io.StringIO], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = captured
    caplog.set_level(logging.INFO)
    log.info("pin=%s", "4826")
    assert "4826" not in caplog.text


def test_request_ids_are_checked_and_ride_in_job_meta() -> None:
    assert valid_request_id("abc") is None  # too short
    assert valid_request_id("a b c d e f g h") is None
    assert valid_request_id("x" * 65) is None
    assert valid_request_id("req-1234.5_6") == "req-1234.5_6"
    assert job_meta() == {}
    with request_id_bound("req-12345678"):
        assert job_meta() == {"request_id": "req-12345678"}
    assert job_meta() == {}


def test_the_formatter_alone_writes_json(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "plain %d", (5,), None)
    ScrubFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "plain 5" and line["level"] == "ERROR"
