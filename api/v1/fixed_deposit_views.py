"""Fixed deposits over the staff API (issue 14, part 1; docs/savings/fixed-deposits.md):
open one from a member's savings, list a member's, read one, close one early with its
penalty. Interest and maturity are the daily savings job's (``manage.py savings-accrue``)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core.kernel.calendar import business_date
from core.members.backoffice import visible_member
from core.savings import fixed_deposits

blp = Blueprint("api_fixed_deposits", __name__, url_prefix="/api/v1", description="Fixed deposits")


@blp.route("/members/<int:member_id>/fixed-deposits", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.FixedDepositList)
def list_fixed_deposits(member_id: int) -> Any:
    """Every term of the member's fixed deposits, newest first (a rollover is a new term)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = visible_member(s, current(), member_id)
        today = business_date(rt.deps.now())
        return {
            "items": [
                fixed_deposits.view(s, fd, today).as_dict()
                for fd in fixed_deposits.member_fixed_deposits(s, member.id)
            ]
        }


@blp.route("/members/<int:member_id>/fixed-deposits", methods=["POST"])
@requires("fixed_deposits:manage")
@blp.arguments(sc.FixedDepositIn)
@blp.response(201, sc.FixedDepositOut)
def open_fixed_deposit(body: dict[str, Any], member_id: int) -> Any:
    """Move ``amount_cents`` from the member's savings into a new fixed deposit; the
    product's term, rate and penalty are locked on it. 409 ``fixed_deposit_refused``
    (``not_fixed_deposit``), ``insufficient_funds``; 422 ``savings_rule`` (the savings'
    minimum balance); 403 ``member_not_allowed``; audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = visible_member(s, current(), member_id)
        fd = fixed_deposits.open_fixed_deposit(
            s, rt.deps, member_id=member.id, product_code=body["product_code"],
            amount_cents=body["amount_cents"], rollover=body["rollover"], actor=current(),
        )  # fmt: skip
        return fixed_deposits.view(s, fd, business_date(rt.deps.now())).as_dict()


@blp.route("/fixed-deposits/<int:fd_id>", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.FixedDepositOut)
def get_fixed_deposit(fd_id: int) -> Any:
    """One term of a fixed deposit, with the interest earned to date."""
    rt = runtime()
    with rt.unit_of_work() as s:
        fd = fixed_deposits.get_fixed_deposit(s, fd_id)
        visible_member(s, current(), fd.member_id)
        return fixed_deposits.view(s, fd, business_date(rt.deps.now())).as_dict()


@blp.route("/fixed-deposits/<int:fd_id>/close", methods=["POST"])
@requires("fixed_deposits:manage")
@blp.arguments(sc.FixedDepositCloseIn)
@blp.response(200, sc.FixedDepositOut)
def close_fixed_deposit(body: dict[str, Any], fd_id: int) -> Any:
    """Close an active deposit before maturity with its product's penalty; the rest to
    savings. 409 ``fixed_deposit_refused`` (``not_active``; ``matured``: due, the daily
    job matures it); audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        fd = fixed_deposits.get_fixed_deposit(s, fd_id)
        visible_member(s, current(), fd.member_id)
        closed = fixed_deposits.close_early(s, rt.deps, current(), fd.id, note=body["note"])
        return fixed_deposits.view(s, closed, business_date(rt.deps.now())).as_dict()
