"""One small tree of errors, each with a stable ``code``.

Every edge maps codes to its own medium: the API to ``application/problem+json``
with a 4xx, USSD to a re-prompt or a polite ``END``, SMS to a reply. Messages
shown to members live in the message catalogues, not here: ``detail`` is for
logs and staff, and never contains a PIN or a national ID.
"""

from __future__ import annotations

from typing import Any


class SaccoError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "error"

    def __init__(self, detail: str = "", **context: Any) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.context = context


class InvalidInput(SaccoError):
    """Input that can never be valid: a malformed amount, phone, PIN or ID."""

    code = "invalid_input"

    def __init__(
        self, detail: str = "", *, field: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(detail, field=field, reason=reason or "invalid")
        self.field = field
        self.reason = reason or "invalid"


class DomainError(SaccoError):
    """A valid request that the rules refuse in the current state."""

    code = "domain_error"


class NotFound(DomainError):
    code = "not_found"


class UnbalancedEntry(DomainError):
    code = "unbalanced_entry"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"


class IdempotencyConflict(DomainError):
    """The same idempotency key was reused for a different request."""

    code = "idempotency_conflict"


class HoldNotPending(DomainError):
    code = "hold_not_pending"


class AlreadyReversed(DomainError):
    code = "already_reversed"


class DuplicateMember(DomainError):
    code = "duplicate_member"


class PinLocked(DomainError):
    """PIN use is locked; ``until`` is None when only a staff reset unlocks it."""

    code = "pin_locked"

    def __init__(self, detail: str = "", *, until: Any = None) -> None:
        super().__init__(detail, until=until)
        self.until = until


class PinInvalid(DomainError):
    code = "pin_invalid"

    def __init__(self, detail: str = "", *, attempts_left: int = 0) -> None:
        super().__init__(detail, attempts_left=attempts_left)
        self.attempts_left = attempts_left


class MemberNotAllowed(DomainError):
    """The member's status does not allow this action."""

    code = "member_not_allowed"
