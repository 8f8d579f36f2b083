"""Credit-bureau enquiries: the member's consent, the call, the cache, the audit, and the
bureau's answer as the score's optional features (issue 15, part 2;
docs/integrations/bureaus.md).

* **Consent first.** ``check_bureau`` calls no bureau without a consent that is given, not
  expired and not revoked (``active_consent``). A consent is given on USSD with the PIN
  (``give_consent`` with channel ``ussd``) or by staff with the signed form's reference
  (channel ``staff``); it lasts ``CONSENT_VALID_DAYS`` and the member (USSD) or staff
  (API) can revoke it. Its id travels in the call (``BC-<id>``) and is kept with the answer.
* **Cache.** An answer (``answered`` or ``not_found``) is kept in ``bureau_reports`` with
  its raw text and reused until ``expires_at`` (the process's ``BureauAccess.cache_ttl``,
  setting ``BUREAU_CACHE_HOURS``), read with the injected clock. An ``unavailable`` row is
  evidence of the failure and is never reused.
* **Evidence.** The raw answer is kept encrypted with the personal-data vault (it names
  the member and their ID); ``raw_answer`` reads it back.
* **Audit.** Every call is one ``bureau.enquiry`` audit row: who, why, which consent, what
  came of it.
* **Fallback.** A timeout, an error answer or an unreadable one is ``unavailable``: the
  score goes on without the bureau's features (the SACCO's own-record score) and the
  decision says "bureau unavailable". Nothing blocks, nothing raises to the member.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.bureau import (
    BureauReport,
    BureauRequest,
    BureauUnavailable,
    Delinquency,
    ReportReason,
)
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.permissions import Principal, can_access_branch
from core.members.registration import get_member, national_id_of
from db.models_scoring import BureauConsent
from db.models_scoring import BureauReport as ReportRow

# The SACCO's policy, not a regulation: a consent covers enquiries for a year (the CRB
# Regulations 2020 ask for the customer's consent, not for a period).
CONSENT_VALID_DAYS = 365
FORM_REFERENCE_MAX = 64


class BureauStatus(StrEnum):
    """The bureau's part in a score (``credit_scores.bureau_status``)."""

    NONE = ""  # no bureau configured, or the product asks no score
    ANSWERED = "answered"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    NO_CONSENT = "no_consent"
    NOT_ASKED = "not_asked"  # a preview: no fresh answer kept, no call made


class ConsentRequired(DomainError):
    """A bureau enquiry was asked for a member with no consent in force."""

    code = "consent_required"


@dataclass(frozen=True)
class BureauCheck:
    status: BureauStatus
    report_id: int | None = None
    consent_id: int | None = None
    from_cache: bool = False
    worst_days_past_due: int = 0
    listings: int = 0
    delinquency: str = ""
    bureau_score: int | None = None

    @property
    def features(self) -> dict[str, int]:
        """The score's optional bureau features (none unless the bureau answered)."""
        if self.status is BureauStatus.ANSWERED:
            return {"bureau_worst_dpd": self.worst_days_past_due, "bureau_listings": self.listings}
        if self.status is BureauStatus.NOT_FOUND:
            return {"bureau_worst_dpd": -1, "bureau_listings": 0}
        return {}


def consent_ref(consent_id: int) -> str:
    return f"BC-{consent_id}"


def active_consent(session: Session, member_id: int, now: datetime) -> BureauConsent | None:
    """The member's newest consent in force at ``now`` (given, not expired, not revoked)."""
    return session.scalars(
        select(BureauConsent)
        .where(
            BureauConsent.member_id == member_id,
            BureauConsent.revoked_at.is_(None),
            BureauConsent.given_at <= now,
            BureauConsent.expires_at > now,
        )
        .order_by(BureauConsent.id.desc())
        .limit(1)
    ).first()


def give_consent(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    actor: Principal,
    *,
    channel: str,
    form_reference: str = "",
) -> BureauConsent:
    """Record the member's consent. ``channel`` ``ussd`` (the menu checked the PIN) or
    ``staff`` (``form_reference``: the signed form's number, required)."""
    member = get_member(session, member_id)
    form_reference = form_reference.strip()
    if channel not in ("ussd", "staff"):
        raise InvalidInput("channel must be ussd or staff", field="channel")
    if channel == "staff" and not form_reference:
        raise InvalidInput(
            "the signed consent form's reference is required", field="form_reference"
        )
    if len(form_reference) > FORM_REFERENCE_MAX:
        raise InvalidInput("form reference too long", field="form_reference", reason="too_long")
    now = deps.now()
    row = BureauConsent(
        member_id=member.id,
        channel=channel,
        form_reference=form_reference,
        given_by_staff_id=actor.id if actor.kind == "staff" else None,
        given_at=now,
        expires_at=now + timedelta(days=CONSENT_VALID_DAYS),
    )
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "bureau.consent_given", target_type="member", target_id=member.id,
        after={"consent_id": row.id, "channel": channel, "form_reference": form_reference,
               "expires_at": row.expires_at.isoformat()},
        now=now,
    )  # fmt: skip
    return row


