"""Lists a member chooses from and a main menu past six entries, on the pure engine.

A test tree shaped like the loans menus to come: a ``Choose`` over a member's loans
(a test loader with typed items), paged with ``98``; and a main menu of eight options
that pages while its direct-dial numbers keep their meaning. Then the real tree grown
by two options: today's shortcuts lead where they led, and its first page still fits.
The effects are answered by a small in-test performer, as in test_ussd_engine.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import pytest

from core.kernel.i18n import LANGUAGES
from core.members import access
from core.members.access import self_service_features
from ussd.checks import validate
from ussd.engine import (
    MAX_SCREEN_CHARS,
    Context,
    Effect,
    Result,
    Screen,
    State,
    Tree,
    compose,
    run_hop,
    step,
)
from ussd.menus import TREE as REAL_TREE
from ussd.menus import root_for
from ussd.screens import ChoiceItem, Choose, End, MaxChars, Menu, Option, PinPrompt, worst_item
from ussd.service import CONSTANT_LIMITS, UssdConfig, screen_constants
from ussd.store import MemoryStore
from ussd.texts import CATALOGUE, render

TEXTS = {
    "main": "Shop",
    "o1": "My loans",
    "o2": "Two",
    "o3": "Three",
    "o4": "Four",
    "o5": "Five",
    "o6": "Six",
    "o7": "Seven",
    "o8": "Eight",
    "loans": "Your loans {page}/{pages}",
    "loan_item": "{product} {owed}",
    "no_loans": "You have no loans.",
    "loan": "Loan {loan}",
    "pin": "PIN:",
    "resume": "Continue?",
    "yes": "Yes",
    "no": "No",
    "bye": "Bye",
    "nav_back": "0 Back",
    "nav_more": "98 More",
}


def texts(key: str, lang: str, data: Mapping[str, Any]) -> str:
    if key.startswith("why_"):
        return f"({key})"
    return TEXTS[key].format_map(dict(data))


@dataclass(frozen=True)
class LoanChoice(ChoiceItem):
    """What the loans loader returns: the test tree's typed items."""

    product: Annotated[str, MaxChars(12)]
    owed: Annotated[str, MaxChars(16)]


SCREENS: list[Screen] = [
    Menu(
        "main",
        "main",
        (
            Option("o1", "loans"),
            *(Option(f"o{n}", f"end{n}") for n in range(2, 8)),
            Option("o8", "end8", feature="eight"),
        ),
    ),
    Choose(
        "loans",
        "loans",
        item="loan_item",
        field="loan",
        load="my_loans",
        goto="loan",
        empty="no_loans",
        per_page=3,
    ),
    Menu("loan", "loan"),
    *(End(f"end{n}", f"o{n}") for n in range(2, 9)),
    PinPrompt("pin", "pin", mode="verify"),
    Menu("resume", "resume", (Option("yes", "main"), Option("no", "main"))),
    *(
        End(s, "bye")
        for s in (
            "too_many",
            "cancelled",
            "error",
            "pin_locked",
            "pin_blocked",
            "no_pin",
            "too_fast",
        )
    ),
]
TREE = Tree({s.id: s for s in SCREENS}, roots=("main",))
MAIN_1 = "CON Shop\n1. My loans\n2. Two\n3. Three\n4. Four\n5. Five\n6. Six\n98 More"
MAIN_2 = "CON Shop\n7. Seven\n8. Eight"


@dataclass
class Loans:
    """The test loader: ``count`` loans, L1 .. Ln."""

    count: int = 8
    ran: list[Effect] = field(default_factory=list)

    def __call__(self, effect: Effect) -> Result:
        self.ran.append(effect)
        assert effect.name == "my_loans", effect
        items = [LoanChoice(f"L{n}", f"Boda {n}", f"KES {n},000") for n in range(1, self.count + 1)]
        return Result(True, {"items": items})


class Phone:
    """One dial, the state stored as JSON between hops like the real shell does."""

    def __init__(self, loans: Loans, features: frozenset[str] = frozenset({"eight"})) -> None:
        self.loans = loans
        self.store = MemoryStore()
        self.ctx = Context(tree=TREE, render=texts, root="main", session_id="s1", features=features)
        self.inputs: list[str] = []
        self.state: State | None = None

    def hop(self, text: str) -> str:
        state, reply = run_hop(State.from_json(self.store.get("s")), text, self.ctx, self.loans)
        self.store.put("s", state.to_json(), 180)
        self.state = state
        assert len(reply.body) <= MAX_SCREEN_CHARS
        return reply.body

    def dial(self, text: str = "") -> str:
        self.store.delete("s")
        self.inputs = [text] if text else []
        return self.hop(text)

    def send(self, value: str) -> str:
        self.inputs.append(value)
        return self.hop("*".join(self.inputs))


