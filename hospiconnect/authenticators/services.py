"""MIE services: lifecycle, password, TOTP, recovery codes and re-encryption of secrets.

This is the contract the login flow, the self-service pages, enrollment and the CLI call. Conventions:

* Every function works in the caller's session, journals what it decides in that same session and
  queues the person's notification there (outbox): the caller commits once, and a rollback undoes all.
* **Exception**: a failed authentication attempt (:func:`verify_password`, :func:`verify_totp`,
  :func:`use_recovery_code`) must be remembered whatever the caller does next, so the failure — throttle
  counter and journal entry — is **committed** before the exception is raised. Call these functions at
  the start of a transaction, with nothing else pending in the session.
* Binding a new MIE requires an authenticated session at the level the MIE will be used at, or a fresh
  identity check (SECURITY.md item 17): that is the caller's job; these functions do not see the session.
* No secret (password, seed, code, recovery code) is ever logged, journaled or put in a notification.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from typing import NoReturn

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, lazyload

from hospiconnect import crypto
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import password as pw
from hospiconnect.authenticators import recovery
from hospiconnect.authenticators import totp
from hospiconnect.authenticators.interfaces import (
    BurnedRecoveryCode,
    ClockDrift,
    InvalidCode,
    InvalidCredentials,
    InvalidLabel,
    InvalidMieTransition,
    InvalidRecoveryCode,
    LastSecondFactor,
    MieNotFound,
    NotEnrolled,
    PasswordRejected,
    ReplayedCode,
)
from hospiconnect.authenticators.models import (
    MIE_TYPES,
    Mie,
    MieTransition,
    PasswordCredential,
    RecoveryCode,
    TotpCredential,
)
from hospiconnect.authenticators.notifications import notify_event
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.errors import HospiConnectError
from hospiconnect.ratelimit import Locked, Throttle, Throttled

LABEL_MAX = 60
SECOND_FACTOR_TYPES = ("totp", "webauthn")
DEFAULT_LABELS = {"password": "Mot de passe", "totp": "Application d'authentification",
                  "webauthn": "Clé de sécurité", "cps": "Carte CPS", "e-cps": "Application e-CPS"}
# The national MIE's amr are what Pro Santé Connect reports at each sign-in; these are the defaults
# (hospiconnect.devtools.psc_simulator.AMR_BY_MIE, DOMAIN.md).
DEFAULT_AMR = {"password": ["pwd"], "totp": ["otp"], "webauthn": ["hwk"], "cps": ["hwk", "mfa", "pin"],
               "e-cps": ["mfa", "otp", "pwd"]}

# Allowed status changes and the action name used in the journal ("mie:<type>:<action>").
TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "active"): "activated",
    ("active", "suspended"): "suspended",
    ("suspended", "active"): "reactivated",
    ("pending", "revoked"): "revoked",
    ("active", "revoked"): "revoked",
    ("suspended", "revoked"): "revoked",
}
_STATUS_FR = {"pending": "en attente", "active": "actif", "suspended": "suspendu", "revoked": "révoqué"}


# --- MIE lifecycle --------------------------------------------------------------------------------------


def validate_label(label: str) -> str:
    """Return ``label`` cleaned (NFC, trimmed); raise :class:`InvalidLabel` unless it has 1 to 60 printable
    characters."""
    label = unicodedata.normalize("NFC", label or "").strip()
    if not label:
        raise InvalidLabel("Donnez un nom à ce moyen d'identification.")
    if len(label) > LABEL_MAX:
        raise InvalidLabel(f"Le nom ne doit pas dépasser {LABEL_MAX} caractères.")
    # Category C covers control, format (e.g. bidirectional overrides), unassigned and private-use characters:
    # none belongs in a name shown on officers' screens.
    if any(unicodedata.category(ch).startswith("C") for ch in label):
        raise InvalidLabel("Le nom contient des caractères non autorisés.")
    return label


def _lock_identity(session: Session, identity_id: int) -> None:
    """Serialise changes to one person's MIE: a no-op UPDATE takes the row lock on PostgreSQL and the write
    lock on SQLite, so a concurrent request waits instead of deciding on a stale count."""
    session.execute(update(Identity).where(Identity.id == identity_id).values(version=Identity.version)
                    .execution_options(synchronize_session=False))


def _identity_of(session: Session, mie: Mie) -> Identity:
    identity = session.get(Identity, mie.identity_id)
    assert identity is not None
    return identity


def create_mie(session: Session, identity: Identity, mie_type: str, *, actor: str, label: str = "",
               amr: list[str] | None = None, client_ip: str | None = None, notify: bool = True) -> Mie:
    """Create a ``pending`` MIE of ``mie_type`` (password, totp, webauthn) for ``identity``; return it.

    Records the first transition, journals ``mie:<type>:created`` and notifies the person. Raises
    :class:`InvalidLabel` for a bad label and ``ValueError`` for an unknown type.
    """
    if mie_type not in MIE_TYPES:
        raise ValueError(f"unknown MIE type {mie_type!r}")
    now = utcnow()
    mie = Mie(public_id=str(uuid.uuid4()), identity_id=identity.id, type=mie_type,
              label=validate_label(label or DEFAULT_LABELS[mie_type]), status="pending", created_at=now)
    mie.amr = amr if amr is not None else DEFAULT_AMR[mie_type]
    session.add(mie)
    session.flush()
    session.add(MieTransition(mie_id=mie.id, from_status=None, to_status="pending", at=now, actor=actor[:200],
                              reason="création"))
    audit.record(session, tags.mie_tag(mie_type, "created"), actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"mie": mie.public_id, "type": mie_type, "label": mie.label})
    if notify:
        notify_event(session, identity, "created", kind=mie_type, label=mie.label)
    session.flush()
    return mie


def transition(session: Session, mie: Mie, to_status: str, *, actor: str, reason: str = "",
               client_ip: str | None = None) -> Mie:
    """Move ``mie`` to ``to_status`` and return it.

    Allowed: pending→active, active→suspended, suspended→active, and any status→revoked (revoked is final).
    Writes a :class:`MieTransition`, journals ``mie:<type>:<action>`` and notifies the person. Revoking a
    password or TOTP MIE also erases its secret, which can no longer serve. Raises
    :class:`InvalidMieTransition` for any other change.
    """
    action = TRANSITIONS.get((mie.status, to_status))
    if action is None:
        raise InvalidMieTransition(
            f"Impossible de passer ce moyen d'identification de « {_STATUS_FR.get(mie.status, mie.status)} » "
            f"à « {_STATUS_FR.get(to_status, to_status)} ».")
    now = utcnow()
    from_status = mie.status
    mie.status = to_status
    if to_status == "active" and mie.activated_at is None:
        mie.activated_at = now
    if to_status == "revoked":
        mie.revoked_at = now
        _erase_secret(session, mie)
    session.add(MieTransition(mie_id=mie.id, from_status=from_status, to_status=to_status, at=now,
                              actor=actor[:200], reason=(reason or "")[:300]))
    identity = _identity_of(session, mie)
    audit.record(session, tags.mie_tag(mie.type, action), actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"mie": mie.public_id, "type": mie.type, "from": from_status,
                                               "to": to_status, "reason": reason})
    notify_event(session, identity, action, kind=mie.type, label=mie.label)
    session.flush()
    return mie


def _erase_secret(session: Session, mie: Mie) -> None:
    if mie.type == "totp":
        session.execute(update(TotpCredential).where(TotpCredential.mie_id == mie.id).values(secret_enc="")
                        .execution_options(synchronize_session=False))
    elif mie.type == "password":
        session.execute(update(PasswordCredential).where(PasswordCredential.mie_id == mie.id).values(hash="")
                        .execution_options(synchronize_session=False))


def rename(session: Session, mie: Mie, label: str, *, actor: str, client_ip: str | None = None) -> Mie:
    """Give ``mie`` a new label (1–60 printable characters); return it.

    Raises :class:`InvalidLabel` for a bad label and :class:`InvalidMieTransition` for a revoked MIE.
    """
    new_label = validate_label(label)
    if mie.status == "revoked":
        raise InvalidMieTransition("Un moyen d'identification retiré ne peut plus être renommé.")
    if new_label == mie.label:
        return mie
    old = mie.label
    mie.label = new_label
    identity = _identity_of(session, mie)
    audit.record(session, tags.mie_tag(mie.type, "renamed"), actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"mie": mie.public_id, "type": mie.type, "from": old, "to": new_label})
    notify_event(session, identity, "renamed", kind=mie.type, label=new_label)
    session.flush()
    return mie


def remove(session: Session, mie: Mie, *, actor: str, allow_last: bool = False, reason: str = "",
           client_ip: str | None = None) -> Mie:
    """Revoke ``mie`` at the person's or an officer's request; return it.

    Raises :class:`LastSecondFactor` when ``mie`` is the person's last active second factor (TOTP or
    WebAuthn), unless ``allow_last`` (officers, e.g. a lost phone before a new identity check), and
    :class:`InvalidMieTransition` when it is already revoked.
    """
    if mie.status == "revoked":
        raise InvalidMieTransition("Ce moyen d'identification est déjà retiré.")
    _lock_identity(session, mie.identity_id)
    if mie.type in SECOND_FACTOR_TYPES and mie.status == "active" and not allow_last:
        others = session.scalar(
            select(func.count()).select_from(Mie).where(
                Mie.identity_id == mie.identity_id, Mie.id != mie.id, Mie.status == "active",
                Mie.type.in_(SECOND_FACTOR_TYPES)))
        if not others:
            raise LastSecondFactor()
    return transition(session, mie, "revoked", actor=actor, reason=reason or "retrait", client_ip=client_ip)


def list_mie(session: Session, identity: Identity, *, include_revoked: bool = True) -> list[Mie]:
    """Return every MIE of ``identity`` (oldest first), revoked ones included unless asked otherwise."""
    stmt = select(Mie).where(Mie.identity_id == identity.id).order_by(Mie.created_at, Mie.id)
    if not include_revoked:
        stmt = stmt.where(Mie.status != "revoked")
    return list(session.scalars(stmt))


def active_mie_for(session: Session, identity: Identity, mie_type: str | None = None) -> list[Mie]:
    """Return the active MIE of ``identity`` (oldest first), optionally only those of ``mie_type``."""
    # The transitions load only if read: the sign-in pages call this at every step and never do.
    stmt = (select(Mie).where(Mie.identity_id == identity.id, Mie.status == "active")
            .order_by(Mie.created_at, Mie.id).options(lazyload(Mie.transitions)))
    if mie_type is not None:
        stmt = stmt.where(Mie.type == mie_type)
    return list(session.scalars(stmt))


def has_second_factor(session: Session, identity: Identity) -> bool:
    """Return True when ``identity`` has at least one active TOTP or WebAuthn MIE."""
    return any(m.type in SECOND_FACTOR_TYPES for m in active_mie_for(session, identity))


def get_mie(session: Session, identity: Identity, public_id: str) -> Mie:
    """Return the MIE ``public_id`` of ``identity``; raise :class:`MieNotFound` when it does not exist or
    belongs to someone else (the two cases are indistinguishable on purpose)."""
    mie = session.scalar(select(Mie).where(Mie.public_id == str(public_id)[:36]))
    if mie is None or mie.identity_id != identity.id:
        raise MieNotFound()
    return mie


# --- Failed attempts ------------------------------------------------------------------------------------


def _record_failure(session: Session, throttle: Throttle, kind: str, *, account: str, client_ip: str | None,
                    tag: str, actor: str, subject: str | None, details: dict[str, object],
                    error: HospiConnectError, now: dt.datetime | None = None) -> NoReturn:
    """Count a failed attempt, journal it, commit, then raise ``error`` (see the module docstring)."""
    outcome = throttle.failure(session, kind, account=account, ip=client_ip, now=now)
    audit.record(session, tag, actor=actor, subject=subject, client_ip=client_ip, outcome="failure",
                 details={**details, "factor": kind, "failures": outcome.account_failures})
    if outcome.locked_now:
        audit.record(session, tags.AUTHN_ACCOUNT_LOCKED, actor="system:throttle", subject=subject,
                     client_ip=client_ip, outcome="info",
                     details={"factor": kind, "failures": outcome.account_failures,
                              "minutes": throttle.policy.lockout_seconds // 60})
    session.commit()
    raise error


def _record_refusal(session: Session, kind: str, *, client_ip: str | None, tag: str, actor: str,
                    subject: str | None, exc: Throttled) -> None:
    """Journal (and commit) an attempt refused by the throttle before any verification."""
    audit.record(session, tag, actor=actor, subject=subject, client_ip=client_ip, outcome="refused",
                 details={"factor": kind, "reason": "locked" if isinstance(exc, Locked) else "throttled",
                          "scope": exc.scope, "retry_after": exc.retry_after})
    session.commit()


# --- Password -------------------------------------------------------------------------------------------


def check_password_policy(identity: Identity | None, password: str, *, establishment_name: str) -> None:
    """Raise :class:`PasswordRejected` (every reason code and French message) when ``password`` breaks the
    policy for this person; return None when it is acceptable."""
    violations = pw.policy_violations(password, names=pw.person_names(identity) if identity else (),
                                      establishment_name=establishment_name)
    if violations:
        raise PasswordRejected([v.reason for v in violations], [v.message for v in violations])


def _password_mie(session: Session, identity_id: int) -> tuple[Mie, PasswordCredential] | None:
    row = session.execute(
        select(Mie, PasswordCredential).join(PasswordCredential, PasswordCredential.mie_id == Mie.id)
        .where(Mie.identity_id == identity_id, Mie.type == "password", Mie.status != "revoked")
        .order_by(Mie.id.desc()).limit(1)
        .options(lazyload(Mie.transitions))  # not needed to log in: spare the extra query
    ).first()
    return (row[0], row[1]) if row else None


def set_password(session: Session, identity: Identity, password: str, *, actor: str, establishment_name: str,
                 client_ip: str | None = None) -> Mie:
    """Set the person's password and return the password MIE.

    The first password creates an active password MIE; later ones replace the hash in place (the old hash
    is gone) and keep the MIE's status, so a suspended password stays suspended. Journals
    ``mie:password:changed`` and notifies the person. Raises :class:`PasswordRejected` when the policy
    refuses the password (nothing is changed).
    """
    check_password_policy(identity, password, establishment_name=establishment_name)
    new_hash = pw.hash_password(password)
    _lock_identity(session, identity.id)
    now = utcnow()
    found = _password_mie(session, identity.id)
    if found is None:
        mie = create_mie(session, identity, "password", actor=actor, client_ip=client_ip, notify=False)
        session.add(PasswordCredential(mie_id=mie.id, hash=new_hash, changed_at=now))
        transition(session, mie, "active", actor=actor, reason="mot de passe défini", client_ip=client_ip)
        first = True
    else:
        mie, credential = found
        credential.hash = new_hash
        credential.changed_at = now
        first = False
    audit.record(session, tags.MIE_PASSWORD_CHANGED, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details={"mie": mie.public_id, "first": first})
    if not first:
        notify_event(session, identity, "password_changed")
    session.flush()
    return mie


def has_active_password(session: Session, user_name: str) -> bool:
    """Return True when ``user_name`` names a person with a password that is not revoked: a sign-in that must
    not go on without it (an emergency credential stands in for the unavailable MIE, not for the password).
    An unknown user name gives False."""
    account = user_name.strip().lower()
    identity_id = session.scalar(select(Identity.id).where(Identity.user_name == account)) if account else None
    return identity_id is not None and _password_mie(session, identity_id) is not None


def verify_password(session: Session, user_name: str, password: str, *, client_ip: str | None,
                    throttle: Throttle) -> tuple[Identity, Mie]:
    """Check a user name and password; return ``(identity, password MIE)`` on success.

    Raises :class:`InvalidCredentials` — one generic message — for an unknown user, a wrong password, an
    identity that is not active, a password MIE that is not active, and a locked account; raises
    :class:`Throttled` when attempts come too fast (per account or per IP). Every case costs one argon2
    verification, so timing does not tell accounts apart. Failures are counted and journaled
    (``authn:password:failure``, reason in the details) and committed before raising; on success the
    account counter is reset, the hash is upgraded when the parameters changed, ``last_used_at`` is set and
    ``authn:password:success`` is journaled (the caller commits).
    """
    account = user_name.strip().lower()
    attempted = account[:100]
    try:
        throttle.check(session, "password", account=account, ip=client_ip)
    except Locked as exc:
        pw.verify_dummy(password)
        _record_refusal(session, "password", client_ip=client_ip, tag=tags.AUTHN_PASSWORD_FAILURE,
                        actor=attempted or "anonymous", subject=None, exc=exc)
        raise InvalidCredentials() from None
    except Throttled as exc:
        _record_refusal(session, "password", client_ip=client_ip, tag=tags.AUTHN_PASSWORD_FAILURE,
                        actor=attempted or "anonymous", subject=None, exc=exc)
        raise

    identity = (session.scalar(select(Identity).where(Identity.user_name == account).options(*ONLY_IDENTITY))
                if account else None)
    found = _password_mie(session, identity.id) if identity is not None else None
    reason: str | None = None
    verification = pw.Verification(False)
    if found is None or not found[1].hash:
        pw.verify_dummy(password)
        reason = "unknown_user" if identity is None else "no_password"
    else:
        verification = pw.verify(found[1].hash, password)
        if not verification.ok:
            reason = "wrong_password"
        elif identity is not None and identity.status != "active":
            reason = f"identity_{identity.status}"
        elif found[0].status != "active":
            reason = f"mie_{found[0].status}"
    if reason is not None or identity is None or found is None:
        _record_failure(session, throttle, "password", account=account, client_ip=client_ip,
                        tag=tags.AUTHN_PASSWORD_FAILURE, actor=attempted or "anonymous",
                        subject=identity.public_id if identity is not None else None,
                        details={"reason": reason, "user_name": attempted}, error=InvalidCredentials())

    mie, credential = found
    throttle.success(session, "password", account=account, ip=client_ip)
    now = utcnow()
    if verification.new_hash:
        credential.hash = verification.new_hash
        credential.changed_at = now
    mie.last_used_at = now
    audit.record(session, tags.AUTHN_PASSWORD_SUCCESS, actor=identity.user_name, subject=identity.public_id,
                 client_ip=client_ip, details={"mie": mie.public_id, "factor": "password",
                                               "rehashed": bool(verification.new_hash)})
    session.flush()
    return identity, mie


# --- TOTP -----------------------------------------------------------------------------------------------


def _totp_aad(mie_id: int) -> bytes:
    # Binds the ciphertext to its row: a seed copied onto another MIE no longer decrypts.
    return f"totp:{mie_id}".encode()


def _seed_of(keys: InstanceKeys, credential: TotpCredential) -> str:
    return crypto.decrypt(keys, credential.secret_enc, _totp_aad(credential.mie_id)).decode("ascii")


def _consume_step(session: Session, mie_id: int, step: int) -> bool:
    """Record ``step`` as used; return False when it (or a later one) already was — one conditional UPDATE
    whose row count decides, so two concurrent requests with the same code cannot both succeed."""
    result = session.execute(
        update(TotpCredential)
        .where(TotpCredential.mie_id == mie_id,
               or_(TotpCredential.last_step.is_(None), TotpCredential.last_step < step))
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def begin_totp(session: Session, identity: Identity, *, label: str, actor: str, keys: InstanceKeys,
               issuer: str, client_ip: str | None = None) -> tuple[Mie, str, str]:
    """Start binding an authenticator application; return ``(pending MIE, otpauth URI, inline SVG QR code)``.

    The seed (160 random bits) is stored encrypted and stays unusable until :func:`confirm_totp` proves the
    person holds it. The URI and QR code contain the seed: show them once, never log them. Raises
    :class:`InvalidLabel` for a bad label.
    """
    mie = create_mie(session, identity, "totp", actor=actor, label=label, client_ip=client_ip)
    seed = totp.new_seed()
    session.add(TotpCredential(mie_id=mie.id, secret_enc=crypto.encrypt(keys, seed.encode("ascii"),
                                                                        _totp_aad(mie.id)), last_step=None))
    session.flush()
    uri = totp.provisioning_uri(seed, account=identity.user_name, issuer=issuer)
    return mie, uri, totp.qr_svg(uri)


def confirm_totp(session: Session, identity: Identity, mie_public_id: str, code: str, *, actor: str,
                 keys: InstanceKeys, now: dt.datetime | None = None, client_ip: str | None = None) -> Mie:
    """Activate the pending TOTP MIE ``mie_public_id`` when ``code`` is valid now; return it.

    The code's time step is recorded as used, so the same code cannot then log in. Raises
    :class:`MieNotFound` (unknown, someone else's, or not TOTP), :class:`InvalidMieTransition` (not
    pending), :class:`ClockDrift`, :class:`ReplayedCode` or :class:`InvalidCode`. Nothing is committed.
    """
    mie = get_mie(session, identity, mie_public_id)
    if mie.type != "totp":
        raise MieNotFound()
    if mie.status != "pending":
        raise InvalidMieTransition("Cette application d'authentification est déjà activée ou a été retirée.")
    credential = session.get(TotpCredential, mie.id)
    if credential is None or not credential.secret_enc:
        raise MieNotFound()
    result = totp.check(_seed_of(keys, credential), code, now or utcnow(), credential.last_step)
    if result.status == "clock_drift":
        raise ClockDrift()
    if result.status == "replayed":
        raise ReplayedCode()
    if not result.accepted or result.step is None:
        raise InvalidCode("Le code doit comporter 6 chiffres." if result.status == "invalid_format"
                          else "Code incorrect : saisissez le code affiché par votre application.")
    if not _consume_step(session, mie.id, result.step):
        raise ReplayedCode()
    return transition(session, mie, "active", actor=actor, reason="code de confirmation vérifié",
                      client_ip=client_ip)


def verify_totp(session: Session, identity: Identity, code: str, *, client_ip: str | None, throttle: Throttle,
                keys: InstanceKeys, now: dt.datetime | None = None) -> Mie:
    """Check a TOTP code as second factor; return the MIE that accepted it.

    Order (as in well-kept account systems): throttle → no active TOTP is a failure → verify against the
    server clock (±1 step) → consume the time step with one conditional UPDATE. Raises :class:`Locked` or
    :class:`Throttled` (refused before checking), :class:`NotEnrolled`, :class:`ReplayedCode`,
    :class:`ClockDrift` ("vérifiez l'heure de votre téléphone") or :class:`InvalidCode`. Every failure is
    counted and journaled (``authn:totp:failure``, reason invalid | replayed | clock_drift | not_enrolled)
    and committed before raising; a success resets the account counter and journals
    ``authn:totp:success`` (the caller commits).
    """
    now = now or utcnow()
    account = identity.user_name
    try:
        throttle.check(session, "totp", account=account, ip=client_ip, now=now)
    except Throttled as exc:
        _record_refusal(session, "totp", client_ip=client_ip, tag=tags.AUTHN_TOTP_FAILURE, actor=account,
                        subject=identity.public_id, exc=exc)
        raise

    def fail(reason: str, error: HospiConnectError, mie: Mie | None = None) -> NoReturn:
        details: dict[str, object] = {"reason": reason}
        if mie is not None:
            details["mie"] = mie.public_id
        _record_failure(session, throttle, "totp", account=account, client_ip=client_ip,
                        tag=tags.AUTHN_TOTP_FAILURE, actor=account, subject=identity.public_id,
                        details=details, error=error, now=now)

    candidates = session.execute(
        select(Mie, TotpCredential).join(TotpCredential, TotpCredential.mie_id == Mie.id)
        .where(Mie.identity_id == identity.id, Mie.type == "totp", Mie.status == "active")
        .order_by(Mie.id)
        .options(lazyload(Mie.transitions))  # not needed to log in: spare the extra query
    ).all()
    if not candidates or identity.status != "active":
        fail("not_enrolled" if identity.status == "active" else f"identity_{identity.status}",
             NotEnrolled("Aucune application d'authentification n'est active sur votre compte."))

    worst: tuple[str, Mie | None] = ("invalid", None)
    for mie, credential in candidates:
        result = totp.check(_seed_of(keys, credential), code, now, credential.last_step)
        if result.accepted and result.step is not None:
            if _consume_step(session, mie.id, result.step):
                throttle.success(session, "totp", account=account, ip=client_ip)
                mie.last_used_at = utcnow()
                audit.record(session, tags.AUTHN_TOTP_SUCCESS, actor=account, subject=identity.public_id,
                             client_ip=client_ip, details={"mie": mie.public_id, "factor": "totp"})
                session.flush()
                return mie
            result = totp.TotpCheck("replayed", result.step)  # a concurrent request used this step first
        if result.status == "replayed":
            worst = ("replayed", mie)
        elif result.status == "clock_drift" and worst[0] == "invalid":
            worst = ("clock_drift", mie)
        elif result.status == "invalid_format":
            worst = ("invalid_format", None)
            break
    reason, mie = worst
    if reason == "replayed":
        fail("replayed", ReplayedCode(), mie)
    if reason == "clock_drift":
        fail("clock_drift", ClockDrift(), mie)
    if reason == "invalid_format":
        fail("invalid", InvalidCode("Le code doit comporter 6 chiffres."))
    fail("invalid", InvalidCode())


# --- Recovery codes -------------------------------------------------------------------------------------


def generate_recovery_codes(session: Session, identity: Identity, *, actor: str, keys: InstanceKeys,
                            client_ip: str | None = None) -> list[str]:
    """Replace the person's unused recovery codes by :data:`recovery.COUNT` new ones; return them formatted.

    The codes are returned once and stored only as keyed hashes. Journals
    ``mie:recovery_codes:generated`` and notifies the person.
    """
    _lock_identity(session, identity.id)
    now = utcnow()
    session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.identity_id == identity.id, RecoveryCode.used_at.is_(None),
               RecoveryCode.replaced_at.is_(None))
        .values(replaced_at=now)
        .execution_options(synchronize_session=False)
    )
    generation = (session.scalar(select(func.max(RecoveryCode.generation))
                                 .where(RecoveryCode.identity_id == identity.id)) or 0) + 1
    codes = recovery.generate()
    for code in codes:
        normalized = recovery.normalize(code)
        assert normalized is not None
        session.add(RecoveryCode(identity_id=identity.id, code_hash=recovery.hash_code(keys, identity.public_id,
                                                                                       normalized),
                                 generation=generation, created_at=now))
    audit.record(session, tags.MIE_RECOVERY_CODES_GENERATED, actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"generation": generation, "count": len(codes)})
    notify_event(session, identity, "recovery_generated")
    session.flush()
    return codes


def remaining_recovery_codes(session: Session, identity: Identity) -> int:
    """Return how many of the person's current recovery codes are still unused."""
    return int(session.scalar(
        select(func.count()).select_from(RecoveryCode).where(
            RecoveryCode.identity_id == identity.id, RecoveryCode.used_at.is_(None),
            RecoveryCode.replaced_at.is_(None))) or 0)


