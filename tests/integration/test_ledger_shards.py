"""The hot accounts in shards (migration 0040, core.ledger.shards): what the ledger holds.

A posting to the float lands on one of its shards; the float's balance, the trial balance
and verify-ledger read the same as if it were one row; shards grow without touching a
single posting written before."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.ledger import entries as ledger
from core.ledger.chart import SHARDED_ACCOUNTS, SystemAccount, shard_code
from core.ledger.shards import ensure_shards, sharded_accounts
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from db.base import utcnow
from db.models import Account, Posting
from db.session import make_session_factory, unit_of_work
from tests.ledgerutil import fund, make_accounts
from tests.workerprocs import run_manage

FLOAT = SystemAccount.MPESA_COLLECTIONS_FLOAT


@pytest.fixture(autouse=True)
def _forget_shards() -> Iterator[None]:
    """The shards a test adds are rolled back with it: this process forgets them too."""
    ledger.forget_hot_set()
    yield
    ledger.forget_hot_set()


def float_postings(session: Session, float_id: int, entry_id: int) -> list[tuple[str, int]]:
    return [
        (code, amount)
        for code, amount in session.execute(
            select(Account.code, Posting.amount_cents)
            .join(Account, Account.id == Posting.account_id)
            .where(Posting.entry_id == entry_id)
            .where((Account.id == float_id) | (Account.parent_id == float_id))
        ).tuples()
    ]


def own_balance(session: Session, account_id: int) -> int:
    return session.scalar(select(Account.balance_cents).where(Account.id == account_id)) or 0


def test_a_deposit_lands_on_one_shard_and_the_float_reads_their_sum(
    any_session: Session,
) -> None:
    s = any_session
    float_id, (a, b, *_) = make_accounts(s)
    before, parent_before = ledger.get_balance(s, float_id).balance_cents, own_balance(s, float_id)
    shards = {shard_code(FLOAT, n) for n in range(1, 9)}
    posted = [fund(s, float_id, acct, cents, key=f"c2b:{uuid4().hex}") for acct, cents in
              [(a, 10_000), (b, 2_550), (a, 99)]]  # fmt: skip
    for entry in posted:
        [(code, _)] = float_postings(s, float_id, entry.entry_id)
        assert code in shards
    assert ledger.get_balance(s, float_id).balance_cents == before + 12_649
    assert own_balance(s, float_id) == parent_before  # the parent row took nothing
    # A reversal undoes an entry on the shard the entry went to.
    reversal = ledger.reverse_entry(
        s, entry_id=posted[1].entry_id, idempotency_key=f"rev:{uuid4().hex}", now=utcnow()
    )
    [(shard, amount)] = float_postings(s, float_id, reversal.entry_id)
    assert (shard, amount) == (float_postings(s, float_id, posted[1].entry_id)[0][0], -2_550)
    assert ledger.get_balance(s, float_id).balance_cents == before + 10_099
    assert verify_ledger(s).ok
    assert ledger.trial_balance(s).balanced


def test_the_same_key_replayed_returns_the_first_entry_and_moves_nothing(
    any_session: Session,
) -> None:
    s = any_session
    float_id, (a, *_) = make_accounts(s)
    first = fund(s, float_id, a, 5_000, key="c2b:RXREPLAY1")
    balance = ledger.get_balance(s, float_id).balance_cents
    again = fund(s, float_id, a, 5_000, key="c2b:RXREPLAY1")
    assert (again.entry_id, again.created) == (first.entry_id, False)
    assert ledger.get_balance(s, float_id).balance_cents == balance
    assert ledger.get_balance(s, a).balance_cents == 5_000


def test_one_shard_is_the_float_whole_and_four_use_the_first_four(
    any_session: Session,
) -> None:
    s = any_session
    float_id, (a, *_) = make_accounts(s)
    s.info["ledger_shards"] = 1
    entry = fund(s, float_id, a, 700)
    assert float_postings(s, float_id, entry.entry_id) == [(str(FLOAT), 700)]
    s.info["ledger_shards"] = 4
    used = {
        float_postings(s, float_id, fund(s, float_id, a, 100 + n).entry_id)[0][0] for n in range(64)
    }
    assert used == {shard_code(FLOAT, n) for n in range(1, 5)}
    assert ledger.get_balance(s, a).balance_cents == 700 + sum(100 + n for n in range(64))
    assert verify_ledger(s).ok


def test_shards_grow_without_rewriting_a_posting(any_session: Session) -> None:
    s = any_session
    float_id, (a, *_) = make_accounts(s)
    for n in range(20):
        fund(s, float_id, a, 1_000 + n)
    history = s.execute(
        select(Posting.id, Posting.account_id, Posting.amount_cents, Posting.balance_after_cents)
        .order_by(Posting.id)
    ).all()  # fmt: skip
    balance = ledger.get_balance(s, float_id).balance_cents

    created = ensure_shards(s, 16, now=utcnow())
    assert sorted(created) == sorted(
        shard_code(account, n) for account in SHARDED_ACCOUNTS for n in range(9, 17)
    )
    assert ensure_shards(s, 16, now=utcnow()) == []  # never twice
    assert ensure_shards(s, 4, now=utcnow()) == []  # never fewer
    with pytest.raises(InvalidInput):
        ensure_shards(s, 0, now=utcnow())
    assert s.execute(
        select(Posting.id, Posting.account_id, Posting.amount_cents, Posting.balance_after_cents)
        .order_by(Posting.id)
    ).all() == history  # fmt: skip
    assert ledger.get_balance(s, float_id).balance_cents == balance

    used = {
        float_postings(s, float_id, fund(s, float_id, a, 10).entry_id)[0][0] for _ in range(160)
    }
    assert used & {shard_code(FLOAT, n) for n in range(9, 17)}  # the new shards take postings
    [chart] = [acct for acct in sharded_accounts(s) if acct.code == FLOAT]
    assert [line.code for line in chart.shards] == [shard_code(FLOAT, n) for n in range(1, 17)]
    assert chart.balance_cents == ledger.get_balance(s, float_id).balance_cents
    assert verify_ledger(s).ok


def test_verify_ledger_refuses_a_shard_kept_on_the_other_side(any_session: Session) -> None:
    s = any_session
    shard = shard_code(SystemAccount.SUSPENSE, 3)
    s.execute(update(Account).where(Account.code == shard).values(normal_side="D"))
    report = verify_ledger(s)
    assert f"shard {shard}: type or normal side differs from {SystemAccount.SUSPENSE}" in (
        report.problems
    )


def test_a_payout_with_its_fee_spreads_both_hot_legs_and_releases_the_hold(
    any_session: Session,
) -> None:
    s = any_session
    float_id, (a, *_) = make_accounts(s)
    payout = ledger.account_id_by_code(s, SystemAccount.MPESA_DISBURSEMENT_FLOAT)
    fees = ledger.account_id_by_code(s, SystemAccount.FEE_INCOME)
    fees_before = ledger.get_balance(s, fees).balance_cents
    fund(s, float_id, a, 10_000)
    hold = ledger.reserve_hold(s, account_id=a, amount_cents=6_000, idempotency_key=uuid4().hex,
                               now=utcnow())  # fmt: skip
    entry = ledger.post_hold(
        s, hold_id=hold.hold_id, kind=EntryKind.WITHDRAWAL_MPESA, idempotency_key=uuid4().hex,
        legs=[ledger.Leg(a, 5_030), ledger.Leg(payout, -5_000), ledger.Leg(fees, -30)],
        now=utcnow(),
    )  # fmt: skip
    codes = set(
        s.scalars(
            select(Account.code)
            .join(Posting, Posting.account_id == Account.id)
            .where(Posting.entry_id == entry.entry_id)
        )
    )
    assert any(c.startswith(f"{SystemAccount.MPESA_DISBURSEMENT_FLOAT}-") for c in codes)
    assert any(c.startswith(f"{SystemAccount.FEE_INCOME}-") for c in codes)
    assert ledger.get_balance(s, fees).balance_cents == fees_before + 30
    bal = ledger.get_balance(s, a)
    assert (bal.balance_cents, bal.held_cents) == (4_970, 0)
    assert verify_ledger(s).ok


def test_manage_ledger_shards_adds_up_to_the_setting_and_shows_the_chart(
    committed_pg: Engine,
) -> None:
    shown = run_manage("ledger-shards", "--show-only")
    assert shown.returncode == 0, shown.stderr
    assert "1010     M-Pesa collections float" in shown.stdout
    assert "  1010-08" in shown.stdout and "1010-09" not in shown.stdout
    assert "new postings spread over 8 row(s) each (LEDGER_SHARDS=8)" in shown.stdout

    grown = run_manage("ledger-shards", LEDGER_SHARDS="12")
    assert grown.returncode == 0, grown.stderr
    assert "created 16 shard(s): 1010-09, 1010-10, 1010-11, 1010-12, 1020-09" in grown.stdout
    assert "new postings spread over 12 row(s) each (LEDGER_SHARDS=12)" in grown.stdout
    again = run_manage("ledger-shards", "--count", "12")
    assert again.returncode == 0 and "created" not in again.stdout
    with unit_of_work(make_session_factory(committed_pg)) as s:
        codes = s.scalars(select(Account.code).where(Account.parent_id.is_not(None))).all()
        assert len(codes) == 4 * 12
        assert verify_ledger(s).ok
    assert run_manage("ledger-shards", "--count", "0").returncode == 2  # click refuses it
