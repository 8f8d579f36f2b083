"""The menu tree as a whole: valid (and each check of ``validate`` catching a tree broken
its way), and every screen of both languages fits 160 GSM-7 characters (prefix included)
with the longest realistic data: a Choose screen's worst items are built from the type
its loader declares."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from core.kernel.i18n import LANGUAGES
from core.kernel.money import MAX_INPUT_CENTS, format_cents
from core.members.access import self_service_features
from ussd import checks, menus
from ussd.actions import LOADER_ITEMS, NAME_CHARS, PERSON_CHARS, PRODUCT_CHARS, SHORTCODE_CHARS
from ussd.checks import CHECKS, reason_keys, validate
from ussd.engine import GSM7, MAX_CHOICES, MAX_SCREEN_CHARS, Context, Screen, State, Tree, compose
from ussd.menus import TREE, root_for
from ussd.screens import (
    Choose,
    Confirm,
    End,
    Fork,
    Menu,
    Option,
    Page,
    Parser,
    PinPrompt,
    Prompt,
    Run,
    shown_fields,
    worst_item,
)
from ussd.service import CONSTANT_LIMITS
from ussd.texts import CATALOGUE, gsm7_safe, render

KEYS = CATALOGUE.keys()
STATUSES = (None, "active", "pending_kyc", "suspended", "exited")
PIN_RESET_SCREENS = ("pr_code", "pr_new", "pr_new2", "pr_done", "pr_dead")
LONG_NAME = "Wanjiru-Nyambura Kamau-Odhiambo Chepkoech Mwangi-Ochieng Njoro"[:60]
BIG = format_cents(999_999_999)  # KES 9,999,999.99


def longest(prefix: str, lang: str) -> str:
    return max((CATALOGUE.text(k, lang) for k in KEYS if k.startswith(prefix)), key=len)


def worst_data(lang: str) -> dict[str, object]:
    constants = {k: "W" * n for k, n in CONSTANT_LIMITS.items()}
    return {
        **constants,
        "member_number": "9" * 12,
        "name": gsm7_safe(LONG_NAME, NAME_CHARS),
        "status": longest("status_", lang),
        "savings": BIG,
        "available": BIG,
        "deposits": BIG,
        "shares": BIG,
        "loans": BIG,
        "minutes": "30",
        "attempts_left": "2",
        "max": format_cents(MAX_INPUT_CENTS),
        "full_name": LONG_NAME,
        "national_id": "123456789",
        "amount": BIG,
        "fee": BIG,
        "total": BIG,
        "destination": "+254712345678",
        "reference": "S" + "W" * 9,
        # the M-Pesa money screens
        "phone": "+254712345678",
        "account": longest("acct_", lang),
        "ref": "W" * 12,  # an STK AccountReference is at most 12 characters
        "limit": BIG,
        # loans (ussd/actions.py cuts names: PRODUCT_CHARS, PERSON_CHARS)
        "product": "W" * PRODUCT_CHARS,
        "min_amount": BIG,
        "max_amount": BIG,
        "min_term": "360",  # core.loans.products.MAX_TERM
        "max_term": "360",
        "term": "360",
        "unit": longest("ln_unit_", lang),
        "instalment": BIG,
        "fees": BIG,
        "received": BIG,
        "sent": BIG,  # a loan paid out by M-Pesa
        "to": max(longest("acct_savings", lang), longest("ln_by_mpesa", lang), key=len),
        "due_on": "31/12/2026",
        "days": "365",  # the by-laws' exit notice (EXIT_NOTICE_DAYS, at most 365)
        "missing": BIG,
        "asked": BIG,
        "guarantor": "W" * PERSON_CHARS,
        "borrower": "W" * PERSON_CHARS,
        "pledge": BIG,
        "pledged": BIG,
        "loan": BIG,
        "balance": BIG,
        "arrears": BIG,
        "state": longest("ln_state_", lang),
        "shortcode": "9" * SHORTCODE_CHARS,  # the paybill (M-Pesa settings, cut to this)
    }


def item_lists(screen_id: str, lang: str) -> list[list[object]]:
    """The lists a screen may show: for a Choose, the most items a loader may return
    (every one the worst its declared item type allows), a single page, and none."""
    scr = TREE[screen_id]
    if isinstance(scr, Choose):
        worst = worst_item(LOADER_ITEMS[scr.load])
        return [[worst] * MAX_CHOICES, [worst] * scr.per_page, []]
    if isinstance(scr, Page) and scr.item == "ln_limit_line":  # a limit, or a reason
        limit = {"product": "W" * PRODUCT_CHARS, "limit": max(BIG, longest("ln_why_", lang))}
        return [[limit] * 9, []]
    if isinstance(scr, Page):  # the statement's lines
        line = {
            "date": "27/11",
            "account": longest("acct_", lang),
            "what": longest("kind_", lang),
            "amount": "-" + BIG.removeprefix("KES "),
        }
        return [[line] * 9, []]
    return [[]]


# The reasons each prompt's parser gives (``Invalid(...)``); a new parser belongs here.
PARSER_REASONS: dict[Parser, list[str]] = {
    menus.parse_name: ["why_name"],
    menus.parse_national_id: ["why_national_id"],
    menus.parse_amount_input: ["why_amount"],
    menus.parse_term: ["why_term"],
    menus.parse_guarantor: ["why_guarantor"],
}


def notices_for(screen_id: str) -> list[str | None]:
    """Every one-line reason the engine may show above this screen: its own, and each
    that an error table routes back to it."""
    scr = TREE[screen_id]
    keys: list[str | None] = [None]
    if not scr.interactive:
        return keys
    keys += ["why_choice", "why_too_long"]
    if isinstance(scr, Prompt):  # what its parser may say
        keys += PARSER_REASONS[scr.parse]
    if isinstance(scr, PinPrompt):
        keys += [k for k in KEYS if k.startswith("why_pin_")] + [scr.format_reason]
    for other in TREE.screens.values():
        for code, target in other.errors:
            if target == screen_id:
                keys += reason_keys(code, KEYS)
    return keys


def test_tree_is_valid_as_a_whole() -> None:
    assert validate(TREE, set(KEYS)) == []


def test_catalogues_match_between_languages() -> None:
    assert CATALOGUE.problems() == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_screen_fits_160_gsm7_characters(lang: str) -> None:
    data = worst_data(lang)
    too_long: list[str] = []
    checked = 0
    for screen_id, scr in TREE.screens.items():
        if isinstance(scr, Run | Fork):  # never shown
            continue
        for status in STATUSES:
            ctx = Context(
                tree=TREE,
                render=render,
                root=root_for(status),
                status=status,
                features=self_service_features(status) | {menus.MPESA} if status else frozenset(),
                base={k: data[k] for k in CONSTANT_LIMITS},
            )
            for notice in notices_for(screen_id):
                for items in item_lists(screen_id, lang):
                    for page in (0, 1, 4, 99):
                        state = State(screen=screen_id, lang=lang, page=page)
                        state.data = {**data, "items": items}
                        state.inputs = {"full_name": LONG_NAME, "national_id": "123456789"}
                        state.notice = (notice, data) if notice else None
                        end, text = compose(state, ctx)
                        body = ("END " if end else "CON ") + text
                        checked += 1
                        bad = sorted({c for c in body if c not in GSM7})
                        if (len(body) > MAX_SCREEN_CHARS or bad) and not any(
                            x.startswith(f"{screen_id} ") for x in too_long
                        ):
                            too_long.append(
                                f"{screen_id} [{status} {notice}]: {len(body)} {bad}\n{body}"
                            )
    assert checked > 500
    assert not too_long, "\n\n".join(too_long)


def test_every_catalogue_text_is_gsm7() -> None:
    for lang in LANGUAGES:
        for key in KEYS:
            text = "".join(lit for lit, *_ in string.Formatter().parse(CATALOGUE.text(key, lang)))
            assert set(text) <= GSM7, (lang, key, sorted(set(text) - GSM7))


def test_menus_show_at_most_six_options_a_screen_and_no_two_alike() -> None:
    for scr in TREE.screens.values():
        if isinstance(scr, Menu):
            assert min(len(scr.options), scr.per_page) <= 6
            for lang in LANGUAGES:
                labels = [CATALOGUE.text(o.label, lang).lower() for o in scr.options]
                assert len(set(labels)) == len(labels), scr.id


def test_every_choose_loader_declares_the_type_of_its_items() -> None:
    chooses = [scr for scr in TREE.screens.values() if isinstance(scr, Choose)]
    assert chooses  # the deposit's account
    for scr in chooses:
        assert scr.load in LOADER_ITEMS, scr.id
        assert shown_fields(LOADER_ITEMS[scr.load]), scr.id


# ------------------------------------------------- each check and its broken tree


def screens_with(**changed: Screen) -> dict[str, Screen]:
    return {**TREE.screens, **changed}


def broken(screens: dict[str, Screen] | None = None, **tree: Any) -> Tree:
    return replace(TREE, screens=screens if screens is not None else TREE.screens, **tree)


def main_menu() -> Menu:
    main = TREE["main"]
    assert isinstance(main, Menu)
    return main


def remove(screen_id: str) -> dict[str, Screen]:
    return {k: v for k, v in TREE.screens.items() if k != screen_id}


def _same_id() -> Tree:
    return broken(screens_with(main=replace(main_menu(), id="main2")))


def _dangling() -> Tree:
    return broken(screens_with(dangling=Confirm("dangling", "main", yes="nowhere")))


def _no_special() -> Tree:
    return broken(remove("too_fast"))


def _seven_a_screen() -> Tree:
    return broken(screens_with(main=replace(main_menu(), per_page=7)))


def _twin_options() -> Tree:
    main = main_menu()
    return broken(screens_with(main=replace(main, options=(*main.options, main.options[0]))))


def _no_field() -> Tree:
    target = TREE["dep_target"]
    assert isinstance(target, Choose)
    return broken(screens_with(dep_target=replace(target, field="")))


def _long_new_pin() -> Tree:
    odd = PinPrompt("odd", "cp_new", goto="cp_done", mode="new", field="z", digits=6)
    return broken(screens_with(odd=odd))


def _ghost_secret() -> Tree:
    run = TREE["cp_run"]
    assert isinstance(run, Run)
    return broken(screens_with(cp_run=replace(run, secrets=(*run.secrets, "ghost"))))


def _missing_text() -> Tree:
    return broken(screens_with(error=End("error", "no_such_text")))


def _reason_without_text() -> Tree:
    run = TREE["wd_run"]
    assert isinstance(run, Run)
    errors = (("sim_swap_unknown", "wd_amount"), ("*", "wd_amount"), *run.errors)
    return broken(screens_with(wd_run=replace(run, errors=errors)))


def _pin_screen_collects() -> Tree:
    return broken(pin="cp_old")


def _pin_check_as_root() -> Tree:
    return broken(roots=(*TREE.roots, "pin"))


def _orphan() -> Tree:
    return broken(screens_with(orphan=End("orphan", "error")))


def _stuck() -> Tree:
    stuck = Prompt("stuck", "pin", field="y", parse=lambda v, c: v, goto="stuck")
    main = main_menu()
    options = (*main.options, Option("menu_language", "stuck"))
    return broken(screens_with(stuck=stuck, main=replace(main, options=options)))


def _two_actions() -> Tree:
    run = TREE["lang_run"]
    assert isinstance(run, Run)
    return broken(screens_with(lang_run=replace(run, ok="cp_run")))


BROKEN: dict[Callable[..., Iterator[str]], tuple[Callable[[], Tree], str]] = {
    checks.ids_match: (_same_id, "main: declared under another id (main2)"),
    checks.targets_exist: (_dangling, "dangling: goes to unknown screen 'nowhere'"),
    checks.specials_exist: (_no_special, "missing special screen 'too_fast'"),
    checks.six_choices_a_screen: (_seven_a_screen, "main: 7 a screen (1 to 6)"),
    checks.options_differ: (_twin_options, "main: two options with the same label"),
    checks.answers_have_a_field: (_no_field, "dep_target: an answer needs a field to land in"),
    checks.only_codes_are_long: (
        _long_new_pin,
        "odd: only a collecting PIN prompt takes other than 4 digits",
    ),
    checks.secrets_are_collected: (_ghost_secret, "cp_run: secret 'ghost' is collected by no"),
    checks.texts_exist: (_missing_text, "error: missing text 'no_such_text'"),
    checks.reasons_exist: (
        _reason_without_text,
        "wd_run: no text why_sim_swap_unknown to show on wd_amount",
    ),
    checks.pin_screen_verifies: (_pin_screen_collects, "cp_old: must be a PinPrompt"),
    checks.roots_open_flows: (
        _pin_check_as_root,
        "pin: a root must be a Menu, End or collecting PinPrompt",
    ),
    checks.reachable: (_orphan, "orphan: unreachable"),
    checks.flows_finish: (_stuck, "stuck: no path to an end"),
    checks.one_action_a_hop: (_two_actions, "lang_run: runs straight into another action cp_run"),
}


def test_every_check_has_a_broken_tree_below() -> None:
    assert set(BROKEN) == set(CHECKS)


@pytest.mark.parametrize("check", list(BROKEN), ids=lambda c: c.__name__)
def test_each_check_catches_its_broken_tree_and_passes_the_real_one(
    check: Callable[..., Iterator[str]],
) -> None:
    make, expected = BROKEN[check]
    assert list(check(TREE, set(KEYS))) == []
    tree = make()
    found = list(check(tree, set(KEYS)))
    assert any(expected in problem for problem in found), found
    if check not in (checks.targets_exist, checks.specials_exist):
        assert any(expected in problem for problem in validate(tree, set(KEYS)))


def test_a_catch_all_that_asks_again_is_refused() -> None:
    problems = list(checks.reasons_exist(_reason_without_text(), set(KEYS)))
    assert "wd_run: '*' goes back to wd_amount: a catch-all must end" in problems


def test_the_walks_wait_for_every_target_to_exist() -> None:
    problems = validate(_dangling(), set(KEYS))
    assert problems == ["dangling: goes to unknown screen 'nowhere'"]


def test_the_pin_reset_flow_is_in_the_walked_tree() -> None:
    # The fit test above walks every screen of TREE: these are among them.
    assert set(PIN_RESET_SCREENS) <= set(TREE.screens)
    for status in ("active", "pending_kyc", "suspended"):
        assert root_for(status, pin_reset=True) == "pr_code"
        assert root_for(status) == "main"
    assert root_for("exited", pin_reset=True) == "exited"
    assert root_for(None, pin_reset=True) == "welcome"
    code = TREE["pr_code"]
    assert isinstance(code, PinPrompt) and code.digits == 6 and code.mode == "collect"
