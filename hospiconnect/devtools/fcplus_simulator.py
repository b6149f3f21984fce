"""A FranceConnect+ simulator, so that the remote enrollment can be shown and tested without FranceConnect+.

It behaves like the FranceConnect+ integration environment (DOMAIN.md, « FranceConnect+ ») for the one client
it knows (:data:`CLIENT_ID`, redirect URI ``{settings.issuer}/activation/franceconnect/retour``):

- OpenID Connect discovery and a JWKS with one ES256 signing key;
- ``/authorize`` (authorization code flow only): ``response_type=code``, ``acr_values`` eidas1/2/3 required,
  ``state`` and ``nonce`` required and at least 32 characters. An unknown client or redirect URI gets an
  error page, never a redirect (RFC 6749 §4.1.2.1); other errors go back to the client with ``error``,
  ``state`` and ``iss`` (RFC 9207). The page lists the fictional identities of :data:`TEST_IDENTITIES` and a
  « comportement de test » selector that makes the provider misbehave (:data:`BEHAVIOURS`);
- ``/token`` (``client_secret_post`` or ``client_secret_basic``): a code lives 30 s, an access token 60 s;
- ``/userinfo``: ``application/jwt``;
- ``/session/end``: ``id_token_hint``, the registered ``post_logout_redirect_uri`` and ``state``.

The ID token and the userinfo response are signed (ES256) then encrypted to the client's keys, read from
:func:`hospiconnect.enrollment.upstream_keys.public_jwks` (same installation, no HTTP): the ID token with the
RSA key (RSA-OAEP, A256GCM), userinfo with the EC key (ECDH-ES, A256GCM), so the client exercises both.

The simulator keeps no state, so it works across gunicorn workers and restarts: its signing key is derived
from the instance key file (:func:`signing_key`), and the authorization code and the access token are
compact JWTs signed with that key, carrying the chosen identity, nonce, acr, behaviour, client, redirect URI,
scope and expiry. **The code is therefore not single use**, unlike a real provider's: enforcing it would
need a shared store for a development tool. That is acceptable because the simulator serves fictional
identities only, outside production; the code still expires after 30 s and is bound to the client and the
redirect URI; and the replay defence that matters — our client's single-use ``state``/``nonce`` (SECURITY.md
item 20) — is the client's, which the simulator does not replace. For the same reason the simulator cannot
read ``id_token_hint`` (encrypted for the client) at logout: it checks its form and that it was encrypted to
one of the client's keys.

Never in production: :func:`init_app` raises there, the blueprint is only registered when
``settings.fcplus_simulator_enabled``, and it answers 404 should it be registered otherwise.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import secrets
import time
import types
import urllib.parse
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from werkzeug.datastructures import MultiDict

from hospiconnect import appctx
from hospiconnect.crypto import InstanceKeys
from hospiconnect.enrollment import fcplus, upstream_keys
from hospiconnect.settings import Settings

ISSUER_PATH = "/simulateur-franceconnect/api/v2"
CLIENT_ID = "hospiconnect-simulateur"
CLIENT_SECRET = "simulateur-franceconnect-hors-production"
CALLBACK_PATH = "/activation/franceconnect/retour"
POST_LOGOUT_PATH = "/activation/franceconnect/deconnexion"

CODE_SECONDS = 30
ACCESS_TOKEN_SECONDS = 60
ID_TOKEN_SECONDS = 60
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
AMR = ("pwd", "mail")
SIGNING_ALG = "ES256"
MAX_TOKEN_LENGTH = 8192

# Claims released per scope (FranceConnect+ has one scope per claim, plus a few groups).
SCOPE_CLAIMS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "openid": (),
    "given_name": ("given_name",),
    "family_name": ("family_name",),
    "birthdate": ("birthdate",),
    "gender": ("gender",),
    "birthplace": ("birthplace",),
    "birthcountry": ("birthcountry",),
    "email": ("email",),
    "preferred_username": ("preferred_username",),
    "profile": ("given_name", "family_name", "birthdate", "gender", "preferred_username"),
    "birth": ("birthplace", "birthcountry"),
    "identite_pivot": ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry"),
})
PIVOT_CLAIMS = ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
                "preferred_username", "email")

# The derived signing key: changing the label changes the key (and the kid) of every installation.
_SIGNING_KEY_LABEL = "hospiconnect:fcplus-simulator:es256-signing-key:v1"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_CODE_TYPE = "fcplus-simulator-code+jwt"
_ACCESS_TOKEN_TYPE = "fcplus-simulator-at+jwt"

bp = Blueprint("fcplus_simulator", __name__, url_prefix="/simulateur-franceconnect")


# --- the fictional identities and the test behaviours ------------------------------------------------------

def _sub(key: str) -> str:
    # Stable, 64 hexadecimal characters like a FranceConnect+ sub; the same in every installation.
    return hashlib.sha256(f"hospiconnect:fcplus-simulator:{key}".encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class SimulatedIdentity:
    """A fictional FranceConnect+ user: the identity-pivot claims as FranceConnect+ sends them."""

    sub: str
    given_name: str  # all given names, space-separated
    family_name: str  # birth name
    birthdate: str  # YYYY-MM-DD
    gender: str  # male / female
    birthplace: str  # INSEE commune code, "" when born abroad
    birthcountry: str  # INSEE country code, 99100 = France
    preferred_username: str  # usage name, "" when none
    email: str
    description: Any  # what the identity is for, shown on the page (lazy French text)

    def claims(self) -> dict[str, str]:
        """Return the identity-pivot claims (and e-mail), without ``sub``."""
        return {name: getattr(self, name) for name in PIVOT_CLAIMS}


TEST_IDENTITIES: Mapping[str, SimulatedIdentity] = types.MappingProxyType({
    "camille": SimulatedIdentity(
        sub=_sub("camille"), given_name="Camille Solène Anne", family_name="DELAVERGNE",
        birthdate="1988-04-12", gender="female", birthplace="45234", birthcountry="99100",
        preferred_username="MARCHETTI", email="camille.delavergne@courriel.example",
        description=_l("Présente dans l'annuaire de démonstration : concordance exacte.")),
    "camille-homonyme": SimulatedIdentity(
        sub=_sub("camille-homonyme"), given_name="Camille Solène Anne", family_name="DELAVERGNE",
        birthdate="1991-09-23", gender="female", birthplace="69123", birthcountry="99100",
        preferred_username="", email="c.delavergne@courriel.example",
        description=_l("Homonyme : mêmes nom et prénoms, autres date et commune de naissance (pas de "
                       "concordance).")),
    "sacha-ne-a-letranger": SimulatedIdentity(
        sub=_sub("sacha-ne-a-letranger"), given_name="Sacha Émile", family_name="OUDINOT-BRAGA",
        birthdate="1979-11-05", gender="male", birthplace="", birthcountry="99134",
        preferred_username="", email="sacha.oudinot@courriel.example",
        description=_l("Né en Espagne (pas de commune de naissance) ; présent dans l'annuaire : concordance.")),
    "lou-date-presumee": SimulatedIdentity(
        sub=_sub("lou-date-presumee"), given_name="Lou Maëlle", family_name="KERVADEC",
        birthdate="1980-01-01", gender="female", birthplace="", birthcountry="99350",
        preferred_username="", email="lou.kervadec@courriel.example",
        description=_l("Née au Maroc, date de naissance présumée (1980-01-01) : concordance avec l'annuaire "
                       "au titre de la règle des dates présumées.")),
})

NORMAL = "normal"
ACR_EIDAS1 = "acr-eidas1"
BAD_SIGNATURE = "signature-etrangere"
FOREIGN_ENCRYPTION = "chiffrement-etranger"
OTHER_SUB = "sub-different"
BEHAVIOURS: Mapping[str, Any] = types.MappingProxyType({
    NORMAL: _l("Normal"),
    ACR_EIDAS1: _l("Niveau eidas1 renvoyé dans le jeton d'identité (acr insuffisant)"),
    BAD_SIGNATURE: _l("Jeton d'identité signé par une clé étrangère (signature invalide)"),
    FOREIGN_ENCRYPTION: _l("Jetons chiffrés pour une clé étrangère (indéchiffrables)"),
    OTHER_SUB: _l("Informations d'identité (userinfo) avec un autre sub"),
})


# --- addresses and the client configuration ----------------------------------------------------------------

def issuer(settings: Settings) -> str:
    """Return the simulator's issuer: ``{settings.issuer}/simulateur-franceconnect/api/v2``."""
    return settings.issuer.rstrip("/") + ISSUER_PATH


