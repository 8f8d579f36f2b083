"""Daraja callbacks: store the raw body first, then parse and hand plain values to core.

Used by the Flask views (``views.py``) and by the reconciliation job, which
replays stored callbacks that were unmatched or failed (``process_stored``).
Nothing here answers with a 500: a body we cannot read is kept (status
``malformed``) and answered 400 (validation: rejected); a failure while applying
one is kept (status ``error``), acknowledged, and replayed later.

One durable commit per callback (``receive``): the raw row is inserted first, then the
callback is applied inside a SAVEPOINT of the same transaction, and the raw row's status
is written with it. A failure while applying rolls back to the savepoint only: the raw
row is committed with ``error`` (or ``malformed``) and nothing else. A transient conflict
(deadlock, serialization) runs the whole transaction again; should the transaction still
fail (or its COMMIT), the raw body is stored on its own and processed in a transaction of
its own, the previous path (``_receive_in_two``), so the body is never lost for a
failure of its processing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy
from db.models_mpesa import MpesaCallback
from db.session import is_transient, run_in_transaction
from integrations.mpesa.parse import (
    MalformedCallback,
    parse_b2c_result,
    parse_c2b,
    parse_stk_callback,
    parse_transaction_status_result,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

KINDS = (
    "stk",
    "c2b_validation",
    "c2b_confirmation",
    "b2c_result",
    "b2c_timeout",
    "status_result",
    "status_timeout",
)
ACK: dict[str, Any] = {"ResultCode": 0, "ResultDesc": "Accepted"}
C2B_ACK: dict[str, Any] = {"ResultCode": 0, "ResultDesc": "Success"}
# Result codes a transaction-status query uses for "no such transaction" (2032 is
# the stand-in's; Daraja documents none for certain, so the list is configuration).
NOT_FOUND_CODES = frozenset({2032})
SessionFactory = Callable[[], Session]
# Runs one piece of work in a unit of work and returns its result.
Runner = Callable[[Callable[[Session], Any]], Any]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    outcome: str  # what processing did, for logs and tests


def receive(
    factory: SessionFactory,
    deps: CoreDeps,
    policy: MpesaPolicy,
    *,
    kind: str,
    headers: Mapping[str, str],
    body: bytes,
    shortcode: str,
) -> Answer:
    """Store and process in one transaction; if that cannot commit, store first and process
    after (``_receive_in_two``). If even storing fails, answer 503 (never 500)."""
    try:
        return run_in_transaction(
            factory,
            lambda s: _store_and_process(
                s, deps, policy, kind=kind, headers=headers, body=body, shortcode=shortcode
            ),
        )
    except Exception:
        log.exception("mpesa %s callback not applied in one transaction; stored first", kind)
    return _receive_in_two(
        factory, deps, policy, kind=kind, headers=headers, body=body, shortcode=shortcode
    )


def _store_and_process(
    session: Session,
    deps: CoreDeps,
    policy: MpesaPolicy,
    *,
    kind: str,
    headers: Mapping[str, str],
    body: bytes,
    shortcode: str,
) -> Answer:
    row = mpesa.keep_callback(session, deps, kind=kind, headers=headers, body=body)
    callback_id = row.id

    def run(work: Callable[[Session], T]) -> T:
        return work(session)

    def mark(status: str, detail: str | None = None, ref: str | None = None) -> None:
        mpesa.mark_callback(session, deps, callback_id, status=status, detail=detail, ref=ref)

    try:
        with uow.savepoint(session):
            answer, ref = _apply(run, deps, policy, kind, _text(body), shortcode, callback_id)
    except Exception as exc:
        if is_transient(exc):
            raise  # the whole transaction again (run_in_transaction)
        return _failed(kind, callback_id, exc, mark)
    if kind in ("c2b_validation", "status_timeout"):  # the others marked it with their effect
        mark("processed", answer.outcome, ref)
    del row  # held until here: marking it read nothing
    return answer


def _receive_in_two(
    factory: SessionFactory,
    deps: CoreDeps,
    policy: MpesaPolicy,
    *,
    kind: str,
    headers: Mapping[str, str],
    body: bytes,
    shortcode: str,
) -> Answer:
    """The raw body in a transaction of its own, then ``process`` (two commits)."""
    try:
        callback_id = run_in_transaction(
            factory,
            lambda s: mpesa.store_callback(s, deps, kind=kind, headers=headers, body=body),
        )
    except Exception:
        log.exception("mpesa %s callback could not be stored", kind)
        return Answer(503, {"ResultCode": 1, "ResultDesc": "Temporarily unavailable"}, "not_stored")
    return process(factory, deps, policy, callback_id, kind=kind, body=body, shortcode=shortcode)


def process_stored(
    factory: SessionFactory, deps: CoreDeps, policy: MpesaPolicy, callback_id: int, shortcode: str
) -> Answer:
    with factory() as session:
        row = session.get(MpesaCallback, callback_id)
        if row is None:
            return Answer(404, {}, "missing")
        kind, body = row.kind, bytes(row.body)
    return process(factory, deps, policy, callback_id, kind=kind, body=body, shortcode=shortcode)


def process(
    factory: SessionFactory,
    deps: CoreDeps,
    policy: MpesaPolicy,
    callback_id: int,
    *,
    kind: str,
    body: bytes,
    shortcode: str,
) -> Answer:
    def mark(status: str, detail: str | None = None, ref: str | None = None) -> None:
        run_in_transaction(
            factory,
            lambda s: mpesa.mark_callback(
                s, deps, callback_id, status=status, detail=detail, ref=ref
            ),
        )

    def run(work: Callable[[Session], T]) -> T:
        return run_in_transaction(factory, work)

    try:
        answer, ref = _apply(run, deps, policy, kind, _text(body), shortcode, callback_id)
    except Exception as exc:
        return _failed(kind, callback_id, exc, lambda *a: _safe(mark, *a))
    if kind in ("c2b_validation", "status_timeout"):  # the others marked it with their effect
        _safe(mark, "processed", answer.outcome, ref)
    return answer


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedCallback("body is not UTF-8 text") from exc


def _failed(kind: str, callback_id: int, exc: Exception, mark: Callable[..., None]) -> Answer:
    """A body we cannot read: kept ``malformed`` and refused; any other failure: kept
    ``error`` for replay, and Safaricom gets an acknowledgement."""
    if isinstance(exc, MalformedCallback):
        reason = exc.reason
        log.warning("mpesa %s callback %d malformed: %s", kind, callback_id, reason)
        mark("malformed", str(reason))
        if kind == "c2b_validation":
            return Answer(200, {"ResultCode": "C2B00016", "ResultDesc": "Rejected"}, "malformed")
        return Answer(400, {"ResultCode": 1, "ResultDesc": f"Malformed: {reason}"}, "malformed")
    log.error("mpesa %s callback %d failed", kind, callback_id, exc_info=exc)
    mark("error", f"{type(exc).__name__}: {exc}")
    if kind == "c2b_validation":
        return Answer(200, {"ResultCode": "C2B00016", "ResultDesc": "Rejected"}, "error")
    return Answer(200, C2B_ACK if kind == "c2b_confirmation" else ACK, "error")


def _safe(mark: Callable[..., None], *args: Any) -> None:
    try:
        mark(*args)
    except Exception:
        log.exception("could not mark an M-Pesa callback")


def _apply(
    run: Runner,
    deps: CoreDeps,
    policy: MpesaPolicy,
    kind: str,
    text: str,
    shortcode: str,
    callback_id: int,
) -> tuple[Answer, str | None]:
    if kind == "stk":
        cb = parse_stk_callback(text)
        outcome = mpesa.StkOutcome(
            checkout_request_id=cb.checkout_request_id,
            result_code=cb.result_code,
            result_desc=cb.result_desc,
            amount_cents=cb.amount_cents,
            receipt=cb.receipt,
            phone=cb.phone,
        )
        done = run(
            lambda s: mpesa.settle_stk(
                s, deps, outcome, callback_id=callback_id, twin_window=policy.twin_window
            )
        )
        return Answer(200, ACK, done), cb.checkout_request_id
    if kind in ("c2b_validation", "c2b_confirmation"):
        c2b = parse_c2b(text)
        if kind == "c2b_validation":
            code, desc = run(
                lambda session: mpesa.validate_c2b(
                    session,
                    bill_ref=c2b.bill_ref,
                    amount_cents=c2b.amount_cents,
                    shortcode=c2b.shortcode,
                    expected_shortcode=shortcode,
                    policy=policy,
                )
            )
            return Answer(200, {"ResultCode": code, "ResultDesc": desc}, code), c2b.trans_id
        payment = mpesa.C2BIn(
            trans_id=c2b.trans_id,
            trans_time=c2b.trans_time,
            amount_cents=c2b.amount_cents,
            bill_ref=c2b.bill_ref,
            shortcode=c2b.shortcode,
            msisdn_masked=c2b.msisdn_masked_or_hash,
            payer_name=" ".join(p for p in (c2b.first_name, c2b.middle_name, c2b.last_name) if p),
        )
        done = run(
            lambda s: mpesa.record_c2b(
                s, deps, payment, callback_id=callback_id, twin_window=policy.twin_window
            )
        )
        return Answer(200, C2B_ACK, done), c2b.trans_id
    if kind in ("b2c_result", "b2c_timeout"):
        res = parse_b2c_result(text)
        b2c = mpesa.B2COutcome(
            originator_conversation_id=res.originator_conversation_id,
            result_code=res.result_code,
            result_desc=res.result_desc,
            conversation_id=res.conversation_id,
            receipt=res.receipt or res.transaction_id or None,
        )
        timeout = kind == "b2c_timeout"
        done = run(
            lambda s: mpesa.settle_b2c(s, deps, b2c, timeout=timeout, callback_id=callback_id)
        )
        return Answer(200, ACK, done), res.originator_conversation_id
    if kind == "status_result":
        st = parse_transaction_status_result(text)
        state = (st.status or "").lower()
        status = mpesa.StatusOutcome(
            query_id=st.query_originator_conversation_id,
            original_originator_conversation_id=st.original_originator_conversation_id,
            found=False
            if st.result_code in NOT_FOUND_CODES
            else (True if st.result_code == 0 else None),
            completed=st.result_code == 0 and state == "completed",
            failed=st.result_code == 0 and state in ("failed", "cancelled", "expired"),
            receipt=st.receipt,
            detail=f"{st.result_code} {st.status or ''} {st.result_desc}".strip(),
        )
        done = run(lambda s: mpesa.settle_status(s, deps, status, callback_id=callback_id))
        return Answer(200, ACK, done), st.original_originator_conversation_id
    if kind == "status_timeout":
        parse_transaction_status_result(text)  # kept; the next reconciliation asks again
        return Answer(200, ACK, "status_timeout"), None
    raise MalformedCallback(f"unknown callback kind {kind!r}")
