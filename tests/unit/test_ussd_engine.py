"""The pure menu engine: input diffing, navigation, paging, PIN and confirmation flows,
replay of first hops, resume points, and the session store. No database here: the
effects are answered by a small in-test performer, the state goes through the
in-memory store as JSON exactly as it would through Redis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ussd.checks import validate
from ussd.engine import (
    MAX_SCREEN_CHARS,
    Context,
    Effect,
    Invalid,
    Result,
    Screen,
    State,
    Tree,
    resume_point,
    run_hop,
)
from ussd.menus import parse_amount_input
from ussd.screens import Confirm, End, Menu, Option, Page, PinPrompt, Prompt, Run
from ussd.store import MemoryStore
from ussd.texts import gsm7_safe, mask

GOOD_PIN = "4826"

TEXTS = {
    "main": "Shop",
    "m_items": "Items",
    "m_buy": "Buy",
    "m_name": "Name",
    "items": "Items {page}/{pages}",
    "item": "{n}",
    "empty": "None",
    "name": "Your name:",
    "amount": "Amount:",
    "confirm": "Pay {amount} to {to}, fee {fee}",
    "done": "Paid. Ref {reference}",
    "failed": "Failed",
    "hello": "Hello {name}",
    "pin": "PIN:",
    "new_pin": "New PIN:",
    "again": "Again:",
    "resume": "Continue?",
    "yes": "Yes",
    "no": "No",
    "bye": "Bye",
    "nav_back": "0 Back",
    "nav_more": "98 More",
    "opt_confirm": "Confirm",
    "opt_cancel": "Cancel",
}


def render(key: str, lang: str, data: Mapping[str, Any]) -> str:
    if key.startswith("why_"):
        return f"({key})"
    return TEXTS[key].format_map(dict(data))


def parse_name(text: str, ctx: Context) -> str:
    if not text.strip().isalpha():
        raise Invalid("why_name")
    return text.strip()


SCREENS: list[Screen] = [
    Menu(
        "main",
        "main",
        (
            Option("m_items", "items"),
            Option("m_buy", "amount", feature="buy"),
            Option("m_name", "name"),
        ),
    ),
    Page("items", "items", item="item", empty="empty", load="items", per_page=2),
    Prompt("name", "name", field="name", parse=parse_name, goto="new_pin"),
    PinPrompt("new_pin", "new_pin", goto="again", mode="new", field="secret"),
    PinPrompt("again", "again", goto="hello", mode="new", same_as="secret"),
    Run("hello", action="hello", ok="hello_end", secrets=("secret",)),
    End("hello_end", "hello"),
    Prompt("amount", "amount", field="amount", parse=parse_amount_input, goto="confirm"),
    Confirm("confirm", "confirm", yes="pay", load="quote"),
    Run("pay", action="pay", ok="done", errors=(("*", "failed"),)),
    End("done", "done"),
    End("failed", "failed"),
    PinPrompt("pin", "pin", mode="verify"),
    Menu("resume", "resume", (Option("yes", "main"), Option("no", "main"))),
    End("too_many", "bye"),
    End("cancelled", "bye"),
    End("error", "bye"),
    End("pin_locked", "bye"),
    End("pin_blocked", "bye"),
    End("no_pin", "bye"),
    End("too_fast", "bye"),
]
TREE = Tree({s.id: s for s in SCREENS}, roots=("main",))


@dataclass
class Backend:
    """Answers effects like core would, and records what ran."""

    items: int = 5
    ran: list[Effect] = field(default_factory=list)
    wrong_pins: int = 0

    def __call__(self, effect: Effect) -> Result:
        self.ran.append(effect)
        if effect.name == "verify_pin":
            if effect.secrets["pin"] == GOOD_PIN:
                return Result(True)
            self.wrong_pins += 1
            if self.wrong_pins >= 3:
                return Result(False, {"minutes": 30}, "pin_locked")
            return Result(False, {"attempts_left": 3 - self.wrong_pins}, "pin_invalid")
        if effect.name == "items":
            return Result(True, {"items": [{"n": f"item{i}"} for i in range(self.items)]})
        if effect.name == "quote":
            return Result(True, {"to": "Savings", "fee": "KES 0"})
        if effect.name == "pay":
            return Result(True, {"reference": "S123"})
        if effect.name == "hello":
            return Result(True, {"name": effect.inputs["name"]})
        raise AssertionError(effect)

    def actions(self) -> list[str]:
        return [e.name for e in self.ran if e.kind == "act" and e.name != "verify_pin"]


class Session:
    """One dial, with the state stored as JSON between hops like the real shell does."""

    def __init__(self, backend: Backend, features: frozenset[str] = frozenset({"buy"})) -> None:
        self.backend = backend
        self.store = MemoryStore()
        self.ctx = Context(
            tree=TREE, render=render, root="main", session_id="s1", features=features
        )
        self.inputs: list[str] = []
        self.state: State | None = None
        self.dials = 0

    def hop(self, text: str) -> str:
        state, reply = run_hop(State.from_json(self.store.get("s")), text, self.ctx, self.backend)
        if reply.end:
            self.store.delete("s")
        else:
            self.store.put("s", state.to_json(), 180)
        self.state = state
        assert len(reply.body) <= MAX_SCREEN_CHARS
        return reply.body

    def dial(self) -> str:
        """A new dial: a new session id, like the gateway gives."""
        self.dials += 1
        self.ctx = replace(self.ctx, session_id=f"s{self.dials}")
        self.inputs = []
        return self.hop("")

    def send(self, value: str) -> str:
        self.inputs.append(value)
        return self.hop("*".join(self.inputs))


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def phone(backend: Backend) -> Session:
    s = Session(backend)
    s.dial()
    return s


def test_first_hop_shows_the_main_menu(phone: Session) -> None:
    assert phone.hop("") == "CON Shop\n1. Items\n2. Buy\n3. Name"


def test_options_the_member_may_not_use_are_hidden(backend: Backend) -> None:
    s = Session(backend, features=frozenset())
    assert s.dial() == "CON Shop\n1. Items\n2. Name"
    assert s.send("2") == "CON Your name:"


def test_a_star_typed_inside_an_input_is_part_of_the_input(phone: Session) -> None:
    phone.send("3")
    assert phone.send("Ann*Bo") == "CON (why_name)\nYour name:"  # "Ann*Bo" is one input
    assert phone.send("Ann") == "CON New PIN:"


def test_an_empty_input_is_an_invalid_answer_not_a_shift(phone: Session) -> None:
    phone.send("3")
    assert phone.send("") == "CON (why_name)\nYour name:"  # text "3*"
    assert phone.send("Ann") == "CON New PIN:"


def test_a_repeated_hop_shows_the_same_screen_again_without_acting(phone: Session) -> None:
    phone.send("3")
    first = phone.hop("3")
    assert first == phone.hop("3") == "CON Your name:"


def test_zero_goes_back_and_double_zero_goes_home(phone: Session) -> None:
    phone.send("3")
    phone.send("Ann")
    assert phone.send("0") == "CON Your name:"
    assert phone.send("0") == "CON Shop\n1. Items\n2. Buy\n3. Name"
    phone.send("3")
    phone.send("Ann")
    assert phone.send("00") == "CON Shop\n1. Items\n2. Buy\n3. Name"
    assert phone.state is not None and phone.state.inputs == {}


def test_98_pages_through_a_list(phone: Session) -> None:
    assert phone.send("1") == "CON Items 1/3\nitem0\nitem1\n98 More\n0 Back"
    assert phone.send("98") == "CON Items 2/3\nitem2\nitem3\n98 More\n0 Back"
    assert phone.send("98") == "CON Items 3/3\nitem4\n0 Back"
    assert phone.send("98") == "CON Items 3/3\nitem4\n0 Back"  # past the end stays put
    assert phone.send("0") == "CON Shop\n1. Items\n2. Buy\n3. Name"


def test_three_invalid_inputs_in_a_row_end_politely(phone: Session) -> None:
    assert phone.send("9") == "CON (why_choice)\nShop\n1. Items\n2. Buy\n3. Name"
    assert phone.send("x").startswith("CON (why_choice)")
    assert phone.send("") == "END Bye"


def test_a_valid_input_resets_the_invalid_count(phone: Session) -> None:
    phone.send("9")
    phone.send("9")
    assert phone.send("3") == "CON Your name:"
    assert phone.send("1").startswith("CON (why_name)")


def test_new_pin_twice_then_the_action_gets_the_pin_which_never_enters_the_state(
    phone: Session, backend: Backend
) -> None:
    phone.send("3")
    phone.send("Ann")
    assert phone.send("1234") == "CON (why_pin_sequential)\nNew PIN:"
    assert phone.send("4826") == "CON Again:"
    assert phone.state is not None and "4826" not in phone.state.to_json()
    assert phone.send("4827") == "CON (why_pin_mismatch)\nNew PIN:"
    phone.send("4826")
    assert phone.send("4826") == "END Hello Ann"
    hello = [e for e in backend.ran if e.name == "hello"]
    assert [e.secrets["secret"] for e in hello] == ["4826"]


def test_confirm_shows_the_quote_then_asks_the_pin_then_runs_once(
    phone: Session, backend: Backend
) -> None:
    phone.send("2")
    assert phone.send("1,500") == ("CON Pay 150000 to Savings, fee KES 0\n1. Confirm\n2. Cancel")
    assert phone.send("1") == "CON PIN:"
    assert phone.send("1111") == "CON (why_pin_invalid)\nPIN:"
    assert backend.actions() == []
    assert phone.send(GOOD_PIN) == "END Paid. Ref S123"
    assert backend.actions() == ["pay"]
    assert backend.ran[-1].key == "ussd:s1:0:pay"


def test_confirm_skips_the_pin_once_given_in_the_session(phone: Session, backend: Backend) -> None:
    phone.send("2")
    phone.send("100")
    phone.send("1")
    phone.send(GOOD_PIN)
    phone.dial()  # a new session: PIN asked again
    phone.send("2")
    phone.send("100")
    assert phone.send("1") == "CON PIN:"


def test_cancel_on_confirm_does_nothing(phone: Session, backend: Backend) -> None:
    phone.send("2")
    phone.send("100")
    assert phone.send("2") == "END Bye"
    assert backend.actions() == []


def test_three_wrong_pins_end_with_the_lock_from_core(phone: Session, backend: Backend) -> None:
    phone.send("2")
    phone.send("100")
    phone.send("1")
    phone.send("1111")
    phone.send("2222")
    assert phone.send("3333") == "END Bye"
    assert backend.actions() == []


def test_a_direct_dial_replays_menu_choices_and_stops_at_free_input(backend: Backend) -> None:
    s = Session(backend)
    assert s.hop("3*Ann*4826") == "CON Your name:"
    assert backend.ran == []


def test_replay_never_confirms_or_runs_an_action(backend: Backend) -> None:
    s = Session(backend)
    assert s.hop("2*100*1*4826").startswith("CON Amount:")
    assert backend.actions() == []


def test_replay_of_a_list_shows_it(backend: Backend) -> None:
    s = Session(backend)
    assert s.hop("1*98").startswith("CON Items 1/3")


def test_replay_of_garbage_shows_the_main_menu(backend: Backend) -> None:
    s = Session(backend)
    assert s.hop("\u2603*##*" + "9" * 10_000) == "CON Shop\n1. Items\n2. Buy\n3. Name"


def test_resume_point_keeps_what_was_typed_and_rewinds_before_pins(phone: Session) -> None:
    phone.send("3")
    phone.send("Ann")
    phone.send("4826")  # at "Again:"
    assert phone.state is not None
    point = resume_point(phone.state, TREE, "main")
    assert point == {
        "screen": "new_pin",
        "history": ["main", "name"],
        "inputs": {"name": "Ann"},
        "lang": "en",
        "origin": "s1",
        "runs": 0,
    }


def test_resume_point_at_a_pin_check_returns_to_the_confirmation(phone: Session) -> None:
    phone.send("2")
    phone.send("100")
    phone.send("1")  # PIN asked
    assert phone.state is not None
    point = resume_point(phone.state, TREE, "main")
    assert point is not None and point["screen"] == "confirm"


def test_nothing_typed_means_nothing_to_resume(phone: Session) -> None:
    phone.send("1")
    assert phone.state is not None and resume_point(phone.state, TREE, "main") is None


def test_accepting_the_resume_offer_restores_the_inputs(backend: Backend) -> None:
    s = Session(backend)
    offer = {
        "screen": "confirm",
        "history": ["main", "amount"],
        "inputs": {"amount": "100"},
        "lang": "en",
    }
    s.ctx = Context(
        tree=TREE,
        render=render,
        root="main",
        session_id="s2",
        resume=offer,
        features=frozenset({"buy"}),
    )
    assert s.dial() == "CON Continue?\n1. Yes\n2. No"
    assert s.send("1") == "CON Pay 100 to Savings, fee KES 0\n1. Confirm\n2. Cancel"
    assert s.send("0") == "CON Amount:"


def test_declining_the_resume_offer_starts_afresh(backend: Backend) -> None:
    s = Session(backend)
    s.ctx = Context(tree=TREE, render=render, root="main", resume={"screen": "confirm"})
    s.dial()
    assert s.send("2") == "CON Shop\n1. Items\n2. Name"


def test_unreadable_stored_state_counts_as_expired() -> None:
    assert State.from_json(b"{not json") is None
    assert State.from_json('{"screen": 5, "text_len": "x"}') is None
    assert State.from_json('{"screen": "main", "bogus": 1}') == State(screen="main")


def test_the_test_tree_is_valid() -> None:
    assert validate(TREE) == []


def test_memory_store_expires_entries() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    store.put("a", "1", 180)
    assert store.get("a") == "1"
    now[0] += 181
    assert store.get("a") is None
    store.put("b", "2", 120)
    assert store.take("b") == "2"
    assert store.take("b") is None


def test_memory_store_stays_bounded() -> None:
    store = MemoryStore(max_items=3)
    for i in range(10):
        store.put(str(i), "x", 60)
    assert sum(store.get(str(i)) is not None for i in range(10)) == 3


def test_names_become_gsm7_and_short() -> None:
    assert gsm7_safe("Zoë Ćwikła-Ångström", 40) == "Zoe Cwikla-Ångström"
    assert gsm7_safe("A" * 60, 40) == "A" * 38 + ".."
    assert gsm7_safe("李 明", 10) == "? ?"


def test_mask_hides_every_character_but_the_separators() -> None:
    assert mask("1*4826*Ann") == "x*xxxx*xxx"
    assert "4826" not in mask("4826" * 2_500)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["0", "00", "98", "1", "2", "3", "", "*", "#", GOOD_PIN, "100"]),
            st.text(max_size=30),
        ),
        max_size=12,
    )
)
def test_any_sequence_of_inputs_gets_a_screen_and_pays_at_most_once(inputs: list[str]) -> None:
    backend = Backend()
    s = Session(backend)
    body = s.dial()
    for value in inputs:
        body = s.send(value)
        assert body.startswith(("CON ", "END "))
        if body.startswith("END "):
            break
    assert backend.actions().count("pay") <= 1
    assert all("4826" not in e.key for e in backend.ran)


def test_a_state_never_shows_the_pins_riding_in_text(phone: Session) -> None:
    phone.send("3")
    phone.send("Ann")
    phone.send("4826")
    assert phone.state is not None and phone.state.text.endswith("4826")
    assert "4826" not in repr(phone.state) and "4826" not in phone.state.to_json()


def test_a_resumed_flow_keeps_the_idempotency_key_of_the_session_it_began_in(
    backend: Backend,
) -> None:
    first = Session(backend)
    first.dial()
    first.send("2")
    first.send("100")  # at the confirmation; the phone drops
    assert first.state is not None
    point = resume_point(first.state, TREE, "main")
    second = Session(backend)
    second.ctx = Context(
        tree=TREE,
        render=render,
        root="main",
        session_id="s2",
        resume=point,
        features=frozenset({"buy"}),
    )
    second.dials = 5  # the next dial is session "s6"
    second.dial()
    assert second.ctx.session_id == "s6"
    second.send("1")  # continue
    second.send("1")  # confirm
    assert second.send(GOOD_PIN) == "END Paid. Ref S123"
    assert [e.key for e in backend.ran if e.name == "pay"] == ["ussd:s1:0:pay"]


class EngineMachine(RuleBasedStateMachine):
    """A member pressing keys at random on the test tree: invariants after every hop."""

    def __init__(self) -> None:
        super().__init__()
        self.backend = Backend()
        self.phone = Session(self.backend)
        self.body = self.phone.dial()

    @rule(value=st.sampled_from(["1", "2", "3", "0", "00", "98", "", "*", "9", "100", GOOD_PIN]))
    def press(self, value: str) -> None:
        if self.body.startswith("END "):
            self.body = self.phone.dial()
            return
        self.body = self.phone.send(value)

    @rule(value=st.text(max_size=40))
    def type_anything(self, value: str) -> None:
        if self.body.startswith("END "):
            self.body = self.phone.dial()
            return
        self.body = self.phone.send(value)

    @rule()
    def home(self) -> None:
        if not self.body.startswith("END "):
            self.body = self.phone.send("00")
            assert self.body.startswith("CON Shop")

    @invariant()
    def a_screen_that_fits(self) -> None:
        assert self.body.startswith(("CON ", "END ")) and len(self.body) <= MAX_SCREEN_CHARS

    @invariant()
    def no_pin_in_the_stored_state(self) -> None:
        stored = self.phone.store.get("s") or ""
        assert GOOD_PIN not in stored.replace('"amount":"' + GOOD_PIN, "")

    @invariant()
    def each_payment_has_its_own_key(self) -> None:
        keys = [e.key for e in self.backend.ran if e.name == "pay"]
        assert len(keys) == len(set(keys))


EngineMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_engine_state_machine = EngineMachine.TestCase


def test_memory_store_writes_puts_and_deletes_together() -> None:
    store = MemoryStore()
    store.put("old", "x", 60)
    store.write([("a", "1", 60), ("b", "2", 60)], ["old"])
    assert (store.get("a"), store.get("b"), store.get("old")) == ("1", "2", None)


@dataclass
class CheckingBackend(Backend):
    """Also answers a prompt's check: below KES 10 is refused, 999 is a hard failure."""

    checked: list[str] = field(default_factory=list)

    def __call__(self, effect: Effect) -> Result:
        if effect.name != "limit":
            return super().__call__(effect)
        self.ran.append(effect)
        self.checked.append(effect.inputs["amount"])
        cents = int(effect.inputs["amount"])
        if cents < 1000:
            return Result(False, {"limit": "KES 10"}, "limit_low")
        if cents == 99_900:
            return Result(False, error="member_not_allowed")
        return Result(True)


