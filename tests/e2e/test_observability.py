"""Logs and metrics of a real deployment, read as an operator's tools read them.

gunicorn (two workers, so Prometheus' multiprocess mode is what adds the counts up) and an
RQ worker process run on the test PostgreSQL and Redis with the Africa's Talking stand-in.
Through them: a USSD registration (a national ID and a PIN typed), a member's PIN session
(a wrong PIN, then the right one), a paybill confirmation for that member (the callback
token in its URL, the member's phone in its body), the receipt SMS sent by the worker and
the gateway's delivery report. Then every line both processes wrote is read:

* each line is one JSON object with ts, level, logger, message and request_id;
* no line holds the members' phone numbers in any spelling, their PINs, their national
  IDs, or any of the callback tokens;
* the request id the paybill request carried is on the worker's lines for the SMS it caused;

and /metrics, scraped from whichever worker answers, counts every hop exactly once.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select

from db.models import Member, OutboxMessage
from db.session import make_session_factory
from integrations.africastalking.standin import StandinHandle
from integrations.africastalking.standin import start_standin as start_at
from tests.e2e.gateway import GatewayPhone
from tests.e2e.servers import flush_redis, gunicorn, run_manage
from tests.settings import PG_URL, REDIS_URL

pytestmark = pytest.mark.slow

NEW_PHONE, NEW_ID, NEW_PIN = "+254711222333", "29384756", "5947"
PAYER_NAME = "Wanjiku Njeri"
WRONG_PIN = "8163"
PAYBILL_REQUEST_ID = "paybill-e2e-7f3a9c21"


@dataclass(frozen=True)
class Deployment:
    base: str
    env: dict[str, str]
    tokens: dict[str, str]
    log: Any  # the file gunicorn writes to
    at: StandinHandle


@pytest.fixture(scope="module")
def multiproc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's own PROMETHEUS_MULTIPROC_DIR, holding a stale file from a last run."""
    directory = tmp_path_factory.mktemp("prometheus")
    (directory / "counter_999999.db").write_bytes(b"stale")
    return directory


@pytest.fixture(scope="module")
def deployment(pg_engine: Engine, multiproc_dir: Path) -> Iterator[Deployment]:
    tokens = {
        "ussd": secrets.token_urlsafe(24),
        "sms": secrets.token_urlsafe(24),
        "mpesa": secrets.token_urlsafe(24),
    }
    at = start_at(port=0, delivery_delay=0.05)
    env = {
        "SACCO_ENV": "test",
        "DATABASE_URL": PG_URL,
        "REDIS_URL": REDIS_URL,
        "USSD_CALLBACK_TOKEN": tokens["ussd"],
        "SMS_CALLBACK_TOKEN": tokens["sms"],
        "MPESA_CALLBACK_TOKEN": tokens["mpesa"],
        "AT_BASE_URL": at.url,
        "AT_INSIGHTS_URL": at.url,
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "LOG_LEVEL": "DEBUG",  # the most a process can write
        "LOG_FORMAT": "json",
        "USSD_RATE_LIMIT": "10000/minute",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
    }
    pg_engine.info_snapshot.restore()  # type: ignore[attr-defined]
    flush_redis(REDIS_URL)
    run_manage(["migrate"], env)
    try:
        with tempfile.TemporaryFile(mode="w+") as log, gunicorn(env, output=log) as base:
            at.state.delivery_callback = f"{base}/sms/delivery?token={tokens['sms']}"
            yield Deployment(base, env, tokens, log, at)
    finally:
        at.stop()
        flush_redis(REDIS_URL)
        pg_engine.info_snapshot.restore()  # type: ignore[attr-defined]


