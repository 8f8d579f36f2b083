"""The points scorecard, pure: each feature's value falls in one bin, each bin carries
points, the score is their sum (docs/loans/scoring.md).

The table is data (``scorecards``, ``scorecard_bins``; version 1 the expert table seeded by
migration 0030, version 2 the same with the bureau's optional bins, migration 0034), read into a ``Table``. Its scaling is the usual one: points = offset +
factor × ln(odds good:bad), factor = PDO / ln 2, offset = base score − factor × ln(base odds).

A feature named ``bureau_…`` is optional: absent from the inputs it adds nothing (no points,
no reason), so a score without the bureau's answer is the SACCO's own-record score.

The reasons of a score are the features furthest from their best bin: for each feature,
its best bin's points less the points it got; the three largest shortfalls (more than
zero), ties in the table's feature order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

TOP_REASONS = 3
# Features a score may lack: the credit bureau's (issue 15, part 2; migration 0034). Without
# a bureau answer (none asked, no consent, the bureau down) they add no points and no
# reason: the score is the SACCO's own-record score, as before the bureau was plugged in.
OPTIONAL_PREFIX = "bureau_"


def is_optional(feature: str) -> bool:
    return feature.startswith(OPTIONAL_PREFIX)


@dataclass(frozen=True)
class Bin:
    lower: int | None  # inclusive; None: no lower bound
    upper: int | None  # exclusive; None: no upper bound
    points: int

    def holds(self, value: int) -> bool:
        return (self.lower is None or value >= self.lower) and (
            self.upper is None or value < self.upper
        )


@dataclass(frozen=True)
class Scaling:
    pdo: Decimal  # points to double the odds
    base_score: int
    base_odds: Decimal  # good : bad at the base score

    @property
    def factor(self) -> Decimal:
        return Decimal(str(round(float(self.pdo) / math.log(2), 8)))

    @property
    def offset(self) -> Decimal:
        ln_odds = math.log(float(self.base_odds))
        return Decimal(str(round(self.base_score - float(self.factor) * ln_odds, 8)))

    def odds(self, score: int) -> float:
        """The good:bad odds a score stands for (score = offset + factor × ln(odds))."""
        exponent = (score - float(self.offset)) / float(self.factor)
        return math.exp(max(-700.0, min(700.0, exponent)))  # a float's range, never an error


@dataclass(frozen=True)
class Table:
    version: int
    scaling: Scaling
    bins: Mapping[str, tuple[Bin, ...]]  # feature -> its bins, in order, covering all values

    def points(self, feature: str, value: int) -> int:
        for found in self.bins[feature]:
            if found.holds(value):
                return found.points
        raise ValueError(f"{feature}={value} falls in no bin of table {self.version}")


@dataclass(frozen=True)
class Scored:
    version: int
    score: int
    points: Mapping[str, int]  # feature -> points got
    reasons: tuple[str, ...]  # up to three features, largest shortfall first


class MissingFeature(ValueError):
    pass


def score(table: Table, inputs: Mapping[str, int]) -> Scored:
    """The score of ``inputs`` (feature -> integer value) under ``table``."""
    points: dict[str, int] = {}
    shortfall: list[tuple[int, int, str]] = []
    for order, (feature, bins) in enumerate(table.bins.items()):
        if feature not in inputs:
            if is_optional(feature):
                continue
            raise MissingFeature(f"no value for {feature}")
        got = table.points(feature, int(inputs[feature]))
        points[feature] = got
        gap = max(b.points for b in bins) - got
        if gap > 0:
            shortfall.append((-gap, order, feature))
    reasons = tuple(feature for _, _, feature in sorted(shortfall)[:TOP_REASONS])
    return Scored(table.version, sum(points.values()), points, reasons)


def check_bins(bins: tuple[Bin, ...]) -> None:
    """A feature's bins must cover every integer once: the first open below, the last open
    above, each starting where the one before ends."""
    if not bins or bins[0].lower is not None or bins[-1].upper is not None:
        raise ValueError("bins must be open at both ends")
    for before, after in zip(bins, bins[1:], strict=False):
        if before.upper is None or before.upper != after.lower:
            raise ValueError("bins must follow each other without gap or overlap")
