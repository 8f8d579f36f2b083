"""Message catalogues: every text a member sees, in English and Swahili, out of code.

A catalogue is a TOML file per language (``<name>.en.toml``, ``<name>.sw.toml``)
of ``key = "text with {placeholders}"``. Both languages must define the same
keys with the same placeholders; ``Catalogue.problems()`` says where they differ
and a test runs it over every catalogue.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "sw")


class Catalogue:
    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.texts: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            with (directory / f"{name}.{lang}.toml").open("rb") as fh:
                self.texts[lang] = {str(k): str(v) for k, v in tomllib.load(fh).items()}

    def keys(self) -> list[str]:
        return sorted(self.texts["en"])

    def text(self, key: str, language: str) -> str:
        lang = language if language in self.texts else "en"
        return self.texts[lang].get(key) or self.texts["en"][key]

    def render(self, key: str, language: str, data: Mapping[str, Any] | None = None) -> str:
        return self.text(key, language).format_map(dict(data or {}))

    @staticmethod
    def placeholders(text: str) -> set[str]:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field}

    def problems(self) -> list[str]:
        found = []
        en, sw = self.texts["en"], self.texts["sw"]
        for key in sorted(set(en) ^ set(sw)):
            found.append(f"{self.name}: {key} missing in {'sw' if key in en else 'en'}")
        for key in sorted(set(en) & set(sw)):
            if self.placeholders(en[key]) != self.placeholders(sw[key]):
                found.append(f"{self.name}: {key} placeholders differ between en and sw")
        return found
