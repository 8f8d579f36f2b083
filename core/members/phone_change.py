"""Change of a member's phone number (lost SIM, new line), maker-checker
``member.phone_change`` (issue 14, part 3).

Staff check the member's ID at the counter and ask (``phone_change_payload``: the new
number normalised and encrypted, since an approval's payload and its audit row are
read without ``pii:read``); another person approves; ``change_phone`` runs in the
approval's transaction:

* ``members.msisdn`` becomes the new number, so every channel that finds the member by
  phone (USSD, SMS commands, M-Pesa paybill matching) stops knowing the old number at
  once; the USSD hop also ends a live session of the old number (``ussd.service``);
* a ``member_phone_changes`` row: the SIM-swap guard (``core.risk.sim_swap.swap_status``)
  counts the change as a SIM swap of the new number at the approval time, so withdrawals,
  M-Pesa loan payouts and remote PIN resets are refused for the SACCO's window
  (``SIM_SWAP_WINDOW_DAYS``) unless staff clear it, as for a swap the provider reports;
* an SMS to both numbers (``phone_changed_old``, ``phone_changed_new``);
* a PIN-reset code still waiting is void (it went to the old number); the PIN stays.

Refusals: a malformed number (``InvalidInput``, 422), the same number as now (422), a
number another member uses (``DuplicateMember``, 409), an exited member, no ID check.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import DuplicateMember, InvalidInput, MemberNotAllowed
from core.kernel.identity import mask_msisdn, normalize_msisdn
from core.members.status import MemberStatus
from core.messaging.notifications import first_name, notify, sms_datetime
from db.models import Member
from db.models_members import MemberPhoneChange

TOKEN = "msisdn_token"


def phone_change_payload(deps: CoreDeps, new_msisdn: str, *, id_checked: bool) -> dict[str, Any]:
    """The request's payload: the new number encrypted (and masked for the checker's
    screen), never in the clear. ``InvalidInput`` for a malformed number."""
    phone = normalize_msisdn(new_msisdn)
    return {
        TOKEN: deps.vault.encrypt(phone).decode(),
        "msisdn_masked": mask_msisdn(phone),
        "id_checked": id_checked,
    }


def new_msisdn_of(deps: CoreDeps, payload: dict[str, Any]) -> str:
    token = payload.get(TOKEN)
    if not isinstance(token, str):
        raise InvalidInput("the new phone number is missing", field="msisdn", reason="required")
    return normalize_msisdn(deps.vault.decrypt(token.encode()))


def check_phone_change(session: Session, deps: CoreDeps, member: Member, new: str) -> None:
    if member.status == MemberStatus.EXITED:
        raise MemberNotAllowed("the member has exited", reason="exited")
    if new == member.msisdn:
        raise InvalidInput("that is the member's number now", field="msisdn", reason="same")
    other = session.scalar(select(Member.id).where(Member.msisdn == new, Member.id != member.id))
    if other is not None:
        raise DuplicateMember("another member uses that phone number", field="msisdn")


def check_request(session: Session, deps: CoreDeps, member: Member, p: dict[str, Any]) -> None:
    if p.get("id_checked") is not True:
        raise InvalidInput(
            "check the member's ID at the counter first (id_checked: true)",
            field="id_checked",
            reason="required",
        )
    check_phone_change(session, deps, member, new_msisdn_of(deps, p))


def change_phone(
    session: Session, deps: CoreDeps, member_id: int, new_msisdn: str, *, approval_id: int
) -> MemberPhoneChange:
    """Move the member to ``new_msisdn`` (checked again under the member's row lock)."""
    member = session.scalar(select(Member).where(Member.id == member_id).with_for_update())
    if member is None:
        raise MemberNotAllowed("no such member", reason="not_found")
    new = normalize_msisdn(new_msisdn)
    check_phone_change(session, deps, member, new)
    old = member.msisdn
    now = deps.now()
    member.msisdn = new
    member.updated_at = now
    # A PIN-reset code waiting went by SMS to the old number: it dies with it. The PIN
    # itself is kept (a replaced SIM does not change what the member knows).
    member.pin_reset_hash = None
    member.pin_reset_expires_at = None
    member.pin_reset_attempts = 0
    change = MemberPhoneChange(
        member_id=member.id, approval_id=approval_id, old_msisdn_ciphertext=deps.vault.encrypt(old),
        new_msisdn_ciphertext=deps.vault.encrypt(new), changed_at=now,
    )  # fmt: skip
    session.add(change)
    session.flush()  # the unique phone: a concurrent registration of it fails the approval
    data = {
        "sacco": deps.sacco_name,
        "member_number": member.member_number,
        "first_name": first_name(member.full_name),
        "date": sms_datetime(now),
        "ussd_code": deps.ussd_code,
    }
    notify(
        session, template="phone_changed_old", business_key=f"phone_changed_old:{approval_id}",
        now=now, msisdn=old, language=member.language, data={**data, "msisdn": mask_msisdn(new)},
    )  # fmt: skip
    notify(
        session, template="phone_changed_new", business_key=f"phone_changed_new:{approval_id}",
        now=now, member=member, data={**data, "msisdn": mask_msisdn(old)},
    )  # fmt: skip
    session.flush()
    return change
