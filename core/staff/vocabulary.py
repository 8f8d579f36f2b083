"""Staff's words: how far a sign-in has come (``staff_sessions.stage``). ``StrEnum``: each
member is the string stored."""

from __future__ import annotations

from enum import StrEnum


class SessionStage(StrEnum):
    """password accepted -> ``mfa_pending`` (a TOTP code is due) or ``mfa_enrol`` (the
    first sign-in of a role that needs MFA enrols it) -> ``active``."""

    MFA_PENDING = "mfa_pending"
    MFA_ENROL = "mfa_enrol"
    ACTIVE = "active"
