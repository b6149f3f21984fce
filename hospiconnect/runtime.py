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

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


#: States of a database's schema for the code looking at it (:func:`schema_state`).
CURRENT, BEHIND, AHEAD = "current", "behind", "ahead"


def schema_state(revision: str | None, known: frozenset[str] | set[str], head: str | None) -> str:
    """Return ``current`` (the schema is at ``head``), ``behind`` (no schema yet, or at an older revision this
    code ships: ``hospiconnect init`` must run) or ``ahead`` (at a revision this code does not know: a newer
    release applied its migrations while this one still serves) (pure)."""
    if revision is not None and revision == head:
        return CURRENT
    if revision is None or revision in known:
        return BEHIND
    return AHEAD


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

    def schema_state(self) -> str:
        """Return :func:`schema_state` of this database for this code."""
        return schema_state(self.schema_revision(), self.known_revisions(), self.head_revision())

    def known_revisions(self) -> frozenset[str]:
        """Return the revisions of the migrations shipped with this code."""
        script = ScriptDirectory.from_config(self.alembic_config())
        return frozenset(rev.revision for rev in script.walk_revisions())

    def schema_is_current(self) -> bool:
        """True when this code may serve this database: its schema is at this code's newest migration, or at a
        newer one this code does not know (a rolling upgrade: the next release applied its migrations, which
        keep the previous release working — see README « Upgrading »)."""
        return self.schema_state() in (CURRENT, AHEAD)