@pytest.fixture
def phone() -> Phone:
    p = Phone(Loans())
    p.dial()
    return p


PAGE_1 = "CON Your loans 1/3\n1. Boda 1 KES 1,000\n2. Boda 2 KES 2,000\n3. Boda 3 KES 3,000"
PAGE_2 = "CON Your loans 2/3\n4. Boda 4 KES 4,000\n5. Boda 5 KES 5,000\n6. Boda 6 KES 6,000"
PAGE_3 = "CON Your loans 3/3\n7. Boda 7 KES 7,000\n8. Boda 8 KES 8,000\n0 Back"


def test_the_test_tree_is_valid() -> None:
    assert validate(TREE) == []


# ------------------------------------------------------------------ Choose


def test_a_choose_pages_first_middle_last_and_stays_on_the_last(phone: Phone) -> None:
    assert phone.send("1") == PAGE_1 + "\n98 More\n0 Back"
    assert phone.send("98") == PAGE_2 + "\n98 More\n0 Back"
    assert phone.send("98") == PAGE_3
    assert phone.send("98") == PAGE_3  # past the end: the last page again, not a wrong entry
    assert phone.state is not None and phone.state.invalid == 0


def test_the_chosen_items_id_lands_in_the_inputs_for_the_next_screen(phone: Phone) -> None:
    phone.send("1")
    phone.send("98")
    assert phone.send("5") == "CON Loan L5\n0 Back"
    assert phone.state is not None and phone.state.inputs == {"loan": "L5"}


def test_numbers_run_on_across_pages_so_any_shown_number_picks_its_item(phone: Phone) -> None:
    phone.send("1")
    phone.send("98")
    phone.send("98")  # on the last page
    assert phone.send("2") == "CON Loan L2\n0 Back"  # item 2, seen on the first page


def test_zero_goes_back_to_the_screen_before_the_list(phone: Phone) -> None:
    phone.send("1")
    phone.send("98")
    assert phone.send("0").startswith("CON Shop\n1. My loans")
    assert phone.state is not None and phone.state.inputs == {} and phone.state.choices == []
    assert phone.send("1") == PAGE_1 + "\n98 More\n0 Back"  # from its first page again


def test_an_invalid_choice_asks_again_on_the_same_page_then_ends_after_three(
    phone: Phone,
) -> None:
    phone.send("1")
    phone.send("98")
    again = "CON (why_choice)\n" + PAGE_2.removeprefix("CON ") + "\n98 More\n0 Back"
    assert phone.send("9") == again
    assert phone.send("x").startswith("CON (why_choice)\nYour loans 2/3")
    assert phone.send("Boda") == "END Bye"
    assert phone.state is not None and "loan" not in phone.state.inputs


def test_an_empty_list_says_so_and_only_goes_back() -> None:
    phone = Phone(Loans(count=0))
    phone.dial()
    assert phone.send("1") == "CON Your loans 1/1\nYou have no loans.\n0 Back"
    assert phone.send("1") == "CON (why_choice)\nYour loans 1/1\nYou have no loans.\n0 Back"
    assert phone.send("98").startswith("CON (why_choice)")  # nothing more to show
    assert phone.send("0") == MAIN_1


def test_a_list_on_one_screen_reads_like_a_question() -> None:
    phone = Phone(Loans(count=2))
    phone.dial()
    assert phone.send("1") == "CON Your loans 1/1\n1. Boda 1 KES 1,000\n2. Boda 2 KES 2,000"
    assert phone.send("98") == (  # no more pages: 98 is a wrong entry, as on any question
        "CON (why_choice)\nYour loans 1/1\n1. Boda 1 KES 1,000\n2. Boda 2 KES 2,000"
    )
    assert phone.send("2") == "CON Loan L2\n0 Back"


def test_the_list_is_loaded_afresh_on_every_page(phone: Phone) -> None:
    phone.send("1")
    phone.send("98")
    assert [e.name for e in phone.loans.ran] == ["my_loans", "my_loans"]


def test_items_are_cut_to_their_declared_length_and_made_gsm7() -> None:
    item = LoanChoice("L1", "Żabka wholesale stock", "KES 1,000")
    assert item.product == "Zabka whol.."  # 12 characters at most
    worst = worst_item(LoanChoice)
    assert isinstance(worst, LoanChoice)
    assert (worst.product, worst.owed) == ("W" * 12, "W" * 16)
    with pytest.raises(TypeError, match="MaxChars"):

        @dataclass(frozen=True)
        class Unbounded(ChoiceItem):
            name: str

        Unbounded("x", "y")


