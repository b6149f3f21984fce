"""Is this process ready to serve? The checks behind ``/readyz``, polled by the reverse proxy.

``/healthz`` says the process answers; ``/readyz`` says it can do its work: the database answers and the
schema is one this code can serve (an instance started before ``hospiconnect init`` ran, or an old version
after a newer one's migrations were undone, must get no traffic). Redis is checked and reported, but an
unreachable Redis leaves the instance ready, ``degraded``: the throttling counters then fall back to the
database (hospiconnect.ratelimit), and taking every instance out of rotation for it would turn a Redis outage
into a full one. Each check is run in a small pool of threads and waited for at most
:data:`CHECK_TIMEOUT_SECONDS`: an unreachable host that never answers a connection cannot hold the proxy's
poll, nor pile up threads beyond the pool. What failed is named (``unreachable``, ``outdated``), never how:
no URL, host or exception text leaves the process (the log has the exception's class).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import time
from typing import Any, Callable

from sqlalchemy import text

from hospiconnect.runtime import BEHIND, MIGRATIONS, Runtime, schema_state

log = logging.getLogger("hospiconnect.web")

CHECK_TIMEOUT_SECONDS = 2.0
#: What ``Retry-After`` tells the proxy when the process is not ready.
RETRY_AFTER_SECONDS = 5
OK = "ok"
NOT_CONFIGURED = "not_configured"
UNREACHABLE = "unreachable"
OUTDATED = "outdated"
#: The schema cannot be read when the database does not answer.
UNKNOWN = "unknown"
_POOL_SIZE = 4


@dataclasses.dataclass(frozen=True)
class Readiness:
    """The state of each check: ``database``, ``redis`` and ``migrations``."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return self.checks.get("database") == OK and self.checks.get("migrations") == OK

    @property
    def degraded(self) -> bool:
        """Ready, with something that has a fallback (Redis) unreachable."""
        return self.ready and any(state not in (OK, NOT_CONFIGURED) for state in self.checks.values())


@functools.cache
def head_revision() -> str | None:
    """Return the newest migration shipped with this code, read once per process (the code under a running
    process does not change)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


@functools.cache
def known_revisions() -> frozenset[str]:
    """Return every migration shipped with this code, read once per process."""
    from alembic.script import ScriptDirectory

    return frozenset(rev.revision for rev in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    # Created at first use, in the worker process (never before gunicorn forks).
    return concurrent.futures.ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="readyz")


@functools.lru_cache(maxsize=4)
def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _database(rt: Runtime, head: str | None) -> tuple[str, str]:
    """Return the states of ``database`` and ``migrations``."""
    try:
        with rt.db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # This transaction only (rolled back when the connection goes back to the pool).
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_SECONDS * 1000)}")
            conn.execute(text("SELECT 1")).scalar_one()
            try:
                revisions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
            except Exception as exc:  # no version table: the schema was never created here
                log.warning("readyz: version du schéma illisible (%s)", type(exc).__name__)
                return OK, OUTDATED
    except Exception as exc:
        log.warning("readyz: base de données injoignable (%s)", type(exc).__name__)
        return UNREACHABLE, UNKNOWN
    if len(revisions) != 1:
        return OK, OUTDATED
    # A revision this code does not know is a newer release's (a rolling upgrade): still served, still ready.
    state = schema_state(next(iter(revisions)), known_revisions(), head)
    return OK, OUTDATED if state == BEHIND else OK


def _redis(url: str) -> str:
    try:
        return OK if _redis_client(url).ping() else UNREACHABLE
    except Exception as exc:
        log.warning("readyz: Redis injoignable (%s)", type(exc).__name__)
        return UNREACHABLE


def _wait(future: concurrent.futures.Future[Any], deadline: float, timed_out: Any) -> Any:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        log.warning("readyz: pas de réponse en %.1f s", CHECK_TIMEOUT_SECONDS)
        return timed_out


def check(rt: Runtime, *, timeout: float = CHECK_TIMEOUT_SECONDS) -> Readiness:
    """Run the checks of ``rt`` side by side and return their states, within ``timeout`` seconds
    (a check still running then counts as ``unreachable``)."""
    deadline = time.monotonic() + timeout
    submit: Callable[..., concurrent.futures.Future[Any]] = _pool().submit
    database = submit(_database, rt, head_revision())
    redis_url = rt.settings.redis_url
    redis = submit(_redis, redis_url) if redis_url else None
    database_state, migrations_state = _wait(database, deadline, (UNREACHABLE, UNKNOWN))
    redis_state = _wait(redis, deadline, UNREACHABLE) if redis is not None else NOT_CONFIGURED
    return Readiness({"database": database_state, "redis": redis_state, "migrations": migrations_state})
