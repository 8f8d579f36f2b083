"""The loans' words (issue 12): how a product lends, charges and is guaranteed.

``StrEnum``: each member is the string stored in ``loan_product_versions`` and shown in
the API, so rows, JSON and CHECK constraints agree. ``RepaymentMethod``, ``Frequency``,
``RatePeriod`` and ``Rounding`` are shared with the schedules (``core.loans.schedule``).
"""

from __future__ import annotations

from enum import StrEnum


class RepaymentMethod(StrEnum):
    """How principal and interest are spread over the instalments."""

    REDUCING_EQUAL_INSTALMENTS = "reducing_equal_instalments"  # annuity: equal totals
    REDUCING_EQUAL_PRINCIPAL = "reducing_equal_principal"  # equal principal, falling totals
    FLAT = "flat"  # interest on the original principal for the whole term


class Frequency(StrEnum):
    """How often an instalment falls due."""

    MONTHLY = "monthly"
    WEEKLY = "weekly"


class RatePeriod(StrEnum):
    """The period a rate is quoted for: ``1`` monthly is 1% a month."""

    ANNUAL = "annual"
    MONTHLY = "monthly"


class Rounding(StrEnum):
    """The unit instalments are rounded to: ``shilling`` for loans repaid by M-Pesa, which
    moves whole shillings only; the remainder goes into the last instalment."""

    CENT = "cent"
    SHILLING = "shilling"


class FeeKind(StrEnum):
    PROCESSING = "processing"  # appraisal or processing fee: a percent and/or a fixed amount
    INSURANCE = "insurance"  # loan protection cover: a percent of the principal
    TOP_UP_COMMISSION = "top_up_commission"  # on a top-up: a percent of the balance cleared


class FeeTiming(StrEnum):
    """When a fee is taken."""

    DEDUCTED = "deducted_at_disbursement"  # the member receives the principal less the fee
    SCHEDULED = "added_to_schedule"  # spread over the instalments, repaid with the loan


class GuarantorPolicy(StrEnum):
    NONE = "none"  # no guarantors (an instant mobile loan)
    REQUIRED = "required"  # own free deposits plus pledges cover ``guarantor_cover_percent``


class PledgeRelease(StrEnum):
    """How guarantors' pledges are released as the loan is repaid (issue 12, part 5)."""

    PRO_RATA = "pro_rata"  # in proportion to principal repaid
    AT_OWN_DEPOSITS = "at_own_deposits"  # all at once when the balance falls to own deposits


class Channel(StrEnum):
    """Where a member may apply for a product."""

    USSD = "ussd"
    SMS = "sms"
    STAFF = "staff"


# ---------------------------------------------------------------------------------------
# The loan book (applications, loans, guarantees): core/loans/book.py, guarantees.py,
# disbursement.py; tables of migration 0015.


class ApplicationStatus(StrEnum):
    """``loan_applications.status``. ``submitted`` only while the application is being
    routed in its own transaction; then it waits for guarantors or for approval."""

    SUBMITTED = "submitted"
    AWAITING_GUARANTORS = "awaiting_guarantors"  # pledges do not yet cover the principal
    PENDING_APPROVAL = "pending_approval"  # covered; a loan officer recommends, a manager decides
    APPROVED = "approved"  # decided; disbursement follows in the same transaction (savings)
    REJECTED = "rejected"  # by staff, with a reason the member reads by SMS
    WITHDRAWN = "withdrawn"  # by the member, before approval
    DISBURSED = "disbursed"  # the loan exists (``loans``)

    @property
    def is_open(self) -> bool:
        """Still going somewhere: a member has at most one open application."""
        return self in OPEN_APPLICATION_STATUSES


OPEN_APPLICATION_STATUSES = frozenset(
    {
        ApplicationStatus.SUBMITTED,
        ApplicationStatus.AWAITING_GUARANTORS,
        ApplicationStatus.PENDING_APPROVAL,
        ApplicationStatus.APPROVED,
    }
)
# Before approval: the member may withdraw, a guarantor may withdraw consent.
BEFORE_APPROVAL = frozenset(
    {
        ApplicationStatus.SUBMITTED,
        ApplicationStatus.AWAITING_GUARANTORS,
        ApplicationStatus.PENDING_APPROVAL,
    }
)


class LoanStatus(StrEnum):
    """``loans.status``."""

    ACTIVE = "active"
    CLOSED = "closed"  # repaid in full
    WRITTEN_OFF = "written_off"  # defaulted: its guarantors may not borrow


class GuaranteeStatus(StrEnum):
    """``loan_guarantees.status``. Only an accepted guarantee holds a pledge (a ledger hold
    on the guarantor's deposits)."""

    REQUESTED = "requested"  # SMS sent with a code, waiting for ACCEPT or DECLINE
    ACCEPTED = "accepted"  # pledged: the hold is in place
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"  # consent withdrawn before approval, or the request lapsed
    RELEASED = "released"  # the pledge was given back (application refused, loan repaid)


# ---------------------------------------------------------------------------------------
# Repayments (core/loans/repayments.py; migration 0016).


class RepaymentSource(StrEnum):
    """Where a repayment's money comes from (``loan_repayments.source``)."""

    MPESA = "mpesa"  # paybill with the loan reference as the account, or an STK push
    SAVINGS = "savings"  # the member's own savings account
    CASH = "cash"  # a teller's cash, banked


class LoanPart(StrEnum):
    """What a repayment pays, in the default allocation order (issue 12, part 8)."""

    PENALTY = "penalty"
    FEE = "fee"
    INTEREST = "interest"
    PRINCIPAL = "principal"


# ---------------------------------------------------------------------------------------
# Close of day (core/loans/close_of_day.py; migration 0020).


class CloseDayStep(StrEnum):
    """The steps of a business date's run, in order (``close_day_steps.step``)."""

    ACCRUE = "accrue"  # interest accrued per loan; Dr interest receivable / Cr income
    CLASSIFY = "classify"  # arrears, SASRA category, provision; Dr/Cr provision


CLOSE_DAY_STEPS: tuple[CloseDayStep, ...] = (CloseDayStep.ACCRUE, CloseDayStep.CLASSIFY)


class CloseDayStatus(StrEnum):
    """``close_day_runs.status``."""

    RUNNING = "running"  # started; some steps may be done (a stopped run resumes)
    DONE = "done"
