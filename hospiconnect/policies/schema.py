"""The schema of a policy file, checked node by node (pure; used by :mod:`hospiconnect.policies.loader`).

Top level (``version``, ``mie_types`` and ``classes`` are required)::

    version: 1
    name: "…"                       # shown by `hospiconnect policy show`
    timezone: Europe/Paris          # the day of an instant, for dated rules (overseas: Indian/Reunion…)
    networks: {NAME: [CIDR, …]}     # named network sets
    mie_types: {TYPE: {status, factors, max_acr?, label?, decision_date?, decision_reference?,
                       decision_valid_until?}}
    classes: {CLASS: {label?, min_acr, allowed_mie_types, max_auth_age?, networks?, single_factor_networks?,
                      accept_not_homologated?, emergency?, exceptions_may_lower_factors?}}
    populations: {POPULATION: {label?, description?}}
    compliance: {class?: health-data, require_identity_check?: true}
    rules: [{id, description, source?, from?, until?, applies_to?: {class?, population?}, set: {SETTING: …}}]
    targets: [{id, label, due, percent (1..100), indicator?: compliant, applies_to?: {dimension, value}}]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yaml.nodes import Node, ScalarNode

from hospiconnect.policies.acr import ACR_LEVELS, MIE_TYPE_NAMES, acr_rank
from hospiconnect.policies.policy import (
    ANY_NETWORK,
    MIE_STATUSES,
    NO_NETWORK,
    POPULATIONS,
    RPPS_VALUES,
    SETTING_NAMES,
    STATUS_HOMOLOGATED,
    TARGET_DIMENSIONS,
    TARGET_INDICATORS,
    AppClass,
    ClassSettings,
    DatedRule,
    IPNetwork,
    MieType,
    NetworkSet,
    Policy,
    PolicyTarget,
    Population,
)
from hospiconnect.policies.reader import NodeReader, PolicyIssue

TOP_KEYS = ("version", "name", "timezone", "networks", "mie_types", "classes", "populations", "compliance", "rules",
            "targets")
MIE_TYPE_KEYS = ("label", "status", "factors", "max_acr", "decision_date", "decision_reference",
                 "decision_valid_until")
#: Class keys that are not settings (rules cannot change them).
CLASS_ONLY_KEYS = ("exceptions_may_lower_factors",)
CLASS_KEYS = ("label", *SETTING_NAMES, *CLASS_ONLY_KEYS)
POPULATION_KEYS = ("label", "description")
COMPLIANCE_KEYS = ("class", "require_identity_check")
RULE_KEYS = ("id", "description", "source", "from", "until", "applies_to", "set")
APPLIES_TO_KEYS = ("class", "population")
TARGET_KEYS = ("id", "label", "due", "percent", "indicator", "applies_to")
TARGET_APPLIES_TO_KEYS = ("dimension", "value")
VERSIONS = (1,)

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?$")
_RESERVED_NETWORK_NAMES = ("any", "none")
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"


@dataclasses.dataclass
class _Declared:
    """What the file declared so far, for the references of later sections."""

    network_sets: dict[str, tuple[IPNetwork, ...]] = dataclasses.field(default_factory=dict)
    network_names: set[str] = dataclasses.field(default_factory=set)  # declared, even when invalid
    mie_types: dict[str, MieType] = dataclasses.field(default_factory=dict)
    mie_type_names: set[str] = dataclasses.field(default_factory=set)  # declared, even when invalid
    classes: dict[str, AppClass] = dataclasses.field(default_factory=dict)
    class_names: set[str] = dataclasses.field(default_factory=set)
    populations: dict[str, Population] = dataclasses.field(default_factory=dict)


def build(reader: NodeReader, root: Node, *, source: str, digest: str) -> Policy | None:
    """Return the policy described by ``root``, or None when ``reader`` has collected problems."""
    top = reader.mapping(root, "racine du fichier", allowed=TOP_KEYS, required=("version", "mie_types", "classes"))
    if top is None:
        return None
    declared = _Declared()
    if "version" in top:
        reader.integer(top["version"][1], "version", VERSIONS)
    name = reader.text(top["name"][1], "name") if "name" in top else None
    timezone = _timezone(reader, top["timezone"][1]) if "timezone" in top else "Europe/Paris"
    if "networks" in top:
        _network_sets(reader, top["networks"][1], declared)
    if "mie_types" in top:
        _mie_types(reader, top["mie_types"][1], declared)
    if "populations" in top:
        _populations(reader, top["populations"][1], declared)
    if "classes" in top:
        _classes(reader, top["classes"][1], declared)
    compliance_class, require_check = "health-data", True
    if "compliance" in top:
        compliance_class, require_check = _compliance(reader, top["compliance"][0], top["compliance"][1], declared)
    elif declared.class_names and compliance_class not in declared.class_names:
        reader.error(top["classes"][0], "aucune classe « health-data » : indiquez la classe de référence de la "
                                        "conformité sous « compliance: class: … »")
    rules = _rules(reader, top["rules"][1], declared) if "rules" in top else []
    _check_overlaps(reader, rules)
    targets = _targets(reader, top["targets"][1]) if "targets" in top else []
    if reader.issues or timezone is None:
        return None
    return Policy(name=name or source, source=source, digest=digest, timezone=timezone,
                  network_sets=MappingProxyType(declared.network_sets),
                  mie_types=MappingProxyType(declared.mie_types), classes=MappingProxyType(declared.classes),
                  populations=MappingProxyType(declared.populations), rules=tuple(rules),
                  compliance_class=compliance_class, require_identity_check=require_check, targets=tuple(targets))


def _timezone(reader: NodeReader, node: Node) -> str | None:
    value = reader.text(node, "timezone")
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        reader.error(node, f"timezone : fuseau horaire inconnu « {value} » (ex. Europe/Paris, Indian/Reunion)")
        return None
    return value


def _network_sets(reader: NodeReader, node: Node, declared: _Declared) -> None:
    entries = reader.mapping(node, "networks")
    for name, key_node, value_node in _items(entries):
        where = f"networks.{name}"
        if not _NAME.match(name) or name in _RESERVED_NETWORK_NAMES:
            reader.error(key_node, f"{where} : nom de réseau invalide ou réservé (any et none sont réservés)")
            continue
        declared.network_names.add(name)
        items = [value_node] if isinstance(value_node, ScalarNode) else reader.sequence(value_node, where)
        if items is None:
            continue
        networks = [reader.cidr(item, where) for item in items]
        if not items:
            reader.error(value_node, f"{where} : liste vide (au moins un réseau CIDR)")
        if all(net is not None for net in networks) and items:
            declared.network_sets[name] = tuple(net for net in networks if net is not None)


def _mie_types(reader: NodeReader, node: Node, declared: _Declared) -> None:
    entries = reader.mapping(node, "mie_types")
    if entries is not None and not entries:
        reader.error(node, "mie_types : au moins un type de MIE doit être déclaré")
    for name, key_node, value_node in _items(entries):
        where = f"mie_types.{name}"
        if name not in MIE_TYPE_NAMES:
            reader.error(key_node, f"{where} : type de MIE inconnu du produit (types connus : "
                                   f"{', '.join(MIE_TYPE_NAMES)})")
            continue
        declared.mie_type_names.add(name)
        fields = reader.mapping(value_node, where, allowed=MIE_TYPE_KEYS, required=("status", "factors"),
                                owner=key_node)
        if fields is None:
            continue
        errors_before = len(reader.issues)
        status = reader.choice(fields["status"][1], f"{where}.status", MIE_STATUSES) if "status" in fields else None
        factors = reader.integer(fields["factors"][1], f"{where}.factors", (1, 2)) if "factors" in fields else None
        if name == "password" and factors == 2:
            reader.error(fields["factors"][1], f"{where}.factors : un mot de passe n'est jamais qu'un facteur")
        max_acr = (reader.choice(fields["max_acr"][1], f"{where}.max_acr", ACR_LEVELS) if "max_acr" in fields
                   else ("eidas2" if factors == 2 else "eidas1"))
        if factors == 1 and max_acr is not None and acr_rank(max_acr) > 0:
            reader.error(fields["max_acr"][1], f"{where}.max_acr : un MIE à un facteur ne dépasse pas eidas1")
        label = reader.text(fields["label"][1], f"{where}.label") if "label" in fields else ""
        decision = {key: (reader.date(fields[key][1], f"{where}.{key}") if key != "decision_reference"
                          else reader.text(fields[key][1], f"{where}.{key}"))
                    for key in ("decision_date", "decision_reference", "decision_valid_until") if key in fields}
        if status == STATUS_HOMOLOGATED:
            for key in ("decision_date", "decision_reference"):
                if key not in fields:
                    reader.error(key_node, f"{where} : un type homologué exige « {key} » (date et référence de la "
                                           "décision d'homologation)")
            start, end = decision.get("decision_date"), decision.get("decision_valid_until")
            if start and end and end <= start:
                reader.error(fields["decision_valid_until"][1],
                             f"{where}.decision_valid_until : doit suivre decision_date ({start.isoformat()})")
        elif status is not None:
            for key in decision:
                reader.error(fields[key][0], f"{where}.{key} : réservé aux types « homologated » (statut : {status})")
        if len(reader.issues) == errors_before and status and factors and max_acr:
            declared.mie_types[name] = MieType(
                name=name, status=status, factors=factors, max_acr=max_acr, label=label or "",
                decision_date=decision.get("decision_date"), decision_reference=decision.get("decision_reference"),
                decision_valid_until=decision.get("decision_valid_until"))


def _populations(reader: NodeReader, node: Node, declared: _Declared) -> None:
    for name, key_node, value_node in _items(reader.mapping(node, "populations")):
        where = f"populations.{name}"
        if name not in POPULATIONS:
            reader.error(key_node, f"{where} : population inconnue (types de contrat de l'annuaire : "
                                   f"{', '.join(POPULATIONS)})")
            continue
        fields = {} if _is_null(value_node) else reader.mapping(value_node, where, allowed=POPULATION_KEYS)
        if fields is None:
            continue
        texts = {key: reader.text(fields[key][1], f"{where}.{key}") or "" for key in fields}
        declared.populations[name] = Population(name=name, label=texts.get("label", ""),
                                                description=texts.get("description", ""))


def _classes(reader: NodeReader, node: Node, declared: _Declared) -> None:
    entries = reader.mapping(node, "classes")
    if entries is not None and not entries:
        reader.error(node, "classes : au moins une classe d'application doit être déclarée")
    for name, key_node, value_node in _items(entries):
        where = f"classes.{name}"
        if not _NAME.match(name):
            reader.error(key_node, f"{where} : nom de classe invalide (minuscules, chiffres, « - »)")
            continue
        declared.class_names.add(name)
        fields = reader.mapping(value_node, where, allowed=CLASS_KEYS, required=("min_acr", "allowed_mie_types"),
                                owner=key_node)
        if fields is None:
            continue
        errors_before = len(reader.issues)
        label = reader.text(fields["label"][1], f"{where}.label") if "label" in fields else name
        values = {key: _setting(reader, key, fields[key][1], f"{where}.{key}", declared)
                  for key in SETTING_NAMES if key in fields}
        may_lower = False
        if "exceptions_may_lower_factors" in fields:
            may_lower = bool(reader.boolean(fields["exceptions_may_lower_factors"][1],
                                            f"{where}.exceptions_may_lower_factors"))
        if len(reader.issues) == errors_before and "min_acr" in values and "allowed_mie_types" in values:
            declared.classes[name] = AppClass(name=name, label=label or name, settings=ClassSettings(**values),
                                              exceptions_may_lower_factors=may_lower)


def _compliance(reader: NodeReader, key_node: Node, node: Node, declared: _Declared) -> tuple[str, bool]:
    fields = reader.mapping(node, "compliance", allowed=COMPLIANCE_KEYS) or {}
    class_name = "health-data"
    if "class" in fields:
        class_name = reader.text(fields["class"][1], "compliance.class") or class_name
    where = fields["class"][1] if "class" in fields else key_node
    if declared.class_names and class_name not in declared.class_names:
        reader.error(where, f"compliance.class : classe inconnue « {class_name} » "
                            f"(classes déclarées : {', '.join(sorted(declared.class_names))})")
    require = True
    if "require_identity_check" in fields:
        value = reader.boolean(fields["require_identity_check"][1], "compliance.require_identity_check")
        require = True if value is None else value
    return class_name, require


def _rules(reader: NodeReader, node: Node, declared: _Declared) -> list[DatedRule]:
    items = reader.sequence(node, "rules") or []
    rules: list[DatedRule] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items, start=1):
        what = f"rules[{index}]"
        fields = reader.mapping(item, what, allowed=RULE_KEYS, required=("id", "description", "set"))
        if fields is None:
            continue
        errors_before = len(reader.issues)
        rule_id = reader.text(fields["id"][1], f"{what}.id", pattern=_RULE_ID) if "id" in fields else None
        if rule_id is not None:
            what = f"règle « {rule_id} »"
            if rule_id in seen:
                reader.error(fields["id"][1], f"{what} : identifiant déjà utilisé ligne {seen[rule_id]}")
            seen.setdefault(rule_id, reader.line(fields["id"][1]))
        texts = {key: reader.text(fields[key][1], f"{what}.{key}")
                 for key in ("description", "source") if key in fields}
        start = reader.date(fields["from"][1], f"{what}.from") if "from" in fields else None
        end = reader.date(fields["until"][1], f"{what}.until") if "until" in fields else None
        if start and end and end <= start:
            reader.error(fields["until"][1], f"{what} : « until » ({end.isoformat()}) doit suivre « from » "
                                             f"({start.isoformat()})")
        classes, populations = _applies_to(reader, fields.get("applies_to"), what, declared)
        changes = _changes(reader, fields.get("set"), what, declared)
        if len(reader.issues) == errors_before and rule_id and changes:
            rules.append(DatedRule(id=rule_id, description=texts.get("description") or "", source=texts.get("source")
                                   or "", changes=MappingProxyType(changes), start=start, end=end, classes=classes,
                                   populations=populations, line=reader.line(item)))
    return rules


def _applies_to(reader: NodeReader, entry: tuple[Node, Node] | None, what: str,
                declared: _Declared) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if entry is None or _is_null(entry[1]):
        return (), ()
    fields = reader.mapping(entry[1], f"{what}.applies_to", allowed=APPLIES_TO_KEYS) or {}
    classes: list[str] = []
    populations: list[str] = []
    for key, target, known in (("class", classes, declared.class_names),
                               ("population", populations, set(declared.populations))):
        if key not in fields:
            continue
        for value, value_node in reader.names(fields[key][1], f"{what}.applies_to.{key}") or []:
            if value not in known:
                kind = "classe" if key == "class" else "population"
                reader.error(value_node, f"{what}.applies_to.{key} : {kind} inconnue « {value} » (déclarées : "
                                         f"{', '.join(sorted(known)) or 'aucune'})")
            target.append(value)
    return tuple(classes), tuple(populations)


def _changes(reader: NodeReader, entry: tuple[Node, Node] | None, what: str, declared: _Declared) -> dict[str, Any]:
    if entry is None:
        return {}
    fields = reader.mapping(entry[1], f"{what}.set", allowed=SETTING_NAMES)
    if fields is None:
        return {}
    if not fields:
        reader.error(entry[0], f"{what}.set : la règle ne change aucun réglage")
    return {key: _setting(reader, key, value_node, f"{what}.set.{key}", declared)
            for key, (_, value_node) in fields.items()}


def _setting(reader: NodeReader, key: str, node: Node, where: str, declared: _Declared) -> Any:
    """Return the value of the class setting ``key`` written at ``node`` (None after reporting a problem,
    or for ``max_auth_age: null``)."""
    if key == "min_acr":
        return reader.choice(node, where, ACR_LEVELS)
    if key == "allowed_mie_types":
        names = reader.names(node, where) or []
        for value, value_node in names:
            if value not in declared.mie_type_names:
                reader.error(value_node, f"{where} : type de MIE non déclaré « {value} » (déclarés sous mie_types : "
                                         f"{', '.join(sorted(declared.mie_type_names)) or 'aucun'})")
        if not names and not isinstance(node, ScalarNode):
            reader.error(node, f"{where} : au moins un type de MIE")
        return tuple(value for value, _ in names)
    if key == "max_auth_age":
        return None if _is_null(node) else _duration(reader, node, where)
    if key in ("networks", "single_factor_networks"):
        return _network_set(reader, node, where, declared)
    return reader.boolean(node, where)  # accept_not_homologated, emergency


def _duration(reader: NodeReader, node: Node, where: str) -> dt.timedelta | None:
    value = reader.text(node, where) if isinstance(node, ScalarNode) and node.tag.endswith(":str") else None
    match = _DURATION.match(value.strip()) if value else None
    if match and any(match.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        duration = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if duration > dt.timedelta(0):
            return duration
    if value is not None or isinstance(node, ScalarNode):
        reader.error(node, f"{where} : durée invalide « {node.value if isinstance(node, ScalarNode) else ''} » "
                           "(ex. 30m, 8h, 1h30m, 1d ; null pour aucune limite)")
    else:
        reader.error(node, f"{where} : une durée est attendue (ex. 8h)")
    return None


def _network_set(reader: NodeReader, node: Node, where: str, declared: _Declared) -> NetworkSet | None:
    if isinstance(node, ScalarNode) and node.value in ("any", "none") and node.tag.endswith(":str"):
        return ANY_NETWORK if node.value == "any" else NO_NETWORK
    names = reader.names(node, where)
    if names is None:
        return None
    networks: list[IPNetwork] = []
    ok = True
    for value, value_node in names:
        if value in declared.network_sets:
            networks.extend(declared.network_sets[value])
            continue
        if value in declared.network_names:  # declared but invalid: already reported
            ok = False
            continue
        if "/" in value or ":" in value or value[:1].isdigit():
            net = reader.cidr(value_node, where)
            if net is not None:
                networks.append(net)
                continue
        else:
            reader.error(value_node, f"{where} : réseau inconnu « {value} » (ni nom déclaré sous networks : "
                                     f"{', '.join(sorted(declared.network_sets)) or 'aucun'}, ni CIDR ; "
                                     "any pour tous les réseaux)")
        ok = False
    return NetworkSet(any=False, names=tuple(v for v, _ in names), networks=tuple(networks)) if ok else None


def _targets(reader: NodeReader, node: Node) -> list[PolicyTarget]:
    """Return the trajectory's milestones (``targets:``), each checked; report every problem with its line."""
    if _is_null(node):
        return []
    items = reader.sequence(node, "targets") or []
    targets: list[PolicyTarget] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items, start=1):
        what = f"targets[{index}]"
        fields = reader.mapping(item, what, allowed=TARGET_KEYS, required=("id", "label", "due", "percent"))
        if fields is None:
            continue
        errors_before = len(reader.issues)
        target_id = reader.text(fields["id"][1], f"{what}.id", pattern=_RULE_ID) if "id" in fields else None
        if target_id is not None:
            what = f"objectif « {target_id} »"
            if target_id in seen:
                reader.error(fields["id"][1], f"{what} : identifiant déjà utilisé ligne {seen[target_id]}")
            seen.setdefault(target_id, reader.line(fields["id"][1]))
        label = reader.text(fields["label"][1], f"{what}.label") if "label" in fields else None
        due = reader.date(fields["due"][1], f"{what}.due") if "due" in fields else None
        percent = _percent(reader, fields["percent"][1], f"{what}.percent") if "percent" in fields else None
        indicator = (reader.choice(fields["indicator"][1], f"{what}.indicator", TARGET_INDICATORS)
                     if "indicator" in fields else "compliant")
        dimension, value = _target_applies_to(reader, fields.get("applies_to"), what)
        if len(reader.issues) == errors_before and target_id and label and due and percent and indicator:
            targets.append(PolicyTarget(id=target_id, label=label.strip(), due=due, percent=percent,
                                        dimension=dimension, value=value, indicator=indicator,
                                        line=reader.line(item)))
    return targets


