"""SIM-swap checks: a provider-neutral protocol and the Africa's Talking Insights adapter.

A recent SIM swap is the usual prelude to account takeover over USSD/M-Pesa, so
callers check before sensitive steps (withdrawals, PIN reset). ``ok=False`` means
"no verdict": the caller decides what that costs (e.g. hold a withdrawal for staff).

ASSUMPTION (GATEWAYS.md marks the verdict's shape *unconfirmed*): Africa's Talking
documents only that an accepted request answers ``{"status": "Processed", ...}``
and that the verdict goes to a callback. We read a verdict from the synchronous
answer when one is there, in the shape our stand-in uses::

    {"status": "Processed",
     "responses": [{"phoneNumber": "+2547...", "swapped": true,
                    "lastSimSwapDate": "2025-01-10T08:00:00+00:00"}]}

and tolerate variations (``status: "Swapped"/"NotSwapped"`` instead of ``swapped``,
``lastSwapDate``, epoch times, naive times taken as UTC). A ``Processed`` answer
without a readable verdict for the number is ``ok=False``, never "not swapped".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

PRODUCTION_INSIGHTS_URL = "https://insights.africastalking.com"
_E164 = re.compile(r"^\+[0-9]{4,15}$")


@dataclass(frozen=True)
class SimSwapResult:
    swapped: bool | None
    last_swap_at: datetime | None
    ok: bool
    error: str | None = None


class SimSwapChecker(Protocol):
    def check(self, msisdn: str) -> SimSwapResult: ...


def _failed(reason: str) -> SimSwapResult:
    return SimSwapResult(swapped=None, last_swap_at=None, ok=False, error=reason)


def parse_swap_time(value: object) -> datetime | None:
    """An ISO-8601 string or epoch seconds/milliseconds as an aware UTC datetime."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            seconds = value / 1000 if value > 100_000_000_000 else value
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _digits(number: object) -> str:
    return re.sub(r"[^0-9]", "", number) if isinstance(number, str) else ""


def parse_sim_swap_answer(answer: object, msisdn: str) -> SimSwapResult:
    """The verdict for ``msisdn`` in a decoded Insights answer; never raises."""
    if not isinstance(answer, dict):
        return _failed("unreadable answer")
    status = answer.get("status")
    if status != "Processed":
        return _failed(f"request not processed (status {status!r})")
    entries = answer.get("responses")
    if not isinstance(entries, list):
        return _failed("no verdict in the answer (it may come by callback)")
    mine: dict[str, Any] | None = next(
        (
            e
            for e in entries
            if isinstance(e, dict) and _digits(e.get("phoneNumber")) == _digits(msisdn)
        ),
        None,
    )
    if mine is None:
        return _failed("no verdict for this number in the answer")
    swapped = mine.get("swapped")
    if not isinstance(swapped, bool):
        swapped = {"Swapped": True, "NotSwapped": False}.get(str(mine.get("status")))
    if swapped is None:
        return _failed("verdict unreadable")
    when = parse_swap_time(mine.get("lastSimSwapDate", mine.get("lastSwapDate")))
    return SimSwapResult(swapped=swapped, last_swap_at=when, ok=True)


class AfricasTalkingSimSwapChecker:
    """``SimSwapChecker`` over AT Insights: ``POST {base_url}/v1/sim-swap``.

    ``timeout`` (seconds) bounds connecting and each wait for the server. Any
    failure is reported as ``ok=False`` with a reason; nothing is raised.
    """

    def __init__(
        self,
        username: str,
        api_key: str,
        base_url: str = PRODUCTION_INSIGHTS_URL,
        timeout: float = 10.0,
    ) -> None:
        self._username = username
        self._api_key = api_key
        self._url = base_url.rstrip("/") + "/v1/sim-swap"
        self._timeout = timeout

    def check(self, msisdn: str) -> SimSwapResult:
        if not _E164.match(msisdn):
            return _failed("phone number must be E.164 with a leading +")
        try:
            response = requests.post(
                self._url,
                json={"username": self._username, "phoneNumbers": [msisdn]},
                headers={"apiKey": self._api_key, "Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.Timeout:
            return _failed("provider timed out")
        except requests.RequestException as exc:
            return _failed(f"provider unreachable: {type(exc).__name__}")
        if response.status_code == 401:
            return _failed("provider refused our credentials (HTTP 401)")
        if response.status_code != 200:
            return _failed(f"provider answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            return _failed("provider answer is not JSON")
        return parse_sim_swap_answer(answer, msisdn)
