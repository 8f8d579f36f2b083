"""Default recovery over the staff API: the preview of who pays what, the proposal (a
``loan.recover`` request with the preview in its payload), another person's approval that
recovers, who may do each, and bad input a 4xx that writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from db.models import ApprovalRequest, AuditEvent, JournalEntry
from db.models_loans import LoanGuarantee
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import make_product
from tests.recoveryutil import KES, defaulted_loan

PLEDGES = [10_000 * KES, 20_000 * KES, 30_000 * KES]


def written(session_factory: sessionmaker[Session]) -> tuple[int, ...]:
    with unit_of_work(session_factory) as s:
        return tuple(
            s.scalar(select(func.count()).select_from(m)) or 0
            for m in (ApprovalRequest, JournalEntry)
        ) + (
            s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action != "authz.denied")  # a 403 is audited, by design
            )
            or 0,
        )


def a_default(session_factory: sessionmaker[Session], deps: CoreDeps, days: int) -> dict[str, Any]:
    """A loan made 400 days ago (whatever today is), closed ``days`` after its due date."""
    start = business_date(deps.now()) - timedelta(days=400)
    with unit_of_work(session_factory) as s:
        d = defaulted_loan(
            s, session_factory, deps, start=start, amount_cents=100_000 * KES,
            deposits_cents=40_000 * KES, pledges=PLEDGES, days=days,
        )  # fmt: skip
        return {"loan": d.loan.id, "member": d.borrower.id,
                "guarantors": [g.id for g in d.guarantors]}  # fmt: skip


def test_preview_propose_and_approve_over_the_api(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    d = a_default(session_factory, deps, days=200)
    officer, manager, teller = (
        make_staff("loan_officer"),
        make_staff("manager"),
        make_staff("teller"),
    )
    url = f"/api/v1/loans/{d['loan']}/recovery"
    seen = api.get(url, headers=auth(teller))
    assert seen.status_code == 403  # a teller does not read the loan book
    got = api.get(url, headers=auth(officer))
    assert got.status_code == 200, got.json
    preview = got.json or {}
    assert preview["category"] == "doubtful" and preview["days_past_due"] >= 200
    payoff = preview["payoff_cents"]
    assert payoff >= 101_000 * KES  # the principal and at least the month's interest
    assert preview["from_deposits_cents"] == 40_000 * KES
    assert [g["share_cents"] for g in preview["guarantors"]] == PLEDGES
    assert preview["balance_after_cents"] == payoff - 100_000 * KES and not preview["closes"]

    before = written(session_factory)
    assert api.post(url, headers=auth(teller), json={}).status_code == 403
    assert api.post(url, headers=auth(officer), json={"as_loan": True}).status_code == 422
    assert api.post("/api/v1/loans/999999/recovery", headers=auth(officer),
                    json={}).status_code == 404  # fmt: skip
    assert written(session_factory) == before
    asked = api.post(url, headers=auth(officer), json={"note": "191 days late"})
    assert asked.status_code == 202, asked.json
    req = asked.json or {}
    assert (req["action"], req["status"], req["amount_cents"]) == (
        "loan.recover",
        "pending",
        payoff,
    )
    assert req["payload"]["preview"]["from_guarantors_cents"] == 60_000 * KES
    again = api.post(url, headers=auth(officer), json={})
    assert again.status_code == 409  # one pending per member
    mine = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(officer), json={})
    assert mine.status_code in (403, 409)  # never its own maker
    done = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(manager), json={})
    assert done.status_code == 200, done.json
    result = (done.json or {})["result"]
    assert (result["from_deposits_cents"], result["from_guarantors_cents"]) == (
        40_000 * KES, 60_000 * KES,
    )  # fmt: skip
    twice = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(manager), json={})
    assert twice.status_code == 409
    loan = api.get(f"/api/v1/loans/{d['loan']}", headers=auth(officer)).json or {}
    sources = [t["source"] for t in loan["transactions"]]
    assert sources.count("recovery") == 4
    assert {g["status"] for g in loan["guarantors"]} == {"called"}
    after = api.get(url, headers=auth(officer))
    assert after.status_code == 200  # still defaulted: the rest is for write-off
    assert (after.json or {})["from_guarantors_cents"] == 0


def test_a_loan_not_defaulted_is_a_409_that_writes_nothing(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    d = a_default(session_factory, deps, days=30)  # watch
    officer = make_staff("loan_officer")
    before = written(session_factory)
    url = f"/api/v1/loans/{d['loan']}/recovery"
    for answer in (api.get(url, headers=auth(officer)),
                   api.post(url, headers=auth(officer), json={})):  # fmt: skip
        assert answer.status_code == 409, answer.json
        problem = answer.json or {}
        assert problem["code"] == "loan_state" and "is watch" in problem["detail"]
    assert written(session_factory) == before


def test_a_share_turned_into_a_recovery_loan_over_the_api(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    d = a_default(session_factory, deps, days=200)
    with unit_of_work(session_factory) as s:
        code = make_product(
            s, deps, guarantor_policy="none", guarantor_cover_percent=None, fees=[],
            channels="staff", auto_approve_ceiling_cents=0,
        ).code  # fmt: skip
        gids = s.scalars(select(LoanGuarantee.id).where(LoanGuarantee.loan_id == d["loan"])
                         .order_by(LoanGuarantee.id)).all()  # fmt: skip
    officer, manager = make_staff("loan_officer"), make_staff("manager")
    url = f"/api/v1/loans/{d['loan']}/recovery"
    before = written(session_factory)
    for bad in (
        {"as_loan": ["x"]},
        {"as_loan": [gids[0]], "recovery_term": 0},
        {"as_loan": [gids[0]], "recovery_product": code, "recovery_term": 6, "x": 1},
    ):
        assert api.post(url, headers=auth(officer), json=bad).status_code == 422, bad
    assert written(session_factory) == before
    body = {"as_loan": [gids[0]], "recovery_product": code, "recovery_term": 6}
    asked = api.post(url, headers=auth(officer), json=body)
    assert asked.status_code == 202, asked.json
    req = asked.json or {}
    assert [g["as_loan"] for g in req["payload"]["preview"]["guarantors"]] == [True, False, False]
    done = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(manager), json={})
    assert done.status_code == 200 and (done.json or {})["status"] == "approved", done.json
    shares = (done.json or {})["result"]["guarantors"]
    loan_id = next(g["recovery_loan_id"] for g in shares if g["guarantee_id"] == gids[0])
    new = api.get(f"/api/v1/loans/{loan_id}", headers=auth(officer)).json or {}
    assert (new["principal_cents"], new["term"]) == (PLEDGES[0], 6)
    assert all(g["recovery_loan_id"] is None for g in shares if g["guarantee_id"] != gids[0])
