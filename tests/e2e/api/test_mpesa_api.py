"""Statement reconciliation over the API: a manager uploads the M-Pesa org portal's CSV
and sees what differs from the ledger; nothing in the ledger changes; bad files get a 4xx."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy
from db.models import AuditEvent, JournalEntry, Member
from db.models_mpesa import SimSwapEvent, StkRequest
from db.session import unit_of_work
from integrations.mpesa.formats import NAIROBI, STATEMENT_COLUMNS
from tests.e2e.api.conftest import Staffer, auth
from tests.e2e.api.test_members_api import post_file

URL = "/api/v1/mpesa/statement-reconciliations"
T0 = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # 10:00 in Nairobi
HEADER = ",".join(f'"{c}"' for c in STATEMENT_COLUMNS)


def line(
    receipt: str,
    at: datetime,
    paid_in: str,
    status: str = "Completed",
    who: str = "",
    *,
    withdrawn: str = "",
    reason: str = "Pay Bill",
) -> str:
    local = at.astimezone(NAIROBI).strftime("%d-%m-%Y %H:%M:%S")
    details = f"{reason} from 2547***126 - {who or 'JANE'} Acc. M1"
    return (f'{receipt},{local},{local},{details},{status},"{paid_in}",{withdrawn},,,'
            f"{reason},,,M1")  # fmt: skip


def statement(*lines: str) -> bytes:
    preamble = 'Account Holder:,"UMOJA SACCO"\nShort Code:,174379\n\n'
    return (preamble + HEADER + "\n" + "\n".join(lines) + "\n").encode()


def paid_by_paybill(
    session_factory: sessionmaker[Session], deps: CoreDeps, member: Member,
    *payments: tuple[str, datetime, int],
) -> None:  # fmt: skip
    """Paybill payments to the member's savings, as Daraja's confirmations record them."""
    with unit_of_work(session_factory) as s:
        for receipt, at, cents in payments:
            paid = mpesa.C2BIn(receipt, at, cents, str(member.member_number), "174379")
            assert mpesa.record_c2b(s, deps, paid) == "credited"


def journal_entries(session_factory: sessionmaker[Session]) -> int:
    with unit_of_work(session_factory) as s:
        return int(s.scalar(select(func.count()).select_from(JournalEntry)) or 0)


def test_statement_upload_reports_every_difference_and_changes_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    paid_by_paybill(
        session_factory, deps, member,
        ("QKA1000001", T0, 500_00),
        ("QKA1000002", T0 + timedelta(hours=1), 250_00),
        ("QKA1000003", T0 + timedelta(hours=2), 100_00),  # never reached M-Pesa's statement
    )  # fmt: skip
    entries = journal_entries(session_factory)
    manager = make_staff("manager")
    body = statement(
        line("QKA1000001", T0, "500.00"),
        line("QKA1000002", T0 + timedelta(hours=1), "260.00"),
        line("QKZ9999999", T0 + timedelta(hours=2), "75.00", who="OTIENO"),
        line("QKF0000001", T0 + timedelta(hours=3), "40.00", status="Failed"),
        line("QKA1000004", T0 + timedelta(hours=3), "1,200.00"),
        # M-Pesa's fee, a line of its own under the same receipt: not a payment.
        line("QKA1000001", T0, "", withdrawn="-12.00", reason="Pay Bill Charge"),
    )
    answer = api.post(URL, headers={}, data={})  # no token
    assert answer.status_code == 401
    answer = post_file(api, manager, URL, body, name="statement.csv")
    assert answer.status_code == 200, answer.json
    report = answer.json
    assert (report["clean"], report["lines"], report["skipped"], report["matched"]) == (
        False, 4, 1, 1,
    )  # fmt: skip
    assert (report["charge_lines"], report["charges_cents"]) == (1, 12_00)
    assert [(m["receipt"], m["amount_cents"]) for m in report["missing_in_ledger"]] == [
        ("QKZ9999999", 75_00),
        ("QKA1000004", 1_200_00),
    ]
    assert "OTIENO" in report["missing_in_ledger"][0]["details"]
    assert report["missing_in_statement"] == [
        {"kind": "c2b", "receipt": "QKA1000003", "amount_cents": 100_00}
    ]
    assert report["amount_mismatches"] == [
        {"receipt": "QKA1000002", "ledger_cents": 250_00, "statement_cents": 260_00}
    ]
    assert journal_entries(session_factory) == entries
    with unit_of_work(session_factory) as s:
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "mpesa.statement_reconciled")
        ).one()
    assert event.actor_id == manager.id
    recorded = json.loads(event.after or "{}")
    assert (recorded["amount_mismatches"], recorded["missing_in_ledger"]) == (1, 2)
    assert recorded["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_statement_that_agrees_is_clean_for_an_auditor_too(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    paid_by_paybill(session_factory, deps, member, ("QKB2000001", T0, 1_500_00))
    # Re-saved by Excel on Windows: Windows-1252, a curly apostrophe in a name.
    body = statement(line("QKB2000001", T0, "1,500.00", who="NJOROGE\u2019S SHOP"))
    answer = post_file(api, make_staff("auditor"), URL, body.decode().encode("cp1252"))
    assert answer.status_code == 200, answer.json
    assert answer.json["clean"] is True
    assert (answer.json["lines"], answer.json["matched"]) == (1, 1)


def test_unreadable_statements_are_refused_with_the_line_and_leave_no_trace(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
) -> None:
    manager = make_staff("manager")
    cases = {
        "bad amount": (statement(line("QKC3000001", T0, "12.345")), "line 5"),
        "bad time": (statement(line("QKC3000001", T0, "1.00").replace("-2026", "/99")), "line 5"),
        "no header": (b"Receipt,Amount\nQKC3000001,100\n", "Receipt No."),
        "empty": (b"", "Receipt No."),
        "binary": (b"\x81\x8d\x8f\x90\x9d" * 40, "Windows-1252"),
    }
    for name, (body, says) in cases.items():
        answer = post_file(api, manager, URL, body)
        assert answer.status_code == 422, name
        assert answer.json["code"] == "invalid_input", name
        assert says in answer.json["detail"], (name, answer.json["detail"])
    no_file = api.post(URL, headers={"Authorization": f"Bearer {manager.token}"}, data={})
    assert no_file.status_code == 422
    too_big = post_file(api, manager, URL, statement(*[line("QKD4000001", T0, "1.00")] * 40_000))
    assert too_big.status_code == 413
    with unit_of_work(session_factory) as s:
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "mpesa.statement_reconciled")
        ).all()
    assert actions == []


def stk_settled_by_query(
    session_factory: sessionmaker[Session], deps: CoreDeps, member: Member, cents: int, key: str
) -> StkRequest:
    """An STK deposit whose callback never came: the status query settles it, no receipt."""
    with unit_of_work(session_factory) as s:
        started = mpesa.start_deposit(
            s, deps, member_id=member.id, target="deposits", amount_cents=cents,
            policy=MpesaPolicy(), idempotency_key=key,
        )  # fmt: skip
        assert mpesa.claim_stk_push(s, deps, started.request_id) is not None
        mpesa.record_stk_accepted(
            s, deps, started.request_id, checkout_request_id=f"ws_CO_{key}",
            merchant_request_id=f"m-{key}",
        )  # fmt: skip
        assert mpesa.settle_stk(s, deps, mpesa.StkOutcome(f"ws_CO_{key}", 0)) == "credited"
        row = s.get(StkRequest, started.request_id)
        assert row is not None and row.receipt is None and row.settled_at is not None
        s.expunge(row)
        return row


def test_stk_deposits_settled_by_query_are_matched_by_account_amount_and_time(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    first = stk_settled_by_query(session_factory, deps, member, 300_00, "a1")
    second = stk_settled_by_query(session_factory, deps, member, 300_00, "a2")
    never_paid = stk_settled_by_query(session_factory, deps, member, 450_00, "a3")
    account = f"{member.member_number}D"  # deposits, as the AccountReference said
    paid_at = first.created_at + timedelta(seconds=20)

    def stk_line(receipt: str, acc: str, amount: str) -> str:
        local = paid_at.astimezone(NAIROBI).strftime("%d-%m-%Y %H:%M:%S")
        return (f"{receipt},{local},{local},Pay Bill Online from 2547***126 Acc. {acc},"
                f'Completed,"{amount}",,,,Pay Bill Online,,,{acc}')  # fmt: skip

    body = statement(
        stk_line("QKE5000001", account, "300.00"),
        stk_line("QKE5000002", account, "300.00"),
        stk_line("QKE5000003", account, "300.00"),  # a third: no deposit of ours left
        stk_line("QKE5000004", f"{member.member_number}S", "450.00"),  # shares, not deposits
    )
    report = post_file(api, make_staff("manager"), URL, body).json
    assert report["matched"] == 2
    assert report["matched_by_account"] == [
        {"receipt": "QKE5000001", "stk_request_id": first.id},
        {"receipt": "QKE5000002", "stk_request_id": second.id},
    ]
    assert [m["receipt"] for m in report["missing_in_ledger"]] == ["QKE5000003", "QKE5000004"]
    assert report["missing_in_statement"] == [
        {"kind": "stk", "receipt": f"STK#{never_paid.id}", "amount_cents": 450_00}
    ]
    assert report["clean"] is False


# ------------------------------------------------------------------ SIM-swap events

EVENTS = "/api/v1/mpesa/sim-swap-events"


def stopped_withdrawal(
    session_factory: sessionmaker[Session], member: Member, outcome: str = "recent_swap"
) -> int:
    """The row ``core.payments.mpesa.flows.guard_sim_swap`` writes when it stops a withdrawal."""
    with unit_of_work(session_factory) as s:
        event = SimSwapEvent(
            member_id=member.id, msisdn=member.msisdn, outcome=outcome, decision="refused",
            amount_cents=5_000_00, last_swap_at=T0, created_at=T0 + timedelta(days=1),
        )  # fmt: skip
        s.add(event)
        s.commit()
        return event.id


def test_staff_see_stopped_withdrawals_of_their_branch_and_close_each_once(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    ours, theirs = make_member(branch="Nyeri", status="active"), make_member(branch="Embu")
    mine, other = stopped_withdrawal(session_factory, ours), stopped_withdrawal(
        session_factory, theirs, "check_failed")  # fmt: skip
    teller, auditor = make_staff("teller", branch="Nyeri"), make_staff("auditor")

    seen = api.get(EVENTS, headers=auth(teller)).json["items"]
    assert [e["id"] for e in seen] == [mine]
    assert seen[0]["member_number"] == ours.member_number
    assert seen[0]["msisdn_masked"] != ours.msisdn and seen[0]["msisdn_masked"].endswith(
        ours.msisdn[-3:])  # fmt: skip
    assert {e["id"] for e in api.get(EVENTS, headers=auth(auditor)).json["items"]} >= {mine, other}

    url = f"{EVENTS}/{mine}/review"
    assert api.post(url, headers=auth(teller), json={"note": "ok"}).status_code == 422
    assert api.post(f"{EVENTS}/{other}/review", headers=auth(teller),
                    json={"note": "not my branch"}).status_code == 404  # fmt: skip
    assert api.post(url, headers=auth(auditor), json={"note": "looks fine"}).status_code == 403
    note = "Came with ID; SIM replaced after the phone was stolen"
    done = api.post(url, headers=auth(teller), json={"note": note})
    assert done.status_code == 200, done.json
    assert (done.json["review_note"], done.json["reviewed_by_id"]) == (note, teller.id)
    again = api.post(url, headers=auth(teller), json={"note": note})
    assert (again.status_code, again.json["code"]) == (409, "sim_swap_event_reviewed")
    assert api.get(EVENTS, headers=auth(teller)).json["items"] == []
    reviewed = api.get(EVENTS + "?status=reviewed", headers=auth(teller)).json["items"]
    assert [e["id"] for e in reviewed] == [mine]
    with unit_of_work(session_factory) as s:
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "mpesa.sim_swap_reviewed")
        ).all()
    assert actions == ["mpesa.sim_swap_reviewed"]


def test_a_clearance_needs_the_id_seen_and_a_second_person(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member(status="active")
    event = stopped_withdrawal(session_factory, member)
    failed_check = stopped_withdrawal(session_factory, member, "check_failed")
    teller, manager = make_staff("teller"), make_staff("manager")
    url = f"{EVENTS}/{event}/clearance"
    note = {"note": "ID seen, SIM replaced after loss"}
    refused = api.post(url, headers=auth(teller), json={**note, "in_person": False})
    assert (refused.status_code, list(refused.json["errors"])) == (422, ["in_person"])
    assert api.post(f"{EVENTS}/{failed_check}/clearance", headers=auth(teller),
                    json={**note, "in_person": True}).status_code == 422  # fmt: skip
    assert api.post(f"{EVENTS}/999999/clearance", headers=auth(teller),
                    json={**note, "in_person": True}).status_code == 404  # fmt: skip
    asked = api.post(url, headers=auth(teller), json={**note, "in_person": True})
    assert asked.status_code == 202, asked.json
    request_id = asked.json["id"]
    mine = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(teller), json={})
    assert mine.status_code == 403
    done = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(manager), json={})
    assert done.json["status"] == "approved", done.json
    [shown] = [e for e in api.get(EVENTS + "?status=all", headers=auth(manager)).json["items"]
               if e["id"] == event]  # fmt: skip
    assert shown["cleared_at"] is not None and shown["reviewed_by_id"] == teller.id
    again = api.post(url, headers=auth(teller), json={**note, "in_person": True})
    assert again.status_code == 409
