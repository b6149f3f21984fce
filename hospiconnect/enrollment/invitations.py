"""Invitations to enroll remotely: the e-mail with a personal link, then the link's checks (no Flask).

An officer (desk or CLI) invites the person of an ``opened`` case: :func:`send_invitation` queues an e-mail to
the identity's professional address with a link holding 256 random bits, stored only as a keyed hash. When
the person opens it, :func:`find_invitation` refuses — and journals — an unknown, expired, replaced or used
link, or one whose case was closed. What follows the link (the FranceConnect+ check) is in
:mod:`hospiconnect.enrollment.remote`.

Conventions are those of :mod:`hospiconnect.enrollment.services`: one operation per function, the caller
commits a success; a refusal is journaled and **committed** before its exception is raised.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import NoReturn
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators.models import Mie
from hospiconnect.authenticators.notifications import notify
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import (
    ClosedCaseInvitation,
    ExpiredInvitation,
    InvitationNotSent,
    InvitationRefused,
    ReplacedInvitation,
    UnknownInvitation,
    UsedInvitation,
)
from hospiconnect.enrollment.models import EnrollmentCase, Invitation
from hospiconnect.settings import Settings

PARIS = ZoneInfo("Europe/Paris")
ACTOR_PERSON = "person:invitation"
# secrets.token_urlsafe(32): 43 URL-safe characters (256 bits). Anything else is an unknown token, refused
# before any hashing or query.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
ENROLLABLE_STATUSES = ("pending", "active")
_LIVE_STATES = (wf.OPENED, wf.IDENTITY_VERIFIED, wf.MIE_ISSUED)


def invitation_url(issuer: str, token: str) -> str:
    """Return the link of an invitation e-mail."""
    return f"{issuer.rstrip('/')}/activation/invitation/{token}"


# --- helpers (shared with remote.py) ----------------------------------------------------------------------


def refuse(session: Session, tag: str, *, actor: str, subject: str | None, client_ip: str | None,
           details: dict[str, object], error: Exception) -> NoReturn:
    """Journal a refused step, commit it and raise ``error`` (see the module docstring)."""
    code = getattr(error, "code", None) or error.__class__.__name__
    audit.record(session, tag, actor=actor, subject=subject, client_ip=client_ip, outcome="refused",
                 details={**details, "code": code})
    session.commit()
    raise error


def subject_of(session: Session, case: EnrollmentCase | None) -> str | None:
    """Return the public id of the case's person (the journal's subject), None without a case."""
    if case is None:
        return None
    return session.scalar(select(Identity.public_id).where(Identity.id == case.identity_id))


def case_details(case: EnrollmentCase | None, **extra: object) -> dict[str, object]:
    """Return the journal details of a case (its public id, kind and state) with ``extra``."""
    if case is None:
        return dict(extra)
    return {"case": case.public_id, "kind": case.kind, "state": case.state, **extra}


def _token_hash(keys: InstanceKeys, token: str) -> str:
    # A keyed hash: a copy of the database does not give working links, nor lets anyone test tokens offline.
    return keys.keyed_hash("enrollment-invitation:" + token)

def _local(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


def first_name(identity: Identity) -> str:
    """Return the first given name of ``identity`` (the only name a public page shows)."""
    return identity.given_names.split()[0] if identity.given_names else ""

# --- invitations --------------------------------------------------------------------------------------------


def invitation_blocker(session: Session, case: EnrollmentCase, settings: Settings, *,
                       now: dt.datetime | None = None) -> InvitationNotSent | None:
    """Return why no invitation can be sent for ``case`` now (an :class:`InvitationNotSent` with a French
    message and a ``reason``), or None when one can."""
    now = now or utcnow()
    identity = session.get(Identity, case.identity_id)
    assert identity is not None
    if not settings.fcplus_enabled:
        return InvitationNotSent("L'enrôlement à distance par FranceConnect+ n'est pas configuré sur cette "
                                 "instance (HOSPICONNECT_FCPLUS_*).", reason="fcplus_disabled")
    if case.state != wf.OPENED:
        return InvitationNotSent("Une invitation ne s'envoie que pour un dossier ouvert dont l'identité n'a pas "
                                 "encore été vérifiée.", reason="not_opened")
    if case.expires_at <= now:
        return InvitationNotSent("Ce dossier a expiré : ouvrez-en un nouveau.", reason="case_expired")
    if identity.status not in ENROLLABLE_STATUSES:
        return InvitationNotSent("Cette identité est suspendue ou a quitté l'établissement : aucune invitation "
                                 "ne peut lui être envoyée.", reason=f"identity_{identity.status}")
    if not identity.email:
        return InvitationNotSent("Cette identité n'a pas d'adresse e-mail professionnelle dans l'annuaire : "
                                 "renseignez-la, ou vérifiez l'identité en face à face.", reason="no_email")
    return None


def _invitation_message(identity: Identity, settings: Settings, url: str,
                        expires_at: dt.datetime) -> tuple[str, str]:
    establishment = settings.establishment_name
    subject = "HospiConnect : vérifiez votre identité pour activer votre accès"
    body = (
        f"Bonjour {first_name(identity)},\n\n"
        f"{establishment} vous invite à activer votre moyen d'identification électronique HospiConnect "
        f"(identifiant {identity.user_name}), sans vous déplacer au guichet d'enrôlement.\n\n"
        f"Avant le {_local(expires_at)} :\n"
        f"1. ouvrez ce lien personnel :\n   {url}\n"
        "2. vérifiez votre identité avec FranceConnect+ (il vous faut une identité numérique compatible, par "
        "exemple France Identité ou L'Identité Numérique La Poste) ;\n"
        "3. associez ensuite une application d'authentification ou une clé de sécurité, et choisissez votre "
        "mot de passe.\n\n"
        "Ce lien ne sert qu'une fois ; ne le transférez à personne. L'établissement ne vous demandera jamais "
        "votre mot de passe par e-mail ni par téléphone.\n\n"
        "Vous n'avez pas d'identité numérique compatible, le lien a expiré, ou vous n'attendiez pas ce "
        "message ? Présentez-vous au guichet d'enrôlement de votre établissement avec une pièce d'identité, "
        "ou contactez son support informatique.\n\n— HospiConnect"
    )
    return subject, body


def send_invitation(session: Session, keys: InstanceKeys, settings: Settings, case: EnrollmentCase, *,
                    actor: str, client_ip: str | None = None,
                    now: dt.datetime | None = None) -> tuple[Invitation, str]:
    """Invite the person of ``case`` to verify their identity remotely; return the invitation and its link.

    The case must be ``opened`` and not expired, and the identity enrollable with a professional e-mail.
    Earlier live invitations of the case stop working (``revoked_at``). The link's token is 256 random bits,
    stored only as a keyed hash; the invitation expires after ``settings.invitation_days``, never after the
    case. The e-mail is queued in the outbox (sent by ``hospiconnect jobs run``) to the identity's
    professional address. Journals ``enrollment:invitation:sent`` (the caller commits). Raises
    :class:`InvitationNotSent` — journaled as ``enrollment:invitation:not_sent`` and committed.
    """
    now = now or utcnow()
    identity = session.get(Identity, case.identity_id)
    assert identity is not None
    blocker = invitation_blocker(session, case, settings, now=now)
    if blocker is not None:
        refuse(session, tags.ENROLLMENT_INVITATION_NOT_SENT, actor=actor, subject=identity.public_id,
                client_ip=client_ip, details=case_details(case, reason=blocker.reason), error=blocker)
    assert identity.email is not None
    revoked = session.execute(
        update(Invitation).where(Invitation.case_id == case.id, Invitation.used_at.is_(None),
                                 Invitation.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False))
    token = secrets.token_urlsafe(32)
    expires_at = min(now + dt.timedelta(days=settings.invitation_days), case.expires_at)
    invitation = Invitation(case_id=case.id, token_hash=_token_hash(keys, token), email=identity.email,
                            sent_by=actor[:200], created_at=now, expires_at=expires_at)
    session.add(invitation)
    session.flush()
    url = invitation_url(settings.issuer, token)
    subject, body = _invitation_message(identity, settings, url, expires_at)
    notify(session, identity, subject, body, keys=keys)
    replaced = int(revoked.rowcount or 0)  # type: ignore[attr-defined]
    audit.record(session, tags.ENROLLMENT_INVITATION_SENT, actor=actor, subject=identity.public_id,
                 client_ip=client_ip,
                 details=case_details(case, invitation=invitation.id, email=identity.email,
                                       expires_at=expires_at.isoformat(), replaced=replaced))
    session.flush()
    return invitation, url


def invite_identity(session: Session, keys: InstanceKeys, settings: Settings, identity: Identity, *, actor: str,
                    client_ip: str | None = None,
                    now: dt.datetime | None = None) -> tuple[EnrollmentCase, Invitation, str, bool]:
    """Invite ``identity`` to enroll remotely (the CLI's and scripts' door); return ``(case, invitation, link,
    opened)``.

    Uses the identity's live ``opened`` case, or opens a case when there is none — ``first_mie``, or
    ``additional_mie`` when the person already holds an active second factor — with no officer (``actor``,
    e.g. ``cli``), then calls :func:`send_invitation`. The caller commits. Raises :class:`InvitationNotSent`
    (FranceConnect+ not configured, no professional e-mail, person suspended or departed, or a case already
    past its identity check) — journaled and committed, no case opened — and the refusals of
    :func:`hospiconnect.enrollment.services.open_case`.
    """
    now = now or utcnow()
    case = session.scalar(select(EnrollmentCase).where(
        EnrollmentCase.identity_id == identity.id, EnrollmentCase.state.in_(_LIVE_STATES),
        EnrollmentCase.expires_at > now).order_by(EnrollmentCase.opened_at.desc(), EnrollmentCase.id.desc()).limit(1))
    early: InvitationNotSent | None = None
    if not settings.fcplus_enabled:
        early = InvitationNotSent("L'enrôlement à distance par FranceConnect+ n'est pas configuré sur cette "
                                  "instance (HOSPICONNECT_FCPLUS_*).", reason="fcplus_disabled")
    elif identity.status not in ENROLLABLE_STATUSES:
        early = InvitationNotSent("Cette identité est suspendue ou a quitté l'établissement : aucune invitation "
                                  "ne peut lui être envoyée.", reason=f"identity_{identity.status}")
    elif not identity.email:
        early = InvitationNotSent("Cette identité n'a pas d'adresse e-mail professionnelle dans l'annuaire : "
                                  "renseignez-la, ou vérifiez l'identité en face à face.", reason="no_email")
    elif case is not None and case.state != wf.OPENED:
        early = InvitationNotSent("Un dossier d'enrôlement de cette personne a déjà passé la vérification "
                                  "d'identité : terminez-le ou annulez-le au guichet.", reason="not_opened")
    if early is not None:
        refuse(session, tags.ENROLLMENT_INVITATION_NOT_SENT, actor=actor, subject=identity.public_id,
                client_ip=client_ip, details=case_details(case, reason=early.reason), error=early)
    opened = case is None
    if case is None:
        has_factor = session.scalar(select(Mie.id).where(Mie.identity_id == identity.id, Mie.status == "active",
                                                         Mie.type != "password").limit(1)) is not None
        case = enrollment.open_case(session, identity, kind=wf.KIND_ADDITIONAL_MIE if has_factor
                                    else wf.KIND_FIRST_MIE, officer_identity_id=None, actor=actor,
                                    client_ip=client_ip, now=now)
    invitation, url = send_invitation(session, keys, settings, case, actor=actor, client_ip=client_ip, now=now)
    return case, invitation, url, opened


def invitations_of(session: Session, case: EnrollmentCase) -> list[Invitation]:
    """Return the invitations sent for ``case``, newest first."""
    return list(session.scalars(select(Invitation).where(Invitation.case_id == case.id)
                                .order_by(Invitation.created_at.desc(), Invitation.id.desc())))


def invitation_status(invitation: Invitation, case: EnrollmentCase, now: dt.datetime | None = None) -> str:
    """Return the status of an invitation: used, replaced, case_closed, expired, opened or sent."""
    now = now or utcnow()
    if invitation.used_at is not None:
        return "used"
    if invitation.revoked_at is not None:
        return "replaced"
    if case.state != wf.OPENED:
        return "case_closed"
    if invitation.expires_at <= now or case.expires_at <= now:
        return "expired"
    return "opened" if invitation.opened_at is not None else "sent"


INVITATION_STATUS_LABELS_FR = {
    "used": "utilisée", "replaced": "remplacée", "case_closed": "sans objet (dossier traité ou clos)",
    "expired": "expirée", "opened": "ouverte", "sent": "envoyée",
}


def find_invitation(session: Session, keys: InstanceKeys, token: object, *, client_ip: str | None = None,
                    now: dt.datetime | None = None, mark_opened: bool = False) -> tuple[Invitation, EnrollmentCase]:
    """Return the live invitation of ``token`` and its case.

    With ``mark_opened``, the first opening is recorded (``opened_at``, journaled
    ``enrollment:invitation:opened``; the caller commits). Raises :class:`UnknownInvitation`,
    :class:`ExpiredInvitation`, :class:`ReplacedInvitation`, :class:`UsedInvitation` or
    :class:`ClosedCaseInvitation` (the case is no longer ``opened``, or the person was suspended or left) —
    each journaled as ``enrollment:invitation:refused`` with its reason and committed.
    """
    now = now or utcnow()

    def fail(error: InvitationRefused, case: EnrollmentCase | None = None, reason: str | None = None,
             invitation: Invitation | None = None) -> NoReturn:
        extra: dict[str, object] = {"reason": reason or error.reason}
        if invitation is not None:
            extra["invitation"] = invitation.id
        refuse(session, tags.ENROLLMENT_INVITATION_REFUSED, actor=ACTOR_PERSON, subject=subject_of(session, case),
                client_ip=client_ip, details=case_details(case, **extra), error=error)

    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        fail(UnknownInvitation(), reason="malformed")
    assert isinstance(token, str)
    invitation = session.scalar(select(Invitation).where(Invitation.token_hash == _token_hash(keys, token))
                                .execution_options(populate_existing=True))
    if invitation is None:
        fail(UnknownInvitation())
    assert invitation is not None
    case = session.get(EnrollmentCase, invitation.case_id, populate_existing=True)
    assert case is not None
    if invitation.used_at is not None:
        fail(UsedInvitation(), case, invitation=invitation)
    if invitation.revoked_at is not None:
        fail(ReplacedInvitation(), case, invitation=invitation)
    if case.state == wf.EXPIRED:
        fail(ExpiredInvitation(), case, reason="case_expired", invitation=invitation)
    if case.state != wf.OPENED:
        fail(ClosedCaseInvitation(), case, reason=f"case_{case.state}", invitation=invitation)
    if invitation.expires_at <= now or case.expires_at <= now:
        fail(ExpiredInvitation(), case, invitation=invitation)
    status = session.scalar(select(Identity.status).where(Identity.id == case.identity_id))
    if status not in ENROLLABLE_STATUSES:
        fail(ClosedCaseInvitation(), case, reason=f"identity_{status}", invitation=invitation)
    if mark_opened and invitation.opened_at is None:
        first = session.execute(
            update(Invitation).where(Invitation.id == invitation.id, Invitation.opened_at.is_(None))
            .values(opened_at=now).execution_options(synchronize_session=False))
        invitation.opened_at = now
        if first.rowcount == 1:  # type: ignore[attr-defined]
            audit.record(session, tags.ENROLLMENT_INVITATION_OPENED, actor=ACTOR_PERSON,
                         subject=subject_of(session, case), client_ip=client_ip,
                         details=case_details(case, invitation=invitation.id))
        session.flush()
    return invitation, case
