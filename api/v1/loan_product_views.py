"""Loan products: staff read them; creating and changing one is maker-checker (a loan
officer or manager asks, another manager approves under ``/approvals``)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import ask
from api.v1.security import requires, runtime
from core.loans import products

blp = Blueprint("api_loan_products", __name__, url_prefix="/api/v1", description="Loan products")

LoanProductPage = sc.page_schema(sc.LoanProductOut, "LoanProductPage")


def product_out(view: products.ProductView) -> dict[str, Any]:
    return {
        "id": view.id,
        "code": view.code,
        "version": view.version,
        "current_version": view.current_version,
        "versions": list(view.versions),
        **products.terms_payload(view.terms),
        "approval_id": view.approval_id,
        "version_created_at": view.version_created_at,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }


@blp.route("/loan-products", methods=["GET"])
@requires("loan_products:read")
@blp.arguments(sc.LoanProductArgs, location="query")
@blp.response(200, LoanProductPage)
def list_products(args: dict[str, Any]) -> Any:
    """Loan products at their current version, active and inactive (``?active=`` filters)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = products.list_products(
            s, active=args["active"], limit=args["limit"] + 1,
            after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
    page = sc.page(rows, args["limit"])
    return {"items": [product_out(v) for v in page["items"]], "next_cursor": page["next_cursor"]}


@blp.route("/loan-products", methods=["POST"])
@requires("loan_products:manage")
@blp.arguments(sc.LoanProductIn)
@blp.response(202, sc.ApprovalOut)
def request_product(body: dict[str, Any]) -> Any:
    """Ask for a new loan product: a pending request (``loan_product.create``) that another
    person holding ``approvals:decide_large`` (a manager) approves; approval creates it at
    version 1. Rates, percents and the multiplier are decimals written as text."""
    note = body.pop("note", "") or f"new loan product {body.get('code', '')}"
    return ask(products.CREATE_ACTION, None, body, note)


@blp.route("/loan-products/<int:product_id>", methods=["GET"])
@requires("loan_products:read")
@blp.arguments(sc.LoanProductVersionArgs, location="query")
@blp.response(200, sc.LoanProductOut)
def get_product(args: dict[str, Any], product_id: int) -> Any:
    """A product at its current version, or ``?version=`` an earlier one (loans made under
    it keep it)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return product_out(products.get_product(s, product_id, version=args["version"]))


@blp.route("/loan-products/<int:product_id>", methods=["PUT"])
@requires("loan_products:manage")
@blp.arguments(sc.LoanProductChangeIn)
@blp.response(202, sc.ApprovalOut)
def request_change(body: dict[str, Any], product_id: int) -> Any:
    """Ask to change a product (``loan_product.change``): the fields given replace the
    current version's; approval writes the next version and makes it current, if no other
    change was approved meanwhile. ``{"active": false}`` deactivates the product."""
    note = body.pop("note", "") or "loan product change"
    return ask(products.CHANGE_ACTION, None, {**body, "product_id": product_id}, note)