def revoke_consent(session: Session, deps: CoreDeps, member_id: int, actor: Principal) -> int:
    """Revoke every consent of the member in force; the count revoked (0: none was)."""
    now = deps.now()
    rows = session.scalars(
        select(BureauConsent).where(
            BureauConsent.member_id == member_id,
            BureauConsent.revoked_at.is_(None),
            BureauConsent.expires_at > now,
        )
    ).all()
    for row in rows:
        row.revoked_at = now
        row.revoked_by = f"{actor.kind}:{actor.id}"[:80]
    if rows:
        session.flush()
        audit.record(
            session, actor, "bureau.consent_revoked", target_type="member", target_id=member_id,
            after={"consent_ids": [r.id for r in rows]}, now=now,
        )  # fmt: skip
    return len(rows)


def _fresh_report(session: Session, member_id: int, now: datetime) -> ReportRow | None:
    return session.scalars(
        select(ReportRow)
        .where(
            ReportRow.member_id == member_id,
            ReportRow.status.in_(("answered", "not_found")),
            ReportRow.expires_at > now,
        )
        .order_by(ReportRow.id.desc())
        .limit(1)
    ).first()


def _check_of(row: ReportRow, *, from_cache: bool) -> BureauCheck:
    return BureauCheck(
        status=BureauStatus(row.status),
        report_id=row.id,
        consent_id=row.consent_id,
        from_cache=from_cache,
        worst_days_past_due=row.worst_days_past_due,
        listings=row.listings,
        delinquency=row.delinquency,
        bureau_score=row.bureau_score,
    )


def check_bureau(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    actor: Principal,
    *,
    loan_amount_cents: int,
    reason: ReportReason = ReportReason.NEW_LOAN,
    allow_call: bool = True,
    require_consent: bool = False,
) -> BureauCheck:
    """The bureau's answer on the member: a fresh cached one, or (``allow_call``) a new
    call under the member's consent. No consent: ``no_consent`` and no call
    (``require_consent``: ``ConsentRequired`` instead, for staff asking outright)."""
    access = deps.bureau
    if access is None:
        return BureauCheck(BureauStatus.NONE)
    if loan_amount_cents < 0:
        raise InvalidInput("loan amount must not be negative", field="loan_amount_cents")
    now = deps.now()
    consent = active_consent(session, member_id, now)
    if consent is None:
        if require_consent:
            raise ConsentRequired("no credit-bureau consent in force for this member")
        return BureauCheck(BureauStatus.NO_CONSENT)
    cached = _fresh_report(session, member_id, now)
    if cached is not None:
        return _check_of(cached, from_cache=True)
    if not allow_call:
        return BureauCheck(BureauStatus.NOT_ASKED, consent_id=consent.id)
    member = get_member(session, member_id)
    request = BureauRequest(
        national_id=national_id_of(deps, member),
        loan_amount_cents=loan_amount_cents,
        reason=str(reason),
        consent_ref=consent_ref(consent.id),
        reference="BQ" + secrets.token_hex(12),
    )
    row = ReportRow(
        member_id=member.id,
        consent_id=consent.id,
        bureau=access.adapter.name[:16],
        reference=request.reference,
        reason=str(reason),
        loan_amount_cents=loan_amount_cents,
        requested_by=f"{actor.kind}:{actor.id}"[:80],
        requested_at=now,
    )
    try:
        report: BureauReport = access.adapter.fetch_report(request)
    except BureauUnavailable as exc:
        row.status = "unavailable"
        row.error = exc.detail[:200]
        row.raw_answer = _sealed(deps, exc.raw)
        row.expires_at = now  # never reused
    else:
        row.status = "answered" if report.found else "not_found"
        row.delinquency = str(report.delinquency if report.found else Delinquency.NO_RECORD)
        row.bureau_score = report.score
        row.accounts = report.accounts
        row.worst_days_past_due = report.worst_days_past_due if report.accounts else -1
        row.listings = report.listings
        row.bureau_ref = report.bureau_ref[:64]
        row.raw_answer = _sealed(deps, report.raw)
        row.expires_at = now + access.cache_ttl
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "bureau.enquiry", target_type="member", target_id=member.id,
        after={"report_id": row.id, "bureau": row.bureau, "consent_id": consent.id,
               "reason": row.reason, "loan_amount_cents": loan_amount_cents,
               "status": row.status},
        now=now,
    )  # fmt: skip
    return _check_of(row, from_cache=False)


def _sealed(deps: CoreDeps, raw: str) -> str:
    """The raw answer encrypted like every national ID at rest (it names the member)."""
    return deps.vault.encrypt(raw).decode() if raw else ""


def raw_answer(deps: CoreDeps, row: ReportRow) -> str:
    """The bureau's answer as received (evidence, for an auditor)."""
    return deps.vault.decrypt(row.raw_answer.encode()) if row.raw_answer else ""


def get_report(session: Session, member_id: int, report_id: int) -> ReportRow:
    row = session.get(ReportRow, report_id)
    if row is None or row.member_id != member_id:
        raise NotFound("no such bureau report")
    return row


