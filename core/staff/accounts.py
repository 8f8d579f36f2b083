"""Staff accounts, login, TOTP MFA, sessions with rotating refresh tokens, partner API keys.

A login is a ``StaffSession`` row: password accepted -> stage ``mfa_pending``
(TOTP due), ``mfa_enrol`` (a privileged role without TOTP must enrol first) or
``active``. Only an active session gets refresh tokens; the API issues short
access tokens that name the session, and every request checks the session
here, so logout, idle and absolute limits and reuse detection take effect at
once and survive a Redis restart (the state is in the database).

Refresh tokens are random, stored as SHA-256, used once: each use marks the
token used and issues the next in the same session (the "family"); presenting
a used token again means it was stolen or replayed, and the whole session is
revoked.

TOTP (RFC 6238, 30-second steps, +-1 step of clock drift) remembers the last
accepted step, so a code is never accepted twice. Recovery codes are random,
stored as SHA-256, each usable once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.passwords import password_weakness
from core.kernel.permissions import (
    APPROVER_PERMISSION,
    INTEGRATION_GRANTABLE,
    MFA_REQUIRED_ROLES,
    ROLES,
    SYSTEM,
    Principal,
    grant_needs_approval,
    permissions_for_role,
    role_needs_approval,
)
from core.kernel.uow import keep
from core.staff.vocabulary import SessionStage
from db.models import (
    ApiClient,
    ApprovalRequest,
    AuditChainHead,
    RefreshToken,
    StaffRecoveryCode,
    StaffSession,
    StaffUser,
)

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9 _-]{1,24}$")
TOTP_STEP_S = 30
RECOVERY_CODES = 10


class AuthFailed(DomainError):
    code = "invalid_credentials"


class AccountLocked(DomainError):
    code = "account_locked"

    def __init__(self, detail: str = "", *, until: datetime | None = None) -> None:
        super().__init__(detail, until=until)
        self.until = until


class SessionInvalid(DomainError):
    """The session behind a token is revoked, idle too long, past its absolute limit or unknown."""

    code = "session_invalid"


class MfaInvalid(DomainError):
    code = "mfa_invalid"


class RefreshReused(DomainError):
    code = "refresh_token_reused"


class ApprovalRequired(DomainError):
    """Only a second person's approval makes this account or key (or enables it)."""

    code = "approval_required"


class BootstrapClosed(DomainError):
    """The one-time command-line bootstrap is used up: ask through the API."""

    code = "bootstrap_closed"


@dataclass(frozen=True)
class AuthPolicy:
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)
    mfa_window: timedelta = timedelta(minutes=5)
    enrol_window: timedelta = timedelta(minutes=15)  # installing an authenticator takes time
    touch_every: timedelta = timedelta(seconds=60)


@dataclass(frozen=True)
class LoginResult:
    staff: StaffUser
    session_id: str
    stage: str
    refresh_token: str | None  # only for an active session


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_for(staff: StaffUser, *, address: str = "", request_id: str = "") -> Principal:
    return Principal(
        kind="staff",
        id=staff.id,
        name=staff.username,
        role=staff.role,
        branch=staff.branch,
        permissions=permissions_for_role(staff.role) if staff.is_active else frozenset(),
        address=address,
        request_id=request_id,
        must_change_password=staff.must_change_password,
    )


def _anonymous(username: str, address: str, request_id: str) -> Principal:
    return Principal(
        kind="anonymous",
        id=0,
        name=username[:80] or "?",
        role="none",
        branch=None,
        address=address,
        request_id=request_id,
    )


def _staff_view(staff: StaffUser) -> dict[str, object]:
    return {
        "username": staff.username,
        "full_name": staff.full_name,
        "role": staff.role,
        "branch": staff.branch,
        "is_active": staff.is_active,
        "mfa": staff.totp_enabled,
        "pending_approval_id": staff.pending_approval_id,
    }


# ---------------------------------------------------------------- accounts


def normalize_username(username: str) -> str:
    name = (username or "").strip().lower()
    if not USERNAME_RE.match(name):
        raise InvalidInput(
            "username: 3-64 of a-z, 0-9, dot, dash, underscore", field="username", reason="format"
        )
    return name


def check_new_password(password: str, username: str) -> None:
    reason = password_weakness(password, username)
    if reason is not None:
        messages = {
            "too_short": "password must be at least 12 characters",
            "too_long": "password must be at most 128 characters",
            "too_common": "password is too common or found in breaches; choose another",
            "contains_username": "password must not contain the username",
        }
        raise InvalidInput(messages[reason], field="password", reason=reason)


