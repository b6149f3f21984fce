"""Logout: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel logout
(OpenID Connect Back-Channel Logout 1.0).

**RP-initiated** (``/logout``, GET or POST): ``id_token_hint`` is verified (signature by
:func:`hospiconnect.idp.keys.verify`, ``iss``, the client among its ``aud``; an expired one is accepted,
§2); ``post_logout_redirect_uri`` must be registered for that client, exactly — otherwise a French page and
no redirect (§3, no open redirector); ``state`` is echoed. The session ended is the browser's (cookie), or,
without cookie, the one the hint's ``sid`` names. Without a hint matching the browser's session the person
is asked to confirm (§2: the OP MUST ask then), so a third-party page cannot sign people out.

**Back-channel**: when a session ends (logout, timeout, suspension…), every client that received a code in
it and registered a ``backchannel_logout_uri`` gets a logout token (§2.4: ``typ`` ``logout+jwt``, ``iss``,
``aud``, ``iat``, ``exp``, ``jti``, ``sid``, ``sub``, ``events`` with the back-channel logout event, never a
``nonce``), stored in ``oidc_backchannel_deliveries`` and POSTed (``logout_token`` form field, §2.5) by
:func:`deliver_backchannel`: right after the logout (best effort, short timeout), then by the periodic job,
with backoff, until the token would have expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.idp import clients, login_session, oidc
from hospiconnect.idp import keys as keys_mod
from hospiconnect.idp.models import BackchannelDelivery, Client, SessionClient, SsoSession
from hospiconnect.settings import Settings

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: Lifetime of a logout token; retries stop before it (a relying party refuses an expired one).
LOGOUT_TOKEN_SECONDS = 600
#: Delay before the next attempt after the 1st, 2nd… failure; after the last one, the delivery is abandoned.
RETRY_DELAYS_SECONDS: tuple[int, ...] = (15, 30, 60, 120, 240)
MAX_ATTEMPTS = len(RETRY_DELAYS_SECONDS) + 1
#: While one worker delivers a row, others skip it for this long.
LEASE_SECONDS = 60

#: ``http_post(uri, form_fields, timeout) -> HTTP status``; raises OSError on network failure.
HttpPost = Callable[[str, dict[str, str], float], int]


# --- back-channel logout --------------------------------------------------------------------------------

def logout_token(session: Session, keys: InstanceKeys, settings: Settings, *, client: Client, sub: str,
                 sid: str, now: dt.datetime | None = None) -> str:
    """Return a signed logout token for ``client`` (Back-Channel Logout §2.4), with the client's ID token
    algorithm."""
    now = now or utcnow()
    claims = {"iss": settings.issuer, "aud": client.client_id, "iat": now,
              "exp": now + dt.timedelta(seconds=LOGOUT_TOKEN_SECONDS), "jti": secrets.token_urlsafe(16),
              "sub": sub, "sid": sid, "events": {BACKCHANNEL_EVENT: {}}}
    return keys_mod.sign(session, keys, claims, alg=oidc.id_token_alg(session, client), typ="logout+jwt")


def enqueue_backchannel(session: Session, keys: InstanceKeys, settings: Settings, sso: SsoSession, *,
                        now: dt.datetime | None = None) -> list[BackchannelDelivery]:
    """Queue a logout token for every client of ``sso`` that registered a ``backchannel_logout_uri``;
    return the deliveries created (not sent yet)."""
    now = now or utcnow()
    identity = session.get(Identity, sso.identity_id)
    client_ids = session.scalars(select(SessionClient.client_id).where(SessionClient.session_id == sso.id)).all()
    created: list[BackchannelDelivery] = []
    for client_id in dict.fromkeys(client_ids):
        client = clients.get_client(session, client_id)
        if client is None or not client.backchannel_logout_uri or identity is None:
            continue
        delivery = BackchannelDelivery(
            client_id=client_id, uri=client.backchannel_logout_uri, created_at=now, next_attempt_at=now,
            logout_token=logout_token(session, keys, settings, client=client, sub=identity.public_id,
                                      sid=sso.sid, now=now))
        session.add(delivery)
        created.append(delivery)
    session.flush()
    return created


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect is a failed delivery
        return None


def urllib_post(uri: str, fields: dict[str, str], timeout: float) -> int:
    """POST ``fields`` form-encoded to ``uri`` and return the HTTP status (redirects not followed)."""
    if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
        raise OSError("unsupported scheme")
    request = urllib.request.Request(uri, data=urllib.parse.urlencode(fields).encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Cache-Control": "no-cache"})
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def deliver_backchannel(session: Session, now: dt.datetime | None = None, http_post: HttpPost | None = None,
                        *, ids: Iterable[int] | None = None, limit: int = 100,
                        timeout: float = 5.0) -> dict[str, int]:
    """POST the due logout tokens (Back-Channel Logout §2.5) and return ``{"delivered", "failed",
    "abandoned", "skipped"}``.

    A 2xx answer delivers; anything else (status, network error, timeout) schedules a retry after
    :data:`RETRY_DELAYS_SECONDS`, and the delivery is abandoned after :data:`MAX_ATTEMPTS`. Each row is
    leased by one conditional UPDATE before the HTTP call, so two workers never send the same one at the
    same time. **Commits** after each lease and each result: no transaction stays open during an HTTP call,
    and a crash loses no outcome — call it with nothing else pending in ``session``.
    """
    now = now or utcnow()
    post = http_post or urllib_post
    stats = {"delivered": 0, "failed": 0, "abandoned": 0, "skipped": 0}
    stmt = (select(BackchannelDelivery.id, BackchannelDelivery.next_attempt_at)
            .where(BackchannelDelivery.delivered_at.is_(None), BackchannelDelivery.attempts < MAX_ATTEMPTS,
                   BackchannelDelivery.next_attempt_at <= now)
            .order_by(BackchannelDelivery.next_attempt_at, BackchannelDelivery.id).limit(limit))
    if ids is not None:
        stmt = stmt.where(BackchannelDelivery.id.in_(list(ids)))
    due = session.execute(stmt).all()
    for row_id, next_at in due:
        leased = session.execute(
            update(BackchannelDelivery)
            .where(BackchannelDelivery.id == row_id, BackchannelDelivery.delivered_at.is_(None),
                   BackchannelDelivery.next_attempt_at == next_at)
            .values(next_attempt_at=now + dt.timedelta(seconds=LEASE_SECONDS))
            .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        session.commit()
        if not leased:
            stats["skipped"] += 1
            continue
        delivery = session.get(BackchannelDelivery, row_id)
        assert delivery is not None
        try:
            status = post(delivery.uri, {"logout_token": delivery.logout_token}, timeout)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (OSError, ValueError) as exc:  # URLError, timeouts and refused connections are OSError
            error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
        delivery.attempts += 1
        if error is None:
            delivery.delivered_at = now
            delivery.last_error = None
            stats["delivered"] += 1
            audit.record(session, tags.OIDC_BACKCHANNEL_DELIVERED, actor="system", details={
                "client_id": delivery.client_id, "attempts": delivery.attempts})
        else:
            delivery.last_error = error[:300]
            abandoned = delivery.attempts >= MAX_ATTEMPTS
            if not abandoned:
                delivery.next_attempt_at = now + dt.timedelta(seconds=RETRY_DELAYS_SECONDS[delivery.attempts - 1])
            stats["abandoned" if abandoned else "failed"] += 1
            audit.record(session, tags.OIDC_BACKCHANNEL_FAILED, actor="system", outcome="failure", details={
                "client_id": delivery.client_id, "attempts": delivery.attempts, "error": error[:200],
                "abandoned": abandoned})
        session.commit()
    return stats


# --- RP-initiated logout --------------------------------------------------------------------------------

class LogoutRefused(Exception):
    """The logout request cannot be honoured as asked: a French page, no redirect."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message, self.reason = message, reason


