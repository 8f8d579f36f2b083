"""The REST credit-bureau adapter, shaped like Metropol CRB's API (docs/integrations/bureaus.md).

What we follow (Metropol's API as its public client libraries use it, e.g. the
``metropol`` Ruby gem, github.com/alkarimlalani/metropol: ``lib/metropol/client.rb``,
``request.rb`` and its spec fixtures):

* ``POST {base}/{version}/{path}``, JSON body, default port 5555 and version ``v2_1``:
  ``identity/verify`` (``report_type`` 1), ``delinquency/status`` (2), ``score/consumer``
  (3), ``report/credit_info`` (8, "credit info": accounts, score, delinquency code).
  Body fields ``report_type``, ``identity_type`` (``"001"`` national ID),
  ``identity_number``, ``loan_amount`` (whole KES), ``report_reason`` (1 new loan).
* Headers ``X-METROPOL-REST-API-KEY`` (the public key), ``X-METROPOL-REST-API-TIMESTAMP``
  (UTC ``YYYYMMDDHHMMSS`` plus microseconds) and ``X-METROPOL-REST-API-HASH``: the SHA-256
  hex of private key + body + public key + timestamp (``api_hash``; the body exactly as
  sent).
* Answers carry ``has_error``, ``api_code``, ``api_code_description``, ``trx_id``; the
  credit-info report ``credit_score``, ``delinquency_code``, ``account_info`` (each with
  ``days_in_arrears`` and ``highest_days_in_arrears``) and ``lender_sector`` (per sector,
  ``account_npa``: non-performing accounts, our "listings").

ASSUMPTIONS (unconfirmed, coded defensively): an unknown ID is ``has_error`` with an
``api_code`` in ``NOT_FOUND_CODES``; any other error is "bureau unavailable". The consent
travels as ``consent_reference``, a field of ours the stand-in checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from core.kernel.bureau import (
    BureauReport,
    BureauRequest,
    BureauUnavailable,
    Delinquency,
    IdentityAnswer,
)

IDENTITY_NATIONAL_ID = "001"
REPORT_REASONS = {"new_loan": 1, "review": 2, "guarantor": 3}
NOT_FOUND_CODES = frozenset({"102"})
RAW_MAX = 20_000


def api_hash(private_key: str, body: str, public_key: str, timestamp: str) -> str:
    """``X-METROPOL-REST-API-HASH``: SHA-256 hex of private key + body + public key +
    timestamp, UTF-8."""
    return hashlib.sha256((private_key + body + public_key + timestamp).encode()).hexdigest()


def api_timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")


class MetropolBureau:
    name = "metropol"

    def __init__(
        self,
        base_url: str,
        public_key: str,
        private_key: str,
        *,
        timeout: float = 5.0,
        version: str = "v2_1",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        http: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_key = public_key
        self.private_key = private_key
        self.timeout = timeout
        self.version = version
        self.now = now
        self.http = http or requests.Session()

    # -- the wire -----------------------------------------------------------------------

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":"))
        stamp = api_timestamp(self.now())
        headers = {
            "Content-Type": "application/json",
            "X-METROPOL-REST-API-KEY": self.public_key,
            "X-METROPOL-REST-API-TIMESTAMP": stamp,
            "X-METROPOL-REST-API-HASH": api_hash(self.private_key, body, self.public_key, stamp),
        }
        url = f"{self.base_url}/{self.version}/{path}"
        try:
            answer = self.http.post(url, data=body.encode(), headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise BureauUnavailable(f"metropol timed out after {self.timeout}s") from exc
        except requests.RequestException as exc:
            raise BureauUnavailable(f"metropol unreachable: {type(exc).__name__}") from exc
        raw = answer.text[:RAW_MAX]
        if answer.status_code != 200:
            raise BureauUnavailable(f"metropol answered HTTP {answer.status_code}", raw=raw)
        try:
            decoded = answer.json()
        except ValueError as exc:
            raise BureauUnavailable("metropol answer is not JSON", raw=raw) from exc
        if not isinstance(decoded, dict):
            raise BureauUnavailable("metropol answer is not an object", raw=raw)
        decoded["__raw"] = raw
        return decoded

    def _payload(self, report_type: int, request: BureauRequest) -> dict[str, Any]:
        return {
            "report_type": report_type,
            "identity_type": IDENTITY_NATIONAL_ID,
            "identity_number": request.national_id,
            "loan_amount": request.loan_amount_cents // 100,
            "report_reason": REPORT_REASONS.get(request.reason, 1),
            "consent_reference": request.consent_ref,
        }

    @staticmethod
    def _not_found(answer: dict[str, Any]) -> bool:
        """True for "no such ID"; raises for any other error answer."""
        if answer.get("has_error") is True:
            code = str(answer.get("api_code") or "")
            if code in NOT_FOUND_CODES:
                return True
            why = str(answer.get("api_code_description") or "error")[:120]
            raise BureauUnavailable(f"metropol error {code}: {why}", raw=answer["__raw"])
        if answer.get("has_error") is not False:
            raise BureauUnavailable("metropol answer without has_error", raw=answer["__raw"])
        return False

    # -- the port -----------------------------------------------------------------------

    def verify_identity(self, request: BureauRequest) -> IdentityAnswer:
        answer = self._post("identity/verify", self._payload(1, request))
        raw = answer["__raw"]
        if self._not_found(answer):
            return IdentityAnswer(False, "", str(answer.get("trx_id") or ""), raw)
        names = [answer.get(k) for k in ("first_name", "other_name", "last_name")]
        if not all(isinstance(n, str | None) for n in names) or not answer.get("first_name"):
            raise BureauUnavailable("metropol identity answer without a name", raw=raw)
        full = " ".join(n for n in names if isinstance(n, str) and n)
        return IdentityAnswer(True, full, str(answer.get("trx_id") or ""), raw)

    def fetch_report(self, request: BureauRequest) -> BureauReport:
        answer = self._post("report/credit_info", self._payload(8, request))
        raw = answer["__raw"]
        ref = str(answer.get("trx_id") or "")
        if self._not_found(answer):
            return BureauReport(False, Delinquency.NO_RECORD, None, 0, 0, 0, "", ref, raw)
        try:
            return _read_report(answer, ref, raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise BureauUnavailable(f"metropol report unreadable: {exc}", raw=raw) from exc


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not a whole number: {value!r}")
    return int(value)


def _read_report(answer: dict[str, Any], ref: str, raw: str) -> BureauReport:
    accounts = answer["account_info"]
    if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
        raise TypeError("account_info is not a list of accounts")
    now_late = max((_int(a["days_in_arrears"]) for a in accounts), default=0)
    worst = max(
        (max(_int(a["highest_days_in_arrears"]), _int(a["days_in_arrears"])) for a in accounts),
        default=0,
    )
    sectors = answer.get("lender_sector") or {}
    if not isinstance(sectors, dict):
        raise TypeError("lender_sector is not an object")
    listings = sum(
        _int(sector.get("account_npa", 0))
        for sector in sectors.values()
        if isinstance(sector, dict)
    )
    score = answer.get("credit_score")
    if now_late > 0 or listings > 0:
        delinquency = Delinquency.DELINQUENT
    elif worst > 0:
        delinquency = Delinquency.HISTORICAL
    elif accounts:
        delinquency = Delinquency.CLEAN
    else:
        delinquency = Delinquency.NO_RECORD
    return BureauReport(
        found=True,
        delinquency=delinquency,
        score=None if score is None else _int(score),
        accounts=len(accounts),
        worst_days_past_due=worst,
        listings=listings,
        full_name="",
        bureau_ref=ref,
        raw=raw,
    )
