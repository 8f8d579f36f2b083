"""E-mails to staff about work that waits for them, queued as outbox rows in the
transaction of the event: one goes out exactly when the event commits, never for an
event that rolled back.

* A maker-checker request waits (``approval_waiting``): to every member of staff who
  holds the request's checker permission and can see its branch (a branch's staff and
  head office), except the person who asked.
* An M-Pesa payout failed, or waits for staff after M-Pesa could not say whether it was
  paid (``payout_needs_staff``): to those holding ``PAYOUT_PERMISSION`` who can see the
  member's branch.

Only active accounts with an e-mail address (``staff_users.email``, set by an
administrator) get one. An e-mail leaves the SACCO's systems, so it names ids, actions,
amounts and where to act, never a member's name, phone or national ID, nor the maker's
note. One e-mail per person and event (the business key names both): an event replayed
queues nothing twice. Delivery is the outbox's (``SMTP_*`` settings).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import NotFound
from core.kernel.identity import normalize_email
from core.kernel.money import format_cents
from core.kernel.permissions import ROLES, Principal, permissions_for_role
from core.messaging.notifications import NAIROBI, notify_email
from db.models import ApprovalRequest, Member, StaffUser
from db.models_mpesa import B2CPayout

# Who settles a payout waiting for staff: the maker permission of ``payout.resolve``.
PAYOUT_PERMISSION = "ledger:adjust"
PAYOUT_REASONS = ("failed", "review")


def set_staff_email(
    session: Session, deps: CoreDeps, actor: Principal, staff_id: int, email: str | None
) -> StaffUser:
    """Set (or, with None, remove) the address a member of staff's alerts go to. Audited;
    no commit (the caller's unit of work)."""
    staff = session.get(StaffUser, staff_id)
    if staff is None:
        raise NotFound("no such staff account")
    before = {"email": staff.email}
    staff.email = normalize_email(email) if email is not None else None
    audit.record(
        session, actor, "staff.email_set", target_type="staff", target_id=staff_id,
        before=before, after={"email": staff.email}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return staff


def staff_to_alert(
    session: Session, permission: str, branch: str | None, *, except_id: int | None = None
) -> list[StaffUser]:
    """Active staff with an e-mail address whose role holds ``permission`` and who can see
    ``branch`` (head office sees every branch; nothing without a branch is a branch's)."""
    roles = [role for role in ROLES if permission in permissions_for_role(role)]
    if not roles:
        return []
    query = (
        select(StaffUser)
        .where(
            StaffUser.role.in_(roles),
            StaffUser.is_active,
            StaffUser.pending_approval_id.is_(None),
            StaffUser.email.is_not(None),
        )
        .order_by(StaffUser.id)
    )
    if branch is None:
        query = query.where(StaffUser.branch.is_(None))
    else:
        query = query.where(or_(StaffUser.branch.is_(None), StaffUser.branch == branch))
    if except_id is not None:
        query = query.where(StaffUser.id != except_id)
    return list(session.scalars(query))


def _email_each(
    session: Session,
    deps: CoreDeps,
    recipients: list[StaffUser],
    *,
    key: str,
    template: str,
    subject: str,
    body: str,
) -> int:
    for staff in recipients:
        assert staff.email is not None
        notify_email(
            session, to=staff.email, subject=subject, body=body, template=template,
            business_key=f"{key}:{staff.id}", now=deps.now(),
        )  # fmt: skip
    return len(recipients)


def _local(moment: datetime) -> str:
    return moment.astimezone(NAIROBI).strftime("%d/%m/%Y %H:%M") + " (Nairobi)"


def approval_waiting(session: Session, deps: CoreDeps, req: ApprovalRequest) -> int:
    """Queue the e-mails saying ``req`` waits for a checker; returns how many. Called by
    the approvals engine for every new request (``core.approvals.engine.on_request``,
    registered by ``core.staff.approval_actions``)."""
    maker = session.get(StaffUser, req.maker_id)
    lines = [
        f"Request {req.id} ({req.action}) waits for a second person to decide it.",
        f"Asked by: {maker.full_name if maker else '?'} ({maker.username if maker else '?'}), "
        f"{_local(req.created_at)}",
        f"Branch: {req.branch or 'none (head office)'}",
    ]
    if req.member_id is not None:
        lines.append(f"Member id: {req.member_id}")
    if req.amount_cents is not None:
        lines.append(f"Amount: {format_cents(req.amount_cents)}")
    lines += [
        "",
        f"You hold {req.checker_permission}, which decides it. Read it with "
        f"GET /api/v1/approvals/{req.id}, then POST /api/v1/approvals/{req.id}/approve "
        "or /reject.",
    ]
    return _email_each(
        session,
        deps,
        staff_to_alert(session, req.checker_permission, req.branch, except_id=req.maker_id),
        key=f"approval_waiting:{req.id}",
        template="staff_approval_waiting",
        subject=f"Waiting for your approval: {req.action} (request {req.id})",
        body="\n".join(lines) + "\n",
    )


def payout_needs_staff(
    session: Session, deps: CoreDeps, payout: B2CPayout, member: Member, why: str
) -> int:
    """Queue the e-mails saying ``payout`` failed (``why="failed"``) or waits for staff
    (``"review"``); returns how many."""
    if why not in PAYOUT_REASONS:
        raise ValueError(f"why must be one of {PAYOUT_REASONS}")
    head = (
        f"M-Pesa payout {payout.id} ({payout.reference}) of {format_cents(payout.amount_cents)} "
        f"to member id {payout.member_id}"
    )
    if why == "failed":
        subject = f"M-Pesa payout {payout.reference} failed"
        lines = [
            f"{head} failed: {payout.result_desc or payout.last_error or 'no reason given'}.",
            "The hold on the member's savings was released and the member told by SMS.",
            "If the float or the Daraja set-up is at fault, other payouts fail the same way.",
        ]
    else:
        subject = f"M-Pesa payout {payout.reference} waits for staff"
        lines = [
            f"{head} waits for staff: {payout.last_error or 'M-Pesa gave no verdict'}.",
            "M-Pesa could not say whether it was paid, and it is never sent again by itself",
            "(a second request could pay twice); the member's money stays held.",
            "Look for it in the M-Pesa org portal, then ask for a resolution (resend, release",
            f"or paid): POST /api/v1/mpesa/payouts/{payout.id}/resolution.",
        ]
    return _email_each(
        session,
        deps,
        staff_to_alert(session, PAYOUT_PERMISSION, member.branch),
        key=f"payout_{why}:{payout.id}",
        template=f"staff_payout_{why}",
        subject=subject,
        body="\n".join(lines) + "\n",
    )
