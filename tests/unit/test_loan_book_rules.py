"""The loan book's pure rules: fees by term, the security a principal needs, the cover,
guarantee codes."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.loans.guarantees import CODE_LENGTH, new_code
from core.loans.pledges import Cover
from core.loans.terms import FeeRule, ProductTerms

BASE = ProductTerms(
    product_id=1, version_id=1, code="INST", name="Instant", active=True,
    channels=frozenset({"ussd"}), rate_percent=Decimal("0"), rate_period="monthly",
    method="flat", frequency="monthly", rounding="cent", grace_instalments=0, min_term=1,
    max_term=3, min_amount_cents=50_000, max_amount_cents=5_000_000,
    deposit_multiplier=Decimal("3"), min_membership_months=0, min_deposits_cents=0,
    guarantor_policy="none", guarantor_cover_percent=None, max_guarantees_per_guarantor=3,
    self_guarantee_allowed=False, auto_approve_ceiling_cents=0,
    fees=(
        FeeRule("processing", "deducted_at_disbursement", Decimal("7.5"), None, None, 1),
        FeeRule("processing", "deducted_at_disbursement", Decimal("10"), None, 2, 3),
        FeeRule("insurance", "added_to_schedule", Decimal("0.25"), 5_000, None, None),
        FeeRule("top_up_commission", "deducted_at_disbursement", Decimal("2"), None, None, None),
    ),
)  # fmt: skip


def test_a_one_off_fee_by_term_and_a_scheduled_fee_never_the_top_up_commission() -> None:
    # KES 1,000.10 for one month: 7.5% = 75.0075 -> 75.01 (half up); insurance 0.25% + 50.
    assert BASE.fee_cents(100_010, 1) == (7_501, 250 + 5_000)
    assert BASE.fee_cents(100_000, 2) == (10_000, 250 + 5_000)
    assert BASE.fee_cents(100_000, 3) == (10_000, 250 + 5_000)


def test_security_needed_is_the_cover_percent_of_the_principal_rounded_up() -> None:
    assert BASE.required_cover_cents(1_000_000) == 0  # no guarantors: the limit is the security
    guarded = replace(BASE, guarantor_policy="required")
    assert guarded.required_cover_cents(1_000_001) == 1_000_001  # 100% by default
    more = replace(guarded, guarantor_cover_percent=Decimal("120"))
    assert more.required_cover_cents(1_000_001) == 1_200_002  # 1,200,001.2 -> up


@given(required=st.integers(0, 10**10), own=st.integers(0, 10**10), pledged=st.integers(0, 10**10))
def test_cover_is_complete_exactly_when_own_and_pledged_reach_the_requirement(
    required: int, own: int, pledged: int
) -> None:
    cover = Cover(required, min(own, required), pledged)
    assert cover.complete == (min(own, required) + pledged >= required)
    assert cover.missing_cents == max(0, required - min(own, required) - pledged)


def test_guarantee_codes_alternate_letters_and_digits_nobody_misreads() -> None:
    codes = {new_code() for _ in range(500)}
    assert len(codes) > 490
    for code in codes:
        assert len(code) == CODE_LENGTH
        assert re.fullmatch(r"([A-Z][2-9]){3}", code)
        assert not set(code) & set("ILOSZ015")
