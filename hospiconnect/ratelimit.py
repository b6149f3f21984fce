"""Throttling and lockout shared by every process (database or Redis).

Failed attempts are counted per account and per client IP, separately for each kind of secret
(``password``, ``totp``, ``recovery``, ``activation``, ``emergency``), as SECURITY.md item 15 asks:

* **account** counters: the first :attr:`ThrottlePolicy.free_failures` consecutive failures cost nothing,
  then each further attempt must wait 1 s, 2 s, 4 s… (capped); after ``lockout_threshold`` consecutive
  failures the account is locked for ``lockout_minutes``. A success resets the counter. When a lock has
  expired the counter is kept, so one more failure locks again at once: an attacker gets one guess per
  lock period, never a fresh series of ``lockout_threshold`` guesses.
* **IP** counters are looser (``ip_factor`` times the account figures) and never lock an account: a
  blocked IP gets :class:`Throttled`, never :class:`Locked`. A success does not reset them, so one valid
  account of the attacker's own cannot launder a guessing campaign.

Counters that have seen no failure for ``forget_after`` are forgotten. Accounts are keyed by the user
name as typed (normalised), not by whether it exists: unknown names are throttled and lock exactly like
real ones, so lockout behaviour does not reveal which accounts exist.

Usage: ``throttle.check(...)`` before verifying (raises), then ``failure(...)`` or ``success(...)``.
The database backend works in the caller's session; the Redis backend ignores it.

**When Redis fails** (``HOSPICONNECT_REDIS_URL`` set, see :class:`RedisWithDatabaseFallback`): counting never
stops, it moves to the database. A Redis that refuses connections, does not answer within a second or
refuses writes sends every attempt of the process to the database backend, in the caller's session, for
:data:`REDIS_RETRY_SECONDS`; then one attempt tries Redis again. A warning is logged when the process
switches to the database, at most once a minute while Redis stays away, and when it switches back — the
error's class and first line only, never a key (keys carry user names and addresses). Across a switch:

* going down: the counters held in Redis cannot be read, so counting restarts in the database (from what
  the database still holds of an earlier outage less than ``forget_after`` old). An attacker who had run up
  ``n < lockout_threshold`` failures just before the outage gets at most ``lockout_threshold`` more before
  the database locks the account: one outage can at worst double the series, never remove the lockout;
* coming back: the counters the database wrote during the outage are copied into Redis (each field keeps
  the larger value), so a lock set during the outage stays in force and a series goes on where it was;
* a success during the outage resets the database counter only; the Redis counter from before the outage
  comes back with Redis (stricter, never looser). Database counters of an outage are left in place and
  forgotten after ``forget_after``.

Nothing fails open: when neither Redis nor the database answers, the error propagates and the request
gets the 503 of a database outage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import math
import threading
import time
from typing import Any, Callable, Protocol, TypeVar

from sqlalchemy import Integer, String, case, column, delete, literal, select, table, update
from sqlalchemy.orm import Session

from hospiconnect.db import UTCDateTime, utcnow
from hospiconnect.errors import HospiConnectError
from hospiconnect.settings import Settings

KINDS = ("password", "totp", "recovery", "activation", "emergency")

log = logging.getLogger("hospiconnect.ratelimit")

#: How long a process keeps its counters in the database after Redis failed, before trying Redis again.
REDIS_RETRY_SECONDS = 5.0
#: While Redis stays away, how often the warning is repeated.
REDIS_REMINDER_SECONDS = 60.0
# Redis runs next to the service: a second without an answer means it is not going to answer. One retry
# (no back-off) reconnects a pooled connection that a Redis restart closed.
REDIS_CONNECT_TIMEOUT_SECONDS = 0.5
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0


class Throttled(HospiConnectError):
    """Too many recent failures: the next attempt must wait ``retry_after`` seconds."""

    code = "throttled"
    http_status = 429

    def __init__(self, retry_after: int, *, scope: str = "account", message: str | None = None) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(message or f"Trop de tentatives. Réessayez dans {_french_duration(retry_after)}.")
        self.retry_after = retry_after
        self.scope = scope


class Locked(Throttled):
    """The account is locked for this kind of secret until ``retry_after`` seconds have passed."""

    code = "locked"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, scope="account", message=(
            "Trop de tentatives infructueuses : l'accès est temporairement bloqué. "
            f"Réessayez dans {_french_duration(max(1, int(retry_after)))}."))


def _french_duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconde{'s' if seconds > 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


@dataclasses.dataclass(frozen=True)
class ThrottlePolicy:
    """The numbers of the throttle (account figures; IP figures are ``ip_factor`` times larger)."""

    lockout_threshold: int = 10
    lockout_seconds: int = 15 * 60
    free_failures: int = 3
    base_delay_seconds: int = 1
    max_delay_seconds: int = 5 * 60
    ip_factor: int = 10
    forget_after_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if not 1 <= self.lockout_threshold <= 100:
            # NIST SP 800-63B: at most 100 consecutive failed attempts on one account.
            raise ValueError("lockout_threshold must be between 1 and 100")

    @classmethod
    def from_settings(cls, settings: Settings) -> "ThrottlePolicy":
        return cls(lockout_threshold=settings.lockout_threshold, lockout_seconds=settings.lockout_minutes * 60)

    def delay_for(self, failures: int, *, ip: bool = False) -> int:
        """Return the seconds to wait after ``failures`` consecutive failures (0 while still free)."""
        free = self.free_failures * (self.ip_factor if ip else 1)
        if failures <= free:
            return 0
        return min(self.base_delay_seconds * 2 ** min(failures - free - 1, 30), self.max_delay_seconds)

    @property
    def ip_threshold(self) -> int:
        return self.lockout_threshold * self.ip_factor


@dataclasses.dataclass(frozen=True)
class CounterState:
    failures: int
    last_failure_at: dt.datetime | None
    locked_until: dt.datetime | None


class ThrottleBackend(Protocol):
    """Where counters live. Every method is atomic with respect to other processes."""

    def get(self, session: Session | None, key: str, forget_before: dt.datetime) -> CounterState | None:
        """Return the counter, or None when absent or when its last failure is older than ``forget_before``."""

    def get_many(self, session: Session | None, keys: list[str],
                 forget_before: dt.datetime) -> dict[str, CounterState | None]:
        """:meth:`get` for several keys in one round trip."""

    def add_failure(self, session: Session | None, key: str, now: dt.datetime, *, lock_at: int,
                    lock_until: dt.datetime, forget_before: dt.datetime) -> int:
        """Count one failure (restarting from 1 when the previous one is older than ``forget_before``) and
        set ``locked_until`` when the count reaches ``lock_at``. Return the new count."""

    def reset(self, session: Session | None, key: str) -> None:
        """Forget the counter."""


def _safe_key(value: str) -> str:
    # Keys must fit the 200-character column and must not carry a long pasted secret verbatim.
    value = value.strip().casefold()
    if len(value) > 64 or not value.isprintable():
        return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]
    return value


def account_key(account: str, kind: str) -> str:
    return f"account:{_safe_key(account)}:{kind}"


def ip_key(ip: str, kind: str) -> str:
    return f"ip:{_safe_key(ip)}:{kind}"


@dataclasses.dataclass(frozen=True)
class FailureOutcome:
    """What a failure did: the account counter after it, and whether it just locked the account."""

    account_failures: int
    locked_now: bool
    ip_failures: int


class Throttle:
    """Per-account and per-IP throttling over one backend (see the module docstring)."""

    def __init__(self, backend: ThrottleBackend, policy: ThrottlePolicy | None = None) -> None:
        self.backend = backend
        self.policy = policy or ThrottlePolicy()

    def _forget_before(self, now: dt.datetime) -> dt.datetime:
        return now - dt.timedelta(seconds=self.policy.forget_after_seconds)

    def check(self, session: Session | None, kind: str, *, account: str | None, ip: str | None,
              now: dt.datetime | None = None) -> None:
        """Return when an attempt may be made now.

        Raises :class:`Locked` when the account is locked, :class:`Throttled` (``scope`` "account" or "ip")
        when the attempt comes too soon after the previous failures.
        """
        _check_kind(kind)
        now = now or utcnow()
        keys = ([account_key(account, kind)] if account else []) + ([ip_key(ip, kind)] if ip else [])
        states = self.backend.get_many(session, keys, self._forget_before(now)) if keys else {}
        if account:
            state = states.get(account_key(account, kind))
            if state is not None:
                if state.locked_until is not None and state.locked_until > now:
                    raise Locked(_seconds_until(state.locked_until, now))
                self._raise_if_early(state, now, ip=False)
        if ip:
            state = states.get(ip_key(ip, kind))
            if state is not None:
                if state.locked_until is not None and state.locked_until > now:
                    raise Throttled(_seconds_until(state.locked_until, now), scope="ip")
                self._raise_if_early(state, now, ip=True)

    def _raise_if_early(self, state: CounterState, now: dt.datetime, *, ip: bool) -> None:
        delay = self.policy.delay_for(state.failures, ip=ip)
        if delay and state.last_failure_at is not None:
            ready = state.last_failure_at + dt.timedelta(seconds=delay)
            if ready > now:
                raise Throttled(_seconds_until(ready, now), scope="ip" if ip else "account")

    def failure(self, session: Session | None, kind: str, *, account: str | None, ip: str | None,
                now: dt.datetime | None = None) -> FailureOutcome:
        """Count one failed attempt; return the account counter and whether this failure locked it."""
        _check_kind(kind)
        now = now or utcnow()
        forget = self._forget_before(now)
        account_failures = ip_failures = 0
        if account:
            account_failures = self.backend.add_failure(
                session, account_key(account, kind), now, lock_at=self.policy.lockout_threshold,
                lock_until=now + dt.timedelta(seconds=self.policy.lockout_seconds), forget_before=forget)
        if ip:
            ip_failures = self.backend.add_failure(
                session, ip_key(ip, kind), now, lock_at=self.policy.ip_threshold,
                lock_until=now + dt.timedelta(seconds=self.policy.lockout_seconds), forget_before=forget)
        return FailureOutcome(account_failures, account_failures == self.policy.lockout_threshold, ip_failures)

    def success(self, session: Session | None, kind: str, *, account: str | None,
                ip: str | None = None) -> None:
        """Reset the account counter after a successful attempt (the IP counter is kept on purpose)."""
        _check_kind(kind)
        if account:
            self.backend.reset(session, account_key(account, kind))

    def status(self, session: Session | None, kind: str, account: str,
               now: dt.datetime | None = None) -> CounterState | None:
        """Return the account counter (for officers' screens), or None."""
        return self.backend.get(session, account_key(account, kind), self._forget_before(now or utcnow()))

    def unlock(self, session: Session | None, kind: str, account: str) -> None:
        """Forget an account's counter (an officer lifting a lock)."""
        self.backend.reset(session, account_key(account, kind))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown throttle kind {kind!r}")


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


# --- Database backend -----------------------------------------------------------------------------------

# The table is defined by hospiconnect.ratelimit_models (and its migration). The import-linter layers
# contract declares the two modules independent, so this module describes the few columns it touches
# with a lightweight Core table instead of importing the mapped class.
_counters = table(
    "throttle_counters",
    column("key", String(200)),
    column("failures", Integer()),
    column("last_failure_at", UTCDateTime()),
    column("locked_until", UTCDateTime()),
)


class DatabaseBackend:
    """Counters in ``throttle_counters``, written in the caller's session (commit with the attempt)."""

    def get(self, session: Session | None, key: str, forget_before: dt.datetime) -> CounterState | None:
        return self.get_many(session, [key], forget_before)[key]

    def get_many(self, session: Session | None, keys: list[str],
                 forget_before: dt.datetime) -> dict[str, CounterState | None]:
        assert session is not None, "the database backend needs the caller's session"
        found: dict[str, CounterState | None] = dict.fromkeys(keys)
        rows = session.execute(
            select(_counters.c.key, _counters.c.failures, _counters.c.last_failure_at, _counters.c.locked_until)
            .where(_counters.c.key.in_(keys))
        ).all()
        for row in rows:
            if row.failures > 0 and row.last_failure_at is not None and row.last_failure_at >= forget_before:
                found[row.key] = CounterState(row.failures, row.last_failure_at, row.locked_until)
        return found

    def add_failure(self, session: Session | None, key: str, now: dt.datetime, *, lock_at: int,
                    lock_until: dt.datetime, forget_before: dt.datetime) -> int:
        assert session is not None, "the database backend needs the caller's session"
        stale = (_counters.c.last_failure_at.is_(None)) | (_counters.c.last_failure_at < forget_before)
        new_count = case((stale, 1), else_=_counters.c.failures + 1)
        # One UPDATE decides the new count (no read-then-write); the row is created first if absent, with an
        # insert that ignores a concurrent insert of the same key, so two first failures cannot collide.
        stmt = (
            update(_counters)
            .where(_counters.c.key == key)
            .values(failures=new_count, last_failure_at=now,
                    locked_until=case((new_count >= lock_at, literal(lock_until, UTCDateTime())),
                                      else_=_counters.c.locked_until))
            .returning(_counters.c.failures)
            .execution_options(synchronize_session=False)
        )
        count = session.execute(stmt).scalar()
        if count is None:
            _insert_if_absent(session, key)
            count = session.execute(stmt).scalar_one()
        return int(count)

    def reset(self, session: Session | None, key: str) -> None:
        assert session is not None, "the database backend needs the caller's session"
        session.execute(delete(_counters).where(_counters.c.key == key)
                        .execution_options(synchronize_session=False))

    def failed_since(self, session: Session, since: dt.datetime) -> list[tuple[str, CounterState]]:
        """Return the counters whose last failure is at or after ``since`` (those an outage of Redis left
        here; see :class:`RedisWithDatabaseFallback`)."""
        rows = session.execute(
            select(_counters.c.key, _counters.c.failures, _counters.c.last_failure_at, _counters.c.locked_until)
            .where(_counters.c.last_failure_at >= since, _counters.c.failures > 0)
            .order_by(_counters.c.key)
        )
        return [(row.key, CounterState(row.failures, row.last_failure_at, row.locked_until)) for row in rows]


def _insert_if_absent(session: Session, key: str) -> None:
    dialect = session.get_bind().dialect.name
    values = {"key": key, "failures": 0, "last_failure_at": None, "locked_until": None}
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(_counters).values(**values).on_conflict_do_nothing(index_elements=["key"]))
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(_counters).values(**values).on_conflict_do_nothing(index_elements=["key"]))
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database {dialect}")