def create_staff(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    branch: str | None = None,
    must_change_password: bool = False,
) -> StaffUser:
    """A new staff account, made at once: for the system only (the command line's bounded
    bootstrap, the demo, tests) when the role moves money, reads personal data or grants
    access; a member of staff asks with ``request_staff_account`` instead.
    ``must_change_password`` when someone else chose the password (the person then
    reaches only their own profile until they change it)."""
    if actor.kind != "system" and role_needs_approval(role):
        raise ApprovalRequired(
            f"a {role} account needs another person's approval: ask for it "
            "(POST /api/v1/staff) and a manager approves it"
        )
    staff = _add_staff(
        session, deps, actor, username=username, full_name=full_name, role=role,
        password=password, branch=branch, must_change_password=must_change_password,
        pending=False,
    )  # fmt: skip
    session.flush()
    return staff


def _add_staff(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    branch: str | None,
    must_change_password: bool,
    pending: bool,
) -> StaffUser:
    """Validate and insert an account (disabled and marked waiting when ``pending``);
    audited."""
    name = normalize_username(username)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    full = " ".join((full_name or "").split())
    if not 1 <= len(full) <= 120:
        raise InvalidInput("full name is required (at most 120 characters)", field="full_name")
    if branch is not None and not BRANCH_RE.match(branch):
        raise InvalidInput("branch: 1-24 letters, digits, space, dash", field="branch")
    check_new_password(password, name)
    if session.scalar(select(StaffUser.id).where(StaffUser.username == name)) is not None:
        raise DomainError("username already taken", field="username", reason="taken")
    now = deps.now()
    staff = StaffUser(
        username=name,
        full_name=full,
        role=role,
        branch=branch,
        password_hash=deps.passwords.hash(password),
        is_active=not pending,
        pending_approval_id=0 if pending else None,  # the request's id once it exists
        failed_logins=0,
        totp_enabled=False,
        password_changed_at=now,
        must_change_password=must_change_password,
        created_at=now,
    )
    session.add(staff)
    session.flush()
    audit.record(
        session, actor, "staff.create", target_type="staff", target_id=staff.id,
        after=_staff_view(staff), now=deps.now(),
    )  # fmt: skip
    return staff


def get_staff(session: Session, staff_id: int) -> StaffUser:
    staff = session.get(StaffUser, staff_id)
    if staff is None:
        raise NotFound("no such staff account")
    return staff


def list_staff(session: Session, *, limit: int, after_id: int = 0) -> list[StaffUser]:
    return list(
        session.scalars(
            select(StaffUser).where(StaffUser.id > after_id).order_by(StaffUser.id).limit(limit)
        )
    )


def set_staff_active(
    session: Session, deps: CoreDeps, actor: Principal, staff_id: int, active: bool
) -> StaffUser:
    """Disable (revoking every session) or re-enable a staff account."""
    staff = get_staff(session, staff_id)
    if actor.kind == "staff" and actor.id == staff_id and not active:
        raise DomainError("you cannot disable your own account", reason="self")
    if staff.pending_approval_id is not None:
        raise ApprovalRequired(
            f"this account waits for approval request {staff.pending_approval_id} (or was "
            "refused): only that approval enables it"
        )
    before = _staff_view(staff)
    staff.is_active = active
    if not active:
        _revoke_all(session, deps, staff_id, "disabled")
    audit.record(
        session, actor, "staff.enable" if active else "staff.disable", target_type="staff",
        target_id=staff_id, before=before, after=_staff_view(staff), now=deps.now(),
    )  # fmt: skip
    session.flush()
    return staff


