"""What USSD screens load and do: each a small function over one ``core/`` call.

A screen names a loader (``load="balances"``) or an action (``Run(action=...)``);
the engine asks the shell to perform it, and ``perform`` runs the function in
one unit of work (run again whole on a deadlock or serialization failure) and turns
a domain error into a ``Result`` code the screen maps (``pin_invalid``,
``pin_locked``, ``duplicate_member``, ...).

Adding one::

    @action("deposit")
    def _deposit(session, deps, call):
        posted = core_verb(session, ..., idempotency_key=call.key)  # call.key: per session+screen
        return {"reference": posted.reference}

A loader for a ``Choose`` screen returns ``{"items": [...]}`` of one ``ChoiceItem``
subclass and names it (``@loader("deposit_accounts", items=AccountChoice)``): the fit
test builds its worst screen from that type.

A handler never commits: ``perform`` commits its unit of work once it returned. A job
for a worker (an STK push, a B2C payout) is deferred by the core verb itself
(``core.kernel.uow.defer``) and handed to the queue only after that commit (never when
it failed), so a fast worker always finds the rows. The M-Pesa policy and SIM-swap
checker reach the money actions as ``call.money`` (``MoneyPorts``), handed over by the
composition root: ``ussd/`` never imports ``integrations/``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import MemberNotAllowed, PinInvalid, PinLocked, SaccoError
from core.kernel.money import format_cents
from core.kernel.uow import keep
from core.ledger import statements
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import (
    LimitExceeded,
    MpesaPolicy,
    SimSwapBlocked,
    account_reference,
    check_deposit_amount,
)
from core.savings.accounts import DEPOSIT_TARGETS
from runtime import Runtime
from ussd.engine import Effect, Result
from ussd.screens import ChoiceItem, MaxChars
from ussd.texts import gsm7_safe, render

NAIROBI = ZoneInfo("Africa/Nairobi")
STATEMENT_LENGTH = 5
NAME_CHARS = 40  # a member's name on a screen (the tree-walk test uses this limit)
log = logging.getLogger("sacco.ussd")


class MoneyPorts(Protocol):
    """What the money menus need from the M-Pesa wiring (its context satisfies this)."""

    @property
    def policy(self) -> MpesaPolicy: ...
    @property
    def sim_swap(self) -> mpesa.SimSwapChecker: ...


@dataclass(frozen=True)
class Call:
    """Everything a loader or action gets: who, in which language, what was typed."""

    member_id: int | None
    msisdn: str
    lang: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    key: str = ""  # idempotency key of this action in this session
    money: MoneyPorts | None = None  # None: M-Pesa is not configured


Handler = Callable[[Session, CoreDeps, Call], Mapping[str, Any]]
LOADERS: dict[str, Handler] = {}
ACTIONS: dict[str, Handler] = {}
LOADER_ITEMS: dict[str, type[ChoiceItem]] = {}  # a Choose loader -> the type of its items


def loader(name: str, *, items: type[ChoiceItem] | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        LOADERS[name] = fn
        if items is not None:
            LOADER_ITEMS[name] = items
        return fn

    return register


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ACTIONS[name] = fn
        return fn

    return register


def perform(
    runtime: Runtime,
    effect: Effect,
    *,
    member_id: int | None,
    msisdn: str,
    money: MoneyPorts | None = None,
) -> Result:
    """Run one effect in its own unit of work, committed when it returned; domain errors
    become result codes (and roll it back, unless the refusal is kept: a wrong PIN)."""
    table = LOADERS if effect.kind == "load" else ACTIONS
    handler = table.get(effect.name)
    if handler is None:
        return Result(False, error="unknown_effect")
    call = Call(
        member_id, msisdn, effect.lang, effect.inputs, effect.secrets, effect.key, money=money
    )
    return _run(runtime, handler, call)


def _limit(exc: Any, deps: CoreDeps) -> Result:
    return Result(False, {"limit": format_cents(exc.limit_cents)}, f"limit_{exc.reason}")


def _pin_locked(exc: Any, deps: CoreDeps) -> Result:
    if exc.until is None:
        return Result(False, error="pin_blocked")
    seconds = (exc.until - deps.now()).total_seconds()
    return Result(False, {"minutes": max(1, math.ceil(seconds / 60))}, "pin_locked")


def _not_allowed(exc: Any, deps: CoreDeps) -> Result:
    return Result(False, error="no_pin" if exc.context.get("reason") == "no_pin" else exc.code)


# What a domain error becomes on the phone: a result code (and its data) that the flow's
# error table (``ussd/menus.py``) sends to a screen. The first matching type wins; any
# other domain error is its own code.
RESULTS: tuple[tuple[type[SaccoError], Callable[[Any, CoreDeps], Result]], ...] = (
    (LimitExceeded, _limit),  # limit_<reason>, with {limit}
    (SimSwapBlocked, lambda exc, deps: Result(False, error=f"sim_swap_{exc.reason}")),
    (PinLocked, _pin_locked),  # pin_locked with {minutes}, or pin_blocked
    # pin_invalid, or reset_code_invalid, with {attempts_left}
    (PinInvalid, lambda exc, deps: Result(False, {"attempts_left": exc.attempts_left}, exc.code)),
    (MemberNotAllowed, _not_allowed),  # no_pin, or the member's status code
)


def _run(runtime: Runtime, handler: Handler, call: Call) -> Result:
    deps = runtime.deps

    def work(session: Session) -> dict[str, Any]:
        return dict(handler(session, deps, call))

    try:
        # A deadlock or serialization failure runs the whole unit again (each verb is
        # idempotent on ``call.key``) instead of reaching the gateway as an error.
        return Result(True, runtime.run_in_transaction(work))
    except SaccoError as exc:
        for kind, result in RESULTS:
            if isinstance(exc, kind):
                return result(exc, deps)
        return Result(False, error=exc.code)


def _member(call: Call) -> int:
    if call.member_id is None:
        raise MemberNotAllowed("not a member", reason="unregistered")
    return call.member_id


def _signed_amount(cents: int) -> str:
    """``+1,500`` / ``-50.25``: the statement's title says the currency."""
    return ("+" if cents > 0 else "-" if cents < 0 else "") + format_cents(abs(cents)).removeprefix(
        "KES "
    )


