"""The USSD menu engine: screens declared as data, one pure step function.

A menu tree is a ``Tree`` of screens, each a frozen dataclass naming its text
key (in ``ussd/catalogues``) and where it goes next:

* ``Menu``: numbered options (at most 6); an option may need a self-service
  feature (``core.members.access``) and may set the session language. A menu without
  options is an information screen (balances) with ``0`` back.
* ``Prompt``: free input, checked by a parser that returns the normalised
  value or raises ``Invalid(reason_key)``; the value lands in ``inputs``.
  ``check="loader"`` also checks it against data (an amount against the
  SACCO's limits and the balance): a refusal listed in ``refusals`` asks
  again under ``why_<code>``.
* ``PinPrompt``: 4 digits. ``mode="verify"`` is the session PIN check (one
  screen per tree, ``Tree.pin``); ``collect`` takes a PIN for a later action
  (the old PIN of a PIN change; with ``digits=6`` and its own ``format_reason``
  the one-time code of a PIN reset); ``new`` checks the PIN policy;
  ``same_as`` asks for it again and compares.
* ``Confirm``: shows what will happen (amount, fee, total, destination) with
  ``1`` confirm / ``2`` cancel; confirming asks the session PIN first when it
  has not been given yet, then goes to ``yes`` (normally a ``Run``).
* ``Run``: not shown; calls one action (a verb in ``core/`` through
  ``ussd/actions.py``) and goes to ``ok`` or to ``errors[code]``.
* ``Page``: a list loaded by a loader, shown ``per_page`` items a screen,
  ``98`` for more.
* ``End``: the last screen (``END``).

``step(state, text, ctx)`` is pure: it returns the new state and either the
reply or one ``Effect`` (load data / run an action) that the shell performs;
the shell hands the ``Result`` back with ``feed``. ``run_hop`` is that loop.

PINs never enter the state: a PIN collected for a later action is kept as its
position in the gateway's ``text`` (which the gateway resends every hop) and
read back from the current ``text`` when the action runs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from core.kernel.pins import pin_weakness

MAX_OPTIONS = 6
MAX_INVALID = 3
MAX_SCREEN_CHARS = 160  # including the "CON " / "END " prefix
MAX_HISTORY = 20
MAX_INPUT_CHARS = 200  # longer input is refused before any parser sees it
BACK, HOME, MORE = "0", "00", "98"
PIN_DIGITS = 4

# GSM 03.38 basic character set (no escape-table characters, which count double).
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


class Invalid(Exception):
    """Raised by a prompt's parser: ``reason`` is a catalogue key shown above the prompt."""

    def __init__(self, reason: str, **data: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


# ------------------------------------------------------------------ screens


@dataclass(frozen=True)
class Option:
    label: str  # catalogue key, e.g. "menu_balances"
    goto: str
    feature: str | None = None  # shown only when the member has this feature
    lang: str | None = None  # choosing it switches the session language


@dataclass(frozen=True)
class Menu:
    id: str
    text: str
    options: tuple[Option, ...] = ()
    load: str | None = None
    needs_pin: bool = False
    notes: tuple[tuple[str, str], ...] = ()  # (member status, catalogue key) shown on top


Parser = Callable[[str, "Context"], str]


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    field: str
    parse: Parser
    goto: str
    load: str | None = None
    needs_pin: bool = False
    # A loader that checks the parsed value against data (limits, balance) before going
    # on: a failure whose code is in ``refusals`` re-asks under ``why_<code>``; any
    # other failure ends with the error screen.
    check: str | None = None
    refusals: tuple[str, ...] = ()


@dataclass(frozen=True)
class PinPrompt:
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


@dataclass(frozen=True)
class Confirm:
    id: str
    text: str
    yes: str
    no: str = ""  # empty: the tree's "cancelled" end
    load: str | None = None
    ask_pin: bool = True  # after "1", the session PIN is asked unless already given
    # (code, screen): the loaded quote refused (the balance changed meanwhile, a resumed
    # flow): back to that screen under ``why_<code>``; other failures: the error screen.
    load_errors: tuple[tuple[str, str], ...] = ()
    # PIN before the screen is even shown: only for a confirmation whose quote itself
    # reveals money (a withdrawal: "Not enough savings: KES 987 available").
    needs_pin: bool = False


@dataclass(frozen=True)
class Run:
    id: str
    action: str
    ok: str
    errors: tuple[tuple[str, str], ...] = (("*", ""),)  # (error code or "*", screen; "" = error)
    secrets: tuple[str, ...] = ()
    needs_pin: bool = False
    load: str | None = None

    def on_error(self, code: str) -> str:
        table = dict(self.errors)
        return table.get(code) or table.get("*") or ""


@dataclass(frozen=True)
class Page:
    id: str
    text: str  # title, gets {page} and {pages}
    item: str  # one line per item, rendered with the item's fields
    empty: str
    load: str
    per_page: int = 3
    needs_pin: bool = False


@dataclass(frozen=True)
class End:
    id: str
    text: str
    load: str | None = None
    needs_pin: bool = False


Screen = Menu | Prompt | PinPrompt | Confirm | Run | Page | End
INTERACTIVE = (Menu, Prompt, PinPrompt, Confirm, Page)


@dataclass(frozen=True)
class Tree:
    screens: Mapping[str, Screen]
    roots: tuple[str, ...]  # every screen a session may start on
    pin: str = "pin"  # the session PIN screen (PinPrompt, mode="verify")
    resume: str = "resume"  # the "continue where you left off?" menu
    too_many: str = "too_many"
    cancelled: str = "cancelled"
    error: str = "error"
    pin_locked: str = "pin_locked"
    pin_blocked: str = "pin_blocked"
    no_pin: str = "no_pin"
    throttled: str = "too_fast"  # the END for a phone over its hop rate limit (ussd/views.py)

    def __getitem__(self, screen_id: str) -> Screen:
        return self.screens[screen_id]

    def specials(self) -> tuple[str, ...]:
        return (
            self.pin,
            self.resume,
            self.too_many,
            self.cancelled,
            self.error,
            self.pin_locked,
            self.pin_blocked,
            self.no_pin,
            self.throttled,
        )


# -------------------------------------------------------- state and effects


@dataclass
class State:
    """What a session remembers between hops (JSON in the store). Never a PIN."""

    screen: str
    lang: str = "en"
    history: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    # secret name -> [screen id, start, end] in the gateway's text
    secrets: dict[str, list[Any]] = field(default_factory=dict)
    page: int = 0
    invalid: int = 0
    pin_ok: bool = False
    after_pin: str | None = None
    text_len: int = 0
    # The session a flow began in and how many actions ran since: an action's
    # idempotency key, kept across "continue where you left off", so a resumed
    # flow can never run its action a second time.
    origin: str = ""
    runs: int = 0
    resume: dict[str, Any] | None = None
    # Who is calling, as ``ussd.service`` looked it up on the session's first hop
    # (phone, member id, status, language, PIN reset open); the engine ignores it.
    caller: list[Any] | None = None
    # Transient, never stored: this hop's text, loaded data, the notice line.
    text: str = field(default="", repr=False, metadata={"transient": True})  # holds PINs
    data: dict[str, Any] = field(default_factory=dict, metadata={"transient": True})
    notice: tuple[str, dict[str, Any]] | None = field(default=None, metadata={"transient": True})
    checking: bool = field(default=False, metadata={"transient": True})  # a Prompt.check runs

    def to_json(self) -> str:
        return json.dumps(
            {
                f.name: getattr(self, f.name)
                for f in fields(self)
                if not f.metadata.get("transient")
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> State | None:
        """The stored state, or None when absent or unreadable (treated as expired)."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            names = {f.name for f in fields(cls) if not f.metadata.get("transient")}
            state = cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError):
            return None
        if not isinstance(state.screen, str) or not isinstance(state.text_len, int):
            return None
        return state


@dataclass(frozen=True)
class Effect:
    """Work for the shell: ``load`` reads data for a screen, ``act`` runs a verb."""

    kind: Literal["load", "act"]
    name: str
    lang: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    key: str = ""  # idempotency key for actions: session id + screen id


@dataclass(frozen=True)
class Result:
    ok: bool
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class Reply:
    end: bool
    text: str

    @property
    def body(self) -> str:
        return ("END " if self.end else "CON ") + self.text


@dataclass(frozen=True)
class Step:
    state: State
    reply: Reply | None = None
    effect: Effect | None = None


@dataclass(frozen=True)
class Context:
    """What the engine knows about this hop besides the state (all plain values)."""

    tree: Tree
    render: Callable[[str, str, Mapping[str, Any]], str]  # (key, language, data) -> text
    root: str
    session_id: str = ""
    msisdn: str = ""
    status: str | None = None  # None for an unregistered phone
    features: frozenset[str] = frozenset()
    language: str = "en"  # the member's language, or the default
    base: Mapping[str, Any] = field(default_factory=dict)  # sacco, help_phone, ...
    resume: Mapping[str, Any] | None = None  # an offer to continue, first hop only


# --------------------------------------------------------------- the engine


def step(state: State | None, text: str, ctx: Context) -> Step:
    """One hop: the stored state (None on a first hop or expired state) and ``text``."""
    text = text if isinstance(text, str) else ""
    if state is None:
        st = State(
            screen=ctx.root,
            lang=ctx.language,
            text=text,
            text_len=len(text),
            origin=ctx.session_id,
        )
        if text == "":
            if ctx.resume:
                st.resume = dict(ctx.resume)
                st.lang = str(ctx.resume.get("lang") or st.lang)  # asked in the flow's language
                st.screen = ctx.tree.resume
                return _show(st, ctx)
            return _enter(st, ctx.root, ctx)
        return _replay(st, text.split("*"), ctx)
    st = copy.deepcopy(state)
    st.text, st.data, st.notice = text, {}, None
    if st.screen not in ctx.tree.screens or not isinstance(ctx.tree[st.screen], INTERACTIVE):
        return _enter(_reset(st), ctx.root, ctx)
    new = _new_input(st.text_len, text)
    if new is None:  # the gateway repeated the hop, or text no longer extends: show again
        return _enter(st, st.screen, ctx)
    value, start = new
    st.text_len = len(text)
    return _handle(st, value, start, ctx)


def feed(state: State, result: Result, ctx: Context) -> Step:
    """Continue after the shell performed the effect of the previous ``Step``."""
    st = state
    tree = ctx.tree
    scr = tree[st.screen]
    if st.screen == tree.pin:  # the session PIN check came back
        if result.ok:
            st.pin_ok = True
            target, st.after_pin = st.after_pin or ctx.root, None
            return _enter(st, target, ctx)
        return _pin_failure(st, result, ctx, retry=tree.pin)
    if isinstance(scr, Prompt) and st.checking:  # the prompt's check came back
        st.checking = False
        if result.ok:
            st.data.update(result.data)
            return _go(st, scr.goto, ctx)
        st.inputs.pop(scr.field, None)
        if result.error in scr.refusals:
            return _invalid(st, f"why_{result.error}", ctx, result.data)
        return _enter(st, tree.error, ctx)
    if isinstance(scr, Run):
        st.data.update(result.data)
        if result.ok:
            st.inputs, st.secrets = {}, {}
            st.runs += 1
            return _enter(st, scr.ok, ctx)
        if result.error in ("pin_locked", "pin_blocked", "no_pin"):
            st.secrets = {}
            return _pin_failure(st, result, ctx, retry="")
        target = scr.on_error(result.error) or tree.error
        if isinstance(tree[target], INTERACTIVE):
            st.notice = (f"why_{result.error}", dict(result.data))
            _rewind_to(st, target)
        else:
            st.secrets = {}
        return _enter(st, target, ctx)
    if not result.ok:
        back = dict(scr.load_errors).get(result.error) if isinstance(scr, Confirm) else None
        if back and isinstance(tree[back], INTERACTIVE):
            st.notice = (f"why_{result.error}", dict(result.data))
            _rewind_to(st, back)
            st.invalid = 0
            return _enter(st, back, ctx)
        return _enter(st, tree.error, ctx)
    st.data.update(result.data)
    if isinstance(scr, Page):  # "98" past the last page stays on the last page
        pages = max(1, -(-len(list(st.data.get("items") or [])) // scr.per_page))
        st.page = min(st.page, pages - 1)
    return _show(st, ctx)


def run_hop(
    state: State | None, text: str, ctx: Context, perform: Callable[[Effect], Result]
) -> tuple[State, Reply]:
    """``step`` then ``feed`` until the engine has a reply (the impure loop, ten lines)."""
    out = step(state, text, ctx)
    for _ in range(10):
        if out.reply is not None:
            return out.state, out.reply
        assert out.effect is not None
        out = feed(out.state, perform(out.effect), ctx)
    raise RuntimeError("menu tree loops through effects")  # validate() prevents this


def resume_point(state: State, tree: Tree, root: str) -> dict[str, Any] | None:
    """Where a dropped session may continue, or None when nothing is worth resuming.

    Only a multi-step flow with something typed is resumable. A flow that had
    collected a PIN restarts at the screen that asked for it (PINs are not kept),
    keeping everything typed before it.
    """
    if state.screen not in tree.screens or state.screen in (root, tree.resume):
        return None
    if not state.inputs:  # nothing typed but menu choices (and PINs, never kept)
        return None
    if not isinstance(tree[state.screen], INTERACTIVE):
        return None
    screen, history = state.screen, list(state.history)
    if screen == tree.pin:  # back to the screen that led to the PIN (never into an action)
        screen = history.pop() if history else root
    if state.secrets:
        first = min(state.secrets.values(), key=lambda s: int(s[1]))
        screen = str(first[0])
        if screen in history:
            history = history[: history.index(screen)]
    if screen == root:
        return None
    return {
        "screen": screen,
        "history": history,
        "inputs": dict(state.inputs),
        "lang": state.lang,
        "origin": state.origin,
        "runs": state.runs,
    }


def visible_options(menu: Menu, ctx: Context) -> list[Option]:
    return [o for o in menu.options if o.feature is None or o.feature in ctx.features]


def render_screen(state: State, ctx: Context) -> Reply:
    """The reply for the state's current screen, made safe for any phone."""
    end, text = compose(state, ctx)
    return Reply(end, fit(text))


def compose(state: State, ctx: Context) -> tuple[bool, str]:
    """(is END, text) of the current screen exactly as declared (the tree-walk test
    checks this, before ``fit`` could hide an overflow)."""
    tree, lang = ctx.tree, state.lang
    scr = tree[state.screen]
    data: dict[str, Any] = {**ctx.base, **state.inputs, **state.data}

    def t(key: str, extra: Mapping[str, Any] | None = None) -> str:
        return ctx.render(key, lang, {**data, **(extra or {})})

    lines: list[str] = []
    if state.notice is not None:
        lines.append(t(state.notice[0], state.notice[1]))
    footer: list[str] = []
    end = False
    if isinstance(scr, Menu):
        if scr.text:
            lines.append(t(scr.text))
        note = dict(scr.notes).get(ctx.status or "")
        if note:
            lines.append(t(note))
        for n, opt in enumerate(visible_options(scr, ctx), start=1):
            lines.append(f"{n}. {t(opt.label)}")
        if state.screen not in tree.roots and state.screen != tree.resume:
            footer.append(t("nav_back"))
    elif isinstance(scr, Confirm):
        lines += [t(scr.text), f"1. {t('opt_confirm')}", f"2. {t('opt_cancel')}"]
    elif isinstance(scr, Page):
        items = list(data.get("items") or [])
        pages = max(1, -(-len(items) // scr.per_page))
        page = min(state.page, pages - 1)
        lines.append(t(scr.text, {"page": page + 1, "pages": pages}))
        chunk = items[page * scr.per_page : (page + 1) * scr.per_page]
        lines += [t(scr.item, item) for item in chunk] or [t(scr.empty)]
        if page + 1 < pages:
            lines.append(t("nav_more"))
        footer.append(t("nav_back"))
    elif isinstance(scr, End):
        lines.append(t(scr.text))
        end = True
    elif isinstance(scr, Prompt | PinPrompt):
        lines.append(t(scr.text))
    else:  # a Run is never shown: reaching here is a bug in the tree
        raise ValueError(f"{state.screen} is not a screen that can be shown")
    text = "\n".join(lines)
    # The "0 Back 00 Home" hint is shown where it fits; 0 and 00 work everywhere.
    if footer and len(text) + 1 + len(footer[0]) <= MAX_SCREEN_CHARS - 4:
        text += "\n" + footer[0]
    return end, text


def fit(text: str) -> str:
    """Last-resort guard: GSM-7 only and within the screen limit (the tree test keeps
    every declared screen inside it, so this only trims unexpected data)."""
    clean = "".join(c if c in GSM7 else "?" for c in text)
    room = MAX_SCREEN_CHARS - 4
    return clean if len(clean) <= room else clean[: room - 2].rstrip() + ".."


# ------------------------------------------------------------------ helpers


def _new_input(prev_len: int, text: str) -> tuple[str, int] | None:
    """What ``text`` added since the previous hop, and where it starts in ``text``."""
    if len(text) <= prev_len:
        return None
    if prev_len == 0:  # "*00" after an empty first input that left text ""
        return (text[1:], 1) if text.startswith("*") else (text, 0)
    if text[prev_len] != "*":
        return None
    return text[prev_len + 1 :], prev_len + 1


def _rewind_to(st: State, target: str) -> None:
    """Going back to ``target`` to ask again: forget what it and later screens collected."""
    if target in st.history:
        st.history = st.history[: st.history.index(target)]
    own = [span for span in st.secrets.values() if span[0] == target]
    if own:
        cut = min(int(span[1]) for span in own)
        st.secrets = {k: v for k, v in st.secrets.items() if int(v[1]) < cut}


def _reset(st: State) -> State:
    st.history, st.inputs, st.secrets, st.page, st.invalid = [], {}, {}, 0, 0
    st.after_pin, st.resume = None, None
    return st


def _handle(st: State, value: str, start: int, ctx: Context) -> Step:
    tree = ctx.tree
    scr = tree[st.screen]
    if value == HOME:
        return _enter(_reset(st), ctx.root, ctx)
    if value == BACK:
        st.page, st.invalid, st.after_pin = 0, 0, None
        previous = st.history.pop() if st.history else ctx.root
        return _enter(st, previous, ctx)
    if len(value) > MAX_INPUT_CHARS:
        return _invalid(st, "why_too_long", ctx)
    if st.screen == tree.resume:
        return _answer_resume(st, value, ctx)
    if isinstance(scr, Menu):
        options = visible_options(scr, ctx)
        choice = value.strip()
        if not (choice.isascii() and choice.isdigit() and 1 <= int(choice) <= len(options)):
            return _invalid(st, "why_choice", ctx)
        option = options[int(choice) - 1]
        if option.lang:
            st.lang = option.lang
        return _go(st, option.goto, ctx)
    if isinstance(scr, Prompt):
        try:
            st.inputs[scr.field] = scr.parse(value, ctx)
        except Invalid as exc:
            return _invalid(st, exc.reason, ctx, exc.data)
        if scr.check:
            st.checking = True
            return Step(st, effect=Effect("load", scr.check, st.lang, inputs=dict(st.inputs)))
        return _go(st, scr.goto, ctx)
    if isinstance(scr, PinPrompt):
        return _pin_input(st, scr, value, start, ctx)
    if isinstance(scr, Confirm):
        choice = value.strip()
        if choice == "1":
            if scr.ask_pin and not st.pin_ok:
                st.history.append(st.screen)
                st.after_pin = scr.yes
                st.screen = tree.pin
                st.invalid = 0
                return _show(st, ctx)
            return _go(st, scr.yes, ctx)
        if choice == "2":
            return _go(st, scr.no or tree.cancelled, ctx)
        return _invalid(st, "why_choice", ctx)
    if isinstance(scr, Page) and value.strip() == MORE:
        st.page += 1
        st.invalid = 0
        return _enter(st, st.screen, ctx)
    return _invalid(st, "why_choice", ctx)


def _pin_input(st: State, scr: PinPrompt, value: str, start: int, ctx: Context) -> Step:
    pin = value.strip()
    if not (pin.isascii() and pin.isdigit() and len(pin) == scr.digits):
        return _invalid(st, scr.format_reason, ctx)
    if scr.mode == "verify":
        st.invalid = 0
        return Step(st, effect=Effect("act", "verify_pin", st.lang, secrets={"pin": pin}))
    if scr.mode == "new":
        if scr.same_as:
            if _secret(st, scr.same_as) != pin:
                first = st.secrets.pop(scr.same_as, [scr.id])[0]
                st.notice = ("why_pin_mismatch", {})
                st.invalid += 1
                if st.invalid >= MAX_INVALID:
                    return _enter(st, ctx.tree.too_many, ctx)
                if first in st.history:
                    st.history = st.history[: st.history.index(first)]
                return _enter(st, first, ctx)
        else:
            weakness = _pin_weakness(pin, ctx)
            if weakness:
                return _invalid(st, f"why_pin_{weakness}", ctx)
            st.secrets[scr.field] = [scr.id, start, start + len(value)]
    else:  # collect
        st.secrets[scr.field] = [scr.id, start, start + len(value)]
    return _go(st, scr.goto, ctx)


def _pin_weakness(pin: str, ctx: Context) -> str | None:
    return pin_weakness(pin, ctx.msisdn or None)  # the PIN policy lives in core, once


def _secret(st: State, name: str) -> str:
    span = st.secrets.get(name)
    if not span:
        return ""
    return st.text[int(span[1]) : int(span[2])].strip()


def _answer_resume(st: State, value: str, ctx: Context) -> Step:
    choice = value.strip()
    saved, st.resume = st.resume or {}, None
    target = str(saved.get("screen", ""))
    if (
        choice == "1"
        and target in ctx.tree.screens
        and isinstance(ctx.tree[target], INTERACTIVE)
        and target != ctx.tree.pin
    ):
        st.history = [str(s) for s in saved.get("history", []) if s in ctx.tree.screens]
        st.inputs = {str(k): str(v) for k, v in dict(saved.get("inputs", {})).items()}
        st.lang = str(saved.get("lang", st.lang))
        st.origin = str(saved.get("origin") or st.origin)
        runs = saved.get("runs", 0)
        st.runs = runs if isinstance(runs, int) else 0
        st.invalid = 0
        return _enter(st, target, ctx)
    if choice in ("1", "2"):
        st.lang = ctx.language
        return _enter(_reset(st), ctx.root, ctx)
    st.resume = saved
    return _invalid(st, "why_choice", ctx)


def _go(st: State, target: str, ctx: Context) -> Step:
    """Move forward to ``target``, remembering the current screen for ``0``."""
    st.history = (st.history + [st.screen])[-MAX_HISTORY:]
    st.page, st.invalid = 0, 0
    return _enter(st, target, ctx)


def _enter(st: State, target: str, ctx: Context) -> Step:
    tree = ctx.tree
    scr = tree[target]
    if scr.needs_pin and not st.pin_ok:
        st.after_pin, st.screen = target, tree.pin
        return _show(st, ctx)
    st.screen = target
    if isinstance(scr, Run):
        return Step(
            st,
            effect=Effect(
                "act",
                scr.action,
                st.lang,
                inputs=dict(st.inputs),
                secrets={name: _secret(st, name) for name in scr.secrets},
                key=f"ussd:{st.origin or ctx.session_id}:{st.runs}:{scr.id}",
            ),
        )
    if scr.load:
        return Step(st, effect=Effect("load", scr.load, st.lang, inputs=dict(st.inputs)))
    return _show(st, ctx)


def _show(st: State, ctx: Context) -> Step:
    return Step(st, reply=render_screen(st, ctx))


def _invalid(st: State, reason: str, ctx: Context, data: Mapping[str, Any] | None = None) -> Step:
    st.invalid += 1
    if st.invalid >= MAX_INVALID:
        return _enter(st, ctx.tree.too_many, ctx)
    st.notice = (reason, dict(data or {}))
    return _enter(st, st.screen, ctx)


def _pin_failure(st: State, result: Result, ctx: Context, *, retry: str) -> Step:
    tree = ctx.tree
    st.data.update(result.data)
    if result.error == "pin_invalid" and retry:
        st.notice = ("why_pin_invalid", dict(result.data))
        st.screen = retry
        return _show(st, ctx)
    end = {
        "pin_locked": tree.pin_locked,
        "pin_blocked": tree.pin_blocked,
        "no_pin": tree.no_pin,
    }.get(result.error, tree.error)
    return _enter(st, end, ctx)


def _replay(st: State, parts: Sequence[str], ctx: Context) -> Step:
    """A first hop that already carries input (a direct-dial shortcut, or a session
    whose state expired): follow plain menu choices only, and stop at the first
    screen that would take a PIN, a confirmation, free input or run an action."""
    tree = ctx.tree
    for part in parts:
        scr = tree[st.screen]
        if not isinstance(scr, Menu) or st.screen == tree.resume:
            break
        options = visible_options(scr, ctx)
        choice = part.strip()
        if not (choice.isascii() and choice.isdigit() and 1 <= int(choice) <= len(options)):
            break
        option = options[int(choice) - 1]
        target = tree[option.goto]
        if isinstance(target, Run):
            break
        if option.lang:
            st.lang = option.lang
        st.history.append(st.screen)
        if target.needs_pin and not st.pin_ok:
            st.after_pin, st.screen = target.id, tree.pin
            break
        st.screen = target.id
        if not isinstance(target, Menu):
            break
    return _enter(st, st.screen, ctx)


# --------------------------------------------------------------- validation


def _targets(scr: Screen) -> list[str]:
    if isinstance(scr, Menu):
        return [o.goto for o in scr.options]
    if isinstance(scr, Prompt):
        return [scr.goto]
    if isinstance(scr, PinPrompt):
        return [scr.goto] if scr.mode != "verify" else []
    if isinstance(scr, Confirm):
        return [scr.yes] + ([scr.no] if scr.no else []) + [t for _, t in scr.load_errors]
    if isinstance(scr, Run):
        return [scr.ok] + [target for _, target in scr.errors if target]
    return []


def _keys(scr: Screen) -> list[str]:
    keys = [] if isinstance(scr, Run) else [scr.text]
    if isinstance(scr, PinPrompt):
        keys.append(scr.format_reason)
    if isinstance(scr, Menu):
        keys += [o.label for o in scr.options] + [key for _, key in scr.notes]
    if isinstance(scr, Page):
        keys += [scr.item, scr.empty]
    return [k for k in keys if k]


def validate(tree: Tree, catalogue_keys: set[str] | None = None) -> list[str]:
    """Problems with a tree as a whole: every goto exists, every screen is reachable,
    every input path can reach an end, menus have at most 6 distinct options,
    and (given the catalogue's keys) every text key exists."""
    problems: list[str] = []
    screens = tree.screens
    for sid, scr in screens.items():
        if scr.id != sid:
            problems.append(f"{sid}: declared under another id ({scr.id})")
        for target in _targets(scr):
            if target not in screens:
                problems.append(f"{sid}: goes to unknown screen {target!r}")
        if isinstance(scr, Menu):
            if len(scr.options) > MAX_OPTIONS:
                problems.append(f"{sid}: {len(scr.options)} options (max {MAX_OPTIONS})")
            labels = [o.label for o in scr.options]
            if len(set(labels)) != len(labels):
                problems.append(f"{sid}: two options with the same label")
        if (
            isinstance(scr, PinPrompt)
            and scr.mode != "verify"
            and not scr.field
            and not scr.same_as
        ):
            problems.append(f"{sid}: a {scr.mode} PIN prompt needs a field")
        if isinstance(scr, PinPrompt) and scr.digits != PIN_DIGITS and scr.mode != "collect":
            problems.append(f"{sid}: only a collecting PIN prompt takes other than 4 digits")
        if isinstance(scr, Run):
            for name in scr.secrets:
                if not any(isinstance(s, PinPrompt) and s.field == name for s in screens.values()):
                    problems.append(f"{sid}: secret {name!r} is collected by no screen")
        if catalogue_keys is not None:
            problems += [
                f"{sid}: missing text {k!r}" for k in _keys(scr) if k not in catalogue_keys
            ]
    for special in tree.specials() + tree.roots:
        if special not in screens:
            problems.append(f"missing special screen {special!r}")
    if any("unknown screen" in p or "missing special" in p for p in problems):
        return problems  # the walks below need every target to exist
    pin = screens[tree.pin]
    if not (isinstance(pin, PinPrompt) and pin.mode == "verify"):
        problems.append(f"{tree.pin}: must be a PinPrompt with mode='verify'")
    for root in tree.roots:
        first = screens[root]
        # A collecting PIN prompt may open a flow (the reset code of a PIN reset).
        collects = isinstance(first, PinPrompt) and first.mode == "collect"
        if not (isinstance(first, Menu | End) or collects) or first.needs_pin:
            problems.append(f"{root}: a root must be a Menu, End or collecting PinPrompt")
    # reachability from the roots (specials are reached by the engine itself)
    seen: set[str] = set()
    todo = [*tree.roots, *tree.specials()]
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        todo += _targets(screens[sid])
    problems += [f"{sid}: unreachable" for sid in screens if sid not in seen]
    # every screen can reach an End (0/00 always lead home, but a flow must finish)
    ends = {sid for sid, s in screens.items() if isinstance(s, End)}
    finishing = set(ends)
    changed = True
    while changed:
        changed = False
        for sid, scr in screens.items():
            if sid in finishing:
                continue
            targets = _targets(scr)
            if (
                any(t in finishing for t in targets)
                or isinstance(scr, Page)
                or (isinstance(scr, Menu) and not scr.options)
                or (isinstance(scr, PinPrompt) and scr.mode == "verify")
            ):
                finishing.add(sid)
                changed = True
    problems += [f"{sid}: no path to an end" for sid in screens if sid not in finishing]
    # Runs must not chain into Runs with no screen between (one action per hop)
    for sid, scr in screens.items():
        if isinstance(scr, Run):
            for target in _targets(scr):
                if isinstance(screens[target], Run):
                    problems.append(f"{sid}: runs straight into another action {target}")
    return problems
