"""The facts of every person, loaded in bulk (a fixed number of queries, whatever the size of the directory).

:func:`load_people` reads the directory (identities, units and their pôles, roles, establishments), the MIE and
their transitions (WebAuthn attachment included), the enrollment cases and their transitions, the exceptions of
the policy's compliance class, the links to the national identity (Pro Santé Connect) and — for history — the
identity lifecycle events of the journal, and turns them into
:class:`~hospiconnect.trajectory.indicators.PersonFacts` with day intervals (end day excluded) in the policy's time
zone. Each query returns plain rows (no ORM objects): at 100,000 identities they are read in a few seconds.

How each history is rebuilt (the pure helpers below, unit-tested):

* **identity** (:func:`lifecycle_intervals`): the status given at creation (journal ``directory:identity:created``,
  else the ``from`` of the first change, else today's status), then each change journaled
  (``activated``/``suspended``/``reactivated``/``departed``); when the journal does not end on today's status (a
  purged journal), today's status holds from ``status_changed_at``. An identity created active with a start date
  before its creation (a directory imported into a new installation) counts as active from its start date. The
  status of a day is the status at the end of that day;
* **MIE** (:func:`mie_intervals`): active from each transition to ``active`` until the next to ``suspended`` or
  ``revoked`` (an MIE with no transitions: from ``activated_at`` to ``revoked_at``);
* **enrollment** (:func:`case_interval`): a case is open from its opening until its first transition to a final
  state (``enrollment.workflow.FINAL_STATES``) or its expiry date, whichever comes first;
* **exceptions** (:func:`exception_interval`): in force on every day that meets ``[starts_at, ends_at)`` (cut at
  the revocation); those granted to the person, and those granted to the person's population (contract type)
  whose units, when given, include one of the person's units — the targeting of
  :func:`hospiconnect.authorizations.services.active_exceptions_for`;
* **pairing** (:func:`link_intervals`): a person is paired (« appairée ») on every day that ends with a live link
  to their national identity (``national_links``: from ``linked_at`` until ``unlinked_at``, the state at the end
  of a day holding for that day), so a link and its unlinking on the same day leave no paired day. A link is
  never deleted, so past days are rebuilt from the table alone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import Connection, DateTime, Select, select, type_coerce
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie, MieTransition, WebAuthnCredential
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity, IdentityEstablishment, IdentityRole, IdentityUnit, OrgUnit
from hospiconnect.enrollment.models import EnrollmentCase, EnrollmentTransition, NationalLink
from hospiconnect.enrollment.workflow import FINAL_STATES
from hospiconnect.policies import Policy
from hospiconnect.policies.policy import zone
from hospiconnect.trajectory.indicators import Interval, MieFact, PersonFacts, make_person

#: Used when no policy is given: the shipped policy's time zone and compliance class.
DEFAULT_TIMEZONE = "Europe/Paris"
DEFAULT_COMPLIANCE_CLASS = "health-data"

#: Journal tags of identity status changes, and the status each leads to.
LIFECYCLE_TAGS: dict[str, str] = {
    tags.DIRECTORY_IDENTITY_ACTIVATED: "active",
    tags.DIRECTORY_IDENTITY_SUSPENDED: "suspended",
    tags.DIRECTORY_IDENTITY_REACTIVATED: "active",
    tags.DIRECTORY_IDENTITY_DEPARTED: "departed",
}
ACTIVE = "active"

#: Restricts a query to the identities being loaded, given the column that holds the identity id.
Scope = Callable[[Select[Any], Any], Select[Any]]


class DayOf:
    """Instants → local days of one time zone (a naive datetime is taken as UTC)."""

    def __init__(self, timezone: str) -> None:
        self.zone = zone(timezone)

    def __call__(self, instant: dt.datetime) -> dt.date:
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=dt.timezone.utc)
        return instant.astimezone(self.zone).date()

    def start(self, day: dt.date) -> dt.datetime:
        """Return the first instant of ``day`` (local midnight), in UTC."""
        return dt.datetime.combine(day, dt.time(), tzinfo=self.zone).astimezone(dt.timezone.utc)


# -- pure reconstruction of the histories --------------------------------------------------------------------

def _intervals_of(points: Sequence[tuple[dt.date, bool]]) -> tuple[Interval, ...]:
    """Return the day intervals in which the last state of each day is True, from ``(day, state)`` changes in
    order (several changes on one day: the last one holds that day)."""
    last_of_day: dict[dt.date, bool] = {}
    for day, state in points:
        last_of_day[day] = state
    intervals: list[Interval] = []
    start: dt.date | None = None
    for day in sorted(last_of_day):
        state = last_of_day[day]
        if state and start is None:
            start = day
        elif not state and start is not None:
            if day > start:
                intervals.append((start, day))
            start = None
    if start is not None:
        intervals.append((start, None))
    return tuple(intervals)


def lifecycle_intervals(*, created_day: dt.date, created_status: str | None,
                        changes: Sequence[tuple[dt.date, str, str | None]], current_status: str,
                        status_changed_day: dt.date, start_date: dt.date | None = None) -> tuple[Interval, ...]:
    """Return the days the identity was ``active``.

    ``changes``: the journaled status changes in order, as ``(day, new status, previous status or None)``;
    ``created_status``: the status journaled at creation (None when that event is not in the journal).
    """
    initial = created_status or (changes[0][2] if changes and changes[0][2] else None) or (
        current_status if not changes else ("pending" if changes[0][1] == ACTIVE else ACTIVE))
    points: list[tuple[dt.date, bool]] = [(created_day, initial == ACTIVE)]
    points.extend((day, status == ACTIVE) for day, status, _ in changes)
    last = changes[-1][1] if changes else initial
    if last != current_status:
        points.append((max(status_changed_day, points[-1][0]), current_status == ACTIVE))
    intervals = _intervals_of(points)
    if (initial == ACTIVE and start_date is not None and start_date < created_day and intervals
            and intervals[0][0] == created_day):
        intervals = ((start_date, intervals[0][1]),) + intervals[1:]
    return intervals


def mie_intervals(transitions: Sequence[tuple[dt.date, str]], *, status: str, activated_day: dt.date | None,
                  revoked_day: dt.date | None) -> tuple[Interval, ...]:
    """Return the days an MIE was active, from its transitions ``(day, to_status)`` in order."""
    points = [(day, to == ACTIVE) for day, to in transitions if to in (ACTIVE, "suspended", "revoked")]
    if not points:
        if activated_day is None:
            return ()
        points = [(activated_day, True)]
        if revoked_day is not None:
            points.append((revoked_day, False))
        elif status != ACTIVE:
            return ()  # suspended or revoked at an unknown date: not counted
    elif points[-1][1] and status == "revoked" and revoked_day is not None:
        points.append((revoked_day, False))  # revoked without its transition (written directly)
    return _intervals_of(points)


def case_interval(*, opened_day: dt.date, final_day: dt.date | None, expires_day: dt.date | None,
                  state: str) -> Interval | None:
    """Return the days an enrollment case was open (None when it opened and closed the same day)."""
    ends = [d for d in (final_day, expires_day) if d is not None]
    if state in FINAL_STATES and final_day is None:
        return None  # final with no dated transition: nothing to say
    end = min(ends) if ends else None
    if end is not None and end <= opened_day:
        return None
    return (opened_day, end)


def exception_interval(day_of: DayOf, starts_at: dt.datetime, ends_at: dt.datetime,
                       revoked_at: dt.datetime | None) -> Interval | None:
    """Return the days an exception is in force at some moment of (None when never)."""
    end = min(ends_at, revoked_at) if revoked_at is not None else ends_at
    if end <= starts_at:
        return None
    last = day_of(end - dt.timedelta(microseconds=1))
    return (day_of(starts_at), last + dt.timedelta(days=1))


def link_intervals(day_of: DayOf, links: Iterable[tuple[dt.datetime, dt.datetime | None]]) -> tuple[Interval, ...]:
    """Return the days a person was paired, from their links ``(linked_at, unlinked_at or None)`` in any order.

    The instants are put in order first, an unlinking before a new link at the same instant, so that a link
    replaced at once leaves the person paired."""
    changes: list[tuple[dt.datetime, bool]] = []
    for linked_at, unlinked_at in links:
        changes.append((_aware(linked_at), True))
        if unlinked_at is not None:
            changes.append((_aware(unlinked_at), False))
    changes.sort(key=lambda change: (change[0], change[1]))
    return _intervals_of([(day_of(instant), state) for instant, state in changes])


def _aware(instant: dt.datetime) -> dt.datetime:
    """A naive instant is UTC (SQLite gives naive UTC, PostgreSQL aware): comparable either way."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.timezone.utc)


