"""The app served over real HTTP (werkzeug, port 0) against the Daraja and Africa's Talking
stand-ins, on the committed PostgreSQL test database: callbacks travel both ways."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, make_server

from app_factory import create_app
from config import Settings, load_settings
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.savings import accounts as savings
from db.models import Member, OutboxMessage
from db.session import make_session_factory
from integrations.africastalking.standin import StandinHandle as AtHandle
from integrations.mpesa.client import DarajaClient
from integrations.mpesa.standin import StandinHandle
from integrations.mpesa.wiring import MpesaContext, daraja_config
from runtime import Runtime
from tests.settings import PG_URL
from workers.runner import InProcessJobs

TOKEN = "test-callback-token-0123456789abcdef"


@dataclass
class Env:
    settings: Settings
    runtime: Runtime
    ctx: MpesaContext
    daraja: StandinHandle
    at: AtHandle
    url: str
    app: Any = None

    @property
    def deps(self) -> CoreDeps:
        return self.runtime.deps

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session committed when the block ends, as an edge would (core never commits).
        The jobs core deferred are dropped: a test sends pushes and payouts itself, step by
        step (``run_send_b2c``), where a channel would hand them to the queue."""
        with self.runtime.unit_of_work() as s:
            yield s
            uow.take_deferred(s)

    def control(self, **body: Any) -> None:
        post(self.daraja.url + "/_control", body)

    def log(self) -> dict[str, Any]:
        with requests.get(self.daraja.url + "/_log", timeout=5) as r:
            return r.json()  # type: ignore[no-any-return]

    def callback(self, path: str, body: Any, token: str = TOKEN) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        with requests.post(
            f"{self.url}{path}?token={token}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=10,
        ) as r:
            try:
                return r.status_code, r.json()
            except ValueError:
                return r.status_code, r.text

    def member(
        self, msisdn: str, *, status: str = "active", savings_kes: int = 0, name: str = "Jane Doe"
    ) -> Member:
        with self.unit_of_work() as s:
            national_id = str(20_000_000 + int(msisdn[-6:]))
            m = members.register_member(
                s,
                self.deps,
                full_name=name,
                msisdn=msisdn,
                national_id=national_id,
                consent=True,
                pin="4826",
            )
            if savings_kes:
                savings.credit_member(
                    s,
                    self.deps,
                    savings.Credit(
                        member_id=m.id,
                        target="savings",
                        amount_cents=Money.of(savings_kes).cents,
                        source=savings.CreditSource.CASH,
                        idempotency_key=f"seed-{m.id}",
                        business_key=f"deposit_received:seed-{m.id}",
                    ),
                )
            if status != "pending_kyc":
                members.set_status(s, m.id, "active")
                if status != "active":
                    members.set_status(s, m.id, status)
            return m

    def balance(self, member_id: int, purpose: str = "savings") -> ledger.Balance:
        with self.unit_of_work() as s:
            return ledger.get_balance(s, members.member_account_ids(s, member_id)[purpose])

    def code_balance(self, code: str) -> int:
        with self.unit_of_work() as s:
            return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents

    def sms(self, member_id: int, template: str | None = None) -> list[OutboxMessage]:
        with self.unit_of_work() as s:
            q = select(OutboxMessage).where(OutboxMessage.member_id == member_id)
            if template:
                q = q.where(OutboxMessage.template == template)
            return list(s.scalars(q.order_by(OutboxMessage.id)))

    def count(self, model: Any, *where: Any) -> int:
        with self.unit_of_work() as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def row(self, model: Any, row_id: int) -> Any:
        with self.unit_of_work() as s:
            return s.get(model, row_id)


def post(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def serve(
    engine: Engine, deps: CoreDeps, daraja: StandinHandle, at: AtHandle, **overrides: Any
) -> Iterator[Env]:
    holder: dict[str, Any] = {}

    def wsgi(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server: BaseWSGIServer = make_server("127.0.0.1", 0, wsgi, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = load_settings(
        sacco_env="test",
        database_url=PG_URL,
        mpesa_base_url=daraja.url,
        mpesa_callback_base_url=url,
        mpesa_callback_token=TOKEN,
        at_insights_url=at.url,
        **overrides,
    )
    runtime = Runtime(
        engine=engine,
        session_factory=make_session_factory(engine),
        deps=deps,
        redis=None,
        sacco_name="Umoja SACCO",
    )
    app = create_app(settings, runtime)
    ctx: MpesaContext = app.extensions["mpesa"]
    ctx.jobs = InProcessJobs(synchronous=True)
    ctx.jobs.bind(ctx)
    ctx.daraja_factory = lambda: DarajaClient(
        daraja_config(settings, daraja.certificate_pem),
    )
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    env = Env(settings, runtime, ctx, daraja, at, url, app)
    try:
        ctx.daraja.register_c2b_urls()
        yield env
        daraja.state.join_workers(timeout=30)  # every callback served before the checks
        with env.unit_of_work() as s:
            report = verify_ledger(s)
        assert report.ok, report.problems
    finally:
        ctx.close()
        server.shutdown()
        server.server_close()
        thread.join()
