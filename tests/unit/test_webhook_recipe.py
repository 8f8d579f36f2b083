"""The receiver's verification recipe printed in docs/channels/sms.md (Webhooks) works as printed."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from core.messaging.webhooks import signature_header

DOC = Path(__file__).resolve().parents[2] / "docs" / "channels" / "sms.md"


def documented_verify() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    recipe = [block for block in blocks if "def verify(" in block]
    assert len(recipe) == 1, "docs/channels/sms.md lost its receiver recipe"
    namespace: dict[str, Any] = {}
    exec(recipe[0], namespace)
    return namespace["verify"]


def test_the_documented_recipe_accepts_ours_and_refuses_forgeries_and_replays() -> None:
    verify = documented_verify()
    body = b'{"id":"evt_1","type":"deposit.received"}'
    now = int(time.time())
    verify("whsec_abc", signature_header("whsec_abc", now, body), body)
    for secret, at, raw in [
        ("whsec_other", now, body),
        ("whsec_abc", now - 301, body),
        ("whsec_abc", now, body + b" "),
    ]:
        with pytest.raises(ValueError):
            verify("whsec_abc", signature_header(secret, at, body), raw)
