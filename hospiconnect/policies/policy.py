"""The access policy as immutable values, and its settings "as of" a date (pure).

A :class:`Policy` is what :mod:`hospiconnect.policies.loader` builds from a YAML file. It declares

* **MIE types** (:class:`MieType`) with their status: issued by the ANS, eIDAS substantial, homologated by the
  establishment (decision date and reference), or not homologated;
* **application classes** (:class:`AppClass`), each with base settings (:class:`ClassSettings`);
* **populations** (:class:`Population`), named like the directory's contract types;
* **rules** (:class:`DatedRule`) that change some settings of some classes and/or populations between two
  dates;
* **targets** (:class:`PolicyTarget`): dated milestones of the trajectory (a share of the active identities, of
  a population or of a unit, to reach by a date), read by :mod:`hospiconnect.trajectory`.

The settings in force for a class, a population and a day (:meth:`Policy.effective`) are the class's base
settings, then every rule active that day (``from`` ≤ day < ``until``) that targets them, least specific first:
rules for every class, then rules naming classes, then rules naming populations, then rules naming both. Two
rules of the same specificity that change the same setting of a common target on a common day are refused by
the loader, so the result never depends on the order of the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
from types import MappingProxyType
from typing import Any, Mapping, Union
from zoneinfo import ZoneInfo

from hospiconnect.policies.acr import ACR_LABELS_FR

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: Status of an MIE type (DOMAIN.md, "Identity and MIE rules").
STATUS_ANS = "ans"
STATUS_EIDAS_SUBSTANTIAL = "eidas_substantial"
STATUS_HOMOLOGATED = "homologated"
STATUS_NOT_HOMOLOGATED = "not_homologated"
MIE_STATUSES: tuple[str, ...] = (STATUS_ANS, STATUS_EIDAS_SUBSTANTIAL, STATUS_HOMOLOGATED, STATUS_NOT_HOMOLOGATED)
MIE_STATUS_LABELS_FR: dict[str, str] = {
    STATUS_ANS: "délivré par l'ANS",
    STATUS_EIDAS_SUBSTANTIAL: "eIDAS substantiel",
    STATUS_HOMOLOGATED: "homologué par l'établissement",
    STATUS_NOT_HOMOLOGATED: "non homologué",
}

#: Populations: the directory's contract types (hospiconnect.directory.validation.CONTRACT_TYPES; a unit test
#: keeps both identical — policies may not import the directory).
POPULATIONS: tuple[str, ...] = (
    "permanent", "fixed_term", "replacement", "interim", "vacataire", "trainee", "contractor",
)

#: Identity checks that make an MIE "issued after a verified identity check"
#: (hospiconnect.enrollment.workflow.METHODS).
PROOFING_METHODS: tuple[str, ...] = ("face_to_face", "fcplus")

#: Breakdowns of the trajectory's indicators that a target may single out (``applies_to: {dimension, value}``);
#: hospiconnect.trajectory.indicators.DIMENSIONS is this tuple (policies may not import the trajectory).
TARGET_DIMENSIONS: tuple[str, ...] = ("all", "rpps", "contract_type", "establishment", "pole", "unit", "role")
#: Values of the ``rpps`` breakdown.
RPPS_VALUES: tuple[str, ...] = ("with", "without")
#: The person-level indicators whose share (among the active identities) a target may set: a compliant MIE, an
#: MIE issued after a verified identity check, a link to the RPPS, a pairing with Pro Santé Connect.
TARGET_INDICATORS: tuple[str, ...] = ("compliant", "proofed", "rpps_linked", "psc_paired")

#: The settings of a class, i.e. what a rule may change.
SETTING_NAMES: tuple[str, ...] = (
    "min_acr", "allowed_mie_types", "max_auth_age", "networks", "single_factor_networks",
    "accept_not_homologated", "emergency",
)


@functools.lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    """Return the time zone ``name`` (cached)."""
    return ZoneInfo(name)


def parse_address(value: str | None) -> IPAddress | None:
    """Return the IP address in ``value``, IPv4-mapped IPv6 addresses as IPv4; None when absent or invalid."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclasses.dataclass(frozen=True)
class NetworkSet:
    """Where something is allowed: every network (``any``) or the union of ``networks``.

    ``names`` keeps what the file said (set names and inline CIDRs), for messages.
    """

    any: bool = False
    names: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    def contains(self, address: IPAddress | str | None) -> bool:
        """Return True when ``address`` is in the set; an absent address is only in the ``any`` set."""
        if self.any:
            return True
        ip = parse_address(address) if isinstance(address, str) or address is None else address
        return ip is not None and any(ip.version == net.version and ip in net for net in self.networks)

    def describe(self) -> str:
        """Return the set in French words."""
        if self.any:
            return "tous les réseaux"
        return ", ".join(self.names) if self.names else "aucun réseau"

    def as_json(self) -> str | list[str]:
        if self.any:
            return "any"
        return list(self.names) if self.names else "none"


