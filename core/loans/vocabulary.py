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
