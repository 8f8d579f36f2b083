"""A test-side Africa's Talking gateway: exact hop and session-end requests over real HTTP.

It reuses the terminal phone's request builders (``tools/phone.py``), so the
tests, the terminal phone and the gateway format are one and the same.
"""

from __future__ import annotations

import requests

from tools.phone import Dial, events_url, parse_reply

SERVICE_CODE = "*384*44135#"


class GatewayPhone:
    """One handset. ``dial()`` starts a new session; ``send(x)`` types x and presses Send."""

    def __init__(self, http: requests.Session, base_url: str, msisdn: str, path: str = "/ussd"):
        self.http = http
        self.url = base_url + path
        self.msisdn = msisdn
        self.dial_: Dial | None = None
        self.screen = ""
        self.ended = True

    def _hop(self) -> str:
        assert self.dial_ is not None
        resp = self.http.post(self.url, data=self.dial_.form(), timeout=15)
        screen = parse_reply(resp.status_code, resp.headers.get("Content-Type", ""), resp.text)
        self.dial_.hops += 1
        self.dial_.last_response = screen.raw
        self.screen, self.ended = screen.text, screen.ends
        if screen.ends:
            self._notify("Success")
        return self.screen

    def dial(self, shortcut: list[str] | None = None) -> str:
        """A new dial (new sessionId); ``shortcut`` = inputs already in the first ``text``."""
        self.dial_ = Dial(service_code=SERVICE_CODE, phone_number=self.msisdn, network_code="63902")
        self.dial_.inputs = list(shortcut or [])
        return self._hop()

    def send(self, typed: str) -> str:
        assert self.dial_ is not None and not self.ended, "no call in progress"
        self.dial_.inputs.append(typed)
        return self._hop()

    def hang_up(self) -> None:
        """The member presses End mid-menu: the gateway reports the session Incomplete."""
        if not self.ended:
            self._notify("Incomplete")
            self.ended = True

    def _notify(self, status: str) -> None:
        assert self.dial_ is not None
        resp = self.http.post(events_url(self.url), data=self.dial_.end_form(status), timeout=15)
        assert resp.status_code == 200, resp.text
