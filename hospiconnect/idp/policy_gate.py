"""The access policy at the authorization endpoint: the glue between :mod:`hospiconnect.policies` and the provider.

For every authorization decision (:func:`hospiconnect.idp.oidc.decide`: a first arrival, an SSO reuse, a
resumption after an interaction) :func:`assess` builds the policy's
:class:`~hospiconnect.policies.EvaluationContext` — the client's class, the session's ``amr`` and
``auth_time`` and the level its factors reach (:func:`factors_acr`), the person's population (their contract
type), the client address, the MIE types used (from ``amr``) and the types of the person's active MIE — asks
:func:`hospiconnect.policies.evaluate`, and maps the :class:`~hospiconnect.policies.Decision` onto the
provider's machinery with :func:`map_decision` (pure):

* ``allow`` → nothing is added: the protocol checks (``prompt``, ``max_age``, ``id_token_hint``, essential
  ``acr``) still decide alone;
* ``step_up`` → interaction reasons: ``mfa`` → ``mfa_required``, ``acr:<level>`` → ``essential_acr``,
  ``fresh_auth`` → ``auth_too_old`` (a sign-in, like ``max_age``). The second-factor page then offers only
  the MIE types that would do (``Decision.candidates``), with user verification when ``eidas3`` is needed;
* ``deny`` → a refusal: ``access_denied`` (RFC 6749 §4.1.2.1) whose description is ASCII and names the reason
  codes; the French messages are shown when the person is on a HospiConnect page. One case keeps the
  explanation page the provider always had: a session without a second factor, for a person who holds none
  that would do, gets the ``mfa_required`` interaction whose page explains how to obtain one.

While the person must sign in anyway (no session, ``prompt=login``, ``max_age``, another person expected),
the policy is asked without the session: only what does not depend on the person (class, network) can
refuse then, and whether the sign-in must ask for a second factor comes from the class's settings
(:func:`needed_acr`); the decision after the sign-in is the person's. Each decision is journaled
(``authz:policy:decided``, :func:`journal`).

**Exceptions (dérogations).** When the person is known, the exceptions in force for them and the class
(:func:`hospiconnect.authorizations.services.active_exceptions_for`) go into the context; the policy applies them
(the two-factor floor included) and names those without which the decision would have been stricter
(``Decision.applied_grants``). When such a decision lets the authorization through to a code, each of them is
recorded (:func:`hospiconnect.authorizations.services.record_use`, journaled ``authz:policy_exception:used``); one
revoked or ended meanwhile is left out and the policy asked again. Their ids are in ``authz:policy:decided``.
A fresh sign-in asks :func:`login_suffices` after the first factor: an exception that lets one factor through
spares the person the second-factor step the page had planned.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators.models import Mie
from hospiconnect.authorizations import services as exceptions
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.idp import checks
from hospiconnect.idp.models import Client, SsoSession
from hospiconnect.policies import Decision, EvaluationContext, Policy, Reason, acr_rank, evaluate
from hospiconnect.policies.context import DENY, STEP_UP
from hospiconnect.policies.relaxations import ExceptionGrant, relax
from hospiconnect.policies.rules import grant_instant

#: The MIE types of this product that give a second factor (hospiconnect.authenticators.models.Mie).
SECOND_FACTOR_TYPES: tuple[str, ...] = ("totp", "webauthn")

# Codes of a denial that says only "a factor is missing and none the person holds would do".
_LACKING_FACTOR = frozenset({"mfa_required", "no_usable_mie", "mie_type_unknown", "mie_type_not_allowed",
                             "mie_type_not_homologated", "auth_too_old"})


@dataclasses.dataclass(frozen=True)
class PersonMie:
    """The active MIE of a person, as the gate needs them: ``(type, proofing_method)`` pairs."""

    rows: tuple[tuple[str, str | None], ...] = ()

    @property
    def facts(self) -> checks.PersonFacts:
        """What :func:`hospiconnect.idp.checks.evaluate` needs to know about the person."""
        second = [(t, p) for t, p in self.rows if t in SECOND_FACTOR_TYPES]
        return checks.PersonFacts(has_second_factor=bool(second), proofed=any(p for _, p in second),
                                  has_hardware_key=any(t == "webauthn" for t, _ in second))

    @property
    def available_types(self) -> frozenset[str]:
        """The types of the person's active MIE, which could serve a step-up (see :func:`factors_acr`)."""
        return frozenset(t for t, _ in self.rows)


