"""Members: walk-in registration, search, detail (personal data masked without
``pii:read``), the nomination, KYC documents, KYC decisions, teller cash deposits,
statements, status changes, PIN resets and changes of phone number.

Status changes, PIN resets, phone changes and KYC approval are maker-checker requests:
the answer is the pending request (202), which another person decides under
``/approvals``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import ask, cash_answer
from api.v1.security import api_state, current, requires, runtime
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.identity import mask_msisdn
from core.members import approval_actions as member_actions
from core.members import backoffice, walk_in
from core.members import death as member_death
from core.members import exit as member_exit
from core.members.nominations import Beneficiary, NextOfKin, nomination_view
from core.members.phone_change import phone_change_payload
from core.members.registration import has_pin_reset, member_balances, pin_lock
from core.payments.mpesa.estate_payouts import pay_estate_payable
from db.models import Member
from db.models_exit import EstatePayable

blp = Blueprint("api_members", __name__, url_prefix="/api/v1/members", description="Members")


def _detail(member: Member) -> dict[str, Any]:
    rt = runtime()
    me = current()
    if me.has("pii:read"):
        with rt.unit_of_work() as s:
            pii = backoffice.reveal_pii(s, rt.deps, me, member.id)
    else:
        pii = backoffice.masked_pii(rt.deps, member)
    with rt.unit_of_work() as s:
        balances = member_balances(s, member.id)
        nomination = nomination_view(s, rt.deps, member, reveal=me.has("pii:read"))
    return {
        **nomination,
        "id": member.id,
        "member_number": member.member_number,
        "full_name": member.full_name,
        "msisdn": pii["msisdn"],
        "national_id": pii["national_id"],
        "pii_masked": not me.has("pii:read"),
        "status": member.status,
        "language": member.language,
        "branch": member.branch,
        "kyc_rejection_reason": member.kyc_rejection_reason,
        "pin_locked": pin_lock(rt.deps, member)[0],
        "pin_reset_pending": has_pin_reset(rt.deps, member),
        "balances": asdict(balances),
        "created_at": member.created_at,
    }


def _summary(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "member_number": member.member_number,
        "full_name": member.full_name,
        "msisdn": mask_msisdn(member.msisdn),
        "status": member.status,
        "branch": member.branch,
    }


@blp.route("", methods=["GET"])
@requires("members:read")
@blp.arguments(sc.MemberSearchArgs, location="query")
@blp.response(200, sc.page_schema(sc.MemberSummary, "MemberPage"))
def search(args: dict[str, Any]) -> Any:
    """Find members by number, phone, national ID (exact, by blind index) or a name fragment.

    Branch-bound staff see only their branch's members.
    """
    rt = runtime()
    limit = args["limit"]
    query = backoffice.MemberQuery(
        number=args.get("number"),
        phone=args.get("phone"),
        national_id=args.get("national_id"),
        name=args.get("name"),
        status=args.get("status"),
    )
    with rt.unit_of_work() as s:
        rows = backoffice.search_members(
            s, rt.deps, current(), query, limit=limit + 1, after_id=sc.decode_cursor(args["cursor"])
        )
        result = sc.page(rows, limit)
        result["items"] = [_summary(m) for m in result["items"]]
    return result


def _beneficiaries(items: list[dict[str, Any]]) -> list[Beneficiary]:
    return [
        Beneficiary(
            b["name"],
            b["relationship"],
            b["id_kind"],
            b["id_number"],
            b["share_percent"],
            b.get("phone"),
        )  # fmt: skip
        for b in items
    ]


@blp.route("", methods=["POST"])
@requires("members:register")
@blp.arguments(sc.IdempotencyHeader, location="headers")
@blp.arguments(sc.MemberRegisterIn)
@blp.response(201, sc.MemberOut)
@blp.alt_response(200, schema=sc.MemberOut, description="replay of the same Idempotency-Key")
def register(headers: dict[str, Any], body: dict[str, Any]) -> Any:
    """Register a member who walks in: the same verb as USSD self-registration, with the
    date of birth, next of kin and beneficiaries (shares summing to exactly 100, else 422).
    The branch is yours unless you name one you may see. Holders of ``kyc:verify`` (ID
    seen at the counter) make the member active at once; otherwise the member waits in
    ``pending_kyc`` for the documents (``POST /members/{id}/documents``) and KYC
    approval. The member gets the welcome SMS (how to dial in and set a PIN). Audited."""
    rt = runtime()
    kin = body["next_of_kin"]
    form = walk_in.WalkIn(
        full_name=body["full_name"], msisdn=body["msisdn"], national_id=body["national_id"],
        date_of_birth=body["date_of_birth"],
        next_of_kin=NextOfKin(kin["name"], kin["relationship"], kin["phone"]),
        beneficiaries=_beneficiaries(body["beneficiaries"]), consent=body["consent"],
        language=body["language"], branch=body["branch"],
    )  # fmt: skip
    with rt.unit_of_work() as s:
        done = walk_in.register_walk_in(
            s, rt.deps, current(), form, idempotency_key=headers["idempotency_key"]
        )
        member_id = done.member.id
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
    return _detail(member), (201 if done.created else 200)


@blp.route("/<int:member_id>/beneficiaries", methods=["PUT"])
@requires("nominations:manage")
@blp.arguments(sc.BeneficiariesIn)
@blp.response(200, sc.BeneficiariesOut)
def replace_beneficiaries(body: dict[str, Any], member_id: int) -> Any:
    """Replace the member's whole nomination; the shares must sum to exactly 100 (else
    422 with the reason). Audited (the shares, never names or ID numbers)."""
    rt = runtime()
    me = current()
    with rt.unit_of_work() as s:
        walk_in.replace_nomination(s, rt.deps, me, member_id, _beneficiaries(body["beneficiaries"]))
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, me, member_id)
        if me.has("pii:read"):
            backoffice.reveal_pii(s, rt.deps, me, member_id)
        view = nomination_view(s, rt.deps, member, reveal=me.has("pii:read"))
    return {"beneficiaries": view["beneficiaries"]}


@blp.route("/<int:member_id>", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.MemberOut)
def detail(member_id: int) -> Any:
    """One member. Phone and national ID are masked unless you hold ``pii:read``
    (then every read is audited)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
    return _detail(member)


