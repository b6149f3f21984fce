"""The one place that decides access and compliance from a policy (pure).

:func:`evaluate` answers an authorization: **allow**, **step_up** (what is missing can be brought now: a second
factor, a higher level, a fresh sign-in) or **deny** (it cannot: wrong network, no usable MIE). Its checks, on
the class's settings in force that day for the person's population (:meth:`Policy.effective`):

1. **network** — the client address must be in the class's ``networks`` (a hard refusal otherwise);
2. **what counts** — the MIE types used count only when declared, allowed for the class and recognised that day
   (homologated, or not homologated while ``accept_not_homologated`` holds); two factors count only when a
   two-factor type counts, and the level reached is capped by the ``max_acr`` of the types that count;
3. **level** — the level reached must be ``min_acr``, or ``eidas1`` from a ``single_factor_networks`` network
   (the RIE tolerance for password-only access from the establishment's network, until 1 January 2026);
   a step-up is offered only when the person holds an MIE that would reach it (``available_mie_types``);
4. **age** — ``auth_time`` must be within ``max_auth_age`` (a fresh sign-in is a step-up).

**Emergency access (bris de glace).** An authentication whose ``amr`` holds ``emergency`` (a one-time emergency
credential, :data:`EMERGENCY_AMR`) replaces the level check: the class lets it in only when its ``emergency``
setting holds that day for the person's population (``emergency_access``, information), and refuses it otherwise
(``emergency_not_allowed``); the network and age checks still apply, and no exception widens it.

**Exceptions (dérogations).** The ``grants`` of the context are applied to the settings of the day by
:func:`hospiconnect.policies.relaxations.relax` before the checks (the two-factor floor is checked again there);
the MIE types it makes count whatever their homologation count so. :attr:`Decision.applied_grants` names a
smallest set of grants that gives the decision, and only when the decision without any grant is stricter
(the evaluation is simply run again without them).

Bringing more (a higher ``acr``, more factors, more MIE types) never turns an allowed authorization into a
refused one: a property test holds the evaluator to that.

:func:`compliance` / :func:`is_compliant` say whether a person holds a **compliant MIE** on a day: an active MIE
of a two-factor type that the policy's reference class (``compliance.class``, ``health-data``) accepts that day
for the person's population, able to reach its level (at least ``eidas2``), and — for the establishment's own
MIE types — issued after a verified identity check (face to face or FranceConnect+) when the policy requires it.
The provider and the trajectory both ask this function; nothing else defines it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from hospiconnect.policies.acr import ACR_LEVELS, acr_rank
from hospiconnect.policies.context import (
    ALLOW,
    DENY,
    STEP_UP,
    Compliance,
    Decision,
    EvaluationContext,
    IdentitySummary,
    MieSummary,
    Reason,
)
from hospiconnect.policies.policy import (
    MIE_STATUS_LABELS_FR,
    PROOFING_METHODS,
    STATUS_HOMOLOGATED,
    STATUS_NOT_HOMOLOGATED,
    EffectiveSettings,
    MieType,
    Policy,
    acr_label,
    parse_address,
    zone,
)
from hospiconnect.policies.relaxations import ExceptionGrant, relax


#: Statuses of MIE types issued by the establishment itself: only these depend on the establishment's identity
#: check (the ANS and eIDAS substantial schemes check identity before issuing).
LOCAL_STATUSES = (STATUS_HOMOLOGATED, STATUS_NOT_HOMOLOGATED)

#: The ``amr`` value of an authentication with an emergency credential (hospiconnect.authenticators.emergency).
EMERGENCY_AMR = "emergency"


def evaluate(policy: Policy, context: EvaluationContext) -> Decision:
    """Return the decision for ``context`` under ``policy``. Never raises on any context."""
    app_class = policy.classes.get(context.app_class)
    day = policy.local_day(context.as_of)
    if app_class is None:
        return Decision(kind=DENY, app_class=context.app_class, day=day, reasons=(Reason(
            "unknown_class", f"Classe d'application inconnue « {context.app_class} » : la politique ne la déclare "
                             "pas, l'accès est refusé."),))
    effective = policy.effective(context.app_class, context.as_of, context.population)
    baseline = _decide(policy, effective, context, ())
    if not context.grants:
        return baseline
    instant = grant_instant(policy, context.as_of)
    relevant = tuple(g for g in map(_aware, context.grants)
                     if g.app_class == context.app_class and g.in_force(instant))
    decision = _decide(policy, effective, context, relevant)
    if not _less_strict(decision, baseline):
        return baseline
    # A smallest set of grants that still gives this decision: drop each grant that is not needed.
    needed = list(relevant)
    for grant in relevant:
        without = [g for g in needed if g is not grant]
        if not _less_strict(decision, _decide(policy, effective, context, tuple(without))):
            needed = without
    return dataclasses.replace(decision, applied_grants=tuple(dict.fromkeys(g.id for g in needed)))


def grant_instant(policy: Policy, as_of: dt.date | dt.datetime) -> dt.datetime:
    """Return the instant at which the exceptions are looked at for ``as_of``: itself (a naive datetime taken as
    UTC), or for a day alone, its start in the policy's time zone."""
    if isinstance(as_of, dt.datetime):
        return as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.combine(as_of, dt.time(), tzinfo=zone(policy.timezone)).astimezone(dt.timezone.utc)


