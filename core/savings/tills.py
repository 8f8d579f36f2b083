"""Teller cash out and till days (issue 14, part 3; docs/savings/tills-and-dormancy.md).

**Cash withdrawals** (``cash_withdrawal``): Dr the member's savings / Cr bank (1000), the
account every teller's cash is kept in (tills are not separate ledger accounts: a till is
the teller's own entries, below), exactly once per ``Idempotency-Key`` scoped to the
teller, never below the available balance (holds count: the ledger's guarded update),
never from dormant savings, with a receipt SMS and an audit row. Above the till limit the
API asks for a maker-checker request (``core.savings.approval_actions``).

**Till days**: a teller opens one with the opening float; the cash in and out of the till
are the teller's own cash entries on the bank account since then, summed in one query
(deposits ``cash:<kind>:<id>:…``, loan repayments ``loan.cash:<id>:…``, withdrawals
``cashout:<kind>:<id>:…``); the teller counts at day end; a count equal to what is expected
closes the day, a difference needs an explanation and a supervisor's approval, which posts
it to cash over and short (5800) and closes the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import (
    DomainError,
    InsufficientFunds,
    InvalidInput,
    MemberNotAllowed,
    NotFound,
)
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.backoffice import check_cash_key, visible_member
from core.members.registration import member_account_ids
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from core.savings import rules as savings_rules
from core.savings.dormancy import check_not_dormant
from db.models import Account, JournalEntry, Member, Posting
from db.models_tills import TillDay


class TillRefused(DomainError):
    """A till day asked to do what its state does not allow (``reason``)."""

    code = "till_refused"


# ------------------------------------------------------------ cash withdrawals


def cash_withdrawal_key(actor: Principal, idempotency_key: str) -> str:
    """The ledger's idempotency key of a till's cash withdrawal (scoped to the caller)."""
    return f"cashout:{actor.kind}:{actor.id}:{idempotency_key}"


@dataclass(frozen=True, slots=True)
class CashOut:
    """A cash withdrawal checked: the savings account it leaves and the product's fee."""

    savings_id: int
    fee_cents: int


