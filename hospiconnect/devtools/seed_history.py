"""The demo's past year, so that the RSSI's trajectory dashboard has a believable history on first start.

``seed_demo(..., history_days=365)`` (what ``hospiconnect demo`` runs) gives the fictional GHT a past, in two
steps, then rebuilds the trajectory from it:

* the **directory** (:class:`PastDirectory`, here, while the seed creates the people): HospiConnect went live
  :data:`LIVE_BEFORE_DAYS` days before the history shown, the day the HR directory was imported; the people who
  started later were created a few days before their start date (``pending``) and activated on it by the daily
  job; contracts that ended (suspended the next morning, departed after the grace period) and suspensions fall
  on past days;
* what people did over that time — MIE, enrollment cases, exceptions, emergency accesses, sign-ins
  (:mod:`hospiconnect.devtools.seed_activity`, once the demo accounts are ready);
* :func:`ensure_trajectory` rebuilds the trajectory's days from that history (the core's backfill) and takes
  today's snapshot — at each start only the days still missing, so a second run adds nothing.

Everything is done by the product's services. The dates are the demo's only liberty: journal events are dated
with :func:`hospiconnect.devtools.backdate.journal_dated`, and the rows the services stamp "now" are backdated
(here ``Identity.created_at``, ``updated_at`` and ``status_changed_at``) — acceptable in a demo seed only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any, Callable

from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.db import utcnow
from hospiconnect.devtools.backdate import journal_dated
from hospiconnect.devtools.seed import ACTOR, Directory, _create, _Tally
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from hospiconnect.policies import load_policy
from hospiconnect.policies.policy import zone
from hospiconnect.settings import Settings
from hospiconnect.trajectory import snapshots

#: The journal actor of the status changes that the daily job (``hospiconnect jobs run``) makes.
JOBS_ACTOR = "system:jobs"
#: The RIE deadline: two factors for health data from that day (hospiconnect/policies/rie-2026.yaml).
RIE_DEADLINE = dt.date(2026, 1, 1)
#: HospiConnect went live (the HR directory imported) this many days before the history shown.
LIVE_BEFORE_DAYS = 120


class Clock:
    """Local days of the policy's time zone → instants; never later than the seed's start."""

    def __init__(self, timezone: str, rnd: random.Random, now: dt.datetime) -> None:
        self.zone = zone(timezone)
        self.rnd = rnd
        self.latest = now - dt.timedelta(minutes=1)

    def at(self, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=self.zone)
        return min(local.astimezone(dt.timezone.utc), self.latest)

    def during(self, day: dt.date, first_hour: int = 8, last_hour: int = 18) -> dt.datetime:
        """A random instant of ``day`` between ``first_hour`` and ``last_hour``."""
        minute = self.rnd.randrange(first_hour * 60, last_hour * 60)
        return self.at(day, minute // 60, minute % 60)


@dataclasses.dataclass
class Life:
    """The days a person was active in HospiConnect: from ``since`` until ``until`` (excluded; None: still)."""

    since: dt.date
    until: dt.date | None = None

    def active_on(self, day: dt.date) -> bool:
        return self.since <= day and (self.until is None or day < self.until)


class PastDirectory(Directory):
    """Writes the directory as it happened over the past ``days`` (see the module's docstring); :attr:`lives`
    keeps the days each person was active, for :mod:`hospiconnect.devtools.seed_activity`."""

    def __init__(self, settings: Settings, *, today: dt.date, days: int, seed: int) -> None:
        self.policy = load_policy(settings.policy_file)
        self.settings = settings
        self.today = today
        self.days = days
        self.first_day = today - dt.timedelta(days=days)
        self.live_day = self.first_day - dt.timedelta(days=LIVE_BEFORE_DAYS)
        # A generator of its own: the directory's people are the same with or without a past.
        self.rnd = random.Random(seed + 1)
        self.clock = Clock(self.policy.timezone, self.rnd, utcnow())
        self.lives: dict[int, Life] = {}

    def _dated(self, session: Session, identity: Identity, at: dt.datetime,
               action: Callable[[], None]) -> None:
        with journal_dated(session, at):
            action()
        identity.status_changed_at = identity.updated_at = at

    def create(self, session: Session, raw: dict[str, Any], tally: _Tally, today: dt.date, *,
               confirm_homonym: bool = False) -> Identity:
        start: dt.date | None = raw["start_date"]
        rnd = self.rnd
        if start is None or start <= self.live_day:
            created = self.live_day  # imported with the HR directory
        elif start > today:
            created = max(self.live_day, today - dt.timedelta(days=rnd.randint(1, 10)))
        else:
            created = max(self.live_day, start - dt.timedelta(days=rnd.randint(0, 14)))
        at = self.clock.during(created)
        with journal_dated(session, at):
            identity = _create(session, raw, tally, created, confirm_homonym=confirm_homonym)
        identity.created_at = identity.updated_at = identity.status_changed_at = at
        if identity.status == "active":
            self.lives[identity.id] = Life(created)
        elif start is not None and start <= today:
            # The daily job activates the arrival early in the morning of the start date.
            self._dated(session, identity, self.clock.at(start, 5, 30), lambda: services.change_status(
                session, identity, "active", actor=JOBS_ACTOR, reason="date d'arrivée atteinte"))
            self.lives[identity.id] = Life(start)
        return identity

    def depart(self, session: Session, identity: Identity, left: dt.date, today: dt.date) -> None:
        life = self.lives[identity.id]
        announced = min(left, max(life.since, left - dt.timedelta(days=self.rnd.randint(5, 30))))
        self._dated(session, identity, self.clock.during(announced), lambda: services.end(
            session, identity, actor=ACTOR, end_date=left, reason="fin de contrat", today=announced))
        if identity.status == "active":
            # The end date was ahead: the daily job suspends the identity the morning after it.
            self._dated(session, identity, self.clock.at(left + dt.timedelta(days=1), 5, 30),
                        lambda: services.change_status(session, identity, "suspended", actor=JOBS_ACTOR,
                                                       reason="date de fin dépassée"))
            life.until = left + dt.timedelta(days=1)
        else:  # announced on the last day: suspended at once
            life.until = announced
        grace = self.settings.departure_grace_days
        gone = min(today, left + dt.timedelta(days=grace + 1))
        self._dated(session, identity, self.clock.at(gone, 5, 30), lambda: services.change_status(
            session, identity, "departed", actor=JOBS_ACTOR,
            reason=f"départ : fin de contrat depuis plus de {grace} jours"))

    def suspend(self, session: Session, identity: Identity, reason: str, today: dt.date) -> None:
        life = self.lives[identity.id]
        day = min(today, max(life.since + dt.timedelta(days=7), today - dt.timedelta(days=self.rnd.randint(10, 150))))
        self._dated(session, identity, self.clock.during(day),
                    lambda: services.suspend(session, identity, actor=ACTOR, reason=reason))
        life.until = day


def ensure_trajectory(session: Session, settings: Settings, *, today: dt.date, days: int) -> str:
    """Rebuild the trajectory's days missing among the last ``days`` from the history (the core's backfill) and
    take today's snapshot; nothing when today's is already taken. Return the French summary part."""
    latest = snapshots.latest_day(session)
    if latest is not None and latest >= today:
        return "trajectoire déjà à jour"
    policy = load_policy(settings.policy_file)
    first = today - dt.timedelta(days=days) if latest is None else max(latest + dt.timedelta(days=1),
                                                                        today - dt.timedelta(days=days))
    # The backfill reads the journal through the session's connection: the events of this transaction must be
    # written first.
    audit.write_pending(session)
    rebuilt = 0
    if first < today:
        rebuilt = snapshots.backfill(session, policy, first, today - dt.timedelta(days=1)).days
    report = snapshots.take_snapshot(session, policy, today)
    share = round(100 * report.compliant / report.active) if report.active else 0
    return (f"trajectoire : {rebuilt} jour(s) reconstitué(s) et relevé du jour ({report.compliant} identités "
            f"conformes sur {report.active} actives, {share} %)")
