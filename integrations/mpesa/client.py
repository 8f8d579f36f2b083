"""M-Pesa Daraja client: OAuth, STK push and query, C2B URL registration, B2C, status.

The wire formats are shared/GATEWAYS.md's. Nothing from ``requests`` leaks out:
every failure is a ``DarajaError`` (see the tree below); local validation of
our own arguments (a non-whole-shilling amount, a bad phone number) raises
``ValueError`` before anything is sent.

Retry policy: retry only where a second request cannot cause a second effect.

* Every call has a (connect, read) timeout from ``DarajaConfig``.
* A request that never left (connection refused, DNS failure, connect
  timeout) is retried by every call: Daraja never saw it.
* OAuth, STK query, C2B URL registration and transaction-status queries are
  also retried after read timeouts, dropped connections and 5xx answers:
  they move no money (a repeated status query at worst yields a second result
  callback, which the app processes idempotently anyway).
* B2C is retried only when the request never left (as STK push), with the SAME
  ``OriginatorConversationID``. After a read timeout, a dropped connection or a
  5xx the payment may have been made, and that Daraja refuses a repeated
  ``OriginatorConversationID`` is not confirmed: a second request could pay
  twice for one debit. The client raises ``DarajaUnavailable(retryable=False,
  may_have_taken_effect=True)``; the caller must keep the hold and reconcile
  (result callback, ``transaction_status(original_conversation_id=...)``, staff
  with the statement), never release the money or send again on that error
  alone. A call made after such an error (``resent=True``) reports a refusal as
  ``DarajaUnavailable(code="outcome_unknown", may_have_taken_effect=True)``
  rather than ``DarajaRejected``: "refused" may then mean "already paid".
* STK push is retried only when the request never left. After a read timeout,
  a dropped connection or a 5xx the member may already have a PIN prompt, and a
  second prompt would confuse them: the client raises ``DarajaUnavailable``
  with ``retryable=False, may_have_taken_effect=True``. A callback may still
  arrive for a CheckoutRequestID we never learnt; the app should match it by
  phone and amount to the pending request, or park it in suspense.
* A 401 (or Daraja's ``404.001.03`` "Invalid Access Token") on an API call
  refreshes the token once and repeats the call: a refused token means Daraja
  did nothing.
* Daraja reports some business refusals as HTTP 500 with an ``errorCode`` in
  ``500.001.*`` (e.g. "The transaction is being processed", "Wrong
  credentials"): those are answers (``DarajaRejected``, or ``pending`` for an
  STK query), not outages, and are not retried.

Tokens are cached per client and shared by threads; one thread refreshes while
the others wait, ``token_margin_seconds`` before expiry (or half-way through a
token's life when that is shorter).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from core.payments.mpesa.rules import blocked_url_word
from integrations.mpesa.parse import NAIROBI, to_daraja_msisdn

log = logging.getLogger(__name__)

B2C_MIN_KES = 10
B2C_MAX_KES = 250_000
STK_PENDING_ERROR = "500.001.1001"
INVALID_TOKEN_ERROR = "404.001.03"


# --- errors ------------------------------------------------------------------


class DarajaError(Exception):
    """Base of every error the client raises after trying to talk to Daraja.

    ``code`` is Daraja's ``errorCode``/``ResponseCode`` when it gave one, else
    ours (``timeout``, ``connection_error``, ``http_503``, ``bad_response``,
    ``outcome_unknown``). ``retryable``: the same call may be repeated later
    without risk of a double effect. ``may_have_taken_effect``: Daraja may have
    acted on the request although we have no answer.
    """

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool = False,
        *,
        may_have_taken_effect: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.may_have_taken_effect = may_have_taken_effect


class DarajaAuthError(DarajaError):
    """Our consumer key/secret (or a token) was refused. Configuration, not luck."""


class DarajaRejected(DarajaError):
    """Daraja answered and refused the request; nothing happened."""


class DarajaUnavailable(DarajaError):
    """No usable answer: timeout, connection error, 5xx or garbage."""


# --- configuration and results ----------------------------------------------


# Where Daraja calls us: a path without the words Daraja filters out of callback URLs.
CALLBACK_PREFIX = "/hooks/mobile"


@dataclass(frozen=True, slots=True)
class CallbackUrls:
    """Where Daraja should call us back. Build with ``under()`` or give each URL."""

    stk: str = ""
    c2b_validation: str = ""
    c2b_confirmation: str = ""
    b2c_result: str = ""
    b2c_timeout: str = ""
    status_result: str = ""
    status_timeout: str = ""

    @classmethod
    def under(cls, base_url: str, token: str) -> CallbackUrls:
        """The app's callback routes under a public base, secret in ``?token=``.

        The routes given to Daraja are the neutral ``/hooks/mobile/...`` ones:
        Safaricom filters out callback URLs containing "M-Pesa", "MPesa" or
        "Safaricom" in any case or spelling (``core.payments.mpesa.rules.blocked_url_word``), so the
        ``/mpesa/...`` routes named in the design are served too but never
        registered. A base URL with such a word is refused here, loudly.
        """
        base = base_url.rstrip("/")
        if word := blocked_url_word(base):
            raise ValueError(
                f"callback base URL {base!r} contains {word!r}, "
                "which Daraja refuses in callback URLs: use another host name or path"
            )

        def url(path: str) -> str:
            path = CALLBACK_PREFIX + path
            return f"{base}{path}?token={token}" if token else f"{base}{path}"

        return cls(
            stk=url("/stk/callback"),
            c2b_validation=url("/c2b/validation"),
            c2b_confirmation=url("/c2b/confirmation"),
            b2c_result=url("/b2c/result"),
            b2c_timeout=url("/b2c/timeout"),
            status_result=url("/status/result"),
            status_timeout=url("/status/timeout"),
        )


@dataclass(frozen=True, slots=True)
class DarajaConfig:
    base_url: str
    consumer_key: str
    consumer_secret: str = field(repr=False)
    shortcode: str  # paybill: STK push and C2B
    passkey: str = field(repr=False)
    b2c_shortcode: str = ""
    initiator_name: str = ""
    initiator_password: str = field(default="", repr=False)
    certificate_pem: bytes | str = field(default=b"", repr=False)
    security_credential: str = field(default="", repr=False)  # precomputed; wins if set
    callbacks: CallbackUrls = field(default_factory=CallbackUrls)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    token_margin_seconds: float = 60.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 0.5


@dataclass(frozen=True, slots=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    customer_message: str


@dataclass(frozen=True, slots=True)
class StkQueryResult:
    result_code: int | None
    result_desc: str
    pending: bool


@dataclass(frozen=True, slots=True)
class B2CAccepted:
    conversation_id: str
    originator_conversation_id: str


@dataclass(frozen=True, slots=True)
class StatusQueryAccepted:
    conversation_id: str
    originator_conversation_id: str


class _Retry(Enum):
    READ = "read"  # OAuth, queries, URL registration: no money moves
    # B2C: retried (same OriginatorConversationID) only if the request never left; a
    # refusal after an attempt that may have arrived is "outcome unknown", not "not paid"
    SAME_ID = "same_id"
    UNSENT_ONLY = "unsent_only"  # STK push: a second prompt would confuse the member


class _TokenRefused(Exception):
    pass


@dataclass(slots=True)
class _Trace:
    """Whether some attempt of this logical request may have reached Daraja."""

    maybe_arrived: bool = False


# --- argument checks (pure) --------------------------------------------------


def whole_shillings(amount_cents: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Cents → whole shillings for Daraja; refuses what is not whole or out of range."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise TypeError("amount_cents must be an int")
    if amount_cents % 100:
        raise ValueError("Daraja takes whole shillings only: round before calling")
    shillings = amount_cents // 100
    if shillings < minimum or (maximum is not None and shillings > maximum):
        raise ValueError(f"amount KES {shillings} outside {minimum}..{maximum or 'any'}")
    return shillings


def daraja_text(text: str, limit: int) -> str:
    """Printable ASCII (accents folded, the rest dropped), spaces squeezed, at most ``limit``."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    printable = "".join(ch if ch.isprintable() else " " for ch in folded)
    return " ".join(printable.split())[:limit].rstrip()


