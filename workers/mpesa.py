"""M-Pesa jobs: thin — open a unit of work, call core, call the Daraja client.

Job entry points take only ids (RQ-ready): ``send_stk_push(request_id)``,
``send_b2c(payout_id)``, ``query_b2c_status(payout_id)``, ``reconcile_pending()``.
In process they get the context of the app whose runner queued them (``ctx=``); in an
RQ worker process, the worker's own, built from the environment on first use. The
``run_*`` functions take the context explicitly (tests, commands).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.payments.mpesa import flows as mpesa
from db.models_mpesa import B2CPayout, MpesaCallback
from db.session import run_in_transaction
from integrations.mpesa import callbacks
from integrations.mpesa.client import (
    DarajaAuthError,
    DarajaError,
    DarajaRejected,
    DarajaUnavailable,
)
from integrations.mpesa.wiring import MpesaContext, build_context
from workers.runner import InProcessJobs

log = logging.getLogger(__name__)
REPLAY_AFTER = timedelta(seconds=5)
# An RQ worker process's own context, built from the environment on its first M-Pesa
# job (the worker's composition root). An app never sets it: in-process runners pass
# their app's context to every job (``InProcessJobs.bind``).
_worker_context: MpesaContext | None = None
_worker_context_lock = threading.Lock()


def worker_context() -> MpesaContext:
    global _worker_context
    with _worker_context_lock:
        if _worker_context is None:
            from config import load_settings
            from runtime import build_runtime

            settings = load_settings()
            _worker_context = build_context(
                settings, build_runtime(settings), InProcessJobs(synchronous=True)
            )
        return _worker_context


# ------------------------------------------------------------------ entry points
# Each takes ids only (RQ-ready) and, in process, the context of the app that queued it.


def send_stk_push(request_id: int, *, ctx: MpesaContext | None = None) -> None:
    run_send_stk_push(ctx or worker_context(), request_id)


def send_b2c(payout_id: int, *, ctx: MpesaContext | None = None) -> None:
    run_send_b2c(ctx or worker_context(), payout_id)


def query_b2c_status(payout_id: int, *, ctx: MpesaContext | None = None) -> None:
    run_query_b2c_status(ctx or worker_context(), payout_id)


def reconcile_pending(*, ctx: MpesaContext | None = None) -> None:
    log.info("mpesa reconciliation: %s", run_reconcile(ctx or worker_context()))


# ------------------------------------------------------------------ work


def run_send_stk_push(ctx: MpesaContext, request_id: int) -> str:
    factory, deps = ctx.runtime.session_factory, ctx.runtime.deps
    job = run_in_transaction(factory, lambda s: mpesa.claim_stk_push(s, deps, request_id))
    if job is None:
        return "skipped"
    try:
        accepted = ctx.daraja.stk_push(
            job.msisdn, job.amount_cents, job.account_reference, job.description
        )
    except (DarajaError, ValueError) as exc:
        maybe = isinstance(exc, DarajaError) and exc.may_have_taken_effect
        detail = str(exc)
        log.warning("STK push %d failed: %s", request_id, detail)
        run_in_transaction(
            factory,
            lambda s: mpesa.record_stk_send_failed(
                s, deps, request_id, may_have_taken_effect=maybe, detail=detail
            ),
        )
        return "unknown" if maybe else "failed"
    run_in_transaction(
        factory,
        lambda s: mpesa.record_stk_accepted(
            s,
            deps,
            request_id,
            checkout_request_id=accepted.checkout_request_id,
            merchant_request_id=accepted.merchant_request_id,
        ),
    )
    # A callback that beat our own answer was kept as unmatched: apply it now.
    with factory() as session:
        early = list(
            session.scalars(
                select(MpesaCallback.id).where(
                    MpesaCallback.kind == "stk",
                    MpesaCallback.ref == accepted.checkout_request_id,
                    MpesaCallback.status.in_(("unmatched", "received", "error")),
                )
            )
        )
    for callback_id in early:
        callbacks.process_stored(factory, deps, ctx.policy, callback_id, ctx.shortcode)
    return "pending"


def run_send_b2c(ctx: MpesaContext, payout_id: int) -> str:
    """Claim (``sending``, committed), call Daraja with our id, record the answer."""
    factory, deps = ctx.runtime.session_factory, ctx.runtime.deps
    job = run_in_transaction(factory, lambda s: mpesa.claim_b2c(s, deps, payout_id))
    if job is None:
        return "skipped"
    refused = maybe = False
    try:
        accepted = ctx.daraja.b2c_payment(
            job.originator_conversation_id,
            job.msisdn,
            job.amount_cents,
            remarks=f"SACCO withdrawal {job.reference}",
            occasion=job.reference,
            resent=job.resent,
        )
    except DarajaAuthError as exc:  # our credentials: Daraja did nothing; retry later
        detail = str(exc)
    except DarajaRejected as exc:  # a clean refusal of a first attempt: nothing happened
        refused, detail = True, str(exc)
    except DarajaUnavailable as exc:
        maybe, detail = exc.may_have_taken_effect, str(exc)
    except ValueError as exc:  # an amount or number Daraja can never take
        refused, detail = True, str(exc)
    else:
        run_in_transaction(
            factory,
            lambda s: mpesa.record_b2c_accepted(
                s, deps, payout_id, conversation_id=accepted.conversation_id
            ),
        )
        return "sent"
    log.warning("B2C payout %d: %s", payout_id, detail)
    return run_in_transaction(
        factory,
        lambda s: mpesa.record_b2c_send_error(
            s, deps, payout_id, refused=refused, may_have_taken_effect=maybe, detail=detail
        ),
    )


def run_query_b2c_status(ctx: MpesaContext, payout_id: int) -> str:
    factory, deps = ctx.runtime.session_factory, ctx.runtime.deps
    with factory() as session:
        payout = session.get(B2CPayout, payout_id)
        if payout is None or payout.status in mpesa.B2C_FINAL:
            return "skipped"
        ocid = payout.originator_conversation_id
    try:
        accepted = ctx.daraja.transaction_status(original_conversation_id=ocid)
    except (DarajaError, ValueError) as exc:
        log.warning("status query for payout %d failed: %s", payout_id, exc)
        return "error"
    run_in_transaction(
        factory,
        lambda s: mpesa.record_status_query(
            s, deps, payout_id, accepted.originator_conversation_id
        ),
    )
    return "queried"


@dataclass
class ReconcileSummary:
    callbacks_replayed: int = 0
    stk_settled: int = 0
    stk_still_pending: int = 0
    stk_expired: int = 0
    stk_unknown: int = 0
    b2c_sent: dict[str, int] = field(default_factory=dict)
    b2c_queried: int = 0
    b2c_stuck: int = 0


def run_reconcile(ctx: MpesaContext, *, older_than: timedelta | None = None) -> ReconcileSummary:
    """Settle what is still open after ``older_than`` (default: the policy's few minutes)."""
    factory, deps = ctx.runtime.session_factory, ctx.runtime.deps
    summary = ReconcileSummary()
    with factory() as session:
        replay = mpesa.callbacks_to_replay(session, before=deps.now() - REPLAY_AFTER)
    for callback_id in replay:
        answer = callbacks.process_stored(factory, deps, ctx.policy, callback_id, ctx.shortcode)
        summary.callbacks_replayed += answer.outcome != "unmatched"
    due = run_in_transaction(
        factory,
        lambda s: mpesa.due_for_reconciliation(
            s, deps, older_than=ctx.policy.reconcile_after if older_than is None else older_than
        ),
    )
    summary.stk_expired, summary.stk_unknown = due.stk_expired, due.stk_unknown
    summary.b2c_stuck = due.b2c_stuck
    for _request_id, checkout in due.stk_to_query:
        try:
            result = ctx.daraja.stk_query(checkout)
        except DarajaError as exc:
            log.warning("STK query %s failed: %s", checkout, exc)
            continue
        if result.pending or result.result_code is None:
            summary.stk_still_pending += 1
            continue
        outcome = mpesa.StkOutcome(checkout, result.result_code, result.result_desc)

        def settle(s: Session, o: mpesa.StkOutcome = outcome) -> str:
            return mpesa.settle_stk(s, deps, o, twin_window=ctx.policy.twin_window)

        run_in_transaction(factory, settle)
        summary.stk_settled += 1
    for payout_id in due.b2c_to_send:
        status = run_send_b2c(ctx, payout_id)
        summary.b2c_sent[status] = summary.b2c_sent.get(status, 0) + 1
    for payout_id, _ocid in due.b2c_to_query:
        summary.b2c_queried += run_query_b2c_status(ctx, payout_id) == "queried"
    return summary
