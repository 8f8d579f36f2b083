"""Delivery reports under faults (issue 17): stored before anything else and answered 503
only when even that fails; strangers set aside so they never starve newer reports; a
stored report adopted instead of re-sending a message whose worker died after the send."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app_factory import create_app
from config import Settings
from core.kernel.deps import CoreDeps
from core.messaging.notifications import notify
from core.messaging.outbox import OutboxPolicy, claim_message
from db.base import utcnow
from db.models import OutboxAttempt, OutboxMessage, SmsDeliveryReport
from db.session import make_session_factory, unit_of_work
from integrations.africastalking.standin import StandinHandle
from runtime import Runtime
from tests.outboxutil import T0, Clock, gateway_messages, make_ctx
from tests.settings import PG_URL
from tests.tcpproxy import TcpProxy
from tests.workerprocs import wait_for
from workers.outbox import deliver
from workers.sweeper import rq_enqueuer, sweep_once

PHONE = "+254712000301"


def queue_due(session_factory: sessionmaker[Session], key: str, phone: str = PHONE) -> int:
    """A pending SMS due at ``T0`` (the tests' clock)."""
    with unit_of_work(session_factory) as s:
        message = notify(
            s,
            template="sms_start_ok",
            business_key=key,
            now=utcnow(),
            data={"sacco": "Umoja SACCO"},
            msisdn=phone,
        )
        message.next_attempt_at = T0
        return message.id


def store_report(
    session_factory: sessionmaker[Session], pmid: str, status: str, at: object, phone: str = PHONE
) -> None:
    with unit_of_work(session_factory) as s:
        s.add(
            SmsDeliveryReport(
                provider_message_id=pmid, status=status, phone_number=phone, received_at=at
            )
        )


def message(session_factory: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with unit_of_work(session_factory) as s:
        return s.get_one(OutboxMessage, message_id)


def post_report(client: FlaskClient, pmid: str, status: str = "Success") -> tuple[int, str]:
    answer = client.post("/sms/delivery", data={"id": pmid, "status": status, "phoneNumber": PHONE})
    return answer.status_code, answer.get_data(as_text=True)


# ------------------------------------------------------------------ POST /sms/delivery


def test_a_report_is_answered_503_while_the_database_is_down_and_200_once_stored(
    settings: Settings,
    deps: CoreDeps,
    client: FlaskClient,
    session_factory: sessionmaker[Session],
    standin: StandinHandle,
) -> None:
    down = create_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:1/sacco", connect_args={"connect_timeout": 2}
    )
    dead_app = create_app(
        settings, Runtime(down, make_session_factory(down), deps, None, "Umoja SACCO")
    )
    assert post_report(dead_app.test_client(), "ATXid_early") == (503, "temporarily unavailable")
    down.dispose()
    # the database is back; the gateway sends the report again
    message_id = queue_due(session_factory, "dr-503")
    ctx = make_ctx(session_factory, standin.url, now=Clock())
    assert deliver(ctx, message_id) == "sent"
    pmid = message(session_factory, message_id).provider_message_id
    assert pmid is not None
    assert post_report(client, pmid) == (200, "OK")
    assert message(session_factory, message_id).status == "delivered"
    # a report for an id we never had is stored (200), and waits
    assert post_report(client, "ATXid_stranger") == (200, "OK")
    with unit_of_work(session_factory) as s:
        kept = s.scalars(
            select(SmsDeliveryReport).where(
                SmsDeliveryReport.provider_message_id == "ATXid_stranger"
            )
        ).one()
    assert kept.applied_at is None and kept.unmatched_at is None


# --------------------------------------------------------------------- strangers


def test_strangers_never_fill_the_sweepers_batch_and_are_set_aside_after_an_hour(
    session_factory: sessionmaker[Session], standin: StandinHandle, redis_client: redis_lib.Redis
) -> None:
    clock = Clock()
    policy = OutboxPolicy(batch=5, claim_timeout_s=60, report_unmatched_after_s=3600)
    ctx = make_ctx(session_factory, standin.url, now=clock, policy=policy)
    for n in range(8):  # more strangers than one batch, all older than the real report
        store_report(session_factory, f"ATXid_stranger{n}", "Success", T0 - timedelta(minutes=5))
    message_id = queue_due(session_factory, "dr-starve")
    assert deliver(ctx, message_id) == "sent"
    pmid = message(session_factory, message_id).provider_message_id
    with unit_of_work(session_factory) as s:  # its report lost the race with the record
        s.add(SmsDeliveryReport(provider_message_id=pmid, status="Success", received_at=T0))
    enqueue = rq_enqueuer(redis_client, "outbox-test", 60)
    result = sweep_once(ctx, enqueue)
    assert result.reports_applied == 1 and result.reports_unmatched == 0
    assert message(session_factory, message_id).status == "delivered"
    clock.advance(3600)  # an hour after the strangers arrived: set aside, kept
    assert sweep_once(ctx, enqueue).reports_unmatched == 8
    assert sweep_once(ctx, enqueue).reports_unmatched == 0
    with unit_of_work(session_factory) as s:
        counts = s.execute(
            select(
                func.count().filter(SmsDeliveryReport.unmatched_at.is_not(None)),
                func.count().filter(SmsDeliveryReport.applied_at.is_not(None)),
                func.count(),
            )
        ).one()
    assert tuple(counts) == (8, 1, 9)


# ---------------------------------------------------------------- adopting a report


@pytest.mark.parametrize("status", ["Success", "Failed"])
def test_a_dead_workers_send_shown_by_a_stored_report_is_not_sent_again(
    session_factory: sessionmaker[Session],
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
    status: str,
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    message_id = queue_due(session_factory, f"dr-adopt-{status}")
    with unit_of_work(session_factory) as s:  # its worker sends, then dies unrecorded
        assert claim_message(s, message_id, clock()) is not None
    store_report(session_factory, "ATXid_unrecorded", status, T0 + timedelta(seconds=3))
    clock.advance(61)
    result = sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60))
    assert result.adopted == [message_id] and result.reclaimed == []
    done = message(session_factory, message_id)
    assert done.provider_message_id == "ATXid_unrecorded"
    if status == "Success":
        assert done.status == "delivered" and result.due == []
    else:  # the report says the copy failed (no reason: not one a retry fixes)
        assert done.status == "failed"
    assert gateway_messages(standin.url) == []  # nothing sent again
    with unit_of_work(session_factory) as s:
        attempt = s.scalars(
            select(OutboxAttempt).where(OutboxAttempt.message_id == message_id)
        ).one()
    assert (attempt.status, attempt.provider_message_id) == ("accepted", "ATXid_unrecorded")


