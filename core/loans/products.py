"""Loan products: what a SACCO lends on, and how creating and changing one works.

A product's terms (``ProductTerms``) are validated here once, for every edge: bad input is
``InvalidInput`` naming the field (``max_term``, ``fees[1].percent``), never a crash. Rates,
percents and the deposit multiplier are exact ``Decimal``; a float is refused, like money.

Creating and changing a product is maker-checker (``core.loans.approval_actions``): the
request carries the whole definition, normalised by ``check_create`` / ``check_change``;
approval writes it (``create_product``, ``change_product``). Each approved definition is a
new immutable version (``loan_product_versions``); the product points at its current one,
and a loan keeps the version it was made with (``version_terms``).

The caps below (``MAX_RATE_PERCENT`` …) are sanity guards against typing errors, not law:
Kenya has had no statutory interest-rate cap since the Banking (Amendment) Act 2019
repealed section 33B, and SACCOs set their own rates in their by-laws.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.approvals.vocabulary import ApprovalStatus
from core.audit import log as audit
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.permissions import Principal
from core.ledger.entries import MAX_POSTING_CENTS
from core.loans.vocabulary import (
    AllocationOrder,
    Channel,
    EarlyPayoffInterest,
    FeeKind,
    FeeTiming,
    Frequency,
    GuarantorPolicy,
    PledgeRelease,
    RatePeriod,
    RepaymentMethod,
    Rounding,
)
from db.models import ApprovalRequest
from db.models_loans import LoanProduct, LoanProductFee, LoanProductVersion

CREATE_ACTION = "loan_product.create"
CHANGE_ACTION = "loan_product.change"
MAKER_PERMISSION = "loan_products:manage"
# A product sets the terms of every loan made under it: a manager decides.
CHECKER_PERMISSION = "approvals:decide_large"

CODE_RE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .,&()'/-]{2,59}$")
# Sanity caps (typing errors, not regulation; see the module docstring). A rate is a
# percent per its period; the two caps are the same nominal 120% a year.
MAX_RATE_PERCENT = {RatePeriod.ANNUAL: Decimal(120), RatePeriod.MONTHLY: Decimal(10)}
MAX_FEE_PERCENT = Decimal(25)
MAX_MULTIPLIER = Decimal(10)
MAX_COVER_PERCENT = Decimal(100)
MAX_TERM = 360  # instalments: 30 years monthly, about 7 years weekly
MAX_MEMBERSHIP_MONTHS = 120
MAX_GUARANTEES = 20  # a member guaranteeing more loans at once (3-9 is usual, issue 12)
MAX_PENALTY_GRACE_DAYS = 90
MAX_FEES = 10
RATE_PLACES = 4  # the columns' scale (db.models_loans)
SHARE_PLACES = 2

REQUIRED = (
    "name",
    "rate_percent",
    "rate_period",
    "method",
    "frequency",
    "min_term",
    "max_term",
    "min_amount_cents",
    "max_amount_cents",
    "deposit_multiplier",
)
# What a new product gets when the request leaves it out. Guarantors default to required
# with full cover: every loan fully secured (SASRA Regulations 2010, reg. 32).
DEFAULTS: dict[str, Any] = {
    "min_membership_months": 0,
    "min_deposits_cents": 0,
    "fees": [],
    "penalty_rate_percent": "0",
    "penalty_rate_period": RatePeriod.MONTHLY.value,
    "grace_instalments": 0,
    "penalty_grace_days": 0,
    "guarantor_policy": GuarantorPolicy.REQUIRED.value,
    "guarantor_cover_percent": "100",
    "max_guarantees_per_guarantor": 3,
    "self_guarantee_allowed": False,
    "pledge_release": PledgeRelease.PRO_RATA.value,
    "allocation_order": AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL.value,
    "early_payoff_interest": EarlyPayoffInterest.WAIVE.value,
    "rounding": Rounding.CENT.value,
    "auto_approve_ceiling_cents": 0,
    "channels": [Channel.STAFF.value],
    "active": True,
    "top_up_min_instalments_paid": None,  # no top-ups unless the product says when
    "min_score": None,  # no credit score asked (docs/loans/scoring.md)
}
TERM_FIELDS = frozenset(REQUIRED) | frozenset(DEFAULTS)
# Fields added after products were first written (migration 0017). A maker-checker request
# stored before then holds a whole definition without them; approving it takes these,
# which are what every product had until then.
LATER_FIELDS: dict[str, Any] = {
    name: DEFAULTS[name] for name in ("allocation_order", "early_payoff_interest")
}
MAX_SCORE = 2000  # a score is a sum of bin points (docs/loans/scoring.md): far above any table
E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Fee:
    """A fee: ``percent`` of the principal (of the balance cleared, for a top-up commission)
    and/or a ``fixed_cents`` amount, taken at ``timing``, for terms ``min_term``..``max_term``
    (``None``: any)."""

    kind: FeeKind
    timing: FeeTiming
    percent: Decimal | None = None
    fixed_cents: int | None = None
    min_term: int | None = None
    max_term: int | None = None

    def applies_to(self, term: int) -> bool:
        return (self.min_term is None or term >= self.min_term) and (
            self.max_term is None or term <= self.max_term
        )


@dataclass(frozen=True)
class ProductTerms:
    """One definition of a product, every field validated. Terms are in instalments of
    ``frequency``; amounts in cents; rates are percents per their period."""

    name: str
    rate_percent: Decimal
    rate_period: RatePeriod
    method: RepaymentMethod
    frequency: Frequency
    min_term: int
    max_term: int
    min_amount_cents: int
    max_amount_cents: int
    deposit_multiplier: Decimal
    min_membership_months: int
    min_deposits_cents: int
    fees: tuple[Fee, ...]
    penalty_rate_percent: Decimal
    penalty_rate_period: RatePeriod
    grace_instalments: int
    penalty_grace_days: int
    guarantor_policy: GuarantorPolicy
    guarantor_cover_percent: Decimal | None
    max_guarantees_per_guarantor: int
    self_guarantee_allowed: bool
    pledge_release: PledgeRelease
    allocation_order: AllocationOrder
    early_payoff_interest: EarlyPayoffInterest
    rounding: Rounding
    auto_approve_ceiling_cents: int
    channels: frozenset[Channel]
    active: bool = True
    # None: the product offers no top-ups; N: an active loan may be topped up once N of its
    # instalments are paid in full (docs/loans/book.md, "Top-ups").
    top_up_min_instalments_paid: int | None = None
    # None: no credit score asked; N: the appraisal refuses a score below N (migration 0030).
    min_score: int | None = None

    def fees_for(self, term: int) -> tuple[Fee, ...]:
        """The fees a loan of ``term`` instalments pays."""
        return tuple(f for f in self.fees if f.applies_to(term))


@dataclass(frozen=True)
class ProductView:
    """A product as staff read it: one version's terms and where it stands."""

    id: int
    code: str
    version: int
    version_id: int
    current_version: int
    terms: ProductTerms
    approval_id: int | None
    version_created_at: datetime
    created_at: datetime
    updated_at: datetime
    versions: tuple[int, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------ parsing


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text", field=name)
    return value


def _int(raw: Mapping[str, Any], name: str, low: int, high: int, label: str = "") -> int:
    label = label or name
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{label} must be a whole number", field=label)
    if value < low:
        raise InvalidInput(f"{label} must be at least {low}", field=label, reason="too_small")
    if value > high:
        raise InvalidInput(f"{label} must be at most {high}", field=label, reason="too_large")
    return value


def _bool(raw: Mapping[str, Any], name: str) -> bool:
    value = raw.get(name)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", field=name)
    return value


def _choice(value: Any, kind: type[E], label: str) -> E:
    try:
        return kind(value)
    except (ValueError, TypeError):
        allowed = ", ".join(k.value for k in kind)
        raise InvalidInput(f"{label} must be one of {allowed}", field=label) from None


def parse_decimal(value: Any, label: str, *, places: int, high: Decimal) -> Decimal:
    """An exact decimal from text (``"1.2"``), an int or a ``Decimal``; never a float.
    Refused: not a number, infinite or NaN, negative, more than ``places`` decimals,
    above ``high``."""
    if isinstance(value, bool | float):
        raise InvalidInput(
            f'{label} must be a decimal written as text, such as "1.2" (never a float)',
            field=label,
        )
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"-?[0-9]{1,12}(\.[0-9]{1,12})?", text):
            raise InvalidInput(f'{label} must be a decimal such as "1.2"', field=label)
        number = Decimal(text)
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    else:
        raise InvalidInput(f'{label} must be a decimal such as "1.2"', field=label)
    if not number.is_finite():
        raise InvalidInput(f"{label} must be a finite number", field=label)
    if number < 0:
        raise InvalidInput(f"{label} must not be negative", field=label, reason="negative")
    if number > high:
        raise InvalidInput(f"{label} must be at most {high}", field=label, reason="too_large")
    try:
        exact = number.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation:  # pragma: no cover - bounded by ``high``
        raise InvalidInput(f"{label} is out of range", field=label) from None
    if exact != number:
        raise InvalidInput(
            f"{label} may have at most {places} decimals", field=label, reason="precision"
        )
    return exact


