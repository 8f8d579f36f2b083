"""Roles and permissions: one table, in code.

Every API endpoint names one permission from ``PERMISSIONS`` (a test fails if
one does not); a role holds the permissions in ``ROLE_PERMISSIONS``; a partner
system's API key holds a subset of ``INTEGRATION_GRANTABLE``. Object-level
checks (a branch-bound member of staff sees only that branch's members) are
``can_access_branch``.

Separation of duties: the administrator manages accounts and keys but moves no
money and reads no personal data; the auditor reads and changes nothing; the
checker permission is separate from every maker permission, and a request is
never decided by the member of staff who made it (``core.approvals.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("admin", "manager", "loan_officer", "teller", "auditor")
# Roles that must pass TOTP before they get a full token: every role that moves money
# (the teller's till too) or grants access.
MFA_REQUIRED_ROLES = frozenset({"admin", "manager", "loan_officer", "teller"})

# Permission name -> what it allows (shown in docs/api/index.md and the OpenAPI document).
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
    "members:register": "register a member who walks in at the branch (audited)",
    "kyc:verify": "verify a walk-in's KYC at registration, original ID seen at the counter: "
    "the member is active at once",
    "nominations:manage": "replace a member's beneficiaries (the nomination; audited)",
    "phone_change:request": "ask to change a member's phone number after an ID check (maker)",
    "ledger:adjust": "ask for a manual ledger adjustment (maker)",
    "suspense:reassign": "ask to move money from suspense to a member (maker)",
    "reconciliation:read": "compare an M-Pesa statement export with the ledger (reads only)",
    "sim_swap:read": "list withdrawals the SIM-swap guard stopped (phones masked)",
    "sim_swap:review": "close a SIM-swap event with what the member showed at the office",
    "loans:read": "list and read loan applications, loans, schedules and guarantees",
    "loans:recommend": "recommend a loan application for approval (maker of loan.approve), "
    "or reject one before it is recommended",
    "loans:repay_cash": "record a teller cash repayment of a loan",
    "loans:write_off": "propose writing off a loan in the loss category against its provision "
    "(maker of loan.write_off; a manager decides)",
    "loans:reschedule": "propose a new term or instalment for a loan (maker of loan.reschedule)",
    "loans:recover": "ask to recover a defaulted loan from the borrower's deposits and the "
    "guarantors' pledges (maker of loan.recover)",
    "close_day:read": "list the loan book's close-of-day runs and their results (accrual, "
    "arrears, classification and provisions by product and category)",
    "crb:submit": "produce a month's credit-bureau data submission file (audited)",
    "crb:read": "list credit-bureau submission files and download them (audited)",
    "approvals:read": "list and read maker-checker requests",
    "approvals:decide": "approve or reject another person's request (checker)",
    "approvals:decide_large": "decide requests above the manager threshold, and new or "
    "changed loan products",
    "access:approve": "approve another person's request for a staff account or partner key "
    "that can move money or read personal data (checker)",
    "audit:read": "query the audit log",
    "loan_products:read": "list and read loan products, their current and earlier versions",
    "loan_products:manage": "ask to create or change (or deactivate) a loan product (maker)",
    "withdrawals:cash": "pay cash out of a member's savings at the counter (above the till "
    "limit: maker of withdrawal.cash)",
    "estates:pay": "pay a deceased member's beneficiary (or legal representative) their "
    "approved share: cash, bank transfer or M-Pesa",
    "tills:operate": "open one's own till day with a float, see it, and count it at day end "
    "(maker of till.close when the count differs)",
    "tills:read": "list every teller's till days (expected, counted, difference)",
    "dormancy:read": "list dormant savings accounts and their unclaimed balances",
    "dormancy:reactivate": "reactivate a member's dormant savings (audited)",
    "savings_products:read": "list and read savings products, their current and earlier versions",
    "savings_products:manage": "ask to create or change (a rate, or deactivate) a savings "
    "product (maker)",
    "year_end:read": "read year-end runs (each member's dividend and rebate, the capital "
    "ratios) and the withholding tax remittance report",
    "year_end:manage": "make a year-end run with the board's rates, submit it (maker of "
    "year_end.post; a manager approves), set a member's standing payout choice and queue "
    "the M-Pesa payouts of a posted run",
    "bureau:enquire": "record or revoke a member's credit-bureau consent (signed form) and "
    "ask the credit bureau for the member's report (audited)",
    "bureau:read": "read a member's credit-bureau consents and reports (figures only; audited)",
    "shares:transfer": "ask to transfer share capital from one member to another (maker of "
    "share.transfer)",
    "savings_accounts:open": "open a further savings account for a member under a savings "
    "product open to members (audited)",
    "checkoff:read": "read employers, payroll numbers, standing instructions, expected "
    "deductions, remittances and their reports (unmatched lines, shortfalls, late remittance)",
    "checkoff:manage": "add employers, put members on a payroll, set standing instructions, "
    "generate the expected deductions",
    "checkoff:upload": "upload an employer's remittance file, ask to move a line left in "
    "clearing to a member (maker of checkoff.post, checkoff.reassign)",
    "checkoff:post": "approve the posting of an employer's remittance and a line's move "
    "(checker of checkoff.post, checkoff.reassign)",
    "reports:read": "list and run reports (financial statements, portfolio quality), "
    "download their files, the SASRA returns and the prudential ratio dashboard, membership "
    "figures and report charts (audited)",
    "members:insider": "flag a member as an insider (staff or board) or clear the flag (audited)",
    "fixed_deposits:manage": "open a member's fixed deposit from their savings, or close one "
    "before maturity with its penalty (audited)",
}

_READ = {"self", "members:read", "approvals:read", "loan_products:read"}

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
            "members:register",
            "kyc:verify",
            "nominations:manage",
            "phone_change:request",
            "savings_accounts:open",
            "fixed_deposits:manage",
            "shares:transfer",
            "ledger:adjust",
            "suspense:reassign",
            "reconciliation:read",
            "sim_swap:read",
            "sim_swap:review",
            "loans:read",
            "loans:recommend",
            "loans:write_off",
            "loans:reschedule",
            "loans:recover",
            "close_day:read",
            "crb:submit",
            "crb:read",
            "approvals:decide",
            "approvals:decide_large",
            "access:approve",
            "audit:read",
            "loan_products:manage",
            "tills:read",
            "dormancy:read",
            "dormancy:reactivate",
            "savings_products:read",
            "savings_products:manage",
            "estates:pay",
            "year_end:read",
            "year_end:manage",
            "bureau:enquire",
            "bureau:read",
            "checkoff:read",
            "checkoff:manage",
            "checkoff:upload",
            "checkoff:post",
            "reports:read",
            "members:insider",
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
            "members:register",
            "kyc:verify",
            "nominations:manage",
            "phone_change:request",
            "savings_accounts:open",
            "fixed_deposits:manage",
            "sim_swap:read",
            "sim_swap:review",
            "loans:read",
            "loans:recommend",
            "loans:write_off",
            "loans:reschedule",
            "loans:recover",
            "close_day:read",
            "approvals:decide",
            "loan_products:manage",
            "savings_products:read",
            "bureau:enquire",
            "bureau:read",
            "checkoff:read",
            "checkoff:manage",
            "checkoff:upload",
        }
    ),
    "teller": frozenset(
        _READ
        | {
            "statements:read",
            "documents:upload",
            "deposits:cash",
            "loans:repay_cash",
            "withdrawals:cash",
            "estates:pay",
            "tills:operate",
            "kyc:request",
            "pin_reset:request",
            "members:register",
            "nominations:manage",
            "phone_change:request",
            "savings_accounts:open",
            "fixed_deposits:manage",
            "shares:transfer",
            "sim_swap:read",
            "sim_swap:review",
            "savings_products:read",
            "checkoff:read",
            "checkoff:upload",
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
            "loans:read",
            "close_day:read",
            "crb:read",
            "tills:read",
            "dormancy:read",
            "savings_products:read",
            "year_end:read",
            "bureau:read",
            "checkoff:read",
            "reports:read",
        }
    ),
}

# What a partner system's API key may be granted.
INTEGRATION_GRANTABLE = frozenset({"members:read", "statements:read", "deposits:cash"})

assert all(p in PERMISSIONS for perms in ROLE_PERMISSIONS.values() for p in perms)
assert set(PERMISSIONS) >= INTEGRATION_GRANTABLE

# --------------------------------------------------------- separation of duties
# What holding each permission lets one do that matters for who may hand it out:
# "money" moves money, or asks for or decides a move (a colluding pair is still two
# people); "personal_data" reads members' personal or financial data; "access" creates
# accounts or keys, or decides who gets them; "none" is none of these. A staff account
# (its role) or a partner key holding any permission other than "none" is created only
# through maker-checker (core.staff.accounts.request_staff_account / request_api_client): asked
# by a holder of staff:manage / apiclients:manage, approved by another person holding
# APPROVER_PERMISSION. The administrator alone cannot; see docs/security.md.
PERMISSION_RISK: dict[str, str] = {
    "self": "none",
    "staff:read": "none",  # staff names and roles, not members' data
    "staff:manage": "access",
    "apiclients:manage": "access",
    "webhooks:manage": "personal_data",  # deliveries carry member numbers and amounts
    "members:read": "personal_data",  # names, balances; search by phone or national ID
    "pii:read": "personal_data",
    "members:assign_branch": "access",  # decides which branch's staff see a member
    "statements:read": "personal_data",
    "documents:upload": "none",
    "documents:read": "personal_data",
    "deposits:cash": "money",
    "kyc:request": "money",  # an approved KYC lets the member transact
    "kyc:reject": "none",
    "member_status:request": "money",  # reactivating lets money move again
    "pin_reset:request": "money",  # a reset code is the way into a member's account
    "members:register": "money",  # a new member can save at once
    "kyc:verify": "money",  # an active member may transact
    "nominations:manage": "money",  # decides who is paid a deceased member's savings
    "phone_change:request": "money",  # the phone is the way into a member's account
    "ledger:adjust": "money",
    "suspense:reassign": "money",
    "reconciliation:read": "personal_data",  # receipts, payers and amounts
    "sim_swap:read": "personal_data",
    "sim_swap:review": "money",  # a clearance lets withdrawals through again
    "loans:read": "personal_data",  # members' borrowing, deposits pledged, guarantors
    "loans:recommend": "money",  # asks for a loan to be paid out
    "loans:repay_cash": "money",  # takes cash for a loan
    "loans:write_off": "money",  # asks for a loan to leave the books
    "loans:reschedule": "money",  # asks for what a member owes to be re-spread
    "loans:recover": "money",  # asks for deposits and pledges to be taken to a loan
    "close_day:read": "none",  # the book's totals by product and category; no member's data
    "crb:submit": "personal_data",  # the file holds every borrower's ID, name and phone
    "crb:read": "personal_data",
    "approvals:read": "none",  # member ids, actions and amounts; no names, phones or IDs
    "approvals:decide": "money",
    "approvals:decide_large": "money",
    "access:approve": "access",
    "audit:read": "none",  # who did what; personal data is never written into it
    "loan_products:read": "none",  # the SACCO's published terms, nobody's data
    "loan_products:manage": "money",  # asks for the terms every loan is made on
    "withdrawals:cash": "money",
    "estates:pay": "money",  # pays out a share the manager approved
    "tills:operate": "money",  # asks for a till's difference to be posted
    "tills:read": "none",  # tellers' till figures; no member's data
    "dormancy:read": "personal_data",  # members' names and balances
    "dormancy:reactivate": "money",  # lets withdrawals through again
    "savings_products:read": "none",  # the SACCO's published terms, nobody's data
    "savings_products:manage": "money",  # asks for the rate every saver earns
    "year_end:read": "personal_data",  # every member's dividend, rebate and balances
    "year_end:manage": "money",  # asks for the year's dividends and rebates to be paid
    "bureau:enquire": "personal_data",  # a member's credit record, from the bureau
    "bureau:read": "personal_data",  # a member's credit record as the bureau gave it
    "shares:transfer": "money",  # asks for share capital to move between members
    "savings_accounts:open": "none",  # an empty account of the member's; moves nothing
    "checkoff:read": "personal_data",  # payroll numbers, names and amounts
    "checkoff:manage": "money",  # decides what a member's pay deduction pays
    "checkoff:upload": "money",  # asks for an employer's remittance to be posted
    "checkoff:post": "money",
    "reports:read": "personal_data",  # top exposures and insider loans name borrowers
    "members:insider": "none",  # how a member's loans are reported; moves nothing
    "fixed_deposits:manage": "money",  # moves a member's savings in and out of a deposit
}
GUARDED_RISKS = frozenset({"money", "personal_data", "access"})
# The checker of staff-account and partner-key requests; held by no role that can ask.
APPROVER_PERMISSION = "access:approve"

assert set(PERMISSION_RISK) == set(PERMISSIONS), "classify every permission"
assert not any(
    APPROVER_PERMISSION in perms and {"staff:manage", "apiclients:manage"} & perms
    for perms in ROLE_PERMISSIONS.values()
), "whoever asks for access must not approve it"


def grant_needs_approval(permissions: frozenset[str] | set[str]) -> bool:
    """Whether an account or key holding these permissions needs a second person."""
    return any(PERMISSION_RISK.get(p, "access") in GUARDED_RISKS for p in permissions)


def role_needs_approval(role: str) -> bool:
    return grant_needs_approval(permissions_for_role(role))


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
