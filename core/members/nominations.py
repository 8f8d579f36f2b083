"""A member's next of kin and beneficiaries (the nomination), and the date of birth.

Pure checks first (``check_nomination``: shares are percentages with at most two
decimals and sum to exactly 100; a float never enters), then the reads and writes.
Personal data of these people (names, phones, ID or birth-certificate numbers) is
stored encrypted with the PII vault, as the member's national ID is
(``db.models_members``), and shown in the clear only to ``pii:read`` (audited by the
caller, ``core.members.backoffice.reveal_pii``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.identity import (
    mask_msisdn,
    normalize_msisdn,
    normalize_name,
    normalize_national_id,
)
from db.models import Member
from db.models_members import MemberBeneficiary, MemberNextOfKin, MemberPhoneChange

HUNDRED = Decimal(100)
MAX_BENEFICIARIES = 10
ID_KINDS = ("national_id", "birth_certificate")
# Membership is for adults: the Age of Majority Act (Cap. 33) sets 18, and SACCO by-laws
# (the Sacco Societies Act's model by-laws) admit natural persons of full age.
MIN_MEMBER_AGE_YEARS = 18
_RELATIONSHIP = re.compile(r"[A-Za-z][A-Za-z -]{1,23}")
_BIRTH_CERTIFICATE = re.compile(r"[A-Z0-9]{4,20}")


@dataclass(frozen=True, slots=True)
class NextOfKin:
    name: str
    relationship: str
    phone: str


@dataclass(frozen=True, slots=True)
class Beneficiary:
    name: str
    relationship: str
    id_kind: str
    id_number: str
    share_percent: Decimal
    # Optional (migration 0033): where the share of a deceased member's estate may be
    # paid by M-Pesa (core.members.death); without it the share is paid at the branch.
    phone: str | None = None


# ------------------------------------------------------------------ pure


def _name(text: str, field: str) -> str:
    try:
        return normalize_name(text)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field=field, reason=exc.reason) from None


def _relationship(text: str, field: str) -> str:
    value = " ".join(str(text or "").split()).lower()
    if not _RELATIONSHIP.fullmatch(value):
        raise InvalidInput("relationship: 2-24 letters (e.g. spouse, child)", field=field)
    return value


def share_of(value: Any, field: str = "share_percent") -> Decimal:
    """A share as a Decimal percentage: above 0, at most 100, at most two decimals."""
    try:  # a float is read as the digits it prints (33.33), never its binary value
        share = Decimal("NaN") if isinstance(value, bool) else Decimal(str(value))
    except InvalidOperation:
        share = Decimal("NaN")
    if not share.is_finite() or not Decimal(0) < share <= HUNDRED:
        raise InvalidInput("share: a percentage above 0 and at most 100", field=field)
    if share.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidInput("share: at most two decimals", field=field, reason="precision")
    return share


def shares_problem(shares: Sequence[Decimal]) -> str | None:
    """Why these shares are not a nomination (None when they are): the rule is that
    they sum to exactly 100."""
    if not shares:
        return "name at least one beneficiary"
    if len(shares) > MAX_BENEFICIARIES:
        return f"at most {MAX_BENEFICIARIES} beneficiaries"
    total = sum(shares, Decimal(0))
    if total != HUNDRED:
        return f"shares must sum to exactly 100 (they sum to {total.normalize():f})"
    return None


def check_next_of_kin(kin: NextOfKin) -> NextOfKin:
    try:
        phone = normalize_msisdn(kin.phone)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field="next_of_kin.phone", reason=exc.reason) from None
    return NextOfKin(
        _name(kin.name, "next_of_kin.name"),
        _relationship(kin.relationship, "next_of_kin.relationship"),
        phone,
    )


def check_nomination(items: Sequence[Beneficiary]) -> list[Beneficiary]:
    """Each beneficiary normalised, and the shares summing to exactly 100 (``InvalidInput``
    with the reason otherwise)."""
    checked: list[Beneficiary] = []
    for i, b in enumerate(items[: MAX_BENEFICIARIES + 1]):
        where = f"beneficiaries[{i}]"
        if b.id_kind not in ID_KINDS:
            raise InvalidInput(
                "id_kind: national_id or birth_certificate", field=f"{where}.id_kind"
            )
        if b.id_kind == "national_id":
            try:
                number = normalize_national_id(b.id_number)
            except InvalidInput as exc:
                raise InvalidInput(exc.detail, field=f"{where}.id_number") from None
        else:
            number = re.sub(r"[\s/-]", "", str(b.id_number or "")).upper()
            if not _BIRTH_CERTIFICATE.fullmatch(number):
                raise InvalidInput(
                    "birth certificate number: 4-20 letters or digits", field=f"{where}.id_number"
                )
        phone = None
        if b.phone:
            try:
                phone = normalize_msisdn(b.phone)
            except InvalidInput as exc:
                raise InvalidInput(exc.detail, field=f"{where}.phone", reason=exc.reason) from None
        checked.append(
            Beneficiary(
                _name(b.name, f"{where}.name"),
                _relationship(b.relationship, f"{where}.relationship"),
                b.id_kind,
                number,
                share_of(b.share_percent, f"{where}.share_percent"),
                phone,
            )
        )
    problem = shares_problem([b.share_percent for b in checked])
    if problem is not None:
        raise InvalidInput(problem, field="beneficiaries", reason="shares")
    return checked


def check_date_of_birth(born: date, today: date) -> date:
    """A date of birth of someone at least ``MIN_MEMBER_AGE_YEARS`` old today."""
    if not isinstance(born, date):
        raise InvalidInput("date_of_birth: a date", field="date_of_birth")
    if not 1900 <= born.year <= today.year:
        raise InvalidInput("date_of_birth: not a living adult's", field="date_of_birth",
                           reason="age")  # fmt: skip
    try:
        adult_on = born.replace(year=born.year + MIN_MEMBER_AGE_YEARS)
    except ValueError:  # 29 February
        adult_on = date(born.year + MIN_MEMBER_AGE_YEARS, 3, 1)
    if adult_on > today:
        raise InvalidInput(
            f"members must be at least {MIN_MEMBER_AGE_YEARS} years old",
            field="date_of_birth",
            reason="age",
        )
    return born


# ------------------------------------------------------------ reads/writes


def store_date_of_birth(deps: CoreDeps, member: Member, born: date) -> None:
    check_date_of_birth(born, business_date(deps.now()))
    member.date_of_birth_ciphertext = deps.vault.encrypt(born.isoformat())


def set_next_of_kin(session: Session, deps: CoreDeps, member_id: int, kin: NextOfKin) -> None:
    """Record (or replace) the member's next of kin; the input is checked first."""
    kin = check_next_of_kin(kin)
    now = deps.now()
    row = session.scalar(select(MemberNextOfKin).where(MemberNextOfKin.member_id == member_id))
    if row is None:
        row = MemberNextOfKin(member_id=member_id, created_at=now)
        session.add(row)
    row.name_ciphertext = deps.vault.encrypt(kin.name)
    row.relationship = kin.relationship
    row.phone_ciphertext = deps.vault.encrypt(kin.phone)
    row.updated_at = now
    session.flush()