def test_no_report_is_adopted_when_it_could_belong_to_another_message_or_predates_the_send(
    session_factory: sessionmaker[Session], standin: StandinHandle, redis_client: redis_lib.Redis
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    first = queue_due(session_factory, "dr-amb-1")
    second = queue_due(session_factory, "dr-amb-2")  # the same phone
    early = queue_due(session_factory, "dr-early", phone="+254712000302")
    with unit_of_work(session_factory) as s:
        for message_id in (first, second, early):
            assert claim_message(s, message_id, clock()) is not None
    store_report(session_factory, "ATXid_which", "Success", T0 + timedelta(seconds=3))
    store_report(
        session_factory, "ATXid_before", "Success", T0 - timedelta(seconds=1), "+254712000302"
    )
    clock.advance(61)
    result = sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60))
    assert result.adopted == [] and result.reclaimed == sorted([first, second, early])
    for message_id in (first, second, early):  # sent again: the one duplicate window
        assert deliver(ctx, message_id) == "sent"
    assert len(gateway_messages(standin.url)) == 3


def test_a_report_stored_before_the_database_went_away_is_answered_200_and_applied_later(
    settings: Settings,
    deps: CoreDeps,
    committed_pg: Engine,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    factory = make_session_factory(committed_pg)
    message_id = queue_due(factory, "dr-cut")
    ctx = make_ctx(factory, standin.url, now=Clock())
    assert deliver(ctx, message_id) == "sent"
    pmid = message(factory, message_id).provider_message_id
    assert pmid is not None
    target = make_url(PG_URL)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        via_proxy = create_engine(target.set(host="127.0.0.1", port=proxy.port), poolclass=NullPool)
        app = create_app(
            settings, Runtime(via_proxy, make_session_factory(via_proxy), deps, None, "Umoja")
        )
        answers: list[tuple[int, str]] = []
        with committed_pg.connect() as holder:  # a worker holds the message row meanwhile
            holder.execute(
                select(OutboxMessage.id).where(OutboxMessage.id == message_id).with_for_update()
            )
            poster = threading.Thread(
                target=lambda: answers.append(post_report(app.test_client(), pmid))
            )
            poster.start()
            wait_for(lambda: stored(factory, pmid) == 1, "the report stored and committed")
            wait_for(lambda: activity(committed_pg, "wait_event_type = 'Lock'") > 0, "apply waits")
            proxy.cut()  # the database goes away between storing and applying
            poster.join(timeout=30)
            holder.rollback()
        via_proxy.dispose()
    assert answers == [(200, "OK")]  # stored: acknowledged, nothing for the gateway to resend
    assert message(factory, message_id).status == "sent"
    # (the server notices the cut connection once the lock is free, and rolls it back)
    wait_for(lambda: not activity(committed_pg, "xact_start IS NOT NULL"), "its rollback")
    assert sweep_once(ctx, rq_enqueuer(redis_client, "outbox-test", 60)).reports_applied == 1
    assert message(factory, message_id).status == "delivered"


def stored(factory: sessionmaker[Session], pmid: str) -> int:
    with unit_of_work(factory) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(SmsDeliveryReport)
                .where(SmsDeliveryReport.provider_message_id == pmid)
            )
            or 0
        )


def activity(engine: Engine, condition: str) -> int:
    """Other sessions on this test database matching ``condition`` (pg_stat_activity)."""
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    f"AND pid <> pg_backend_pid() AND {condition}"
                )
            )
            or 0
        )
