"""A local stand-in of Africa's Talking's HTTP APIs, for tests and the demo.

Standard library only. It speaks the wire formats that ``africastalking==2.0.3``
uses and that GATEWAYS.md documents:

``POST /version1/messaging`` (SMS send, what ``SMSService.send`` posts)
    Form fields ``username``, ``to`` (comma-separated E.164), ``message``,
    ``bulkSMSMode``, optional ``from`` and ``enqueue``; header ``apiKey``.
    Answers HTTP 201 ``application/json``::

        {"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000",
         "Recipients": [{"statusCode": 101, "number": "+2547...", "status": "Success",
                         "cost": "KES 0.8000", "messageId": "ATXid_..."}]}}

    A refused recipient gets its code (e.g. ``403 InvalidPhoneNumber``), cost
    ``"0"`` and messageId ``"None"``, as AT does. Every recipient is billed a
    flat KES 0.8000 whatever the message length (the stand-in does not count parts).
    A wrong username or apiKey answers HTTP 401 ``text/plain``
    ``The supplied authentication is invalid``.

``POST /v1/sim-swap`` (Insights SIM-swap check)
    JSON ``{"username", "phoneNumbers": [...]}``, header ``apiKey``. ASSUMPTION:
    AT documents only that an accepted request answers ``status: "Processed"``;
    the per-number verdict goes to a callback whose shape is unconfirmed. The
    stand-in answers the verdict inline instead, so that the demo and the tests
    have one::

        {"status": "Processed", "transactionId": "ATSwpId_...",
         "responses": [{"phoneNumber": "+2547...", "swapped": true,
                        "lastSimSwapDate": "2025-01-10T08:00:00+00:00"}]}

    ``lastSimSwapDate`` is null for a number never swapped. Clients must parse
    this defensively and treat a missing verdict as "unknown".

Delivery reports: when a delivery-callback URL is set, each accepted message
gets one final report, ``delivery_delay`` seconds later, as a form POST with
``id``, ``status`` (``Success``/``Failed``/``Rejected``), ``phoneNumber``,
``networkCode``, ``retryCount`` and, only when not delivered, ``failureReason``.

Stand-in only (never on the real API):

``POST /_control`` JSON, any combination of::

    {"number": "+2547...",            # rules for one number:
     "status_code": 406,              #   its per-recipient statusCode on send
     "delivery_status": "Failed",     #   its delivery report status
     "failure_reason": "DeliveryFailure",
     "network_code": "63903",
     "swapped": true, "last_swap_date": "2025-01-10T08:00:00Z"}
    {"fail_next": 2}                  # next N gateway requests answer HTTP 500
    {"hang_next": 1, "hang_seconds": 5}   # next N gateway requests stall first
    {"delivery_callback": "http://...", "delivery_delay": 0.2}

``GET /_messages?to=+2547...`` lists accepted messages (all without ``to``);
``POST /_reset`` forgets messages, number rules and pending faults (keeps the
credentials and the delivery callback).

In-process: ``handle = start_standin(port=0)``, then ``handle.url`` and
``handle.stop()`` (or use the handle as a context manager). CLI::

    python -m integrations.africastalking.standin --port 8701 \\
        --delivery-callback http://127.0.0.1:8000/sms/delivery
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SMS_PATH = "/version1/messaging"
SIM_SWAP_PATH = "/v1/sim-swap"
DEFAULT_USERNAME = "sacco"
DEFAULT_API_KEY = "standin-api-key"
COST_PER_RECIPIENT = "KES 0.8000"
_PRICE = Decimal("0.8000")
AUTH_FAILED = "The supplied authentication is invalid"

# Per-recipient statusCode -> status, as documented by Africa's Talking.
SMS_STATUS_NAMES: dict[int, str] = {
    100: "Processed",
    101: "Success",
    102: "Queued",
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}
DELIVERY_STATUSES = ("Success", "Failed", "Rejected")
# Stricter than the SDK's own check (which lets "+25471" through): 7-15 digits, as E.164.
_E164 = re.compile(r"^\+[0-9]{7,15}$")


@dataclass
class NumberRule:
    status_code: int = 101
    delivery_status: str = "Success"
    failure_reason: str | None = None
    network_code: str = "63902"
    swapped: bool = False
    last_swap_date: str | None = None


@dataclass
class StandinState:
    """Everything the stand-in remembers. One instance per server; guarded by ``lock``."""

    username: str
    api_key: str
    delivery_callback: str | None
    delivery_delay: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    messages: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, NumberRule] = field(default_factory=dict)
    fail_next: int = 0
    hang_next: int = 0
    hang_seconds: float = 0.0
    timers: list[threading.Timer] = field(default_factory=list)

    def rule(self, number: str) -> NumberRule:
        """A snapshot of the rules for ``number`` (defaults when none were set)."""
        with self.lock:
            return replace(self.rules.get(number, NumberRule()))


class _Server(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so stop() leaves none behind.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], state: StandinState, quiet: bool) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.quiet = quiet

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout test) makes our late write fail: not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "AfricasTalkingStandin/1.0"

    # -- plumbing ---------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    @property
    def state(self) -> StandinState:
        return self.server.state

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(
        self, status: int, body: str, content_type: str = "text/plain", cors: bool = False
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if cors:  # the demo's phone simulator reads the inbox from its own origin
            self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply_json(self, status: int, payload: object, cors: bool = False) -> None:
        # Exactly "application/json": the SDK compares the header with ==.
        self._reply(status, json.dumps(payload), "application/json", cors)

    def _injected_fault(self) -> bool:
        """Apply a pending hang or HTTP 500; True when the request is already answered."""
        with self.state.lock:
            hang = self.state.hang_seconds if self.state.hang_next > 0 else 0.0
            if self.state.hang_next > 0:
                self.state.hang_next -= 1
        if hang and self.state.stopping.wait(hang):
            return True  # shutting down: drop the request unanswered
        with self.state.lock:
            if self.state.fail_next > 0:
                self.state.fail_next -= 1
                fail = True
            else:
                fail = False
        if fail:
            self._reply(500, "Internal Server Error")
        return fail

    def _authorised(self, username: str | None) -> bool:
        if self.headers.get("apiKey") == self.state.api_key and username == self.state.username:
            return True
        self._reply(401, AUTH_FAILED)
        return False

    # -- routes -------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/_messages":
            self._reply(404, "Not Found")
            return
        query = urllib.parse.parse_qs(url.query)
        # An unencoded "+" in a query string decodes as a space: accept both.
        to = query.get("to", [""])[0].strip()
        if to and not to.startswith("+"):
            to = "+" + to
        with self.state.lock:
            found = [dict(m) for m in self.state.messages if not to or m["to"] == to]
        self._reply_json(200, {"messages": found}, cors=True)

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        body = self._body()
        if path == SMS_PATH:
            if not self._injected_fault():
                self._send_sms(body)
        elif path == SIM_SWAP_PATH:
            if not self._injected_fault():
                self._sim_swap(body)
        elif path == "/_control":
            self._control(body)
        elif path == "/_reset":
            with self.state.lock:
                self.state.messages.clear()
                self.state.rules.clear()
                self.state.fail_next = self.state.hang_next = 0
            self._reply_json(200, {"ok": True})
        else:
            self._reply(404, "Not Found")

    def _send_sms(self, body: bytes) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        if not self._authorised(form.get("username")):
            return
        for required in ("to", "message"):
            if not form.get(required):
                self._reply(400, f"Request is missing required form field '{required}'")
                return
        recipients = []
        sent = 0
        for number in (n.strip() for n in form["to"].split(",")):
            rule = self.state.rule(number)
            code = rule.status_code if _E164.match(number) else 403
            if code in (100, 101, 102):
                sent += 1
                message_id = "ATXid_" + uuid.uuid4().hex
                recipients.append(
                    {
                        "statusCode": code,
                        "number": number,
                        "status": SMS_STATUS_NAMES[code],
                        "cost": COST_PER_RECIPIENT,
                        "messageId": message_id,
                    }
                )
                self._record(message_id, number, form, rule)
            else:
                recipients.append(
                    {
                        "statusCode": code,
                        "number": number,
                        "status": SMS_STATUS_NAMES[code],
                        "cost": "0",
                        "messageId": "None",
                    }
                )
        total = f"KES {_PRICE * sent}" if sent else "0"
        summary = f"Sent to {sent}/{len(recipients)} Total Cost: {total}"
        self._reply_json(201, {"SMSMessageData": {"Message": summary, "Recipients": recipients}})

    def _record(self, message_id: str, number: str, form: dict[str, str], rule: NumberRule) -> None:
        record: dict[str, Any] = {
            "id": message_id,
            "to": number,
            "from": form.get("from"),
            "message": form["message"],
            "cost": COST_PER_RECIPIENT,
            "sentAt": datetime.now(UTC).isoformat(),
            "deliveryStatus": None,
        }
        with self.state.lock:
            self.state.messages.append(record)
            callback, delay = self.state.delivery_callback, self.state.delivery_delay
            if callback and not self.state.stopping.is_set():
                timer = threading.Timer(delay, _post_delivery_report, (self.state, record, rule))
                self.state.timers = [t for t in self.state.timers if t.is_alive()]
                self.state.timers.append(timer)
                timer.start()

    def _sim_swap(self, body: bytes) -> None:
        try:
            request = json.loads(body or b"null")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            request = {}
        if not self._authorised(request.get("username")):
            return
        numbers = request.get("phoneNumbers")
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            self._reply(400, "phoneNumbers must be a list of phone numbers")
            return
        responses = []
        for number in numbers:
            rule = self.state.rule(number)
            responses.append(
                {
                    "phoneNumber": number,
                    "swapped": rule.swapped,
                    "lastSimSwapDate": rule.last_swap_date if rule.swapped else None,
                }
            )
        self._reply_json(
            200,
            {
                "status": "Processed",
                "transactionId": "ATSwpId_" + uuid.uuid4().hex,
                "responses": responses,
            },
        )

    def _control(self, body: bytes) -> None:
        try:
            _apply_control(self.state, json.loads(body or b"{}"))
        except (ValueError, TypeError) as exc:
            self._reply_json(400, {"error": str(exc)})
            return
        self._reply_json(200, {"ok": True})


def _apply_control(state: StandinState, command: object) -> None:
    if not isinstance(command, dict):
        raise ValueError("control body must be a JSON object")
    with state.lock:
        number = command.get("number")
        if number is not None:
            rule = state.rules.setdefault(str(number), NumberRule())
            if "status_code" in command:
                code = int(command["status_code"])
                if code not in SMS_STATUS_NAMES:
                    raise ValueError(f"unknown statusCode {code}")
                rule.status_code = code
            if "delivery_status" in command:
                if command["delivery_status"] not in DELIVERY_STATUSES:
                    raise ValueError(f"delivery_status must be one of {DELIVERY_STATUSES}")
                rule.delivery_status = command["delivery_status"]
            if "failure_reason" in command:
                rule.failure_reason = command["failure_reason"]
            if "network_code" in command:
                rule.network_code = str(command["network_code"])
            if "swapped" in command:
                rule.swapped = bool(command["swapped"])
            if "last_swap_date" in command:
                rule.last_swap_date = command["last_swap_date"]
        if "fail_next" in command:
            state.fail_next = int(command["fail_next"])
        if "hang_next" in command:
            state.hang_next = int(command["hang_next"])
            state.hang_seconds = float(command.get("hang_seconds", 30))
        if "delivery_callback" in command:
            state.delivery_callback = command["delivery_callback"] or None
        if "delivery_delay" in command:
            state.delivery_delay = float(command["delivery_delay"])


def _post_delivery_report(state: StandinState, record: dict[str, Any], rule: NumberRule) -> None:
    """Runs on a timer thread: POST the final delivery report, never raise."""
    callback = state.delivery_callback
    if not callback or state.stopping.is_set():
        return
    fields = {
        "id": record["id"],
        "status": rule.delivery_status,
        "phoneNumber": record["to"],
        "networkCode": rule.network_code,
        "retryCount": "0",
    }
    if rule.delivery_status != "Success":
        fields["failureReason"] = rule.failure_reason or "DeliveryFailure"
    request = urllib.request.Request(
        callback,
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()
        outcome: str | None = None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        # receiver down, refusing, or killed while answering (IncompleteRead)
        outcome = str(exc)
    with state.lock:
        record["deliveryStatus"] = rule.delivery_status
        record["deliveryReportError"] = outcome


@dataclass
class StandinHandle:
    """A running stand-in. ``stop()`` is idempotent and leaves no thread or socket open."""

    url: str
    state: StandinState
    _server: _Server
    _thread: threading.Thread

    def stop(self) -> None:
        if self.state.stopping.is_set():
            return
        self.state.stopping.set()  # wakes stalled requests and pending reports
        self._server.shutdown()
        self._server.server_close()  # joins handler threads
        self._thread.join()
        with self.state.lock:
            timers = list(self.state.timers)
        for timer in timers:
            timer.cancel()
            timer.join()

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_standin(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    username: str = DEFAULT_USERNAME,
    api_key: str = DEFAULT_API_KEY,
    delivery_callback: str | None = None,
    delivery_delay: float = 0.2,
    quiet: bool = True,
) -> StandinHandle:
    """Serve the stand-in on a background thread; ``port=0`` picks a free port."""
    state = StandinState(username, api_key, delivery_callback, delivery_delay)
    server = _Server((host, port), state, quiet)
    # A short poll interval makes stop() (shutdown) return in ~50 ms instead of 500.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="at-standin", daemon=True
    )
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return StandinHandle(f"http://{bound_host!s}:{bound_port}", state, server, thread)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local stand-in of Africa's Talking SMS/Insights")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--delivery-callback", default=None, help="URL for delivery reports")
    parser.add_argument("--delivery-delay", type=float, default=1.0, help="seconds")
    args = parser.parse_args(argv)
    handle = start_standin(
        args.port,
        args.host,
        username=args.username,
        api_key=args.api_key,
        delivery_callback=args.delivery_callback,
        delivery_delay=args.delivery_delay,
        quiet=False,
    )
    print(f"Africa's Talking stand-in on {handle.url} (username {args.username!r})", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
