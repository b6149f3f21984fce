"""The trajectory's person-level indicators for one day (pure: plain values in, counts out; no database, no Flask).

A person is described by :class:`PersonFacts` (built from the database by :mod:`hospiconnect.trajectory.facts`):
the breakdowns they count in, their MIE as active intervals (:class:`MieFact`), and the day intervals in which
their identity was active in the directory, an enrollment case of theirs was open, an exception
(dérogation) of the policy's compliance class targeted them, and their identity was paired (« appairée ») with
their national identity at Pro Santé Connect (a live link in ``national_links``). Every interval is
``(first day, end day)``, the end day **excluded** (``None``: still running), in the policy's local days.

For a day D, over the identities active on D (:func:`is_active`), each person has exactly one **status**
(:func:`person_status`):

1. ``compliant`` — :func:`hospiconnect.policies.compliance` says the person holds a compliant MIE on D (the single
   definition, shared with the identity provider);
2. else ``exempt`` — an exception of the compliance class targeting the person is in force on D;
3. else ``pending`` — an enrollment case of the person is open on D;
4. else ``non_compliant`` (the reason: the first compliance reason that is not just "this MIE is not active that
   day", else ``mie_not_active``/``no_mie``).

:func:`count_day` adds up, for each breakdown value of each active person (:func:`person_dimensions`), the
person-level indicators (:func:`person_vector`: :data:`PERSON_INDICATORS`, plus ``mie_active:<type>`` and
``mie_active:<kind>`` per active MIE); :func:`evaluate_day` gives the per-person statuses with it.
:func:`daily_person_counts` gives the same counts for a range of days (the backfill) while evaluating each person
only on the days where one of their facts, or the policy's answer, may change (:func:`change_days`,
:func:`policy_change_days`), adding each change to a per-day difference array: a backfilled day and a snapshot of
that day give the same counts by construction. :func:`normalize` fixes which zero counts are stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Iterable, Iterator, Mapping

from hospiconnect.policies import EffectiveSettings, IdentitySummary, MieSummary, Policy, compliance
from hospiconnect.policies.policy import TARGET_DIMENSIONS

Interval = tuple[dt.date, "dt.date | None"]
Key = tuple[str, str, str]  # (indicator, dimension, value)

STATUSES: tuple[str, ...] = ("compliant", "exempt", "pending", "non_compliant")
STATUS_LABELS_FR: dict[str, str] = {
    "compliant": "conforme",
    "exempt": "en dérogation",
    "pending": "enrôlement en cours",
    "non_compliant": "non conforme",
}
#: Reasons of the ``exempt`` and ``pending`` statuses (the others are compliance reason codes).
REASON_EXCEPTION = "exception"
REASON_ENROLLMENT = "enrollment"

#: Breakdowns (dimension → value): ``all`` → "" ; ``rpps`` → with/without ; ``contract_type`` ; ``establishment``
#: (FINESS) ; ``pole`` (the pôle above each unit) ; ``unit`` ; ``role``. Shared with the policy's targets.
DIMENSIONS: tuple[str, ...] = TARGET_DIMENSIONS
DIMENSION_LABELS_FR: dict[str, str] = {
    "all": "ensemble",
    "rpps": "RPPS",
    "contract_type": "type de contrat",
    "establishment": "établissement (FINESS)",
    "pole": "pôle",
    "unit": "unité",
    "role": "rôle",
    "client": "application",
}
RPPS_LABELS_FR: dict[str, str] = {"with": "avec RPPS", "without": "sans RPPS"}

#: Person-level indicators stored for every breakdown (``mie_active:<type>`` ones come on top, per MIE type/kind).
PERSON_INDICATORS: tuple[str, ...] = ("active", *STATUSES, "proofed", "password_only", "rpps_linked",
                                      "psc_paired")
MIE_ACTIVE_PREFIX = "mie_active:"
#: ``mie_active:<kind>`` indicators always stored for ``all`` (zeros included), the product's own MIE kinds.
DEFAULT_MIE_KINDS: tuple[str, ...] = ("password", "totp", "webauthn", "webauthn:platform", "webauthn:cross-platform")
#: Event indicators (hospiconnect.trajectory.events), for ``all`` (``signins_password_only:*`` also per ``client``).
EVENT_INDICATORS: tuple[str, ...] = ("exceptions_active", "emergency_issued", "emergency_used", "emergency_reviewed",
                                     "emergency_unreviewed")
SIGNIN_PREFIXES: tuple[str, ...] = ("signins:", "signins_mfa:", "signins_acr:", "signins_password_only:")

INDICATOR_LABELS_FR: dict[str, str] = {
    "active": "identités actives",
    "compliant": "avec un MIE conforme",
    "exempt": "en dérogation",
    "pending": "enrôlement en cours",
    "non_compliant": "non conformes",
    "proofed": "MIE remis après vérification d'identité",
    "password_only": "mot de passe seul",
    "rpps_linked": "liées au RPPS",
    "psc_paired": "associées à Pro Santé Connect",
    "exceptions_active": "dérogations en vigueur",
    "emergency_issued": "accès d'urgence délivrés",
    "emergency_used": "accès d'urgence utilisés",
    "emergency_reviewed": "accès d'urgence examinés",
    "emergency_unreviewed": "accès d'urgence non examinés",
    "mie_active:password": "MIE actifs : mot de passe",
    "mie_active:totp": "MIE actifs : application TOTP",
    "mie_active:webauthn": "MIE actifs : clé de sécurité ou authentificateur FIDO2",
    "mie_active:webauthn:platform": "MIE actifs : authentificateur intégré à l'appareil",
    "mie_active:webauthn:cross-platform": "MIE actifs : clé de sécurité externe",
    "mie_active:cps": "MIE actifs : carte CPS",
    "mie_active:e-cps": "MIE actifs : e-CPS",
}
_SIGNIN_LABELS_FR = {"signins:": "connexions", "signins_mfa:": "connexions à deux facteurs",
                     "signins_password_only:": "connexions par mot de passe seul"}


def indicator_label_fr(indicator: str) -> str:
    """Return the French label of any indicator, the dynamic ones included (``signins_acr:health-data:eidas2`` →
    « connexions de niveau eidas2 (health-data) »)."""
    if indicator in INDICATOR_LABELS_FR:
        return INDICATOR_LABELS_FR[indicator]
    if indicator.startswith(MIE_ACTIVE_PREFIX):
        return f"MIE actifs : {indicator[len(MIE_ACTIVE_PREFIX):]}"
    if indicator.startswith("signins_acr:"):
        app_class, _, acr = indicator[len("signins_acr:"):].rpartition(":")
        return f"connexions de niveau {acr} ({app_class})"
    for prefix, label in _SIGNIN_LABELS_FR.items():
        if indicator.startswith(prefix):
            return f"{label} ({indicator[len(prefix):]})"
    return indicator


@dataclasses.dataclass(frozen=True)
class MieFact:
    """One active interval of one MIE: ``type`` (``totp``…), ``kind`` (``webauthn:platform``, else the type),
    ``active_from`` (day of activation), ``active_until`` (day of suspension or revocation, excluded; None: still
    active), ``proofed`` (issued after a verified identity check). An MIE suspended then reactivated gives two.

    ``mie_id``, ``proofing_method``, ``proofed_at`` (day) and ``label`` are kept so that :meth:`summary` gives the
    compliance rule exactly what the provider gives it."""

    type: str
    kind: str
    active_from: dt.date
    active_until: dt.date | None
    proofed: bool
    mie_id: int = 0
    proofing_method: str | None = None
    proofed_at: dt.date | None = None
    label: str = ""

    def active_on(self, day: dt.date) -> bool:
        return self.active_from <= day and (self.active_until is None or day < self.active_until)

    def summary(self) -> MieSummary:
        return MieSummary(type=self.type, active_from=self.active_from, active_until=self.active_until,
                          proofing_method=self.proofing_method, proofed_at=self.proofed_at,
                          label=self.label or self.type)


@dataclasses.dataclass(frozen=True)
class PersonFacts:
    """What the indicators need about one identity (see the module docstring for the intervals)."""

    identity_id: int
    public_id: str
    display_name: str
    user_name: str
    rpps: bool
    contract_type: str
    units: tuple[str, ...]
    poles: tuple[str, ...]
    roles: tuple[str, ...]
    establishments: tuple[str, ...]
    summary: IdentitySummary
    mies: tuple[MieFact, ...]
    active_intervals: tuple[Interval, ...]
    enrollment_intervals: tuple[Interval, ...] = ()
    exception_intervals: tuple[Interval, ...] = ()
    #: Days with a live link to the national identity (Pro Santé Connect): the ``psc_paired`` indicator.
    psc_intervals: tuple[Interval, ...] = ()


@dataclasses.dataclass(frozen=True)
class PersonStatus:
    """A person's status on a day (:data:`STATUSES`) and its reason (a compliance reason code, ``exception``,
    ``enrollment``, or ``""`` for the compliant)."""

    status: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class _CachedPolicy(Policy):
    """The same policy, remembering the settings of each (class, day, population): counting 100,000 people asks
    the same few questions 100,000 times. The settings are immutable values, so sharing them changes nothing."""

    _settings: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # type: ignore[type-arg]

    def effective(self, class_name: str, as_of: dt.date | dt.datetime,
                  population: str | None = None) -> EffectiveSettings:
        key = (class_name, self.local_day(as_of), population)
        found = self._settings.get(key)
        if found is None:
            if len(self._settings) > 100_000:
                self._settings.clear()
            found = self._settings[key] = super().effective(class_name, as_of, population)
        return found


def cached(policy: Policy) -> Policy:
    """Return ``policy`` with its settings per day remembered (for counting many people)."""
    if isinstance(policy, _CachedPolicy):
        return policy
    return _CachedPolicy(**{f.name: getattr(policy, f.name) for f in dataclasses.fields(Policy)})


def make_person(*, identity_id: int, public_id: str = "", display_name: str = "", user_name: str = "",
                rpps: bool = False, contract_type: str = "permanent", units: Iterable[str] = (),
                poles: Iterable[str] = (), roles: Iterable[str] = (), establishments: Iterable[str] = (),
                mies: Iterable[MieFact] = (), active_intervals: Iterable[Interval] = (),
                enrollment_intervals: Iterable[Interval] = (), exception_intervals: Iterable[Interval] = (),
                psc_intervals: Iterable[Interval] = ()) -> PersonFacts:
    """Return :class:`PersonFacts` with ``summary`` built from ``mies`` (one :class:`MieSummary` per interval)."""
    mie_facts = tuple(mies)
    return PersonFacts(
        identity_id=identity_id, public_id=public_id, display_name=display_name, user_name=user_name, rpps=rpps,
        contract_type=contract_type, units=tuple(units), poles=tuple(poles), roles=tuple(roles),
        establishments=tuple(establishments),
        summary=IdentitySummary(mies=tuple(m.summary() for m in mie_facts), population=contract_type),
        mies=mie_facts, active_intervals=tuple(active_intervals), enrollment_intervals=tuple(enrollment_intervals),
        exception_intervals=tuple(exception_intervals), psc_intervals=tuple(psc_intervals))


def in_intervals(intervals: Iterable[Interval], day: dt.date) -> bool:
    """Return True when ``day`` lies in one of ``intervals`` (end days excluded)."""
    return any(start <= day and (end is None or day < end) for start, end in intervals)


def is_active(person: PersonFacts, day: dt.date) -> bool:
    """Return True when the person's identity is active in the directory on ``day``."""
    return in_intervals(person.active_intervals, day)


