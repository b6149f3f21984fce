"""Exceptions (dérogations) as pure values: what one may relax, whether the policy allows it, and its effect.

An RSSI grants a time-boxed exception for one class of applications to a person or a population
(:mod:`hospiconnect.authorizations` stores it). What it relaxes is a :class:`Relaxation`, a small, closed
vocabulary:

* ``allow_single_factor`` — one factor (the password alone) is enough for the class;
* ``allow_mie_types`` — these MIE types count for the class, whatever their homologation status;
* ``networks`` — these networks (names declared by the policy, or CIDRs) are added to where the class may be
  reached from;
* ``max_auth_age`` — a longer maximal age of the authentication.

**The two-factor floor.** An exception never lets one factor through for a class that requires two — its
``min_acr`` is ``eidas2`` or more on some day of the exception, for some population, or it is ``health-data`` or
the policy's compliance class — unless the policy declares that class ``exceptions_may_lower_factors: true``
(:func:`check_relaxation` at the grant, and :func:`relax` again at every use, since the file may have changed).

What the evaluator receives: :class:`ExceptionGrant` values (one per exception in force for the person and the
class, built by :func:`hospiconnect.authorizations.services.active_exceptions_for`), which :func:`relax` applies
to the class's :class:`~hospiconnect.policies.policy.ClassSettings` of the day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from typing import Any, Iterable, Mapping

from hospiconnect.policies.acr import acr_rank
from hospiconnect.policies.policy import POPULATIONS, ClassSettings, IPNetwork, NetworkSet, Policy

#: The keys of a relaxation, in the order they are described.
RELAXATION_KEYS: tuple[str, ...] = ("allow_single_factor", "allow_mie_types", "networks", "max_auth_age")

#: The classes that always count as requiring two factors, whatever their ``min_acr`` (DOMAIN.md: two factors
#: are mandatory for health data).
HEALTH_DATA_CLASS = "health-data"

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?$")
_RESERVED = ("any", "none")


@dataclasses.dataclass(frozen=True)
class Relaxation:
    """What an exception relaxes (see the module docstring). ``networks`` keeps names and CIDRs as written."""

    allow_single_factor: bool = False
    allow_mie_types: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    max_auth_age: dt.timedelta | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_mie_types", tuple(self.allow_mie_types))
        object.__setattr__(self, "networks", tuple(self.networks))

    @property
    def empty(self) -> bool:
        return not (self.allow_single_factor or self.allow_mie_types or self.networks or self.max_auth_age)

    @property
    def lowers_factors(self) -> bool:
        """True when it lets one factor through (the only relaxation that goes below two factors)."""
        return self.allow_single_factor

    def as_json(self) -> dict[str, Any]:
        """Return the relaxation as JSON-ready values: only the keys it sets; ``max_auth_age`` in seconds."""
        data: dict[str, Any] = {}
        if self.allow_single_factor:
            data["allow_single_factor"] = True
        if self.allow_mie_types:
            data["allow_mie_types"] = list(self.allow_mie_types)
        if self.networks:
            data["networks"] = list(self.networks)
        if self.max_auth_age is not None:
            data["max_auth_age"] = int(self.max_auth_age.total_seconds())
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Relaxation":
        """Return the relaxation stored by :meth:`as_json` (trusted: it was checked when granted)."""
        seconds = data.get("max_auth_age")
        return cls(allow_single_factor=bool(data.get("allow_single_factor", False)),
                   allow_mie_types=tuple(data.get("allow_mie_types", ())), networks=tuple(data.get("networks", ())),
                   max_auth_age=dt.timedelta(seconds=int(seconds)) if seconds is not None else None)

    def describe(self) -> str:
        """Return the relaxation in French (« un seul facteur ; types de MIE : totp ; réseaux : 10.1.0.0/16 »)."""
        parts = []
        if self.allow_single_factor:
            parts.append("un seul facteur (mot de passe seul)")
        if self.allow_mie_types:
            parts.append("types de MIE acceptés : " + ", ".join(self.allow_mie_types))
        if self.networks:
            parts.append("réseaux ajoutés : " + ", ".join(self.networks))
        if self.max_auth_age is not None:
            parts.append(f"âge maximal de l'authentification : {format_duration(self.max_auth_age)}")
        return " ; ".join(parts) or "rien"


@dataclasses.dataclass(frozen=True)
class RelaxationIssue:
    """One problem of a relaxation: the ``field`` it concerns, a stable ``code`` and a French ``message``."""

    field: str
    code: str
    message: str


@dataclasses.dataclass(frozen=True)
class ExceptionGrant:
    """One exception in force, as the evaluator receives it (a plain value; no database object).

    ``id``: the exception's public id (for :func:`hospiconnect.authorizations.services.record_use` and the
    journal); ``target``: ``identity`` or ``population``; ``ends_at``: when it stops (excluded).
    """

    id: str
    app_class: str
    relaxation: Relaxation
    starts_at: dt.datetime
    ends_at: dt.datetime
    justification: str = ""
    target: str = "identity"

    def in_force(self, as_of: dt.datetime) -> bool:
        return self.starts_at <= as_of < self.ends_at


@dataclasses.dataclass(frozen=True)
class RelaxedSettings:
    """The settings of a class once the exceptions in force are applied.

    * ``settings``: the relaxed :class:`ClassSettings`;
    * ``recognised_anyway``: MIE types that count whatever their homologation status (``allow_mie_types``, and
      ``password`` under ``allow_single_factor``): the evaluator treats them as recognised;
    * ``applied``: the ids of the exceptions that changed something (to journal with ``record_use``);
    * ``ignored``: ``(id, reason code)`` of the exceptions, or parts of them, left out — ``floor`` when the
      policy no longer lets an exception lower this class below two factors.
    """

    settings: ClassSettings
    recognised_anyway: frozenset[str] = frozenset()
    applied: tuple[str, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()


# -- reading what an operator typed ------------------------------------------------------------------------


def parse_duration(text: str) -> dt.timedelta | None:
    """Return the duration written like the policy file's (``30m``, ``8h``, ``1h30m``, ``1d``), or None."""
    match = _DURATION.match((text or "").strip())
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return value if value > dt.timedelta(0) else None


