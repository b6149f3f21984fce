"""Remote enrollment: an invitation e-mail, then a FranceConnect+ identity check (services, no Flask).

The path of a person (DOMAIN.md: an MIE activated after a FranceConnect+ check is *substantial*):

1. :func:`send_invitation` — an officer (desk or CLI) invites the person of an ``opened`` case: a link with a
   random token (stored only as a keyed hash) goes to the identity's professional e-mail;
2. :func:`find_invitation` — the person opens the link; every refusal (unknown, expired, replaced, already
   used, case closed) is journaled;
3. :func:`begin_fcplus` — a FranceConnect+ authorization request starts: its ``state`` (keyed hash) and
   ``nonce`` are stored with the keyed hash of a random secret kept in the person's browser session;
4. :func:`consume_transaction` — the callback takes the transaction with ONE conditional ``DELETE`` on the
   state and the browser: of two callbacks carrying the same ``state`` exactly one gets it, and a callback
   from another browser gets nothing (the transaction stays for the browser that started it);
5. the caller runs :func:`hospiconnect.enrollment.fcplus.handle_callback`;
6. :func:`complete_fcplus` — the invitation is spent (conditional ``UPDATE … used_at IS NULL``), the
   FranceConnect+ identity (issuer, ``sub``) is stored on the case, the identity-pivot claims are matched
   against the directory (:mod:`hospiconnect.enrollment.matching`); a match verifies the case and starts
   the remote issuance (the person activates an MIE at once), a mismatch rejects the case with the names of
   the differing fields (never their values).

Steps 1–2 live in :mod:`hospiconnect.enrollment.invitations` and are re-exported here, so that callers use
one module. Conventions are those of :mod:`hospiconnect.enrollment.services`: one operation per function,
the caller commits a success; a refusal is journaled and **committed** before its exception is raised.

The enrollment layer may not import :mod:`hospiconnect.devtools` (import-linter layers), so
:func:`fcplus_config` builds the configuration of the real FranceConnect+ only; the web layer substitutes
the local simulator's configuration when ``settings.fcplus_simulator_enabled``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import time
from typing import Callable, NoReturn

from joserfc.jwk import KeySet
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import fcplus, matching
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import (
    ClosedCaseInvitation,
    ExpiredInvitation,
    ReplacedInvitation,
    TransitionRefused,
    UsedInvitation,
)
# The invitation half of the remote enrollment, re-exported: callers use one module.
from hospiconnect.enrollment.invitations import (  # noqa: F401
    ACTOR_PERSON,
    ENROLLABLE_STATUSES,
    INVITATION_STATUS_LABELS_FR,
    TOKEN_RE,
    case_details,
    find_invitation,
    first_name,
    invitation_blocker,
    invitation_status,
    invitation_url,
    invitations_of,
    invite_identity,
    send_invitation,
    subject_of,
)
from hospiconnect.enrollment.models import EnrollmentCase, FcPlusTransaction, Invitation
from hospiconnect.enrollment.provider_cache import ProviderCache
from hospiconnect.errors import HospiConnectError
from hospiconnect.settings import Settings

MIN_BROWSER_SECRET = 32
MAX_STATE_CHARS = 256
CACHE_SECONDS = 600

# The differing fields of a mismatch, as shown to the officer (the names recorded on the case).
DIFFERENCE_LABELS_FR = {
    "birth_family_name": "nom de naissance",
    "given_names": "prénoms",
    "birth_date": "date de naissance",
    "birth_place": "commune de naissance",
    "birth_country": "pays de naissance",
    "gender": "sexe",
}


# --- addresses ----------------------------------------------------------------------------------------------


def callback_url(issuer: str) -> str:
    """Return the redirect URI to declare at FranceConnect+."""
    return f"{issuer.rstrip('/')}/activation/franceconnect/retour"


def post_logout_url(issuer: str) -> str:
    """Return the post-logout redirect URI to declare at FranceConnect+."""
    return f"{issuer.rstrip('/')}/activation/franceconnect/deconnexion"


def jwks_url(issuer: str) -> str:
    """Return the URL of this instance's public encryption keys (to declare at FranceConnect+)."""
    return f"{issuer.rstrip('/')}/franceconnect/jwks.json"


