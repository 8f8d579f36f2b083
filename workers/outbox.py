"""The outbox job: ``deliver_message(message_id)``, one per message, thin.

Claim (atomic, committed) -> send through the channel's transport (no
transaction open) -> record the outcome (committed). See ``core.messaging.outbox`` for
the states and the one duplicate window.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rq import get_current_job

from core.kernel.errors import SaccoError
from core.messaging import statement_mail
from core.messaging.outbox import AttemptResult, Claimed, claim_message, record_attempt
from core.messaging.webhooks import endpoint_secret
from core.reports.member_statement import build_statement, statement_pdf
from db.session import unit_of_work
from integrations.email.smtp import Attachment
from workers.context import DeliveryContext, process_context
from workers.queue import forget

log = logging.getLogger(__name__)


def deliver_message(message_id: int) -> str:
    """RQ job entry point: deliver one outbox message with the process's context."""
    job = get_current_job()
    if job is not None:
        try:
            forget(job.connection, message_id)
        except RedisError:  # the mark expires by itself; the delivery matters more
            log.warning("outbox %s: could not clear its enqueue mark", message_id)
    return deliver(process_context(), message_id)


def deliver(ctx: DeliveryContext, message_id: int) -> str:
    """Deliver one message if it is due; returns what happened (for logs and tests)."""
    with unit_of_work(ctx.session_factory) as session:
        claimed = claim_message(session, message_id, ctx.now())
    if claimed is None:
        return "skipped"
    result = send(ctx, claimed)
    with unit_of_work(ctx.session_factory) as session:
        status = record_attempt(session, claimed, result, ctx.policy, ctx.now())
    log.info("outbox %s attempt %s: %s", claimed.id, claimed.attempt, status)
    return status


def statement_attachment(ctx: DeliveryContext, claimed: Claimed) -> Attachment | None:
    """A member statement e-mail's PDF, rendered now from the ledger (read only)."""
    asked = statement_mail.parse_statement_key(claimed.business_key)
    if asked is None:
        return None
    with ctx.session_factory() as session:
        try:
            statement = build_statement(
                session, asked.member_id, asked.start, asked.end, now=ctx.now()
            )
        except SaccoError:
            return None
    name = f"statement-{asked.start.isoformat()}-{asked.end.isoformat()}.pdf"
    return Attachment(name, "application/pdf", statement_pdf(statement))


def send(ctx: DeliveryContext, claimed: Claimed) -> AttemptResult:
    if claimed.channel == "sms":
        sms = ctx.sms.send(claimed.recipient, claimed.body)
        return AttemptResult(
            accepted=sms.accepted,
            retryable=sms.retryable,
            provider_message_id=sms.message_id,
            cost_cents=sms.cost_cents,
            status_code=sms.status_code,
            detail=sms.status if not sms.detail else f"{sms.status}: {sms.detail}",
        )
    if claimed.channel == "email":
        attachments: list[Attachment] = []
        if claimed.template == statement_mail.TEMPLATE:
            pdf = statement_attachment(ctx, claimed)
            if pdf is None:
                return AttemptResult(False, False, detail="statement request not readable")
            attachments.append(pdf)
        mail = ctx.email.send(claimed.recipient, claimed.subject or "", claimed.body, attachments)
        return AttemptResult(
            accepted=mail.accepted,
            retryable=mail.retryable,
            provider_message_id=mail.message_id,
            status_code=mail.status_code,
            detail=mail.detail,
        )
    if claimed.channel == "webhook":
        try:
            with ctx.session_factory() as session:
                secret = (
                    endpoint_secret(session, ctx.vault, claimed.endpoint_id)
                    if claimed.endpoint_id
                    else None
                )
        except ValueError:
            # A key missing from PII_KEYS: retried with backoff, so restoring it recovers.
            log.error("outbox %s: webhook secret not decryptable with PII_KEYS", claimed.id)
            return AttemptResult(
                False, True, detail="signing secret not decryptable: check PII_KEYS"
            )
        if secret is None:
            return AttemptResult(False, False, detail="endpoint removed or disabled")
        hook = ctx.webhooks.send(claimed.recipient, secret, claimed.template, claimed.body)
        return AttemptResult(
            accepted=hook.accepted,
            retryable=hook.retryable,
            status_code=hook.status_code,
            detail=f"{hook.detail or 'ok'} in {hook.duration_ms} ms",
        )
    return AttemptResult(False, False, detail=f"unknown channel {claimed.channel}")
