"""The double-entry ledger: the single source of truth for money.

Rules (ARCHITECTURE.md, "Money and the ledger"):

* An entry is two or more postings, signed debit-positive, summing to zero.
  Entries are immutable; a mistake is corrected by a reversing entry.
* Every entry carries an idempotency key with a unique constraint. The same
  key with the same postings returns the first entry and writes nothing; the
  same key with different postings is an ``IdempotencyConflict``.
* Balances live on the account row (normal side positive) and change in the
  same transaction as the postings, by a guarded atomic ``UPDATE``: an account
  with ``no_overdraft`` never has ``balance - held < 0``.
* Row locks are taken in one global order, account id ascending with hot
  accounts (floats, income, suspense) last, so two entries never deadlock and
  the hot row is held for the shortest time.
* Holds reserve money for a two-phase move (withdrawal, B2C disbursement):
  reserve -> post (in full or in part, the rest released) or release.

Every function here takes the caller's session and never commits (nor does the
use case that calls it: the edge commits once, ``core.kernel.uow``). Every write
takes its time from the caller (``now``: the use case passes ``deps.now()``, the
injected clock), never from the wall clock; an entry also carries a value date, the
business date in Nairobi of ``now`` unless the caller gives one. Each write runs
inside a SAVEPOINT, so a refused entry leaves nothing written and the caller's
transaction usable.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Date, Engine, Select, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import Subquery

from core.kernel.calendar import business_date
from core.kernel.errors import (
    AlreadyReversed,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    UnbalancedEntry,
)
from core.ledger.chart import AccountType, NormalSide, SystemAccount
from core.ledger.vocabulary import EntryKind, HoldStatus
from db.base import UTCDateTime
from db.models import Account, Hold, JournalEntry, Posting
from db.session import insert_for

# Session.info key: how many shards of each sharded account new postings use (see
# ``shards_in_use``; db.session.make_session_factory sets it).
LEDGER_SHARDS_INFO = "ledger_shards"

# Largest single posting: KES 10 billion. Keeps sums far from BIGINT overflow.
MAX_POSTING_CENTS = 10**12
_REF_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of an entry: ``amount_cents`` > 0 debits, < 0 credits."""

    account_id: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class PostedEntry:
    entry_id: int
    reference: str
    created: bool  # False when the idempotency key had already been used
    # Account id -> its balance right after this entry (the guarded UPDATE's RETURNING),
    # for an entry this call created; empty for a replay. Saves the caller a read.
    balances: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HoldInfo:
    hold_id: int
    account_id: int
    amount_cents: int
    status: HoldStatus
    created: bool


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: int
    balance_cents: int
    held_cents: int

    @property
    def available_cents(self) -> int:
        return self.balance_cents - self.held_cents


@dataclass(frozen=True, slots=True)
class StatementLine:
    posting_id: int
    entry_id: int
    reference: str
    kind: str
    memo: str
    created_at: datetime
    value_date: date
    amount_cents: int  # signed on the account's normal side: + raises the balance
    balance_after_cents: int


@dataclass(frozen=True, slots=True)
class TrialBalance:
    debit_total_cents: int
    credit_total_cents: int
    by_type: dict[str, int]

    @property
    def balanced(self) -> bool:
        return self.debit_total_cents == self.credit_total_cents


# ---------------------------------------------------------------- pure rules


def validate_legs(legs: Sequence[Leg]) -> tuple[Leg, ...]:
    """Check an entry's legs: 2+, integer, non-zero, bounded, one per account, sum zero."""
    if len(legs) < 2:
        raise UnbalancedEntry("an entry needs at least two postings")
    seen: set[int] = set()
    for leg in legs:
        if type(leg.amount_cents) is not int or type(leg.account_id) is not int:
            raise InvalidInput("amounts and account ids must be integers", field="legs")
        if leg.amount_cents == 0:
            raise InvalidInput("a posting cannot be zero", field="legs", reason="zero")
        if abs(leg.amount_cents) > MAX_POSTING_CENTS:
            raise InvalidInput("posting too large", field="legs", reason="too_large")
        if leg.account_id in seen:
            raise InvalidInput("one posting per account per entry", field="legs")
        seen.add(leg.account_id)
    total = sum(leg.amount_cents for leg in legs)
    if total != 0:
        raise UnbalancedEntry(f"postings sum to {total}, not zero")
    return tuple(legs)


