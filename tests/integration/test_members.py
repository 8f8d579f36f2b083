"""Members on the real PostgreSQL: registration, duplicates, PINs, personal data at rest."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import DuplicateMember, InvalidInput, PinInvalid, PinLocked
from core.kernel.identity import is_valid_member_number
from core.kernel.security import PiiVault
from core.members import registration as members
from db.models import Account, Member, OutboxMessage
from db.session import make_session_factory, unit_of_work

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def register(session: Session, deps: CoreDeps, **overrides: object) -> Member:
    fields: dict[str, object] = {
        "full_name": "Amina Wanjiru",
        "msisdn": "0712000001",
        "national_id": "23456781",
        "language": "en",
        "consent": True,
        "pin": "4826",
    }
    fields.update(overrides)
    return members.register_member(session, deps, **fields)  # type: ignore[arg-type]


def staff_reset_pin(session: Session, deps: CoreDeps, member: Member) -> str:
    """What an approved ``member.pin_reset`` does; returns the code from the queued SMS."""
    members.start_pin_reset(session, deps, member.id, business_key=f"pin_reset:{member.id}")
    session.commit()
    sms = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.member_id == member.id, OutboxMessage.template == "pin_reset_code"
        )
    ).one()
    found = re.search(r"\b(\d{6})\b", sms.body)
    assert found is not None, sms.body
    return found.group(1)


def test_registration_creates_a_pending_member_with_three_accounts_and_a_welcome_sms(
    db_session: Session, deps: CoreDeps
) -> None:
    member = register(db_session, deps)
    assert member.status == "pending_kyc" and member.msisdn == "+254712000001"
    assert member.member_number and is_valid_member_number(member.member_number)
    accounts = db_session.scalars(select(Account).where(Account.member_id == member.id)).all()
    assert sorted((a.purpose, a.type, a.no_overdraft) for a in accounts) == [
        ("deposits", "liability", True),
        ("savings", "liability", True),
        ("shares", "equity", True),
    ]
    sms = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.member_id == member.id)
    ).one()
    assert member.member_number in sms.body and sms.recipient == "+254712000001"
    assert member.consent_at is not None and member.consent_version


def test_plus_2541_numbers_register(db_session: Session, deps: CoreDeps) -> None:
    assert register(db_session, deps, msisdn="0110123456").msisdn == "+254110123456"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("msisdn", "0202345678", "not_mobile"),
        ("msisdn", "12", "format"),
        ("national_id", "12ab", "format"),
        ("full_name", "Amina", "format"),
        ("pin", "1234", "sequential"),
        ("pin", "0000", "repeated"),
        ("pin", "2001", "year"),
        ("pin", "0001", None),
        ("consent", False, "required"),
        ("language", "fr", None),
    ],
)
def test_bad_registration_input_is_refused_and_writes_nothing(
    db_session: Session, deps: CoreDeps, field: str, value: object, reason: str | None
) -> None:
    with pytest.raises(InvalidInput) as err:
        register(db_session, deps, **{field: value})
    if reason:
        assert err.value.reason == reason
    assert members.find_by_msisdn(db_session, "0712000001") is None


def test_duplicate_phone_or_national_id_is_refused(db_session: Session, deps: CoreDeps) -> None:
    register(db_session, deps)
    with pytest.raises(DuplicateMember) as err:
        register(db_session, deps, national_id="99999999", msisdn="+254712000001")
    assert err.value.context["field"] == "msisdn"
    with pytest.raises(DuplicateMember) as err:
        register(db_session, deps, msisdn="0712000002", national_id="2345 6781")
    assert err.value.context["field"] == "national_id"


def test_no_plaintext_national_id_in_the_database(db_session: Session, deps: CoreDeps) -> None:
    member = register(db_session, deps, national_id="31415926")
    rows = (
        db_session.execute(text("SELECT * FROM members WHERE id = :id"), {"id": member.id})
        .mappings()
        .one()
    )
    for value in rows.values():
        raw = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
        assert b"31415926" not in raw
    assert members.national_id_of(deps, member) == "31415926"
    assert members.find_by_national_id(db_session, deps, "31415926").id == member.id  # type: ignore[union-attr]


def test_national_ids_stay_readable_after_key_rotation(db_session: Session, deps: CoreDeps) -> None:
    from cryptography.fernet import Fernet

    from tests.conftest import TEST_PII_KEY

    member = register(db_session, deps, national_id="27182818")
    new_key = Fernet.generate_key()
    rotated = replace(
        deps, vault=PiiVault([new_key, TEST_PII_KEY], b"test-blind-index-key-0123456789")
    )
    member.national_id_ciphertext = rotated.vault.rotate(member.national_id_ciphertext)
    db_session.commit()
    only_new = replace(deps, vault=PiiVault([new_key], b"test-blind-index-key-0123456789"))
    assert members.national_id_of(only_new, member) == "27182818"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_three_wrong_pins_lock_for_thirty_minutes_then_repeated_lockout_needs_staff(
    db_session: Session, deps: CoreDeps
) -> None:
    clock = Clock(T0)
    timed = replace(deps, now=clock)
    member = register(db_session, timed)
    for left in (2, 1):
        with pytest.raises(PinInvalid) as wrong:
            members.verify_pin(db_session, timed, member.id, "9999")
        assert wrong.value.attempts_left == left
    with pytest.raises(PinLocked) as locked:
        members.verify_pin(db_session, timed, member.id, "9999")
    assert locked.value.until == T0 + timedelta(minutes=30)
    # While locked even the right PIN is refused, and the PIN is not even checked.
    with pytest.raises(PinLocked):
        members.verify_pin(db_session, timed, member.id, "4826")
    clock.now = T0 + timedelta(minutes=31)
    for _ in range(2):
        with pytest.raises(PinInvalid):
            members.verify_pin(db_session, timed, member.id, "1111")
    with pytest.raises(PinLocked) as blocked:
        members.verify_pin(db_session, timed, member.id, "1111")
    assert blocked.value.until is None  # needs a staff reset
    clock.now = T0 + timedelta(days=3)
    with pytest.raises(PinLocked):
        members.verify_pin(db_session, timed, member.id, "4826")
    # Staff reset the PIN (an approved member.pin_reset); the member redeems the SMS code.
    code = staff_reset_pin(db_session, timed, member)
    members.redeem_pin_reset(db_session, timed, member.id, code, "7391")
    members.verify_pin(db_session, timed, member.id, "7391")
    with pytest.raises(PinInvalid) as old:
        members.verify_pin(db_session, timed, member.id, "4826")
    assert old.value.attempts_left == 2


def test_a_correct_pin_resets_the_count(db_session: Session, deps: CoreDeps) -> None:
    member = register(db_session, deps)
    for _ in range(2):
        with pytest.raises(PinInvalid):
            members.verify_pin(db_session, deps, member.id, "9999")
    members.verify_pin(db_session, deps, member.id, "4826")
    with pytest.raises(PinInvalid) as wrong:
        members.verify_pin(db_session, deps, member.id, "9999")
    assert wrong.value.attempts_left == 2


def test_change_pin_needs_the_old_one_and_a_strong_new_one(
    db_session: Session, deps: CoreDeps
) -> None:
    member = register(db_session, deps)
    with pytest.raises(InvalidInput):
        members.change_pin(db_session, deps, member.id, "4826", "1111")
    with pytest.raises(PinInvalid):
        members.change_pin(db_session, deps, member.id, "5555", "7391")
    members.change_pin(db_session, deps, member.id, "4826", "7391")
    members.verify_pin(db_session, deps, member.id, "7391")
    with pytest.raises(PinInvalid):
        members.verify_pin(db_session, deps, member.id, "4826")


def test_pin_never_appears_in_errors_or_the_database(db_session: Session, deps: CoreDeps) -> None:
    member = register(db_session, deps, pin="7391")
    with pytest.raises(PinInvalid) as wrong:
        members.verify_pin(db_session, deps, member.id, "8052")
    assert "8052" not in str(wrong.value) and "8052" not in repr(wrong.value.context)
    row = db_session.execute(
        text("SELECT pin_hash FROM members WHERE id = :id"), {"id": member.id}
    ).scalar_one()
    assert "7391" not in row


def test_status_transitions(db_session: Session, deps: CoreDeps) -> None:
    from core.kernel.errors import MemberNotAllowed

    member = register(db_session, deps)
    with pytest.raises(MemberNotAllowed):
        members.set_status(db_session, member.id, "suspended")
    members.set_status(db_session, member.id, "active")
    members.set_status(db_session, member.id, "suspended")
    members.set_status(db_session, member.id, "exited")
    with pytest.raises(MemberNotAllowed):
        members.set_status(db_session, member.id, "active")


def test_racing_registrations_of_one_phone_create_exactly_one_member(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        with unit_of_work(factory) as session:
            try:
                register(session, deps, national_id=f"3000000{i}")
                outcomes.append("created")
            except DuplicateMember:
                outcomes.append("duplicate")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["created"] + ["duplicate"] * 5
    with unit_of_work(factory) as session:
        count = session.scalar(
            select(func.count()).select_from(Member).where(Member.msisdn == "+254712000001")
        )
        assert count == 1


def sms_templates(session: Session, member_id: int) -> list[str]:
    return list(
        session.scalars(
            select(OutboxMessage.template)
            .where(OutboxMessage.member_id == member_id)
            .order_by(OutboxMessage.id)
        )
    )


def test_member_is_told_by_sms_of_a_lockout_a_block_and_a_pin_change(
    db_session: Session, deps: CoreDeps
) -> None:
    clock = Clock(T0)
    timed = replace(deps, now=clock)
    member = register(db_session, timed)
    for _ in range(3):
        with pytest.raises((PinInvalid, PinLocked)):
            members.verify_pin(db_session, timed, member.id, "9999")
    assert sms_templates(db_session, member.id) == ["member_registered", "pin_locked"]
    locked = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.template == "pin_locked")
    ).one()
    assert "after 12:30" in locked.body  # 09:00 UTC + 30 min, shown in Nairobi time (UTC+3)
    clock.now = T0 + timedelta(hours=1)
    for _ in range(3):
        with pytest.raises((PinInvalid, PinLocked)):
            members.verify_pin(db_session, timed, member.id, "9999")
    assert sms_templates(db_session, member.id)[-1] == "pin_blocked"
    # An approved staff reset lifts the block (and texts a code the member need not use).
    staff_reset_pin(db_session, timed, member)
    members.change_pin(db_session, timed, member.id, "4826", "7391")
    assert sms_templates(db_session, member.id)[-2:] == ["pin_reset_code", "pin_changed"]
