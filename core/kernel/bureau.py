"""The credit-bureau port: what core asks a credit reference bureau and what it gets back
(issue 15, part 2; docs/integrations/bureaus.md).

Core never imports an adapter: ``integrations/bureaus`` implements ``CreditBureau`` (a
REST one shaped like Metropol's, a SOAP one shaped like TransUnion Kenya's) and the
composition root puts one in ``CoreDeps.bureau`` as a ``BureauAccess``. The values are
plain and typed; an adapter turns its wire format into them, and raises
``BureauUnavailable`` for a timeout, a refused connection, an error answer or an answer it
cannot read. Core then scores on the SACCO's own record (``core.scoring.bureau``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from core.kernel.errors import SaccoError


class Delinquency(StrEnum):
    """The bureau's word on the member's repayment, reduced to what a decision needs."""

    CLEAN = "clean"  # accounts, none ever in arrears
    HISTORICAL = "historical"  # in arrears before, none now
    DELINQUENT = "delinquent"  # an account in arrears now, or listed
    NO_RECORD = "no_record"  # the bureau knows the ID but holds no credit account


@dataclass(frozen=True)
class BureauRequest:
    """One enquiry. ``consent_ref`` names the member's stored consent (``BC-<id>``) and
    travels in the call; ``reference`` is ours, unique per call."""

    national_id: str
    loan_amount_cents: int
    reason: str  # ReportReason
    consent_ref: str
    reference: str


class ReportReason(StrEnum):
    """Why the SACCO asks (Metropol's ``report_reason``, TransUnion's ``reportReason``)."""

    NEW_LOAN = "new_loan"
    REVIEW = "review"  # an existing loan's review (e.g. rescheduling)
    GUARANTOR = "guarantor"


@dataclass(frozen=True)
class IdentityAnswer:
    found: bool
    full_name: str  # as the bureau holds it ("" when not found)
    bureau_ref: str
    raw: str


@dataclass(frozen=True)
class BureauReport:
    """A credit report: ``found`` False when the bureau has no such ID."""

    found: bool
    delinquency: Delinquency
    score: int | None  # the bureau's own score, when it gives one
    accounts: int  # credit accounts on file
    worst_days_past_due: int  # the most days in arrears any account reached
    listings: int  # accounts listed as non-performing
    full_name: str
    bureau_ref: str  # the bureau's transaction id
    raw: str  # the answer as received (the evidence)


class BureauUnavailable(SaccoError):
    """No usable answer: timeout, connection refused, HTTP or SOAP error, unreadable
    answer. ``raw`` keeps what came back, if anything."""

    code = "bureau_unavailable"

    def __init__(self, detail: str = "", *, raw: str = "") -> None:
        super().__init__(detail or "bureau unavailable")
        self.raw = raw


class CreditBureau(Protocol):
    name: str  # "metropol", "transunion", ...

    def verify_identity(self, request: BureauRequest) -> IdentityAnswer: ...

    def fetch_report(self, request: BureauRequest) -> BureauReport: ...


@dataclass(frozen=True)
class BureauAccess:
    """What a process knows of its bureau: the adapter and how long an answer is reused."""

    adapter: CreditBureau
    cache_ttl: timedelta = timedelta(days=30)