def is_paired(person: PersonFacts, day: dt.date) -> bool:
    """Return True when the person's identity is linked to their national identity (Pro Santé Connect) at the end
    of ``day``."""
    return in_intervals(person.psc_intervals, day)


def person_status(policy: Policy, person: PersonFacts, day: dt.date) -> PersonStatus:
    """Return the person's status on ``day`` (precedence: compliant, exempt, pending, non_compliant).

    Whether the identity is active that day is not looked at (:func:`count_day` counts active identities only).
    """
    verdict = compliance(policy, person.summary, day)
    if verdict.compliant:
        return PersonStatus("compliant")
    if in_intervals(person.exception_intervals, day):
        return PersonStatus("exempt", REASON_EXCEPTION)
    if in_intervals(person.enrollment_intervals, day):
        return PersonStatus("pending", REASON_ENROLLMENT)
    codes = [r.code for r in verdict.reasons]
    telling = [c for c in codes if c != "mie_not_active"]
    return PersonStatus("non_compliant", (telling or codes or ["no_mie"])[0])


def two_factor_type(policy: Policy, mie_type: str) -> bool:
    """Return True when ``mie_type`` brings two factors (as the policy declares it; undeclared: all but the
    password)."""
    declared = policy.mie_types.get(mie_type)
    return declared.factors >= 2 if declared is not None else mie_type != "password"


