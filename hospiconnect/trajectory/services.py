"""Reading the trajectory — series, breakdowns, coverage, where each target stands, the people lists, the report
— from the stored snapshots (:mod:`hospiconnect.trajectory.snapshots` writes them). Reads never compute
indicators: what the pages and exports show is what the snapshots stored, so a page costs a few indexed queries
whatever the size of the directory.

The RSSI's targets are added and removed by :mod:`hospiconnect.trajectory.targets`; ``add_target``,
``remove_target``… are imported here, so that this module is the one the pages and the CLI call. Each function
works in the caller's session. Bad input raises :class:`~hospiconnect.errors.ValidationError` (``field``, French
message, every problem in ``errors``).

Shares are percentages of the active identities of the same breakdown (``compliant`` / ``active`` × 100), None
when nobody is active there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from hospiconnect.directory.models import Identity, OrgUnit
from hospiconnect.directory.validation import CONTRACT_TYPES
from hospiconnect.errors import ValidationError
from hospiconnect.policies import Policy
from hospiconnect.trajectory.indicators import DIMENSION_LABELS_FR, RPPS_LABELS_FR, STATUSES
from hospiconnect.trajectory.models import TrajectoryPersonStatus, TrajectorySnapshot
from hospiconnect.trajectory.projection import DEFAULT_WINDOW_WEEKS, Projection, project
# The RSSI's targets are written by their own module; they are part of this module's interface.
from hospiconnect.trajectory.targets import (  # noqa: F401
    TargetNotFound,
    add_target,
    list_targets,
    remove_target,
    target_as_dict,
    validate_target,
)

ACTIVE = "active"
COMPLIANT = "compliant"
PSC_PAIRED = "psc_paired"
#: Rows fetched at a time by the streaming iterators (memory stays flat whatever the number of rows).
STREAM_BATCH = 2000


def share(part: int | None, whole: int | None) -> float | None:
    """``part`` / ``whole`` in percent, None when ``whole`` is 0 or unknown."""
    if not whole:
        return None
    return 100.0 * (part or 0) / whole


# --- Values returned ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SeriesRow:
    """One stored count (``iter_series``, for the CSV and JSON exports of every series)."""

    day: dt.date
    indicator: str
    dimension: str
    value: str
    count: int


@dataclasses.dataclass(frozen=True)
class BreakdownRow:
    """The counts of one value of a breakdown on one day. ``label``: the unit's, pôle's or establishment's name,
    the contract type in French… (the value itself when the directory has no name for it)."""

    value: str
    counts: Mapping[str, int]
    label: str = ""

    def count(self, indicator: str) -> int:
        return self.counts.get(indicator, 0)

    @property
    def active(self) -> int:
        return self.count(ACTIVE)

    @property
    def compliant(self) -> int:
        return self.count(COMPLIANT)

    @property
    def share(self) -> float | None:
        """Compliant share (%) of the active identities."""
        return share(self.compliant, self.active)

    @property
    def missing(self) -> int:
        """Active identities without a compliant MIE."""
        return max(0, self.active - self.compliant)


@dataclasses.dataclass(frozen=True)
class CoveragePoint:
    day: dt.date
    active: int
    compliant: int
    share: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "active": self.active, "compliant": self.compliant, "share": self.share}


@dataclasses.dataclass(frozen=True)
class TargetStatus:
    """Where one target stands on ``today`` (from the latest snapshot day on or before it, ``day``).

    ``current_share``: the share (%) of the target's indicator among the active identities of its breakdown;
    ``gap``: percentage points still missing (0 when met); ``met``; ``overdue``: not met and ``due`` is past
    (the due day itself is still in time). Added to the design: ``indicator``, ``day``, ``active``, ``count``,
    ``people_missing`` (identities still to cover), ``projection`` (at the pace of the last 8 weeks, toward
    ``percent``), ``on_track`` (the projected date is on or before ``due``; None when not computable),
    ``created_by``/``created_at`` (targets added by the RSSI).
    """

    source: str  # "policy" | "rssi"
    id: str
    label: str
    due: dt.date
    percent: int
    dimension: str
    value: str
    current_share: float | None
    gap: float | None
    met: bool
    overdue: bool
    indicator: str = COMPLIANT
    day: dt.date | None = None
    active: int = 0
    count: int = 0
    people_missing: int | None = None
    projection: Projection | None = None
    on_track: bool | None = None
    created_by: str | None = None
    created_at: dt.datetime | None = None

    @property
    def scope_fr(self) -> str:
        """Whom the target is about, in French."""
        what = {"compliant": "MIE conforme", "proofed": "MIE remis après vérification d'identité",
                "rpps_linked": "identité liée au RPPS",
                "psc_paired": "identité associée à Pro Santé Connect"}.get(self.indicator, self.indicator)
        return f"{what} — {population_label(self.dimension, self.value)}"

    @property
    def projection_fr(self) -> str:
        if self.met:
            return "Atteint."
        if self.projection is None:
            return ""
        text = self.projection.explanation_fr
        if self.on_track is True:
            return f"{text} Dans les temps."
        if self.on_track is False and self.projection.reachable:
            return f"{text} Après l'échéance."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "id": self.id, "label": self.label, "due": self.due.isoformat(),
            "percent": self.percent, "dimension": self.dimension, "value": self.value, "indicator": self.indicator,
            "scope_fr": self.scope_fr, "day": self.day.isoformat() if self.day else None, "active": self.active,
            "count": self.count, "current_share": self.current_share, "gap": self.gap, "met": self.met,
            "overdue": self.overdue, "people_missing": self.people_missing, "on_track": self.on_track,
            "projection": self.projection.as_dict() if self.projection else None,
            "projection_fr": self.projection_fr, "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclasses.dataclass(frozen=True)
class PersonRow:
    """One person of the latest snapshot's lists (:func:`people`, :func:`iter_people`). ``psc_paired``: their
    identity was linked to their national identity (Pro Santé Connect) on that day."""

    identity_id: int
    public_id: str
    display_name: str
    user_name: str
    day: dt.date
    status: str
    reason: str
    rpps: bool
    contract_type: str
    units: tuple[str, ...]
    poles: tuple[str, ...]
    roles: tuple[str, ...]
    establishments: tuple[str, ...]
    mie_types: tuple[str, ...]
    psc_paired: bool = False


@dataclasses.dataclass(frozen=True)
class PeoplePage:
    """One page of :func:`people`: ``rows``, ``total`` matching rows, the ``day`` of the statuses (None before
    the first snapshot)."""

    rows: list[PersonRow]
    total: int
    limit: int
    offset: int
    day: dt.date | None

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.rows) < self.total


def population_label(dimension: str, value: str, names: Mapping[str, str] | None = None) -> str:
    """``all`` → everyone; ``rpps``/``with`` → « avec RPPS »; ``unit``/``CARDIO`` → « Unité : Cardiologie »…"""
    if dimension == "all":
        return "toutes les identités actives"
    if dimension == "rpps":
        return RPPS_LABELS_FR.get(value, value)
    if dimension == "contract_type":
        return f"{DIMENSION_LABELS_FR.get(dimension, dimension)} : {CONTRACT_TYPES.get(value, value)}"
    shown = (names or {}).get(value) or value
    return f"{DIMENSION_LABELS_FR.get(dimension, dimension)} : {shown}"


# --- Series, breakdowns, coverage ------------------------------------------------------------------------------


def snapshot_day(session: Session, as_of: dt.date | None = None) -> dt.date | None:
    """The latest snapshot day on or before ``as_of`` (any day when None); None when there is none."""
    query = select(func.max(TrajectorySnapshot.day))
    if as_of is not None:
        query = query.where(TrajectorySnapshot.day <= as_of)
    return session.scalar(query)


def series(session: Session, indicator: str, dimension: str = "all", value: str = "",
           day_from: dt.date | None = None, day_to: dt.date | None = None) -> list[tuple[dt.date, int]]:
    """Return the stored counts of one indicator for one breakdown value, ``(day, count)`` in day order.

    Days without a stored row (no snapshot, or nobody counted that day in that breakdown) are absent."""
    query = select(TrajectorySnapshot.day, TrajectorySnapshot.count).where(
        TrajectorySnapshot.indicator == indicator, TrajectorySnapshot.dimension == dimension,
        TrajectorySnapshot.value == value)
    if day_from is not None:
        query = query.where(TrajectorySnapshot.day >= day_from)
    if day_to is not None:
        query = query.where(TrajectorySnapshot.day <= day_to)
    return [(d, c) for d, c in session.execute(query.order_by(TrajectorySnapshot.day))]


def iter_series(session: Session, *, indicators: Sequence[str] | None = None, dimension: str | None = None,
                day_from: dt.date | None = None, day_to: dt.date | None = None) -> Iterator[SeriesRow]:
    """Stream every stored count (optionally of some indicators, one dimension, a period), ordered by
    indicator, dimension, value, day: the CSV and JSON exports of every series (addition to the design)."""
    query = select(TrajectorySnapshot.day, TrajectorySnapshot.indicator, TrajectorySnapshot.dimension,
                   TrajectorySnapshot.value, TrajectorySnapshot.count)
    if indicators:
        query = query.where(TrajectorySnapshot.indicator.in_(list(indicators)))
    if dimension is not None:
        query = query.where(TrajectorySnapshot.dimension == dimension)
    if day_from is not None:
        query = query.where(TrajectorySnapshot.day >= day_from)
    if day_to is not None:
        query = query.where(TrajectorySnapshot.day <= day_to)
    query = query.order_by(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension, TrajectorySnapshot.value,
                           TrajectorySnapshot.day)
    for row in session.execute(query.execution_options(yield_per=STREAM_BATCH)):
        yield SeriesRow(*row)


def value_labels(session: Session, dimension: str, values: Iterable[str]) -> dict[str, str]:
    """Names of breakdown values for people: units and pôles from the directory's org units, contract types and
    RPPS in French; other values (FINESS, roles) stand for themselves."""
    wanted = sorted(set(values))
    if dimension in ("unit", "pole") and wanted:
        names = dict(session.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.code.in_(wanted))).all())
        return {v: names.get(v) or v for v in wanted}
    if dimension == "establishment" and wanted:
        from hospiconnect.directory.models import Establishment

        names = dict(session.execute(select(Establishment.finess, Establishment.name)
                                     .where(Establishment.finess.in_(wanted))).all())
        return {v: names.get(v) or v for v in wanted}
    if dimension == "contract_type":
        return {v: CONTRACT_TYPES.get(v, v) for v in wanted}
    if dimension == "rpps":
        return {v: RPPS_LABELS_FR.get(v, v) for v in wanted}
    if dimension == "all":
        return {v: "toutes les identités actives" for v in wanted}
    return {v: v for v in wanted}


def breakdown(session: Session, day: dt.date, dimension: str,
              indicators: Sequence[str] = (ACTIVE, COMPLIANT)) -> list[BreakdownRow]:
    """Return the counts of ``indicators`` on ``day`` for each value of ``dimension``, in value order.

    A value appears when at least one of the indicators was stored for it that day."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for value, indicator, count in session.execute(
            select(TrajectorySnapshot.value, TrajectorySnapshot.indicator, TrajectorySnapshot.count).where(
                TrajectorySnapshot.day == day, TrajectorySnapshot.dimension == dimension,
                TrajectorySnapshot.indicator.in_(list(indicators)))):
        counts[value][indicator] = count
    labels = value_labels(session, dimension, counts)
    return [BreakdownRow(value=v, counts=counts[v], label=labels.get(v, v)) for v in sorted(counts)]


