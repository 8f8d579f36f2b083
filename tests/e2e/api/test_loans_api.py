"""The loan book over the staff API: the schedule preview, applications recommended by a
loan officer and approved by a manager, loans with schedule, transactions and guarantors,
teller repayments (Idempotency-Key; bad input a 4xx that writes nothing), branch-bound
staff seeing only their branch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.loans import book
from db.models import JournalEntry, OutboxMessage
from db.models_loans import LoanApplication, LoanRepayment
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import disbursed_loan, funded_member, make_product

KES = 100


def written(session_factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with unit_of_work(session_factory) as s:
        return (
            s.scalar(select(func.count()).select_from(JournalEntry)) or 0,
            s.scalar(select(func.count()).select_from(LoanRepayment)) or 0,
            s.scalar(select(func.count()).select_from(OutboxMessage)) or 0,
        )


def a_loan(
    session_factory: sessionmaker[Session], deps: CoreDeps, *, branch: str | None = None
) -> tuple[int, str]:
    with unit_of_work(session_factory) as s:
        loan, borrower, _ = disbursed_loan(s, deps)
        borrower.branch = branch
        s.commit()
        return loan.id, loan.reference


def test_schedule_preview_of_the_issue_fixture(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    with unit_of_work(session_factory) as s:
        product = make_product(s, deps, fees=[], rounding="cent")
        s.commit()
        product_id = product.id
    teller = make_staff("teller")  # loan_products:read: every role that reads
    url = f"/api/v1/loan-products/{product_id}/schedule-preview"
    body = {"amount_cents": 100_000 * KES, "term": 12, "disbursed_on": "2026-01-31"}
    got = api.post(url, headers=auth(teller), json=body)
    assert got.status_code == 200, got.json
    out: dict[str, Any] = got.json or {}
    first, last = out["instalments"][0], out["instalments"][-1]
    assert first["total_cents"] == 888_488  # KES 8,884.88 (issue 12)
    assert (first["due_on"], first["interest_cents"]) == ("2026-02-28", 100_000)
    assert last["balance_cents"] == 0 and len(out["instalments"]) == 12
    assert sum(i["principal_cents"] for i in out["instalments"]) == 100_000 * KES
    assert out["total_repayable_cents"] == out["principal_cents"] + out["interest_cents"]
    assert out["received_cents"] == 100_000 * KES and out["apr"].startswith("0.12")
    for bad in ({**body, "term": 49}, {**body, "amount_cents": 0}, {**body, "amount_cents": 1e9},
                {**body, "amount_cents": -5}, {"term": 12}, {**body, "extra": 1}):  # fmt: skip
        assert api.post(url, headers=auth(teller), json=bad).status_code == 422, bad
    missing = api.post("/api/v1/loan-products/999999/schedule-preview", headers=auth(teller),
                       json=body)  # fmt: skip
    assert missing.status_code == 404


def test_recommend_then_approve_disburses_and_the_loan_shows_its_schedule(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    officer, manager, teller = (
        make_staff("loan_officer"),
        make_staff("manager"),
        make_staff("teller"),
    )
    with unit_of_work(session_factory) as s:
        product = make_product(s, deps)  # guarantors required; own deposits cover it all
        borrower = funded_member(s, deps, deposits_cents=100_000 * KES)
        application = book.apply_for_loan(
            s, deps, borrower.id, product.code, 50_000 * KES, 12, "staff", "api-apply-0001"
        )
        s.commit()
        app_id = application.id
    assert application.status == "pending_approval"
    queue = api.get("/api/v1/loan-applications?status=pending_approval", headers=auth(officer))
    assert queue.status_code == 200 and app_id in [a["id"] for a in queue.json["items"]]
    assert api.get(f"/api/v1/loan-applications/{app_id}", headers=auth(teller)).status_code == 403
    early = api.post(f"/api/v1/loan-applications/{app_id}/approve", headers=auth(manager), json={})
    assert early.status_code == 409 and early.json["code"] == "loan_state"
    asked = api.post(f"/api/v1/loan-applications/{app_id}/recommend", headers=auth(officer),
                     json={"note": "good saver"})  # fmt: skip
    assert asked.status_code == 202 and asked.json["action"] == "loan.approve"
    own = api.post(f"/api/v1/loan-applications/{app_id}/approve", headers=auth(officer), json={})
    assert own.status_code == 403  # the maker does not decide
    done = api.post(f"/api/v1/loan-applications/{app_id}/approve", headers=auth(manager),
                    json={"note": "ok"})  # fmt: skip
    assert done.status_code == 200 and done.json["status"] == "approved", done.json
    detail = api.get(f"/api/v1/loan-applications/{app_id}", headers=auth(officer)).json
    assert detail["status"] == "disbursed" and detail["loan_id"] is not None
    loan = api.get(f"/api/v1/loans/{detail['loan_id']}", headers=auth(manager)).json
    assert (loan["status"], loan["principal_cents"], len(loan["schedule"])) == (
        "active", 50_000 * KES, 12,
    )  # fmt: skip
    assert loan["principal_outstanding_cents"] == 50_000 * KES
    assert loan["transactions"] == [] and loan["guarantors"] == []
    assert loan["credit_bureau"] is None  # never in arrears: no credit-bureau mark
    listed = api.get(f"/api/v1/loans?member_id={detail['member_id']}", headers=auth(manager))
    assert [x["id"] for x in listed.json["items"]] == [detail["loan_id"]]


def test_reject_with_a_reason(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    officer = make_staff("loan_officer")
    with unit_of_work(session_factory) as s:
        product = make_product(s, deps)
        borrower = funded_member(s, deps, deposits_cents=100_000 * KES)
        app_id = book.apply_for_loan(
            s, deps, borrower.id, product.code, 50_000 * KES, 12, "staff", "api-apply-0002"
        ).id
        s.commit()
    url = f"/api/v1/loan-applications/{app_id}/reject"
    assert api.post(url, headers=auth(officer), json={"reason": "x"}).status_code == 422
    done = api.post(url, headers=auth(officer), json={"reason": "income not shown"})
    assert done.status_code == 200 and done.json["status"] == "rejected"
    assert done.json["decision_note"] == "income not shown"
    with unit_of_work(session_factory) as s:
        application = s.get_one(LoanApplication, app_id)
        assert application.status == "rejected"


def test_teller_repayment_once_per_key_and_bad_input_writes_nothing(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    teller, officer = make_staff("teller"), make_staff("loan_officer")
    loan_id, reference = a_loan(session_factory, deps)
    url = f"/api/v1/loans/{loan_id}/repayments"
    key = {"Idempotency-Key": "till-7-000001"}
    paid = api.post(url, headers={**auth(teller), **key}, json={"amount_cents": 5_000 * KES})
    assert paid.status_code == 201, paid.json
    body: dict[str, Any] = paid.json or {}
    assert body["created"] and body["repayment"]["source"] == "cash"
    assert body["repayment"]["principal_cents"] == 5_000 * KES  # nothing due yet: principal
    assert body["loan"]["principal_outstanding_cents"] == 95_000 * KES
    before = written(session_factory)
    again = api.post(url, headers={**auth(teller), **key}, json={"amount_cents": 5_000 * KES})
    assert again.status_code == 200 and not again.json["created"]
    assert again.json["repayment"]["id"] == body["repayment"]["id"]
    for amount in (0, -5, 1e9, "100", 10**13):
        bad = api.post(url, headers={**auth(teller), "Idempotency-Key": "till-7-000002"},
                       json={"amount_cents": amount})  # fmt: skip
        assert bad.status_code == 422, (amount, bad.json)
    no_key = api.post(url, headers=auth(teller), json={"amount_cents": 100})
    assert no_key.status_code == 422
    unknown = api.post("/api/v1/loans/999999/repayments",
                       headers={**auth(teller), "Idempotency-Key": "till-7-000003"},
                       json={"amount_cents": 100})  # fmt: skip
    assert unknown.status_code == 404
    refused = api.post(url, headers={**auth(officer), **key}, json={"amount_cents": 100})
    assert refused.status_code == 403
    assert written(session_factory) == before
    loan = api.get(f"/api/v1/loans/{loan_id}", headers=auth(officer)).json
    assert [t["amount_cents"] for t in loan["transactions"]] == [5_000 * KES]
    assert loan["reference"] == reference


def test_branch_bound_staff_see_only_their_branch(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    nyeri = make_staff("loan_officer", branch="Nyeri")
    head = make_staff("loan_officer")
    teller = make_staff("teller", branch="Nyeri")
    here, _ = a_loan(session_factory, deps, branch="Nyeri")
    there, _ = a_loan(session_factory, deps, branch="Kisumu")
    assert api.get(f"/api/v1/loans/{here}", headers=auth(nyeri)).status_code == 200
    assert api.get(f"/api/v1/loans/{there}", headers=auth(nyeri)).status_code == 404
    seen = [x["id"] for x in api.get("/api/v1/loans?limit=100", headers=auth(nyeri)).json["items"]]
    assert here in seen and there not in seen
    assert api.get(f"/api/v1/loans/{there}", headers=auth(head)).status_code == 200
    elsewhere = api.post(f"/api/v1/loans/{there}/repayments",
                         headers={**auth(teller), "Idempotency-Key": "till-9-000001"},
                         json={"amount_cents": 100})  # fmt: skip
    assert elsewhere.status_code == 404