def pole_of_units(units: Iterable[tuple[int, str, str, int | None]]) -> dict[str, str]:
    """Return the code of the pôle above each unit code (a pôle is its own), from ``(id, code, kind, parent id)``."""
    by_id = {row[0]: row for row in units}
    poles: dict[str, str] = {}
    for unit_id, code, _, _ in by_id.values():
        seen: set[int] = set()
        current: int | None = unit_id
        while current is not None and current in by_id and current not in seen:
            seen.add(current)
            _, parent_code, kind, parent = by_id[current]
            if kind == "pole":
                poles[code] = parent_code
                break
            current = parent
    return poles


def display_name(given_names: str | None, usage_name: str | None, birth_family_name: str) -> str:
    family = usage_name or birth_family_name
    return f"{given_names.split()[0] if given_names else ''} {family}".strip()


# -- bulk loading --------------------------------------------------------------------------------------------

def _raw(column: Any) -> Any:
    """Select a UTC timestamp column as the driver gives it (aware on PostgreSQL, naive UTC on SQLite: both are
    what :class:`DayOf` expects), skipping a conversion per value."""
    return type_coerce(column, DateTime(timezone=True))


def load_people(session: Session, *, as_of: dt.date | None = None, policy: Policy | None = None,
                now: dt.datetime | None = None) -> list[PersonFacts]:
    """Return the facts of the people the trajectory counts, in identity order.

    ``as_of`` None: every identity with its whole history (for the backfill). ``as_of`` today or later: the
    identities active now, without reading the journal (their lifecycle is "active since their last status
    change"). ``as_of`` in the past: the identities active that day, from their history. ``policy`` gives the
    time zone of the days and the compliance class of the exceptions that make a person ``exempt`` (default: the
    shipped policy's, Europe/Paris and ``health-data``). ``now``: the present instant (tests).

    A fixed number of queries (about ten), none per person.
    """
    day_of = DayOf(policy.timezone if policy is not None else DEFAULT_TIMEZONE)
    compliance_class = policy.compliance_class if policy is not None else DEFAULT_COMPLIANCE_CLASS
    today = day_of(now or utcnow())
    # Plain rows through the session's connection (the same transaction): no ORM objects, no identity map.
    session.flush()
    connection = session.connection()
    current_only = as_of is not None and as_of >= today
    only = Identity.status == ACTIVE if current_only else None

    def scoped(query: Select[Any], identity_column: Any) -> Select[Any]:
        """Restrict ``query`` to the identities loaded (a join, never a list of ids)."""
        if only is None:
            return query
        if identity_column is Identity.id:
            return query.where(only)
        return query.join(Identity, Identity.id == identity_column).where(only)

    identity_rows = connection.execute(
        scoped(select(Identity.id, Identity.public_id, Identity.user_name, Identity.given_names, Identity.usage_name,
                      Identity.birth_family_name, Identity.rpps, Identity.contract_type, Identity.status,
                      _raw(Identity.status_changed_at), _raw(Identity.created_at), Identity.start_date), Identity.id)
        .order_by(Identity.id)).all()
    if not identity_rows:
        return []

    units: dict[int, list[str]] = defaultdict(list)
    for identity_id, code in connection.execute(scoped(select(IdentityUnit.identity_id, IdentityUnit.unit_code),
                                                       IdentityUnit.identity_id)).all():
        units[identity_id].append(code)
    roles: dict[int, list[str]] = defaultdict(list)
    for identity_id, role in connection.execute(scoped(select(IdentityRole.identity_id, IdentityRole.role),
                                                       IdentityRole.identity_id)).all():
        roles[identity_id].append(role)
    establishments: dict[int, list[str]] = defaultdict(list)
    for identity_id, finess in connection.execute(scoped(select(IdentityEstablishment.identity_id,
                                                                IdentityEstablishment.finess),
                                                         IdentityEstablishment.identity_id)).all():
        establishments[identity_id].append(finess)
    poles = pole_of_units(connection.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.kind, OrgUnit.parent_id)).all())

    mie_facts = _load_mies(connection, day_of, scoped)
    enrollment = _load_enrollment(connection, day_of, scoped)
    by_identity_exc, by_population_exc = _load_exceptions(connection, day_of, compliance_class)
    pairings = _load_links(connection, day_of, scoped)
    lifecycle = None if current_only else _load_lifecycle(session, day_of)

    people: list[PersonFacts] = []
    for row in identity_rows:
        (identity_id, public_id, user_name, given_names, usage_name, family, rpps, contract_type, status,
         status_changed_at, created_at, start_date) = row
        if current_only:
            active: tuple[Interval, ...] = ((min(day_of(status_changed_at), today), None),)
        else:
            created_status, changes = lifecycle.get(public_id, (None, [])) if lifecycle is not None else (None, [])
            active = lifecycle_intervals(created_day=day_of(created_at), created_status=created_status,
                                         changes=changes, current_status=status,
                                         status_changed_day=day_of(status_changed_at), start_date=start_date)
            if as_of is not None and not any(s <= as_of and (e is None or as_of < e) for s, e in active):
                continue
        person_units = tuple(sorted(units.get(identity_id, ())))
        exceptions = list(by_identity_exc.get(identity_id, ()))
        unit_set = set(person_units)
        for exception_units, interval in by_population_exc.get(contract_type, ()):
            if not exception_units or unit_set & exception_units:
                exceptions.append(interval)
        people.append(make_person(
            identity_id=identity_id, public_id=public_id, user_name=user_name,
            display_name=display_name(given_names, usage_name, family), rpps=bool(rpps),
            contract_type=contract_type or "", units=person_units,
            poles=tuple(sorted({poles[u] for u in person_units if u in poles})),
            roles=tuple(sorted(roles.get(identity_id, ()))),
            establishments=tuple(sorted(establishments.get(identity_id, ()))),
            mies=mie_facts.get(identity_id, ()), active_intervals=active,
            enrollment_intervals=tuple(sorted(enrollment.get(identity_id, ()), key=lambda i: i[0])),
            exception_intervals=tuple(sorted(exceptions, key=lambda i: i[0])),
            psc_intervals=pairings.get(identity_id, ())))
    return people


