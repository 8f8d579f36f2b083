"""The SACCO's USSD menu tree, as data. Texts live in ``ussd/catalogues``.

Adding a screen is declaring it here, its texts in both catalogues and, when it loads
data or runs a verb, one function in ``ussd/actions.py`` that calls ``core/`` (the
README shows one). A flow that moves money follows the Confirm pattern (see
docs/channels/ussd.md): amount, (account), confirmation with the quote, the PIN, one
``Run``; each failure of its check, quote or action goes through the flow's one error
table (``DEPOSIT_ERRORS`` below).

Deposit and Withdraw (M-Pesa) and Loans (issue 12: my limit, apply, my loans, ask a
guarantor, guarantee requests, repay from savings or by M-Pesa: an STK push, or the
paybill without M-Pesa Express) are below.
"""

from __future__ import annotations

from core.kernel.errors import InvalidInput
from core.kernel.identity import normalize_name, normalize_national_id
from core.kernel.money import MAX_INPUT_CENTS, format_cents, parse_amount
from core.members import access
from ussd.engine import Context, Errors, Invalid, Screen, Tree
from ussd.screens import (
    Choose,
    Confirm,
    End,
    Fork,
    Menu,
    Option,
    Page,
    PinPrompt,
    Prompt,
    Run,
)

ROOT_MEMBER = "main"
ROOT_NEW = "welcome"
ROOT_EXITED = "exited"
ROOT_PIN_RESET = "pr_code"  # a member with a staff PIN reset pending (core.members.registration)
RESET_CODE_DIGITS = 6
# Not a member's feature but the channel's: M-Pesa is configured (``ussd.service`` adds it
# to every caller's features then). An option that needs M-Pesa names it.
MPESA = "mpesa"


def parse_name(text: str, ctx: Context) -> str:
    try:
        return normalize_name(text)
    except InvalidInput:
        raise Invalid("why_name") from None


def parse_national_id(text: str, ctx: Context) -> str:
    try:
        return normalize_national_id(text)
    except InvalidInput:
        raise Invalid("why_national_id") from None


def parse_amount_input(text: str, ctx: Context) -> str:
    """For money flows: the amount as a cents string (shown via ``format_cents``)."""
    try:
        return str(parse_amount(text.strip(), max_cents=MAX_INPUT_CENTS).cents)
    except (InvalidInput, ValueError):
        raise Invalid("why_amount", max=format_cents(MAX_INPUT_CENTS)) from None


MAX_TERM_DIGITS = 3  # instalments: core.loans.products.MAX_TERM is 360
MAX_GUARANTOR_CHARS = 16  # a member number or a phone number, as typed


def parse_term(text: str, ctx: Context) -> str:
    """A number of instalments (the product's range is the check's: ``loan_term``)."""
    value = text.strip()
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= MAX_TERM_DIGITS):
        raise Invalid("why_term")
    if int(value) == 0:
        raise Invalid("why_term")
    return str(int(value))


def parse_guarantor(text: str, ctx: Context) -> str:
    """A member number or a phone number, in any way a Kenyan number is written (who it
    is, is the check's: ``guarantor_check``)."""
    value = text.strip().replace(" ", "")
    digits = value.removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and 4 <= len(value) <= MAX_GUARANTOR_CHARS):
        raise Invalid("why_guarantor")
    return value


# One error table per flow: a failed check, quote or action -> the screen it leads to
# (``ussd.engine.route``). A waiting screen is asked again under ``why_<code>`` (the
# prompt just answered counts it as a wrong entry); ``limit_*`` is every M-Pesa limit
# (``core.payments.mpesa.rules.LimitExceeded``: ``limit_<reason>``, ``why_limit_<reason>``
# with ``{limit}``). Anything unlisted ends on the error screen; a PIN locked, blocked or
# never set ends the session in every flow (``Tree.session_errors``).
LEAVE_ERRORS: Errors = (("member_not_allowed", "not_allowed"),)
CHANGE_PIN_ERRORS: Errors = (("pin_invalid", "cp_old"), ("invalid_input", "cp_new"))
PIN_RESET_ERRORS: Errors = (
    ("reset_code_invalid", ROOT_PIN_RESET),
    ("invalid_input", "pr_new"),
    ("member_not_allowed", "pr_dead"),
)
DEPOSIT_ERRORS: Errors = (
    ("limit_target", "error"),  # an account not offered: a bug, not the member's mistake
    ("limit_*", "dep_amount"),
    ("member_not_allowed", "not_allowed"),
)
WITHDRAW_ERRORS: Errors = (
    ("limit_*", "wd_amount"),
    ("sim_swap_recent_swap", "wd_sim_swap"),
    ("sim_swap_check_failed", "wd_sim_check"),
    ("sim_swap_check_failed_daily_cap", "wd_sim_cap"),
    ("member_not_allowed", "not_allowed"),  # e.g. suspended during the session
    ("account_dormant", "wd_dormant"),  # until staff reactivate the savings
)

