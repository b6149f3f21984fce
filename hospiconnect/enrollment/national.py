"""National identity: pairing (« appairage ») a local identity with Pro Santé Connect, and the national MIE.

The path of a professional (DOMAIN.md « Pro Santé Connect », issue 8):

1. :func:`begin_pairing` — a person signed in locally with two factors asks to link their national identity:
   a PSC authorization request starts; its ``state`` (keyed hash), ``nonce``, issuer and requested ``acr``
   are stored in a :class:`PscTransaction` with the person and the keyed hash of a random secret kept in
   their browser session (purpose ``pairing``);
2. :func:`consume_transaction` — ``/psc/retour`` takes the transaction with ONE conditional ``DELETE`` on the
   state and the browser (as :func:`hospiconnect.enrollment.remote.consume_transaction`);
3. the caller runs :func:`hospiconnect.enrollment.psc.handle_callback`;
4. :func:`complete_pairing` — the link is recorded only when the SubjectNameID's RPPS equals the directory's
   RPPS (method ``rpps``) or, when the directory has none, when PSC's names match the directory's
   (:func:`hospiconnect.enrollment.matching.match_names`, method ``names``): the RPPS number is then filled
   in through the directory service (journaled ``directory:identity:updated`` and ``national:rpps:filled``).
   Every refusal is journaled ``national:link:refused`` with its reason and changes nothing.
5. :func:`ensure_national_mie` — an active MIE of type ``cps`` or ``e-cps`` (the one PSC reported), proofed
   by the ANS (``proofing_method="ans"``), so that the policies and the trajectory count it.

:func:`unlink` is the officer's; :func:`find_identity` is the sign-in's. Upstream identities are keyed by
(issuer, ``sub``), never by e-mail (SECURITY.md item 20). Conventions are those of
:mod:`hospiconnect.enrollment.services`: the caller commits a success; a refusal is journaled and
**committed** before its exception is raised.

The enrollment layer may not import :mod:`hospiconnect.devtools`: :func:`psc_config` builds the configuration
of the real PSC only; the web layer substitutes the simulator's when ``settings.psc_simulator_enabled``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from typing import Callable, NoReturn

from joserfc.jwk import KeySet
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.models import NATIONAL_MIE_TYPES, Mie
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import matching, psc
from hospiconnect.enrollment.models import NationalLink, PscTransaction
from hospiconnect.enrollment.provider_cache import ProviderCache
from hospiconnect.errors import Conflict, HospiConnectError, NotFound, ValidationError
from hospiconnect.settings import Settings

PAIRING = "pairing"
LOGIN = "login"
PURPOSES = (PAIRING, LOGIN)
METHOD_RPPS = "rpps"
METHOD_NAMES = "names"
PROOFING_ANS = "ans"
MIN_BROWSER_SECRET = 32
MAX_STATE_CHARS = 256
REASON_MAX = 300
CACHE_SECONDS = 600
CALLBACK_PATH = "/psc/retour"

METHOD_LABELS_FR = {METHOD_RPPS: "numéro RPPS identique", METHOD_NAMES: "noms concordants, RPPS complété"}


# --- errors ---------------------------------------------------------------------------------------------------


class PairingRefused(Conflict):
    """The national identity may not be linked to this person; ``reason`` is journaled."""

    code = "pairing_refused"
    reason = "refused"
    default_message = "L'association de votre identité nationale a été refusée."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class NotAnRpps(PairingRefused):
    reason = "no_rpps"
    default_message = ("Pro Santé Connect n'a pas transmis de numéro RPPS : seule une identité nationale RPPS "
                       "peut être associée à votre compte.")


class RppsMismatch(PairingRefused):
    reason = "rpps_mismatch"
    default_message = ("Le numéro RPPS transmis par Pro Santé Connect ne correspond pas à celui de l'annuaire de "
                       "l'établissement. Rien n'a été modifié : adressez-vous au service d'enrôlement.")


class NamesMismatch(PairingRefused):
    reason = "names_mismatch"
    default_message = ("Les nom et prénom transmis par Pro Santé Connect ne correspondent pas à ceux de l'annuaire "
                       "de l'établissement. Rien n'a été modifié : adressez-vous au service d'enrôlement.")


class RppsHeldByAnother(PairingRefused):
    reason = "rpps_taken"
    default_message = ("Ce numéro RPPS est déjà attribué à une autre personne de l'annuaire. Rien n'a été modifié : "
                       "adressez-vous au service d'enrôlement.")


class SubjectLinkedElsewhere(PairingRefused):
    reason = "subject_linked_elsewhere"
    default_message = ("Cette identité Pro Santé Connect est déjà associée au compte d'une autre personne. "
                       "Rien n'a été modifié : adressez-vous au service d'enrôlement.")


class AlreadyPaired(PairingRefused):
    reason = "identity_already_linked"
    default_message = ("Votre compte est déjà associé à une autre identité Pro Santé Connect. Le service "
                       "d'enrôlement peut supprimer cette association si elle n'est plus la bonne.")


class IdentityNotActive(PairingRefused):
    reason = "identity_not_active"
    default_message = "Votre compte n'est pas actif : l'association est impossible."


class LinkNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Cette association à une identité nationale n'existe pas ou a déjà été supprimée.")


class NotPaired(HospiConnectError):
    """Sign-in with PSC by a national identity linked to nobody."""

    code = "not_paired"
    http_status = 403

    def __init__(self) -> None:
        super().__init__("Votre identité Pro Santé Connect n'est associée à aucun compte de l'établissement.")


class SignInRefused(HospiConnectError):
    """Sign-in with PSC by a paired person who may not get in this way; ``reason`` is journaled."""

    code = "psc_sign_in_refused"
    http_status = 403
    reason = "refused"
    default_message = "La connexion par Pro Santé Connect n'est pas possible pour votre compte."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class AccountNotActive(SignInRefused):
    reason = "identity_not_active"
    default_message = ("Votre compte n'est pas actif dans l'établissement : la connexion est impossible. "
                       "Adressez-vous au support informatique.")


class NationalMieUnknown(SignInRefused):
    reason = "mie_unknown"
    default_message = ("Pro Santé Connect n'a pas indiqué le moyen d'identification utilisé (carte CPS ou "
                       "application e-CPS) : la connexion à l'établissement est impossible de cette façon.")


class NationalMieBlocked(SignInRefused):
    reason = "mie_blocked"
    default_message = ("L'utilisation de ce moyen d'identification national a été suspendue ou révoquée dans "
                       "l'établissement. Connectez-vous avec un autre moyen ou adressez-vous au service "
                       "d'enrôlement.")


class ForeignBrowser(psc.StateMismatch):
    message = ("Cette réponse de Pro Santé Connect est arrivée dans un autre navigateur que celui où la demande a "
               "commencé. Recommencez depuis la même fenêtre.")


# --- configuration and provider metadata ------------------------------------------------------------------------


def callback_url(issuer: str) -> str:
    """Return the redirect URI to declare at Pro Santé Connect (pairing and sign-in share it)."""
    return issuer.rstrip("/") + CALLBACK_PATH


def psc_config(settings: Settings) -> psc.PscConfig:
    """Return the client configuration of the real PSC (``HOSPICONNECT_PSC_*``). Raises
    :class:`psc.PscConfigurationError` when it is not configured."""
    if not settings.psc_discovery_url:
        raise psc.PscConfigurationError("HOSPICONNECT_PSC_DISCOVERY_URL n'est pas défini")
    return psc.PscConfig(discovery_url=settings.psc_discovery_url, client_id=settings.psc_client_id,
                         client_secret=settings.psc_client_secret(), redirect_uri=callback_url(settings.issuer),
                         acr_values=settings.psc_acr_values)


# As in hospiconnect.enrollment.remote: discovery and keys cached per process, keys dropped after a signature
# failure so that a rotation heals on the next attempt.
_cache: ProviderCache[psc.Discovery, KeySet] = ProviderCache(CACHE_SECONDS)


def discovery_for(config: psc.PscConfig, fetch: psc.Fetch = psc.urllib_fetch, *,
                  clock: Callable[[], float] = time.monotonic) -> psc.Discovery:
    """Return the provider's discovery document, cached :data:`CACHE_SECONDS` per discovery URL."""
    return _cache.discovery(config.discovery_url, lambda: psc.load_discovery(config, fetch), clock=clock)


