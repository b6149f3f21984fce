"""The plan: everything the generator writes, built in memory first — the clock, the people and their status
history (arrivals, ends of contract, departures, leaves), with the journal events of each change."""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import random
import uuid
from collections import defaultdict
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from benchmarks.synthetic.reference import (
    ARRIVALS,
    LEAVERS,
    CONTRACT_DAYS,
    ESTABLISHMENTS,
    GRACE_DAYS,
    HR_ACTOR,
    JOBS_ACTOR,
    LEGAL_FINESS,
    POLES,
    PROFILES,
    UNIT_KINDS,
    Profile,
    Sizes,
)
from hospiconnect.devtools.hrfile import FAMILY_NAMES, FEMALE_NAMES, MALE_NAMES
from hospiconnect.directory.normalize import normalize_name
from hospiconnect.directory.validation import luhn_complete
from hospiconnect.idp.checks import acr_rank
from hospiconnect.policies import Policy


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder): the parts sum to ``total`` exactly."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def weighted_index(cum: Sequence[float], value: float) -> int:
    """The index drawn by ``value`` (0 ≤ value < cum[-1]) from cumulative weights ``cum``."""
    return bisect.bisect_right(cum, value)



def one_factor_tolerated(policy: Policy, app_class: str, day: dt.date) -> bool:
    """Whether ``app_class`` accepts one factor on ``day`` (a minimum of ``eidas1``, or one-factor networks)."""
    settings = policy.effective(app_class, day).settings
    return acr_rank(settings.min_acr) <= acr_rank("eidas1") or bool(
        settings.single_factor_networks.any or settings.single_factor_networks.networks)


class Clock:
    """Day indexes ↔ instants. Day 0 is the first generated day; day ``days`` is "today" (nothing happens)."""

    def __init__(self, today: dt.date, days: int, timezone: str) -> None:
        self.today, self.days, self.zone = today, days, ZoneInfo(timezone)
        self.first = today - dt.timedelta(days=days)

    def date(self, day: int) -> dt.date:
        return self.first + dt.timedelta(days=day)

    def midnight(self, day: int) -> dt.datetime:
        """Local midnight of ``day``, in UTC."""
        d = self.date(day)
        return dt.datetime(d.year, d.month, d.day, tzinfo=self.zone).astimezone(dt.timezone.utc)

    def at(self, day: int, seconds: float) -> dt.datetime:
        """``seconds`` after local midnight of ``day`` (wall-clock hours, in UTC)."""
        d = self.date(day)
        hours, rest = divmod(int(seconds), 3600)
        local = dt.datetime(d.year, d.month, d.day, min(hours, 23), rest // 60, rest % 60,
                            int((seconds % 1) * 1e6), tzinfo=self.zone)
        return local.astimezone(dt.timezone.utc)


@dataclasses.dataclass(slots=True)
class Person:
    index: int
    id: int
    public_id: str
    user_name: str
    role: str
    contract: str
    rpps: str | None
    units: list[str]
    establishments: list[str]
    roles: list[str]
    created: int
    start_date: dt.date | None
    end_date: dt.date | None
    intervals: list[list[Any]]  # active [from day, until day or None)
    status: str = "active"
    status_reason: str | None = None
    status_changed_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    version: int = 1
    officer: bool = False

    def active_on(self, day: int) -> bool:
        return any(a <= day and (b is None or day < b) for a, b in self.intervals)

    def next_active(self, day: int) -> int | None:
        """``day`` when active then, else the next day the person is active, else None."""
        for a, b in self.intervals:
            if b is not None and day >= b:
                continue
            return max(day, a)
        return None