def _aware(grant: ExceptionGrant) -> ExceptionGrant:
    """Return ``grant`` with naive bounds taken as UTC (the database may give them so)."""
    if grant.starts_at.tzinfo is not None and grant.ends_at.tzinfo is not None:
        return grant
    utc = dt.timezone.utc
    return dataclasses.replace(grant, starts_at=grant.starts_at if grant.starts_at.tzinfo else
                               grant.starts_at.replace(tzinfo=utc),
                               ends_at=grant.ends_at if grant.ends_at.tzinfo else grant.ends_at.replace(tzinfo=utc))


_STRICTNESS = {ALLOW: 0, STEP_UP: 1, DENY: 2}


def _less_strict(decision: Decision, other: Decision) -> bool:
    """Return True when ``decision`` asks less than ``other``: a milder kind, or a step-up missing less."""
    if _STRICTNESS[decision.kind] != _STRICTNESS[other.kind]:
        return _STRICTNESS[decision.kind] < _STRICTNESS[other.kind]
    return decision.kind == STEP_UP and decision.missing < other.missing


def _decide(policy: Policy, effective: EffectiveSettings, context: EvaluationContext,
            grants: tuple[ExceptionGrant, ...]) -> Decision:
    recognised_anyway: frozenset[str] = frozenset()
    if grants:
        relaxed = relax(policy, context.app_class, effective.settings, grants, grant_instant(policy, context.as_of))
        effective = dataclasses.replace(effective, settings=relaxed.settings)
        recognised_anyway = relaxed.recognised_anyway
    check = _Check(policy, effective, context, recognised_anyway)
    check.network()
    if EMERGENCY_AMR in context.amr:
        check.emergency()
    else:
        check.level()
    check.age()
    return check.decision()