def person_vector(policy: Policy, person: PersonFacts, day: dt.date,
                  status: PersonStatus | None = None) -> dict[str, int]:
    """Return the person-level indicators of ``person`` on ``day`` (``{}`` when the identity is not active);
    ``status``: the person's status that day when already known."""
    if not is_active(person, day):
        return {}
    status = status or person_status(policy, person, day)
    vector: dict[str, int] = {"active": 1, status.status: 1}
    password = two_factors = proofed = False
    for mie in person.mies:
        if not mie.active_on(day):
            continue
        key = MIE_ACTIVE_PREFIX + mie.type
        vector[key] = vector.get(key, 0) + 1
        if mie.kind != mie.type:
            key = MIE_ACTIVE_PREFIX + mie.kind
            vector[key] = vector.get(key, 0) + 1
        proofed = proofed or mie.proofed
        if mie.type == "password":
            password = True
        elif two_factor_type(policy, mie.type):
            two_factors = True
    if proofed:
        vector["proofed"] = 1
    if password and not two_factors:
        vector["password_only"] = 1
    if person.rpps:
        vector["rpps_linked"] = 1
    if is_paired(person, day):
        vector["psc_paired"] = 1
    return vector


def person_dimensions(person: PersonFacts) -> tuple[tuple[str, str], ...]:
    """Return the breakdown values the person counts in (once in each of several units, pôles…)."""
    values: list[tuple[str, str]] = [("all", ""), ("rpps", "with" if person.rpps else "without")]
    if person.contract_type:
        values.append(("contract_type", person.contract_type))
    for dimension, codes in (("establishment", person.establishments), ("pole", person.poles),
                             ("unit", person.units), ("role", person.roles)):
        values.extend((dimension, code) for code in dict.fromkeys(codes))
    return tuple(values)


