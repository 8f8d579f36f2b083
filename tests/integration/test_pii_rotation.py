"""Rotating the PII keys also re-encrypts staff TOTP secrets and KYC documents, so the old
key can be removed without locking staff out or losing documents."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.kernel.security import PiiVault
from core.members import backoffice
from core.members import registration as members_core
from core.staff import accounts as staff_core

INDEX_KEY = b"rotation-blind-index-key-0123456789"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 50 + b"\xff\xd9"


def test_rotation_covers_totp_secrets_and_documents(
    db_session: Session, deps: CoreDeps, tmp_path: Path
) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old = CoreDeps(pins=deps.pins, vault=PiiVault([old_key], INDEX_KEY))
    both = CoreDeps(pins=deps.pins, vault=PiiVault([new_key, old_key], INDEX_KEY))
    only_new = CoreDeps(pins=deps.pins, vault=PiiVault([new_key], INDEX_KEY))
    staff = staff_core.create_staff(db_session, old, SYSTEM, username="rotator", full_name="R",
                                    role="manager", password="a good long passphrase")  # fmt: skip
    secret, _ = staff_core.begin_mfa_enrolment(db_session, old, SYSTEM, staff.id, "SACCO")
    member = members_core.register_member(db_session, old, full_name="Rose Atieno",
                                          msisdn="+254711222333", national_id="30111222",
                                          consent=True)  # fmt: skip
    doc = backoffice.store_document(db_session, old, SYSTEM, member_id=member.id, kind="photo",
                                    data=JPEG, directory=tmp_path, max_bytes=10_000)  # fmt: skip

    assert staff_core.rotate_totp_secrets(db_session, both) == 1
    assert backoffice.rotate_document_keys(db_session, both, tmp_path) == 1

    db_session.refresh(staff)
    assert staff.totp_secret_ciphertext is not None
    assert only_new.vault.decrypt(staff.totp_secret_ciphertext) == secret
    _, data = backoffice.read_document(db_session, only_new, SYSTEM, member.id, doc.id, tmp_path)
    assert data == JPEG


def test_rotation_covers_nominations_and_dates_of_birth(
    db_session: Session, deps: CoreDeps
) -> None:
    from datetime import date
    from decimal import Decimal

    from core.members.nominations import (
        Beneficiary,
        NextOfKin,
        nomination_view,
        rotate_nomination_keys,
    )

    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old = CoreDeps(pins=deps.pins, vault=PiiVault([old_key], INDEX_KEY))
    both = CoreDeps(pins=deps.pins, vault=PiiVault([new_key, old_key], INDEX_KEY))
    only_new = CoreDeps(pins=deps.pins, vault=PiiVault([new_key], INDEX_KEY))
    member = members_core.register_member(
        db_session, old, full_name="Rose Atieno", msisdn="+254711222334", national_id="30111223",
        consent=True, date_of_birth=date(1980, 1, 2),
        next_of_kin=NextOfKin("Paul Atieno", "brother", "0722111222"),
        beneficiaries=[Beneficiary("Ann Atieno", "child", "birth_certificate", "BC9999", Decimal(100))],
    )  # fmt: skip
    assert rotate_nomination_keys(db_session, both) == 3
    view = nomination_view(db_session, only_new, member, reveal=True)
    assert view["date_of_birth"] == "1980-01-02"
    assert view["next_of_kin"]["name"] == "Paul Atieno"
    assert view["beneficiaries"][0]["id_number"] == "BC9999"
