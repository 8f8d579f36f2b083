"""Bank transfers against the bank stand-in over HTTP (issue 15, part 4): a loan paid to
the member's bank account in two phases, the bank's callback applied exactly once (copies
posted at the same moment from real threads), refusals and timeouts, the status query,
the float sweep and the statement reconciliation; ``verify-ledger`` green after each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from flask import Flask
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from app_factory import create_app
from config import Settings
from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict, InsufficientFunds, InvalidInput
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.loans import book, disbursement
from core.members.registration import member_account_ids
from core.payments.bank import statement, sweeps, transfers
from core.payments.bank.transfers import BankPolicy
from db.models import JournalEntry, OutboxMessage
from db.models_bank import BankCallback, BankTransfer
from db.session import make_session_factory, unit_of_work
from integrations.bank.client import BankClient, BankConfig
from integrations.bank.standin import KEY, SECRET, BankStandinHandle, start_bank_standin
from integrations.bank.wiring import allowed, send_transfer, settle_waiting
from runtime import Runtime
from tests.loanutil import PROCESSING_1PC, funded_member, make_product
from workers.runner import InProcessJobs

KES = 100
TOKEN = "bank-callback-token-" + "x" * 24
NOW = datetime(2026, 6, 10, 7, 0, tzinfo=UTC)
POLICY = BankPolicy(
    own_bank_code="01", debit_account="1100223344", pesalink_max_cents=999_999 * KES,
    payout_min_cents=100 * KES,
)  # fmt: skip


class Recorder:
    """The app's job queue in most tests: jobs kept, so the test sends when it chooses."""

    def __init__(self) -> None:
        self.jobs: list[object] = []

    def submit(self, job: object) -> None:
        self.jobs.append(job)

    def bind(self, context: object) -> None:
        pass


@dataclass
class Bank:
    factory: sessionmaker[Session]
    deps: CoreDeps
    standin: BankStandinHandle
    client: BankClient
    app_url: str
    app: Flask
    recorder: Recorder


@pytest.fixture
def bank(committed_pg: Engine, settings: Settings, deps: CoreDeps) -> Iterator[Bank]:
    clocked = replace(deps, now=lambda: NOW)
    factory = make_session_factory(committed_pg)
    with start_bank_standin() as standin:
        bank_settings = settings.model_copy(
            update={"bank_base_url": standin.url, "bank_callback_token": TOKEN,
                    "bank_consumer_key": KEY, "bank_consumer_secret": SECRET,
                    "bank_debit_account": POLICY.debit_account, "bank_timeout_seconds": 2.0}
        )  # fmt: skip
        runtime = Runtime(committed_pg, factory, clocked, None, "Umoja SACCO")
        app = create_app(bank_settings, runtime)
        recorder = Recorder()
        app.extensions["mpesa"].jobs = recorder
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        app_url = f"http://127.0.0.1:{server.server_port}"
        standin.bank.callback_url = f"{app_url}/hooks/bank/transfer-result?token={TOKEN}"
        client = BankClient(
            BankConfig(standin.url, KEY, SECRET, "KE0010001", POLICY.debit_account,
                       read_timeout=2.0)
        )  # fmt: skip
        yield Bank(factory, clocked, standin, client, app_url, app, recorder)
        client.close()
        server.shutdown()
        thread.join()


def member_with_bank(b: Bank, *, savings_kes: int = 0, bank_code: str = "11") -> int:
    with unit_of_work(b.factory) as s:
        member = funded_member(s, b.deps, deposits_cents=20_000 * KES,
                               savings_cents=savings_kes * KES)  # fmt: skip
        transfers.set_member_bank_account(
            s, b.deps, SYSTEM, member.id, bank_code=bank_code, account_number="0112233445566",
            account_name="Amina Wanjiru",
        )  # fmt: skip
        return member.id


def savings_of(s: Session, member_id: int) -> tuple[int, int]:
    view = ledger.get_balance(s, member_account_ids(s, member_id)["savings"])
    return view.balance_cents, view.held_cents