def _fee(raw: Any, i: int, min_term: int, max_term: int) -> Fee:
    label = f"fees[{i}]"
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{label} must be an object", field=label)
    unknown = set(raw) - {"kind", "timing", "percent", "fixed_cents", "min_term", "max_term"}
    if unknown:
        raise InvalidInput(f"{label}: unknown field {sorted(unknown)[0]}", field=label)
    kind = _choice(raw.get("kind"), FeeKind, f"{label}.kind")
    timing = _choice(raw.get("timing"), FeeTiming, f"{label}.timing")
    if kind is FeeKind.TOP_UP_COMMISSION and timing is not FeeTiming.DEDUCTED:
        # Charged on the balance a top-up clears, when it clears it: from what it pays out.
        raise InvalidInput(
            f"{label}.timing: a top-up commission is deducted_at_disbursement",
            field=f"{label}.timing",
        )
    percent = None
    if raw.get("percent") is not None:
        percent = parse_decimal(
            raw["percent"], f"{label}.percent", places=RATE_PLACES, high=MAX_FEE_PERCENT
        )
    fixed = None
    if raw.get("fixed_cents") is not None:
        if kind is not FeeKind.PROCESSING:
            raise InvalidInput(
                f"{label}.fixed_cents: only a processing fee has a fixed amount; "
                f"{kind} is a percent",
                field=f"{label}.fixed_cents",
            )
        fixed = _int(raw, "fixed_cents", 0, MAX_POSTING_CENTS, f"{label}.fixed_cents")
    if not percent and not fixed:
        raise InvalidInput(
            f"{label}: give a percent above zero"
            + (" or a fixed amount" if kind is FeeKind.PROCESSING else ""),
            field=f"{label}.percent",
            reason="empty",
        )
    low = high = None
    if raw.get("min_term") is not None:
        low = _int(raw, "min_term", min_term, max_term, f"{label}.min_term")
    if raw.get("max_term") is not None:
        high = _int(raw, "max_term", min_term, max_term, f"{label}.max_term")
    if low is not None and high is not None and low > high:
        raise InvalidInput(
            f"{label}.min_term must not be above its max_term", field=f"{label}.min_term"
        )
    return Fee(kind, timing, percent, fixed, low, high)


