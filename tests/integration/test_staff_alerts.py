"""Staff alerts (``core.staff.alerts``): queued in the unit of work of the event, so an
event that rolls back e-mails nobody; payouts that failed or wait for staff e-mail the
holders of ``ledger:adjust`` who can see the member's branch, once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.ledger.chart import SystemAccount
from core.payments.mpesa import flows as mpesa
from core.staff import accounts as staff_core
from core.staff.alerts import set_staff_email
from db.models import ApprovalRequest, Member, OutboxMessage, StaffUser
from db.models_mpesa import B2CPayout
from tests.integration.test_mpesa_payouts import at, not_found, withdrawal

T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
_NAMES = itertools.count(1)


def staff(
    s: Session, deps: CoreDeps, role: str, email: str | None, branch: str | None = None
) -> int:
    row = staff_core.create_staff(
        s, deps, SYSTEM, username=f"{role.replace('_', '')}{next(_NAMES)}",
        full_name=f"Test {role}", role=role, password="correct horse battery staple",
        branch=branch,
    )  # fmt: skip
    if email is not None:
        set_staff_email(s, deps, SYSTEM, row.id, email)
    s.commit()
    return row.id


def emails(s: Session) -> list[tuple[str, str, str | None]]:
    """(recipient, template, subject) of every e-mail queued, by recipient."""
    rows = s.execute(
        select(OutboxMessage.recipient, OutboxMessage.template, OutboxMessage.subject)
        .where(OutboxMessage.channel == "email")
        .order_by(OutboxMessage.recipient, OutboxMessage.id)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def test_a_request_rolled_back_emails_nobody_and_a_committed_one_its_checkers(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    with session_factory() as s:
        maker = staff(s, deps, "manager", "maker@umoja.example")
        staff(s, deps, "manager", "checker@umoja.example")
        staff(s, deps, "auditor", "auditor@umoja.example")  # reads requests, decides none
        asker = staff_core.principal_for(s.get_one(StaffUser, maker))

        def ask() -> ApprovalRequest:
            return approvals.request_approval(
                s, deps, asker, "ledger.adjustment",
                payload={"debit_account": SystemAccount.BANK, "amount_cents": 150_000,
                         "credit_account": SystemAccount.FEE_INCOME, "memo": "bank charges"},
                large_threshold_cents=5_000_000,
            )  # fmt: skip

        ask()
        s.rollback()
        assert emails(s) == []
        req = ask()
        s.commit()
        assert emails(s) == [
            (
                "checker@umoja.example",
                "staff_approval_waiting",
                f"Waiting for your approval: ledger.adjustment (request {req.id})",
            )
        ]
        body = s.scalars(select(OutboxMessage.body).where(OutboxMessage.channel == "email")).one()
        assert "Amount: KES 1,500" in body and "Branch: none (head office)" in body


def test_failed_and_parked_payouts_email_who_settles_them_in_the_members_branch(
    db_session: Session, deps: CoreDeps
) -> None:
    s, now = db_session, at(deps, T0)
    staff(s, deps, "manager", "hq@umoja.example")
    staff(s, deps, "manager", "nakuru@umoja.example", branch="Nakuru")
    staff(s, deps, "teller", "teller@umoja.example")  # no ledger:adjust
    staff(s, deps, "manager", None)

    failed = withdrawal(s, now)
    assert mpesa.claim_b2c(s, now, failed) is not None
    ocid = s.get_one(B2CPayout, failed).originator_conversation_id
    outcome = mpesa.B2COutcome(ocid, 2001, "The initiator information is invalid.")
    assert mpesa.settle_b2c(s, now, outcome) == "failed"
    assert mpesa.settle_b2c(s, now, outcome) == "duplicate"  # a replay e-mails nobody again
    reference = s.get_one(B2CPayout, failed).reference
    assert emails(s) == [
        ("hq@umoja.example", "staff_payout_failed", f"M-Pesa payout {reference} failed")
    ]

    parked = withdrawal(s, now)
    member = s.get_one(Member, s.get_one(B2CPayout, parked).member_id)
    member.branch = "Nakuru"
    s.commit()
    assert mpesa.claim_b2c(s, now, parked) is not None
    mpesa.record_b2c_send_error(
        s, now, parked, refused=False, may_have_taken_effect=True, detail="read timeout"
    )
    assert not_found(s, now, parked) == "review"
    waiting = s.get_one(B2CPayout, parked).reference
    assert [e for e in emails(s) if e[1] == "staff_payout_review"] == [
        ("hq@umoja.example", "staff_payout_review", f"M-Pesa payout {waiting} waits for staff"),
        ("nakuru@umoja.example", "staff_payout_review", f"M-Pesa payout {waiting} waits for staff"),
    ]
    body = s.scalars(
        select(OutboxMessage.body).where(OutboxMessage.template == "staff_payout_review")
    ).first()
    assert body is not None and f"/api/v1/mpesa/payouts/{parked}/resolution" in body
    assert member.msisdn not in body and member.full_name not in body

    # Staff releasing it themselves need no e-mail about it.
    mpesa.resolve_payout(s, now, payout_id=parked, resolution="release", receipt=None, staff="t")
    s.commit()
    assert s.get_one(B2CPayout, parked).status == "failed"
    assert [e for e in emails(s) if e[1] == "staff_payout_failed"] == [
        ("hq@umoja.example", "staff_payout_failed", f"M-Pesa payout {reference} failed")
    ]
