"""One USSD hop end to end, without Flask: who is calling, the stored state, the
engine, the effects through ``core/``, and what to keep for the next hop.

The view (``ussd/views.py``) only parses the form and writes the response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.kernel.deps import DEFAULT_SACCO_NAME
from core.kernel.errors import InvalidInput
from core.kernel.i18n import LANGUAGES
from core.kernel.identity import normalize_msisdn
from core.members import access
from core.members.exit import ExitPolicy
from core.messaging.ussd_sessions import record_session_end
from runtime import Runtime
from ussd import actions
from ussd.engine import Context, Reply, State, Tree, resume_point, run_hop
from ussd.gateway import parse_session_end
from ussd.menus import MPESA, TREE, root_for
from ussd.store import Store, Window, member_key, resume_key, session_key
from ussd.texts import gsm7_safe, render

MAX_SESSION_ID = 100
MONEY_FEATURES = frozenset({access.DEPOSIT, access.WITHDRAW})  # need M-Pesa configured
MAX_TEXT = 20_000  # longer text is cut before the engine sees it (the gateway never sends it)


@dataclass(frozen=True)
class UssdConfig:
    sacco_name: str = DEFAULT_SACCO_NAME
    help_phone: str = "0700 000 000"
    terms_url: str = "umoja.example/terms"
    sms_code: str = "22384"
    service_code: str = ""  # empty: any service code is served
    session_ttl_seconds: int = 180
    resume_ttl_seconds: int = 120
    rate_limits: tuple[Window, ...] = ()  # hops per phone (``USSD_RATE_LIMIT``); none: ()


@dataclass(frozen=True)
class HopOutcome:
    body: str  # "CON ..." / "END ..."
    screen: str  # for the request log
    end: bool
    throttled: str | None = None  # the phone's hop budget was spent: the window's limit


# Longest each configured value may be on a screen (longer values are cut with ".."):
# the tree-walk test proves every screen fits with values this long.
CONSTANT_LIMITS = {"sacco": 24, "help_phone": 16, "terms_url": 24, "sms_code": 8}


def screen_constants(config: UssdConfig) -> dict[str, str]:
    """The configured values screens show, GSM-7 and cut to ``CONSTANT_LIMITS``."""
    values = {
        "sacco": config.sacco_name,
        "help_phone": config.help_phone,
        "terms_url": config.terms_url,
        "sms_code": config.sms_code,
    }
    return {k: gsm7_safe(v, CONSTANT_LIMITS[k]) for k, v in values.items()}


class UssdService:
    def __init__(
        self,
        runtime: Runtime,
        store: Store,
        config: UssdConfig,
        tree: Tree = TREE,
        money: actions.MoneyPorts | None = None,
        exit_policy: ExitPolicy | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.config = config
        self.tree = tree
        # The M-Pesa policy, SIM-swap checker and job queue (the composition root hands
        # over the M-Pesa context); without them Deposit and Withdraw are not offered.
        self.money = money
        self.exit_policy = exit_policy or ExitPolicy()  # the by-laws' (settings)
        self.base: Mapping[str, Any] = screen_constants(config)

    def features(self, caller: access.Caller | None) -> frozenset[str]:
        if caller is None:
            return frozenset()
        if self.money is None:
            return caller.features - MONEY_FEATURES
        features = caller.features | {MPESA}  # the channel's: options that need M-Pesa
        # Deposit is an STK push: not offered without M-Pesa Express (loan repayments
        # then show the paybill, ``ussd.actions._repay_mpesa_way``).
        return features if self.money.stk else features - {access.DEPOSIT}

    # ------------------------------------------------------------------ hops

    def service_code_ok(self, code: str) -> bool:
        """The configured code, or a direct-dial extension of it (``*384*44135*1#``)."""
        want = self.config.service_code.strip()
        code = code.strip()
        return not want or code == want or code.startswith(want.removesuffix("#") + "*")

    def refuse(self, reason: str = "error") -> HopOutcome:
        """A polite END for a hop we cannot serve; ``reason`` goes to the request log."""
        text = render("error", "en", self.base)
        return HopOutcome(Reply(True, text).body, f"refused:{reason}", True)

    def throttled(self, session_id: str, state: State | None, limit: Window) -> HopOutcome:
        """The END for a phone over its hop budget, in the session's language (English
        when the session has no state yet), never the database. The session's state goes
        with it (the gateway closes the session on END)."""
        self.store.delete(session_key(session_id))
        lang = state.lang if state is not None and state.lang in LANGUAGES else "en"
        text = render(self.tree.throttled, lang, self.base)
        return HopOutcome(Reply(True, text).body, self.tree.throttled, True, limit.text)

    def hop(
        self, session_id: str, msisdn_raw: str, text: str, service_code: str = ""
    ) -> HopOutcome:
        session_id = session_id.strip()
        if not session_id or len(session_id) > MAX_SESSION_ID:
            return self.refuse("session_id")
        if not self.service_code_ok(service_code):
            return self.refuse("service_code")
        try:
            msisdn = normalize_msisdn(msisdn_raw)
        except InvalidInput:
            return self.refuse("phone")
        text = text[:MAX_TEXT]

        # One round trip: the session's state, and this hop counted against the phone's
        # budget (the same number written another way shares it: it is normalised).
        # On a dial, the phone's resume offer is taken in the same round trip.
        dial = text == ""
        got = self.store.admit(
            session_key(session_id),
            msisdn,
            self.config.rate_limits,
            take=resume_key(msisdn) if dial else None,
        )
        state = State.from_json(got.value)
        if got.over is not None:  # no screen, no PIN check: the hop never reaches the menus
            return self.throttled(session_id, state, got.over)
        known = _remembered_caller(state, msisdn)
        caller: access.Caller | None
        if known is not None:
            caller, pin_reset = known
        else:
            with self.runtime.session() as session:
                caller = access.caller_by_msisdn(session, msisdn)
            pin_reset = caller is not None and caller.pin_reset_pending(self.runtime.deps.now())
        member_id = caller.member_id if caller is not None else None
        status = caller.status if caller is not None else None
        language = caller.language if caller is not None else "en"

        root = root_for(status, pin_reset)
        offer = None
        if state is None and dial:
            offer = self._offer_for(got.taken, root)
        ctx = Context(
            tree=self.tree,
            render=render,
            root=root,
            session_id=session_id,
            msisdn=msisdn,
            status=status,
            features=self.features(caller),
            language=language,
            base=self.base,
            resume=offer,
        )

        def perform(effect: Any) -> Any:
            return actions.perform(
                self.runtime, effect, member_id=member_id, msisdn=msisdn, money=self.money,
                exit_policy=self.exit_policy,
            )  # fmt: skip

        state, reply = run_hop(state, text, ctx, perform)
        if caller is not None:
            state.caller = [msisdn, caller.member_id, caller.status, caller.language, pin_reset]
        self._keep(session_id, msisdn, root, state, reply, member_id)
        return HopOutcome(reply.body, state.screen, reply.end)

    def after_approval(self, action: str, member_id: int | None, status: str) -> None:
        """Called by the staff API once an approval has committed: when a member was
        moved to a new phone number (``member.phone_change``), their live session on the
        old number is deleted, so its next hop starts afresh as an unregistered phone's
        (the member is looked up by phone again, and the old number is nobody's)."""
        if action != "member.phone_change" or status != "approved" or member_id is None:
            return
        live = self.store.take(member_key(member_id))
        if live:
            self.store.delete(session_key(live))

    def _offer_for(self, raw: str | None, root: str) -> dict[str, Any] | None:
        """The resume offer taken on a dial, if it is still for this phone's menus."""
        if not raw:
            return None
        try:
            offer = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(offer, dict) or offer.get("root") != root:
            return None
        return offer

    def _keep(
        self,
        session_id: str,
        msisdn: str,
        root: str,
        state: State,
        reply: Reply,
        member_id: int | None = None,
    ) -> None:
        """One round trip to the store: the session state, the resume offer and, for a
        member, which session is theirs (so a change of phone can end it)."""
        if reply.end:  # a finished flow leaves nothing to resume
            self.store.write([], [session_key(session_id), resume_key(msisdn)])
            return
        ttl = self.config.session_ttl_seconds
        puts = [(session_key(session_id), state.to_json(), ttl)]
        if member_id is not None:
            puts.append((member_key(member_id), session_id, ttl))
        offer = self._offer(root, state)
        if offer is None:
            self.store.write(puts, [resume_key(msisdn)])
        else:
            puts.append((resume_key(msisdn), offer, self.config.resume_ttl_seconds))
            self.store.write(puts, [])

    def _offer(self, root: str, state: State) -> str | None:
        """The resume offer this state leaves for the phone's next dial (JSON), if any."""
        if self.config.resume_ttl_seconds <= 0:
            return None
        if state.screen == self.tree.resume:  # still deciding about the last offer
            return json.dumps(state.resume) if state.resume else None
        point = resume_point(state, self.tree, root)
        if point is None:
            return None
        point["root"] = root
        return json.dumps(point)

    # ---------------------------------------------------------------- events

    def session_ended(self, form: Mapping[str, str]) -> bool:
        """Store the gateway's end notification; a dropped flow becomes a resume offer.

        Returns False when the form is unusable (no sessionId)."""
        try:
            event = parse_session_end(dict(form))
        except InvalidInput:
            return False
        with self.runtime.unit_of_work() as session:
            record_session_end(session, event, now=self.runtime.deps.now())
        state = State.from_json(self.store.take(session_key(event.session_id)))
        if event.status in ("Incomplete", "Failed") and event.msisdn and state is not None:
            with self.runtime.session() as session:
                caller = access.caller_by_msisdn(session, event.msisdn)
            offer = self._offer(root_for(caller.status if caller else None), state)
            if offer is not None:
                self.store.put(resume_key(event.msisdn), offer, self.config.resume_ttl_seconds)
        return True


def _remembered_caller(state: State | None, msisdn: str) -> tuple[access.Caller, bool] | None:
    """The member this session looked up on its first hop, if it is this phone's.

    Later hops of a session skip the database: the menus a session shows are
    decided when it starts (like the language), and every verb that moves money
    or reads a PIN loads the member afresh in ``core``, so a status changed by
    staff mid-session is enforced where it matters and shown from the next
    dial. A change of the member's phone number ends the session instead
    (``UssdService.after_approval``). Unregistered phones are not remembered
    (registration creates the member within the session)."""
    saved = state.caller if state is not None else None
    if not isinstance(saved, list) or len(saved) != 5 or saved[0] != msisdn:
        return None
    _, member_id, status, language, pin_reset = saved
    if (
        type(member_id) is not int
        or not isinstance(status, str)
        or not isinstance(language, str)
        or not isinstance(pin_reset, bool)
    ):
        return None
    return access.Caller(member_id, status, language), pin_reset