def provider_keys_for(config: psc.PscConfig, discovery: psc.Discovery,
                      fetch: psc.Fetch = psc.urllib_fetch, *,
                      clock: Callable[[], float] = time.monotonic) -> KeySet:
    """Return the provider's public signature keys, cached :data:`CACHE_SECONDS` per discovery URL."""
    return _cache.keys(config.discovery_url, lambda: psc.load_provider_jwks(discovery, fetch), clock=clock)


def forget_provider_keys(discovery_url: str) -> None:
    """Drop the cached signature keys of a provider (after a signature failure: they may have rotated)."""
    _cache.forget_keys(discovery_url)


def clear_caches() -> None:
    """Forget every cached discovery document and key set."""
    _cache.clear()


# --- the transaction --------------------------------------------------------------------------------------------


def _state_hash(keys: InstanceKeys, state: str) -> str:
    return keys.keyed_hash("psc-state:" + state)


def _browser_hash(keys: InstanceKeys, browser_secret: str) -> str:
    return keys.keyed_hash("psc-browser:" + browser_secret)


def _subject(session: Session, identity_id: int | None) -> str | None:
    if identity_id is None:
        return None
    identity = session.get(Identity, identity_id)
    return identity.public_id if identity is not None else None


def begin(session: Session, keys: InstanceKeys, config: psc.PscConfig, discovery: psc.Discovery, *, purpose: str,
          browser_secret: str, actor: str, identity: Identity | None = None, interaction_id: str | None = None,
          client_ip: str | None = None, now: dt.datetime | None = None) -> str:
    """Start a PSC authorization request for ``purpose``; return the URL to send the person to.

    Stores a :class:`PscTransaction` (see the module docstring) living ``config.transaction_max_age``; an
    earlier pending one of the same person (pairing) or interaction (login) in this browser is replaced.
    Journals ``national:link:started`` or ``authn:psc:started``; the caller commits.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if (purpose == PAIRING) != (identity is not None) or (purpose == LOGIN) != (interaction_id is not None):
        raise ValueError("pairing needs the identity, login the interaction")
    if not isinstance(browser_secret, str) or len(browser_secret) < MIN_BROWSER_SECRET:
        raise ValueError("browser_secret must be a random value of at least 32 characters")
    now = now or utcnow()
    # prompt=login: PSC asks for the card or the e-CPS every time. Its own session, left in the browser of a
    # shared workstation after someone signed out of HospiConnect, must never sign in — or pair — the next
    # person as that one; HospiConnect's session is what spares people a second sign-in at the establishment.
    config = dataclasses.replace(config, prompt=config.prompt or "login")
    url, transaction = psc.build_authorization_request(config, discovery, now=now)
    browser_hash = _browser_hash(keys, browser_secret)
    earlier = (PscTransaction.identity_id == identity.id) if identity is not None \
        else (PscTransaction.interaction_id == interaction_id)
    session.execute(delete(PscTransaction).where(earlier, PscTransaction.purpose == purpose,
                                                 PscTransaction.browser_hash == browser_hash)
                    .execution_options(synchronize_session=False))
    session.add(PscTransaction(
        state_hash=_state_hash(keys, transaction.state), browser_hash=browser_hash, purpose=purpose,
        nonce=transaction.nonce, issuer=transaction.issuer[:300], acr_values=transaction.acr_values,
        identity_id=identity.id if identity is not None else None, interaction_id=interaction_id,
        created_at=transaction.created_at, expires_at=transaction.created_at + config.transaction_max_age))
    audit.record(session, tags.NATIONAL_LINK_STARTED if purpose == PAIRING else tags.AUTHN_PSC_STARTED,
                 actor=actor, subject=identity.public_id if identity is not None else None, client_ip=client_ip,
                 details={"issuer": transaction.issuer, "acr_values": transaction.acr_values})
    session.flush()
    return url


def begin_pairing(session: Session, keys: InstanceKeys, config: psc.PscConfig, discovery: psc.Discovery,
                  identity: Identity, *, browser_secret: str, actor: str, client_ip: str | None = None,
                  now: dt.datetime | None = None) -> str:
    """Start the pairing of ``identity`` (signed in with two factors: the caller checks it); return PSC's URL."""
    return begin(session, keys, config, discovery, purpose=PAIRING, browser_secret=browser_secret, actor=actor,
                 identity=identity, client_ip=client_ip, now=now)