def entry_fingerprint(kind: str, legs: Iterable[Leg], reverses_entry_id: int | None) -> str:
    """What an idempotent replay must match: kind, target of a reversal, and the legs."""
    body = "|".join(
        [kind, str(reverses_entry_id or "")]
        + [
            f"{leg.account_id}:{leg.amount_cents}"
            for leg in sorted(legs, key=lambda x: x.account_id)
        ]
    )
    return hashlib.sha256(body.encode()).hexdigest()


def normal_delta(normal_side: str, amount_cents: int) -> int:
    """How a debit-positive amount moves a balance kept on its normal side."""
    return amount_cents if normal_side == NormalSide.DEBIT else -amount_cents


def lock_order(legs: Iterable[Leg], hot: Mapping[int, bool]) -> list[Leg]:
    """Cold accounts first in id order, then hot accounts in id order."""
    return sorted(legs, key=lambda leg: (hot[leg.account_id], leg.account_id))


def new_reference() -> str:
    """A short receipt reference a member can read out: ``S`` + 9 base32 characters."""
    return "S" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(9))


# ------------------------------------------------------------- database work


@dataclass(frozen=True, slots=True)
class _Meta:
    normal_side: str
    no_overdraft: bool
    is_hot: bool


def _account_meta(session: Session, account_ids: Iterable[int]) -> dict[int, _Meta]:
    ids = sorted(set(account_ids))
    rows = session.execute(
        select(Account.id, Account.normal_side, Account.no_overdraft, Account.is_hot).where(
            Account.id.in_(ids)
        )
    ).all()
    meta = {row.id: _Meta(row.normal_side, row.no_overdraft, row.is_hot) for row in rows}
    missing = [i for i in ids if i not in meta]
    if missing:
        raise NotFound(f"no such account: {missing}")
    return meta


# Hot accounts are few, seeded with the chart and never change, so each process
# keeps their ids per engine, refreshed once a minute. The set only decides lock
# ORDER: were it ever stale, the worst case is a deadlock that PostgreSQL detects
# and the unit of work retries -- never a wrong balance. Every other property
# (normal side, overdraft rule) is read by the guarded UPDATE itself.
#
# The same read gives the shards (migration 0040, docs/ledger/shards.md): a hot account
# split into sub-accounts that each take a share of its postings. Shards are only ever
# added (``manage.py ledger-shards``), so a stale map misses a new shard for at most a
# minute and never names one that is gone.
_HOT_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class _HotSet:
    hot: frozenset[int]
    shards: Mapping[int, tuple[int, ...]]  # parent id -> its shards' ids, ascending


_hot_cache: weakref.WeakKeyDictionary[Engine, tuple[float, _HotSet]] = weakref.WeakKeyDictionary()


# The hot path in plain SQL that PostgreSQL and SQLite (3.35+) both accept, built
# once per process: an ORM-built statement costs more Python time per entry than
# the database takes to run it (see bench/ledger.py and docs/benchmarks.md).
_INSERT_ENTRY = text(
    "INSERT INTO journal_entries "
    "(idempotency_key, fingerprint, reference, kind, memo, reverses_entry_id, created_at, "
    "value_date) "
    "VALUES (:key, :fingerprint, :reference, :kind, :memo, :reverses, :created_at, :value_date) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
).bindparams(bindparam("created_at", type_=UTCDateTime()), bindparam("value_date", type_=Date()))

