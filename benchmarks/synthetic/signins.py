"""The sign-in traffic: ``oidc:code:issued`` events day by day, merged in time order with the plan's other events
and appended to the journal.

Each day's volume follows the week (weekends lighter) and a slow growth; each event's time follows a hospital's
day (shift changes). A sign-in picks an active person (administration applications: IT and administrative staff
only) and an application by its share; its ``amr`` and ``acr`` are those of the person's best active second
factor that day when the class requires it or the person used it anyway, else the password alone where the
policy tolerates one factor that day; a person who cannot enter the class that day signs in to an application of
the standard class instead (the provider would have issued no code). A second factor counts from the day after
its activation; the ``sid`` is the person's session of the day.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from typing import Any, Callable

from benchmarks.synthetic.journal import JournalWriter
from benchmarks.synthetic.plan import Clock, Plan, allocate, one_factor_tolerated, weighted_index
from benchmarks.synthetic.reference import ADMIN_ROLES, CLIENTS, PWD_AMR, VARIANT_AMR
from hospiconnect.idp.checks import acr_for, acr_rank
from hospiconnect.policies import Policy

# Share of the day's sign-ins per local hour: shift changes at 7 h, 13–14 h and 19–21 h, a quiet night.
HOURLY = (0.6, 0.4, 0.3, 0.3, 0.4, 0.9, 3.0, 9.0, 8.5, 7.5, 6.5, 6.0, 5.0, 7.0, 7.5, 6.5, 5.5, 5.0, 4.5, 5.5,
          4.0, 2.5, 1.5, 1.0)
_MINUTE_CUM: list[float] = []
_total = 0.0
for _weight in HOURLY:
    for _ in range(60):
        _total += _weight
        _MINUTE_CUM.append(_total)
_MINUTES = range(1440)


def day_offsets(rnd: random.Random, count: int) -> list[int]:
    """Return ``count`` sorted offsets in microseconds from local midnight, shaped like a hospital's day."""
    minutes = rnd.choices(_MINUTES, cum_weights=_MINUTE_CUM, k=count)
    rand = rnd.random
    return sorted(m * 60_000_000 + int(rand() * 60_000_000) for m in minutes)


class Pool:
    """A set of person indexes with O(1) add, remove and uniform draw."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.where: dict[int, int] = {}

    def add(self, item: int) -> None:
        if item not in self.where:
            self.where[item] = len(self.items)
            self.items.append(item)

    def remove(self, item: int) -> None:
        pos = self.where.pop(item, None)
        if pos is None:
            return
        last = self.items.pop()
        if pos < len(self.items):
            self.items[pos] = last
            self.where[last] = pos

    def __len__(self) -> int:
        return len(self.items)


def _day_weights(clock: Clock) -> list[float]:
    """Each day's share of the sign-ins: weekends lighter, 10 % growth over the period."""
    weights = []
    for day in range(clock.days):
        weekday = clock.date(day).weekday()
        weights.append((1.0 if weekday < 5 else 0.55 if weekday == 5 else 0.5) * (1 + 0.1 * day / clock.days))
    return weights


def _class_rules(policy: Policy, day: dt.date) -> dict[str, tuple[int, bool]]:
    """For each class: (rank of the minimum acr, whether one factor is tolerated from the internal network)."""
    return {name: (acr_rank(policy.effective(name, day).settings.min_acr), one_factor_tolerated(policy, name, day))
            for name in policy.classes}


