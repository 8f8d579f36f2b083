"""A member's registered e-mail: where statements go (issue 16, part 3).

Personal data like the national ID: stored as a PII-vault token
(``members.email_ciphertext``), shown masked (``m***@example.com``) without
``pii:read``, and every change is audited (the audit row records that it changed, and
the masked old and new values, never the address itself).
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.kernel.permissions import Principal
from core.members.backoffice import visible_member
from db.models import Member

EMAIL_MAX = 254
# One plain address: local@domain.tld; no display name, no list, no spaces or brackets.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def check_email(text: str) -> str:
    """The address trimmed and its domain lower-cased, or ``InvalidInput``."""
    email = (text or "").strip()
    if len(email) > EMAIL_MAX or not _EMAIL.fullmatch(email):
        raise InvalidInput("not a single e-mail address", field="email", reason="email")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def mask_email(email: str | None) -> str | None:
    """``mary.wanjiru@example.com`` -> ``m***@example.com``."""
    if not email:
        return None
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def member_email(deps: CoreDeps, member: Member) -> str | None:
    """The member's registered e-mail in the clear (for sending), or None."""
    if member.email_ciphertext is None:
        return None
    return deps.vault.decrypt(member.email_ciphertext)


def set_member_email(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int, email: str | None
) -> Member:
    """Register, change or (with None) remove the member's e-mail. Audited, masked."""
    member = visible_member(session, actor, member_id)
    new = check_email(email) if email is not None else None
    old = member_email(deps, member)
    member.email_ciphertext = deps.vault.encrypt(new) if new is not None else None
    audit.record(
        session, actor, "member.email_set", target_type="member", target_id=member.id,
        before={"email": mask_email(old)}, after={"email": mask_email(new)}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return member


class NoEmail(DomainError):
    """The member has no registered e-mail (a statement cannot be e-mailed)."""

    code = "no_email"
