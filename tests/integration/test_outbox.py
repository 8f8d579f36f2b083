"""The outbox on real PostgreSQL against the Africa's Talking stand-in (in-process delivery).

Failures of the gateway (HTTP 500, no answer, refusals), backoff and the attempt
limit, delivery reports (including one that outruns our record of the send),
the sweeper, STOP, and the after-commit hand-off with Redis up and down.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis as redis_lib
from rq import Queue
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.members import registration as members
from core.messaging.notifications import install_dispatch, notify
from core.messaging.outbox import (
    DeliveryReport,
    OutboxPolicy,
    backoff_seconds,
    claim_message,
    failed_messages,
    receive_delivery_report,
    record_attempt,
    retry_failed,
)
from db.models import OutboxAttempt, OutboxMessage, SmsDeliveryReport, SmsOptOut
from db.session import make_session_factory, unit_of_work
from integrations.africastalking.standin import StandinHandle
from tests.outboxutil import T0, Clock, control, gateway_messages, make_ctx
from workers.dispatch import RqDispatcher
from workers.outbox import deliver, send
from workers.sweeper import rq_enqueuer, sweep_once

PHONE = "+254712000101"


def queue_sms(session: Session, key: str, phone: str = PHONE, **kw: object) -> OutboxMessage:
    message = notify(
        session,
        template="sms_start_ok",
        business_key=key,
        data={"sacco": "Umoja SACCO"},
        msisdn=phone,
        **kw,  # type: ignore[arg-type]
    )
    session.commit()
    return message


def reload(session_factory: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with unit_of_work(session_factory) as session:
        return session.get_one(OutboxMessage, message_id)


def test_a_queued_sms_is_sent_with_the_gateway_id_and_cost(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t1")
    ctx = make_ctx(session_factory, standin.url)
    assert deliver(ctx, message.id) == "sent"
    done = reload(session_factory, message.id)
    [sent] = gateway_messages(standin.url, PHONE)
    assert done.status == "sent" and done.provider_message_id == sent["id"]
    assert done.cost_cents == 80 and done.parts == 1 and sent["message"] == done.body
    assert deliver(ctx, message.id) == "skipped"  # a second job for it sends nothing
    assert len(gateway_messages(standin.url, PHONE)) == 1


def test_the_same_business_key_queues_once(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        first = queue_sms(s, "same")
        second = queue_sms(s, "same")
        assert first.id == second.id
        assert len(s.scalars(select(OutboxMessage)).all()) == 1


def test_gateway_500_backs_off_exponentially_then_succeeds(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t500")
        s.execute(
            update(OutboxMessage).where(OutboxMessage.id == message.id).values(next_attempt_at=T0)
        )
        s.commit()
    control(standin.url, fail_next=2)
    assert deliver(ctx, message.id) == "pending"
    first = reload(session_factory, message.id)
    assert first.next_attempt_at == T0 + timedelta(seconds=30) and first.attempts == 1
    assert deliver(ctx, message.id) == "skipped"  # not due yet: nothing is sent early
    clock.advance(30)
    assert deliver(ctx, message.id) == "pending"
    second = reload(session_factory, message.id)
    assert second.next_attempt_at == clock.at + timedelta(seconds=60)  # doubled
    clock.advance(60)
    assert deliver(ctx, message.id) == "sent"
    assert len(gateway_messages(standin.url, PHONE)) == 1
    with unit_of_work(session_factory) as s:
        log = s.scalars(
            select(OutboxAttempt.status).where(OutboxAttempt.message_id == message.id)
        ).all()
    assert sorted(log) == ["accepted", "retry", "retry"]


def test_a_gateway_that_keeps_failing_ends_failed_for_staff_after_the_limit(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    clock = Clock()
    policy = OutboxPolicy(max_attempts=3, backoff_base_s=10)
    ctx = make_ctx(session_factory, standin.url, now=clock, policy=policy)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t-fail")
        s.get_one(OutboxMessage, message.id).next_attempt_at = T0
        s.commit()
    control(standin.url, fail_next=100)
    outcomes = []
    for _ in range(3):
        outcomes.append(deliver(ctx, message.id))
        clock.advance(3600)
    assert outcomes == ["pending", "pending", "failed"]
    assert deliver(ctx, message.id) == "skipped"
    with unit_of_work(session_factory) as s:
        [failed] = failed_messages(s)
        assert failed.id == message.id and failed.attempts == 3
        assert "HTTP 500" in (failed.last_error or "")
        control(standin.url, fail_next=0)
        assert retry_failed(s, message.id, clock())  # staff gives it one more go
    assert deliver(ctx, message.id) == "sent"


def test_a_refused_number_fails_at_once_without_retrying(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    control(standin.url, number=PHONE, status_code=403)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t403")
    assert deliver(make_ctx(session_factory, standin.url), message.id) == "failed"
    assert "InvalidPhoneNumber" in (reload(session_factory, message.id).last_error or "")


def test_a_gateway_that_does_not_answer_in_time_is_retried(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock, sms_timeout=0.5)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t-timeout")
        s.get_one(OutboxMessage, message.id).next_attempt_at = T0
        s.commit()
    control(standin.url, hang_next=1, hang_seconds=1.5)
    assert deliver(ctx, message.id) == "pending"
    assert "Timeout" in (reload(session_factory, message.id).last_error or "")
    clock.advance(30)
    assert deliver(ctx, message.id) == "sent"
    # A read timeout is inside the duplicate window: the gateway may have taken the
    # first request after we stopped waiting. Never more than that one extra.
    standin.stop()
    assert 1 <= len(standin.state.messages) <= 2


def test_a_delivery_report_that_outruns_our_record_is_kept_and_applied(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    ctx = make_ctx(session_factory, standin.url)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t-dr-early")
        claimed = claim_message(s, message.id, ctx.now())
    assert claimed is not None
    result = send(ctx, claimed)
    assert result.accepted and result.provider_message_id
    # the report arrives before the worker records the send
    with unit_of_work(session_factory) as s:
        report = DeliveryReport(result.provider_message_id, "Success")
        assert receive_delivery_report(s, report, ctx.policy, ctx.now()) is False
    assert reload(session_factory, message.id).status == "sending"
    with unit_of_work(session_factory) as s:
        assert record_attempt(s, claimed, result, ctx.policy, ctx.now()) == "sent"
    done = reload(session_factory, message.id)
    assert done.status == "delivered" and done.delivered_at is not None
    with unit_of_work(session_factory) as s:
        stored = s.scalars(select(SmsDeliveryReport)).one()
        assert stored.message_id == message.id and stored.applied_at is not None


def test_a_report_left_unmatched_by_a_race_is_applied_by_the_sweeper(
    session_factory: sessionmaker[Session], standin: StandinHandle, redis_client: redis_lib.Redis
) -> None:
    ctx = make_ctx(session_factory, standin.url)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "t-dr-race")
    assert deliver(ctx, message.id) == "sent"
    pmid = reload(session_factory, message.id).provider_message_id
    with unit_of_work(session_factory) as s:  # stored as if its match had lost the race
        s.add(SmsDeliveryReport(provider_message_id=pmid, status="Success", received_at=T0))
        s.commit()
    result = sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60))
    assert result.reports_applied == 1
    assert reload(session_factory, message.id).status == "delivered"


@pytest.mark.parametrize(
    ("reason", "expected"), [("DeliveryFailure", "pending"), ("UserInBlackList", "failed")]
)
def test_failed_delivery_is_retried_only_when_a_retry_can_fix_it(
    session_factory: sessionmaker[Session], standin: StandinHandle, reason: str, expected: str
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, f"t-dr-{reason}")
        s.get_one(OutboxMessage, message.id).next_attempt_at = T0
        s.commit()
    deliver(ctx, message.id)
    first_id = reload(session_factory, message.id).provider_message_id
    assert first_id
    with unit_of_work(session_factory) as s:
        for status in ("Submitted", "Failed"):
            report = DeliveryReport(first_id, status, failure_reason=reason, retry_count=0)
            receive_delivery_report(s, report, ctx.policy, clock())
    after = reload(session_factory, message.id)
    assert after.status == expected and reason in (after.last_error or "")
    if expected == "pending":
        clock.advance(backoff_seconds(1, ctx.policy))
        assert deliver(ctx, message.id) == "sent"  # a new attempt, same row and key
        again = reload(session_factory, message.id)
        assert again.attempts == 2 and again.provider_message_id != first_id
        with unit_of_work(session_factory) as s:  # a late success for the first attempt also counts
            receive_delivery_report(s, DeliveryReport(first_id, "Success"), ctx.policy, clock())
        assert reload(session_factory, message.id).status == "delivered"


def test_stop_suppresses_promotional_messages_only(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        s.add(SmsOptOut(msisdn=PHONE, created_at=T0))
        s.commit()
        promo = queue_sms(s, "promo", category="promotional")
        receipt = queue_sms(s, "receipt")
    assert reload(session_factory, promo.id).status == "cancelled"
    assert reload(session_factory, receipt.id).status == "pending"


def test_sweeper_reclaims_a_dead_workers_message_and_leaves_a_live_one(
    session_factory: sessionmaker[Session], standin: StandinHandle, redis_client: redis_lib.Redis
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    with unit_of_work(session_factory) as s:
        dead = queue_sms(s, "dead")
        live = queue_sms(s, "live", phone="+254712000102")
        for m in (dead, live):
            s.get_one(OutboxMessage, m.id).next_attempt_at = T0
        s.commit()
        assert claim_message(s, dead.id, clock()) is not None  # its worker then dies
    clock.advance(61)  # beyond the claim timeout
    with unit_of_work(session_factory) as s:
        assert claim_message(s, live.id, clock()) is not None  # a worker busy with it
    enqueue = rq_enqueuer(redis_client, "outbox-test", 60)
    result = sweep_once(ctx, enqueue)
    assert result.reclaimed == [dead.id] and result.due == [dead.id]
    assert reload(session_factory, live.id).status == "sending"
    assert Queue("outbox-test", connection=redis_client).count == 1
    assert deliver(ctx, dead.id) == "sent"
    assert len(gateway_messages(standin.url)) == 1  # claimed, never sent: no duplicate
    with unit_of_work(session_factory) as s:
        log = s.scalars(
            select(OutboxAttempt.status)
            .where(OutboxAttempt.message_id == dead.id)
            .order_by(OutboxAttempt.attempt)
        ).all()
    assert log == ["abandoned", "accepted"]


def test_only_one_of_many_racing_workers_claims_a_message(
    committed_pg: Engine,
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        message = queue_sms(s, "race")
    wins: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        with unit_of_work(factory) as s:
            # Due from the moment it was queued (at the wall clock): claim it a minute later.
            wins.append(
                claim_message(s, message.id, message.next_attempt_at + timedelta(minutes=1))
            )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(w is not None for w in wins) == 1


def test_after_commit_enqueues_and_a_rollback_enqueues_nothing(
    committed_pg: Engine, redis_client: redis_lib.Redis, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    install_dispatch(factory, RqDispatcher(redis_client, "outbox-test", 60))
    queue = Queue("outbox-test", connection=redis_client)
    with unit_of_work(factory) as s:
        notify(s, template="sms_start_ok", business_key="rolled", data={"sacco": "U"}, msisdn=PHONE)
        s.rollback()
    assert queue.count == 0
    with unit_of_work(factory) as s:
        member = members.register_member(
            s,
            deps,
            full_name="Amina Wanjiru",
            msisdn="0712000201",
            national_id="23456791",
            consent=True,
        )
    [job] = queue.jobs
    with unit_of_work(factory) as s:
        welcome = s.scalars(select(OutboxMessage).where(OutboxMessage.member_id == member.id)).one()
    assert job.args == (welcome.id,) and job.func_name == "workers.outbox.deliver_message"


def test_redis_down_at_commit_keeps_the_change_and_the_sweeper_catches_up(
    committed_pg: Engine, redis_client: redis_lib.Redis, deps: CoreDeps, standin: StandinHandle
) -> None:
    factory = make_session_factory(committed_pg)
    dead_redis = redis_lib.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    install_dispatch(factory, RqDispatcher(dead_redis, "outbox-test", 60))
    with unit_of_work(factory) as s:  # the business change commits although the enqueue fails
        member = members.register_member(
            s,
            deps,
            full_name="Otieno Kamau",
            msisdn="0722000202",
            national_id="23456792",
            consent=True,
        )
    dead_redis.close()
    with unit_of_work(factory) as s:
        welcome = s.scalars(select(OutboxMessage).where(OutboxMessage.member_id == member.id)).one()
        assert welcome.status == "pending"
    queue = Queue("outbox-test", connection=redis_client)
    assert queue.count == 0
    ctx = make_ctx(factory, standin.url)
    result = sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60))
    assert welcome.id in result.due and queue.count == 1
    sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60))
    assert queue.count == 1  # not piled up while it waits in the queue
    assert deliver(ctx, welcome.id) == "sent"
    assert [m["to"] for m in gateway_messages(standin.url)] == ["+254722000202"]


def test_a_slow_worker_outlived_by_its_claim_still_records_and_prevents_a_resend(
    session_factory: sessionmaker[Session], standin: StandinHandle, redis_client: redis_lib.Redis
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    with unit_of_work(session_factory) as s:
        message = queue_sms(s, "slow")
        s.get_one(OutboxMessage, message.id).next_attempt_at = T0
        s.commit()
        claimed = claim_message(s, message.id, clock())
    assert claimed is not None
    result = send(ctx, claimed)  # the gateway takes it, but the worker is slow to record
    clock.advance(61)
    assert sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60)).reclaimed == [message.id]
    with unit_of_work(session_factory) as s:
        assert record_attempt(s, claimed, result, ctx.policy, clock()) == "sent"
    assert deliver(ctx, message.id) == "skipped"  # the re-enqueued job finds it done
    assert reload(session_factory, message.id).status == "sent"
    assert len(gateway_messages(standin.url)) == 1
