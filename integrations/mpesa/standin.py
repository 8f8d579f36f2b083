"""A local M-Pesa Daraja stand-in for tests and the demo (stdlib HTTP server).

Speaks shared/GATEWAYS.md's wire formats: OAuth, STK push + query, C2B URL
registration, B2C, transaction status. A missing or invalid field gets Daraja's
error JSON, HTTP 400: ``{"requestId", "errorCode": "400.002.02", "errorMessage":
"Bad Request - Invalid <Field>"}``. Callbacks are POSTed on a background thread,
``delay`` seconds later, to the URL given in each request.

In process: ``with start_standin(port=0, delay=0) as daraja: ... daraja.url``.
CLI: ``python -m integrations.mpesa.standin --port 8702 --callback-base
http://127.0.0.1:8000`` (``--callback-base`` replaces the scheme, host and port
of every callback URL, so the app's public URLs still reach a local app).

Outcome rules, first match wins:

1. a per-number outcome set with ``/_control`` ``outcomes``;
2. a per-amount outcome set with ``/_control`` ``amount_outcomes``;
3. KES 13: the payment succeeds but its callback is never sent (a query shows it);
4. the phone number's last four digits —
   STK: 0001 → 1032 cancelled, 0002 → 1037 unreachable, 0003 → 2001 wrong PIN,
   0004 → 1 insufficient funds; B2C: 0004 → 1 account short of funds,
   0005 → 2040 unregistered customer;
5. success (0). Besides: a B2C or status query whose SecurityCredential does not
   decrypt to the initiator password (or with another initiator name) → 2001; a
   B2C the float can't cover → 1.

``POST /_control`` (JSON, every key optional, merged into the current state):
``delay`` (seconds until a transaction is final), ``late_seconds`` (further lag
before its callback), ``duplicate`` (send each callback N times, concurrently),
``never`` (send no callbacks), ``result_before_response`` (B2C: POST the result
before answering), ``expires_in`` (token lifetime, s), ``revoke_tokens``,
``hang_seconds`` (API calls other than OAuth stall that long, then are
handled; a reset or stop cuts the stall short with a 503), ``hang_next`` (a
list: stall only the next calls, e.g. ``[0.5]``), ``fail_next`` (statuses to
answer the next API calls with, unhandled, e.g. ``[503]``), ``outcomes``
(per number, for STK and B2C alike: ``{"+254712345678": 1032 | "never" |
{"code": 1032, "never": true}}``; ``"never"`` = success without a callback)
and ``amount_outcomes`` (the same, keyed by KES: ``{"250": 1037}``).

Also: ``GET /_log`` (API requests and callbacks sent), ``GET /_certificate``,
``POST /_simulate/c2b`` (``{"amount": "500.00", "bill_ref": "M00042", "msisdn":
"+2547…"}``: validation, then confirmation unless refused — an unreachable
validation URL follows the registered ResponseType; waits for both and returns
what happened), ``GET /_statement.csv`` (completed transactions in the org
portal's export format; one account holds collections and payouts) and
``POST /_reset``.

Where the documentation gives no code the stand-in uses its own: a duplicate
OriginatorConversationID is refused with 400.002.02, a status query about an
unknown transaction yields ResultCode 2032.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hmac
import io
import json
import logging
import re
import secrets
import signal
import string
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from core.payments.mpesa.rules import blocked_url_word
from integrations.mpesa.parse import NAIROBI, STATEMENT_COLUMNS, amount_to_cents, to_daraja_msisdn

log = logging.getLogger(__name__)

STK_RULES = {"0001": 1032, "0002": 1037, "0003": 2001, "0004": 1}
B2C_RULES = {"0004": 1, "0005": 2040}
NEVER_AMOUNT_KES = 13
DESCRIPTIONS = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    1032: "Request cancelled by user.",
    1037: "DS timeout user cannot be reached.",
    2001: "The initiator information is invalid.",
    2032: "Transaction not found (stand-in).",
    2040: "Credit party customer type can't be supported by the service.",
}
ACCEPTED = "Accept the service request successfully."
OAUTH_PATH = "/oauth/v1/generate"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Outcome = tuple[int, bool]  # (ResultCode, send the callback)
Reply = tuple[int, Any]  # (HTTP status, JSON-able body; a str is sent as text)
Check = Callable[[Any], bool]


def _is_phone(value: Any) -> bool:
    return re.fullmatch(r"254[17]\d{8}", str(value)) is not None


def _is_url(value: Any) -> bool:
    """An http(s) URL Daraja would accept: none with "M-Pesa"/"Safaricom" in any spelling."""
    text = str(value)
    return re.fullmatch(r"https?://\S+", text) is not None and blocked_url_word(text) is None


def _whole(low: int, high: int) -> Check:
    return lambda v: re.fullmatch(r"[0-9]+", str(v)) is not None and low <= int(str(v)) <= high


def _length(low: int, high: int) -> Check:
    return lambda v: low <= len(str(v)) <= high


def _one_of(*allowed: str) -> Check:
    return lambda v: str(v) in allowed


def _present(value: Any) -> bool:
    return True


def _invalid(body: dict[str, Any], checks: dict[str, Check]) -> str | None:
    """The first field that is missing, empty or fails its check."""
    return next(
        (k for k, ok in checks.items() if body.get(k) in (None, "") or not ok(body[k])), None
    )


def _items(name_key: str, pairs: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"Amount": 1.0, "Balance": None}`` → Daraja's ``[{"Name": .., "Value": ..}, {"Name": ..}]``."""
    return [{name_key: k} if v is None else {name_key: k, "Value": v} for k, v in pairs.items()]


