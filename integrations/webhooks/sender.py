"""POST one signed webhook event; never raises.

2xx: delivered. 408, 429, 5xx, timeouts and connection errors: retried with the
outbox's backoff. Other 4xx: the receiver refuses this delivery (a bad secret on
their side, a removed route): failed, visible to staff, re-triable by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from core.webhooks import EVENT_HEADER, SIGNATURE_HEADER, signature_header


@dataclass(frozen=True)
class WebhookResult:
    accepted: bool
    retryable: bool
    status_code: int | None
    detail: str | None
    duration_ms: int


class WebhookSender:
    def __init__(self, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.timeout = timeout
        self.http = session or requests.Session()

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
        try:
            answer = self.http.post(url, data=raw, headers=headers, timeout=self.timeout)
            answer.close()
        except requests.RequestException as exc:
            elapsed = int((time.monotonic() - started) * 1000)
            return WebhookResult(False, True, None, f"{type(exc).__name__}"[:200], elapsed)
        elapsed = int((time.monotonic() - started) * 1000)
        code = answer.status_code
        if 200 <= code < 300:
            return WebhookResult(True, False, code, None, elapsed)
        transient = code in (408, 429) or code >= 500
        return WebhookResult(False, transient, code, f"HTTP {code}", elapsed)
