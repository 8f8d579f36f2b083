"""Money as integer minor units (KES cents). Never floats.

``Money`` refuses floats, never mixes currencies, and allocates remainders so
that parts always sum to the whole. ``parse_amount`` is the one place where
member-typed text becomes money, with the limits a phone channel needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from core.kernel.errors import InvalidInput

CURRENCY = "KES"
CENTS = 100

# Largest amount a member may type in one request: KES 10,000,000. Anything
# larger is certainly a typo on a SACCO's phone channel (M-Pesa itself caps a
# transaction at KES 150,000-250,000); the channel's own limits are lower.
MAX_INPUT_CENTS = 10_000_000 * CENTS

_AMOUNT_RE = re.compile(r"^(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.([0-9]{1,2}))?$")


@dataclass(frozen=True, order=True, slots=True)
class Money:
    cents: int
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        # bool is an int subclass; refuse it as well as floats and Decimals.
        if type(self.cents) is not int:
            raise TypeError(f"Money needs integer cents, got {type(self.cents).__name__}")

    @classmethod
    def of(cls, shillings: int | str | Decimal) -> Money:
        """Exact construction from whole shillings or a decimal string (no floats)."""
        if isinstance(shillings, float):  # pragma: no cover - guarded by typing too
            raise TypeError("floats are not money")
        value = Decimal(shillings) * CENTS
        if value != value.to_integral_value():
            raise ValueError(f"{shillings} has more than two decimals")
        return cls(int(value))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("can only combine Money with Money")
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.cents + other.cents, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.cents - other.cents, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.cents, self.currency)

    def is_positive(self) -> bool:
        return self.cents > 0

    def allocate(self, ratios: list[int]) -> list[Money]:
        """Split by integer ratios; remainders go one cent at a time to the first parts."""
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise ValueError("ratios must be non-negative and not all zero")
        total = sum(ratios)
        parts = [self.cents * r // total for r in ratios]
        remainder = self.cents - sum(parts)
        for i in range(abs(remainder)):
            parts[i % len(parts)] += 1 if remainder > 0 else -1
        return [Money(p, self.currency) for p in parts]

    def to_decimal(self) -> Decimal:
        return Decimal(self.cents) / CENTS

    def format(self) -> str:
        return format_cents(self.cents, self.currency)

    def __str__(self) -> str:
        return self.format()


def format_cents(cents: int, currency: str = CURRENCY) -> str:
    """``KES 1,500.50``; whole amounts drop the decimals (``KES 1,500``) to save screen space."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), CENTS)
    text = f"{whole:,}" if frac == 0 else f"{whole:,}.{frac:02d}"
    return f"{sign}{currency} {text}"


def format_signed(cents: int) -> str:
    """A movement on a statement line: ``+1,500``, ``-250.50``, ``0``; no currency (the
    column says it)."""
    sign = "+" if cents > 0 else "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), CENTS)
    return f"{sign}{whole:,}" + (f".{frac:02d}" if frac else "")


def parse_amount(text: str, *, max_cents: int = MAX_INPUT_CENTS) -> Money:
    """Parse what a member typed: ``"1,500"``, ``"1500.50"``, ``" 200 "``.

    Refused with ``InvalidInput`` (``reason`` tells which): anything that is not
    plain digits with optional thousands commas and up to two decimals
    (``-5``, ``1e9``, ``abc``, ``1.005``, ``1,50``), zero, and amounts above
    ``max_cents``.
    """
    if not isinstance(text, str):
        raise InvalidInput("amount must be text", field="amount", reason="format")
    cleaned = text.strip()
    if len(cleaned) > 20 or not _AMOUNT_RE.match(cleaned):
        raise InvalidInput("not an amount", field="amount", reason="format")
    try:
        value = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a decimal
        raise InvalidInput("not an amount", field="amount", reason="format") from None
    cents = int((value * CENTS).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if cents <= 0:
        raise InvalidInput("amount must be more than zero", field="amount", reason="zero")
    if cents > max_cents:
        raise InvalidInput("amount too large", field="amount", reason="too_large")
    return Money(cents)
