"""Emergency access (bris de glace): a one-time code for a person whose MIE is unavailable.

A night-shift nurse lost her phone: an on-duty officer (directory role ``emergency_officer``, signed in with two
factors — the page's job) issues an **emergency credential** for her: a one-time code valid a few hours
(``Settings.emergency_hours``, 8 by default), usable only by her, only from the networks it names, only for the
classes whose policy settings say ``emergency: true``. Nothing about it is silent: the issue, every use and every
refused attempt are journaled, the person is notified, and the RSSI reviews each credential afterwards
(:func:`list_for_review`, :func:`acknowledge` with a comment).

**What it is worth.** The code is **one factor** (something handed over, like an activation code). It never makes
``mfa`` and never reaches more than ``eidas1``, whether or not the password was also checked: an authentication
with it carries ``amr`` ``["emergency"]`` (code alone) or ``["emergency", "pwd"]`` (password checked first, which
the provider should require), and ``acr`` ``eidas1`` — below the normal level of health data, so relying parties
can flag or restrict it. The evaluator lets such a session into a class only when that class allows emergency
access that day.

**The code.** 20 Crockford base32 characters in groups of 4: a 4-character selector (not secret: it names the
credential in lists and on the phone) and 16 secret characters (80 bits). Stored only as a keyed hash bound to
the person (``InstanceKeys.keyed_hash``), shown once. A wrong code counts one attempt against each live
credential of the person (after ``EMERGENCY_MAX_ATTEMPTS`` they stop working) and against the throttle (kind
``emergency``, per account and per IP). Use is single: one conditional UPDATE decides, so of two concurrent uses
exactly one wins.

Conventions: as :mod:`hospiconnect.authenticators.services` — functions work in the caller's session and the
caller commits; **refusals** (a failed redemption, an issue refused to an officer) are journaled and **committed**
before the exception is raised: call those functions at the start of a transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
from typing import Any, NoReturn, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators.models import EMERGENCY_MAX_ATTEMPTS, EmergencyCredential
from hospiconnect.authenticators.notifications import notify
from hospiconnect.crypto import InstanceKeys, crockford_normalize, crockford_random, group_by_four
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.errors import Conflict, Forbidden, HospiConnectError, NotFound, ValidationError
from hospiconnect.policies import Policy
from hospiconnect.policies.policy import parse_address
from hospiconnect.policies.relaxations import resolve_networks
from hospiconnect.ratelimit import Locked, Throttle, Throttled

#: The directory role of the officers who may issue emergency credentials.
OFFICER_ROLE = "emergency_officer"
#: The ``amr`` value of an authentication with an emergency credential, and the level it gives (one factor).
EMERGENCY_AMR = "emergency"
EMERGENCY_ACR = "eidas1"
DEFAULT_HOURS = 8  # Settings.emergency_hours
#: Where a credential may be used from when the officer names no network: the policy's network set of this name.
DEFAULT_NETWORK = "internal"
MIN_REASON = 10
MIN_COMMENT = 3
THROTTLE_KIND = "emergency"

SELECTOR_CHARS = 4
SECRET_CHARS = 16  # 16 × 5 bits = 80 bits of secret
CODE_CHARS = SELECTOR_CHARS + SECRET_CHARS

STATES = ("live", "used", "revoked", "dead", "expired")


# --- Errors ---------------------------------------------------------------------------------------------


class InvalidEmergencyCode(HospiConnectError):
    """Unknown user, wrong, expired, used, revoked or dead code, inactive person: one message for all."""

    code = "invalid_emergency_code"
    http_status = 401

    def __init__(self) -> None:
        super().__init__("Code d'accès d'urgence incorrect, expiré ou déjà utilisé.")


class EmergencyNetworkRefused(InvalidEmergencyCode):
    """The code is right but the request does not come from the networks the credential names."""

    code = "emergency_network_refused"

    def __init__(self) -> None:
        HospiConnectError.__init__(self, "L'accès d'urgence n'est possible que depuis le réseau de l'établissement "
                                         "indiqué lors de sa délivrance.")


class EmergencyNotAllowed(InvalidEmergencyCode):
    """The code is right but the policy allows emergency access to no class today."""

    code = "emergency_not_allowed"

    def __init__(self) -> None:
        HospiConnectError.__init__(self, "La politique d'accès n'autorise aujourd'hui aucun accès d'urgence.")


class EmergencyCredentialNotFound(NotFound):
    code = "emergency_not_found"

    def __init__(self) -> None:
        super().__init__("Accès d'urgence introuvable.")


@dataclasses.dataclass(frozen=True)
class EmergencyUse:
    """A successful redemption: what the provider puts in the SSO session.

    ``amr``/``acr``: see the module docstring; ``classes``: the classes that allow emergency access at the time of
    use for the person's population (the evaluator checks again at each authorization); ``session_until``: the
    credential's expiry — the session opened with it must not outlive it.
    """

    credential_id: str
    identity_id: int
    identity_public_id: str
    user_name: str
    amr: tuple[str, ...]
    acr: str
    session_until: dt.datetime
    issued_by: str
    classes: tuple[str, ...]


# --- Helpers --------------------------------------------------------------------------------------------


def format_code(raw: str) -> str:
    """Return ``raw`` grouped by 4 with dashes (``ABCD-EFGH-…``)."""
    return group_by_four(raw)


def normalize_code(code: str) -> str | None:
    """Return the canonical characters of a typed code, or None when it cannot be one (case, spaces and dashes
    do not matter; O, I and L are read as 0, 1 and 1)."""
    return crockford_normalize(code, CODE_CHARS)


def _hash_code(keys: InstanceKeys, identity_public_id: str, normalized: str) -> str:
    # Keyed (a stolen database does not let anyone test codes offline) and bound to the person.
    return keys.keyed_hash(f"emergency-credential:{identity_public_id}:{normalized}")


def _live(now: dt.datetime) -> tuple[Any, ...]:
    return (EmergencyCredential.used_at.is_(None), EmergencyCredential.revoked_at.is_(None),
            EmergencyCredential.failed_attempts < EMERGENCY_MAX_ATTEMPTS, EmergencyCredential.expires_at > now)


def emergency_classes(policy: Policy, as_of: dt.datetime, population: str | None) -> tuple[str, ...]:
    """Return the classes whose settings allow emergency access at ``as_of`` for ``population``."""
    return tuple(sorted(name for name in policy.classes
                        if policy.effective(name, as_of, population).settings.emergency))


def amr_for_emergency(*, with_password: bool) -> tuple[str, ...]:
    """Return the ``amr`` of an emergency authentication: never ``mfa`` (the code is one factor)."""
    return (EMERGENCY_AMR, "pwd") if with_password else (EMERGENCY_AMR,)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%d/%m/%Y à %H:%M UTC")


_refuse = audit.refuse  # journal a refusal, commit it and raise (see the module docstring)


# --- Issue ----------------------------------------------------------------------------------------------


def issue_emergency_credential(session: Session, keys: InstanceKeys, policy: Policy, *, identity: Identity,
                               officer: Identity, reason: str, actor: str, hours: int | None = None,
                               max_hours: int = DEFAULT_HOURS, networks: Sequence[str] = (),
                               client_ip: str | None = None,
                               now: dt.datetime | None = None) -> tuple[EmergencyCredential, str]:
    """Issue an emergency credential for ``identity`` on behalf of ``officer``; return ``(row, code)`` — the
    code, grouped by 4, exists in clear only in this return value.

    ``officer`` must be active and hold the role ``emergency_officer``, and may not issue to themselves: those
    refusals are journaled (``admin:emergency:refused``), committed, and raise :class:`Forbidden`. The person must
    be active (:class:`Conflict`, journaled likewise). ``reason`` is required (≥ 10 characters); ``hours``
    (default ``max_hours``, ``Settings.emergency_hours``) between 1 and ``max_hours``; ``networks``: names of the
    policy's network sets or CIDRs (default: the set ``internal``); the policy must allow emergency access to at
    least one class: otherwise :class:`ValidationError`, nothing written. A live credential of the person stops
    working (replaced). Journals ``admin:emergency:issued`` and notifies the person (the caller commits).
    """
    now = now or utcnow()
    subject = identity.public_id

    def refuse(why: str, error: HospiConnectError) -> NoReturn:
        _refuse(session, tags.EMERGENCY_REFUSED, actor=actor, subject=subject, client_ip=client_ip,
                details={"reason": why, "officer": officer.public_id, "action": "issue"}, error=error)

    if OFFICER_ROLE not in officer.role_names:
        refuse("not_officer", Forbidden(f"Seul un agent ayant le rôle « {OFFICER_ROLE} » peut délivrer un accès "
                                        "d'urgence.", code="not_emergency_officer"))
    if officer.status != "active":
        refuse("officer_inactive", Forbidden("Le compte de l'agent n'est pas actif.", code="officer_inactive"))
    if officer.id == identity.id:
        refuse("self_issue", Forbidden("Un agent ne peut pas se délivrer un accès d'urgence à lui-même.",
                                       code="emergency_self_issue"))
    if identity.status != "active":
        refuse(f"identity_{identity.status}", Conflict("Cette personne n'est pas active dans l'annuaire : aucun "
                                                       "accès d'urgence ne peut lui être délivré.",
                                                       code="identity_not_active"))

    errors: dict[str, str] = {}
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        errors["reason"] = f"Le motif est obligatoire (au moins {MIN_REASON} caractères)."
    valid_hours = max_hours if hours is None else hours
    if not 1 <= valid_hours <= max_hours:
        errors["hours"] = f"La durée de validité va de 1 à {max_hours} heures."
    names = tuple(dict.fromkeys(n.strip() for n in networks if n and n.strip()))
    if not names:
        if DEFAULT_NETWORK in policy.network_sets:
            names = (DEFAULT_NETWORK,)
        else:
            errors["networks"] = ("Indiquez depuis quels réseaux l'accès d'urgence est possible (la politique ne "
                                  f"déclare pas de réseau « {DEFAULT_NETWORK} »).")
    resolved, unknown = resolve_networks(policy, names)
    if unknown:
        errors["networks"] = (f"Réseau inconnu « {unknown[0]} » : ni nom déclaré par la politique ("
                              f"{', '.join(sorted(policy.network_sets)) or 'aucun'}), ni CIDR valide.")
    classes = emergency_classes(policy, now, identity.contract_type)
    if not classes:
        errors["policy"] = "La politique d'accès n'autorise l'accès d'urgence pour aucune classe d'applications."
    if errors:
        field = next(iter(errors))
        raise ValidationError(" ".join(errors.values()), field=field, code=f"emergency_{field}", errors=errors)

    replaced = session.execute(
        update(EmergencyCredential).where(EmergencyCredential.identity_id == identity.id, *_live(now))
        .values(revoked_at=now, revoked_by=actor[:200], revoke_reason="remplacé par un nouvel accès d'urgence")
        .returning(EmergencyCredential.public_id).execution_options(synchronize_session=False)).scalars().all()
    raw = crockford_random(CODE_CHARS)
    expires_at = now + dt.timedelta(hours=valid_hours)
    row = EmergencyCredential(identity_id=identity.id, issued_by_identity_id=officer.id, issued_by=actor[:200],
                              issued_at=now, expires_at=expires_at, selector=raw[:SELECTOR_CHARS],
                              code_hash=_hash_code(keys, identity.public_id, raw), failed_attempts=0,
                              networks_json=json.dumps(list(names)),
                              cidrs_json=json.dumps(sorted({str(n) for n in resolved})), reason=text)
    session.add(row)
    session.flush()
    audit.record(session, tags.EMERGENCY_ISSUED, actor=actor, subject=subject, client_ip=client_ip,
                 details={"credential": row.public_id, "selector": row.selector, "officer": officer.public_id,
                          "expires_at": expires_at.isoformat(), "hours": valid_hours, "networks": list(names),
                          "classes": list(classes), "reason": text, "replaced": list(replaced)})
    notify(session, identity, "HospiConnect : accès d'urgence ouvert", (
        f"Bonjour {identity.display_name},\n\n"
        f"Un accès d'urgence a été ouvert pour votre compte {identity.user_name} le {_when(now)} par "
        f"{officer.display_name}, valable jusqu'au {_when(expires_at)} et une seule fois. Il est journalisé et "
        "sera examiné par le responsable de la sécurité du système d'information.\n\n"
        "Si vous n'avez pas demandé cet accès, prévenez sans attendre le support informatique de votre "
        "établissement.\n\n— HospiConnect"))
    return row, format_code(raw)


# --- Use ------------------------------------------------------------------------------------------------


def redeem_emergency_credential(session: Session, keys: InstanceKeys, *, user_name: str, code: str,
                                client_ip: str | None, throttle: Throttle, policy: Policy,
                                with_password: bool = False, now: dt.datetime | None = None) -> EmergencyUse:
    """Spend the emergency credential of ``user_name``; return the :class:`EmergencyUse` for the session.

    ``with_password``: the provider checked the person's password in the same sign-in (``amr`` then has
    ``pwd``). Order: throttle (kind ``emergency``, per account and per IP) → the person → the code (keyed hash
    bound to the person) → used, revoked, dead, expired → the person still active → the client address inside
    the credential's networks → the policy allows emergency access to some class → spend it with one
    conditional UPDATE. Raises :class:`Throttled`/:class:`Locked`, :class:`InvalidEmergencyCode` (one message for
    every reason, so nothing tells whether the account or a credential exists), :class:`EmergencyNetworkRefused`
    or :class:`EmergencyNotAllowed` (the code was right; it stays usable). Every refusal is counted and journaled
    (``authn:emergency:refused`` with the reason) and committed before raising. A success resets the account's
    counter, journals ``authn:emergency:used``, notifies the person (the caller commits).
    """
    now = now or utcnow()
    account = (user_name or "").strip().lower()
    attempted = account[:100] or "anonymous"
    try:
        throttle.check(session, THROTTLE_KIND, account=account or None, ip=client_ip, now=now)
    except Throttled as exc:
        _refuse(session, tags.AUTHN_EMERGENCY_REFUSED, actor=attempted, subject=None, client_ip=client_ip,
                details={"reason": "locked" if isinstance(exc, Locked) else "throttled", "scope": exc.scope,
                         "retry_after": exc.retry_after, "user_name": attempted}, error=exc)

    identity: Identity | None = None

    def fail(why: str, error: HospiConnectError | None = None, row: EmergencyCredential | None = None,
             extra: dict[str, object] | None = None) -> NoReturn:
        outcome = throttle.failure(session, THROTTLE_KIND, account=account or None, ip=client_ip, now=now)
        details: dict[str, object] = {"reason": why, "user_name": attempted, "failures": outcome.account_failures,
                                      **(extra or {})}
        if row is not None:
            details["credential"] = row.public_id
        if outcome.locked_now:
            audit.record(session, tags.AUTHN_ACCOUNT_LOCKED, actor="system:throttle",
                         subject=identity.public_id if identity else None, client_ip=client_ip, outcome="info",
                         details={"factor": THROTTLE_KIND, "failures": outcome.account_failures})
        _refuse(session, tags.AUTHN_EMERGENCY_REFUSED, actor=attempted,
                subject=identity.public_id if identity else None, client_ip=client_ip, details=details,
                error=error or InvalidEmergencyCode())

    normalized = normalize_code(code)
    identity = (session.scalar(select(Identity).where(Identity.user_name == account).options(*ONLY_IDENTITY))
                if account else None)
    if identity is None:
        fail("unknown_user")
    assert identity is not None
    if normalized is None:
        fail("invalid_format")
    assert normalized is not None
    row = session.scalar(select(EmergencyCredential)
                         .where(EmergencyCredential.identity_id == identity.id,
                                EmergencyCredential.code_hash == _hash_code(keys, identity.public_id, normalized))
                         .execution_options(populate_existing=True))
    if row is None:
        # One UPDATE counts the attempt against each live credential of the person (concurrent guesses each count).
        counted = session.execute(
            update(EmergencyCredential).where(EmergencyCredential.identity_id == identity.id, *_live(now))
            .values(failed_attempts=EmergencyCredential.failed_attempts + 1)
            .returning(EmergencyCredential.public_id, EmergencyCredential.failed_attempts)
            .execution_options(synchronize_session=False)).all()
        fail("wrong", extra={"counted_on": {r.public_id: r.failed_attempts for r in counted}})
    assert row is not None
    if row.used_at is not None:
        fail("reused", row=row)
    if row.revoked_at is not None:
        fail("revoked", row=row)
    if row.failed_attempts >= EMERGENCY_MAX_ATTEMPTS:
        fail("dead", row=row)
    if row.expires_at <= now:
        fail("expired", row=row)
    if identity.status != "active":
        fail(f"identity_{identity.status}", row=row)
    address = parse_address(client_ip)
    cidrs = [ipaddress.ip_network(c) for c in row.cidrs]
    if address is None or not any(address.version == net.version and address in net for net in cidrs):
        fail("network_refused" if address is not None else "network_unknown", EmergencyNetworkRefused(), row,
             {"networks": row.networks})
    classes = emergency_classes(policy, now, identity.contract_type)
    if not classes:
        fail("no_emergency_class", EmergencyNotAllowed(), row)
    spent = session.execute(
        update(EmergencyCredential)
        .where(EmergencyCredential.id == row.id, *_live(now))
        .values(used_at=now, used_from_ip=(client_ip or "")[:45] or None)
        .execution_options(synchronize_session=False))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        # Another request changed it since we read it: say what it did.
        session.refresh(row)
        fail({"used": "reused"}.get(row.state(now), row.state(now)), row=row)
    session.refresh(row)
    throttle.success(session, THROTTLE_KIND, account=account, ip=client_ip)
    officer_public_id = session.scalar(select(Identity.public_id).where(Identity.id == row.issued_by_identity_id))
    amr = amr_for_emergency(with_password=with_password)
    audit.record(session, tags.AUTHN_EMERGENCY_USED, actor=identity.user_name, subject=identity.public_id,
                 client_ip=client_ip, details={"credential": row.public_id, "officer": officer_public_id,
                                               "factor": "emergency", "amr": list(amr), "acr": EMERGENCY_ACR,
                                               "classes": list(classes), "expires_at": row.expires_at.isoformat()})
    notify(session, identity, "HospiConnect : accès d'urgence utilisé", (
        f"Bonjour {identity.display_name},\n\n"
        f"L'accès d'urgence ouvert pour votre compte {identity.user_name} a été utilisé le {_when(now)} "
        f"depuis l'adresse {client_ip}. La session prendra fin au plus tard le {_when(row.expires_at)}.\n\n"
        "Si ce n'était pas vous, prévenez sans attendre le support informatique de votre établissement.\n\n"
        "— HospiConnect"))
    session.flush()
    return EmergencyUse(credential_id=row.public_id, identity_id=identity.id, identity_public_id=identity.public_id,
                        user_name=identity.user_name, amr=amr, acr=EMERGENCY_ACR, session_until=row.expires_at,
                        issued_by=officer_public_id or "", classes=classes)


def refuse_without_password(session: Session, *, user_name: str, client_ip: str | None) -> NoReturn:
    """Journal (``authn:emergency:refused``, reason ``password_missing``), commit and raise
    :class:`InvalidEmergencyCode`: the person has a password and the sign-in did not give it. The credential is
    left untouched (it was not tried)."""
    attempted = (user_name or "").strip().lower()[:100] or "anonymous"
    _refuse(session, tags.AUTHN_EMERGENCY_REFUSED, actor=attempted, subject=None, client_ip=client_ip,
            details={"reason": "password_missing", "user_name": attempted}, error=InvalidEmergencyCode())


# --- Revocation and review ------------------------------------------------------------------------------


def get_credential(session: Session, public_id: str) -> EmergencyCredential:
    """Return the credential ``public_id``; raises :class:`EmergencyCredentialNotFound`."""
    row = session.scalar(select(EmergencyCredential)
                         .where(EmergencyCredential.public_id == (public_id or "").strip()))
    if row is None:
        raise EmergencyCredentialNotFound()
    return row


def revoke(session: Session, public_id: str, *, actor: str, reason: str, client_ip: str | None = None,
           now: dt.datetime | None = None) -> EmergencyCredential:
    """Stop a live credential now; return it. ``reason`` is required (:class:`ValidationError`); a credential
    that is no longer live raises :class:`Conflict`. One conditional UPDATE (a use racing with the revocation:
    one of them wins). Journals ``admin:emergency:revoked``."""
    now = now or utcnow()
    text = (reason or "").strip()
    if len(text) < MIN_COMMENT:
        raise ValidationError("Le motif de la révocation est obligatoire.", field="reason", code="reason_required")
    row = get_credential(session, public_id)
    done = session.execute(
        update(EmergencyCredential).where(EmergencyCredential.id == row.id, *_live(now))
        .values(revoked_at=now, revoked_by=actor[:200], revoke_reason=text[:500])
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"Cet accès d'urgence n'est plus utilisable ({STATE_LABELS_FR[row.state(now)]}).",
                       code="emergency_closed")
    audit.record(session, tags.EMERGENCY_REVOKED, actor=actor, subject=_public_id(session, row.identity_id),
                 client_ip=client_ip, details={"credential": row.public_id, "reason": text})
    session.flush()
    return row


def list_for_review(session: Session, *, reviewed: bool | None = False) -> list[EmergencyCredential]:
    """Return the emergency credentials, oldest first: not yet reviewed (default), reviewed (True) or all
    (None). Every issued credential is an emergency access to review, used or not."""
    query = select(EmergencyCredential)
    if reviewed is not None:
        query = query.where(EmergencyCredential.reviewed_at.is_not(None) if reviewed
                            else EmergencyCredential.reviewed_at.is_(None))
    return list(session.scalars(query.order_by(EmergencyCredential.issued_at, EmergencyCredential.id)))


def acknowledge(session: Session, public_id: str, *, reviewer: Identity, comment: str, actor: str,
                client_ip: str | None = None, now: dt.datetime | None = None) -> EmergencyCredential:
    """Record the RSSI's review of a credential with a ``comment`` (required); return it.

    Raises :class:`ValidationError` (no comment), :class:`Conflict` (already reviewed, or still live: review it
    once used, revoked or expired, so that no use escapes review) and :class:`Forbidden` when ``reviewer`` is the
    person or the officer who issued it (journaled ``admin:emergency:refused`` and committed). One conditional
    UPDATE. Journals ``admin:emergency:reviewed``.
    """
    now = now or utcnow()
    text = (comment or "").strip()
    if len(text) < MIN_COMMENT:
        raise ValidationError("Un commentaire est obligatoire pour valider la revue d'un accès d'urgence.",
                              field="comment", code="comment_required")
    row = get_credential(session, public_id)
    if reviewer.id in (row.identity_id, row.issued_by_identity_id):
        _refuse(session, tags.EMERGENCY_REFUSED, actor=actor, subject=_public_id(session, row.identity_id),
                client_ip=client_ip, details={"reason": "reviewer_involved", "action": "review",
                                              "credential": row.public_id, "reviewer": reviewer.public_id},
                error=Forbidden("La revue d'un accès d'urgence revient à une autre personne que son bénéficiaire "
                                "et l'agent qui l'a délivré.", code="reviewer_involved"))
    if row.reviewed_at is not None:
        raise Conflict("Cet accès d'urgence a déjà été examiné.", code="emergency_reviewed")
    if row.state(now) == "live":
        raise Conflict("Cet accès d'urgence est encore utilisable : examinez-le une fois utilisé, expiré ou révoqué.",
                       code="emergency_live")
    done = session.execute(
        update(EmergencyCredential).where(EmergencyCredential.id == row.id, EmergencyCredential.reviewed_at.is_(None))
        .values(reviewed_at=now, reviewed_by_identity_id=reviewer.id, review_comment=text)
        .execution_options(synchronize_session=False))
    session.refresh(row)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Cet accès d'urgence a déjà été examiné.", code="emergency_reviewed")
    audit.record(session, tags.EMERGENCY_REVIEWED, actor=actor, subject=_public_id(session, row.identity_id),
                 client_ip=client_ip, details={"credential": row.public_id, "reviewer": reviewer.public_id,
                                               "state": row.state(now), "comment": text})
    session.flush()
    return row


STATE_LABELS_FR = {"live": "utilisable", "used": "utilisé", "revoked": "révoqué", "dead": "bloqué après des codes "
                   "erronés", "expired": "expiré"}


def _public_id(session: Session, identity_id: int | None) -> str | None:
    if identity_id is None:
        return None
    return session.scalar(select(Identity.public_id).where(Identity.id == identity_id))


def credential_as_dict(session: Session, row: EmergencyCredential, *, as_of: dt.datetime | None = None
                       ) -> dict[str, Any]:
    """Return the credential as JSON-ready values (never the code)."""
    as_of = as_of or utcnow()
    people = {i.id: i for i in session.scalars(select(Identity).where(Identity.id.in_(
        [x for x in (row.identity_id, row.issued_by_identity_id, row.reviewed_by_identity_id) if x is not None]))
        .options(*ONLY_IDENTITY))}

    def who(identity_id: int | None) -> dict[str, str] | None:
        person = people.get(identity_id) if identity_id is not None else None
        return {"id": person.public_id, "user_name": person.user_name} if person else None

    iso = (lambda v: v.isoformat() if v else None)  # noqa: E731
    return {
        "id": row.public_id, "selector": row.selector, "state": row.state(as_of), "person": who(row.identity_id),
        "officer": who(row.issued_by_identity_id), "issued_by": row.issued_by, "issued_at": iso(row.issued_at),
        "expires_at": iso(row.expires_at), "networks": row.networks, "reason": row.reason,
        "failed_attempts": row.failed_attempts, "used_at": iso(row.used_at), "used_from_ip": row.used_from_ip,
        "revoked_at": iso(row.revoked_at), "revoked_by": row.revoked_by, "revoke_reason": row.revoke_reason,
        "reviewed_at": iso(row.reviewed_at), "reviewer": who(row.reviewed_by_identity_id),
        "review_comment": row.review_comment,
    }