def _overlap(a: Fee, b: Fee, min_term: int, max_term: int) -> bool:
    a_low, a_high = a.min_term or min_term, a.max_term or max_term
    b_low, b_high = b.min_term or min_term, b.max_term or max_term
    return a_low <= b_high and b_low <= a_high


def parse_terms(raw: Mapping[str, Any]) -> ProductTerms:
    """Validate a whole definition (``REQUIRED`` and every ``DEFAULTS`` field present);
    ``InvalidInput`` names the first field that is wrong."""
    unknown = set(raw) - TERM_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"unknown field {name}", field=name)
    for name in sorted(TERM_FIELDS - {"top_up_min_instalments_paid", "min_score"}):  # None: no
        if name not in raw or (raw[name] is None and name != "guarantor_cover_percent"):
            raise InvalidInput(f"{name} is required", field=name, reason="required")
    name = " ".join(_text(raw, "name").split())
    if not NAME_RE.match(name):
        raise InvalidInput("name: 3-60 letters, digits, spaces and . , & ( ) ' / -", field="name")
    rate_period = _choice(raw["rate_period"], RatePeriod, "rate_period")
    rate = parse_decimal(
        raw["rate_percent"], "rate_percent", places=RATE_PLACES,
        high=MAX_RATE_PERCENT[rate_period],
    )  # fmt: skip
    method = _choice(raw["method"], RepaymentMethod, "method")
    frequency = _choice(raw["frequency"], Frequency, "frequency")
    min_term = _int(raw, "min_term", 1, MAX_TERM)
    max_term = _int(raw, "max_term", 1, MAX_TERM)
    if min_term > max_term:
        raise InvalidInput("max_term must not be below min_term", field="max_term")
    min_amount = _int(raw, "min_amount_cents", 1, MAX_POSTING_CENTS)
    max_amount = _int(raw, "max_amount_cents", 1, MAX_POSTING_CENTS)
    if min_amount > max_amount:
        raise InvalidInput(
            "max_amount_cents must not be below min_amount_cents", field="max_amount_cents"
        )
    multiplier = parse_decimal(
        raw["deposit_multiplier"], "deposit_multiplier", places=SHARE_PLACES, high=MAX_MULTIPLIER
    )
    if multiplier == 0:
        raise InvalidInput(
            "deposit_multiplier must be above zero", field="deposit_multiplier", reason="zero"
        )
    fees_raw = raw["fees"]
    if not isinstance(fees_raw, Sequence) or isinstance(fees_raw, str):
        raise InvalidInput("fees must be a list", field="fees")
    if len(fees_raw) > MAX_FEES:
        raise InvalidInput(f"at most {MAX_FEES} fees", field="fees", reason="too_large")
    fees = tuple(_fee(f, i, min_term, max_term) for i, f in enumerate(fees_raw))
    for i, fee in enumerate(fees):
        for other in fees[:i]:
            if other.kind == fee.kind and _overlap(fee, other, min_term, max_term):
                raise InvalidInput(
                    f"fees[{i}]: a {fee.kind} fee already applies to some of these terms",
                    field=f"fees[{i}].min_term",
                    reason="overlap",
                )
    penalty_period = _choice(raw["penalty_rate_period"], RatePeriod, "penalty_rate_period")
    penalty = parse_decimal(
        raw["penalty_rate_percent"], "penalty_rate_percent", places=RATE_PLACES,
        high=MAX_RATE_PERCENT[penalty_period],
    )  # fmt: skip
    grace = _int(raw, "grace_instalments", 0, MAX_TERM)
    if grace >= min_term:
        raise InvalidInput(
            "grace_instalments must leave at least one instalment that repays principal "
            "(below min_term)",
            field="grace_instalments",
        )
    policy = _choice(raw["guarantor_policy"], GuarantorPolicy, "guarantor_policy")
    cover = None
    if policy is GuarantorPolicy.REQUIRED:
        if raw["guarantor_cover_percent"] is None:
            raise InvalidInput(
                "guarantor_cover_percent is required when guarantors are required",
                field="guarantor_cover_percent",
                reason="required",
            )
        cover = parse_decimal(
            raw["guarantor_cover_percent"], "guarantor_cover_percent",
            places=SHARE_PLACES, high=MAX_COVER_PERCENT,
        )  # fmt: skip
        if cover == 0:
            raise InvalidInput(
                "guarantor_cover_percent must be above zero (or guarantor_policy none)",
                field="guarantor_cover_percent",
                reason="zero",
            )
    elif raw["guarantor_cover_percent"] is not None:
        raise InvalidInput(
            "guarantor_cover_percent is for guarantor_policy required only",
            field="guarantor_cover_percent",
        )
    channels_raw = raw["channels"]
    if not isinstance(channels_raw, Sequence) or isinstance(channels_raw, str) or not channels_raw:
        raise InvalidInput("channels: a list of ussd, sms, staff", field="channels")
    channels = [_choice(c, Channel, "channels") for c in channels_raw]
    if len(set(channels)) != len(channels):
        raise InvalidInput("channels: each at most once", field="channels")
    top_up = None
    if raw.get("top_up_min_instalments_paid") is not None:
        # More than the longest term would offer top-ups that can never happen.
        top_up = _int(raw, "top_up_min_instalments_paid", 0, max_term)
    min_score = None
    if raw.get("min_score") is not None:
        min_score = _int(raw, "min_score", 0, MAX_SCORE)
    return ProductTerms(
        name=name,
        rate_percent=rate,
        rate_period=rate_period,
        method=method,
        frequency=frequency,
        min_term=min_term,
        max_term=max_term,
        min_amount_cents=min_amount,
        max_amount_cents=max_amount,
        deposit_multiplier=multiplier,
        min_membership_months=_int(raw, "min_membership_months", 0, MAX_MEMBERSHIP_MONTHS),
        min_deposits_cents=_int(raw, "min_deposits_cents", 0, MAX_POSTING_CENTS),
        fees=fees,
        penalty_rate_percent=penalty,
        penalty_rate_period=penalty_period,
        grace_instalments=grace,
        penalty_grace_days=_int(raw, "penalty_grace_days", 0, MAX_PENALTY_GRACE_DAYS),
        guarantor_policy=policy,
        guarantor_cover_percent=cover,
        max_guarantees_per_guarantor=_int(raw, "max_guarantees_per_guarantor", 1, MAX_GUARANTEES),
        self_guarantee_allowed=_bool(raw, "self_guarantee_allowed"),
        pledge_release=_choice(raw["pledge_release"], PledgeRelease, "pledge_release"),
        allocation_order=_choice(raw["allocation_order"], AllocationOrder, "allocation_order"),
        early_payoff_interest=_choice(
            raw["early_payoff_interest"], EarlyPayoffInterest, "early_payoff_interest"
        ),
        rounding=_choice(raw["rounding"], Rounding, "rounding"),
        auto_approve_ceiling_cents=_int(raw, "auto_approve_ceiling_cents", 0, MAX_POSTING_CENTS),
        channels=frozenset(channels),
        active=_bool(raw, "active"),
        top_up_min_instalments_paid=top_up,
        min_score=min_score,
    )


