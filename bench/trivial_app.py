"""The yardstick for bench/ussd.py: the cheapest possible USSD answer on the same gunicorn."""

from __future__ import annotations

from flask import Flask, Response

app = Flask(__name__)


@app.post("/ussd")
def ussd() -> Response:
    return Response("CON hi", mimetype="text/plain")


@app.post("/ussd/events")
def events() -> Response:
    return Response("", mimetype="text/plain")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok", mimetype="text/plain")