# Guarded atomic update: the change is +amount on a debit-normal account and
# -amount on a credit-normal one; an account with no_overdraft may not end with
# balance - held < 0 (the released hold counted back first).
_DELTA = "(CASE WHEN normal_side = 'D' THEN :amount ELSE -:amount END)"
_UPDATE_BALANCE = text(
    f"UPDATE accounts SET balance_cents = balance_cents + {_DELTA}, "
    "held_cents = held_cents - :release "
    f"WHERE id = :id AND (NOT no_overdraft OR {_DELTA} >= 0 "
    f"OR balance_cents + {_DELTA} - (held_cents - :release) >= 0) "
    "RETURNING balance_cents"
)


@functools.cache
def _insert_postings(n: int) -> TextClause:
    values = ", ".join(f"(:entry, :a{i}, :m{i}, :b{i})" for i in range(n))
    return text(
        "INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents) "
        f"VALUES {values}"
    )


@functools.cache
def _pg_update_and_insert_postings(n_before: int) -> TextClause:
    """PostgreSQL: the last leg's guarded update plus all postings in one statement.

    A data-modifying CTE runs exactly once; the postings are inserted only if the
    guarded update matched, and the statement returns the new balance (no row when
    the guard refused, exactly like ``_UPDATE_BALANCE``).
    """
    earlier = " UNION ALL ".join(
        f"SELECT CAST(:entry AS BIGINT), CAST(:a{i} AS BIGINT), CAST(:m{i} AS BIGINT), "
        f"CAST(:b{i} AS BIGINT) FROM u"
        for i in range(n_before)
    )
    return text(
        f"WITH u AS ({_UPDATE_BALANCE.text}), "
        "ins AS (INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents) "
        f"{earlier} UNION ALL SELECT :entry, :id, :amount, balance_cents FROM u) "
        "SELECT balance_cents FROM u"
    )


def _hot_set(session: Session) -> _HotSet:
    engine = session.get_bind().engine
    cached = _hot_cache.get(engine)
    now = time.monotonic()
    if cached is None or now - cached[0] > _HOT_TTL_S:
        rows = session.execute(
            select(Account.id, Account.is_hot, Account.parent_id)
            .where(Account.is_hot | Account.parent_id.is_not(None))
            .order_by(Account.id)
        ).all()
        shards: dict[int, list[int]] = {}
        for row in rows:
            if row.parent_id is not None:
                shards.setdefault(row.parent_id, []).append(row.id)
        cached = (
            now,
            _HotSet(
                frozenset(row.id for row in rows if row.is_hot),
                {parent: tuple(ids) for parent, ids in shards.items()},
            ),
        )
        _hot_cache[engine] = cached
    return cached[1]


def forget_hot_set(bind: Session | Engine | None = None) -> None:
    """Drop this process's cached hot set and shards (after adding shards); for every
    engine when ``bind`` is None."""
    if bind is None:
        _hot_cache.clear()
        return
    engine = bind.get_bind().engine if isinstance(bind, Session) else bind
    _hot_cache.pop(engine, None)


def shards_in_use(
    session: Session, shards: Mapping[int, tuple[int, ...]]
) -> Mapping[int, tuple[int, ...]]:
    """The shards new postings spread over: the first ``LEDGER_SHARDS`` of each sharded
    account (the session factory's ``info["ledger_shards"]``, set by the runtime from the
    setting; all of them when unset). One means the parent alone: the ledger unsharded."""
    n = session.info.get(LEDGER_SHARDS_INFO)
    if n is None:
        return shards
    if n <= 1:
        return {}
    return {parent: ids[:n] for parent, ids in shards.items()}


def hot_account_ids(session: Session) -> frozenset[int]:
    return _hot_set(session).hot


def shard_ids(session: Session) -> Mapping[int, tuple[int, ...]]:
    """Each sharded account's id -> its shards' ids (ascending); cached per process."""
    return _hot_set(session).shards


def shard_rollup() -> Subquery:
    """A subquery mapping every account id (``account_id``) to the account it is reported
    as: a shard to its parent, any other account to itself (``id``, ``code``, ``name``,
    ``type``). Reports group postings by it, so a sharded hot account is one line."""
    parent = aliased(Account)
    return (
        select(
            Account.id.label("account_id"),
            func.coalesce(parent.id, Account.id).label("id"),
            func.coalesce(parent.code, Account.code).label("code"),
            func.coalesce(parent.name, Account.name).label("name"),
            func.coalesce(parent.type, Account.type).label("type"),
        )
        .outerjoin(parent, parent.id == Account.parent_id)
        .subquery()
    )