def decimal_text(value: Decimal) -> str:
    """``Decimal("1.2000")`` -> ``"1.2"``; ``Decimal("100.00")`` -> ``"100"``."""
    text = format(value.normalize(), "f")
    return text


def terms_payload(terms: ProductTerms) -> dict[str, Any]:
    """The terms as JSON (decimals as text), the shape ``parse_terms`` reads back."""

    def fee(f: Fee) -> dict[str, Any]:
        return {
            "kind": f.kind.value,
            "timing": f.timing.value,
            "percent": None if f.percent is None else decimal_text(f.percent),
            "fixed_cents": f.fixed_cents,
            "min_term": f.min_term,
            "max_term": f.max_term,
        }

    cover = terms.guarantor_cover_percent
    return {
        "name": terms.name,
        "rate_percent": decimal_text(terms.rate_percent),
        "rate_period": terms.rate_period.value,
        "method": terms.method.value,
        "frequency": terms.frequency.value,
        "min_term": terms.min_term,
        "max_term": terms.max_term,
        "min_amount_cents": terms.min_amount_cents,
        "max_amount_cents": terms.max_amount_cents,
        "deposit_multiplier": decimal_text(terms.deposit_multiplier),
        "min_membership_months": terms.min_membership_months,
        "min_deposits_cents": terms.min_deposits_cents,
        "fees": [fee(f) for f in terms.fees],
        "penalty_rate_percent": decimal_text(terms.penalty_rate_percent),
        "penalty_rate_period": terms.penalty_rate_period.value,
        "grace_instalments": terms.grace_instalments,
        "penalty_grace_days": terms.penalty_grace_days,
        "guarantor_policy": terms.guarantor_policy.value,
        "guarantor_cover_percent": None if cover is None else decimal_text(cover),
        "max_guarantees_per_guarantor": terms.max_guarantees_per_guarantor,
        "self_guarantee_allowed": terms.self_guarantee_allowed,
        "pledge_release": terms.pledge_release.value,
        "allocation_order": terms.allocation_order.value,
        "early_payoff_interest": terms.early_payoff_interest.value,
        "rounding": terms.rounding.value,
        "auto_approve_ceiling_cents": terms.auto_approve_ceiling_cents,
        "channels": sorted(c.value for c in terms.channels),
        "active": terms.active,
        "top_up_min_instalments_paid": terms.top_up_min_instalments_paid,
        "min_score": terms.min_score,
    }