# ------------------------------------------------------------------ loaders


@loader("balances")
def _balances(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    member_id = _member(call)
    b = members.member_balances(session, member_id)
    shown = {
        "savings": format_cents(b.savings_cents),
        "available": format_cents(b.savings_available_cents),
        "deposits": format_cents(b.deposits_cents),
        "shares": format_cents(b.shares_cents),
    }
    loans = statements.loans_owed_cents(session, member_id)
    if loans is not None:  # the "Loans owed" line: only for a member with a loan account
        shown["loans"] = format_cents(loans)
    return shown


@loader("statement")
def _statement(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    items = []
    for m in statements.recent_movements(session, _member(call), limit=STATEMENT_LENGTH):
        purpose = m.account_purpose if m.account_purpose in members.MEMBER_ACCOUNTS else "other"
        if m.account_purpose == statements.LOAN_PURPOSE:
            purpose = "loan"
        items.append(
            {
                "date": m.created_at.astimezone(NAIROBI).strftime("%d/%m"),
                "account": render(f"acct_{purpose}", call.lang, {}),
                "what": render(f"kind_{m.label}", call.lang, {}),
                "amount": _signed_amount(m.amount_cents),
            }
        )
    return {"items": items}


@loader("account")
def _account(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    member = members.get_member(session, _member(call))
    return {
        "member_number": member.member_number or "",
        "name": gsm7_safe(member.full_name, NAME_CHARS),
        "status": render(f"status_{member.status}", call.lang, {}),
    }


# ------------------------------------------------------------------ actions


@action("verify_pin")
def _verify_pin(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    members.verify_pin(session, deps, _member(call), call.secrets.get("pin", ""))
    return {}


@action("register")
def _register(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    # Reaching this action means the member chose "I agree" on the consent screen. The
    # answer is the same whether or not the ID was already a member's (core says why).
    members.register_from_phone(
        session,
        deps,
        full_name=call.inputs.get("full_name", ""),
        msisdn=call.msisdn,
        national_id=call.inputs.get("national_id", ""),
        language=call.lang,
        pin=call.secrets.get("pin", ""),
    )
    return {}


@action("change_pin")
def _change_pin(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    members.change_pin(
        session,
        deps,
        _member(call),
        call.secrets.get("old_pin", ""),
        call.secrets.get("new_pin", ""),
    )
    return {}


class ResetCodeInvalid(PinInvalid):
    """A wrong PIN-reset code (its own screen text: it is not the PIN that was wrong)."""

    code = "reset_code_invalid"


@action("redeem_pin_reset")
def _redeem_pin_reset(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    try:
        members.redeem_pin_reset(
            session,
            deps,
            _member(call),
            call.secrets.get("reset_code", ""),
            call.secrets.get("new_pin", ""),
        )
    except PinInvalid as exc:  # kept: the wrong try is counted (core.kernel.uow.keep)
        if exc.attempts_left <= 0:  # core has cancelled the code
            raise keep(MemberNotAllowed("reset code used up", reason="no_reset")) from None
        raise keep(ResetCodeInvalid("wrong reset code", attempts_left=exc.attempts_left)) from None
    return {}


@action("set_language")
def _set_language(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    members.set_language(session, _member(call), call.lang)
    return {}


# ------------------------------------------------------------------ money (M-Pesa)


def _money(call: Call) -> MoneyPorts:
    if call.money is None:
        raise MemberNotAllowed("M-Pesa is not configured", reason="mpesa_off")
    return call.money


def _amount(call: Call) -> int:
    return int(call.inputs.get("amount", "0") or 0)


@loader("deposit_amount")  # the amount prompt's check: the SACCO's deposit limits
def _deposit_amount(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    check_deposit_amount(_amount(call), _money(call).policy)
    return {}


@dataclass(frozen=True)
class AccountChoice(ChoiceItem):
    """An account a deposit may go to: ``id`` savings, deposits or shares."""

    account: Annotated[str, MaxChars(12)]


@loader("deposit_accounts", items=AccountChoice)  # the deposit's "Deposit to:" choice
def _deposit_accounts(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    items = [AccountChoice(t, render(f"acct_{t}", call.lang, {})) for t in DEPOSIT_TARGETS]
    return {"items": items}


@loader("deposit_quote")  # the confirmation: amount, account, (no) fee, paying phone
def _deposit_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    amount = _amount(call)
    check_deposit_amount(amount, _money(call).policy)
    target = call.inputs.get("target", "savings")
    member = members.get_member(session, _member(call))
    return {
        "amount": format_cents(amount),
        "total": format_cents(amount),
        "account": render(f"acct_{target}", call.lang, {}),
        "phone": member.msisdn,
    }


@action("deposit_stk")  # record the STK push (idempotent on call.key); core defers the push
def _deposit_stk(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    money = _money(call)
    member = members.get_member(session, _member(call))
    started = mpesa.start_deposit(
        session,
        deps,
        member_id=member.id,
        target=call.inputs.get("target", ""),
        amount_cents=_amount(call),
        policy=money.policy,
        idempotency_key=call.key,
    )
    return {
        "amount": format_cents(started.amount_cents),
        "phone": started.msisdn,
        "ref": account_reference(member.member_number or str(member.id), started.target),
    }


@loader("withdraw_quote")  # the amount prompt's check and the confirmation
def _withdraw_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    q = mpesa.quote_withdrawal(
        session,
        deps,
        member_id=_member(call),
        amount_cents=_amount(call),
        policy=_money(call).policy,
    )
    return {
        "amount": format_cents(q.amount_cents),
        "fee": format_cents(q.fee_cents),
        "total": format_cents(q.total_cents),
        "phone": q.msisdn,
    }


@action("withdraw_b2c")  # hold amount + fee (idempotent on call.key); core defers the payout
def _withdraw_b2c(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    money = _money(call)
    w = mpesa.request_withdrawal(
        session,
        deps,
        member_id=_member(call),
        amount_cents=_amount(call),
        policy=money.policy,
        sim_swap=money.sim_swap,
        idempotency_key=call.key,
    )
    return {
        "amount": format_cents(w.amount_cents),
        "fee": format_cents(w.fee_cents),
        "total": format_cents(w.total_cents),
        "phone": w.msisdn,
        "reference": w.reference,
    }
