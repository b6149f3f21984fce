"""Alembic environment: the models' metadata, batch mode on SQLite."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import hospiconnect.apitokens.models  # noqa: F401  (register tables)
import hospiconnect.audit.models  # noqa: F401
import hospiconnect.authenticators.models  # noqa: F401
import hospiconnect.authorizations.models  # noqa: F401
import hospiconnect.directory.models  # noqa: F401
import hospiconnect.enrollment.models  # noqa: F401
import hospiconnect.idp.models  # noqa: F401
import hospiconnect.ratelimit_models  # noqa: F401
import hospiconnect.trajectory.models  # noqa: F401
from hospiconnect.db import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url and url.startswith("postgresql://"):
        config.set_main_option("sqlalchemy.url", "postgresql+psycopg://" + url[len("postgresql://"):])
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
