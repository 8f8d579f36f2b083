"""A loan chosen to M-Pesa on USSD, paid by B2C, over HTTP (issue 12, part 7).

gunicorn serves the demo profile (``SACCO_ENV=demo``: one worker, jobs and SMS delivery
in-process) on the PostgreSQL test database, seeded by ``manage.py seed-demo``, beside
the Africa's Talking and Daraja stand-ins (as ``test_loan_walk.py``). Two demo members
apply for the instant loan on USSD (the gateway's exact POSTs) and choose M-Pesa: within
the product's ceiling the system approves it in that hop, the loan's entry credits
savings, a hold and a B2C payout follow; the Daraja stand-in sends the result callback
to our server. For Amina the result succeeds (the hold is posted: the money left for her
phone, the loan is active, her SMS says where it went); for Otieno the stand-in answers
2040 (the hold is released, the money stays in his savings, the loan is still active and
his SMS says so). ``manage.py verify-ledger`` after each step.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.ledger import entries as ledger
from core.members.registration import member_account_ids
from db.models import Hold, Member
from db.models_loans import Loan, LoanApplication
from db.models_mpesa import B2CPayout
from integrations.africastalking.standin import start_standin as start_at
from integrations.mpesa.standin import start_standin as start_daraja
from tests.e2e.gateway import GatewayPhone
from tests.e2e.mpesa_harness import post, wait_for
from tests.e2e.servers import gunicorn, run_manage
from tests.e2e.test_loan_walk import ledger_ok, wait_sms
from tests.settings import PG_URL

pytestmark = pytest.mark.slow

AMINA, OTIENO = "+254712000001", "+254722000002"  # the demo's members (manage.py seed-demo)
PINS = {AMINA: "4826", OTIENO: "5937"}
KES = 100
FAILED = 2040  # the stand-in's "customer not registered"-style failure result code


SCREENS = {  # (the payout question, the confirmation's end), in each member's language
    AMINA: ("Where should the loan money go?\n1. Savings\n2. M-Pesa {msisdn}",
            "To M-Pesa\n1. Confirm\n2. Cancel"),
    OTIENO: ("Pesa za mkopo ziende wapi?\n1. Akiba\n2. M-Pesa {msisdn}",
             "Kwa M-Pesa\n1. Thibitisha\n2. Ghairi"),
}  # fmt: skip


def apply_to_mpesa(http: requests.Session, base: str, msisdn: str, kes: int) -> str:
    """Loans, PIN, Apply, the instant loan, the amount, one month, M-Pesa, Confirm."""
    question, confirmation = SCREENS[msisdn]
    phone = GatewayPhone(http, base, msisdn)
    phone.dial()
    assert "PIN" in phone.send("7")
    phone.send(PINS[msisdn])
    products = phone.send("2")
    found = re.search(r"(\d+)\. Instant", products)
    assert found, products
    phone.send(found.group(1))
    assert str(kes) not in phone.send(str(kes))  # the term prompt
    assert phone.send("1") == question.format(msisdn=msisdn)
    assert phone.send("2").endswith(confirmation)
    done = phone.send("1")
    assert phone.ended, done
    return done


def state(
    engine: Engine, msisdn: str
) -> tuple[LoanApplication, Loan | None, B2CPayout | None, int]:
    """The member's latest application, its loan, the loan's payout and savings balance."""
    with Session(engine) as s:
        member = s.scalars(select(Member).where(Member.msisdn == msisdn)).one()
        application = s.scalars(
            select(LoanApplication)
            .where(LoanApplication.member_id == member.id)
            .order_by(LoanApplication.id.desc())
        ).first()
        assert application is not None
        loan = s.scalar(select(Loan).where(Loan.application_id == application.id))
        payout = None
        if loan is not None:
            payout = s.scalar(
                select(B2CPayout).where(B2CPayout.idempotency_key == f"loan.payout:{loan.id}")
            )
        savings = ledger.get_balance(s, member_account_ids(s, member.id)["savings"])
        if payout is not None:
            hold = s.get(Hold, payout.hold_id)
            assert hold is not None
            payout.hold_status = hold.status  # type: ignore[attr-defined]
        s.expunge_all()
    return application, loan, payout, savings.balance_cents


def savings_of(engine: Engine, msisdn: str) -> int:
    with Session(engine) as s:
        member = s.scalars(select(Member).where(Member.msisdn == msisdn)).one()
        return ledger.get_balance(s, member_account_ids(s, member.id)["savings"]).balance_cents


def settled(engine: Engine, msisdn: str) -> B2CPayout | None:
    payout = state(engine, msisdn)[2]
    return payout if payout is not None and payout.status in ("succeeded", "failed") else None


def test_a_loan_chosen_to_mpesa_on_ussd_is_paid_by_b2c_or_stays_in_savings_when_it_fails(
    committed_pg: Engine, tmp_path: Path
) -> None:
    with start_daraja(port=0, delay=0) as daraja, start_at(port=0) as at:
        post(daraja.url + "/_control", {"outcomes": {AMINA: 0, OTIENO: FAILED}})
        cert = tmp_path / "mpesa-standin-cert.pem"
        cert.write_bytes(daraja.certificate_pem)
        env = {
            "SACCO_ENV": "demo",
            "DATABASE_URL": PG_URL,
            "AT_BASE_URL": at.url,
            "AT_INSIGHTS_URL": at.url,
            "MPESA_BASE_URL": daraja.url,
            "MPESA_CERTIFICATE_PATH": str(cert),
        }
        run_manage(["seed-demo"], env)
        ledger_ok(env)
        with gunicorn(env) as base, requests.Session() as http:
            env["MPESA_CALLBACK_BASE_URL"] = base
            daraja.state.callback_base = base
            run_manage(["mpesa-register-urls"], env)
            before = {who: savings_of(committed_pg, who) for who in (AMINA, OTIENO)}

            # 1. Amina: approved in the applying hop, the B2C result succeeds.
            done = apply_to_mpesa(http, base, AMINA, 3_000)
            assert "KES 3,000 is on its way to M-Pesa +254712000001" in done, done
            ledger_ok(env)
            paid = wait_for(
                lambda: settled(committed_pg, AMINA), timeout=120, what="the B2C result"
            )
            assert (paid.status, paid.amount_cents, paid.purpose) == (
                "succeeded",
                3_000 * KES,
                "loan",
            )
            application, loan, _, savings = state(committed_pg, AMINA)
            assert application.status == "disbursed" and application.disburse_to == "mpesa"
            assert loan is not None and loan.status == "active"
            assert loan.principal_cents == 3_000 * KES
            assert paid.hold_status == "posted"
            # The loan reached savings and left again for her phone: savings as before.
            assert savings == before[AMINA]
            wait_sms(
                at.url,
                AMINA,
                rf"loan {loan.reference} of KES 3,000: KES 3,000 on its way to M-Pesa",
            )
            ledger_ok(env)

            # 2. Otieno: the same, but the stand-in's result fails: the money stays saved.
            done = apply_to_mpesa(http, base, OTIENO, 2_000)
            assert "KES 2,000 inatumwa M-Pesa +254722000002" in done, done
            ledger_ok(env)
            failed = wait_for(
                lambda: settled(committed_pg, OTIENO), timeout=120, what="the B2C result"
            )
            assert (failed.status, failed.result_code) == ("failed", FAILED)
            assert failed.hold_status == "released"
            application, loan, _, savings = state(committed_pg, OTIENO)
            assert loan is not None and loan.status == "active"  # it was paid to his account
            assert savings == before[OTIENO] + 2_000 * KES
            wait_sms(
                at.url, OTIENO, rf"mkopo {loan.reference} wa KES 2,000: KES 2,000 inatumwa M-Pesa"
            )
            wait_sms(
                at.url, OTIENO, r"pesa ya mkopo KES 2,000 haikutumwa M-Pesa .* Iko salama akibani"
            )
            ledger_ok(env)
            daraja.state.join_workers(timeout=30)
    ledger_ok(env)
