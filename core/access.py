"""What a member may do on self-service channels (USSD, SMS), by membership status.

One pure rule every channel asks, so USSD menus and SMS commands never decide
on their own who sees what:

* ``active``: everything.
* ``pending_kyc`` (registered, ID not yet checked): balances, their account,
  PIN change, and deposits (money may come in before KYC; nothing goes out).
* ``suspended``: balances only; the member is told to call the SACCO.
* ``exited``: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.identity import normalize_msisdn
from db.models import Member

BALANCES = "balances"
STATEMENT = "statement"
ACCOUNT = "account"
CHANGE_PIN = "change_pin"
DEPOSIT = "deposit"
WITHDRAW = "withdraw"
LOANS = "loans"

ALL_FEATURES = frozenset({BALANCES, STATEMENT, ACCOUNT, CHANGE_PIN, DEPOSIT, WITHDRAW, LOANS})

_BY_STATUS: dict[str, frozenset[str]] = {
    "active": ALL_FEATURES,
    "pending_kyc": frozenset({BALANCES, ACCOUNT, CHANGE_PIN, DEPOSIT}),
    "suspended": frozenset({BALANCES}),
    "exited": frozenset(),
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

    @property
    def features(self) -> frozenset[str]:
        return self_service_features(self.status)


def caller_by_msisdn(session: Session, msisdn: str) -> Caller | None:
    """The member registered on this phone (one indexed lookup), or None."""
    try:
        phone = normalize_msisdn(msisdn)
    except InvalidInput:
        return None
    row = session.execute(
        select(Member.id, Member.status, Member.language).where(Member.msisdn == phone)
    ).one_or_none()
    return Caller(int(row.id), str(row.status), str(row.language)) if row is not None else None