def factors_acr(amr: Iterable[str]) -> str:
    """Return the level the factors of ``amr`` reach (``eidas1`` one factor, ``eidas2`` two, ``eidas3`` a key
    that verified the user): what the policy's ``min_acr`` is compared with.

    The identity check that preceded an MIE's issuance is left out on purpose: the provider has never refused
    an application for it (it lowers the ``acr`` put in the ID token, :func:`hospiconnect.idp.checks.acr_for`,
    which essential ``acr`` requests still use) and the shipped policy keeps that behaviour; whether the MIE
    was issued after a check is part of its compliance (:func:`hospiconnect.policies.compliance`).
    """
    return checks.acr_for(amr, proofed=True)


@dataclasses.dataclass(frozen=True)
class GateResult:
    """What the provider does with a policy decision.

    * ``reasons``: interaction reasons to add (``mfa_required``, ``essential_acr``, ``auth_too_old``);
    * ``refusal``: the answer to a denial (``access_denied``, ASCII description), or None;
    * ``needs_mfa``: the sign-in must bring a second factor; ``required_acr``: the level the class needs;
    * ``step_up_types``: the MIE types the second-factor page may offer (None: those the person has);
    * ``messages``: the French messages of the blocking reasons, for pages;
    * ``exceptions``: ids of the exceptions (dérogations) the decision relies on (``Decision.applied_grants``).
    """

    decision: Decision
    reasons: tuple[str, ...] = ()
    refusal: checks.Refusal | None = None
    needs_mfa: bool = False
    required_acr: str | None = None
    step_up_types: tuple[str, ...] | None = None
    messages: tuple[str, ...] = ()

    @property
    def exceptions(self) -> tuple[str, ...]:
        return self.decision.applied_grants


def active_mie(session: Session, identity_id: int) -> PersonMie:
    """Return the person's active MIE (one query)."""
    rows = session.execute(select(Mie.type, Mie.proofing_method).where(
        Mie.identity_id == identity_id, Mie.status == "active")).all()
    return PersonMie(tuple((row.type, row.proofing_method) for row in rows))


def needed_acr(policy: Policy, app_class: str, as_of: dt.datetime | dt.date, client_ip: str | None,
               population: str | None = None, grants: Iterable[ExceptionGrant] = ()) -> str | None:
    """Return the level an authentication needs for ``app_class`` from ``client_ip`` (``eidas1`` where one
    factor is tolerated, or where an exception in ``grants`` lets one factor through), or None for a class the
    policy does not declare."""
    if app_class not in policy.classes:
        return None
    settings = policy.effective(app_class, as_of, population).settings
    grants = tuple(grants)
    if grants:
        settings = relax(policy, app_class, settings, grants, grant_instant(policy, as_of)).settings
    if acr_rank(settings.min_acr) > 0 and settings.single_factor_networks.contains(client_ip):
        return "eidas1"
    return settings.min_acr


def types_reaching(policy: Policy, app_class: str, as_of: dt.datetime | dt.date, level: str,
                   population: str | None = None) -> tuple[str, ...]:
    """Return this product's second-factor types that count for ``app_class`` that day and reach ``level``."""
    effective = policy.effective(app_class, as_of, population)
    found = []
    for name in SECOND_FACTOR_TYPES:
        mie_type = policy.mie_types.get(name)
        if (mie_type is not None and name in effective.settings.allowed_mie_types and mie_type.factors >= 2
                and policy.recognised(mie_type, effective.day, effective.settings)
                and acr_rank(mie_type.max_acr) >= acr_rank(level)):
            found.append(name)
    return tuple(found)


def _blocking(decision: Decision) -> list[Reason]:
    # "Not authenticated yet" is no reason of a denial: the person is asked without a session.
    return [r for r in decision.reasons if r.blocking and r.code != "not_authenticated"]


