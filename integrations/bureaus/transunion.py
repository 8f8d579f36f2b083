"""The SOAP credit-bureau adapter, shaped like TransUnion Kenya's CRB web service, through
zeep (docs/integrations/bureaus.md).

TransUnion Kenya's integrators call one SOAP operation per product (``getProduct103``,
...), each request carrying the subscriber's ``username``, ``password`` and ``code`` (and
an ``infinityCode``), the ``nationalID``, a ``reportSector`` and a ``reportReason``; the
answer has a ``responseCode`` (200 found) and the product's sections (``personalProfile``,
``scoreOutput``, accounts). The WSDL in this folder (``transunion.wsdl``) is our own in that
shape: ``getProduct103`` (identity) and ``getProduct123`` (the credit report). Product
numbers other than 103 and the exact sections are ours (TransUnion's own WSDL is given to
subscribers only).

ASSUMPTIONS (unconfirmed, coded defensively): ``responseCode`` 200 is an answer, 202 "no
record for this ID" (not found), anything else (101 bad credentials, 4xx/5xx) and a SOAP
fault are "bureau unavailable".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from core.kernel.bureau import (
    BureauReport,
    BureauRequest,
    BureauUnavailable,
    Delinquency,
    IdentityAnswer,
)

WSDL = Path(__file__).with_name("transunion.wsdl")
BINDING = "{http://ws.crbws.transunion.ke.co/}CRBWebServicePortBinding"
FOUND, NOT_FOUND = 200, 202
REPORT_SECTOR_SACCO = 5  # ASSUMPTION: the sector code a SACCO subscriber reports under
REPORT_REASONS = {"new_loan": 1, "review": 2, "guarantor": 3}
RAW_MAX = 20_000


class TransUnionBureau:
    name = "transunion"

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        code: str,
        *,
        infinity_code: str = "",
        timeout: float = 5.0,
    ) -> None:
        self.username, self.password, self.code = username, password, code
        self.infinity_code = infinity_code
        self.timeout = timeout
        self.history = HistoryPlugin(maxlen=1)  # type: ignore[no-untyped-call]
        transport = Transport(timeout=timeout, operation_timeout=timeout)  # type: ignore[no-untyped-call]
        client = zeep.Client(str(WSDL), transport=transport, plugins=[self.history])  # type: ignore[no-untyped-call]
        self.service: Any = client.create_service(BINDING, url)  # type: ignore[no-untyped-call]

    def _call(self, operation: str, request: BureauRequest) -> tuple[dict[str, Any], str]:
        try:
            answer = getattr(self.service, operation)(
                username=self.username,
                password=self.password,
                code=self.code,
                infinityCode=self.infinity_code,
                nationalID=request.national_id,
                reportSector=REPORT_SECTOR_SACCO,
                reportReason=REPORT_REASONS.get(request.reason, 1),
                amount=request.loan_amount_cents // 100,
                consentReference=request.consent_ref,
            )
        except requests.Timeout as exc:
            raise BureauUnavailable(f"transunion timed out after {self.timeout}s") from exc
        except requests.RequestException as exc:
            raise BureauUnavailable(f"transunion unreachable: {type(exc).__name__}") from exc
        except zeep.exceptions.Fault as exc:
            raise BureauUnavailable(f"transunion fault: {str(exc.message)[:120]}") from exc
        except (zeep.exceptions.Error, etree.XMLSyntaxError, ValueError, TypeError) as exc:
            raise BureauUnavailable(
                f"transunion answer unreadable: {type(exc).__name__}", raw=self._raw()
            ) from exc
        decoded = serialize_object(answer, dict)  # type: ignore[no-untyped-call]
        if not isinstance(decoded, dict) or not isinstance(decoded.get("responseCode"), int):
            raise BureauUnavailable("transunion answer without responseCode", raw=self._raw())
        return decoded, self._raw()

    def _raw(self) -> str:
        try:
            received: Any = self.history.last_received
            envelope = received["envelope"]
        except (IndexError, KeyError, TypeError):
            return ""
        return str(etree.tostring(envelope, encoding="unicode"))[:RAW_MAX]

    @staticmethod
    def _found(decoded: dict[str, Any], raw: str) -> bool:
        code = decoded["responseCode"]
        if code == NOT_FOUND:
            return False
        if code != FOUND:
            raise BureauUnavailable(f"transunion responseCode {code}", raw=raw)
        return True

    def verify_identity(self, request: BureauRequest) -> IdentityAnswer:
        decoded, raw = self._call("getProduct103", request)
        ref = str(decoded.get("transactionID") or "")
        if not self._found(decoded, raw):
            return IdentityAnswer(False, "", ref, raw)
        profile = decoded.get("personalProfile") or {}
        name = profile.get("fullName") if isinstance(profile, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise BureauUnavailable("transunion identity without a name", raw=raw)
        return IdentityAnswer(True, name.strip(), ref, raw)

    def fetch_report(self, request: BureauRequest) -> BureauReport:
        decoded, raw = self._call("getProduct123", request)
        ref = str(decoded.get("transactionID") or "")
        if not self._found(decoded, raw):
            return BureauReport(False, Delinquency.NO_RECORD, None, 0, 0, 0, "", ref, raw)
        try:
            return _read_report(decoded, ref, raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BureauUnavailable(f"transunion report unreadable: {exc}", raw=raw) from exc


def _read_report(decoded: dict[str, Any], ref: str, raw: str) -> BureauReport:
    accounts = decoded.get("accountList") or []
    now_late = max((a["daysInArrears"] for a in accounts), default=0)
    worst = max((max(a["worstArrears"], a["daysInArrears"]) for a in accounts), default=0)
    listings = sum(1 for a in accounts if a["npa"])
    score = (decoded.get("scoreOutput") or {}).get("positiveScore")
    profile = decoded.get("personalProfile") or {}
    if now_late > 0 or listings:
        delinquency = Delinquency.DELINQUENT
    elif worst > 0:
        delinquency = Delinquency.HISTORICAL
    else:
        delinquency = Delinquency.CLEAN if accounts else Delinquency.NO_RECORD
    return BureauReport(
        found=True,
        delinquency=delinquency,
        score=score,
        accounts=len(accounts),
        worst_days_past_due=worst,
        listings=listings,
        full_name=str(profile.get("fullName") or ""),
        bureau_ref=ref,
        raw=raw,
    )