def discovery_url(settings: Settings) -> str:
    """Return the simulator's discovery URL."""
    return issuer(settings) + "/.well-known/openid-configuration"


def redirect_uri(settings: Settings) -> str:
    """Return the only redirect URI the simulator accepts (the remote enrollment's callback)."""
    return settings.issuer.rstrip("/") + CALLBACK_PATH


def post_logout_redirect_uri(settings: Settings) -> str:
    """Return the only ``post_logout_redirect_uri`` the simulator accepts."""
    return settings.issuer.rstrip("/") + POST_LOGOUT_PATH


def client_config(settings: Settings) -> fcplus.FcPlusConfig:
    """Return the :class:`fcplus.FcPlusConfig` with which our client talks to this simulator.

    Raises :class:`fcplus.FcPlusConfigurationError` when the acr or token authentication settings are invalid.
    """
    return fcplus.FcPlusConfig(
        discovery_url=discovery_url(settings), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        redirect_uri=redirect_uri(settings), acr_values=settings.fcplus_acr_values,
        token_auth_method=settings.fcplus_token_auth_method, allow_http=True)


# --- keys and tokens ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _derived_key(seed_hex: str) -> ECKey:
    scalar = int(seed_hex, 16) % (_P256_ORDER - 1) + 1  # a valid P-256 private scalar, 1 ≤ d < n
    key = ECKey.import_key(ec.derive_private_key(scalar, ec.SECP256R1()), {"use": "sig", "alg": SIGNING_ALG})
    key.ensure_kid()
    return key