def unlock_staff(session: Session, deps: CoreDeps, actor: Principal, staff_id: int) -> StaffUser:
    staff = get_staff(session, staff_id)
    before = {"locked_until": staff.locked_until, "failed_logins": staff.failed_logins}
    staff.locked_until = None
    staff.failed_logins = 0
    audit.record(
        session, actor, "staff.unlock", target_type="staff", target_id=staff_id, before=before,
        after={"locked_until": None, "failed_logins": 0}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return staff


def reset_mfa(session: Session, deps: CoreDeps, actor: Principal, staff_id: int) -> StaffUser:
    """Clear a lost authenticator: the person enrols again at next login."""
    staff = get_staff(session, staff_id)
    if actor.kind == "staff" and actor.id == staff_id:
        raise DomainError("ask another administrator to reset your MFA", reason="self")
    staff.totp_enabled = False
    staff.totp_secret_ciphertext = None
    staff.totp_last_step = None
    session.execute(
        update(StaffRecoveryCode)
        .where(StaffRecoveryCode.staff_id == staff_id, StaffRecoveryCode.used_at.is_(None))
        .values(used_at=deps.now())
    )
    _revoke_all(session, deps, staff_id, "mfa_reset")
    audit.record(
        session, actor, "staff.mfa_reset", target_type="staff", target_id=staff_id, now=deps.now()
    )
    session.flush()
    return staff


def change_password(
    session: Session, deps: CoreDeps, actor: Principal, current: str, new: str
) -> None:
    """Change one's own password; every other session of the account is revoked."""
    staff = get_staff(session, actor.id)
    if not deps.passwords.verify(staff.password_hash, current):
        raise AuthFailed("current password is wrong", field="current_password")
    check_new_password(new, staff.username)
    if deps.passwords.verify(staff.password_hash, new):
        raise InvalidInput("new password must differ", field="new_password", reason="same")
    staff.password_hash = deps.passwords.hash(new)
    staff.password_changed_at = deps.now()
    staff.must_change_password = False
    session.execute(
        update(StaffSession)
        .where(
            StaffSession.staff_id == staff.id,
            StaffSession.revoked_at.is_(None),
            StaffSession.id != (actor.session_id or ""),
        )
        .values(revoked_at=deps.now(), revoked_reason="password_changed")
    )
    audit.record(
        session,
        actor,
        "staff.password_change",
        target_type="staff",
        target_id=staff.id,
        now=deps.now(),
    )
    session.flush()


# ------------------------------------------------------------------- login


def _new_session(
    session: Session, deps: CoreDeps, policy: AuthPolicy, staff: StaffUser, address: str
) -> LoginResult:
    if staff.totp_enabled:
        stage = SessionStage.MFA_PENDING
    elif staff.role in MFA_REQUIRED_ROLES:
        stage = SessionStage.MFA_ENROL
    else:
        stage = SessionStage.ACTIVE
    now = deps.now()
    row = StaffSession(
        id=secrets.token_hex(16),
        staff_id=staff.id,
        stage=stage,
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.absolute,
        address=address[:64],
    )
    session.add(row)
    session.flush()
    token = _issue_refresh(session, deps, row) if stage == SessionStage.ACTIVE else None
    return LoginResult(staff, row.id, stage, token)


def _issue_refresh(session: Session, deps: CoreDeps, row: StaffSession) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(session_id=row.id, token_hash=token_digest(token), created_at=deps.now())
    )
    session.flush()
    return token


def _count_failure(
    session: Session, deps: CoreDeps, policy: AuthPolicy, staff: StaffUser, who: Principal
) -> None:
    staff.failed_logins += 1
    if staff.failed_logins >= policy.max_failures:
        staff.locked_until = deps.now() + policy.lockout
        staff.failed_logins = 0
        audit.record(
            session, who, "auth.locked", target_type="staff", target_id=staff.id,
            after={"locked_until": staff.locked_until}, now=deps.now(),
        )  # fmt: skip


def _locked_error(staff: StaffUser, now: datetime) -> AccountLocked | None:
    if staff.locked_until is not None and staff.locked_until > now:
        return AccountLocked(
            "too many failed attempts: this account is locked until "
            f"{staff.locked_until:%H:%M} UTC; an administrator can unlock it sooner",
            until=staff.locked_until,
        )
    return None


def _raise_if_locked(staff: StaffUser, now: datetime) -> None:
    error = _locked_error(staff, now)
    if error is not None:
        raise error