def pick_shard(shards: Sequence[int], idempotency_key: str) -> int:
    """The shard an entry's posting goes to: a hash of the entry's idempotency key.

    Uniform over the shards, the same for the same key (a retried entry aims at the same
    row), and independent of who pays: one member's many payments spread too."""
    digest = hashlib.blake2b(idempotency_key.encode(), digest_size=8).digest()
    return shards[int.from_bytes(digest, "big") % len(shards)]


def route_to_shards(
    legs: Sequence[Leg],
    shards: Mapping[int, tuple[int, ...]],
    idempotency_key: str,
    keep: Iterable[int] = (),
) -> tuple[Leg, ...]:
    """The legs with each sharded account replaced by one of its shards (``keep``: ids left
    whole, e.g. an account whose hold the entry releases). One leg per account still holds:
    a shard the entry already names is skipped for the next one."""
    if not shards:
        return tuple(legs)
    kept = set(keep)
    taken = {leg.account_id for leg in legs}
    routed: list[Leg] = []
    for leg in legs:
        group = shards.get(leg.account_id)
        if not group or leg.account_id in kept:
            routed.append(leg)
            continue
        first = group.index(pick_shard(group, idempotency_key))
        for step in range(len(group)):
            candidate = group[(first + step) % len(group)]
            if candidate not in taken:
                taken.add(candidate)
                routed.append(Leg(candidate, leg.amount_cents))
                break
        else:
            routed.append(leg)  # every shard named already: the parent takes it
    return tuple(routed)


def _existing_entry(session: Session, idempotency_key: str, fingerprint: str) -> PostedEntry:
    row = session.execute(
        select(JournalEntry.id, JournalEntry.reference, JournalEntry.fingerprint).where(
            JournalEntry.idempotency_key == idempotency_key
        )
    ).one()
    if row.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "this idempotency key was already used for a different entry",
            idempotency_key=idempotency_key,
        )
    return PostedEntry(row.id, row.reference, created=False)


def post_entry(
    session: Session,
    *,
    kind: EntryKind,
    legs: Sequence[Leg],
    idempotency_key: str,
    now: datetime,
    value_date: date | None = None,
    memo: str = "",
    reverses_entry_id: int | None = None,
    release_holds: Mapping[int, int] | None = None,
) -> PostedEntry:
    """Write one balanced entry and move the balances, or write nothing.

    ``now`` stamps the entry (``created_at``); ``value_date`` is the day the money
    counts from, by default the business date in Nairobi of ``now``. Neither is part
    of the idempotency fingerprint: a replay on another day returns the first entry.
    ``release_holds`` maps account id -> cents of holds released in the same
    atomic update (used by ``post_hold``).
    """
    legs = validate_legs(legs)
    if not idempotency_key or len(idempotency_key) > 120:
        raise InvalidInput("idempotency key must be 1-120 characters", field="idempotency_key")
    fingerprint = entry_fingerprint(kind, legs, reverses_entry_id)
    releases = dict(release_holds or {})

    reference = new_reference()
    with session.begin_nested():
        conn = session.connection()  # Core execution: no ORM bookkeeping on the hot path
        entry_id = conn.execute(
            _INSERT_ENTRY,
            {
                "key": idempotency_key,
                "fingerprint": fingerprint,
                "reference": reference,
                "kind": kind,
                "memo": memo[:160],
                "reverses": reverses_entry_id,
                "created_at": now,
                "value_date": value_date or business_date(now),
            },
        ).scalar_one_or_none()
        if entry_id is None:
            return _existing_entry(session, idempotency_key, fingerprint)

        hot_set = _hot_set(session)
        hot = hot_set.hot
        legs = route_to_shards(
            legs, shards_in_use(session, hot_set.shards), idempotency_key, releases
        )
        ordered = lock_order(legs, {leg.account_id: leg.account_id in hot for leg in legs})
        # On PostgreSQL the last (hottest) leg's update and every posting go in one
        # statement, so the hot row's lock is held for one round trip less.
        one_statement_tail = conn.dialect.name == "postgresql"
        postings: dict[str, int] = {"entry": entry_id}
        balances: dict[int, int] = {}
        for n, leg in enumerate(ordered):
            params = {
                "id": leg.account_id,
                "amount": leg.amount_cents,
                "release": releases.get(leg.account_id, 0),
            }
            last = n == len(ordered) - 1
            if last and one_statement_tail:
                balance_after = conn.execute(
                    _pg_update_and_insert_postings(n), {**postings, **params}
                ).scalar_one_or_none()
            else:
                balance_after = conn.execute(_UPDATE_BALANCE, params).scalar_one_or_none()
            if balance_after is None:
                _account_meta(session, [leg.account_id])  # NotFound for a missing account
                raise InsufficientFunds("not enough available balance", account_id=leg.account_id)
            postings.update(
                {f"a{n}": leg.account_id, f"m{n}": leg.amount_cents, f"b{n}": balance_after}
            )
            balances[leg.account_id] = balance_after
        if not one_statement_tail:
            conn.execute(_insert_postings(len(ordered)), postings)
    return PostedEntry(entry_id, reference, created=True, balances=balances)