def use_recovery_code(session: Session, identity: Identity, code: str, *, client_ip: str | None,
                      throttle: Throttle, keys: InstanceKeys) -> None:
    """Spend one recovery code of ``identity``; return None on success.

    Case, spaces and dashes do not matter. Single use is enforced by one conditional UPDATE. Raises
    :class:`Locked` / :class:`Throttled` (refused before checking), :class:`BurnedRecoveryCode` (already
    used) or :class:`InvalidRecoveryCode`; failures are counted, journaled and committed before raising. A
    success journals ``authn:recovery_code:used`` and notifies the person (the caller commits). A recovery
    code is not an MIE: it never makes an authentication two-factor (see :mod:`amr`).
    """
    account = identity.user_name
    try:
        throttle.check(session, "recovery", account=account, ip=client_ip)
    except Throttled as exc:
        _record_refusal(session, "recovery", client_ip=client_ip, tag=tags.AUTHN_RECOVERY_CODE_FAILURE,
                        actor=account, subject=identity.public_id, exc=exc)
        raise

    def fail(reason: str, error: HospiConnectError) -> NoReturn:
        _record_failure(session, throttle, "recovery", account=account, client_ip=client_ip,
                        tag=tags.AUTHN_RECOVERY_CODE_FAILURE, actor=account, subject=identity.public_id,
                        details={"reason": reason}, error=error)

    normalized = recovery.normalize(code)
    if normalized is None:
        fail("invalid_format", InvalidRecoveryCode())
    if identity.status != "active":
        fail(f"identity_{identity.status}", InvalidRecoveryCode())
    row_id = session.scalar(select(RecoveryCode.id).where(
        RecoveryCode.identity_id == identity.id,
        RecoveryCode.code_hash == recovery.hash_code(keys, identity.public_id, normalized),
        RecoveryCode.replaced_at.is_(None)))
    if row_id is None:
        fail("invalid", InvalidRecoveryCode())
    spent = session.execute(
        update(RecoveryCode).where(RecoveryCode.id == row_id, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow()).execution_options(synchronize_session=False))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        fail("already_used", BurnedRecoveryCode())
    throttle.success(session, "recovery", account=account, ip=client_ip)
    remaining = remaining_recovery_codes(session, identity)
    audit.record(session, tags.AUTHN_RECOVERY_CODE_USED, actor=account, subject=identity.public_id,
                 client_ip=client_ip, details={"factor": "recovery", "remaining": remaining})
    notify_event(session, identity, "recovery_used", remaining=remaining)
    session.flush()