def _account_reference(reference: str) -> str:
    cleaned = daraja_text(reference, 100)
    if not cleaned or len(cleaned) > 12:
        raise ValueError("AccountReference must be 1..12 printable ASCII characters")
    return cleaned


def load_certificate_key(certificate: bytes | str) -> rsa.RSAPublicKey:
    """The RSA public key of Safaricom's certificate (PEM, or DER as some .cer files are)."""
    data = certificate.encode() if isinstance(certificate, str) else certificate
    cert = (
        x509.load_pem_x509_certificate(data)
        if data.lstrip().startswith(b"-----BEGIN")
        else x509.load_der_x509_certificate(data)
    )
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the certificate does not hold an RSA key")
    return key


def security_credential(key: rsa.RSAPublicKey, initiator_password: str) -> str:
    """base64(RSA PKCS#1 v1.5 encryption of the initiator password): Daraja's SecurityCredential."""
    return base64.b64encode(key.encrypt(initiator_password.encode(), padding.PKCS1v15())).decode()


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.SSLError
    ):
        reason: object = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError wraps the cause
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


def _error_fields(body: object) -> tuple[str, str] | None:
    if isinstance(body, Mapping) and body.get("errorCode"):
        return str(body["errorCode"]), str(body.get("errorMessage") or "")
    return None


