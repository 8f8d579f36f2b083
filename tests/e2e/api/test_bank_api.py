"""The bank over the staff API: a member's bank account (validated, masked), the M-Pesa
float swept to the bank (at once below the threshold, by maker-checker above it; never
more than the float holds), transfers and their resolution, the statement; bad input is
a 4xx naming the field and writes nothing; the bank not answering is a problem, not a 500."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import book
from core.members.registration import member_account_ids
from db.models import Member
from db.models_bank import BankSweep, BankTransfer, MemberBankAccount
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import funded_member, make_product
from tests.settings import PG_URL, REDIS_URL

KES = 100


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL,
        document_dir=str(tmp_path / "documents"), api_rate_limit="100000/minute",
        api_login_rate_limit="1000/minute", bank_base_url="http://127.0.0.1:9",
        bank_callback_token="t" * 40, bank_sweep_approval_above_kes=5_000,
        bank_timeout_seconds=0.5,
    )  # fmt: skip


def fill_float(factory: sessionmaker[Session], deps: CoreDeps, cents: int) -> None:
    with unit_of_work(factory) as s:
        float_id = ledger.account_id_by_code(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
        suspense = ledger.account_id_by_code(s, SystemAccount.SUSPENSE)
        ledger.post_entry(
            s, kind=EntryKind.MPESA_SUSPENSE,
            legs=[ledger.Leg(float_id, cents), ledger.Leg(suspense, -cents)],
            idempotency_key=f"float:{uuid4().hex}", now=deps.now(),
        )  # fmt: skip


def sweeps(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        return s.scalar(select(func.count()).select_from(BankSweep)) or 0


def test_sweeping_the_float_over_the_api(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    manager, manager2, teller = make_staff("manager"), make_staff("manager"), make_staff("teller")
    fill_float(session_factory, deps, 20_000 * KES)
    url = "/api/v1/bank/sweeps"
    key = {"Idempotency-Key": f"sweep-{uuid4().hex[:12]}"}
    for bad, field in (
        ({"amount_cents": -5}, "amount_cents"),
        ({"amount_cents": "100"}, "amount_cents"),
        ({"amount_cents": 1.5}, "amount_cents"),
        ({"amount_cents": 100, "extra": 1}, "extra"),
    ):
        answer = api.post(url, headers={**auth(manager), **key}, json=bad)
        assert answer.status_code == 422 and field in str(answer.json), answer.json
    missing_key = api.post(url, headers=auth(manager), json={"amount_cents": 100})
    assert missing_key.status_code == 422 and "Idempotency-Key" in str(missing_key.json)
    assert (
        api.post(url, headers={**auth(teller), **key}, json={"amount_cents": 1}).status_code == 403
    )
    too_much = api.post(url, headers={**auth(manager), **key}, json={"amount_cents": 10**11})
    assert 400 <= too_much.status_code < 500 and "insufficient" in str(too_much.json)
    assert sweeps(session_factory) == 0

    made = api.post(url, headers={**auth(manager), **key}, json={"amount_cents": 3_000 * KES})
    assert made.status_code == 201, made.json
    again = api.post(url, headers={**auth(manager), **key}, json={"amount_cents": 3_000 * KES})
    assert again.json["reference"] == made.json["reference"]
    assert sweeps(session_factory) == 1

    big = api.post(url, headers={**auth(manager), "Idempotency-Key": f"big-{uuid4().hex[:10]}"},
                   json={"amount_cents": 9_000 * KES, "note": "month end"})  # fmt: skip
    assert big.status_code == 202 and big.json["action"] == "bank.sweep"
    assert sweeps(session_factory) == 1
    decided = api.post(f"/api/v1/approvals/{big.json['id']}/approve",
                       headers=auth(manager2), json={"note": "seen the portal"})  # fmt: skip
    assert decided.json["status"] == "approved", decided.json
    assert sweeps(session_factory) == 2
    with unit_of_work(session_factory) as s:
        float_id = ledger.account_id_by_code(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
        assert ledger.get_balance(s, float_id).balance_cents >= 0


def test_member_bank_account_transfers_and_statement_over_the_api(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:  # fmt: skip
    manager, auditor = make_staff("manager"), make_staff("auditor")
    member = make_member(status="active")
    url = f"/api/v1/bank/members/{member.id}/account"
    good = {"bank_code": "11", "account_number": "01123456789000", "account_name": "Amina W"}
    for bad, field in (
        ({**good, "bank_code": "COOP"}, "bank_code"),
        ({**good, "account_number": "12"}, "account_number"),
        ({**good, "account_name": ""}, "account_name"),
        ({k: v for k, v in good.items() if k != "account_name"}, "account_name"),
    ):
        answer = api.put(url, headers=auth(manager), json=bad)
        assert answer.status_code == 422 and field in str(answer.json), (bad, answer.json)
    assert api.put(url, headers=auth(auditor), json=good).status_code == 403
    assert api.put("/api/v1/bank/members/999999999/account", headers=auth(manager),
                   json=good).status_code == 404  # fmt: skip
    with unit_of_work(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(MemberBankAccount).where(
            MemberBankAccount.member_id == member.id)) == 0  # fmt: skip
    saved = api.put(url, headers=auth(manager), json=good)
    assert saved.status_code == 200 and saved.json["account"] == "****9000"
    assert "01123456789000" not in str(saved.json)

    listed = api.get("/api/v1/bank/transfers?status=review", headers=auth(manager))
    assert listed.status_code == 200 and isinstance(listed.json["items"], list)
    assert api.get("/api/v1/bank/transfers?status=lost", headers=auth(manager)).status_code == 422
    resolution = {"resolution": "paid"}
    answer = api.post("/api/v1/bank/transfers/1/resolution", headers=auth(manager), json=resolution)
    assert answer.status_code == 422 and "bank_reference" in str(answer.json)
    answer = api.post("/api/v1/bank/transfers/999999/resolution", headers=auth(manager),
                      json={"resolution": "not_paid"})  # fmt: skip
    assert answer.status_code == 404

    stmt = "/api/v1/bank/statement-reconciliations"
    backwards = api.post(
        stmt, headers=auth(manager), json={"start": "2026-06-10", "end": "2026-06-01"}
    )
    assert backwards.status_code == 422 and "end" in str(backwards.json)
    down = api.post(stmt, headers=auth(manager), json={"start": "2026-06-01", "end": "2026-06-10"})
    assert 400 <= down.status_code < 500 and "bank" in str(down.json), down.json


def test_a_loan_recommended_to_the_bank_is_held_and_queued_for_the_bank(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    """``disburse_to: bank`` on the recommendation: refused (nothing done) while the member
    has no bank account on record; once they have one, approved: the loan reaches savings
    and the same amount is held for a bank transfer that the job queue sends."""
    officer, manager = make_staff("loan_officer"), make_staff("manager")
    with unit_of_work(session_factory) as s:
        product = make_product(s, deps, guarantor_policy="none")
        borrower = funded_member(s, deps, deposits_cents=100_000 * KES)
        application = book.apply_for_loan(
            s, deps, borrower.id, product.code, 50_000 * KES, 12, "staff", f"bk-{uuid4().hex}"
        )
        s.commit()
        app_id, member_id = application.id, borrower.id
    url = f"/api/v1/loan-applications/{app_id}"
    bad = api.post(f"{url}/recommend", headers=auth(officer), json={"disburse_to": "cheque"})
    assert bad.status_code == 422 and "disburse_to" in str(bad.json)
    asked = api.post(f"{url}/recommend", headers=auth(officer), json={"disburse_to": "bank"})
    assert asked.status_code == 202, asked.json
    refused = api.post(f"{url}/approve", headers=auth(manager), json={"note": "ok"})
    assert refused.json["status"] == "failed" and "bank" in str(refused.json["result"])
    with unit_of_work(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(BankTransfer)) == 0
    account = {"bank_code": "01", "account_number": "1234567890", "account_name": "Juma K"}
    assert api.put(f"/api/v1/bank/members/{member_id}/account", headers=auth(manager),
                   json=account).status_code == 200  # fmt: skip
    again = api.post(f"{url}/recommend", headers=auth(officer), json={"disburse_to": "bank"})
    assert again.status_code == 202, again.json
    done = api.post(f"{url}/approve", headers=auth(manager), json={"note": "ok"})
    assert done.json["status"] == "approved", done.json
    with unit_of_work(session_factory) as s:
        row = s.scalars(select(BankTransfer).where(BankTransfer.member_id == member_id)).one()
        assert (row.transfer_type, row.status) == ("internal", "requested")  # same bank
        savings = ledger.get_balance(s, member_account_ids(s, member_id)["savings"])
        assert savings.held_cents == row.amount_cents == savings.balance_cents