# --- Redis backend --------------------------------------------------------------------------------------

# One hash per key: f = failures, l = last failure (epoch seconds), u = locked until (epoch seconds).
# The script runs atomically in Redis, so concurrent failures from many processes each count once.
_ADD_FAILURE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
local count
if last < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'f', 1)
  redis.call('HDEL', KEYS[1], 'u')
  count = 1
else
  count = redis.call('HINCRBY', KEYS[1], 'f', 1)
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
if count >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'u', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return count
"""


# Copies a counter kept by the database during an outage into Redis: each field keeps the larger value
# (a stale Redis counter counts as zero), so running it twice, or from two processes, changes nothing.
# ARGV: failures, last failure, locked until ('' when none; epoch seconds), forget before, expiry.
_MERGE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
local count = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local until_ = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
if last < tonumber(ARGV[4]) then
  count = 0
  until_ = 0
end
if tonumber(ARGV[1]) > count then redis.call('HSET', KEYS[1], 'f', ARGV[1]) end
if tonumber(ARGV[2]) > last then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end
if ARGV[3] ~= '' and tonumber(ARGV[3]) > until_ then redis.call('HSET', KEYS[1], 'u', ARGV[3]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
"""


class RedisBackend:
    """Counters in Redis under ``prefix``; times come from the application clock, as with the database.

    The client gives up after :data:`REDIS_CONNECT_TIMEOUT_SECONDS` / :data:`REDIS_SOCKET_TIMEOUT_SECONDS`
    and retries once: redis-py's own defaults could hold a request for seconds on a Redis that is away.
    """

    def __init__(self, url: str, *, prefix: str = "hospiconnect:throttle:", expire_seconds: int = 2 * 86400,
                 client: object | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.client = client or redis.Redis.from_url(
            url, socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1))
        self.prefix = prefix
        self.expire_seconds = expire_seconds
        self._script = self.client.register_script(_ADD_FAILURE)  # type: ignore[attr-defined]
        self._merge = self.client.register_script(_MERGE)  # type: ignore[attr-defined]

    def get(self, session: Session | None, key: str, forget_before: dt.datetime) -> CounterState | None:
        return self.get_many(session, [key], forget_before)[key]

    def get_many(self, session: Session | None, keys: list[str],
                 forget_before: dt.datetime) -> dict[str, CounterState | None]:
        pipe = self.client.pipeline(transaction=False)  # type: ignore[attr-defined]
        for key in keys:
            pipe.hmget(self.prefix + key, "f", "l", "u")
        found: dict[str, CounterState | None] = {}
        for key, (failures, last, until) in zip(keys, pipe.execute()):
            last_at = _from_epoch(last)
            if not failures or int(failures) <= 0 or last_at is None or last_at < forget_before:
                found[key] = None
            else:
                found[key] = CounterState(int(failures), last_at, _from_epoch(until))
        return found

    def add_failure(self, session: Session | None, key: str, now: dt.datetime, *, lock_at: int,
                    lock_until: dt.datetime, forget_before: dt.datetime) -> int:
        expire = max(self.expire_seconds, math.ceil((lock_until - now).total_seconds()) + 60)
        return int(self._script(keys=[self.prefix + key], args=[
            repr(now.timestamp()), lock_at, repr(lock_until.timestamp()), repr(forget_before.timestamp()), expire]))

    def reset(self, session: Session | None, key: str) -> None:
        self.client.delete(self.prefix + key)  # type: ignore[attr-defined]

    def merge(self, counters: list[tuple[str, CounterState]], forget_before: dt.datetime, *,
              batch: int = 500) -> None:
        """Copy ``counters`` in, each field keeping the larger of the two values (see ``_MERGE``), ``batch``
        counters per round trip."""
        now = time.time()
        for start in range(0, len(counters), batch):
            pipe = self.client.pipeline(transaction=False)  # type: ignore[attr-defined]
            for key, state in counters[start:start + batch]:
                last = state.last_failure_at.timestamp() if state.last_failure_at else 0.0
                until = repr(state.locked_until.timestamp()) if state.locked_until else ""
                expire = self.expire_seconds
                if state.locked_until is not None:
                    expire = max(expire, math.ceil(state.locked_until.timestamp() - now) + 60)
                self._merge(keys=[self.prefix + key], args=[state.failures, repr(last), until,
                                                            repr(forget_before.timestamp()), expire], client=pipe)
            pipe.execute()