def fcplus_config(settings: Settings) -> fcplus.FcPlusConfig:
    """Return the client configuration of the real FranceConnect+ (``HOSPICONNECT_FCPLUS_*`` settings).

    Raises :class:`fcplus.FcPlusConfigurationError` when it is not configured (the simulator, if any, is
    chosen by the web layer: see the module docstring)."""
    if not settings.fcplus_discovery_url:
        raise fcplus.FcPlusConfigurationError("HOSPICONNECT_FCPLUS_DISCOVERY_URL n'est pas défini")
    return fcplus.FcPlusConfig(
        discovery_url=settings.fcplus_discovery_url, client_id=settings.fcplus_client_id,
        client_secret=settings.fcplus_client_secret, redirect_uri=callback_url(settings.issuer),
        acr_values=settings.fcplus_acr_values, token_auth_method=settings.fcplus_token_auth_method)


# --- provider metadata, cached in process --------------------------------------------------------------------

# Discovery and the provider's signing keys change rarely; fetching them at every sign-in would add two
# round trips to FranceConnect+ per callback. Nothing here needs to be shared between processes: each one
# refetches after CACHE_SECONDS, and a signature failure drops the keys so a rotation heals on the next try.
_cache: ProviderCache[fcplus.Discovery, KeySet] = ProviderCache(CACHE_SECONDS)


def discovery_for(config: fcplus.FcPlusConfig, fetch: fcplus.Fetch = fcplus.urllib_fetch, *,
                  clock: Callable[[], float] = time.monotonic) -> fcplus.Discovery:
    """Return the provider's discovery document, cached :data:`CACHE_SECONDS` per discovery URL."""
    return _cache.discovery(config.discovery_url, lambda: fcplus.load_discovery(config, fetch), clock=clock)


def provider_keys_for(config: fcplus.FcPlusConfig, discovery: fcplus.Discovery,
                      fetch: fcplus.Fetch = fcplus.urllib_fetch, *,
                      clock: Callable[[], float] = time.monotonic) -> KeySet:
    """Return the provider's public signature keys, cached :data:`CACHE_SECONDS` per discovery URL."""
    return _cache.keys(config.discovery_url, lambda: fcplus.load_provider_jwks(discovery, fetch), clock=clock)


def forget_provider_keys(discovery_url: str) -> None:
    """Drop the cached signature keys of a provider (after a signature failure: they may have rotated)."""
    _cache.forget_keys(discovery_url)


def clear_caches() -> None:
    """Forget every cached discovery document and key set."""
    _cache.clear()


# --- hashes ------------------------------------------------------------------------------------------------


def _state_hash(keys: InstanceKeys, state: str) -> str:
    return keys.keyed_hash("fcplus-state:" + state)


def _browser_hash(keys: InstanceKeys, browser_secret: str) -> str:
    return keys.keyed_hash("fcplus-browser:" + browser_secret)


def new_browser_secret() -> str:
    """Return a new random secret to keep in the person's browser session (see :func:`begin_fcplus`)."""
    return secrets.token_urlsafe(32)


# --- the FranceConnect+ transaction -------------------------------------------------------------------------


class ForeignBrowser(fcplus.StateMismatch):
    """The callback arrived in another browser than the one that started the check."""

    message = ("Cette réponse de FranceConnect+ est arrivée dans un autre navigateur que celui où la "
               "vérification a commencé. Recommencez depuis le lien de votre invitation, dans un seul navigateur.")


def begin_fcplus(session: Session, keys: InstanceKeys, config: fcplus.FcPlusConfig, discovery: fcplus.Discovery,
                 token: object, *, browser_secret: str, client_ip: str | None = None,
                 now: dt.datetime | None = None) -> str:
    """Start the FranceConnect+ check of the invitation ``token``; return the URL to send the person to.

    A :class:`FcPlusTransaction` is stored: the keyed hash of the ``state``, the ``nonce``, the issuer and
    requested ``acr``, the case and invitation, and the keyed hash of ``browser_secret`` (a random value the
    caller keeps in the person's browser session: only that browser can complete the check). It lives
    ``config.transaction_max_age``. An earlier pending transaction of this invitation in this browser is
    replaced. Journals ``enrollment:fcplus:started`` (the caller commits). Raises the refusals of
    :func:`find_invitation`.
    """
    if not isinstance(browser_secret, str) or len(browser_secret) < MIN_BROWSER_SECRET:
        raise ValueError("browser_secret must be a random value of at least 32 characters")
    now = now or utcnow()
    invitation, case = find_invitation(session, keys, token, client_ip=client_ip, now=now, mark_opened=True)
    url, transaction = fcplus.build_authorization_request(config, discovery, now=now)
    browser_hash = _browser_hash(keys, browser_secret)
    session.execute(delete(FcPlusTransaction).where(FcPlusTransaction.invitation_id == invitation.id,
                                                    FcPlusTransaction.browser_hash == browser_hash)
                    .execution_options(synchronize_session=False))
    session.add(FcPlusTransaction(
        state_hash=_state_hash(keys, transaction.state), browser_hash=browser_hash, nonce=transaction.nonce,
        issuer=transaction.issuer[:300], acr_values=transaction.acr_values, case_id=case.id,
        invitation_id=invitation.id, created_at=transaction.created_at,
        expires_at=transaction.created_at + config.transaction_max_age))
    audit.record(session, tags.ENROLLMENT_FCPLUS_STARTED, actor=ACTOR_PERSON, subject=subject_of(session, case),
                 client_ip=client_ip, details=case_details(case, invitation=invitation.id, issuer=transaction.issuer,
                                                            acr_values=transaction.acr_values))
    session.flush()
    return url


