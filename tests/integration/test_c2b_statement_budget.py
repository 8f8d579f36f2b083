"""A paybill (C2B) confirmation costs a known number of database statements, like
Django's ``assertNumQueries``: a change that adds a round trip to the path fails here.

What is counted: every statement the application sends to PostgreSQL for one POST of
Daraja's confirmation JSON through the Flask app, on a real session factory (real
``BEGIN`` and ``COMMIT``): each cursor execution, **savepoints included** (``SAVEPOINT``
and ``RELEASE SAVEPOINT`` are round trips like any other), plus ``BEGIN`` and ``COMMIT``.
The member's lookup, the twin check, the ledger entry, the receipt SMS and the partner
event are all on the path; a webhook endpoint is registered so the event is queued.

Also here: the raw body survives a processing failure in the one-transaction path (the
raw row and its ``error`` status are committed, the money is not), and a body that is not
JSON is kept as ``malformed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app_factory import create_app
from config import load_settings
from core.kernel.deps import CoreDeps
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.messaging import webhooks
from db.models import JournalEntry, OutboxMessage
from db.models_mpesa import C2BPayment, MpesaCallback, MpesaReceipt
from db.session import make_session_factory
from integrations.mpesa import callbacks
from runtime import Runtime
from tests.settings import PG_URL, REDIS_URL

TOKEN = "budget-callback-token-0123456789abcdef"
SHORTCODE = "174379"

# The budgets. A first confirmation credited to a member's savings, and the same
# confirmation again (Safaricom's duplicate). Lower them when the path gets cheaper;
# never raise them without saying why in docs/benchmarks.md.
FIRST_BUDGET = 22
DUPLICATE_BUDGET = 7


@dataclass
class Statements:
    sent: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sent)

    def listing(self) -> str:
        return "\n".join(f"{n:3d} {s}" for n, s in enumerate(self.sent, 1))


@contextmanager
def counted(engine: Engine) -> Iterator[Statements]:
    """Every statement sent on ``engine`` while the block runs (savepoints included)."""
    seen = Statements()

    def on_execute(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        seen.sent.append(" ".join(statement.split())[:160])

    def on_begin(_c: Any) -> None:
        seen.sent.append("BEGIN")

    def on_commit(_c: Any) -> None:
        seen.sent.append("COMMIT")

    def on_rollback(_c: Any) -> None:
        seen.sent.append("ROLLBACK")

    hooks: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", on_execute),
        ("begin", on_begin),
        ("commit", on_commit),
        ("rollback", on_rollback),
    ]
    for name, fn in hooks:
        event.listen(engine, name, fn)
    try:
        yield seen
    finally:
        for name, fn in hooks:
            event.remove(engine, name, fn)


@dataclass
class Paybill:
    client: FlaskClient
    factory: sessionmaker[Session]
    engine: Engine
    member_number: str

    def confirm(self, trans_id: str, kes: int = 250, bill_ref: str | None = None) -> Any:
        body = {
            "TransactionType": "Pay Bill",
            "TransID": trans_id,
            "TransTime": "20260302103000",
            "TransAmount": f"{kes}.00",
            "BusinessShortCode": SHORTCODE,
            "BillRefNumber": self.member_number if bill_ref is None else bill_ref,
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": "2547 ***** 126",
            "FirstName": "GRACE",
            "MiddleName": "",
            "LastName": "",
        }
        return self.post(json.dumps(body).encode())

    def post(self, data: bytes) -> Any:
        r = self.client.post(
            f"/hooks/mobile/c2b/confirmation?token={TOKEN}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        return r.status_code, r.get_json()


@pytest.fixture
def paybill(
    committed_pg: Engine, deps: CoreDeps, redis_client: redis_lib.Redis
) -> Iterator[Paybill]:
    factory = make_session_factory(committed_pg)
    runtime = Runtime(
        engine=committed_pg,
        session_factory=factory,
        deps=deps,
        redis=redis_client,
        sacco_name="Umoja SACCO",
    )
    settings = load_settings(
        sacco_env="test",
        database_url=PG_URL,
        redis_url=REDIS_URL,
        mpesa_callback_token=TOKEN,
        mpesa_shortcode=SHORTCODE,
    )
    app = create_app(settings, runtime)
    app.config["TESTING"] = True
    with factory() as s:
        m = members.register_member(
            s, deps, full_name="Grace Akinyi", msisdn="+254712000901",
            national_id="29000901", consent=True,
        )  # fmt: skip
        members.set_status(s, m.id, "active")
        webhooks.register_endpoint(
            s, deps, name="ledger-sync", url="https://partner.example/hook",
            events=["deposit.received"],
        )  # fmt: skip
        s.commit()
        number = str(m.member_number)
    yield Paybill(app.test_client(), factory, committed_pg, number)


def test_a_first_confirmation_and_its_duplicate_stay_within_their_statement_budgets(
    paybill: Paybill,
) -> None:
    paybill.confirm("QBG0000001")  # warms the per-process caches (hot accounts, chart)
    with counted(paybill.engine) as first:
        assert paybill.confirm("QBG0000002") == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    with counted(paybill.engine) as again:
        assert paybill.confirm("QBG0000002") == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    assert len(first) <= FIRST_BUDGET, f"{len(first)} statements:\n{first.listing()}"
    assert len(again) <= DUPLICATE_BUDGET, f"{len(again)} statements:\n{again.listing()}"
    # What the member and the partner see, and the ledger holds: credited once.
    with paybill.factory() as s:
        assert s.scalar(
            select(func.count()).select_from(JournalEntry)
            .where(JournalEntry.idempotency_key == "mpesa:receipt:QBG0000002")
        ) == 1  # fmt: skip
        sms = s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.business_key == "deposit_received:c2b:QBG0000002"
            )
        ).all()
        assert len(sms) == 1 and "KES 250" in sms[0] and "QBG0000002" in sms[0]
        assert "New balance KES 500" in sms[0]
        events = s.scalars(
            select(OutboxMessage.body).where(OutboxMessage.channel == "webhook")
        ).all()
        assert [json.loads(b)["data"]["mpesa_receipt"] for b in events] == [
            "QBG0000001",
            "QBG0000002",
        ]
        statuses = s.execute(
            select(MpesaCallback.ref, MpesaCallback.status, MpesaCallback.detail).order_by(
                MpesaCallback.id
            )
        ).all()
        assert [tuple(r) for r in statuses] == [
            ("QBG0000001", "processed", "credited"),
            ("QBG0000002", "processed", "credited"),
            ("QBG0000002", "processed", "duplicate"),
        ]
        assert verify_ledger(s).ok


def test_one_confirmation_is_one_commit(paybill: Paybill) -> None:
    paybill.confirm("QBG0000011")
    with counted(paybill.engine) as first:
        paybill.confirm("QBG0000012")
    with counted(paybill.engine) as again:
        paybill.confirm("QBG0000012")
    assert first.sent.count("COMMIT") == 1, first.listing()
    assert again.sent.count("COMMIT") == 1, again.listing()


@contextmanager
def _fault(committed_pg: Engine) -> Iterator[None]:
    """A real failure late in processing, after the money moved: PostgreSQL refuses the
    receipt row's update (a trigger raising, as a full disk or a broken constraint would)."""
    with committed_pg.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION c2b_budget_fault() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'disk on fire'; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER c2b_budget_fault BEFORE UPDATE ON mpesa_receipts "
                "FOR EACH ROW EXECUTE FUNCTION c2b_budget_fault()"
            )
        )
    try:
        yield
    finally:
        with committed_pg.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS c2b_budget_fault ON mpesa_receipts"))
            conn.execute(text("DROP FUNCTION IF EXISTS c2b_budget_fault()"))