def normalise_code(value: Any) -> str:
    if not isinstance(value, str) or not CODE_RE.match(value.strip().upper()):
        raise InvalidInput(
            "code: 2-8 capital letters or digits, starting with a letter (DEV, EMG)",
            field="code",
        )
    return value.strip().upper()


# ------------------------------------------------------------------ reading


def _fees_of(session: Session, version_id: int) -> list[LoanProductFee]:
    return list(
        session.scalars(
            select(LoanProductFee)
            .where(LoanProductFee.version_id == version_id)
            .order_by(LoanProductFee.position)
        )
    )


def _terms_of(row: LoanProductVersion, fees: list[LoanProductFee]) -> ProductTerms:
    return ProductTerms(
        name=row.name,
        rate_percent=row.rate_percent,
        rate_period=RatePeriod(row.rate_period),
        method=RepaymentMethod(row.method),
        frequency=Frequency(row.frequency),
        min_term=row.min_term,
        max_term=row.max_term,
        min_amount_cents=row.min_amount_cents,
        max_amount_cents=row.max_amount_cents,
        deposit_multiplier=row.deposit_multiplier,
        min_membership_months=row.min_membership_months,
        min_deposits_cents=row.min_deposits_cents,
        fees=tuple(
            Fee(
                FeeKind(f.kind),
                FeeTiming(f.timing),
                f.percent,
                f.fixed_cents,
                f.min_term,
                f.max_term,
            )  # fmt: skip
            for f in fees
        ),
        penalty_rate_percent=row.penalty_rate_percent,
        penalty_rate_period=RatePeriod(row.penalty_rate_period),
        grace_instalments=row.grace_instalments,
        penalty_grace_days=row.penalty_grace_days,
        guarantor_policy=GuarantorPolicy(row.guarantor_policy),
        guarantor_cover_percent=row.guarantor_cover_percent,
        max_guarantees_per_guarantor=row.max_guarantees_per_guarantor,
        self_guarantee_allowed=row.self_guarantee_allowed,
        pledge_release=PledgeRelease(row.pledge_release),
        allocation_order=AllocationOrder(row.allocation_order),
        early_payoff_interest=EarlyPayoffInterest(row.early_payoff_interest),
        rounding=Rounding(row.rounding),
        auto_approve_ceiling_cents=row.auto_approve_ceiling_cents,
        channels=frozenset(Channel(c) for c in row.channels.split()),
        active=row.active,
        top_up_min_instalments_paid=row.top_up_min_instalments_paid,
        min_score=row.min_score,
    )