# --- Secrets at rest ------------------------------------------------------------------------------------


def reencrypt_secrets(session: Session, keys: InstanceKeys, *, batch: int = 500) -> int:
    """Re-encrypt every TOTP seed that is not under the current key-encryption key; return how many were.

    Runs in the caller's transaction (all or nothing). Raises :class:`crypto.UnknownKeyId` when a seed is
    under a key the key file no longer holds, :class:`crypto.DecryptionFailed` when one was tampered with.
    """
    keys = crypto.refresh_keys(keys)
    current = keys.current_kek_id
    count = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(TotpCredential.mie_id, TotpCredential.secret_enc)
            .where(TotpCredential.mie_id > last_id, TotpCredential.secret_enc != "")
            .order_by(TotpCredential.mie_id).limit(batch)
        ).all()
        if not rows:
            return count
        for mie_id, token in rows:
            last_id = mie_id
            if crypto.kid_of(token) == current:
                continue
            aad = _totp_aad(mie_id)
            session.execute(
                update(TotpCredential).where(TotpCredential.mie_id == mie_id, TotpCredential.secret_enc == token)
                .values(secret_enc=crypto.encrypt(keys, crypto.decrypt(keys, token, aad), aad))
                .execution_options(synchronize_session=False))
            count += 1


def secrets_by_key(session: Session) -> dict[str, int]:
    """Return how many stored TOTP seeds each key id encrypts (an old key may go once it encrypts none)."""
    counts: dict[str, int] = {}
    for (token,) in session.execute(select(TotpCredential.secret_enc).where(TotpCredential.secret_enc != "")):
        kid = crypto.kid_of(token)
        counts[kid] = counts.get(kid, 0) + 1
    return counts
