"""Request and response schemas (marshmallow); flask-smorest turns them into OpenAPI 3."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from core.approvals.vocabulary import ApprovalStatus
from core.kernel.errors import InvalidInput
from core.kernel.permissions import INTEGRATION_GRANTABLE, ROLES
from core.loans.references import normalize_loan_reference
from core.loans.vocabulary import (
    AllocationOrder,
    ApplicationStatus,
    Channel,
    EarlyPayoffInterest,
    FeeKind,
    FeeTiming,
    Frequency,
    GuarantorPolicy,
    LoanStatus,
    PledgeRelease,
    RatePeriod,
    RepaymentMethod,
    Rounding,
)
from core.members.backoffice import DOCUMENT_KINDS
from core.members.status import MemberStatus
from core.messaging.webhooks import EVENT_TYPES
from core.payments.mpesa.flows import PAYOUT_LIST_STATUSES
from core.payments.mpesa.vocabulary import SuspenseStatus
from core.savings.accounts import DEPOSIT_TARGETS
from core.savings.vocabulary import (
    BalanceMethod,
    DayCount,
    FdInterestAt,
    FdPenalty,
    FdRollover,
    PostingFrequency,
    ProductKind,
)

BRANCH = validate.Regexp(r"^[A-Za-z0-9 _-]{1,24}$", error="1-24 letters, digits, space, dash")


class Strict(Schema):
    class Meta:
        # Unknown fields are refused (mass assignment, OWASP API3).
        unknown = "raise"


class ProblemSchema(Schema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


# ------------------------------------------------------------ pagination


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = -1
    if not 0 <= value < 2**62:
        raise InvalidInput("invalid cursor", field="cursor")
    return value


class PageArgs(Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=40))


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(
                allow_none=True, required=True, metadata={"description": "pass as ?cursor="}
            ),
        },
        name=name,
    )


# ------------------------------------------------------------------ auth


class LoginIn(Strict):
    username = fields.String(required=True, validate=validate.Length(1, 64))
    password = fields.String(required=True, validate=validate.Length(1, 256))


class StaffOut(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    full_name = fields.String(required=True)
    role = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)
    is_active = fields.Boolean(required=True)
    mfa_enabled = fields.Boolean(required=True, attribute="totp_enabled")
    must_change_password = fields.Boolean(required=True)
    locked_until = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    pending_approval_id = fields.Integer(
        allow_none=True,
        metadata={"description": "the approval request this account waits for; disabled until"},
    )
    email = fields.String(
        allow_none=True,
        metadata={"description": "where this person's alerts go (work waiting for them)"},
    )


class TokenOut(Schema):
    stage = fields.String(
        required=True,
        metadata={"description": "active, mfa_pending (send a TOTP code) or mfa_enrol"},
    )
    token_type = fields.String(required=True)
    access_token = fields.String(allow_none=True, required=True)
    refresh_token = fields.String(allow_none=True, required=True)
    expires_in = fields.Integer(required=True)
    mfa_token = fields.String(allow_none=True, required=True)
    staff = fields.Nested(StaffOut, required=True)


class MfaVerifyIn(Strict):
    mfa_token = fields.String(required=True, validate=validate.Length(1, 2000))
    code = fields.String(validate=validate.Length(1, 12))
    recovery_code = fields.String(validate=validate.Length(1, 20))


class RefreshIn(Strict):
    refresh_token = fields.String(required=True, validate=validate.Length(1, 200))


class EnrolOut(Schema):
    secret = fields.String(required=True)
    provisioning_uri = fields.String(required=True)
    qr_png_base64 = fields.String(
        required=True, metadata={"description": "the URI as a QR code (PNG, base64) to scan"}
    )


class ConfirmIn(Strict):
    code = fields.String(required=True, validate=validate.Length(1, 12))


class ConfirmOut(Schema):
    recovery_codes = fields.List(fields.String(), required=True)
    tokens = fields.Nested(TokenOut, allow_none=True, required=True)


class PasswordIn(Strict):
    current_password = fields.String(required=True, validate=validate.Length(1, 256))
    new_password = fields.String(required=True, validate=validate.Length(1, 256))


class MeOut(Schema):
    must_change_password = fields.Boolean(required=True)
    kind = fields.String(required=True)
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)
    permissions = fields.List(fields.String(), required=True)


# ----------------------------------------------------------------- staff


class StaffIn(Strict):
    username = fields.String(required=True, validate=validate.Length(3, 64))
    full_name = fields.String(required=True, validate=validate.Length(1, 120))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    branch = fields.String(load_default=None, allow_none=True, validate=BRANCH)
    password = fields.String(required=True, validate=validate.Length(1, 256))


class ActiveIn(Strict):
    active = fields.Boolean(required=True)


class StaffEmailIn(Strict):
    email = fields.String(
        required=True,
        allow_none=True,
        validate=validate.Length(1, 254),
        metadata={"description": "one plain address; null removes it"},
    )


class ApiClientIn(Strict):
    name = fields.String(required=True, validate=validate.Length(3, 80))
    permissions = fields.List(
        fields.String(validate=validate.OneOf(sorted(INTEGRATION_GRANTABLE))),
        required=True,
        validate=validate.Length(1, len(INTEGRATION_GRANTABLE)),
    )
    branch = fields.String(load_default=None, allow_none=True, validate=BRANCH)


class ApiClientOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    key_prefix = fields.String(required=True)
    permissions = fields.Function(lambda c: c.permissions.split(), required=True)
    branch = fields.String(allow_none=True, required=True)
    is_active = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(allow_none=True, required=True)
    pending_approval_id = fields.Integer(
        allow_none=True,
        metadata={"description": "the approval request this key waits for; inactive until"},
    )


class ApiClientCreated(Schema):
    client = fields.Nested(ApiClientOut, required=True)
    api_key = fields.String(
        required=True,
        metadata={
            "description": "shown once; send as the X-API-Key header (it works once approved)"
        },
    )
    approval = fields.Nested(
        "ApprovalOut",
        allow_none=True,
        required=True,
        metadata={"description": "the pending request a manager approves; null: active now"},
    )


class WebhookIn(Strict):
    name = fields.String(required=True, validate=validate.Length(3, 80))
    url = fields.Url(
        required=True, schemes={"https", "http"}, require_tld=False,
        validate=validate.Length(max=500),
    )  # fmt: skip
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        load_default=None,
        validate=validate.Length(1, len(EVENT_TYPES)),
        metadata={"description": "omitted: every event"},
    )


class WebhookOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.Function(lambda e: e.events.split(","), required=True)
    active = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class WebhookCreated(Schema):
    endpoint = fields.Nested(WebhookOut, required=True)
    secret = fields.String(
        required=True,
        metadata={"description": "shown once: the partner verifies the Sacco-Signature with it"},
    )


# --------------------------------------------------------------- members


class MemberSearchArgs(PageArgs):
    number = fields.String(validate=validate.Length(1, 20))
    phone = fields.String(validate=validate.Length(1, 20))
    national_id = fields.String(validate=validate.Length(1, 20))
    name = fields.String(validate=validate.Length(1, 60))
    status = fields.String(validate=validate.OneOf([status.value for status in MemberStatus]))


class MemberSummary(Schema):
    id = fields.Integer(required=True)
    member_number = fields.String(allow_none=True, required=True)
    full_name = fields.String(required=True)
    msisdn = fields.String(required=True, metadata={"description": "masked"})
    status = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)


class BalancesOut(Schema):
    savings_cents = fields.Integer(required=True)
    savings_available_cents = fields.Integer(required=True)
    deposits_cents = fields.Integer(required=True)
    shares_cents = fields.Integer(required=True)


class MemberOut(Schema):
    id = fields.Integer(required=True)
    member_number = fields.String(allow_none=True, required=True)
    full_name = fields.String(required=True)
    msisdn = fields.String(required=True)
    national_id = fields.String(required=True)
    pii_masked = fields.Boolean(required=True)
    status = fields.String(required=True)
    language = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)
    kyc_rejection_reason = fields.String(allow_none=True, required=True)
    pin_locked = fields.Boolean(required=True)
    pin_reset_pending = fields.Boolean(required=True)
    balances = fields.Nested(BalancesOut, required=True)
    created_at = fields.DateTime(required=True)
    date_of_birth = fields.String(
        allow_none=True, metadata={"description": "YYYY-MM-DD; masked without pii:read"}
    )
    next_of_kin = fields.Nested(
        "NextOfKinOut", allow_none=True, metadata={"description": "masked without pii:read"}
    )
    beneficiaries = fields.List(
        fields.Nested("BeneficiaryOut"),
        metadata={"description": "the nomination; names and ID numbers masked without pii:read"},
    )


class BranchIn(Strict):
    branch = fields.String(required=True, allow_none=True, validate=BRANCH)


class DocumentArgs(Strict):
    kind = fields.String(required=True, validate=validate.OneOf(DOCUMENT_KINDS))


class UploadIn(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class DocumentOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    content_type = fields.String(required=True)
    size_bytes = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    uploaded_by_id = fields.Integer(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


class DocumentList(Schema):
    items = fields.List(fields.Nested(DocumentOut), required=True)


class DepositIn(Strict):
    target = fields.String(load_default="savings", validate=validate.OneOf(DEPOSIT_TARGETS))
    amount_cents = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10**12))


class IdempotencyHeader(Schema):
    class Meta:
        unknown = "exclude"

    idempotency_key = fields.String(
        required=True,
        data_key="Idempotency-Key",
        validate=validate.Regexp(r"^[A-Za-z0-9._:-]{8,80}$"),
        metadata={"description": "8-80 characters; the same key returns the first result"},
    )


class DepositOut(Schema):
    entry_reference = fields.String(required=True)
    created = fields.Boolean(required=True, metadata={"description": "false on a replay"})
    balances = fields.Nested(BalancesOut, required=True)


class StatementArgs(PageArgs):
    account = fields.String(load_default="savings", validate=validate.OneOf(DEPOSIT_TARGETS))


class StatementLineOut(Schema):
    posting_id = fields.Integer(required=True)
    reference = fields.String(required=True)
    kind = fields.String(required=True)
    memo = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    value_date = fields.Date(
        required=True, metadata={"description": "the business day (Nairobi) the money counts from"}
    )
    amount_cents = fields.Integer(required=True)
    balance_after_cents = fields.Integer(required=True)


class KycRejectIn(Strict):
    reason = fields.String(required=True, validate=validate.Length(3, 60))


class NoteIn(Strict):
    note = fields.String(load_default="", validate=validate.Length(max=200))


class PinResetIn(NoteIn):
    in_person = fields.Boolean(
        load_default=False,
        metadata={"description": "the member was at the counter and their ID was checked"},
    )


class StatusChangeIn(NoteIn):
    status = fields.String(
        required=True,
        validate=validate.OneOf(
            [MemberStatus.ACTIVE.value, MemberStatus.SUSPENDED.value, MemberStatus.EXITED.value]
        ),
    )


class AdjustmentIn(NoteIn):
    debit_account = fields.String(required=True, validate=validate.Length(1, 40))
    credit_account = fields.String(required=True, validate=validate.Length(1, 40))
    amount_cents = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10**12))
    memo = fields.String(required=True, validate=validate.Length(3, 160))


def _suspense_target(value: str) -> None:
    if value not in DEPOSIT_TARGETS and normalize_loan_reference(value) is None:
        raise ValidationError("savings, deposits, shares or a loan's reference (L7K2M9QX)")


class SuspenseIn(NoteIn):
    item_id = fields.Integer(required=True, strict=True, validate=validate.Range(1, 2**62))
    member_id = fields.Integer(required=True, strict=True, validate=validate.Range(1, 2**62))
    target = fields.String(
        load_default="savings",
        validate=_suspense_target,
        metadata={
            "description": "savings (default), deposits, shares, or the reference of the "
            "member's own active loan (L7K2M9QX): the money repays that loan"
        },
    )


class SuspenseArgs(PageArgs):
    status = fields.String(
        load_default=SuspenseStatus.OPEN.value,
        validate=validate.OneOf([status.value for status in SuspenseStatus]),
    )


class SuspenseItemOut(Schema):
    id = fields.Integer(required=True)
    source = fields.String(required=True)
    source_ref = fields.String(required=True)
    amount_cents = fields.Integer(required=True)
    bill_ref = fields.String(required=True)
    payer_name = fields.String(required=True)
    msisdn_masked = fields.String(required=True)
    paid_at = fields.DateTime(required=True)
    reason = fields.String(required=True)
    status = fields.String(required=True)
    assigned_member_id = fields.Integer(allow_none=True, required=True)
    assigned_target = fields.String(allow_none=True, required=True)
    stk_request_id = fields.Integer(
        allow_none=True,
        required=True,
        metadata={
            "description": "reason possible_duplicate: the STK push (settled without a "
            "receipt) this money may be the same payment as; else the push it came from"
        },
    )
    c2b_payment_id = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "the paybill payment it came from, or may duplicate"},
    )


# ------------------------------------------------------------- approvals


class ApprovalArgs(PageArgs):
    status = fields.String(
        load_default=ApprovalStatus.PENDING.value,
        validate=validate.OneOf([*(status.value for status in ApprovalStatus), "all"]),
    )


class ApprovalOut(Schema):
    id = fields.Integer(required=True)
    action = fields.String(required=True)
    payload = fields.Dict(required=True)
    amount_cents = fields.Integer(allow_none=True, required=True)
    member_id = fields.Integer(allow_none=True, required=True)
    branch = fields.String(allow_none=True, required=True)
    checker_permission = fields.String(required=True)
    status = fields.String(required=True)
    maker_id = fields.Integer(required=True)
    maker_note = fields.String(required=True)
    checker_id = fields.Integer(allow_none=True, required=True)
    decision_note = fields.String(required=True)
    result = fields.Dict(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    decided_at = fields.DateTime(allow_none=True, required=True)


# ----------------------------------------------------------------- audit


class AuditArgs(PageArgs):
    actor_type = fields.String(
        validate=validate.OneOf(["staff", "api_client", "anonymous", "system"])
    )
    actor_id = fields.Integer(validate=validate.Range(0, 2**62))
    action = fields.String(validate=validate.Length(1, 64))
    target_type = fields.String(validate=validate.Length(1, 32))
    target_id = fields.String(validate=validate.Length(1, 64))


class AuditOut(Schema):
    id = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    actor_type = fields.String(required=True)
    actor_id = fields.Integer(allow_none=True, required=True)
    actor_name = fields.String(required=True)
    action = fields.String(required=True)
    target_type = fields.String(required=True)
    target_id = fields.String(required=True)
    address = fields.String(required=True)
    request_id = fields.String(required=True)
    before = fields.Raw(allow_none=True, required=True)
    after = fields.Raw(allow_none=True, required=True)
    prev_hash = fields.String(required=True)
    hash = fields.String(required=True)


def page(rows: list[Any], limit: int) -> dict[str, Any]:
    """Rows fetched with ``limit + 1``: the extra one only says there is a next page."""
    items = rows[:limit]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(items[-1].id) if more else None}


class StatementMissingInLedgerOut(Schema):
    receipt = fields.String(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)
    amount_cents = fields.Integer(
        required=True, metadata={"description": "paid in minus withdrawn, as the statement says"}
    )
    details = fields.String(required=True)


class StatementMissingInStatementOut(Schema):
    kind = fields.String(required=True, metadata={"description": "stk, c2b or b2c"})
    receipt = fields.String(
        required=True,
        metadata={"description": "M-Pesa receipt; STK#<id> for an STK deposit without one"},
    )
    amount_cents = fields.Integer(required=True, metadata={"description": "payouts are negative"})


class StatementMismatchOut(Schema):
    receipt = fields.String(required=True)
    ledger_cents = fields.Integer(required=True)
    statement_cents = fields.Integer(required=True)


class StatementMatchedByAccountOut(Schema):
    receipt = fields.String(required=True)
    stk_request_id = fields.Integer(required=True)


class StatementReconciliationOut(Schema):
    clean = fields.Boolean(required=True)
    lines = fields.Integer(required=True, metadata={"description": "completed lines compared"})
    skipped = fields.Integer(
        required=True, metadata={"description": "lines of another status, not compared"}
    )
    matched = fields.Integer(required=True)
    charge_lines = fields.Integer(
        required=True,
        metadata={"description": "M-Pesa charge lines: totalled in charges_cents, not compared"},
    )
    charges_cents = fields.Integer(required=True)
    matched_by_account = fields.List(
        fields.Nested(StatementMatchedByAccountOut),
        required=True,
        metadata={
            "description": "STK deposits settled by a status query (no receipt of ours), "
            "matched by account reference, amount and time; counted in matched"
        },
    )
    missing_in_ledger = fields.List(fields.Nested(StatementMissingInLedgerOut), required=True)
    missing_in_statement = fields.List(fields.Nested(StatementMissingInStatementOut), required=True)
    amount_mismatches = fields.List(fields.Nested(StatementMismatchOut), required=True)


class SimSwapEventArgs(PageArgs):
    status = fields.String(
        load_default="open", validate=validate.OneOf(["open", "reviewed", "all"])
    )


class SimSwapClearanceIn(NoteIn):
    in_person = fields.Boolean(
        required=True,
        metadata={"description": "true: you saw the member and their ID at the counter"},
    )


class SimSwapEventOut(Schema):
    id = fields.Integer(required=True)
    member_id = fields.Integer(required=True)
    member_number = fields.String(required=True)
    member_name = fields.String(required=True)
    msisdn_masked = fields.String(required=True)
    outcome = fields.String(
        required=True, metadata={"description": "recent_swap, or check_failed (no verdict)"}
    )
    decision = fields.String(required=True, metadata={"description": "refused or allowed"})
    amount_cents = fields.Integer(required=True)
    last_swap_at = fields.DateTime(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    reviewed_at = fields.DateTime(required=True, allow_none=True)
    reviewed_by_id = fields.Integer(required=True, allow_none=True)
    review_note = fields.String(required=True, allow_none=True)
    cleared_at = fields.DateTime(
        required=True,
        allow_none=True,
        metadata={"description": "a checker cleared this swap: withdrawals pass the guard again"},
    )


# ------------------------------------------------------------- M-Pesa payouts for staff


class PayoutArgs(PageArgs):
    status = fields.String(
        load_default="review",
        validate=validate.OneOf([str(status) for status in PAYOUT_LIST_STATUSES]),
    )


class PayoutOut(Schema):
    id = fields.Integer(required=True)
    reference = fields.String(required=True)
    member_id = fields.Integer(required=True)
    member_number = fields.String(required=True, allow_none=True)
    msisdn_masked = fields.String(required=True)
    amount_cents = fields.Integer(required=True)
    fee_cents = fields.Integer(required=True)
    status = fields.String(
        required=True,
        metadata={"description": "review: only staff can settle it (payout.resolve)"},
    )
    originator_conversation_id = fields.String(required=True)
    conversation_id = fields.String(required=True, allow_none=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    sent_at = fields.DateTime(required=True, allow_none=True)
    queried_at = fields.DateTime(required=True, allow_none=True)


class PayoutResolutionIn(NoteIn):
    resolution = fields.String(
        required=True,
        validate=validate.OneOf(["resend", "release", "paid"]),
        metadata={
            "description": "what the M-Pesa org portal shows: resend (no such payment, pay "
            "it), release (no such payment, give the money back), paid (it was paid)"
        },
    )
    receipt = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[A-Z0-9]{8,20}$"),
        metadata={"description": "with paid: the payment's M-Pesa receipt"},
    )


# --------------------------------------------------------------- loan products

DECIMAL_TEXT = {
    "description": 'an exact decimal written as text, such as "1.2" (never a JSON number)',
    "example": "1.2",
}


def _decimal(**kw: Any) -> fields.String:
    kw.setdefault("metadata", DECIMAL_TEXT)
    return fields.String(validate=validate.Length(1, 24), **kw)


def _one_of(kind: Any) -> validate.OneOf:
    return validate.OneOf([k.value for k in kind])


class LoanProductFeeIn(Strict):
    kind = fields.String(required=True, validate=_one_of(FeeKind))
    timing = fields.String(required=True, validate=_one_of(FeeTiming))
    percent = _decimal(
        allow_none=True, metadata={**DECIMAL_TEXT, "description": "percent of the principal"}
    )
    fixed_cents = fields.Integer(
        allow_none=True, metadata={"description": "a processing fee's fixed amount"}
    )
    min_term = fields.Integer(
        allow_none=True, metadata={"description": "only for terms from (instalments)"}
    )
    max_term = fields.Integer(allow_none=True, metadata={"description": "only for terms up to"})


class LoanProductFeeOut(Schema):
    kind = fields.String(required=True)
    timing = fields.String(required=True)
    percent = fields.String(allow_none=True, required=True)
    fixed_cents = fields.Integer(allow_none=True, required=True)
    min_term = fields.Integer(allow_none=True, required=True)
    max_term = fields.Integer(allow_none=True, required=True)


class LoanProductChangeIn(Strict):
    """Any fields of a definition; what is left out stays as it is (``fees`` and
    ``channels`` are replaced whole). Validated in ``core.loans.products``."""

    name = fields.String(validate=validate.Length(1, 80))
    rate_percent = _decimal(
        metadata={**DECIMAL_TEXT, "description": "percent per rate_period: 1 is 1%"}
    )
    rate_period = fields.String(validate=_one_of(RatePeriod))
    method = fields.String(validate=_one_of(RepaymentMethod))
    frequency = fields.String(validate=_one_of(Frequency))
    min_term = fields.Integer(metadata={"description": "fewest instalments"})
    max_term = fields.Integer(metadata={"description": "most instalments"})
    min_amount_cents = fields.Integer()
    max_amount_cents = fields.Integer()
    deposit_multiplier = _decimal(
        metadata={
            **DECIMAL_TEXT,
            "description": "limit = multiplier x free deposits",
            "example": "3",
        }
    )
    min_membership_months = fields.Integer()
    min_deposits_cents = fields.Integer()
    fees = fields.List(fields.Nested(LoanProductFeeIn), validate=validate.Length(max=20))
    penalty_rate_percent = _decimal(
        metadata={**DECIMAL_TEXT, "description": "percent of arrears per penalty_rate_period"}
    )
    penalty_rate_period = fields.String(validate=_one_of(RatePeriod))
    grace_instalments = fields.Integer(
        metadata={"description": "instalments of interest only at the start"}
    )
    penalty_grace_days = fields.Integer(
        metadata={"description": "days after a due date before a penalty accrues"}
    )
    guarantor_policy = fields.String(validate=_one_of(GuarantorPolicy))
    guarantor_cover_percent = _decimal(
        allow_none=True,
        metadata={
            **DECIMAL_TEXT,
            "description": "own free deposits plus pledges must cover this percent of the "
            "principal (guarantor_policy required)",
            "example": "100",
        },
    )
    max_guarantees_per_guarantor = fields.Integer()
    self_guarantee_allowed = fields.Boolean()
    pledge_release = fields.String(validate=_one_of(PledgeRelease))
    allocation_order = fields.String(
        validate=_one_of(AllocationOrder),
        metadata={
            "description": "how a repayment is split: penalties_fees_interest_principal "
            "(part by part across what is due; the default), oldest_instalment_first (each "
            "instalment cleared whole, oldest first), interest_principal_penalties_fees (each "
            "instalment: interest, principal, then its charges)"
        },
    )
    early_payoff_interest = fields.String(
        validate=_one_of(EarlyPayoffInterest),
        metadata={
            "description": "interest of instalments not yet due when the loan is paid off "
            "early: waive (the default), charge_current_period (the instalment in progress), "
            "charge_all (the whole schedule's)"
        },
    )
    rounding = fields.String(validate=_one_of(Rounding))
    auto_approve_ceiling_cents = fields.Integer(
        metadata={"description": "applications up to this amount may be approved without a person"}
    )
    channels = fields.List(
        fields.String(validate=_one_of(Channel)), validate=validate.Length(max=10)
    )
    active = fields.Boolean(metadata={"description": "false: no new applications"})
    top_up_min_instalments_paid = fields.Integer(
        allow_none=True,
        metadata={
            "description": "null: no top-ups; N: a loan may be topped up once N of its "
            "instalments are paid in full"
        },
    )
    min_score = fields.Integer(
        allow_none=True,
        metadata={
            "description": "null: no credit score asked; N: the appraisal refuses a score "
            "below N (reason low_score; docs/loans/scoring.md)"
        },
    )
    note = fields.String(
        validate=validate.Length(max=200), metadata={"description": "for the checker"}
    )


class LoanProductIn(LoanProductChangeIn):
    """A new product: what is left out of the optional fields takes its default
    (``core.loans.products.DEFAULTS``)."""

    code = fields.String(
        required=True, validate=validate.Length(1, 8),
        metadata={"description": "2-8 capital letters or digits, never changed", "example": "DEV"},
    )  # fmt: skip
    name = fields.String(required=True, validate=validate.Length(1, 80))
    rate_percent = _decimal(
        required=True, metadata={**DECIMAL_TEXT, "description": "percent per rate_period"}
    )
    rate_period = fields.String(required=True, validate=_one_of(RatePeriod))
    method = fields.String(required=True, validate=_one_of(RepaymentMethod))
    frequency = fields.String(required=True, validate=_one_of(Frequency))
    min_term = fields.Integer(required=True)
    max_term = fields.Integer(required=True)
    min_amount_cents = fields.Integer(required=True)
    max_amount_cents = fields.Integer(required=True)
    deposit_multiplier = _decimal(required=True, metadata={**DECIMAL_TEXT, "example": "3"})


class LoanProductArgs(PageArgs):
    active = fields.Boolean(
        load_default=None, metadata={"description": "only active (true) or inactive (false)"}
    )


class LoanProductVersionArgs(Strict):
    version = fields.Integer(
        load_default=None, validate=validate.Range(1, 1_000_000),
        metadata={"description": "an earlier version (default: the current one)"},
    )  # fmt: skip


class LoanProductOut(Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "the version shown"})
    current_version = fields.Integer(required=True)
    versions = fields.List(
        fields.Integer(), metadata={"description": "every version, oldest first"}
    )
    name = fields.String(required=True)
    rate_percent = fields.String(required=True)
    rate_period = fields.String(required=True)
    method = fields.String(required=True)
    frequency = fields.String(required=True)
    min_term = fields.Integer(required=True)
    max_term = fields.Integer(required=True)
    min_amount_cents = fields.Integer(required=True)
    max_amount_cents = fields.Integer(required=True)
    deposit_multiplier = fields.String(required=True)
    min_membership_months = fields.Integer(required=True)
    min_deposits_cents = fields.Integer(required=True)
    fees = fields.List(fields.Nested(LoanProductFeeOut), required=True)
    penalty_rate_percent = fields.String(required=True)
    penalty_rate_period = fields.String(required=True)
    grace_instalments = fields.Integer(required=True)
    penalty_grace_days = fields.Integer(required=True)
    guarantor_policy = fields.String(required=True)
    guarantor_cover_percent = fields.String(allow_none=True, required=True)
    max_guarantees_per_guarantor = fields.Integer(required=True)
    self_guarantee_allowed = fields.Boolean(required=True)
    pledge_release = fields.String(required=True)
    allocation_order = fields.String(required=True)
    early_payoff_interest = fields.String(required=True)
    rounding = fields.String(required=True)
    auto_approve_ceiling_cents = fields.Integer(required=True)
    channels = fields.List(fields.String(), required=True)
    active = fields.Boolean(required=True)
    top_up_min_instalments_paid = fields.Integer(allow_none=True, required=True)
    min_score = fields.Integer(allow_none=True, required=True)
    approval_id = fields.Integer(
        allow_none=True, required=True,
        metadata={"description": "the request that made this version (none: seeded)"},
    )  # fmt: skip
    version_created_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


# ------------------------------------------------------------------ the loan book (issue 12, part 9)

CENTS = validate.Range(1, 10**12)


class LoanApplicationArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(list(ApplicationStatus)))
    member_id = fields.Integer(load_default=None, validate=validate.Range(1, 2**62))


class LoanArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(list(LoanStatus)))
    member_id = fields.Integer(load_default=None, validate=validate.Range(1, 2**62))


class GuaranteeOut(Schema):
    id = fields.Integer(required=True)
    guarantor_id = fields.Integer(required=True)
    guarantor_number = fields.String(allow_none=True, required=True)
    guarantor_name = fields.String(required=True)
    amount_cents = fields.Integer(required=True, metadata={"description": "pledged"})
    held_cents = fields.Integer(
        required=True, metadata={"description": "held on the guarantor's deposits now"}
    )
    status = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    decided_at = fields.DateTime(allow_none=True, required=True)
    released_at = fields.DateTime(allow_none=True, required=True)


class LoanApplicationOut(Schema):
    id = fields.Integer(required=True)
    reference = fields.String(required=True)
    member_id = fields.Integer(required=True)
    member_number = fields.String(allow_none=True, required=True)
    member_name = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)
    product_code = fields.String(required=True)
    product_name = fields.String(required=True)
    product_version_id = fields.Integer(required=True)
    amount_cents = fields.Integer(required=True)
    term = fields.Integer(required=True)
    status = fields.String(required=True)
    channel = fields.String(required=True)
    disburse_to = fields.String(required=True, metadata={"description": "savings | mpesa | bank"})
    limit_cents = fields.Integer(required=True)
    reasons = fields.List(fields.String(), required=True)
    required_cover_cents = fields.Integer(required=True)
    own_cover_cents = fields.Integer(required=True)
    guarantor_cover_cents = fields.Integer(required=True)
    instalment_cents = fields.Integer(required=True)
    total_repayable_cents = fields.Integer(required=True)
    deducted_fee_cents = fields.Integer(required=True)
    scheduled_fee_cents = fields.Integer(required=True)
    apr = fields.String(required=True, metadata={"description": "a fraction: 0.1268 is 12.68%"})
    approval_id = fields.Integer(allow_none=True, required=True)
    decision_note = fields.String(required=True)
    loan_id = fields.Integer(allow_none=True, required=True)
    top_up_of_loan_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "the loan a top-up clears"}
    )
    top_up_payoff_cents = fields.Integer(
        required=True, metadata={"description": "that loan's payoff when applying"}
    )
    top_up_commission_cents = fields.Integer(required=True)
    received_cents = fields.Integer(
        required=True,
        metadata={"description": "amount - fees deducted - payoff - commission, when applying"},
    )
    guarantees = fields.List(fields.Nested(GuaranteeOut), required=True)
    created_at = fields.DateTime(required=True)
    decided_at = fields.DateTime(allow_none=True, required=True)
    updated_at = fields.DateTime(required=True)


class LoanApplicationIn(Strict):
    member_id = fields.Integer(required=True, strict=True, validate=validate.Range(1, 2**62))
    product_code = fields.String(required=True, validate=validate.Length(1, 8))
    amount_cents = fields.Integer(required=True, strict=True, validate=CENTS)
    term = fields.Integer(
        required=True, strict=True, validate=validate.Range(1, 1000),
        metadata={"description": "instalments, within the product's range"},
    )  # fmt: skip
    top_up_of = fields.String(
        load_default=None, validate=validate.Length(1, 20),
        metadata={"description": "a top-up: the reference of the member's active loan it "
                  "clears first (same product)", "example": "L7K2M9QX"},
    )  # fmt: skip


class RecommendIn(Strict):
    note = fields.String(load_default="", validate=validate.Length(max=200))
    disburse_to = fields.String(
        load_default=None, validate=validate.OneOf(["savings", "mpesa", "bank"]),
        metadata={"description": "where the money goes; default: what the member chose"},
    )  # fmt: skip


class RejectIn(Strict):
    reason = fields.String(
        required=True, validate=validate.Length(3, 60),
        metadata={"description": "texted to the member"},
    )  # fmt: skip


class InstalmentOut(Schema):
    number = fields.Integer(required=True)
    due_on = fields.Date(required=True)
    principal_cents = fields.Integer(required=True)
    interest_cents = fields.Integer(required=True)
    fee_cents = fields.Integer(required=True)
    total_cents = fields.Integer(required=True)
    paid_principal_cents = fields.Integer(required=True)
    paid_interest_cents = fields.Integer(required=True)
    paid_fee_cents = fields.Integer(required=True)
    waived_interest_cents = fields.Integer(
        required=True, metadata={"description": "not charged: the loan was paid off early"}
    )


class LoanRepaymentOut(Schema):
    id = fields.Integer(required=True)
    amount_cents = fields.Integer(required=True)
    source = fields.String(required=True)
    penalty_cents = fields.Integer(required=True)
    fee_cents = fields.Integer(required=True)
    interest_cents = fields.Integer(required=True)
    principal_cents = fields.Integer(required=True)
    waived_interest_cents = fields.Integer(required=True)
    to_savings_cents = fields.Integer(required=True)
    balance_after_cents = fields.Integer(
        required=True, metadata={"description": "what would pay the loan off after it"}
    )
    recovery_cents = fields.Integer(
        required=True, metadata={"description": "paid after write-off, to recoveries income"}
    )
    closed_loan = fields.Boolean(required=True)
    receipt = fields.String(allow_none=True, required=True)
    entry_reference = fields.String(allow_none=True, required=True)
    savings_entry_reference = fields.String(allow_none=True, required=True)
    value_date = fields.Date(required=True)
    created_at = fields.DateTime(required=True)


class LoanSummaryOut(Schema):
    id = fields.Integer(required=True)
    reference = fields.String(required=True)
    application_id = fields.Integer(required=True)
    member_id = fields.Integer(required=True)
    member_number = fields.String(allow_none=True, required=True)
    member_name = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)
    product_code = fields.String(required=True)
    product_name = fields.String(required=True)
    principal_cents = fields.Integer(required=True)
    term = fields.Integer(required=True)
    deducted_fee_cents = fields.Integer(required=True)
    disbursed_on = fields.Date(required=True)
    status = fields.String(required=True)
    restructured = fields.Boolean(
        required=True,
        metadata={"description": "rescheduled at least once: reported apart, never upgraded"},
    )
    principal_outstanding_cents = fields.Integer(required=True)
    arrears_cents = fields.Integer(required=True)
    due_now_cents = fields.Integer(required=True)
    payoff_cents = fields.Integer(
        required=True, metadata={"description": "what would close the loan today"}
    )
    next_due_on = fields.Date(allow_none=True, required=True)
    next_due_cents = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)
    top_up_of_loan_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "the loan this top-up cleared"}
    )
    top_up_payoff_cents = fields.Integer(required=True)
    top_up_commission_cents = fields.Integer(required=True)


class CreditBureauMarkOut(Schema):
    pre_listing_notice_on = fields.Date(
        allow_none=True,
        metadata={"description": "the day the member read the pre-listing SMS"},
    )
    listable = fields.Boolean(
        required=True,
        metadata={"description": "would be listed as negative information: arrears above "
                  "the threshold and the notice period since the pre-listing SMS over"},
    )  # fmt: skip
    listable_since = fields.Date(allow_none=True)
    arrears_cents = fields.Integer(required=True)
    as_of = fields.Date(required=True, metadata={"description": "the business date closed"})


class WriteOffOut(Schema):
    written_off_on = fields.Date(required=True)
    principal_cents = fields.Integer(
        required=True, metadata={"description": "the principal outstanding written off"}
    )
    interest_cents = fields.Integer(
        required=True, metadata={"description": "interest accrued and not paid, taken back"}
    )
    provision_cents = fields.Integer(required=True, metadata={"description": "provision used"})
    category = fields.String(required=True)
    entry_reference = fields.String(required=True)
    approval_id = fields.Integer(required=True)
    recovered_cents = fields.Integer(
        required=True, metadata={"description": "paid since, to recoveries income"}
    )
    recoverable_cents = fields.Integer(required=True, metadata={"description": "still owed"})


class RescheduleOut(Schema):
    id = fields.Integer(required=True)
    rescheduled_on = fields.Date(required=True)
    approval_id = fields.Integer(required=True)
    principal_cents = fields.Integer(
        required=True, metadata={"description": "the new schedule's principal"}
    )
    capitalised_interest_cents = fields.Integer(required=True)
    capitalised_fee_cents = fields.Integer(required=True)
    carried_fee_cents = fields.Integer(required=True)
    term = fields.Integer(required=True)
    asked_term = fields.Integer(allow_none=True, required=True)
    asked_instalment_cents = fields.Integer(allow_none=True, required=True)
    instalment_cents = fields.Integer(required=True)
    first_due_on = fields.Date(required=True)


class SupersededInstalmentOut(InstalmentOut):
    reschedule_id = fields.Integer(required=True)


class LoanOut(LoanSummaryOut):
    schedule = fields.List(fields.Nested(InstalmentOut), required=True)
    transactions = fields.List(fields.Nested(LoanRepaymentOut), required=True)
    guarantors = fields.List(fields.Nested(GuaranteeOut), required=True)
    credit_bureau = fields.Nested(
        CreditBureauMarkOut,
        allow_none=True,
        required=True,
        metadata={"description": "close of day's credit-bureau listing mark, read-only; "
                  "null until the loan is first in arrears above the listing threshold"},
    )  # fmt: skip
    write_off = fields.Nested(WriteOffOut, allow_none=True, required=True)
    reschedules = fields.List(fields.Nested(RescheduleOut), required=True)
    superseded_instalments = fields.List(
        fields.Nested(SupersededInstalmentOut), required=True,
        metadata={"description": "instalments as they stood when a rescheduling replaced them"},
    )  # fmt: skip


class WriteOffIn(Strict):
    note = fields.String(
        required=True, validate=validate.Length(3, 200),
        metadata={"description": "why: the checker reads it"},
    )  # fmt: skip


class RescheduleIn(WriteOffIn):
    term = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(1, 600),
        metadata={"description": "the new number of instalments (or instalment_cents)"},
    )  # fmt: skip
    instalment_cents = fields.Integer(
        load_default=None, strict=True, validate=CENTS,
        metadata={"description": "the most the member can pay an instalment: the shortest "
                  "term whose instalment is no more is chosen (or term)"},
    )  # fmt: skip


class LoanRepaymentIn(Strict):
    amount_cents = fields.Integer(required=True, strict=True, validate=CENTS)


class LoanRepaymentResultOut(Schema):
    repayment = fields.Nested(LoanRepaymentOut, required=True)
    created = fields.Boolean(required=True, metadata={"description": "false on a replay"})
    loan = fields.Nested(LoanSummaryOut, required=True)


class SchedulePreviewIn(Strict):
    amount_cents = fields.Integer(required=True, strict=True, validate=CENTS)
    term = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10_000))
    disbursed_on = fields.Date(
        load_default=None, metadata={"description": "default: today (Africa/Nairobi)"}
    )


class PreviewInstalmentOut(Schema):
    number = fields.Integer(required=True)
    due_on = fields.Date(required=True)
    principal_cents = fields.Integer(required=True)
    interest_cents = fields.Integer(required=True)
    fee_cents = fields.Integer(required=True)
    total_cents = fields.Integer(required=True)
    balance_cents = fields.Integer(
        required=True, metadata={"description": "principal still owed after it"}
    )


class SchedulePreviewOut(Schema):
    product_id = fields.Integer(required=True)
    product_version_id = fields.Integer(required=True)
    amount_cents = fields.Integer(required=True)
    term = fields.Integer(required=True)
    disbursed_on = fields.Date(required=True)
    instalments = fields.List(fields.Nested(PreviewInstalmentOut), required=True)
    instalment_cents = fields.Integer(required=True)
    principal_cents = fields.Integer(required=True)
    interest_cents = fields.Integer(required=True)
    deducted_fee_cents = fields.Integer(required=True)
    scheduled_fee_cents = fields.Integer(required=True)
    fee_cents = fields.Integer(required=True)
    total_repayable_cents = fields.Integer(required=True)
    received_cents = fields.Integer(
        required=True, metadata={"description": "the cash received: principal less fees deducted"}
    )
    cost_of_credit_cents = fields.Integer(required=True)
    apr = fields.String(required=True, metadata={"description": "a fraction: 0.1268 is 12.68%"})


# ------------------------------------------------------------------ close of day (issue 13)


class CloseDayStepOut(Schema):
    step = fields.String(required=True, metadata={"description": "accrue, then classify"})
    loans = fields.Integer(required=True, metadata={"description": "loans brought to the date"})
    amount_cents = fields.Integer(
        required=True,
        metadata={"description": "accrue: interest accrued (net); classify: provision change"},
    )
    detail = fields.Dict(
        required=True,
        metadata={"description": "accrue: interest and penalties charged by product id; "
                  "classify: provision change by product id, the book by category, category "
                  "changes, band version"},
    )  # fmt: skip
    finished_at = fields.DateTime(required=True)


class CloseDayRunOut(Schema):
    id = fields.Integer(required=True)
    business_date = fields.Date(required=True)
    status = fields.String(required=True, metadata={"description": "running or done"})
    band_version = fields.Integer(required=True)
    started_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    steps = fields.List(fields.Nested(CloseDayStepOut), required=True)


# ------------------------------------------------------------------ default recovery (issue 13)


class RecoveryIn(Strict):
    note = fields.String(load_default="", validate=validate.Length(max=200))
    as_loan = fields.List(
        fields.Integer(strict=True), load_default=None, validate=validate.Length(max=50),
        metadata={"description": "guarantee ids whose share becomes a recovery loan to the "
                  "guarantor (their deposits untouched); with recovery_product and recovery_term"},
    )  # fmt: skip
    recovery_product = fields.String(
        load_default=None, validate=validate.Length(min=1, max=20),
        metadata={"description": "the recovery loans' product code (offered to staff, no fee "
                  "deducted at disbursement)"},
    )  # fmt: skip
    recovery_term = fields.Integer(
        strict=True, load_default=None, validate=validate.Range(min=1, max=600),
        metadata={"description": "the recovery loans' instalments, within the product's range"},
    )  # fmt: skip


class RecoveryShareOut(Schema):
    guarantee_id = fields.Integer(required=True)
    guarantor_id = fields.Integer(required=True)
    member_number = fields.String(required=True, allow_none=True)
    name = fields.String(required=True)
    pledge_cents = fields.Integer(required=True, metadata={"description": "what they pledged"})
    held_cents = fields.Integer(
        required=True, metadata={"description": "what the pledge still holds on their deposits"}
    )
    share_cents = fields.Integer(
        required=True,
        metadata={"description": "what recovery takes: pro rata to the pledges, largest "
                  "remainder, never above held_cents"},
    )  # fmt: skip


class RecoveryPreviewOut(Schema):
    loan_id = fields.Integer(required=True)
    reference = fields.String(required=True)
    member_id = fields.Integer(required=True)
    category = fields.String(required=True, metadata={"description": "doubtful or loss"})
    days_past_due = fields.Integer(required=True)
    payoff_cents = fields.Integer(
        required=True, metadata={"description": "what would close the loan today"}
    )
    free_deposits_cents = fields.Integer(required=True)
    from_deposits_cents = fields.Integer(
        required=True, metadata={"description": "taken first, from the borrower's free deposits"}
    )
    from_guarantors_cents = fields.Integer(required=True)
    balance_after_cents = fields.Integer(
        required=True, metadata={"description": "what would still be owed (0: the loan closes)"}
    )
    closes = fields.Boolean(required=True)
    guarantors = fields.List(fields.Nested(RecoveryShareOut), required=True)


class ScoreFeatureOut(Schema):
    feature = fields.String(required=True)
    value = fields.Integer(
        required=True, metadata={"description": "in the feature's unit: months, counts, cents"}
    )
    points = fields.Integer(required=True)
    best_points = fields.Integer(
        required=True, metadata={"description": "the feature's best bin (the shortfall's top)"}
    )


class CreditScoreOut(Schema):
    id = fields.Integer(required=True, metadata={"description": "the kept score (credit_scores)"})
    member_id = fields.Integer(required=True)
    business_date = fields.String(required=True)
    scorecard_version = fields.Integer(required=True)
    score = fields.Integer(required=True)
    odds = fields.String(
        required=True,
        metadata={"description": "good:bad odds the score stands for (the scaling), a decimal"},
    )
    reasons = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "up to three features furthest from their best bin"},
    )
    features = fields.List(fields.Nested(ScoreFeatureOut), required=True)
    bureau_status = fields.String(
        required=True,
        metadata={"description": "the credit bureau's part: answered, not_found, unavailable, "
                  "no_consent, not_asked, or empty (no bureau configured)"},
    )  # fmt: skip
    bureau_report_id = fields.Integer(allow_none=True, required=True)


# ------------------------------------------------------------------ credit bureaus


class BureauConsentIn(Strict):
    form_reference = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": "the number of the consent form the member signed"},
    )


class BureauConsentOut(Schema):
    id = fields.Integer(required=True, metadata={"description": "referenced in calls as BC-<id>"})
    member_id = fields.Integer(required=True)
    channel = fields.String(required=True, metadata={"description": "ussd or staff"})
    form_reference = fields.String(required=True)
    given_at = fields.String(required=True)
    expires_at = fields.String(required=True)
    revoked_at = fields.String(allow_none=True, required=True)


class BureauRevokedOut(Schema):
    member_id = fields.Integer(required=True)
    revoked = fields.Integer(
        required=True, metadata={"description": "consents revoked (0: none was in force)"}
    )


class BureauEnquiryIn(Strict):
    reason = fields.String(
        required=True,
        validate=validate.OneOf(["new_loan", "review", "guarantor"]),
        metadata={"description": "why the SACCO asks (the bureau's report reason)"},
    )
    loan_amount_cents = fields.Integer(
        required=True, strict=True, validate=validate.Range(0, 10**12)
    )


class BureauReportOut(Schema):
    id = fields.Integer(required=True)
    member_id = fields.Integer(required=True)
    bureau = fields.String(required=True)
    consent_id = fields.Integer(required=True)
    reference = fields.String(required=True, metadata={"description": "ours, sent in the call"})
    reason = fields.String(required=True)
    loan_amount_cents = fields.Integer(required=True)
    status = fields.String(
        required=True, metadata={"description": "answered, not_found or unavailable"}
    )
    delinquency = fields.String(
        required=True, metadata={"description": "clean, historical, delinquent, no_record"}
    )
    bureau_score = fields.Integer(allow_none=True, required=True)
    accounts = fields.Integer(required=True)
    worst_days_past_due = fields.Integer(
        required=True, metadata={"description": "-1: the bureau holds no account"}
    )
    listings = fields.Integer(required=True, metadata={"description": "accounts listed NPA"})
    error = fields.String(required=True, metadata={"description": "why it was unavailable"})
    requested_by = fields.String(required=True)
    requested_at = fields.String(required=True)
    expires_at = fields.String(
        required=True, metadata={"description": "reused until then (the cache's time to live)"}
    )


class BureauEnquiryOut(BureauReportOut):
    from_cache = fields.Boolean(
        required=True, metadata={"description": "a fresh earlier answer, no new call"}
    )


class BureauRecordOut(Schema):
    member_id = fields.Integer(required=True)
    consent_in_force = fields.Nested(BureauConsentOut, allow_none=True, required=True)
    consents = fields.List(fields.Nested(BureauConsentOut), required=True)
    reports = fields.List(fields.Nested(BureauReportOut), required=True)


# ------------------------------------------------ teller cash out, tills and dormancy


class WithdrawalIn(Strict):
    amount_cents = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10**12))


class SavingsAccountIn(Strict):
    product_code = fields.String(
        required=True, validate=validate.Length(2, 8),
        metadata={"description": "a savings product open to members (active, ordinary "
                  "savings, not one of the three defaults)"},
    )  # fmt: skip


class SavingsAccountOut(Schema):
    account_id = fields.Integer(required=True)
    target = fields.String(
        required=True,
        metadata={"description": "savings (the first account), else @<product code>"},
    )
    product_code = fields.String(required=True)
    name = fields.String(required=True)
    balance_cents = fields.Integer(required=True)
    available_cents = fields.Integer(required=True)
    paybill_account = fields.String(
        required=True, metadata={"description": "what to type as the M-Pesa paybill account"}
    )


class SavingsAccountList(Schema):
    items = fields.List(fields.Nested(SavingsAccountOut), required=True)


class ShareTransferIn(Strict):
    to_member_id = fields.Integer(
        required=True, strict=True, validate=validate.Range(1, 2**63 - 1),
        metadata={"description": "the member who receives the shares"},
    )  # fmt: skip
    amount_cents = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10**12))
    note = fields.String(validate=validate.Length(0, 200))


class ReactivateIn(Strict):
    note = fields.String(
        required=True,
        validate=validate.Length(3, 200),
        metadata={"description": "what the member showed at the counter (ID seen, …)"},
    )


class TillOpenIn(Strict):
    opening_float_cents = fields.Integer(
        required=True, strict=True, validate=validate.Range(0, 10**12)
    )


class TillCountIn(Strict):
    counted_cents = fields.Integer(required=True, strict=True, validate=validate.Range(0, 10**12))
    explanation = fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata={"description": "required (3-200 characters) when the count differs"},
    )


class TillListArgs(PageArgs):
    status = fields.String(
        load_default=None, validate=validate.OneOf(("open", "counted", "closed"))
    )


class TillOut(Schema):
    id = fields.Integer(required=True)
    staff_id = fields.Integer(required=True)
    branch = fields.String(allow_none=True, required=True)
    business_date = fields.Date(required=True)
    status = fields.String(required=True, metadata={"description": "open, counted or closed"})
    opening_float_cents = fields.Integer(required=True)
    opened_at = fields.DateTime(required=True)
    cash_in_cents = fields.Integer(required=True)
    cash_out_cents = fields.Integer(required=True)
    expected_cents = fields.Integer(
        required=True, metadata={"description": "opening float + cash in - cash out"}
    )
    as_at = fields.DateTime(required=True, metadata={"description": "now, or the count's time"})
    counted_cents = fields.Integer(allow_none=True, required=True)
    difference_cents = fields.Integer(
        allow_none=True, required=True, metadata={"description": "counted - expected"}
    )
    explanation = fields.String(required=True)
    approval_id = fields.Integer(allow_none=True, required=True)
    entry_reference = fields.String(allow_none=True, required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)


class TillSummaryOut(Schema):
    id = fields.Integer(required=True)
    staff_id = fields.Integer(required=True)
    branch = fields.String(allow_none=True, required=True)
    business_date = fields.Date(required=True)
    status = fields.String(required=True)
    opening_float_cents = fields.Integer(required=True)
    expected_cents = fields.Integer(allow_none=True, required=True)
    counted_cents = fields.Integer(allow_none=True, required=True)
    difference_cents = fields.Integer(allow_none=True, required=True)


class TillCountOut(Schema):
    till = fields.Nested(TillOut, required=True)
    approval = fields.Nested(ApprovalOut, allow_none=True, required=True)


class ReactivatedOut(Schema):
    member_id = fields.Integer(required=True)
    dormant_since = fields.DateTime(required=True, metadata={"description": "no longer"})


class DormantAccountOut(Schema):
    account_id = fields.Integer(required=True)
    member_id = fields.Integer(required=True)
    member_number = fields.String(required=True)
    full_name = fields.String(required=True)
    branch = fields.String(allow_none=True, required=True)
    account_code = fields.String(required=True)
    balance_cents = fields.Integer(required=True)
    dormant_since = fields.DateTime(required=True)
    last_activity_at = fields.DateTime(allow_none=True, required=True)


class DormantReportOut(Schema):
    items = fields.List(fields.Nested(DormantAccountOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    count = fields.Integer(required=True, metadata={"description": "all dormant accounts"})
    total_cents = fields.Integer(
        required=True, metadata={"description": "their balances: unclaimed"}
    )


# ------------------------------------------------- walk-in registration, nominations


class NextOfKinIn(Strict):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    relationship = fields.String(required=True, validate=validate.Length(1, 40))
    phone = fields.String(required=True, validate=validate.Length(1, 30))


class NextOfKinOut(Schema):
    name = fields.String(required=True)
    relationship = fields.String(required=True)
    phone = fields.String(required=True)


class BeneficiaryIn(Strict):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    relationship = fields.String(required=True, validate=validate.Length(1, 40))
    id_kind = fields.String(
        required=True, validate=validate.OneOf(["national_id", "birth_certificate"])
    )
    id_number = fields.String(required=True, validate=validate.Length(1, 30))
    share_percent = fields.Decimal(
        required=True,
        metadata={"description": "percent, at most two decimals; the shares sum to exactly 100"},
    )
    phone = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 20),
        metadata={"description": "optional: the beneficiary's phone, to pay their share of "
                  "the estate by M-Pesa (docs/members/death.md)"},
    )  # fmt: skip


class BeneficiaryOut(Schema):
    name = fields.String(required=True)
    relationship = fields.String(required=True)
    id_kind = fields.String(required=True)
    id_number = fields.String(required=True)
    share_percent = fields.Decimal(required=True, as_string=True)
    phone = fields.String(allow_none=True, load_default=None)


class BeneficiariesIn(Strict):
    beneficiaries = fields.List(
        fields.Nested(BeneficiaryIn), required=True, validate=validate.Length(1, 10)
    )


class BeneficiariesOut(Schema):
    beneficiaries = fields.List(fields.Nested(BeneficiaryOut), required=True)


class MemberRegisterIn(Strict):
    full_name = fields.String(required=True, validate=validate.Length(1, 200))
    msisdn = fields.String(required=True, validate=validate.Length(1, 30))
    national_id = fields.String(required=True, validate=validate.Length(1, 30))
    date_of_birth = fields.Date(required=True)
    language = fields.String(load_default="en", validate=validate.OneOf(["en", "sw"]))
    branch = fields.String(
        load_default=None,
        allow_none=True,
        validate=BRANCH,
        metadata={"description": "default: your own branch (head office staff: none)"},
    )
    consent = fields.Boolean(
        required=True, metadata={"description": "the member signed the data-processing consent"}
    )
    next_of_kin = fields.Nested(NextOfKinIn, required=True)
    beneficiaries = fields.List(
        fields.Nested(BeneficiaryIn), required=True, validate=validate.Length(1, 10)
    )


class PhoneChangeIn(NoteIn):
    msisdn = fields.String(
        required=True, validate=validate.Length(1, 30), metadata={"description": "the new phone"}
    )
    id_checked = fields.Boolean(
        required=True,
        metadata={"description": "true: the member's original ID was checked at the counter"},
    )


class ExitIn(Strict):
    reason = fields.String(
        required=True, validate=validate.Length(3, 200),
        metadata={"description": "why the member leaves, as they said it"},
    )  # fmt: skip
    refund_method = fields.String(
        load_default="branch", validate=validate.OneOf(["branch", "mpesa"]),
        metadata={"description": "how the refund is paid: at the branch (cash or bank "
                  "transfer) or by M-Pesa to the member's registered phone"},
    )  # fmt: skip


class ExitBlockerOut(Schema):
    reason = fields.String(required=True)
    detail = fields.String(required=True)


class ExitLoanOut(Schema):
    loan_id = fields.Integer(required=True)
    reference = fields.String(required=True)
    payoff_cents = fields.Integer(required=True)


class ExitFurtherOut(Schema):
    account_id = fields.Integer(required=True)
    code = fields.String(required=True, metadata={"description": "the savings product's code"})
    balance_cents = fields.Integer(required=True)


class ExitPlanOut(Schema):
    member_id = fields.Integer(required=True)
    savings_cents = fields.Integer(required=True)
    deposits_cents = fields.Integer(required=True)
    shares_cents = fields.Integer(required=True)
    further = fields.List(
        fields.Nested(ExitFurtherOut), required=True,
        metadata={"description": "further savings accounts (holiday, school fees) the exit "
                  "empties and closes"},
    )  # fmt: skip
    further_cents = fields.Integer(required=True)
    loans = fields.List(fields.Nested(ExitLoanOut), required=True)
    loans_offset_cents = fields.Integer(required=True)
    refund_cents = fields.Integer(required=True)
    blockers = fields.List(fields.Nested(ExitBlockerOut), required=True)


class ExitOut(Schema):
    exit_id = fields.Integer(required=True)
    member_id = fields.Integer(required=True)
    status = fields.String(
        required=True, metadata={"description": "notice, blocked, awaiting_approval or done"}
    )
    reason = fields.String(required=True)
    channel = fields.String(required=True)
    notice_days = fields.Integer(required=True)
    due_on = fields.Date(required=True, metadata={"description": "the first day the exit may run"})
    blocked_reason = fields.String(allow_none=True, required=True)
    approval_id = fields.Integer(allow_none=True, required=True)
    loans_offset_cents = fields.Integer(required=True)
    refund_cents = fields.Integer(required=True)
    shares_cents = fields.Integer(required=True)
    refund_method = fields.String(required=True, metadata={"description": "branch or mpesa"})
    refund_payout_id = fields.Integer(
        allow_none=True, required=True,
        metadata={"description": "the M-Pesa payout of the refund (GET /api/v1/payouts)"},
    )  # fmt: skip
    plan = fields.Nested(
        ExitPlanOut, allow_none=True, required=True,
        metadata={"description": "what the exit would do today and what stops it "
                  "(null once done)"},
    )  # fmt: skip


# ------------------------------------------------------------------ savings products


class SavingsProductChangeIn(Strict):
    """A change: the fields given replace the current version's (``kind`` never changes)."""

    name = fields.String(validate=validate.Length(1, 80))
    rate_percent = _decimal(metadata={**DECIMAL_TEXT, "description": "annual percent"})
    balance_method = fields.String(validate=_one_of(BalanceMethod))
    day_count = fields.String(validate=_one_of(DayCount))
    min_balance_to_earn_cents = fields.Integer()
    posting_frequency = fields.String(validate=_one_of(PostingFrequency))
    min_balance_cents = fields.Integer()
    withdrawal_fee_cents = fields.Integer()
    daily_withdrawal_limit_cents = fields.Integer(
        allow_none=True, metadata={"description": "null: no limit"}
    )
    active = fields.Boolean()
    term_months = fields.Integer(
        strict=True, metadata={"description": "fixed deposits only: the term, 1 to 120 months"}
    )
    interest_at = fields.String(
        validate=_one_of(FdInterestAt), metadata={"description": "fixed deposits only"}
    )
    penalty = fields.String(
        validate=_one_of(FdPenalty),
        metadata={"description": "fixed deposits only: what closing early costs"},
    )
    penalty_rate_percent = _decimal(
        metadata={**DECIMAL_TEXT, "description": "fixed deposits, penalty rate: % of principal"}
    )
    note = fields.String(
        validate=validate.Length(max=200), metadata={"description": "for the checker"}
    )


