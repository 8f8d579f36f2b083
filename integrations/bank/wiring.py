"""What the bank flows need at run time, built once from the settings, and the two
steps the workers run: send one transfer, settle the ones left waiting."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from config import Settings
from core.kernel.deps import CoreDeps
from core.payments.bank import transfers
from core.payments.bank.transfers import BankPolicy
from db.models_bank import BankTransfer
from db.session import run_in_transaction
from integrations.bank.client import BankClient, BankConfig, BankDown, BankRefused, BankUnsure

log = logging.getLogger(__name__)
ASK_AFTER = timedelta(minutes=5)


def policy_from_settings(settings: Settings) -> BankPolicy:
    return BankPolicy(
        own_bank_code=settings.bank_own_code,
        debit_account=settings.bank_debit_account,
        pesalink_max_cents=settings.bank_pesalink_max_cents,
        payout_min_cents=settings.bank_payout_min_cents,
    )


def client_from_settings(settings: Settings) -> BankClient:
    return BankClient(
        BankConfig(
            base_url=settings.bank_base_url,
            consumer_key=settings.bank_consumer_key,
            consumer_secret=settings.bank_consumer_secret,
            company_code=settings.bank_company_code,
            debit_account=settings.bank_debit_account,
            read_timeout=settings.bank_timeout_seconds,
        )
    )


def allowed(networks: str, address: str) -> bool:
    """``address`` is in one of the comma-separated ``networks`` (empty: every address)."""
    parts = [p.strip() for p in networks.split(",") if p.strip()]
    if not parts:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(p, strict=False) for p in parts)


@dataclass
class BankContext:
    settings: Settings
    policy: BankPolicy
    _client: BankClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def client(self) -> BankClient:
        with self._lock:
            if self._client is None:
                self._client = client_from_settings(self.settings)
            return self._client


def send_transfer(
    factory: Callable[[], Session],
    deps: CoreDeps,
    policy: BankPolicy,
    client: BankClient,
    transfer_id: int,
) -> str:
    """Claim, send and record one transfer; its status afterwards (or ``skipped``)."""
    order = run_in_transaction(
        factory, lambda s: transfers.claim_for_sending(s, deps, policy, transfer_id)
    )
    if order is None:
        return "skipped"
    try:
        retrieval = client.transfer(order)
    except BankRefused as exc:
        code, desc = exc.code, exc.description
        return run_in_transaction(
            factory, lambda s: transfers.record_refused(s, deps, transfer_id, code, desc)
        )
    except BankDown as exc:  # never reached the bank: nothing moved, safe to release
        why = str(exc)
        return run_in_transaction(
            factory, lambda s: transfers.record_refused(s, deps, transfer_id, "down", why)
        )
    except BankUnsure as exc:  # it may have been made: keep the hold, ask later
        why = str(exc)
        return run_in_transaction(
            factory, lambda s: transfers.record_unsure(s, deps, transfer_id, why)
        )
    return run_in_transaction(
        factory, lambda s: transfers.record_accepted(s, deps, transfer_id, retrieval)
    )


def settle_waiting(
    factory: Callable[[], Session], deps: CoreDeps, client: BankClient
) -> dict[str, int]:
    """Ask the bank about every transfer sent or unknown for ``ASK_AFTER``: its answer
    settles it; one the bank does not know goes to review. Counts per outcome."""
    ids = run_in_transaction(
        factory, lambda s: transfers.unsettled(s, older_than=deps.now() - ASK_AFTER)
    )
    counts: dict[str, int] = {}
    for transfer_id in ids:
        outcome = _ask_about(factory, deps, client, transfer_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _ask_about(
    factory: Callable[[], Session], deps: CoreDeps, client: BankClient, transfer_id: int
) -> str:
    def reference_of(s: Session) -> str:
        return s.get_one(BankTransfer, transfer_id).reference

    def review(s: Session) -> str:
        return transfers.mark_for_review(s, deps, transfer_id, "the bank does not know it")

    try:
        result = client.transfer_status(run_in_transaction(factory, reference_of))
    except (BankDown, BankRefused):
        return "asked_later"
    if result is None:
        return run_in_transaction(factory, review)
    found = result

    def apply(s: Session) -> str:
        return transfers.apply_result(s, deps, found)

    return run_in_transaction(factory, apply)
