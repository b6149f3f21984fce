"""The Authlib authorization server behind ``/token``, ``/introspect`` and ``/revoke``, and client
authentication.

Authlib (flask integration) parses the requests, authenticates the client, dispatches to the grants and
formats the OAuth responses (RFC 6749 §5.1-5.2: JSON, ``Cache-Control: no-store``); HospiConnect supplies
the storage and the rules through the adapters below and hospiconnect.idp.grants. The authorization
endpoint is not served by Authlib (see hospiconnect.idp.oidc).

Client authentication (RFC 6749 §2.3, RFC 7591 §2, Core §9):

* ``client_secret_basic`` and ``client_secret_post`` are interchangeable for a client registered with
  either (the same secret travels), checked by :func:`hospiconnect.idp.clients.check_secret` (keyed hash,
  constant time). Authlib's Basic parser is replaced: it raises on non-UTF-8 credentials (a 500).
* ``private_key_jwt`` (RFC 7523 §2.2): the assertion is verified against the client's registered JWKS
  (ES256 or RS256, as advertised), ``aud`` is the issuer or one of its endpoint URLs, its lifetime at most
  :data:`MAX_ASSERTION_SECONDS`, and each ``jti`` is accepted once: stored until the assertion's ``exp``
  in ``oidc_client_assertions``, unique per client, so the INSERT decides (RFC 7523 §3 item 7).
* ``none`` for public clients only (their codes are protected by PKCE); never at introspection or
  revocation.

One server per Flask application, built on first use; it keeps no state of its own — the database session,
the instance keys and the settings are those of the current request (hospiconnect.appctx), so any number of
processes serve the same establishment.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
from typing import Any
from urllib.parse import unquote

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError, OAuth2Error
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import Flask, Response, current_app, json
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hospiconnect import appctx
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.idp import clients, grants, tokens
from hospiconnect.idp.models import AuthorizationCode, Client, Token, UsedClientAssertion
from hospiconnect.settings import Settings

log = logging.getLogger("hospiconnect.idp")

EXTENSION = "hospiconnect.oauth_server"
#: Algorithms accepted for client assertions: asymmetric only (no HS256 with a shared secret, no none),
#: as advertised in the discovery document.
ASSERTION_ALGS = ["ES256", "RS256"]
MAX_ASSERTION_SECONDS = 600
MAX_ASSERTION_LENGTH = 8000


def safe_description(text: object) -> str:
    """Return ``text`` reduced to the characters RFC 6749 §5.2 allows in ``error_description``."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else " " for c in str(text))[:200]


