"""Hot system accounts split into shards (issue 18, aim 2; docs/ledger/shards.md).

Every M-Pesa payment debits the collections float; with one row, every such entry
waits for the one before it to commit. A sharded account (``chart.SHARDED_ACCOUNTS``)
has N sub-accounts (``1010-01`` … ``1010-NN``, ``accounts.parent_id``) of the same type
and normal side. ``post_entry`` sends a posting addressed to the parent to one shard,
picked by a hash of the entry's idempotency key (``entries.route_to_shards``), so N
entries can hold N different rows at once. Reading is unchanged in meaning:

* ``entries.get_balance(parent)`` is the parent's balance plus its shards' (the one
  function every balance read of the float goes through);
* the trial balance sums by type and normal side, which shards share with their parent;
* ``verify-ledger`` checks each row against its postings, shards included, and that a
  shard's type and side are its parent's.

The parent keeps whatever it held before it was sharded; nothing is moved. Shards are
only ever added (``ensure_shards``), never removed: a shard with postings is history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.ledger import entries as ledger
from core.ledger.chart import SHARDED_ACCOUNTS, shard_code
from db.models import Account

MAX_SHARDS = 99  # two digits in the code


@dataclass(frozen=True, slots=True)
class ShardLine:
    code: str
    name: str
    balance_cents: int  # on the account's normal side


@dataclass(frozen=True, slots=True)
class ShardedAccount:
    """A sharded account as the chart shows it: the parent and each of its shards."""

    code: str
    name: str
    own_cents: int  # the parent row's balance (what it held before it was sharded)
    shards: tuple[ShardLine, ...]

    @property
    def balance_cents(self) -> int:
        return self.own_cents + sum(s.balance_cents for s in self.shards)


def ensure_shards(session: Session, count: int, *, now: datetime) -> list[str]:
    """Give every sharded account at least ``count`` shards; the codes created (none when
    each already has that many). Never removes one."""
    if type(count) is not int or not 1 <= count <= MAX_SHARDS:
        raise InvalidInput(f"shards: 1-{MAX_SHARDS}", field="count")
    created: list[str] = []
    for account in SHARDED_ACCOUNTS:
        parent = session.execute(select(Account).where(Account.code == account)).scalar_one()
        have = set(
            session.scalars(select(Account.code).where(Account.parent_id == parent.id)).all()
        )
        for number in range(1, count + 1):
            code = shard_code(parent.code, number)
            if code in have:
                continue
            session.add(
                Account(
                    code=code,
                    name=f"{parent.name}, shard {number:02d}",
                    type=parent.type,
                    normal_side=parent.normal_side,
                    purpose=parent.purpose,
                    no_overdraft=False,
                    is_hot=True,
                    parent_id=parent.id,
                    balance_cents=0,
                    held_cents=0,
                    created_at=now,
                )
            )
            created.append(code)
    session.flush()
    if created:
        ledger.forget_hot_set(session)
    return created


def sharded_accounts(session: Session) -> list[ShardedAccount]:
    """The chart's sharded accounts, each with its shards and their balances."""
    out: list[ShardedAccount] = []
    for account in SHARDED_ACCOUNTS:
        parent = session.execute(
            select(Account.id, Account.code, Account.name, Account.balance_cents).where(
                Account.code == account
            )
        ).one()
        shards = session.execute(
            select(Account.code, Account.name, Account.balance_cents)
            .where(Account.parent_id == parent.id)
            .order_by(Account.code)
        ).all()
        out.append(
            ShardedAccount(
                parent.code,
                parent.name,
                parent.balance_cents,
                tuple(ShardLine(s.code, s.name, s.balance_cents) for s in shards),
            )
        )
    return out