class SavingsProductIn(SavingsProductChangeIn):
    """A new product: what is left out takes its default (``core.savings.products.DEFAULTS``)."""

    code = fields.String(
        required=True, validate=validate.Length(1, 8),
        metadata={"description": "2-8 capital letters or digits, never changed", "example": "HOL"},
    )  # fmt: skip
    name = fields.String(required=True, validate=validate.Length(1, 80))
    kind = fields.String(required=True, validate=_one_of(ProductKind))


class SavingsProductOut(Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    default_for = fields.String(
        allow_none=True, required=True,
        metadata={"description": "the member account every member holds under it, or null"},
    )  # fmt: skip
    version = fields.Integer(required=True, metadata={"description": "the version shown"})
    current_version = fields.Integer(required=True)
    versions = fields.List(fields.Integer(), metadata={"description": "every version"})
    name = fields.String(required=True)
    kind = fields.String(required=True)
    rate_percent = fields.String(required=True)
    balance_method = fields.String(required=True)
    day_count = fields.String(required=True)
    min_balance_to_earn_cents = fields.Integer(required=True)
    posting_frequency = fields.String(required=True)
    min_balance_cents = fields.Integer(required=True)
    withdrawal_fee_cents = fields.Integer(required=True)
    daily_withdrawal_limit_cents = fields.Integer(allow_none=True, required=True)
    active = fields.Boolean(required=True)
    term_months = fields.Integer(metadata={"description": "fixed deposits only"})
    interest_at = fields.String(metadata={"description": "fixed deposits only"})
    penalty = fields.String(metadata={"description": "fixed deposits only"})
    penalty_rate_percent = fields.String(metadata={"description": "fixed deposits only"})
    approval_id = fields.Integer(allow_none=True, required=True)
    version_created_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class FixedDepositIn(Strict):
    product_code = fields.String(
        required=True, validate=validate.Length(2, 8),
        metadata={"description": "an active savings product of kind fixed_deposit"},
    )  # fmt: skip
    amount_cents = fields.Integer(
        required=True, strict=True, validate=validate.Range(1, 10**12),
        metadata={"description": "moved from the member's savings"},
    )  # fmt: skip
    rollover = fields.String(
        required=True, validate=_one_of(FdRollover),
        metadata={"description": "at maturity: principal (interest to savings), "
                  "principal_and_interest, or pay_out (everything to savings)"},
    )  # fmt: skip


class FixedDepositCloseIn(Strict):
    note = fields.String(
        required=True, validate=validate.Length(3, 200),
        metadata={"description": "why the deposit is broken before maturity"},
    )  # fmt: skip


class FixedDepositOut(Schema):
    id = fields.Integer(required=True)
    reference = fields.String(required=True)
    member_id = fields.Integer(required=True)
    product_code = fields.String(required=True)
    account_id = fields.Integer(required=True)
    principal_cents = fields.Integer(required=True)
    balance_cents = fields.Integer(required=True)
    rate_percent = fields.String(required=True)
    term_months = fields.Integer(required=True)
    interest_at = fields.String(required=True)
    penalty = fields.String(required=True)
    penalty_rate_percent = fields.String(required=True)
    rollover = fields.String(required=True)
    start_date = fields.Date(required=True)
    maturity_date = fields.Date(required=True)
    interest_paid_cents = fields.Integer(required=True, metadata={"description": "gross"})
    tax_cents = fields.Integer(required=True)
    penalty_cents = fields.Integer(required=True)
    earned_to_date_cents = fields.Integer(
        required=True, metadata={"description": "earned, not yet paid"}
    )
    term_interest_cents = fields.Integer(required=True)
    status = fields.String(required=True)
    rolled_from_id = fields.Integer(allow_none=True, required=True)


class FixedDepositList(Schema):
    items = fields.List(fields.Nested(FixedDepositOut), required=True)


# ------------------------------------------------------------------ death of a member


class DeathIn(Strict):
    died_on = fields.Date(required=True, metadata={"description": "the date of death"})
    certificate_ref = fields.String(
        required=True, validate=validate.Length(3, 40),
        metadata={"description": "the death certificate's number (letters, digits, / or -)"},
    )  # fmt: skip
    document_ref = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 200),
        metadata={"description": "where the certificate's scan is kept (an uploaded "
                  "document's id or the file reference)"},
    )  # fmt: skip