def reserve_hold(
    session: Session,
    *,
    account_id: int,
    amount_cents: int,
    idempotency_key: str,
    now: datetime,
    reason: str = "",
) -> HoldInfo:
    """Reserve ``amount_cents`` of an account's available balance until posted or released."""
    if type(amount_cents) is not int or amount_cents <= 0 or amount_cents > MAX_POSTING_CENTS:
        raise InvalidInput("hold amount must be a positive number of cents", field="amount")
    with session.begin_nested():
        hold_id = session.execute(
            insert_for(session, Hold)
            .values(
                account_id=account_id,
                amount_cents=amount_cents,
                posted_cents=0,
                status=HoldStatus.PENDING,
                idempotency_key=idempotency_key,
                reason=reason[:160],
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Hold.id)
        ).scalar_one_or_none()
        if hold_id is None:
            hold = session.execute(
                select(Hold).where(Hold.idempotency_key == idempotency_key)
            ).scalar_one()
            if hold.account_id != account_id or hold.amount_cents != amount_cents:
                raise IdempotencyConflict("hold key reused for a different hold")
            return HoldInfo(
                hold.id, hold.account_id, hold.amount_cents, HoldStatus(hold.status), False
            )
        meta = _account_meta(session, [account_id])[account_id]
        stmt = (
            update(Account)
            .where(Account.id == account_id)
            .values(held_cents=Account.held_cents + amount_cents)
            .returning(Account.id)
        )
        if meta.no_overdraft:
            stmt = stmt.where(Account.balance_cents - Account.held_cents - amount_cents >= 0)
        if session.execute(stmt).scalar_one_or_none() is None:
            raise InsufficientFunds("not enough available balance", account_id=account_id)
    return HoldInfo(hold_id, account_id, amount_cents, HoldStatus.PENDING, True)


def _lock_hold(session: Session, hold_id: int) -> Hold:
    hold = session.execute(
        select(Hold).where(Hold.id == hold_id).with_for_update()
    ).scalar_one_or_none()
    if hold is None:
        raise NotFound(f"no such hold: {hold_id}")
    return hold


