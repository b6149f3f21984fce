"""Throttling and lockout, on the database and on Redis (both for real)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine

from hospiconnect.ratelimit import (
    DatabaseBackend,
    Locked,
    Throttle,
    Throttled,
    ThrottlePolicy,
    account_key,
    make_throttle,
)
from tests.unit.authenticators._mie_helpers import T0, cleanup_redis, redis_backend_for_tests

POLICY = ThrottlePolicy(lockout_threshold=10, lockout_seconds=15 * 60)


@pytest.fixture(params=["database", "redis"])
def throttle(request):
    if request.param == "redis":
        backend = redis_backend_for_tests()
        yield Throttle(backend, POLICY)
        cleanup_redis(backend)
    else:
        yield Throttle(DatabaseBackend(), POLICY)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def fail_n(throttle, session, n, *, account="jdupont", ip="10.0.0.1", start=0.0, step=1000.0):
    """n failures spaced so that no delay is in force between them (``step`` seconds apart)."""
    outcome = None
    for i in range(n):
        outcome = throttle.failure(session, "password", account=account, ip=ip, now=at(start + i * step))
    session.commit()
    return outcome


def test_policy_delays_grow_then_cap():
    assert [POLICY.delay_for(n) for n in range(0, 11)] == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64]
    assert POLICY.delay_for(40) == POLICY.max_delay_seconds
    assert POLICY.delay_for(30, ip=True) == 0 and POLICY.delay_for(31, ip=True) == 1
    assert POLICY.ip_threshold == 100


def test_policy_refuses_a_threshold_above_100():
    with pytest.raises(ValueError):
        ThrottlePolicy(lockout_threshold=101)


def test_first_failures_are_free(throttle, session):
    fail_n(throttle, session, 3, step=0)
    throttle.check(session, "password", account="jdupont", ip="10.0.0.1", now=at(0))


def test_incremental_delay_after_free_failures(throttle, session):
    fail_n(throttle, session, 4, step=0)  # fourth failure at t=0: one second to wait
    with pytest.raises(Throttled) as info:
        throttle.check(session, "password", account="jdupont", ip=None, now=at(0.2))
    assert info.value.retry_after == 1 and info.value.scope == "account"
    assert not isinstance(info.value, Locked)
    throttle.check(session, "password", account="jdupont", ip=None, now=at(1.01))
    throttle.failure(session, "password", account="jdupont", ip=None, now=at(1.01))
    with pytest.raises(Throttled) as info:
        throttle.check(session, "password", account="jdupont", ip=None, now=at(1.5))
    assert info.value.retry_after == 2


def test_lock_after_threshold_then_expiry_then_relock(throttle, session):
    outcome = fail_n(throttle, session, 10)
    assert outcome.account_failures == 10 and outcome.locked_now
    last = at(9 * 1000)
    with pytest.raises(Locked) as info:
        throttle.check(session, "password", account="JDupont ", ip=None, now=last + dt.timedelta(minutes=1))
    assert info.value.retry_after == 14 * 60
    assert "bloqué" in info.value.message
    # The lock ends after lockout_minutes; one more failure locks again at once.
    throttle.check(session, "password", account="jdupont", ip=None, now=last + dt.timedelta(minutes=15, seconds=1))
    again = throttle.failure(session, "password", account="jdupont", ip=None,
                             now=last + dt.timedelta(minutes=16))
    assert again.account_failures == 11 and not again.locked_now
    with pytest.raises(Locked):
        throttle.check(session, "password", account="jdupont", ip=None, now=last + dt.timedelta(minutes=17))


def test_success_resets_the_account_counter_not_the_ip_one(throttle, session):
    fail_n(throttle, session, 9)
    throttle.success(session, "password", account="jdupont", ip="10.0.0.1")
    assert throttle.status(session, "password", "jdupont", now=at(9000)) is None
    assert throttle.failure(session, "password", account="jdupont", ip="10.0.0.1",
                            now=at(10_000)).ip_failures == 10


def test_kinds_and_accounts_are_separate(throttle, session):
    fail_n(throttle, session, 10)
    throttle.check(session, "totp", account="jdupont", ip="10.0.0.1", now=at(9001))
    throttle.check(session, "password", account="pmartin", ip="10.0.0.1", now=at(9001))
    with pytest.raises(ValueError):
        throttle.check(session, "sms", account="x", ip=None)


def test_ip_limit_is_looser_and_never_locks_accounts(throttle, session):
    # 99 failures on 99 different accounts from one IP: no account is locked, the IP still may try.
    # (spaced by the longest delay, so that only the count matters)
    for i in range(99):
        throttle.failure(session, "password", account=f"user{i}", ip="10.9.9.9", now=at(i * 301))
    session.commit()
    throttle.check(session, "password", account="user1", ip="10.9.9.9", now=at(99 * 301))
    throttle.failure(session, "password", account="user99", ip="10.9.9.9", now=at(99 * 301))
    with pytest.raises(Throttled) as info:
        throttle.check(session, "password", account="someone", ip="10.9.9.9", now=at(99 * 301 + 400))
    assert info.value.scope == "ip" and not isinstance(info.value, Locked)
    assert info.value.retry_after == 15 * 60 - 400
    # The accounts themselves are not locked: from another address they may try.
    throttle.check(session, "password", account="user99", ip="10.1.1.1", now=at(99 * 301 + 1))


def test_old_failures_are_forgotten(throttle, session):
    fail_n(throttle, session, 9)
    later = at(9000) + dt.timedelta(seconds=POLICY.forget_after_seconds + 1)
    assert throttle.status(session, "password", "jdupont", now=later) is None
    assert throttle.failure(session, "password", account="jdupont", ip=None, now=later).account_failures == 1


def test_unlock(throttle, session):
    fail_n(throttle, session, 10)
    throttle.unlock(session, "password", "jdupont")
    throttle.check(session, "password", account="jdupont", ip=None, now=at(9001))


def test_long_or_strange_accounts_get_a_bounded_key():
    key = account_key("x" * 500, "password")
    assert len(key) < 80 and "xxxxx" not in key
    assert account_key(" JDupont ", "totp") == "account:jdupont:totp"


def test_uses_the_clock_when_no_time_is_given(throttle, session):
    with time_machine.travel(T0, tick=False):
        fail_n(throttle, session, 10, step=0)
        with pytest.raises(Locked):
            throttle.check(session, "password", account="jdupont", ip=None)
    with time_machine.travel(T0 + dt.timedelta(minutes=16), tick=False):
        throttle.check(session, "password", account="jdupont", ip=None)


def test_concurrent_failures_each_count_once(throttle, rt):
    """Eight workers, each with its own connection, fail 5 times each on the same fresh key."""
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(5):
                with rt.db.session() as s:
                    throttle.failure(s, "activation", account="racer", ip=None, now=at(0))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with rt.db.session() as s:
        assert throttle.status(s, "activation", "racer", now=at(1)).failures == 40


def test_make_throttle_picks_the_backend(settings):
    import dataclasses

    from hospiconnect.ratelimit import RedisBackend, RedisWithDatabaseFallback

    assert isinstance(make_throttle(dataclasses.replace(settings, redis_url="")).backend, DatabaseBackend)
    t = make_throttle(dataclasses.replace(settings, redis_url="redis://127.0.0.1:6379/5", lockout_threshold=5,
                                          lockout_minutes=3))
    # Redis, with the database while Redis is away (tests/unit/core/test_ratelimit_fallback.py).
    assert isinstance(t.backend, RedisWithDatabaseFallback) and isinstance(t.backend.redis, RedisBackend)
    assert (t.policy.lockout_threshold, t.policy.lockout_seconds) == (5, 180)


def test_messages_are_french():
    assert Throttled(30).message == "Trop de tentatives. Réessayez dans 30 secondes."
    assert "15 minutes" in Locked(900).message
