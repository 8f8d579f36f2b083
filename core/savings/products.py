"""Savings products: what a member saves under, and how creating and changing one works
(issue 14, part 1; docs/savings/products.md).

The same pattern as loan products (``core.loans.products``): a definition
(``SavingsTerms``) is validated here once for every edge (``InvalidInput`` naming the
field); creating and changing a product is maker-checker (``core.savings.approval_actions``:
the request carries the whole definition, normalised by ``check_create`` /
``check_change``; approval writes it); each approved definition is a new immutable
version and the product points at its current one.

Every member's three accounts belong to the three default products migration 0029 seeds
(``default_for``: savings, deposits, shares), at rate 0 until a SACCO sets one. The
accrual reads the current version of each product on the day it runs.

The caps are sanity guards against typing errors (``MAX_RATE_PERCENT``), not law.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.approvals.vocabulary import ApprovalStatus
from core.audit import log as audit
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.permissions import Principal
from core.ledger.entries import MAX_POSTING_CENTS
from core.loans.products import decimal_text, normalise_code, parse_decimal
from core.savings.vocabulary import (
    BalanceMethod,
    DayCount,
    FdInterestAt,
    FdPenalty,
    PostingFrequency,
    ProductKind,
)
from db.models import ApprovalRequest
from db.models_savings import SavingsProduct, SavingsProductVersion

CREATE_ACTION = "savings_product.create"
CHANGE_ACTION = "savings_product.change"
MAKER_PERMISSION = "savings_products:manage"
# A product's rate is what the SACCO owes every member under it: a manager decides.
CHECKER_PERMISSION = "approvals:decide_large"

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .,&()'/-]{2,59}$")
# A sanity cap (typing errors). It also keeps a day's interest units inside a BIGINT in
# the accrual (balance x rate x 10,000; core.savings.interest).
MAX_RATE_PERCENT = Decimal(30)
RATE_PLACES = 4
WITHDRAWABLE = frozenset({ProductKind.ORDINARY_SAVINGS})

REQUIRED = ("name", "kind")
DEFAULTS: dict[str, Any] = {
    "rate_percent": "0",
    "balance_method": BalanceMethod.DAILY_BALANCE.value,
    "day_count": DayCount.ACTUAL_365.value,
    "min_balance_to_earn_cents": 0,
    "posting_frequency": PostingFrequency.MONTHLY.value,
    "min_balance_cents": 0,
    "withdrawal_fee_cents": 0,
    "daily_withdrawal_limit_cents": None,  # none
    "active": True,
}
# A fixed deposit's own terms (docs/savings/fixed-deposits.md): required for that kind,
# refused for every other. Read and written only for that kind, so the other kinds'
# definitions are what they were.
FD_FIELDS = ("term_months", "interest_at", "penalty", "penalty_rate_percent")
MAX_TERM_MONTHS = 120
TERM_FIELDS = frozenset(REQUIRED) | frozenset(DEFAULTS) | frozenset(FD_FIELDS)


@dataclass(frozen=True)
class FixedTerms:
    """A fixed-deposit product's term, interest mode and early-closure penalty."""

    term_months: int
    interest_at: FdInterestAt
    penalty: FdPenalty
    penalty_rate_percent: Decimal


@dataclass(frozen=True)
class SavingsTerms:
    """One definition of a savings product, every field validated. Amounts in cents; the
    rate is an annual percent."""

    name: str
    kind: ProductKind
    rate_percent: Decimal
    balance_method: BalanceMethod
    day_count: DayCount
    min_balance_to_earn_cents: int
    posting_frequency: PostingFrequency
    min_balance_cents: int
    withdrawal_fee_cents: int
    daily_withdrawal_limit_cents: int | None
    active: bool = True
    fixed: FixedTerms | None = None  # a fixed deposit's terms; None for every other kind


@dataclass(frozen=True)
class SavingsProductView:
    id: int
    code: str
    default_for: str | None
    version: int
    current_version: int
    terms: SavingsTerms
    approval_id: int | None
    version_created_at: datetime
    created_at: datetime
    updated_at: datetime
    versions: tuple[int, ...] = ()