@blp.route("/<int:member_id>/branch", methods=["PUT"])
@requires("members:assign_branch")
@blp.arguments(sc.BranchIn)
@blp.response(200, sc.MemberSummary)
def assign_branch(body: dict[str, Any], member_id: int) -> Any:
    """Set the branch that serves a member (null = head office); branch-bound staff see
    only their branch's members."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.assign_branch(s, rt.deps, current(), member_id, body["branch"])
    return _summary(member)


@blp.route("/<int:member_id>/documents", methods=["POST"])
@requires("documents:upload")
@blp.arguments(sc.DocumentArgs, location="query")
@blp.arguments(sc.UploadIn, location="files")
@blp.response(201, sc.DocumentOut)
def upload(args: dict[str, Any], files: dict[str, Any], member_id: int) -> Any:
    """Upload a KYC document as multipart ``file``: JPEG, PNG or PDF (checked by content),
    at most ``DOCUMENT_MAX_BYTES``. Stored encrypted."""
    rt = runtime()
    state = api_state()
    upload_file = files["file"]
    try:
        data = (
            upload_file.read(state.document_max_bytes + 1) if hasattr(upload_file, "read") else b""
        )
    finally:
        if hasattr(upload_file, "close"):
            upload_file.close()
    with rt.unit_of_work() as s:
        return backoffice.store_document(
            s, rt.deps, current(), member_id=member_id, kind=args["kind"], data=data,
            directory=Path(state.document_dir), max_bytes=state.document_max_bytes,
        )  # fmt: skip


@blp.route("/<int:member_id>/documents", methods=["GET"])
@requires("documents:read")
@blp.response(200, sc.DocumentList)
def documents(member_id: int) -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        return {"items": backoffice.list_documents(s, current(), member_id)}


@blp.route("/<int:member_id>/documents/<int:document_id>", methods=["GET"])
@requires("documents:read")
@blp.response(
    200,
    content_type="application/octet-stream",
    description="the document's bytes, with its real content type",
)
def download(member_id: int, document_id: int) -> Any:
    """Download (decrypted) one document; audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        doc, data = backoffice.read_document(
            s, rt.deps, current(), member_id, document_id, Path(api_state().document_dir)
        )
    return Response(
        data,
        mimetype=doc.content_type,
        headers={"Content-Disposition": f'attachment; filename="{doc.kind}-{doc.id}"'},
    )