def transfer_of(b: Bank, member_id: int, kes: int, key: str | None = None) -> int:
    with unit_of_work(b.factory) as s:
        row = transfers.request_transfer(
            s, b.deps, POLICY, member_id=member_id, amount_cents=kes * KES,
            idempotency_key=key or f"test:{uuid4().hex}", narration="Loan L1",
        )  # fmt: skip
        return row.id


def wait_for(b: Bank, transfer_id: int, status: str, timeout: float = 10.0) -> BankTransfer:
    deadline = time.monotonic() + timeout
    while True:
        b.standin.bank.join(timeout)
        with b.factory() as s:
            row = s.get_one(BankTransfer, transfer_id)
            if row.status == status or time.monotonic() > deadline:
                return row
        time.sleep(0.05)


def ledger_green(b: Bank) -> None:
    with b.factory() as s:
        report = verify_ledger(s)
        assert report.ok, report.problems


def test_a_loan_paid_to_the_members_bank_is_held_sent_and_posted_once(bank: Bank) -> None:
    """Disbursed with ``disburse_to = bank``: the loan's entry to savings, a hold of what
    reached savings, the order to the bank; the callback (sent three times at once) posts
    the hold once: savings back where they were, the bank account down by the payout."""
    bank.standin.bank.controls.callbacks = 3
    member_id = member_with_bank(bank)
    with unit_of_work(bank.factory) as s:
        product = make_product(s, bank.deps, fees=[PROCESSING_1PC], guarantor_policy="none")
        application = book.apply_for_loan(
            s, bank.deps, member_id, product.code, 50_000 * KES, 6, "staff",
            f"apply-{uuid4().hex[:10]}", disburse_to="bank",
        )  # fmt: skip
        disbursement.approve_application(s, bank.deps, SYSTEM, application.id)
        loan = disbursement.disburse(
            s, bank.deps, SYSTEM, application.id,
            payout=transfers.prepare_bank_payout(s, member_id, POLICY),
        )  # fmt: skip
        loan_id = loan.id
        bank_before = ledger.get_balance(
            s, ledger.account_id_by_code(s, SystemAccount.BANK)
        ).balance_cents
        # The send is deferred to after the commit: the app's real job runner takes it.
        runner = InProcessJobs(synchronous=True)
        runner.bind(bank.app.extensions["mpesa"])
        bank.app.extensions["mpesa"].jobs = runner
    with bank.factory() as s:
        row = s.scalars(
            select(BankTransfer).where(
                BankTransfer.idempotency_key == f"loan.bank_payout:{loan_id}"
            )
        ).one()
        assert row.amount_cents == 49_500 * KES  # 50,000 less the 1% fee
        assert row.transfer_type == "pesalink"  # another bank, under PesaLink's cap
    assert send_transfer(bank.factory, bank.deps, POLICY, bank.client, row.id) == "skipped"
    done = wait_for(bank, row.id, "succeeded")
    assert done.status == "succeeded" and (done.bank_reference or "").startswith("FT")
    with bank.factory() as s:
        assert savings_of(s, member_id) == (0, 0)
        bank_now = ledger.get_balance(
            s, ledger.account_id_by_code(s, SystemAccount.BANK)
        ).balance_cents
        assert bank_before - bank_now == 49_500 * KES
        posted = s.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == "withdrawal.bank")
        )
        assert posted == 1
        callbacks = [o or "" for o in s.scalars(select(BankCallback.outcome))]
        assert sorted(callbacks) == ["duplicate", "duplicate", "succeeded"]
        texts = list(s.scalars(select(OutboxMessage.body).where(
            OutboxMessage.template == "bank_transfer_paid")))  # fmt: skip
        assert len(texts) == 1 and "****5566" in texts[0]
    sent = [r for r in bank.standin.bank.requests_seen if r["path"].endswith("/transfer")]
    assert len(sent) == 1 and sent[0]["body"]["debitAmount"] == 49_500
    assert sent[0]["body"]["transactionType"] == "PL"
    ledger_green(bank)


