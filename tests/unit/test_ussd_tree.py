"""The menu tree as a whole: valid, and every screen of both languages fits 160 GSM-7
characters (prefix included) with the longest realistic data."""

from __future__ import annotations

import string

import pytest

from core.kernel.i18n import LANGUAGES
from core.kernel.money import MAX_INPUT_CENTS, format_cents
from core.members.access import self_service_features
from ussd.actions import NAME_CHARS
from ussd.engine import (
    GSM7,
    INTERACTIVE,
    MAX_SCREEN_CHARS,
    Confirm,
    Context,
    End,
    Menu,
    PinPrompt,
    Prompt,
    Run,
    State,
    compose,
    validate,
)
from ussd.menus import TREE, root_for
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
    item = {
        "date": "27/11",
        "account": longest("acct_", lang),
        "what": longest("kind_", lang),
        "amount": "-" + BIG.removeprefix("KES "),
    }
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
        "items": [item] * 9,
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
    }


def notices_for(screen_id: str) -> list[str | None]:
    """Every one-line reason the engine may show above this screen."""
    scr = TREE[screen_id]
    keys: list[str | None] = [None]
    if not isinstance(scr, INTERACTIVE):
        return keys
    keys += ["why_choice", "why_too_long"]
    if isinstance(scr, Prompt):
        keys += ["why_name", "why_national_id", "why_amount"]
        keys += [f"why_{code}" for code in scr.refusals]
    if isinstance(scr, PinPrompt):
        keys += [k for k in KEYS if k.startswith("why_pin_")] + [scr.format_reason]
    for run in TREE.screens.values():
        if isinstance(run, Run):
            keys += [f"why_{code}" for code, target in run.errors if target == screen_id]
        if isinstance(run, Confirm):
            keys += [f"why_{code}" for code, target in run.load_errors if target == screen_id]
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
        if isinstance(scr, Run):
            continue
        for status in STATUSES:
            ctx = Context(
                tree=TREE,
                render=render,
                root=root_for(status),
                status=status,
                features=self_service_features(status) if status else frozenset(),
                base={k: data[k] for k in CONSTANT_LIMITS},
            )
            for notice in notices_for(screen_id):
                for page in (0, 1, 4):
                    state = State(screen=screen_id, lang=lang, page=page)
                    state.data = dict(data)
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


def test_menus_have_at_most_six_options_and_no_two_alike() -> None:
    for scr in TREE.screens.values():
        if isinstance(scr, Menu):
            assert len(scr.options) <= 6
            for lang in LANGUAGES:
                labels = [CATALOGUE.text(o.label, lang).lower() for o in scr.options]
                assert len(set(labels)) == len(labels), scr.id


def test_validate_reports_broken_trees() -> None:
    from dataclasses import replace

    screens = dict(TREE.screens)
    main = TREE["main"]
    assert isinstance(main, Menu)
    screens["main"] = replace(main, options=(*main.options, main.options[0]))
    screens["orphan"] = End("orphan", "error")
    screens["loop"] = Prompt("loop", "pin", field="x", parse=lambda v, c: v, goto="loop2")
    screens["loop2"] = Menu("loop2", "main", ())
    screens["dangling"] = Confirm("dangling", "main", yes="nowhere")
    screens["stuck"] = Prompt("stuck", "pin", field="y", parse=lambda v, c: v, goto="stuck")
    broken = replace(TREE, screens=screens, roots=(*TREE.roots, "stuck"))
    problems = "\n".join(validate(broken, set(KEYS)))
    assert "goes to unknown screen 'nowhere'" in problems
    screens.pop("dangling")
    problems = "\n".join(validate(replace(broken, screens=screens), set(KEYS)))
    assert "main: 7 options" in problems
    assert "orphan: unreachable" in problems
    assert "stuck: no path to an end" in problems
    assert "main: two options with the same label" in problems


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


def test_validate_refuses_a_pin_check_as_root_and_long_new_pins() -> None:
    from dataclasses import replace

    screens = dict(TREE.screens)
    screens["odd"] = PinPrompt("odd", "cp_new", goto="cp_done", mode="new", field="z", digits=6)
    broken = replace(TREE, screens=screens, roots=(*TREE.roots, "pin", "odd"))
    problems = "\n".join(validate(broken, set(KEYS)))
    assert "pin: a root must be a Menu, End or collecting PinPrompt" in problems
    assert "odd: only a collecting PIN prompt takes other than 4 digits" in problems