def check_may_withdraw(
    session: Session, member: Member, amount_cents: int, now: datetime
) -> CashOut:
    """Who may take cash out and how much: an active member, savings not dormant, the
    amount a positive number of cents within the available balance (holds count), and
    the savings product's rules (``core.savings.rules.check_withdrawal``: minimum
    balance, daily limit; its withdrawal fee is taken on top)."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise InvalidInput("amount must be more than zero", field="amount_cents")
    if amount_cents > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="amount_cents", reason="too_large")
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    check_not_dormant(session, member.id)
    savings = member_account_ids(session, member.id)[Purpose.SAVINGS]
    available = ledger.get_balance(session, savings).available_cents
    if amount_cents > available:
        raise InsufficientFunds(
            f"only {format_cents(available)} is available in savings",
            available_cents=available,
        )
    fee = savings_rules.check_withdrawal(
        savings_rules.rules_for_account(session, savings),
        amount_cents=amount_cents,
        available_cents=available,
        withdrawn_today_cents=savings_rules.withdrawn_today_cents(session, member.id, savings, now),
    )
    return CashOut(savings, fee)


def _fee_of(session: Session, ledger_key: str) -> int:
    """The fee a cash withdrawal already posted under ``ledger_key`` took (0: none)."""
    income = ledger.account_id_by_code(session, SystemAccount.FEE_INCOME)
    fee = session.scalar(  # on fee income or one of its shards (core.ledger's hot accounts)
        select(func.coalesce(func.sum(-Posting.amount_cents), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            JournalEntry.idempotency_key == ledger_key,
            (Account.id == income) | (Account.parent_id == income),
        )
    )
    return int(fee or 0)


def cash_withdrawal(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    member_id: int,
    amount_cents: int,
    idempotency_key: str,
    approval_id: int | None = None,
) -> ledger.PostedEntry:
    """Cash paid out of a member's savings at the counter, once per key (a replay returns
    the first entry and sends nothing). The approved request of a withdrawal above the
    till limit calls this with the maker as ``actor`` (the till's key) and its id."""
    member = visible_member(session, actor, member_id)
    key = check_cash_key(idempotency_key)
    ledger_key = cash_withdrawal_key(actor, key)
    # The member row first, as every withdrawal does: this member's withdrawals queue.
    session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    accounts = member_account_ids(session, member.id)
    now = deps.now()
    replay = session.scalar(
        select(JournalEntry.id).where(JournalEntry.idempotency_key == ledger_key)
    )
    # A replay is not checked again: post_entry returns the first (its fee as it was).
    if replay is None:
        fee = check_may_withdraw(session, member, amount_cents, now).fee_cents
    else:
        fee = _fee_of(session, ledger_key)
    # The product's fee leaves savings with the cash, to fee income, in the same entry.
    legs = [
        ledger.Leg(accounts[Purpose.SAVINGS], amount_cents + fee),
        ledger.Leg(ledger.account_id_by_code(session, SystemAccount.BANK), -amount_cents),
    ]
    if fee:
        legs.append(ledger.Leg(ledger.account_id_by_code(session, SystemAccount.FEE_INCOME), -fee))
    posted = ledger.post_entry(
        session, kind=EntryKind.WITHDRAWAL_CASH, legs=legs, idempotency_key=ledger_key,
        now=now, memo="Cash withdrawal from savings",
    )  # fmt: skip
    if posted.created:
        balance = ledger.get_balance(session, accounts[Purpose.SAVINGS]).balance_cents
        notify(
            session, template="withdrawal_cash", business_key=f"withdrawal_cash:{ledger_key}",
            now=now, member=member,
            data={"sacco": deps.sacco_name, "amount": format_cents(amount_cents),
                  "reference": posted.reference, "balance": format_cents(balance)},
        )  # fmt: skip
        extra = {"approval": approval_id} if approval_id is not None else {}
        audit.record(
            session, actor, "member.cash_withdrawal", target_type="member", target_id=member.id,
            after={"amount_cents": amount_cents, "entry": posted.reference, **extra}, now=now,
        )  # fmt: skip
    session.flush()
    return posted


# ------------------------------------------------------------------ till days

# The teller's cash entries on the bank account in a window: money in is a debit of bank.
_MOVEMENTS = text("""
SELECT COALESCE(SUM(CASE WHEN p.amount_cents > 0 THEN p.amount_cents ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN p.amount_cents < 0 THEN -p.amount_cents ELSE 0 END), 0)
FROM postings p JOIN journal_entries e ON e.id = p.entry_id
WHERE p.account_id = :bank AND p.id > :floor AND e.created_at >= :start AND e.created_at < :end
  AND (e.idempotency_key LIKE :deposits OR e.idempotency_key LIKE :repayments
       OR e.idempotency_key LIKE :withdrawals)
""").bindparams(bindparam("bank", type_=BigInteger))


@dataclass(frozen=True, slots=True)
class TillFigures:
    till: TillDay
    cash_in_cents: int
    cash_out_cents: int
    expected_cents: int  # opening float + in - out
    as_at: datetime


def _prefixes(staff_id: int) -> dict[str, str]:
    return {
        "deposits": f"cash:staff:{staff_id}:%",
        "repayments": f"loan.cash:{staff_id}:%",
        "withdrawals": f"cashout:staff:{staff_id}:%",
    }


def figures(session: Session, till: TillDay, until: datetime) -> TillFigures:
    """What the ledger says the till holds at ``until`` (or at its count, once counted)."""
    end = till.counted_at if till.status != "open" and till.counted_at else until
    cash_in, cash_out = session.execute(
        _MOVEMENTS,
        {"bank": ledger.account_id_by_code(session, SystemAccount.BANK),
         "floor": till.posting_floor_id, "start": till.opened_at, "end": end,
         **_prefixes(till.staff_id)},
    ).one()  # fmt: skip
    cash_in, cash_out = int(cash_in), int(cash_out)
    return TillFigures(till, cash_in, cash_out, till.opening_float_cents + cash_in - cash_out, end)


def _staff(actor: Principal) -> int:
    if actor.kind != "staff":
        raise TillRefused("only a member of staff has a till", reason="not_staff")
    return actor.id


def current_till(session: Session, actor: Principal, *, lock: bool = False) -> TillDay | None:
    query = select(TillDay).where(TillDay.staff_id == _staff(actor), TillDay.status != "closed")
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def open_till(
    session: Session, deps: CoreDeps, actor: Principal, *, opening_float_cents: int
) -> TillDay:
    """Open the teller's till day with the float counted into the drawer."""
    staff_id = _staff(actor)
    amount = opening_float_cents
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise InvalidInput("the opening float is a whole number of cents, 0 or more",
                           field="opening_float_cents")  # fmt: skip
    if amount > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="opening_float_cents", reason="too_large")
    if current_till(session, actor) is not None:
        raise TillRefused("your till day is still open: count and close it first",
                          reason="already_open")  # fmt: skip
    now = deps.now()
    floor = session.scalar(select(func.coalesce(func.max(Posting.id), 0)))
    till = TillDay(
        staff_id=staff_id, branch=actor.branch, business_date=business_date(now),
        status="open", opening_float_cents=amount, opened_at=now, posting_floor_id=floor,
        explanation="",
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(till)
            session.flush()
    except IntegrityError:  # the same teller opened one at the same moment
        raise TillRefused("your till day is still open: count and close it first",
                          reason="already_open") from None  # fmt: skip
    audit.record(
        session, actor, "till.open", target_type="till_day", target_id=till.id,
        after={"opening_float_cents": amount}, now=now,
    )  # fmt: skip
    session.flush()
    return till


def get_till(session: Session, deps: CoreDeps, actor: Principal, till_id: int) -> TillFigures:
    """A till day and its figures: the teller's own, or any to a holder of ``tills:read``
    (branch-bound readers see their branch's)."""
    till = session.get(TillDay, till_id)
    mine = actor.kind == "staff" and till is not None and till.staff_id == actor.id
    visible = till is not None and (
        mine or (actor.has("tills:read") and actor.branch in (None, till.branch))
    )
    if till is None or not visible:
        raise NotFound("no such till day")
    return figures(session, till, deps.now())


def list_tills(
    session: Session, actor: Principal, *, status: str | None, limit: int, after_id: int = 0
) -> list[TillDay]:
    """Till days, oldest first: one's own, or every teller's to a holder of ``tills:read``."""
    query = select(TillDay).where(TillDay.id > after_id).order_by(TillDay.id).limit(limit)
    if not actor.has("tills:read"):
        query = query.where(TillDay.staff_id == _staff(actor))
    elif actor.branch is not None:
        query = query.where(TillDay.branch == actor.branch)
    if status is not None:
        query = query.where(TillDay.status == status)
    return list(session.scalars(query))


def record_count(
    session: Session, deps: CoreDeps, till: TillDay, *, counted_cents: int, explanation: str
) -> TillFigures:
    """Write the count on the till (not closing it): the figures as at now."""
    if isinstance(counted_cents, bool) or not isinstance(counted_cents, int) or counted_cents < 0:
        raise InvalidInput("the count is a whole number of cents, 0 or more",
                           field="counted_cents")  # fmt: skip
    if counted_cents > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="counted_cents", reason="too_large")
    now = deps.now()
    till.status, till.counted_at = "open", None  # a recount reckons up to now again
    found = figures(session, till, now)
    difference = counted_cents - found.expected_cents
    note = " ".join((explanation or "").split())
    if difference != 0 and not 3 <= len(note) <= 200:
        raise InvalidInput(
            "the count differs from what the till should hold: explain it (3-200 characters)",
            field="explanation",
        )
    till.counted_at = now
    till.cash_in_cents, till.cash_out_cents = found.cash_in_cents, found.cash_out_cents
    till.expected_cents, till.counted_cents = found.expected_cents, counted_cents
    till.difference_cents, till.explanation = difference, note
    till.status = "counted"
    return found