def format_duration(value: dt.timedelta) -> str:
    """Return ``value`` the way the policy file writes it (``1d``, ``12h``, ``1h30m``)."""
    seconds = int(value.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def relaxation_from_json(data: Mapping[str, Any]) -> tuple[Relaxation | None, list[RelaxationIssue]]:
    """Return the relaxation described by ``data`` (keys of :data:`RELAXATION_KEYS`; ``max_auth_age`` as a
    duration text or seconds), or None with the problems of its shape. The policy is checked by
    :func:`check_relaxation`."""
    issues: list[RelaxationIssue] = []
    if not isinstance(data, Mapping):
        return None, [RelaxationIssue("relaxation", "relaxation_shape", "L'assouplissement doit être un objet.")]
    for key in data:
        if key not in RELAXATION_KEYS:
            issues.append(RelaxationIssue("relaxation", "relaxation_unknown", (
                f"Assouplissement inconnu « {key} » (possibles : {', '.join(RELAXATION_KEYS)}).")))
    single = data.get("allow_single_factor", False)
    if not isinstance(single, bool):
        issues.append(RelaxationIssue("allow_single_factor", "relaxation_shape",
                                      "allow_single_factor : true ou false est attendu."))
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("allow_mie_types", "networks"):
        value = data.get(key, [])
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(v, str) and v.strip() for v in value):
            issues.append(RelaxationIssue(key, "relaxation_shape", f"{key} : une liste de noms est attendue."))
            lists[key] = ()
        else:
            lists[key] = tuple(dict.fromkeys(v.strip() for v in value))
    age = data.get("max_auth_age")
    max_auth_age: dt.timedelta | None = None
    if age is not None:
        if isinstance(age, int) and not isinstance(age, bool) and age > 0:
            max_auth_age = dt.timedelta(seconds=age)
        elif isinstance(age, str) and parse_duration(age) is not None:
            max_auth_age = parse_duration(age)
        else:
            issues.append(RelaxationIssue("max_auth_age", "relaxation_shape", (
                f"max_auth_age : durée invalide « {age} » (ex. 12h, 1d, 1h30m).")))
    if issues:
        return None, issues
    relaxation = Relaxation(allow_single_factor=bool(single), allow_mie_types=lists["allow_mie_types"],
                            networks=lists["networks"], max_auth_age=max_auth_age)
    if relaxation.empty:
        return None, [RelaxationIssue("relaxation", "relaxation_empty",
                                      "Indiquez ce que la dérogation assouplit (au moins un assouplissement).")]
    return relaxation, []