def _cents(raw: Mapping[str, Any], name: str, *, low: int = 0) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number of cents", field=name)
    if value < low:
        raise InvalidInput(f"{name} must be at least {low}", field=name, reason="too_small")
    if value > MAX_POSTING_CENTS:
        raise InvalidInput(f"{name} is too large", field=name, reason="too_large")
    return value


def _choice(value: Any, kind: type[Any], label: str) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError):
        allowed = ", ".join(k.value for k in kind)
        raise InvalidInput(f"{label} must be one of {allowed}", field=label) from None


def parse_terms(raw: Mapping[str, Any]) -> SavingsTerms:
    """Validate a whole definition; ``InvalidInput`` names the first field that is wrong."""
    unknown = set(raw) - TERM_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"unknown field {name}", field=name)
    for name in sorted(TERM_FIELDS - {"daily_withdrawal_limit_cents", *FD_FIELDS}):
        if raw.get(name) is None:
            raise InvalidInput(f"{name} is required", field=name, reason="required")
    name = raw["name"]
    if not isinstance(name, str) or not NAME_RE.match(" ".join(name.split())):
        raise InvalidInput("name: 3-60 letters, digits, spaces and . , & ( ) ' / -", field="name")
    kind = _choice(raw["kind"], ProductKind, "kind")
    rate = parse_decimal(
        raw["rate_percent"], "rate_percent", places=RATE_PLACES, high=MAX_RATE_PERCENT
    )
    if kind is ProductKind.SHARE_CAPITAL and rate != 0:
        raise InvalidInput(
            "share capital earns dividends at year end, never interest: rate_percent 0",
            field="rate_percent",
        )
    fee = _cents(raw, "withdrawal_fee_cents")
    limit = raw.get("daily_withdrawal_limit_cents")
    if limit is not None:
        limit = _cents(raw, "daily_withdrawal_limit_cents", low=1)
    if kind not in WITHDRAWABLE and (fee or limit is not None):
        field = "withdrawal_fee_cents" if fee else "daily_withdrawal_limit_cents"
        raise InvalidInput(f"a {kind} product is not withdrawable: no {field}", field=field)
    active = raw["active"]
    if not isinstance(active, bool):
        raise InvalidInput("active must be true or false", field="active")
    fixed = _fixed_terms(raw, kind)
    return SavingsTerms(
        name=" ".join(name.split()),
        kind=kind,
        rate_percent=rate,
        balance_method=_choice(raw["balance_method"], BalanceMethod, "balance_method"),
        day_count=_choice(raw["day_count"], DayCount, "day_count"),
        min_balance_to_earn_cents=_cents(raw, "min_balance_to_earn_cents"),
        posting_frequency=_choice(raw["posting_frequency"], PostingFrequency, "posting_frequency"),
        min_balance_cents=_cents(raw, "min_balance_cents"),
        withdrawal_fee_cents=fee,
        daily_withdrawal_limit_cents=limit,
        active=active,
        fixed=fixed,
    )


def _fixed_terms(raw: Mapping[str, Any], kind: ProductKind) -> FixedTerms | None:
    if kind is not ProductKind.FIXED_DEPOSIT:
        given = next((f for f in FD_FIELDS if raw.get(f) is not None), None)
        if given is not None:
            raise InvalidInput(f"{given} is for fixed deposits only", field=given)
        return None
    for name in FD_FIELDS[:3]:
        if raw.get(name) is None:
            raise InvalidInput(f"{name} is required for a fixed deposit", field=name,
                               reason="required")  # fmt: skip
    months = raw["term_months"]
    if (
        isinstance(months, bool)
        or not isinstance(months, int)
        or not (1 <= months <= MAX_TERM_MONTHS)
    ):
        raise InvalidInput(f"term_months: 1 to {MAX_TERM_MONTHS}", field="term_months")
    penalty = _choice(raw["penalty"], FdPenalty, "penalty")
    raw_rate = raw.get("penalty_rate_percent")
    if penalty is FdPenalty.RATE:
        if raw_rate is None:
            raise InvalidInput("penalty_rate_percent is required for a rate penalty",
                               field="penalty_rate_percent", reason="required")  # fmt: skip
        rate = parse_decimal(raw_rate, "penalty_rate_percent", places=RATE_PLACES,
                             high=MAX_RATE_PERCENT)  # fmt: skip
    else:
        if raw_rate is not None and parse_decimal(
            raw_rate, "penalty_rate_percent", places=RATE_PLACES, high=MAX_RATE_PERCENT
        ):
            raise InvalidInput("a forfeit_interest penalty takes no penalty_rate_percent",
                               field="penalty_rate_percent")  # fmt: skip
        rate = Decimal(0)
    return FixedTerms(months, _choice(raw["interest_at"], FdInterestAt, "interest_at"),
                      penalty, rate)  # fmt: skip


