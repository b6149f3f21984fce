"""Registration of the relying parties (OAuth 2.0 clients) of the OpenID provider.

A confidential client's secret is 256 random bits, shown once; only its keyed hash (HMAC-SHA256 under the
instance key) is stored, and it is compared in constant time. Redirect URIs are checked when a client is
registered so that the authorization endpoint can then match them as exact strings (RFC 9700 §2.1,
SECURITY.md item 1): absolute, no fragment, ``https`` — ``http`` only on a loopback host (RFC 8252 §7.3).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from typing import Any, Collection, Iterable
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import event, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import ORMExecuteState, Session, object_session

from hospiconnect.audit import service as audit
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.errors import Conflict, NotFound, PreconditionFailed, ValidationError
from hospiconnect.idp.discovery import SCOPES_SUPPORTED
from hospiconnect.idp.models import SENSITIVITY_CLASSES, Client, Token
from hospiconnect.idp.psc_delegation import PROFILE as PSC_PROFILE
from hospiconnect.idp.psc_delegation import PROFILES

#: RFC 7591 §2 ``token_endpoint_auth_method`` values this provider accepts.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
#: The methods that authenticate with a shared secret.
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_URI_LENGTH = 500
MAX_SECRET_LENGTH = 512
MAX_CLASS_LENGTH = 20  # Client.sensitivity; a policy may name longer classes, which clients cannot use

TAG_CLIENT_CREATED = "admin:client:created"
TAG_CLIENT_SECRET_ROTATED = "admin:client:secret_rotated"
TAG_CLIENT_DISABLED = "admin:client:disabled"

_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")
_PROFILE_RE = re.compile(r"^[a-z0-9_-]{1,30}$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Only the characters RFC 3986 §2 allows in a URI: what a browser would silently "fix" (spaces,
# backslashes, non-ASCII) must not differ from what is compared.
_URI_CHARS_RE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


def validate_uri(uri: str, *, field: str = "redirect_uri", label: str = "L'URI de redirection") -> str:
    """Return ``uri`` when it may be registered: an absolute ``https`` URI (or ``http`` on a loopback
    host: localhost, 127.0.0.1, [::1]), without fragment (RFC 6749 §3.1.2), user information or wildcard.

    Raises :class:`ValidationError` with a French message naming the problem.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ValidationError(f"{label} est vide.", field=field)
    if len(uri) > MAX_URI_LENGTH:
        raise ValidationError(f"{label} dépasse {MAX_URI_LENGTH} caractères.", field=field)
    if not _URI_CHARS_RE.match(uri):
        raise ValidationError(f"{label} « {uri} » contient des espaces ou des caractères non autorisés.",
                              field=field)
    if not _SCHEME_RE.match(uri):
        raise ValidationError(f"{label} « {uri} » doit être une URI absolue (https://…).", field=field)
    if "#" in uri:
        raise ValidationError(f"{label} « {uri} » ne doit pas contenir de fragment (#…).", field=field)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValidationError(f"{label} « {uri} » est mal formée.", field=field) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise ValidationError(f"{label} « {uri} » utilise le schéma « {parts.scheme} » : seul https est "
                              "accepté (http uniquement pour localhost).", field=field)
    if not parts.netloc or not parts.hostname:
        raise ValidationError(f"{label} « {uri} » doit comporter un nom d'hôte.", field=field)
    if "@" in parts.netloc:
        raise ValidationError(f"{label} « {uri} » ne doit pas contenir d'identifiants (utilisateur@).",
                              field=field)
    if "*" in uri:
        raise ValidationError(f"{label} « {uri} » ne doit pas contenir de joker (*).", field=field)
    if scheme == "http" and parts.hostname.lower() not in LOOPBACK_HOSTS:
        raise ValidationError(f"{label} « {uri} » doit utiliser https (http n'est accepté que pour "
                              "localhost, 127.0.0.1 ou [::1]).", field=field)
    return uri