def resolve_networks(policy: Policy, names: Iterable[str]) -> tuple[tuple[IPNetwork, ...], list[str]]:
    """Return the networks that ``names`` (set names declared by the policy, or CIDRs) designate, and the names
    that are neither (« any » and « none » are refused: an exception or an emergency credential names where)."""
    networks: list[IPNetwork] = []
    unknown: list[str] = []
    for name in names:
        if name in policy.network_sets:
            networks.extend(policy.network_sets[name])
            continue
        if name not in _RESERVED and ("/" in name or ":" in name or name[:1].isdigit()):
            try:
                networks.append(ipaddress.ip_network(name, strict=True))
                continue
            except ValueError:
                pass
        unknown.append(name)
    return tuple(networks), unknown


# -- the policy's word on a relaxation ---------------------------------------------------------------------


def _checked_days(policy: Policy, start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """Return the first day of the period and every day within it when a rule starts or stops."""
    first, last = policy.local_day(start), policy.local_day(end)
    days = {first}
    for rule in policy.rules:
        for day in (rule.start, rule.end):
            if day is not None and first < day <= last:
                days.add(day)
    return sorted(days)


def requires_two_factors(policy: Policy, class_name: str, start: dt.datetime, end: dt.datetime | None = None) -> bool:
    """Return True when ``class_name`` requires two factors on some day of [``start``, ``end``] for some population:
    its ``min_acr`` is at least ``eidas2``, or it is ``health-data`` or the policy's compliance class.

    Raises KeyError when the class is not declared.
    """
    if class_name not in policy.classes:
        raise KeyError(class_name)
    if class_name in (HEALTH_DATA_CLASS, policy.compliance_class):
        return True
    for day in _checked_days(policy, start, end or start):
        for population in (None, *POPULATIONS):
            if acr_rank(policy.effective(class_name, day, population).settings.min_acr) >= acr_rank("eidas2"):
                return True
    return False


def may_lower_factors(policy: Policy, class_name: str, start: dt.datetime, end: dt.datetime | None = None) -> bool:
    """Return True when an exception may let one factor through for ``class_name`` over the period: the class
    does not require two factors (:func:`requires_two_factors`), or the policy declares it
    ``exceptions_may_lower_factors: true``."""
    app_class = policy.classes[class_name]
    return app_class.exceptions_may_lower_factors or not requires_two_factors(policy, class_name, start, end)


def check_relaxation(policy: Policy, class_name: str, relaxation: Relaxation, *, start: dt.datetime,
                     end: dt.datetime, population: str | None = None) -> list[RelaxationIssue]:
    """Return every problem of granting ``relaxation`` for ``class_name`` from ``start`` to ``end`` under
    ``policy`` (empty: it may be granted). ``population``: the target's, for the class's current ``max_auth_age``."""
    app_class = policy.classes.get(class_name)
    if app_class is None:
        return [RelaxationIssue("app_class", "unknown_class", (
            f"Classe d'application inconnue « {class_name} » (classes de la politique : "
            f"{', '.join(sorted(policy.classes))})."))]
    issues: list[RelaxationIssue] = []
    if relaxation.allow_single_factor and not may_lower_factors(policy, class_name, start, end):
        issues.append(RelaxationIssue("allow_single_factor", "two_factor_floor", (
            f"La classe « {app_class.label} » exige deux facteurs : une dérogation ne peut pas l'ouvrir avec un seul "
            "facteur, sauf si la politique le permet pour cette classe (exceptions_may_lower_factors: true).")))
    for name in relaxation.allow_mie_types:
        if name not in policy.mie_types:
            issues.append(RelaxationIssue("allow_mie_types", "mie_type_unknown", (
                f"Type de MIE inconnu « {name} » (types de la politique : {', '.join(sorted(policy.mie_types))}).")))
    _, unknown = resolve_networks(policy, relaxation.networks)
    for name in unknown:
        issues.append(RelaxationIssue("networks", "network_unknown", (
            f"Réseau inconnu « {name} » : ni nom déclaré par la politique ("
            f"{', '.join(sorted(policy.network_sets)) or 'aucun'}), ni CIDR valide (ex. 10.1.0.0/16).")))
    if relaxation.max_auth_age is not None:
        current = policy.effective(class_name, start, population).settings.max_auth_age
        if current is None:
            issues.append(RelaxationIssue("max_auth_age", "max_auth_age_unlimited", (
                f"La classe « {app_class.label} » ne limite pas l'âge de l'authentification : rien à assouplir.")))
        elif relaxation.max_auth_age <= current:
            issues.append(RelaxationIssue("max_auth_age", "max_auth_age_not_longer", (
                f"max_auth_age : {format_duration(relaxation.max_auth_age)} n'allonge pas la limite de la classe "
                f"« {app_class.label} » ({format_duration(current)}).")))
    return issues


# -- the effect on the settings of a day --------------------------------------------------------------------


def _union(base: NetworkSet, names: tuple[str, ...], networks: tuple[IPNetwork, ...]) -> NetworkSet:
    if base.any or not networks:
        return base
    return NetworkSet(any=False, names=tuple(dict.fromkeys(base.names + names)),
                      networks=tuple(dict.fromkeys(base.networks + networks)))


def relax(policy: Policy, app_class: str, settings: ClassSettings, grants: Iterable[ExceptionGrant],
          as_of: dt.datetime) -> RelaxedSettings:
    """Return ``settings`` (the class's settings in force at ``as_of``) relaxed by the ``grants`` that concern
    ``app_class`` and are in force at ``as_of``.

    ``allow_single_factor`` sets ``min_acr`` to ``eidas1`` and makes ``password`` count — only while the policy
    lets exceptions lower this class (:func:`may_lower_factors`, checked again here: the file may have changed
    since the grant), otherwise that part is ignored with the code ``floor``; ``allow_mie_types`` adds the types
    and makes them count whatever their homologation; ``networks`` adds to ``networks`` (unless already ``any``;
    names no longer declared are ignored); ``max_auth_age`` keeps the longer of both (no limit stays no limit).
    """
    if app_class not in policy.classes:
        return RelaxedSettings(settings=settings)
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(ClassSettings)}
    recognised: set[str] = set()
    applied: list[str] = []
    ignored: list[tuple[str, str]] = []
    for grant in grants:
        if grant.app_class != app_class or not grant.in_force(as_of):
            continue
        r = grant.relaxation
        changed = False
        if r.allow_single_factor:
            if may_lower_factors(policy, app_class, as_of):
                values["min_acr"] = "eidas1"
                if "password" in policy.mie_types:
                    values["allowed_mie_types"] = tuple(dict.fromkeys((*values["allowed_mie_types"], "password")))
                    recognised.add("password")
                changed = True
            else:
                ignored.append((grant.id, "floor"))
        declared = tuple(t for t in r.allow_mie_types if t in policy.mie_types)
        if declared:
            values["allowed_mie_types"] = tuple(dict.fromkeys((*values["allowed_mie_types"], *declared)))
            recognised.update(declared)
            changed = True
        if r.networks:
            networks, _unknown = resolve_networks(policy, r.networks)
            new = _union(values["networks"], r.networks, networks)
            changed = changed or new != values["networks"]
            values["networks"] = new
        if r.max_auth_age is not None and values["max_auth_age"] is not None \
                and r.max_auth_age > values["max_auth_age"]:
            values["max_auth_age"] = r.max_auth_age
            changed = True
        if changed:
            applied.append(grant.id)
    return RelaxedSettings(settings=ClassSettings(**values), recognised_anyway=frozenset(recognised),
                           applied=tuple(applied), ignored=tuple(ignored))