def login(
    session: Session,
    deps: CoreDeps,
    policy: AuthPolicy,
    *,
    username: str,
    password: str,
    address: str = "",
    request_id: str = "",
) -> LoginResult:
    """Check username and password; open a session (its stage says what is still due).

    Raises ``AuthFailed``, the same for an unknown name, a wrong password and a
    disabled account, so the answer never tells which usernames exist. Wrong
    passwords lock nothing (anyone could lock a colleague out): the API throttles
    sign-in by address and by name instead. ``AccountLocked`` (a lock set by wrong
    second factors, which only the password holder reaches) is told only after the
    right password.
    """
    name = (username or "").strip().lower()[:64]
    who = _anonymous(name, address, request_id)
    staff = session.scalar(select(StaffUser).where(StaffUser.username == name).with_for_update())
    ok = deps.passwords.verify(staff.password_hash if staff else None, password or "")
    if staff is None or not ok or not staff.is_active:
        if staff is not None:
            audit.record(
                session,
                who,
                "auth.login_failed",
                target_type="staff",
                target_id=staff.id,
                now=deps.now(),
            )
        raise keep(AuthFailed("wrong username or password"))
    _raise_if_locked(staff, deps.now())
    if deps.passwords.needs_rehash(staff.password_hash):
        staff.password_hash = deps.passwords.hash(password)
    result = _new_session(session, deps, policy, staff, address)
    if result.stage == SessionStage.ACTIVE:
        # Second-factor failures count until a second factor passes, not a password:
        # else signing in again would reset the count and allow endless code guesses.
        staff.failed_logins = 0
        staff.locked_until = None
    audit.record(
        session, principal_for(staff, address=address, request_id=request_id), "auth.login",
        target_type="session", target_id=result.session_id, after={"stage": result.stage},
        now=deps.now(),
    )  # fmt: skip
    session.flush()
    return result


def _live_session(
    session: Session, deps: CoreDeps, policy: AuthPolicy, session_id: str, *, lock: bool = False
) -> StaffSession:
    query = select(StaffSession).where(StaffSession.id == session_id)
    row = session.scalar(query.with_for_update() if lock else query)
    now = deps.now()
    if row is None or row.revoked_at is not None:
        raise SessionInvalid("session ended: sign in again", reason="revoked")
    if now >= row.expires_at:
        raise SessionInvalid("session reached its time limit: sign in again", reason="absolute")
    if now - row.last_seen_at > policy.idle:
        row.revoked_at = now
        row.revoked_reason = "idle"
        raise keep(SessionInvalid("session idle too long: sign in again", reason="idle"))
    return row


def authenticate_session(
    session: Session, deps: CoreDeps, policy: AuthPolicy, session_id: str, staff_id: int
) -> StaffUser:
    """Check the session behind an access token; keeps it alive (idle clock)."""
    row = _live_session(session, deps, policy, session_id)
    if row.staff_id != staff_id or row.stage != SessionStage.ACTIVE:
        raise SessionInvalid("token does not match an active session", reason="mismatch")
    staff = get_staff(session, staff_id)
    if not staff.is_active:
        raise SessionInvalid("account disabled", reason="disabled")
    now = deps.now()
    if now - row.last_seen_at >= policy.touch_every:
        row.last_seen_at = now
        session.flush()
    return staff


def pending_session(
    session: Session, deps: CoreDeps, policy: AuthPolicy, session_id: str, stage: str
) -> tuple[StaffSession, StaffUser]:
    """A session waiting for its second factor (or enrolment), within the MFA window."""
    row = _live_session(session, deps, policy, session_id, lock=True)
    if row.stage != stage:
        raise SessionInvalid("this step is already done or not due", reason="stage")
    window = policy.enrol_window if stage == SessionStage.MFA_ENROL else policy.mfa_window
    if deps.now() - row.created_at > window:
        row.revoked_at = deps.now()
        row.revoked_reason = "mfa_timeout"
        raise keep(SessionInvalid("took too long: sign in again", reason="mfa_timeout"))
    return row, get_staff(session, row.staff_id)


def _totp(deps: CoreDeps, staff: StaffUser) -> pyotp.TOTP:
    if staff.totp_secret_ciphertext is None:
        raise DomainError("MFA is not enrolled", reason="not_enrolled")
    return pyotp.TOTP(deps.vault.decrypt(staff.totp_secret_ciphertext), interval=TOTP_STEP_S)


def totp_step(totp: pyotp.TOTP, code: str, now: datetime, last_step: int | None) -> int | None:
    """The step a code belongs to (now +-1), if it is valid and newer than ``last_step``."""
    code = (code or "").strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    current = int(now.timestamp()) // TOTP_STEP_S
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * TOTP_STEP_S), code):
            return step
    return None


def _use_recovery_code(session: Session, deps: CoreDeps, staff: StaffUser, code: str) -> bool:
    digest = token_digest((code or "").strip().replace("-", "").upper())
    row = session.scalar(
        select(StaffRecoveryCode)
        .where(
            StaffRecoveryCode.staff_id == staff.id,
            StaffRecoveryCode.code_hash == digest,
            StaffRecoveryCode.used_at.is_(None),
        )
        .with_for_update()
    )
    if row is None:
        return False
    row.used_at = deps.now()
    return True


