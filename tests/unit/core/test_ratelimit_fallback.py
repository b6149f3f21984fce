"""The throttle when Redis is away: counting moves to the database, never stops (it must not fail open), and
goes back to Redis, with what the database counted meanwhile, when Redis answers again.

Redis is real everywhere: "away" is a port with nothing on it (or a socket that never answers), "back" is a
``redis-server`` started on that very port. The cool-down between two tries of Redis is driven by a clock
the test holds, so no test waits for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import uuid
from typing import Iterator

import pytest
import redis
from sqlalchemy.orm import Session

from hospiconnect.db import utcnow
from hospiconnect.ratelimit import (
    REDIS_RETRY_SECONDS,
    CounterState,
    DatabaseBackend,
    FailureOutcome,
    Locked,
    RedisBackend,
    RedisWithDatabaseFallback,
    Throttle,
    ThrottlePolicy,
    account_key,
    make_throttle,
    shared_redis_backend,
)
from tests.faults.services import ThrowawayRedis
from tests.multiprocess.live import free_port
from tests.unit.authenticators._mie_helpers import REDIS_URL, cleanup_redis, redis_backend_for_tests

POLICY = ThrottlePolicy(lockout_threshold=10, lockout_seconds=15 * 60)
LOGGER = "hospiconnect.ratelimit"
ACCOUNT, IP = "jdupont", "10.0.0.1"
# The real time: what the database counts during an outage is found by the time of its failures.
T0 = utcnow().replace(microsecond=0)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def away_port() -> int:
    """A port with nothing listening on it: connections are refused."""
    return free_port()


@pytest.fixture()
def fallback(away_port: int, clock: Clock) -> RedisWithDatabaseFallback:
    return RedisWithDatabaseFallback(
        RedisBackend(f"redis://127.0.0.1:{away_port}/0", prefix=f"hc-test:{uuid.uuid4().hex[:12]}:"),
        clock=clock, forget_after_seconds=POLICY.forget_after_seconds)


@pytest.fixture()
def redis_back(away_port: int) -> Iterator[ThrowawayRedis]:
    """A ``redis-server`` that the test starts on the away port when it wants Redis back."""
    server = ThrowawayRedis.create(port=away_port)
    try:
        yield server
    finally:
        server.destroy()


def fail(throttle: Throttle, session: Session, n: int, *, start: float = 0.0,
         account: str = ACCOUNT) -> FailureOutcome | None:
    """``n`` failures spaced 1000 s apart (no delay in force between them), committed."""
    outcome = None
    for i in range(n):
        outcome = throttle.failure(session, "password", account=account, ip=IP, now=at(start + i * 1000))
    session.commit()
    return outcome


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_refused_connections_move_the_counting_to_the_database_and_the_lock_still_comes(
        fallback, session, caplog) -> None:
    throttle = Throttle(fallback, POLICY)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        outcome = fail(throttle, session, 10)
        assert outcome.account_failures == 10 and outcome.locked_now
        with pytest.raises(Locked):
            throttle.check(session, "password", account=ACCOUNT, ip=IP, now=at(9001))
    assert fallback.degraded
    counted = DatabaseBackend().get(session, account_key(ACCOUNT, "password"), at(-1))
    assert counted is not None and counted.failures == 10 and counted.locked_until is not None
    # One warning for the switch, naming the error but never the counters' keys (user names, addresses).
    (warning,) = warnings_of(caplog)
    assert "Redis injoignable" in warning and "ConnectionError" in warning
    assert ACCOUNT not in warning and IP not in warning


def test_without_a_session_an_unreachable_redis_refuses_rather_than_lets_through(fallback) -> None:
    with pytest.raises(redis.exceptions.ConnectionError):
        Throttle(fallback, POLICY).check(None, "password", account=ACCOUNT, ip=IP, now=at(0))


def test_the_warning_is_repeated_at_most_once_a_minute_while_redis_stays_away(
        fallback, clock, session, caplog) -> None:
    throttle = Throttle(fallback, POLICY)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(20):  # every REDIS_RETRY_SECONDS one call tries Redis again, and fails
            throttle.check(session, "password", account=ACCOUNT, ip=IP, now=at(0))
            clock.advance(REDIS_RETRY_SECONDS / 2)
    assert len(warnings_of(caplog)) == 1
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        clock.advance(60)
        throttle.check(session, "password", account=ACCOUNT, ip=IP, now=at(0))
    reminders = warnings_of(caplog)[1:]
    assert len(reminders) == 1 and "toujours injoignable" in reminders[0]


def test_redis_is_tried_again_after_the_cool_down_and_gets_what_the_database_counted(
        fallback, clock, redis_back, session, caplog) -> None:
    throttle = Throttle(fallback, POLICY)
    fail(throttle, session, 10)  # locked, in the database
    redis_back.start()

    # Within the cool-down the process does not try Redis: the failure is counted in the database.
    assert throttle.failure(session, "password", account="pmartin", ip=None, now=at(9500)).account_failures == 1
    session.commit()
    assert redis_back.client().keys("*") == []

    clock.advance(REDIS_RETRY_SECONDS)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with pytest.raises(Locked):
            throttle.check(session, "password", account=ACCOUNT, ip=IP, now=at(9600))
    assert not fallback.degraded
    assert any("de nouveau joignable" in m for m in warnings_of(caplog))
    # The lock was carried over: Redis itself holds it now, and counting goes on there.
    key = account_key(ACCOUNT, "password")
    in_redis = fallback.redis.get(None, key, at(-1))
    in_database = DatabaseBackend().get(session, key, at(-1))
    assert in_redis == in_database and in_redis.failures == 10
    assert fallback.redis.get(None, account_key("pmartin", "password"), at(-1)).failures == 1
    assert throttle.failure(session, "password", account=ACCOUNT, ip=IP, now=at(20_000)).account_failures == 11
    session.commit()
    assert DatabaseBackend().get(session, key, at(-1)).failures == 10
    assert fallback.redis.get(None, key, at(-1)).failures == 11


def test_a_redis_that_accepts_connections_but_never_answers_is_away_too(session, clock) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        fallback = RedisWithDatabaseFallback(RedisBackend(f"redis://127.0.0.1:{port}/0"), clock=clock)
        outcome = Throttle(fallback, POLICY).failure(session, "password", account=ACCOUNT, ip=None, now=at(0))
    session.commit()
    assert outcome.account_failures == 1 and fallback.degraded
    assert DatabaseBackend().get(session, account_key(ACCOUNT, "password"), at(-1)).failures == 1


@pytest.fixture()
def live_redis() -> Iterator[RedisBackend]:
    backend = redis_backend_for_tests()
    yield backend
    cleanup_redis(backend)


def test_a_redis_error_that_is_not_an_outage_is_not_hidden(live_redis, session, clock) -> None:
    fallback = RedisWithDatabaseFallback(live_redis, clock=clock)
    live_redis.client.set(live_redis.prefix + account_key(ACCOUNT, "password"), "not a counter")
    with pytest.raises(redis.exceptions.ResponseError):
        Throttle(fallback, POLICY).check(session, "password", account=ACCOUNT, ip=None, now=at(0))
    assert not fallback.degraded


def test_carrying_over_keeps_the_larger_of_each_value(live_redis) -> None:
    forget_before = at(-POLICY.forget_after_seconds)
    fresh, stale = account_key("fresh", "password"), account_key("stale", "password")
    for i in range(12):
        live_redis.add_failure(None, fresh, at(i), lock_at=10, lock_until=at(900), forget_before=forget_before)
    live_redis.add_failure(None, stale, at(-2 * POLICY.forget_after_seconds), lock_at=10, lock_until=at(0),
                           forget_before=at(-3 * POLICY.forget_after_seconds))
    live_redis.merge([(fresh, CounterState(5, at(100), at(2000))), (stale, CounterState(3, at(50), None))],
                     forget_before)
    assert live_redis.get(None, fresh, forget_before) == CounterState(12, at(100), at(2000))
    # A Redis counter older than forget_after counts for nothing: the database's replaces it.
    assert live_redis.get(None, stale, forget_before) == CounterState(3, at(50), None)
    # Running it again changes nothing.
    live_redis.merge([(fresh, CounterState(5, at(100), at(2000)))], forget_before)
    assert live_redis.get(None, fresh, forget_before) == CounterState(12, at(100), at(2000))


def test_every_request_of_a_process_shares_one_backend_per_redis_url(settings) -> None:
    import dataclasses

    configured = dataclasses.replace(settings, redis_url=REDIS_URL)
    first, second = make_throttle(configured), make_throttle(configured)
    assert first.backend is second.backend is shared_redis_backend(REDIS_URL)
    assert isinstance(first.backend, RedisWithDatabaseFallback)