def test_the_raw_body_survives_a_processing_failure_and_nothing_is_credited(
    paybill: Paybill, committed_pg: Engine
) -> None:
    """Processing fails after the money moved (the receipt's entry id cannot be written):
    the raw row is committed with ``error``, acknowledged to Safaricom, and neither the
    payment row, the receipt, the entry nor the SMS is left behind; the stored body is
    replayed later and credits once."""
    with _fault(committed_pg):
        assert paybill.confirm("QBG0000021") == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    with paybill.factory() as s:
        [row] = s.scalars(select(MpesaCallback)).all()
        assert (row.status, row.kind) == ("error", "c2b_confirmation")
        assert "disk on fire" in (row.detail or "")
        assert json.loads(bytes(row.body))["TransID"] == "QBG0000021"
        assert s.scalar(select(func.count()).select_from(C2BPayment)) == 0
        assert s.scalar(select(func.count()).select_from(MpesaReceipt)) == 0
        assert s.scalar(
            select(func.count()).select_from(JournalEntry)
            .where(JournalEntry.idempotency_key.like("mpesa:receipt:%"))
        ) == 0  # fmt: skip
        assert s.scalar(
            select(func.count()).select_from(OutboxMessage)
            .where(OutboxMessage.business_key.like("deposit_received:%"))
        ) == 0  # fmt: skip
        callback_id = row.id
    ctx = paybill.client.application.extensions["mpesa"]
    answer = callbacks.process_stored(
        paybill.factory, ctx.runtime.deps, ctx.policy, callback_id, SHORTCODE
    )
    assert answer.outcome == "credited"
    with paybill.factory() as s:
        assert s.get_one(MpesaCallback, callback_id).status == "processed"
        assert s.scalar(select(func.count()).select_from(C2BPayment)) == 1
        assert verify_ledger(s).ok


def test_a_body_that_is_not_json_is_kept_as_malformed_in_one_commit(paybill: Paybill) -> None:
    with counted(paybill.engine) as sent:
        status, _ = paybill.post(b"{not json")
    assert status == 400
    assert sent.sent.count("COMMIT") == 1, sent.listing()
    with paybill.factory() as s:
        [row] = s.scalars(select(MpesaCallback)).all()
        assert row.status == "malformed" and bytes(row.body) == b"{not json"
