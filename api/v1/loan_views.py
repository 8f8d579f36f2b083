"""The loan book over the staff API (issue 12, part 9): applications (list, detail,
recommend, approve, reject), loans (list, detail with schedule, transactions and
guarantors), a product's schedule preview and teller cash repayments; proposals to write a
loan off or reschedule it (issue 13, part 8), decided on ``/approvals/{id}``.

Approving is the maker-checker decision on the application's ``loan.approve`` request
(the engine's rules: not its maker, ``approvals:decide``, above the manager threshold
``approvals:decide_large``, within the member's branch). Branch-bound staff see only their
branch's applications and loans (others are 404).
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict, decision_ports
from api.v1.security import api_state, current, requires, runtime
from core.approvals import engine as approvals
from core.approvals.vocabulary import ApprovalStatus
from core.loans import approval_actions, book, queries, reschedule, write_off
from core.loans.errors import LoanStateError
from core.loans.repayments import Repayment, repay_loan
from core.loans.vocabulary import RepaymentSource
from db.models import ApprovalRequest

blp = Blueprint("api_loans", __name__, url_prefix="/api/v1", description="Loans")


def _page(items: list[Any], limit: int, last_id: Any) -> dict[str, Any]:
    more = len(items) > limit
    items = items[:limit]
    return {
        "items": items,
        "next_cursor": sc.encode_cursor(last_id(items[-1])) if more and items else None,
    }


def _guarantee(g: queries.GuaranteeView) -> dict[str, Any]:
    return {
        "id": g.id,
        "guarantor_id": g.guarantor_id,
        "guarantor_number": g.guarantor_number,
        "guarantor_name": g.guarantor_name,
        "amount_cents": g.amount_cents,
        "held_cents": g.held_cents,
        "status": g.status,
        "created_at": g.created_at,
        "decided_at": g.decided_at,
        "released_at": g.released_at,
    }


def _application(view: queries.ApplicationView) -> dict[str, Any]:
    a = view.application
    return {
        "id": a.id,
        "reference": a.reference,
        "member_id": view.member.id,
        "member_number": view.member.member_number,
        "member_name": view.member.full_name,
        "branch": view.member.branch,
        "product_code": view.product_code,
        "product_name": view.product_name,
        "product_version_id": a.product_version_id,
        "amount_cents": a.amount_cents,
        "term": a.term,
        "status": a.status,
        "channel": a.channel,
        "disburse_to": a.disburse_to,
        "limit_cents": a.limit_cents,
        "reasons": a.reasons.split(),
        "required_cover_cents": a.required_cover_cents,
        "own_cover_cents": a.own_cover_cents,
        "guarantor_cover_cents": a.guarantor_cover_cents,
        "instalment_cents": a.instalment_cents,
        "total_repayable_cents": a.total_repayable_cents,
        "deducted_fee_cents": a.deducted_fee_cents,
        "scheduled_fee_cents": a.scheduled_fee_cents,
        "apr": str(a.apr),
        "approval_id": a.approval_id,
        "decision_note": a.decision_note,
        "loan_id": view.loan_id,
        "top_up_of_loan_id": a.top_up_of_loan_id,
        "top_up_payoff_cents": a.top_up_payoff_cents,
        "top_up_commission_cents": a.top_up_commission_cents,
        "received_cents": a.amount_cents
        - a.deducted_fee_cents
        - a.top_up_payoff_cents
        - a.top_up_commission_cents,
        "guarantees": [_guarantee(g) for g in view.guarantees],
        "created_at": a.created_at,
        "decided_at": a.decided_at,
        "updated_at": a.updated_at,
    }


def _loan(view: queries.LoanView, *, full: bool) -> dict[str, Any]:
    loan, where = view.loan, view.position
    out: dict[str, Any] = {
        "id": loan.id,
        "reference": loan.reference,
        "application_id": loan.application_id,
        "member_id": view.member.id,
        "member_number": view.member.member_number,
        "member_name": view.member.full_name,
        "branch": view.member.branch,
        "product_code": view.product_code,
        "product_name": view.product_name,
        "principal_cents": loan.principal_cents,
        "term": loan.term,
        "deducted_fee_cents": loan.deducted_fee_cents,
        "disbursed_on": loan.disbursed_on,
        "status": loan.status,
        "restructured": loan.restructured,
        "principal_outstanding_cents": where.principal_outstanding_cents,
        "arrears_cents": where.arrears_cents,
        "due_now_cents": where.due_now_cents,
        "payoff_cents": where.payoff_cents,
        "next_due_on": where.next_due_on,
        "next_due_cents": where.next_due_cents,
        "created_at": loan.created_at,
        "closed_at": loan.closed_at,
        "top_up_of_loan_id": loan.top_up_of_loan_id,
        "top_up_payoff_cents": loan.top_up_payoff_cents,
        "top_up_commission_cents": loan.top_up_commission_cents,
    }
    if full:
        out["schedule"] = [
            {
                "number": i.number,
                "due_on": i.due_on,
                "principal_cents": i.principal_cents,
                "interest_cents": i.interest_cents,
                "fee_cents": i.fee_cents,
                "total_cents": i.due_cents,
                "paid_principal_cents": i.paid_principal_cents,
                "paid_interest_cents": i.paid_interest_cents,
                "paid_fee_cents": i.paid_fee_cents,
                "waived_interest_cents": i.waived_interest_cents,
            }
            for i in view.instalments
        ]
        out["transactions"] = [_repayment(r) for r in view.repayments]
        out["guarantors"] = [_guarantee(g) for g in view.guarantees]
        mark = view.bureau
        out["credit_bureau"] = None if mark is None else {
            "pre_listing_notice_on": mark.notice_on, "listable": mark.listable,
            "listable_since": mark.listable_since, "arrears_cents": mark.arrears_cents,
            "as_of": mark.marked_on,
        }  # fmt: skip
        out["write_off"] = _write_off(view)
        out["reschedules"] = [
            {name: getattr(r, name) for name in _RESCHEDULE_FIELDS} for r in view.reschedules
        ]
        out["superseded_instalments"] = [
            {**{name: getattr(i, name) for name in _SUPERSEDED_FIELDS},
             "total_cents": i.principal_cents + i.interest_cents + i.fee_cents}
            for i in view.superseded
        ]  # fmt: skip
    return out


_RESCHEDULE_FIELDS = (
    "id", "rescheduled_on", "approval_id", "principal_cents", "capitalised_interest_cents",
    "capitalised_fee_cents", "carried_fee_cents", "term", "asked_term",
    "asked_instalment_cents", "instalment_cents", "first_due_on",
)  # fmt: skip
_SUPERSEDED_FIELDS = (
    "reschedule_id", "number", "due_on", "principal_cents", "interest_cents", "fee_cents",
    "paid_principal_cents", "paid_interest_cents", "paid_fee_cents", "waived_interest_cents",
)  # fmt: skip


def _write_off(view: queries.LoanView) -> dict[str, Any] | None:
    w = view.write_off
    if w is None:
        return None
    return {
        "written_off_on": w.written_off_on, "principal_cents": w.principal_cents,
        "interest_cents": w.interest_cents, "provision_cents": w.provision_cents,
        "category": w.category, "entry_reference": view.write_off_entry or "",
        "approval_id": w.approval_id, "recovered_cents": w.recovered_cents,
        "recoverable_cents": w.recoverable_cents,
    }  # fmt: skip


def _repayment(r: queries.RepaymentView) -> dict[str, Any]:
    row = r.row
    return {
        "id": row.id,
        "amount_cents": row.amount_cents,
        "source": row.source,
        "penalty_cents": row.penalty_cents,
        "fee_cents": row.fee_cents,
        "interest_cents": row.interest_cents,
        "principal_cents": row.principal_cents,
        "waived_interest_cents": row.waived_interest_cents,
        "to_savings_cents": row.to_savings_cents,
        "recovery_cents": row.recovery_cents,
        "balance_after_cents": row.balance_after_cents,
        "closed_loan": row.closed_loan,
        "receipt": row.receipt,
        "entry_reference": r.entry_reference,
        "savings_entry_reference": r.savings_entry_reference,
        "value_date": row.value_date,
        "created_at": row.created_at,
    }


# ------------------------------------------------------------------ applications


@blp.route("/loan-applications", methods=["GET"])
@requires("loans:read")
@blp.arguments(sc.LoanApplicationArgs, location="query")
@blp.response(200, sc.page_schema(sc.LoanApplicationOut, "LoanApplicationPage"))
def list_applications(args: dict[str, Any]) -> Any:
    """Applications, oldest first (``?status=pending_approval`` for the approval queue,
    ``?member_id=``). Branch-bound staff see their branch's only."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = queries.list_applications(
            s, current(), status=args["status"], member_id=args["member_id"],
            limit=args["limit"] + 1, after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
        page = _page(rows, args["limit"], lambda v: v.application.id)
        page["items"] = [_application(v) for v in page["items"]]
    return page


