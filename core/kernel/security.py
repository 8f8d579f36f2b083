"""Encryption of personal data at rest and keyed blind indexes for searching it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class PiiVault:
    """Encrypts national IDs and secrets at rest (MultiFernet) and indexes IDs (HMAC-SHA256).

    ``keys``: Fernet keys, newest first. The first encrypts; any decrypts, so
    a key is rotated by putting a new one in front and running
    ``manage.py rotate-pii-keys`` before the old one is removed. The blind
    index key is separate: a search for an ID hashes it the same way, and the
    database never holds the ID in the clear.
    """

    def __init__(self, keys: list[bytes], blind_index_key: bytes) -> None:
        if not keys:
            raise ValueError("at least one PII encryption key is needed")
        if len(blind_index_key) < 16:
            raise ValueError("the blind index key must be at least 16 bytes")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._index_key = blind_index_key

    @classmethod
    def from_settings(cls, settings: Any) -> PiiVault:
        """From ``config.Settings`` (``PII_KEYS``, ``BLIND_INDEX_KEY``), read by attribute
        (core does not import config): the app, the commands and the workers build it here."""
        return cls(settings.pii_key_list, settings.blind_index_key.encode())

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: no configured key matches") from exc

    def encrypt_bytes(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt_bytes(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(bytes(token))
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: no configured key matches") from exc

    def rotate(self, token: bytes) -> bytes:
        return self._fernet.rotate(bytes(token))

    def blind_index(self, value: str) -> str:
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).hexdigest()