def terms_payload(terms: SavingsTerms) -> dict[str, Any]:
    """The terms as JSON (the rate as text), the shape ``parse_terms`` reads back."""
    return {
        "name": terms.name,
        "kind": terms.kind.value,
        "rate_percent": decimal_text(terms.rate_percent),
        "balance_method": terms.balance_method.value,
        "day_count": terms.day_count.value,
        "min_balance_to_earn_cents": terms.min_balance_to_earn_cents,
        "posting_frequency": terms.posting_frequency.value,
        "min_balance_cents": terms.min_balance_cents,
        "withdrawal_fee_cents": terms.withdrawal_fee_cents,
        "daily_withdrawal_limit_cents": terms.daily_withdrawal_limit_cents,
        "active": terms.active,
        **(
            {
                "term_months": terms.fixed.term_months,
                "interest_at": terms.fixed.interest_at.value,
                "penalty": terms.fixed.penalty.value,
                "penalty_rate_percent": decimal_text(terms.fixed.penalty_rate_percent),
            }
            if terms.fixed is not None
            else {}
        ),
    }


# ------------------------------------------------------------------ reading


def _terms_of(row: SavingsProductVersion) -> SavingsTerms:
    return SavingsTerms(
        name=row.name,
        kind=ProductKind(row.kind),
        rate_percent=row.rate_percent,
        balance_method=BalanceMethod(row.balance_method),
        day_count=DayCount(row.day_count),
        min_balance_to_earn_cents=row.min_balance_to_earn_cents,
        posting_frequency=PostingFrequency(row.posting_frequency),
        min_balance_cents=row.min_balance_cents,
        withdrawal_fee_cents=row.withdrawal_fee_cents,
        daily_withdrawal_limit_cents=row.daily_withdrawal_limit_cents,
        active=row.active,
        fixed=(
            FixedTerms(
                row.fd_term_months,
                FdInterestAt(row.fd_interest_at),
                FdPenalty(row.fd_penalty or FdPenalty.FORFEIT_INTEREST),
                row.fd_penalty_rate_percent or Decimal(0),
            )
            if row.fd_term_months is not None and row.fd_interest_at is not None
            else None
        ),
    )


def _version_row(session: Session, product_id: int, version: int) -> SavingsProductVersion | None:
    return session.scalar(
        select(SavingsProductVersion).where(
            SavingsProductVersion.product_id == product_id,
            SavingsProductVersion.version == version,
        )
    )


def _view(
    session: Session, product: SavingsProduct, row: SavingsProductVersion, *, with_versions: bool
) -> SavingsProductView:
    versions: tuple[int, ...] = ()
    if with_versions:
        versions = tuple(
            session.scalars(
                select(SavingsProductVersion.version)
                .where(SavingsProductVersion.product_id == product.id)
                .order_by(SavingsProductVersion.version)
            )
        )
    return SavingsProductView(
        id=product.id,
        code=product.code,
        default_for=product.default_for,
        version=row.version,
        current_version=product.current_version,
        terms=_terms_of(row),
        approval_id=row.approval_id,
        version_created_at=row.created_at,
        created_at=product.created_at,
        updated_at=product.updated_at,
        versions=versions,
    )


