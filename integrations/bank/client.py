"""The bank's API: KCB-style funds transfer and Co-op-style balance and statement.

Shapes (docs/integrations/banks.md cites the sources):

* token: ``POST {base}/token`` with ``grant_type=client_credentials`` and HTTP Basic
  (consumer key, secret) -> ``{"access_token", "token_type": "Bearer", "expires_in"}``;
  cached, refreshed ``TOKEN_MARGIN`` seconds before expiry; a 401 refreshes it once.
* funds transfer (KCB FT API): ``POST {base}/fundstransfer/1.0.0/api/v1/transfer`` with
  ``beneficiaryDetails``, ``companyCode``, ``creditAccountNumber``, ``currency``,
  ``debitAccountNumber``, ``debitAmount`` (shillings), ``paymentDetails``,
  ``transactionReference`` (ours, unique), ``transactionType`` (``IF`` internal, ``PL``
  PesaLink, ``RT`` RTGS), ``beneficiaryBankCode``. Answer ``{"statusCode": "0",
  "statusMessage", "statusDescription", "merchantID", "retrievalRefNumber"}``; a refusal
  has ``statusCode`` ``"1"``. The result comes to our callback (``parse_callback``).
* status (*unconfirmed shape*): ``POST {base}/fundstransfer/1.0.0/api/v1/transfer/status``
  with ``transactionReference`` -> the callback's fields, or ``{"statusCode": "404"}``.
* balance (Co-op): ``POST {base}/Enquiry/AccountBalance/1.0.0/Account`` with
  ``MessageReference`` and ``AccountNumber`` -> ``MessageCode`` ``"0"``,
  ``AvailableBalance``, ``ClearedBalance``, ``BookedBalance``...
* full statement (Co-op): ``POST {base}/Enquiry/FullStatement/Account/1.0.0`` with
  ``MessageReference``, ``AccountNumber``, ``StartDate``, ``EndDate`` (``YYYY-MM-DD``) ->
  ``Transactions``: ``TransactionDate``, ``ValueDate``, ``Narration``, ``TransactionType``
  (``C``/``D``), ``TransactionReference``, ``CreditAmount``, ``DebitAmount``,
  ``RunningClearedBalance``.

Retry: a transfer is retried only when the request never left (connect error); after a
read timeout, a dropped connection or a 5xx it may have been made: ``BankUnsure``, and
the caller keeps the hold and asks later. Reads (token, status, balance, statement) are
retried once after any transport error: they move no money.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from core.payments.bank.statement import BankStatementLine
from core.payments.bank.transfers import TransferOrder, TransferResult

TOKEN_MARGIN = 60
TYPE_CODES = {"internal": "IF", "pesalink": "PL", "rtgs": "RT"}


class BankError(Exception):
    """Anything the bank adapter could not do."""


class BankRefused(BankError):
    """The bank answered no: nothing moved."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class BankUnsure(BankError):
    """No answer we can trust: the transfer may have been made."""


class BankDown(BankError):
    """The request never reached the bank (or a read failed): nothing moved."""


@dataclass(frozen=True)
class BankConfig:
    base_url: str
    consumer_key: str
    consumer_secret: str
    company_code: str
    debit_account: str
    connect_timeout: float = 5.0
    read_timeout: float = 20.0


def _cents(value: Any) -> int:
    try:
        amount = Decimal(str(value).replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"sub-cent amount: {value!r}")
    return int(cents)