def test_a_refused_transfer_releases_the_hold_and_tells_the_member(bank: Bank) -> None:
    bank.standin.bank.controls.mode = "refuse"
    member_id = member_with_bank(bank, savings_kes=5_000)
    transfer_id = transfer_of(bank, member_id, 3_000)
    assert send_transfer(bank.factory, bank.deps, POLICY, bank.client, transfer_id) == "failed"
    with bank.factory() as s:
        assert savings_of(s, member_id) == (5_000 * KES, 0)
        row = s.get_one(BankTransfer, transfer_id)
        assert "limit rule" in (row.result_desc or "")
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.member_id == member_id,
            OutboxMessage.template == "bank_transfer_failed")) == 1  # fmt: skip
    ledger_green(bank)


def test_a_failed_callback_releases_the_hold_once(bank: Bank) -> None:
    bank.standin.bank.controls.outcome = "FAILED"
    bank.standin.bank.controls.callbacks = 2
    member_id = member_with_bank(bank, savings_kes=5_000)
    transfer_id = transfer_of(bank, member_id, 2_000)
    send_transfer(bank.factory, bank.deps, POLICY, bank.client, transfer_id)
    assert wait_for(bank, transfer_id, "failed").status == "failed"
    with bank.factory() as s:
        assert savings_of(s, member_id) == (5_000 * KES, 0)
        assert sorted(o or "" for o in s.scalars(select(BankCallback.outcome))) == [
            "duplicate",
            "failed",
        ]
    ledger_green(bank)


@pytest.mark.parametrize("mode", ["timeout", "error500"])
def test_no_answer_keeps_the_hold_and_the_callback_still_settles_it(bank: Bank, mode: str) -> None:
    """A read timeout or a 5xx: the bank may have made the transfer, so the hold stays
    (``unknown``) and nothing is sent again; the callback that follows settles it."""
    bank.standin.bank.controls.mode = mode
    bank.standin.bank.controls.slow_seconds = (
        4.0  # past the read timeout (2 s), also on a loaded machine
    )
    member_id = member_with_bank(bank, savings_kes=5_000)
    transfer_id = transfer_of(bank, member_id, 1_000)
    status = send_transfer(bank.factory, bank.deps, POLICY, bank.client, transfer_id)
    assert status in ("unknown", "succeeded")  # the callback may win the race
    assert send_transfer(bank.factory, bank.deps, POLICY, bank.client, transfer_id) == "skipped"
    assert wait_for(bank, transfer_id, "succeeded").status == "succeeded"
    with bank.factory() as s:
        assert savings_of(s, member_id) == (4_000 * KES, 0)
    made = [r for r in bank.standin.bank.requests_seen if r["path"].endswith("/transfer")]
    assert len(made) == 1
    ledger_green(bank)


def test_a_lost_callback_is_settled_by_the_status_query_or_goes_to_review(bank: Bank) -> None:
    bank.standin.bank.controls.callback = False
    member_id = member_with_bank(bank, savings_kes=5_000)
    known = transfer_of(bank, member_id, 1_000)
    send_transfer(bank.factory, bank.deps, POLICY, bank.client, known)
    bank.standin.bank.join()
    never_sent = transfer_of(bank, member_id, 500)
    with unit_of_work(bank.factory) as s:  # a worker died after claiming it
        transfers.claim_for_sending(s, bank.deps, POLICY, never_sent)
        transfers.record_unsure(s, bank.deps, never_sent, "killed")
    later = replace(bank.deps, now=lambda: NOW + timedelta(minutes=10))
    counts = settle_waiting(bank.factory, later, bank.client)
    assert counts == {"succeeded": 1, "review": 1}
    with bank.factory() as s:
        assert savings_of(s, member_id) == (4_000 * KES, 500 * KES)  # the unknown one held
    with unit_of_work(bank.factory) as s:
        transfers.resolve_transfer(
            s, bank.deps, transfer_id=never_sent, resolution="not_paid", bank_reference=None,
            staff="test",
        )  # fmt: skip
    with bank.factory() as s:
        assert savings_of(s, member_id) == (4_000 * KES, 0)
    ledger_green(bank)


