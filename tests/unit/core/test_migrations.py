"""The migrations build exactly the schema the models describe (no drift), on the suite's database."""

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hospiconnect.db import Base


def test_models_and_migrations_agree(rt):
    with rt.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        with warnings.catch_warnings():
            # SQLite cannot reflect expression indexes; they are compared on PostgreSQL.
            warnings.simplefilter("ignore")
            diff = compare_metadata(context, Base.metadata)
    assert diff == []
    assert rt.schema_is_current()
