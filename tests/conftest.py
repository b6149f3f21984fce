"""Shared fixtures: a real database (SQLite file, or PostgreSQL when HOSPICONNECT_TEST_DATABASE_URL is set),
the runtime, the Flask app and its test client. Tables are emptied after every test."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from hospiconnect.crypto import generate_key_file
from hospiconnect.db import Base
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings

PG_URL = os.environ.get("HOSPICONNECT_TEST_DATABASE_URL", "")

# In CI the property-based tests replay a fixed set of examples, so a run is reproducible; on a
# developer's machine they explore new examples each time.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_report_header(config):  # type: ignore[no-untyped-def]
    return f"database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite'}"


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("instance")
    generate_key_file(path / "keys.json")
    return path


@pytest.fixture(scope="session")
def database_url(instance_dir: Path) -> str:
    return PG_URL or f"sqlite:///{instance_dir / 'test.db'}"


@pytest.fixture(scope="session")
def base_settings(instance_dir: Path, database_url: str) -> Settings:
    return Settings(env="test", instance_path=instance_dir, database_url=database_url,
                    secret_key_file=instance_dir / "keys.json", issuer="http://localhost")


@pytest.fixture(scope="session")
def _schema(base_settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(base_settings)
    if PG_URL:
        with rt.db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    rt.init()
    yield rt
    rt.db.dispose()


def _empty_tables(rt: Runtime) -> None:
    # DELETE rather than TRUNCATE: on PostgreSQL, TRUNCATE of every table costs ~0.5 s per test
    # (new files, exclusive locks) while deleting the few rows a test wrote costs milliseconds.
    with rt.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    from hospiconnect.idp.clients import forget_clients

    forget_clients()  # the registrations this process kept belonged to the rows just deleted


@pytest.fixture()
def settings(base_settings: Settings) -> Settings:
    return base_settings


@pytest.fixture()
def rt(_schema: Runtime) -> Iterator[Runtime]:
    yield _schema
    _empty_tables(_schema)


@pytest.fixture()
def session(rt: Runtime):  # type: ignore[no-untyped-def]
    s = rt.db.sessionmaker()
    yield s
    s.rollback()
    s.close()


@pytest.fixture()
def app(rt: Runtime):  # type: ignore[no-untyped-def]
    from hospiconnect import appctx, create_app

    application = create_app(rt.settings)
    application.extensions[appctx.EXTENSION] = rt
    application.config.update(TESTING=True)
    return application


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture()
def today() -> dt.date:
    return dt.date(2026, 11, 27)


@pytest.fixture()
def app_with(rt):
    """Build ``(runtime, test client)`` of an application whose settings differ by ``overrides`` (same
    database and keys)."""
    import dataclasses

    from hospiconnect import appctx, create_app
    from hospiconnect.runtime import Runtime

    built = []

    def build(**overrides):
        runtime = Runtime(dataclasses.replace(rt.settings, **overrides))
        app = create_app(runtime.settings)
        app.extensions[appctx.EXTENSION] = runtime
        app.config.update(TESTING=True)
        built.append(runtime)
        return runtime, app.test_client()

    yield build
    for runtime in built:
        runtime.db.dispose()
