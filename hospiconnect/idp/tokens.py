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

On PostgreSQL the token endpoint runs that UPDATE in a CTE of the INSERT of the new tokens
(:func:`redeem_and_issue`, :func:`rotate_and_issue`): the rows are inserted only when the UPDATE changed
the code or the token, and the INSERT's row count answers. The code or the refresh token is read beforehand
with its identity, its SSO session and the signing key in one statement (:func:`find_code_context`,
:func:`find_refresh_context`).

Tokens of one grant (the code exchange and every refresh after it) share a ``family_id``; refresh tokens
carry ``family_expires_at`` = first issue + ``refresh_token_hours``, an absolute lifetime that rotation
does not extend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import secrets
from typing import Any, Iterable

from sqlalchemy import bindparam, delete, func, or_, select, union_all, update
from sqlalchemy.orm import Load, Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.idp import keys as signing_keys
from hospiconnect.idp.models import AuthorizationCode, SsoSession, Token
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


@dataclasses.dataclass(frozen=True)
class CodeContext:
    """An authorization code with its row locked, the identity and the SSO session it was issued for (None
    when gone), and the ``kid`` of the active signing key of the client's ID token algorithm (None: to be read
    when signing)."""

    code: AuthorizationCode
    identity: Identity | None
    sso: SsoSession | None
    signing_kid: str | None = None


def find_code_context(session: Session, keys: InstanceKeys, value: object, *,
                      signing_alg: str = "ES256") -> CodeContext | None:
    """Return the code row for ``value`` (used or not, expired or not) locked as :func:`lock_code` does, with
    its identity, its SSO session and the active signing key of ``signing_alg``; None when there is no such
    code.

    One statement when nobody else holds the code: it locks the row with ``SKIP LOCKED`` and reads the rest
    with it — as fresh as statements run after the lock, since it did not wait. When a concurrent request holds
    the code, that statement returns nothing and this one waits for the lock (:func:`find_code`,
    :func:`lock_code`), then reads the identity and the session.
    """
    if not _usable_value(value):
        return None
    code_hash = keys.keyed_hash(value)  # type: ignore[arg-type]
    found = session.execute(_code_context_statement(), {"code_hash": code_hash, "signing_alg": signing_alg}).first()
    if found is not None:
        return CodeContext(found[0], found[1], found[2], found[3])
    row = find_code(session, keys, value)
    if row is None:
        return None
    row = lock_code(session, row)
    identity = session.get(Identity, row.identity_id, options=ONLY_IDENTITY, populate_existing=True)
    sso = session.get(SsoSession, row.session_id, populate_existing=True) if row.session_id else None
    return CodeContext(row, identity, sso)


@functools.lru_cache(maxsize=1)
def _code_context_statement() -> Any:
    return (select(AuthorizationCode, Identity, SsoSession, signing_keys.active_kid(bindparam("signing_alg")))
            .select_from(AuthorizationCode)
            .outerjoin(Identity, Identity.id == AuthorizationCode.identity_id)
            .outerjoin(SsoSession, SsoSession.id == AuthorizationCode.session_id)
            .where(AuthorizationCode.code_hash == bindparam("code_hash"))
            .options(Load(Identity).lazyload("*"))
            .with_for_update(of=AuthorizationCode, skip_locked=True)
            .execution_options(populate_existing=True))


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


@dataclasses.dataclass(frozen=True)
class RefreshContext:
    """A refresh token with its family locked, and what its grant is checked against: the identity and the
    SSO session (None when the token has none, or when the row is gone); and the ``kid`` of the active
    signing key of the client's ID token algorithm, when it was read along (None: to be read when signing)."""

    token: Token
    identity: Identity | None
    sso: SsoSession | None
    signing_kid: str | None = None