@blp.route("/<int:member_id>/deposits", methods=["POST"])
@requires("deposits:cash")
@blp.arguments(sc.IdempotencyHeader, location="headers")
@blp.arguments(sc.DepositIn)
@blp.response(201, sc.DepositOut)
@blp.alt_response(200, schema=sc.DepositOut, description="replay of the same Idempotency-Key")
@blp.alt_response(
    202,
    schema=sc.ApprovalOut,
    description="above the till limit (CASH_DEPOSIT_TILL_LIMIT_KES): a pending request that "
    "another person approves under /approvals; the same Idempotency-Key returns it again",
)
def deposit(headers: dict[str, Any], body: dict[str, Any], member_id: int) -> Any:
    """Record cash received at the counter. The ``Idempotency-Key`` header is required:
    the same key again returns the first deposit (200) and moves no money. Above the till
    limit nothing is posted yet: the answer is a pending request (202); the deposit posts
    when a checker approves it (a manager above the approval threshold)."""
    rt = runtime()
    state = api_state()
    with rt.unit_of_work() as s:
        outcome = member_actions.take_cash_deposit(
            s, rt.deps, current(), member_id=member_id, target=body["target"],
            amount_cents=body["amount_cents"], idempotency_key=headers["idempotency_key"],
            till_limit_cents=state.till_limit_cents,
            large_threshold_cents=state.large_threshold_cents,
        )  # fmt: skip
        return cash_answer(s, outcome, member_id)


@blp.route("/<int:member_id>/statement", methods=["GET"])
@requires("statements:read")
@blp.arguments(sc.StatementArgs, location="query")
@blp.response(200, sc.page_schema(sc.StatementLineOut, "StatementPage"))
def statement(args: dict[str, Any], member_id: int) -> Any:
    """Newest first with the running balance; ``next_cursor`` pages back in time. Audited."""
    rt = runtime()
    before = sc.decode_cursor(args["cursor"]) or None
    with rt.unit_of_work() as s:
        lines = backoffice.member_statement(
            s, rt.deps, current(), member_id, args["account"], limit=args["limit"] + 1,
            before_posting_id=before,
        )  # fmt: skip
    items = lines[: args["limit"]]
    more = len(lines) > args["limit"]
    return {
        "items": items,
        "next_cursor": sc.encode_cursor(items[-1].posting_id) if more else None,
    }


