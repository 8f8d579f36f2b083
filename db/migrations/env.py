"""Alembic environment: the URL comes from the caller (db.migrate) or DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

import db.models  # noqa: F401  (registers the tables on Base.metadata)
import db.models_close_day  # noqa: F401
import db.models_crb  # noqa: F401
import db.models_exit  # noqa: F401
import db.models_loans  # noqa: F401
import db.models_members  # noqa: F401
import db.models_mpesa  # noqa: F401
import db.models_notices  # noqa: F401
import db.models_recovery  # noqa: F401
import db.models_savings  # noqa: F401
import db.models_scoring  # noqa: F401
import db.models_tills  # noqa: F401
import db.models_year_end  # noqa: F401
from db.base import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL", "")
if not url:
    raise SystemExit("DATABASE_URL is not set: nothing to migrate")


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