def coverage_many(session: Session, day_from: dt.date, day_to: dt.date,
                     keys: Sequence[tuple[str, str]] | None, indicator: str = COMPLIANT, *,
                     counted_only: bool = False) -> dict[tuple[str, str], list[CoveragePoint]]:
    """Coverage points of several (dimension, value) keys in one query; ``keys`` None: every key. ``indicator``:
    the counted indicator (``compliant`` by default, ``proofed``… for targets). ``counted_only``: leave out the
    days that stored no count of ``indicator`` (snapshots taken before the indicator existed, ``psc_paired``
    for instance) instead of reading them as 0. Addition to the design."""
    dims = sorted({d for d, _ in keys}) if keys else None
    query = select(TrajectorySnapshot.dimension, TrajectorySnapshot.value, TrajectorySnapshot.day,
                   TrajectorySnapshot.indicator, TrajectorySnapshot.count).where(
        TrajectorySnapshot.day >= day_from, TrajectorySnapshot.day <= day_to,
        TrajectorySnapshot.indicator.in_([ACTIVE, indicator]))
    if dims is not None:
        query = query.where(TrajectorySnapshot.dimension.in_(dims))
    if keys is not None and len(keys) == 1:
        query = query.where(TrajectorySnapshot.value == keys[0][1])
    wanted = set(keys) if keys is not None else None
    cells: dict[tuple[str, str], dict[dt.date, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for dimension, value, day, ind, count in session.execute(query):
        if wanted is None or (dimension, value) in wanted:
            cells[(dimension, value)][day][ind] = count
    result: dict[tuple[str, str], list[CoveragePoint]] = {}
    for key, days in cells.items():
        points = []
        for day in sorted(days):
            active = days[day].get(ACTIVE)
            if active is None:
                continue  # a day without the active count is not a snapshot of this population
            if counted_only and indicator not in days[day]:
                continue
            done = days[day].get(indicator, 0)
            points.append(CoveragePoint(day, active, done, share(done, active)))
        result[key] = points
    return result


def coverage(session: Session, day_from: dt.date, day_to: dt.date, dimension: str = "all",
             value: str = "") -> list[CoveragePoint]:
    """Return, for each snapshot day in [``day_from``, ``day_to``], the active and compliant counts of one
    breakdown value and the compliant share (%), in day order."""
    return coverage_many(session, day_from, day_to, [(dimension, value)]).get((dimension, value), [])


def pairing(session: Session, day_from: dt.date, day_to: dt.date, dimension: str = "all",
            value: str = "") -> list[CoveragePoint]:
    """Return, for each snapshot day in [``day_from``, ``day_to``] that counted pairings, the active identities of
    one breakdown value, those paired with Pro Santé Connect (``compliant`` holds them) and their share (%), in
    day order. Days stored before the indicator existed are left out, not read as nobody paired."""
    return coverage_many(session, day_from, day_to, [(dimension, value)], PSC_PAIRED,
                         counted_only=True).get((dimension, value), [])


def project_coverage(points: Sequence[CoveragePoint], *, today: dt.date, target: float = 100.0,
                     window_weeks: int = DEFAULT_WINDOW_WEEKS) -> Projection:
    """The projection of a coverage series (days with nobody active are left out)."""
    return project([(p.day, p.share) for p in points if p.share is not None], target=target,
                   window_weeks=window_weeks, today=today)


# --- Targets ---------------------------------------------------------------------------------------------------


def _target_status(session: Session, today: dt.date, day: dt.date | None, *, source: str, id: str, label: str,
                   due: dt.date, percent: int, dimension: str, value: str, indicator: str,
                   created_by: str | None = None, created_at: dt.datetime | None = None) -> TargetStatus:
    window_from = (day or today) - dt.timedelta(days=DEFAULT_WINDOW_WEEKS * 7 - 1)
    # Days stored before an indicator existed (``psc_paired``) say nothing of it: left out, not read as 0.
    points = (coverage_many(session, window_from, day, [(dimension, value)], indicator, counted_only=True)
              .get((dimension, value), []) if day is not None else [])
    last = points[-1] if points and points[-1].day == day else None
    active, count = (last.active, last.compliant) if last else (0, 0)
    current = last.share if last else None
    met = current is not None and current >= percent
    gap = None if current is None else max(0.0, percent - current)
    missing = None if last is None else max(0, math.ceil(percent * active / 100 - 1e-9) - count)
    projection = project_coverage(points, today=day, target=percent) if day is not None else None
    on_track: bool | None = None
    if met:
        on_track = True
    elif projection is not None and projection.computable:
        on_track = projection.reachable and projection.reaches_on is not None and projection.reaches_on <= due
    return TargetStatus(source=source, id=id, label=label, due=due, percent=percent, dimension=dimension,
                        value=value, current_share=current, gap=gap, met=met, overdue=not met and due < today,
                        indicator=indicator, day=day, active=active, count=count, people_missing=missing,
                        projection=projection, on_track=on_track, created_by=created_by, created_at=created_at)


def targets(session: Session, policy: Policy, today: dt.date) -> list[TargetStatus]:
    """Return every target with its gap on ``today``: the policy file's (``source`` "policy"), then the RSSI's
    (``source`` "rssi", removed ones left out), each group soonest due first. Figures come from the latest
    snapshot on or before ``today``."""
    day = snapshot_day(session, today)
    result = [_target_status(session, today, day, source="policy", id=t.id, label=t.label, due=t.due,
                             percent=t.percent, dimension=t.dimension, value=t.value, indicator=t.indicator)
              for t in sorted(policy.targets, key=lambda t: (t.due, t.id))]
    result += [_target_status(session, today, day, source="rssi", id=t.public_id, label=t.label, due=t.due,
                              percent=t.percent, dimension=t.dimension, value=t.value, indicator=t.indicator,
                              created_by=t.created_by, created_at=t.created_at)
               for t in list_targets(session)]
    return result


# --- People ------------------------------------------------------------------------------------------------------


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def _contains(column: Any, code: str) -> Any:
    """``column`` (space-separated codes) holds ``code``: `` ' ' || column || ' ' LIKE '% code %' ``."""
    escaped = code.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (literal(" ") + column + literal(" ")).like(f"% {escaped} %", escape="\\")


def _people_query(*, status: str | Sequence[str] | None, unit: str | None, pole: str | None,
                  contract_type: str | None, rpps: bool | None, psc: bool | None = None) -> Any:
    statuses = [status] if isinstance(status, str) else list(status or ())
    statuses = [s for s in (x.strip() for x in statuses) if s]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValidationError(f"Statut inconnu « {unknown[0]} » (attendu : {', '.join(STATUSES)}).",
                              field="status", code="status_unknown")
    P = TrajectoryPersonStatus
    query = select(P, Identity.public_id, Identity.given_names, Identity.usage_name, Identity.birth_family_name,
                   Identity.user_name).join(Identity, Identity.id == P.identity_id)
    if statuses:
        query = query.where(P.status.in_(statuses))
    if unit:
        query = query.where(_contains(P.units, unit))
    if pole:
        query = query.where(_contains(P.poles, pole))
    if contract_type:
        query = query.where(P.contract_type == contract_type.strip())
    if rpps is not None:
        query = query.where(P.rpps.is_(bool(rpps)))
    if psc is not None:
        query = query.where(P.psc_paired.is_(bool(psc)))
    return query


def _order(query: Any) -> Any:
    return query.order_by(func.coalesce(Identity.usage_name_norm, Identity.birth_family_name_norm),
                          Identity.first_given_name_norm, TrajectoryPersonStatus.identity_id)


def _person(row: Any) -> PersonRow:
    status, public_id, given, usage, birth, user_name = row
    first = given.split()[0] if given else ""
    return PersonRow(identity_id=status.identity_id, public_id=public_id,
                     display_name=f"{first} {usage or birth}".strip(), user_name=user_name, day=status.day,
                     status=status.status, reason=status.reason or "", rpps=bool(status.rpps),
                     contract_type=status.contract_type, units=_split(status.units), poles=_split(status.poles),
                     roles=_split(status.roles), establishments=_split(status.establishments),
                     mie_types=_split(status.mie_types), psc_paired=bool(status.psc_paired))


def people(session: Session, *, status: str | Sequence[str] | None = None, unit: str | None = None,
           pole: str | None = None, contract_type: str | None = None, rpps: bool | None = None,
           psc: bool | None = None, limit: int = 50, offset: int = 0) -> PeoplePage:
    """Return one page of the latest snapshot's per-person statuses, by name, filtered by status (one or
    several of :data:`STATUSES`), unit or pôle code (the person holds it among others), contract type, RPPS and
    pairing with Pro Santé Connect (``psc``).

    Raises :class:`ValidationError` for an unknown status or a bad page (limit 1..1000, offset ≥ 0)."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValidationError("Pagination invalide (1 à 1 000 lignes par page).", field="limit", code="bad_page")
    query = _people_query(status=status, unit=unit, pole=pole, contract_type=contract_type, rpps=rpps, psc=psc)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = [_person(r) for r in session.execute(_order(query).limit(limit).offset(offset))]
    day = session.scalar(select(func.max(TrajectoryPersonStatus.day)))
    return PeoplePage(rows=rows, total=total, limit=limit, offset=offset, day=day)


def iter_people(session: Session, *, status: str | Sequence[str] | None = None, unit: str | None = None,
                pole: str | None = None, contract_type: str | None = None,
                rpps: bool | None = None, psc: bool | None = None) -> Iterator[PersonRow]:
    """Stream the same rows as :func:`people` without pages (the CSV export): fetched :data:`STREAM_BATCH` at a
    time, so memory stays flat for 100,000 people. Raises :class:`ValidationError` like :func:`people` (when
    the first row is asked for)."""
    query = _people_query(status=status, unit=unit, pole=pole, contract_type=contract_type, rpps=rpps, psc=psc)
    for row in session.execute(_order(query).execution_options(yield_per=STREAM_BATCH)):
        yield _person(row)


# --- The report ----------------------------------------------------------------------------------------------------


def report(session: Session, policy: Policy, as_of: dt.date) -> dict[str, Any]:
    """Return everything the printable report and ``trajectory report --format json`` show, as JSON-ready values
    (see :mod:`hospiconnect.trajectory.reporting`)."""
    from hospiconnect.trajectory.reporting import build_report

    return build_report(session, policy, as_of)