def get_product(
    session: Session, product_id: int, *, version: int | None = None
) -> SavingsProductView:
    """A product at its current version, or at an earlier ``version``."""
    product = session.get(SavingsProduct, product_id)
    if product is None:
        raise NotFound("no such savings product")
    row = _version_row(session, product.id, version or product.current_version)
    if row is None:
        raise NotFound(f"savings product {product.code} has no version {version}")
    return _view(session, product, row, with_versions=True)


def list_products(
    session: Session, *, limit: int = 50, after_id: int = 0
) -> list[SavingsProductView]:
    """Products at their current version, by id."""
    rows = session.execute(
        select(SavingsProduct, SavingsProductVersion)
        .join(
            SavingsProductVersion,
            (SavingsProductVersion.product_id == SavingsProduct.id)
            & (SavingsProductVersion.version == SavingsProduct.current_version),
        )
        .where(SavingsProduct.id > after_id)
        .order_by(SavingsProduct.id)
        .limit(limit)
    ).tuples()
    return [_view(session, p, v, with_versions=False) for p, v in rows]


def product_for(session: Session, purpose: str) -> SavingsProductView:
    """The default product of a member account (``savings``, ``deposits``, ``shares``)."""
    product = session.scalar(select(SavingsProduct).where(SavingsProduct.default_for == purpose))
    if product is None:
        raise NotFound(f"no savings product for {purpose}")
    return get_product(session, product.id)


# ------------------------------------------------------------------ writing


def _write_version(
    session: Session,
    deps: CoreDeps,
    product: SavingsProduct,
    version: int,
    terms: SavingsTerms,
    approval_id: int | None,
) -> SavingsProductVersion:
    row = SavingsProductVersion(
        product_id=product.id,
        version=version,
        name=terms.name,
        kind=terms.kind.value,
        rate_percent=terms.rate_percent,
        balance_method=terms.balance_method.value,
        day_count=terms.day_count.value,
        min_balance_to_earn_cents=terms.min_balance_to_earn_cents,
        posting_frequency=terms.posting_frequency.value,
        min_balance_cents=terms.min_balance_cents,
        withdrawal_fee_cents=terms.withdrawal_fee_cents,
        daily_withdrawal_limit_cents=terms.daily_withdrawal_limit_cents,
        active=terms.active,
        approval_id=approval_id,
        created_at=deps.now(),
        fd_term_months=terms.fixed.term_months if terms.fixed else None,
        fd_interest_at=terms.fixed.interest_at.value if terms.fixed else None,
        fd_penalty=terms.fixed.penalty.value if terms.fixed else None,
        fd_penalty_rate_percent=terms.fixed.penalty_rate_percent if terms.fixed else None,
    )
    session.add(row)
    session.flush()
    return row


def _duplicate(code: str) -> DomainError:
    return DomainError(f"a savings product with code {code} exists", reason="duplicate")


def create_product(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    code: str,
    terms: SavingsTerms,
    *,
    approval_id: int | None = None,
) -> SavingsProductView:
    """Write a new product at version 1. Audited ``savings_product.created``."""
    code = normalise_code(code)
    if session.scalar(select(SavingsProduct.id).where(SavingsProduct.code == code)) is not None:
        raise _duplicate(code)
    now = deps.now()
    product = SavingsProduct(code=code, current_version=1, created_at=now, updated_at=now)
    try:
        with uow.savepoint(session):
            session.add(product)
            session.flush()
    except IntegrityError:  # the same code created concurrently
        raise _duplicate(code) from None
    row = _write_version(session, deps, product, 1, terms, approval_id)
    audit.record(
        session, actor, "savings_product.created", target_type="savings_product",
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
    terms: SavingsTerms,
    *,
    approval_id: int | None = None,
) -> SavingsProductView:
    """Write version N+1 and make it current, if the product is still at ``base_version``
    (a change approved after another would silently undo it). Audited
    ``savings_product.changed`` with what changed."""
    product = session.scalar(
        select(SavingsProduct).where(SavingsProduct.id == product_id).with_for_update()
    )
    if product is None:
        raise NotFound("no such savings product")
    if product.current_version != base_version:
        raise DomainError(
            f"savings product {product.code} changed since (now version "
            f"{product.current_version}, asked against {base_version}): ask again",
            reason="changed",
        )
    old = _version_row(session, product.id, base_version)
    assert old is not None
    before, after = terms_payload(_terms_of(old)), terms_payload(terms)
    changed = sorted(k for k in after if after[k] != before[k])
    if not changed:
        raise DomainError("the change changes nothing", reason="no_change")
    if after["kind"] != before["kind"]:
        raise DomainError("a product's kind never changes", reason="kind")
    version = base_version + 1
    row = _write_version(session, deps, product, version, terms, approval_id)
    product.current_version = version
    product.updated_at = deps.now()
    session.flush()
    audit.record(
        session, actor, "savings_product.changed", target_type="savings_product",
        target_id=product.id,
        before={"version": base_version, **{k: before[k] for k in changed}},
        after={"version": version, **{k: after[k] for k in changed}},
        now=deps.now(),
    )  # fmt: skip
    return _view(session, product, row, with_versions=True)


