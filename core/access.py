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
