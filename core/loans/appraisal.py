"""Appraisal: may this member borrow this much under this product, and why not.

Pure: the caller gathers the facts (``MemberFacts``: from the ledger, the member record and
the loan book) and the product's rules (``LendingRules``); ``appraise`` decides and lists
every reason, so a member hears the main one in one SMS and staff read them all. A credit
score (issue 15, ``core.scoring``) plugs in as one more input through ``ScoreVerdict`` when
the product sets a minimum score: below it, ``Reason.LOW_SCORE`` with the score's own
reasons (docs/loans/scoring.md).

Practice modelled (Kenyan SACCOs; the figures are the product's data, not constants here):

* limit = deposit multiplier × free deposits − principal outstanding on own loans, and
  never more than the product's maximum. Free deposits are deposits not pledged for
  someone else's loan; share capital is never counted (it is never pledged).
* a minimum membership age and a minimum deposit balance per product;
* only an active member with approved KYC borrows;
* arrears on the member's own loans, or on a loan the member guarantees that defaulted,
  stop a new loan (a guarantor of a defaulted loan cannot borrow).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum


class Reason(StrEnum):
    """Why an application cannot go ahead; a stable code the channels turn into a text in
    both languages. Listed from the one a member can do least about."""

    NOT_ACTIVE = "not_active"  # suspended, exited or not yet through KYC
    GUARANTEED_DEFAULT = "guaranteed_default"  # guarantees a loan that defaulted
    IN_ARREARS = "in_arrears"  # an own loan is past due
    TOO_NEW = "too_new"  # member for fewer months than the product asks
    DEPOSITS_TOO_LOW = "deposits_too_low"  # below the product's minimum deposits
    NO_LIMIT = "no_limit"  # loans outstanding already use all the limit
    ABOVE_LIMIT = "above_limit"  # asked for more than the limit
    BELOW_MINIMUM = "below_minimum"  # below the product's minimum amount
    ABOVE_MAXIMUM = "above_maximum"  # above the product's maximum amount
    LOW_SCORE = "low_score"  # the credit score is below the product's minimum (issue 15)


@dataclass(frozen=True)
class LendingRules:
    """What a product asks of a borrower (from the loan product's current version)."""

    deposit_multiplier: Decimal  # e.g. Decimal("3")
    min_amount_cents: int
    max_amount_cents: int
    min_membership_months: int = 0
    min_deposits_cents: int = 0


@dataclass(frozen=True)
class MemberFacts:
    """What the SACCO knows of the member, on ``today`` (the business date)."""

    today: date
    joined_on: date
    active: bool  # status active and KYC approved
    free_deposits_cents: int  # deposits less what is pledged for others' loans
    principal_outstanding_cents: int  # on the member's own loans
    in_arrears: bool = False  # an own loan past due
    guarantees_defaulted_loan: bool = False


@dataclass(frozen=True)
class ScoreVerdict:
    """A credit score's answer, when the product asks for one (``core.scoring.scores.
    verdict``): ``approve`` False adds ``Reason.LOW_SCORE``; the score, its reasons (the
    features furthest from their best bin, largest first) and the kept score's id go into
    the decision."""

    approve: bool
    main_reason: str = ""
    score: int | None = None
    reasons: tuple[str, ...] = ()
    score_id: int | None = None
    # The credit bureau's part (``core.scoring.bureau.BureauStatus``): "" none asked,
    # "answered", "not_found", "unavailable" (scored on the SACCO's own record), ...
    bureau: str = ""


@dataclass(frozen=True)
class Appraisal:
    limit_cents: int  # what the member may borrow now under the product (0 or more)
    reasons: tuple[Reason, ...]  # empty: the amount asked may go ahead
    score_reason: str = ""
    score: ScoreVerdict | None = None  # the score asked for, whether it passed or not

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def main_reason(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None


def months_between(start: date, end: date) -> int:
    """Whole months from ``start`` to ``end``: a month is complete on the same day of a
    later month, or on that month's last day when it is shorter (joined 31 Jan: one month
    on 29 Feb 2028; joined 15 Jan: none on 14 Feb, one on 15 Feb)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day and not _is_month_end(end):
        months -= 1
    return max(months, 0)


def _is_month_end(day: date) -> bool:
    return (day + timedelta(days=1)).month != day.month


def limit_cents(rules: LendingRules, facts: MemberFacts) -> int:
    """multiplier × free deposits − principal outstanding, floored to the cent, never below
    zero, never above the product's maximum."""
    raw = rules.deposit_multiplier * Decimal(max(facts.free_deposits_cents, 0))
    headroom = int(raw.to_integral_value(rounding=ROUND_FLOOR)) - max(
        facts.principal_outstanding_cents, 0
    )
    return max(0, min(headroom, rules.max_amount_cents))


def appraise(
    rules: LendingRules,
    facts: MemberFacts,
    amount_cents: int | None = None,
    score: ScoreVerdict | None = None,
) -> Appraisal:
    """The member's limit under ``rules`` and, for ``amount_cents`` (None: the limit only),
    every reason it cannot go ahead, most fundamental first."""
    limit = limit_cents(rules, facts)
    reasons: list[Reason] = []
    if not facts.active:
        reasons.append(Reason.NOT_ACTIVE)
    if facts.guarantees_defaulted_loan:
        reasons.append(Reason.GUARANTEED_DEFAULT)
    if facts.in_arrears:
        reasons.append(Reason.IN_ARREARS)
    if months_between(facts.joined_on, facts.today) < rules.min_membership_months:
        reasons.append(Reason.TOO_NEW)
    if facts.free_deposits_cents < rules.min_deposits_cents:
        reasons.append(Reason.DEPOSITS_TOO_LOW)
    if limit < rules.min_amount_cents:
        reasons.append(Reason.NO_LIMIT)
    if amount_cents is not None:
        if amount_cents < rules.min_amount_cents:
            reasons.append(Reason.BELOW_MINIMUM)
        elif amount_cents > rules.max_amount_cents:
            reasons.append(Reason.ABOVE_MAXIMUM)
        elif amount_cents > limit and Reason.NO_LIMIT not in reasons:
            reasons.append(Reason.ABOVE_LIMIT)
    score_reason = ""
    if score is not None and not score.approve:
        reasons.append(Reason.LOW_SCORE)
        score_reason = score.main_reason
    return Appraisal(limit, tuple(reasons), score_reason, score)
