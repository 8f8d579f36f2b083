"""SMS length: GSM 03.38 (GSM-7) characters and message parts, pure.

A message whose every character is in the GSM-7 basic table or its extension
table travels as GSM-7: 160 septets in one part, 153 per part once split (the
concatenation header takes 7). Extension characters (``^{}\\[~]|€`` and form
feed) cost two septets, and a split never cuts an escape pair. One character
outside both tables switches the whole message to UCS-2: 70 characters in one
part, 67 per part; characters outside the Basic Multilingual Plane (emoji) take
two UTF-16 units. Each part is billed.
"""

from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 basic character set (default alphabet), in table order.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table, reached with the escape (0x1B): two septets each.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int
    characters: int

    @property
    def single_part(self) -> bool:
        return self.parts <= 1


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _gsm7_parts(text: str) -> int:
    """Parts for GSM-7, packing 153 septets per part without splitting an escape pair."""
    parts, used = 1, 0
    for ch in text:
        cost = 2 if ch in GSM7_EXTENSION else 1
        if used + cost > GSM7_MULTI:
            parts, used = parts + 1, 0
        used += cost
    return parts


def _ucs2_parts(units: list[int]) -> int:
    """Parts for UCS-2, 67 units per part without splitting a surrogate pair."""
    parts, used = 1, 0
    for cost in units:
        if used + cost > UCS2_MULTI:
            parts, used = parts + 1, 0
        used += cost
    return parts


def sms_length(text: str) -> SmsLength:
    """Encoding, units and parts of ``text`` as one SMS (an empty text is one part)."""
    if is_gsm7(text):
        septets = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        parts = 1 if septets <= GSM7_SINGLE else _gsm7_parts(text)
        return SmsLength("GSM-7", septets, parts, len(text))
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    total = sum(units)
    parts = 1 if total <= UCS2_SINGLE else _ucs2_parts(units)
    return SmsLength("UCS-2", total, parts, len(text))


# Look-alikes that sneak in from word processors and phones, and their GSM-7 forms.
_REPLACEMENTS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u202f": " ",
    "\t": " ",
}


def to_gsm7(text: str) -> str:
    """Replace typographic look-alikes (curly quotes, dashes, ellipsis, odd spaces).

    Anything else outside GSM-7 is kept, so the message goes as UCS-2 rather than
    losing a letter of someone's name.
    """
    return "".join(_REPLACEMENTS.get(ch, ch) for ch in text)