class OAuthClient(ClientMixin):
    """A registered, enabled client as Authlib sees it (RFC 6749 §2, RFC 7591 §2)."""

    def __init__(self, row: Client, keys: InstanceKeys) -> None:
        self.row = row
        self._keys = keys

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # redirect_uri is always required (OpenID Connect Core §3.1.2.1)

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.row.scopes.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return clients.check_secret(self._keys, self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        registered = self.row.token_endpoint_auth_method
        if registered in clients.SECRET_METHODS:
            # The same secret travels either way: both secret methods are accepted.
            return method in clients.SECRET_METHODS
        return method == registered

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class _Request(FlaskOAuth2Request):
    """Authlib's Flask request, with the URL rebuilt from the configured issuer.

    Authlib refuses plain-http URLs outside loopback; behind the establishment's TLS reverse proxy the
    application sees http, so the issuer (https in production) is what tells whether TLS is used.
    """

    def __init__(self, request: Any, uri: str, server: "Server") -> None:
        OAuth2Request.__init__(self, method=request.method, uri=uri, headers=request.headers)
        self._request = request
        self.payload = FlaskOAuth2Payload(request)
        self.server = server


class Server(AuthorizationServer):
    """HospiConnect's authorization server: storage hooks over the request's database session."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.init_app(app)
        self.register_grant(grants.AuthorizationCodeGrant, [grants.RequiredS256(), grants.IdToken()])
        self.register_grant(grants.RefreshTokenGrant, [grants.IdToken()])
        self.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
        self.register_client_auth_method("client_secret_post", authenticate_client_secret_post)
        self.register_client_auth_method("none", authenticate_none)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT(self))
        self.register_endpoint(grants.Introspection)
        self.register_endpoint(grants.Revocation)

    # The request's context -----------------------------------------------------------------------------

    def db(self) -> Session:
        return appctx.db_session()

    def keys(self) -> InstanceKeys:
        return appctx.runtime().keys

    def settings(self) -> Settings:
        return appctx.runtime().settings

    def client_ip(self) -> str | None:
        return appctx.client_ip()

    # Authlib hooks -------------------------------------------------------------------------------------

    def query_client(self, client_id: Any) -> OAuthClient | None:
        """Return the enabled client ``client_id``; None for an unknown or disabled one. The registration may
        have been read up to :data:`~hospiconnect.idp.clients.CLIENT_CACHE_SECONDS` ago by this process."""
        if not isinstance(client_id, str):
            return None
        row = clients.cached_client(self.db(), client_id)
        if row is None or row.disabled_at is not None:
            return None
        return OAuthClient(row, self.keys())

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        # Not reached: the grants store tokens through issue(), which knows the grant's family.
        raise NotImplementedError("tokens are stored by Server.issue")

    def create_oauth2_request(self, request: Any) -> _Request:
        return _Request(flask_request, self.settings().issuer + flask_request.path, self)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        response = Response(json.dumps(payload) if isinstance(payload, dict) else payload, status=status_code,
                            headers=headers)
        response.headers["Cache-Control"] = "no-store"
        return response

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> OAuthClient:
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            client_id = request.payload.client_id if isinstance(request.payload.client_id, str) else None
            audit.record(self.db(), tags.OIDC_CLIENT_AUTH_FAILED, actor=f"client:{(client_id or '?')[:100]}",
                         client_ip=self.client_ip(), outcome="failure",
                         details={"endpoint": endpoint, "client_id": (client_id or "")[:100]})
            raise

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # no Flask signals: every decision is journaled where it is taken

    # Tokens ----------------------------------------------------------------------------------------------

    def rotate_and_issue(self, refresh_token: Token, *, access_scope: str) -> dict[str, Any] | None:
        """Rotate ``refresh_token`` and store the next tokens of its grant; return the token response body,
        or None when the token had been used or revoked meanwhile (:func:`tokens.rotate_and_issue`)."""
        issued = tokens.rotate_and_issue(self.db(), self.keys(), self.settings(), refresh_token,
                                         access_scope=access_scope)
        return _token_body(issued, access_scope) if issued is not None else None

    def redeem_and_issue(self, code: AuthorizationCode, grant: tokens.Grant, *, access_scope: str,
                         with_refresh: bool) -> dict[str, Any] | None:
        """Redeem ``code`` and store the tokens of ``grant``; return the token response body, or None when the
        code had been used or had expired meanwhile (:func:`tokens.redeem_and_issue`)."""
        issued = tokens.redeem_and_issue(self.db(), self.keys(), self.settings(), code, grant,
                                         access_scope=access_scope, with_refresh=with_refresh)
        return _token_body(issued, access_scope) if issued is not None else None


def _token_body(issued: tokens.Issued, access_scope: str) -> dict[str, Any]:
    # RFC 6749 §5.1.
    body: dict[str, Any] = {"access_token": issued.access_token, "token_type": "Bearer",
                            "expires_in": issued.expires_in, "scope": access_scope}
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    return body


def get_server() -> Server:
    """Return the authorization server of the current application (built once)."""
    server = current_app.extensions.get(EXTENSION)
    if server is None:
        server = current_app.extensions[EXTENSION] = Server(current_app._get_current_object())  # type: ignore[attr-defined]
    return server


# --- client authentication ------------------------------------------------------------------------------

def authenticate_client_secret_basic(query_client: Any, request: Any) -> OAuthClient | None:
    """RFC 6749 §2.3.1 HTTP Basic: ``client_id`` and secret, each form-urlencoded, then base64."""
    header = request.headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    client = query_client(unquote(client_id))
    if client is not None and client.check_client_secret(unquote(secret)):
        return client
    return None


def authenticate_client_secret_post(query_client: Any, request: Any) -> OAuthClient | None:
    """RFC 6749 §2.3.1 ``client_id`` and ``client_secret`` in the form body."""
    client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
    if not client_id or not secret:
        return None
    client = query_client(client_id)
    if client is not None and client.check_client_secret(secret):
        return client
    return None


def authenticate_none(query_client: Any, request: Any) -> OAuthClient | None:
    """A public client names itself (RFC 6749 §2.1); PKCE is what protects its codes."""
    client_id = request.payload.client_id
    if not client_id or request.payload.data.get("client_secret") or request.headers.get("Authorization"):
        return None
    return query_client(client_id)


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` (RFC 7523 §2.2, Core §9)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: Server) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server

    def get_audiences(self) -> list[str]:
        issuer = self.server.settings().issuer
        return [issuer, f"{issuer}/token", f"{issuer}/introspect", f"{issuer}/revoke"]

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        keyset = clients.client_jwks(client.row) if client.row.token_endpoint_auth_method == "private_key_jwt" else None
        if keyset is None:
            raise InvalidClientError(description="The client has no registered keys.")
        return keyset

    def __call__(self, query_client: Any, request: Any) -> OAuthClient | None:
        assertion = request.form.get("client_assertion")
        if assertion is not None and len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidClientError(description="Client assertion too long.")
        try:
            return super().__call__(query_client, request)
        except OAuth2Error:
            raise
        except (JoseError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # Malformed input deep inside the JOSE stack: a client error, never a 500.
            log.info("client assertion refused: %s", exc.__class__.__name__)
            raise InvalidClientError(description="Invalid client assertion.") from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGS)
        except JoseError as exc:
            raise InvalidClientError(description=safe_description(exc.description or "Invalid assertion")) from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        # The lifetime first: the jti of an assertion refused for its lifetime is not stored.
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp - utcnow().timestamp() > MAX_ASSERTION_SECONDS:
            raise InvalidClientError(description="Client assertion lifetime missing or too long.")
        try:
            super().verify_claims(claims)
        except InvalidClientError:
            raise
        except (JoseError, ValueError, TypeError):
            # Includes Authlib refusing to build an error whose description has forbidden characters.
            raise InvalidClientError(description="Invalid client assertion claims.") from None

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        # The INSERT decides: a unique (client_id, jti) row exists once; a savepoint keeps the request's
        # transaction usable when it fails.
        if not isinstance(jti, str) or not jti or len(jti) > 500:
            return False
        session = self.server.db()
        session.execute(delete(UsedClientAssertion).where(UsedClientAssertion.expires_at < utcnow()))
        try:
            with session.begin_nested():
                session.execute(insert(UsedClientAssertion).values(
                    client_id=str(claims["sub"])[:100], jti_hash=hashlib.sha256(jti.encode()).hexdigest(),
                    expires_at=dt.datetime.fromtimestamp(float(claims["exp"]) + self.leeway, dt.timezone.utc)))
        except IntegrityError:
            return False
        return True