@dataclasses.dataclass(frozen=True)
class LogoutRequest:
    """A validated logout request (RP-Initiated Logout §2)."""

    client: Client | None
    post_logout_redirect_uri: str | None
    state: str | None
    #: ``sub`` and ``sid`` of a verified ``id_token_hint``.
    hint_sub: str | None = None
    hint_sid: str | None = None


def _param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return value if isinstance(value, str) and value else None


def validate_logout(session: Session, settings: Settings, params: Mapping[str, Any]) -> LogoutRequest:
    """Validate ``id_token_hint``, ``client_id``, ``post_logout_redirect_uri`` and ``state``.

    Raises :class:`LogoutRefused` for a hint that does not verify or was not issued by this provider, a
    ``client_id`` not among the hint's audience, an unknown client, or a ``post_logout_redirect_uri``
    that is not registered for the client (or without any client to check it against).
    """
    hint = _param(params, "id_token_hint")
    client_id = _param(params, "client_id")
    redirect = _param(params, "post_logout_redirect_uri")
    state = _param(params, "state")
    hint_sub = hint_sid = None
    if hint is not None:
        try:
            claims = keys_mod.verify(session, hint)  # signature only: an expired hint is fine (§2)
        except keys_mod.InvalidSignature:
            raise LogoutRefused("Le jeton transmis par l'application est invalide : la déconnexion ne peut pas "
                                "être traitée automatiquement. Fermez votre navigateur pour terminer votre "
                                "session.", "invalid_id_token_hint") from None
        aud = claims.get("aud")
        audiences = [a for a in (aud if isinstance(aud, list) else [aud]) if isinstance(a, str)]
        if claims.get("iss") != settings.issuer or not audiences:
            raise LogoutRefused("Le jeton transmis par l'application n'a pas été émis par HospiConnect.",
                                "foreign_id_token_hint")
        if client_id is not None and client_id not in audiences:
            raise LogoutRefused("Le jeton transmis ne correspond pas à l'application.", "client_id_mismatch")
        client_id = client_id or (claims.get("azp") if isinstance(claims.get("azp"), str) else audiences[0])
        hint_sub = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        hint_sid = claims.get("sid") if isinstance(claims.get("sid"), str) else None
    client = clients.get_client(session, client_id) if client_id else None
    if client_id is not None and client is None:
        raise LogoutRefused("L'application qui demande la déconnexion n'est pas connue de HospiConnect.",
                            "unknown_client")
    if redirect is not None:
        if client is None:
            raise LogoutRefused("L'application n'est pas identifiée : le retour vers l'adresse demandée est "
                                "refusé.", "redirect_without_client")
        if redirect not in client.post_logout_redirect_uris:
            raise LogoutRefused("L'adresse de retour demandée n'est pas enregistrée pour cette application : "
                                "le retour est refusé par sécurité.", "unregistered_post_logout_redirect_uri")
    return LogoutRequest(client=client, post_logout_redirect_uri=redirect, state=state,
                         hint_sub=hint_sub, hint_sid=hint_sid)