# Loans (issue 12). An amount the member may fix is asked again under its reason; a
# reason they cannot fix by typing ends with what to do. Core's refusals:
# ``core.loans.errors`` (LoanRefused -> ``loan_<reason>``, GuaranteeRefused ->
# ``guarantee_<reason>``, LoanStateError -> ``loan_state_<reason>``, ProductUnavailable).
APPLY_ERRORS: Errors = (
    ("loan_above_limit", "ln_amount"),
    ("loan_below_minimum", "ln_amount"),
    ("loan_above_maximum", "ln_amount"),
    ("loan_not_active", "ln_not_active"),
    ("loan_guaranteed_default", "ln_guaranteed_default"),
    ("loan_in_arrears", "ln_in_arrears"),
    ("loan_too_new", "ln_too_new"),
    ("loan_deposits_too_low", "ln_deposits_too_low"),
    ("loan_no_limit", "ln_no_limit"),
    ("loan_*", "ln_refused"),  # a credit score's refusal (issue 15), any reason to come
    ("term_range", "ln_term"),
    ("loan_state_application_open", "ln_open"),
    # M-Pesa cannot pay it (its limits, a recent SIM swap): choose again, with the reason
    ("payout_*", "ln_to"),
    ("sim_swap_*", "ln_to"),
    ("product_unavailable", "ln_unavailable"),
    ("not_found", "ln_unavailable"),  # the product's code is gone
    ("member_not_allowed", "not_allowed"),
)
GUARANTOR_ERRORS: Errors = (
    ("guarantee_not_needed", "gq_none"),
    ("guarantee_self_guarantee", "gq_who"),
    ("guarantee_guarantor_not_active", "gq_who"),
    ("guarantee_guarantor_leaving", "gq_who"),
    ("guarantee_max_guarantees", "gq_who"),
    ("guarantee_already_asked", "gq_who"),
    ("guarantee_lacks_deposits", "gq_who"),
    ("guarantee_more_than_needed", "gq_amount"),
    ("not_found", "gq_who"),  # no member with that number or phone
    ("member_not_allowed", "not_allowed"),
)
CONSENT_ERRORS: Errors = (
    ("guarantee_lacks_deposits", "gr_lacks"),
    ("guarantee_max_guarantees", "gr_max"),
    ("guarantee_guarantor_not_active", "not_allowed"),
    ("guarantee_guarantor_leaving", "not_allowed"),
    ("guarantee_not_needed", "gr_gone"),
    ("loan_state_*", "gr_gone"),  # answered meanwhile (another session, an SMS)
    ("not_found", "gr_gone"),
    ("member_not_allowed", "not_allowed"),
)

# Repay (from savings): the amount is asked again when it is more than the loan's balance
# or the savings available; a loan repaid or gone meanwhile ends. ``repay_loan`` gives
# the same refusals, before any write, should they change after the check.
REPAY_ERRORS: Errors = (
    ("loan_state_more_than_owed", "rp_amount"),
    ("insufficient_funds", "rp_amount"),
    ("loan_state_*", "rp_gone"),  # closed or written off meanwhile
    ("not_found", "rp_gone"),
    ("member_not_allowed", "not_allowed"),
)

# Repay by M-Pesa (an STK push to the loan): an amount M-Pesa cannot take (cents, below
# the minimum, above the maximum or the loan's balance) is asked again; a loan repaid or
# gone meanwhile ends. ``start_deposit`` gives the same refusals, before any write.
REPAY_MPESA_ERRORS: Errors = (
    ("limit_target", "error"),  # a loan reference not offered: a bug, not the member's mistake
    ("limit_*", "rp_mp_amount"),
    ("loan_state_*", "rp_gone"),
    ("not_found", "rp_gone"),
    ("member_not_allowed", "not_allowed"),
)

