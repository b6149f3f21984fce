"""``/readyz``: ready only when the database answers, Redis answers (when configured) and the schema is at the
newest migration; otherwise 503 with the failing checks and ``Retry-After``, never a URL, host or error text.

The databases and Redis servers here are real: the suite's database, a SQLite file with an older schema
version, ports where nothing listens, and a listener that accepts connections and never says a word.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest
from sqlalchemy import create_engine, text

from hospiconnect.runtime import Runtime
from hospiconnect.web import readiness

REDIS_URL = "redis://127.0.0.1:6379/11"


def closed_port() -> int:
    """A port of 127.0.0.1 where nothing listens (the kernel gave it, then it was released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def app_for(app_with):  # type: ignore[no-untyped-def]
    """Build a test client of an application whose settings differ from the suite's by ``overrides``."""
    return lambda **overrides: app_with(**overrides)[1]


def _not_ready(response, failing: dict[str, str]) -> dict:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(readiness.RETRY_AFTER_SECONDS)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["status"] == "not_ready"
    for check, state in failing.items():
        assert body["checks"][check] == state, body
    return body


def test_ready_on_the_current_schema_without_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready",
                                   "checks": {"database": "ok", "redis": "not_configured", "migrations": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Retry-After" not in response.headers


def test_ready_with_a_redis_that_answers(app_for):
    response = app_for(redis_url=REDIS_URL).get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok", "migrations": "ok"}


def test_a_redis_that_does_not_answer_leaves_the_process_ready_but_degraded(app_for):
    """The throttling counters fall back to the database: the instance stays in rotation, and says why."""
    port = closed_port()
    response = app_for(redis_url=f"redis://:motdepasse@127.0.0.1:{port}/11").get("/readyz")
    assert response.status_code == 200 and "Retry-After" not in response.headers
    body = response.get_json()
    assert body == {"status": "degraded", "checks": {"redis": "unreachable", "database": "ok", "migrations": "ok"}}
    text_of = response.get_data(as_text=True)
    for leak in (str(port), "127.0.0.1", "motdepasse", "redis://", "Error"):
        assert leak not in text_of, body


def test_an_unreachable_database_is_named_without_its_address(app_for):
    port = closed_port()
    response = app_for(database_url=f"postgresql://hc:secret@127.0.0.1:{port}/hospiconnect").get("/readyz")
    _not_ready(response, {"database": "unreachable", "migrations": "unknown", "redis": "not_configured"})
    text_of = response.get_data(as_text=True)
    for leak in (str(port), "127.0.0.1", "secret", "postgresql", "hospiconnect", "connection"):
        assert leak not in text_of


def _older_schema(path) -> str:
    """A SQLite database whose schema stopped one migration before the newest."""
    from alembic.script import ScriptDirectory

    from hospiconnect.runtime import MIGRATIONS

    script = ScriptDirectory(str(MIGRATIONS))
    previous = script.get_revision(script.get_current_head()).down_revision
    assert isinstance(previous, str)
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": previous})
    engine.dispose()
    return url


def test_a_schema_behind_the_code_is_outdated(app_for, tmp_path):
    response = app_for(database_url=_older_schema(tmp_path / "older.db")).get("/readyz")
    _not_ready(response, {"database": "ok", "migrations": "outdated"})


def test_a_schema_of_a_newer_release_is_ready_during_a_rolling_upgrade(app_for, tmp_path):
    """The next release applied its migrations (a revision this code does not know): this instance still serves
    until it is restarted, so the proxy keeps it in rotation."""
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999_next_release')"))
    engine.dispose()
    runtime_client = app_for(database_url=url)
    response = runtime_client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"]["migrations"] == "ok"


def test_schema_state_tells_behind_from_ahead():
    from hospiconnect.runtime import AHEAD, BEHIND, CURRENT, schema_state

    known = {"0001", "0002", "0003"}
    assert schema_state("0003", known, "0003") == CURRENT
    assert schema_state("0002", known, "0003") == BEHIND
    assert schema_state(None, known, "0003") == BEHIND
    assert schema_state("0004", known, "0003") == AHEAD


def test_a_database_never_initialised_is_outdated(app_for, tmp_path):
    response = app_for(database_url=f"sqlite:///{tmp_path / 'empty.db'}").get("/readyz")
    _not_ready(response, {"database": "ok", "migrations": "outdated"})


def test_a_database_that_never_answers_does_not_hold_the_check(rt):
    # A listener that completes the TCP handshake (the kernel does, from the backlog) and never answers:
    # the client waits for the server's first message forever. The check gives up at its deadline.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        stuck = Runtime(dataclasses.replace(rt.settings, database_url=f"postgresql://hc@127.0.0.1:{port}/hc"))
        result = readiness.check(stuck, timeout=0.5)
        assert not result.ready
        assert result.checks == {"database": "unreachable", "redis": "not_configured", "migrations": "unknown"}
    # Closing the listener ends the connection attempt left waiting in the pool's thread.
    stuck.db.dispose()


def test_the_newest_migration_is_read_once_per_process(client):
    readiness.head_revision.cache_clear()
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    assert readiness.head_revision.cache_info().misses == 1