def post_hold(
    session: Session,
    *,
    hold_id: int,
    legs: Sequence[Leg],
    idempotency_key: str,
    kind: EntryKind,
    now: datetime,
    memo: str = "",
) -> PostedEntry:
    """Post a pending hold: the held account's leg may take up to the held amount.

    The whole hold is released in the same update; whatever the legs do not
    take returns to the available balance (a partial post). Posting the same
    hold again with the same key returns the first entry.
    """
    with session.begin_nested():
        hold = _lock_hold(session, hold_id)
        if hold.status == HoldStatus.POSTED and hold.entry_id is not None:
            existing = session.execute(
                select(JournalEntry.idempotency_key).where(JournalEntry.id == hold.entry_id)
            ).scalar_one()
            if existing == idempotency_key:
                return _existing_entry(
                    session, idempotency_key, entry_fingerprint(kind, legs, None)
                )
        if hold.status != HoldStatus.PENDING:
            raise HoldNotPending(f"hold {hold_id} is {hold.status}")
        held_leg = [leg for leg in legs if leg.account_id == hold.account_id]
        meta = _account_meta(session, [hold.account_id])[hold.account_id]
        taken = -normal_delta(meta.normal_side, held_leg[0].amount_cents) if held_leg else 0
        if taken <= 0 or taken > hold.amount_cents:
            raise InvalidInput(
                "the held account's posting must take between 1 cent and the held amount",
                field="legs",
            )
        posted = post_entry(
            session,
            kind=kind,
            legs=legs,
            idempotency_key=idempotency_key,
            now=now,
            memo=memo,
            release_holds={hold.account_id: hold.amount_cents},
        )
        if not posted.created:
            raise IdempotencyConflict("entry key already used by another entry")
        hold.status = HoldStatus.POSTED
        hold.posted_cents = taken
        hold.entry_id = posted.entry_id
        hold.settled_at = now
        session.flush()
    return posted


def release_hold(session: Session, *, hold_id: int, now: datetime) -> HoldInfo:
    """Give a pending hold back to the available balance. Releasing twice is a no-op."""
    with session.begin_nested():
        hold = _lock_hold(session, hold_id)
        if hold.status == HoldStatus.RELEASED:
            return HoldInfo(hold.id, hold.account_id, hold.amount_cents, HoldStatus.RELEASED, False)
        if hold.status != HoldStatus.PENDING:
            raise HoldNotPending(f"hold {hold_id} is {hold.status}")
        session.execute(
            update(Account)
            .where(Account.id == hold.account_id)
            .values(held_cents=Account.held_cents - hold.amount_cents)
        )
        hold.status = HoldStatus.RELEASED
        hold.settled_at = now
        session.flush()
    return HoldInfo(hold.id, hold.account_id, hold.amount_cents, HoldStatus.RELEASED, True)


def reverse_entry(
    session: Session,
    *,
    entry_id: int,
    idempotency_key: str,
    now: datetime,
    value_date: date | None = None,
    memo: str = "",
) -> PostedEntry:
    """Post the mirror image of an entry, pointing at it. An entry is reversed at most once.

    The reversal is dated ``now`` (value date: that day in Nairobi unless given), not
    back-dated to the original: the books of a closed day do not change."""
    original = session.get(JournalEntry, entry_id)
    if original is None:
        raise NotFound(f"no such entry: {entry_id}")
    if original.reverses_entry_id is not None:
        raise InvalidInput("a reversal is not itself reversed; post a new entry", field="entry_id")
    legs = [
        Leg(p.account_id, -p.amount_cents)
        for p in session.execute(select(Posting).where(Posting.entry_id == entry_id)).scalars()
    ]
    already = session.execute(
        select(JournalEntry.idempotency_key).where(JournalEntry.reverses_entry_id == entry_id)
    ).scalar_one_or_none()
    if already is not None and already != idempotency_key:
        raise AlreadyReversed(f"entry {entry_id} is already reversed")
    try:
        return post_entry(
            session,
            kind=EntryKind.REVERSAL,
            legs=legs,
            idempotency_key=idempotency_key,
            now=now,
            value_date=value_date,
            memo=memo or f"Reversal of {original.reference}",
            reverses_entry_id=entry_id,
        )
    except IntegrityError as exc:  # a concurrent reversal won the unique constraint
        raise AlreadyReversed(f"entry {entry_id} is already reversed") from exc


# ------------------------------------------------------------------- reading


