"""The real SMS sender (over the AT SDK) and SIM-swap checker against the AT stand-in."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from sqlalchemy.orm import Session

from config import load_settings
from core.kernel.deps import CoreDeps
from core.risk import sim_swap
from integrations.africastalking.simswap import AfricasTalkingSimSwapChecker
from integrations.africastalking.standin import (
    DEFAULT_API_KEY,
    DEFAULT_USERNAME,
    StandinHandle,
    start_standin,
)
from sms.sender import AfricasTalkingSender

MEMBER = "+254712345678"
OTHER_MEMBER = "+254110000001"

Report = tuple[str, dict[str, str]]


@pytest.fixture
def delivery_reports() -> Iterator[tuple[str, queue.Queue[Report]]]:
    """A tiny HTTP server standing in for our app's delivery-report endpoint."""
    reports: queue.Queue[Report] = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            reports.put((self.headers.get("Content-Type", ""), dict(parse_qsl(body))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sms/delivery", reports
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def standin_with_reports(
    delivery_reports: tuple[str, queue.Queue[Report]],
) -> Iterator[tuple[StandinHandle, queue.Queue[Report]]]:
    # Depends on the receiver so that the stand-in stops before the receiver does.
    url, reports = delivery_reports
    handle = start_standin(port=0, delivery_callback=url, delivery_delay=0.05)
    yield handle, reports
    handle.stop()


def make_sender(
    standin: StandinHandle, *, api_key: str = DEFAULT_API_KEY, timeout: float = 2.0
) -> AfricasTalkingSender:
    return AfricasTalkingSender(
        DEFAULT_USERNAME, api_key, sender_id="UMOJA", base_url=standin.url, timeout=timeout
    )


def control(standin: StandinHandle, **command: object) -> None:
    requests.post(f"{standin.url}/_control", json=command, timeout=5).raise_for_status()


def inbox(standin: StandinHandle, msisdn: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{standin.url}/_messages", params={"to": msisdn}, timeout=5)
    answer.raise_for_status()
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


# -- SMS ---------------------------------------------------------------------------------


def test_accepted_sms_has_an_id_costs_80_cents_and_lands_in_the_inbox(
    standin: StandinHandle,
) -> None:
    result = make_sender(standin).send(MEMBER, "Deposit of KES 500 received. Bal KES 2,300.")

    assert result.accepted
    assert not result.retryable
    assert (result.status_code, result.status) == (101, "Success")
    assert result.message_id is not None and result.message_id.startswith("ATXid_")
    assert result.cost_cents == 80
    [message] = inbox(standin, MEMBER)
    assert message["id"] == result.message_id
    assert message["message"] == "Deposit of KES 500 received. Bal KES 2,300."
    assert message["from"] == "UMOJA"
    assert inbox(standin, OTHER_MEMBER) == []


@pytest.mark.parametrize(
    ("status_code", "status", "retryable"),
    [
        (403, "InvalidPhoneNumber", False),
        (405, "InsufficientBalance", True),
        (406, "UserInBlacklist", False),
        (500, "InternalServerError", True),
    ],
)
def test_refused_recipient_reports_the_gateway_code_and_whether_to_retry(
    standin: StandinHandle, status_code: int, status: str, retryable: bool
) -> None:
    control(standin, number=MEMBER, status_code=status_code)

    result = make_sender(standin).send(MEMBER, "Your loan is approved.")

    assert not result.accepted
    assert (result.status_code, result.status) == (status_code, status)
    assert result.retryable is retryable
    assert result.message_id is None
    assert inbox(standin, MEMBER) == []


def test_gateway_outage_is_retryable_and_the_retry_goes_through(standin: StandinHandle) -> None:
    control(standin, fail_next=1)
    sender = make_sender(standin)

    first = sender.send(MEMBER, "Reminder: repayment due Friday.")
    second = sender.send(MEMBER, "Reminder: repayment due Friday.")

    assert (first.accepted, first.status, first.retryable) == (False, "HTTP 500", True)
    assert second.accepted
    assert [m["id"] for m in inbox(standin, MEMBER)] == [second.message_id]


def test_stalled_gateway_returns_a_retryable_timeout_within_the_timeout(
    standin: StandinHandle,
) -> None:
    control(standin, hang_next=1, hang_seconds=10)
    sender = make_sender(standin, timeout=1.0)

    started = time.monotonic()
    result = sender.send(MEMBER, "Your PIN was changed.")
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert (result.accepted, result.status, result.retryable) == (False, "Timeout", True)


def test_wrong_api_key_is_refused_and_not_retried(standin: StandinHandle) -> None:
    result = make_sender(standin, api_key="not-the-key").send(MEMBER, "Hello")

    assert (result.accepted, result.status, result.retryable) == (False, "Unauthorized", False)
    assert result.detail == "The supplied authentication is invalid"
    assert inbox(standin, MEMBER) == []


def test_unreachable_gateway_is_a_retryable_result_not_an_exception() -> None:
    with start_standin(port=0) as gone:
        pass  # started and stopped: nothing listens on its port any more

    result = make_sender(gone).send(MEMBER, "Hello")

    assert (result.accepted, result.status, result.retryable) == (False, "ConnectionError", True)


def test_number_without_plus_is_refused_before_any_request(standin: StandinHandle) -> None:
    result = make_sender(standin).send("0712345678", "Hello")

    assert (result.accepted, result.status, result.retryable) == (
        False,
        "InvalidPhoneNumber",
        False,
    )
    assert requests.get(f"{standin.url}/_messages", timeout=5).json()["messages"] == []


def test_delivery_report_is_posted_with_the_documented_fields(
    standin_with_reports: tuple[StandinHandle, queue.Queue[Report]],
) -> None:
    standin, reports = standin_with_reports

    result = make_sender(standin).send(MEMBER, "Withdrawal of KES 1,000 sent to M-Pesa.")

    content_type, report = reports.get(timeout=5)
    assert content_type == "application/x-www-form-urlencoded"
    assert report == {
        "id": result.message_id,
        "status": "Success",
        "phoneNumber": MEMBER,
        "networkCode": "63902",
        "retryCount": "0",
    }


def test_failed_delivery_report_carries_the_failure_reason(
    standin_with_reports: tuple[StandinHandle, queue.Queue[Report]],
) -> None:
    standin, reports = standin_with_reports
    control(
        standin,
        number=OTHER_MEMBER,
        delivery_status="Failed",
        failure_reason="DeliveryFailure",
        network_code="63903",
    )

    result = make_sender(standin).send(OTHER_MEMBER, "Your loan is approved.")

    assert result.accepted  # accepted by the gateway, then not delivered
    _, report = reports.get(timeout=5)
    assert report["id"] == result.message_id
    assert (report["status"], report["failureReason"]) == ("Failed", "DeliveryFailure")
    assert (report["phoneNumber"], report["networkCode"]) == (OTHER_MEMBER, "63903")


# -- SIM swap ----------------------------------------------------------------------------


def make_checker(
    base_url: str, *, api_key: str = DEFAULT_API_KEY, timeout: float = 2.0
) -> AfricasTalkingSimSwapChecker:
    return AfricasTalkingSimSwapChecker(DEFAULT_USERNAME, api_key, base_url, timeout)


def test_swapped_sim_is_reported_with_its_swap_date(standin: StandinHandle) -> None:
    control(standin, number=MEMBER, swapped=True, last_swap_date="2025-01-10T08:00:00Z")

    result = make_checker(standin.url).check(MEMBER)

    assert (result.ok, result.swapped, result.error) == (True, True, None)
    assert result.last_swap_at == datetime(2025, 1, 10, 8, 0, tzinfo=UTC)


def test_unswapped_sim_is_reported_as_not_swapped(standin: StandinHandle) -> None:
    control(standin, number=MEMBER, swapped=True, last_swap_date="2025-01-10T08:00:00Z")

    result = make_checker(standin.url).check(OTHER_MEMBER)

    assert (result.ok, result.swapped, result.last_swap_at) == (True, False, None)


def test_unreachable_sim_swap_provider_gives_no_verdict() -> None:
    with start_standin(port=0) as gone:
        pass

    result = make_checker(gone.url).check(MEMBER)

    assert (result.ok, result.swapped) == (False, None)
    assert result.error is not None and "unreachable" in result.error


@pytest.mark.parametrize(
    ("command", "api_key", "error_part"),
    [
        ({"fail_next": 1}, DEFAULT_API_KEY, "HTTP 500"),
        ({"hang_next": 1, "hang_seconds": 10}, DEFAULT_API_KEY, "timed out"),
        ({}, "not-the-key", "HTTP 401"),
    ],
)
def test_sim_swap_failures_give_no_verdict_and_a_reason(
    standin: StandinHandle, command: dict[str, object], api_key: str, error_part: str
) -> None:
    control(standin, **command)

    started = time.monotonic()
    result = make_checker(standin.url, api_key=api_key, timeout=1.0).check(MEMBER)

    assert time.monotonic() - started < 2.0
    assert (result.ok, result.swapped) == (False, None)
    assert result.error is not None and error_part in result.error


def test_a_swap_right_after_a_good_check_is_seen_once_the_short_cache_lapses(
    standin: StandinHandle, db_session: Session, deps: CoreDeps
) -> None:
    """The fraud pattern: the member's own withdrawal is checked (not swapped), then the
    SIM is swapped. The cached good verdict may not hide the swap for long."""
    clock = [datetime(2026, 11, 28, 9, 0, tzinfo=UTC)]
    timed = replace(deps, now=lambda: clock[0])
    cache = timedelta(seconds=load_settings(sacco_env="test").sim_swap_cache_seconds)
    checker = make_checker(standin.url)

    def verdict() -> sim_swap.SimSwapVerdict:
        return sim_swap.fetch_verdict(db_session, timed, checker, MEMBER, cache=cache)

    assert verdict().swapped is False
    control(standin, number=MEMBER, swapped=True, last_swap_date="2026-11-28T06:01:00Z")
    clock[0] += timedelta(seconds=30)  # the same withdrawal session: the cached answer
    assert verdict().swapped is False
    clock[0] += timedelta(seconds=31)
    fresh = verdict()
    assert (fresh.swapped, fresh.last_swap_at) == (True, datetime(2026, 11, 28, 6, 1, tzinfo=UTC))