def signing_key(keys: InstanceKeys) -> ECKey:
    """Return the simulator's ES256 key, derived from the instance's HMAC key: every process and every
    restart of one installation agrees on it without storing it."""
    return _derived_key(keys.keyed_hash(_SIGNING_KEY_LABEL))


def _key() -> ECKey:
    return signing_key(appctx.runtime().keys)


def epoch_now() -> int:
    """The current time in whole seconds (the simulators' clock: tests move it with time-machine)."""
    return int(time.time())


def decode_own(token: Any, key: Key, alg: str, *, max_length: int = MAX_TOKEN_LENGTH) -> Any | None:
    """Return ``token`` decoded with the simulator's own ``key``, or None when it is not a compact JWS of ours
    (too long, malformed, another key or algorithm). Expiry is the caller's business."""
    if not isinstance(token, str) or len(token) > max_length or token.count(".") != 2:
        return None
    try:
        return jwt.decode(token, key, algorithms=[alg])
    except (JoseError, ValueError):
        return None


def read_token(token: Any, typ: str, *, key: Key, alg: str, issuer_url: str, identities: Mapping[str, Any],
               behaviours: Any, max_length: int = MAX_TOKEN_LENGTH) -> dict[str, Any] | None:
    """Return the claims of a code or access token a simulator issued (header ``typ``, its issuer, not expired,
    a known test identity and behaviour), or None when it is not one, was tampered with, or has expired."""
    decoded = decode_own(token, key, alg, max_length=max_length)
    if decoded is None:
        return None
    claims = decoded.claims
    exp = claims.get("exp")
    if decoded.header.get("typ") != typ or claims.get("iss") != issuer_url:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int) or epoch_now() >= exp:
        return None
    if claims.get("identity") not in identities or claims.get("behaviour") not in behaviours:
        return None
    return claims


def _sign(claims: dict[str, Any], key: ECKey, typ: str = "JWT", kid: str | None = None) -> str:
    header = {"alg": SIGNING_ALG, "typ": typ, "kid": kid or key.kid}
    return jwt.encode(header, claims, key, algorithms=[SIGNING_ALG])


def _encrypt(inner: str, key: Key, alg: str, kid: str | None = None) -> str:
    header = {"alg": alg, "enc": fcplus.CONTENT_ENCRYPTION, "kid": kid or key.kid, "cty": "JWT"}
    return jwe.encrypt_compact(header, inner, key, algorithms=[alg, fcplus.CONTENT_ENCRYPTION])


def _client_key(key_type: str) -> Key | None:
    """Return the client's newest public key of ``key_type`` ("RSA" or "EC"), or None."""
    session = appctx.db_session()
    try:
        document = upstream_keys.public_jwks(session)
    finally:
        session.rollback()  # read only: end the transaction at once
    found = [entry for entry in document["keys"] if entry.get("kty") == key_type and entry.get("use") in (None, "enc")]
    if not found:
        return None
    return KeySet.import_key_set({"keys": [found[-1]]}).keys[0]


