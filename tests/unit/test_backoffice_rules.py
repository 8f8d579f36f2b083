"""Pure rules of the back office: masking, file sniffing, password policy, TOTP steps,
the permission table."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.identity import mask_msisdn
from core.kernel.passwords import MIN_LENGTH, password_weakness
from core.kernel.permissions import (
    INTEGRATION_GRANTABLE,
    MFA_REQUIRED_ROLES,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Principal,
    can_access_branch,
)
from core.members.backoffice import mask_national_id, sniff_content_type
from core.staff.accounts import totp_step


def test_masks_keep_only_what_identifies_at_a_glance() -> None:
    assert mask_msisdn("+254712345678") == "+2547*****678"
    assert mask_msisdn("+2547" + "1" * 10_000) == "****"  # a forged field: never echoed
    assert mask_national_id("23456781") == "******81"


@given(st.text(alphabet="0123456789", min_size=9, max_size=12))
def test_masked_phone_never_shows_the_middle(digits: str) -> None:
    msisdn = "+" + digits
    masked = mask_msisdn(msisdn)
    assert len(masked) == len(msisdn)
    assert masked[5:-3] == "*" * (len(msisdn) - 8)


def test_sniffing_trusts_content_not_names() -> None:
    assert sniff_content_type(b"\xff\xd8\xff\xe0" + b"\x00" * 10 + b"\xff\xd9") == "image/jpeg"
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 8 + b"IEND\xaeB`\x82"
    assert sniff_content_type(png) == "image/png"
    assert sniff_content_type(b"%PDF-1.4\n...\n%%EOF\n") == "application/pdf"
    for bad in (b"\x7fELF\x02\x01", b"MZ\x90\x00", b"#!/bin/sh\n", b"PK\x03\x04", b"",
                b"\xff\xd8\xff\xe0\x7fELF", b"%PDF-"):  # fmt: skip
        assert sniff_content_type(bad) is None


def test_password_policy() -> None:
    assert password_weakness("x" * (MIN_LENGTH - 1)) == "too_short"
    assert password_weakness("Sunshine2026!") == "too_common"
    assert password_weakness("umoja-teller-mary", "mary") == "contains_username"
    assert password_weakness("tea at four on the veranda") is None


def test_totp_code_is_accepted_once_per_step() -> None:
    totp = pyotp.TOTP(pyotp.random_base32())
    now = datetime(2026, 11, 27, 12, 0, 15, tzinfo=UTC)
    code = totp.at(now)
    step = totp_step(totp, code, now, None)
    assert step == int(now.timestamp()) // 30
    assert totp_step(totp, code, now, step) is None  # replay
    assert totp_step(totp, "12345", now, None) is None
    assert totp_step(totp, code, datetime(2026, 11, 27, 12, 5, tzinfo=UTC), None) is None


def test_permission_table_is_consistent() -> None:
    assert set(ROLE_PERMISSIONS) == set(ROLES)
    assert {"admin", "manager", "loan_officer", "teller"} == MFA_REQUIRED_ROLES
    for perms in ROLE_PERMISSIONS.values():
        assert perms <= set(PERMISSIONS)
    assert set(PERMISSIONS) >= INTEGRATION_GRANTABLE
    assert "self" not in INTEGRATION_GRANTABLE
    # The administrator manages accounts but neither moves money nor reads personal data.
    assert not ROLE_PERMISSIONS["admin"] & {"deposits:cash", "pii:read", "approvals:decide"}
    # Only managers decide above the threshold.
    assert [r for r in ROLES if "approvals:decide_large" in ROLE_PERMISSIONS[r]] == ["manager"]


def test_branch_rule() -> None:
    bound = Principal(kind="staff", id=1, name="t", role="teller", branch="Nairobi")
    head = Principal(kind="staff", id=2, name="m", role="manager", branch=None)
    assert can_access_branch(bound, "Nairobi")
    assert not can_access_branch(bound, "Kisumu")
    assert not can_access_branch(bound, None)
    assert can_access_branch(head, "Kisumu") and can_access_branch(head, None)
