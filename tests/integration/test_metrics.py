"""/metrics as Prometheus reads it: what the app counts and what it reads at scrape time.

Each test changes something real (a hop, a PIN typed, a callback, a queued message, a
journal entry, a close-of-day run, an RQ job that fails, a SIM-swap refusal, a statement
reconciliation) and reads the change back from the exposition text, the way a Prometheus
server would. Counters are process-wide, so the tests compare before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from sqlalchemy.orm import Session

from app_factory import create_app
from config import load_settings
from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.vocabulary import EntryKind
from core.messaging.notifications import notify
from db.models_close_day import CloseDayRun
from db.models_mpesa import SimSwapEvent
from observability.metrics import StateCollector, exposition
from runtime import Runtime
from tests.ledgerutil import make_accounts
from tests.settings import PG_URL, REDIS_URL
from tests.ussdutil import Phone, make_member
from workers.rq_worker import RequestIdWorker

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


@pytest.fixture
def scrape(client: FlaskClient) -> Callable[[], Samples]:
    def read() -> Samples:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        return parse(response.get_data(as_text=True))

    return read


@pytest.fixture
def settings_nocache() -> Any:
    return load_settings(
        sacco_env="test",
        database_url=PG_URL,
        redis_url=REDIS_URL,
        ussd_rate_limit="10000/minute",
        metrics_cache_seconds=0,
    )


@pytest.fixture
def app(settings_nocache: Any, runtime: Runtime) -> Flask:
    flask_app = create_app(settings_nocache, runtime)
    flask_app.config["TESTING"] = True
    return flask_app


def test_ussd_hops_pins_and_outcomes_are_counted_by_screen(
    client: FlaskClient, db_session: Session, deps: CoreDeps, scrape: Callable[[], Samples]
) -> None:
    member = make_member(db_session, deps, msisdn="+254712000201", pin="4826")
    before = scrape()
    phone = Phone(client, member.msisdn)
    phone.dial()
    phone.send("1")
    assert "Wrong PIN" in phone.send("1111")
    assert phone.send("4826").startswith("CON Savings")
    forged = client.post("/ussd?token=x", data={"sessionId": "s", "text": ""})
    assert forged.status_code == 200  # no token configured in tests: served
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("sacco_ussd_hops_total") == 5
    assert delta("sacco_ussd_hops_total", screen="main", outcome="continue") == 1
    assert delta("sacco_ussd_hops_total", screen="pin", outcome="continue") == 2  # asked again
    assert delta("sacco_ussd_hops_total", screen="balances", outcome="continue") == 1
    # no phone number: a polite END, by its reason's family (never the caller's input)
    assert delta("sacco_ussd_hops_total", screen="refused", outcome="refused") == 1
    assert delta("sacco_ussd_hop_seconds_count") == 5
    assert delta("sacco_pin_verifications_total", result="failed") == 1
    assert delta("sacco_pin_verifications_total", result="ok") == 1
    assert delta("sacco_http_requests_total", blueprint="ussd", status="200") == 5


def test_a_pin_locked_by_three_wrong_tries_counts_as_locked(
    client: FlaskClient, db_session: Session, deps: CoreDeps, scrape: Callable[[], Samples]
) -> None:
    member = make_member(db_session, deps, msisdn="+254712000202", pin="4826")
    before = value(scrape(), "sacco_pin_verifications_total", result="locked")
    phone = Phone(client, member.msisdn)
    phone.dial()
    phone.send("1")
    for wrong in ("1111", "2222", "3333"):
        phone.send(wrong)
    assert "locked" in phone.last
    assert value(scrape(), "sacco_pin_verifications_total", result="locked") == before + 1


def test_an_unhandled_error_is_counted_as_a_500(app: Flask, scrape: Callable[[], Samples]) -> None:
    @app.get("/_boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.config["TESTING"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    before = value(scrape(), "sacco_http_requests_total", status="500")
    assert app.test_client().get("/_boom").status_code == 500
    assert value(scrape(), "sacco_http_requests_total", status="500") == before + 1


def test_sms_and_mpesa_callbacks_are_counted_by_gateway_kind_and_result(
    client: FlaskClient, scrape: Callable[[], Samples]
) -> None:
    before = scrape()
    assert client.post("/sms/delivery", data={"id": "", "status": "x"}).status_code == 400
    assert (
        client.post("/sms/delivery", data={"id": "ATXid_1", "status": "Success"}).status_code == 200
    )
    assert client.post("/mpesa/c2b/confirmation", json={}).status_code == 403  # no token
    token = client.application.config["SACCO_SETTINGS"].mpesa_callback_token
    bad = client.post(f"/mpesa/c2b/confirmation?token={token}", data=b"not json")
    assert bad.status_code == 400
    after = scrape()

    def delta(**labels: str) -> float:
        return value(after, "sacco_callbacks_total", **labels) - value(
            before, "sacco_callbacks_total", **labels
        )

    assert delta(gateway="africastalking", kind="sms_delivery", result="rejected") == 1
    assert delta(gateway="africastalking", kind="sms_delivery", result="ok") == 1
    assert delta(gateway="mpesa", kind="c2b_confirmation", result="forbidden") == 1
    assert delta(gateway="mpesa", kind="c2b_confirmation", result="malformed") == 1


def test_outbox_depth_and_the_age_of_the_oldest_message(
    db_session: Session, deps: CoreDeps, scrape: Callable[[], Samples]
) -> None:
    assert value(scrape(), "sacco_outbox_oldest_pending_age_seconds", channel="sms") == 0
    now = deps.now()
    for minutes, key in ((5, "old"), (1, "new")):
        notify(
            db_session,
            template="member_registered",
            business_key=f"metrics-test:{key}",
            now=now - timedelta(minutes=minutes),
            msisdn="+254712000203",
            data={
                "sacco": "Umoja SACCO",
                "first_name": "Amina",
                "member_number": "100203",
                "ussd_code": "*384#",
            },
        )
    db_session.flush()
    samples = scrape()
    assert value(samples, "sacco_outbox_messages", channel="sms", status="pending") == 2
    age = value(samples, "sacco_outbox_oldest_pending_age_seconds", channel="sms")
    assert 300 <= age < 300 + 60
    assert value(samples, "sacco_outbox_oldest_pending_age_seconds", channel="email") == 0


def test_ledger_entries_are_counted_once_each_as_they_settle(
    db_session: Session, runtime: Runtime, deps: CoreDeps
) -> None:
    float_id, (account,) = make_accounts(db_session, 1)
    clock = {"now": deps.now()}
    collector = StateCollector(runtime, (), cache_s=0, now=lambda: clock["now"])

    def entries() -> float:
        return value(parse(exposition(collector).decode()), "sacco_ledger_entries_total")

    def post(minutes_ago: float) -> None:
        ledger.post_entry(
            db_session,
            kind=EntryKind.DEPOSIT_MPESA,
            legs=[ledger.Leg(float_id, 100), ledger.Leg(account, -100)],
            idempotency_key=f"metrics-{clock['now'].timestamp()}-{minutes_ago}",
            now=clock["now"] - timedelta(minutes=minutes_ago),
        )
        db_session.flush()

    start = entries()
    post(10)  # settled at once (written more than a minute ago)
    post(0)  # live
    assert entries() == start + 2
    clock["now"] += timedelta(minutes=5)  # the live one settles: still counted once
    assert entries() == start + 2
    post(0)
    assert entries() == start + 3
    fresh = StateCollector(runtime, (), cache_s=0, now=lambda: clock["now"])
    assert value(parse(exposition(fresh).decode()), "sacco_ledger_entries_total") == start + 3
    by_kind = parse(exposition(fresh).decode())
    assert value(by_kind, "sacco_ledger_entries_total", kind=EntryKind.DEPOSIT_MPESA) >= 3


def test_close_of_day_last_success_and_duration(
    db_session: Session, deps: CoreDeps, scrape: Callable[[], Samples]
) -> None:
    finished = deps.now() - timedelta(hours=3)
    db_session.add_all(
        [
            CloseDayRun(
                business_date=date(2026, 11, 25),
                status="done",
                band_version=1,
                started_at=finished - timedelta(days=1, seconds=90),
                finished_at=finished - timedelta(days=1),
            ),
            CloseDayRun(
                business_date=date(2026, 11, 26),
                status="done",
                band_version=1,
                started_at=finished - timedelta(seconds=42),
                finished_at=finished,
            ),
            CloseDayRun(
                business_date=date(2026, 11, 27),
                status="running",
                band_version=1,
                started_at=deps.now(),
            ),
        ]
    )
    db_session.flush()
    samples = scrape()
    assert value(samples, "sacco_close_day_last_success_timestamp_seconds") == pytest.approx(
        finished.timestamp()
    )
    assert value(samples, "sacco_close_day_last_duration_seconds") == pytest.approx(42)
    assert value(samples, "sacco_close_day_running") == 1


def test_rq_queue_depth_failed_jobs_and_workers(
    redis_client: redis_lib.Redis, scrape: Callable[[], Samples]
) -> None:
    queue = Queue("outbox", connection=redis_client)
    queue.enqueue("workers.runner.resolve", "not.a.worker", meta={"request_id": "req-12345678"})
    assert value(scrape(), "sacco_rq_queue_jobs", queue="outbox") == 1
    # A real worker runs it; it raises (jobs live in workers/) and lands in the failed registry.
    RequestIdWorker([queue], connection=redis_client).work(burst=True)
    samples = scrape()
    assert value(samples, "sacco_rq_queue_jobs", queue="outbox") == 0
    assert value(samples, "sacco_rq_failed_jobs", queue="outbox") == 1
    assert value(samples, "sacco_metrics_source_up", source="redis") == 1


def test_sim_swap_refusals_and_reconciliation_mismatches(
    db_session: Session, deps: CoreDeps, scrape: Callable[[], Samples]
) -> None:
    before = scrape()
    member = make_member(db_session, deps, msisdn="+254712000204", national_id="23456704")
    for outcome, decision in (("recent_swap", "refused"), ("check_failed", "allowed")):
        db_session.add(
            SimSwapEvent(
                member_id=member.id,
                msisdn=member.msisdn,
                outcome=outcome,
                decision=decision,
                amount_cents=50_000,
                created_at=deps.now(),
            )
        )
    audit.record(
        db_session,
        SYSTEM,
        "mpesa.statement_reconciled",
        target_type="mpesa_statement",
        target_id="abc",
        after={"missing_in_ledger": 2, "missing_in_statement": 0, "amount_mismatches": 1},
        now=deps.now(),
    )
    db_session.flush()
    after = scrape()
    refused = value(after, "sacco_sim_swap_refusals_total", reason="recent_swap") - value(
        before, "sacco_sim_swap_refusals_total", reason="recent_swap"
    )
    assert refused == 1
    assert value(after, "sacco_sim_swap_refusals_total", reason="check_failed") == value(
        before, "sacco_sim_swap_refusals_total", reason="check_failed"
    )  # let through: not a refusal
    assert value(after, "sacco_reconciliation_mismatches", type="missing_in_ledger") == 2
    assert value(after, "sacco_reconciliation_mismatches", type="amount_mismatches") == 1
    assert value(after, "sacco_reconciliation_last_run_timestamp_seconds") > 0


def test_no_phone_number_or_member_in_any_label(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    member = make_member(db_session, deps, msisdn="+254712000205", national_id="23456705")
    Phone(client, member.msisdn).dial()
    text = client.get("/metrics").get_data(as_text=True)
    for secret in ("712000205", "23456705", member.member_number or "-"):
        assert secret not in text
    # No label of ours carries the member's id (numbers that are what their label says, an
    # HTTP status or a bucket's bound, may equal it by chance: member 4, status="404").
    numeric = {"status", "le", "quantile"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("sacco_"):
                values = [v for k, v in sample.labels.items() if k not in numeric]
                assert str(member.id) not in values, sample


def test_a_source_that_fails_is_reported_not_a_failed_scrape(pg_engine: object) -> None:
    settings = load_settings(
        sacco_env="test",
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere",
        redis_url=REDIS_URL,
    )
    from runtime import build_runtime

    app = create_app(settings, build_runtime(settings))
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert value(samples, "sacco_metrics_source_up", source="database") == 0
    assert value(samples, "sacco_metrics_source_up", source="redis") == 1
    app.extensions["sacco"].redis.close()


@pytest.mark.parametrize(
    ("allowed", "forwarded", "status"),
    [
        ("", "203.0.113.9", 200),  # empty: whoever reaches the app
        ("10.20.0.0/24", None, 403),  # the test client is 127.0.0.1
        ("10.20.0.0/24", "10.20.0.7", 200),  # Prometheus through nginx (one trusted hop)
        (None, "203.0.113.9", 403),  # the default: loopback and private networks only
        (None, "10.1.2.3", 200),
    ],
)
def test_metrics_are_served_to_the_monitoring_network_only(
    runtime: Runtime, allowed: str | None, forwarded: str | None, status: int
) -> None:
    extra: dict[str, Any] = {} if allowed is None else {"metrics_allowed_networks": allowed}
    settings = load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL, trusted_proxy_hops=1, **extra
    )
    client = create_app(settings, runtime).test_client()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert client.get("/metrics", headers=headers).status_code == status
    assert client.get("/healthz", headers=headers).status_code == 200


def test_a_bad_network_in_the_setting_stops_start_up() -> None:
    from config import SettingsError

    with pytest.raises(SettingsError, match="METRICS_ALLOWED_NETWORKS"):
        load_settings(sacco_env="test", metrics_allowed_networks="10.0.0.0/8,monitoring")


def test_throttled_and_forged_hops_are_counted_apart(
    runtime: Runtime, db_session: Session, deps: CoreDeps
) -> None:
    settings = load_settings(
        sacco_env="test",
        database_url=PG_URL,
        redis_url=REDIS_URL,
        ussd_rate_limit="2/minute",
        ussd_callback_token="t" * 24,
        metrics_cache_seconds=0,
    )
    client = create_app(settings, runtime).test_client()
    before = parse(client.get("/metrics").get_data(as_text=True))
    phone = Phone(client, "+254712000206", path="/ussd?token=" + "t" * 24)
    for _ in range(3):
        phone.dial()
    assert phone.last.startswith("END")  # the third dial is over the limit
    assert client.post("/ussd?token=wrong", data={"sessionId": "x"}).status_code == 403
    after = parse(client.get("/metrics").get_data(as_text=True))

    def delta(**labels: str) -> float:
        return value(after, "sacco_ussd_hops_total", **labels) - value(
            before, "sacco_ussd_hops_total", **labels
        )

    assert delta(outcome="continue") == 2
    assert delta(outcome="throttled") == 1
    assert delta(outcome="forbidden") == 1