@blp.route("/loan-applications", methods=["POST"])
@requires("loans:recommend")
@blp.arguments(sc.IdempotencyHeader, location="headers")
@blp.arguments(sc.LoanApplicationIn)
@blp.response(201, sc.LoanApplicationOut)
@blp.alt_response(200, schema=sc.LoanApplicationOut, description="replay of the same key")
def apply(headers: dict[str, Any], body: dict[str, Any]) -> Any:
    """A loan officer applies on a member's behalf (channel ``staff``), routed like any
    application (guarantors, approval, or paid out at once within the auto-approval
    ceiling). ``top_up_of``: a top-up of the member's active loan with that reference,
    which the loan clears first; the answer shows its payoff, the commission and what the
    member will receive. The ``Idempotency-Key`` header is required: the same key again
    returns the first application (200)."""
    rt = runtime()
    me = current()
    with rt.unit_of_work() as s:
        queries.visible_member(s, me, body["member_id"])
        applied = book.apply_by_staff(
            s, rt.deps, me, body["member_id"], body["product_code"], body["amount_cents"],
            body["term"], headers["idempotency_key"], top_up_of=body["top_up_of"],
        )  # fmt: skip
        out = _application(queries.get_application(s, me, applied.application.id))
    return out, (201 if applied.created else 200)