def checked_phone(backend: CheckingBackend) -> Session:
    screens = dict(TREE.screens)
    screens["amount"] = Prompt(
        "amount",
        "amount",
        field="amount",
        parse=parse_amount_input,
        goto="confirm",
        check="limit",
        errors=(("limit_low", "amount"),),  # refused: this prompt again
    )
    s = Session(backend)
    s.ctx = replace(s.ctx, tree=replace(TREE, screens=screens))
    s.dial()
    return s


def test_a_prompt_check_refuses_with_its_reason_and_asks_again() -> None:
    backend = CheckingBackend()
    phone = checked_phone(backend)
    phone.send("2")
    assert phone.send("5") == "CON (why_limit_low)\nAmount:"
    assert phone.state is not None and "amount" not in phone.state.inputs
    assert phone.send("abc") == "CON (why_amount)\nAmount:"  # the parser runs first
    assert phone.send("20") == "CON Pay 2000 to Savings, fee KES 0\n1. Confirm\n2. Cancel"
    assert backend.checked == ["500", "2000"]
    assert backend.actions() == []  # a check is a read, never an action


def test_a_prompt_check_counts_towards_three_wrong_entries_and_other_failures_end() -> None:
    phone = checked_phone(CheckingBackend())
    phone.send("2")
    phone.send("1")
    phone.send("2")
    assert phone.send("3") == "END Bye"  # too many wrong entries
    other = checked_phone(CheckingBackend())
    other.send("2")
    assert other.send("999") == "END Bye"  # not a listed refusal: the error screen
