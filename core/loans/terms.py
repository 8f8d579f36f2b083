"""A product version's terms as the loan book reads them: the one place that reads the
product tables (``db.models_loans.LoanProductVersion`` and its fees), so a change to the
products' columns touches this module only.

``current_terms(session, code)`` is the version a new application is made under;
``version_terms(session, version_id)`` the one an application or a loan keeps. From the
terms: the appraisal's ``LendingRules``, the fees for a principal and term, the schedule's
``ScheduleTerms``, the security a principal needs, and how a repayment is split and an
early payoff charged (``allocation_order``, ``early_payoff_interest``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from core.kernel.errors import NotFound
from core.loans.appraisal import LendingRules
from core.loans.schedule import ScheduleTerms
from core.loans.vocabulary import (
    AllocationOrder,
    EarlyPayoffInterest,
    FeeKind,
    FeeTiming,
    GuarantorPolicy,
    PledgeRelease,
)
from db.models_loans import LoanProduct, LoanProductFee, LoanProductVersion

FULL_COVER_PERCENT = Decimal(100)  # SASRA Regulations 2010, reg. 32: every loan fully secured


@dataclass(frozen=True)
class FeeRule:
    kind: str
    timing: str
    percent: Decimal | None
    fixed_cents: int | None
    min_term: int | None
    max_term: int | None

    def applies(self, term: int) -> bool:
        """A fee at disbursement of a new loan (a top-up commission is for top-ups only),
        for the terms it names."""
        if self.kind == FeeKind.TOP_UP_COMMISSION:
            return False
        return self.in_term(term)

    def in_term(self, term: int) -> bool:
        """The fee is for loans of ``term`` instalments (its ``min_term``..``max_term``)."""
        return (self.min_term is None or term >= self.min_term) and (
            self.max_term is None or term <= self.max_term
        )

    def cents(self, principal_cents: int) -> int:
        """Percent of the principal (to the cent, half up) plus the fixed part."""
        share = Decimal(0)
        if self.percent is not None:
            share = (Decimal(principal_cents) * self.percent / 100).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            )
        return int(share) + (self.fixed_cents or 0)


@dataclass(frozen=True)
class ProductTerms:
    product_id: int
    version_id: int
    code: str
    name: str
    active: bool
    channels: frozenset[str]
    rate_percent: Decimal
    rate_period: str
    method: str
    frequency: str
    rounding: str
    grace_instalments: int
    min_term: int
    max_term: int
    min_amount_cents: int
    max_amount_cents: int
    deposit_multiplier: Decimal
    min_membership_months: int
    min_deposits_cents: int
    guarantor_policy: str
    guarantor_cover_percent: Decimal | None
    max_guarantees_per_guarantor: int
    self_guarantee_allowed: bool
    auto_approve_ceiling_cents: int
    fees: tuple[FeeRule, ...]
    pledge_release: str = PledgeRelease.PRO_RATA  # how pledges are given back as it is repaid
    # How a repayment is split, and what an early payoff pays of interest not yet due
    # (core.loans.repayments.allocate, docs/loans/repayment.md).
    allocation_order: AllocationOrder = AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL
    early_payoff_interest: EarlyPayoffInterest = EarlyPayoffInterest.WAIVE
    top_up_min_instalments_paid: int | None = None  # None: no top-ups (docs/loans/book.md)
    min_score: int | None = None  # None: no credit score asked (docs/loans/scoring.md)

    @property
    def lending_rules(self) -> LendingRules:
        return LendingRules(
            deposit_multiplier=self.deposit_multiplier,
            min_amount_cents=self.min_amount_cents,
            max_amount_cents=self.max_amount_cents,
            min_membership_months=self.min_membership_months,
            min_deposits_cents=self.min_deposits_cents,
        )

    @property
    def needs_guarantors(self) -> bool:
        return self.guarantor_policy == GuarantorPolicy.REQUIRED

    @property
    def offers_top_ups(self) -> bool:
        return self.top_up_min_instalments_paid is not None

    def top_up_commission_cents(self, cleared_cents: int, term: int) -> int:
        """The product's commission on a top-up that clears ``cleared_cents`` (the old
        loan's payoff), for a new loan of ``term`` instalments: each ``top_up_commission``
        fee that applies to the term, a percent of the balance cleared (to the cent, half
        up). Taken from what the top-up pays out (products accept no other timing for it:
        ``core.loans.products``), once, when the balance is cleared."""
        return sum(
            fee.cents(cleared_cents)
            for fee in self.fees
            if fee.kind == FeeKind.TOP_UP_COMMISSION and fee.in_term(term)
        )

    def fee_cents(self, principal_cents: int, term: int) -> tuple[int, int]:
        """(deducted at disbursement, added to the schedule) for this principal and term."""
        deducted = scheduled = 0
        for fee in self.fees:
            if fee.applies(term):
                if fee.timing == FeeTiming.DEDUCTED:
                    deducted += fee.cents(principal_cents)
                else:
                    scheduled += fee.cents(principal_cents)
        return deducted, scheduled

    def schedule_terms(self, principal_cents: int, term: int, disbursed_on: date) -> ScheduleTerms:
        deducted, scheduled = self.fee_cents(principal_cents, term)
        return ScheduleTerms(
            principal_cents=principal_cents,
            rate=self.rate_percent / 100,
            rate_period=self.rate_period,  # type: ignore[arg-type]  # coerced by ScheduleTerms
            method=self.method,  # type: ignore[arg-type]
            frequency=self.frequency,  # type: ignore[arg-type]
            instalments=term,
            disbursed_on=disbursed_on,
            grace_periods=self.grace_instalments,
            rounding=self.rounding,  # type: ignore[arg-type]
            deducted_fee_cents=deducted,
            scheduled_fee_cents=scheduled,
        )

    def required_cover_cents(self, principal_cents: int) -> int:
        """The security the principal needs: all of it (own free deposits plus pledges)
        unless the product asks a cover percent; none for a product without guarantors,
        whose limit (a multiple of deposits) is its only security."""
        if not self.needs_guarantors:
            return 0
        percent = self.guarantor_cover_percent or FULL_COVER_PERCENT
        return math.ceil(Decimal(principal_cents) * percent / 100)


def _terms(
    product: LoanProduct, version: LoanProductVersion, fees: list[LoanProductFee]
) -> ProductTerms:
    return ProductTerms(
        product_id=product.id,
        version_id=version.id,
        code=product.code,
        name=version.name,
        active=version.active,
        channels=frozenset(version.channels.split()),
        rate_percent=version.rate_percent,
        rate_period=version.rate_period,
        method=version.method,
        frequency=version.frequency,
        rounding=version.rounding,
        grace_instalments=version.grace_instalments,
        min_term=version.min_term,
        max_term=version.max_term,
        min_amount_cents=version.min_amount_cents,
        max_amount_cents=version.max_amount_cents,
        deposit_multiplier=version.deposit_multiplier,
        min_membership_months=version.min_membership_months,
        min_deposits_cents=version.min_deposits_cents,
        guarantor_policy=version.guarantor_policy,
        guarantor_cover_percent=version.guarantor_cover_percent,
        max_guarantees_per_guarantor=version.max_guarantees_per_guarantor,
        self_guarantee_allowed=version.self_guarantee_allowed,
        auto_approve_ceiling_cents=version.auto_approve_ceiling_cents,
        fees=tuple(
            FeeRule(f.kind, f.timing, f.percent, f.fixed_cents, f.min_term, f.max_term)
            for f in fees
        ),
        pledge_release=version.pledge_release,
        allocation_order=AllocationOrder(version.allocation_order),
        early_payoff_interest=EarlyPayoffInterest(version.early_payoff_interest),
        top_up_min_instalments_paid=version.top_up_min_instalments_paid,
        min_score=version.min_score,
    )


# A version is never changed once written (a change to a product is a new version), so the
# terms of a version read once hold for the rest of the unit of work: the apply path reads
# them at the appraisal, the approval, the disbursement and the SMS without going back to
# the database. Kept on the session (``Session.info``): a unit of work is one session, so
# nothing outlives it.
_SESSION_CACHE = "core.loans.terms"


def _cache(session: Session) -> dict[int, ProductTerms]:
    cache: dict[int, ProductTerms] = session.info.setdefault(_SESSION_CACHE, {})
    return cache


def _load(session: Session, *where: ColumnElement[bool]) -> list[ProductTerms]:
    """The versions matching ``where`` with their fees, in ONE statement (the fees outer
    joined, grouped here), by product id; each remembered for the unit of work."""
    rows = session.execute(
        select(LoanProduct, LoanProductVersion, LoanProductFee)
        .join(LoanProductVersion, LoanProductVersion.product_id == LoanProduct.id)
        .outerjoin(LoanProductFee, LoanProductFee.version_id == LoanProductVersion.id)
        .where(*where)
        .order_by(LoanProduct.id, LoanProductVersion.id, LoanProductFee.position, LoanProductFee.id)
    ).tuples()
    grouped: dict[int, tuple[LoanProduct, LoanProductVersion, list[LoanProductFee]]] = {}
    for product, version, fee in rows:
        _, _, fees = grouped.setdefault(version.id, (product, version, []))
        if fee is not None:
            fees.append(fee)
    cache = _cache(session)
    found = []
    for version_id, (product, version, fees) in grouped.items():
        cache[version_id] = terms = _terms(product, version, fees)
        found.append(terms)
    return found


def current_terms(session: Session, code: str) -> ProductTerms:
    """The current version of the product with this code (``NotFound`` if none)."""
    code = code.strip() if isinstance(code, str) else ""
    found = _load(
        session, LoanProduct.code == code, LoanProductVersion.version == LoanProduct.current_version
    )
    if not found:
        raise NotFound("no such loan product")
    return found[0]


def current_products(session: Session, *, active: bool) -> list[ProductTerms]:
    """The current version of every product whose version is ``active`` (or not), by
    product id, in one statement."""
    return _load(
        session,
        LoanProductVersion.version == LoanProduct.current_version,
        LoanProductVersion.active.is_(active),
    )


def version_terms(session: Session, version_id: int) -> ProductTerms:
    """The terms of one version (the one an application or loan was made under)."""
    cached = _cache(session).get(version_id)
    if cached is not None:
        return cached
    found = _load(session, LoanProductVersion.id == version_id)
    if not found:
        raise NotFound("no such loan product version")
    return found[0]