def _from_epoch(raw: bytes | None) -> dt.datetime | None:
    if raw is None:
        return None
    return dt.datetime.fromtimestamp(float(raw), dt.timezone.utc)


# --- Redis, with the database while Redis is away ------------------------------------------------------

def _redis_unavailable() -> tuple[type[BaseException], ...]:
    """The errors that mean "Redis cannot serve now" (refused, reset, timed out, loading, read-only replica,
    out of memory); any other Redis error is a defect and propagates."""
    from redis import exceptions

    return (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ReadOnlyError,
            exceptions.OutOfMemoryError)


_T = TypeVar("_T")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


class RedisWithDatabaseFallback:
    """A :class:`ThrottleBackend` that uses Redis while it answers and the database while it does not (see the
    module docstring for what happens to the counters across a switch).

    The state (Redis away until when, since when) is per process: each process finds out by itself, at the
    cost of one failed Redis call per :attr:`retry_seconds`. Thread-safe.
    """

    def __init__(self, redis_backend: RedisBackend, database: DatabaseBackend | None = None, *,
                 retry_seconds: float = REDIS_RETRY_SECONDS, reminder_seconds: float = REDIS_REMINDER_SECONDS,
                 forget_after_seconds: int = ThrottlePolicy.forget_after_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis_backend
        self.database = database or DatabaseBackend()
        self.retry_seconds = retry_seconds
        self.reminder_seconds = reminder_seconds
        self.forget_after_seconds = forget_after_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # None: Redis in use; else the next moment to try it again
        self._down_since: dt.datetime | None = None  # first failure of the current outage (wall clock)
        self._reminded_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while this process keeps its counters in the database."""
        return self._retry_at is not None

    # ThrottleBackend

    def get(self, session: Session | None, key: str, forget_before: dt.datetime) -> CounterState | None:
        return self._call(session, lambda b: b.get(session, key, forget_before))

    def get_many(self, session: Session | None, keys: list[str],
                 forget_before: dt.datetime) -> dict[str, CounterState | None]:
        return self._call(session, lambda b: b.get_many(session, keys, forget_before))

    def add_failure(self, session: Session | None, key: str, now: dt.datetime, *, lock_at: int,
                    lock_until: dt.datetime, forget_before: dt.datetime) -> int:
        return self._call(session, lambda b: b.add_failure(session, key, now, lock_at=lock_at,
                                                           lock_until=lock_until, forget_before=forget_before))

    def reset(self, session: Session | None, key: str) -> None:
        self._call(session, lambda b: b.reset(session, key))

    # the switch

    def _call(self, session: Session | None, operation: Callable[[Any], _T]) -> _T:
        now = self._clock()
        with self._lock:
            away = self._retry_at is not None
            probing = away and now >= self._retry_at  # type: ignore[operator]
            if probing:
                # This call tries Redis again; the process's other calls keep to the database meanwhile, so a
                # Redis that hangs holds one request, not all of them.
                self._retry_at = now + self.retry_seconds
        if away and not probing:
            return self._on_database(session, operation, None)
        try:
            if probing:
                self._carry_over(session)
            result = operation(self.redis)
        except _redis_unavailable() as exc:
            self._went_away(exc)
            return self._on_database(session, operation, exc)
        if probing:
            self._came_back()
        return result

    def _on_database(self, session: Session | None, operation: Callable[[Any], _T],
                     error: BaseException | None) -> _T:
        if session is None:
            # Nowhere to count: refuse rather than let the attempt through uncounted.
            raise error or RuntimeError("Redis is unavailable and no database session was given")
        return operation(self.database)

    def _went_away(self, exc: BaseException) -> None:
        now = self._clock()
        with self._lock:
            first = self._retry_at is None
            self._retry_at = now + self.retry_seconds
            if first:
                self._down_since = utcnow()
                self._reminded_at = now
            remind = not first and now - self._reminded_at >= self.reminder_seconds
            if remind:
                self._reminded_at = now
        if first:
            log.warning("Redis injoignable (%s: %s) : les tentatives sont comptées en base de données ; "
                        "nouvel essai de Redis dans %.0f s", exc.__class__.__name__, _first_line(exc),
                        self.retry_seconds)
        elif remind:
            log.warning("Redis toujours injoignable (%s: %s) : les tentatives restent comptées en base de "
                        "données", exc.__class__.__name__, _first_line(exc))

    def _came_back(self) -> None:
        with self._lock:
            was_down = self._retry_at is not None
            self._retry_at = None
            self._down_since = None
        if was_down:
            log.warning("Redis de nouveau joignable : les tentatives y sont de nouveau comptées")

    def _carry_over(self, session: Session | None) -> None:
        """Copy into Redis the counters the database kept since this process lost Redis (a minute of margin
        for clocks and for the requests that were under way), so that a lock set meanwhile stays in force."""
        with self._lock:
            since = self._down_since
        if session is None or since is None:
            return
        forget_before = utcnow() - dt.timedelta(seconds=self.forget_after_seconds)
        self.redis.merge(self.database.failed_since(session, since - dt.timedelta(minutes=1)), forget_before)


_shared_backends: dict[str, RedisWithDatabaseFallback] = {}
_shared_lock = threading.Lock()


def shared_redis_backend(url: str) -> RedisWithDatabaseFallback:
    """Return this process's backend for the Redis at ``url``: one connection pool, and one memory of
    whether Redis is away, for every request of the process."""
    with _shared_lock:
        backend = _shared_backends.get(url)
        if backend is None:
            backend = _shared_backends[url] = RedisWithDatabaseFallback(RedisBackend(url))
        return backend


def make_throttle(settings: Settings) -> Throttle:
    """Return the throttle configured by ``settings``: Redis (with the database while Redis is away) when
    ``redis_url`` is set, else the database."""
    policy = ThrottlePolicy.from_settings(settings)
    if settings.redis_url:
        return Throttle(shared_redis_backend(settings.redis_url), policy)
    return Throttle(DatabaseBackend(), policy)