ANY_NETWORK = NetworkSet(any=True)
NO_NETWORK = NetworkSet()


@dataclasses.dataclass(frozen=True)
class MieType:
    """A kind of MIE and its standing.

    ``factors``: how many authentication factors an authentication with this MIE brings (a TOTP application
    used with the password: 2; the password alone: 1). ``max_acr``: the highest level it can reach.
    A homologated type counts as such from ``decision_date`` and, when set, before ``decision_valid_until``.
    """

    name: str
    status: str
    factors: int
    max_acr: str
    label: str = ""
    decision_date: dt.date | None = None
    decision_reference: str | None = None
    decision_valid_until: dt.date | None = None

    def standing(self, day: dt.date) -> str:
        """Return the status on ``day``: a homologation not yet decided or expired counts as not homologated."""
        if self.status != STATUS_HOMOLOGATED:
            return self.status
        if self.decision_date is None or day < self.decision_date:
            return STATUS_NOT_HOMOLOGATED
        if self.decision_valid_until is not None and day >= self.decision_valid_until:
            return STATUS_NOT_HOMOLOGATED
        return STATUS_HOMOLOGATED

    def describe(self) -> str:
        """Return the type and its status in French (``« totp » (homologué par l'établissement, décision …)``)."""
        text = f"« {self.name} » ({MIE_STATUS_LABELS_FR[self.status]}"
        if self.status == STATUS_HOMOLOGATED:
            text += f", décision {self.decision_reference} du {self.decision_date:%d/%m/%Y}"
            if self.decision_valid_until:
                text += f" valable jusqu'au {self.decision_valid_until:%d/%m/%Y} exclu"
        return text + ")"


