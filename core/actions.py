"""Every maker-checker action, registered by the domain that owns it.

The approvals engine knows no action; the composition root calls ``register_all`` once
(``app_factory.build_runtime``), before any request is made or decided. A new action is
a check and a verb in its domain's ``approval_actions.py`` and one line here.
"""

from __future__ import annotations

from core.accounting import adjustments
from core.checkoff import approval_actions as checkoff
from core.loans import approval_actions as loans
from core.members import approval_actions as members
from core.payments.bank import approval_actions as bank
from core.payments.mpesa import approval_actions as mpesa
from core.risk import approval_actions as risk
from core.savings import approval_actions as savings
from core.staff import approval_actions as staff


def register_all() -> None:
    for domain in (members, adjustments, mpesa, risk, staff, loans, savings, bank, checkoff):
        domain.register_actions()