def expand(counts: dict[Key, int], vector: Mapping[str, int], dimensions: Iterable[tuple[str, str]],
           sign: int = 1) -> None:
    """Add ``sign`` × ``vector`` to ``counts`` under each of ``dimensions``."""
    dims = tuple(dimensions)
    for indicator, amount in vector.items():
        if amount:
            for dimension, value in dims:
                key = (indicator, dimension, value)
                counts[key] = counts.get(key, 0) + sign * amount


def normalize(counts: Mapping[Key, int]) -> dict[Key, int]:
    """Return the counts to store for one day: non-zero counts, plus zeros for the :data:`PERSON_INDICATORS` of
    every breakdown value with active identities, and always for ``all`` (with :data:`DEFAULT_MIE_KINDS`), so
    that a share is never computed from a missing row."""
    result = {key: count for key, count in counts.items() if count}
    populated = {(dimension, value) for (indicator, dimension, value), count in result.items()
                 if indicator == "active" and count > 0}
    populated.add(("all", ""))
    for dimension, value in populated:
        for indicator in PERSON_INDICATORS:
            result.setdefault((indicator, dimension, value), 0)
    for kind in DEFAULT_MIE_KINDS:
        result.setdefault((MIE_ACTIVE_PREFIX + kind, "all", ""), 0)
    return result


def count_day(policy: Policy, people: Iterable[PersonFacts], day: dt.date) -> dict[Key, int]:
    """Return the person-level counts of ``day``: ``{(indicator, dimension, value): count}`` over the identities
    active that day (see :func:`normalize` for the zeros)."""
    return evaluate_day(policy, people, day)[0]


