"""Hypothesis state machine: any sequence of valid and invalid ledger operations keeps
the books exact, on PostgreSQL and on SQLite."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from core.kernel.errors import (
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    UnbalancedEntry,
)
from core.ledger import entries as ledger
from core.ledger.entries import Leg
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from db.base import utcnow
from tests.ledgerutil import make_accounts

cents = st.integers(min_value=1, max_value=5_000_000)


class LedgerMachine(RuleBasedStateMachine):
    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        self.conn = self.engine.connect()
        self.trans = self.conn.begin()
        if self.engine.dialect.name == "postgresql":
            self.conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        self.session = Session(
            bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        self.float_id, self.members = make_accounts(self.session, 3)
        self.expected = {self.float_id: 0, **dict.fromkeys(self.members, 0)}
        self.held = dict.fromkeys(self.members, 0)
        self.holds: dict[int, tuple[int, int]] = {}  # hold id -> (account, amount) while pending
        self.keys: dict[str, tuple[int, list[Leg]]] = {}
        self.reversible: list[int] = []
        self.n = 0

    def key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def _overdraws(self, legs: list[tuple[int, int]]) -> bool:
        """Would these legs take a member account's available balance below zero? (A debit
        of a member account, amount > 0, lowers it; the float may go negative.)"""
        return any(
            account != self.float_id and self.available(account) - amount < 0
            for account, amount in legs
        )

    def _post(self, legs: list[Leg], kind: EntryKind = EntryKind.TRANSFER_OWN) -> None:
        key = self.key()
        warranted = self._overdraws([(leg.account_id, leg.amount_cents) for leg in legs])
        try:
            posted = ledger.post_entry(
                self.session, kind=kind, legs=legs, idempotency_key=key, now=utcnow()
            )
        except InsufficientFunds:
            assert warranted, "an entry was refused although no member account would overdraw"
            self.session.commit()
            return
        assert not warranted, "an entry that overdraws a member account was accepted"
        self.session.commit()
        self.keys[key] = (posted.entry_id, legs)
        self.reversible.append(posted.entry_id)
        for leg in legs:
            side = 1 if leg.account_id == self.float_id else -1  # float is D, members are C
            self.expected[leg.account_id] += side * leg.amount_cents

    def available(self, account: int) -> int:
        return self.expected[account] - self.held[account]

    @rule(member=st.integers(0, 2), amount=cents)
    def deposit(self, member: int, amount: int) -> None:
        self._post(
            [Leg(self.float_id, amount), Leg(self.members[member], -amount)],
            EntryKind.DEPOSIT_MPESA,
        )

    @rule(src=st.integers(0, 2), dst=st.integers(0, 2), amount=cents)
    def transfer(self, src: int, dst: int, amount: int) -> None:
        if src == dst:
            return
        self._post([Leg(self.members[src], amount), Leg(self.members[dst], -amount)])

    @rule(member=st.integers(0, 2), amount=cents)
    def withdraw(self, member: int, amount: int) -> None:
        self._post(
            [Leg(self.members[member], amount), Leg(self.float_id, -amount)],
            EntryKind.WITHDRAWAL_MPESA,
        )

    @rule(member=st.integers(0, 2), amount=cents, off=st.integers(-3, 3).filter(bool))
    def unbalanced_is_refused(self, member: int, amount: int, off: int) -> None:
        try:
            ledger.post_entry(
                self.session,
                kind=EntryKind.ADJUSTMENT_MANUAL,
                legs=[Leg(self.float_id, amount + off), Leg(self.members[member], -amount)],
                idempotency_key=self.key(),
                now=utcnow(),
            )
        except (UnbalancedEntry, InvalidInput):
            self.session.commit()
            return
        raise AssertionError("an unbalanced entry was accepted")

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def replay_is_harmless(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.keys)))
        entry_id, legs = self.keys[key]
        again = ledger.post_entry(
            self.session, kind=self._kind_of(entry_id), legs=legs, idempotency_key=key, now=utcnow()
        )
        assert (again.entry_id, again.created) == (entry_id, False)
        try:
            ledger.post_entry(
                self.session,
                kind=EntryKind.ADJUSTMENT_MANUAL,
                legs=legs,
                idempotency_key=key,
                now=utcnow(),
            )
            raise AssertionError("a key reused for another entry was accepted")
        except IdempotencyConflict:
            pass
        self.session.commit()

    def _kind_of(self, entry_id: int) -> EntryKind:
        return EntryKind(
            self.session.execute(
                text("SELECT kind FROM journal_entries WHERE id = :i"), {"i": entry_id}
            ).scalar_one()
        )

    @rule(member=st.integers(0, 2), amount=cents)
    def reserve(self, member: int, amount: int) -> None:
        account = self.members[member]
        try:
            hold = ledger.reserve_hold(
                self.session,
                account_id=account,
                amount_cents=amount,
                idempotency_key=self.key(),
                now=utcnow(),
            )
        except InsufficientFunds:
            assert amount > self.available(account)
            self.session.commit()
            return
        assert amount <= self.available(account)
        self.session.commit()
        self.holds[hold.hold_id] = (account, amount)
        self.held[account] += amount

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), release=st.booleans())
    def settle_hold(self, data: st.DataObject, release: bool) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        account, amount = self.holds.pop(hold_id)
        self.held[account] -= amount
        if release:
            ledger.release_hold(self.session, hold_id=hold_id, now=utcnow())
        else:
            taken = data.draw(st.integers(1, amount))
            ledger.post_hold(
                self.session,
                hold_id=hold_id,
                kind=EntryKind.WITHDRAWAL_MPESA,
                idempotency_key=self.key(),
                legs=[Leg(account, taken), Leg(self.float_id, -taken)],
                now=utcnow(),
            )
            self.expected[account] -= taken
            self.expected[self.float_id] -= taken
        self.session.commit()
        try:
            ledger.post_hold(
                self.session,
                hold_id=hold_id,
                kind=EntryKind.WITHDRAWAL_MPESA,
                idempotency_key=self.key(),
                legs=[Leg(account, 1), Leg(self.float_id, -1)],
                now=utcnow(),
            )
            raise AssertionError("a settled hold was posted again")
        except HoldNotPending:
            self.session.commit()

    @precondition(lambda self: self.reversible)
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(self.reversible))
        self.reversible.remove(entry_id)
        legs = list(
            self.session.execute(
                # A shard's posting counts for its parent, as the model keeps it.
                text(
                    "SELECT COALESCE(a.parent_id, p.account_id), p.amount_cents FROM postings p"
                    " JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = :e"
                ),
                {"e": entry_id},
            )
        )
        warranted = self._overdraws([(account_id, -amount) for account_id, amount in legs])
        try:
            ledger.reverse_entry(
                self.session, entry_id=entry_id, idempotency_key=self.key(), now=utcnow()
            )
        except InsufficientFunds:
            assert warranted, "a reversal was refused although no member account would overdraw"
            self.session.commit()
            return
        assert not warranted, "a reversal that overdraws a member account was accepted"
        self.session.commit()
        for account_id, amount in legs:
            side = 1 if account_id == self.float_id else -1
            self.expected[account_id] -= side * amount

    @invariant()
    def balances_match_the_model_and_never_go_negative(self) -> None:
        for account, cents_expected in self.expected.items():
            bal = ledger.get_balance(self.session, account)
            assert bal.balance_cents == cents_expected
            if account != self.float_id:
                assert bal.held_cents == self.held[account]
                assert bal.available_cents >= 0

    def teardown(self) -> None:
        try:
            report = verify_ledger(self.session)
            assert report.ok, report.problems
        finally:
            self.session.close()
            self.trans.rollback()
            self.conn.close()


def test_any_sequence_of_operations_keeps_the_books_exact(any_engine: Engine) -> None:
    machine: Any = type("Machine", (LedgerMachine,), {"engine": any_engine})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