def verify_mfa(
    session: Session,
    deps: CoreDeps,
    policy: AuthPolicy,
    session_id: str,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
    address: str = "",
    request_id: str = "",
) -> LoginResult:
    """Second factor for a ``mfa_pending`` session: a fresh TOTP code or an unused recovery code."""
    row, found = pending_session(session, deps, policy, session_id, "mfa_pending")
    staff = session.scalars(
        select(StaffUser).where(StaffUser.id == found.id).with_for_update()
    ).one()
    who = principal_for(staff, address=address, request_id=request_id)
    _raise_if_locked(staff, deps.now())
    ok = False
    if code:
        step = totp_step(_totp(deps, staff), code, deps.now(), staff.totp_last_step)
        if step is not None:
            staff.totp_last_step = step
            ok = True
    elif recovery_code:
        ok = _use_recovery_code(session, deps, staff, recovery_code)
    if not ok:
        _count_failure(session, deps, policy, staff, who)
        audit.record(
            session, who, "auth.mfa_failed", target_type="session", target_id=row.id, now=deps.now()
        )
        raise keep(
            _locked_error(staff, deps.now()) or MfaInvalid("wrong, expired or already used code")
        )
    staff.failed_logins = 0
    row.stage = SessionStage.ACTIVE
    row.last_seen_at = deps.now()
    token = _issue_refresh(session, deps, row)
    audit.record(
        session, who, "auth.mfa_passed", target_type="session", target_id=row.id,
        after={"method": "totp" if code else "recovery_code"}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return LoginResult(staff, row.id, "active", token)


def begin_mfa_enrolment(
    session: Session, deps: CoreDeps, actor: Principal, staff_id: int, issuer: str
) -> tuple[str, str]:
    """A new TOTP secret (stored encrypted, not yet enabled): (secret, provisioning URI)."""
    staff = get_staff(session, staff_id)
    if staff.totp_enabled:
        raise DomainError(
            "MFA is already enrolled; an administrator can reset it", reason="enrolled"
        )
    secret = pyotp.random_base32()
    staff.totp_secret_ciphertext = deps.vault.encrypt(secret)
    staff.totp_last_step = None
    audit.record(
        session,
        actor,
        "staff.mfa_enrol_started",
        target_type="staff",
        target_id=staff.id,
        now=deps.now(),
    )
    session.flush()
    uri = pyotp.TOTP(secret, interval=TOTP_STEP_S).provisioning_uri(
        name=staff.username, issuer_name=issuer
    )
    return secret, uri


def confirm_mfa_enrolment(
    session: Session,
    deps: CoreDeps,
    policy: AuthPolicy,
    actor: Principal,
    staff_id: int,
    code: str,
    *,
    session_id: str | None = None,
) -> tuple[list[str], LoginResult | None]:
    """Enable TOTP after a first valid code; returns the one-time recovery codes (shown once).

    When the login was waiting for enrolment (``mfa_enrol``), that session
    becomes active and gets its first refresh token.
    """
    staff = session.scalar(select(StaffUser).where(StaffUser.id == staff_id).with_for_update())
    if staff is None:
        raise NotFound("no such staff account")
    if staff.totp_enabled:
        raise DomainError("MFA is already enrolled", reason="enrolled")
    step = totp_step(_totp(deps, staff), code, deps.now(), staff.totp_last_step)
    if step is None:
        raise MfaInvalid("wrong or expired code: check the phone's clock and try again")
    staff.totp_last_step = step
    staff.totp_enabled = True
    codes = []
    session.execute(
        update(StaffRecoveryCode)
        .where(StaffRecoveryCode.staff_id == staff.id, StaffRecoveryCode.used_at.is_(None))
        .values(used_at=deps.now())
    )
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5).upper()
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(StaffRecoveryCode(staff_id=staff.id, code_hash=token_digest(raw)))
    result = None
    if session_id is not None:
        row = session.get(StaffSession, session_id)
        if row is not None and row.stage == SessionStage.MFA_ENROL and row.revoked_at is None:
            row.stage = SessionStage.ACTIVE
            row.last_seen_at = deps.now()
            result = LoginResult(staff, row.id, "active", _issue_refresh(session, deps, row))
    audit.record(
        session,
        actor,
        "staff.mfa_enrolled",
        target_type="staff",
        target_id=staff.id,
        now=deps.now(),
    )
    session.flush()
    return codes, result