def get_balance(session: Session, account_id: int) -> Balance:
    """An account's balance; for a sharded account (the M-Pesa floats, suspense, fee
    income) its own plus its shards': the one way the float's balance is read."""
    if account_id in shard_ids(session):
        total, held = session.execute(
            select(
                func.coalesce(func.sum(Account.balance_cents), 0),
                func.coalesce(func.sum(Account.held_cents), 0),
            ).where((Account.id == account_id) | (Account.parent_id == account_id))
        ).one()
        return Balance(account_id, int(total), int(held))
    row = session.execute(
        select(Account.balance_cents, Account.held_cents).where(Account.id == account_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no such account: {account_id}")
    return Balance(account_id, row.balance_cents, row.held_cents)


def statement(
    session: Session, account_id: int, *, limit: int = 20, before_posting_id: int | None = None
) -> list[StatementLine]:
    """Newest first, each line with the running balance right after it."""
    side = session.execute(
        select(Account.normal_side).where(Account.id == account_id)
    ).scalar_one_or_none()
    if side is None:
        raise NotFound(f"no such account: {account_id}")
    query: Select[tuple[Posting, JournalEntry]] = (
        select(Posting, JournalEntry)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Posting.account_id == account_id)
        .order_by(Posting.id.desc())
        .limit(max(1, min(limit, 500)))
    )
    if before_posting_id is not None:
        query = query.where(Posting.id < before_posting_id)
    return [
        StatementLine(
            posting_id=p.id,
            entry_id=e.id,
            reference=e.reference,
            kind=e.kind,
            memo=e.memo,
            created_at=e.created_at,
            value_date=e.value_date,
            amount_cents=normal_delta(side, p.amount_cents),
            balance_after_cents=p.balance_after_cents,
        )
        for p, e in session.execute(query).tuples()
    ]


def trial_balance(session: Session) -> TrialBalance:
    rows = session.execute(
        select(Account.type, Account.normal_side, func.sum(Account.balance_cents)).group_by(
            Account.type, Account.normal_side
        )
    ).all()
    debit = credit = 0
    by_type: dict[str, int] = {}
    for type_, side, total in rows:
        total = int(total or 0)
        by_type[type_] = by_type.get(type_, 0) + (total if side == NormalSide.DEBIT else -total)
        if side == NormalSide.DEBIT:
            debit += total
        else:
            credit += total
    # A contra account (normal credit among assets) still counts on the credit side.
    return TrialBalance(debit, credit, by_type)


def account_id_by_code(session: Session, code: str) -> int:
    """The id of the account with ``code``. The SACCO's own accounts (``SystemAccount``:
    seeded by the migrations, never renumbered) are remembered per engine, like the hot
    ones: every M-Pesa credit names the float, and a read per credit was a round trip."""
    system = code in _SYSTEM_CODES
    if system:
        known = _system_ids.get(session.get_bind().engine)
        if known is not None and code in known:
            return known[code]
    account_id = session.execute(select(Account.id).where(Account.code == code)).scalar()
    if account_id is None:
        raise NotFound(f"no account with code {code}")
    if system:
        _system_ids.setdefault(session.get_bind().engine, {})[code] = account_id
    return account_id


_SYSTEM_CODES = frozenset(code.value for code in SystemAccount)
_system_ids: weakref.WeakKeyDictionary[Engine, dict[str, int]] = weakref.WeakKeyDictionary()


def create_account(
    session: Session,
    *,
    code: str,
    name: str,
    type_: str,
    purpose: str,
    no_overdraft: bool,
    now: datetime,
    member_id: int | None = None,
    is_hot: bool = False,
) -> Account:
    try:
        account_type = AccountType(type_)
    except ValueError:
        raise InvalidInput(f"unknown account type {type_}", field="type") from None
    account = Account(
        code=code,
        name=name,
        type=account_type,
        normal_side=account_type.normal_side,
        purpose=purpose,
        no_overdraft=no_overdraft,
        is_hot=is_hot,
        member_id=member_id,
        balance_cents=0,
        held_cents=0,
        created_at=now,
    )
    session.add(account)
    session.flush()
    return account
