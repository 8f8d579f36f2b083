"""The USSD menu engine: screens declared as data, one pure step function.

A menu tree is a ``Tree`` of screens, each a frozen dataclass naming its text key (in
``ussd/catalogues``) and where it goes next. This module is the engine: what a session
keeps (``State``), what the shell performs (``Effect``, ``Result``), the ``Screen``
interface, and the moves every screen makes (forward, back, ask again, fail through
its flow's error table). The screen types are in ``ussd/screens.py``, each owning its
behaviour; ``ussd/checks.py`` validates a tree, one check per rule.

``step(state, text, ctx)`` is pure: it returns the new state and either the reply or
one ``Effect`` (load data / run an action) that the shell performs; the shell hands
the ``Result`` back with ``feed``. ``run_hop`` is that loop. Neither asks which type
a screen is: each screen answers for itself through the methods of ``Screen``.

PINs never enter the state: a PIN collected for a later action is kept as its
position in the gateway's ``text`` (which the gateway resends every hop) and read
back from the current ``text`` when the action runs.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

MAX_OPTIONS = 6  # choices a screen shows at once (a longer menu or list pages with 98)
MAX_INVALID = 3
MAX_SCREEN_CHARS = 160  # including the "CON " / "END " prefix
MAX_HISTORY = 20
MAX_INPUT_CHARS = 200  # longer input is refused before any parser sees it
MAX_CHOICES = 60  # a Choose offers at most this many items: numbers stay below 98
MAX_CHOICE_ID = 40  # characters of an item's id (it is kept in the session state)
BACK, HOME, MORE = "0", "00", "98"
PIN_DIGITS = 4

# GSM 03.38 basic character set (no escape-table characters, which count double).
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_NO_DECOMPOSITION = {"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ı": "i", "œ": "oe", "Œ": "OE"}


def gsm7_safe(text: str, max_len: int) -> str:
    """Data for a screen (a name, say) in GSM-7 and at most ``max_len`` characters:
    accents are dropped where GSM-7 lacks the letter, anything else becomes ``?``."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in GSM7 and ch not in "\r\n":
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if c in GSM7 and c.isalpha())
        out.append(base or _NO_DECOMPOSITION.get(ch, "?"))
    clean = "".join(out)
    return clean if len(clean) <= max_len else clean[: max_len - 2].rstrip() + ".."