def refresh(
    session: Session, deps: CoreDeps, policy: AuthPolicy, token: str, *, address: str = ""
) -> LoginResult:
    """Trade a refresh token for the next one; a reused token revokes its whole session."""
    row = session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == token_digest(token or ""))
        .with_for_update()
    )
    if row is None:
        raise SessionInvalid("unknown refresh token: sign in again", reason="unknown")
    if row.used_at is not None:
        stolen = session.get(StaffSession, row.session_id)
        if stolen is not None and stolen.revoked_at is None:
            stolen.revoked_at = deps.now()
            stolen.revoked_reason = "refresh_reuse"
            owner = get_staff(session, stolen.staff_id)
            audit.record(
                session, principal_for(owner, address=address), "auth.refresh_reuse",
                target_type="session", target_id=stolen.id, now=deps.now(),
            )  # fmt: skip
        raise keep(
            RefreshReused("refresh token already used: the session is revoked; sign in again")
        )
    live = _live_session(session, deps, policy, row.session_id, lock=True)
    if live.stage != SessionStage.ACTIVE:
        raise SessionInvalid("session is not active", reason="stage")
    staff = get_staff(session, live.staff_id)
    if not staff.is_active:
        raise SessionInvalid("account disabled", reason="disabled")
    row.used_at = deps.now()
    live.last_seen_at = deps.now()
    new = _issue_refresh(session, deps, live)
    session.flush()
    return LoginResult(staff, live.id, "active", new)


def revoke_session(
    session: Session, deps: CoreDeps, actor: Principal, session_id: str, reason: str = "logout"
) -> None:
    row = session.get(StaffSession, session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = deps.now()
        row.revoked_reason = reason
        audit.record(
            session,
            actor,
            f"auth.{reason}",
            target_type="session",
            target_id=row.id,
            now=deps.now(),
        )
        session.flush()


def _revoke_all(session: Session, deps: CoreDeps, staff_id: int, reason: str) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=deps.now(), revoked_reason=reason)
    )


def rotate_totp_secrets(session: Session, deps: CoreDeps) -> int:
    """Re-encrypt every TOTP secret under the newest PII key (``rotate-pii-keys``)."""
    count = 0
    for staff in session.scalars(
        select(StaffUser).where(StaffUser.totp_secret_ciphertext.is_not(None))
    ):
        assert staff.totp_secret_ciphertext is not None
        staff.totp_secret_ciphertext = deps.vault.rotate(staff.totp_secret_ciphertext)
        count += 1
    session.flush()
    return count


# ------------------------------------------------------------ partner keys


def _split_key(key: str) -> tuple[str, str] | None:
    parts = (key or "").strip().split("_")
    if len(parts) != 3 or parts[0] != "sk" or len(parts[1]) != 8 or len(parts[2]) < 20:
        return None
    return parts[1], parts[2]


def create_api_client(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    name: str,
    permissions: list[str],
    branch: str | None = None,
) -> tuple[ApiClient, str]:
    """A new partner key ``sk_<prefix>_<secret>``; returned once, stored as SHA-256.

    Made at once for the system only when its permissions move money or read personal
    data; a member of staff asks with ``request_api_client`` instead."""
    if actor.kind != "system" and grant_needs_approval(set(permissions)):
        raise ApprovalRequired(
            "a key that can move money or read personal data needs another person's "
            "approval: ask for it (POST /api/v1/api-clients) and a manager approves it"
        )
    client, key = _add_api_client(
        session, deps, actor, name=name, permissions=permissions, branch=branch, pending=False
    )
    session.flush()
    return client, key


def _add_api_client(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    name: str,
    permissions: list[str],
    branch: str | None,
    pending: bool,
) -> tuple[ApiClient, str]:
    label = " ".join((name or "").split())
    if not 3 <= len(label) <= 80:
        raise InvalidInput("name: 3-80 characters", field="name")
    wanted = sorted(set(permissions))
    if not wanted or not set(wanted) <= INTEGRATION_GRANTABLE:
        raise InvalidInput(
            f"permissions must be some of {', '.join(sorted(INTEGRATION_GRANTABLE))}",
            field="permissions",
        )
    if branch is not None and not BRANCH_RE.match(branch):
        raise InvalidInput("branch: 1-24 letters, digits, space, dash", field="branch")
    if session.scalar(select(ApiClient.id).where(ApiClient.name == label)) is not None:
        raise DomainError("a client with this name exists", field="name", reason="taken")
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    client = ApiClient(
        name=label,
        key_prefix=prefix,
        key_hash=token_digest(secret),
        permissions=" ".join(wanted),
        branch=branch,
        is_active=not pending,
        pending_approval_id=0 if pending else None,
        created_by_id=actor.id if actor.kind == "staff" else None,
        created_at=deps.now(),
    )
    session.add(client)
    session.flush()
    audit.record(
        session, actor, "apiclient.create", target_type="api_client", target_id=client.id,
        after={"name": label, "permissions": wanted, "branch": branch, "pending": pending},
        now=deps.now(),
    )  # fmt: skip
    return client, f"sk_{prefix}_{secret}"


