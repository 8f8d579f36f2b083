"""SASRA loan classification and provisioning, pure (issue 13, part 5;
docs/loans/close-of-day.md cites where each figure comes from).

The bands are data (``loan_risk_bands``, versioned; migration 0020 seeds version 1): each
category has a rank, the days past due and the missed instalments from which a loan is in
it, and the percent of the exposure provisioned. A loan is in the *worse* of its
days-past-due band and its missed-instalments band: the highest rank whose ``min_days``
it reaches or whose ``min_missed`` it reaches. ``core.loans.close_of_day`` does the same
in SQL over the whole book.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from core.risk.vocabulary import LoanCategory


@dataclass(frozen=True, slots=True)
class Band:
    category: LoanCategory
    rank: int
    min_days: int
    min_missed: int
    provision_percent: Decimal


# Version 1, as migration 0020 seeds it (a test compares the two).
DEFAULT_BANDS: tuple[Band, ...] = (
    Band(LoanCategory.PERFORMING, 0, 0, 0, Decimal("1.00")),
    Band(LoanCategory.WATCH, 1, 1, 1, Decimal("5.00")),
    Band(LoanCategory.SUBSTANDARD, 2, 31, 2, Decimal("25.00")),
    Band(LoanCategory.DOUBTFUL, 3, 181, 7, Decimal("50.00")),
    Band(LoanCategory.LOSS, 4, 361, 13, Decimal("100.00")),
)


def check_bands(bands: Sequence[Band]) -> None:
    """A usable table: ranks 0.., the first from 0 days and 0 missed, thresholds and
    percents rising with the rank (``ValueError`` otherwise)."""
    ordered = sorted(bands, key=lambda b: b.rank)
    if not ordered or ordered[0].min_days != 0 or ordered[0].min_missed != 0:
        raise ValueError("the best band must start at 0 days and 0 missed")
    for a, b in zip(ordered, ordered[1:], strict=False):
        if not (
            b.rank > a.rank
            and b.min_days > a.min_days
            and b.min_missed > a.min_missed
            and b.provision_percent >= a.provision_percent
        ):
            raise ValueError(f"band {b.category} must be worse than {a.category}")


def classify(days_past_due: int, missed: int, bands: Sequence[Band] = DEFAULT_BANDS) -> Band:
    """The worse of the days band and the missed-instalments band."""
    if days_past_due < 0 or missed < 0:
        raise ValueError("days and missed instalments are never negative")
    reached = [b for b in bands if b.min_days <= days_past_due or b.min_missed <= missed]
    return max(reached, key=lambda b: b.rank)


def provision_cents(exposure_cents: int, band: Band) -> int:
    """Exposure × the band's percent, to the cent, half up."""
    return int(
        (Decimal(exposure_cents) * band.provision_percent / 100).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )
