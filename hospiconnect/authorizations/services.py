"""Exceptions (dérogations): grant, revoke, list, find those in force for a person, record their use.

Conventions (those of the other services): each function works in the caller's session, journals there and
flushes; the caller commits once. Bad input raises :class:`~hospiconnect.errors.ValidationError` (``field``,
French message, every problem in ``errors``) before anything is written. Expiry needs no job: an exception is
in force from ``starts_at`` (included) to ``ends_at`` (excluded) unless revoked; :func:`journal_expired` only
reports each expiry once in the journal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Mapping

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authorizations.models import TARGET_IDENTITY, TARGET_POPULATION, PolicyException
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity, OrgUnit
from hospiconnect.directory.validation import CONTRACT_TYPES
from hospiconnect.errors import Conflict, NotFound, ValidationError
from hospiconnect.policies import Policy
from hospiconnect.policies.relaxations import (
    ExceptionGrant,
    Relaxation,
    RelaxationIssue,
    check_relaxation,
    relaxation_from_json,
)

DEFAULT_MAX_DAYS = 180  # Settings.exception_max_days
MIN_JUSTIFICATION = 10
MAX_JUSTIFICATION = 2000
MIN_REASON = 3
# A start given as "now" by a form or a script may be a little behind the server's clock.
_START_TOLERANCE = dt.timedelta(minutes=5)


class ExceptionNotFound(NotFound):
    code = "exception_not_found"

    def __init__(self) -> None:
        super().__init__("Dérogation introuvable.")


def _fail(issues: list[RelaxationIssue]) -> None:
    if issues:
        errors: dict[str, str] = {}
        for issue in issues:
            errors.setdefault(issue.field, issue.message)
        raise ValidationError(" ".join(dict.fromkeys(i.message for i in issues)), field=issues[0].field,
                              code=issues[0].code, errors=errors)


def _aware(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValidationError(f"{field} : date et heure sans fuseau horaire.", field=field, code="naive_datetime")
    return value.astimezone(dt.timezone.utc)


def _details(row: PolicyException, identity_public_id: str | None) -> dict[str, Any]:
    return {"exception": row.public_id, "class": row.app_class, "target": row.target_kind,
            "identity": identity_public_id, "population": row.population, "units": row.units,
            "relaxation": json.loads(row.relaxation_json), "starts_at": row.starts_at.isoformat(),
            "ends_at": row.ends_at.isoformat()}


def grant_exception(session: Session, policy: Policy, *, app_class: str,
                    relaxation: Relaxation | Mapping[str, Any], justification: str, ends_at: dt.datetime | None,
                    identity: Identity | None = None, population: str | None = None,
                    units: tuple[str, ...] | list[str] = (), starts_at: dt.datetime | None = None,
                    actor: str, client_ip: str | None = None, now: dt.datetime | None = None,
                    max_days: int = DEFAULT_MAX_DAYS) -> PolicyException:
    """Grant an exception and return it.

    The target is ``identity`` **or** ``population`` (a contract type of the directory), the latter optionally
    narrowed to ``units`` (unit codes of the directory). ``relaxation``: a :class:`Relaxation` or its JSON form
    (``allow_single_factor``, ``allow_mie_types``, ``networks``, ``max_auth_age``), checked against ``policy``
    (:func:`hospiconnect.policies.relaxations.check_relaxation`: declared class, MIE types and networks, and
    never one factor for a class that requires two unless the policy allows it). ``justification``: at least
    10 characters. ``starts_at``: now when None, not in the past; ``ends_at``: required, after the start, at
    most ``max_days`` days from now (``Settings.exception_max_days``).

    Raises :class:`ValidationError` listing every problem (nothing written). Journals
    ``admin:policy_exception:granted`` (the caller commits).
    """
    now = now or utcnow()
    issues: list[RelaxationIssue] = []

    def problem(field: str, code: str, message: str) -> None:
        issues.append(RelaxationIssue(field, code, message))

    # Target: exactly one kind.
    unit_codes = tuple(dict.fromkeys(u.strip() for u in units if u and u.strip()))
    if (identity is None) == (population is None):
        problem("target", "target_required" if identity is None else "target_ambiguous",
                "Indiquez une cible et une seule : une personne, ou une population (éventuellement limitée à "
                "des unités).")
    if identity is not None:
        if unit_codes:
            problem("units", "units_need_population", "Les unités ne limitent qu'une population, pas une personne.")
        if identity.status == "departed":
            problem("identity", "identity_departed", "Cette personne a quitté l'établissement.")
    if population is not None:
        if population not in CONTRACT_TYPES:
            problem("population", "population_unknown", (
                f"Population inconnue « {population} » (types de contrat : {', '.join(CONTRACT_TYPES)})."))
        if unit_codes:
            known = set(session.scalars(select(OrgUnit.code).where(OrgUnit.code.in_(unit_codes))))
            for code in unit_codes:
                if code not in known:
                    problem("units", "unit_unknown", f"Unité inconnue de l'annuaire « {code} ».")
    # Justification.
    text = (justification or "").strip()
    if len(text) < MIN_JUSTIFICATION:
        problem("justification", "justification_required",
                f"La justification est obligatoire (au moins {MIN_JUSTIFICATION} caractères).")
    elif len(text) > MAX_JUSTIFICATION:
        problem("justification", "justification_too_long",
                f"La justification ne doit pas dépasser {MAX_JUSTIFICATION} caractères.")
    # Period.
    start = _aware(starts_at, "starts_at") if starts_at is not None else now
    if start < now - _START_TOLERANCE:
        problem("starts_at", "start_in_past", "La date de début ne peut pas être dans le passé.")
    end: dt.datetime | None = None
    if ends_at is None:
        problem("ends_at", "end_required", "La date de fin est obligatoire : une dérogation est toujours limitée "
                                           "dans le temps.")
    else:
        end = _aware(ends_at, "ends_at")
        if end <= now:
            problem("ends_at", "end_in_past", "La date de fin doit être dans le futur.")
        elif end <= start:
            problem("ends_at", "end_before_start", "La date de fin doit suivre la date de début.")
        elif end > now + dt.timedelta(days=max_days):
            problem("ends_at", "end_too_far", (
                f"Une dérogation dure au plus {max_days} jours : choisissez une fin au plus tard le "
                f"{(now + dt.timedelta(days=max_days)).astimezone(dt.timezone.utc):%d/%m/%Y}."))
    # What is relaxed, against the policy.
    relaxed: Relaxation | None
    if isinstance(relaxation, Relaxation):
        relaxed = relaxation if not relaxation.empty else None
        if relaxed is None:
            problem("relaxation", "relaxation_empty", "Indiquez ce que la dérogation assouplit.")
    else:
        relaxed, shape = relaxation_from_json(relaxation)
        issues.extend(shape)
    if relaxed is not None or app_class not in policy.classes:
        target_population = population if population is not None else (identity.contract_type if identity else None)
        issues.extend(check_relaxation(policy, app_class, relaxed or Relaxation(),
                                       start=start, end=end if end and end > start else start,
                                       population=target_population))
    _fail(issues)
    assert relaxed is not None and end is not None

    row = PolicyException(identity_id=identity.id if identity is not None else None, population=population,
                          units_json=json.dumps(sorted(unit_codes)), app_class=app_class,
                          relaxation_json=json.dumps(relaxed.as_json(), sort_keys=True), justification=text,
                          starts_at=start, ends_at=end, granted_by=actor[:200], granted_at=now,
                          policy_digest=policy.digest, use_count=0)
    session.add(row)
    session.flush()
    audit.record(session, tags.POLICY_EXCEPTION_GRANTED, actor=actor,
                 subject=identity.public_id if identity is not None else f"population:{population}",
                 client_ip=client_ip, details={**_details(row, identity.public_id if identity else None),
                                               "justification": text, "policy": policy.digest})
    return row


def get_exception(session: Session, public_id: str) -> PolicyException:
    """Return the exception ``public_id``; raises :class:`ExceptionNotFound`."""
    row = session.scalar(select(PolicyException).where(PolicyException.public_id == (public_id or "").strip()))
    if row is None:
        raise ExceptionNotFound()
    return row


def revoke_exception(session: Session, public_id: str, *, actor: str, reason: str, client_ip: str | None = None,
                     now: dt.datetime | None = None) -> PolicyException:
    """End an exception now; return it. ``reason`` is required.

    Raises :class:`ExceptionNotFound`, :class:`ValidationError` (no reason) or :class:`Conflict` (already revoked
    or expired). The revocation is one conditional UPDATE, so two concurrent revocations record one. Journals
    ``admin:policy_exception:revoked``.
    """
    now = now or utcnow()
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ValidationError("Le motif de la révocation est obligatoire.", field="reason", code="reason_required")
    row = get_exception(session, public_id)
    done = session.execute(
        update(PolicyException)
        .where(PolicyException.id == row.id, PolicyException.revoked_at.is_(None), PolicyException.ends_at > now)
        .values(revoked_at=now, revoked_by=actor[:200], revoke_reason=text[:500])
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Cette dérogation est déjà révoquée." if row.revoked_at is not None
                       else "Cette dérogation a déjà pris fin.", code="exception_closed")
    identity_public_id = _identity_public_id(session, row)
    audit.record(session, tags.POLICY_EXCEPTION_REVOKED, actor=actor,
                 subject=identity_public_id or f"population:{row.population}", client_ip=client_ip,
                 details={**_details(row, identity_public_id), "reason": text, "use_count": row.use_count})
    session.flush()
    return row


def _identity_public_id(session: Session, row: PolicyException) -> str | None:
    if row.identity_id is None:
        return None
    return session.scalar(select(Identity.public_id).where(Identity.id == row.identity_id))


def list_exceptions(session: Session, *, active_only: bool = True, as_of: dt.datetime | None = None,
                    ) -> list[PolicyException]:
    """Return the exceptions, soonest end first. ``active_only``: only those not revoked and not yet ended at
    ``as_of`` (now by default) — in force or scheduled; otherwise every exception ever granted."""
    query = select(PolicyException)
    if active_only:
        as_of = as_of or utcnow()
        query = query.where(PolicyException.revoked_at.is_(None), PolicyException.ends_at > as_of)
    return list(session.scalars(query.order_by(PolicyException.ends_at, PolicyException.id)))


def exception_as_dict(session: Session, row: PolicyException, *, as_of: dt.datetime | None = None) -> dict[str, Any]:
    """Return the exception as JSON-ready values (for ``--json`` and the pages)."""
    as_of = as_of or utcnow()
    identity = session.get(Identity, row.identity_id) if row.identity_id is not None else None
    return {
        "id": row.public_id, "state": row.state(as_of), "class": row.app_class, "target": row.target_kind,
        "identity": identity.public_id if identity else None, "user_name": identity.user_name if identity else None,
        "population": row.population, "units": row.units, "relaxation": json.loads(row.relaxation_json),
        "relaxation_fr": row.relaxation.describe(), "justification": row.justification,
        "starts_at": row.starts_at.isoformat(), "ends_at": row.ends_at.isoformat(),
        "granted_by": row.granted_by, "granted_at": row.granted_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None, "revoked_by": row.revoked_by,
        "revoke_reason": row.revoke_reason, "use_count": row.use_count,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


def active_exceptions_for(session: Session, identity: Identity, app_class: str | None,
                          as_of: dt.datetime | None = None) -> list[ExceptionGrant]:
    """Return the exceptions in force at ``as_of`` for ``identity`` and ``app_class`` (every class when None):
    those granted to the person, and those granted to the person's population (contract type) whose units, when
    given, include one of the person's units. Plain :class:`ExceptionGrant` values, soonest end first: what the
    evaluator receives (:func:`hospiconnect.policies.relaxations.relax`)."""
    as_of = as_of or utcnow()
    query = select(PolicyException).where(
        PolicyException.revoked_at.is_(None), PolicyException.starts_at <= as_of, PolicyException.ends_at > as_of,
        or_(PolicyException.identity_id == identity.id, PolicyException.population == identity.contract_type))
    if app_class is not None:
        query = query.where(PolicyException.app_class == app_class)
    person_units: set[str] | None = None
    grants: list[ExceptionGrant] = []
    for row in session.scalars(query.order_by(PolicyException.ends_at, PolicyException.id)):
        if row.identity_id is None and row.units:
            if person_units is None:
                person_units = set(identity.unit_codes)
            if not person_units & set(row.units):
                continue
        grants.append(row.grant())
    return grants


def record_use(session: Session, exception_id: str, *, identity: Identity, client_ip: str | None = None,
               client_id: str | None = None, now: dt.datetime | None = None) -> bool:
    """Record that ``identity`` was let in thanks to the exception ``exception_id`` (a public id); return True,
    or False when the exception is no longer in force (revoked or ended meanwhile: the caller must not rely on
    it). ``use_count`` and ``last_used_at`` change in one UPDATE (concurrent uses all count). Journals
    ``authz:policy_exception:used`` (the caller commits)."""
    now = now or utcnow()
    row = session.execute(
        update(PolicyException)
        .where(PolicyException.public_id == exception_id, PolicyException.revoked_at.is_(None),
               PolicyException.starts_at <= now, PolicyException.ends_at > now)
        .values(use_count=PolicyException.use_count + 1, last_used_at=now)
        .returning(PolicyException.app_class, PolicyException.use_count, PolicyException.relaxation_json)
        .execution_options(synchronize_session=False)).first()
    if row is None:
        return False
    audit.record(session, tags.POLICY_EXCEPTION_USED, actor=identity.user_name, subject=identity.public_id,
                 client_ip=client_ip, details={"exception": exception_id, "class": row.app_class,
                                               "client": client_id, "use_count": row.use_count,
                                               "relaxation": json.loads(row.relaxation_json)})
    session.flush()
    return True


@dataclasses.dataclass(frozen=True)
class ExpiryReport:
    expired: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"expired": len(self.expired), "ids": self.expired}


def journal_expired(session: Session, now: dt.datetime | None = None, *, actor: str = "system:jobs") -> ExpiryReport:
    """Journal once (``system:policy_exception:expired``) each exception whose end date has passed and that was
    not revoked; return their ids. Safe to run twice and from several hosts: one conditional UPDATE marks them."""
    now = now or utcnow()
    rows = session.execute(
        update(PolicyException)
        .where(PolicyException.ends_at <= now, PolicyException.revoked_at.is_(None),
               PolicyException.expiry_reported_at.is_(None))
        .values(expiry_reported_at=now)
        .returning(PolicyException.public_id, PolicyException.app_class, PolicyException.ends_at,
                   PolicyException.use_count, PolicyException.identity_id, PolicyException.population)
        .execution_options(synchronize_session=False)).all()
    for r in sorted(rows, key=lambda r: r.public_id):
        subject = (session.scalar(select(Identity.public_id).where(Identity.id == r.identity_id))
                   if r.identity_id is not None else f"population:{r.population}")
        audit.record(session, tags.POLICY_EXCEPTION_EXPIRED, actor=actor, subject=subject, outcome="info",
                     details={"exception": r.public_id, "class": r.app_class, "ends_at": r.ends_at.isoformat(),
                              "use_count": r.use_count})
    session.flush()
    return ExpiryReport(sorted(r.public_id for r in rows))


__all__ = [
    "DEFAULT_MAX_DAYS", "ExceptionNotFound", "ExpiryReport", "TARGET_IDENTITY", "TARGET_POPULATION",
    "active_exceptions_for", "exception_as_dict", "get_exception", "grant_exception", "journal_expired",
    "list_exceptions", "record_use", "revoke_exception",
]