def target_session(session: Session, request: LogoutRequest, browser_sso: SsoSession | None
                   ) -> tuple[SsoSession | None, bool]:
    """Return ``(session to end, confirmation needed)``.

    The browser's session is ended at once when the hint names it (same ``sid``, or same person); without
    such a hint the person must confirm. Without a browser session, the session named by the hint's
    ``sid`` (and of the hint's person) is ended.
    """
    if browser_sso is not None:
        person = session.get(Identity, browser_sso.identity_id)
        matches = request.hint_sub is not None and person is not None and (
            request.hint_sid == browser_sso.sid or request.hint_sub == person.public_id)
        return browser_sso, not matches
    if request.hint_sid and request.hint_sub:
        sso = session.scalar(select(SsoSession).join(Identity, Identity.id == SsoSession.identity_id).where(
            SsoSession.sid == request.hint_sid, SsoSession.ended_at.is_(None),
            Identity.public_id == request.hint_sub))
        return sso, False
    return None, False


def finish(session: Session, keys: InstanceKeys, settings: Settings, request: LogoutRequest,
           sso: SsoSession | None, *, client_ip: str | None) -> tuple[str | None, list[int]]:
    """End ``sso`` (when given) and journal the logout. Returns ``(redirect location or None, ids of the
    back-channel deliveries queued)`` — the location carries ``state`` (RP-Initiated Logout §3)."""
    pending = select(BackchannelDelivery.id).where(BackchannelDelivery.delivered_at.is_(None))
    before = set(session.scalars(pending))
    person = session.get(Identity, sso.identity_id) if sso is not None else None
    if sso is not None:
        login_session.end(session, sso, reason="logout", keys=keys, settings=settings)
    queued = [i for i in session.scalars(pending) if i not in before]  # the deliveries this logout queued
    client_id = request.client.client_id if request.client else None
    audit.record(session, tags.OIDC_LOGOUT_COMPLETED,
                 actor=person.public_id if person else f"client:{client_id or '?'}",
                 subject=person.public_id if person else None, client_ip=client_ip,
                 details={"client_id": client_id, "sid": sso.sid if sso else None, "session_ended": sso is not None})
    location = None
    if request.post_logout_redirect_uri:
        location = oidc.add_query(request.post_logout_redirect_uri, {"state": request.state})
    return location, queued


def journal_refusal(session: Session, *, reason: str, client_ip: str | None) -> None:
    """Journal a refused logout request (``oidc:logout:refused``)."""
    audit.record(session, tags.OIDC_LOGOUT_REFUSED, actor="anonymous", client_ip=client_ip, outcome="refused",
                 details={"reason": reason})