class Plan:
    """Everything to write, built in memory before one bulk transaction."""

    def __init__(self, sizes: Sizes, clock: Clock, rnd: random.Random, policy: Policy) -> None:
        self.sizes, self.clock, self.rnd, self.policy = sizes, clock, rnd, policy
        self.people: list[Person] = []
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.events: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        self.pool_changes: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.twofa_changes: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
        self.ids: dict[str, int] = {}
        self.officers: list[Person] = []
        self.emergency_officers: list[Person] = []
        self.rssi: list[Person] = []
        # Rows of the tables with many columns, as dicts (keys: the columns, plus "person" for MIE and cases).
        self.mies: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        self.exceptions: list[dict[str, Any]] = []
        self.emergency: list[dict[str, Any]] = []
        self.names: list[tuple[str, str, bool]] = []  # (family name, first name, female) of each person

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rnd.getrandbits(128), version=4))

    def next_id(self, table: str) -> int:
        self.ids[table] = self.ids.get(table, 0) + 1
        return self.ids[table]

    def event(self, at: dt.datetime, tag: str, actor: str, subject: str | None, details: dict[str, Any], *,
              ip: str | None = None, outcome: str = "success") -> None:
        day = (at.astimezone(self.clock.zone).date() - self.clock.first).days
        assert 0 <= day < self.clock.days, (at, tag)
        self.events[day].append((at, tag, actor, subject, ip, outcome, details))

    def day_of(self, at: dt.datetime) -> int:
        return (at.astimezone(self.clock.zone).date() - self.clock.first).days

    def deadline(self) -> int | None:
        """The first day of the period on which the compliance class stops tolerating one factor, or None."""
        cls = self.policy.compliance_class
        tolerated = [one_factor_tolerated(self.policy, cls, self.clock.date(d)) for d in range(-1, self.clock.days)]
        return next((d for d in range(self.clock.days) if tolerated[d] and not tolerated[d + 1]), None)

    def work_time(self, day: int) -> dt.datetime:
        """A moment of a working day (8 h – 18 h, local)."""
        return self.clock.at(day, self.rnd.uniform(8 * 3600, 18 * 3600))


def add_references(plan: Plan) -> None:
    for i, (finess, name, _share) in enumerate(ESTABLISHMENTS, start=1):
        plan.rows["establishments"].append((plan.ids.get("establishments", 0) + i, finess, name, LEGAL_FINESS))
    unit_id = plan.ids.get("org_units", 0)
    for pole, pole_name, _kind, services in POLES:
        unit_id += 1
        pole_id = unit_id
        plan.rows["org_units"].append((pole_id, pole, pole_name, "pole", None))
        for code, name in services:
            unit_id += 1
            plan.rows["org_units"].append((unit_id, code, name, "service", pole_id))


def profiles_for(count: int) -> list[Profile]:
    parts = allocate(count, [p.share for p in PROFILES])
    return [p for p, n in zip(PROFILES, parts) for _ in range(n)]