# ------------------------------------------------------- a main menu past six


def test_a_main_menu_past_six_pages_with_98_numbered_on(phone: Phone) -> None:
    assert phone.hop("") == MAIN_1  # a root: no back hint
    assert phone.send("98") == MAIN_2
    assert phone.send("98") == MAIN_2  # the last page stays
    assert phone.send("8") == "END Eight"


def test_any_number_works_on_any_page_of_the_main_menu(phone: Phone) -> None:
    assert phone.send("7") == "END Seven"  # typed on the first page
    phone.dial()
    phone.send("98")
    assert phone.send("2") == "END Two"  # typed on the second page


def test_zero_on_the_main_menus_second_page_shows_the_first(phone: Phone) -> None:
    phone.send("98")
    assert phone.send("0") == MAIN_1


def test_a_main_menu_of_six_or_fewer_visible_options_does_not_page() -> None:
    phone = Phone(Loans(), features=frozenset())  # "Eight" hidden: still seven
    assert phone.dial().endswith("6. Six\n98 More")
    main = TREE["main"]
    assert isinstance(main, Menu)
    six = replace(main, options=main.options[:6])
    phone.ctx = replace(phone.ctx, tree=replace(TREE, screens={**TREE.screens, "main": six}))
    assert phone.dial() == MAIN_1.removesuffix("\n98 More")
    assert phone.send("98").startswith("CON (why_choice)\nShop")  # as before: not an option


def test_direct_dial_shortcuts_reach_options_on_every_page(phone: Phone) -> None:
    assert phone.dial("7") == "END Seven"
    assert phone.dial("8") == "END Eight"
    assert phone.dial("1") == PAGE_1 + "\n98 More\n0 Back"  # a list: shown, not chosen from
    assert phone.dial("1*2") == PAGE_1 + "\n98 More\n0 Back"
    assert phone.dial("9") == MAIN_1


# ----------------------------------------------- the real tree, grown past six


def grown_tree() -> Tree:
    """The real tree (seven options for an active member since Loans) with two more
    main-menu options for active members: an active member's eighth and ninth."""
    main = REAL_TREE["main"]
    assert isinstance(main, Menu)
    more = (
        Option("menu_language", "account_lang", feature=access.LOANS),
        Option("lang_sw", "account_lang", feature=access.LOANS),
    )
    grown = replace(main, options=(*main.options, *more))
    return replace(REAL_TREE, screens={**REAL_TREE.screens, "main": grown})


def test_the_grown_tree_is_valid() -> None:
    assert validate(grown_tree(), set(CATALOGUE.keys())) == []


def where(tree: Tree, text: str, status: str) -> tuple[str, str | None]:
    ctx = Context(
        tree=tree,
        render=render,
        root=root_for(status),
        status=status,
        features=self_service_features(status),
        base=screen_constants(UssdConfig()),
    )
    out = step(None, text, ctx)
    assert out.reply is not None  # a shortcut never loads or acts before the PIN
    return out.state.screen, out.state.after_pin


@pytest.mark.parametrize("status", ["active", "pending_kyc", "suspended"])
def test_todays_shortcuts_lead_where_they_led_once_the_main_menu_grows(status: str) -> None:
    grown = grown_tree()
    for n in range(1, 9):
        for rest in ("", "*1", "*2"):
            text = f"{n}{rest}"
            assert where(grown, text, status) == where(REAL_TREE, text, status), text
    if status == "active":  # eight options today (7: Loans, 8: Open savings account):
        # the new ones are 9 and 10
        assert where(REAL_TREE, "7", status) == ("pin", "loans")  # Loans is behind the PIN
        assert where(grown, "9", status) == ("account_lang", None)
        assert where(grown, "10*2", status) == ("account_lang", None)  # not chosen: a Run


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_grown_main_menu_still_fits_with_98_more(lang: str) -> None:
    grown = grown_tree()
    base = {k: "W" * n for k, n in CONSTANT_LIMITS.items()}
    for status in ("active", "pending_kyc", "suspended"):
        ctx = Context(
            tree=grown,
            render=render,
            root="main",
            status=status,
            features=self_service_features(status),
            base=base,
        )
        for page in (0, 1):
            for notice in (None, "why_choice", "why_too_long"):
                state = State(screen="main", lang=lang, page=page)
                state.notice = (notice, {}) if notice else None
                end, text = compose(state, ctx)
                assert len("CON " + text) <= MAX_SCREEN_CHARS, (status, page, text)
    ctx = replace(ctx, status="active", features=self_service_features("active"))
    first = compose(State(screen="main", lang=lang), ctx)[1]
    assert first.endswith("\n" + CATALOGUE.text("nav_more", lang))
