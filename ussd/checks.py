"""The tree checker: one small function per rule, each naming the screen it fails on.

``validate(tree, catalogue_keys)`` runs every check in ``CHECKS``; the walks over the
tree (reachability, a path to an end, ...) run only once every target exists.
``tests/unit/test_ussd_tree.py`` runs it on the real tree and shows each check catching
a tree broken its way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from ussd.engine import MAX_OPTIONS, PIN_DIGITS, Tree
from ussd.screens import Choose, End, Menu, Page, PinPrompt, Prompt, Run

Keys = Collection[str] | None  # the catalogue's keys; None skips the text checks
Check = Callable[[Tree, Keys], Iterator[str]]


def reason_keys(code: str, keys: Collection[str]) -> list[str]:
    """The ``why_`` texts a table entry for ``code`` may show (``limit_*``: all of
    ``why_limit_…``)."""
    if code.endswith("*"):
        return sorted(k for k in keys if k.startswith("why_" + code[:-1]))
    return [f"why_{code}"] if f"why_{code}" in keys else []


# ------------------------------------------------------------ each screen alone


def ids_match(tree: Tree, keys: Keys) -> Iterator[str]:
    for sid, scr in tree.screens.items():
        if scr.id != sid:
            yield f"{sid}: declared under another id ({scr.id})"


def targets_exist(tree: Tree, keys: Keys) -> Iterator[str]:
    for sid, scr in tree.screens.items():
        for target in scr.targets():
            if target not in tree.screens:
                yield f"{sid}: goes to unknown screen {target!r}"


def specials_exist(tree: Tree, keys: Keys) -> Iterator[str]:
    for special in tree.specials() + tree.roots:
        if special not in tree.screens:
            yield f"missing special screen {special!r}"


def six_choices_a_screen(tree: Tree, keys: Keys) -> Iterator[str]:
    """A screen shows 1 to 6 options or items (a longer menu or list pages with 98)."""
    for sid, scr in tree.screens.items():
        if isinstance(scr, Menu | Page | Choose) and not 1 <= scr.per_page <= MAX_OPTIONS:
            yield f"{sid}: {scr.per_page} a screen (1 to {MAX_OPTIONS})"


def options_differ(tree: Tree, keys: Keys) -> Iterator[str]:
    for sid, scr in tree.screens.items():
        if isinstance(scr, Menu):
            labels = [o.label for o in scr.options]
            if len(set(labels)) != len(labels):
                yield f"{sid}: two options with the same label"


def answers_have_a_field(tree: Tree, keys: Keys) -> Iterator[str]:
    for sid, scr in tree.screens.items():
        if isinstance(scr, Prompt | Choose) and not scr.field:
            yield f"{sid}: an answer needs a field to land in"
        if isinstance(scr, PinPrompt) and scr.mode != "verify" and not (scr.field or scr.same_as):
            yield f"{sid}: a {scr.mode} PIN prompt needs a field"


def only_codes_are_long(tree: Tree, keys: Keys) -> Iterator[str]:
    for sid, scr in tree.screens.items():
        if isinstance(scr, PinPrompt) and scr.digits != PIN_DIGITS and scr.mode != "collect":
            yield f"{sid}: only a collecting PIN prompt takes other than 4 digits"


def secrets_are_collected(tree: Tree, keys: Keys) -> Iterator[str]:
    collected = {s.field for s in tree.screens.values() if isinstance(s, PinPrompt)}
    for sid, scr in tree.screens.items():
        if isinstance(scr, Run):
            for name in scr.secrets:
                if name not in collected:
                    yield f"{sid}: secret {name!r} is collected by no screen"


def texts_exist(tree: Tree, keys: Keys) -> Iterator[str]:
    if keys is None:
        return
    for sid, scr in tree.screens.items():
        for key in scr.texts():
            if key not in keys:
                yield f"{sid}: missing text {key!r}"


def reasons_exist(tree: Tree, keys: Keys) -> Iterator[str]:
    """An error table that sends a code back to a waiting screen shows ``why_<code>``
    above it: that text must exist (and a catch-all ``*`` must end, not ask again)."""
    if keys is None:
        return
    for sid, scr in tree.screens.items():
        for code, target in scr.errors:
            back = tree.screens.get(target)
            if back is None or not back.interactive:
                continue
            if code == "*":
                yield f"{sid}: '*' goes back to {target}: a catch-all must end"
            elif not reason_keys(code, keys):
                yield f"{sid}: no text why_{code} to show on {target}"


# ------------------------------------------------------------ the tree as a whole


def pin_screen_verifies(tree: Tree, keys: Keys) -> Iterator[str]:
    pin = tree[tree.pin]
    if not (isinstance(pin, PinPrompt) and pin.mode == "verify"):
        yield f"{tree.pin}: must be a PinPrompt with mode='verify'"


def roots_open_flows(tree: Tree, keys: Keys) -> Iterator[str]:
    for root in tree.roots:
        first = tree[root]
        # A collecting PIN prompt may open a flow (the reset code of a PIN reset).
        collects = isinstance(first, PinPrompt) and first.mode == "collect"
        if not (isinstance(first, Menu | End) or collects) or first.needs_pin:
            yield f"{root}: a root must be a Menu, End or collecting PinPrompt"


def reachable(tree: Tree, keys: Keys) -> Iterator[str]:
    """Every screen is reached from a root (the specials by the engine itself)."""
    seen: set[str] = set()
    todo = [*tree.roots, *tree.specials()]
    while todo:
        sid = todo.pop()
        if sid not in seen:
            seen.add(sid)
            todo += tree[sid].targets()
    yield from (f"{sid}: unreachable" for sid in tree.screens if sid not in seen)


def flows_finish(tree: Tree, keys: Keys) -> Iterator[str]:
    """Every screen can reach an end (0/00 always lead home, but a flow must finish)."""
    finishing = {sid for sid, scr in tree.screens.items() if scr.finishes()}
    changed = True
    while changed:
        more = {
            sid
            for sid, scr in tree.screens.items()
            if sid not in finishing and any(t in finishing for t in scr.targets())
        }
        finishing |= more
        changed = bool(more)
    yield from (f"{sid}: no path to an end" for sid in tree.screens if sid not in finishing)


def one_action_a_hop(tree: Tree, keys: Keys) -> Iterator[str]:
    """An action never leads straight into another (one verb per hop)."""
    for sid, scr in tree.screens.items():
        if scr.acts:
            for target in scr.targets():
                if tree[target].acts:
                    yield f"{sid}: runs straight into another action {target}"


# Checks of each screen alone, then (once every target exists) of the tree as a whole.
ALONE: tuple[Check, ...] = (
    ids_match,
    targets_exist,
    specials_exist,
    six_choices_a_screen,
    options_differ,
    answers_have_a_field,
    only_codes_are_long,
    secrets_are_collected,
    texts_exist,
    reasons_exist,
)
WALKS: tuple[Check, ...] = (
    pin_screen_verifies,
    roots_open_flows,
    reachable,
    flows_finish,
    one_action_a_hop,
)
CHECKS = ALONE + WALKS


def validate(tree: Tree, catalogue_keys: Collection[str] | None = None) -> list[str]:
    """Problems with a tree as a whole (an empty list: none). With the catalogue's keys,
    also every text a screen names and every reason an error table shows."""
    problems = [p for check in ALONE for p in check(tree, catalogue_keys)]
    if any(True for _ in targets_exist(tree, None)) or any(
        True for _ in specials_exist(tree, None)
    ):
        return problems  # the walks need every target to exist
    return problems + [p for check in WALKS for p in check(tree, catalogue_keys)]
