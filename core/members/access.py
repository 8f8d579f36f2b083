"""What a member may do on self-service channels (USSD, SMS), by membership status.

One pure rule every channel asks, so USSD menus and SMS commands never decide
on their own who sees what:

* ``active``: everything.
* ``pending_kyc`` (registered, ID not yet checked): balances, their account,
  PIN change, and deposits (money may come in before KYC; nothing goes out).
* ``suspended``: balances only; the member is told to call the SACCO.
* ``exited``, ``deceased``: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.kernel.identity import normalize_msisdn
from core.members.status import MemberStatus
from db.models import Member

BALANCES = "balances"
STATEMENT = "statement"
ACCOUNT = "account"
CHANGE_PIN = "change_pin"
DEPOSIT = "deposit"
WITHDRAW = "withdraw"
LOANS = "loans"

ALL_FEATURES = frozenset({BALANCES, STATEMENT, ACCOUNT, CHANGE_PIN, DEPOSIT, WITHDRAW, LOANS})

# DEPOSIT here is the self-service menu; it follows ``core.members.status.may_deposit``,
# the rule every money-in path applies (a test holds the two together).
_BY_STATUS: dict[str, frozenset[str]] = {
    MemberStatus.ACTIVE: ALL_FEATURES,
    MemberStatus.PENDING_KYC: frozenset({BALANCES, ACCOUNT, CHANGE_PIN, DEPOSIT}),
    MemberStatus.SUSPENDED: frozenset({BALANCES}),
    MemberStatus.EXITED: frozenset(),
    MemberStatus.DECEASED: frozenset(),  # the phone of a deceased member: nothing
}


def self_service_features(status: str) -> frozenset[str]:
    """The self-service features a member with this status may use (none if unknown)."""
    return _BY_STATUS.get(status, frozenset())


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is on the phone: just what a channel needs on every request."""

    member_id: int
    status: str
    language: str
    pin_reset_until: datetime | None = None  # a staff-issued PIN-reset code waits, until

    @property
    def features(self) -> frozenset[str]:
        return self_service_features(self.status)

    def pin_reset_pending(self, now: datetime) -> bool:
        """A reset code is waiting (``core.members.registration.has_pin_reset``, without loading the
        member): the next dial opens the reset flow. Not for exited members."""
        return (
            bool(self.features) and self.pin_reset_until is not None and self.pin_reset_until > now
        )


def caller_by_msisdn(session: Session, msisdn: str) -> Caller | None:
    """The member registered on this phone and any pending PIN reset (one indexed
    lookup), or None."""
    try:
        phone = normalize_msisdn(msisdn)
    except InvalidInput:
        return None
    row = session.execute(
        select(
            Member.id, Member.status, Member.language,
            Member.pin_reset_hash.is_not(None).label("has_reset"), Member.pin_reset_expires_at,
        ).where(Member.msisdn == phone)
    ).one_or_none()  # fmt: skip
    if row is None:
        return None
    return Caller(
        int(row.id), str(row.status), str(row.language),
        row.pin_reset_expires_at if row.has_reset else None,
    )  # fmt: skip