def _foreign_key(key_type: str) -> Key:
    # A key nobody else has: the token it encrypts cannot be decrypted with the client's keys.
    if key_type == "RSA":
        return RSAKey.generate_key(2048, {"use": "enc"})
    return ECKey.generate_key("P-256", {"use": "enc"})


def _nested(claims: dict[str, Any], *, key_type: str, alg: str, foreign_signature: bool = False,
            foreign_encryption: bool = False) -> str | None:
    """Return ``claims`` signed (ES256) then encrypted to the client's key; None when it has no such key."""
    client_key = _client_key(key_type)
    if client_key is None:
        return None
    own = _key()
    # A foreign signature keeps our kid: the client finds our key and the signature fails against it.
    signer = ECKey.generate_key("P-256", {"use": "sig"}) if foreign_signature else own
    inner = _sign(claims, signer, kid=own.kid)
    target = _foreign_key(key_type) if foreign_encryption else client_key
    # A foreign encryption keeps the client's kid, like a provider holding a stale copy of the client's keys.
    return _encrypt(inner, target, alg, kid=client_key.kid)


def _issue(claims: dict[str, Any], typ: str) -> str:
    return _sign({**claims, "jti": secrets.token_urlsafe(16)}, _key(), typ=typ)


def _read(token: Any, typ: str, settings: Settings) -> dict[str, Any] | None:
    return read_token(token, typ, key=_key(), alg=SIGNING_ALG, issuer_url=issuer(settings),
                      identities=TEST_IDENTITIES, behaviours=BEHAVIOURS)


# --- the authorization request -----------------------------------------------------------------------------

class PageError(Exception):
    """An error shown on the simulator's page (never a redirect: the client or its URI is not trusted)."""


class RedirectError(Exception):
    """An error sent back to the client's redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, state: str | None) -> None:
        super().__init__(error)
        self.error, self.description, self.state = error, description, state


@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request (carried by the page's form: the simulator keeps no state)."""

    scope: str
    acr_values: str
    state: str
    nonce: str
    prompt: str

    def form_fields(self, settings: Settings) -> dict[str, str]:
        """Return the request parameters, to be posted back with the person's choice."""
        fields = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect_uri(settings),
                  "scope": self.scope, "acr_values": self.acr_values, "state": self.state, "nonce": self.nonce}
        if self.prompt:
            fields["prompt"] = self.prompt
        return fields

    @property
    def acr(self) -> str:
        """The level returned when all goes well: the first one requested (in order of preference)."""
        return self.acr_values.split()[0]


def single_param(params: MultiDict[str, str], name: str) -> str | None:
    """Return the one value of ``name`` (None when absent); raise ValueError when it is repeated."""
    values = params.getlist(name)
    if len(values) > 1:
        raise ValueError(name)
    return values[0] if values else None


def validate_authorization(settings: Settings, params: MultiDict[str, str]) -> AuthorizationRequest:
    """Return the validated request; raise :class:`PageError` or :class:`RedirectError`."""
    try:
        client_id, uri = single_param(params, "client_id"), single_param(params, "redirect_uri")
    except ValueError:
        raise PageError(_("Paramètre client_id ou redirect_uri répété.")) from None
    if client_id != CLIENT_ID:
        raise PageError(_("Client inconnu du simulateur : %(client)s.", client=(client_id or "—")[:100]))
    if uri != redirect_uri(settings):
        raise PageError(_("Adresse de retour (redirect_uri) non enregistrée : %(uri)s.", uri=(uri or "—")[:300]))
    state = params.get("state") if len(params.getlist("state")) == 1 else None
    try:
        values = {name: single_param(params, name) or "" for name in
                  ("response_type", "scope", "acr_values", "state", "nonce", "prompt", "request", "request_uri")}
    except ValueError as exc:
        raise RedirectError("invalid_request", f"parameter {exc} repeated", state) from None
    if values["request"] or values["request_uri"]:
        raise RedirectError("request_not_supported", "request objects are not supported", state)
    if values["response_type"] != "code":
        raise RedirectError("unsupported_response_type", "response_type must be code", state)
    scopes = values["scope"].split()
    if "openid" not in scopes:
        raise RedirectError("invalid_scope", "the openid scope is required", state)
    unknown = [s for s in scopes if s not in SCOPE_CLAIMS]
    if unknown:
        raise RedirectError("invalid_scope", f"unknown scope {unknown[0][:50]}", state)
    acr_values = values["acr_values"].split()
    if not acr_values or any(acr not in ACR_LEVELS for acr in acr_values):
        raise RedirectError("invalid_request", "acr_values must be eidas1, eidas2 or eidas3", state)
    if len(values["state"]) < fcplus.MIN_RANDOM_LENGTH:
        raise RedirectError("invalid_request", "state is required (at least 32 characters)", state)
    if len(values["nonce"]) < fcplus.MIN_RANDOM_LENGTH:
        raise RedirectError("invalid_request", "nonce is required (at least 32 characters)", state)
    prompts = values["prompt"].split()
    if "none" in prompts:
        # FranceConnect+ keeps no session: the person must always authenticate.
        raise RedirectError("login_required", "no session at FranceConnect+", state)
    if any(p not in ("login", "consent") for p in prompts):
        raise RedirectError("invalid_request", "unsupported prompt value", state)
    return AuthorizationRequest(scope=" ".join(scopes), acr_values=" ".join(acr_values), state=values["state"],
                                nonce=values["nonce"], prompt=" ".join(prompts))