def _load_mies(connection: Connection, day_of: DayOf, scoped: Scope) -> dict[int, tuple[MieFact, ...]]:
    mie_rows = connection.execute(
        scoped(select(Mie.id, Mie.identity_id, Mie.type, Mie.label, Mie.status, Mie.proofing_method,
                      _raw(Mie.proofing_at), _raw(Mie.activated_at), _raw(Mie.revoked_at),
                      WebAuthnCredential.attachment)
               .outerjoin(WebAuthnCredential, WebAuthnCredential.mie_id == Mie.id), Mie.identity_id)
        .where(Mie.activated_at.is_not(None) | (Mie.status != "pending"))
        .order_by(Mie.identity_id, Mie.id)).all()
    transitions: dict[int, list[tuple[dt.date, str]]] = defaultdict(list)
    for mie_id, to_status, at in connection.execute(
            scoped(select(MieTransition.mie_id, MieTransition.to_status, _raw(MieTransition.at))
                   .join(Mie, Mie.id == MieTransition.mie_id), Mie.identity_id)
            .where(MieTransition.to_status.in_((ACTIVE, "suspended", "revoked")))
            .order_by(MieTransition.mie_id, MieTransition.at, MieTransition.id)).all():
        transitions[mie_id].append((day_of(at), to_status))
    facts: dict[int, list[MieFact]] = defaultdict(list)
    for (mie_id, identity_id, mie_type, label, status, proofing_method, proofing_at, activated_at, revoked_at,
         attachment) in mie_rows:
        intervals = mie_intervals(transitions.get(mie_id, ()), status=status,
                                  activated_day=day_of(activated_at) if activated_at else None,
                                  revoked_day=day_of(revoked_at) if revoked_at else None)
        kind = f"{mie_type}:{attachment}" if mie_type == "webauthn" and attachment else mie_type
        proofed_at = day_of(proofing_at) if proofing_at else None
        for start, end in intervals:
            facts[identity_id].append(MieFact(
                type=mie_type, kind=kind, active_from=start, active_until=end, proofed=bool(proofing_method),
                mie_id=mie_id, proofing_method=proofing_method, proofed_at=proofed_at, label=label or mie_type))
    return {identity_id: tuple(items) for identity_id, items in facts.items()}