@blp.route("/<int:member_id>/kyc/reject", methods=["POST"])
@requires("kyc:reject")
@blp.arguments(sc.KycRejectIn)
@blp.response(200, sc.MemberSummary)
def kyc_reject(body: dict[str, Any], member_id: int) -> Any:
    """Refuse KYC with a short reason; the member is told by SMS and stays pending."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.reject_kyc(s, rt.deps, current(), member_id, body["reason"])
    return _summary(member)


@blp.route("/<int:member_id>/kyc/approve", methods=["POST"])
@requires("kyc:request")
@blp.arguments(sc.NoteIn)
@blp.response(202, sc.ApprovalOut)
def kyc_approve(body: dict[str, Any], member_id: int) -> Any:
    """Ask for KYC approval (needs ID front and back uploaded); another person decides."""
    return ask("kyc.approve", member_id, {}, body["note"])


@blp.route("/<int:member_id>/status", methods=["POST"])
@requires("member_status:request")
@blp.arguments(sc.StatusChangeIn)
@blp.response(202, sc.ApprovalOut)
def change_status(body: dict[str, Any], member_id: int) -> Any:
    """Ask to suspend, reactivate or exit a member; another person decides."""
    return ask("member.status", member_id, {"status": body["status"]}, body["note"])


@blp.route("/<int:member_id>/pin-reset", methods=["POST"])
@requires("pin_reset:request")
@blp.arguments(sc.PinResetIn)
@blp.response(202, sc.ApprovalOut)
def pin_reset(body: dict[str, Any], member_id: int) -> Any:
    """Ask for a PIN reset; once approved the member gets a one-time code by SMS and
    sets a new PIN on the next dial. Where a SIM-swap check is configured, a swap in the
    last 7 days fails the approval unless ``in_person`` (ID checked at the counter)."""
    return ask("member.pin_reset", member_id, {"in_person": body["in_person"]}, body["note"])


@blp.route("/<int:member_id>/phone-change", methods=["POST"])
@requires("phone_change:request")
@blp.arguments(sc.PhoneChangeIn)
@blp.response(202, sc.ApprovalOut)
def phone_change(body: dict[str, Any], member_id: int) -> Any:
    """Ask to move a member to a new phone number (lost SIM, new line) after checking
    their ID at the counter (``id_checked: true``); another person decides. On approval
    the old number stops working at once, the new one is treated as a fresh SIM swap
    (withdrawals refused for ``SIM_SWAP_WINDOW_DAYS`` unless cleared) and both numbers
    get an SMS. 409 when another member uses the number; 422 when it is malformed or
    the member's number now. The request shows the new number masked only."""
    payload = phone_change_payload(runtime().deps, body["msisdn"], id_checked=body["id_checked"])
    return ask("member.phone_change", member_id, payload, body["note"])


def _exit_dict(s: Any, row: Any) -> dict[str, Any]:
    the = None
    if row.status != member_exit.ExitStatus.DONE:
        the = member_exit.plan(s, runtime().deps, row.member_id, api_state().exit_policy).as_dict()
    return {
        "exit_id": row.id, "member_id": row.member_id, "status": row.status,
        "reason": row.reason, "channel": row.channel, "notice_days": row.notice_days,
        "due_on": row.due_on, "blocked_reason": row.blocked_reason,
        "approval_id": row.approval_id, "loans_offset_cents": row.loans_offset_cents,
        "refund_cents": row.refund_cents, "shares_cents": row.shares_cents, "plan": the,
        "refund_method": row.refund_method, "refund_payout_id": row.refund_payout_id,
    }  # fmt: skip


@blp.route("/<int:member_id>/exit", methods=["POST"])
@requires("member_status:request")
@blp.arguments(sc.ExitIn)
@blp.response(201, sc.ExitOut)
@blp.alt_response(200, schema=sc.ExitOut, description="the member had already given notice")
def request_exit(body: dict[str, Any], member_id: int) -> Any:
    """Record a member's notice to leave (docs/members/exit.md). The notice period is the
    by-laws' (``EXIT_NOTICE_DAYS``); from now on the member may not borrow or guarantee.
    The answer shows what the exit would do today and what must be settled first
    (``plan.blockers``); ``manage.py exit-run`` puts it to a manager once the notice is over."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        row, created = member_exit.request_exit(
            s, rt.deps, member_id=member.id, reason=body["reason"],
            policy=api_state().exit_policy, channel=member_exit.ExitChannel.STAFF,
            actor=current(), refund_method=member_exit.RefundMethod(body["refund_method"]),
        )  # fmt: skip
        out = _exit_dict(s, row)
    return out, 201 if created else 200


@blp.route("/<int:member_id>/exit", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.ExitOut)
def exit_detail(member_id: int) -> Any:
    """A member's exit: the notice, its state, and what it would do today (or did)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        row = member_exit.exit_of(s, member.id)
        if row is None:
            raise NotFound("this member has not given notice to leave")
        return _exit_dict(s, row)


# ------------------------------------------------------------------ death of a member


def _death_dict(s: Any, row: Any) -> dict[str, Any]:
    return {
        "death_id": row.id, "member_id": row.member_id, "died_on": row.died_on,
        "certificate_ref": row.certificate_ref, "document_ref": row.document_ref,
        "status": row.status, "blocked_reason": row.blocked_reason,
        "approval_id": row.approval_id, "loans_offset_cents": row.loans_offset_cents,
        "estate_cents": row.estate_cents,
        "payables": [member_death.payable_dict(p) for p in member_death.payables_of(s, row.id)],
    }  # fmt: skip