def write_journal(conn: Any, plan: Plan, progress: Callable[[str], None] | None) -> JournalWriter:
    """All journal events, day by day: the plan's events and the sign-ins, merged in time order."""
    rnd, clock, policy = plan.rnd, plan.clock, plan.policy
    emergency_signins = sum(1 for evs in plan.events.values() for e in evs if e[1] == "oidc:code:issued")
    per_day = allocate(max(0, plan.sizes.events - emergency_signins), _day_weights(clock))
    client_cum = [float(sum(c[3] for c in CLIENTS[: i + 1])) for i in range(len(CLIENTS))]
    client_total = client_cum[-1]
    standard = [i for i, c in enumerate(CLIENTS) if c[2] == "standard"]
    fragments = {}  # (variant) → (amr JSON, acr)
    for name, amr in VARIANT_AMR.items():
        fragments[name + "+"] = (json.dumps(amr), acr_for(amr, True))
        fragments[name + "-"] = (json.dumps(amr), acr_for(amr, False))
    pwd_fragment = (json.dumps(PWD_AMR), acr_for(PWD_AMR, False))
    variant_rank = {name: acr_rank(acr) for name, (_amr, acr) in fragments.items()}
    pool, admins = Pool(), Pool()
    best: dict[int, list[str]] = defaultdict(list)
    people = plan.people
    public_ids = [p.public_id for p in people]
    is_admin = [p.officer or (p.role in ADMIN_ROLES and p.contract in ("permanent", "fixed_term")) for p in people]
    use_2fa = {"health-data": 0.65, "standard": 0.5, "administration": 1.0}
    writer = JournalWriter(conn)
    rand = rnd.random
    with writer:
        for day in range(clock.days):
            for index, change in plan.pool_changes.get(day, ()):
                (pool.add if change > 0 else pool.remove)(index)
                if is_admin[index]:
                    (admins.add if change > 0 else admins.remove)(index)
            for index, variant, change in plan.twofa_changes.get(day, ()):
                held = best[index]
                if change > 0:
                    held.append(variant)
                    held.sort(key=lambda v: -variant_rank[v])
                elif variant in held:
                    held.remove(variant)
            rules = _class_rules(policy, clock.date(day))
            midnight = clock.midnight(day)
            others = sorted(plan.events.get(day, ()), key=lambda e: e[0])
            o = 0
            sids: dict[int, str] = {}
            items, admin_items = pool.items, admins.items
            check = True
            for offset in day_offsets(rnd, per_day[day]) if items else ():
                at = midnight + dt.timedelta(microseconds=offset)
                while o < len(others) and others[o][0] <= at:
                    writer.append(*others[o])
                    o += 1
                ci = weighted_index(client_cum, rand() * client_total)
                client = CLIENTS[ci]
                cls = client[2]
                p = admin_items[int(rand() * len(admin_items))] if cls == "administration" and admin_items \
                    else items[int(rand() * len(items))]
                held = best.get(p)
                min_rank, one_factor = rules[cls]
                if held and (variant_rank[held[0]] >= min_rank or one_factor) and (
                        not one_factor or rand() < use_2fa[cls]):
                    fragment = fragments[held[0]]
                elif one_factor:
                    fragment = pwd_fragment
                else:  # this person cannot enter the class that day: an application of the standard class instead
                    client = CLIENTS[standard[int(rand() * len(standard))]]
                    cls = "standard"
                    fragment = fragments[held[0]] if held and rand() < use_2fa[cls] else pwd_fragment
                sid = sids.get(p)
                if sid is None:
                    sid = sids[p] = f"{rnd.getrandbits(128):032x}"
                internal = fragment is pwd_fragment or rand() < 0.92
                ip = (f"10.{1 + p % 3}.{(p >> 2) & 255}.{1 + (p >> 10) % 254}" if internal
                      else f"203.0.113.{1 + p % 254}")
                details = (f'{{"acr": "{fragment[1]}", "amr": {fragment[0]}, "class": "{cls}", '
                           f'"client_id": "{client[0]}", "scope": "{client[4]}", "sid": "{sid}"}}')
                if check:
                    assert details == json.dumps(json.loads(details), sort_keys=True, ensure_ascii=False)
                writer.append_signin(at, public_ids[p], ip, details, check)
                check = False
            for event in others[o:]:
                writer.append(*event)
            if progress and (day % 30 == 29 or day == clock.days - 1):
                progress(f"journal: day {day + 1}/{clock.days}, {writer.written:,} events")
    return writer