@dataclasses.dataclass(frozen=True)
class PendingPsc:
    """A consumed transaction: what ``/psc/retour`` needs to finish."""

    purpose: str
    identity_id: int | None
    interaction_id: str | None
    transaction: psc.TransactionState


def record_failure(session: Session, error: Exception, *, purpose: str | None, identity_id: int | None = None,
                   reason: str | None = None, actor: str = "person:psc", client_ip: str | None = None) -> None:
    """Journal a failed PSC step (``national:link:refused`` for a pairing, else ``authn:psc:failure``: the
    error's class, its reason and short French detail, never a token) and commit it. Call with nothing else
    pending in ``session``."""
    details: dict[str, object] = {"error": error.__class__.__name__, "purpose": purpose or "unknown"}
    if reason:
        details["reason"] = reason
    detail = getattr(error, "detail", None)
    if isinstance(detail, str) and detail:
        details["detail"] = "".join(ch for ch in detail[:200] if ch.isprintable())
    tag = tags.NATIONAL_LINK_REFUSED if purpose == PAIRING else tags.AUTHN_PSC_FAILURE
    audit.record(session, tag, actor=actor, subject=_subject(session, identity_id), client_ip=client_ip,
                 outcome="refused" if purpose == PAIRING else "failure", details=details)
    session.commit()


