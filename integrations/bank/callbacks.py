"""The bank's result callback: stored raw first, then applied exactly once.

``receive`` stores the body and headers in their own transaction (``bank_callbacks``),
then reads it and settles the transfer (``core.payments.bank.transfers.apply_result``) in
another, and marks the stored row with what happened. A body we cannot read is kept as
``malformed``; a reference we do not know as ``unmatched``; a copy of a callback already
applied answers ``duplicate`` and moves nothing. The bank is answered 200 in every case
but a failure of our own (500: it may send again; the status query catches it anyway).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.payments.bank.transfers import apply_result
from core.payments.bank.vocabulary import CallbackStatus
from db.models_bank import BankCallback
from db.session import run_in_transaction
from integrations.bank.client import parse_callback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    outcome: str


def receive(
    factory: Callable[[], Session],
    deps: CoreDeps,
    *,
    headers: Mapping[str, str],
    body: bytes,
    remote_addr: str,
) -> Answer:
    def store(s: Session) -> int:
        row = BankCallback(
            received_at=deps.now(), remote_addr=remote_addr[:64],
            headers=json.dumps(dict(headers))[:4000], body=body,
            status=CallbackStatus.RECEIVED,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return row.id

    callback_id = run_in_transaction(factory, store)
    try:
        result = parse_callback(body)
    except (ValueError, TypeError):
        _mark(factory, deps, callback_id, CallbackStatus.MALFORMED, "malformed", None, None)
        return Answer(200, "malformed")
    try:
        outcome = run_in_transaction(factory, lambda s: apply_result(s, deps, result))
    except Exception:
        log.exception("bank callback %s could not be applied", callback_id)
        _mark(factory, deps, callback_id, CallbackStatus.ERROR, "error", result.reference,
              result.bank_reference)  # fmt: skip
        return Answer(500, "error")
    status = CallbackStatus.UNMATCHED if outcome == "unmatched" else CallbackStatus.PROCESSED
    _mark(factory, deps, callback_id, status, outcome, result.reference, result.bank_reference)
    return Answer(200, outcome)


def _mark(
    factory: Callable[[], Session],
    deps: CoreDeps,
    callback_id: int,
    status: str,
    outcome: str,
    reference: str | None,
    bank_reference: str | None,
) -> None:
    def work(s: Session) -> None:
        row = s.get_one(BankCallback, callback_id)
        row.status = status
        row.outcome = outcome[:40]
        row.transaction_reference = reference
        row.bank_reference = bank_reference or None
        row.processed_at = deps.now()

    run_in_transaction(factory, work)