class Invalid(Exception):
    """Raised by a prompt's parser: ``reason`` is a catalogue key shown above the prompt."""

    def __init__(self, reason: str, **data: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


# ------------------------------------------------------------ error tables

# A flow's error table: (result code, screen) pairs, declared once per flow and named by
# each of its screens that loads, checks or acts. A code is exact, ``prefix_*`` (every code
# with that prefix: ``limit_*`` is every M-Pesa limit) or ``*`` (anything else). Unlisted
# codes go to the tree's error screen.
Errors = tuple[tuple[str, str], ...]


def route(errors: Errors, code: str) -> str | None:
    """The screen ``errors`` sends ``code`` to: the exact code, else the longest matching
    ``prefix_*``, else ``*``; None when the table does not say."""
    table = dict(errors)
    if code in table:
        return table[code]
    prefixes = [k for k in table if k.endswith("*") and k != "*" and code.startswith(k[:-1])]
    if prefixes:
        return table[max(prefixes, key=len)]
    return table.get("*")


# ------------------------------------------------------------------ screens


class Screen:
    """What every screen type (``ussd/screens.py``) answers for itself.

    The engine calls these and never asks a screen's type: a new type is a new subclass.
    Screens are frozen dataclasses; the defaults here suit a screen that shows a text."""

    id: str
    needs_pin: bool
    load: str | None
    errors: Errors = ()  # the flow's table, for a screen that loads, checks or acts
    interactive: ClassVar[bool] = True  # waits for input (False: an END, an action)
    acts: ClassVar[bool] = False  # runs a verb (a Run): never from a replayed text

    # ---- the tree's shape (for ``validate`` and the fit test)

    def targets(self) -> list[str]:
        """Every screen this one can lead to."""
        return [target for _, target in self.errors]

    def texts(self) -> list[str]:
        """Every catalogue key this screen shows (besides reasons and navigation)."""
        return []

    def finishes(self) -> bool:
        """A flow may stop here (an END, a list, an information screen)."""
        return False

    # ---- one hop

    def arrive(self, st: State, ctx: Context) -> Step:
        """Entered (past the PIN gate): load what it shows, or show it."""
        if self.load:
            return Step(st, effect=Effect("load", self.load, st.lang, inputs=dict(st.inputs)))
        return show(st, ctx)

    def compose(self, view: View) -> Shown:
        raise ValueError(f"{self.id} is not a screen that can be shown")

    def handle(self, st: State, value: str, start: int, ctx: Context) -> Step:
        """The member's input (``0``, ``00`` and over-long input never get here)."""
        return invalid(st, "why_choice", ctx)

    def loaded(self, st: State, result: Result, ctx: Context) -> Step:
        """The shell performed this screen's effect."""
        if not result.ok:
            return fail(st, result, ctx, self.errors)
        st.data.update(result.data)
        return show(st, ctx)

    def follow(self, choice: str, ctx: Context) -> tuple[str, str | None] | None:
        """Where a direct-dial choice leads from here and the language it sets (menus
        only), else None."""
        return None


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

    def session_errors(self) -> dict[str, str]:
        """Failures that end the session whatever the flow (the PIN locked, blocked or
        never set): code -> the END that says so. They come before any flow's table."""
        return {
            "pin_locked": self.pin_locked,
            "pin_blocked": self.pin_blocked,
            "no_pin": self.no_pin,
        }


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
    # The ids of the items a Choose screen offered (in order), so the number typed on
    # the next hop picks what the member saw.
    choices: list[str] = field(default_factory=list)
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
        if (
            not isinstance(state.screen, str)
            or not isinstance(state.text_len, int)
            or not isinstance(state.choices, list)
        ):
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


@dataclass(frozen=True)
class View:
    """What a screen composes its text from: the state, the hop, and every value its
    texts may name (configured constants, typed inputs, loaded data)."""

    state: State
    ctx: Context
    data: Mapping[str, Any]

    def t(self, key: str, extra: Mapping[str, Any] | None = None) -> str:
        return self.ctx.render(key, self.state.lang, {**self.data, **(extra or {})})


@dataclass(frozen=True)
class Shown:
    """A screen's text as lines; ``footer`` (the "0 Back 00 Home" hint) is added only
    where it still fits."""

    lines: list[str]
    end: bool = False
    footer: str = ""


@dataclass(frozen=True)
class Paging:
    """Which slice of ``count`` items a page shows, ``per_page`` a screen."""

    page: int  # 0-based, clamped to the last page
    pages: int
    start: int
    stop: int

    @classmethod
    def of(cls, count: int, per_page: int, page: int) -> Paging:
        pages = max(1, -(-count // per_page))
        page = min(max(page, 0), pages - 1)
        return cls(page, pages, page * per_page, min(count, (page + 1) * per_page))

    @property
    def more(self) -> bool:
        return self.page + 1 < self.pages


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
                return show(st, ctx)
            return enter(st, ctx.root, ctx)
        return _replay(st, text.split("*"), ctx)
    st = copy.deepcopy(state)
    st.text, st.data, st.notice = text, {}, None
    if st.screen not in ctx.tree.screens or not ctx.tree[st.screen].interactive:
        return enter(reset(st), ctx.root, ctx)
    new = _new_input(st.text_len, text)
    if new is None:  # the gateway repeated the hop, or text no longer extends: show again
        return enter(st, st.screen, ctx)
    value, start = new
    st.text_len = len(text)
    return _handle(st, value, start, ctx)


def feed(state: State, result: Result, ctx: Context) -> Step:
    """Continue after the shell performed the effect of the previous ``Step``: the
    screen that asked for it takes the result."""
    return ctx.tree[state.screen].loaded(state, result, ctx)


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
    if not tree[state.screen].interactive:
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


def render_screen(state: State, ctx: Context) -> Reply:
    """The reply for the state's current screen, made safe for any phone."""
    end, text = compose(state, ctx)
    return Reply(end, fit(text))


def compose(state: State, ctx: Context) -> tuple[bool, str]:
    """(is END, text) of the current screen exactly as declared (the tree-walk test
    checks this, before ``fit`` could hide an overflow)."""
    view = View(state, ctx, {**ctx.base, **state.inputs, **state.data})
    lines = [view.t(*state.notice)] if state.notice is not None else []
    shown = ctx.tree[state.screen].compose(view)
    text = "\n".join(lines + shown.lines)
    # The "0 Back 00 Home" hint is shown where it fits; 0 and 00 work everywhere.
    if shown.footer and len(text) + 1 + len(shown.footer) <= MAX_SCREEN_CHARS - 4:
        text += "\n" + shown.footer
    return shown.end, text


def fit(text: str) -> str:
    """Last-resort guard: GSM-7 only and within the screen limit (the tree test keeps
    every declared screen inside it, so this only trims unexpected data)."""
    clean = "".join(c if c in GSM7 else "?" for c in text)
    room = MAX_SCREEN_CHARS - 4
    return clean if len(clean) <= room else clean[: room - 2].rstrip() + ".."


# ----------------------------------------------------- moves every screen makes


def go(st: State, target: str, ctx: Context) -> Step:
    """Move forward to ``target``, remembering the current screen for ``0``."""
    st.history = (st.history + [st.screen])[-MAX_HISTORY:]
    st.page, st.invalid, st.choices = 0, 0, []
    return enter(st, target, ctx)


def enter(st: State, target: str, ctx: Context) -> Step:
    """Arrive on ``target``: the session PIN first when it needs it and none was given."""
    scr = ctx.tree[target]
    if scr.needs_pin and not st.pin_ok:
        st.after_pin, st.screen = target, ctx.tree.pin
        return show(st, ctx)
    st.screen = target
    return scr.arrive(st, ctx)


def show(st: State, ctx: Context) -> Step:
    return Step(st, reply=render_screen(st, ctx))


def ask_pin(st: State, then: str, ctx: Context) -> Step:
    """The session PIN now, then ``then`` (``0`` on the PIN returns here)."""
    st.history.append(st.screen)
    st.after_pin, st.screen, st.invalid = then, ctx.tree.pin, 0
    return show(st, ctx)


def invalid(st: State, reason: str, ctx: Context, data: Mapping[str, Any] | None = None) -> Step:
    """The same screen again under ``reason``; the third wrong entry in a row ends."""
    st.invalid += 1
    if st.invalid >= MAX_INVALID:
        return enter(st, ctx.tree.too_many, ctx)
    st.notice = (reason, dict(data or {}))
    return enter(st, st.screen, ctx)


def fail(st: State, result: Result, ctx: Context, errors: Errors) -> Step:
    """A load, check or action failed: the session's own ends first (a locked PIN),
    then the flow's table, then the error screen. A waiting screen is shown again
    under ``why_<code>`` (the screen just answered counts it as a wrong entry; an
    earlier one forgets what it and later screens collected); an END just ends."""
    tree = ctx.tree
    st.data.update(result.data)
    end = tree.session_errors().get(result.error)
    target = end or route(errors, result.error) or tree.error
    notice = f"why_{result.error}"
    if not end and tree[target].interactive:
        if target == st.screen:
            return invalid(st, notice, ctx, result.data)
        st.notice = (notice, dict(result.data))
        rewind_to(st, target)
        st.invalid = 0
        return enter(st, target, ctx)
    st.secrets = {}
    return enter(st, target, ctx)


def rewind_to(st: State, target: str) -> None:
    """Going back to ``target`` to ask again: forget what it and later screens collected."""
    if target in st.history:
        st.history = st.history[: st.history.index(target)]
    own = [span for span in st.secrets.values() if span[0] == target]
    if own:
        cut = min(int(span[1]) for span in own)
        st.secrets = {k: v for k, v in st.secrets.items() if int(v[1]) < cut}


def reset(st: State) -> State:
    st.history, st.inputs, st.secrets, st.page, st.invalid = [], {}, {}, 0, 0
    st.after_pin, st.resume, st.choices = None, None, []
    return st


def secret(st: State, name: str) -> str:
    """A PIN collected earlier, read back from this hop's ``text``."""
    span = st.secrets.get(name)
    if not span:
        return ""
    return st.text[int(span[1]) : int(span[2])].strip()


def number(choice: str, count: int) -> int | None:
    """``choice`` as an option number from 1 to ``count``, else None."""
    choice = choice.strip()
    if choice.isascii() and choice.isdigit() and 1 <= int(choice) <= count:
        return int(choice)
    return None


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


def _handle(st: State, value: str, start: int, ctx: Context) -> Step:
    if value == HOME:
        return enter(reset(st), ctx.root, ctx)
    if value == BACK:
        st.page, st.invalid, st.after_pin, st.choices = 0, 0, None, []
        previous = st.history.pop() if st.history else ctx.root
        return enter(st, previous, ctx)
    if len(value) > MAX_INPUT_CHARS:
        return invalid(st, "why_too_long", ctx)
    if st.screen == ctx.tree.resume:
        return _answer_resume(st, value, ctx)
    return ctx.tree[st.screen].handle(st, value, start, ctx)


def _answer_resume(st: State, value: str, ctx: Context) -> Step:
    choice = value.strip()
    saved, st.resume = st.resume or {}, None
    target = str(saved.get("screen", ""))
    if (
        choice == "1"
        and target in ctx.tree.screens
        and ctx.tree[target].interactive
        and target != ctx.tree.pin
    ):
        st.history = [str(s) for s in saved.get("history", []) if s in ctx.tree.screens]
        st.inputs = {str(k): str(v) for k, v in dict(saved.get("inputs", {})).items()}
        st.lang = str(saved.get("lang", st.lang))
        st.origin = str(saved.get("origin") or st.origin)
        runs = saved.get("runs", 0)
        st.runs = runs if isinstance(runs, int) else 0
        st.invalid = 0
        return enter(st, target, ctx)
    if choice in ("1", "2"):
        st.lang = ctx.language
        return enter(reset(st), ctx.root, ctx)
    st.resume = saved
    return invalid(st, "why_choice", ctx)


def _replay(st: State, parts: Sequence[str], ctx: Context) -> Step:
    """A first hop that already carries input (a direct-dial shortcut, or a session
    whose state expired): follow plain menu choices only, and stop at the first
    screen that would take a PIN, a confirmation, free input or run an action."""
    tree = ctx.tree
    for part in parts:
        if st.screen == tree.resume:
            break
        chosen = tree[st.screen].follow(part, ctx)  # None: not a menu, or not its number
        if chosen is None:
            break
        goto, lang = chosen
        target = tree[goto]
        if target.acts:  # never run an action from a replayed text
            break
        if lang:
            st.lang = lang
        st.history.append(st.screen)
        if target.needs_pin and not st.pin_ok:
            st.after_pin, st.screen = goto, tree.pin
            break
        st.screen = goto
    return enter(st, st.screen, ctx)