def _accepted(body: Mapping[str, Any], *keys: str) -> list[str]:
    """Check ``ResponseCode == "0"`` and pull the given keys out as strings."""
    code = str(body.get("ResponseCode", "")).strip()
    if code != "0":
        desc = str(body.get("ResponseDescription") or body.get("CustomerMessage") or "")
        raise DarajaRejected(code or "no_response_code", desc)
    values = []
    for key in keys:
        value = body.get(key)
        if value in (None, ""):
            raise DarajaUnavailable(
                "bad_response", f"accepted answer without {key}", may_have_taken_effect=True
            )
        values.append(str(value))
    return values


# --- the client --------------------------------------------------------------


class DarajaClient:
    """Thread-safe Daraja client. Share one per process; ``close()`` when done."""

    def __init__(
        self,
        config: DarajaConfig,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._base = config.base_url.rstrip("/")
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        # Loaded now so that a wrong certificate fails at start-up, not at the first payout.
        self._public_key = (
            load_certificate_key(config.certificate_pem)
            if config.certificate_pem and not config.security_credential
            else None
        )

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> DarajaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public API ---

    def stk_push(
        self,
        msisdn: str,
        amount_cents: int,
        account_reference: str,
        description: str,
        callback_url: str | None = None,
    ) -> StkPushAccepted:
        """Send the member a PIN prompt. Result arrives at ``callback_url``."""
        phone = to_daraja_msisdn(msisdn)
        payload = {
            **self._stk_password(),
            "BusinessShortCode": self._config.shortcode,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": whole_shillings(amount_cents),
            "PartyA": phone,
            "PartyB": self._config.shortcode,
            "PhoneNumber": phone,
            "CallBackURL": self._url(callback_url, self._config.callbacks.stk),
            "AccountReference": _account_reference(account_reference),
            "TransactionDesc": daraja_text(description, 13) or "Payment",
        }
        body = self._post("/mpesa/stkpush/v1/processrequest", payload, _Retry.UNSENT_ONLY)
        merchant, checkout = _accepted(body, "MerchantRequestID", "CheckoutRequestID")
        return StkPushAccepted(merchant, checkout, str(body.get("CustomerMessage") or ""))

    def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask for an STK push's outcome. ``pending`` while the member hasn't finished."""
        payload = {
            **self._stk_password(),
            "BusinessShortCode": self._config.shortcode,
            "CheckoutRequestID": checkout_request_id,
        }
        try:
            body = self._post("/mpesa/stkpushquery/v1/query", payload, _Retry.READ)
        except DarajaRejected as exc:
            if exc.code == STK_PENDING_ERROR:
                return StkQueryResult(None, exc.message, pending=True)
            raise
        _accepted(body)
        raw = str(body.get("ResultCode", "")).strip()
        desc = str(body.get("ResultDesc") or "")
        if not raw.lstrip("-").isdigit():
            return StkQueryResult(None, desc, pending=True)
        return StkQueryResult(int(raw), desc, pending=False)

    def register_c2b_urls(
        self,
        confirmation_url: str | None = None,
        validation_url: str | None = None,
        response_type: str = "Completed",
    ) -> None:
        """Register where paybill payments are validated and confirmed (v2: masked MSISDN).

        ``response_type`` is what M-Pesa does when validation is unreachable.
        """
        if response_type not in ("Completed", "Cancelled"):
            raise ValueError("response_type must be 'Completed' or 'Cancelled'")
        payload = {
            "ShortCode": self._config.shortcode,
            "ResponseType": response_type,
            "ConfirmationURL": self._url(confirmation_url, self._config.callbacks.c2b_confirmation),
            "ValidationURL": self._url(validation_url, self._config.callbacks.c2b_validation),
        }
        _accepted(self._post("/mpesa/c2b/v2/registerurl", payload, _Retry.READ))

    def b2c_payment(
        self,
        originator_conversation_id: str,
        msisdn: str,
        amount_cents: int,
        remarks: str,
        occasion: str = "",
        result_url: str | None = None,
        queue_timeout_url: str | None = None,
        *,
        resent: bool = False,
    ) -> B2CAccepted:
        """Pay out to a phone, once: retried only if the request never left. Keep
        ``originator_conversation_id`` unique; that Daraja refuses a repeat is not
        confirmed, so nothing here relies on it.

        ``resent=True`` says an earlier call with this id may have reached Daraja
        (it raised with ``may_have_taken_effect``): a refusal then means "maybe
        already paid" and raises ``DarajaUnavailable("outcome_unknown")`` rather
        than ``DarajaRejected``.
        """
        if not originator_conversation_id.strip():
            raise ValueError("originator_conversation_id is required")
        note = daraja_text(remarks, 100)
        if len(note) < 2:
            raise ValueError("Remarks must have 2..100 characters")
        payload = {
            "OriginatorConversationID": originator_conversation_id,
            "InitiatorName": self._config.initiator_name,
            "SecurityCredential": self._credential(),
            "CommandID": "BusinessPayment",
            "Amount": whole_shillings(amount_cents, minimum=B2C_MIN_KES, maximum=B2C_MAX_KES),
            "PartyA": self._config.b2c_shortcode,
            "PartyB": to_daraja_msisdn(msisdn),
            "Remarks": note,
            "QueueTimeOutURL": self._url(queue_timeout_url, self._config.callbacks.b2c_timeout),
            "ResultURL": self._url(result_url, self._config.callbacks.b2c_result),
            "Occassion": daraja_text(occasion, 100),  # sic: Safaricom's spelling
        }
        trace = _Trace(maybe_arrived=resent)
        body = self._post("/mpesa/b2c/v3/paymentrequest", payload, _Retry.SAME_ID, trace)
        conversation, originator = _accepted(body, "ConversationID", "OriginatorConversationID")
        return B2CAccepted(conversation, originator)

    def transaction_status(
        self,
        transaction_id: str | None = None,
        original_conversation_id: str | None = None,
        result_url: str | None = None,
        queue_timeout_url: str | None = None,
        *,
        shortcode: str | None = None,
        remarks: str = "Status check",
        occasion: str = "",
    ) -> StatusQueryAccepted:
        """Ask for a transaction's status by receipt or by original conversation id.

        The answer arrives at ``result_url``. ``shortcode`` defaults to the B2C
        shortcode; pass the paybill to ask about a payment received.
        """
        if not (transaction_id or original_conversation_id):
            raise ValueError("give transaction_id or original_conversation_id")
        payload: dict[str, Any] = {
            "Initiator": self._config.initiator_name,
            "SecurityCredential": self._credential(),
            "CommandID": "TransactionStatusQuery",
            "PartyA": shortcode or self._config.b2c_shortcode or self._config.shortcode,
            "IdentifierType": "4",
            "ResultURL": self._url(result_url, self._config.callbacks.status_result),
            "QueueTimeOutURL": self._url(queue_timeout_url, self._config.callbacks.status_timeout),
            "Remarks": daraja_text(remarks, 100) or "Status check",
            "Occasion": daraja_text(occasion, 100),
        }
        if transaction_id:
            payload["TransactionID"] = transaction_id
        if original_conversation_id:
            payload["OriginalConversationID"] = original_conversation_id
        body = self._post("/mpesa/transactionstatus/v1/query", payload, _Retry.READ)
        conversation, originator = _accepted(body, "ConversationID", "OriginatorConversationID")
        return StatusQueryAccepted(conversation, originator)

    # --- credentials ---

    def _stk_password(self) -> dict[str, str]:
        timestamp = self._now().astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")
        raw = f"{self._config.shortcode}{self._config.passkey}{timestamp}".encode()
        return {"Password": base64.b64encode(raw).decode(), "Timestamp": timestamp}

    def _credential(self) -> str:
        if self._config.security_credential:
            return self._config.security_credential
        if self._public_key is None:
            raise ValueError("B2C and status queries need certificate_pem or security_credential")
        return security_credential(self._public_key, self._config.initiator_password)

    @staticmethod
    def _url(given: str | None, configured: str) -> str:
        url = given or configured
        if not url:
            raise ValueError("no callback URL given or configured")
        return url

    def access_token(self, stale: str | None = None) -> str:
        """A valid token; fetched once and shared. ``stale``: the token Daraja just refused."""
        with self._token_lock:
            fresh = self._token is not None and self._clock() < self._refresh_at
            if fresh and (stale is None or self._token != stale):
                assert self._token is not None
                return self._token
            status, body = self._send(
                "GET",
                "/oauth/v1/generate",
                _Retry.READ,
                _Trace(),
                params={"grant_type": "client_credentials"},
                auth=(self._config.consumer_key, self._config.consumer_secret),
            )
            token = body.get("access_token") if status == 200 else None
            if not isinstance(token, str) or not token:
                fields = _error_fields(body) or (f"http_{status}", "no access_token in answer")
                raise DarajaAuthError(*fields)
            try:
                lifetime = float(str(body.get("expires_in", "3599")))
            except ValueError:
                lifetime = 3599.0
            margin = min(self._config.token_margin_seconds, lifetime / 2)
            self._token, self._refresh_at = token, self._clock() + lifetime - margin
            log.info("daraja token refreshed, valid %.0fs", lifetime)
            return token

    # --- HTTP ---

    def _post(
        self, path: str, payload: Mapping[str, Any], policy: _Retry, trace: _Trace | None = None
    ) -> dict[str, Any]:
        trace = trace or _Trace()
        token = self.access_token()
        try:
            return self._api(path, payload, policy, trace, token)
        except _TokenRefused:
            log.info("daraja refused our token on %s; refreshing once", path)
        try:
            return self._api(path, payload, policy, trace, self.access_token(stale=token))
        except _TokenRefused:
            raise DarajaAuthError("401", "token refused twice") from None

    def _api(
        self, path: str, payload: Mapping[str, Any], policy: _Retry, trace: _Trace, token: str
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        status, body = self._send("POST", path, policy, trace, json=payload, headers=headers)
        error = _error_fields(body)
        if _token_refused(status, error):
            raise _TokenRefused
        if status == 403:
            raise DarajaAuthError(*(error or ("http_403", "forbidden")))
        if error:
            raise DarajaRejected(*error)
        if status >= 400:
            raise DarajaRejected(f"http_{status}", json.dumps(body)[:200])
        return body

    def _send(
        self, method: str, path: str, policy: _Retry, trace: _Trace, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        """One call with retries per ``policy``; returns (status, JSON object) or raises.

        Answers are a 4xx, a 2xx with a JSON object, or a 5xx carrying a
        ``500.001.*`` business code; anything else (other 5xx, timeouts,
        connection errors, a 2xx without JSON) is an outage.
        """
        url = self._base + path
        timeout = (self._config.connect_timeout, self._config.read_timeout)
        attempts = max(1, self._config.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                with self._session.request(method, url, timeout=timeout, **kwargs) as response:
                    status, text = response.status_code, response.text
            except requests.RequestException as exc:
                unsent = _never_sent(exc)
                code = "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
                failure = f"{method} {path}: {type(exc).__name__}"
            else:
                body = _json_object(text)
                error = _error_fields(body)
                business = error is not None and error[0].startswith("500.001.")
                if 400 <= status < 500 or (status < 400 and body is not None) or business:
                    refused = bool(error) or status >= 400
                    if (
                        policy is _Retry.SAME_ID
                        and trace.maybe_arrived
                        and refused
                        and not _token_refused(status, error)
                    ):
                        raise DarajaUnavailable(
                            "outcome_unknown",
                            f"{path}: an earlier attempt may have arrived, retry answered "
                            f"{error or status}",
                            retryable=False,
                            may_have_taken_effect=True,
                        )
                    return status, body or {}
                unsent = False
                code = f"http_{status}" if status >= 500 else "bad_response"
                failure = f"{method} {path}: HTTP {status}"
            if not unsent and policy is not _Retry.READ:
                trace.maybe_arrived = True
            may_retry = unsent or policy is _Retry.READ  # money moves: never risk it twice
            log.warning("daraja %s (attempt %d/%d)", failure, attempt, attempts)
            if not may_retry or attempt == attempts:
                raise DarajaUnavailable(
                    code,
                    failure,
                    retryable=policy is _Retry.READ or not trace.maybe_arrived,
                    may_have_taken_effect=trace.maybe_arrived,
                )
            self._sleep(self._config.retry_backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _token_refused(status: int, error: tuple[str, str] | None) -> bool:
    return status == 401 or (error is not None and error[0] == INVALID_TOKEN_ERROR)
