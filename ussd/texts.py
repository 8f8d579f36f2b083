"""The USSD message catalogue and the small text helpers screens need."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.kernel.i18n import Catalogue
from ussd.engine import GSM7

_NO_DECOMPOSITION = {"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ı": "i", "œ": "oe", "Œ": "OE"}
CATALOGUE = Catalogue(Path(__file__).resolve().parent / "catalogues", "ussd")


def render(key: str, language: str, data: Mapping[str, Any]) -> str:
    return CATALOGUE.render(key, language, data)


def gsm7_safe(text: str, max_len: int) -> str:
    """Data for a screen (a name, say) in GSM-7 and at most ``max_len`` characters:
    accents are dropped where GSM-7 lacks the letter, anything else becomes ``?``."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in GSM7 and ch not in "\r\n":
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if c in GSM7 and c.isalpha())
        out.append(base or _NO_DECOMPOSITION.get(ch, "?"))
    clean = "".join(out)
    return clean if len(clean) <= max_len else clean[: max_len - 2].rstrip() + ".."


def mask(text: str) -> str:
    """``text`` as the request log may show it: the shape (``x*x*xxxx``), never the digits."""
    masked = "".join("*" if c == "*" else "x" for c in text[:60])
    return masked + (f"..(+{len(text) - 60})" if len(text) > 60 else "")
