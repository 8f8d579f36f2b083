"""A member's further savings accounts (issue 14, part 1; docs/savings/products.md#more-
than-one-savings-account): a holiday or school-fees account under a savings product, opened
by the member on USSD or by staff, one per member and product.

Every member has three accounts under the default products (savings, deposits, shares).
A further account is a ledger account of purpose ``product_savings`` whose
``savings_product_id`` names its product, coded ``2000-<member number>-<product code>``
(under savings, a liability). Money reaches it by any credit path with the **target**
``@<product code>`` (``product_target``: an M-Pesa paybill account ``<member number>
<product code>``, ``core.payments.mpesa.rules.parse_bill_ref``). It earns interest by its
product and keeps its product's rules where money leaves (``core.savings.rules``).

A product is **open to members** (USSD and staff) when it is active, of kind ordinary
savings and not one of the three defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import MemberAccount, Purpose
from core.members.registration import get_member
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from core.savings.vocabulary import ProductKind
from db.models import Account, Member
from db.models_savings import SavingsProduct, SavingsProductVersion

TARGET_PREFIX = "@"
OPEN_STATUSES = frozenset({MemberStatus.PENDING_KYC, MemberStatus.ACTIVE})


class AccountRefused(DomainError):
    """A further savings account that cannot be opened (``reason``: ``not_open``,
    ``already_open``)."""

    code = "savings_account_refused"


@dataclass(frozen=True, slots=True)
class OpenProduct:
    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class HeldAccount:
    """One of a member's savings accounts: ``target`` is ``savings`` for the first, else
    ``@<product code>``; ``name`` the product's."""

    account_id: int
    target: str
    code: str
    name: str
    balance_cents: int
    available_cents: int


def product_target(code: str) -> str:
    return f"{TARGET_PREFIX}{code}"


def is_product_target(target: str) -> bool:
    return target.startswith(TARGET_PREFIX)


def open_products(session: Session) -> list[OpenProduct]:
    """Products a member may open an account under, by code."""
    rows = session.execute(
        select(SavingsProduct.id, SavingsProduct.code, SavingsProductVersion.name)
        .join(
            SavingsProductVersion,
            (SavingsProductVersion.product_id == SavingsProduct.id)
            & (SavingsProductVersion.version == SavingsProduct.current_version),
        )
        .where(
            SavingsProduct.default_for.is_(None),
            SavingsProductVersion.active.is_(True),
            SavingsProductVersion.kind == ProductKind.ORDINARY_SAVINGS.value,
        )
        .order_by(SavingsProduct.code)
    ).all()
    return [OpenProduct(int(r.id), str(r.code), str(r.name)) for r in rows]


def savings_accounts(session: Session, member_id: int) -> list[HeldAccount]:
    """The member's savings accounts: the first (``savings``), then the further ones by
    product code. Closed accounts are left out."""
    rows = session.execute(
        select(
            Account.id,
            Account.purpose,
            Account.balance_cents,
            Account.held_cents,
            SavingsProduct.code,
            SavingsProductVersion.name,
        )  # fmt: skip
        .join(
            SavingsProduct,
            (SavingsProduct.id == Account.savings_product_id)
            | (
                (Account.savings_product_id.is_(None))
                & (SavingsProduct.default_for == Account.purpose)
            ),
        )
        .join(
            SavingsProductVersion,
            (SavingsProductVersion.product_id == SavingsProduct.id)
            & (SavingsProductVersion.version == SavingsProduct.current_version),
        )
        .where(
            Account.member_id == member_id,
            Account.purpose.in_([Purpose.SAVINGS.value, Purpose.PRODUCT_SAVINGS.value]),
            Account.closed_at.is_(None),
        )
        .order_by(Account.purpose != Purpose.SAVINGS.value, SavingsProduct.code)
    ).all()
    return [
        HeldAccount(
            account_id=int(r.id),
            target="savings" if r.purpose == Purpose.SAVINGS else product_target(r.code),
            code=str(r.code),
            name=str(r.name),
            balance_cents=int(r.balance_cents),
            available_cents=int(r.balance_cents - r.held_cents),
        )
        for r in rows
    ]


def account_for_target(session: Session, member_id: int, target: str) -> HeldAccount:
    """The member's account a ``@<code>`` target names (``NotFound`` if not held)."""
    for held in savings_accounts(session, member_id):
        if held.target == target:
            return held
    raise NotFound(f"the member holds no {target.removeprefix(TARGET_PREFIX)} account")


def holds_target(session: Session, member_id: int, target: str) -> bool:
    return any(h.target == target for h in savings_accounts(session, member_id))


def open_savings_account(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    product_code: str,
    actor: Principal | None = None,
) -> HeldAccount:
    """Open the member's account under ``product_code`` (a product open to members): a
    pending or active member, one account per product (``already_open``). The member
    gets the SMS ``savings_account_opened`` with the paybill account to pay into; staff
    opening it are audited."""
    if not isinstance(product_code, str) or not product_code.strip():
        raise InvalidInput("product_code is required", field="product_code")
    code = product_code.strip().upper()
    product = next((p for p in open_products(session) if p.code == code), None)
    if product is None:
        raise AccountRefused(f"{code} is not a savings product open to members",
                             reason="not_open")  # fmt: skip
    member = get_member(session, member_id)
    if member.status not in OPEN_STATUSES:
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    # The member row first: two opens of the same product queue here.
    session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    if holds_target(session, member.id, product_target(code)):
        raise AccountRefused(f"the member already holds a {code} account", reason="already_open")
    number = member.member_number or str(member.id)
    now = deps.now()
    try:
        with uow.savepoint(session):
            account = ledger.create_account(
                session, code=f"{MemberAccount.SAVINGS.code_for(number)}-{code}",
                name=f"{product.name} {number}"[:120], type_=MemberAccount.SAVINGS.account_type,
                purpose=Purpose.PRODUCT_SAVINGS, no_overdraft=True, now=now, member_id=member.id,
            )  # fmt: skip
            account.savings_product_id = product.id
            session.flush()
    except IntegrityError:  # the same account opened at the same moment
        raise AccountRefused(f"the member already holds a {code} account",
                             reason="already_open") from None  # fmt: skip
    notify(
        session, template="savings_account_opened",
        business_key=f"savings_account_opened:{account.id}", now=now, member=member,
        data={"sacco": deps.sacco_name, "product": product.name[:20],
              "paybill_account": f"{number}{code}"},
    )  # fmt: skip
    if actor is not None:
        audit.record(
            session, actor, "savings_account.opened", target_type="member", target_id=member.id,
            after={"product": code, "account": account.code}, now=now,
        )  # fmt: skip
    return account_for_target(session, member.id, product_target(code))
