"""Authorization codes, access tokens and refresh tokens: creation, single use, revocation.

Every one of them is an **opaque** random value of 256 bits; the database keeps only its keyed hash
(HMAC-SHA256 under the instance key), so a copy of the database redeems nothing.

Access tokens are opaque rather than JWTs (RFC 9068) on purpose: a resource server learns whether a token
is still good through introspection (RFC 7662, ``/introspect``), so a revocation — logout, suspended
identity, a reused code or refresh token — takes effect at once instead of when a self-contained token
expires; and no personal data travels inside tokens. Their lifetime is ``access_token_minutes``.

Single use is decided by **one conditional UPDATE** whose row count answers (DESIGN.md, atomicity across
processes), never by reading then writing:

* a code is redeemed by ``UPDATE … SET used_at=now WHERE id=… AND used_at IS NULL AND expires_at > now``;
  a second redemption finds it used: ``invalid_grant`` and every token issued from the code is revoked
  (RFC 6749 §4.1.2, RFC 9700 §4.14);
* a refresh token is rotated by ``UPDATE … SET used_at=now WHERE id=… AND used_at IS NULL AND revoked_at
  IS NULL``; presenting a used one revokes the whole family (RFC 9700 §4.14.2).

Tokens of one grant (the code exchange and every refresh after it) share a ``family_id``; refresh tokens
carry ``family_expires_at`` = first issue + ``refresh_token_hours``, an absolute lifetime that rotation
does not extend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from typing import Any, Iterable

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.idp.models import AuthorizationCode, Token
from hospiconnect.settings import Settings

MAX_TOKEN_LENGTH = 200


def new_value() -> str:
    """Return a fresh code or token value: 256 random bits, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def _usable_value(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TOKEN_LENGTH


# --- authorization codes (RFC 6749 §4.1.2) --------------------------------------------------------------

def create_code(session: Session, keys: InstanceKeys, settings: Settings, *, client_id: str, identity_id: int,
                session_id: int | None, redirect_uri: str, scope: str, nonce: str | None,
                code_challenge: str, claims: dict | None, auth_time: dt.datetime, acr: str,
                amr: Iterable[str], now: dt.datetime | None = None) -> tuple[str, AuthorizationCode]:
    """Store a new authorization code bound to the client, the redirect URI and the PKCE challenge, valid
    ``settings.code_seconds`` (at most 60 s); return ``(code value, row)``."""
    now = now or utcnow()
    value = new_value()
    row = AuthorizationCode(
        code_hash=keys.keyed_hash(value), client_id=client_id, identity_id=identity_id, session_id=session_id,
        redirect_uri=redirect_uri, scope=scope, nonce=nonce, code_challenge=code_challenge,
        code_challenge_method="S256", claims_json=json.dumps(claims) if claims else None, auth_time=auth_time,
        acr=acr, amr_json=json.dumps(sorted(set(amr))), created_at=now,
        expires_at=now + dt.timedelta(seconds=min(60, settings.code_seconds)),
    )
    session.add(row)
    session.flush()
    return value, row


def find_code(session: Session, keys: InstanceKeys, value: object) -> AuthorizationCode | None:
    """Return the code row for ``value`` (used or not, expired or not), or None."""
    if not _usable_value(value):
        return None
    return session.scalar(select(AuthorizationCode).where(
        AuthorizationCode.code_hash == keys.keyed_hash(value)))  # type: ignore[arg-type]


def redeem_code(session: Session, code: AuthorizationCode, now: dt.datetime | None = None) -> bool:
    """Mark ``code`` used — one conditional UPDATE. Returns True for the one caller that redeemed it, False
    when it was already used or has expired."""
    now = now or utcnow()
    done = session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code.id, AuthorizationCode.used_at.is_(None),
               AuthorizationCode.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if done:
        # Already written by the UPDATE: record it as loaded state, or the ORM would write it again.
        set_committed_value(code, "used_at", now)
    return bool(done)


def lock_code(session: Session, code: AuthorizationCode) -> AuthorizationCode:
    """Lock the code's row until commit and return it re-read.

    Every request about one code waits here, before anything else is written (the journal included): two
    concurrent redemptions are then decided one after the other — the second sees the code used and
    revokes what the first obtained — instead of deadlocking on the token rows and the journal's lock.
    """
    return session.scalars(select(AuthorizationCode).where(AuthorizationCode.id == code.id).with_for_update()
                           .execution_options(populate_existing=True)).one()


def _family_head(family_id: Any):  # type: ignore[no-untyped-def]
    # The family's first row stands for the whole family: every operation on a family locks it first.
    return select(func.min(Token.id)).where(Token.family_id == family_id).scalar_subquery()


def lock_family(session: Session, family_id: str) -> None:
    """Lock one grant's tokens until commit: rotation, reuse and revocation of one family are serialised
    before any journal write. Only the family's first row is locked — whatever the family's length — and
    everything that changes a family takes it first, so a statement run after it sees every token the
    family had when the lock was granted."""
    session.execute(select(Token.id).where(Token.id == _family_head(family_id)).with_for_update())


def find_refresh_token_locked(session: Session, keys: InstanceKeys, value: object) -> Token | None:
    """Return the refresh token for ``value`` with its family locked (see :func:`lock_family`), read after
    the lock was granted — one statement; None when there is no such refresh token."""
    if not _usable_value(value):
        return None
    token_hash = keys.keyed_hash(value)  # type: ignore[arg-type]
    own = select(Token.id).where(Token.token_hash == token_hash, Token.kind == "refresh").scalar_subquery()
    family = select(Token.family_id).where(Token.id == own).scalar_subquery()
    rows = session.scalars(
        select(Token).where(Token.id.in_([own, _family_head(family)])).order_by(Token.id).with_for_update()
        .execution_options(populate_existing=True)).all()
    return next((row for row in rows if row.token_hash == token_hash), None)


def revoke_code_tokens(session: Session, code_id: int, now: dt.datetime | None = None) -> int:
    """Revoke every token issued from the code ``code_id``, including the tokens its refresh tokens were
    exchanged for (same family); return how many were revoked."""
    now = now or utcnow()
    families = select(Token.family_id).where(Token.code_id == code_id).scalar_subquery()
    return session.execute(
        update(Token).where(or_(Token.code_id == code_id, Token.family_id.in_(families)),
                            Token.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]


# --- access and refresh tokens --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Grant:
    """What a family of tokens was granted: the person, the session, how they authenticated."""

    client_id: str
    identity_id: int
    session_id: int | None
    scope: str
    auth_time: dt.datetime
    acr: str
    amr: tuple[str, ...]
    code_id: int | None = None
    family_id: str | None = None
    family_expires_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Issued:
    """Token values returned once to the client."""

    access_token: str
    expires_in: int
    refresh_token: str | None
    access_row: Token
    refresh_row: Token | None


def issue(session: Session, keys: InstanceKeys, settings: Settings, grant: Grant, *, access_scope: str,
          with_refresh: bool, now: dt.datetime | None = None) -> Issued:
    """Store a new access token (scope ``access_scope``, lifetime ``access_token_minutes``) and, when
    ``with_refresh``, a refresh token carrying the grant's full scope; both in the grant's family (a new
    one when ``grant.family_id`` is None). Returns the values."""
    now = now or utcnow()
    family_id = grant.family_id or secrets.token_urlsafe(24)
    family_expires_at = grant.family_expires_at or now + dt.timedelta(hours=settings.refresh_token_hours)
    expires_in = settings.access_token_minutes * 60
    common = dict(family_id=family_id, code_id=grant.code_id, client_id=grant.client_id,
                  identity_id=grant.identity_id, session_id=grant.session_id, auth_time=grant.auth_time,
                  acr=grant.acr, amr_json=json.dumps(sorted(set(grant.amr))), created_at=now)
    access_value = new_value()
    access = Token(kind="access", token_hash=keys.keyed_hash(access_value), scope=access_scope,
                   expires_at=now + dt.timedelta(seconds=expires_in), **common)
    session.add(access)
    refresh_value: str | None = None
    refresh: Token | None = None
    if with_refresh:
        refresh_value = new_value()
        refresh = Token(kind="refresh", token_hash=keys.keyed_hash(refresh_value), scope=grant.scope,
                        expires_at=family_expires_at, family_expires_at=family_expires_at, **common)
        session.add(refresh)
    session.flush()
    return Issued(access_value, expires_in, refresh_value, access, refresh)


def grant_of(token: Token) -> Grant:
    """Return the grant a refresh token continues (same family, same absolute end)."""
    return Grant(client_id=token.client_id, identity_id=token.identity_id, session_id=token.session_id,
                 scope=token.scope, auth_time=token.auth_time, acr=token.acr,
                 amr=tuple(json.loads(token.amr_json or "[]")), code_id=token.code_id,
                 family_id=token.family_id, family_expires_at=token.family_expires_at)


def find_token(session: Session, keys: InstanceKeys, value: object, kind: str | None = None) -> Token | None:
    """Return the token row for ``value`` (of ``kind`` when given), whatever its state, or None."""
    if not _usable_value(value):
        return None
    stmt = select(Token).where(Token.token_hash == keys.keyed_hash(value))  # type: ignore[arg-type]
    if kind is not None:
        stmt = stmt.where(Token.kind == kind)
    return session.scalar(stmt)


def is_active(token: Token, now: dt.datetime | None = None) -> bool:
    """Return True when ``token`` is neither revoked, nor used (refresh), nor expired."""
    now = now or utcnow()
    if token.revoked_at is not None or token.used_at is not None or now >= token.expires_at:
        return False
    return token.family_expires_at is None or now < token.family_expires_at


def rotate(session: Session, token: Token, now: dt.datetime | None = None) -> bool:
    """Mark the refresh token used — one conditional UPDATE. True for the one caller that rotated it."""
    now = now or utcnow()
    done = session.execute(
        update(Token).where(Token.id == token.id, Token.kind == "refresh", Token.used_at.is_(None),
                            Token.revoked_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if done:
        set_committed_value(token, "used_at", now)
    return bool(done)


def revoke_family(session: Session, family_id: str, now: dt.datetime | None = None) -> int:
    """Revoke every access and refresh token of a family; return how many were revoked."""
    now = now or utcnow()
    return session.execute(
        update(Token).where(Token.family_id == family_id, Token.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]


def revoke(session: Session, token: Token, now: dt.datetime | None = None) -> int:
    """Revoke one token (RFC 7009 §2.1): an access token alone; a refresh token with its whole family,
    since the grant it stands for is withdrawn. Returns how many tokens were revoked."""
    if token.kind == "refresh":
        lock_family(session, token.family_id)
        return revoke_family(session, token.family_id, now)
    now = now or utcnow()
    return session.execute(
        update(Token).where(Token.id == token.id, Token.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]


def purge_expired(session: Session, *, before: dt.datetime) -> dict[str, int]:
    """Delete the tokens whose lifetime (and family's) ended before ``before``, then the codes expired
    before ``before`` that no remaining token refers to (periodic job; safe to run twice). Pass a
    ``before`` well in the past (a day): a used code or refresh token is kept that long so that its
    reuse is still recognised. Returns ``{"tokens": n, "codes": n}``."""
    dead_tokens = session.execute(
        delete(Token).where(Token.expires_at < before,
                            or_(Token.family_expires_at.is_(None), Token.family_expires_at < before))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    referenced = select(Token.code_id).where(Token.code_id.is_not(None))
    dead_codes = session.execute(
        delete(AuthorizationCode).where(AuthorizationCode.expires_at < before,
                                        AuthorizationCode.id.not_in(referenced))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return {"tokens": dead_tokens, "codes": dead_codes}