def evaluate_day(policy: Policy, people: Iterable[PersonFacts], day: dt.date,
                 ) -> tuple[dict[Key, int], dict[int, PersonStatus]]:
    """Return the counts of :func:`count_day` and the status of each person active that day (by identity id),
    each person being evaluated once."""
    policy = cached(policy)
    statuses: dict[int, PersonStatus] = {}
    # People are first tallied per breakdown value and distinct vector (a handful per value), then expanded:
    # a few dictionary updates per person instead of one per indicator and breakdown value.
    tally: dict[tuple[str, str], dict[tuple[tuple[str, int], ...], int]] = {}
    for person in people:
        if not is_active(person, day):
            continue
        status = statuses[person.identity_id] = person_status(policy, person, day)
        signature = tuple(sorted(person_vector(policy, person, day, status).items()))
        for dimension_value in person_dimensions(person):
            vectors = tally.setdefault(dimension_value, {})
            vectors[signature] = vectors.get(signature, 0) + 1
    counts: dict[Key, int] = {}
    for (dimension, value), vectors in tally.items():
        for signature, people_count in vectors.items():
            for indicator, amount in signature:
                key = (indicator, dimension, value)
                counts[key] = counts.get(key, 0) + amount * people_count
    return normalize(counts), statuses


def status_counts(counts: Mapping[Key, int]) -> dict[str, int]:
    """Return the headline figures of a day's counts: ``active`` and each status, for ``all``."""
    return {name: counts.get((name, "all", ""), 0) for name in ("active", *STATUSES)}


def policy_change_days(policy: Policy) -> tuple[dt.date, ...]:
    """Return the days on which the policy's answer may change for an unchanged person: starts and ends of dated
    rules, homologation decisions and their ends."""
    days: set[dt.date] = set()
    for rule in policy.rules:
        days.update(d for d in (rule.start, rule.end) if d is not None)
    for mie_type in policy.mie_types.values():
        days.update(d for d in (mie_type.decision_date, mie_type.decision_valid_until) if d is not None)
    return tuple(sorted(days))


def change_days(person: PersonFacts, policy_days: Iterable[dt.date] = ()) -> set[dt.date]:
    """Return the days on which the person's indicators may change: every bound of their intervals (a pairing
    and its end included), the days their MIE's identity checks are dated, and ``policy_days``
    (:func:`policy_change_days`). Between two of them every indicator of the person is constant."""
    days = set(policy_days)
    for intervals in (person.active_intervals, person.enrollment_intervals, person.exception_intervals,
                      person.psc_intervals):
        for start, end in intervals:
            days.add(start)
            if end is not None:
                days.add(end)
    for mie in person.mies:
        days.add(mie.active_from)
        if mie.active_until is not None:
            days.add(mie.active_until)
        if mie.proofed_at is not None:
            days.add(mie.proofed_at)
    return days


def person_timeline(policy: Policy, person: PersonFacts, day_from: dt.date, day_to: dt.date,
                    policy_days: Iterable[dt.date] = ()) -> list[tuple[dt.date, dict[str, int]]]:
    """Return ``[(day, vector)]``: the person's vector on ``day_from`` and on each later day up to ``day_to``
    where it changes (each holds until the next)."""
    points = sorted(d for d in change_days(person, policy_days) if day_from < d <= day_to)
    timeline = [(day_from, person_vector(policy, person, day_from))]
    for day in points:
        vector = person_vector(policy, person, day)
        if vector != timeline[-1][1]:
            timeline.append((day, vector))
    return timeline


def vector_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Return ``after - before`` (indicators whose count changes)."""
    delta = Counter(after)
    delta.subtract(before)
    return {indicator: amount for indicator, amount in delta.items() if amount}


def daily_person_counts(policy: Policy, people: Iterable[PersonFacts], day_from: dt.date,
                        day_to: dt.date) -> Iterator[tuple[dt.date, dict[Key, int]]]:
    """Yield ``(day, person-level counts)`` for each day from ``day_from`` to ``day_to`` — the counts
    :func:`count_day` gives for that day — evaluating each person only where their indicators may change."""
    policy_days = policy_change_days(policy)
    diff: dict[dt.date, dict[Key, int]] = {}
    for person in people:
        dimensions = person_dimensions(person)
        previous: dict[str, int] = {}
        for day, vector in person_timeline(policy, person, day_from, day_to, policy_days):
            delta = vector_delta(previous, vector)
            if delta:
                expand(diff.setdefault(day, {}), delta, dimensions)
            previous = vector
    running: dict[Key, int] = {}
    day = day_from
    while day <= day_to:
        for key, amount in diff.pop(day, {}).items():
            running[key] = running.get(key, 0) + amount
        yield day, normalize(running)
        day += dt.timedelta(days=1)