def _percent(reader: NodeReader, node: Node, where: str) -> int | None:
    ok, value = reader.scalar(node, where)
    if not ok:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return value
    shown = node.value if isinstance(node, ScalarNode) else "…"
    reader.error(node, f"{where} : un pourcentage entier de 1 à 100 est attendu (reçu « {shown} »)")
    return None


def _target_applies_to(reader: NodeReader, entry: tuple[Node, Node] | None, what: str) -> tuple[str, str]:
    """Return the breakdown a target is about (``("all", "")`` when ``applies_to`` is absent)."""
    if entry is None or _is_null(entry[1]):
        return "all", ""
    where = f"{what}.applies_to"
    fields = reader.mapping(entry[1], where, allowed=TARGET_APPLIES_TO_KEYS, required=("dimension",),
                            owner=entry[0])
    if fields is None or "dimension" not in fields:
        return "all", ""
    dimension = reader.choice(fields["dimension"][1], f"{where}.dimension", TARGET_DIMENSIONS)
    if dimension is None:
        return "all", ""
    if dimension == "all":
        if "value" in fields:
            reader.error(fields["value"][0], f"{where}.value : sans objet pour la dimension « all » (tout le monde)")
        return "all", ""
    if "value" not in fields:
        reader.error(entry[0], f"{where} : clé obligatoire « value » absente (la valeur de la dimension "
                               f"« {dimension} »)")
        return dimension, ""
    value_node = fields["value"][1]
    if dimension == "rpps":
        value = reader.choice(value_node, f"{where}.value", RPPS_VALUES)
    elif dimension == "contract_type":
        value = reader.choice(value_node, f"{where}.value", POPULATIONS)
    elif isinstance(value_node, ScalarNode) and value_node.tag in (_STR_TAG, _INT_TAG) and value_node.value.strip():
        # A code as written: a FINESS number may be left unquoted (and 010770054 must not read as octal).
        value = value_node.value.strip()
        if len(value) > 100:
            reader.error(value_node, f"{where}.value : code trop long (100 caractères au plus)")
            value = None
    else:
        reader.error(value_node, f"{where}.value : un code non vide est attendu (unité, pôle, FINESS, rôle…)")
        value = None
    return dimension, value or ""


