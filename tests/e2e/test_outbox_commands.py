"""The outbox operator commands as an operator runs them (real processes, demo SQLite)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_commands import demo_env, run


def test_outbox_shows_seeded_messages_and_worker_commands_need_redis(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    assert run(["seed-demo"], env).returncode == 0
    shown = run(["outbox"], env)
    # operator commands do not deliver: the 8 welcome SMSes, the 22 receipts of the seeded
    # deposits (every credit sends its receipt) and the 9 SMS of the seeded loans (2 guarantee
    # requests, 1 acceptance, 2 disbursements, 3 repayments, 1 loan repaid) wait for the
    # app's sweeper
    assert shown.returncode == 0 and "pending    39" in shown.stdout
    for command in (["worker", "--burst"], ["scheduler", "--once"]):
        refused = run(command, env)
        assert refused.returncode == 2 and "REDIS_URL is not set" in refused.stderr