class EstatePayableOut(Schema):
    payable_id = fields.Integer(required=True)
    payee = fields.String(required=True, metadata={"description": "beneficiary or "
                                                   "legal_representative"})  # fmt: skip
    beneficiary_id = fields.Integer(allow_none=True, required=True)
    share_percent = fields.String(allow_none=True, required=True)
    amount_cents = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "open, paying or paid"})
    method = fields.String(allow_none=True, required=True)
    paid_reference = fields.String(allow_none=True, required=True)


class DeathOut(Schema):
    death_id = fields.Integer(required=True)
    member_id = fields.Integer(required=True)
    died_on = fields.Date(required=True)
    certificate_ref = fields.String(required=True)
    document_ref = fields.String(allow_none=True, required=True)
    status = fields.String(
        required=True,
        metadata={"description": "awaiting_approval, blocked, settled or rejected"},
    )
    blocked_reason = fields.String(allow_none=True, required=True)
    approval_id = fields.Integer(allow_none=True, required=True)
    loans_offset_cents = fields.Integer(required=True)
    estate_cents = fields.Integer(required=True)
    payables = fields.List(fields.Nested(EstatePayableOut), required=True)


class EstatePaymentIn(Strict):
    method = fields.String(required=True, validate=validate.OneOf(["cash", "bank", "mpesa"]))
    reference = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(3, 40),
        metadata={"description": "cash or bank: the receipt's or the transfer's reference"},
    )  # fmt: skip