def close_balanced(session: Session, deps: CoreDeps, actor: Principal, till: TillDay) -> None:
    till.status, till.closed_at = "closed", deps.now()
    audit.record(
        session, actor, "till.close", target_type="till_day", target_id=till.id,
        after={"expected_cents": till.expected_cents, "counted_cents": till.counted_cents,
               "difference_cents": till.difference_cents}, now=deps.now(),
    )  # fmt: skip
    session.flush()


def post_difference(session: Session, deps: CoreDeps, till: TillDay, approval_id: int) -> str:
    """Post the counted difference (approved) and close the day: a shortage Dr cash over
    and short / Cr bank; an overage the reverse. Returns the entry's reference."""
    difference = till.difference_cents or 0
    bank = ledger.account_id_by_code(session, SystemAccount.BANK)
    over_short = ledger.account_id_by_code(session, SystemAccount.CASH_OVER_SHORT)
    posted = ledger.post_entry(
        session,
        kind=EntryKind.TILL_DIFFERENCE,
        legs=[ledger.Leg(bank, difference), ledger.Leg(over_short, -difference)],
        idempotency_key=f"till:{till.id}:difference:{approval_id}",
        now=deps.now(),
        memo=f"Till {till.id} {'over' if difference > 0 else 'short'}: {till.explanation}"[:160],
    )
    till.entry_reference = posted.reference
    till.status, till.closed_at = "closed", deps.now()
    session.flush()
    return posted.reference