def _outcome(spec: object) -> Outcome:
    if spec == "never":
        return 0, False
    if isinstance(spec, dict):
        return int(spec.get("code", 0)), not spec.get("never", False)
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec, True
    raise ValueError(f"bad outcome {spec!r}")


def _kes(cents: int, thousands: bool = True) -> str:
    return f"{Decimal(cents) / 100:,.2f}" if thousands else f"{Decimal(cents) / 100:.2f}"


def _local(when: datetime, fmt: str = "%Y%m%d%H%M%S") -> str:
    return when.astimezone(NAIROBI).strftime(fmt)


def _self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Daraja stand-in")])
    now = datetime.now(UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name)
    builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
    builder = builder.not_valid_before(now - timedelta(days=1))
    cert = builder.not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Controls:
    delay: float = 1.0
    late_seconds: float = 0.0
    duplicate: int = 1
    never: bool = False
    result_before_response: bool = False
    expires_in: int = 3599
    hang_seconds: float = 0.0
    hang_next: list[float] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    amount_outcomes: dict[int, Outcome] = field(default_factory=dict)


@dataclass
class Txn:
    kind: str  # "stk" | "c2b" | "b2c"
    key: str  # CheckoutRequestID / TransID / ConversationID
    originator_id: str  # MerchantRequestID / TransID / OriginatorConversationID
    msisdn: str
    amount_cents: int
    reference: str  # AccountReference / BillRefNumber / Remarks
    initiated: datetime
    result_code: int | None = None
    receipt: str | None = None
    completed: datetime | None = None
    balance_cents: int | None = None