def ascii_description(decision: Decision) -> str:
    """Return the ``error_description`` of a denial: ASCII, the class and the blocking reason codes."""
    codes = [r.code for r in _blocking(decision)] or ["denied"]
    return f"Access denied by the access policy for class {decision.app_class}: {', '.join(codes)}."


def map_decision(decision: Decision, *, two_factors: bool, needed: str | None = None) -> GateResult:
    """Map a policy decision onto the provider (pure): see the module's docstring.

    ``two_factors``: the session (if any) has proven two factors; ``needed``: the class's level
    (:func:`needed_acr`), which tells whether the sign-in must ask for a second factor.
    """
    needs_mfa = needed is not None and acr_rank(needed) > 0
    messages = tuple(r.message for r in _blocking(decision))
    if decision.kind == DENY:
        blocking = {r.code for r in _blocking(decision)}
        if (not two_factors and {"mfa_required", "no_usable_mie"} <= blocking and blocking <= _LACKING_FACTOR):
            # No second factor that would do: the page explains how to obtain one (no step-up is offered).
            reasons = ("mfa_required",) + (("auth_too_old",) if "auth_too_old" in decision.codes else ())
            return GateResult(decision, reasons=reasons, needs_mfa=True, required_acr=needed, step_up_types=(),
                              messages=messages)
        refusal = checks.Refusal("access_denied", ascii_description(decision), "policy_denied")
        return GateResult(decision, refusal=refusal, needs_mfa=needs_mfa, required_acr=needed, messages=messages)
    if decision.kind != STEP_UP:
        return GateResult(decision, needs_mfa=needs_mfa, required_acr=needed)
    reasons: list[str] = []
    if "fresh_auth" in decision.missing:
        reasons.append("auth_too_old")
    if "mfa" in decision.missing:
        reasons.append("mfa_required")
    elif any(m.startswith("acr:") for m in decision.missing):
        reasons.append("essential_acr")
    if "enrollment" in decision.missing:  # never asked by the provider (enrollment happens at the desk)
        refusal = checks.Refusal("access_denied", ascii_description(decision), "policy_denied")
        return GateResult(decision, refusal=refusal, needs_mfa=needs_mfa, required_acr=needed, messages=messages)
    step_up = decision.candidates if {"mfa_required", "essential_acr"} & set(reasons) else None
    levels = [m[4:] for m in decision.missing if m.startswith("acr:")]
    required = max(levels + ([needed] if needed else []), key=acr_rank) if levels or needed else None
    return GateResult(decision, reasons=tuple(reasons), needs_mfa=needs_mfa or "mfa" in decision.missing
                      or bool(levels), required_acr=required, step_up_types=step_up, messages=messages)


