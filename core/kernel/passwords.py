"""Staff passwords: Argon2id hashes and the policy for new passwords (pure, offline).

Policy (ASVS 2.1): at least 12 characters, at most 128, not one of the most
common passwords (an offline list shipped in ``core/kernel/data``; no network call),
not the username, and not a common password with digits or symbols tacked on
(``password2026!``). Any character is allowed, spaces included.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common-passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


def password_weakness(password: str, username: str = "") -> str | None:
    """Why a new password is refused (a short reason code), or None when it is acceptable."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        return "too_short"
    if len(password) > MAX_LENGTH:
        return "too_long"
    lowered = password.lower()
    stem = re.sub(r"[\d\W_]+$", "", lowered)
    common = common_passwords()
    if lowered in common or stem in common or len(set(lowered)) < 4:
        return "too_common"
    if username and username.lower() in lowered:
        return "contains_username"
    return None


class StaffPasswords:
    """Argon2id hashes of staff passwords. The defaults are argon2-cffi's RFC 9106
    low-memory profile; the composition root builds one, and tests inject cheap
    parameters (``CoreDeps.passwords``) so that hashing does not dominate the suite."""

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Constant work whether or not the account exists (pass None for a missing one):
        an unknown username is checked against a hash of a random password."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("dummy password that nobody has 8f2c1e")
        try:
            return (
                self._hasher.verify(password_hash or self._dummy, password)
                and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
