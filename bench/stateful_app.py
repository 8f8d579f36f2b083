"""The floor for bench/ussd.py: what any stateful USSD design must do per hop, and no more.

One Redis read of the session's state (JSON) and one write of it back with its TTL, on
the same gunicorn settings as the app; the answer is a fixed menu of the same size as
the app's main menu. No database, no rate limiter, no catalogue, no log line: the app's
menu hops are measured against this (``bench/ussd.py``: aim >= 0.5x).
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from flask import Flask, Response, request

app = Flask(__name__)
store = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
TTL = 180
MENU = (
    "CON Umoja SACCO\n1. Check balances\n2. Mini statement\n3. My account\n"
    "4. Change PIN\n5. Deposit\n6. Withdraw\n98. More"
)


@app.post("/ussd")
def ussd() -> Response:
    key = "floor:s:" + request.form.get("sessionId", "")
    raw = store.get(key)
    state: dict[str, Any] = json.loads(raw) if raw else {"screen": "main", "history": []}
    state["history"] = [*state["history"], state["screen"]][-20:]
    state["screen"] = request.form.get("text", "").rsplit("*", 1)[-1] or "main"
    store.set(key, json.dumps(state), ex=TTL)
    return Response(MENU, mimetype="text/plain")


@app.post("/ussd/events")
def events() -> Response:
    store.delete("floor:s:" + request.form.get("sessionId", ""))
    return Response("", mimetype="text/plain")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok", mimetype="text/plain")
