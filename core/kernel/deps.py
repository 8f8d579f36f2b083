"""What use cases need besides a session: secrets-backed services and a clock.

Built once per process by ``runtime.build_runtime`` (the app, ``manage.py``, workers)
from the settings and passed to every use case, so ``core/`` reads no
environment and tests can pass a fixed clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from core.kernel.passwords import StaffPasswords
from core.kernel.pins import PinHasher
from core.kernel.security import PiiVault
from db.base import utcnow


@dataclass(frozen=True)
class CoreDeps:
    pins: PinHasher
    vault: PiiVault
    now: Callable[[], datetime] = field(default=utcnow)
    passwords: StaffPasswords = field(default_factory=StaffPasswords)
    sacco_name: str = "Umoja SACCO"
    ussd_code: str = "*384*44135#"