# ------------------------------------------------------------------ maker-checker


def _pending_codes(session: Session) -> set[str]:
    out = set()
    for text in session.scalars(
        select(ApprovalRequest.payload).where(
            ApprovalRequest.action == CREATE_ACTION,
            ApprovalRequest.status == ApprovalStatus.PENDING,
        )
    ):
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            out.add(value["code"])
    return out


def check_create(session: Session, body: dict[str, Any]) -> None:
    """Validate a request for a new product; normalise it in place to
    ``{"code": ..., "terms": {...every field...}}`` (what approval writes)."""
    raw = dict(body)
    code = normalise_code(raw.pop("code", None))
    terms = parse_terms({**DEFAULTS, **raw})
    if session.scalar(select(SavingsProduct.id).where(SavingsProduct.code == code)) is not None:
        raise _duplicate(code)
    if code in _pending_codes(session):
        raise DomainError(f"a new product {code} already waits for approval", reason="duplicate")
    body.clear()
    body.update({"code": code, "terms": terms_payload(terms)})


def check_change(session: Session, body: dict[str, Any]) -> None:
    """Validate a change (any fields but ``kind``) against the current version; normalise
    it in place to ``{"product_id", "code", "base_version", "changed", "terms"}``."""
    raw = dict(body)
    product_id = raw.pop("product_id", None)
    if isinstance(product_id, bool) or not isinstance(product_id, int):
        raise InvalidInput("product_id must be a whole number", field="product_id")
    product = session.get(SavingsProduct, product_id)
    if product is None:
        raise NotFound("no such savings product")
    for fixed in ("code", "kind"):
        if fixed in raw:
            raise InvalidInput(f"a product's {fixed} never changes", field=fixed)
    if not raw:
        raise InvalidInput("give at least one field to change", field="body", reason="empty")
    unknown = set(raw) - TERM_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"unknown field {name}", field=name)
    current = get_product(session, product.id)
    before = terms_payload(current.terms)
    after = terms_payload(parse_terms({**before, **raw}))
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


def approve_create(
    session: Session, deps: CoreDeps, checker: Principal, approval_id: int, p: Mapping[str, Any]
) -> dict[str, Any]:
    terms = parse_terms(p.get("terms") or {})
    view = create_product(
        session, deps, checker, str(p.get("code", "")), terms, approval_id=approval_id
    )
    return {"product_id": view.id, "code": view.code, "version": view.version}


def approve_change(
    session: Session, deps: CoreDeps, checker: Principal, approval_id: int, p: Mapping[str, Any]
) -> dict[str, Any]:
    terms = parse_terms(p.get("terms") or {})
    base, product_id = p.get("base_version"), p.get("product_id")
    if not isinstance(base, int) or not isinstance(product_id, int):
        raise InvalidInput("a malformed change request", field="payload")
    view = change_product(session, deps, checker, product_id, base, terms, approval_id=approval_id)
    return {"product_id": view.id, "code": view.code, "version": view.version}