class _Check:
    """The checks of one evaluation; each adds reasons, hard (deny) or soft (step-up)."""

    def __init__(self, policy: Policy, effective: EffectiveSettings, context: EvaluationContext,
                 recognised_anyway: frozenset[str] = frozenset()) -> None:
        self.policy = policy
        self.recognised_anyway = recognised_anyway
        self.effective = effective
        self.settings = effective.settings
        self.context = context
        self.label = effective.app_class.label
        self.hard: list[Reason] = []
        self.soft: list[Reason] = []
        self.info: list[Reason] = []
        self.missing: set[str] = set()
        self.candidates: tuple[str, ...] = ()
        self.two_factors_counted = False
        self.address = parse_address(context.client_ip)

    def recognised(self, mie_type: MieType) -> bool:
        """Return True when ``mie_type`` counts that day (its homologation, or an exception says so)."""
        return (mie_type.name in self.recognised_anyway
                or self.policy.recognised(mie_type, self.effective.day, self.settings))

    def source(self, setting: str) -> str | None:
        return self.effective.sources.get(setting)

    def because(self, setting: str) -> str:
        """Return « (règle X : description) » when a rule imposed ``setting``, else an empty string."""
        rule_id = self.source(setting)
        rule = self.policy.rule(rule_id) if rule_id else None
        return f" (règle « {rule.id} », {rule.period_fr()} : {rule.description})" if rule else ""

    def network(self) -> None:
        allowed = self.settings.networks
        if allowed.any:
            return
        if self.address is None and allowed.names:
            self.hard.append(Reason("network_unknown", (
                f"La classe « {self.label} » n'est accessible que depuis certains réseaux ({allowed.describe()}) "
                "et l'adresse d'origine de la demande est inconnue."), self.source("networks")))
        elif not allowed.contains(self.address):
            where = (f"n'est accessible que depuis {allowed.describe()}" if allowed.names
                     else "n'est accessible depuis aucun réseau")
            origin = f"depuis l'adresse {self.address}" if self.address else "(adresse d'origine inconnue)"
            self.hard.append(Reason("network_refused", (
                f"Accès refusé {origin} : la classe « {self.label} » {where}"
                f"{self.because('networks')}."), self.source("networks")))

    def counting_types(self) -> tuple[list[MieType], list[tuple[MieType | None, Reason]]]:
        """Return the MIE types used that count for the class that day, and why each other one does not."""
        counted: list[MieType] = []
        ignored: list[tuple[MieType | None, Reason]] = []
        for name in sorted(self.context.used_mie_types):
            mie_type = self.policy.mie_types.get(name)
            if mie_type is None:
                ignored.append((None, Reason("mie_type_unknown", (
                    f"Le type de MIE « {name} » n'est pas déclaré par la politique : il n'est pas pris en compte."))))
            elif name not in self.settings.allowed_mie_types:
                ignored.append((mie_type, Reason("mie_type_not_allowed", (
                    f"Le type de MIE « {name} » n'est pas accepté pour la classe « {self.label} » (acceptés : "
                    f"{', '.join(self.settings.allowed_mie_types)}){self.because('allowed_mie_types')}."),
                    self.source("allowed_mie_types"))))
            elif not self.recognised(mie_type):
                ignored.append((mie_type, Reason("mie_type_not_homologated", (
                    f"Le type de MIE {mie_type.describe()} n'est pas homologué au "
                    f"{self.effective.day:%d/%m/%Y} : il n'est plus accepté{self.because('accept_not_homologated')}."),
                    self.source("accept_not_homologated"))))
            else:
                counted.append(mie_type)
        return counted, ignored

    def reached_level(self, counted: list[MieType]) -> int:
        """Return the rank of the level this authentication reaches with the types that count (-1: none)."""
        if not counted:
            return -1
        two_factors = self.context.two_factors and any(t.factors == 2 for t in counted)
        self.two_factors_counted = two_factors
        cap = max((t.max_acr for t in counted if t.factors == 2), key=acr_rank) if two_factors else "eidas1"
        return min(acr_rank(self.context.acr), acr_rank(cap))

    def level(self) -> None:
        if not self.context.used_mie_types and not self.context.amr:
            self.soft.append(Reason("not_authenticated", "Aucune authentification : connectez-vous."))
            self.missing.add("login")
            return
        counted, ignored = self.counting_types()
        reached = self.reached_level(counted)
        required = self.settings.min_acr
        tolerated = (acr_rank(required) > 0 and self.settings.single_factor_networks.contains(self.address))
        needed = "eidas1" if tolerated else required
        if reached >= acr_rank(needed):
            # Types that did not count did not matter either (a one-factor type beside a second factor that
            # counts says nothing at all): what the others say is kept as information.
            self.info.extend(dataclasses.replace(reason, blocking=False) for mie_type, reason in ignored
                             if not (self.two_factors_counted and mie_type is not None and mie_type.factors < 2))
            if tolerated and reached < acr_rank(required):
                self.info.append(Reason("single_factor_tolerated", (
                    f"Un seul facteur est toléré depuis ce réseau ({self.settings.single_factor_networks.describe()}) "
                    f"pour la classe « {self.label} »{self.because('single_factor_networks')}."),
                    self.source("single_factor_networks"), blocking=False))
            return
        # Why it failed: the types that did not count, except one-factor types when one factor would not
        # have been enough anyway (the password of a health-data access in 2026 is not the problem).
        self.soft.extend(reason for mie_type, reason in ignored
                         if mie_type is None or mie_type.factors >= 2 or acr_rank(needed) == 0)
        if acr_rank(needed) >= acr_rank("eidas2") and not self.two_factors_counted:
            self.soft.append(Reason("mfa_required", (
                f"La classe « {self.label} » exige une authentification à deux facteurs (niveau "
                f"{acr_label(needed)}){self.because('min_acr') or self.because('single_factor_networks')}."),
                self.source("min_acr") or self.source("single_factor_networks")))
            self.missing.add("mfa")
            if needed != "eidas2":
                self.missing.add(f"acr:{needed}")
        else:
            self.soft.append(Reason("acr_insufficient", (
                f"La classe « {self.label} » exige le niveau {acr_label(needed)} ; cette authentification atteint "
                f"{acr_label(ACR_LEVELS[reached]) if reached >= 0 else 'aucun niveau reconnu'}"
                f"{self.because('min_acr')}."), self.source("min_acr")))
            self.missing.add(f"acr:{needed}")
        self.candidates = self.step_up_types(needed)
        if not self.candidates:
            self.no_step_up()

    def emergency(self) -> None:
        """An authentication with an emergency credential: only a class that allows emergency access that day
        lets it in, whatever its level (the credential is one factor and says so); no step-up is offered."""
        if self.settings.emergency:
            self.info.append(Reason("emergency_access", (
                f"Accès d'urgence (bris de glace) : la classe « {self.label} » l'autorise"
                f"{self.because('emergency')} ; cet accès est journalisé et sera examiné."),
                self.source("emergency"), blocking=False))
            return
        self.hard.append(Reason("emergency_not_allowed", (
            f"La classe « {self.label} » n'autorise pas l'accès d'urgence (bris de glace)"
            f"{self.because('emergency')} : identifiez-vous avec vos moyens habituels."), self.source("emergency")))

    def step_up_types(self, needed: str) -> tuple[str, ...]:
        """Return the person's MIE types that would reach ``needed`` for this class, highest level first."""
        found = []
        for name in self.context.available_mie_types:
            mie_type = self.policy.mie_types.get(name)
            if (mie_type is None or name not in self.settings.allowed_mie_types
                    or not self.recognised(mie_type)
                    or acr_rank(mie_type.max_acr) < acr_rank(needed)
                    or (acr_rank(needed) > 0 and mie_type.factors < 2)):
                continue
            if name in self.context.used_mie_types and self.context.two_factors:
                continue  # already used at a level too low: using it again would not help
            found.append(mie_type)
        found.sort(key=lambda t: (-acr_rank(t.max_acr), t.name))
        return tuple(t.name for t in found)

    def no_step_up(self) -> None:
        if self.context.enrollment_possible:
            self.missing.add("enrollment")
            self.soft.append(Reason("no_usable_mie", (
                "Vous ne disposez d'aucun MIE permettant d'atteindre ce niveau : obtenez-en un avant de "
                "poursuivre.")))
            return
        self.hard.extend(self.soft)
        self.soft = []
        self.hard.append(Reason("no_usable_mie", (
            "Vous ne disposez d'aucun MIE permettant d'atteindre ce niveau pour la classe "
            f"« {self.label} » : adressez-vous au guichet d'enrôlement de l'établissement.")))

    def age(self) -> None:
        limit = self.settings.max_auth_age
        as_of = self.context.as_of
        if limit is None or not isinstance(as_of, dt.datetime) or "login" in self.missing:
            return
        auth_time = self.context.auth_time
        if auth_time is not None:
            now = as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.timezone.utc)
            then = auth_time if auth_time.tzinfo else auth_time.replace(tzinfo=dt.timezone.utc)
            if now - then <= limit:
                return
        self.soft.append(Reason("auth_too_old", (
            f"La dernière authentification remonte à plus de {_duration_fr(limit)} : la classe « {self.label} » "
            f"demande de vous authentifier à nouveau{self.because('max_auth_age')}."), self.source("max_auth_age")))
        self.missing.add("fresh_auth")

    def decision(self) -> Decision:
        effective = self.effective
        if self.hard:
            return Decision(kind=DENY, reasons=tuple(self.hard + self.soft + self.info), rules=effective.rules,
                            app_class=effective.app_class.name, day=effective.day)
        if self.missing:
            return Decision(kind=STEP_UP, missing=frozenset(self.missing), reasons=tuple(self.soft + self.info),
                            candidates=self.candidates, rules=effective.rules, app_class=effective.app_class.name,
                            day=effective.day)
        return Decision(kind=ALLOW, reasons=tuple(self.soft + self.info), rules=effective.rules,
                        app_class=effective.app_class.name, day=effective.day)