def report_view(row: ReportRow) -> dict[str, object]:
    """What staff read of an enquiry (the raw answer stays in the database as evidence)."""
    return {
        "id": row.id,
        "member_id": row.member_id,
        "bureau": row.bureau,
        "consent_id": row.consent_id,
        "reference": row.reference,
        "reason": row.reason,
        "loan_amount_cents": row.loan_amount_cents,
        "status": row.status,
        "delinquency": row.delinquency,
        "bureau_score": row.bureau_score,
        "accounts": row.accounts,
        "worst_days_past_due": row.worst_days_past_due,
        "listings": row.listings,
        "error": row.error,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
    }


def consent_view(row: BureauConsent) -> dict[str, object]:
    return {
        "id": row.id,
        "member_id": row.member_id,
        "channel": row.channel,
        "form_reference": row.form_reference,
        "given_at": row.given_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


# ------------------------------------------------------------ the member (the USSD's use cases)


def member_actor(member_id: int) -> Principal:
    """The member acting for themselves (the audit's "who" of a USSD consent or of the
    enquiry made on their own application)."""
    return Principal(kind="member", id=member_id, name=f"member {member_id}", role="member",
                     branch=None)  # fmt: skip


def member_consent(session: Session, deps: CoreDeps, member_id: int) -> BureauConsent | None:
    """The member's consent in force now, if any (the USSD screen shows until when)."""
    return active_consent(session, member_id, deps.now())


def member_give_consent(session: Session, deps: CoreDeps, member_id: int) -> BureauConsent:
    """The member allows credit checks on USSD, after the PIN (the menu checked it)."""
    return give_consent(session, deps, member_id, member_actor(member_id), channel="ussd")


def member_revoke_consent(session: Session, deps: CoreDeps, member_id: int) -> int:
    """The member stops credit checks on USSD: every consent in force revoked."""
    return revoke_consent(session, deps, member_id, member_actor(member_id))


# ----------------------------------------------------------------- staff (the API's use cases)


class BureauNotConfigured(DomainError):
    """Staff asked for an enquiry and this SACCO has no bureau configured."""

    code = "bureau_not_configured"


def _staff_member_id(session: Session, actor: Principal, member_id: int) -> int:
    """The member, if the caller's branch may see them (else the same 404 as no member)."""
    member = get_member(session, member_id)
    if not can_access_branch(actor, member.branch):
        raise NotFound("no such member")
    return member.id


def staff_give_consent(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int, form_reference: str
) -> dict[str, object]:
    """Staff record the member's consent from the signed form (its reference required)."""
    member_id = _staff_member_id(session, actor, member_id)
    row = give_consent(
        session, deps, member_id, actor, channel="staff", form_reference=form_reference
    )
    return consent_view(row)


def staff_revoke_consent(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int
) -> dict[str, object]:
    """Staff revoke every consent of the member in force (the member asked at the office)."""
    member_id = _staff_member_id(session, actor, member_id)
    return {"member_id": member_id, "revoked": revoke_consent(session, deps, member_id, actor)}


def staff_enquire(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    *,
    loan_amount_cents: int,
    reason: str,
) -> dict[str, object]:
    """Staff ask the bureau outright: the consent must be in force (``consent_required``);
    a fresh answer is reused (``from_cache``); the bureau down is an ``unavailable``
    report, kept like any other."""
    member_id = _staff_member_id(session, actor, member_id)
    if deps.bureau is None:
        raise BureauNotConfigured("no credit bureau is configured (BUREAU_PROVIDER)")
    try:
        why = ReportReason(reason)
    except ValueError:
        raise InvalidInput(
            "reason must be one of " + ", ".join(r.value for r in ReportReason), field="reason"
        ) from None
    check = check_bureau(
        session, deps, member_id, actor, loan_amount_cents=loan_amount_cents, reason=why,
        require_consent=True,
    )  # fmt: skip
    if check.report_id is None:  # pragma: no cover - a bureau and a consent make a report
        raise BureauNotConfigured("no credit bureau answered")
    return {**report_view(get_report(session, member_id, check.report_id)),
            "from_cache": check.from_cache}  # fmt: skip


def staff_reports(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int
) -> dict[str, object]:
    """The member's consents and enquiries, newest first (figures only: the bureau's raw
    answer, which names the member, stays encrypted in the database as evidence). The
    read is audited, like a statement's."""
    member_id = _staff_member_id(session, actor, member_id)
    now = deps.now()
    consents = session.scalars(
        select(BureauConsent)
        .where(BureauConsent.member_id == member_id)
        .order_by(BureauConsent.id.desc())
    ).all()
    reports = session.scalars(
        select(ReportRow).where(ReportRow.member_id == member_id).order_by(ReportRow.id.desc())
    ).all()
    in_force = active_consent(session, member_id, now)
    audit.record(
        session, actor, "bureau.reports_read", target_type="member", target_id=member_id,
        after={"reports": len(reports)}, now=now,
    )  # fmt: skip
    return {
        "member_id": member_id,
        "consent_in_force": consent_view(in_force) if in_force else None,
        "consents": [consent_view(c) for c in consents],
        "reports": [report_view(r) for r in reports],
    }
