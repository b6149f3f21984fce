"""Authlib grants, extensions and endpoints of the token endpoint, with HospiConnect's storage.

Authlib's defaults are not ours; each override below says why:

* **PKCE** (RFC 7636, RFC 9700 §2.1.1): :class:`RequiredS256` accepts ``S256`` only and requires the
  verifier for every client, public or confidential (Authlib defaults to ``plain`` and only forces PKCE on
  public clients). A verifier presented for a code issued without challenge is refused with
  ``invalid_grant`` (downgrade, RFC 9700 §4.8.2), as is a missing or wrong verifier (RFC 7636 §4.6).
* **Codes** (RFC 6749 §4.1.2): redeemed by one conditional UPDATE *after* every check passed, so a wrong
  verifier does not burn the code; a second redemption gives ``invalid_grant`` **and revokes every token
  issued from the code** (Authlib only deletes the code). Codes are kept until purged, for that purpose.
* **Refresh tokens** (RFC 6749 §6, RFC 9700 §4.14.2): rotated at every use by one conditional UPDATE
  (Authlib issues no new refresh token by default); a used one revokes the whole family; bound to the
  client and to the granted scope (a narrower scope may be asked for the access token, the new refresh
  token keeps the grant's scope); refused once the identity is no longer active or its SSO session is
  over (ended, idle, past its absolute lifetime).
* **Refresh tokens are issued only when ``offline_access`` was granted** (to public and confidential
  clients alike): the scope is allowed per client at registration, which stands for the consent (there is
  no consent screen). Being bound to the SSO session, they die with it: ``offline_access`` here means
  "beyond the access token's five minutes", not "after logout".
* **ID tokens**: signed by :func:`hospiconnect.idp.keys.sign` (ES256, or RS256 when the client registered
  that preference) through :meth:`IdToken.encode_id_token`; also returned on refresh (Core §12.2), with
  the original ``auth_time``, ``acr``, ``amr`` and ``sid`` and without ``nonce``.
* **Few statements** (the token endpoint is the busiest one): a code or a refresh token is read with its lock,
  its identity, its SSO session and the signing key in one statement (:func:`tokens.find_code_context`,
  :func:`tokens.find_refresh_context`), spent by its conditional UPDATE with the new tokens inserted in the
  same statement (:func:`tokens.redeem_and_issue`, :func:`tokens.rotate_and_issue`), and the client's
  registration comes from :func:`hospiconnect.idp.clients.cached_client`. A refresh grant is three
  statements on PostgreSQL, the journal's included.
* **Introspection** (RFC 7662): ``active: false`` for anything not active, and for a token of another
  client — a resource server introspects with the credentials of the client the token was issued to.
* **Revocation** (RFC 7009): always 200 for unknown tokens and for tokens of another client (nothing is
  revoked, nothing is revealed); revoking a refresh token revokes its family. Unknown
  ``token_type_hint`` values are ignored (RFC 7009 §2.1) instead of answered with a 401.

Client authentication is in hospiconnect.idp.server.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any, NoReturn

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin, TokenMixin
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN, create_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.idp import login_session, oidc, tokens
from hospiconnect.idp.models import AuthorizationCode, SsoSession, Token

if TYPE_CHECKING:
    from hospiconnect.idp.server import OAuthClient, Server

#: Client authentication methods accepted at the token endpoint (RFC 7591 §2).
TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
#: Introspection and revocation always authenticate the client (SECURITY.md item 9).
ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


# --- adapters between the rows and Authlib's mixins -----------------------------------------------------

class CodeRecord(AuthorizationCodeMixin):
    """An ``oidc_codes`` row as Authlib sees it, with the identity and the SSO session read along with it
    (:func:`hospiconnect.idp.tokens.find_code_context`)."""

    def __init__(self, row: AuthorizationCode, context: tokens.CodeContext | None = None) -> None:
        self.row = row
        self.context = context

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class TokenRecord(TokenMixin):
    """An ``oidc_tokens`` row as Authlib sees it; for a refresh grant, with the identity and the SSO session
    read along with it (:func:`hospiconnect.idp.tokens.find_refresh_context`)."""

    def __init__(self, row: Token, context: tokens.RefreshContext | None = None) -> None:
        self.row = row
        self.context = context

    def check_client(self, client: "OAuthClient") -> bool:
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return max(0, int((self.row.expires_at - utcnow()).total_seconds()))

    def is_expired(self) -> bool:
        now = utcnow()
        ends = self.row.family_expires_at
        return now >= self.row.expires_at or (ends is not None and now >= ends)

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None


def _server(grant_or_endpoint: Any) -> "Server":
    return grant_or_endpoint.server


def _journal_refusal(server: "Server", request: Any, reason: str, **details: Any) -> None:
    client_id = request.client.get_client_id() if request.client is not None else None
    audit.record(server.db(), tags.OIDC_TOKEN_REFUSED, actor=f"client:{client_id or '?'}",
                 client_ip=server.client_ip(), outcome="refused",
                 details={"client_id": client_id, "reason": reason, **details})


def _active_identity(server: "Server", identity_id: int) -> Identity | None:
    # Relationships (establishments, units, roles) load only if the claims need them: a refresh grant
    # usually does not, and selectin loading them costs three queries per request.
    identity = server.db().get(Identity, identity_id, options=ONLY_IDENTITY)
    return identity if identity is not None and identity.is_active else None


# --- PKCE -----------------------------------------------------------------------------------------------

class RequiredS256(CodeChallenge):
    """PKCE with ``S256`` only, for every client (RFC 7636 §4.6, RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        request = grant.request
        verifier = request.form.get("code_verifier")
        code: AuthorizationCode = request.authorization_code.row
        if not code.code_challenge:
            # Every code issued here has a challenge; one without (an older row, a bug) is never redeemable,
            # and a verifier presented for it is a downgrade attempt (RFC 9700 §4.8.2).
            _journal_refusal(grant.server, request, "pkce_downgrade" if verifier else "pkce_missing")
            raise InvalidGrantError("The code was issued without code_challenge.")
        if not verifier:
            _journal_refusal(grant.server, request, "pkce_verifier_missing")
            raise InvalidGrantError("Missing code_verifier.")
        if (code.code_challenge_method != "S256" or not isinstance(verifier, str)
                or not CODE_VERIFIER_PATTERN.match(verifier)
                or not hmac.compare_digest(create_s256_code_challenge(verifier), code.code_challenge)):
            _journal_refusal(grant.server, request, "pkce_verifier_mismatch")
            raise InvalidGrantError("PKCE verification failed.")


# --- ID tokens ------------------------------------------------------------------------------------------

class IdToken(OpenIDCode):
    """Adds the ID token to token responses whose scope holds ``openid`` (Core §3.1.3.3, §12.2)."""

    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def exists_nonce(self, nonce: str, request: Any) -> bool:  # authorization endpoint only: not used
        return False

    def generate_user_info(self, user: Identity, scope: str) -> dict[str, Any]:
        from hospiconnect.idp.claims import person_claims

        return person_claims(user, scope.split())

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        # Replaces Authlib's encoder: keys come from the signing-key table (hospiconnect.idp.keys), and the
        # authentication facts from the code or the refresh token, not from the time of the request.
        server: Server = request.server
        client = request.client.row
        signing_kid: str | None = None  # read along with the grant's rows, or else when signing
        if request.authorization_code is not None:
            code_record: CodeRecord = request.authorization_code
            code: AuthorizationCode = code_record.row
            session_id, auth_time, acr, nonce = code.session_id, code.auth_time, code.acr, code.nonce
            amr = json.loads(code.amr_json or "[]")
            if code_record.context is not None:
                signing_kid = code_record.context.signing_kid
        else:
            record: TokenRecord = request.refresh_token
            refresh: Token = record.row
            session_id, auth_time, acr, nonce = refresh.session_id, refresh.auth_time, refresh.acr, None
            amr = json.loads(refresh.amr_json or "[]")
            if record.context is not None:
                signing_kid = record.context.signing_kid
        sso = server.db().get(SsoSession, session_id) if session_id else None
        return oidc.id_token(server.db(), server.keys(), server.settings(), client=client, identity=request.user,
                             scope=token["scope"], auth_time=auth_time, acr=acr, amr=amr,
                             sid=sso.sid if sso else None, nonce=nonce, access_token=token.get("access_token"),
                             signing_kid=signing_kid)


# --- grants ---------------------------------------------------------------------------------------------

class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1.3-4 with single-use codes whose reuse revokes their tokens."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_authorization_code(self, code: str, client: "OAuthClient") -> CodeRecord | None:
        server = _server(self)
        # Every request about one code waits here for the others, before anything is written.
        context = tokens.find_code_context(server.db(), server.keys(), code,
                                           signing_alg=oidc.id_token_alg(server.db(), client.row))
        if context is None:
            _journal_refusal(server, self.request, "unknown_code")
            return None
        row = context.code
        if row.used_at is not None:
            # RFC 6749 §4.1.2: a second use is an attack or a bug; the tokens of the first use die too.
            revoked = tokens.revoke_code_tokens(server.db(), row.id)
            audit.record(server.db(), tags.OIDC_CODE_REUSED, actor=f"client:{client.get_client_id()}",
                         subject=_public_id(server, row.identity_id), client_ip=server.client_ip(),
                         outcome="refused", details={"client_id": client.get_client_id(),
                                                     "code_client_id": row.client_id, "tokens_revoked": revoked})
            return None
        if row.client_id != client.get_client_id():
            _journal_refusal(server, self.request, "code_of_another_client")
            return None
        if utcnow() >= row.expires_at:
            _journal_refusal(server, self.request, "code_expired")
            return None
        return CodeRecord(row, context)

    def save_authorization_code(self, code: str, request: Any) -> None:
        raise NotImplementedError("codes are issued by hospiconnect.idp.oidc")

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        # Kept (used_at set) so that a second redemption is recognised and revokes the tokens.
        pass

    def authenticate_user(self, authorization_code: CodeRecord) -> Identity | None:
        context = authorization_code.context
        if context is None:
            return _active_identity(_server(self), authorization_code.row.identity_id)
        identity = context.identity
        return identity if identity is not None and identity.is_active else None

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        server = _server(self)
        record: CodeRecord = self.request.authorization_code
        row = record.row
        user = self.authenticate_user(record)
        if record.context is not None:
            sso = record.context.sso
        else:
            sso = server.db().get(SsoSession, row.session_id) if row.session_id else None
        if user is None or sso is None or sso.ended_at is not None:
            # The code is spent all the same (then refused), as when the check came after the redemption.
            if not tokens.redeem_code(server.db(), row):
                self._lost_race(row)
            _journal_refusal(server, self.request, "identity_or_session_inactive")
            raise InvalidGrantError("The authorization is no longer valid.")
        scope = row.scope
        grant = tokens.Grant(client_id=row.client_id, identity_id=row.identity_id, session_id=row.session_id,
                             scope=scope, auth_time=row.auth_time, acr=row.acr,
                             amr=tuple(json.loads(row.amr_json or "[]")), code_id=row.id)
        # The one conditional UPDATE that decides, after PKCE and redirect_uri have been checked; the tokens
        # are stored only when it succeeded.
        token = server.redeem_and_issue(row, grant, access_scope=scope,
                                        with_refresh="offline_access" in scope.split())
        if token is None:
            self._lost_race(row)
        self.request.user = user
        audit.record(server.db(), tags.OIDC_TOKEN_ISSUED, actor=f"client:{row.client_id}", subject=user.public_id,
                     client_ip=server.client_ip(),
                     details={"client_id": row.client_id, "grant_type": "authorization_code", "scope": scope,
                              "refresh_token": "refresh_token" in token, "sid": sso.sid})
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def _lost_race(self, row: AuthorizationCode) -> NoReturn:
        # Used or expired between the checks and the redemption: the tokens of the first use die too.
        # Token rows first, the journal last (its lock is held until commit).
        server = _server(self)
        revoked = tokens.revoke_code_tokens(server.db(), row.id)
        _journal_refusal(server, self.request, "code_race_or_expired")
        if revoked:
            audit.record(server.db(), tags.OIDC_CODE_REUSED, actor=f"client:{row.client_id}",
                         subject=_public_id(server, row.identity_id), client_ip=server.client_ip(),
                         outcome="refused", details={"client_id": row.client_id, "tokens_revoked": revoked})
        raise InvalidGrantError("Invalid code.")


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation, family revocation on reuse and an absolute lifetime."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        server = _server(self)
        # Concurrent uses of one family wait here, before any write, then see each other's outcome.
        context = tokens.find_refresh_context(server.db(), server.keys(), refresh_token,
                                              signing_alg=oidc.id_token_alg(server.db(), self.request.client.row))
        if context is None:
            _journal_refusal(server, self.request, "unknown_refresh_token")
            return None
        row = context.token
        if row.used_at is not None:
            self._reused(row)
            return None
        if not tokens.is_active(row):
            _journal_refusal(server, self.request, "refresh_token_inactive")
            return None
        if row.client_id != self.request.client.get_client_id():
            _journal_refusal(server, self.request, "refresh_token_of_another_client")
        return TokenRecord(row, context)

    def _reused(self, row: Token) -> None:
        server = _server(self)
        revoked = tokens.revoke_family(server.db(), row.family_id)
        audit.record(server.db(), tags.OIDC_REFRESH_REUSED, actor=f"client:{self.request.client.get_client_id()}",
                     subject=_public_id(server, row.identity_id), client_ip=server.client_ip(), outcome="refused",
                     details={"client_id": row.client_id, "tokens_revoked": revoked})

    def authenticate_user(self, refresh_token: TokenRecord) -> Identity | None:
        context = refresh_token.context
        if context is None:
            return _active_identity(_server(self), refresh_token.row.identity_id)
        identity = context.identity
        return identity if identity is not None and identity.is_active else None

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        # Done by the conditional UPDATE of create_token_response (tokens.rotate_and_issue).
        pass

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        server = _server(self)
        record: TokenRecord = self.request.refresh_token
        row = record.row
        now = utcnow()
        user = self.authenticate_user(record)
        if record.context is not None:
            sso = record.context.sso
        else:
            sso = server.db().get(SsoSession, row.session_id) if row.session_id else None
        reason = login_session.death_reason(sso, server.settings(), now) if sso is not None else "no_session"
        if user is None or reason is not None or sso is None:
            reason = reason or "identity_inactive"
            revoked = tokens.revoke_family(server.db(), row.family_id, now)
            if sso is not None and sso.ended_at is None:
                # Found dead here first (idle, past its lifetime, identity suspended): end it as the
                # browser would, so that its other clients are told by back-channel logout.
                login_session.end(server.db(), sso, reason=reason, keys=server.keys(), settings=server.settings(),
                                  now=now)
            _journal_refusal(server, self.request, reason, tokens_revoked=revoked)
            raise InvalidGrantError("The authorization is no longer valid.")
        scope = self.request.payload.scope or row.scope
        # The one conditional UPDATE that decides, with the next tokens stored only when it succeeded.
        token = server.rotate_and_issue(row, access_scope=scope)
        if token is None:
            # Another request rotated it first: the same token was presented twice.
            self._reused(row)
            raise InvalidGrantError("Invalid refresh token.")
        self.request.user = user
        login_session.touch(server.db(), sso, now)
        audit.record(server.db(), tags.OIDC_REFRESH_ROTATED, actor=f"client:{row.client_id}", subject=user.public_id,
                     client_ip=server.client_ip(),
                     details={"client_id": row.client_id, "grant_type": "refresh_token", "scope": scope,
                              "sid": sso.sid})
        return 200, token, self.TOKEN_RESPONSE_HEADER


def _public_id(server: "Server", identity_id: int) -> str | None:
    identity = server.db().get(Identity, identity_id, options=ONLY_IDENTITY)
    return identity.public_id if identity else None


# --- introspection and revocation -----------------------------------------------------------------------

class Introspection(IntrospectionEndpoint):
    """RFC 7662 token introspection."""

    CLIENT_AUTH_METHODS = ENDPOINT_AUTH_METHODS

    def check_params(self, request: Any, client: Any) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("Missing token.")

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        row = tokens.find_token(self.server.db(), self.server.keys(), token_string)
        return TokenRecord(row) if row is not None else None

    def check_permission(self, token: TokenRecord, client: "OAuthClient", request: Any) -> bool:
        return token.check_client(client)

    def create_introspection_payload(self, token: TokenRecord | None) -> dict[str, Any]:
        if token is None or not tokens.is_active(token.row):
            return {"active": False}
        identity = _active_identity(self.server, token.row.identity_id)
        if identity is None:
            return {"active": False}
        return self.introspect_token(token, identity)

    def introspect_token(self, token: TokenRecord, identity: Identity | None = None) -> dict[str, Any]:
        row = token.row
        sso = self.server.db().get(SsoSession, row.session_id) if row.session_id else None
        payload: dict[str, Any] = {
            "active": True, "scope": row.scope, "client_id": row.client_id,
            "token_type": "Bearer" if row.kind == "access" else "refresh_token",
            "exp": int(row.expires_at.timestamp()), "iat": int(row.created_at.timestamp()),
            "sub": identity.public_id if identity else None, "aud": row.client_id,
            "iss": self.server.settings().issuer, "auth_time": int(row.auth_time.timestamp()),
            "acr": row.acr, "amr": json.loads(row.amr_json or "[]"),
        }
        if identity is not None:
            payload["username"] = identity.user_name
        if sso is not None:
            payload["sid"] = sso.sid
        return payload


class Revocation(RevocationEndpoint):
    """RFC 7009 token revocation."""

    CLIENT_AUTH_METHODS = ENDPOINT_AUTH_METHODS

    def check_params(self, request: Any, client: Any) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("Missing token.")

    def authenticate_token(self, request: Any, client: "OAuthClient") -> TokenRecord | None:
        self.check_params(request, client)
        row = tokens.find_token(self.server.db(), self.server.keys(), request.form.get("token"))
        if row is None or row.client_id != client.get_client_id():
            return None
        return TokenRecord(row)

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        row = tokens.find_token(self.server.db(), self.server.keys(), token_string)
        return TokenRecord(row) if row is not None else None

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        row = token.row
        revoked = tokens.revoke(self.server.db(), row)
        audit.record(self.server.db(), tags.OIDC_TOKEN_REVOKED, actor=f"client:{row.client_id}",
                     subject=_public_id(self.server, row.identity_id), client_ip=self.server.client_ip(),
                     details={"client_id": row.client_id, "kind": row.kind, "tokens_revoked": revoked})