def consume_transaction(session: Session, keys: InstanceKeys, state: object, browser_secret: object, *,
                        client_ip: str | None = None, now: dt.datetime | None = None) -> PendingPsc:
    """Take the transaction of the callback's ``state`` for this browser, with ONE conditional DELETE (see
    :func:`hospiconnect.enrollment.remote.consume_transaction`); the caller commits at once, before calling PSC.

    Raises :class:`psc.StateMismatch` (unknown, replayed or purged), :class:`ForeignBrowser` or
    :class:`psc.TransactionExpired` — each journaled and committed.
    """
    now = now or utcnow()

    def fail(error: psc.PscError, reason: str, row: PscTransaction | None = None) -> NoReturn:
        purpose, identity_id = (row.purpose, row.identity_id) if row is not None else (None, None)
        session.rollback()
        record_failure(session, error, purpose=purpose, identity_id=identity_id, reason=reason, client_ip=client_ip)
        raise error

    if not isinstance(state, str) or not state or len(state) > MAX_STATE_CHARS:
        fail(psc.StateMismatch(), "unknown_state")
    assert isinstance(state, str)
    state_hash = _state_hash(keys, state)
    row = session.scalar(select(PscTransaction).where(PscTransaction.state_hash == state_hash)
                         .execution_options(populate_existing=True))
    if row is None:
        fail(psc.StateMismatch(), "unknown_state")
    assert row is not None
    pending = PendingPsc(purpose=row.purpose, identity_id=row.identity_id, interaction_id=row.interaction_id,
                         transaction=psc.TransactionState(state=state, nonce=row.nonce, issuer=row.issuer,
                                                          created_at=row.created_at, acr_values=row.acr_values))
    expires_at = row.expires_at
    browser_hash = (_browser_hash(keys, browser_secret)
                    if isinstance(browser_secret, str) and len(browser_secret) >= MIN_BROWSER_SECRET else None)
    if browser_hash is None or browser_hash != row.browser_hash:
        fail(ForeignBrowser(), "foreign_browser", row)
    session.expunge(row)
    taken = session.execute(delete(PscTransaction).where(PscTransaction.state_hash == state_hash,
                                                         PscTransaction.browser_hash == browser_hash)
                            .execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        fail(psc.StateMismatch(), "replayed", row)
    if expires_at <= now:
        session.commit()  # spent anyway: an expired transaction is never retried
        fail(psc.TransactionExpired(), "expired", row)
    return pending


def purge_expired_transactions(session: Session, now: dt.datetime | None = None) -> int:
    """Delete the PSC transactions past their expiry; return how many."""
    result = session.execute(delete(PscTransaction).where(PscTransaction.expires_at <= (now or utcnow()))
                             .execution_options(synchronize_session=False))
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- links --------------------------------------------------------------------------------------------------


def live_link(session: Session, identity: Identity) -> NationalLink | None:
    """Return the identity's live link, or None."""
    return session.scalar(select(NationalLink).where(NationalLink.identity_id == identity.id,
                                                     NationalLink.unlinked_at.is_(None)))


def links_of(session: Session, identity: Identity) -> list[NationalLink]:
    """Return every link the identity ever had, newest first (unlinked ones included)."""
    return list(session.scalars(select(NationalLink).where(NationalLink.identity_id == identity.id)
                                .order_by(NationalLink.id.desc())))


def _live_link_of_subject(session: Session, issuer: str, sub: str) -> NationalLink | None:
    return session.scalar(select(NationalLink).where(NationalLink.issuer == issuer, NationalLink.sub == sub,
                                                     NationalLink.unlinked_at.is_(None)))


def find_identity(session: Session, issuer: str, sub: str) -> Identity | None:
    """Return the person whose live link is (``issuer``, ``sub``), or None — never looked up by e-mail."""
    link = _live_link_of_subject(session, issuer, sub)
    return session.get(Identity, link.identity_id) if link is not None else None


def sign_in(session: Session, national_identity: psc.NationalIdentity, *, client_ip: str | None = None,
            now: dt.datetime | None = None) -> tuple[Identity, Mie]:
    """Return the person a sign-in through PSC designates and the national MIE it used (``last_used_at`` set).

    The person is the one whose live link is PSC's (issuer, ``sub``) — never found by e-mail or by name. The MIE
    is the active one of the type PSC reported, created (proofed by the ANS) when the link predates its first
    use; a type suspended, or revoked since the pairing, in the establishment is refused (an officer's
    decision stands). Journals ``authn:psc:success``; the caller completes the sign-in and commits.
    Raises :class:`NotPaired` or a :class:`SignInRefused` subclass — journaled ``authn:psc:failure`` and
    committed, nothing else written.
    """
    now = now or utcnow()
    issuer, sub = national_identity.issuer, national_identity.sub

    def fail(error: HospiConnectError, reason: str, identity: Identity | None = None) -> NoReturn:
        session.rollback()
        audit.record(session, tags.AUTHN_PSC_FAILURE, actor="person:psc",
                     subject=identity.public_id if identity is not None else None, client_ip=client_ip,
                     outcome="failure", details={"purpose": LOGIN, "reason": reason, "issuer": issuer,
                                                 "national_id_type": national_identity.national_id_type,
                                                 "mie_type": national_identity.mie_type})
        session.commit()
        raise error

    link = _live_link_of_subject(session, issuer, sub)
    identity = session.get(Identity, link.identity_id) if link is not None else None
    if link is None or identity is None:
        fail(NotPaired(), "not_paired")
    assert link is not None and identity is not None
    if not identity.is_active:
        fail(AccountNotActive(), AccountNotActive.reason, identity)
    mie_type = national_identity.mie_type
    if mie_type not in NATIONAL_MIE_TYPES:
        fail(NationalMieUnknown(), NationalMieUnknown.reason, identity)
    blocked = session.scalar(select(Mie.id).where(
        Mie.identity_id == identity.id, Mie.type == mie_type,
        (Mie.status == "suspended") | ((Mie.status == "revoked") & (Mie.revoked_at >= link.linked_at))).limit(1))
    if blocked is not None and not mie_services.active_mie_for(session, identity, mie_type):
        fail(NationalMieBlocked(), NationalMieBlocked.reason, identity)
    mie = ensure_national_mie(session, identity, mie_type, actor=identity.user_name, client_ip=client_ip, now=now)
    assert mie is not None
    audit.record(session, tags.AUTHN_PSC_SUCCESS, actor=identity.public_id, subject=identity.public_id,
                 client_ip=client_ip, details={"issuer": issuer, "link": link.public_id, "mie_type": mie_type,
                                               "acr": national_identity.acr, "amr": list(national_identity.amr)})
    session.flush()
    return identity, mie


def _lock_identity(session: Session, identity_id: int) -> None:
    # Serialise pairings of one person (row lock on PostgreSQL, write lock on SQLite).
    session.execute(update(Identity).where(Identity.id == identity_id).values(version=Identity.version)
                    .execution_options(synchronize_session=False))


def _fill_rpps(session: Session, identity: Identity, rpps: str, *, actor: str, client_ip: str | None) -> None:
    """Write the RPPS number through the directory service (validated, unique, journaled)."""
    data = directory.validate_identity({**directory.identity_as_dict(identity), "rpps": rpps},
                                       today=dt.date.today())
    directory.update_identity(session, identity, data, actor=actor, client_ip=client_ip, confirm_homonym=True)
    audit.record(session, tags.NATIONAL_RPPS_FILLED, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details={"rpps": rpps, "source": "psc"})


def complete_pairing(session: Session, identity: Identity, national_identity: psc.NationalIdentity, actor: str, *,
                     client_ip: str | None = None, now: dt.datetime | None = None) -> NationalLink:
    """Link ``identity`` to ``national_identity``; return the live link (the existing one when it is the same).

    Recorded only when SubjectNameID's RPPS equals the directory's RPPS, or — the directory having none — when
    PSC's names match the directory's (the RPPS is then filled in). Ensures the national MIE
    (:func:`ensure_national_mie`) and journals ``national:link:created`` (issuer, method, rpps, acr, amr);
    the caller commits. Raises a :class:`PairingRefused` subclass, journaled ``national:link:refused`` and
    committed, nothing else written.
    """
    now = now or utcnow()
    issuer, sub = national_identity.issuer, national_identity.sub

    def fail(error: PairingRefused, **extra: object) -> NoReturn:
        session.rollback()
        audit.record(session, tags.NATIONAL_LINK_REFUSED, actor=actor, subject=identity.public_id,
                     client_ip=client_ip, outcome="refused",
                     details={"reason": error.reason, "issuer": issuer, "national_id_type":
                              national_identity.national_id_type, **extra})
        session.commit()
        raise error

    _lock_identity(session, identity.id)
    session.refresh(identity)
    if identity.status != "active":
        fail(IdentityNotActive())
    if len(issuer) > 300 or len(sub) > 255:
        fail(PairingRefused(), reason_detail="identifier_too_long")
    rpps = national_identity.rpps
    if rpps is None:
        fail(NotAnRpps())
    assert rpps is not None
    holder = _live_link_of_subject(session, issuer, sub)
    if holder is not None and holder.identity_id != identity.id:
        fail(SubjectLinkedElsewhere())
    current = live_link(session, identity)
    if current is not None:
        if (current.issuer, current.sub) != (issuer, sub):
            fail(AlreadyPaired())
        ensure_national_mie(session, identity, national_identity.mie_type, actor=actor, client_ip=client_ip,
                            now=now)
        session.flush()
        return current  # paired already with this national identity: nothing to record
    if identity.rpps:
        if identity.rpps != rpps:
            fail(RppsMismatch())
        method = METHOD_RPPS
    else:
        other = session.scalar(select(Identity.id).where(Identity.rpps == rpps, Identity.id != identity.id))
        if other is not None:
            fail(RppsHeldByAnother())
        differing = matching.match_names(identity, national_identity.family_name, national_identity.given_name)
        if differing:
            fail(NamesMismatch(), differences=differing)
        method = METHOD_NAMES
        try:
            _fill_rpps(session, identity, rpps, actor=actor, client_ip=client_ip)
        except directory.RppsTaken:
            fail(RppsHeldByAnother())
        except ValidationError as exc:
            fail(PairingRefused("Le numéro RPPS transmis par Pro Santé Connect est invalide."),
                 reason_detail=exc.field or "rpps")
    link = NationalLink(public_id=str(uuid.uuid4()), identity_id=identity.id, issuer=issuer, sub=sub, rpps=rpps,
                        method=method, linked_at=now, linked_by=actor[:200])
    session.add(link)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent pairing took the identity or the (issuer, sub) first (partial unique indexes).
        fail(SubjectLinkedElsewhere())
    ensure_national_mie(session, identity, national_identity.mie_type, actor=actor, client_ip=client_ip, now=now)
    audit.record(session, tags.NATIONAL_LINK_CREATED, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details={"link": link.public_id, "issuer": issuer, "method": method, "rpps": rpps,
                          "acr": national_identity.acr, "amr": list(national_identity.amr),
                          "mie_type": national_identity.mie_type})
    session.flush()
    return link


def unlink(session: Session, public_id: str, actor: str, reason: str, *, client_ip: str | None = None,
           now: dt.datetime | None = None) -> NationalLink:
    """End the live link ``public_id`` (an officer's action, with a reason); return it.

    The person's national MIE are revoked with it (without the link, PSC can no longer sign them in). The
    RPPS number stays in the directory. Journals ``national:link:removed``; the caller commits. Raises
    :class:`ValidationError` (no reason) or :class:`LinkNotFound`.
    """
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationError("Indiquez le motif de la suppression de l'association.", field="reason")
    if len(reason) > REASON_MAX:
        raise ValidationError(f"Le motif ne doit pas dépasser {REASON_MAX} caractères.", field="reason")
    try:
        uuid.UUID(public_id)
    except (ValueError, TypeError, AttributeError):
        raise LinkNotFound() from None
    now = now or utcnow()
    ended = session.execute(update(NationalLink).where(NationalLink.public_id == public_id,
                                                       NationalLink.unlinked_at.is_(None))
                            .values(unlinked_at=now, unlinked_by=actor[:200], unlink_reason=reason)
                            .execution_options(synchronize_session=False))
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkNotFound()
    link = session.scalar(select(NationalLink).where(NationalLink.public_id == public_id)
                          .execution_options(populate_existing=True))
    assert link is not None
    identity = session.get(Identity, link.identity_id)
    assert identity is not None
    for mie in mie_services.active_mie_for(session, identity):
        if mie.type in NATIONAL_MIE_TYPES:
            mie_services.transition(session, mie, "revoked", actor=actor, reason="identité nationale dissociée",
                                    client_ip=client_ip)
    audit.record(session, tags.NATIONAL_LINK_REMOVED, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details={"link": link.public_id, "issuer": link.issuer, "reason": reason})
    session.flush()
    return link


# --- the national MIE -------------------------------------------------------------------------------------------


def ensure_national_mie(session: Session, identity: Identity, mie_type: str | None, *, actor: str,
                        client_ip: str | None = None, now: dt.datetime | None = None) -> Mie | None:
    """Return the person's active MIE of ``mie_type`` (``cps`` or ``e-cps``), creating and activating it when
    missing, proofed by the ANS (``proofing_method="ans"``); None when PSC did not say which MIE was used.
    Its ``last_used_at`` is set to ``now``. Journaled by the MIE service (``mie:cps:…``/``mie:e_cps:…``)."""
    if mie_type not in NATIONAL_MIE_TYPES:
        return None
    assert mie_type is not None
    now = now or utcnow()
    existing = mie_services.active_mie_for(session, identity, mie_type)
    if existing:
        mie = existing[0]
    else:
        mie = mie_services.create_mie(session, identity, mie_type, actor=actor, client_ip=client_ip, notify=False)
        mie.proofing_method = PROOFING_ANS
        mie.proofing_at = now
        mie_services.transition(session, mie, "active", actor=actor, reason="identité nationale (Pro Santé Connect)",
                                client_ip=client_ip)
    mie.last_used_at = now
    session.flush()
    return mie