def _check_overlaps(reader: NodeReader, rules: list[DatedRule]) -> None:
    """Report two rules of the same specificity that change the same setting of a common target on a common day:
    which one wins would depend on the order of the file."""
    for index, later in enumerate(rules):
        for earlier in rules[:index]:
            if earlier.specificity != later.specificity:
                continue
            if earlier.classes and not set(earlier.classes) & set(later.classes):
                continue
            if earlier.populations and not set(earlier.populations) & set(later.populations):
                continue
            common = [key for key in later.changes if key in earlier.changes]
            if not common or not _periods_overlap(earlier, later):
                continue
            reader.issues.append(_overlap_issue(earlier, later, common))


def _periods_overlap(a: DatedRule, b: DatedRule) -> bool:
    a_start, b_start = a.start or dt.date.min, b.start or dt.date.min
    a_end, b_end = a.end or dt.date.max, b.end or dt.date.max
    return a_start < b_end and b_start < a_end


def _overlap_issue(earlier: DatedRule, later: DatedRule, keys: list[str]) -> PolicyIssue:
    return PolicyIssue(later.line, (
        f"règle « {later.id} » : elle change {', '.join(keys)} pour les mêmes cibles que la règle « {earlier.id} » "
        f"(ligne {earlier.line}) sur une période commune ({earlier.period_fr()} / {later.period_fr()}) ; "
        "séparez leurs dates ou précisez leurs cibles"))


def _items(entries: dict[str, tuple[Node, Node]] | None) -> list[tuple[str, Node, Node]]:
    return [(key, key_node, value_node) for key, (key_node, value_node) in (entries or {}).items()]


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"