def _uri_list(uris: Iterable[str], *, field: str, label: str) -> list[str]:
    seen: list[str] = []
    for uri in uris:
        validate_uri(uri, field=field, label=label)
        if uri not in seen:
            seen.append(uri)
    return seen


def _parse_jwks(jwks: dict[str, Any] | None) -> str | None:
    """Validate a client's public JWK Set (RFC 7517 §5) for ``private_key_jwt`` (RFC 7523 §2.2) and
    return it as JSON. Raises :class:`ValidationError`."""
    if jwks is None:
        return None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValidationError("Le jeu de clés (JWKS) doit être un objet JSON {\"keys\": [...]} non vide.",
                              field="jwks")
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA", "OKP"):
            raise ValidationError("Chaque clé du JWKS doit être une clé publique EC, RSA ou OKP.", field="jwks")
        if any(m in jwk for m in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise ValidationError("Le JWKS contient une clé privée : seules les clés publiques du client "
                                  "doivent être enregistrées.", field="jwks")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValidationError("Le jeu de clés (JWKS) est invalide.", field="jwks") from exc
    return json.dumps(jwks, separators=(",", ":"))


def _parse_scopes(scopes: str | Iterable[str]) -> str:
    items = scopes.split() if isinstance(scopes, str) else [s for item in scopes for s in str(item).split()]
    unique = list(dict.fromkeys(items))
    unknown = [s for s in unique if s not in SCOPES_SUPPORTED]
    if unknown:
        raise ValidationError(f"Portée inconnue : {', '.join(unknown)} (connues : {', '.join(SCOPES_SUPPORTED)}).",
                              field="scope")
    if "openid" not in unique:
        raise ValidationError("La portée « openid » est obligatoire.", field="scope")
    return " ".join(unique)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def add_client(
    session: Session,
    keys: InstanceKeys,
    *,
    name: str,
    redirect_uris: list[str],
    sensitivity: str,
    auth_method: str = "client_secret_basic",
    post_logout_redirect_uris: Iterable[str] = (),
    backchannel_logout_uri: str | None = None,
    jwks: dict[str, Any] | None = None,
    scopes: str | Iterable[str] = "openid profile email",
    client_id: str | None = None,
    profile: str | None = None,
    classes: Collection[str] | None = None,
    actor: str,
) -> tuple[Client, str | None]:
    """Register a relying party and journal ``admin:client:created``.

    ``sensitivity`` is the client's class: one of ``classes``, the classes the access policy declares (the
    command line passes those of the configured policy, which says what each class requires), or of
    :data:`~hospiconnect.idp.models.SENSITIVITY_CLASSES` (``health-data``, ``standard``) when ``classes`` is
    None; ``auth_method`` one of
    :data:`AUTH_METHODS` (RFC 7591 §2); ``jwks`` (public keys) is required for ``private_key_jwt``.
    Returns the client and its secret in clear — to show once — for ``client_secret_basic`` and
    ``client_secret_post``; ``None`` for public (``none``) and ``private_key_jwt`` clients, which have no
    secret.

    ``profile``: None, or a claims profile of :data:`PROFILES` — ``psc`` registers Pro Santé Connect, which
    delegates authentication to this provider (hospiconnect.idp.psc_delegation); it must be confidential.

    Raises :class:`ValidationError` (French message) for a bad field, :class:`Conflict` when ``client_id``
    is taken.
    """
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("Le nom du client est obligatoire (200 caractères au plus).", field="name")
    known = tuple(classes) if classes is not None else SENSITIVITY_CLASSES
    if sensitivity not in known:
        raise ValidationError(f"Classe inconnue « {sensitivity} » : la politique d'accès déclare "
                              f"{', '.join(known) or 'aucune classe'}.", field="sensitivity")
    if len(sensitivity) > MAX_CLASS_LENGTH:
        raise ValidationError(f"Nom de classe trop long pour un client « {sensitivity} » ({MAX_CLASS_LENGTH} "
                              "caractères au plus) : raccourcissez-le dans la politique.", field="sensitivity")
    if auth_method not in AUTH_METHODS:
        raise ValidationError(f"Méthode d'authentification inconnue « {auth_method} » "
                              f"(attendu : {', '.join(AUTH_METHODS)}).", field="auth_method")
    if isinstance(redirect_uris, str):
        redirect_uris = [redirect_uris]
    uris = _uri_list(redirect_uris, field="redirect_uri", label="L'URI de redirection")
    if not uris:
        raise ValidationError("Au moins une URI de redirection est obligatoire.", field="redirect_uri")
    if isinstance(post_logout_redirect_uris, str):
        post_logout_redirect_uris = [post_logout_redirect_uris]
    logout_uris = _uri_list(post_logout_redirect_uris, field="post_logout_redirect_uri",
                            label="L'URI de retour après déconnexion")
    if backchannel_logout_uri:
        validate_uri(backchannel_logout_uri, field="backchannel_logout_uri",
                     label="L'URI de déconnexion par canal arrière")
    else:
        backchannel_logout_uri = None
    if auth_method == "private_key_jwt" and jwks is None:
        raise ValidationError("La méthode private_key_jwt exige le jeu de clés publiques du client (JWKS).",
                              field="jwks")
    if jwks is not None and auth_method != "private_key_jwt":
        raise ValidationError("Un jeu de clés (JWKS) n'est utile qu'avec la méthode private_key_jwt.",
                              field="jwks")
    jwks_json = _parse_jwks(jwks)
    scope = _parse_scopes(scopes)
    if profile is not None and (not _PROFILE_RE.match(profile) or profile not in PROFILES):
        raise ValidationError(f"Profil de revendications inconnu (connus : {', '.join(PROFILES)}).",
                              field="profile")
    if profile == PSC_PROFILE and auth_method == "none":
        raise ValidationError("Pro Santé Connect (profil psc) est un client confidentiel : un secret ou "
                              "private_key_jwt est exigé.", field="auth_method")
    if profile == PSC_PROFILE and "offline_access" in scope.split():
        # A refresh grant would give PSC new tokens without asking the delegation rule again: unpaired since,
        # MIE revoked since, it would not know.
        raise ValidationError("Pro Santé Connect (profil psc) ne reçoit pas de jeton de rafraîchissement : "
                              "chaque délégation vérifie de nouveau l'appairage et le moyen d'identification. "
                              "Retirez la portée offline_access.", field="scope")
    if client_id is None:
        # 128 bits; never starting with "-" or "_", which command lines would take for an option.
        client_id = "c" + secrets.token_urlsafe(16)
    elif not _CLIENT_ID_RE.match(client_id):
        raise ValidationError("Identifiant de client invalide (1 à 100 caractères parmi A-Z a-z 0-9 . _ ~ -).",
                              field="client_id")
    if get_client(session, client_id) is not None:
        raise Conflict(f"Un client d'identifiant « {client_id} » existe déjà.")

    now = utcnow()
    secret = _new_secret() if auth_method in SECRET_METHODS else None
    client = Client(
        client_id=client_id,
        name=name,
        sensitivity=sensitivity,
        token_endpoint_auth_method=auth_method,
        secret_hash=keys.keyed_hash(secret) if secret else None,
        secret_set_at=now if secret else None,
        jwks_json=jwks_json,
        redirect_uris_json=json.dumps(uris),
        post_logout_redirect_uris_json=json.dumps(logout_uris),
        backchannel_logout_uri=backchannel_logout_uri,
        scopes=scope,
        profile=profile,
        created_at=now,
    )
    session.add(client)
    session.flush()
    audit.record(session, TAG_CLIENT_CREATED, actor=actor, subject=f"client:{client_id}",
                 details={"name": name, "sensitivity": sensitivity, "auth_method": auth_method,
                          "redirect_uris": uris, "post_logout_redirect_uris": logout_uris,
                          "backchannel_logout_uri": backchannel_logout_uri, "scopes": scope,
                          "profile": profile})
    return client, secret


def get_client(session: Session, client_id: str) -> Client | None:
    """Return the client registered as ``client_id`` (disabled ones included), or ``None``."""
    # No registered id holds a NUL character, and PostgreSQL refuses one in a query parameter.
    if not isinstance(client_id, str) or not client_id or len(client_id) > 100 or "\x00" in client_id:
        return None
    return session.scalar(select(Client).where(Client.client_id == client_id))


# --- the token endpoint's view of the clients -----------------------------------------------------------

#: How long a process may authenticate clients at the token, introspection and revocation endpoints with a
#: registration it read earlier. A secret rotated or a client disabled by another process (the command line,
#: another instance) takes effect there within this delay; in the process that made the change, at once.
CLIENT_CACHE_SECONDS = 2.0
_CLIENT_CACHE_SIZE = 256
_CHANGED = "hospiconnect.clients.changed"


class _ClientCache:
    """Detached copies of client rows, by ``client_id``, each kept :data:`CLIENT_CACHE_SECONDS`.

    Every client-authenticated request of the token endpoint otherwise reads the same row again. The copies
    are transient objects that belong to no session (the client table has no relationship that could attach
    them to one); they are never modified. A change committed by this process empties the cache (see
    :func:`_client_changed`); the generation counter keeps a copy read before such a change from being stored
    after it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Client]] = {}
        self._generation = 0

    def get(self, session: Session, client_id: str, now: float) -> Client | None:
        entry = self._entries.get(client_id)
        if entry is not None and now - entry[0] < CLIENT_CACHE_SECONDS:
            return entry[1]
        generation = self._generation
        row = get_client(session, client_id)
        if row is None:
            return None  # unknown ids are not kept: anyone can send any number of them
        copy = Client(**{attr.key: getattr(row, attr.key) for attr in _COLUMN_ATTRS})
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= _CLIENT_CACHE_SIZE:
                    self._entries.clear()
                self._entries[client_id] = (now, copy)
        return copy

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


_COLUMN_ATTRS = tuple(sa_inspect(Client).column_attrs)
_client_cache = _ClientCache()
_clock = time.monotonic


def cached_client(session: Session, client_id: str) -> Client | None:
    """Return the client registered as ``client_id`` (disabled ones included) as read at most
    :data:`CLIENT_CACHE_SECONDS` ago by this process, or ``None``: for client authentication, which happens
    at every request of the token endpoint. The returned object is a copy attached to no session: read it,
    never change it (use :func:`get_client` for that)."""
    if not isinstance(client_id, str):
        return None
    return _client_cache.get(session, client_id, _clock())


def forget_clients() -> None:
    """Empty this process's cache of client registrations (:func:`cached_client`)."""
    _client_cache.clear()


def _mark_changed(session: Session | None) -> None:
    if session is not None:
        session.info[_CHANGED] = True
        _client_cache.clear()


@event.listens_for(Client, "after_insert")
@event.listens_for(Client, "after_update")
@event.listens_for(Client, "after_delete")
def _client_row_written(mapper: Any, connection: Any, target: Client) -> None:
    _mark_changed(object_session(target))


@event.listens_for(Session, "do_orm_execute")
def _client_rows_updated(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and state.bind_mapper is not None and state.bind_mapper.class_ is Client:
        _mark_changed(state.session)


@event.listens_for(Session, "after_commit")
def _client_changed(session: Session) -> None:
    # Emptied again once committed: another thread may have read the row between the write and the commit.
    if session.info.pop(_CHANGED, False):
        _client_cache.clear()


@event.listens_for(Session, "after_soft_rollback")
def _client_change_rolled_back(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_CHANGED, None)


def require_client(session: Session, client_id: str) -> Client:
    """Return the client registered as ``client_id``; raise :class:`NotFound` otherwise."""
    client = get_client(session, client_id)
    if client is None:
        raise NotFound(f"Aucun client d'identifiant « {client_id} ».")
    return client


def list_clients(session: Session) -> list[Client]:
    """Return every client, by name then identifier."""
    return list(session.scalars(select(Client).order_by(Client.name, Client.client_id)))


def rotate_secret(session: Session, keys: InstanceKeys, client_id: str, *, actor: str) -> str:
    """Replace the secret of a confidential client and return the new one (shown once); the old one stops
    working at commit. Journals ``admin:client:secret_rotated``.

    Raises :class:`NotFound`, or :class:`PreconditionFailed` for a disabled client or a client that does
    not authenticate with a secret.
    """
    client = require_client(session, client_id)
    if client.disabled_at is not None:
        raise PreconditionFailed(f"Le client « {client_id} » est désactivé.")
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        raise PreconditionFailed(f"Le client « {client_id} » n'utilise pas de secret "
                                 f"(méthode {client.token_endpoint_auth_method}).")
    secret = _new_secret()
    client.secret_hash = keys.keyed_hash(secret)
    client.secret_set_at = utcnow()
    session.flush()
    audit.record(session, TAG_CLIENT_SECRET_ROTATED, actor=actor, subject=f"client:{client_id}")
    return secret


def disable(session: Session, client_id: str, *, actor: str) -> Client:
    """Disable a client: it can no longer authenticate nor obtain tokens, and its live access and refresh
    tokens are revoked. Journals ``admin:client:disabled`` once; disabling again changes nothing.

    Returns the client; raises :class:`NotFound`.
    """
    client = require_client(session, client_id)
    if client.disabled_at is not None:
        return client
    now = utcnow()
    client.disabled_at = now
    revoked = session.execute(
        update(Token).where(Token.client_id == client_id, Token.revoked_at.is_(None)).values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.flush()
    audit.record(session, TAG_CLIENT_DISABLED, actor=actor, subject=f"client:{client_id}",
                 details={"tokens_revoked": revoked})
    return client


# Compared against when the client has no secret, so every call costs one HMAC and one comparison.
_NO_SECRET = "0" * 64


def check_secret(keys: InstanceKeys, client: Client, secret: str) -> bool:
    """Return True when ``secret`` is the current secret of ``client`` (RFC 6749 §2.3.1).

    The keyed hashes are compared with :func:`hmac.compare_digest`; False for a disabled client, a client
    without secret (public or ``private_key_jwt``) and an empty or oversized value.
    """
    usable = (isinstance(secret, str) and 0 < len(secret) <= MAX_SECRET_LENGTH)
    presented = keys.keyed_hash(secret if usable else "")
    stored = client.secret_hash or _NO_SECRET
    same = hmac.compare_digest(presented.encode(), stored.encode())
    return (same and usable and client.secret_hash is not None and client.disabled_at is None
            and client.token_endpoint_auth_method in SECRET_METHODS)


def client_jwks(client: Client) -> KeySet | None:
    """Return the client's registered public keys (``private_key_jwt``), or ``None``."""
    if not client.jwks_json:
        return None
    return KeySet.import_key_set(json.loads(client.jwks_json))


def client_as_dict(client: Client) -> dict[str, Any]:
    """Return the client as JSON-ready data (never its secret nor the secret's hash)."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "class": client.sensitivity,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "public": client.is_public,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "scopes": client.scopes.split(),
        "profile": client.profile,
        "jwks": json.loads(client.jwks_json) if client.jwks_json else None,
        "has_secret": client.secret_hash is not None,
        "secret_set_at": client.secret_set_at.isoformat() if client.secret_set_at else None,
        "created_at": client.created_at.isoformat() if client.created_at else None,
        "disabled": client.disabled_at is not None,
        "disabled_at": client.disabled_at.isoformat() if client.disabled_at else None,
    }
