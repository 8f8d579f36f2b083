"""The jobs the savings domain asks for: typed, ids only, handed to the job queue after
commit (``core.kernel.uow``; the queue maps each type to its worker in ``workers.runner``)."""

from __future__ import annotations

from dataclasses import dataclass

from core.kernel.uow import Job


@dataclass(frozen=True)
class PayYearEndByMpesa(Job):
    """Queue the M-Pesa B2C payouts of a posted year-end run's ``mpesa`` lines
    (``core.payments.mpesa.dividend_payouts``; running it again queues nothing twice)."""

    run_id: int