def replace_beneficiaries(
    session: Session, deps: CoreDeps, member_id: int, items: Sequence[Beneficiary]
) -> list[Beneficiary]:
    """The member's whole nomination replaced by ``items`` (checked: shares sum to 100)."""
    checked = check_nomination(items)
    session.execute(delete(MemberBeneficiary).where(MemberBeneficiary.member_id == member_id))
    now = deps.now()
    for position, b in enumerate(checked, start=1):
        session.add(
            MemberBeneficiary(
                member_id=member_id,
                position=position,
                name_ciphertext=deps.vault.encrypt(b.name),
                relationship=b.relationship,
                id_kind=b.id_kind,
                id_number_ciphertext=deps.vault.encrypt(b.id_number),
                share_percent=b.share_percent,
                msisdn_ciphertext=deps.vault.encrypt(b.phone) if b.phone else None,
                created_at=now,
            )  # fmt: skip
        )
    session.flush()
    return checked


def _mask_name(name: str) -> str:
    return " ".join(w[:1] + "*" * (len(w) - 1) for w in name.split(" "))


def _mask_id(number: str) -> str:
    return "*" * max(len(number) - 2, 0) + number[-2:]


def nomination_view(
    session: Session, deps: CoreDeps, member: Member, *, reveal: bool
) -> dict[str, Any]:
    """Date of birth, next of kin and beneficiaries as the staff screen shows them: in
    the clear when ``reveal`` (the caller audits the read), masked otherwise."""
    kin = session.scalar(select(MemberNextOfKin).where(MemberNextOfKin.member_id == member.id))
    rows = session.scalars(
        select(MemberBeneficiary)
        .where(MemberBeneficiary.member_id == member.id)
        .order_by(MemberBeneficiary.position)
    ).all()
    born = (
        deps.vault.decrypt(member.date_of_birth_ciphertext)
        if member.date_of_birth_ciphertext is not None
        else None
    )
    out: dict[str, Any] = {
        "date_of_birth": (born if reveal else "****-**-**") if born else None,
        "next_of_kin": None,
        "beneficiaries": [],
    }
    if kin is not None:
        name, phone = (
            deps.vault.decrypt(kin.name_ciphertext),
            deps.vault.decrypt(kin.phone_ciphertext),
        )
        out["next_of_kin"] = {
            "name": name if reveal else _mask_name(name),
            "relationship": kin.relationship,
            "phone": phone if reveal else mask_msisdn(phone),
        }
    for row in rows:
        name, number = (
            deps.vault.decrypt(row.name_ciphertext),
            deps.vault.decrypt(row.id_number_ciphertext),
        )
        their_phone = (
            deps.vault.decrypt(row.msisdn_ciphertext) if row.msisdn_ciphertext is not None else None
        )
        out["beneficiaries"].append(
            {
                "name": name if reveal else _mask_name(name),
                "relationship": row.relationship,
                "id_kind": row.id_kind,
                "id_number": number if reveal else _mask_id(number),
                "share_percent": row.share_percent,
                "phone": (their_phone if reveal else mask_msisdn(their_phone))
                if their_phone
                else None,
            }
        )
    return out