def add_people(plan: Plan) -> None:
    rnd, clock, days = plan.rnd, plan.clock, plan.clock.days
    profiles = profiles_for(plan.sizes.identities)
    rnd.shuffle(profiles)
    rpps_numbers = iter(rnd.sample(range(10 ** 8), sum(1 for p in profiles if p.rpps)))
    names_seen: dict[str, int] = {}
    est_cum = [sum(e[2] for e in ESTABLISHMENTS[: i + 1]) for i in range(len(ESTABLISHMENTS))]
    base_id = plan.ids.get("identities", 0)
    for index, profile in enumerate(profiles):
        female = rnd.random() < (0.85 if profile.role in ("ide", "sage_femme", "aide_soignant", "secretaire") else 0.55)
        first = rnd.choice(FEMALE_NAMES if female else MALE_NAMES)
        family = rnd.choice(FAMILY_NAMES)
        key = f"{normalize_name(first)}.{normalize_name(family)}".replace(" ", "-").replace("'", "")
        names_seen[key] = names_seen.get(key, 0) + 1
        user_name = key if names_seen[key] == 1 else f"{key}{names_seen[key]}"
        contract = rnd.choices([c for c, _ in profile.contracts], weights=[w for _, w in profile.contracts])[0]
        arrives = rnd.random() < ARRIVALS[contract]
        if arrives:
            start_day = rnd.randrange(1, days + 20)
            created = min(max(0, start_day - rnd.randint(1, 20)), days - 1)
            start_date = clock.date(start_day)
        else:
            start_day, created = 0, 0
            start_date = clock.first - dt.timedelta(days=rnd.randint(1, 365 * 25 if contract == "permanent" else 400))
        end_date = None
        if contract in CONTRACT_DAYS:
            low, high = CONTRACT_DAYS[contract]
            if arrives:
                end_date = start_date + dt.timedelta(days=rnd.randint(low, high))
            else:  # under contract when the period starts (renewed contracts included)
                end_date = clock.first + dt.timedelta(days=rnd.randint(1, 2 * high))
        elif not arrives and rnd.random() < LEAVERS.get(contract, 0):  # retirement, transfer, resignation
            end_date = clock.first + dt.timedelta(days=rnd.randint(1, days))
        units = [rnd.choice(UNIT_KINDS[profile.units])]
        if rnd.random() < 0.1:
            units.append(rnd.choice(UNIT_KINDS[profile.units]))
        establishments = [ESTABLISHMENTS[weighted_index(est_cum, rnd.random())][0]]
        if profile.role == "medecin" and rnd.random() < 0.08:
            establishments.append(rnd.choice(ESTABLISHMENTS)[0])
        person = Person(index=index, id=base_id + index + 1, public_id=plan.uuid(), user_name=user_name,
                        role=profile.role, contract=contract,
                        rpps=luhn_complete(f"10{next(rpps_numbers):08d}") if profile.rpps else None,
                        units=list(dict.fromkeys(units)), establishments=list(dict.fromkeys(establishments)),
                        roles=[profile.role], created=created, start_date=start_date, end_date=end_date,
                        intervals=[[start_day, None]] if start_day < days else [])
        person.status = "active" if start_day < days else "pending"
        plan.people.append(person)
        plan.names.append((family, first, female))
    plan.ids["identities"] = base_id + len(plan.people)
    # Registration officers, on-call officers and the RSSI: permanent staff present all along.
    steady = [p for p in plan.people
              if p.contract == "permanent" and p.end_date is None and p.intervals and p.intervals[0][0] == 0]
    if len(steady) < 10:
        raise ValueError("too few identities for an establishment: generate at least 50")
    desk = [p for p in steady if p.role in ("secretaire", "administratif")] or steady
    nurses = [p for p in steady if p.role in ("ide", "medecin")] or steady
    it = [p for p in steady if p.role in ("informaticien", "administratif")] or steady
    for group, role, count in ((desk, "enrollment_officer", max(2, len(plan.people) // 2500)),
                               (nurses, "emergency_officer", max(2, len(plan.people) // 5000)),
                               (it, "rssi", 2)):
        for person in rnd.sample(group, min(count, len(group))):
            if not person.officer:
                person.officer = True
                person.roles.append(role)
                {"enrollment_officer": plan.officers, "emergency_officer": plan.emergency_officers,
                 "rssi": plan.rssi}[role].append(person)


def change_status(plan: Plan, person: Person, day: int, seconds: float, to: str, reason: str, actor: str) -> None:
    at = plan.clock.at(day, seconds)
    tag = {"active": "directory:identity:reactivated" if person.status == "suspended"
           else "directory:identity:activated", "suspended": "directory:identity:suspended",
           "departed": "directory:identity:departed"}[to]
    plan.event(at, tag, actor, person.public_id, {"from": person.status, "to": to, "reason": reason})
    person.status, person.status_reason, person.status_changed_at = to, reason, at
    person.updated_at = at
    person.version += 1


def add_lifecycle(plan: Plan) -> None:
    """Arrivals, ends of contract, departures and leaves: status history, journal and active intervals."""
    rnd, clock, days = plan.rnd, plan.clock, plan.clock.days
    for person in plan.people:
        created_at = clock.at(person.created, 2 * 3600 + person.index * 0.01)
        person.created_at = person.updated_at = person.status_changed_at = created_at
        status = "active" if person.intervals and person.intervals[0][0] == 0 else "pending"
        person.status = status
        plan.event(created_at, "directory:identity:created", HR_ACTOR, person.public_id,
                   {"user_name": person.user_name, "status": status, "population": "rpps" if person.rpps else "local",
                    "external_id": f"MAT{person.id:07d}"})
        if person.intervals:
            start = person.intervals[0][0]
            if status == "pending":
                change_status(plan, person, start, 3600, "active", "date d'arrivée atteinte", JOBS_ACTOR)
            plan.pool_changes[start].append((person.index, 1))
        if person.end_date is not None and person.intervals:
            suspend_day = (person.end_date - clock.first).days + 1
            if suspend_day < days:
                change_status(plan, person, suspend_day, 3600, "suspended", "date de fin dépassée", JOBS_ACTOR)
                person.intervals[-1][1] = suspend_day
                plan.pool_changes[suspend_day].append((person.index, -1))
                if suspend_day + GRACE_DAYS < days:
                    change_status(plan, person, suspend_day + GRACE_DAYS, 3600, "departed",
                            f"départ : fin de contrat depuis plus de {GRACE_DAYS} jours", JOBS_ACTOR)
        elif person.intervals and not person.officer and rnd.random() < 0.015 and \
                person.intervals[0][0] + 2 < days - 1:
            leave = rnd.randrange(person.intervals[0][0] + 2, days - 1)
            change_status(plan, person, leave, rnd.uniform(9, 17) * 3600, "suspended", "congé de longue durée", "cli")
            person.intervals[-1][1] = leave
            plan.pool_changes[leave].append((person.index, -1))
            back = leave + rnd.randint(20, 150)
            if back < days:
                change_status(plan, person, back, rnd.uniform(9, 17) * 3600, "active", "retour de congé", "cli")
                person.intervals.append([back, None])
                plan.pool_changes[back].append((person.index, 1))