class EstateReportRow(EstatePayableOut):
    member_id = fields.Integer(required=True)
    death_id = fields.Integer(required=True)


class EstateReportOut(Schema):
    items = fields.List(fields.Nested(EstateReportRow), required=True)


# ------------------------------------------------------------------ year end (issue 14)


class YearEndRunIn(Strict):
    """The board's proposed rates for a financial year that is over."""

    financial_year = fields.Integer(required=True, metadata={"example": 2026})
    dividend_rate_percent = _decimal(
        required=True, metadata={**DECIMAL_TEXT, "description": "percent, 0 to 30"}
    )
    rebate_rate_percent = _decimal(
        required=True, metadata={**DECIMAL_TEXT, "description": "percent, 0 to 30"}
    )
    dividend_method = fields.String(
        load_default="closing_balance", validate=validate.OneOf(["closing_balance", "days_held"])
    )
    rebate_method = fields.String(
        load_default="monthly_pro_rata",
        validate=validate.OneOf(["monthly_pro_rata", "average_monthly_balance"]),
    )


class YearEndRunOut(Schema):
    id = fields.Integer(required=True)
    financial_year = fields.Integer(required=True)
    status = fields.String(required=True)
    dividend_method = fields.String(required=True)
    dividend_rate_percent = fields.String(required=True)
    rebate_method = fields.String(required=True)
    rebate_rate_percent = fields.String(required=True)
    dividend_tax_percent = fields.String(required=True)
    rebate_tax_percent = fields.String(required=True)
    members = fields.Integer(required=True)
    dividend_gross_cents = fields.Integer(required=True)
    dividend_tax_cents = fields.Integer(required=True)
    rebate_gross_cents = fields.Integer(required=True)
    rebate_tax_cents = fields.Integer(required=True)
    net_cents = fields.Integer(required=True)
    digest = fields.String(allow_none=True, required=True)
    approval_id = fields.Integer(allow_none=True, required=True)
    posted_on = fields.String(allow_none=True, required=True)


