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

import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import (
    DomainError,
    InsufficientFunds,
    InvalidInput,
    MemberNotAllowed,
    NotFound,
    PinInvalid,
    PinLocked,
    SaccoError,
)
from core.kernel.money import format_cents
from core.kernel.uow import keep
from core.ledger import statements
from core.loans import book as core_book
from core.loans import guarantees
from core.loans import repayments as core_repayments
from core.loans import views as loan_views
from core.loans.book import check_product_open
from core.loans.disbursement import LoanPayout
from core.loans.errors import GuaranteeRefused, LoanRefused, LoanStateError, TopUpRefused
from core.loans.terms import ProductTerms, current_terms
from core.loans.vocabulary import (
    ApplicationStatus,
    Channel,
    DisburseTo,
    LoanStatus,
    RepaymentSource,
)
from core.members import exit as member_exit
from core.members import registration as members
from core.messaging.notifications import first_name
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.loan_payouts import payout_amount, prepare_loan_payout
from core.payments.mpesa.rules import (
    LimitExceeded,
    MpesaPolicy,
    SimSwapBlocked,
    account_reference,
    check_deposit_amount,
)
from core.savings.accounts import DEPOSIT_TARGETS
from observability.metrics import count_pin
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
    @property
    def shortcode(self) -> str: ...  # the paybill (loan repayments: the loan reference)
    @property
    def stk(self) -> bool: ...  # STK pushes can be sent (M-Pesa Express: its passkey is set)


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
    # The by-laws' exit notice (settings EXIT_NOTICE_DAYS, EXIT_SHARES), from the app.
    exit_policy: member_exit.ExitPolicy = field(default_factory=member_exit.ExitPolicy)


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
    exit_policy: member_exit.ExitPolicy | None = None,
) -> Result:
    """Run one effect in its own unit of work, committed when it returned; domain errors
    become result codes (and roll it back, unless the refusal is kept: a wrong PIN)."""
    table = LOADERS if effect.kind == "load" else ACTIONS
    handler = table.get(effect.name)
    if handler is None:
        return Result(False, error="unknown_effect")
    call = Call(
        member_id, msisdn, effect.lang, effect.inputs, effect.secrets, effect.key, money=money,
        exit_policy=exit_policy or member_exit.ExitPolicy(),
    )  # fmt: skip
    result = _run(runtime, handler, call)
    if effect.name in PIN_CHECKS:
        count_pin(result.ok, result.error)
    return result


# Actions that check the member's PIN (observability: sacco_pin_verifications_total).
PIN_CHECKS = frozenset({"verify_pin", "change_pin"})


class PayoutRefused(DomainError):
    """A loan M-Pesa cannot pay out (``reason`` ``below_minimum`` / ``above_maximum``, the
    ``limit_cents`` it broke): the member chooses savings instead."""

    code = "payout_refused"

    def __init__(self, detail: str, *, reason: str, limit_cents: int) -> None:
        super().__init__(detail, reason=reason)
        self.reason, self.limit_cents = reason, limit_cents


def _top_up_data(exc: Any) -> Result:
    shown: dict[str, Any] = {}
    for name, value in exc.context.items():
        if name.endswith("_cents") and isinstance(value, int):
            shown[name.removesuffix("_cents")] = format_cents(value)
        elif name != "reason":
            shown[name] = str(value)
    return Result(False, shown, f"top_up_{exc.reason}")


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
    # Loans: the appraisal's main reason (with {limit}), a guarantee's or a state's reason
    (LoanRefused, lambda exc, deps: _limit_data(exc, f"loan_{exc.reason}")),
    (GuaranteeRefused, lambda exc, deps: Result(False, error=f"guarantee_{exc.reason}")),
    (LoanStateError, lambda exc, deps: Result(False, error=f"loan_state_{exc.reason}")),
    # M-Pesa cannot pay this loan out (its limits): payout_<reason>, with {limit}
    (PayoutRefused, lambda exc, deps: _limit_data(exc, f"payout_{exc.reason}")),
    # A top-up's refusal: top_up_<reason>, with what core said ({count}, {payoff}, ...)
    (TopUpRefused, lambda exc, deps: _top_up_data(exc)),
)


