"""Credit-bureau consents and enquiries over the staff API (issue 15, part 2;
docs/integrations/bureaus.md): staff record the member's consent from the signed form or
revoke it, ask the bureau (only under a consent in force), and read the member's consents
and reports (figures only; the bureau's raw answer stays encrypted as evidence). Every
call is audited. Branch-bound staff see only their branch's members (others are 404)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core.scoring import bureau

blp = Blueprint(
    "api_bureaus", __name__, url_prefix="/api/v1", description="Credit reference bureaus"
)


@blp.route("/members/<int:member_id>/bureau-consents", methods=["POST"])
@requires("bureau:enquire")
@blp.arguments(sc.BureauConsentIn)
@blp.response(201, sc.BureauConsentOut)
def give_consent(body: dict[str, Any], member_id: int) -> Any:
    """Record the member's consent to credit-bureau enquiries from the consent form they
    signed (``form_reference``, its number). In force for 365 days unless revoked;
    referenced (``BC-<id>``) in every call. Audited (``bureau.consent_given``). 422 bad
    input."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return bureau.staff_give_consent(s, rt.deps, current(), member_id, body["form_reference"])


@blp.route("/members/<int:member_id>/bureau-consents", methods=["DELETE"])
@requires("bureau:enquire")
@blp.response(200, sc.BureauRevokedOut)
def revoke_consent(member_id: int) -> Any:
    """Revoke every consent of the member in force (``revoked``: how many; 0 when none
    was). No enquiry is made after this until a new consent. Audited
    (``bureau.consent_revoked``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return bureau.staff_revoke_consent(s, rt.deps, current(), member_id)


@blp.route("/members/<int:member_id>/bureau-reports", methods=["POST"])
@requires("bureau:enquire")
@blp.arguments(sc.BureauEnquiryIn)
@blp.response(201, sc.BureauEnquiryOut)
def enquire(body: dict[str, Any], member_id: int) -> Any:
    """Ask the credit bureau for the member's report (``reason``, ``loan_amount_cents``).
    A fresh earlier answer is reused (``from_cache``, no call). The bureau down or
    unreadable: a report with ``status`` ``unavailable`` (kept as evidence, never reused).
    Audited (``bureau.enquiry``). 409 ``consent_required`` (no consent in force: no call
    is made) or ``bureau_not_configured``; 422 bad input."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return bureau.staff_enquire(
            s, rt.deps, current(), member_id,
            loan_amount_cents=body["loan_amount_cents"], reason=body["reason"],
        )  # fmt: skip


@blp.route("/members/<int:member_id>/bureau-reports", methods=["GET"])
@requires("bureau:read")
@blp.response(200, sc.BureauRecordOut)
def list_reports(member_id: int) -> Any:
    """The member's consent in force (or null), every consent and every enquiry, newest
    first: the figures read from each answer, never the member's ID or the raw answer.
    The read is audited (``bureau.reports_read``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return bureau.staff_reports(s, rt.deps, current(), member_id)