def authenticate_api_key(
    session: Session, deps: CoreDeps, key: str, *, address: str = "", request_id: str = ""
) -> Principal:
    parts = _split_key(key)
    client = (
        session.scalar(select(ApiClient).where(ApiClient.key_prefix == parts[0])) if parts else None
    )
    if (
        parts is None
        or client is None
        or not client.is_active
        or not hmac.compare_digest(client.key_hash, token_digest(parts[1]))
    ):
        raise AuthFailed("invalid API key")
    now = deps.now()
    if client.last_used_at is None or now - client.last_used_at > timedelta(minutes=1):
        client.last_used_at = now
        session.flush()
    return Principal(
        kind="api_client",
        id=client.id,
        name=client.name,
        role="integration",
        branch=client.branch,
        permissions=frozenset(client.permissions.split()) & INTEGRATION_GRANTABLE,
        address=address,
        request_id=request_id,
    )


def list_api_clients(session: Session) -> list[ApiClient]:
    return list(session.scalars(select(ApiClient).order_by(ApiClient.id)))


def revoke_api_client(
    session: Session, deps: CoreDeps, actor: Principal, client_id: int
) -> ApiClient:
    client = session.get(ApiClient, client_id)
    if client is None:
        raise NotFound("no such API client")
    client.is_active = False
    client.pending_approval_id = None  # a key revoked while it waits: the approval fails
    audit.record(
        session,
        actor,
        "apiclient.revoke",
        target_type="api_client",
        target_id=client_id,
        now=deps.now(),
    )
    session.flush()
    return client


# ============================================================================
# Separation of duties (issue 10, part 4): an account or key that can move money or
# read personal data (core.kernel.permissions.PERMISSION_RISK) is asked for by one person and
# approved by another holding APPROVER_PERMISSION; the approval runs in core.approvals.engine
# ("staff.create" / "apiclient.create") and enables it. Until then it does nothing.
# ============================================================================