def _view(
    session: Session, product: LoanProduct, row: LoanProductVersion, *, with_versions: bool
) -> ProductView:
    versions: tuple[int, ...] = ()
    if with_versions:
        versions = tuple(
            session.scalars(
                select(LoanProductVersion.version)
                .where(LoanProductVersion.product_id == product.id)
                .order_by(LoanProductVersion.version)
            )
        )
    return ProductView(
        id=product.id,
        code=product.code,
        version=row.version,
        version_id=row.id,
        current_version=product.current_version,
        terms=_terms_of(row, _fees_of(session, row.id)),
        approval_id=row.approval_id,
        version_created_at=row.created_at,
        created_at=product.created_at,
        updated_at=product.updated_at,
        versions=versions,
    )


def _version_row(session: Session, product_id: int, version: int) -> LoanProductVersion | None:
    return session.scalar(
        select(LoanProductVersion).where(
            LoanProductVersion.product_id == product_id, LoanProductVersion.version == version
        )
    )


def get_product(session: Session, product_id: int, *, version: int | None = None) -> ProductView:
    """A product at its current version, or at an earlier ``version`` (still readable: loans
    made under it keep it)."""
    product = session.get(LoanProduct, product_id)
    if product is None:
        raise NotFound("no such loan product")
    row = _version_row(session, product.id, version or product.current_version)
    if row is None:
        raise NotFound(f"loan product {product.code} has no version {version}")
    return _view(session, product, row, with_versions=True)


def list_products(
    session: Session, *, active: bool | None = None, limit: int = 50, after_id: int = 0
) -> list[ProductView]:
    """Products at their current version, by id; ``active`` filters on it."""
    stmt: Select[tuple[LoanProduct, LoanProductVersion]] = (
        select(LoanProduct, LoanProductVersion)
        .join(
            LoanProductVersion,
            (LoanProductVersion.product_id == LoanProduct.id)
            & (LoanProductVersion.version == LoanProduct.current_version),
        )
        .where(LoanProduct.id > after_id)
        .order_by(LoanProduct.id)
        .limit(limit)
    )
    if active is not None:
        stmt = stmt.where(LoanProductVersion.active.is_(active))
    return [_view(session, p, v, with_versions=False) for p, v in session.execute(stmt).tuples()]


def version_terms(session: Session, version_id: int) -> ProductTerms:
    """The terms of one version (what a loan made under it keeps)."""
    row = session.get(LoanProductVersion, version_id)
    if row is None:
        raise NotFound("no such loan product version")
    return _terms_of(row, _fees_of(session, row.id))


# ------------------------------------------------------------------ writing


