"""Insiders (issue 16, part 2): staff and board members flagged on the member record, so
their loans are reported apart (``core.reports.portfolio``: insider loans). Set by staff,
audited with the flag before and after."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from core.audit.log import record
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.permissions import Principal
from db.models import Member

INSIDER_KINDS = ("staff", "board")


def set_insider(
    session: Session, actor: Principal, member_id: int, insider: str | None, *, now: datetime
) -> Member:
    """Flag the member as ``staff`` or ``board``, or clear the flag (``None``)."""
    if insider is not None and insider not in INSIDER_KINDS:
        raise InvalidInput("insider must be staff, board or null", field="insider")
    member = session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise NotFound(f"no member {member_id}")
    before = member.insider
    member.insider = insider
    session.flush()
    record(
        session, actor, "member.insider", target_type="member", target_id=member.id,
        before={"insider": before}, after={"insider": insider}, now=now,
    )  # fmt: skip
    return member
