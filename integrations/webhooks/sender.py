"""POST one signed webhook event; never raises.

2xx: delivered. 408, 429, 5xx, 3xx, timeouts and connection errors: retried with
the outbox's backoff (redirects are never followed: a partner URL must not bounce
a signed delivery elsewhere). Other 4xx: the receiver refuses this delivery (a bad
secret on their side, a removed route): failed, visible to staff, re-triable by hand.

Unless ``allow_private`` (demo, tests, or ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` for a
partner on the SACCO's own network), a URL whose host resolves to a loopback,
private, link-local or otherwise non-public address is refused before anything is
sent, so a registered URL cannot make the worker probe the internal network. The
address is checked at each delivery; a name that resolves to a public address for
the check and a private one for the connection (DNS rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from core.messaging.webhooks import EVENT_HEADER, SIGNATURE_HEADER, signature_header


@dataclass(frozen=True)
class WebhookResult:
    accepted: bool
    retryable: bool
    status_code: int | None
    detail: str | None
    duration_ms: int


def non_public_address(url: str) -> str | None:
    """The first non-public address ``url``'s host resolves to (or why it can't be
    resolved), else None."""
    host = urlsplit(url).hostname
    if not host:
        return "no host"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return "host does not resolve"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            return str(address)
    return None


class WebhookSender:
    def __init__(
        self,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        *,
        allow_private: bool = False,
    ) -> None:
        self.timeout = timeout
        self.http = session or requests.Session()
        self.allow_private = allow_private

    def close(self) -> None:
        self.http.close()

    def send(self, url: str, secret: str, event_type: str, body: str) -> WebhookResult:
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sacco-webhooks/1",
            EVENT_HEADER: event_type,
            SIGNATURE_HEADER: signature_header(secret, int(time.time()), raw),
        }
        started = time.monotonic()
        if not self.allow_private:
            blocked = non_public_address(url)
            if blocked is not None:
                return WebhookResult(False, False, None, f"address not allowed: {blocked}", 0)
        try:
            answer = self.http.post(
                url, data=raw, headers=headers, timeout=self.timeout, allow_redirects=False
            )
            answer.close()
        except requests.RequestException as exc:
            elapsed = int((time.monotonic() - started) * 1000)
            return WebhookResult(False, True, None, f"{type(exc).__name__}"[:200], elapsed)
        elapsed = int((time.monotonic() - started) * 1000)
        code = answer.status_code
        if 200 <= code < 300:
            return WebhookResult(True, False, code, None, elapsed)
        if 300 <= code < 400:
            return WebhookResult(False, True, code, f"HTTP {code}: redirects are not followed",
                                 elapsed)  # fmt: skip
        transient = code in (408, 429) or code >= 500
        return WebhookResult(False, transient, code, f"HTTP {code}", elapsed)