LOAN_SCREENS: list[Screen] = [
    # Every loans screen is behind the session PIN: limits, amounts, names. Those that
    # load need it themselves too, for a flow resumed in a new session.
    Menu(
        "loans",
        "loans",
        (
            Option("menu_loan_limit", "ln_limits"),
            Option("menu_loan_apply", "ln_product"),
            Option("menu_my_loans", "ml_list"),
            Option("menu_loan_guarantors", "gq_who"),
            Option("menu_guarantee_requests", "gr_list"),
            Option("menu_loan_repay", "rp_loan"),  # last: the shortcuts above keep their numbers
        ),
        needs_pin=True,
    ),
    # --- my limit: per product open on USSD, the limit or the main reason in words
    Page(
        "ln_limits",
        "ln_limits",
        item="ln_limit_line",
        empty="ln_no_products",
        load="loan_limits",
        per_page=2,
        needs_pin=True,
    ),
    # --- apply: product, amount, term, quote, PIN, submitted (then guarantors)
    Choose(
        "ln_product",
        "ln_product",
        item="ln_product_item",
        field="product",
        load="loan_products",
        goto="ln_amount",
        empty="ln_no_products",
        per_page=4,
        needs_pin=True,
        errors=APPLY_ERRORS,
    ),
    Prompt(
        "ln_amount",
        "ln_amount",
        field="amount",
        parse=parse_amount_input,
        goto="ln_term",
        load="loan_product",
        check="loan_amount",
        errors=APPLY_ERRORS,
        needs_pin=True,
    ),
    Prompt(
        "ln_term",
        "ln_term",
        field="term",
        parse=parse_term,
        goto="ln_to",
        load="loan_term_prompt",
        check="loan_term",
        errors=APPLY_ERRORS,
        needs_pin=True,
    ),
    # Where the money goes: savings, or M-Pesa to the member's phone where it is configured
    Choose(
        "ln_to",
        "ln_to",
        item="ln_to_item",
        field="disburse_to",
        load="loan_payout_ways",
        goto="ln_confirm",
        per_page=2,
        needs_pin=True,
        errors=APPLY_ERRORS,
    ),
    Confirm(
        "ln_confirm",
        "ln_confirm",
        load="loan_quote",
        yes="ln_run",
        errors=APPLY_ERRORS,
        needs_pin=True,
    ),
    Run("ln_run", action="loan_apply", ok="ln_applied", errors=APPLY_ERRORS),
    # Where the application went: paid out (within the auto-approval ceiling), waiting for
    # guarantors (asked next, in this session), or waiting for staff.
    Fork(
        "ln_applied",
        field="outcome",
        ways=(
            ("disbursed", "ln_paid"),
            ("disbursed_mpesa", "ln_paid_mpesa"),
            ("awaiting_guarantors", "gq_who"),
            ("*", "ln_submitted"),
        ),
        fresh=True,
    ),
    End("ln_paid", "ln_paid"),
    End("ln_paid_mpesa", "ln_paid_mpesa"),
    End("ln_submitted", "ln_submitted"),
    End("ln_open", "ln_open"),
    End("ln_unavailable", "ln_unavailable"),
    End("ln_not_active", "ln_not_active"),
    End("ln_guaranteed_default", "ln_guaranteed_default"),
    End("ln_in_arrears", "ln_in_arrears"),
    End("ln_too_new", "ln_too_new"),
    End("ln_deposits_too_low", "ln_deposits_too_low"),
    End("ln_no_limit", "ln_no_limit"),
    End("ln_refused", "ln_refused"),
    # --- ask a guarantor for the application waiting for them (one or more)
    Prompt(
        "gq_who",
        "gq_who",
        field="guarantor",
        parse=parse_guarantor,
        goto="gq_amount",
        load="guarantor_need",
        check="guarantor_check",
        errors=GUARANTOR_ERRORS,
        needs_pin=True,
    ),
    Prompt(
        "gq_amount",
        "gq_amount",
        field="pledge",
        parse=parse_amount_input,
        goto="gq_confirm",
        load="guarantor_need",
        errors=GUARANTOR_ERRORS,
        needs_pin=True,
    ),
    Confirm(
        "gq_confirm",
        "gq_confirm",
        load="guarantor_quote",
        yes="gq_run",
        errors=GUARANTOR_ERRORS,
        needs_pin=True,
    ),
    Run("gq_run", action="ask_guarantor", ok="gq_asked", errors=GUARANTOR_ERRORS),
    Fork("gq_asked", field="more", ways=(("1", "gq_sent"), ("*", "gq_done")), fresh=True),
    Menu("gq_sent", "gq_sent", (Option("opt_ask_another", "gq_who"),)),
    End("gq_done", "gq_done"),
    End("gq_none", "gq_none"),
    # --- my loans: loans and applications, newest first, then one in full
    Choose(
        "ml_list",
        "ml_list",
        item="ml_item",
        field="loan",
        load="my_loans",
        goto="ml_show",
        empty="ml_none",
        per_page=3,
        needs_pin=True,
    ),
    Fork("ml_show", field="loan", ways=(("l*", "ml_loan"), ("*", "ml_app"))),
    Menu("ml_loan", "ml_loan", load="my_loan", needs_pin=True),
    Menu("ml_app", "ml_app", load="my_loan", needs_pin=True, extras=(("missing", "ml_missing"),)),
    # --- guarantee requests waiting for this member: see, then accept or decline
    Choose(
        "gr_list",
        "gr_list",
        item="gr_item",
        field="guarantee",
        load="guarantee_requests",
        goto="gr_detail",
        empty="gr_none",
        per_page=3,
        needs_pin=True,
    ),
    Menu(
        "gr_detail",
        "gr_detail",
        (Option("opt_accept", "gr_accept"), Option("opt_decline", "gr_decline")),
        load="guarantee_request",
        needs_pin=True,
    ),
    Run(
        "gr_accept",
        action="accept_guarantee",
        ok="gr_accepted",
        errors=CONSENT_ERRORS,
        needs_pin=True,
    ),
    Run(
        "gr_decline",
        action="decline_guarantee",
        ok="gr_declined",
        errors=CONSENT_ERRORS,
        needs_pin=True,
    ),
    End("gr_accepted", "gr_accepted"),
    End("gr_declined", "gr_declined"),
    End("gr_lacks", "gr_lacks"),
    End("gr_max", "gr_max"),
    End("gr_gone", "gr_gone"),
    # --- repay: the loan, then from savings (amount, confirm, PIN) or by M-Pesa (amount,
    # confirm, PIN, STK push; or the paybill)
    Choose(
        "rp_loan",
        "rp_loan",
        item="rp_item",
        field="loan",
        load="repay_loans",
        goto="rp_how",
        empty="rp_none",
        per_page=3,
        needs_pin=True,
        errors=REPAY_ERRORS,
    ),
    Menu(
        "rp_how",
        "rp_how",
        (Option("opt_from_savings", "rp_amount"), Option("opt_by_mpesa", "rp_mpesa", MPESA)),
    ),
    # By M-Pesa: an STK push when M-Pesa Express is configured (``MoneyPorts.stk``, the
    # rule Deposit follows), else the paybill and the loan's reference.
    Fork(
        "rp_mpesa",
        field="way",
        load="repay_mpesa_way",
        ways=(("stk", "rp_mp_amount"), ("*", "rp_paybill")),
        needs_pin=True,
        errors=REPAY_MPESA_ERRORS,
    ),
    Prompt(
        "rp_mp_amount",
        "rp_mp_amount",
        field="amount",
        parse=parse_amount_input,
        goto="rp_mp_confirm",
        load="repay_mpesa_loan",
        check="repay_mpesa_check",
        errors=REPAY_MPESA_ERRORS,
        needs_pin=True,
    ),
    Confirm(
        "rp_mp_confirm",
        "rp_mp_confirm",
        load="repay_mpesa_quote",
        yes="rp_mp_run",
        errors=REPAY_MPESA_ERRORS,
        needs_pin=True,
    ),
    Run("rp_mp_run", action="repay_stk", ok="rp_mp_done", errors=REPAY_MPESA_ERRORS),
    End("rp_mp_done", "rp_mp_done"),
    Prompt(
        "rp_amount",
        "rp_amount",
        field="amount",
        parse=parse_amount_input,
        goto="rp_confirm",
        load="repay_loan",
        check="repay_check",
        errors=REPAY_ERRORS,
        needs_pin=True,
    ),
    Confirm(
        "rp_confirm",
        "rp_confirm",
        load="repay_quote",
        yes="rp_run",
        errors=REPAY_ERRORS,
        needs_pin=True,
    ),
    Run("rp_run", action="repay_savings", ok="rp_paid", errors=REPAY_ERRORS),
    Fork("rp_paid", field="closed", ways=(("1", "rp_closed"), ("*", "rp_done")), fresh=True),
    End("rp_done", "rp_done"),
    End("rp_closed", "rp_closed"),
    End("rp_gone", "rp_gone"),
    End("rp_paybill", "rp_paybill", load="repay_paybill", needs_pin=True),
]


