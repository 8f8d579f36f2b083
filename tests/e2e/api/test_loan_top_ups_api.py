"""Top-ups over the staff API: a loan officer applies on a member's behalf with
``top_up_of``; the answer shows the payoff, the commission and what reaches savings; the
old loan closes with a ``top_up`` transaction; the same key is a replay; bad input and
refusals are 4xx that write nothing."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.loans import book
from db.models import AuditEvent, JournalEntry, OutboxMessage
from db.models_loans import Loan, LoanApplication
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import funded_member, make_product

KES = 100
COMMISSION = {"kind": "top_up_commission", "percent": Decimal("2"),
              "timing": "deducted_at_disbursement"}  # fmt: skip


def written(session_factory: sessionmaker[Session]) -> tuple[int, ...]:
    with unit_of_work(session_factory) as s:
        return tuple(
            s.scalar(select(func.count()).select_from(model)) or 0
            for model in (LoanApplication, Loan, JournalEntry, OutboxMessage, AuditEvent)
        )


def old_loan(session_factory: sessionmaker[Session], deps: CoreDeps) -> dict[str, Any]:
    """An instant-style product offering top-ups at once, a member's loan of KES 50,000
    under it, and another member of the same branch."""
    with unit_of_work(session_factory) as s:
        product = make_product(
            s, deps, fees=[COMMISSION], rounding="cent", guarantor_policy="none",
            guarantor_cover_percent=None, auto_approve_ceiling_cents=500_000_000,
            top_up_min_instalments_paid=0,
        )  # fmt: skip
        borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
        other = funded_member(s, deps, deposits_cents=50_000 * KES, name="Otieno Kamau")
        application = book.apply_for_loan(
            s, deps, borrower.id, product.code, 50_000 * KES, 12, "staff", "api-topup-first"
        )
        loan = s.scalars(select(Loan).where(Loan.application_id == application.id)).one()
        s.commit()
        return {"code": product.code, "member": borrower.id, "other": other.id,
                "loan": loan.id, "reference": loan.reference}  # fmt: skip


def test_a_loan_officer_tops_up_a_loan_once_per_key(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    officer, teller = make_staff("loan_officer"), make_staff("teller")
    old = old_loan(session_factory, deps)
    body = {"member_id": old["member"], "product_code": old["code"],
            "amount_cents": 100_000 * KES, "term": 12, "top_up_of": old["reference"]}  # fmt: skip
    headers = {**auth(officer), "Idempotency-Key": "api-topup-0001"}
    assert api.post("/api/v1/loan-applications", headers={**auth(teller),
                    "Idempotency-Key": "api-topup-0001"}, json=body).status_code == 403  # fmt: skip
    done = api.post("/api/v1/loan-applications", headers=headers, json=body)
    assert done.status_code == 201, done.json
    out: dict[str, Any] = done.json or {}
    payoff, commission = 50_000 * KES, 50_000 * KES * 2 // 100  # nothing due yet: the principal
    assert (out["status"], out["top_up_of_loan_id"]) == ("disbursed", old["loan"])
    assert (out["top_up_payoff_cents"], out["top_up_commission_cents"]) == (payoff, commission)
    assert out["received_cents"] == 100_000 * KES - payoff - commission
    seen = written(session_factory)
    again = api.post("/api/v1/loan-applications", headers=headers, json=body)
    assert again.status_code == 200 and again.json["id"] == out["id"]
    assert written(session_factory) == seen
    new = api.get(f"/api/v1/loans/{out['loan_id']}", headers=auth(officer)).json
    assert (new["top_up_of_loan_id"], new["top_up_payoff_cents"]) == (old["loan"], payoff)
    cleared = api.get(f"/api/v1/loans/{old['loan']}", headers=auth(officer)).json
    assert cleared["status"] == "closed" and cleared["principal_outstanding_cents"] == 0
    [settled] = cleared["transactions"]
    assert (settled["source"], settled["amount_cents"]) == ("top_up", payoff)


def test_refusals_and_bad_input_are_4xx_and_write_nothing(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    officer = make_staff("loan_officer")
    old = old_loan(session_factory, deps)
    base = {"member_id": old["member"], "product_code": old["code"],
            "amount_cents": 100_000 * KES, "term": 12, "top_up_of": old["reference"]}  # fmt: skip
    seen = written(session_factory)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**base, "member_id": old["other"]}, 404, "not_found"),  # another member's loan
        ({**base, "top_up_of": "LZZZZZZZ"}, 404, "not_found"),
        ({**base, "amount_cents": 50_000 * KES}, 409, "top_up_refused"),  # nothing to receive
        ({**base, "amount_cents": 1e9}, 422, "invalid_input"),
        ({**base, "amount_cents": -5}, 422, "invalid_input"),
        ({**base, "top_up_of": "L" * 5_000}, 422, "invalid_input"),
        ({**base, "member_id": 10**9}, 404, "not_found"),
        ({**base, "extra": 1}, 422, "invalid_input"),
    ]
    for i, (body, status, code) in enumerate(cases):
        got = api.post("/api/v1/loan-applications",
                       headers={**auth(officer), "Idempotency-Key": f"api-refused-{i:04d}"},
                       json=body)  # fmt: skip
        assert got.status_code == status, (body, got.json)
        assert (got.json or {}).get("code") == code, got.json
    assert written(session_factory) == seen