def _load_enrollment(connection: Connection, day_of: DayOf, scoped: Scope) -> dict[int, list[Interval]]:
    final_at: dict[int, dt.datetime] = {}
    for case_id, at in connection.execute(
            scoped(select(EnrollmentTransition.case_id, _raw(EnrollmentTransition.at))
                   .join(EnrollmentCase, EnrollmentCase.id == EnrollmentTransition.case_id),
                   EnrollmentCase.identity_id)
            .where(EnrollmentTransition.to_state.in_(sorted(FINAL_STATES)))
            .order_by(EnrollmentTransition.case_id, EnrollmentTransition.at)).all():
        final_at.setdefault(case_id, at)
    intervals: dict[int, list[Interval]] = defaultdict(list)
    for case_id, identity_id, state, opened_at, expires_at, closed_at, activated_at in connection.execute(
            scoped(select(EnrollmentCase.id, EnrollmentCase.identity_id, EnrollmentCase.state,
                          _raw(EnrollmentCase.opened_at), _raw(EnrollmentCase.expires_at),
                          _raw(EnrollmentCase.closed_at), _raw(EnrollmentCase.activated_at)),
                   EnrollmentCase.identity_id)).all():
        final = final_at.get(case_id) or (closed_at or activated_at if state in FINAL_STATES else None)
        interval = case_interval(opened_day=day_of(opened_at), final_day=day_of(final) if final else None,
                                 expires_day=day_of(expires_at) if expires_at else None, state=state)
        if interval is not None:
            intervals[identity_id].append(interval)
    return intervals


