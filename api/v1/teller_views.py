"""Teller cash out, till days and dormant savings over the staff API (issue 14, part 3;
docs/savings/tills-and-dormancy.md).

* ``POST /members/{id}/withdrawals``: cash out of savings (``Idempotency-Key``); above the
  till limit a pending request (202) another person approves.
* ``/tills``: open one's till day with a float, see it (expected against counted), count it
  at day end; a difference is a pending ``till.close`` request a supervisor decides.
* ``POST /members/{id}/reactivate`` and ``GET /reports/dormant-accounts``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict, cash_answer
from api.v1.security import api_state, current, requires, runtime
from core.kernel.errors import NotFound
from core.savings import approval_actions as savings_actions
from core.savings import dormancy, tills

blp = Blueprint(
    "api_teller", __name__, url_prefix="/api/v1", description="Teller cash, tills and dormancy"
)


def _till(found: tills.TillFigures) -> dict[str, Any]:
    t = found.till
    return {
        "id": t.id,
        "staff_id": t.staff_id,
        "branch": t.branch,
        "business_date": t.business_date,
        "status": t.status,
        "opening_float_cents": t.opening_float_cents,
        "opened_at": t.opened_at,
        "cash_in_cents": found.cash_in_cents,
        "cash_out_cents": found.cash_out_cents,
        "expected_cents": found.expected_cents,
        "as_at": found.as_at,
        "counted_cents": t.counted_cents,
        "difference_cents": t.difference_cents,
        "explanation": t.explanation,
        "approval_id": t.approval_id,
        "entry_reference": t.entry_reference,
        "closed_at": t.closed_at,
    }


@blp.route("/members/<int:member_id>/withdrawals", methods=["POST"])
@requires("withdrawals:cash")
@blp.arguments(sc.IdempotencyHeader, location="headers")
@blp.arguments(sc.WithdrawalIn)
@blp.response(201, sc.DepositOut)
@blp.alt_response(200, schema=sc.DepositOut, description="replay of the same Idempotency-Key")
@blp.alt_response(
    202,
    schema=sc.ApprovalOut,
    description="above the till limit (CASH_DEPOSIT_TILL_LIMIT_KES): a pending request that "
    "another person approves under /approvals; the same Idempotency-Key returns it again",
)
def withdraw(headers: dict[str, Any], body: dict[str, Any], member_id: int) -> Any:
    """Pay cash out of a member's savings at the counter: never more than is available
    (holds count), never from dormant savings (``account_dormant``, 409: reactivate first),
    active members only. The member gets a receipt SMS. The ``Idempotency-Key`` header is
    required: the same key again returns the first withdrawal (200) and pays nothing more.
    Above the till limit nothing is paid yet: the answer is a pending request (202)."""
    rt = runtime()
    state = api_state()
    with rt.unit_of_work() as s:
        outcome = savings_actions.take_cash_withdrawal(
            s, rt.deps, current(), member_id=member_id, amount_cents=body["amount_cents"],
            idempotency_key=headers["idempotency_key"], till_limit_cents=state.till_limit_cents,
            large_threshold_cents=state.large_threshold_cents,
        )  # fmt: skip
        return cash_answer(s, outcome, member_id)


@blp.route("/tills", methods=["POST"])
@requires("tills:operate")
@blp.arguments(sc.TillOpenIn)
@blp.response(201, sc.TillOut)
def open_till(body: dict[str, Any]) -> Any:
    """Open your till day with the opening float counted into the drawer (one open till
    day per teller: ``till_refused``/``already_open``, 409)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        till = tills.open_till(
            s, rt.deps, current(), opening_float_cents=body["opening_float_cents"]
        )
        return _till(tills.figures(s, till, rt.deps.now()))


@blp.route("/tills/current", methods=["GET"])
@requires("tills:operate")
@blp.response(200, sc.TillOut)
def my_till() -> Any:
    """Your till day not yet closed: the float, cash in and out from the ledger, what the
    drawer should hold now, and the count once made."""
    rt = runtime()
    with rt.unit_of_work() as s:
        till = tills.current_till(s, current())
        if till is None:
            raise NotFound("you have no open till day")
        return _till(tills.figures(s, till, rt.deps.now()))


@blp.route("/tills/current/count", methods=["POST"])
@requires("tills:operate")
@blp.arguments(sc.TillCountIn)
@blp.response(200, sc.TillCountOut)
@blp.alt_response(
    202, schema=sc.TillCountOut, description="the count differs: a pending till.close request"
)
def count(body: dict[str, Any]) -> Any:
    """Count the drawer at day end. Equal to what it should hold: the day closes (200).
    Different: an ``explanation`` is required; the count is kept and a supervisor decides
    a ``till.close`` request (202); approved, the difference posts to cash over and short
    and the day closes; rejected, count again."""
    rt = runtime()
    with rt.unit_of_work() as s:
        found, req = savings_actions.count_till(
            s, rt.deps, current(), counted_cents=body["counted_cents"],
            explanation=body["explanation"], large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
        out = {"till": _till(found), "approval": approval_dict(req) if req else None}
    if req is None:
        return out
    return Response(
        json.dumps(sc.TillCountOut().dump(out)), status=202, mimetype="application/json"
    )


@blp.route("/tills", methods=["GET"])
@requires("tills:read")
@blp.arguments(sc.TillListArgs, location="query")
@blp.response(200, sc.page_schema(sc.TillSummaryOut, "TillPage"))
def list_tills(args: dict[str, Any]) -> Any:
    """Every teller's till days (a branch-bound reader: the branch's), oldest first."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = tills.list_tills(
            s, current(), status=args["status"], limit=args["limit"] + 1,
            after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
        return sc.page(rows, args["limit"])


@blp.route("/tills/<int:till_id>", methods=["GET"])
@requires("tills:read")
@blp.response(200, sc.TillOut)
def get_till(till_id: int) -> Any:
    """One till day with its figures (expected against counted)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _till(tills.get_till(s, rt.deps, current(), till_id))


@blp.route("/members/<int:member_id>/reactivate", methods=["POST"])
@requires("dormancy:reactivate")
@blp.arguments(sc.ReactivateIn)
@blp.response(200, sc.ReactivatedOut)
def reactivate(body: dict[str, Any], member_id: int) -> Any:
    """Reactivate a member's dormant savings (the member came in; say what they showed):
    withdrawals work again. Audited. ``not_dormant`` (409) when it is not dormant."""
    rt = runtime()
    with rt.unit_of_work() as s:
        since = dormancy.reactivate(s, rt.deps, current(), member_id, note=body["note"])
    return {"member_id": member_id, "dormant_since": since}


@blp.route("/reports/dormant-accounts", methods=["GET"])
@requires("dormancy:read")
@blp.arguments(sc.PageArgs, location="query")
@blp.response(200, sc.DormantReportOut)
def dormant_accounts(args: dict[str, Any]) -> Any:
    """Dormant savings accounts and their balances (unclaimed balances), by account, with
    the count and total of all of them (a branch-bound reader: the branch's)."""
    rt = runtime()
    limit = args["limit"]
    with rt.unit_of_work() as s:
        report = dormancy.dormant_report(
            s, current(), limit=limit + 1, after_id=sc.decode_cursor(args["cursor"])
        )
    items = report.accounts[:limit]
    more = len(report.accounts) > limit
    return {
        "items": [asdict(a) for a in items],
        "next_cursor": sc.encode_cursor(items[-1].account_id) if more else None,
        "count": report.count,
        "total_cents": report.total_cents,
    }
