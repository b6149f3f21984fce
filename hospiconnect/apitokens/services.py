"""Create, check and revoke API bearer tokens.

A token is ``hcp_`` followed by 256 random bits; only its HMAC-SHA256 under the instance key is stored,
so a copy of the database does not give usable tokens.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.apitokens.models import ApiToken
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.errors import Conflict, HospiConnectError, NotFound, ValidationError

KNOWN_SCOPES = {"scim": "Provisionnement SCIM (lecture et écriture de l'annuaire)",
                "scim:read": "Lecture SCIM de l'annuaire",
                "directory": "API JSON de l'annuaire"}
PREFIX = "hcp_"


class InvalidToken(HospiConnectError):
    code = "invalid_token"
    http_status = 401


class InsufficientScope(HospiConnectError):
    code = "insufficient_scope"
    http_status = 403


def create_token(session: Session, keys: InstanceKeys, *, name: str, scopes: list[str], actor: str) -> tuple[ApiToken, str]:
    """Create a token; return the row and the plaintext (shown once, never stored)."""
    name = name.strip()
    if not re.match(r"^[\w.\- ]{1,100}$", name):
        raise ValidationError("Nom de jeton invalide.", field="name")
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if not scopes or unknown:
        raise ValidationError(f"Portée inconnue : {', '.join(unknown) or '(aucune)'} "
                              f"(connues : {', '.join(sorted(KNOWN_SCOPES))}).", field="scope")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"Un jeton nommé {name!r} existe déjà.")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, scopes=" ".join(sorted(set(scopes))), token_hash=keys.keyed_hash(plaintext),
                     created_by=actor, created_at=utcnow())
    session.add(token)
    session.flush()
    audit.record(session, tags.API_TOKEN_CREATED, actor=actor, subject=f"api_token:{name}",
                 details={"scopes": token.scopes})
    return token, plaintext


def authenticate(session: Session, keys: InstanceKeys, plaintext: str | None, scope: str) -> ApiToken:
    """Return the live token matching ``plaintext`` that grants ``scope``.

    Raises :class:`InvalidToken` (unknown, revoked, malformed) or :class:`InsufficientScope`.
    """
    if not plaintext or not plaintext.startswith(PREFIX) or len(plaintext) > 200:
        raise InvalidToken("Jeton d'accès absent ou invalide.")
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == keys.keyed_hash(plaintext)))
    if token is None or token.revoked_at is not None:
        raise InvalidToken("Jeton d'accès absent ou invalide.")
    granted = token.scope_set
    # "scim" covers "scim:read".
    if scope not in granted and not (scope.endswith(":read") and scope.split(":")[0] in granted):
        raise InsufficientScope(f"Ce jeton n'a pas la portée {scope}.")
    token.last_used_at = utcnow()
    return token


def revoke_token(session: Session, *, name: str, actor: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise NotFound(f"Aucun jeton nommé {name!r}.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(session, tags.API_TOKEN_REVOKED, actor=actor, subject=f"api_token:{name}")
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))