def find_refresh_context(session: Session, keys: InstanceKeys, value: object, *,
                         signing_alg: str = "ES256") -> RefreshContext | None:
    """Return the refresh token for ``value`` with its family locked (see :func:`lock_family`), its identity,
    its SSO session and the active signing key of ``signing_alg``; None when there is no such refresh token.

    One statement when nobody else holds the family: it takes the family's lock with ``SKIP LOCKED`` and
    reads the token, the identity and the session with it — as fresh as statements run after the lock, since
    it did not wait. When the family is held by a concurrent request (a race, a reuse, a revocation), that
    statement returns nothing and the request waits for the lock as :func:`find_refresh_token_locked` does,
    then reads the identity and the session: what it sees is then what the other request committed.
    """
    if not _usable_value(value):
        return None
    token_hash = keys.keyed_hash(value)  # type: ignore[arg-type]
    found = session.execute(_refresh_context_statement(),
                            {"token_hash": token_hash, "signing_alg": signing_alg}).first()
    if found is not None:
        return RefreshContext(found[0], found[1], found[2], found[3])
    row = find_refresh_token_locked(session, keys, value)
    if row is None:
        return None
    identity = session.get(Identity, row.identity_id, options=ONLY_IDENTITY, populate_existing=True)
    sso = session.get(SsoSession, row.session_id, populate_existing=True) if row.session_id else None
    return RefreshContext(row, identity, sso)


@functools.lru_cache(maxsize=1)
def _refresh_context_statement() -> Any:
    member, head = aliased(Token), aliased(Token)
    head_id = select(func.min(member.id)).where(member.family_id == Token.family_id).scalar_subquery()
    return (select(Token, Identity, SsoSession, signing_keys.active_kid(bindparam("signing_alg")))
            .select_from(Token)
            .join(head, head.id == head_id)
            .outerjoin(Identity, Identity.id == Token.identity_id)
            .outerjoin(SsoSession, SsoSession.id == Token.session_id)
            .where(Token.token_hash == bindparam("token_hash"), Token.kind == "refresh")
            .options(Load(Identity).lazyload("*"))
            .with_for_update(of=head, skip_locked=True)
            .execution_options(populate_existing=True))


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
    access_row: Token | None  # None when stored without the ORM (rotate_and_issue, redeem_and_issue)
    refresh_row: Token | None


def _new_rows(keys: InstanceKeys, settings: Settings, grant: Grant, *, access_scope: str, with_refresh: bool,
              now: dt.datetime) -> tuple[str, int, str | None, list[dict[str, Any]]]:
    # The values, and the column values, of the tokens that :func:`issue`, :func:`rotate_and_issue` and
    # :func:`redeem_and_issue` store.
    family_id = grant.family_id or secrets.token_urlsafe(24)
    family_expires_at = grant.family_expires_at or now + dt.timedelta(hours=settings.refresh_token_hours)
    expires_in = settings.access_token_minutes * 60
    common = dict(family_id=family_id, code_id=grant.code_id, client_id=grant.client_id,
                  identity_id=grant.identity_id, session_id=grant.session_id, auth_time=grant.auth_time,
                  acr=grant.acr, amr_json=json.dumps(sorted(set(grant.amr))), created_at=now, used_at=None,
                  revoked_at=None)
    access_value = new_value()
    rows = [dict(kind="access", token_hash=keys.keyed_hash(access_value), scope=access_scope,
                 expires_at=now + dt.timedelta(seconds=expires_in), family_expires_at=None, **common)]
    refresh_value: str | None = None
    if with_refresh:
        refresh_value = new_value()
        rows.append(dict(kind="refresh", token_hash=keys.keyed_hash(refresh_value), scope=grant.scope,
                         expires_at=family_expires_at, family_expires_at=family_expires_at, **common))
    return access_value, expires_in, refresh_value, rows


def issue(session: Session, keys: InstanceKeys, settings: Settings, grant: Grant, *, access_scope: str,
          with_refresh: bool, now: dt.datetime | None = None) -> Issued:
    """Store a new access token (scope ``access_scope``, lifetime ``access_token_minutes``) and, when
    ``with_refresh``, a refresh token carrying the grant's full scope; both in the grant's family (a new
    one when ``grant.family_id`` is None). Returns the values."""
    access_value, expires_in, refresh_value, rows = _new_rows(keys, settings, grant, access_scope=access_scope,
                                                              with_refresh=with_refresh, now=now or utcnow())
    access = Token(**rows[0])
    session.add(access)
    refresh: Token | None = None
    if with_refresh:
        refresh = Token(**rows[1])
        session.add(refresh)
    session.flush()
    return Issued(access_value, expires_in, refresh_value, access, refresh)


_TOKENS = Token.__table__
_NEW_TOKEN_COLUMNS = ("kind", "token_hash", "family_id", "code_id", "client_id", "identity_id", "session_id",
                      "scope", "auth_time", "acr", "amr_json", "created_at", "expires_at", "family_expires_at",
                      "used_at", "revoked_at")
