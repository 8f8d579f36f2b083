"""Migrations: one head, and the whole chain goes down and up again on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from db.migrate import MIGRATIONS, alembic_config, downgrade, upgrade
from db.session import make_engine


def test_there_is_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == ["0007"]
    assert MIGRATIONS.is_dir()


def test_downgrade_to_base_and_upgrade_again_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"accounts", "postings", "members", "outbox_messages", "ussd_session_events"} <= tables