def test_callbacks_without_the_token_or_from_elsewhere_are_refused_and_not_stored(
    bank: Bank,
) -> None:
    import requests

    body = {"transactionReference": "BT123456", "transactionStatus": "SUCCESS",
            "ftReference": "FT1", "amount": "10"}  # fmt: skip
    url = f"{bank.app_url}/hooks/bank/transfer-result"
    assert requests.post(url, json=body, timeout=5).status_code == 403
    assert requests.post(url + "?token=wrong", json=body, timeout=5).status_code == 403
    garbage = requests.post(url + f"?token={TOKEN}", data=b"{not json", timeout=5)
    assert garbage.status_code == 200 and garbage.json() == {"status": "malformed"}
    stranger = requests.post(url + f"?token={TOKEN}", json=body, timeout=5)
    assert stranger.json() == {"status": "unmatched"}
    ctx = bank.app.extensions["sacco_bank"]  # the bank's addresses configured: not ours
    ctx.settings = ctx.settings.model_copy(update={"bank_callback_allowed_networks": "10.9.0.0/16"})
    outsider = requests.post(url + f"?token={TOKEN}", json=body, timeout=5)
    assert outsider.status_code == 403
    with bank.factory() as s:
        assert sorted(s.scalars(select(BankCallback.status))) == ["malformed", "unmatched"]
    assert allowed("10.9.0.0/16, 127.0.0.0/8", "127.0.0.1") and allowed("", "203.0.113.9")
    assert not allowed("10.9.0.0/16", "127.0.0.1") and not allowed("10.9.0.0/16", "bogus")


