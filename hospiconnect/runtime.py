"""What a running process needs, shared by the web application and the command line."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hospiconnect.crypto import InstanceKeys, generate_key_file, load_keys
from hospiconnect.db import Database
from hospiconnect.settings import Settings

log = logging.getLogger("hospiconnect")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def keys(self) -> InstanceKeys:
        return load_keys(self.settings.secret_key_file)

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.settings.database_url.replace("%", "%%"))
        return cfg

    def init(self) -> dict[str, object]:
        """Create or upgrade the database schema and generate the key file on first run."""
        self.settings.instance_path.mkdir(parents=True, exist_ok=True)
        created_keys = generate_key_file(self.settings.secret_key_file)
        before = self.schema_revision()
        with self.db.engine.begin() as conn:
            cfg = self.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        after = self.schema_revision()
        return {"keys_created": created_keys, "key_file": str(self.settings.secret_key_file),
                "revision_before": before, "revision": after}

    def schema_revision(self) -> str | None:
        with self.db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def schema_is_current(self) -> bool:
        return self.schema_revision() == self.head_revision()
