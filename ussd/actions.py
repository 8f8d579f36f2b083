"""What USSD screens load and do: each a small function over one ``core/`` call.

A screen names a loader (``load="balances"``) or an action (``Run(action=...)``);
the engine asks the shell to perform it, and ``perform`` runs the function in
one unit of work and turns a domain error into a ``Result`` code the screen
maps (``pin_invalid``, ``pin_locked``, ``duplicate_member``, ...).

Adding one::

    @action("deposit")
    def _deposit(session, deps, call):
        posted = core_verb(session, ..., idempotency_key=call.key)  # call.key: per session+screen
        return {"reference": posted.reference}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core import members, statements
from core.deps import CoreDeps
from core.errors import MemberNotAllowed, PinInvalid, PinLocked, SaccoError
from core.money import format_cents
from core.runtime import Runtime
from ussd.engine import Effect, Result
from ussd.texts import gsm7_safe, render

NAIROBI = ZoneInfo("Africa/Nairobi")
STATEMENT_LENGTH = 5
NAME_CHARS = 40  # a member's name on a screen (the tree-walk test uses this limit)
_KINDS = {"deposit", "withdrawal", "transfer", "loan", "repayment", "fee", "interest", "reversal"}


@dataclass(frozen=True)
class Call:
    """Everything a loader or action gets: who, in which language, what was typed."""

    member_id: int | None
    msisdn: str
    lang: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    key: str = ""  # idempotency key of this action in this session


Handler = Callable[[Session, CoreDeps, Call], Mapping[str, Any]]
LOADERS: dict[str, Handler] = {}
ACTIONS: dict[str, Handler] = {}


def loader(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        LOADERS[name] = fn
        return fn

    return register


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ACTIONS[name] = fn
        return fn

    return register


def perform(runtime: Runtime, effect: Effect, *, member_id: int | None, msisdn: str) -> Result:
    """Run one effect in its own unit of work; domain errors become result codes."""
    table = LOADERS if effect.kind == "load" else ACTIONS
    handler = table.get(effect.name)
    if handler is None:
        return Result(False, error="unknown_effect")
    call = Call(member_id, msisdn, effect.lang, effect.inputs, effect.secrets, effect.key)
    deps = runtime.deps
    with runtime.session() as session:
        try:
            return Result(True, dict(handler(session, deps, call)))
        except PinLocked as exc:
            if exc.until is None:
                return Result(False, error="pin_blocked")
            seconds = (exc.until - deps.now()).total_seconds()
            return Result(False, {"minutes": max(1, math.ceil(seconds / 60))}, "pin_locked")
        except PinInvalid as exc:
            return Result(False, {"attempts_left": exc.attempts_left}, "pin_invalid")
        except MemberNotAllowed as exc:
            no_pin = exc.context.get("reason") == "no_pin"
            return Result(False, error="no_pin" if no_pin else exc.code)
        except SaccoError as exc:
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
    return {
        "savings": format_cents(b.savings_cents),
        "available": format_cents(b.savings_available_cents),
        "deposits": format_cents(b.deposits_cents),
        "shares": format_cents(b.shares_cents),
        "loans": format_cents(statements.loans_outstanding_cents(session, member_id)),
    }


@loader("statement")
def _statement(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    items = []
    for m in statements.recent_movements(session, _member(call), limit=STATEMENT_LENGTH):
        kind = m.kind.split(".", 1)[0]
        purpose = m.account_purpose if m.account_purpose in members.MEMBER_ACCOUNTS else "other"
        if m.account_purpose == statements.LOAN_PURPOSE:
            purpose = "loan"
        items.append(
            {
                "date": m.created_at.astimezone(NAIROBI).strftime("%d/%m"),
                "account": render(f"acct_{purpose}", call.lang, {}),
                "what": render(f"kind_{kind if kind in _KINDS else 'other'}", call.lang, {}),
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
    # Reaching this action means the member chose "I agree" on the consent screen.
    member = members.register_member(
        session,
        deps,
        full_name=call.inputs.get("full_name", ""),
        msisdn=call.msisdn,
        national_id=call.inputs.get("national_id", ""),
        language=call.lang,
        consent=True,
        pin=call.secrets.get("pin", ""),
    )
    return {"member_number": member.member_number or ""}


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


@action("set_language")
def _set_language(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    members.set_language(session, _member(call), call.lang)
    return {}
