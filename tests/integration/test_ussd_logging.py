"""No PIN ever reaches a log record: not the request log, not errors, at any level.

PINs reach SQL only as Argon2 hashes, so even SQLAlchemy echo would not show one."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from tests.ussdutil import Phone, make_member

OLD_PIN = "7391"
NEW_PIN = "8264"
REG_PIN = "5283"
WRONG_PIN = "6157"


def test_no_pin_in_any_log_record(
    client: FlaskClient,
    db_session: Session,
    deps: CoreDeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = make_member(db_session, deps, pin=OLD_PIN)
    caplog.set_level(logging.DEBUG)  # every logger at DEBUG (SQLAlchemy echo stays off)

    # registration with a PIN typed twice
    reg = Phone(client, "+254798765432")
    reg.dial()
    for value in ("1", "Wanjiru Kamau", "12345678", "1", REG_PIN, REG_PIN):
        reg.send(value)
    assert reg.last.startswith("END Thank you.")
    # a wrong PIN, then the right one, balances, then a PIN change
    phone = Phone(client, member.msisdn)
    phone.dial()
    phone.send("1")
    phone.send(WRONG_PIN)
    assert phone.send(OLD_PIN).startswith("CON Savings")
    phone.send("00")
    for value in ("4", OLD_PIN, NEW_PIN, NEW_PIN):
        phone.send(value)
    assert phone.last == "END PIN changed. Use the new PIN from now on."
    # a state-less hop whose text carries a PIN, and the gateway's end notice with its input
    lost = Phone(client, member.msisdn)
    lost.session_id = "ATUid_lost"
    lost.post(f"1*{NEW_PIN}")
    assert phone.hang_up("Incomplete") == 200

    hop_lines = [r for r in caplog.records if r.name == "sacco.ussd"]
    assert len(hop_lines) >= 15
    assert any("text=x*xxxx" in r.getMessage() for r in hop_lines)
    for record in caplog.records:
        texts = [v for v in record.__dict__.values() if isinstance(v, str)]  # incl. extras
        # Not the raw numbers: a hop's elapsed ms (17.747774999861576) held "6157" by chance.
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        words = [str(a) for a in args if not isinstance(a, int | float)]
        seen = " ".join([record.getMessage(), *words, *texts])
        for pin in (OLD_PIN, NEW_PIN, REG_PIN, WRONG_PIN):
            assert pin not in seen, (record.name, record.getMessage()[:200])