def _duration_fr(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("jour", 86400), ("heure", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            if count == 1:
                return ("une " if unit != "jour" else "un ") + unit
            return f"{count} {unit}s"
    return f"{seconds} secondes"


def compliance(policy: Policy, summary: IdentitySummary, as_of: dt.date | dt.datetime) -> Compliance:
    """Return whether ``summary`` holds a compliant MIE on the day of ``as_of``, and why not when it does not."""
    effective = policy.effective(policy.compliance_class, as_of, summary.population)
    day = effective.day
    reasons: list[Reason] = []
    for mie in summary.mies:
        problem = _mie_problem(policy, effective, mie, day)
        if problem is None:
            return Compliance(compliant=True, day=day, mie=mie, rules=effective.rules)
        reasons.append(problem)
    if not summary.mies:
        reasons.append(Reason("no_mie", "Aucun MIE n'a été remis à cette personne."))
    return Compliance(compliant=False, day=day, reasons=tuple(reasons), rules=effective.rules)


def is_compliant(policy: Policy, summary: IdentitySummary, as_of: dt.date | dt.datetime) -> bool:
    """Return True when ``summary`` holds a compliant MIE on the day of ``as_of`` (see :func:`compliance`)."""
    return compliance(policy, summary, as_of).compliant


def _day_of(policy: Policy, value: dt.date | dt.datetime) -> dt.date:
    return policy.local_day(value)


def _mie_problem(policy: Policy, effective: EffectiveSettings, mie: MieSummary, day: dt.date) -> Reason | None:
    """Return why ``mie`` is not a compliant MIE on ``day``, or None when it is."""
    settings = effective.settings
    name = f"MIE « {mie.label or mie.type} »"
    if mie.active_from is None or _day_of(policy, mie.active_from) > day:
        return Reason("mie_not_active", f"{name} : pas encore activé au {day:%d/%m/%Y}.")
    if mie.active_until is not None and _day_of(policy, mie.active_until) <= day:
        return Reason("mie_not_active", f"{name} : suspendu ou retiré avant le {day:%d/%m/%Y}.")
    mie_type = policy.mie_types.get(mie.type)
    if mie_type is None:
        return Reason("mie_type_unknown", f"{name} : type non déclaré par la politique.")
    if mie_type.factors < 2:
        return Reason("mie_single_factor", f"{name} : un seul facteur ; un MIE conforme en exige deux.")
    if mie.type not in settings.allowed_mie_types:
        return Reason("mie_type_not_allowed", f"{name} : type non accepté pour la classe de référence "
                                              f"« {effective.app_class.label} ».", effective.sources.get(
                                                  "allowed_mie_types"))
    if not policy.recognised(mie_type, day, settings):
        when = (f" (décision du {mie_type.decision_date:%d/%m/%Y})" if mie_type.status == STATUS_HOMOLOGATED
                else f" ({MIE_STATUS_LABELS_FR[mie_type.status]})")
        return Reason("mie_type_not_homologated", f"{name} : type non homologué au {day:%d/%m/%Y}{when}.",
                      effective.sources.get("accept_not_homologated"))
    needed = max(settings.min_acr, "eidas2", key=acr_rank)
    if acr_rank(mie_type.max_acr) < acr_rank(needed):
        return Reason("mie_level_too_low", f"{name} : ce type n'atteint pas le niveau {acr_label(needed)} exigé.",
                      effective.sources.get("min_acr"))
    if policy.require_identity_check and mie_type.status in LOCAL_STATUSES:
        if mie.proofing_method not in PROOFING_METHODS:
            return Reason("mie_not_proofed", f"{name} : remis sans vérification d'identité (en face à face ou par "
                                             "FranceConnect+).")
        if mie.proofed_at is not None and _day_of(policy, mie.proofed_at) > day:
            return Reason("mie_not_proofed", f"{name} : identité vérifiée après le {day:%d/%m/%Y}.")
    return None