def rotate_nomination_keys(session: Session, deps: CoreDeps) -> int:
    """Re-encrypt, under the newest PII key (``manage.py rotate-pii-keys``), every token
    migration 0026 stores: dates of birth, next of kin, beneficiaries and the numbers of
    phone changes. Returns how many rows were rewritten."""
    rotate = deps.vault.rotate
    count = 0
    for member in session.scalars(
        select(Member).where(Member.date_of_birth_ciphertext.is_not(None))
    ):
        assert member.date_of_birth_ciphertext is not None
        member.date_of_birth_ciphertext = rotate(member.date_of_birth_ciphertext)
        count += 1
    for kin in session.scalars(select(MemberNextOfKin)):
        kin.name_ciphertext, kin.phone_ciphertext = (
            rotate(kin.name_ciphertext), rotate(kin.phone_ciphertext),
        )  # fmt: skip
        count += 1
    for nominee in session.scalars(select(MemberBeneficiary)):
        nominee.name_ciphertext = rotate(nominee.name_ciphertext)
        nominee.id_number_ciphertext = rotate(nominee.id_number_ciphertext)
        if nominee.msisdn_ciphertext is not None:
            nominee.msisdn_ciphertext = rotate(nominee.msisdn_ciphertext)
        count += 1
    for change in session.scalars(select(MemberPhoneChange)):
        change.old_msisdn_ciphertext = rotate(change.old_msisdn_ciphertext)
        change.new_msisdn_ciphertext = rotate(change.new_msisdn_ciphertext)
        count += 1
    session.flush()
    return count