def _scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with requests.get(f"{base}/metrics", timeout=15) as resp:
        assert resp.status_code == 200
        text = resp.text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _total(samples: dict[Any, float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def test_a_full_run_logs_json_with_nothing_secret_and_counts_every_hop(
    deployment: Deployment, pg_engine: Engine, multiproc_dir: Path
) -> None:
    d = deployment
    hops = 0
    with requests.Session() as http:
        # A new phone registers: name, national ID, consent, PIN twice.
        new = GatewayPhone(http, d.base, NEW_PHONE, path=f"/ussd?token={d.tokens['ussd']}")
        assert "Choose language" in new.dial()
        for typed in ("1", PAYER_NAME, NEW_ID, "1", NEW_PIN, NEW_PIN):
            new.send(typed)
        assert new.ended
        hops += 7
        # The same phone, now a member: a wrong PIN, then the right one.
        assert "Check balances" in new.dial()
        assert "Enter your PIN" in new.send("1")
        assert "Wrong PIN" in new.send(WRONG_PIN)
        assert "Savings" in new.send(NEW_PIN)
        new.hang_up()
        hops += 4

        with make_session_factory(pg_engine)() as session:
            member = session.scalars(select(Member).where(Member.msisdn == NEW_PHONE)).one()
            member_number = member.member_number
        # The paybill confirmation, with the phone in Daraja's 2547… spelling in its body.
        body = {
            "TransactionType": "Pay Bill",
            "TransID": "RKO7E2EOBS",
            "TransTime": "20261127121325",
            "TransAmount": "750.00",
            "BusinessShortCode": "174379",
            "BillRefNumber": member_number,
            "InvoiceNumber": "",
            "OrgAccountBalance": "25.00",
            "ThirdPartyTransID": "",
            "MSISDN": NEW_PHONE.removeprefix("+"),
            "FirstName": "WANJIKU",
        }
        resp = http.post(
            f"{d.base}/hooks/mobile/c2b/confirmation?token={d.tokens['mpesa']}",
            json=body,
            headers={"X-Request-ID": PAYBILL_REQUEST_ID},
            timeout=15,
        )
        assert resp.status_code == 200 and resp.json()["ResultCode"] == 0
        assert resp.headers["X-Request-ID"] == PAYBILL_REQUEST_ID
        # A forged callback (no token) is refused and counted.
        assert (
            http.post(f"{d.base}/hooks/mobile/c2b/confirmation", json=body, timeout=15).status_code
            == 403
        )

    # The RQ worker as the units run it (``--burst``: deliver what is queued, then exit).
    worker_output = run_manage(
        ["worker", "--burst", "--name", "e2e-observability"], d.env, stderr=True
    )
    deadline = time.monotonic() + 20
    receipt: OutboxMessage | None = None
    while time.monotonic() < deadline:  # the stand-in's delivery report comes back
        with make_session_factory(pg_engine)() as session:
            receipt = session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.recipient == NEW_PHONE,
                    OutboxMessage.template == "deposit_received",
                )
            ).first()
        if receipt is not None and receipt.status == "delivered":
            break
        time.sleep(0.1)
    assert receipt is not None and receipt.status == "delivered", receipt and receipt.status
    assert any(m["to"] == NEW_PHONE for m in d.at.state.messages)

    # ---- the logs
    d.log.flush()
    d.log.seek(0)
    web_output = d.log.read()
    lines = [line for line in (web_output + "\n" + worker_output).splitlines() if line.strip()]
    assert len(lines) > 30
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert {"ts", "level", "logger", "message", "request_id"} <= record.keys(), line
        records.append(record)
    everything = "\n".join(lines)
    digits = NEW_PHONE.removeprefix("+")
    forbidden = {
        "phone (+254)": NEW_PHONE,
        "phone (254)": digits,
        "phone (07)": "0" + digits[3:],
        "national ID": NEW_ID,
        "PIN": NEW_PIN,
        "wrong PIN": WRONG_PIN,
        **{f"{name} token": token for name, token in d.tokens.items()},
    }
    for what, value in forbidden.items():
        assert value not in everything, f"the {what} is in the logs"
    assert any("+2547*****333" in r["message"] for r in records)  # masked, still useful

    # The worker's lines for the receipt carry the paybill request's id.
    worker_records = [json.loads(x) for x in worker_output.splitlines() if x.strip()]
    tagged = [r for r in worker_records if r["request_id"] == PAYBILL_REQUEST_ID]
    assert tagged, [r["message"][:80] for r in worker_records]
    web_tagged = [r for r in records if r["request_id"] == PAYBILL_REQUEST_ID]
    # In the web process: the access line answers it, and the enqueue of the receipt's job
    # (after the callback's commit) ran under it.
    assert any(
        r["logger"] == "gunicorn.access" and f"rid={PAYBILL_REQUEST_ID}" in r["message"]
        for r in records
    )
    assert any(r["logger"] == "rq.queue" for r in web_tagged)
    assert any(r["logger"] == "workers.outbox" and "sent" in r["message"] for r in tagged)

    # ---- the metrics: any worker answers, the counts are the sum of both
    files = sorted(p.name for p in multiproc_dir.glob("*.db"))
    assert "counter_999999.db" not in files  # emptied when gunicorn started

    def counting_workers() -> set[str]:
        names = (p.name for p in multiproc_dir.glob("counter_*.db"))
        return {name.rsplit("_", 1)[1] for name in names}

    for _ in range(200):  # the kernel may have given one worker every request so far
        if len(counting_workers()) == 2:
            break
        requests.get(f"{d.base}/healthz", timeout=15).close()  # a fresh connection each
    assert len(counting_workers()) == 2
    for _ in range(10):  # a fresh connection each: both workers answer some
        samples = _scrape(d.base)
        assert _total(samples, "sacco_ussd_hops_total") == hops
        assert _total(samples, "sacco_ussd_hop_seconds_count") == hops
        assert _total(samples, "sacco_pin_verifications_total", result="failed") == 1
        assert _total(samples, "sacco_pin_verifications_total", result="ok") == 1
        assert (
            _total(
                samples,
                "sacco_callbacks_total",
                gateway="mpesa",
                kind="c2b_confirmation",
                result="processed",
            )
            == 1
        )
        assert _total(samples, "sacco_callbacks_total", gateway="mpesa", result="forbidden") == 1
        assert (
            _total(samples, "sacco_callbacks_total", gateway="africastalking", kind="sms_delivery")
            >= 1
        )
        assert _total(samples, "sacco_ledger_entries_total") >= 1
        assert _total(samples, "sacco_outbox_oldest_pending_age_seconds") == 0
    with requests.get(f"{d.base}/metrics", timeout=15) as resp:
        assert digits[-9:] not in resp.text  # no phone number in any label
