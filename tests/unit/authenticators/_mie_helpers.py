"""Fixtures and helpers shared by the MIE-layer tests (imported explicitly by each test module)."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import pytest
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Notification
from hospiconnect.ratelimit import DatabaseBackend, RedisBackend, Throttle, ThrottlePolicy

REDIS_URL = os.environ.get("HOSPICONNECT_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
T0 = dt.datetime(2026, 11, 27, 9, 0, 0, tzinfo=dt.timezone.utc)
GOOD_PASSWORD = "correct cheval pile agrafe"


def redis_backend_for_tests() -> RedisBackend:
    import redis

    prefix = f"hc-test:{uuid.uuid4().hex[:12]}:"
    backend = RedisBackend(REDIS_URL, prefix=prefix)
    try:
        backend.client.ping()  # type: ignore[attr-defined]
    except redis.exceptions.ConnectionError:
        # Redis runs on every machine of this project (.ci/run starts it): its absence is a failure.
        pytest.fail(f"Redis unreachable at {REDIS_URL}")
    return backend


def cleanup_redis(backend: RedisBackend) -> None:
    keys = list(backend.client.scan_iter(match=backend.prefix + "*"))  # type: ignore[attr-defined]
    if keys:
        backend.client.delete(*keys)  # type: ignore[attr-defined]


@pytest.fixture(params=["database", "redis"])
def throttle(request, settings):  # type: ignore[no-untyped-def]
    """A throttle with the default policy (threshold from settings) on each backend."""
    if request.param == "redis":
        backend = redis_backend_for_tests()
        yield Throttle(backend, ThrottlePolicy.from_settings(settings))
        cleanup_redis(backend)
    else:
        yield Throttle(DatabaseBackend(), ThrottlePolicy.from_settings(settings))


@pytest.fixture()
def db_throttle(settings):  # type: ignore[no-untyped-def]
    return Throttle(DatabaseBackend(), ThrottlePolicy.from_settings(settings))


@pytest.fixture()
def keys(rt):  # type: ignore[no-untyped-def]
    return rt.keys


def events(session, prefix: str = "") -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    return [e for e in rows if e.tag.startswith(prefix)]


def tags_of(session, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    return [e.tag for e in events(session, prefix)]


def details(event: AuditEvent) -> dict:
    return json.loads(event.details)


def notifications(session) -> list[Notification]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(Notification).order_by(Notification.id)))


def journal_text(session) -> str:  # type: ignore[no-untyped-def]
    """Everything journaled or queued for people, to assert that no secret leaked into it."""
    parts = [f"{e.tag} {e.actor} {e.subject} {e.details}" for e in events(session)]
    parts += [f"{n.subject} {n.body}" for n in notifications(session)]
    return "\n".join(parts)