_SCREENS: list[Screen] = [
    # --- unregistered phone: language, then registration --------------------
    Menu(
        ROOT_NEW,
        "welcome",
        (Option("lang_en", "reg_name", lang="en"), Option("lang_sw", "reg_name", lang="sw")),
    ),
    Prompt("reg_name", "reg_name", field="full_name", parse=parse_name, goto="reg_id"),
    Prompt("reg_id", "reg_id", field="national_id", parse=parse_national_id, goto="reg_consent"),
    Menu(
        "reg_consent",
        "reg_consent",
        (Option("opt_agree", "reg_pin"), Option("opt_disagree", "reg_declined")),
    ),
    PinPrompt("reg_pin", "reg_pin", goto="reg_pin2", mode="new", field="pin"),
    PinPrompt("reg_pin2", "pin_again", goto="reg_run", mode="new", same_as="pin"),
    Run("reg_run", action="register", ok="reg_done", secrets=("pin",)),  # any failure: error
    # The same END whether the ID was new or already a member's (core.members.registration.
    # register_from_phone): the member number comes by SMS to the phone that owns it.
    End("reg_done", "reg_done"),
    End("reg_declined", "reg_declined"),
    # --- members ------------------------------------------------------------
    Menu(
        ROOT_MEMBER,
        "main",
        (
            Option("menu_balances", "balances", feature=access.BALANCES),
            Option("menu_statement", "statement", feature=access.STATEMENT),
            Option("menu_account", "account", feature=access.ACCOUNT),
            Option("menu_change_pin", "cp_old", feature=access.CHANGE_PIN),
            Option("menu_deposit", "dep_amount", feature=access.DEPOSIT),
            Option("menu_withdraw", "wd_amount", feature=access.WITHDRAW),
            Option("menu_loans", "loans", feature=access.LOANS),  # past six: 98 More
        ),
        notes=(("pending_kyc", "note_pending"), ("suspended", "note_suspended")),
    ),
    # The loans line only for a member with a loan account (the loader says).
    Menu(
        "balances",
        "balances",
        load="balances",
        needs_pin=True,
        extras=(("loans", "balances_loans"),),
    ),
    Page(
        "statement",
        "stmt_title",
        item="stmt_line",
        empty="stmt_empty",
        load="statement",
        per_page=2,
        needs_pin=True,
    ),
    # Name and member number: behind the PIN, like balances (a forged hop knows the phone).
    Menu(
        "account",
        "account",
        (Option("menu_language", "account_lang"), Option("menu_leave", "leave_confirm")),
        load="account",
        needs_pin=True,
    ),
    # Leave the SACCO (core.members.exit, docs/members/exit.md): the notice, confirmed,
    # behind the PIN; the exit itself runs after the by-laws' notice period, approved by
    # a manager.
    Confirm(
        "leave_confirm",
        "leave_confirm",
        load="leave_quote",
        yes="leave_run",
        errors=LEAVE_ERRORS,
        needs_pin=True,
    ),  # fmt: skip
    Run("leave_run", action="leave_sacco", ok="leave_done", errors=LEAVE_ERRORS),
    End("leave_done", "leave_done"),
    Menu(
        "account_lang",
        "choose_lang",
        (Option("lang_en", "lang_run", lang="en"), Option("lang_sw", "lang_run", lang="sw")),
    ),
    Run("lang_run", action="set_language", ok="lang_done"),
    End("lang_done", "lang_done"),
    PinPrompt("cp_old", "cp_old", goto="cp_new", mode="collect", field="old_pin"),
    PinPrompt("cp_new", "cp_new", goto="cp_new2", mode="new", field="new_pin"),
    PinPrompt("cp_new2", "pin_again", goto="cp_run", mode="new", same_as="new_pin"),
    Run(
        "cp_run",
        action="change_pin",
        ok="cp_done",
        errors=CHANGE_PIN_ERRORS,
        secrets=("old_pin", "new_pin"),
    ),
    End("cp_done", "cp_done"),
    # --- PIN reset started by staff: the SMS code, a new PIN twice ----------
    PinPrompt(
        ROOT_PIN_RESET,
        "pr_code",
        goto="pr_new",
        mode="collect",
        field="reset_code",
        digits=RESET_CODE_DIGITS,
        format_reason="why_code_format",
    ),
    PinPrompt("pr_new", "cp_new", goto="pr_new2", mode="new", field="new_pin"),
    PinPrompt("pr_new2", "pin_again", goto="pr_run", mode="new", same_as="new_pin"),
    Run(
        "pr_run",
        action="redeem_pin_reset",
        ok="pr_done",
        errors=PIN_RESET_ERRORS,
        secrets=("reset_code", "new_pin"),
    ),
    End("pr_done", "pr_done"),
    End("pr_dead", "pr_dead"),
    # --- deposit by M-Pesa STK push: amount, account, confirm, PIN, push ----
    Prompt(
        "dep_amount",
        "dep_amount",
        field="amount",
        parse=parse_amount_input,
        goto="dep_target",
        check="deposit_amount",
        errors=DEPOSIT_ERRORS,
    ),
    Choose(
        "dep_target",
        "dep_target",
        item="dep_target_item",
        field="target",
        load="deposit_accounts",
        goto="dep_confirm",
        errors=DEPOSIT_ERRORS,
    ),
    Confirm(
        "dep_confirm", "dep_confirm", load="deposit_quote", yes="dep_run", errors=DEPOSIT_ERRORS
    ),
    Run("dep_run", action="deposit_stk", ok="dep_done", errors=DEPOSIT_ERRORS),
    End("dep_done", "dep_done"),
    # --- withdraw savings to M-Pesa (B2C): PIN, amount, confirm, payout ----
    # The PIN comes first: the amount's check and the quote answer from the member's
    # savings and today's withdrawals ("Not enough savings: KES 987 available"), which
    # nobody may probe with the phone number alone. wd_confirm needs it too, for a
    # flow resumed straight at the confirmation in a new session.
    Prompt(
        "wd_amount",
        "wd_amount",
        field="amount",
        parse=parse_amount_input,
        goto="wd_confirm",
        check="withdraw_quote",
        errors=WITHDRAW_ERRORS,
        needs_pin=True,
    ),
    Confirm(
        "wd_confirm",
        "wd_confirm",
        load="withdraw_quote",
        yes="wd_run",
        errors=WITHDRAW_ERRORS,
        needs_pin=True,
    ),
    Run("wd_run", action="withdraw_b2c", ok="wd_done", errors=WITHDRAW_ERRORS),
    End("wd_done", "wd_done"),
    End("not_allowed", "not_allowed"),
    End("wd_sim_swap", "wd_sim_swap"),
    End("wd_dormant", "wd_dormant"),
    End("wd_sim_check", "wd_sim_check"),
    End("wd_sim_cap", "wd_sim_cap"),
    *LOAN_SCREENS,
    End(ROOT_EXITED, "exited"),
    # --- screens the engine goes to by itself -------------------------------
    PinPrompt("pin", "pin", mode="verify"),
    # The engine answers this menu itself (1 restores the saved flow, 2 starts at the
    # caller's root); the gotos only satisfy the tree check.
    Menu(
        "resume",
        "resume",
        (Option("opt_continue", ROOT_MEMBER), Option("opt_restart", ROOT_MEMBER)),
    ),
    End("too_many", "too_many"),
    End("cancelled", "cancelled"),
    End("error", "error"),
    End("pin_locked", "pin_locked"),
    End("pin_blocked", "pin_blocked"),
    End("no_pin", "no_pin"),
    End("too_fast", "too_fast"),
]

TREE = Tree(
    screens={s.id: s for s in _SCREENS},
    roots=(ROOT_MEMBER, ROOT_NEW, ROOT_EXITED, ROOT_PIN_RESET),
)


def root_for(status: str | None, pin_reset: bool = False) -> str:
    """The first screen: registration for an unknown phone, an END for exited members,
    the reset code for a member with a PIN reset pending."""
    if status is None:
        return ROOT_NEW
    if not access.self_service_features(status):
        return ROOT_EXITED
    return ROOT_PIN_RESET if pin_reset else ROOT_MEMBER