class Standin:
    """State and behaviour, apart from HTTP: ``handle()`` answers one request."""

    def __init__(
        self,
        *,
        consumer_key: str = "standin-key",
        consumer_secret: str = "standin-secret",
        shortcode: str = "174379",
        passkey: str = "standin-passkey",
        b2c_shortcode: str = "600000",
        initiator_name: str = "standin-initiator",
        initiator_password: str = "Standin#2024",
        callback_base: str | None = None,
        delay: float = 1.0,
        expires_in: int = 3599,
        opening_balance_kes: int = 1_000_000,
    ) -> None:
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.shortcode, self.passkey, self.b2c_shortcode = shortcode, passkey, b2c_shortcode
        self.initiator_name, self.initiator_password = initiator_name, initiator_password
        self.callback_base = callback_base
        self._defaults = Controls(delay=delay, expires_in=expires_in)
        self._opening_cents = opening_balance_kes * 100
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.certificate_pem = _self_signed(self._key)
        self.lock = threading.RLock()
        self._workers: list[threading.Thread] = []
        self._counter = 0
        self.released = threading.Event()  # set by reset() and stop(): pending work gives up
        self.reset()

    def reset(self) -> None:
        """Forget everything but keys and options; callbacks still in flight are dropped."""
        with self.lock:
            self.released.set()
            self.released = threading.Event()
            self.controls = Controls(**asdict(self._defaults))
            self.tokens: dict[str, float] = {}  # token → expiry, epoch seconds
            self.txns: dict[str, Txn] = {}
            self.originator_ids: set[str] = set()
            self.receipts: set[str] = set()
            self.requests: list[dict[str, Any]] = []
            self.callbacks: list[dict[str, Any]] = []
            self.c2b_urls: dict[str, str] | None = None
            self.balance_cents = self._opening_cents

    # --- plumbing ---

    def _next(self) -> int:
        with self.lock:
            self._counter += 1
            return self._counter

    def _receipt(self) -> str:
        alphabet = string.ascii_uppercase + string.digits
        with self.lock:
            while True:
                tail = "".join(secrets.choice(alphabet) for _ in range(9))
                receipt = secrets.choice(string.ascii_uppercase) + tail
                if receipt not in self.receipts:
                    self.receipts.add(receipt)
                    return receipt

    def _error(self, status: int, code: str, message: str) -> Reply:
        body = {
            "requestId": f"{self._next()}-standin-1",
            "errorCode": code,
            "errorMessage": message,
        }
        return status, body

    def _bad(self, name: str) -> Reply:
        return self._error(400, "400.002.02", f"Bad Request - Invalid {name}")

    def spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        with self.lock:
            self._workers = [t for t in self._workers if t.is_alive()] + [thread]
        thread.start()

    def join_workers(self, timeout: float = 5.0) -> None:
        """Wait until every callback already scheduled has been sent (or given up)."""
        with self.lock:
            workers = list(self._workers)
        for thread in workers:
            thread.join(timeout)

    def close(self) -> None:
        """Release stalled requests and delayed callbacks, then wait for callback threads."""
        self.released.set()
        self.join_workers()

    def post_json(self, url: str, body: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """POST one callback and log it; returns the log entry."""
        if self.callback_base:
            base, parts = urlsplit(self.callback_base), urlsplit(url)
            url = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        entry: dict[str, Any] = {"kind": kind, "url": url, "body": body, "status": None}
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                entry["status"], entry["response"] = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                entry["status"], entry["response"] = exc.code, exc.read().decode("utf-8", "replace")
        except (OSError, ValueError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["at"] = datetime.now(UTC).isoformat()
        with self.lock:
            self.callbacks.append(entry)
        return entry

    def _deliver(
        self, url: str, body: Any, kind: str, copies: int, released: threading.Event
    ) -> list[Any]:
        """Send ``copies`` identical callbacks at once and wait for all of them."""
        if released.is_set():
            return []
        entries: list[Any] = [None] * max(1, copies)

        def send(i: int) -> None:
            entries[i] = self.post_json(url, body, kind)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(entries))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return entries

    def _finish(
        self,
        txn: Txn,
        outcome: Outcome,
        callback: Callable[[Txn], tuple[str, Any]],
        *,
        kind: str,
        wait: bool = True,
    ) -> None:
        """Make ``txn`` final after ``delay``; send its callback ``late_seconds`` later."""
        with self.lock:
            controls, released = self.controls, self.released
        if wait and released.wait(controls.delay):
            return
        with self.lock:
            if released.is_set():
                return
            self._complete(txn, outcome[0])
        if not outcome[1] or controls.never:
            return
        if wait and controls.late_seconds and released.wait(controls.late_seconds):
            return
        url, body = callback(txn)
        self._deliver(url, body, kind, controls.duplicate, released)

    def _complete(self, txn: Txn, code: int) -> None:
        if code == 0 and txn.kind == "b2c" and self.balance_cents < txn.amount_cents:
            code = 1
        txn.result_code, txn.completed = code, datetime.now(UTC)
        if code == 0:
            txn.receipt = txn.receipt or self._receipt()
            self.balance_cents += -txn.amount_cents if txn.kind == "b2c" else txn.amount_cents
            txn.balance_cents = self.balance_cents

    def _pick(self, kind: str, msisdn: str, amount_cents: int) -> Outcome:
        with self.lock:
            if msisdn in self.controls.outcomes:
                return self.controls.outcomes[msisdn]
            if amount_cents in self.controls.amount_outcomes:
                return self.controls.amount_outcomes[amount_cents]
        if amount_cents == NEVER_AMOUNT_KES * 100:
            return 0, False
        return (STK_RULES if kind == "stk" else B2C_RULES).get(msisdn[-4:], 0), True

    def _password_ok(self, body: dict[str, Any]) -> bool:
        raw = f"{body['BusinessShortCode']}{self.passkey}{body['Timestamp']}".encode()
        return hmac.compare_digest(str(body["Password"]), base64.b64encode(raw).decode())

    def _credential_ok(self, initiator: Any, credential: Any) -> bool:
        try:
            encrypted = base64.b64decode(str(credential), validate=True)
            secret = self._key.decrypt(encrypted, padding.PKCS1v15())
        except ValueError:
            return False
        password = self.initiator_password.encode()
        return str(initiator) == self.initiator_name and hmac.compare_digest(secret, password)

    # --- dispatch ---

    def handle(self, method: str, path: str, query: str, headers: Any, raw: bytes) -> Reply:
        routes: dict[tuple[str, str], Callable[[Any], Reply]] = {
            ("POST", "/mpesa/stkpush/v1/processrequest"): self._stk_push,
            ("POST", "/mpesa/stkpushquery/v1/query"): self._stk_query,
            ("POST", "/mpesa/c2b/v2/registerurl"): self._register,
            ("POST", "/mpesa/b2c/v3/paymentrequest"): self._b2c,
            ("POST", "/mpesa/transactionstatus/v1/query"): self._status,
            ("POST", "/_control"): self._control,
            ("POST", "/_reset"): self._reset,
            ("POST", "/_simulate/c2b"): self._simulate_c2b,
            ("GET", "/_log"): self._log,
            ("GET", "/_certificate"): lambda _: (200, self.certificate_pem.decode()),
            ("GET", "/_statement.csv"): lambda _: (200, self.statement_csv()),
        }
        if (method, path) == ("GET", OAUTH_PATH):
            with self.lock:
                self.requests.append({"method": method, "path": path})
            return self._oauth(parse_qs(query), headers)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return self._error(400, "400.002.01", "Invalid JSON payload")
        route = routes.get((method, path))
        if route is None:
            return self._error(404, "404.001.01", "Resource not found")
        if path.startswith("/_"):
            return route(body)
        with self.lock:
            self.requests.append({"method": method, "path": path, "body": body})
            c, released = self.controls, self.released
            fail = c.fail_next.pop(0) if c.fail_next else None
            hang = c.hang_next.pop(0) if c.hang_next else c.hang_seconds
        if hang and released.wait(hang):  # a reset or stop cuts the stall short
            return self._error(503, "503.001.01", "Service Unavailable")
        if fail is not None:
            return self._error(fail, f"{fail}.003.01", "Service Unavailable (stand-in)")
        token = str(headers.get("Authorization") or "").removeprefix("Bearer ")
        with self.lock:
            valid = self.tokens.get(token, 0.0) > datetime.now(UTC).timestamp()
        if not valid:
            return self._error(401, "404.001.03", "Invalid Access Token")
        return route(body) if isinstance(body, dict) else self._bad("payload")

    def _oauth(self, query: dict[str, list[str]], headers: Any) -> Reply:
        expected = base64.b64encode(f"{self.consumer_key}:{self.consumer_secret}".encode())
        given = str(headers.get("Authorization") or "").removeprefix("Basic ").encode()
        if query.get("grant_type") != ["client_credentials"]:
            return self._error(400, "400.008.02", "Invalid grant type passed")
        if not hmac.compare_digest(given, expected):
            return self._error(400, "400.008.01", "Invalid Authentication passed")
        token = secrets.token_urlsafe(24)
        with self.lock:
            lifetime = self.controls.expires_in
            self.tokens[token] = datetime.now(UTC).timestamp() + lifetime
        return 200, {"access_token": token, "expires_in": str(lifetime)}

    def _reset(self, _: Any) -> Reply:
        self.reset()
        return 200, {"reset": True}

    def _log(self, _: Any) -> Reply:
        with self.lock:
            return 200, {"requests": list(self.requests), "callbacks": list(self.callbacks)}

    # --- STK push ---

    def _stk_push(self, body: dict[str, Any]) -> Reply:
        paybill = _one_of(self.shortcode)
        invalid = _invalid(
            body,
            {
                "BusinessShortCode": paybill,
                "Password": _present,
                "Timestamp": lambda v: re.fullmatch(r"\d{14}", str(v)) is not None,
                "TransactionType": _one_of("CustomerPayBillOnline"),
                "Amount": _whole(1, 250_000),
                "PartyA": _is_phone,
                "PartyB": paybill,
                "PhoneNumber": _is_phone,
                "CallBackURL": _is_url,
                "AccountReference": _length(1, 12),
                "TransactionDesc": _length(1, 13),
            },
        )
        if invalid:
            return self._bad(invalid)
        if not self._password_ok(body):
            return self._error(500, "500.001.1001", "Wrong credentials")
        now, n = datetime.now(UTC), self._next()
        key, merchant = (
            f"ws_CO_{_local(now, '%d%m%Y%H%M%S')}{n:06d}",
            f"{n}-{secrets.randbelow(10**8)}-1",
        )
        phone, amount_cents = str(body["PhoneNumber"]), int(str(body["Amount"])) * 100
        txn = Txn("stk", key, merchant, phone, amount_cents, str(body["AccountReference"]), now)
        with self.lock:
            self.txns[key] = txn
        outcome, url = self._pick("stk", phone, amount_cents), str(body["CallBackURL"])
        self.spawn(
            lambda: self._finish(txn, outcome, lambda t: (url, self._stk_body(t)), kind="stk")
        )
        message = "Success. Request accepted for processing"
        return 200, {
            "MerchantRequestID": merchant,
            "CheckoutRequestID": key,
            "ResponseCode": "0",
            "ResponseDescription": message,
            "CustomerMessage": message,
        }

    def _stk_body(self, txn: Txn) -> dict[str, Any]:
        code = txn.result_code or 0
        callback: dict[str, Any] = {
            "MerchantRequestID": txn.originator_id,
            "CheckoutRequestID": txn.key,
            "ResultCode": code,
            "ResultDesc": DESCRIPTIONS.get(code, "Failed."),
        }
        if code == 0 and txn.completed:
            metadata = {
                "Amount": float(txn.amount_cents // 100),  # a JSON float (150.0), as Daraja sends
                "MpesaReceiptNumber": txn.receipt,
                "Balance": None,  # the documented item without a Value
                "TransactionDate": int(_local(txn.completed)),
                "PhoneNumber": int(txn.msisdn),  # a JSON number
            }
            callback["CallbackMetadata"] = {"Item": _items("Name", metadata)}
        return {"Body": {"stkCallback": callback}}

    def _stk_query(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            known = _one_of(*(k for k, t in self.txns.items() if t.kind == "stk"))
        invalid = _invalid(
            body,
            {
                "BusinessShortCode": _one_of(self.shortcode),
                "Password": _present,
                "Timestamp": _present,
                "CheckoutRequestID": known,
            },
        )
        if invalid:
            return self._bad(invalid)
        if not self._password_ok(body):
            return self._error(500, "500.001.1001", "Wrong credentials")
        with self.lock:
            txn = self.txns[str(body["CheckoutRequestID"])]
            code = txn.result_code
        if code is None:
            return self._error(500, "500.001.1001", "The transaction is being processed")
        return 200, {
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": txn.originator_id,
            "CheckoutRequestID": txn.key,
            "ResultCode": str(code),
            "ResultDesc": DESCRIPTIONS.get(code, "Failed."),
        }

    # --- C2B ---

    def _register(self, body: dict[str, Any]) -> Reply:
        invalid = _invalid(
            body,
            {
                "ShortCode": _one_of(self.shortcode),
                "ResponseType": _one_of("Completed", "Cancelled"),
                "ConfirmationURL": _is_url,
                "ValidationURL": _is_url,
            },
        )
        if invalid:
            return self._bad(invalid)
        with self.lock:
            self.c2b_urls = {
                k: str(body[k]) for k in ("ResponseType", "ConfirmationURL", "ValidationURL")
            }
        return 200, {
            "OriginatorCoversationID": f"{self._next()}-standin-1",
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        }

    def _simulate_c2b(self, body: Any) -> Reply:
        try:
            amount_cents = amount_to_cents(str(body["amount"]))
            msisdn, bill_ref = to_daraja_msisdn(str(body["msisdn"])), str(body.get("bill_ref", ""))
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"error": f"need amount, msisdn and bill_ref: {exc}"}
        with self.lock:
            urls, released, copies = self.c2b_urls, self.released, self.controls.duplicate
        if urls is None or amount_cents <= 0:
            return 400, {"error": "register the C2B URLs first; the amount must be positive"}
        now, trans_id = datetime.now(UTC), self._receipt()
        txn = Txn("c2b", trans_id, trans_id, msisdn, amount_cents, bill_ref, now, receipt=trans_id)
        payload = {
            "TransactionType": "Pay Bill",
            "TransID": trans_id,
            "TransTime": _local(now),
            "TransAmount": _kes(amount_cents, thousands=False),
            "BusinessShortCode": self.shortcode,
            "BillRefNumber": bill_ref,
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": f"{msisdn[:4]} ***** {msisdn[-3:]}",  # v2 masks the number
            "FirstName": str(body.get("first_name", "JANE")),
            "MiddleName": "",
            "LastName": "",
        }
        validation = self.post_json(urls["ValidationURL"], payload, "c2b_validation", timeout=8.0)
        try:
            answer = json.loads(validation.get("response") or "null")
            verdict = answer.get("ResultCode") if validation["status"] == 200 else None
        except (ValueError, AttributeError):
            verdict = None
        # Unreachable or garbled validation: the registered ResponseType decides.
        completed = urls["ResponseType"] == "Completed" if verdict is None else str(verdict) == "0"
        confirmations: list[Any] = []
        if completed:
            with self.lock:
                self.txns[trans_id] = txn
                self._complete(txn, 0)
                payload["OrgAccountBalance"] = _kes(self.balance_cents, thousands=False)
            url = urls["ConfirmationURL"]
            confirmations = self._deliver(url, payload, "c2b_confirmation", copies, released)
        return 200, {
            "TransID": trans_id,
            "validation": validation,
            "completed": completed,
            "confirmations": confirmations,
        }

    # --- B2C and transaction status ---

    def _b2c(self, body: dict[str, Any]) -> Reply:
        invalid = _invalid(
            body,
            {
                "OriginatorConversationID": _present,
                "InitiatorName": _present,
                "SecurityCredential": _present,
                "CommandID": _one_of("BusinessPayment", "SalaryPayment", "PromotionPayment"),
                "Amount": _whole(10, 250_000),
                "PartyA": _one_of(self.b2c_shortcode),
                "PartyB": _is_phone,
                "Remarks": _length(2, 100),
                "QueueTimeOutURL": _is_url,
                "ResultURL": _is_url,
            },
        )
        if invalid:
            return self._bad(invalid)
        ocid, now = str(body["OriginatorConversationID"]), datetime.now(UTC)
        with self.lock:
            if ocid in self.originator_ids:
                return self._error(
                    400, "400.002.02", "Bad Request - Duplicate OriginatorConversationID"
                )
            self.originator_ids.add(ocid)
            before_response = self.controls.result_before_response
        key, phone = f"AG_{now:%Y%m%d}_{secrets.token_hex(10)}", str(body["PartyB"])
        txn = Txn(
            "b2c", key, ocid, phone, int(str(body["Amount"])) * 100, str(body["Remarks"]), now
        )
        with self.lock:
            self.txns[key] = txn
        if self._credential_ok(body["InitiatorName"], body["SecurityCredential"]):
            outcome = self._pick("b2c", phone, txn.amount_cents)
        else:
            outcome = (2001, True)
        url, timeout_url = str(body["ResultURL"]), str(body["QueueTimeOutURL"])

        def finish(wait: bool) -> None:
            self._finish(
                txn,
                outcome,
                lambda t: (url, self._b2c_body(t, timeout_url)),
                kind="b2c_result",
                wait=wait,
            )

        if before_response:
            finish(wait=False)  # the result reaches the app before this answer does
        else:
            self.spawn(lambda: finish(wait=True))
        return 200, {
            "ConversationID": key,
            "OriginatorConversationID": ocid,
            "ResponseCode": "0",
            "ResponseDescription": ACCEPTED,
        }

    @staticmethod
    def _result(
        code: int, ocid: str, cid: str, tid: str, params: dict[str, Any], ref: dict[str, Any]
    ) -> Any:
        result: dict[str, Any] = {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": DESCRIPTIONS.get(code, "Failed."),
            "OriginatorConversationID": ocid,
            "ConversationID": cid,
            "TransactionID": tid,
        }
        if params:  # failures carry no ResultParameters
            result["ResultParameters"] = {"ResultParameter": _items("Key", params)}
        result["ReferenceData"] = {"ReferenceItem": ref}
        return {"Result": result}

    def _b2c_body(self, txn: Txn, timeout_url: str) -> Any:
        params: dict[str, Any] = {}
        if txn.result_code == 0 and txn.completed:
            params = {
                "TransactionAmount": txn.amount_cents // 100,
                "TransactionReceipt": txn.receipt,
                "B2CRecipientIsRegisteredCustomer": "Y",
                "B2CChargesPaidAccountAvailableFunds": 0.0,
                "ReceiverPartyPublicName": f"{txn.msisdn} - JOHN DOE",
                "TransactionCompletedDateTime": _local(txn.completed, "%d.%m.%Y %H:%M:%S"),
                "B2CUtilityAccountAvailableFunds": float(Decimal(txn.balance_cents or 0) / 100),
            }
        ref = {"Key": "QueueTimeoutURL", "Value": timeout_url}
        return self._result(
            txn.result_code or 0, txn.originator_id, txn.key, txn.receipt or "", params, ref
        )

    def _status(self, body: dict[str, Any]) -> Reply:
        invalid = _invalid(
            body,
            {
                "Initiator": _present,
                "SecurityCredential": _present,
                "CommandID": _one_of("TransactionStatusQuery"),
                "PartyA": _present,
                "IdentifierType": _present,
                "ResultURL": _is_url,
                "QueueTimeOutURL": _is_url,
                "Remarks": _present,
            },
        )
        wanted = {
            str(body.get("TransactionID") or ""),
            str(body.get("OriginalConversationID") or ""),
        } - {""}
        if invalid or not wanted:
            return self._bad(invalid or "TransactionID")
        now = datetime.now(UTC)
        ocid, cid = f"{self._next()}-standin-1", f"AG_{now:%Y%m%d}_{secrets.token_hex(10)}"
        ok = self._credential_ok(body["Initiator"], body["SecurityCredential"])
        url, ref = (
            str(body["ResultURL"]),
            {"Key": "Occasion", "Value": str(body.get("Occasion") or "")},
        )
        with self.lock:
            released, delay = self.released, self.controls.delay
            txn = next(
                (t for t in self.txns.values() if wanted & {t.key, t.originator_id, t.receipt}),
                None,
            )

        def send() -> None:
            if released.wait(delay):
                return
            with self.lock:
                code = 2001 if not ok else 2032 if txn is None else 0
                params = self._status_params(txn) if ok and txn is not None else {}
            self._deliver(
                url, self._result(code, ocid, cid, "", params, ref), "status_result", 1, released
            )

        self.spawn(send)
        return 200, {
            "OriginatorConversationID": ocid,
            "ConversationID": cid,
            "ResponseCode": "0",
            "ResponseDescription": ACCEPTED,
        }

    def _status_params(self, txn: Txn) -> dict[str, Any]:
        payout = txn.kind == "b2c"
        ours = f"{self.b2c_shortcode if payout else self.shortcode} - Stand-in SACCO"
        theirs = f"{txn.msisdn} - JOHN DOE"
        status = {None: "Pending", 0: "Completed"}.get(txn.result_code, "Failed")
        return {
            "DebitPartyName": ours if payout else theirs,
            "CreditPartyName": theirs if payout else ours,
            "OriginatorConversationID": txn.originator_id,
            "InitiatedTime": int(_local(txn.initiated)),
            "TransactionReason": None,
            "ReasonType": "Business Payment to Customer via API" if payout else "Pay Bill Online",
            "TransactionStatus": status,
            "Amount": float(Decimal(txn.amount_cents) / 100),
            "ConversationID": txn.key,
            "ReceiptNo": txn.receipt or "",
            "FinalisedTime": int(_local(txn.completed)) if txn.completed else None,
        }

    # --- control and statement ---

    def _control(self, body: Any) -> Reply:
        try:
            with self.lock:
                c = self.controls
                for name, kind in (
                    ("delay", float),
                    ("late_seconds", float),
                    ("hang_seconds", float),
                    ("duplicate", int),
                    ("expires_in", int),
                    ("never", bool),
                    ("result_before_response", bool),
                ):
                    if name in body:
                        setattr(c, name, kind(body[name]))
                c.fail_next.extend(int(status) for status in body.get("fail_next", []))
                c.hang_next.extend(float(seconds) for seconds in body.get("hang_next", []))
                for k, v in body.get("outcomes", {}).items():
                    c.outcomes[to_daraja_msisdn(k)] = _outcome(v)
                for k, v in body.get("amount_outcomes", {}).items():
                    c.amount_outcomes[amount_to_cents(str(k))] = _outcome(v)
                if body.get("revoke_tokens"):
                    self.tokens.clear()
                shown = {k: v for k, v in asdict(c).items() if not k.endswith("outcomes")}
                return 200, shown
        except (TypeError, ValueError, AttributeError) as exc:
            return 400, {"error": f"bad control: {exc}"}

    def statement_csv(self) -> str:
        """Completed transactions in the org portal's export format, preamble included."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerows(
            [
                ["Account Holder:", "Stand-in SACCO"],
                ["Short Code:", self.shortcode],
                ["Time Period:", f"Up to {_local(datetime.now(UTC), '%d-%m-%Y %H:%M:%S')}"],
                [],
                STATEMENT_COLUMNS,
            ]
        )
        reasons = {
            "stk": "Pay Bill Online",
            "c2b": "Pay Bill",
            "b2c": "Business Payment to Customer via API",
        }
        with self.lock:
            done = [
                t for t in self.txns.values() if t.result_code == 0 and t.completed and t.receipt
            ]
            for t in sorted(done, key=lambda t: (t.completed, t.balance_cents)):
                assert t.completed is not None and t.balance_cents is not None
                payout, masked = t.kind == "b2c", f"{t.msisdn[:6]}***{t.msisdn[-3:]}"
                details = (
                    f"Business Payment to {masked}"
                    if payout
                    else f"{reasons[t.kind]} from {masked} Acc. {t.reference}"
                )
                paid_in, withdrawn = (
                    ("", f"-{_kes(t.amount_cents)}") if payout else (_kes(t.amount_cents), "")
                )
                writer.writerow(
                    [
                        t.receipt,
                        _local(t.completed, "%d-%m-%Y %H:%M:%S"),
                        _local(t.initiated, "%d-%m-%Y %H:%M:%S"),
                        details,
                        "Completed",
                        paid_in,
                        withdrawn,
                        _kes(t.balance_cents),
                        "true",
                        reasons[t.kind],
                        f"{masked} - JOHN DOE",
                        "",
                        "" if payout else t.reference,
                    ]
                )
        return out.getvalue()


# --- HTTP shell ---------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: Standin) -> None:
        super().__init__(address, _Handler)
        self.standin = standin

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # the caller gave up waiting
            log.debug("standin: %s went away before the answer", client_address)
        else:
            log.exception("standin: error answering %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("standin: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        assert isinstance(self.server, _Server)
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, body = self.server.standin.handle(
                method, parts.path, parts.query, self.headers, raw
            )
        except Exception:  # a stand-in bug: answer like Daraja's own internal error
            log.exception("standin: failed on %s %s", method, parts.path)
            status, body = 500, {"errorCode": "500.003.1001", "errorMessage": "Internal error"}
        if isinstance(body, str):
            kind = "text/csv" if parts.path.endswith(".csv") else "text/plain"
            data, content_type = body.encode(), f"{kind}; charset=utf-8"
        else:
            data, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class StandinHandle:
    url: str
    state: Standin
    _server: _Server
    _thread: threading.Thread

    @property
    def certificate_pem(self) -> bytes:
        return self.state.certificate_pem

    def stop(self) -> None:
        """Stop serving, release stalled requests, wait for callback threads."""
        self.state.released.set()  # stalled requests and delayed callbacks give up
        self._server.shutdown()
        self._server.server_close()  # waits for request threads
        self._thread.join()
        self.state.close()  # waits for callback threads

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_standin(port: int = 0, host: str = "127.0.0.1", **options: Any) -> StandinHandle:
    """Serve on a background thread (``port=0`` picks a free port); options go to ``Standin``."""
    server = _Server((host, port), Standin(**options))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return StandinHandle(
        f"http://{host}:{server.server_address[1]}", server.standin, server, thread
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local M-Pesa Daraja stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--callback-base", help="deliver callbacks to this origin instead")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before a callback")
    parser.add_argument("--certificate-out", help="write the certificate PEM (for B2C) here")
    parser.add_argument(
        "--outcome",
        action="append",
        default=[],
        metavar="NUMBER=CODE",
        help="fixed outcome for one phone (e.g. +254712000001=0 so a demo member whose "
        "number ends 0001 pays instead of cancelling); repeatable",
    )
    names = (
        "consumer_key",
        "consumer_secret",
        "shortcode",
        "passkey",
        "b2c_shortcode",
        "initiator_name",
        "initiator_password",
    )
    for name in names:
        parser.add_argument("--" + name.replace("_", "-"))
    args = parser.parse_args(argv)
    options = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    handle = start_standin(
        args.port, args.host, callback_base=args.callback_base, delay=args.delay, **options
    )
    outcomes = dict(item.split("=", 1) for item in args.outcome)
    if outcomes:
        status, answer = handle.state.handle(
            "POST",
            "/_control",
            "",
            {},
            json.dumps({"outcomes": {k: int(v) for k, v in outcomes.items()}}).encode(),
        )
        if status != 200:
            handle.stop()
            raise SystemExit(f"--outcome: {answer}")
    if args.certificate_out:
        with open(args.certificate_out, "wb") as fh:
            fh.write(handle.certificate_pem)
    state = handle.state
    print(
        f"Daraja stand-in on {handle.url}: paybill {state.shortcode}, B2C {state.b2c_shortcode}, "
        f"consumer key {state.consumer_key!r}; Ctrl-C or SIGTERM stops",
        flush=True,
    )
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