class YearEndPreviewOut(Schema):
    run = fields.Nested(YearEndRunOut, required=True)
    totals = fields.Dict(required=True)
    capital_before = fields.Dict(required=True)
    capital_after = fields.Dict(required=True)
    below_minimum = fields.List(fields.String(), required=True)
    lines = fields.List(fields.Dict(), required=True)


class YearEndSubmitIn(Strict):
    note = fields.String(validate=validate.Length(max=200))


class YearEndPayoutsOut(Schema):
    run_id = fields.Integer(required=True)
    members = fields.Integer(
        required=True, metadata={"description": "members of the run paid by M-Pesa"}
    )
    queued = fields.Boolean(required=True)


class PayoutChoiceIn(Strict):
    destination = fields.String(
        required=True, validate=validate.OneOf(["savings", "mpesa", "shares", "deposits"])
    )


class PayoutChoiceOut(Schema):
    member_id = fields.Integer(required=True)
    destination = fields.String(required=True)


class TaxReportArgs(Strict):
    month = fields.String(
        required=True, validate=validate.Regexp(r"^\d{4}-\d{2}$"),
        metadata={"description": "YYYY-MM", "example": "2027-03"},
    )  # fmt: skip


class TaxReportOut(Schema):
    month = fields.String(required=True)
    due_on = fields.Date(required=True)
    rows = fields.List(fields.Dict(), required=True)
    total_tax_cents = fields.Integer(required=True)
    ledger_withheld_cents = fields.Integer(required=True)


# ------------------------------------------------------------------ credit-bureau submission (issue 15)


class CrbSubmissionIn(Strict):
    month = fields.String(
        required=True, validate=validate.Length(max=7),
        metadata={"description": "the month reported, YYYY-MM; over, and closed by close of day"},
    )  # fmt: skip


class CrbSubmissionOut(Schema):
    id = fields.Integer(required=True)
    month = fields.String(required=True)
    as_of = fields.Date(required=True, metadata={"description": "close of day's date the "
                                                 "figures are as of"})  # fmt: skip
    layout_version = fields.String(required=True)
    file_name = fields.String(required=True)
    consumers = fields.Integer(required=True)
    accounts = fields.Integer(required=True)
    guarantors = fields.Integer(required=True)
    negative_accounts = fields.Integer(required=True, metadata={"description": "listed"})
    withheld = fields.Integer(required=True, metadata={"description": "written off, never "
                                                       "listable: not reported"})  # fmt: skip
    balance_cents = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    created_at = fields.DateTime(required=True)
