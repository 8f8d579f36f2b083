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


class AllocationOrder(StrEnum):
    """How a repayment is split over what is owed (issue 12, part 8;
    docs/loans/repayment.md "Allocation orders"). Each names the order of the parts and
    whether it goes part by part across the instalments or instalment by instalment."""

    # Part by part across everything due, oldest instalment first within a part: every
    # penalty, then every fee, then all interest, then principal (the default).
    PENALTIES_FEES_INTEREST_PRINCIPAL = "penalties_fees_interest_principal"
    # Instalment by instalment, oldest first, each cleared whole in the order penalties,
    # fees, interest, principal before the next is touched.
    OLDEST_INSTALMENT_FIRST = "oldest_instalment_first"
    # Instalment by instalment, oldest first: interest, principal, then penalties, fees.
    INTEREST_PRINCIPAL_PENALTIES_FEES = "interest_principal_penalties_fees"


class EarlyPayoffInterest(StrEnum):
    """What a loan paid off before its last due date pays of the interest of the
    instalments not yet due (docs/loans/repayment.md "Early payoff")."""

    WAIVE = "waive"  # none of it (the default)
    CHARGE_CURRENT_PERIOD = "charge_current_period"  # the instalment in progress; later waived
    CHARGE_ALL = "charge_all"  # all of it: the schedule's whole interest


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
    # The pledge was taken to repay the defaulted loan (core.loans.recovery): what it held
    # was posted from the guarantor's deposits to the loan, the rest of the hold given back.
    CALLED = "called"


# ---------------------------------------------------------------------------------------
# Repayments (core/loans/repayments.py; migration 0016).


class RepaymentSource(StrEnum):
    """Where a repayment's money comes from (``loan_repayments.source``)."""

    MPESA = "mpesa"  # paybill with the loan reference as the account, or an STK push
    SAVINGS = "savings"  # the member's own savings account
    CASH = "cash"  # a teller's cash, banked
    TOP_UP = "top_up"  # cleared by a top-up loan's disbursement (core.loans.disbursement)
    # Default recovery (core.loans.recovery): the borrower's free deposits, then guarantors'
    # pledges, taken to the loan on a maker-checker approval.
    RECOVERY = "recovery"
    # Deducted from pay by an employer (core.checkoff): from the check-off clearing account.
    CHECKOFF = "checkoff"


# What a member, a teller, M-Pesa or an employer's check-off may pay with: a top-up is never
# a repayment source of ``repay_loan`` (the top-up's disbursement settles the old loan
# itself). No API or USSD input names a source: each caller fixes its own (the teller's is
# ``cash``), so ``checkoff`` is reached only through ``core.checkoff`` (tested in
# tests/e2e/api/test_checkoff_api.py).
PAYING_SOURCES = frozenset(
    {RepaymentSource.MPESA, RepaymentSource.SAVINGS, RepaymentSource.CASH, RepaymentSource.CHECKOFF}
)


class LoanPart(StrEnum):
    """What a repayment pays, in the default allocation order (issue 12, part 8)."""

    PENALTY = "penalty"
    FEE = "fee"
    INTEREST = "interest"
    PRINCIPAL = "principal"


# ---------------------------------------------------------------------------------------
# Disbursement (core/loans/disbursement.py; migration 0018).


class DisburseTo(StrEnum):
    """Where an application's money goes (``loan_applications.disburse_to``)."""

    SAVINGS = "savings"  # the loan's entry credits the member's savings
    MPESA = "mpesa"  # the same entry, then a B2C payout of what reached savings
    BANK = "bank"  # the same entry, then a bank transfer of it (core.payments.bank)


# Close of day (core/loans/close_of_day.py; migration 0020).


class CloseDayStep(StrEnum):
    """The steps of a business date's run, in order (``close_day_steps.step``)."""

    ACCRUE = "accrue"  # interest accrued per loan; Dr interest receivable / Cr income
    CLASSIFY = "classify"  # arrears, SASRA category, provision; Dr/Cr provision
    NOTIFY = "notify"  # reminders, overdue and guarantor notices, credit-bureau marks


CLOSE_DAY_STEPS: tuple[CloseDayStep, ...] = (
    CloseDayStep.ACCRUE,
    CloseDayStep.CLASSIFY,
    CloseDayStep.NOTIFY,
)


class CloseDayStatus(StrEnum):
    """``close_day_runs.status``."""

    RUNNING = "running"  # started; some steps may be done (a stopped run resumes)
    DONE = "done"


class NoticeKind(StrEnum):
    """What a close-of-day notice is about (``loan_notices.kind``; core/loans/notices.py).
    Each is sent once per loan, instalment and recipient."""

    DUE_SOON = "due_soon"  # an instalment falls due in N days (setting, default 3)
    DUE_TODAY = "due_today"  # an instalment falls due on the day the member reads it
    OVERDUE_1 = "overdue_1"  # 1 day past due (the classify step's days past due)
    OVERDUE_7 = "overdue_7"
    OVERDUE_30 = "overdue_30"
    GUARANTOR_30 = "guarantor_30"  # to each guarantor of a loan 30 days past due
    PRE_LISTING = "pre_listing"  # before the loan may be listed with a credit bureau
