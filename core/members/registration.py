"""Member use cases: registration, look-ups, PINs, language and status.

Each verb takes the caller's session (its unit of work: ``core.kernel.uow``) and ``CoreDeps``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import (
    DuplicateMember,
    InvalidInput,
    MemberNotAllowed,
    NotFound,
    PinInvalid,
    PinLocked,
)
from core.kernel.identity import (
    mask_msisdn,
    member_number_for,
    normalize_msisdn,
    normalize_name,
    normalize_national_id,
)
from core.kernel.pins import (
    PinState,
    after_failure,
    after_success,
    attempts_left,
    current_lock,
    pin_weakness,
)
from core.kernel.uow import keep
from core.ledger import entries as ledger
from core.ledger.chart import MemberAccount
from core.members.nominations import (
    Beneficiary,
    NextOfKin,
    check_date_of_birth,
    check_next_of_kin,
    check_nomination,
    replace_beneficiaries,
    set_next_of_kin,
)
from core.members.status import TRANSITIONS, MemberStatus
from core.messaging.notifications import NAIROBI, notify, sms_datetime, sms_time
from db.models import Account, Member

STATUSES = tuple(MemberStatus)
LANGUAGES = ("en", "sw")
CONSENT_VERSION = "2026-11"

# Per-member accounts by purpose (``core.ledger.chart.MemberAccount``: savings are
# withdrawable; deposits back loans and are not withdrawable; share capital is
# equity; none of them may go below zero).
MEMBER_ACCOUNTS = {account.purpose: account for account in MemberAccount}


@dataclass(frozen=True, slots=True)
class MemberBalances:
    savings_cents: int
    savings_available_cents: int
    deposits_cents: int
    shares_cents: int


def _pin_state(member: Member) -> PinState:
    return PinState(
        failed=member.pin_failed_count,
        lockouts=member.pin_lockouts,
        locked_until=member.pin_locked_until,
        blocked=member.pin_blocked,
    )


def _apply_pin_state(member: Member, state: PinState) -> None:
    member.pin_failed_count = state.failed
    member.pin_lockouts = state.lockouts
    member.pin_locked_until = state.locked_until
    member.pin_blocked = state.blocked


BRANCH_RE = re.compile(r"[A-Za-z0-9 _-]{1,24}")


def check_branch(branch: str) -> None:
    if not BRANCH_RE.fullmatch(branch):
        raise InvalidInput("branch: 1-24 letters, digits, space, dash", field="branch")


def check_new_pin(pin: str, msisdn: str | None = None) -> None:
    reason = pin_weakness(pin, msisdn)
    if reason is not None:
        raise InvalidInput("PIN refused", field="pin", reason=reason)


def register_member(
    session: Session,
    deps: CoreDeps,
    *,
    full_name: str,
    msisdn: str,
    national_id: str,
    language: str = "en",
    consent: bool,
    pin: str | None = None,
    date_of_birth: date | None = None,
    branch: str | None = None,
    next_of_kin: NextOfKin | None = None,
    beneficiaries: Sequence[Beneficiary] | None = None,
    registration_key: str | None = None,
) -> Member:
    """Create a member in ``pending_kyc`` with savings, deposits and share-capital accounts.

    The one registration verb: USSD self-registration gives name, phone, ID, language
    and PIN; a walk-in at the branch (``core.members.walk_in``) adds the date of birth,
    the branch, the next of kin and the beneficiaries (shares summing to 100), all
    checked before anything is written. A member registered without ``branch`` is
    served by head office (``members.branch`` NULL) until staff assign one.
    """
    name = normalize_name(full_name)
    phone = normalize_msisdn(msisdn)
    id_number = normalize_national_id(national_id)
    if branch is not None:
        check_branch(branch)
    if date_of_birth is not None:
        check_date_of_birth(date_of_birth, business_date(deps.now()))
    if next_of_kin is not None:
        next_of_kin = check_next_of_kin(next_of_kin)
    if beneficiaries is not None:
        beneficiaries = check_nomination(beneficiaries)
    if language not in LANGUAGES:
        raise InvalidInput("language must be en or sw", field="language")
    if consent is not True:
        raise InvalidInput(
            "consent to data processing is required", field="consent", reason="required"
        )
    if pin is not None:
        check_new_pin(pin, phone)
    index = deps.vault.blind_index(id_number)
    if session.scalar(select(Member.id).where(Member.msisdn == phone)) is not None:
        raise DuplicateMember("phone already registered", field="msisdn")
    if session.scalar(select(Member.id).where(Member.national_id_index == index)) is not None:
        raise DuplicateMember("ID already registered", field="national_id")
    now = deps.now()
    member = Member(
        full_name=name,
        msisdn=phone,
        national_id_ciphertext=deps.vault.encrypt(id_number),
        national_id_index=index,
        status=MemberStatus.PENDING_KYC,
        language=language,
        consent_at=now,
        consent_version=CONSENT_VERSION,
        pin_hash=deps.pins.hash(pin) if pin is not None else None,
        pin_set_at=now if pin is not None else None,
        pin_failed_count=0,
        pin_lockouts=0,
        pin_blocked=False,
        created_at=now,
        updated_at=now,
        branch=branch,
        registration_key=registration_key,
        date_of_birth_ciphertext=(
            deps.vault.encrypt(date_of_birth.isoformat()) if date_of_birth is not None else None
        ),
    )
    try:
        with session.begin_nested():
            session.add(member)
            session.flush()
    except IntegrityError as exc:  # a concurrent registration won the unique constraint
        raise DuplicateMember("phone or ID already registered") from exc
    member.member_number = member_number_for(member.id)
    for account in MemberAccount:
        ledger.create_account(
            session,
            code=account.code_for(member.member_number),
            name=account.name_for(member.member_number),
            type_=account.account_type,
            purpose=account.purpose,
            no_overdraft=True,
            now=now,
            member_id=member.id,
        )
    if next_of_kin is not None:
        set_next_of_kin(session, deps, member.id, next_of_kin)
    if beneficiaries is not None:
        replace_beneficiaries(session, deps, member.id, beneficiaries)
    notify(
        session,
        template="member_registered",
        business_key=f"member_registered:{member.id}",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "first_name": name.split(" ")[0],
            "member_number": member.member_number,
            "ussd_code": deps.ussd_code,
        },
    )
    session.flush()
    return member


def register_from_phone(
    session: Session,
    deps: CoreDeps,
    *,
    full_name: str,
    msisdn: str,
    national_id: str,
    language: str = "en",
    pin: str | None = None,
) -> Member | None:
    """Self-registration from the caller's phone (USSD), consent given.

    Unlike ``register_member`` it never tells the caller that the national ID (or the
    phone) is already a member's: that would let anyone with a phone test whose ID is on
    file. It returns None instead, and the channel shows the same answer as for a new
    member ("if these details are right, we will SMS your member number"). The new
    member's proof is the welcome SMS; when the ID belongs to a member on another phone,
    that member gets an SMS on the phone on file (at most one a day, so that repeated
    tries cost us one SMS), and the caller gets nothing.
    """
    try:
        return register_member(
            session,
            deps,
            full_name=full_name,
            msisdn=msisdn,
            national_id=national_id,
            language=language,
            consent=True,
            pin=pin,
        )
    except DuplicateMember:  # nothing was written (checked first, or the savepoint undone)
        if pin is not None:
            deps.pins.hash(pin)  # the work a registration does: no faster answer to time
    caller = normalize_msisdn(msisdn)
    owner = find_by_national_id(session, deps, national_id)
    if owner is not None and owner.msisdn != caller:
        day = deps.now().astimezone(NAIROBI).date().isoformat()
        notify(
            session,
            template="registration_attempt",
            business_key=f"registration_attempt:{owner.id}:{day}",
            now=deps.now(),
            member=owner,
            data={"sacco": deps.sacco_name, "msisdn": mask_msisdn(caller)},
        )
        session.flush()
    return None


def get_member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member")
    return member


def find_by_msisdn(session: Session, msisdn: str) -> Member | None:
    try:
        phone = normalize_msisdn(msisdn)
    except InvalidInput:
        return None
    return session.scalar(select(Member).where(Member.msisdn == phone))


def find_by_number(session: Session, member_number: str) -> Member | None:
    return session.scalar(select(Member).where(Member.member_number == member_number.strip()))


def find_by_national_id(session: Session, deps: CoreDeps, national_id: str) -> Member | None:
    try:
        index = deps.vault.blind_index(normalize_national_id(national_id))
    except InvalidInput:
        return None
    return session.scalar(select(Member).where(Member.national_id_index == index))


def national_id_of(deps: CoreDeps, member: Member) -> str:
    return deps.vault.decrypt(member.national_id_ciphertext)


def member_account_ids(session: Session, member_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Account.purpose, Account.id).where(
            Account.member_id == member_id, Account.purpose.in_(list(MEMBER_ACCOUNTS))
        )
    ).all()
    return {str(purpose): int(account_id) for purpose, account_id in rows}


def member_balances(session: Session, member_id: int) -> MemberBalances:
    rows = {
        row.purpose: row
        for row in session.execute(
            select(Account.purpose, Account.balance_cents, Account.held_cents).where(
                Account.member_id == member_id
            )
        )
    }
    if not rows:
        raise NotFound("no such member")
    savings = rows["savings"]
    return MemberBalances(
        savings_cents=savings.balance_cents,
        savings_available_cents=savings.balance_cents - savings.held_cents,
        deposits_cents=rows["deposits"].balance_cents,
        shares_cents=rows["shares"].balance_cents,
    )


def pin_lock(deps: CoreDeps, member: Member) -> tuple[bool, datetime | None]:
    """(locked, until): ``until`` is None with locked=True when only staff can unlock."""
    check = current_lock(_pin_state(member), deps.now())
    return check.locked, check.until


def verify_pin(session: Session, deps: CoreDeps, member_id: int, pin: str) -> None:
    """Check a member's PIN, counting failures. The count is kept either way (a wrong
    PIN is raised with ``keep``, so the edge commits it).

    Raises ``PinLocked`` (without checking the PIN) while locked, ``PinInvalid``
    with the attempts left on a wrong PIN, ``PinLocked`` when this failure
    causes the lock. The PIN never reaches an error message or a log.
    """
    member = session.scalar(select(Member).where(Member.id == member_id).with_for_update())
    if member is None:
        raise NotFound("no such member")
    now = deps.now()
    lock = current_lock(_pin_state(member), now)
    if lock.locked:
        raise PinLocked("PIN use is locked", until=lock.until)
    if member.pin_hash is None:
        raise MemberNotAllowed("no PIN set", reason="no_pin")
    ok = isinstance(pin, str) and len(pin) <= 12 and deps.pins.verify(member.pin_hash, pin)
    if ok:
        if member.pin_failed_count or member.pin_lockouts:
            _apply_pin_state(member, after_success())
        if deps.pins.needs_rehash(member.pin_hash):
            member.pin_hash = deps.pins.hash(pin)
        session.flush()
        return
    state = after_failure(_pin_state(member), now)
    _apply_pin_state(member, state)
    lock = current_lock(state, now)
    if lock.locked:
        # Tell the member at once: a lockout they did not cause means someone has the phone.
        _notify_pin_event(
            session, deps, member, "pin_blocked" if lock.blocked else "pin_locked", lock.until
        )
    if lock.locked:
        raise keep(PinLocked("PIN use is locked", until=lock.until))
    raise keep(PinInvalid("wrong PIN", attempts_left=attempts_left(state)))


def _notify_pin_event(
    session: Session, deps: CoreDeps, member: Member, template: str, until: datetime | None
) -> None:
    now = deps.now()
    notify(
        session,
        template=template,
        business_key=f"{template}:{member.id}:{now.isoformat()}",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "until": sms_time(until) if until is not None else "",
            "date": sms_datetime(now),
        },
    )


def set_pin(session: Session, deps: CoreDeps, member_id: int, new_pin: str) -> None:
    """Set a PIN (registration without one, or after a staff reset): clears any lock."""
    member = get_member(session, member_id)
    check_new_pin(new_pin, member.msisdn)
    member.pin_hash = deps.pins.hash(new_pin)
    member.pin_set_at = deps.now()
    _apply_pin_state(member, after_success())
    _notify_pin_event(session, deps, member, "pin_changed", None)
    session.flush()


def change_pin(
    session: Session, deps: CoreDeps, member_id: int, old_pin: str, new_pin: str
) -> None:
    """Change a PIN after proving the old one (which counts towards the lockout)."""
    member = get_member(session, member_id)
    check_new_pin(new_pin, member.msisdn)
    if old_pin == new_pin:
        raise InvalidInput("new PIN must differ", field="pin", reason="same")
    verify_pin(session, deps, member_id, old_pin)
    set_pin(session, deps, member_id, new_pin)


def set_language(session: Session, member_id: int, language: str) -> None:
    if language not in LANGUAGES:
        raise InvalidInput("language must be en or sw", field="language")
    get_member(session, member_id).language = language
    session.flush()


def check_status_change(member: Member, status: str) -> None:
    if status not in STATUSES:
        raise InvalidInput("unknown status", field="status")
    if status not in TRANSITIONS[MemberStatus(member.status)]:
        raise MemberNotAllowed(f"cannot go from {member.status} to {status}")


def set_status(session: Session, member_id: int, status: str) -> None:
    member = get_member(session, member_id)
    check_status_change(member, status)
    member.status = status
    session.flush()


# A staff PIN reset (maker-checker in the API) sends the member a one-time code
# by SMS; on the next dial the member enters it and chooses a new PIN.
PIN_RESET_TTL = timedelta(hours=24)
PIN_RESET_MAX_ATTEMPTS = 5


def start_pin_reset(session: Session, deps: CoreDeps, member_id: int, *, business_key: str) -> None:
    """Clear the PIN lock, store a hashed one-time code and queue it by SMS."""
    member = get_member(session, member_id)
    code = f"{secrets.randbelow(10**6):06d}"
    member.pin_reset_hash = deps.pins.hash(code)
    member.pin_reset_expires_at = deps.now() + PIN_RESET_TTL
    member.pin_reset_attempts = 0
    _apply_pin_state(member, after_success())
    notify(
        session,
        template="pin_reset_code",
        business_key=business_key,
        now=deps.now(),
        member=member,
        data={"sacco": deps.sacco_name, "code": code, "ussd_code": deps.ussd_code},
    )


def has_pin_reset(deps: CoreDeps, member: Member) -> bool:
    return (
        member.pin_reset_hash is not None
        and member.pin_reset_expires_at is not None
        and member.pin_reset_expires_at > deps.now()
    )


def redeem_pin_reset(
    session: Session, deps: CoreDeps, member_id: int, code: str, new_pin: str
) -> None:
    """The member proves the SMS code and sets a new PIN (the USSD side calls this).

    Raises ``MemberNotAllowed`` when no reset is pending (or it expired),
    ``PinInvalid`` on a wrong code (the code dies after 5 wrong tries) and
    ``InvalidInput`` for a weak PIN (the code stays usable).
    """
    member = session.scalar(select(Member).where(Member.id == member_id).with_for_update())
    if member is None:
        raise NotFound("no such member")
    if not has_pin_reset(deps, member) or member.pin_reset_hash is None:
        raise MemberNotAllowed("no PIN reset pending", reason="no_reset")
    check_new_pin(new_pin, member.msisdn)
    if not (
        isinstance(code, str) and len(code) <= 12 and deps.pins.verify(member.pin_reset_hash, code)
    ):
        member.pin_reset_attempts += 1
        left = PIN_RESET_MAX_ATTEMPTS - member.pin_reset_attempts
        if left <= 0:
            member.pin_reset_hash = None
            member.pin_reset_expires_at = None
        raise keep(PinInvalid("wrong reset code", attempts_left=max(left, 0)))
    member.pin_hash = deps.pins.hash(new_pin)
    member.pin_set_at = deps.now()
    member.pin_reset_hash = None
    member.pin_reset_expires_at = None
    member.pin_reset_attempts = 0
    _apply_pin_state(member, after_success())
    session.flush()
