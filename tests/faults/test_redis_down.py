"""Redis stopped under a running provider: the throttle degrades as documented (hospiconnect.ratelimit) — it
counts in the database — and never fails open; when Redis is back, Redis is used again.

A ``hospiconnect serve`` runs on the tests' own PostgreSQL and a Redis of their own
(``HOSPICONNECT_REDIS_URL``), with a lockout after 3 wrong passwords. Through the real login page:

1. Redis up: a wrong password is counted in Redis, not in the database;
2. Redis stopped: people still sign in; three wrong passwords still lock the account — counted in the
   database — so that the right password is then refused with the usual generic message; the switch is
   logged once, without any user name;
3. Redis started again (empty): after the cool-down the process uses it again — the lock set during the
   outage was carried over and still holds, and a new wrong password is counted in Redis, not in the database.

No answer is ever a 500.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.db import Database, utcnow
from hospiconnect.ratelimit import REDIS_RETRY_SECONDS, CounterState, DatabaseBackend, account_key
from tests.faults.conftest import Site, prepare_site
from tests.faults.services import ThrowawayPostgres, ThrowawayRedis
from tests.faults.signins import Ledger, Person, password_attempt, sign_in
from tests.multiprocess.live import ServerProcess, running

LOCKOUT_THRESHOLD = 3
WRONG = "pas le bon mot de passe"
THROTTLE_PREFIX = "hospiconnect:throttle:"  # RedisBackend's default
#: Redis is used again within this (the cool-down is REDIS_RETRY_SECONDS).
BACK_WITHIN_SECONDS = REDIS_RETRY_SECONDS + 15


@pytest.fixture(scope="module")
def own_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis.create()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def site(postgres: ThrowawayPostgres, own_redis: ThrowawayRedis, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return prepare_site(postgres, "hc_redis_down", tmp_path_factory.mktemp("redis-down"),
                        {"HOSPICONNECT_REDIS_URL": own_redis.url,
                         "HOSPICONNECT_LOCKOUT_THRESHOLD": str(LOCKOUT_THRESHOLD)})


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[ServerProcess]:
    with running([site.start_server(workers=1, threads=4)]) as servers:
        yield servers[0]


def in_redis(own_redis: ThrowawayRedis, person: Person) -> dict[bytes, bytes]:
    """The person's password counter in Redis (empty when none)."""
    client = own_redis.client()
    try:
        return client.hgetall(THROTTLE_PREFIX + account_key(person.user_name, "password"))
    finally:
        client.close()


def in_database(site: Site, person: Person) -> CounterState | None:
    """The person's password counter in the database (None when none)."""
    db = Database(site.database_url)
    try:
        with db.session() as s:
            return DatabaseBackend().get(s, account_key(person.user_name, "password"), utcnow().replace(year=2000))
    finally:
        db.dispose()


def test_with_redis_stopped_the_lockout_still_holds_and_redis_is_used_again_when_back(
        site: Site, server: ServerProcess, own_redis: ThrowawayRedis) -> None:
    signer, locked, before, after = site.add_people(4)
    rp = site.add_client()
    ledger = Ledger()

    def attempt(person: Person, password: str) -> int:
        response = password_attempt(server.url, ledger, person, rp, password)
        assert response is not None, ledger.exchanges[-1].describe()
        return response.status_code

    # 1. Redis up: counted there.
    assert sign_in(server.url, ledger, signer, rp), ledger.exchanges[-1].describe()
    assert attempt(before, WRONG) == 401
    assert in_redis(own_redis, before)[b"f"] == b"1"
    assert in_database(site, before) is None

    # 2. Redis stopped.
    own_redis.stop()
    assert sign_in(server.url, ledger, signer, rp), ledger.exchanges[-1].describe()
    assert [attempt(locked, WRONG) for _ in range(LOCKOUT_THRESHOLD)] == [401] * LOCKOUT_THRESHOLD
    assert attempt(locked, locked.password) == 401, "the account is locked: the right password is refused"
    counter = in_database(site, locked)
    assert counter is not None and counter.failures == LOCKOUT_THRESHOLD
    assert counter.locked_until is not None and counter.locked_until > utcnow()
    db = Database(site.database_url)
    try:
        with db.session() as s:
            locks = s.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.tag == tags.AUTHN_ACCOUNT_LOCKED, AuditEvent.subject == locked.public_id))
    finally:
        db.dispose()
    assert locks == 1
    assert sign_in(server.url, ledger, signer, rp), "others still sign in"
    log = server.log_tail(200_000)
    assert log.count("Redis injoignable") == 1, log[-3000:]
    assert locked.user_name not in log and before.user_name not in log

    # 3. Redis back, empty: once the cool-down is over, the lock of the outage is found in Redis.
    own_redis.start()
    deadline = time.monotonic() + BACK_WITHIN_SECONDS
    while not in_redis(own_redis, locked):
        assert time.monotonic() < deadline, "Redis not used again"
        assert sign_in(server.url, ledger, signer, rp), ledger.exchanges[-1].describe()
        time.sleep(0.2)
    carried = in_redis(own_redis, locked)
    assert carried[b"f"] == str(LOCKOUT_THRESHOLD).encode() and float(carried[b"u"]) > time.time()
    assert attempt(locked, locked.password) == 401, "the lock set during the outage still holds"
    assert attempt(after, WRONG) == 401
    assert in_redis(own_redis, after)[b"f"] == b"1"
    assert in_database(site, after) is None, "counted in Redis again, not in the database"
    assert "Redis de nouveau joignable" in server.log_tail(200_000)

    expected = {"authorize": 302, "page": 200, "password": (303, 401), "resume": 302, "token": 200, "refresh": 200}
    odd = [e.describe() for e in ledger.exchanges
           if e.status not in (expected[e.step] if isinstance(expected[e.step], tuple) else (expected[e.step],))]
    assert not odd, odd
