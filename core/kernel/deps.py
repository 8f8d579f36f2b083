"""What use cases need besides a session: secrets-backed services and a clock.

Built once per process by ``runtime.build_runtime`` (the app, ``manage.py``, workers)
from the settings and passed to every use case, so ``core/`` reads no
environment and tests can pass a fixed clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from core.kernel.bureau import BureauAccess
from core.kernel.passwords import StaffPasswords
from core.kernel.pins import PinHasher
from core.kernel.security import PiiVault
from db.base import utcnow

# The one default SACCO name and USSD code: settings (config.py), CoreDeps and the USSD
# channel's own config fall back to these, so a demo without SACCO_NAME names one SACCO.
DEFAULT_SACCO_NAME = "Umoja SACCO"
DEFAULT_USSD_CODE = "*384*44135#"


@dataclass(frozen=True)
class CoreDeps:
    pins: PinHasher
    vault: PiiVault
    now: Callable[[], datetime] = field(default=utcnow)
    passwords: StaffPasswords = field(default_factory=StaffPasswords)
    sacco_name: str = DEFAULT_SACCO_NAME
    ussd_code: str = DEFAULT_USSD_CODE
    # The credit bureau (issue 15; None: not configured, scores use the SACCO's own record).
    bureau: BureauAccess | None = None