@dataclasses.dataclass(frozen=True)
class PendingCheck:
    """A consumed transaction: what the callback needs to finish the check."""

    case_id: int
    invitation_id: int | None
    transaction: fcplus.TransactionState


def record_fcplus_failure(session: Session, error: Exception, *, case: EnrollmentCase | None = None,
                          reason: str | None = None, client_ip: str | None = None) -> None:
    """Journal a failed FranceConnect+ step (``enrollment:fcplus:failed``: the error's class and its short
    French detail, never a token) and commit it. Call with nothing else pending in ``session``."""
    details: dict[str, object] = {"error": error.__class__.__name__}
    if reason:
        details["reason"] = reason
    detail = getattr(error, "detail", None)
    if isinstance(detail, str) and detail:
        # The detail may quote the provider's error parameter: printable text only, bounded.
        details["detail"] = "".join(ch for ch in detail[:200] if ch.isprintable())
    audit.record(session, tags.ENROLLMENT_FCPLUS_FAILED, actor=ACTOR_PERSON, subject=subject_of(session, case),
                 client_ip=client_ip, outcome="failure", details=case_details(case, **details))
    session.commit()


def consume_transaction(session: Session, keys: InstanceKeys, state: object, browser_secret: object, *,
                        client_ip: str | None = None, now: dt.datetime | None = None) -> PendingCheck:
    """Take the transaction of the callback's ``state`` for this browser; return it as a :class:`PendingCheck`.

    The row is removed by ONE statement, ``DELETE … WHERE state_hash = :h AND browser_hash = :b``, whose row
    count decides: of two callbacks with the same ``state`` exactly one proceeds, even from two processes.
    A callback from another browser removes nothing, so it cannot spend the person's transaction. The
    caller commits at once, before calling FranceConnect+.

    Raises :class:`fcplus.StateMismatch` (no such transaction: unknown, replayed or purged),
    :class:`ForeignBrowser` (the transaction belongs to another browser) or
    :class:`fcplus.TransactionExpired` — each journaled ``enrollment:fcplus:failed`` and committed.
    """
    now = now or utcnow()

    def fail(error: fcplus.FcPlusError, reason: str, case_id: int | None = None) -> NoReturn:
        session.rollback()
        case = session.get(EnrollmentCase, case_id) if case_id is not None else None
        record_fcplus_failure(session, error, case=case, reason=reason, client_ip=client_ip)
        raise error

    if not isinstance(state, str) or not state or len(state) > MAX_STATE_CHARS:
        fail(fcplus.StateMismatch(), "unknown_state")
    assert isinstance(state, str)
    state_hash = _state_hash(keys, state)
    row = session.scalar(select(FcPlusTransaction).where(FcPlusTransaction.state_hash == state_hash)
                         .execution_options(populate_existing=True))
    if row is None:
        fail(fcplus.StateMismatch(), "unknown_state")
    assert row is not None
    pending = PendingCheck(
        case_id=row.case_id, invitation_id=row.invitation_id,
        transaction=fcplus.TransactionState(state=state, nonce=row.nonce, issuer=row.issuer,
                                            created_at=row.created_at, acr_values=row.acr_values))
    expires_at = row.expires_at
    browser_hash = (_browser_hash(keys, browser_secret)
                    if isinstance(browser_secret, str) and len(browser_secret) >= MIN_BROWSER_SECRET else None)
    if browser_hash is None or browser_hash != row.browser_hash:
        fail(ForeignBrowser(), "foreign_browser", row.case_id)
    session.expunge(row)
    taken = session.execute(
        delete(FcPlusTransaction).where(FcPlusTransaction.state_hash == state_hash,
                                        FcPlusTransaction.browser_hash == browser_hash)
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        fail(fcplus.StateMismatch(), "replayed", pending.case_id)
    if expires_at <= now:
        # Spent anyway: an expired transaction is never retried.
        session.commit()
        fail(fcplus.TransactionExpired(), "expired", pending.case_id)
    return pending


def purge_expired_transactions(session: Session, now: dt.datetime | None = None) -> int:
    """Delete the FranceConnect+ transactions past their expiry (abandoned checks); return how many."""
    result = session.execute(delete(FcPlusTransaction).where(FcPlusTransaction.expires_at <= (now or utcnow()))
                             .execution_options(synchronize_session=False))
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- the outcome --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    """What a completed FranceConnect+ check decided for the case."""

    case: EnrollmentCase
    matched: bool
    fields: list[str]
    presumed_birth_date: bool = False


def complete_fcplus(session: Session, case: EnrollmentCase, verified: fcplus.VerifiedIdentity, *, actor: str,
                    invitation_id: int | None = None, client_ip: str | None = None,
                    now: dt.datetime | None = None) -> CheckOutcome:
    """Record a successful FranceConnect+ callback for ``case``; return the :class:`CheckOutcome`.

    The invitation used is spent with one conditional UPDATE (``used_at IS NULL``, not replaced), the
    FranceConnect+ identity (issuer, ``sub``) is stored on the case, and the identity-pivot claims are
    matched against the directory. A match moves the case to ``identity_verified`` then ``mie_issued``
    without an activation code (the person activates an MIE right away); a mismatch moves it to
    ``rejected`` with the names of the differing fields. Journals ``enrollment:fcplus:completed`` (issuer,
    acr, amr, matched, differing fields — no claim value) and the case's own steps; the caller commits.

    Raises :class:`ClosedCaseInvitation` (the case was closed, expired or moved meanwhile, or the person
    was suspended), :class:`UsedInvitation` or :class:`ReplacedInvitation`, or :class:`TransitionRefused`
    (a concurrent change) — each journaled ``enrollment:fcplus:failed`` and committed, nothing else written.
    """
    now = now or utcnow()

    def fail(error: HospiConnectError, reason: str) -> NoReturn:
        session.rollback()
        fresh = session.get(EnrollmentCase, case.id)
        record_fcplus_failure(session, error, case=fresh, reason=reason, client_ip=client_ip)
        raise error

    session.refresh(case)
    identity = session.get(Identity, case.identity_id, populate_existing=True)
    assert identity is not None
    if case.state != wf.OPENED:
        fail(ClosedCaseInvitation(), f"case_{case.state}")
    if case.expires_at <= now:
        fail(ExpiredInvitation(), "case_expired")
    if identity.status not in ENROLLABLE_STATUSES:
        fail(ClosedCaseInvitation(), f"identity_{identity.status}")
    if len(verified.issuer) > 300 or len(verified.sub) > 255:
        fail(ClosedCaseInvitation(), "identifier_too_long")
    if invitation_id is not None:
        spent = session.execute(
            update(Invitation).where(Invitation.id == invitation_id, Invitation.case_id == case.id,
                                     Invitation.used_at.is_(None), Invitation.revoked_at.is_(None))
            .values(used_at=now).execution_options(synchronize_session=False))
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            revoked = session.scalar(select(Invitation.revoked_at).where(Invitation.id == invitation_id))
            if revoked is not None:
                fail(ReplacedInvitation(), "replaced")
            fail(UsedInvitation(), "used")
    result = matching.match_identity(matching.identity_facts(identity), verified.claims)
    try:
        case.fcplus_issuer = verified.issuer
        case.fcplus_sub = verified.sub
        enrollment.record_fcplus_check(session, case, matched=result.matched, differences=result.fields,
                                       actor=actor, checked_at=now, acr=verified.acr, client_ip=client_ip, now=now)
        if result.matched:
            enrollment.start_remote_issuance(session, case, actor=actor, client_ip=client_ip, now=now)
    except TransitionRefused as exc:
        fail(exc, "transition_refused")
    audit.record(session, tags.ENROLLMENT_FCPLUS_COMPLETED, actor=actor, subject=identity.public_id,
                 client_ip=client_ip, outcome="success" if result.matched else "refused",
                 details=case_details(case, issuer=verified.issuer, acr=verified.acr, amr=verified.amr,
                                       matched=result.matched, differences=result.fields,
                                       presumed_birth_date=result.presumed_birth_date))
    session.flush()
    return CheckOutcome(case=case, matched=result.matched, fields=result.fields,
                        presumed_birth_date=result.presumed_birth_date)


def rejection_fields(case: EnrollmentCase) -> list[str]:
    """Return the French labels of the fields that differed when a FranceConnect+ check rejected ``case``."""
    return [DIFFERENCE_LABELS_FR.get(str(name), str(name)) for name in case.rejection_reasons]

