"""Everything the M-Pesa flows need at run time, built once from the settings.

``MpesaContext`` holds the runtime (database, core deps), the policy (limits,
tariff, SIM-swap rules as plain values for ``core.payments.mpesa.flows``), the Daraja client
(made on first use, so a process that never calls Daraja never needs the
certificate), the SIM-swap checker and the job queue. The Flask app keeps it in
``app.extensions["mpesa"]``; workers build their own (``workers.mpesa``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import requests

from config import Settings
from core.kernel import uow
from core.kernel.uow import Job
from core.payments.mpesa.flows import SimSwapChecker
from core.payments.mpesa.rules import MpesaPolicy, parse_tariff
from integrations.africastalking.simswap import AfricasTalkingSimSwapChecker
from integrations.mpesa.client import CallbackUrls, DarajaClient, DarajaConfig
from runtime import Runtime


class JobQueue(Protocol):
    def submit(self, job: Job) -> None: ...

    def bind(self, context: Any) -> None: ...


def policy_from_settings(settings: Settings) -> MpesaPolicy:
    return MpesaPolicy(
        deposit_min_cents=settings.mpesa_deposit_min_cents,
        deposit_max_cents=settings.mpesa_deposit_max_cents,
        withdrawal_min_cents=settings.mpesa_withdrawal_min_cents,
        withdrawal_max_cents=settings.mpesa_withdrawal_max_cents,
        withdrawal_daily_max_cents=settings.mpesa_withdrawal_daily_max_cents,
        loan_payout_max_cents=settings.mpesa_loan_payout_max_cents,
        tariff=parse_tariff(settings.mpesa_withdrawal_fee_tariff),
        sim_swap_window=timedelta(days=settings.sim_swap_window_days),
        sim_swap_on_failure=settings.sim_swap_on_check_failure,
        sim_swap_failure_allow_max_cents=settings.sim_swap_failure_allow_max_cents,
        sim_swap_failure_daily_max_cents=settings.sim_swap_failure_daily_max_cents,
        sim_swap_cache=timedelta(seconds=settings.sim_swap_cache_seconds),
        reconcile_after=timedelta(minutes=settings.mpesa_reconcile_after_minutes),
        twin_window=timedelta(minutes=settings.mpesa_twin_window_minutes),
    )


def daraja_config(settings: Settings, certificate_pem: bytes = b"") -> DarajaConfig:
    return DarajaConfig(
        base_url=settings.mpesa_base_url,
        consumer_key=settings.mpesa_consumer_key,
        consumer_secret=settings.mpesa_consumer_secret,
        shortcode=settings.mpesa_shortcode,
        passkey=settings.mpesa_passkey,
        b2c_shortcode=settings.mpesa_b2c_shortcode,
        initiator_name=settings.mpesa_initiator_name,
        initiator_password=settings.mpesa_initiator_password,
        certificate_pem=certificate_pem,
        callbacks=CallbackUrls.under(
            settings.mpesa_callback_base_url, settings.mpesa_callback_token
        ),
        read_timeout=settings.mpesa_timeout_seconds,
    )


def load_certificate(settings: Settings) -> bytes:
    """The configured certificate; in demo/test without one, the stand-in's own.

    In production without one, STK and C2B still work; a payout then fails cleanly
    (the client refuses to build a SecurityCredential, the hold is released)."""
    if settings.mpesa_certificate_path:
        return Path(settings.mpesa_certificate_path).read_bytes()
    if settings.is_production:
        return b""
    with requests.get(settings.mpesa_base_url.rstrip("/") + "/_certificate", timeout=5) as r:
        r.raise_for_status()
        return r.content


@dataclass
class MpesaContext:
    runtime: Runtime
    policy: MpesaPolicy
    settings: Settings
    jobs: JobQueue
    sim_swap: SimSwapChecker
    daraja_factory: Any = None  # () -> DarajaClient; default builds from settings
    _daraja: DarajaClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def shortcode(self) -> str:
        return self.settings.mpesa_shortcode

    @property
    def stk(self) -> bool:
        """STK pushes can be sent: M-Pesa Express (Lipa na M-Pesa Online) has its own
        passkey; the paybill's C2B confirmations need none."""
        return bool(self.settings.mpesa_passkey)

    @property
    def daraja(self) -> DarajaClient:
        with self._lock:
            if self._daraja is None:
                if self.daraja_factory is not None:
                    self._daraja = self.daraja_factory()
                else:
                    cert = load_certificate(self.settings)
                    self._daraja = DarajaClient(daraja_config(self.settings, cert))
            return self._daraja

    def close(self) -> None:
        with self._lock:
            if self._daraja is not None:
                self._daraja.close()
                self._daraja = None


def build_context(
    settings: Settings,
    runtime: Runtime,
    jobs: JobQueue,
    *,
    sim_swap: SimSwapChecker | None = None,
    daraja_factory: Any = None,
) -> MpesaContext:
    checker = sim_swap or AfricasTalkingSimSwapChecker(
        settings.at_username,
        settings.at_api_key,
        settings.at_insights_url,
        settings.at_timeout_seconds,
    )
    ctx = MpesaContext(
        runtime=runtime,
        policy=policy_from_settings(settings),
        settings=settings,
        jobs=jobs,
        sim_swap=checker,
        daraja_factory=daraja_factory,
    )
    jobs.bind(ctx)  # in-process jobs run with this context, not a process-wide one
    # Jobs core defers (an STK push, a payout) go to this context's queue once their unit
    # of work commits; looked up at each commit, so a test may swap the queue.
    uow.install_jobs(runtime.session_factory, lambda job: ctx.jobs.submit(job))
    return ctx