def back_to_client(issuer_url: str, target: str, params: dict[str, str], *, status: int = 302) -> Response:
    """Redirect to the client's ``target`` with ``params`` and ``iss`` (RFC 9207: in every authorization
    response)."""
    params = {**params, "iss": issuer_url}
    separator = "&" if "?" in target else "?"
    return redirect(f"{target}{separator}{urllib.parse.urlencode(params)}", code=status)


def error_back(issuer_url: str, target: str, exc: RedirectError, *, status: int = 302) -> Response:
    """Send the authorization error ``exc`` back to the client's ``target`` (RFC 6749 §4.1.2.1)."""
    params = {"error": exc.error, "error_description": exc.description}
    if exc.state:
        params["state"] = exc.state
    return back_to_client(issuer_url, target, params, status=status)


def _back_to_client(settings: Settings, params: dict[str, str], *, status: int = 302) -> Response:
    return back_to_client(issuer(settings), redirect_uri(settings), params, status=status)


def _error_back(settings: Settings, exc: RedirectError, *, status: int = 302) -> Response:
    return error_back(issuer(settings), redirect_uri(settings), exc, status=status)


def _page_error(message: str, status: int = 400) -> Response:
    return Response(render_template("fcplus_simulator/error.html", message=message), status=status)


# --- protocol helpers --------------------------------------------------------------------------------------

def oauth_error(error: str, description: str, status: int = 400,
                headers: Mapping[str, str] | None = None) -> Response:
    """Return an OAuth error response (RFC 6749 §5.2) as JSON."""
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def authenticated_client(expected_id: str = CLIENT_ID, expected_secret: str = CLIENT_SECRET,
                         realm: str = "simulateur-franceconnect") -> tuple[str | None, Response | None]:
    """Return ``(client_id, None)`` when the client authenticated with exactly one method
    (``client_secret_basic`` or ``client_secret_post``) as ``expected_id``, else an error response.
    Shared with the Pro Santé Connect simulator."""
    header = request.headers.get("Authorization")
    in_form = "client_secret" in request.form
    if header and in_form:
        return None, oauth_error("invalid_request", "only one client authentication method is allowed")
    if header:
        scheme, _sep, value = header.partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        raw_id, colon, raw_secret = decoded.partition(":")
        if scheme.lower() != "basic" or not colon:
            return None, oauth_error("invalid_client", "malformed Basic credentials", 401,
                                      {"WWW-Authenticate": f'Basic realm="{realm}"'})
        # RFC 6749 §2.3.1: identifier and secret are form-urlencoded before the Basic encoding.
        client_id, secret = urllib.parse.unquote_plus(raw_id), urllib.parse.unquote_plus(raw_secret)
        challenge = {"WWW-Authenticate": f'Basic realm="{realm}"'}
    else:
        client_id, secret, challenge = request.form.get("client_id", ""), request.form.get("client_secret"), {}
        if secret is None:
            return None, oauth_error("invalid_client", "client authentication required", 401)
    if not fcplus.values_equal(expected_id, client_id) or not fcplus.values_equal(expected_secret, secret):
        return None, oauth_error("invalid_client", "client authentication failed", 401, challenge)
    return client_id, None


