"""What one member's deduction pays, pure (docs/integrations/check-off.md).

Standing instructions pay in one fixed order whatever order they were given in: loan
instalments first (oldest loan first), then deposits, then shares, then savings
(``ORDER``). A line that brings what was expected pays each part in full and anything
more goes to savings; a line that brings less pays the parts in order until the money
runs out (a shortfall, reported to the employer), so the parts always sum to the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ORDER = ("loan", "deposits", "shares", "savings")


@dataclass(frozen=True)
class Part:
    """One expected part of a member's deduction: ``loan_id`` for a loan."""

    target: str
    amount_cents: int
    loan_id: int | None = None


@dataclass(frozen=True)
class Paid:
    target: str
    cents: int
    loan_id: int | None = None


def sort_key(part: Part, loan_rank: int = 0) -> tuple[int, int]:
    return (ORDER.index(part.target), loan_rank)


def allocate(expected: Sequence[Part], received_cents: int) -> list[Paid]:
    """Split ``received_cents`` over ``expected`` (already in paying order): each part in
    full while the money lasts; the rest to savings. Parts of 0 are left out."""
    if received_cents < 0:
        raise ValueError("received must not be negative")
    left = received_cents
    out: list[Paid] = []
    for part in expected:
        cents = min(left, part.amount_cents)
        if cents > 0:
            out.append(Paid(part.target, cents, part.loan_id))
        left -= cents
    if left:
        out.append(Paid("savings", left))
    return out


def shortfall_cents(expected: Sequence[Part], received_cents: int) -> int:
    return max(0, sum(p.amount_cents for p in expected) - received_cents)