def _limit_data(exc: Any, code: str) -> Result:
    return Result(False, {"limit": format_cents(exc.limit_cents)}, code)


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


@loader("leave_quote")
def _leave_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    row = member_exit.exit_of(session, _member(call))
    if row is not None:  # notice already given: the same screen, its own date
        return {"days": str(row.notice_days)}
    return {"days": str(call.exit_policy.notice_days)}


@action("leave_sacco")
def _leave_sacco(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    row, _ = member_exit.request_exit(
        session, deps, member_id=_member(call), reason="asked on USSD",
        policy=call.exit_policy, channel=member_exit.ExitChannel.USSD,
    )  # fmt: skip
    return {"due_on": row.due_on.strftime("%d/%m/%Y")}


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


# ------------------------------------------------------------------ loans (issue 12)
#
# Every loans screen is behind the session PIN (the Loans menu and each screen that
# loads: a resumed flow asks it again). The verbs are core's: ``core.loans.book``
# (apply), ``core.loans.guarantees`` (ask, accept, decline); what the screens show comes
# from ``core.loans.views`` (read-only). Refusals become codes (``RESULTS`` above):
# ``loan_<reason>`` (with ``{limit}``), ``guarantee_<reason>``, ``loan_state_<reason>``,
# ``product_unavailable``, ``term_range``, that the flows' tables in ``ussd/menus.py`` map.

PRODUCT_CHARS = 20  # a loan product's name on a screen
PERSON_CHARS = 18  # a borrower's or guarantor's name on a screen


class TermOutOfRange(DomainError):
    """The number of instalments typed is outside the product's range."""

    code = "term_range"


def _product_name(terms: ProductTerms) -> str:
    return gsm7_safe(terms.name, PRODUCT_CHARS)


def _loan_terms(session: Session, call: Call) -> ProductTerms:
    """The product chosen on ``ln_product``, still active and open on USSD."""
    terms = current_terms(session, call.inputs.get("product", ""))
    check_product_open(terms, Channel.USSD, terms.min_term)
    return terms


def _term(call: Call) -> int:
    return int(call.inputs.get("term", "0") or 0)


def _unit(terms: ProductTerms, lang: str) -> str:
    return render(f"ln_unit_{terms.frequency}", lang, {})


def _date(day: date | None) -> str:
    return day.strftime("%d/%m/%Y") if day else "-"


def _loan_key(key: str) -> str:
    """``call.key`` as the book's idempotency key (8-80 of ``[A-Za-z0-9._:-]``): a long or
    odd gateway session id is hashed, the same way every time."""
    if core_book.KEY_RE.fullmatch(key):
        return key
    return "ussd:" + hashlib.sha256(key.encode()).hexdigest()[:40]


@loader("loan_limits")  # My limit: each product open on USSD, its limit or main reason
def _loan_limits(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    member_id = _member(call)
    products = loan_views.open_products(session, Channel.USSD)
    items = []
    for found in loan_views.member_limits(session, deps, member_id, products):
        shown = (
            format_cents(found.limit_cents)
            if found.reason is None
            else render(f"ln_why_{found.reason}", call.lang, {})
        )
        items.append({"product": gsm7_safe(found.name, PRODUCT_CHARS), "limit": shown})
    return {"items": items}


@dataclass(frozen=True)
class ProductChoice(ChoiceItem):
    """A loan product open on USSD: ``id`` its code."""

    name: Annotated[str, MaxChars(PRODUCT_CHARS)]


@loader("loan_products", items=ProductChoice)  # Apply: which product (one open at a time)
def _loan_products(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    member_id = _member(call)
    if core_book.open_application(session, member_id) is not None:
        raise LoanStateError("an application is still open", reason="application_open")
    products = loan_views.open_products(session, Channel.USSD)
    return {"items": [ProductChoice(terms.code, terms.name) for terms in products]}


@loader("loan_product")  # the amount prompt: the product's range and the limit
def _loan_product(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    terms = _loan_terms(session, call)
    found = loan_views.product_limit(session, deps, _member(call), terms)
    if found.reason is not None:  # nothing to ask: the member cannot borrow under it now
        raise LoanRefused(reasons=[found.reason], limit_cents=found.limit_cents)
    return {
        "product": _product_name(terms),
        "min_amount": format_cents(terms.min_amount_cents),
        "max_amount": format_cents(terms.max_amount_cents),
        "limit": format_cents(found.limit_cents),
        "min_term": terms.min_term,
        "max_term": terms.max_term,
        "unit": _unit(terms, call.lang),
    }


@loader("loan_term_prompt")  # the term prompt: the product's range (the limit is not shown)
def _loan_term_prompt(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    terms = _loan_terms(session, call)
    return {
        "product": _product_name(terms),
        "min_term": terms.min_term,
        "max_term": terms.max_term,
        "unit": _unit(terms, call.lang),
    }


@loader("loan_amount")  # the amount prompt's check: the appraisal of that amount
def _loan_amount(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    terms = _loan_terms(session, call)
    loan_views.check_amount(session, deps, _member(call), terms, _amount(call))
    return {}


@loader("loan_term")  # the term prompt's check: within the product's range
def _loan_term(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    terms = _loan_terms(session, call)
    try:
        check_product_open(terms, Channel.USSD, _term(call))
    except InvalidInput:
        raise TermOutOfRange("term outside the product's range") from None
    return {}


@loader("loan_quote")  # the confirmation: instalment, total repayable and fees (book.quote)
def _loan_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    # The amount was appraised on its own prompt two hops ago, and Confirm appraises it
    # again (``book.apply_for_loan``, the one that counts, with its refusal screens): the
    # quote is arithmetic on the product's terms and reads nothing of the member.
    terms = _loan_terms(session, call)
    amount, term = _amount(call), _term(call)
    try:
        check_product_open(terms, Channel.USSD, term)
    except InvalidInput:
        raise TermOutOfRange("term outside the product's range") from None
    q = core_book.quote(terms, amount, term, deps)
    to = _disburse_to(call)
    if to == DisburseTo.MPESA:
        _check_payout_limits(q.received_cents, _money(call).policy)
    return {
        "amount": format_cents(amount),
        "term": term,
        "unit": _unit(terms, call.lang),
        "instalment": format_cents(q.instalment_cents),
        "total": format_cents(q.total_repayable_cents),
        "fees": format_cents(q.deducted_fee_cents + q.scheduled_fee_cents),
        "to": _to_text(to, call),
    }


# Where the money goes (issue 12, part 4 and 7): the member chooses savings or M-Pesa
# (their registered phone) before the confirmation and the PIN. M-Pesa is offered only
# where it is configured (``call.money``); its limits are checked on the confirmation
# (what reaches savings, in whole shillings, between the withdrawal minimum and
# ``MpesaPolicy.loan_payout_max_cents``) and its SIM-swap guard when applying, so a loan
# M-Pesa cannot pay is refused with the reason before anything is written and the member
# chooses savings. ``core.payments.mpesa.loan_payouts`` holds the rules.

TO_CHARS = 20  # "M-Pesa +254712345678"


@dataclass(frozen=True)
class PayoutChoice(ChoiceItem):
    """Where a loan's money may go: ``id`` ``savings`` or ``mpesa``."""

    to: Annotated[str, MaxChars(TO_CHARS)]


def _disburse_to(call: Call) -> str:
    to = call.inputs.get("disburse_to", DisburseTo.SAVINGS)
    return DisburseTo.MPESA if to == DisburseTo.MPESA else DisburseTo.SAVINGS


def _to_text(to: str, call: Call, *, phone: bool = False) -> str:
    """``Savings`` or ``M-Pesa`` (with the member's phone on the choice itself)."""
    if to == DisburseTo.MPESA:
        return render("ln_to_mpesa" if phone else "ln_by_mpesa", call.lang, {"phone": call.msisdn})
    return render("acct_savings", call.lang, {})


@loader("loan_payout_ways", items=PayoutChoice)  # Apply: to savings, or to M-Pesa
def _loan_payout_ways(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    ways = [DisburseTo.SAVINGS] + ([DisburseTo.MPESA] if call.money is not None else [])
    return {"items": [PayoutChoice(str(to), _to_text(to, call, phone=True)) for to in ways]}


def _check_payout_limits(received_cents: int, policy: MpesaPolicy) -> int:
    """What M-Pesa would send of ``received_cents``, or ``PayoutRefused`` (its limits)."""
    sent = payout_amount(received_cents)
    if sent < policy.withdrawal_min_cents:
        raise PayoutRefused(
            "too little for M-Pesa", reason="below_minimum", limit_cents=policy.withdrawal_min_cents
        )
    if sent > policy.loan_payout_max_cents:
        raise PayoutRefused(
            "above M-Pesa's per-transaction limit",
            reason="above_maximum",
            limit_cents=policy.loan_payout_max_cents,
        )
    return sent


def _loan_payout(session: Session, deps: CoreDeps, call: Call, received_cents: int) -> LoanPayout:
    """The M-Pesa payout port for the caller, checked now (limits, member, SIM-swap guard):
    a refusal writes nothing and the member chooses savings."""
    money = _money(call)
    _check_payout_limits(received_cents, money.policy)
    payout = prepare_loan_payout(
        session, deps, member_id=_member(call), policy=money.policy, sim_swap=money.sim_swap
    )
    try:
        payout.check(session, deps, received_cents)
    except LimitExceeded as exc:  # the limits above, should they have changed
        raise PayoutRefused(str(exc), reason=exc.reason, limit_cents=exc.limit_cents) from None
    return payout


@action("loan_apply")  # apply (idempotent on call.key); auto-approved ones are paid at once
def _loan_apply(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    member_id = _member(call)
    to, payout = _disburse_to(call), None
    key = _loan_key(call.key)
    if to == DisburseTo.MPESA:  # checked before the application is written
        terms = _loan_terms(session, call)
        received = core_book.quote(terms, _amount(call), _term(call), deps).received_cents
        payout = _loan_payout(session, deps, call, received)
    application = core_book.apply_for_loan(
        session,
        deps,
        member_id,
        call.inputs.get("product", ""),
        _amount(call),
        _term(call),
        Channel.USSD,
        key,
        disburse_to=to,
        payout=payout,
    )
    received = application.amount_cents - application.deducted_fee_cents
    shown: dict[str, Any] = {
        "reference": application.reference,
        "status": application.status,
        "amount": format_cents(application.amount_cents),
        "received": format_cents(received),
        "outcome": application.status,
    }
    if application.status == ApplicationStatus.DISBURSED and to == DisburseTo.MPESA:
        shown["outcome"] = "disbursed_mpesa"
        shown["sent"] = format_cents(payout_amount(received))
        shown["phone"] = call.msisdn
    if application.status == ApplicationStatus.DISBURSED:
        first = loan_views.first_instalment(session, application.id)
        if first is not None:
            shown["due_on"], shown["instalment"] = _date(first[0]), format_cents(first[1])
    return shown


def _need(session: Session, call: Call) -> loan_views.GuarantorNeed:
    need = loan_views.guarantor_need(session, _member(call))
    if need is None:
        raise GuaranteeRefused("no application waits for guarantors", reason="not_needed")
    return need


@loader("guarantor_need")  # the guarantor prompts: the application and what it still needs
def _guarantor_need(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    need = _need(session, call)
    return {
        "reference": need.reference,
        "missing": format_cents(need.missing_cents),
        "asked": format_cents(need.asked_cents),
    }


@loader("guarantor_check")  # the guarantor prompt's check: a member with that number/phone
def _guarantor_check(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    guarantees.find_guarantor(session, call.inputs.get("guarantor", ""))
    return {}


def _first_name(full_name: str) -> str:
    return gsm7_safe(first_name(full_name), PERSON_CHARS)


@loader("guarantor_quote")  # the confirmation: who is asked, for how much, for which loan
def _guarantor_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    need = _need(session, call)
    guarantor = guarantees.find_guarantor(session, call.inputs.get("guarantor", ""))
    return {
        "guarantor": _first_name(guarantor.full_name),
        "pledge": format_cents(int(call.inputs.get("pledge", "0") or 0)),
        "reference": need.reference,
    }


@action("ask_guarantor")  # the guarantee request use case: SMS to the guarantor with a code
def _ask_guarantor(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    need = _need(session, call)
    pledge = int(call.inputs.get("pledge", "0") or 0)
    guarantee = guarantees.request_guarantee(
        session,
        deps,
        application_id=need.application_id,
        borrower_id=_member(call),
        guarantor=call.inputs.get("guarantor", ""),
        amount_cents=pledge,
    )
    after = _need(session, call)
    return {
        "guarantor": _first_name(members.get_member(session, guarantee.guarantor_id).full_name),
        "pledge": format_cents(pledge),
        "reference": after.reference,
        "missing": format_cents(after.missing_cents),
        "asked": format_cents(after.asked_cents),
        "more": "1" if after.missing_cents > after.asked_cents else "0",
    }


@dataclass(frozen=True)
class RequestChoice(ChoiceItem):
    """A guarantee request waiting for the member: ``id`` the guarantee's id."""

    borrower: Annotated[str, MaxChars(14)]
    pledge: Annotated[str, MaxChars(16)]  # KES 9,999,999.99


@loader("guarantee_requests", items=RequestChoice)  # requests waiting for this member
def _guarantee_requests(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    items = [
        RequestChoice(str(ask.guarantee_id), ask.borrower_name, format_cents(ask.pledge_cents))
        for ask in loan_views.waiting_requests(session, _member(call))
    ]
    return {"items": items}


def _request(session: Session, call: Call) -> loan_views.GuaranteeAsk:
    wanted = call.inputs.get("guarantee", "")
    for ask in loan_views.waiting_requests(session, _member(call)):
        if str(ask.guarantee_id) == wanted:
            return ask
    raise LoanStateError("the request is no longer waiting", reason="decided")


@loader("guarantee_request")  # one request: borrower, loan, pledge, the member's exposure
def _guarantee_request(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    ask = _request(session, call)
    return {
        "borrower": gsm7_safe(ask.borrower_name, PERSON_CHARS),
        "pledge": format_cents(ask.pledge_cents),
        "loan": format_cents(ask.loan_cents),
        "pledged": format_cents(ask.pledged_cents),
        "free": format_cents(ask.free_deposits_cents),
    }


@action("accept_guarantee")  # consent, after the PIN: the pledge is held on the deposits
def _accept_guarantee(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    ask = _request(session, call)
    guarantees.accept_guarantee(
        session, deps, guarantee_id=ask.guarantee_id, guarantor_id=_member(call)
    )
    return {
        "borrower": gsm7_safe(ask.borrower_name, PERSON_CHARS),
        "pledge": format_cents(ask.pledge_cents),
    }


@action("decline_guarantee")
def _decline_guarantee(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    ask = _request(session, call)
    guarantees.decline_guarantee(
        session, deps, guarantee_id=ask.guarantee_id, guarantor_id=_member(call)
    )
    return {"borrower": gsm7_safe(ask.borrower_name, PERSON_CHARS)}


LOAN_REF_CHARS = 8  # L + 7 (core.loans.disbursement.new_application_reference)
STATE_CHARS = 18


@dataclass(frozen=True)
class LoanChoice(ChoiceItem):
    """One of the member's loans (``id`` ``l<loan id>``) or applications (``a<id>``)."""

    reference: Annotated[str, MaxChars(LOAN_REF_CHARS)]
    state: Annotated[str, MaxChars(STATE_CHARS)]


def _state(status: str, lang: str) -> str:
    return render(f"ln_state_{status}", lang, {})


@loader("my_loans", items=LoanChoice)  # My loans: newest first
def _my_loans(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    lines = loan_views.member_loans(session, _member(call), business_date(deps.now()))
    items = [
        LoanChoice(f"{line.kind[0]}{line.id}", line.reference, _state(line.status, call.lang))
        for line in lines
    ]
    return {"items": items}


@loader("my_loan")  # one loan (balance, next instalment, arrears) or application
def _my_loan(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    wanted = call.inputs.get("loan", "")
    for line in loan_views.member_loans(session, _member(call), business_date(deps.now())):
        if f"{line.kind[0]}{line.id}" != wanted:
            continue
        shown: dict[str, Any] = {
            "reference": line.reference,
            "product": gsm7_safe(line.product, PRODUCT_CHARS),
            "state": _state(line.status, call.lang),
            "amount": format_cents(line.amount_cents),
            "balance": format_cents(line.balance_cents),
            "instalment": format_cents(line.next_due_cents),
            "due_on": _date(line.next_due_on),
            "arrears": format_cents(line.arrears_cents),
        }
        if line.missing_cents:
            shown["missing"] = format_cents(line.missing_cents)
        return shown
    raise NotFound("no such loan")


# ------------------------------------------------------------------ repay (issue 12)
#
# Repay: one of the member's active loans, then from savings (``core.loans.repayments.
# repay_loan``, source ``savings``, after the confirmation and the PIN) or by M-Pesa (the
# paybill and the loan's reference: that path repays the loan by itself). The balance
# shown is the payoff (``position().payoff_cents``): what the SMS calls "Loan balance".


@dataclass(frozen=True)
class RepayChoice(ChoiceItem):
    """An active loan of the member: ``id`` the loan's id; its payoff balance shown."""

    reference: Annotated[str, MaxChars(LOAN_REF_CHARS)]
    balance: Annotated[str, MaxChars(16)]  # KES 9,999,999.99


def _active_loans(session: Session, deps: CoreDeps, call: Call) -> list[loan_views.LoanLine]:
    lines = loan_views.member_loans(session, _member(call), business_date(deps.now()))
    return [ln for ln in lines if ln.kind == "loan" and ln.status == LoanStatus.ACTIVE]


@loader("repay_loans", items=RepayChoice)  # Repay: which loan (active ones, newest first)
def _repay_loans(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    items = [
        RepayChoice(
            str(line.id),
            line.reference,
            format_cents(core_repayments.position(session, deps, line.id).payoff_cents),
        )
        for line in _active_loans(session, deps, call)
    ]
    return {"items": items}


def _repay_position(session: Session, deps: CoreDeps, call: Call) -> core_repayments.Position:
    """The loan chosen on ``rp_loan``: the member's, and still being repaid."""
    wanted = call.inputs.get("loan", "")
    for line in _active_loans(session, deps, call):
        if str(line.id) == wanted:
            return core_repayments.position(session, deps, line.id)
    raise LoanStateError("the loan is no longer being repaid", reason="closed")


@loader("repay_loan")  # the amount prompt: the loan's balance and the savings available
def _repay_loan(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    pos = _repay_position(session, deps, call)
    available = members.member_balances(session, _member(call)).savings_available_cents
    return {
        "reference": pos.reference,
        "balance": format_cents(pos.payoff_cents),
        "available": format_cents(available),
    }


def _repay_quote_data(session: Session, deps: CoreDeps, call: Call) -> dict[str, Any]:
    """The amount against the loan's payoff and the savings available: the refusals
    ``repay_loan`` would give, before anything is shown or written."""
    pos = _repay_position(session, deps, call)
    amount = _amount(call)
    if amount > pos.payoff_cents:
        raise LoanStateError("more than the loan's balance", reason="more_than_owed")
    available = members.member_balances(session, _member(call)).savings_available_cents
    if amount > available:
        raise InsufficientFunds("not enough savings")
    return {
        "reference": pos.reference,
        "amount": format_cents(amount),
        "balance": format_cents(pos.payoff_cents - amount),
    }


@loader("repay_check")  # the amount prompt's check
def _repay_check(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    _repay_quote_data(session, deps, call)
    return {}


@loader("repay_quote")  # the confirmation: amount, loan, the balance after
def _repay_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    return _repay_quote_data(session, deps, call)


@action("repay_savings")  # repay_loan from savings (idempotent on call.key); core sends the SMS
def _repay_savings(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    pos = _repay_position(session, deps, call)
    key = _loan_key(call.key)
    repaid = core_repayments.repay_loan(
        session,
        deps,
        core_repayments.Repayment(
            amount_cents=_amount(call),
            source=RepaymentSource.SAVINGS,
            idempotency_key=key,
            business_key=f"loan_repayment:{key}",
            loan_id=pos.loan_id,
            member_id=_member(call),
        ),
    )
    return {
        "reference": repaid.loan_reference,
        "amount": format_cents(repaid.amount_cents),
        "balance": format_cents(repaid.balance_after_cents),
        "closed": "1" if repaid.closed else "0",
    }


SHORTCODE_CHARS = 10  # a paybill number on a screen (Safaricom's have 5-7 digits)


@loader("repay_paybill")  # By M-Pesa: the paybill and the loan's reference as the account
def _repay_paybill(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    money = _money(call)
    pos = _repay_position(session, deps, call)
    return {"shortcode": gsm7_safe(money.shortcode, SHORTCODE_CHARS), "reference": pos.reference}


# By M-Pesa: an STK push whose target is the loan's reference (``core.payments.mpesa.
# flows.start_deposit``, checked by ``loan_push``: the member's own active loan, whole
# shillings within the deposit limits, at most the payoff rounded up to a shilling); its
# callback repays the loan. Without M-Pesa Express (``MoneyPorts.stk``) the paybill.


LOAN_ID_DIGITS = 18  # a loan's id as the Choose stored it


@loader("repay_mpesa_way")  # By M-Pesa: the push, or the paybill without M-Pesa Express
def _repay_mpesa_way(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    money = _money(call)
    _repay_position(session, deps, call)
    return {"way": "stk" if money.stk else "paybill"}


def _loan_push(session: Session, deps: CoreDeps, call: Call, *, amount: bool) -> mpesa.LoanPush:
    pos = _repay_position(session, deps, call)
    return mpesa.loan_push(
        session, deps, member_id=_member(call), reference=pos.reference,
        amount_cents=_amount(call) if amount else None, policy=_money(call).policy,
    )  # fmt: skip


@loader("repay_mpesa_loan")  # the amount prompt: the loan and its balance
def _repay_mpesa_loan(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    push = _loan_push(session, deps, call, amount=False)
    return {"reference": push.reference, "balance": format_cents(push.payoff_cents)}


@loader("repay_mpesa_check")  # the amount prompt's check: M-Pesa's limits and the balance
def _repay_mpesa_check(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    _loan_push(session, deps, call, amount=True)
    return {}


@loader("repay_mpesa_quote")  # the confirmation: amount, loan, paying phone, balance after
def _repay_mpesa_quote(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    push = _loan_push(session, deps, call, amount=True)
    amount = _amount(call)
    return {
        "amount": format_cents(amount),
        "reference": push.reference,
        "phone": members.get_member(session, _member(call)).msisdn,
        "balance": format_cents(max(0, push.payoff_cents - amount)),
    }


@action("repay_stk")  # record the STK push to the loan (idempotent on call.key); core defers it
def _repay_stk(session: Session, deps: CoreDeps, call: Call) -> Mapping[str, Any]:
    # The loan as chosen, whatever its state: the same key again (a repeated hop) returns
    # the first push even once it has closed the loan; a new push is checked by core
    # (the member's own active loan).
    wanted = call.inputs.get("loan", "")
    if not (wanted.isascii() and wanted.isdigit() and len(wanted) <= LOAN_ID_DIGITS):
        raise NotFound("no such loan")
    started = mpesa.start_deposit(
        session,
        deps,
        member_id=_member(call),
        target=core_repayments.position(session, deps, int(wanted)).reference,
        amount_cents=_amount(call),
        policy=_money(call).policy,
        idempotency_key=call.key,
    )
    return {
        "amount": format_cents(started.amount_cents),
        "reference": started.target,
        "phone": started.msisdn,
    }