def test_the_float_sweep_moves_money_once_and_never_below_zero(bank: Bank) -> None:
    with unit_of_work(bank.factory) as s:
        float_id = ledger.account_id_by_code(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
        bank_id = ledger.account_id_by_code(s, SystemAccount.BANK)
        suspense = ledger.account_id_by_code(s, SystemAccount.SUSPENSE)
        ledger.post_entry(
            s, kind=EntryKind.MPESA_SUSPENSE, legs=[ledger.Leg(float_id, 10_000 * KES),
                                            ledger.Leg(suspense, -10_000 * KES)],
            idempotency_key=f"seed-float-{uuid4().hex}", now=NOW,
        )  # fmt: skip
        start = ledger.get_balance(s, bank_id).balance_cents

    results: list[object] = []

    def sweep(key: str) -> None:
        try:
            with unit_of_work(bank.factory) as s:
                results.append(sweeps.sweep_float(
                    s, bank.deps, SYSTEM, amount_cents=6_000 * KES, idempotency_key=key
                ).reference)  # fmt: skip
        except InsufficientFunds as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=sweep, args=(f"k{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results))[-2:] == ["insufficient_funds", "insufficient_funds"]
    with unit_of_work(bank.factory) as s:
        assert ledger.get_balance(s, bank_id).balance_cents - start == 6_000 * KES
        assert ledger.get_balance(s, float_id).balance_cents == 4_000 * KES
        with pytest.raises(InvalidInput):
            sweeps.sweep_float(s, bank.deps, SYSTEM, amount_cents=-1, idempotency_key="x")
    winner = next(str(r) for r in results if str(r).startswith("SW"))
    with unit_of_work(bank.factory) as s:  # the same key again: the same sweep
        key = next(f"k{i}" for i in range(3) if _swept(s, f"k{i}"))
        assert (
            sweeps.sweep_float(
                s, bank.deps, SYSTEM, amount_cents=6_000 * KES, idempotency_key=key
            ).reference
            == winner
        )
        with pytest.raises(IdempotencyConflict):
            sweeps.sweep_float(s, bank.deps, SYSTEM, amount_cents=5 * KES, idempotency_key=key)
    ledger_green(bank)


def _swept(s: Session, key: str) -> bool:
    from db.models_bank import BankSweep

    return (
        s.scalar(select(BankSweep.id).where(BankSweep.idempotency_key == f"bank.sweep:{key}"))
        is not None
    )


def test_the_bank_statement_matches_ours_by_reference_and_lists_the_rest(bank: Bank) -> None:
    member_id = member_with_bank(bank, savings_kes=5_000)
    paid = transfer_of(bank, member_id, 1_000)
    send_transfer(bank.factory, bank.deps, POLICY, bank.client, paid)
    wait_for(bank, paid, "succeeded")
    with unit_of_work(bank.factory) as s:
        float_id = ledger.account_id_by_code(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
        suspense = ledger.account_id_by_code(s, SystemAccount.SUSPENSE)
        ledger.post_entry(
            s, kind=EntryKind.MPESA_SUSPENSE, legs=[ledger.Leg(float_id, 800 * KES),
                                            ledger.Leg(suspense, -800 * KES)],
            idempotency_key=f"seed-float-{uuid4().hex}", now=NOW,
        )  # fmt: skip
        swept = sweeps.sweep_float(s, bank.deps, SYSTEM, amount_cents=800 * KES,
                                   idempotency_key="st-1")  # fmt: skip
        sweep_ref = swept.reference
        paid_ref = s.get_one(BankTransfer, paid).reference
    today = datetime.now(UTC).date()  # the stand-in dates its lines by its own clock
    bank.standin.bank.credit(800 * KES, f"MPESA B2B {sweep_ref}", today)
    bank.standin.bank.credit(250 * KES, "CHQ DEP 001122", today)
    lines = bank.client.statement(today - timedelta(days=1), today + timedelta(days=1))
    with bank.factory() as s:
        report = statement.compare_statement(lines, statement.our_side(s, NOW.date(), NOW.date()))
    assert sorted(report.matched) == sorted([paid_ref, sweep_ref])
    assert [u["narration"] for u in report.unmatched_lines] == ["CHQ DEP 001122"]
    assert report.clean


def test_statement_comparison_flags_amounts_open_transfers_and_missing_lines() -> None:
    ours = {
        "BT0000001": statement.Ours("BT0000001", 1_000, "out", True),
        "BT0000002": statement.Ours("BT0000002", 2_000, "out", False),
        "BT0000003": statement.Ours("BT0000003", 3_000, "out", True),
        "SW0000004": statement.Ours("SW0000004", 4_000, "in", True),
    }
    day = date(2026, 6, 10)
    lines = [
        statement.BankStatementLine(day, "FT BT0000001 A", "FT1", 1_000, 0),
        statement.BankStatementLine(day, "FT BT0000001 A", "FT9", 1_000, 0),  # twice
        statement.BankStatementLine(day, "FT BT0000002 B", "FT2", 2_000, 0),
        statement.BankStatementLine(day, "B2B SW0000004", "CR4", 0, 4_100),
    ]
    report = statement.compare_statement(lines, ours)
    assert report.matched == ["BT0000001"]
    assert report.unsettled_here == ["BT0000002"]
    assert report.amount_differs == [
        {"reference": "SW0000004", "ours_cents": 4_000, "bank_cents": 4_100}
    ]
    assert report.missing == ["BT0000003"]
    assert len(report.unmatched_lines) == 1 and not report.clean


def test_bank_account_details_are_validated_and_encrypted(bank: Bank) -> None:
    with unit_of_work(bank.factory) as s:
        member = funded_member(s, bank.deps)
        for field, kwargs in (
            ("bank_code", {"bank_code": "KCB", "account_number": "0112233445",
                           "account_name": "A W"}),
            ("account_number", {"bank_code": "01", "account_number": "12ab",
                                "account_name": "A W"}),
        ):  # fmt: skip
            with pytest.raises(InvalidInput) as refused:
                transfers.set_member_bank_account(s, bank.deps, SYSTEM, member.id, **kwargs)
            assert refused.value.field == field
        row = transfers.set_member_bank_account(
            s, bank.deps, SYSTEM, member.id, bank_code="01", account_number="0112 2334 4556",
            account_name="Amina  Wanjiru",
        )  # fmt: skip
        assert b"011223344556" not in row.account_number_ciphertext
        assert bank.deps.vault.decrypt(row.account_number_ciphertext) == "011223344556"
        assert row.account_last4 == "4556"