@blp.route("/loan-applications/<int:application_id>", methods=["GET"])
@requires("loans:read")
@blp.response(200, sc.LoanApplicationOut)
def get_application(application_id: int) -> Any:
    """One application with its cover, schedule preview and guarantees."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _application(queries.get_application(s, current(), application_id))


@blp.route("/loan-applications/<int:application_id>/recommend", methods=["POST"])
@requires("loans:recommend")
@blp.arguments(sc.RecommendIn)
@blp.response(202, sc.ApprovalOut)
def recommend(body: dict[str, Any], application_id: int) -> Any:
    """A loan officer recommends an application pending approval: a ``loan.approve``
    request (202) for another person to decide (``…/approve`` or ``/approvals/{id}``).
    ``disburse_to`` (``savings`` | ``mpesa`` | ``bank``) changes where the member asked the money to
    go; the checker approves what the request says."""
    rt = runtime()
    with rt.unit_of_work() as s:
        queries.get_application(s, current(), application_id)  # 404 outside the branch
        req = approval_actions.recommend(
            s, rt.deps, current(), application_id, note=body["note"],
            large_threshold_cents=api_state().large_threshold_cents,
            disburse_to=body.get("disburse_to"),
        )  # fmt: skip
        return approval_dict(req), 202


@blp.route("/loan-applications/<int:application_id>/approve", methods=["POST"])
@requires("approvals:decide")
@blp.arguments(sc.NoteIn)
@blp.response(200, sc.ApprovalOut)
def approve(body: dict[str, Any], application_id: int) -> Any:
    """Approve the application's pending ``loan.approve`` request: appraised again, the
    cover checked, approved and disbursed in this transaction where the request says: to
    the member's savings, or to savings and on by M-Pesa (a hold and a payout, the
    SIM-swap guard). ``status`` is ``approved``, or ``failed`` with ``result.error`` when
    refused (nothing done; ``limit_exceeded`` above M-Pesa's per-transaction limit,
    ``sim_swap_recent``, ``loan_state`` ``mpesa_unavailable``). 409 ``loan_state``
    (``not_recommended``) when no recommendation is pending."""
    rt = runtime()
    with rt.unit_of_work() as s:
        view = queries.get_application(s, current(), application_id)
        req = (
            s.get(ApprovalRequest, view.application.approval_id)
            if view.application.approval_id is not None
            else None
        )
        if req is None or req.status != ApprovalStatus.PENDING:
            raise LoanStateError("no recommendation is pending", reason="not_recommended")
        ports = decision_ports(s, req.id)
        decided = approvals.decide(
            s, rt.deps, current(), req.id, approve=True, note=body["note"], ports=ports
        )
        return approval_dict(decided)


@blp.route("/loan-applications/<int:application_id>/reject", methods=["POST"])
@requires("loans:recommend")
@blp.arguments(sc.RejectIn)
@blp.response(200, sc.LoanApplicationOut)
def reject(body: dict[str, Any], application_id: int) -> Any:
    """Reject an application before approval with a reason (3-60 characters) texted to
    the member; pledges are released. With a recommendation pending this is the checker's
    decision on it (not its maker; ``approvals:decide``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        queries.get_application(s, current(), application_id)
        approval_actions.reject_application(
            s, rt.deps, current(), application_id, reason=body["reason"]
        )
        return _application(queries.get_application(s, current(), application_id))


# ------------------------------------------------------------------ loans


@blp.route("/loans", methods=["GET"])
@requires("loans:read")
@blp.arguments(sc.LoanArgs, location="query")
@blp.response(200, sc.page_schema(sc.LoanSummaryOut, "LoanPage"))
def list_loans(args: dict[str, Any]) -> Any:
    """Loans, oldest first, with where each stands today (``?status=``, ``?member_id=``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = queries.list_loans(
            s, rt.deps, current(), status=args["status"], member_id=args["member_id"],
            limit=args["limit"] + 1, after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
        page = _page(rows, args["limit"], lambda v: v.loan.id)
        page["items"] = [_loan(v, full=False) for v in page["items"]]
    return page


@blp.route("/loans/<int:loan_id>", methods=["GET"])
@requires("loans:read")
@blp.response(200, sc.LoanOut)
def get_loan(loan_id: int) -> Any:
    """One loan: where it stands today, its schedule (with what is paid and waived of each
    instalment), its transactions (repayments and their split) and its guarantors."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _loan(queries.get_loan(s, rt.deps, current(), loan_id), full=True)


@blp.route("/loans/<int:loan_id>/repayments", methods=["POST"])
@requires("loans:repay_cash")
@blp.arguments(sc.IdempotencyHeader, location="headers")
@blp.arguments(sc.LoanRepaymentIn)
@blp.response(201, sc.LoanRepaymentResultOut)
@blp.alt_response(200, schema=sc.LoanRepaymentResultOut, description="replay of the same key")
def repay(headers: dict[str, Any], body: dict[str, Any], loan_id: int) -> Any:
    """Cash received at the counter for a loan (``core.loans.repayments.repay_loan``,
    source ``cash``): split over what is owed, beyond the payoff to the member's savings, a
    receipt SMS, audited. The ``Idempotency-Key`` header is required: the same key again
    returns the first repayment (200) and moves no money."""
    rt = runtime()
    me = current()
    key = headers["idempotency_key"]
    with rt.unit_of_work() as s:
        loan = queries.visible_loan(s, me, loan_id)
        repaid = repay_loan(
            s, rt.deps,
            Repayment(
                amount_cents=body["amount_cents"], source=RepaymentSource.CASH,
                idempotency_key=f"loan.cash:{me.id}:{key}",
                business_key=f"loan_repayment:cash:{loan.id}:{key}", loan_id=loan.id,
                actor=me,
            ),
        )  # fmt: skip
        view = queries.get_loan(s, rt.deps, me, loan.id)
        [row] = [r for r in view.repayments if r.row.id == repaid.repayment_id]
        out = {
            "repayment": _repayment(row),
            "created": repaid.created,
            "loan": _loan(view, full=False),
        }
    return out, (201 if repaid.created else 200)


# ------------------------------------------------------------------ write-off, rescheduling


@blp.route("/loans/<int:loan_id>/write-off", methods=["POST"])
@requires("loans:write_off")
@blp.arguments(sc.WriteOffIn)
@blp.response(202, sc.ApprovalOut)
def propose_write_off(body: dict[str, Any], loan_id: int) -> Any:
    """Propose writing the loan off against its provision: a ``loan.write_off`` request
    (202) a manager decides (``/approvals/{id}/approve``; not its maker). Only a loan in
    the loss category at its last close of day: 409 ``loan_state`` (``not_loss``,
    ``not_active``) otherwise; one pending per member. On approval, one entry: Dr
    loan-loss provision / Cr the loan's principal, accrued interest not paid taken back
    from income; the loan becomes ``written_off``, its pledges are released; later
    payments go to recoveries income."""
    rt = runtime()
    with rt.unit_of_work() as s:
        queries.visible_loan(s, current(), loan_id)  # 404 outside the branch
        req = write_off.propose_write_off(
            s, rt.deps, current(), loan_id, note=body["note"],
            large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
        return approval_dict(req), 202


@blp.route("/loans/<int:loan_id>/reschedule", methods=["POST"])
@requires("loans:reschedule")
@blp.arguments(sc.RescheduleIn)
@blp.response(202, sc.ApprovalOut)
def propose_reschedule(body: dict[str, Any], loan_id: int) -> Any:
    """Propose a new term (``term``) or instalment (``instalment_cents``; exactly one) for
    an active loan: a ``loan.reschedule`` request (202) another person decides
    (``/approvals/{id}/approve``; by amount, the principal outstanding). On approval the
    instalments not settled are superseded (kept, see ``superseded_instalments``), the
    interest accrued and fees due on them capitalised, a new schedule built over the
    principal outstanding from today; the loan is flagged ``restructured`` and the member
    texted the new instalment. 422 for a term or instalment no schedule fits
    (``instalment_too_small``, ``one_of``); 409 ``loan_state`` for a loan not active."""
    rt = runtime()
    with rt.unit_of_work() as s:
        queries.visible_loan(s, current(), loan_id)
        req = reschedule.propose_reschedule(
            s, rt.deps, current(), loan_id, term=body["term"],
            instalment_cents=body["instalment_cents"], note=body["note"],
            large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
        return approval_dict(req), 202


# ------------------------------------------------------------------ schedule preview


@blp.route("/loan-products/<int:product_id>/schedule-preview", methods=["POST"])
@requires("loan_products:read")
@blp.arguments(sc.SchedulePreviewIn)
@blp.response(200, sc.SchedulePreviewOut)
def schedule_preview(body: dict[str, Any], product_id: int) -> Any:
    """The schedule a loan of ``amount_cents`` over ``term`` instalments of the product's
    current version would have if paid out on ``disbursed_on`` (default today): each
    instalment's due date, principal, interest, fees, total and the principal still owed
    after it, in cents; the totals, the cash received and the APR. Writes nothing."""
    rt = runtime()
    with rt.unit_of_work() as s:
        terms, schedule = queries.preview_schedule(
            s, rt.deps, product_id, amount_cents=body["amount_cents"], term=body["term"],
            disbursed_on=body["disbursed_on"],
        )  # fmt: skip
    return {
        "product_id": terms.product_id,
        "product_version_id": terms.version_id,
        "amount_cents": schedule.terms.principal_cents,
        "term": schedule.terms.instalments,
        "disbursed_on": schedule.terms.disbursed_on,
        "instalments": [
            {
                "number": i.number,
                "due_on": i.due_on,
                "principal_cents": i.principal_cents,
                "interest_cents": i.interest_cents,
                "fee_cents": i.fee_cents,
                "total_cents": i.total_cents,
                "balance_cents": i.balance_after_cents,
            }
            for i in schedule.instalments
        ],
        "instalment_cents": schedule.instalment_cents,
        "principal_cents": schedule.principal_cents,
        "interest_cents": schedule.interest_cents,
        "deducted_fee_cents": schedule.terms.deducted_fee_cents,
        "scheduled_fee_cents": schedule.scheduled_fee_cents,
        "fee_cents": schedule.fee_cents,
        "total_repayable_cents": schedule.total_repayable_cents,
        "received_cents": schedule.disbursed_cents,
        "cost_of_credit_cents": schedule.cost_of_credit_cents,
        "apr": str(schedule.apr),
    }