def _day(value: Any) -> date | None:
    text = str(value or "")[:10]
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_callback(body: bytes) -> TransferResult:
    """The bank's result callback as a ``TransferResult``; ``ValueError`` when malformed."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    reference = str(data.get("transactionReference") or "").strip()
    bank_reference = str(data.get("ftReference") or "").strip()
    status = str(data.get("transactionStatus") or "").strip().upper()
    if not reference or not status:
        raise ValueError("transactionReference and transactionStatus are required")
    succeeded = status == "SUCCESS"
    if succeeded and not bank_reference:
        raise ValueError("a successful transfer has an ftReference")
    amount = data.get("amount")
    return TransferResult(
        reference=reference[:20],
        bank_reference=bank_reference[:64],
        succeeded=succeeded,
        code=status[:16],
        description=str(data.get("transactionMessage") or "")[:200],
        amount_cents=_cents(amount) if amount not in (None, "") else None,
    )


class BankClient:
    def __init__(self, config: BankConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self._http = session or requests.Session()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- plumbing
    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _timeout(self) -> tuple[float, float]:
        return (self.config.connect_timeout, self.config.read_timeout)

    def token(self, *, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or time.monotonic() >= self._expires:
                try:
                    r = self._http.post(
                        self._url("/token"),
                        data={"grant_type": "client_credentials"},
                        auth=(self.config.consumer_key, self.config.consumer_secret),
                        timeout=self._timeout(),
                    )
                except requests.RequestException as exc:
                    raise BankDown(f"token: {type(exc).__name__}") from None
                if r.status_code != 200:
                    raise BankDown(f"token: HTTP {r.status_code}")
                body = r.json()
                self._token = str(body["access_token"])
                life = float(body.get("expires_in") or 3600)
                self._expires = time.monotonic() + max(life - TOKEN_MARGIN, life / 2)
            return self._token

    def _post(self, path: str, body: dict[str, Any], *, moves_money: bool) -> requests.Response:
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token(refresh=attempt == 2)}"}
            try:
                r = self._http.post(self._url(path), json=body, headers=headers,
                                    timeout=self._timeout())  # fmt: skip
            except requests.ConnectionError as exc:
                if isinstance(exc, requests.ConnectTimeout) or "refused" in str(exc).lower():
                    if attempt == 1:
                        continue
                    raise BankDown(f"{path}: never reached the bank") from None
                if moves_money:
                    raise BankUnsure(f"{path}: {type(exc).__name__}") from None
                if attempt == 1:
                    continue
                raise BankDown(f"{path}: {type(exc).__name__}") from None
            except requests.RequestException as exc:  # a read timeout
                if moves_money:
                    raise BankUnsure(f"{path}: {type(exc).__name__}") from None
                if attempt == 1:
                    continue
                raise BankDown(f"{path}: {type(exc).__name__}") from None
            if r.status_code == 401 and attempt == 1:
                continue  # a refused token: the bank did nothing
            if r.status_code >= 500:
                if moves_money:
                    raise BankUnsure(f"{path}: HTTP {r.status_code}")
                if attempt == 1:
                    continue
                raise BankDown(f"{path}: HTTP {r.status_code}")
            return r
        raise BankDown(f"{path}: unauthorised")

    # ---------------------------------------------------------------- transfers
    def transfer(self, order: TransferOrder) -> str:
        """Send one transfer; the bank's retrieval reference. ``BankRefused``: nothing
        moved; ``BankUnsure``: it may have; ``BankDown``: it did not reach the bank."""
        if order.amount_cents % 100:
            raise ValueError("bank transfers are in whole shillings here")
        body = {
            "beneficiaryDetails": order.account_name,
            "companyCode": self.config.company_code,
            "creditAccountNumber": order.credit_account,
            "currency": "KES",
            "debitAccountNumber": order.debit_account or self.config.debit_account,
            "debitAmount": order.amount_cents // 100,
            "paymentDetails": order.narration[:35],
            "transactionReference": order.reference,
            "transactionType": TYPE_CODES[order.transfer_type],
            "beneficiaryBankCode": order.bank_code,
        }
        r = self._post("/fundstransfer/1.0.0/api/v1/transfer", body, moves_money=True)
        try:
            answer = r.json()
        except ValueError:
            raise BankUnsure(f"unreadable answer, HTTP {r.status_code}") from None
        code = str(answer.get("statusCode", "")) if isinstance(answer, dict) else ""
        if r.status_code == 200 and code == "0":
            return str(answer.get("retrievalRefNumber") or "")
        if 400 <= r.status_code < 500 or code not in ("", "0"):
            desc = str(answer.get("statusDescription") or answer.get("statusMessage") or "")
            raise BankRefused(code or str(r.status_code), desc[:200])
        raise BankUnsure(f"unexpected answer, HTTP {r.status_code}")

    def transfer_status(self, reference: str) -> TransferResult | None:
        """What the bank knows of our transfer; None when it knows nothing of it."""
        r = self._post(
            "/fundstransfer/1.0.0/api/v1/transfer/status",
            {"transactionReference": reference},
            moves_money=False,
        )
        if r.status_code == 404:
            return None
        answer = r.json()
        if str(answer.get("statusCode", "")) == "404":
            return None
        if str(answer.get("transactionStatus") or "").upper() in ("", "PENDING"):
            raise BankDown("the transfer is still pending at the bank")
        return parse_callback(json.dumps(answer).encode())

    # ---------------------------------------------------------------- enquiries
    def balance(self, account: str | None = None) -> dict[str, int]:
        r = self._post(
            "/Enquiry/AccountBalance/1.0.0/Account",
            {"MessageReference": uuid.uuid4().hex[:20],
             "AccountNumber": account or self.config.debit_account},
            moves_money=False,
        )  # fmt: skip
        answer = r.json()
        if r.status_code != 200 or str(answer.get("MessageCode")) != "0":
            raise BankRefused(str(answer.get("MessageCode")), str(answer.get("MessageDescription")))
        return {
            "available_cents": _cents(answer["AvailableBalance"]),
            "cleared_cents": _cents(answer["ClearedBalance"]),
            "booked_cents": _cents(answer["BookedBalance"]),
        }

    def statement(
        self, start: date, end: date, account: str | None = None
    ) -> list[BankStatementLine]:
        r = self._post(
            "/Enquiry/FullStatement/Account/1.0.0",
            {"MessageReference": uuid.uuid4().hex[:20],
             "AccountNumber": account or self.config.debit_account,
             "StartDate": start.isoformat(), "EndDate": end.isoformat()},
            moves_money=False,
        )  # fmt: skip
        answer = r.json()
        if r.status_code != 200 or str(answer.get("MessageCode")) != "0":
            raise BankRefused(str(answer.get("MessageCode")), str(answer.get("MessageDescription")))
        lines = []
        for t in answer.get("Transactions") or []:
            lines.append(
                BankStatementLine(
                    value_date=_day(t.get("ValueDate") or t.get("TransactionDate")),
                    narration=str(t.get("Narration") or "")[:200],
                    bank_reference=str(t.get("TransactionReference") or "")[:64],
                    debit_cents=_cents(t.get("DebitAmount") or 0),
                    credit_cents=_cents(t.get("CreditAmount") or 0),
                )
            )
        return lines
