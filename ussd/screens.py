"""The screen types a menu tree is declared with. Each owns its behaviour: where it
can lead (``targets``), the catalogue keys it shows (``texts``), its text
(``compose``), how it answers input (``handle``) and what it does with a loaded
result (``loaded``).

* ``Menu``: numbered options; an option may need a self-service feature
  (``core.members.access``) and may set the session language. More visible options
  than ``per_page`` (6) page with ``98``, numbered on (7, 8, ...), so a direct-dial
  number means the same option on every page. Without options: an information screen
  (balances) with ``0`` back; ``extras`` are lines shown only when the loaded data has
  their field.
* ``Prompt``: free input, checked by a parser that returns the normalised value or
  raises ``Invalid(reason_key)``; the value lands in ``inputs``. ``check`` names a
  loader that also checks it against data (an amount against the SACCO's limits and
  the balance); a refusal goes through the flow's ``errors`` table.
* ``PinPrompt``: 4 digits. ``mode="verify"`` is the session PIN check (one screen per
  tree, ``Tree.pin``); ``collect`` takes a PIN for a later action (with ``digits=6``
  and its own ``format_reason``: the one-time code of a PIN reset); ``new`` checks the
  PIN policy; ``same_as`` asks for it again and compares.
* ``Confirm``: what will happen, ``1`` confirm / ``2`` cancel; confirming asks the
  session PIN first when it has not been given yet, then goes to ``yes``.
* ``Run``: not shown; calls one action and goes to ``ok`` or through ``errors``.
* ``Page``: a loaded list, ``per_page`` items a screen, ``98`` for more.
* ``Choose``: numbered options from a loader (``ChoiceItem`` subclasses, typed with
  ``MaxChars``), ``per_page`` a screen, ``98`` for more; the chosen item's ``id``
  lands in ``inputs[field]``.
* ``Fork``: not shown; goes on to the screen its ``ways`` give a field's value (what
  an action just answered, a loaded field, or a typed input): after applying for a
  loan, to the guarantors when the application waits for them, else to its end.
* ``End``: the last screen (``END``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from core.kernel.pins import pin_weakness
from ussd.engine import (
    MAX_CHOICE_ID,
    MAX_CHOICES,
    MAX_INVALID,
    MAX_OPTIONS,
    MORE,
    PIN_DIGITS,
    Context,
    Effect,
    Errors,
    Invalid,
    Paging,
    Result,
    Screen,
    Shown,
    State,
    Step,
    View,
    ask_pin,
    enter,
    fail,
    go,
    gsm7_safe,
    invalid,
    number,
    route,
    secret,
    show,
)


@dataclass(frozen=True)
class Option:
    label: str  # catalogue key, e.g. "menu_balances"
    goto: str
    feature: str | None = None  # shown only when the member has this feature
    lang: str | None = None  # choosing it switches the session language


@dataclass(frozen=True)
class Menu(Screen):
    id: str
    text: str
    options: tuple[Option, ...] = ()
    load: str | None = None
    needs_pin: bool = False
    notes: tuple[tuple[str, str], ...] = ()  # (member status, catalogue key) shown on top
    # (loaded field, catalogue key): a line under the text, shown only when the loaded
    # data has that field (the balances' loans line, for a member with a loan account)
    extras: tuple[tuple[str, str], ...] = ()
    per_page: int = MAX_OPTIONS  # options a screen; more page with 98, numbered on

    def visible(self, ctx: Context) -> list[Option]:
        return [o for o in self.options if o.feature is None or o.feature in ctx.features]

    def targets(self) -> list[str]:
        return [o.goto for o in self.options]

    def texts(self) -> list[str]:
        keys = [self.text, *(o.label for o in self.options)]
        keys += [key for _, key in self.notes] + [key for _, key in self.extras]
        return [k for k in keys if k]

    def finishes(self) -> bool:
        return not self.options

    def compose(self, view: View) -> Shown:
        ctx = view.ctx
        lines = [view.t(self.text)] if self.text else []
        lines += [view.t(key) for name, key in self.extras if view.data.get(name) not in (None, "")]
        note = dict(self.notes).get(ctx.status or "")
        if note:
            lines.append(view.t(note))
        options = self.visible(ctx)
        paging = Paging.of(len(options), self.per_page, view.state.page)
        shown = options[paging.start : paging.stop]
        lines += [f"{n}. {view.t(o.label)}" for n, o in enumerate(shown, start=paging.start + 1)]
        if paging.more:
            lines.append(view.t("nav_more"))
        home = self.id in ctx.tree.roots or self.id == ctx.tree.resume
        return Shown(lines, footer="" if home else view.t("nav_back"))

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        count = len(self.visible(ctx))
        if value.strip() == MORE and count > self.per_page:  # past the last page: stays
            st.page = Paging.of(count, self.per_page, st.page + 1).page
            st.invalid = 0
            return enter(st, self.id, ctx)
        chosen = self.follow(value, ctx)
        if chosen is None:
            return invalid(st, "why_choice", ctx)
        goto, lang = chosen
        if lang:
            st.lang = lang
        return go(st, goto, ctx)

    def follow(self, choice: str, ctx: Context) -> tuple[str, str | None] | None:
        options = self.visible(ctx)
        n = number(choice, len(options))
        if n is None:
            return None
        return options[n - 1].goto, options[n - 1].lang


Parser = Callable[[str, Context], str]


@dataclass(frozen=True)
class Prompt(Screen):
    id: str
    text: str
    field: str
    parse: Parser
    goto: str
    load: str | None = None
    needs_pin: bool = False
    # A loader that checks the parsed value against data (limits, balance) before going
    # on; a failure goes through ``errors`` (back to this prompt: asked again under
    # ``why_<code>``, counted as a wrong entry).
    check: str | None = None
    errors: Errors = ()

    def targets(self) -> list[str]:
        return [self.goto, *super().targets()]

    def texts(self) -> list[str]:
        return [self.text]

    def compose(self, view: View) -> Shown:
        return Shown([view.t(self.text)])

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        try:
            st.inputs[self.field] = self.parse(value, ctx)
        except Invalid as exc:
            return invalid(st, exc.reason, ctx, exc.data)
        if self.check:
            st.checking = True
            return Step(st, effect=Effect("load", self.check, st.lang, inputs=dict(st.inputs)))
        return go(st, self.goto, ctx)

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        if not st.checking:  # the prompt's own ``load``
            return super().loaded(st, result, ctx)
        st.checking = False
        if result.ok:
            st.data.update(result.data)
            return go(st, self.goto, ctx)
        st.inputs.pop(self.field, None)
        return fail(st, result, ctx, self.errors)


@dataclass(frozen=True)
class PinPrompt(Screen):
    id: str
    text: str
    goto: str = ""  # unused for mode="verify": it returns to the screen that asked
    mode: Literal["verify", "collect", "new"] = "verify"
    field: str = ""  # secret name for collect/new
    same_as: str = ""  # mode="new" only: must equal this secret (a "PIN again" screen)
    needs_pin: bool = False
    load: str | None = None
    digits: int = PIN_DIGITS  # mode="collect" only: a one-time code may be longer
    format_reason: str = "why_pin_format"  # shown when the input is not ``digits`` digits

    def targets(self) -> list[str]:
        return [self.goto] if self.mode != "verify" else []

    def texts(self) -> list[str]:
        return [k for k in (self.text, self.format_reason) if k]

    def finishes(self) -> bool:
        return self.mode == "verify"  # it returns to where the member was going

    def compose(self, view: View) -> Shown:
        return Shown([view.t(self.text)])

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        pin = value.strip()
        if not (pin.isascii() and pin.isdigit() and len(pin) == self.digits):
            return invalid(st, self.format_reason, ctx)
        if self.mode == "verify":
            st.invalid = 0
            return Step(st, effect=Effect("act", "verify_pin", st.lang, secrets={"pin": pin}))
        if self.mode == "new" and self.same_as:
            if secret(st, self.same_as) != pin:
                return self._mismatch(st, ctx)
        elif self.mode == "new":
            weakness = pin_weakness(pin, ctx.msisdn or None)  # the PIN policy lives in core
            if weakness:
                return invalid(st, f"why_pin_{weakness}", ctx)
            st.secrets[self.field] = [self.id, start, start + len(value)]
        else:  # collect
            st.secrets[self.field] = [self.id, start, start + len(value)]
        return go(st, self.goto, ctx)

    def _mismatch(self, st: State, ctx: Context) -> Step:
        """The second PIN differs: back to the first (a wrong entry)."""
        first = st.secrets.pop(self.same_as, [self.id])[0]
        st.notice = ("why_pin_mismatch", {})
        st.invalid += 1
        if st.invalid >= MAX_INVALID:
            return enter(st, ctx.tree.too_many, ctx)
        if first in st.history:
            st.history = st.history[: st.history.index(first)]
        return enter(st, first, ctx)

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        if self.mode != "verify":
            return super().loaded(st, result, ctx)
        if result.ok:  # the session PIN: on to where the member was going
            st.pin_ok = True
            target, st.after_pin = st.after_pin or ctx.root, None
            return enter(st, target, ctx)
        if result.error == "pin_invalid":  # core counts these; not a wrong entry here
            st.data.update(result.data)
            st.notice = ("why_pin_invalid", dict(result.data))
            return show(st, ctx)
        return fail(st, result, ctx, ())


@dataclass(frozen=True)
class Confirm(Screen):
    id: str
    text: str
    yes: str
    no: str = ""  # empty: the tree's "cancelled" end
    load: str | None = None
    ask_pin: bool = True  # after "1", the session PIN is asked unless already given
    errors: Errors = ()  # the flow's table, for a refused quote
    # PIN before the screen is even shown: only for a confirmation whose quote itself
    # reveals money (a withdrawal: "Not enough savings: KES 987 available").
    needs_pin: bool = False

    def targets(self) -> list[str]:
        return [self.yes, *([self.no] if self.no else []), *super().targets()]

    def texts(self) -> list[str]:
        return [self.text]

    def compose(self, view: View) -> Shown:
        return Shown(
            [view.t(self.text), f"1. {view.t('opt_confirm')}", f"2. {view.t('opt_cancel')}"]
        )

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        choice = value.strip()
        if choice == "1":
            if self.ask_pin and not st.pin_ok:
                return ask_pin(st, self.yes, ctx)
            return go(st, self.yes, ctx)
        if choice == "2":
            return go(st, self.no or ctx.tree.cancelled, ctx)
        return invalid(st, "why_choice", ctx)


@dataclass(frozen=True)
class Run(Screen):
    id: str
    action: str
    ok: str
    errors: Errors = ()  # the flow's table
    secrets: tuple[str, ...] = ()
    needs_pin: bool = False
    load: str | None = None
    interactive: ClassVar[bool] = False
    acts: ClassVar[bool] = True

    def targets(self) -> list[str]:
        return [self.ok, *(t for t in super().targets() if t)]

    def arrive(self, st: State, ctx: Context) -> Step:
        return Step(
            st,
            effect=Effect(
                "act",
                self.action,
                st.lang,
                inputs=dict(st.inputs),
                secrets={name: secret(st, name) for name in self.secrets},
                key=f"ussd:{st.origin or ctx.session_id}:{st.runs}:{self.id}",
            ),
        )

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        if not result.ok:
            return fail(st, result, ctx, self.errors)
        st.data.update(result.data)
        st.inputs, st.secrets = {}, {}
        st.runs += 1
        return enter(st, self.ok, ctx)


@dataclass(frozen=True)
class Page(Screen):
    id: str
    text: str  # title, gets {page} and {pages}
    item: str  # one line per item, rendered with the item's fields
    empty: str
    load: str
    per_page: int = 3
    needs_pin: bool = False

    def texts(self) -> list[str]:
        return [self.text, self.item, self.empty]

    def finishes(self) -> bool:
        return True

    def compose(self, view: View) -> Shown:
        items = list(view.data.get("items") or [])
        paging = Paging.of(len(items), self.per_page, view.state.page)
        lines = [view.t(self.text, {"page": paging.page + 1, "pages": paging.pages})]
        chunk = items[paging.start : paging.stop]
        lines += [view.t(self.item, item) for item in chunk] or [view.t(self.empty)]
        if paging.more:
            lines.append(view.t("nav_more"))
        return Shown(lines, footer=view.t("nav_back"))

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        if value.strip() != MORE:
            return invalid(st, "why_choice", ctx)
        st.page += 1  # past the last page stays on it (``loaded``)
        st.invalid = 0
        return enter(st, self.id, ctx)

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        if not result.ok:
            return fail(st, result, ctx, ())
        st.data.update(result.data)
        st.page = Paging.of(len(list(st.data.get("items") or [])), self.per_page, st.page).page
        return show(st, ctx)


# --------------------------------------------------------- Choose and its items


@dataclass(frozen=True)
class MaxChars:
    """``Annotated[str, MaxChars(n)]`` on a ``ChoiceItem`` field: shown in at most ``n``
    characters (a longer value is cut with ".." when the item is made)."""

    n: int


@dataclass(frozen=True)
class ChoiceItem:
    """One option a ``Choose`` offers, as its loader returns it: ``id`` lands in the
    flow's ``inputs``; every other field is shown through the screen's ``item`` text.

    A loader declares its own subclass, each shown field typed
    ``Annotated[str, MaxChars(n)]``; the values are made GSM-7 and cut to ``n`` here, so
    the fit test's worst case (``worst_item``: every field ``n`` characters) bounds
    every real screen::

        @dataclass(frozen=True)
        class AccountChoice(ChoiceItem):
            account: Annotated[str, MaxChars(12)]
    """

    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not 0 < len(self.id) <= MAX_CHOICE_ID:
            raise ValueError(f"a choice id is 1-{MAX_CHOICE_ID} characters: {self.id!r}")
        for name, n in shown_fields(type(self)).items():
            value = getattr(self, name)
            safe = gsm7_safe(str(value), n)
            if safe != value:
                object.__setattr__(self, name, safe)

    def shown(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in shown_fields(type(self))}


_SHOWN: dict[type[ChoiceItem], dict[str, int]] = {}


def shown_fields(cls: type[ChoiceItem]) -> dict[str, int]:
    """The shown fields of an item type and their ``MaxChars`` (every one must have it)."""
    if cls in _SHOWN:
        return _SHOWN[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    bounds: dict[str, int] = {}
    for f in dataclasses.fields(cls):
        if f.name == "id":
            continue
        marks = [m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, MaxChars)]
        if not marks:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it Annotated[str, MaxChars(n)]")
        bounds[f.name] = marks[0].n
    _SHOWN[cls] = bounds
    return bounds


def worst_item(cls: type[ChoiceItem], char: str = "W") -> ChoiceItem:
    """The longest item ``cls`` can be: every shown field at its ``MaxChars``."""
    return cls("x", **{name: char * n for name, n in shown_fields(cls).items()})


def choice_items(data: Mapping[str, Any]) -> Sequence[ChoiceItem]:
    items = list(data.get("items") or [])[:MAX_CHOICES]
    for item in items:
        if not isinstance(item, ChoiceItem):
            raise TypeError(f"a Choose loader returns ChoiceItem items, not {type(item).__name__}")
    return items


@dataclass(frozen=True)
class Choose(Screen):
    """Numbered options from a loader (a member's loans, loan products, guarantee
    requests, accounts): at most ``per_page`` a screen, ``98`` for more, numbered on;
    the chosen item's ``id`` lands in ``inputs[field]`` for the following screens.

    An empty list shows ``empty``; the "0 Back 00 Home" hint shows when the list pages
    or is empty (a short list reads like the question it is)."""

    id: str
    text: str  # the question; may name {page} and {pages}
    item: str  # one option's text, rendered with the item's shown fields
    field: str
    load: str  # a loader that returns {"items": [ChoiceItem subclass, ...]}
    goto: str
    empty: str = "list_empty"
    per_page: int = MAX_OPTIONS
    needs_pin: bool = False
    errors: Errors = ()

    def targets(self) -> list[str]:
        return [self.goto, *super().targets()]

    def texts(self) -> list[str]:
        return [self.text, self.item, self.empty]

    def compose(self, view: View) -> Shown:
        items = choice_items(view.data)
        paging = Paging.of(len(items), self.per_page, view.state.page)
        lines = [view.t(self.text, {"page": paging.page + 1, "pages": paging.pages})]
        if not items:
            lines.append(view.t(self.empty))
        chunk = items[paging.start : paging.stop]
        for n, item in enumerate(chunk, start=paging.start + 1):
            lines.append(f"{n}. {view.t(self.item, item.shown())}")
        if paging.more:
            lines.append(view.t("nav_more"))
        return Shown(lines, footer=view.t("nav_back") if paging.pages > 1 or not items else "")

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        choice = value.strip()
        if choice == MORE and len(st.choices) > self.per_page:
            st.page += 1  # past the last page stays on it (``loaded``)
            st.invalid = 0
            return enter(st, self.id, ctx)
        n = number(choice, len(st.choices))
        if n is None:
            return invalid(st, "why_choice", ctx)
        st.inputs[self.field] = str(st.choices[n - 1])
        return go(st, self.goto, ctx)

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        if not result.ok:
            return fail(st, result, ctx, self.errors)
        st.data.update(result.data)
        items = choice_items(st.data)
        st.choices = [item.id for item in items]
        st.page = Paging.of(len(items), self.per_page, st.page).page
        return show(st, ctx)


@dataclass(frozen=True)
class Fork(Screen):
    """Not shown: on to one of ``ways`` by the value of ``field`` in the data just
    loaded or acted on (else the typed inputs), matched like an error table: the exact
    value, the longest ``prefix*``, else ``*``. With ``load``, it loads first (a failure
    goes through ``errors``). ``fresh``: the way here is forgotten, so ``0`` after a
    finished action leads home rather than back into the flow that ran it."""

    id: str
    field: str
    ways: Errors  # (value, screen)
    load: str | None = None
    needs_pin: bool = False
    errors: Errors = ()
    fresh: bool = False
    interactive: ClassVar[bool] = False

    def targets(self) -> list[str]:
        return [target for _, target in self.ways] + super().targets()

    def arrive(self, st: State, ctx: Context) -> Step:
        if self.load:
            return Step(st, effect=Effect("load", self.load, st.lang, inputs=dict(st.inputs)))
        return self._follow(st, ctx)

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        if not result.ok:
            return fail(st, result, ctx, self.errors)
        st.data.update(result.data)
        return self._follow(st, ctx)

    def _follow(self, st: State, ctx: Context) -> Step:
        value = st.data.get(self.field, st.inputs.get(self.field, ""))
        target = route(self.ways, str(value)) or ctx.tree.error
        if self.fresh:
            st.history = []
        return enter(st, target, ctx)


@dataclass(frozen=True)
class End(Screen):
    id: str
    text: str
    load: str | None = None
    needs_pin: bool = False
    interactive: ClassVar[bool] = False

    def texts(self) -> list[str]:
        return [self.text]

    def finishes(self) -> bool:
        return True

    def compose(self, view: View) -> Shown:
        return Shown([view.t(self.text)], end=True)
