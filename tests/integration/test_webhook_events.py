"""Partners registered for webhooks get the business events, signed, exactly once each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from config import load_settings
from core.kernel.deps import CoreDeps
from core.kernel.security import PiiVault
from core.members import registration as members
from core.messaging import webhooks
from core.payments.mpesa import flows as mpesa
from db.models import OutboxMessage, WebhookEndpoint
from db.session import make_engine

ROOT = Path(__file__).resolve().parents[2]


def test_a_paybill_deposit_is_published_to_each_interested_partner_once(
    db_session: Session, deps: CoreDeps
) -> None:
    member = members.register_member(
        db_session,
        deps,
        full_name="Amina Wanjiru",
        msisdn="0712000001",
        national_id="23456781",
        consent=True,
        pin="4826",
    )
    all_events, _ = webhooks.register_endpoint(
        db_session, deps, name="ledger-sync", url="https://partner.example/hook"
    )
    webhooks.register_endpoint(
        db_session,
        deps,
        name="payouts-only",
        url="https://other.example/hook",
        events=["withdrawal.paid"],
    )
    payment = mpesa.C2BIn(
        "QAB1234567", datetime.now(UTC), 30_000, f"{member.member_number}", "174379"
    )
    assert mpesa.record_c2b(db_session, deps, payment) == "credited"
    assert mpesa.record_c2b(db_session, deps, payment) == "duplicate"
    hooks = list(
        db_session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "webhook"))
    )
    assert [h.recipient for h in hooks] == ["https://partner.example/hook"]
    event = json.loads(hooks[0].body)
    assert event["type"] == "deposit.received"
    assert event["data"]["member_number"] == member.member_number
    assert event["data"]["amount_cents"] == 30_000
    assert event["data"]["mpesa_receipt"] == "QAB1234567"
    assert hooks[0].endpoint_id == all_events.id


def test_webhook_add_stores_the_secret_encrypted_and_rotate_pii_keys_encrypts_legacy_ones(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        SACCO_ENV="demo", DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", PYTHONPATH=str(ROOT)
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("migrate").returncode == 0
    added = run(
        "webhook-add",
        "https://partner.example/hook",
        "--name",
        "Ledger sync",
        "--events",
        "deposit.received",
    )
    assert added.returncode == 0, added.stderr
    assert "whsec_" in added.stdout and "events=deposit.received" in added.stdout
    listed = run("webhook-list")
    assert "https://partner.example/hook" in listed.stdout and "whsec_" not in listed.stdout
    secret = added.stdout.split("signing secret (shown once, give it to the partner): ")[1].strip()

    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with Session(engine) as s:
        [row] = s.scalars(select(WebhookEndpoint))
        assert row.secret is None and row.secret_ciphertext is not None
        assert secret.encode() not in bytes(row.secret_ciphertext)
        # An endpoint registered before migration 0008 still has its secret in clear.
        s.add(
            WebhookEndpoint(
                name="Legacy", url="https://legacy.example/hook", secret="whsec_old_plaintext",
                events="*", active=True, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        s.commit()

    rotated = run("rotate-pii-keys")
    assert rotated.returncode == 0, rotated.stderr
    assert "2 webhook signing secrets" in rotated.stdout
    with Session(engine) as s:
        rows = list(s.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
        assert [r.secret for r in rows] == [None, None]
        assert b"whsec_old_plaintext" not in bytes(rows[1].secret_ciphertext or b"")
        vault = PiiVault.from_settings(load_settings(sacco_env="demo"))  # the command's keys
        assert [vault.decrypt(r.secret_ciphertext or b"") for r in rows] == [
            secret,
            "whsec_old_plaintext",
        ]
    engine.dispose()
