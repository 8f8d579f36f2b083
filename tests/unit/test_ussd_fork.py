"""The ``Fork`` screen on the pure engine: on by a value (exact, ``prefix*``, ``*``) from
what an action answered, a loaded field or a typed input; ``fresh`` forgets the way back
after an action; a failed load goes through its table. Effects are answered in-test."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from ussd.checks import validate
from ussd.engine import Context, Effect, Result, Screen, State, Tree, run_hop
from ussd.screens import ChoiceItem, Choose, End, Fork, MaxChars, Menu, Option, PinPrompt, Run

TEXTS = {
    "main": "Shop",
    "o_buy": "Buy",
    "o_pick": "Pick",
    "paid": "Paid {ref}",
    "waiting": "Waiting {ref}",
    "other": "Other",
    "pick": "Pick one",
    "item": "{name}",
    "a": "Thing A",
    "b": "Thing B",
    "gone": "Gone",
    "pin": "PIN:",
    "resume": "Continue?",
    "yes": "Yes",
    "bye": "Bye",
    "nav_back": "0 Back",
    "nav_more": "98 More",
}


def texts(key: str, lang: str, data: Mapping[str, Any]) -> str:
    return f"({key})" if key.startswith("why_") else TEXTS[key].format_map(dict(data))


@dataclass(frozen=True)
class Shown(ChoiceItem):
    name: Annotated[str, MaxChars(5)]


SCREENS: list[Screen] = [
    Menu("main", "main", (Option("o_buy", "buy"), Option("o_pick", "pick"))),
    Run("buy", action="buy", ok="after"),
    Fork(
        "after",
        field="status",
        ways=(("paid", "paid"), ("wait*", "waiting"), ("*", "other")),
        fresh=True,
    ),
    Menu("waiting", "waiting", (Option("o_buy", "other"),)),
    End("paid", "paid"),
    End("other", "other"),
    Choose("pick", "pick", item="item", field="thing", load="things", goto="which"),
    Fork(
        "which",
        field="thing",
        ways=(("a*", "a"), ("*", "b")),
        load="check",
        errors=(("gone", "gone"),),
    ),  # fmt: skip
    End("a", "a"),
    End("b", "b"),
    End("gone", "gone"),
    PinPrompt("pin", "pin", mode="verify"),
    Menu("resume", "resume", (Option("yes", "main"),)),
    *(
        End(k, "bye")
        for k in (
            "too_many",
            "cancelled",
            "error",
            "pin_locked",
            "pin_blocked",
            "no_pin",
            "too_fast",
        )
    ),  # fmt: skip
]
TREE = Tree(screens={s.id: s for s in SCREENS}, roots=("main",))


def hop(state: State | None, text: str, answers: dict[str, Result]) -> tuple[State, str]:
    ctx = Context(tree=TREE, render=texts, root="main", session_id="s1")

    def perform(effect: Effect) -> Result:
        return answers[effect.name]

    state, reply = run_hop(state, text, ctx, perform)
    return state, reply.body


def test_the_tree_with_forks_is_valid() -> None:
    assert validate(TREE) == []


def test_a_fork_after_an_action_goes_on_by_its_answer() -> None:
    for status, shown in (("paid", "END Paid R1"), ("waiting_x", "CON Waiting R1"),
                          ("odd", "END Other")):  # fmt: skip
        state, _ = hop(None, "", {})
        _, body = hop(state, "1", {"buy": Result(True, {"status": status, "ref": "R1"})})
        assert body.startswith(shown), status


def test_a_fresh_fork_forgets_the_way_back_into_the_finished_flow() -> None:
    state, _ = hop(None, "", {})
    state, body = hop(state, "1", {"buy": Result(True, {"status": "waiting", "ref": "R1"})})
    assert body.startswith("CON Waiting R1") and state.history == []
    _, body = hop(state, "1*0", {})
    assert body.startswith("CON Shop")  # home, not back into the action


def test_a_fork_on_a_typed_choice_loads_first_and_fails_through_its_table() -> None:
    things = Result(True, {"items": [Shown("a1", "A"), Shown("b2", "B")]})
    for typed, answer, shown in (
        ("1", Result(True), "END Thing A"),
        ("2", Result(True), "END Thing B"),
        ("1", Result(False, error="gone"), "END Gone"),
        ("1", Result(False, error="boom"), "END Bye"),  # unlisted: the error screen
    ):
        state, _ = hop(None, "", {})
        state, _ = hop(state, "2", {"things": things})
        _, body = hop(state, f"2*{typed}", {"things": things, "check": answer})
        assert body == shown, (typed, answer)
