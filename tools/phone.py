"""A terminal feature phone that dials the running service like Africa's Talking does.

    python -m tools.phone --url http://127.0.0.1:8000 --phone +254712000001
    make phone PHONE=+254712000001

Each dial gets a new ``sessionId``; every hop is a form POST of exactly the
gateway's fields (``sessionId``, ``serviceCode``, ``phoneNumber``,
``networkCode``, ``text``) where ``text`` is every input of the dial so far
joined by ``*`` (an empty input shows as ``1*``, as on the network). A ``CON``
screen waits for input, an ``END`` screen closes the dial. When the dial ends,
the phone posts the gateway's session-end notification to ``/ussd/events``:
``Success`` after an ``END``, ``Incomplete`` when the member hangs up
(``/end``, Ctrl-C or Ctrl-D at the prompt).

The request builders are pure functions (unit-tested); only ``main`` talks to
the network and the terminal.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_CODE = "*384*44135#"
DEFAULT_NETWORK = "99999"  # Africa's Talking sandbox
HANG_UP = "/end"
HOP_TIMEOUT_S = 15  # the gateway waits at most 15 s for an answer


def new_session_id() -> str:
    """A gateway-looking session id, new for every dial."""
    return f"ATUid_{secrets.token_hex(16)}"


def cumulative_text(inputs: Sequence[str]) -> str:
    """What the gateway sends as ``text``: every input of the dial so far joined by ``*``."""
    return "*".join(inputs)


def hop_form(
    *,
    session_id: str,
    service_code: str,
    phone_number: str,
    network_code: str,
    inputs: Sequence[str],
) -> dict[str, str]:
    """The exact form fields of one hop."""
    return {
        "sessionId": session_id,
        "serviceCode": service_code,
        "phoneNumber": phone_number,
        "networkCode": network_code,
        "text": cumulative_text(inputs),
    }


@dataclass(frozen=True)
class Screen:
    """A parsed answer: ``ends`` when it was an ``END``; ``text`` without the prefix."""

    ends: bool
    text: str
    raw: str


class GatewayError(RuntimeError):
    """The service answered something the gateway would turn into a generic error."""


def parse_reply(status: int, content_type: str, body: str) -> Screen:
    """Read an answer the way the gateway does: 200, text/plain, ``CON `` or ``END ``."""
    if status != 200:
        raise GatewayError(f"HTTP {status}: the network would show 'Connection problem'")
    if not content_type.startswith("text/plain"):
        raise GatewayError(f"content type {content_type!r} is not text/plain")
    if body.startswith("CON "):
        return Screen(ends=False, text=body[4:], raw=body)
    if body.startswith("END "):
        return Screen(ends=True, text=body[4:], raw=body)
    raise GatewayError(f"answer does not start with 'CON ' or 'END ': {body[:40]!r}")


def end_event_form(
    *,
    session_id: str,
    service_code: str,
    phone_number: str,
    network_code: str,
    inputs: Sequence[str],
    status: str,
    hops: int,
    duration_ms: int,
    last_response: str,
    at: datetime,
    error_message: str = "",
) -> dict[str, str]:
    """The gateway's session-end notification (form POST to the events URL)."""
    if status not in ("Success", "Incomplete", "Failed"):
        raise ValueError(f"unknown session status {status!r}")
    return {
        "date": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "sessionId": session_id,
        "serviceCode": service_code,
        "networkCode": network_code,
        "phoneNumber": phone_number,
        "status": status,
        "cost": "0.0",
        "durationInMillis": str(duration_ms),
        "hopsCount": str(hops),
        "input": cumulative_text(inputs),
        "lastAppResponse": last_response,
        "errorMessage": error_message,
    }


def events_url(ussd_url: str) -> str:
    """``…/ussd`` → ``…/ussd/events`` (keeping any ``?token=`` query)."""
    base, sep, query = ussd_url.partition("?")
    return f"{base.rstrip('/')}/events{sep}{query}"


@dataclass
class Dial:
    """One dial: its session id and the inputs typed so far."""

    service_code: str
    phone_number: str
    network_code: str
    session_id: str = field(default_factory=new_session_id)
    inputs: list[str] = field(default_factory=list)
    hops: int = 0
    started: float = field(default_factory=time.monotonic)
    last_response: str = ""

    def form(self) -> dict[str, str]:
        return hop_form(
            session_id=self.session_id,
            service_code=self.service_code,
            phone_number=self.phone_number,
            network_code=self.network_code,
            inputs=self.inputs,
        )

    def end_form(self, status: str, error_message: str = "") -> dict[str, str]:
        return end_event_form(
            session_id=self.session_id,
            service_code=self.service_code,
            phone_number=self.phone_number,
            network_code=self.network_code,
            inputs=self.inputs,
            status=status,
            hops=self.hops,
            duration_ms=int((time.monotonic() - self.started) * 1000),
            last_response=self.last_response,
            at=datetime.now(UTC),
            error_message=error_message,
        )


def run_dial(
    http: requests.Session,
    ussd_url: str,
    dial: Dial,
    read: Callable[[str], str],
    show: Callable[[str], None],
) -> str:
    """Drive one dial to its end; returns the session status sent to the events URL."""
    status, error = "Incomplete", ""
    try:
        while True:
            resp = http.post(ussd_url, data=dial.form(), timeout=HOP_TIMEOUT_S)
            dial.hops += 1
            screen = parse_reply(resp.status_code, resp.headers.get("Content-Type", ""), resp.text)
            dial.last_response = screen.raw
            show(screen.text)
            if screen.ends:
                status = "Success"
                break
            try:
                typed = read("> ")
            except (EOFError, KeyboardInterrupt):
                show("(hung up)")
                break
            if typed.strip() == HANG_UP:
                show("(hung up)")
                break
            dial.inputs.append(typed)
    except (GatewayError, requests.RequestException) as exc:
        status, error = "Failed", str(exc)[:200]
        show(f"[network] {error}")
    try:
        http.post(events_url(ussd_url), data=dial.end_form(status, error), timeout=HOP_TIMEOUT_S)
    except requests.RequestException as exc:
        show(f"[network] session-end notification not delivered: {exc}")
    return status


def frame(text: str, width: int = 32) -> str:
    """A screen drawn like a phone's: word-wrapped to ``width`` columns inside a box."""
    lines = [
        part
        for line in text.split("\n")
        for part in (textwrap.wrap(line, width, break_on_hyphens=False) or [""])
    ]
    bar = "+" + "-" * (width + 2) + "+"
    return "\n".join([bar, *[f"| {line:<{width}} |" for line in lines], bar])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.phone", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="service base URL (default %(default)s)")
    parser.add_argument("--phone", required=True, help="the caller's number, E.164: +2547…")
    parser.add_argument("--code", default=DEFAULT_CODE, help="the dialled service code")
    parser.add_argument("--network", default=DEFAULT_NETWORK, help="networkCode (63902 Safaricom)")
    parser.add_argument("--path", default="/ussd", help="callback path, with ?token=… if set")
    args = parser.parse_args(argv)
    ussd_url = args.url.rstrip("/") + args.path
    print(f"Dialling {args.code} from {args.phone}. Type {HANG_UP} to hang up.")
    with requests.Session() as http:
        while True:
            dial = Dial(service_code=args.code, phone_number=args.phone, network_code=args.network)
            run_dial(http, ussd_url, dial, input, lambda text: print(frame(text)))
            try:
                again = input("Dial again? [Y/n] ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if again.startswith("n"):
                return 0


if __name__ == "__main__":
    sys.exit(main())
