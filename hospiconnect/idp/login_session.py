"""The person's single sign-on session: the cookie, its lifetime and its end (SECURITY.md item 19).

The browser holds only a random value (256 bits) in the cookie ``__Host-hc_sso`` (``Secure``, ``HttpOnly``,
``SameSite=Lax``, ``Path=/``, no ``Domain``) — ``hc_sso`` without ``Secure`` outside production, where the
provider may run on plain http on localhost. The database keeps only its keyed hash
(:meth:`hospiconnect.crypto.InstanceKeys.keyed_hash`), so a copy of the database opens no session.

* Every (re-)authentication gives a **new cookie value** (no session fixation); the public session id
  ``sid`` (put in ID tokens and logout tokens) stays the same while the same person re-authenticates.
* A session is alive while it is not ended, younger than ``session_absolute_hours`` since the last
  authentication and used within ``session_idle_minutes``; and while its identity is active. A session
  found dead is **ended** at once: its tokens are revoked and its relying parties notified by back-channel
  logout — a workstation left idle is signed out everywhere, not only at the provider.
* A successful refresh at the token endpoint counts as activity (the person is working in an application
  of the session), see :func:`touch`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators.models import Mie
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.idp import checks
from hospiconnect.idp.models import SessionClient, SsoSession, Token
from hospiconnect.settings import Settings

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

COOKIE_NAME_PRODUCTION = "__Host-hc_sso"
COOKIE_NAME_DEVELOPMENT = "hc_sso"
MAX_COOKIE_LENGTH = 100


def cookie_name(settings: Settings) -> str:
    """Return the cookie name: ``__Host-`` prefixed in production (RFC 6265bis §4.1.3.2)."""
    return COOKIE_NAME_PRODUCTION if settings.is_production else COOKIE_NAME_DEVELOPMENT


def set_cookie(response: "Response", settings: Settings, value: str) -> None:
    """Put the session cookie on ``response``. A browser-session cookie (no ``Max-Age``): closing the
    browser of a shared workstation forgets it; the server enforces the lifetimes anyway."""
    response.set_cookie(cookie_name(settings), value, secure=settings.is_production, httponly=True,
                        samesite="Lax", path="/")


def clear_cookie(response: "Response", settings: Settings) -> None:
    """Remove the session cookie from the browser."""
    response.delete_cookie(cookie_name(settings), secure=settings.is_production, httponly=True,
                           samesite="Lax", path="/")


def resolve_runtime(keys: InstanceKeys | None, settings: Settings | None) -> tuple[InstanceKeys, Settings]:
    """Return ``keys`` and ``settings``, or those of the running application for the ones not given
    (a request context is then needed: the command line passes them explicitly)."""
    if keys is not None and settings is not None:
        return keys, settings
    from hospiconnect import appctx  # only when called from a request without explicit keys

    rt = appctx.runtime()
    return keys or rt.keys, settings or rt.settings


def _amr_json(amr: Iterable[str]) -> str:
    return json.dumps(sorted(set(amr)))


def public_id_of(session: Session, identity_id: int) -> str:
    """Return the public id of the identity ``identity_id`` (for the journal)."""
    identity = session.get(Identity, identity_id, options=ONLY_IDENTITY)  # usually already loaded: no query
    return identity.public_id if identity else str(identity_id)


def open(session: Session, keys: InstanceKeys, settings: Settings, *, identity_id: int, amr: Iterable[str],
         acr: str, mfa: bool, existing: SsoSession | None, client_ip: str | None, user_agent: str | None,
         now: dt.datetime | None = None, recovery_only: bool = False,
         until: dt.datetime | None = None, national_mie: str | None = None) -> tuple[SsoSession, str]:
    """Open or renew the SSO session after an authentication; return ``(session row, cookie value)``.

    The cookie value is always new. With ``existing`` alive and of the same person, the row is kept (same
    ``sid``): its ``auth_time``, ``amr``, ``acr`` and lifetimes are those of this authentication, and
    ``mfa_time`` becomes now when ``mfa``. With ``existing`` of another person, that session is ended
    (reason ``other_person``) and a new one created. Journals ``authn:session:opened``, ``…:renewed`` or
    ``…:raised`` (a second factor added to the session). ``recovery_only``: the person got in with a
    recovery code, the session is for the self-service page only (any later authentication clears it).
    ``until``: the session may not outlive this moment (an emergency credential's expiry).
    ``national_mie``: the national MIE (``cps``, ``e-cps``) of a sign-in through Pro Santé Connect; None for an
    authentication with the establishment's own factors (a renewal by those clears it).
    """
    now = now or utcnow()
    value = secrets.token_urlsafe(32)
    amr = sorted(set(amr))
    expires_at = now + dt.timedelta(hours=settings.session_absolute_hours)
    if until is not None:
        expires_at = min(expires_at, until)
    agent = (user_agent or "")[:300] or None
    public_id = public_id_of(session, identity_id)
    if existing is not None and existing.ended_at is None and existing.identity_id == identity_id:
        raised = mfa and "mfa" not in existing.amr
        existing.id_hash = keys.keyed_hash(value)
        existing.auth_time = now
        existing.amr_json = _amr_json(amr)
        existing.acr = acr
        existing.mfa_time = now if mfa else existing.mfa_time
        existing.last_seen_at = now
        existing.expires_at = expires_at
        existing.recovery_only = recovery_only
        existing.national_mie = national_mie
        existing.client_ip = client_ip
        existing.user_agent = agent
        session.flush()
        audit.record(session, tags.AUTHN_SESSION_RAISED if raised else tags.AUTHN_SESSION_RENEWED,
                     actor=public_id, subject=public_id, client_ip=client_ip,
                     details={"sid": existing.sid, "amr": amr, "acr": acr,
                              **({"recovery_only": True} if recovery_only else {}),
                              **({"national_mie": national_mie} if national_mie else {})})
        return existing, value
    if existing is not None and existing.ended_at is None:
        end(session, existing, reason="other_person", keys=keys, settings=settings, now=now)
    sso = SsoSession(
        id_hash=keys.keyed_hash(value), sid=secrets.token_urlsafe(24), identity_id=identity_id,
        created_at=now, last_seen_at=now, expires_at=expires_at, auth_time=now,
        mfa_time=now if mfa else None, amr_json=_amr_json(amr), acr=acr, client_ip=client_ip, user_agent=agent,
        recovery_only=recovery_only, national_mie=national_mie,
    )
    session.add(sso)
    session.flush()
    audit.record(session, tags.AUTHN_SESSION_OPENED, actor=public_id, subject=public_id, client_ip=client_ip,
                 details={"sid": sso.sid, "amr": amr, "acr": acr,
                          **({"recovery_only": True} if recovery_only else {}),
                          **({"national_mie": national_mie} if national_mie else {})})
    return sso, value


def death_reason(sso: SsoSession, settings: Settings, now: dt.datetime) -> str | None:
    """Return why ``sso`` is no longer usable (``ended``, ``absolute_timeout``, ``idle_timeout``), or None
    when it is alive as far as time goes (the identity's status is checked by :func:`current`)."""
    if sso.ended_at is not None:
        return "ended"
    if now >= sso.expires_at:
        return "absolute_timeout"
    if now - sso.last_seen_at > dt.timedelta(minutes=settings.session_idle_minutes):
        return "idle_timeout"
    return None


def current(session: Session, keys: InstanceKeys, settings: Settings, cookie_value: str | None,
            now: dt.datetime | None = None) -> SsoSession | None:
    """Return the live session the cookie designates, or None; a live session's ``last_seen_at`` is set
    to now (activity).

    None for a missing or unknown value, an ended session, a session past its absolute lifetime or idle
    for longer than ``session_idle_minutes``, and a session whose identity is no longer active (suspended,
    departed): the latter three are ended here and now, with their tokens.
    """
    if not cookie_value or len(cookie_value) > MAX_COOKIE_LENGTH:
        return None
    now = now or utcnow()
    sso = session.scalar(select(SsoSession).where(SsoSession.id_hash == keys.keyed_hash(cookie_value)))
    if sso is None or sso.ended_at is not None:
        return None
    reason = death_reason(sso, settings, now)
    if reason is None:
        identity = session.get(Identity, sso.identity_id, options=ONLY_IDENTITY)
        if identity is None or not identity.is_active:
            reason = "identity_inactive"
    if reason is not None:
        end(session, sso, reason=reason, keys=keys, settings=settings, now=now)
        return None
    touch(session, sso, now)
    return sso


# Activity is recorded at most this often: the idle timeout is counted in minutes, and a person signing in
# to several applications in a row (or a relying party refreshing) need not rewrite the row each time.
TOUCH_GRANULARITY = dt.timedelta(seconds=30)


def touch(session: Session, sso: SsoSession, now: dt.datetime | None = None) -> None:
    """Record activity in ``sso`` (a page with the cookie, or a refresh by one of its relying parties),
    unless activity was recorded less than :data:`TOUCH_GRANULARITY` ago."""
    now = now or utcnow()
    if now - sso.last_seen_at < TOUCH_GRANULARITY:
        return
    sso.last_seen_at = now
    session.flush()


def end(session: Session, sso: SsoSession, *, reason: str, actor: str | None = None,
        keys: InstanceKeys | None = None, settings: Settings | None = None,
        now: dt.datetime | None = None) -> bool:
    """End ``sso``: mark it ended, revoke every token issued in it, and queue a back-channel logout
    (OpenID Connect Back-Channel Logout 1.0 §2.5) for each of its clients that registered a
    ``backchannel_logout_uri``. Journals ``authn:session:ended``.

    ``keys``/``settings`` sign the logout tokens; they default to the running application's. Returns True
    when this call ended the session, False when it was already ended (one conditional UPDATE decides, so
    two concurrent logouts notify the clients once).
    """
    now = now or utcnow()
    done = session.execute(
        update(SsoSession).where(SsoSession.id == sso.id, SsoSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason[:100]).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        return False
    sso.ended_at, sso.end_reason = now, reason[:100]
    revoked = session.execute(
        update(Token).where(Token.session_id == sso.id, Token.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    from hospiconnect.idp import logout  # logout also ends sessions: imported here to avoid a cycle

    keys, settings = resolve_runtime(keys, settings)
    queued = logout.enqueue_backchannel(session, keys, settings, sso, now=now)
    public_id = public_id_of(session, sso.identity_id)
    audit.record(session, tags.AUTHN_SESSION_ENDED, actor=actor or public_id, subject=public_id,
                 details={"sid": sso.sid, "reason": reason, "tokens_revoked": revoked,
                          "backchannel_logouts": len(queued)})
    session.flush()
    return True


def end_all_for_identity(session: Session, identity_id: int, *, reason: str, actor: str | None = None,
                         keys: InstanceKeys | None = None, settings: Settings | None = None) -> int:
    """End every live session of an identity (suspended, departed, an MIE removed); return how many."""
    rows = session.scalars(select(SsoSession).where(SsoSession.identity_id == identity_id,
                                                    SsoSession.ended_at.is_(None))).all()
    return sum(end(session, sso, reason=reason, actor=actor, keys=keys, settings=settings) for sso in rows)


def end_expired(session: Session, keys: InstanceKeys, settings: Settings, *,
                now: dt.datetime | None = None) -> int:
    """End the sessions past their absolute lifetime or idle timeout (periodic job, safe to run twice);
    return how many were ended."""
    now = now or utcnow()
    idle_limit = now - dt.timedelta(minutes=settings.session_idle_minutes)
    rows = session.scalars(select(SsoSession).where(
        SsoSession.ended_at.is_(None),
        (SsoSession.expires_at <= now) | (SsoSession.last_seen_at < idle_limit),
    )).all()
    return sum(end(session, sso, reason=death_reason(sso, settings, now) or "expired", actor="system:jobs",
                   keys=keys, settings=settings, now=now) for sso in rows)


def record_client(session: Session, sso: SsoSession, client_id: str) -> None:
    """Remember that ``client_id`` received a code in ``sso`` (a back-channel logout target)."""
    known = session.scalar(select(SessionClient.id).where(SessionClient.session_id == sso.id,
                                                          SessionClient.client_id == client_id))
    if known is None:
        session.add(SessionClient(session_id=sso.id, client_id=client_id))
        session.flush()


def session_facts(sso: SsoSession | None) -> checks.SessionFacts | None:
    """Return the facts of ``sso`` that :func:`hospiconnect.idp.checks.evaluate` needs."""
    if sso is None:
        return None
    return checks.SessionFacts(identity_id=sso.identity_id, auth_time=sso.auth_time, amr=tuple(sso.amr),
                               acr=sso.acr, mfa_time=sso.mfa_time)


def person_facts(session: Session, identity_id: int | None) -> checks.PersonFacts | None:
    """Return what the person could present: an active second factor, a proofed one, a security key."""
    if identity_id is None:
        return None
    rows = session.execute(select(Mie.type, Mie.proofing_method).where(
        Mie.identity_id == identity_id, Mie.status == "active", Mie.type.in_(("totp", "webauthn")))).all()
    return checks.PersonFacts(
        has_second_factor=bool(rows),
        proofed=any(row.proofing_method for row in rows),
        has_hardware_key=any(row.type == "webauthn" for row in rows),
    )
