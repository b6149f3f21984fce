"""Enrollment services: open a case, record the identity check, hand out and redeem the activation code,
activate the MIE.

Conventions (the same as :mod:`hospiconnect.authenticators.services`):

* Each function is one operation: it works in the caller's session, journals every step there and
  flushes; the caller commits once, so the case, its history and its journal entries are written together
  or not at all.
* **Refusals are remembered**: a refused step (separation of duties, an expired document, a wrong, expired
  or reused activation code…) is journaled — and for activation codes counted — then **committed** before
  the named exception is raised, whatever the caller does next. Call these functions at the start of a
  transaction, with nothing else pending in the session.
* Every state change goes through :func:`hospiconnect.enrollment.workflow.next_state` and is applied with a
  conditional UPDATE on the case's current state, so two concurrent requests cannot both move one case.
* An activation code is shown once (returned by :func:`issue_activation_code`) and stored only as a keyed
  hash; it is never journaled.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import NoReturn, Sequence

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.models import Mie
from hospiconnect.crypto import InstanceKeys, crockford_normalize, crockford_random, group_by_four
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import (
    CaseNotFound,
    ClosedCaseActivationCode,
    DeadActivationCode,
    DocumentRefused,
    ExpiredActivationCode,
    IdentityNotEnrollable,
    InvalidLostMie,
    MieNotInCase,
    ReplacedActivationCode,
    ReusedActivationCode,
    SeparationOfDuties,
    TransitionRefused,
    WrongActivationCode,
)
from hospiconnect.enrollment.models import ActivationCode, EnrollmentCase, EnrollmentTransition
from hospiconnect.errors import HospiConnectError
from hospiconnect.ratelimit import Throttle, Throttled

DEFAULT_CASE_DAYS = 30
DEFAULT_ACTIVATION_HOURS = 72
MAX_CODE_ATTEMPTS = 5

SELECTOR_CHARS = 4  # first group: finds which code a mistyped entry was meant for (not secret)
SECRET_CHARS = 20  # 20 × 5 bits = 100 bits of secret
CODE_CHARS = SELECTOR_CHARS + SECRET_CHARS

_ENROLLABLE_STATUSES = ("pending", "active")
_LIVE_STATES = (wf.OPENED, wf.IDENTITY_VERIFIED, wf.MIE_ISSUED)


# --- Helpers --------------------------------------------------------------------------------------------


_refuse = audit.refuse  # journal a refused step, commit it and raise (see the module docstring)


def _identity_public_id(session: Session, case: EnrollmentCase) -> str:
    public_id = session.scalar(select(Identity.public_id).where(Identity.id == case.identity_id))
    assert public_id is not None
    return public_id


def _code_redeemed(session: Session, case: EnrollmentCase) -> bool:
    return bool(session.scalar(select(exists().where(ActivationCode.case_id == case.id,
                                                     ActivationCode.used_at.is_not(None)))))


def facts_of(session: Session, case: EnrollmentCase, *, now: dt.datetime,
             method: str | None = None) -> wf.CaseFacts:
    """Return the :class:`workflow.CaseFacts` of ``case`` at ``now`` (``method``: the check being recorded)."""
    lost_revoked = True
    if case.kind == wf.KIND_REPLACEMENT:
        lost_revoked = case.replaced_mie_id is not None and session.scalar(
            select(Mie.status).where(Mie.id == case.replaced_mie_id)) == "revoked"
    return wf.CaseFacts(state=case.state, kind=case.kind,
                        identity_check_method=method or case.identity_check_method,
                        lost_mie_revoked=lost_revoked, code_redeemed=_code_redeemed(session, case),
                        past_expiry=case.expires_at <= now)


def _apply(session: Session, case: EnrollmentCase, event: str, *, actor: str, now: dt.datetime,
           facts: wf.CaseFacts | None = None) -> str:
    """Decide ``event`` with the workflow, then move the case with one conditional UPDATE; return the new
    state. Raises :class:`TransitionRefused` when the workflow refuses or another request moved the case
    first."""
    facts = facts or facts_of(session, case, now=now)
    target = wf.next_state(facts, event)
    moved = session.execute(
        update(EnrollmentCase).where(EnrollmentCase.id == case.id, EnrollmentCase.state == case.state)
        .values(state=target, updated_at=now).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise TransitionRefused("Ce dossier vient d'être modifié par ailleurs : rechargez-le et recommencez.",
                                state=case.state, event=event)
    session.add(EnrollmentTransition(case_id=case.id, event=event, from_state=case.state, to_state=target,
                                     at=now, actor=actor[:200]))
    # Keep the loaded object in step with the row (the UPDATE above bypassed the ORM).
    case.state = target
    case.updated_at = now
    if target in (wf.EXPIRED, wf.CANCELLED, wf.REJECTED):
        case.closed_at = now
        _void_live_codes(session, case, now)
    return target


def _void_live_codes(session: Session, case: EnrollmentCase, now: dt.datetime) -> int:
    result = session.execute(
        update(ActivationCode).where(ActivationCode.case_id == case.id, ActivationCode.used_at.is_(None),
                                     ActivationCode.invalidated_at.is_(None))
        .values(invalidated_at=now).execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _case_details(case: EnrollmentCase, **extra: object) -> dict[str, object]:
    return {"case": case.public_id, "kind": case.kind, "state": case.state, **extra}


def get_case(session: Session, public_id: str) -> EnrollmentCase:
    """Return the case ``public_id``; raise :class:`CaseNotFound` when there is none."""
    case = session.scalar(select(EnrollmentCase).where(EnrollmentCase.public_id == str(public_id)[:36]))
    if case is None:
        raise CaseNotFound()
    return case


def cases_of(session: Session, identity: Identity) -> list[EnrollmentCase]:
    """Return every case of ``identity``, oldest first."""
    return list(session.scalars(select(EnrollmentCase).where(EnrollmentCase.identity_id == identity.id)
                                .order_by(EnrollmentCase.opened_at, EnrollmentCase.id)))


# --- Opening a case -------------------------------------------------------------------------------------


def open_case(session: Session, identity: Identity, *, kind: str, officer_identity_id: int | None, actor: str,
              lost_mie: Mie | None = None, reason: str = "", client_ip: str | None = None,
              now: dt.datetime | None = None, case_days: int = DEFAULT_CASE_DAYS) -> EnrollmentCase:
    """Open an enrollment case of ``kind`` (first_mie, additional_mie, replacement) for ``identity``; return it.

    ``officer_identity_id`` is the registration officer's identity (None for a job or an HR import).
    A replacement names the ``lost_mie``, which is revoked first (even the person's last second factor).
    Journals ``enrollment:case:opened``. Raises :class:`SeparationOfDuties` when the officer is the person,
    :class:`IdentityNotEnrollable` for a departed or suspended identity, :class:`InvalidLostMie` when a
    replacement names no MIE of this person (these refusals are journaled and committed), and
    ``ValueError`` for an unknown kind.
    """
    if kind not in wf.KINDS:
        raise ValueError(f"unknown enrollment kind {kind!r}")
    now = now or utcnow()
    details: dict[str, object] = {"kind": kind}
    if officer_identity_id is not None and officer_identity_id == identity.id:
        _refuse(session, tags.ENROLLMENT_CASE_REFUSED, actor=actor, subject=identity.public_id,
                client_ip=client_ip, details={**details, "reason": "separation_of_duties"},
                error=SeparationOfDuties())
    if identity.status not in _ENROLLABLE_STATUSES:
        _refuse(session, tags.ENROLLMENT_CASE_REFUSED, actor=actor, subject=identity.public_id,
                client_ip=client_ip, details={**details, "reason": f"identity_{identity.status}"},
                error=IdentityNotEnrollable("Cette identité ne peut pas être enrôlée : elle est suspendue ou "
                                            "a quitté l'établissement."))
    if kind == wf.KIND_REPLACEMENT:
        if lost_mie is None or lost_mie.identity_id != identity.id:
            _refuse(session, tags.ENROLLMENT_CASE_REFUSED, actor=actor, subject=identity.public_id,
                    client_ip=client_ip, details={**details, "reason": "no_lost_mie"}, error=InvalidLostMie())
    elif lost_mie is not None:
        raise ValueError("lost_mie is only for a replacement")

    case = EnrollmentCase(identity_id=identity.id, kind=kind, state=wf.OPENED,
                          opened_by_identity_id=officer_identity_id, opened_by=actor[:200], opened_at=now,
                          expires_at=now + dt.timedelta(days=case_days), updated_at=now)
    session.add(case)
    session.flush()
    session.add(EnrollmentTransition(case_id=case.id, event="open", from_state=None, to_state=wf.OPENED, at=now,
                                     actor=actor[:200]))
    if kind == wf.KIND_REPLACEMENT:
        assert lost_mie is not None
        case.replaced_mie_id = lost_mie.id
        # Revoke before anything else: a lost phone or key must stop working now, not after the new check.
        if lost_mie.status != "revoked":
            mie_services.remove(session, lost_mie, actor=actor, allow_last=True,
                                reason=reason or "perte ou vol déclaré", client_ip=client_ip)
        audit.record(session, tags.ENROLLMENT_LOST_MIE_REVOKED, actor=actor, subject=identity.public_id,
                     client_ip=client_ip, details=_case_details(case, mie=lost_mie.public_id, type=lost_mie.type))
    audit.record(session, tags.ENROLLMENT_CASE_OPENED, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details=_case_details(case, officer=officer_identity_id, expires_at=case.expires_at.isoformat()))
    session.flush()
    return case


# --- Identity checks ------------------------------------------------------------------------------------


def _check_officer(session: Session, case: EnrollmentCase, officer_identity_id: int | None, *, actor: str,
                   client_ip: str | None, subject: str) -> None:
    if officer_identity_id is not None and officer_identity_id == case.identity_id:
        _refuse(session, tags.ENROLLMENT_IDENTITY_REFUSED, actor=actor, subject=subject, client_ip=client_ip,
                details=_case_details(case, reason="separation_of_duties"), error=SeparationOfDuties())


def record_document_check(session: Session, case: EnrollmentCase, *, document_type: str, issuing_country: str,
                          expiry_date: dt.date | None, last4: str, place: str, checked_at: dt.datetime,
                          officer_identity_id: int, actor: str, today: dt.date, client_ip: str | None = None,
                          now: dt.datetime | None = None) -> EnrollmentCase:
    """Record a face-to-face check of an identity document and move the case to ``identity_verified``;
    return the case.

    Only the document's type, issuing country, expiry date and the last 4 characters of its number are
    kept. Journals ``enrollment:identity:verified``. Raises :class:`SeparationOfDuties` (the officer is the
    person), :class:`DocumentRefused` (an expired or unknown document, a bad country or last4) — both
    journaled as ``enrollment:identity:refused`` and committed — or :class:`TransitionRefused`.
    """
    now = now or utcnow()
    subject = _identity_public_id(session, case)
    _check_officer(session, case, officer_identity_id, actor=actor, client_ip=client_ip, subject=subject)
    try:
        doc = wf.check_document(document_type=document_type, issuing_country=issuing_country,
                                expiry_date=expiry_date, last4=last4, today=today)
    except DocumentRefused as exc:
        _refuse(session, tags.ENROLLMENT_IDENTITY_REFUSED, actor=actor, subject=subject, client_ip=client_ip,
                details=_case_details(case, method=wf.METHOD_FACE_TO_FACE, reason=exc.reason, field=exc.field,
                                      document_type=document_type[:20] if document_type else None),
                error=exc)
    clean_place = " ".join((place or "").split())[:200]
    if not clean_place:
        raise DocumentRefused("Indiquez le lieu de la vérification.", field="place", reason="missing_place")
    facts = facts_of(session, case, now=now, method=wf.METHOD_FACE_TO_FACE)
    _apply(session, case, wf.VERIFY_IDENTITY, actor=actor, now=now, facts=facts)
    case.identity_check_method = wf.METHOD_FACE_TO_FACE
    case.identity_checked_at = checked_at
    case.identity_check_officer_id = officer_identity_id
    case.identity_check_place = clean_place
    case.document_type = doc.document_type
    case.document_issuing_country = doc.issuing_country
    case.document_expiry_date = doc.expiry_date
    case.document_last4 = doc.last4
    case.identity_verified_at = now
    audit.record(session, tags.ENROLLMENT_IDENTITY_VERIFIED, actor=actor, subject=subject, client_ip=client_ip,
                 details=_case_details(case, method=wf.METHOD_FACE_TO_FACE, document_type=doc.document_type,
                                       issuing_country=doc.issuing_country, place=clean_place,
                                       officer=officer_identity_id, checked_at=checked_at.isoformat()))
    session.flush()
    return case


def record_fcplus_check(session: Session, case: EnrollmentCase, *, matched: bool, differences: Sequence[object],
                        actor: str, checked_at: dt.datetime | None = None, acr: str | None = None,
                        client_ip: str | None = None, now: dt.datetime | None = None) -> EnrollmentCase:
    """Record the outcome of a FranceConnect+ check (eIDAS substantial) and return the case.

    ``matched``: the identity-pivot claims agree with the directory → ``identity_verified`` (journaled
    ``enrollment:identity:verified``). Otherwise the case goes to ``rejected`` with ``differences`` (the
    differing field names, never the claim values) kept for an officer, journaled
    ``enrollment:identity:mismatch`` and ``enrollment:case:rejected``. Raises :class:`TransitionRefused`.
    """
    now = now or utcnow()
    subject = _identity_public_id(session, case)
    diffs = [str(d)[:100] for d in differences]
    if not matched:
        _apply(session, case, wf.REJECT, actor=actor, now=now)
        case.rejection_reasons_json = json.dumps(diffs, ensure_ascii=False)
        audit.record(session, tags.ENROLLMENT_IDENTITY_MISMATCH, actor=actor, subject=subject, client_ip=client_ip,
                     outcome="refused", details=_case_details(case, method=wf.METHOD_FCPLUS, differences=diffs))
        audit.record(session, tags.ENROLLMENT_CASE_REJECTED, actor=actor, subject=subject, client_ip=client_ip,
                     outcome="info", details=_case_details(case, differences=diffs))
        session.flush()
        return case
    facts = facts_of(session, case, now=now, method=wf.METHOD_FCPLUS)
    _apply(session, case, wf.VERIFY_IDENTITY, actor=actor, now=now, facts=facts)
    case.identity_check_method = wf.METHOD_FCPLUS
    case.identity_checked_at = checked_at or now
    case.identity_verified_at = now
    audit.record(session, tags.ENROLLMENT_IDENTITY_VERIFIED, actor=actor, subject=subject, client_ip=client_ip,
                 details=_case_details(case, method=wf.METHOD_FCPLUS, acr=acr))
    session.flush()
    return case


# --- Issuing the MIE ------------------------------------------------------------------------------------


def format_code(raw: str) -> str:
    """Return ``raw`` (24 Crockford characters) grouped by 4 with dashes, as printed on the sheet."""
    return group_by_four(raw)


def normalize_code(code: str) -> str | None:
    """Return the 24 canonical characters of a typed activation code, or None when it cannot be one.

    Case, spaces and dashes do not matter; O, I and L are read as 0, 1 and 1 (Crockford).
    """
    return crockford_normalize(code, CODE_CHARS)


def _hash_code(keys: InstanceKeys, normalized: str) -> str:
    # A keyed hash (not a plain one): a stolen database does not let anyone test codes offline.
    return keys.keyed_hash("enrollment-activation:" + normalized)


def _random_chars(n: int) -> str:
    return crockford_random(n)


def _live_code_clause(now: dt.datetime):  # type: ignore[no-untyped-def]
    return (ActivationCode.used_at.is_(None), ActivationCode.invalidated_at.is_(None),
            ActivationCode.failed_attempts < MAX_CODE_ATTEMPTS, ActivationCode.expires_at > now)


def issue_activation_code(session: Session, keys: InstanceKeys, case: EnrollmentCase, *, actor: str,
                          valid_hours: int = DEFAULT_ACTIVATION_HOURS, client_ip: str | None = None,
                          now: dt.datetime | None = None) -> str:
    """Create the case's activation code and return it in plain text, grouped by 4 — the only time it exists
    in clear. The case moves to ``mie_issued``; an earlier unused code of the case stops working.

    The code has 24 Crockford base32 characters: a 4-character selector (finds the code a mistyped entry
    was meant for) and 20 secret characters (100 bits). Stored as a keyed hash, valid ``valid_hours``
    (``Settings.activation_hours``). Journals ``enrollment:activation_code:issued``. Raises
    :class:`TransitionRefused` when the case's identity has not been verified or the case is closed.
    """
    now = now or utcnow()
    _apply(session, case, wf.ISSUE_MIE, actor=actor, now=now)
    replaced = _void_live_codes(session, case, now)
    # The selector only has to be unique among live codes; a clash is rare and simply drawn again.
    for _ in range(20):
        selector = _random_chars(SELECTOR_CHARS)
        if not session.scalar(select(exists().where(ActivationCode.selector == selector, *_live_code_clause(now)))):
            break
    raw = selector + _random_chars(SECRET_CHARS)
    expires_at = now + dt.timedelta(hours=valid_hours)
    session.add(ActivationCode(case_id=case.id, selector=selector, code_hash=_hash_code(keys, raw), created_at=now,
                               expires_at=expires_at, failed_attempts=0))
    if case.mie_issued_at is None:
        case.mie_issued_at = now
    audit.record(session, tags.ENROLLMENT_ACTIVATION_CODE_ISSUED, actor=actor,
                 subject=_identity_public_id(session, case), client_ip=client_ip,
                 details=_case_details(case, expires_at=expires_at.isoformat(), replaced=replaced))
    session.flush()
    return format_code(raw)


def start_remote_issuance(session: Session, case: EnrollmentCase, *, actor: str, client_ip: str | None = None,
                          now: dt.datetime | None = None) -> EnrollmentCase:
    """After a FranceConnect+ check the person goes straight on to activate an MIE in their own session:
    move the case to ``mie_issued`` without an activation code; return it. Journals
    ``enrollment:mie:issued``. Raises :class:`TransitionRefused` unless the case was verified through FC+."""
    now = now or utcnow()
    if case.identity_check_method != wf.METHOD_FCPLUS:
        raise TransitionRefused("Sans vérification FranceConnect+, le moyen d'identification se remet avec un code "
                                "d'activation.", state=case.state, event=wf.ISSUE_MIE)
    _apply(session, case, wf.ISSUE_MIE, actor=actor, now=now)
    case.mie_issued_at = case.mie_issued_at or now
    audit.record(session, tags.ENROLLMENT_MIE_ISSUED, actor=actor, subject=_identity_public_id(session, case),
                 client_ip=client_ip, details=_case_details(case, method=wf.METHOD_FCPLUS))
    session.flush()
    return case


def redeem_activation_code(session: Session, keys: InstanceKeys, code: str, *, client_ip: str | None,
                           throttle: Throttle, now: dt.datetime | None = None) -> EnrollmentCase:
    """Spend an activation code; return its case (state ``mie_issued``), ready for :func:`activate_mie`.

    Order: per-IP throttle (kind ``activation``) → find the code by its keyed hash → refuse a replaced,
    dead (``MAX_CODE_ATTEMPTS`` wrong attempts), expired or closed-case code → spend it with one conditional
    UPDATE (``used_at IS NULL``), so of two concurrent uses exactly one wins. A wrong code counts one
    attempt against the live code sharing its selector (the code it was meant for) and against the IP.
    Raises :class:`Throttled`, :class:`WrongActivationCode`, :class:`ExpiredActivationCode`,
    :class:`ReusedActivationCode`, :class:`DeadActivationCode`, :class:`ReplacedActivationCode` or
    :class:`ClosedCaseActivationCode` (case closed, or the person suspended or departed meanwhile); every refusal is journaled (``enrollment:activation_code:refused``)
    and committed before raising. A success journals ``enrollment:activation_code:redeemed`` (the caller
    commits).
    """
    now = now or utcnow()
    actor = "person:activation"
    try:
        throttle.check(session, "activation", account=None, ip=client_ip, now=now)
    except Throttled as exc:
        _refuse(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED, actor=actor, subject=None, client_ip=client_ip,
                details={"reason": "throttled", "retry_after": exc.retry_after}, error=exc)

    def fail(reason: str, error: HospiConnectError, row: ActivationCode | None = None,
             extra: dict[str, object] | None = None) -> NoReturn:
        throttle.failure(session, "activation", account=None, ip=client_ip, now=now)
        details: dict[str, object] = {"reason": reason, **(extra or {})}
        subject = None
        if row is not None:
            case = session.get(EnrollmentCase, row.case_id)
            assert case is not None
            details["case"] = case.public_id
            subject = _identity_public_id(session, case)
        _refuse(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED, actor=actor, subject=subject,
                client_ip=client_ip, details=details, error=error)

    normalized = normalize_code(code)
    if normalized is None:
        fail("invalid_format", WrongActivationCode())
    # populate_existing: the row may already sit in the session, stale after the Core UPDATEs below.
    row = session.scalar(select(ActivationCode).where(ActivationCode.code_hash == _hash_code(keys, normalized))
                         .execution_options(populate_existing=True))
    if row is None:
        # One conditional UPDATE counts the attempt, so concurrent guesses each count once.
        target = session.execute(
            update(ActivationCode)
            .where(ActivationCode.selector == normalized[:SELECTOR_CHARS], *_live_code_clause(now))
            .values(failed_attempts=ActivationCode.failed_attempts + 1)
            .returning(ActivationCode.id, ActivationCode.failed_attempts)
            .execution_options(synchronize_session=False)).first()
        if target is None:
            fail("wrong", WrongActivationCode())
        target_row = session.get(ActivationCode, target.id)
        fail("wrong", WrongActivationCode(), target_row,
             {"failed_attempts": target.failed_attempts, "dead": target.failed_attempts >= MAX_CODE_ATTEMPTS})
    assert row is not None
    if row.used_at is not None:
        fail("reused", ReusedActivationCode(), row)
    if row.failed_attempts >= MAX_CODE_ATTEMPTS:
        fail("dead", DeadActivationCode(), row)
    case = session.get(EnrollmentCase, row.case_id, populate_existing=True)
    assert case is not None
    if row.invalidated_at is not None:
        if case.state == wf.MIE_ISSUED:
            fail("replaced", ReplacedActivationCode(), row)
        if case.state == wf.EXPIRED:
            fail("expired", ExpiredActivationCode(), row)
        fail(f"case_{case.state}", ClosedCaseActivationCode(), row)
    if row.expires_at <= now or case.expires_at <= now:
        fail("expired", ExpiredActivationCode(), row)
    if case.state != wf.MIE_ISSUED:
        fail(f"case_{case.state}", ClosedCaseActivationCode(), row)
    status = session.scalar(select(Identity.status).where(Identity.id == case.identity_id))
    if status not in _ENROLLABLE_STATUSES:
        # Suspended or departed since the sheet was handed out: no MIE for them now.
        fail(f"identity_{status}", ClosedCaseActivationCode(), row)
    spent = session.execute(
        update(ActivationCode)
        .where(ActivationCode.id == row.id, ActivationCode.used_at.is_(None), ActivationCode.invalidated_at.is_(None),
               ActivationCode.failed_attempts < MAX_CODE_ATTEMPTS)
        .values(used_at=now).execution_options(synchronize_session=False))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        # A concurrent request changed the code since we read it: say what it did.
        session.refresh(row)
        if row.failed_attempts >= MAX_CODE_ATTEMPTS and row.used_at is None:
            fail("dead", DeadActivationCode(), row)
        if row.invalidated_at is not None and row.used_at is None:
            fail("replaced", ReplacedActivationCode(), row)
        fail("reused", ReusedActivationCode(), row)
    session.expire(row)
    audit.record(session, tags.ENROLLMENT_ACTIVATION_CODE_REDEEMED, actor=actor,
                 subject=_identity_public_id(session, case), client_ip=client_ip, details=_case_details(case))
    session.flush()
    return case


# --- Activation -----------------------------------------------------------------------------------------


def activate_mie(session: Session, case: EnrollmentCase, mie: Mie, *, actor: str, client_ip: str | None = None,
                 now: dt.datetime | None = None) -> EnrollmentCase:
    """Record which identity check preceded ``mie`` (``Mie.proofing_method`` and ``proofing_at``), activate it
    if still pending, and move the case to ``activated``; return the case.

    Call once the person proved the MIE works (a valid TOTP code, a completed WebAuthn ceremony).
    Journals ``enrollment:case:activated``. Raises :class:`MieNotInCase` when ``mie`` belongs to someone
    else or is revoked or suspended, :class:`IdentityNotEnrollable` when the person was suspended or left
    meanwhile, and :class:`TransitionRefused` when the case is not ready (no redeemed
    activation code after a face-to-face check, expired, closed).
    """
    now = now or utcnow()
    if mie.identity_id != case.identity_id:
        raise MieNotInCase("Ce moyen d'identification n'appartient pas à la personne du dossier.")
    if mie.status not in ("pending", "active"):
        raise MieNotInCase("Ce moyen d'identification est suspendu ou retiré : il ne peut pas être activé.")
    status = session.scalar(select(Identity.status).where(Identity.id == case.identity_id))
    if status not in _ENROLLABLE_STATUSES:
        raise IdentityNotEnrollable("Cette identité est suspendue ou a quitté l'établissement : aucun moyen "
                                    "d'identification ne peut être activé.")
    _apply(session, case, wf.ACTIVATE, actor=actor, now=now)
    mie.proofing_method = case.identity_check_method
    mie.proofing_at = case.identity_checked_at
    if mie.status == "pending":
        mie_services.transition(session, mie, "active", actor=actor, reason="enrôlement", client_ip=client_ip)
    case.activated_at = now
    case.activated_mie_id = mie.id
    audit.record(session, tags.ENROLLMENT_CASE_ACTIVATED, actor=actor, subject=_identity_public_id(session, case),
                 client_ip=client_ip, details=_case_details(case, mie=mie.public_id, type=mie.type,
                                                            proofing_method=case.identity_check_method))
    session.flush()
    return case


# --- Closing --------------------------------------------------------------------------------------------


def cancel_case(session: Session, case: EnrollmentCase, *, actor: str, reason: str = "",
                client_ip: str | None = None, now: dt.datetime | None = None) -> EnrollmentCase:
    """Cancel a case that is not closed yet (its unused activation code stops working); return it.

    Journals ``enrollment:case:cancelled``. Raises :class:`TransitionRefused` for a closed case.
    """
    now = now or utcnow()
    _apply(session, case, wf.CANCEL, actor=actor, now=now)
    audit.record(session, tags.ENROLLMENT_CASE_CANCELLED, actor=actor, subject=_identity_public_id(session, case),
                 client_ip=client_ip, details=_case_details(case, reason=reason[:300]))
    session.flush()
    return case


def expire_cases(session: Session, now: dt.datetime | None = None, *, actor: str = "system:jobs",
                 batch: int = 500) -> int:
    """Close every open case whose deadline has passed (state ``expired``, unused codes voided); return how
    many were closed. Journals ``enrollment:case:expired`` for each. For the periodic job; the caller
    commits."""
    now = now or utcnow()
    count = 0
    cases = list(session.scalars(
        select(EnrollmentCase).where(EnrollmentCase.state.in_(_LIVE_STATES), EnrollmentCase.expires_at <= now)
        .order_by(EnrollmentCase.id).limit(batch)))
    for case in cases:
        try:
            _apply(session, case, wf.EXPIRE, actor=actor, now=now)
        except TransitionRefused:
            continue  # moved by a concurrent request since we read it
        audit.record(session, tags.ENROLLMENT_CASE_EXPIRED, actor=actor,
                     subject=_identity_public_id(session, case), outcome="info", details=_case_details(case))
        count += 1
    session.flush()
    return count

