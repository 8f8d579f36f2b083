"""The USSD message catalogue and the small text helpers screens need."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.kernel.i18n import Catalogue
from ussd.engine import gsm7_safe

__all__ = ["CATALOGUE", "gsm7_safe", "mask", "render"]

CATALOGUE = Catalogue(Path(__file__).resolve().parent / "catalogues", "ussd")


def render(key: str, language: str, data: Mapping[str, Any]) -> str:
    return CATALOGUE.render(key, language, data)


def mask(text: str) -> str:
    """``text`` as the request log may show it: the shape (``x*x*xxxx``), never the digits."""
    masked = "".join("*" if c == "*" else "x" for c in text[:60])
    return masked + (f"..(+{len(text) - 60})" if len(text) > 60 else "")
