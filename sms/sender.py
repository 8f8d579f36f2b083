"""Send one SMS through Africa's Talking, over the official SDK (``africastalking==2.0.3``).

The outbox worker depends on the ``Sender`` protocol only; ``AfricasTalkingSender``
is the production implementation. Every outcome, including network failures,
comes back as a ``SendResult``: ``send`` never raises for anything the gateway
or the network does.

How the SDK is steered (read from the installed SDK source):

* ``africastalking.initialize()`` stores its services in module globals, shared by
  the whole process (last caller wins). We build ``SMSService`` ourselves, the
  same class ``initialize`` builds, once per sender.
* URLs: ``SMSService._init_service`` sets ``_baseUrl`` to
  ``https://api.africastalking.com/version1`` (``api.sandbox...`` when the username
  is ``sandbox``) and ``send`` posts to ``_baseUrl + "/messaging"``. A subclass
  overriding ``_init_service`` swaps the host for ``base_url`` (e.g. the stand-in),
  keeping the SDK's own paths, headers (``apiKey``) and form fields.
* Transport: 2.0.3's ``send`` accepts ``timeout=`` (older SDKs had none) and we
  always pass ours. But its ``_make_request`` turns every non-2xx answer into an
  ``AfricasTalkingException(res.text)``, dropping the HTTP status we need to tell
  a 401 from a 503, and only parses JSON when Content-Type is exactly
  ``application/json``. The subclass therefore overrides ``_make_request`` to do
  the same ``requests`` call and hand back the ``requests.Response`` untouched.
  Both overrides hook private SDK methods: the SDK version is pinned and the
  integration tests run the real SDK against the stand-in.

Retry policy per Africa's Talking ``statusCode`` (documented in ``_FAILURE_RETRYABLE``)
and per transport outcome (in ``interpret_send_answer`` and ``AfricasTalkingSender.send``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

import requests
from africastalking.Service import DEFAULT_TIMEOUT_S
from africastalking.SMS import SMSService

PRODUCTION_BASE_URL = "https://api.africastalking.com"
SANDBOX_BASE_URL = "https://api.sandbox.africastalking.com"


@dataclass(frozen=True)
class SendResult:
    """What happened to one message to one recipient.

    ``status`` is Africa's Talking's own status name when it gave one
    (``Success``, ``InvalidPhoneNumber``, ...), otherwise ours (``Unauthorized``,
    ``HTTP 503``, ``Timeout``, ``ConnectionError``, ``UnreadableAnswer``).
    ``detail`` is a short human-readable explanation for operators.
    """

    accepted: bool
    message_id: str | None
    cost_cents: int | None
    status_code: int | None
    status: str
    retryable: bool
    detail: str | None = None


class Sender(Protocol):
    def send(self, msisdn: str, message: str) -> SendResult: ...


# -- pure parsing ---------------------------------------------------------------------

ACCEPTED_CODES = frozenset({100, 101, 102})  # Processed, Sent/Success, Queued

STATUS_NAMES: dict[int, str] = {
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

# Whether a refused message should be tried again later (with the outbox's backoff
# and attempt cap). A refused message was not sent, so a retry never duplicates it.
_FAILURE_RETRYABLE: dict[int, bool] = {
    401: False,  # RiskHold: AT's fraud check holds our traffic; an operator must clear it
    402: False,  # InvalidSenderId: our configuration; every retry fails the same way
    403: False,  # InvalidPhoneNumber: the number itself is wrong
    404: False,  # UnsupportedNumberType: e.g. a landline; never deliverable
    405: True,  # InsufficientBalance: our AT wallet is empty; it works again once the
    #            operator tops up, so keep the message and retry with backoff
    406: False,  # UserInBlacklist: the member opted out of our sender id
    407: True,  # CouldNotRoute: AT could not reach the network at the moment
    409: False,  # DoNotDisturbRejection: the member's DND setting; only they can change it
    500: True,  # InternalServerError at AT
    501: True,  # GatewayError between AT and the network
    502: True,  # RejectedByGateway: the network's gateway refused, usually while
    #            overloaded; bounded by the attempt cap if it turns out permanent
}
_CODE_BY_NAME = {name: code for code, name in STATUS_NAMES.items()}
# At most 12 + 10 digits: the arithmetic below stays exact within Decimal's 28 digits.
_COST = re.compile(r"^\s*(?:([A-Za-z]{3})\s+)?([0-9]{1,12}(?:\.[0-9]{1,10})?)\s*$")


def classify_status_code(code: int) -> tuple[bool, bool]:
    """``(accepted, retryable)`` for a per-recipient ``statusCode``.

    Unknown codes: 5xx count as transient, anything else as permanent.
    """
    if code in ACCEPTED_CODES:
        return True, False
    if code in _FAILURE_RETRYABLE:
        return False, _FAILURE_RETRYABLE[code]
    return False, 500 <= code <= 599


def parse_cost_cents(cost: object, currency: str = "KES") -> int | None:
    """``"KES 0.8000"`` -> 80. Whole cents, rounded half up; never through a float.

    A bare number (``"0"``, as AT puts on refused recipients) is taken as ``currency``.
    Another currency, a negative, exponent, absurdly long or unreadable amount gives None.
    """
    if isinstance(cost, bool) or not isinstance(cost, str | int):
        return None
    match = _COST.match(str(cost))
    if match is None:
        return None
    found_currency, amount = match.groups()
    if found_currency is not None and found_currency.upper() != currency.upper():
        return None
    cents = (Decimal(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(cents)


def _message_id(value: object) -> str | None:
    # Refused recipients carry messageId "None" (a string).
    if isinstance(value, str) and value and value != "None":
        return value
    return None


def interpret_recipient(recipient: dict[str, Any]) -> SendResult:
    """One entry of ``SMSMessageData.Recipients`` as a SendResult."""
    raw_code = recipient.get("statusCode")
    code: int | None = None
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        code = raw_code
    elif isinstance(raw_code, str) and raw_code.strip().isdecimal():
        code = int(raw_code)
    status = recipient.get("status")
    if code is None:
        status_text = status if isinstance(status, str) and status else "UnreadableAnswer"
        return SendResult(False, None, None, None, status_text, False, f"statusCode {raw_code!r}")
    accepted, retryable = classify_status_code(code)
    if not isinstance(status, str) or not status:
        status = STATUS_NAMES.get(code, f"statusCode {code}")
    return SendResult(
        accepted=accepted,
        message_id=_message_id(recipient.get("messageId")) if accepted else None,
        cost_cents=parse_cost_cents(recipient.get("cost")),
        status_code=code,
        status=status,
        retryable=retryable,
    )


def interpret_send_answer(http_status: int, body: str, msisdn: str) -> SendResult:
    """Turn the HTTP answer to a one-recipient send into a SendResult.

    HTTP 401: wrong username/API key, permanent until an operator fixes the
    configuration. 429 and 5xx: transient. Other non-2xx: permanent (our request is
    malformed). A 2xx we can't read: not retryable. AT may have sent the message,
    and unlike a timeout (an everyday blip, retried even at that risk) it points at
    something structurally wrong (base URL, proxy, API change) that an operator
    should look at before anything is sent again; ``detail`` says so.
    """
    snippet = body.strip()[:200]
    if http_status == 401:
        return SendResult(False, None, None, None, "Unauthorized", False, snippet or None)
    if not 200 <= http_status < 300:
        transient = http_status == 429 or http_status >= 500
        return SendResult(
            False, None, None, None, f"HTTP {http_status}", transient, snippet or None
        )
    unreadable = SendResult(
        False, None, None, None, "UnreadableAnswer", False, f"may have been sent: {snippet!r}"
    )
    try:
        answer = json.loads(body)
    except ValueError:
        return unreadable
    data = answer.get("SMSMessageData") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        return unreadable
    listed = data.get("Recipients")
    recipients = [r for r in listed if isinstance(r, dict)] if isinstance(listed, list) else []
    ours = [r for r in recipients if r.get("number") == msisdn]
    if not ours and len(recipients) == 1:
        ours = recipients
    if ours:
        return interpret_recipient(ours[0])
    # Refused as a whole: Recipients is empty and Message names the reason
    # (e.g. {"Message": "InvalidSenderId", "Recipients": []}).
    message = data.get("Message")
    if isinstance(message, str) and message in _CODE_BY_NAME:
        code = _CODE_BY_NAME[message]
        accepted, retryable = classify_status_code(code)
        if not accepted:
            return SendResult(False, None, None, code, message, retryable)
    return unreadable


# -- the SDK adapter --------------------------------------------------------------------


class _RedirectableSMSService(SMSService):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's SMSService with a configurable host and a transport that keeps HTTP status."""

    def __init__(self, username: str, api_key: str, base_url: str | None) -> None:
        # Set before super().__init__, which calls _init_service.
        root = base_url.rstrip("/") if base_url else None
        if root is not None and root.endswith("/version1"):
            root = root.removesuffix("/version1")
        self._redirect_root = root
        super().__init__(username, api_key)

    def _init_service(self) -> None:
        super()._init_service()
        if self._redirect_root is not None:
            self._baseUrl = self._redirect_root + "/version1"
            self._contentUrl = self._baseUrl

    def _make_request(
        self,
        url: str,
        method: str,
        headers: dict[str, str],
        data: Any,
        params: Any,
        callback: Any = None,
        timeout: Any = DEFAULT_TIMEOUT_S,
    ) -> requests.Response:
        if callback is not None:
            raise NotImplementedError("asynchronous SDK calls are not used")
        return requests.request(
            method, url, headers=headers, data=data, params=params, timeout=timeout
        )