@dataclasses.dataclass(frozen=True)
class ClassSettings:
    """What an application class requires.

    * ``min_acr``: lowest accepted level;
    * ``allowed_mie_types``: MIE types that count for this class (others bring nothing, and block nothing);
    * ``max_auth_age``: oldest accepted authentication (None: no limit);
    * ``networks``: where the class may be reached from at all;
    * ``single_factor_networks``: where one factor (``eidas1``) is tolerated even though ``min_acr`` is higher
      (the RIE transition measure for the establishment's own network, until 1 January 2026);
    * ``accept_not_homologated``: whether a not-homologated MIE type still counts;
    * ``emergency``: whether an emergency credential ("bris de glace") lets a person into the class.
    """

    min_acr: str
    allowed_mie_types: tuple[str, ...]
    max_auth_age: dt.timedelta | None = None
    networks: NetworkSet = ANY_NETWORK
    single_factor_networks: NetworkSet = NO_NETWORK
    accept_not_homologated: bool = False
    emergency: bool = False

    def as_json(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values (durations in seconds)."""
        return {
            "min_acr": self.min_acr,
            "allowed_mie_types": list(self.allowed_mie_types),
            "max_auth_age_seconds": (int(self.max_auth_age.total_seconds())
                                     if self.max_auth_age is not None else None),
            "networks": self.networks.as_json(),
            "single_factor_networks": self.single_factor_networks.as_json(),
            "accept_not_homologated": self.accept_not_homologated,
            "emergency": self.emergency,
        }


@dataclasses.dataclass(frozen=True)
class AppClass:
    """An application class (``health-data``, ``standard``…) and its base settings.

    ``exceptions_may_lower_factors``: whether an exception (dérogation) may let one factor through for this
    class even when it requires two (default False; not a dated setting: rules cannot change it).
    """

    name: str
    label: str
    settings: ClassSettings
    exceptions_may_lower_factors: bool = False


@dataclasses.dataclass(frozen=True)
class Population:
    """A population that rules may single out (``interim``, ``trainee``, ``contractor``…)."""

    name: str
    label: str = ""
    description: str = ""


@dataclasses.dataclass(frozen=True)
class DatedRule:
    """A change of some settings for some classes/populations, from ``start`` (included) to ``end`` (excluded).

    Empty ``classes`` / ``populations``: every class / every population. No dates: always in force.
    """

    id: str
    description: str
    changes: Mapping[str, Any]
    start: dt.date | None = None
    end: dt.date | None = None
    classes: tuple[str, ...] = ()
    populations: tuple[str, ...] = ()
    source: str = ""
    line: int = 0

    def active_on(self, day: dt.date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day < self.end)

    def targets(self, class_name: str, population: str | None) -> bool:
        if self.classes and class_name not in self.classes:
            return False
        return not self.populations or population in self.populations

    @property
    def specificity(self) -> int:
        """0: every class; 1: named classes; 2: named populations; 3: both (the most specific wins)."""
        return (1 if self.classes else 0) + (2 if self.populations else 0)

    def period_fr(self) -> str:
        """Return the rule's period in French (« du 01/01/2026 », « jusqu'au 31/12/2025 »…)."""
        if self.start and self.end:
            return f"du {self.start:%d/%m/%Y} au {self.end - dt.timedelta(days=1):%d/%m/%Y}"
        if self.start:
            return f"à partir du {self.start:%d/%m/%Y}"
        if self.end:
            return f"jusqu'au {self.end - dt.timedelta(days=1):%d/%m/%Y}"
        return "permanente"


@dataclasses.dataclass(frozen=True)
class PolicyTarget:
    """A dated milestone of the trajectory: ``percent`` % of the active identities of a breakdown
    (``dimension``/``value``; ``all``/``""``: everyone) counted by ``indicator`` (``compliant`` by default) on
    ``due``. ``line``: where the policy file declares it (0 when built otherwise)."""

    id: str
    label: str
    due: dt.date
    percent: int
    dimension: str = "all"
    value: str = ""
    indicator: str = "compliant"
    line: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "due": self.due.isoformat(), "percent": self.percent,
                "dimension": self.dimension, "value": self.value, "indicator": self.indicator}


@dataclasses.dataclass(frozen=True)
class EffectiveSettings:
    """The settings of one class for one population on one day, and where each came from.

    ``sources`` maps each setting name to the id of the rule that set it, or None for the class's base value;
    ``rules`` lists the ids of every rule in force for this class and population that day.
    """

    app_class: AppClass
    day: dt.date
    population: str | None
    settings: ClassSettings
    sources: Mapping[str, str | None]
    rules: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"class": self.app_class.name, "label": self.app_class.label, "day": self.day.isoformat(),
                "population": self.population, "settings": self.settings.as_json(),
                "sources": dict(self.sources), "rules": list(self.rules)}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A validated access policy. Build it with :func:`hospiconnect.policies.loader.load_policy`."""

    name: str
    source: str
    digest: str
    timezone: str
    network_sets: Mapping[str, tuple[IPNetwork, ...]]
    mie_types: Mapping[str, MieType]
    classes: Mapping[str, AppClass]
    populations: Mapping[str, Population]
    rules: tuple[DatedRule, ...]
    compliance_class: str
    require_identity_check: bool = True
    targets: tuple[PolicyTarget, ...] = ()

    def local_day(self, as_of: dt.date | dt.datetime) -> dt.date:
        """Return the calendar day of ``as_of`` in the policy's time zone (a naive datetime is taken as UTC)."""
        if isinstance(as_of, dt.datetime):
            aware = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=dt.timezone.utc)
            return aware.astimezone(zone(self.timezone)).date()
        return as_of

    def rule(self, rule_id: str) -> DatedRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def target(self, target_id: str) -> PolicyTarget | None:
        return next((t for t in self.targets if t.id == target_id), None)

    def effective(self, class_name: str, as_of: dt.date | dt.datetime,
                  population: str | None = None) -> EffectiveSettings:
        """Return the settings of ``class_name`` for ``population`` on the day of ``as_of``.

        Raises KeyError when the class is not declared.
        """
        app_class = self.classes[class_name]
        day = self.local_day(as_of)
        values = {f.name: getattr(app_class.settings, f.name) for f in dataclasses.fields(ClassSettings)}
        sources: dict[str, str | None] = {name: None for name in values}
        in_force = sorted((r for r in self.rules if r.active_on(day) and r.targets(class_name, population)),
                          key=lambda r: r.specificity)
        for rule in in_force:
            for name, value in rule.changes.items():
                values[name] = value
                sources[name] = rule.id
        return EffectiveSettings(app_class=app_class, day=day, population=population,
                                 settings=ClassSettings(**values), sources=MappingProxyType(sources),
                                 rules=tuple(r.id for r in in_force))

    def recognised(self, mie_type: MieType, day: dt.date, settings: ClassSettings) -> bool:
        """Return True when ``mie_type`` counts on ``day`` under ``settings`` (its homologation status allows it)."""
        return mie_type.standing(day) != STATUS_NOT_HOMOLOGATED or settings.accept_not_homologated

    def class_label(self, class_name: str) -> str:
        app_class = self.classes.get(class_name)
        return app_class.label if app_class and app_class.label else class_name


def acr_label(acr: str) -> str:
    """Return ``acr`` with its French explanation when it is a known level."""
    return f"{acr} – {ACR_LABELS_FR[acr]}" if acr in ACR_LABELS_FR else acr
