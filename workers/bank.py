"""Bank jobs: thin — open a unit of work, call core, call the bank client.

``send_bank_transfer(transfer_id)`` sends one transfer; ``settle_bank_transfers()`` asks
the bank about the ones left waiting (the scheduler's job, and ``manage.py
bank-settle``). In process they get the runner's bound context (its settings and
runtime); in an RQ worker, one built from the environment on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from integrations.bank.client import BankClient
from integrations.bank.wiring import client_from_settings, policy_from_settings, settle_waiting
from integrations.bank.wiring import send_transfer as _send

_clients: dict[str, BankClient] = {}
_lock = threading.Lock()


_worker: tuple[Any, Any] | None = None  # an RQ worker process's own, built once


def _parts(ctx: Any) -> tuple[Any, Any]:
    global _worker
    if ctx is not None:
        return ctx.settings, ctx.runtime
    with _lock:
        if _worker is None:
            from config import load_settings
            from runtime import build_runtime

            settings = load_settings()
            _worker = (settings, build_runtime(settings))
        return _worker


def _client(settings: Any) -> BankClient:
    with _lock:
        if settings.bank_base_url not in _clients:
            _clients[settings.bank_base_url] = client_from_settings(settings)
        return _clients[settings.bank_base_url]


def send_bank_transfer(transfer_id: int, *, ctx: Any = None) -> str:
    settings, rt = _parts(ctx)
    return _send(
        rt.session_factory, rt.deps, policy_from_settings(settings), _client(settings), transfer_id
    )


def settle_bank_transfers(*, ctx: Any = None) -> dict[str, int]:
    settings, rt = _parts(ctx)
    return settle_waiting(rt.session_factory, rt.deps, _client(settings))