def assess(session: Session, policy: Policy, client: Client, sso: SsoSession | None, person: PersonMie | None, *,
           login_due: bool, client_ip: str | None, now: dt.datetime, issuing: bool = True) -> GateResult:
    """Ask ``policy`` about this authorization and return what the provider does.

    ``sso`` is the live session (None: none); ``person`` the active MIE of its person; ``login_due``: the
    person has to sign in anyway (the policy is then asked without a person, and ``mfa_required`` added when
    the class needs two factors that the session, if any, has not proven). ``issuing``: nothing but the policy
    stands between this authorization and a code (the protocol checks found no reason): only then is the use of
    the exceptions the decision relies on recorded.
    """
    app_class = client.sensitivity
    if sso is None or login_due:
        context = EvaluationContext(as_of=now, app_class=app_class, client_ip=client_ip)
        needed = needed_acr(policy, app_class, now, client_ip)
        result = map_decision(evaluate(policy, context), two_factors=False, needed=needed)
        if needed is not None and result.refusal is None and acr_rank(needed) > 0:
            # Whoever signs in: offer only the second factors that reach the level (eidas3: the key).
            lacking = sso is None or "mfa" not in sso.amr
            result = dataclasses.replace(result, reasons=("mfa_required",) if lacking else (), messages=(),
                                         step_up_types=types_reaching(policy, app_class, now, needed))
        return dataclasses.replace(result, messages=()) if result.refusal is None else result
    identity = session.get(Identity, sso.identity_id, options=ONLY_IDENTITY)
    population = identity.contract_type if identity is not None else None
    grants: tuple[ExceptionGrant, ...] = ()
    if identity is not None and app_class in policy.classes:
        grants = tuple(exceptions.active_exceptions_for(session, identity, app_class, now))
    recorded: set[str] = set()
    while True:
        context = EvaluationContext(
            as_of=now, app_class=app_class, acr=factors_acr(sso.amr), amr=frozenset(sso.amr),
            auth_time=sso.auth_time, population=population, client_ip=client_ip,
            # Through Pro Santé Connect: the national MIE, which PSC's amr cannot tell (a card gives "hwk").
            mie_types=frozenset({sso.national_mie}) if sso.national_mie else None,
            available_mie_types=person.available_types if person is not None else frozenset(), grants=grants)
        decision = evaluate(policy, context)
        result = map_decision(decision, two_factors="mfa" in sso.amr,
                              needed=needed_acr(policy, app_class, now, client_ip, population, grants))
        if not (issuing and identity is not None and decision.allowed and result.refusal is None
                and not result.reasons):
            return result
        ended = None
        for grant_id in decision.applied_grants:
            if grant_id in recorded:
                continue
            if not exceptions.record_use(session, grant_id, identity=identity, client_ip=client_ip,
                                         client_id=client.client_id, now=now):
                ended = grant_id  # revoked or ended meanwhile: ask again without it
                break
            recorded.add(grant_id)
        if ended is None:
            return result
        grants = tuple(g for g in grants if g.id != ended)


def login_suffices(session: Session, policy: Policy, app_class: str | None, identity: Identity, amr: Iterable[str],
                   *, client_ip: str | None, now: dt.datetime) -> tuple[str, ...] | None:
    """Return the ids of the exceptions (dérogations) that let ``identity`` into ``app_class`` with the factors
    ``amr`` just proven, or None when a second factor is still needed.

    Asked after the first factor of a fresh sign-in: the sign-in page decided that a second factor would be
    needed before anyone was known (:func:`assess` without a person). Nothing is recorded here; the decision at
    the resumption of the authorization records the use of the exceptions (:func:`assess`, ``issuing``).
    """
    if app_class is None or app_class not in policy.classes:
        return None
    grants = tuple(exceptions.active_exceptions_for(session, identity, app_class, now))
    if not grants:
        return None
    values = frozenset(amr)
    context = EvaluationContext(as_of=now, app_class=app_class, acr=factors_acr(values), amr=values, auth_time=now,
                                population=identity.contract_type, client_ip=client_ip, grants=grants)
    decision = evaluate(policy, context)
    return decision.applied_grants if decision.allowed and decision.applied_grants else None


def outcome_of(result: GateResult) -> str:
    """Return the journal outcome of a decision: ``success`` (allow), ``refused`` (deny), ``info`` (step-up)."""
    if result.refusal is not None or result.decision.kind == DENY:
        return "refused"
    return "success" if result.decision.allowed and not result.reasons else "info"


def journal(session: Session, policy: Policy, result: GateResult, *, client_id: str, subject: str | None,
            client_ip: str | None) -> None:
    """Journal one decision (``authz:policy:decided``): kind, what is missing, reason codes, rules, the
    policy's digest, the class and what the provider does with it."""
    decision = result.decision
    audit.record(session, tags.AUTHZ_POLICY_DECIDED, actor=subject or f"client:{client_id}", subject=subject,
                 client_ip=client_ip, outcome=outcome_of(result),
                 details={"client_id": client_id, "class": decision.app_class, "kind": decision.kind,
                          "missing": sorted(decision.missing), "codes": list(decision.codes),
                          "rules": list(decision.rules), "candidates": list(decision.candidates),
                          "day": decision.day.isoformat() if decision.day else None,
                          "policy": policy.name, "digest": policy.digest,
                          "provider_reasons": list(result.reasons), "exceptions": list(result.exceptions),
                          "refusal": result.refusal.error if result.refusal else None})