def _write_version(
    session: Session,
    deps: CoreDeps,
    product: LoanProduct,
    version: int,
    terms: ProductTerms,
    approval_id: int | None,
) -> LoanProductVersion:
    row = LoanProductVersion(
        product_id=product.id,
        version=version,
        name=terms.name,
        rate_percent=terms.rate_percent,
        rate_period=terms.rate_period.value,
        method=terms.method.value,
        frequency=terms.frequency.value,
        min_term=terms.min_term,
        max_term=terms.max_term,
        min_amount_cents=terms.min_amount_cents,
        max_amount_cents=terms.max_amount_cents,
        deposit_multiplier=terms.deposit_multiplier,
        min_membership_months=terms.min_membership_months,
        min_deposits_cents=terms.min_deposits_cents,
        penalty_rate_percent=terms.penalty_rate_percent,
        penalty_rate_period=terms.penalty_rate_period.value,
        grace_instalments=terms.grace_instalments,
        penalty_grace_days=terms.penalty_grace_days,
        guarantor_policy=terms.guarantor_policy.value,
        guarantor_cover_percent=terms.guarantor_cover_percent,
        max_guarantees_per_guarantor=terms.max_guarantees_per_guarantor,
        self_guarantee_allowed=terms.self_guarantee_allowed,
        pledge_release=terms.pledge_release.value,
        allocation_order=terms.allocation_order.value,
        early_payoff_interest=terms.early_payoff_interest.value,
        rounding=terms.rounding.value,
        auto_approve_ceiling_cents=terms.auto_approve_ceiling_cents,
        channels=" ".join(sorted(c.value for c in terms.channels)),
        active=terms.active,
        top_up_min_instalments_paid=terms.top_up_min_instalments_paid,
        min_score=terms.min_score,
        approval_id=approval_id,
        created_at=deps.now(),
    )
    session.add(row)
    session.flush()
    for position, fee in enumerate(terms.fees):
        session.add(
            LoanProductFee(
                version_id=row.id,
                position=position,
                kind=fee.kind.value,
                percent=fee.percent,
                fixed_cents=fee.fixed_cents,
                timing=fee.timing.value,
                min_term=fee.min_term,
                max_term=fee.max_term,
            )  # fmt: skip
        )
    session.flush()
    return row


def create_product(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    code: str,
    terms: ProductTerms,
    *,
    approval_id: int | None = None,
) -> ProductView:
    """Write a new product at version 1 (approved through maker-checker, or seeded by the
    demo as ``SYSTEM``). Audited ``loan_product.created``."""
    code = normalise_code(code)
    if session.scalar(select(LoanProduct.id).where(LoanProduct.code == code)) is not None:
        raise DomainError(f"a loan product with code {code} exists", reason="duplicate")
    now = deps.now()
    product = LoanProduct(code=code, current_version=1, created_at=now, updated_at=now)
    try:
        with uow.savepoint(session):
            session.add(product)
            session.flush()
    except IntegrityError:  # the same code created concurrently
        raise DomainError(f"a loan product with code {code} exists", reason="duplicate") from None
    row = _write_version(session, deps, product, 1, terms, approval_id)
    audit.record(
        session, actor, "loan_product.created", target_type="loan_product",
        target_id=product.id, after={"code": code, "version": 1, **terms_payload(terms)},
        now=now,
    )  # fmt: skip
    return _view(session, product, row, with_versions=True)


def change_product(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    product_id: int,
    base_version: int,
    terms: ProductTerms,
    *,
    approval_id: int | None = None,
) -> ProductView:
    """Write version N+1 of a product and make it current, if the product is still at
    ``base_version`` (the version the change was asked against): a change approved after
    another would silently undo it. Audited ``loan_product.changed`` with what changed."""
    product = session.scalar(
        select(LoanProduct).where(LoanProduct.id == product_id).with_for_update()
    )
    if product is None:
        raise NotFound("no such loan product")
    if product.current_version != base_version:
        raise DomainError(
            f"loan product {product.code} changed since (now version "
            f"{product.current_version}, asked against {base_version}): ask again",
            reason="changed",
        )
    old = _version_row(session, product.id, base_version)
    assert old is not None
    before = terms_payload(_terms_of(old, _fees_of(session, old.id)))
    after = terms_payload(terms)
    changed = sorted(k for k in after if after[k] != before[k])
    if not changed:
        raise DomainError("the change changes nothing", reason="no_change")
    version = base_version + 1
    row = _write_version(session, deps, product, version, terms, approval_id)
    product.current_version = version
    product.updated_at = deps.now()
    session.flush()
    audit.record(
        session, actor, "loan_product.changed", target_type="loan_product",
        target_id=product.id,
        before={"version": base_version, **{k: before[k] for k in changed}},
        after={"version": version, **{k: after[k] for k in changed}},
        now=deps.now(),
    )  # fmt: skip
    return _view(session, product, row, with_versions=True)