def _load_links(connection: Connection, day_of: DayOf, scoped: Scope) -> dict[int, tuple[Interval, ...]]:
    """Return the paired days of each person with a link to their national identity (one query)."""
    links: dict[int, list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
    for identity_id, linked_at, unlinked_at in connection.execute(
            scoped(select(NationalLink.identity_id, _raw(NationalLink.linked_at), _raw(NationalLink.unlinked_at)),
                   NationalLink.identity_id)).all():
        links[identity_id].append((linked_at, unlinked_at))
    result: dict[int, tuple[Interval, ...]] = {}
    for identity_id, rows in links.items():
        intervals = link_intervals(day_of, rows)
        if intervals:
            result[identity_id] = intervals
    return result


def _load_exceptions(connection: Connection, day_of: DayOf, compliance_class: str,
                     ) -> tuple[dict[int, list[Interval]], dict[str, list[tuple[frozenset[str], Interval]]]]:
    by_identity: dict[int, list[Interval]] = defaultdict(list)
    by_population: dict[str, list[tuple[frozenset[str], Interval]]] = defaultdict(list)
    for identity_id, population, units_json, starts_at, ends_at, revoked_at in connection.execute(
            select(PolicyException.identity_id, PolicyException.population, PolicyException.units_json,
                   PolicyException.starts_at, PolicyException.ends_at, PolicyException.revoked_at)
            .where(PolicyException.app_class == compliance_class)).all():
        interval = exception_interval(day_of, starts_at, ends_at, revoked_at)
        if interval is None:
            continue
        if identity_id is not None:
            by_identity[identity_id].append(interval)
        elif population is not None:
            by_population[population].append((frozenset(json.loads(units_json or "[]")), interval))
    return by_identity, by_population


def _load_lifecycle(session: Session, day_of: DayOf,
                    ) -> dict[str, tuple[str | None, list[tuple[dt.date, str, str | None]]]]:
    """Return, per identity public id, the status journaled at creation and the status changes in order (events
    recorded in this transaction and not yet written are written first, so that they are seen)."""
    audit.write_pending(session)
    created: dict[str, str | None] = {}
    changes: dict[str, list[tuple[dt.date, str, str | None]]] = defaultdict(list)
    wanted = [tags.DIRECTORY_IDENTITY_CREATED, *LIFECYCLE_TAGS]
    for subject, tag, occurred_at, details in session.connection().execute(
            select(AuditEvent.subject, AuditEvent.tag, _raw(AuditEvent.occurred_at), AuditEvent.details)
            .where(AuditEvent.tag.in_(wanted), AuditEvent.subject.is_not(None))
            .order_by(AuditEvent.seq)).all():
        data = _json(details)
        if tag == tags.DIRECTORY_IDENTITY_CREATED:
            created.setdefault(subject, data.get("status") if isinstance(data.get("status"), str) else None)
            continue
        previous = data.get("from") if isinstance(data.get("from"), str) else None
        changes[subject].append((day_of(occurred_at), LIFECYCLE_TAGS[tag], previous))
    return {subject: (created.get(subject), changes.get(subject, []))
            for subject in set(created) | set(changes)}


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["DayOf", "LIFECYCLE_TAGS", "case_interval", "exception_interval", "lifecycle_intervals", "link_intervals",
           "load_people", "mie_intervals", "pole_of_units"]