_CODES = AuthorizationCode.__table__


@functools.lru_cache(maxsize=2)
def _consume_statement(what: str) -> Any:
    # The conditional UPDATE that spends a refresh token (rotation) or an authorization code (redemption).
    if what == "refresh":
        return (update(_TOKENS)
                .where(_TOKENS.c.id == bindparam("consumed_id"), _TOKENS.c.kind == "refresh",
                       _TOKENS.c.used_at.is_(None), _TOKENS.c.revoked_at.is_(None))
                .values(used_at=bindparam("now")))
    return (update(_CODES)
            .where(_CODES.c.id == bindparam("consumed_id"), _CODES.c.used_at.is_(None),
                   _CODES.c.expires_at > bindparam("now"))
            .values(used_at=bindparam("now")))


@functools.lru_cache(maxsize=4)
def _consume_and_insert_statement(what: str, count: int) -> Any:
    # The conditional UPDATE in a CTE; the new rows are selected FROM it, so they are inserted only when it
    # changed the row: the INSERT's row count answers for both.
    table = _TOKENS if what == "refresh" else _CODES
    consumed = _consume_statement(what).returning(table.c.id).cte("consumed")
    rows = [select(*[bindparam(f"r{i}_{c}", type_=_TOKENS.c[c].type).label(c) for c in _NEW_TOKEN_COLUMNS])
            .select_from(consumed) for i in range(count)]
    source = rows[0] if count == 1 else union_all(*rows)
    return (_TOKENS.insert().from_select(list(_NEW_TOKEN_COLUMNS), source).add_cte(consumed)
            .execution_options(preserve_rowcount=True))


def _consume_and_insert(session: Session, what: str, consumed_id: int, rows: list[dict[str, Any]],
                        now: dt.datetime) -> bool:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        params: dict[str, Any] = {"consumed_id": consumed_id, "now": now}
        for i, row in enumerate(rows):
            params.update({f"r{i}_{c}": row[c] for c in _NEW_TOKEN_COLUMNS})
        return connection.execute(_consume_and_insert_statement(what, len(rows)), params).rowcount == len(rows)
    if connection.execute(_consume_statement(what), {"consumed_id": consumed_id, "now": now}).rowcount != 1:
        return False
    connection.execute(_TOKENS.insert(), rows)
    return True


def rotate_and_issue(session: Session, keys: InstanceKeys, settings: Settings, token: Token, *,
                     access_scope: str, now: dt.datetime | None = None) -> Issued | None:
    """Mark the refresh token ``token`` used and store the next access and refresh tokens of its grant
    (:func:`grant_of`, as :func:`issue` would); return their values, or None — nothing stored — when the token
    was already used or revoked: the same token was presented twice.

    The conditional UPDATE decides, as in :func:`rotate`; on PostgreSQL the new rows ride in the same
    statement (inserted only if the UPDATE changed the row). The new rows are not loaded into ``session``
    (``access_row`` and ``refresh_row`` are None)."""
    now = now or utcnow()
    access_value, expires_in, refresh_value, rows = _new_rows(keys, settings, grant_of(token),
                                                              access_scope=access_scope, with_refresh=True, now=now)
    if not _consume_and_insert(session, "refresh", token.id, rows, now):
        return None
    set_committed_value(token, "used_at", now)
    return Issued(access_value, expires_in, refresh_value, None, None)


def redeem_and_issue(session: Session, keys: InstanceKeys, settings: Settings, code: AuthorizationCode,
                     grant: Grant, *, access_scope: str, with_refresh: bool,
                     now: dt.datetime | None = None) -> Issued | None:
    """Redeem ``code`` and store the tokens of ``grant`` (a new family, as :func:`issue` does); return their
    values, or None — nothing stored — when the code was already used or has expired.

    The conditional UPDATE decides, as in :func:`redeem_code`; on PostgreSQL the new rows ride in the same
    statement. The new rows are not loaded into ``session`` (``access_row`` and ``refresh_row`` are None)."""
    now = now or utcnow()
    access_value, expires_in, refresh_value, rows = _new_rows(keys, settings, grant, access_scope=access_scope,
                                                              with_refresh=with_refresh, now=now)
    if not _consume_and_insert(session, "code", code.id, rows, now):
        return None
    set_committed_value(code, "used_at", now)
    return Issued(access_value, expires_in, refresh_value, None, None)


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
