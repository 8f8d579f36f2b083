"""Membership status: the states, the moves between them, and who may deposit.

``pending_kyc -> active <-> suspended -> exited`` (exited is final; a pending
member may also exit); any of the first three -> ``deceased`` when staff record a death. ``MemberStatus`` is a ``StrEnum``: a member *is* the string
``members.status`` stores, so the database and the API keep the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from core.kernel.errors import MemberNotAllowed


class MemberStatus(StrEnum):
    PENDING_KYC = "pending_kyc"  # registered, ID not yet checked
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXITED = "exited"
    DECEASED = "deceased"  # a death recorded (core.members.death): every channel stops


TRANSITIONS: Mapping[MemberStatus, frozenset[MemberStatus]] = {
    MemberStatus.PENDING_KYC: frozenset(
        {MemberStatus.ACTIVE, MemberStatus.EXITED, MemberStatus.DECEASED}
    ),
    MemberStatus.ACTIVE: frozenset(
        {MemberStatus.SUSPENDED, MemberStatus.EXITED, MemberStatus.DECEASED}
    ),
    MemberStatus.SUSPENDED: frozenset(
        {MemberStatus.ACTIVE, MemberStatus.EXITED, MemberStatus.DECEASED}
    ),
    MemberStatus.EXITED: frozenset(),
    # Final, but a death recorded in error (its settlement rejected) is undone by
    # core.members.death itself, back to the status it found.
    MemberStatus.DECEASED: frozenset(),
}

# Money may come in before KYC (nothing goes out until then); a suspended or exited
# member's money waits in suspense for staff instead.
DEPOSIT_STATUSES = frozenset({MemberStatus.PENDING_KYC, MemberStatus.ACTIVE})


def may_deposit(status: str) -> bool:
    """Whether money may be credited to a member with this status, from any source
    (M-Pesa STK push or paybill, teller cash, a suspense reassignment)."""
    return status in DEPOSIT_STATUSES


def check_may_deposit(status: str) -> None:
    """``MemberNotAllowed`` (reason: the status) unless ``may_deposit(status)``."""
    if not may_deposit(status):
        raise MemberNotAllowed(f"member is {status}", reason=status)