# ------------------------------------------------------------------ maker-checker


def _pending(session: Session, action: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ApprovalRequest.payload).where(
            ApprovalRequest.action == action, ApprovalRequest.status == ApprovalStatus.PENDING
        )
    )
    out = []
    for text in rows:
        value = json.loads(text)
        if isinstance(value, dict):
            out.append(value)
    return out


def check_create(session: Session, body: dict[str, Any]) -> None:
    """Validate a request for a new product and normalise it in place to
    ``{"code": ..., "terms": {...every field...}}`` (what approval writes)."""
    raw = dict(body)
    code = normalise_code(raw.pop("code", None))
    terms = parse_terms({**DEFAULTS, **raw})
    if session.scalar(select(LoanProduct.id).where(LoanProduct.code == code)) is not None:
        raise DomainError(f"a loan product with code {code} exists", reason="duplicate")
    if any(p.get("code") == code for p in _pending(session, CREATE_ACTION)):
        raise DomainError(f"a new product {code} already waits for approval", reason="duplicate")
    body.clear()
    body.update({"code": code, "terms": terms_payload(terms)})


def check_change(session: Session, body: dict[str, Any]) -> None:
    """Validate a change (any fields of the definition; ``fees`` and ``channels`` are
    replaced whole) against the product's current version and normalise it in place to
    ``{"product_id", "code", "base_version", "changed", "terms"}``."""
    raw = dict(body)
    product_id = raw.pop("product_id", None)
    if isinstance(product_id, bool) or not isinstance(product_id, int):
        raise InvalidInput("product_id must be a whole number", field="product_id")
    product = session.get(LoanProduct, product_id)
    if product is None:
        raise NotFound("no such loan product")
    if "code" in raw:
        raise InvalidInput("a product's code never changes", field="code")
    if not raw:
        raise InvalidInput("give at least one field to change", field="body", reason="empty")
    unknown = set(raw) - TERM_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"unknown field {name}", field=name)
    current = get_product(session, product.id)
    merged = {**terms_payload(current.terms), **raw}
    if raw.get("guarantor_policy") == GuarantorPolicy.NONE and "guarantor_cover_percent" not in raw:
        merged["guarantor_cover_percent"] = None
    terms = parse_terms(merged)
    before, after = terms_payload(current.terms), terms_payload(terms)
    changed = sorted(k for k in after if after[k] != before[k])
    if not changed:
        raise InvalidInput("the change changes nothing", field=sorted(raw)[0], reason="no_change")
    body.clear()
    body.update(
        {
            "product_id": product.id,
            "code": product.code,
            "base_version": product.current_version,
            "changed": changed,
            "terms": after,
        }
    )


def _with_later_fields(terms: Any) -> Mapping[str, Any]:
    """A stored request's definition, with ``LATER_FIELDS`` where it predates them."""
    if not isinstance(terms, Mapping):
        return {}
    return {**LATER_FIELDS, **terms}


def approve_create(
    session: Session, deps: CoreDeps, checker: Principal, approval_id: int, p: Mapping[str, Any]
) -> dict[str, Any]:
    terms = parse_terms(_with_later_fields(p.get("terms")))
    view = create_product(
        session, deps, checker, str(p.get("code", "")), terms, approval_id=approval_id
    )
    return {"product_id": view.id, "code": view.code, "version": view.version}


def approve_change(
    session: Session, deps: CoreDeps, checker: Principal, approval_id: int, p: Mapping[str, Any]
) -> dict[str, Any]:
    terms = parse_terms(_with_later_fields(p.get("terms")))
    base = p.get("base_version")
    product_id = p.get("product_id")
    if not isinstance(base, int) or not isinstance(product_id, int):
        raise InvalidInput("a malformed change request", field="payload")
    view = change_product(session, deps, checker, product_id, base, terms, approval_id=approval_id)
    return {"product_id": view.id, "code": view.code, "version": view.version}
