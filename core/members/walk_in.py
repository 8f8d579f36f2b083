"""Staff register a member who walks in (issue 14, part 3): the USSD's own verb,
``core.members.registration.register_member``, with what the branch adds.

* Branch: the staff member's own by default (head office staff, who have none, register
  head-office members unless they name a branch); branch-bound staff may name only their
  own. USSD self-registration has no staff member, so its members start at head office
  (``branch`` NULL) until staff assign one (``PUT /members/{id}/branch``).
* KYC at once: a staff member holding ``kyc:verify`` saw the original ID at the counter,
  so the member is active at once (the ``kyc_approved`` SMS); anyone else's walk-in waits
  in ``pending_kyc`` for the documents and the maker-checker ``kyc.approve`` as before.
  Documents are uploaded afterwards through ``POST /members/{id}/documents``.
* PIN: none is taken at the counter; the member gets the welcome SMS and a one-time code
  (the PIN reset's ``pin_reset_code`` SMS and USSD flow: dial, enter the code, choose a
  PIN), valid 24 hours; staff ask for a PIN reset if it lapses.
* ``Idempotency-Key``: scoped to the staff member; the same key again returns the first
  registration (no second member, no second SMS); with another phone or ID it is an
  ``IdempotencyConflict``.
* Audited (``member.register``), with no personal data in the audit row.

``replace_nomination``: staff replace a member's beneficiaries later (the shares again
summing to exactly 100); audited, no maker-checker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict, InvalidInput, MemberNotAllowed
from core.kernel.identity import normalize_msisdn, normalize_national_id
from core.kernel.permissions import Principal, can_access_branch
from core.members.backoffice import CASH_KEY_RE, visible_member
from core.members.nominations import Beneficiary, NextOfKin, replace_beneficiaries
from core.members.registration import register_member, start_pin_reset
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from db.models import Member
from db.models_members import MemberBeneficiary

KYC_AT_ONCE_PERMISSION = "kyc:verify"


@dataclass(frozen=True, slots=True)
class WalkIn:
    full_name: str
    msisdn: str
    national_id: str
    date_of_birth: date
    next_of_kin: NextOfKin
    beneficiaries: Sequence[Beneficiary]
    consent: bool
    language: str = "en"
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class Registered:
    member: Member
    created: bool  # False: a replay of the same Idempotency-Key


def registration_key(actor: Principal, idempotency_key: str) -> str:
    key = (idempotency_key or "").strip()
    if not CASH_KEY_RE.fullmatch(key):
        raise InvalidInput(
            "Idempotency-Key header: 8-80 of letters, digits, . _ : -",
            field="Idempotency-Key",
            reason="required",
        )
    return f"walkin:{actor.kind}:{actor.id}:{key}"


def register_walk_in(
    session: Session, deps: CoreDeps, actor: Principal, form: WalkIn, *, idempotency_key: str
) -> Registered:
    scoped = registration_key(actor, idempotency_key)
    earlier = session.scalar(select(Member).where(Member.registration_key == scoped))
    if earlier is not None:
        same = earlier.msisdn == normalize_msisdn(form.msisdn) and (
            earlier.national_id_index
            == deps.vault.blind_index(normalize_national_id(form.national_id))
        )
        if not same:
            raise IdempotencyConflict(
                "this idempotency key was already used for another registration",
                idempotency_key=idempotency_key,
            )
        return Registered(earlier, False)
    branch = form.branch if form.branch is not None else actor.branch
    if not can_access_branch(actor, branch):
        raise InvalidInput("you may only register members of your own branch", field="branch",
                           reason="branch")  # fmt: skip
    member = register_member(
        session, deps, full_name=form.full_name, msisdn=form.msisdn,
        national_id=form.national_id, language=form.language, consent=form.consent,
        date_of_birth=form.date_of_birth, branch=branch, next_of_kin=form.next_of_kin,
        beneficiaries=form.beneficiaries, registration_key=scoped,
    )  # fmt: skip
    # The member chooses a PIN on the first dial with a one-time code by SMS: the PIN
    # reset's own flow and message, the phone being the one the member gave at the counter.
    start_pin_reset(session, deps, member.id, business_key=f"pin_setup:walk_in:{member.id}")
    kyc_at_once = actor.has(KYC_AT_ONCE_PERMISSION)
    if kyc_at_once:
        member.status = MemberStatus.ACTIVE
        notify(
            session,
            template="kyc_approved",
            business_key=f"kyc_approved:walk_in:{member.id}",
            now=deps.now(),
            member=member,
            data={
                "sacco": deps.sacco_name,
                "member_number": member.member_number,
                "ussd_code": deps.ussd_code,
            },
        )
    audit.record(
        session, actor, "member.register", target_type="member", target_id=member.id,
        after={"branch": branch, "status": member.status, "kyc_at_once": kyc_at_once,
               "beneficiaries": len(form.beneficiaries), "next_of_kin": True},
        now=deps.now(),
    )  # fmt: skip
    session.flush()
    return Registered(member, True)


def replace_nomination(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int,
    beneficiaries: Sequence[Beneficiary],
) -> list[Beneficiary]:  # fmt: skip
    """Replace the member's whole nomination (shares summing to exactly 100). Audited
    with the count and the shares, never the names or ID numbers."""
    member = visible_member(session, actor, member_id)
    if member.status == MemberStatus.EXITED:
        raise MemberNotAllowed("the member has exited", reason="exited")
    before = session.scalars(
        select(MemberBeneficiary.share_percent)
        .where(MemberBeneficiary.member_id == member.id)
        .order_by(MemberBeneficiary.position)
    ).all()
    checked = replace_beneficiaries(session, deps, member.id, beneficiaries)
    audit.record(
        session, actor, "member.beneficiaries_replace", target_type="member",
        target_id=member.id, before={"shares": [str(x) for x in before]},
        after={"shares": [str(b.share_percent) for b in checked]}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return checked