def _no_keys() -> Response:
    return oauth_error("server_error", "the client has no encryption key (run « hospiconnect init »)", 500)


# --- endpoints ---------------------------------------------------------------------------------------------

def _settings() -> Settings:
    return current_app.config["SETTINGS"]


@bp.before_request
def _only_when_enabled() -> None:
    # Second line of defence: registered by mistake (production, or a real FranceConnect+ configured).
    if not _settings().fcplus_simulator_enabled:
        abort(404)


@bp.after_request
def no_store(response: Response) -> Response:
    """Tokens, codes and personal data: never cached."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.get("/api/v2/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """The discovery document (OpenID Connect Discovery 1.0 §3)."""
    base = issuer(_settings())
    return jsonify({
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/jwks",
        "end_session_endpoint": f"{base}/session/end",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "scopes_supported": list(SCOPE_CLAIMS),
        "claims_supported": ["sub", "iss", "aud", "acr", "amr", "auth_time", *PIVOT_CLAIMS],
        "acr_values_supported": list(ACR_LEVELS),
        "prompt_values_supported": ["login", "consent"],
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        "id_token_encryption_alg_values_supported": ["RSA-OAEP", "ECDH-ES"],
        "id_token_encryption_enc_values_supported": [fcplus.CONTENT_ENCRYPTION],
        "userinfo_signing_alg_values_supported": [SIGNING_ALG],
        "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "ECDH-ES"],
        "userinfo_encryption_enc_values_supported": [fcplus.CONTENT_ENCRYPTION],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    })


@bp.get("/api/v2/jwks")
def jwks() -> Response:
    """The simulator's public signing key."""
    return jsonify({"keys": [_key().as_dict(private=False)]})


@bp.get("/api/v2/authorize")
def authorize() -> Response:
    """Validate the request like FranceConnect+, then show the fictional identities."""
    settings = _settings()
    try:
        auth = validate_authorization(settings, request.args)
    except PageError as exc:
        return _page_error(str(exc))
    except RedirectError as exc:
        return _error_back(settings, exc)
    return Response(render_template(
        "fcplus_simulator/authorize.html", fields=auth.form_fields(settings), auth=auth,
        identities=TEST_IDENTITIES, behaviours=BEHAVIOURS, normal=NORMAL))


@bp.post("/api/v2/authorize")
def choose() -> Response:
    """The person chose an identity (or cancelled): back to the client with a code (or access_denied)."""
    settings = _settings()
    try:
        auth = validate_authorization(settings, request.form)
    except PageError as exc:
        return _page_error(str(exc))
    except RedirectError as exc:
        return _error_back(settings, exc, status=303)
    if request.form.get("action") == "cancel":
        return _error_back(settings, RedirectError("access_denied", "user cancelled the authentication",
                                                    auth.state), status=303)
    identity, behaviour = request.form.get("identity", ""), request.form.get("behaviour", NORMAL)
    if identity not in TEST_IDENTITIES or behaviour not in BEHAVIOURS:
        return _page_error(_("Identité ou comportement de test inconnu."))
    now = epoch_now()
    code = _issue({"iss": issuer(settings), "client_id": CLIENT_ID, "redirect_uri": redirect_uri(settings),
                   "identity": identity, "behaviour": behaviour, "scope": auth.scope, "nonce": auth.nonce,
                   "acr": "eidas1" if behaviour == ACR_EIDAS1 else auth.acr, "auth_time": now, "iat": now,
                   "exp": now + CODE_SECONDS}, _CODE_TYPE)
    return _back_to_client(settings, {"code": code, "state": auth.state}, status=303)


