"""Savings products: staff read them; creating and changing one (setting a rate, say) is
maker-checker (a manager asks, another manager approves under ``/approvals``). Share
capital transferred between members is maker-checker too (``share.transfer``)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import ask
from api.v1.security import current, requires, runtime
from core.members.backoffice import visible_member
from core.savings import member_accounts, products, shares

blp = Blueprint(
    "api_savings_products", __name__, url_prefix="/api/v1", description="Savings products"
)

SavingsProductPage = sc.page_schema(sc.SavingsProductOut, "SavingsProductPage")


def product_out(view: products.SavingsProductView) -> dict[str, Any]:
    return {
        "id": view.id,
        "code": view.code,
        "default_for": view.default_for,
        "version": view.version,
        "current_version": view.current_version,
        "versions": list(view.versions),
        **products.terms_payload(view.terms),
        "approval_id": view.approval_id,
        "version_created_at": view.version_created_at,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }


@blp.route("/savings-products", methods=["GET"])
@requires("savings_products:read")
@blp.arguments(sc.PageArgs, location="query")
@blp.response(200, SavingsProductPage)
def list_products(args: dict[str, Any]) -> Any:
    """Savings products at their current version, the three defaults first."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = products.list_products(
            s, limit=args["limit"] + 1, after_id=sc.decode_cursor(args["cursor"])
        )
    page = sc.page(rows, args["limit"])
    return {"items": [product_out(v) for v in page["items"]], "next_cursor": page["next_cursor"]}


@blp.route("/savings-products", methods=["POST"])
@requires("savings_products:manage")
@blp.arguments(sc.SavingsProductIn)
@blp.response(202, sc.ApprovalOut)
def request_product(body: dict[str, Any]) -> Any:
    """Ask for a new savings product: a pending request (``savings_product.create``) that
    another person holding ``approvals:decide_large`` approves; approval creates it at
    version 1. The rate is an annual percent written as text."""
    note = body.pop("note", "") or f"new savings product {body.get('code', '')}"
    return ask(products.CREATE_ACTION, None, body, note)


@blp.route("/savings-products/<int:product_id>", methods=["GET"])
@requires("savings_products:read")
@blp.arguments(sc.LoanProductVersionArgs, location="query")
@blp.response(200, sc.SavingsProductOut)
def get_product(args: dict[str, Any], product_id: int) -> Any:
    """A product at its current version, or ``?version=`` an earlier one."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return product_out(products.get_product(s, product_id, version=args["version"]))


@blp.route("/savings-products/<int:product_id>", methods=["PUT"])
@requires("savings_products:manage")
@blp.arguments(sc.SavingsProductChangeIn)
@blp.response(202, sc.ApprovalOut)
def request_change(body: dict[str, Any], product_id: int) -> Any:
    """Ask to change a product (``savings_product.change``; setting its rate, say): the
    fields given replace the current version's; approval writes the next version, if no
    other change was approved meanwhile. The accrual uses the version current on its day."""
    note = body.pop("note", "") or "savings product change"
    return ask(products.CHANGE_ACTION, None, {**body, "product_id": product_id}, note)


@blp.route("/members/<int:member_id>/share-transfers", methods=["POST"])
@requires(shares.MAKER_PERMISSION)
@blp.arguments(sc.ShareTransferIn)
@blp.response(202, sc.ApprovalOut)
def request_share_transfer(body: dict[str, Any], member_id: int) -> Any:
    """Ask to transfer share capital from this member to another (``share.transfer``): a
    pending request another person approves under ``/approvals`` (a manager above the
    large threshold); approval posts Dr the seller's shares / Cr the buyer's and texts
    both. The seller keeps the share product's minimum holding unless exiting
    (``min_share_holding``, 422); checked when asked and again when approved."""
    note = body.pop("note", "") or "share transfer"
    return ask(shares.ACTION, member_id, body, note)


def _held_out(member_number: str, held: member_accounts.HeldAccount) -> dict[str, Any]:
    return {
        "account_id": held.account_id,
        "target": held.target,
        "product_code": held.code,
        "name": held.name,
        "balance_cents": held.balance_cents,
        "available_cents": held.available_cents,
        "paybill_account": member_number + ("" if held.target == "savings" else held.code),
    }


@blp.route("/members/<int:member_id>/savings-accounts", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.SavingsAccountList)
def list_savings_accounts(member_id: int) -> Any:
    """The member's savings accounts: the first (``savings``), then one per further
    product held (a holiday or school-fees account), with balances and the paybill account
    to pay into each."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = visible_member(s, current(), member_id)
        number = member.member_number or str(member.id)
        return {
            "items": [_held_out(number, h) for h in member_accounts.savings_accounts(s, member.id)]
        }


@blp.route("/members/<int:member_id>/savings-accounts", methods=["POST"])
@requires("savings_accounts:open")
@blp.arguments(sc.SavingsAccountIn)
@blp.response(201, sc.SavingsAccountOut)
def open_savings_account(body: dict[str, Any], member_id: int) -> Any:
    """Open a further savings account for the member under a product open to members (409
    ``savings_account_refused``: ``not_open``, ``already_open``; 403 an exited or
    suspended member). The member gets an SMS with the paybill account; audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = visible_member(s, current(), member_id)
        held = member_accounts.open_savings_account(
            s, rt.deps, member_id=member.id, product_code=body["product_code"], actor=current()
        )
        return _held_out(member.member_number or str(member.id), held)
