"""Event indicators of each day: sign-ins (from the journal), exceptions in force, emergency accesses.

* **Sign-ins** — every ``oidc:code:issued`` event of the day (journal details ``{"client_id", "class", "acr",
  "amr", …}``; events written before the class was recorded count under class ``unknown``):
  ``signins:<class>``, ``signins_mfa:<class>`` (``amr`` holds ``mfa``), ``signins_acr:<class>:<acr>`` and
  ``signins_password_only:<class>`` (``amr`` is exactly ``["pwd"]``), the last one also per application
  (dimension ``client``, value the client id): the applications still receiving password-only sign-ins.
* ``exceptions_active`` — exceptions (any class, any target) in force at some moment of the day;
* ``emergency_issued`` / ``emergency_used`` / ``emergency_reviewed`` — emergency credentials issued, used,
  reviewed that day; ``emergency_unreviewed`` — issued on or before the day and not reviewed by its end.

Days are the policy's local days. The journal is read one day at a time (one indexed range query per day, the
details parsed in Python: ~30,000 events a day take a fraction of a second); exceptions and emergency credentials
are read once for the whole range.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import EmergencyCredential
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.policies import Policy
from hospiconnect.trajectory.facts import DayOf, exception_interval
from hospiconnect.trajectory.indicators import EVENT_INDICATORS, Key

UNKNOWN = "unknown"
PASSWORD_ONLY_AMR = ["pwd"]


def _days(day_from: dt.date, day_to: dt.date) -> list[dt.date]:
    return [day_from + dt.timedelta(days=n) for n in range((day_to - day_from).days + 1)]


def signin_counts(details: Iterable[str]) -> dict[Key, int]:
    """Return the sign-in counts of the journal details (JSON texts) of ``oidc:code:issued`` events (pure)."""
    counts: dict[Key, int] = {}

    def add(key: Key) -> None:
        counts[key] = counts.get(key, 0) + 1

    for text in details:
        try:
            data = json.loads(text or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        app_class = data.get("class")
        app_class = app_class if isinstance(app_class, str) and app_class else UNKNOWN
        amr = data.get("amr")
        amr = [str(v) for v in amr] if isinstance(amr, list) else []
        acr = data.get("acr")
        acr = acr if isinstance(acr, str) and acr else UNKNOWN
        add((f"signins:{app_class}", "all", ""))
        add((f"signins_acr:{app_class}:{acr}", "all", ""))
        if "mfa" in amr:
            add((f"signins_mfa:{app_class}", "all", ""))
        if sorted(amr) == PASSWORD_ONLY_AMR:
            add((f"signins_password_only:{app_class}", "all", ""))
            client_id = data.get("client_id")
            add((f"signins_password_only:{app_class}", "client",
                 str(client_id)[:100] if client_id else UNKNOWN))
    return counts


def count_signins(session: Session, day_of: DayOf, day: dt.date) -> dict[Key, int]:
    """Return the sign-in counts of ``day`` (one indexed range query on the journal, plain rows)."""
    audit.write_pending(session)  # events recorded in this transaction count too
    start, end = day_of.start(day), day_of.start(day + dt.timedelta(days=1))
    rows = session.connection().execute(
        select(AuditEvent.details)
        .where(AuditEvent.tag == tags.OIDC_CODE_ISSUED, AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end)
    ).scalars().all()
    return signin_counts(rows)


def count_events(session: Session, policy: Policy, day_from: dt.date, day_to: dt.date,
                 ) -> dict[dt.date, dict[Key, int]]:
    """Return the event counts of each day from ``day_from`` to ``day_to`` (both included):
    ``{day: {(indicator, dimension, value): count}}``; every day has the :data:`EVENT_INDICATORS` (zeros
    included), sign-in keys only when non-zero."""
    day_of = DayOf(policy.timezone)
    days = _days(day_from, day_to)
    result: dict[dt.date, dict[Key, int]] = {day: {(name, "all", ""): 0 for name in EVENT_INDICATORS} for day in days}
    if not days:
        return result
    range_end = day_of.start(day_to + dt.timedelta(days=1))

    for starts_at, ends_at, revoked_at in session.execute(
            select(PolicyException.starts_at, PolicyException.ends_at, PolicyException.revoked_at)
            .where(PolicyException.starts_at < range_end, PolicyException.ends_at > day_of.start(day_from))):
        interval = exception_interval(day_of, starts_at, ends_at, revoked_at)
        if interval is None:
            continue
        first, end = max(interval[0], day_from), interval[1]
        day = first
        while day <= day_to and (end is None or day < end):
            result[day][("exceptions_active", "all", "")] += 1
            day += dt.timedelta(days=1)

    unreviewed_delta: dict[dt.date, int] = {}
    before = 0  # issued before day_from and not reviewed before day_from
    for issued_at, used_at, reviewed_at in session.execute(
            select(EmergencyCredential.issued_at, EmergencyCredential.used_at, EmergencyCredential.reviewed_at)
            .where(EmergencyCredential.issued_at < range_end)):
        issued = day_of(issued_at)
        reviewed = day_of(reviewed_at) if reviewed_at is not None else None
        for name, day in (("emergency_issued", issued), ("emergency_used", day_of(used_at) if used_at else None),
                          ("emergency_reviewed", reviewed)):
            if day is not None and day_from <= day <= day_to:
                result[day][(name, "all", "")] += 1
        # Unreviewed from the day of issue until the day of review (excluded).
        if reviewed is not None and reviewed <= issued:
            continue
        if issued < day_from:
            if reviewed is None or reviewed > day_from:
                before += 1
            else:
                continue
        else:
            unreviewed_delta[issued] = unreviewed_delta.get(issued, 0) + 1
        if reviewed is not None and reviewed <= day_to:
            unreviewed_delta[max(reviewed, day_from)] = unreviewed_delta.get(max(reviewed, day_from), 0) - 1
    running = before
    for day in days:
        running += unreviewed_delta.get(day, 0)
        result[day][("emergency_unreviewed", "all", "")] = running

    for day in days:
        result[day].update(count_signins(session, day_of, day))
    return result