@blp.route("/<int:member_id>/death", methods=["POST"])
@requires("member_status:request")
@blp.arguments(sc.DeathIn)
@blp.response(201, sc.DeathOut)
@blp.alt_response(200, schema=sc.DeathOut, description="the death was recorded already")
def record_death(body: dict[str, Any], member_id: int) -> Any:
    """Record a member's death (docs/members/death.md): the member becomes ``deceased`` at
    once (USSD, SMS and M-Pesa payouts to their phone stop) and the settlement of the
    estate is asked of a manager (``member.death``), or ``blocked`` with the reason while
    something must be settled first."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        row, created = member_death.record_death(
            s, rt.deps, current(), member_id=member.id, died_on=body["died_on"],
            certificate_ref=body["certificate_ref"], document_ref=body["document_ref"],
            large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
        out = _death_dict(s, row)
    return out, 201 if created else 200


@blp.route("/<int:member_id>/death", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.DeathOut)
def death_detail(member_id: int) -> Any:
    """A deceased member's record: its state, the offset, the estate and each payable."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        row = member_death.death_of(s, member.id)
        if row is None:
            raise NotFound("no death recorded for this member")
        return _death_dict(s, row)


@blp.route("/<int:member_id>/death/settlement", methods=["POST"])
@requires("member_status:request")
@blp.response(200, sc.DeathOut)
def ask_settlement(member_id: int) -> Any:
    """Ask a manager again to settle a ``blocked`` estate, once staff dealt with what
    blocked it; it stays ``blocked`` (with the reason of now) while anything still does."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        row = member_death.ask_settlement(
            s, rt.deps, current(), member_id=member.id,
            large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
        return _death_dict(s, row)


@blp.route("/<int:member_id>/death/payables/<int:payable_id>/payment", methods=["POST"])
@requires("estates:pay")
@blp.arguments(sc.EstatePaymentIn)
@blp.response(201, sc.EstatePayableOut)
@blp.alt_response(200, schema=sc.EstatePayableOut, description="paid already (or paying)")
def pay_payable(body: dict[str, Any], member_id: int, payable_id: int) -> Any:
    """Pay one payee of a settled estate its approved amount: ``cash`` (from the till) or
    ``bank`` (a transfer) against ``reference``, or ``mpesa`` to the beneficiary's phone in
    the nomination (whole shillings by B2C, the cents at the branch; the SIM-swap check of
    that phone first). A payable is paid once: asking again returns it."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        row = s.get(EstatePayable, payable_id)
        if row is None or row.member_id != member.id:
            raise NotFound("no such payable for this member")
        was = row.status
    if body["method"] == "mpesa":
        policy = current_app.extensions.get("sacco_mpesa_policy")
        checker = current_app.extensions.get("sacco_sim_swap")
        if policy is None or checker is None:
            raise InvalidInput("M-Pesa is not configured here: pay at the branch",
                               field="method", reason="mpesa_unavailable")  # fmt: skip
        with rt.unit_of_work() as s:
            pay_estate_payable(s, rt.deps, payable_id=payable_id, policy=policy, sim_swap=checker)
        created = was == member_death.PayableStatus.OPEN
    else:
        if not body.get("reference"):
            raise InvalidInput("reference: the receipt's or the transfer's", field="reference")
        with rt.unit_of_work() as s:
            _, created = member_death.pay_at_branch(
                s, rt.deps, current(), payable_id=payable_id, method=body["method"],
                reference=body["reference"],
            )  # fmt: skip
    with rt.unit_of_work() as s:
        out = member_death.payable_dict(s.get_one(EstatePayable, payable_id))
    return out, 201 if created else 200


@blp.route("/estate-payables", methods=["GET"])
@requires("members:read")
@blp.response(200, sc.EstateReportOut)
def estate_payables() -> Any:
    """What the SACCO still holds for the families of deceased members: every payable not
    yet paid, the estates held whole for a legal representative (no nomination) first."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return {"items": member_death.estate_report(s)}
