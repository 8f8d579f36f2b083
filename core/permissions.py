"""Roles and permissions: one table, in code.

Every API endpoint names one permission from ``PERMISSIONS`` (a test fails if
one does not); a role holds the permissions in ``ROLE_PERMISSIONS``; a partner
system's API key holds a subset of ``INTEGRATION_GRANTABLE``. Object-level
checks (a branch-bound member of staff sees only that branch's members) are
``can_access_branch``.

Separation of duties: the administrator manages accounts and keys but moves no
money and reads no personal data; the auditor reads and changes nothing; the
checker permission is separate from every maker permission, and a request is
never decided by the member of staff who made it (``core.approvals``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("admin", "manager", "loan_officer", "teller", "auditor")
# Roles that must pass TOTP before they get a full token: every role that moves money
# (the teller's till too) or grants access.
MFA_REQUIRED_ROLES = frozenset({"admin", "manager", "loan_officer", "teller"})

# Permission name -> what it allows (shown in the README and the OpenAPI document).
PERMISSIONS: dict[str, str] = {
    "self": "any signed-in member of staff: own profile, logout, password, MFA enrolment",
    "staff:read": "list staff accounts",
    "staff:manage": "create, disable and unlock staff accounts; reset their MFA",
    "apiclients:manage": "create, list and revoke partner API keys",
    "webhooks:manage": "register, list and deactivate partners' webhook endpoints",
    "members:read": "search members and read them with personal data masked",
    "pii:read": "read members' phone number and national ID unmasked (audited)",
    "members:assign_branch": "set the branch that serves a member",
    "statements:read": "read a member's statement (audited)",
    "documents:upload": "upload KYC documents",
    "documents:read": "list and download KYC documents (audited)",
    "deposits:cash": "record a teller cash deposit",
    "kyc:request": "ask for a member's KYC approval (maker)",
    "kyc:reject": "reject a member's KYC with a reason",
    "member_status:request": "ask to suspend, reactivate or exit a member (maker)",
    "pin_reset:request": "ask for a member's PIN reset (maker)",
    "ledger:adjust": "ask for a manual ledger adjustment (maker)",
    "suspense:reassign": "ask to move money from suspense to a member (maker)",
    "reconciliation:read": "compare an M-Pesa statement export with the ledger (reads only)",
    "sim_swap:read": "list withdrawals the SIM-swap guard stopped (phones masked)",
    "sim_swap:review": "close a SIM-swap event with what the member showed at the office",
    "approvals:read": "list and read maker-checker requests",
    "approvals:decide": "approve or reject another person's request (checker)",
    "approvals:decide_large": "decide requests above the manager threshold",
    "audit:read": "query the audit log",
}

_READ = {"self", "members:read", "approvals:read"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "self",
            "staff:read",
            "staff:manage",
            "apiclients:manage",
            "webhooks:manage",
            "audit:read",
            "approvals:read",
        }
    ),
    "manager": frozenset(
        _READ
        | {
            "staff:read",
            "pii:read",
            "members:assign_branch",
            "statements:read",
            "documents:upload",
            "documents:read",
            "kyc:request",
            "kyc:reject",
            "member_status:request",
            "pin_reset:request",
            "ledger:adjust",
            "suspense:reassign",
            "reconciliation:read",
            "sim_swap:read",
            "sim_swap:review",
            "approvals:decide",
            "approvals:decide_large",
            "audit:read",
        }
    ),
    "loan_officer": frozenset(
        _READ
        | {
            "pii:read",
            "statements:read",
            "documents:upload",
            "documents:read",
            "kyc:request",
            "kyc:reject",
            "pin_reset:request",
            "sim_swap:read",
            "sim_swap:review",
            "approvals:decide",
        }
    ),
    "teller": frozenset(
        _READ
        | {
            "statements:read",
            "documents:upload",
            "deposits:cash",
            "kyc:request",
            "pin_reset:request",
            "sim_swap:read",
            "sim_swap:review",
        }
    ),
    "auditor": frozenset(
        _READ
        | {
            "staff:read",
            "statements:read",
            "documents:read",
            "audit:read",
            "reconciliation:read",
            "sim_swap:read",
        }
    ),
}

# What a partner system's API key may be granted.
INTEGRATION_GRANTABLE = frozenset({"members:read", "statements:read", "deposits:cash"})

assert all(p in PERMISSIONS for perms in ROLE_PERMISSIONS.values() for p in perms)
assert set(PERMISSIONS) >= INTEGRATION_GRANTABLE


@dataclass(frozen=True)
class Principal:
    """Who is calling: a member of staff (``kind="staff"``) or a partner (``"api_client"``)."""

    kind: str
    id: int
    name: str
    role: str  # the staff role, or "integration"
    branch: str | None
    permissions: frozenset[str] = field(default_factory=frozenset)
    address: str = ""
    request_id: str = ""
    session_id: str | None = None
    must_change_password: bool = False  # only "self" endpoints until it is changed

    def has(self, permission: str) -> bool:
        return permission in self.permissions


SYSTEM = Principal(kind="system", id=0, name="system", role="system", branch=None)


def permissions_for_role(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def can_access_branch(principal: Principal, branch: str | None) -> bool:
    """Branch-bound callers see only their branch; unbound ones (head office) see all."""
    return principal.branch is None or principal.branch == branch