class AfricasTalkingSender:
    """``Sender`` over the Africa's Talking SDK.

    ``base_url``: the API host root (``PRODUCTION_BASE_URL``, ``SANDBOX_BASE_URL``, the
    stand-in's URL); None lets the SDK choose from the username (``sandbox`` or not).
    ``timeout``: seconds, for connecting and for each wait on the server. It bounds
    silence, not the total: a server trickling bytes could take longer.
    """

    def __init__(
        self,
        username: str,
        api_key: str,
        *,
        sender_id: str | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._service = _RedirectableSMSService(username, api_key, base_url)
        self._sender_id = sender_id or None
        self._timeout = timeout

    def send(self, msisdn: str, message: str) -> SendResult:
        try:
            response = self._service.send(
                message, [msisdn], sender_id=self._sender_id, timeout=self._timeout
            )
        except ValueError as exc:  # the SDK refuses a number without "+" before any request
            return SendResult(False, None, None, None, "InvalidPhoneNumber", False, str(exc))
        except requests.ConnectTimeout:
            return SendResult(
                False, None, None, None, "Timeout", True, "connect timed out; not sent"
            )
        except requests.Timeout:
            # The request reached AT: it may have been sent, and AT has no idempotency
            # key for SMS, so a retry can duplicate it. Losing a member's notice is
            # worse than a rare duplicate, hence retryable.
            return SendResult(
                False, None, None, None, "Timeout", True, "no answer in time; may have been sent"
            )
        except requests.RequestException as exc:
            return SendResult(False, None, None, None, "ConnectionError", True, str(exc)[:200])
        return interpret_send_answer(response.status_code, response.text, msisdn)