@bp.post("/api/v2/token")
def token() -> Response:
    """Exchange a code for an access token and an encrypted ID token (RFC 6749 §4.1.3, OIDC Core §3.1.3)."""
    settings = _settings()
    client_id, failure = authenticated_client()
    if failure is not None:
        return failure
    if request.form.get("grant_type") != "authorization_code":
        return oauth_error("unsupported_grant_type", "only authorization_code is supported")
    if not request.form.get("code"):
        return oauth_error("invalid_request", "code is required")
    code = _read(request.form.get("code"), _CODE_TYPE, settings)
    if code is None or code.get("client_id") != client_id:
        return oauth_error("invalid_grant", "invalid or expired authorization code")
    if request.form.get("redirect_uri") != code.get("redirect_uri"):
        return oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
    identity, behaviour, now = TEST_IDENTITIES[code["identity"]], code["behaviour"], epoch_now()
    id_token = _nested(
        {"iss": issuer(settings), "sub": identity.sub, "aud": client_id, "exp": now + ID_TOKEN_SECONDS,
         "iat": now, "nonce": code.get("nonce"), "acr": code.get("acr"), "amr": list(AMR),
         "auth_time": code.get("auth_time"), "idp_acr": code.get("acr")},
        key_type="RSA", alg="RSA-OAEP", foreign_signature=behaviour == BAD_SIGNATURE,
        foreign_encryption=behaviour == FOREIGN_ENCRYPTION)
    if id_token is None:
        return _no_keys()
    access_token = _issue({"iss": issuer(settings), "client_id": client_id, "identity": code["identity"],
                           "behaviour": behaviour, "scope": code.get("scope", "openid"), "iat": now,
                           "exp": now + ACCESS_TOKEN_SECONDS}, _ACCESS_TOKEN_TYPE)
    return jsonify({"access_token": access_token, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS,
                    "id_token": id_token, "scope": code.get("scope", "openid")})


@bp.route("/api/v2/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """The identity-pivot claims allowed by the scopes, signed then encrypted (``application/jwt``)."""
    settings = _settings()
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return oauth_error("invalid_request", "bearer token required", 401,
                            {"WWW-Authenticate": 'Bearer realm="simulateur-franceconnect"'})
    access = _read(value.strip(), _ACCESS_TOKEN_TYPE, settings)
    if access is None:
        return oauth_error("invalid_token", "invalid or expired access token", 401,
                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    identity, behaviour = TEST_IDENTITIES[access["identity"]], access["behaviour"]
    released = {claim for scope in str(access.get("scope", "")).split() for claim in SCOPE_CLAIMS.get(scope, ())}
    sub = _sub(f"autre:{access['identity']}") if behaviour == OTHER_SUB else identity.sub
    claims: dict[str, Any] = {"sub": sub, **{k: v for k, v in identity.claims().items() if k in released},
                              "iss": issuer(settings), "aud": access.get("client_id"), "iat": epoch_now()}
    body = _nested(claims, key_type="EC", alg="ECDH-ES", foreign_encryption=behaviour == FOREIGN_ENCRYPTION)
    if body is None:
        return _no_keys()
    return Response(body, mimetype="application/jwt")


def _plausible_id_token(hint: Any) -> bool:
    """True when ``hint`` is an ID token this simulator signed for our client, as the client sends it back:
    the signed JWT found inside the encrypted one (OpenID Connect Core §3.1.2.1). Its expiry does not
    matter: a person may log out long after signing in."""
    decoded = decode_own(hint, _key(), SIGNING_ALG)
    if decoded is None:
        return False
    audience = decoded.claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    return decoded.claims.get("iss") == issuer(_settings()) and CLIENT_ID in audiences


@bp.get("/api/v2/session/end")
def end_session() -> Response:
    """RP-initiated logout: back to the registered ``post_logout_redirect_uri`` with ``state``."""
    settings = _settings()
    try:
        hint, target, state = (single_param(request.args, name) for name in
                               ("id_token_hint", "post_logout_redirect_uri", "state"))
    except ValueError:
        return _page_error(_("Paramètre répété dans la demande de déconnexion."))
    if target != post_logout_redirect_uri(settings):
        return _page_error(_("Adresse de retour après déconnexion (post_logout_redirect_uri) non enregistrée."))
    if not state:
        return _page_error(_("Le paramètre state est obligatoire pour la déconnexion."))
    if not _plausible_id_token(hint):
        return _page_error(_("Le paramètre id_token_hint est absent ou n'est pas un jeton d'identité de ce "
                             "simulateur."))
    return redirect(f"{target}?{urllib.parse.urlencode({'state': state})}", code=302)


def init_app(app: Flask) -> None:
    """Register the simulator (``/simulateur-franceconnect``). Raises RuntimeError in production."""
    if app.config["SETTINGS"].is_production:
        raise RuntimeError("Le simulateur FranceConnect+ ne peut pas être activé en production.")
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        # Called by servers, which authenticate themselves (client secret, bearer token): no browser form.
        csrf.exempt(token)
        csrf.exempt(userinfo)
    app.register_blueprint(bp)