def request_staff_account(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    branch: str | None = None,
    large_threshold_cents: int,
) -> tuple[StaffUser, ApprovalRequest | None]:
    """A new account with a first password the person must change: made at once for a role
    that needs no approval, else made disabled with a pending request."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if not role_needs_approval(role):
        staff = create_staff(
            session, deps, actor, username=username, full_name=full_name, role=role,
            password=password, branch=branch, must_change_password=True,
        )  # fmt: skip
        return staff, None
    staff = _add_staff(
        session, deps, actor, username=username, full_name=full_name, role=role,
        password=password, branch=branch, must_change_password=True, pending=True,
    )  # fmt: skip
    req = approvals.request_approval(
        session, deps, actor, "staff.create",
        payload={"staff_id": staff.id, "username": staff.username, "full_name": staff.full_name,
                 "role": staff.role, "branch": staff.branch},
        note=f"new {role} account {staff.username}", large_threshold_cents=large_threshold_cents,
    )  # fmt: skip
    staff.pending_approval_id = req.id
    session.flush()
    return staff, req


def request_api_client(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    name: str,
    permissions: list[str],
    branch: str | None = None,
    large_threshold_cents: int,
) -> tuple[ApiClient, str, ApprovalRequest | None]:
    """A new partner key (shown once, now): active at once when its permissions need no
    approval, else inactive until another person approves the pending request."""
    if not grant_needs_approval(set(permissions)):
        client, key = create_api_client(
            session, deps, actor, name=name, permissions=permissions, branch=branch
        )
        return client, key, None
    client, key = _add_api_client(
        session, deps, actor, name=name, permissions=permissions, branch=branch, pending=True
    )
    req = approvals.request_approval(
        session, deps, actor, "apiclient.create",
        payload={"client_id": client.id, "name": client.name,
                 "permissions": client.permissions.split(), "branch": client.branch},
        note=f"new partner key {client.name}", large_threshold_cents=large_threshold_cents,
    )  # fmt: skip
    client.pending_approval_id = req.id
    session.flush()
    return client, key, req


def checker_of(session: Session, req: ApprovalRequest) -> Principal:
    """The member of staff deciding ``req``, as the actor of what the approval does (its
    audit rows name the checker, not the system)."""
    assert req.checker_id is not None
    return principal_for(get_staff(session, req.checker_id))


# The checks and executions of "staff.create" and "apiclient.create"
# (core.staff.approval_actions registers them with core.approvals.engine).


def check_staff_request(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    staff = session.get(StaffUser, p.get("staff_id"))
    if staff is None or staff.pending_approval_id is None or staff.is_active:
        raise InvalidInput("no such account waiting for approval", field="staff_id")


def approve_staff_request(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    staff = session.scalar(select(StaffUser).where(StaffUser.id == p["staff_id"]).with_for_update())
    if staff is None or staff.pending_approval_id != req.id:
        raise DomainError("the account no longer waits for this approval", reason="changed")
    if staff.role != p["role"] or staff.branch != p.get("branch"):
        raise DomainError("the account is not the one asked for", reason="changed")
    before = _staff_view(staff)
    staff.is_active = True
    staff.pending_approval_id = None
    audit.record(
        session, checker_of(session, req), "staff.approved", target_type="staff",
        target_id=staff.id, before=before, after=_staff_view(staff), now=deps.now(),
    )  # fmt: skip
    return {"staff_id": staff.id, "username": staff.username, "role": staff.role}


def check_api_client_request(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    client = session.get(ApiClient, p.get("client_id"))
    if client is None or client.pending_approval_id is None or client.is_active:
        raise InvalidInput("no such key waiting for approval", field="client_id")


def approve_api_client_request(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    client = session.scalar(
        select(ApiClient).where(ApiClient.id == p["client_id"]).with_for_update()
    )
    if client is None or client.pending_approval_id != req.id:
        raise DomainError("the key no longer waits for this approval (revoked?)", reason="changed")
    if client.permissions.split() != p["permissions"] or client.branch != p.get("branch"):
        raise DomainError("the key is not the one asked for", reason="changed")
    client.is_active = True
    client.pending_approval_id = None
    audit.record(
        session, checker_of(session, req), "apiclient.approved", target_type="api_client",
        target_id=client.id, after={"name": client.name, "permissions": p["permissions"]},
        now=deps.now(),
    )  # fmt: skip
    return {"client_id": client.id, "name": client.name, "permissions": p["permissions"]}


def _serialise_bootstrap(session: Session) -> None:
    """Two bootstraps at once run one after the other (the audit chain's head row)."""
    session.execute(select(AuditChainHead.id).where(AuditChainHead.id == 1).with_for_update())


def bootstrap_admin(
    session: Session, deps: CoreDeps, *, username: str, full_name: str, password: str
) -> StaffUser:
    """The first administrator, on a system with no staff account at all (``create-admin``).

    Bounded: once any account exists (accounts are disabled, never deleted), it refuses."""
    _serialise_bootstrap(session)
    if session.scalar(select(func.count()).select_from(StaffUser)):
        raise BootstrapClosed(
            "staff accounts exist: create-admin only sets up an empty system; ask for new "
            "accounts through the API (POST /api/v1/staff), approved by a manager"
        )
    return create_staff(
        session, deps, SYSTEM, username=username, full_name=full_name, role="admin",
        password=password,
    )  # fmt: skip


def bootstrap_first_manager(
    session: Session, deps: CoreDeps, *, username: str, full_name: str, password: str
) -> StaffUser:
    """The first approver (a manager), so that later requests have someone to approve
    them (``create-first-manager``). Bounded: once an account of a role holding
    ``APPROVER_PERMISSION`` exists or existed, it refuses."""
    _serialise_bootstrap(session)
    approver_roles = [r for r in ROLES if APPROVER_PERMISSION in permissions_for_role(r)]
    if session.scalar(select(StaffUser.id).where(StaffUser.role.in_(approver_roles)).limit(1)):
        raise BootstrapClosed(
            "a manager account exists (or existed): ask for new accounts through the API "
            "(POST /api/v1/staff), approved by a manager"
        )
    return create_staff(
        session, deps, SYSTEM, username=username, full_name=full_name, role="manager",
        password=password,
    )  # fmt: skip
