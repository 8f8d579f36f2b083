"""Metropol's request hash, pinned: SHA-256 hex of private key + body + public key +
timestamp (the vector computed outside Python with ``printf '%s' ... | sha256sum``)."""

from __future__ import annotations

from datetime import UTC, datetime

from integrations.bureaus.metropol import api_hash, api_timestamp

BODY = '{"report_type":8,"identity_number":"880000088"}'
STAMP = "20240101120000000000"
VECTOR = "749b3dfdd462c9d7fdc1dbfc46074863b27acecbea034dd9beb508792ebd25fe"


def test_the_hash_matches_the_fixed_vector() -> None:
    assert api_hash("private-key-123", BODY, "public-key-456", STAMP) == VECTOR


def test_the_hash_changes_with_any_part_and_with_the_order() -> None:
    assert api_hash("private-key-123", BODY + " ", "public-key-456", STAMP) != VECTOR
    assert api_hash("public-key-456", BODY, "private-key-123", STAMP) != VECTOR


def test_the_timestamp_is_utc_to_the_microsecond() -> None:
    moment = datetime(2024, 1, 1, 15, 0, 0, 42, tzinfo=UTC).astimezone()
    assert api_timestamp(moment) == "20240101150000000042"
