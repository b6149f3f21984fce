"""A Pro Santé Connect simulator, so that pairing and sign-in with CPS/e-CPS can be shown and tested without PSC.

It behaves like the PSC sandbox (Keycloak, realm ``esante-wallet``; DOMAIN.md « Pro Santé Connect ») for the
one client it knows (:data:`CLIENT_ID`, redirect URIs :data:`REDIRECT_PATHS` under ``settings.issuer``):

- OpenID Connect discovery under ``/simulateur-psc/auth/realms/esante-wallet`` and a JWKS (``certs``) with
  one RS256 signing key;
- ``/protocol/openid-connect/auth`` (authorization code flow only): ``scope`` with ``openid`` (``scope_all``
  releases every claim), ``acr_values`` eidas1/2/3, ``state`` and ``nonce`` of at least 32 characters. An
  unknown client or redirect URI gets an error page, never a redirect (RFC 6749 §4.1.2.1); other errors go
  back with ``error``, ``state`` and ``iss`` (RFC 9207). The page (French) lists the fictional professionals
  of :data:`TEST_IDENTITIES`, each with the national MIE they use (CPS card or e-CPS app), and a « comportement
  de test » selector (:data:`BEHAVIOURS`);
- ``/token`` (``client_secret_basic`` or ``client_secret_post``): a code lives 60 s, an access token 120 s
  (PSC: 2 minutes); the ID token is signed RS256 (not encrypted) with ``acr``, ``amr`` and ``auth_time``;
- ``/userinfo``: JSON with ``SubjectNameID`` ("8" + RPPS), ``SubjectRefPro``, ``SubjectOrganization``,
  ``given_name``, ``family_name``… or a signed JWT (behaviour :data:`SIGNED_USERINFO`);
- ``/logout``: ``id_token_hint``, the registered ``post_logout_redirect_uri`` and ``state``.

Like the FranceConnect+ simulator (hospiconnect.devtools.fcplus_simulator, whose protocol helpers it
shares), it keeps no state: its RSA key is derived from the instance key file (:func:`signing_key`), and the
code and the access token are JWTs signed with it. The code is therefore not single use — see that module's
docstring for why that is acceptable for a development tool serving fictional people; the client's own
single-use ``state``/``nonce`` are what SECURITY.md item 20 requires.

Never in production: :func:`init_app` raises there, the blueprint is registered only when
``settings.psc_simulator_enabled``, and it answers 404 should it be registered otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import secrets
import types
import urllib.parse
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.datastructures import MultiDict

from hospiconnect import appctx
from hospiconnect.crypto import InstanceKeys
from hospiconnect.devtools.fcplus_simulator import (
    PageError,
    RedirectError,
    authenticated_client,
    back_to_client,
    decode_own,
    epoch_now,
    error_back,
    no_store,
    oauth_error,
    read_token,
    single_param,
)
from hospiconnect.devtools.seed import ESTABLISHMENTS, LEGAL_FINESS
from hospiconnect.directory.validation import luhn_complete
from hospiconnect.enrollment import fcplus, psc
from hospiconnect.settings import Settings

ISSUER_PATH = "/simulateur-psc/auth/realms/esante-wallet"
PROTOCOL = "/protocol/openid-connect"
CLIENT_ID = "hospiconnect-simulateur-psc"
CLIENT_SECRET = "simulateur-psc-hors-production"
# The callbacks the pairing and the sign-in will use (registered at PSC like any redirect URI).
CALLBACK_PATH = "/psc/retour"
REDIRECT_PATHS = (CALLBACK_PATH,)
POST_LOGOUT_PATH = "/psc/deconnexion"

CODE_SECONDS = 60
ACCESS_TOKEN_SECONDS = 120
ID_TOKEN_SECONDS = 300
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
SCOPES = ("openid", "scope_all", "profile", "email", "roles", "web-origins")
SIGNING_ALG = "RS256"
MAX_TOKEN_LENGTH = 16384
RSA_BITS = 2048

# The derived signing key: changing the label changes the key (and the kid) of every installation.
_SIGNING_KEY_LABEL = "hospiconnect:psc-simulator:rs256-signing-key:v1"
_CODE_TYPE = "psc-simulator-code+jwt"
_ACCESS_TOKEN_TYPE = "psc-simulator-at+jwt"

bp = Blueprint("psc_simulator", __name__, url_prefix="/simulateur-psc")

# What PSC reports in amr for each national MIE (DOMAIN.md; hospiconnect.enrollment.psc.MIE_TYPE_BY_AMR).
AMR_BY_MIE: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    psc.MIE_CPS: ("hwk", "pin", "mfa"),
    psc.MIE_E_CPS: ("pwd", "otp", "mfa"),
})
MIE_LABELS: Mapping[str, Any] = types.MappingProxyType({
    psc.MIE_CPS: _l("carte CPS"), psc.MIE_E_CPS: _l("application e-CPS"),
})


# --- the fictional professionals ---------------------------------------------------------------------------

def _rpps(serial: int) -> str:
    # 11 digits with a Luhn key like real RPPS numbers; the 1099990… range keeps them apart from the seed's.
    return luhn_complete(f"109999{serial:04d}")


@dataclasses.dataclass(frozen=True)
class SimulatedProfessional:
    """A fictional PSC user: the userinfo claims as PSC sends them, and the MIE they sign in with."""

    key: str
    national_id: str  # SubjectNameID: "8" + RPPS, or another IdNatPS form
    given_name: str
    family_name: str
    civility: str  # codeCivilite: M / MME
    title: str  # codeCiviliteDexercice: DR, or "" for no title
    profession: str  # codeProfession (10 médecin, 60 infirmier, 21 pharmacien, 50 sage-femme)
    profession_label: str
    mie: str  # psc.MIE_CPS or psc.MIE_E_CPS
    finess: str  # FINESS géographique of the activity
    organization: str
    description: Any  # lazy French text shown on the page

    @property
    def sub(self) -> str:
        # PSC's sub is the national identifier (Keycloak user name); stable across installations.
        return f"psc-{self.national_id}"

    @property
    def rpps(self) -> str | None:
        return psc.rpps_of(self.national_id)

    def ref_pro(self) -> dict[str, Any]:
        """Return ``SubjectRefPro`` shaped like PSC's (exercices → activités), with fictional values."""
        return {
            "codeCivilite": self.civility,
            "exercices": [{
                "codeProfession": self.profession,
                "codeCategorieProfessionnelle": "C",
                "codeCiviliteDexercice": self.title,
                "nomDexercice": self.family_name,
                "prenomDexercice": self.given_name,
                "codeTypeSavoirFaire": "",
                "codeSavoirFaire": "",
                "activities": [{
                    "codeModeExercice": "S",
                    "codeSecteurDactivite": "SA01",
                    "codeSectionPharmacien": "",
                    "codeRole": "",
                    "numeroSiretSite": "",
                    "numeroSirenSite": "",
                    "numeroFinessSite": self.finess,
                    "numeroFinessetablissementJuridique": LEGAL_FINESS,
                    "identifiantTechniqueDeLaStructure": f"F{self.finess}",
                    "raisonSocialeSite": self.organization,
                    "enseigneCommercialeSite": "",
                    "libelleCommuneCoordStructure": "Valmont (fictif)",
                }],
            }],
        }

    def claims(self) -> dict[str, Any]:
        """Return the userinfo claims (without ``sub``)."""
        return {
            "SubjectNameID": self.national_id,
            "preferred_username": self.national_id,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "SubjectOrganization": self.organization,
            "SubjectRefPro": self.ref_pro(),
            "SubjectRole": [f"{self.profession}^1.2.250.1.213.1.1.5.5"],
            "otherIds": [],
        }


_SITE, _SITE_NAME = ESTABLISHMENTS[0]
TEST_IDENTITIES: Mapping[str, SimulatedProfessional] = types.MappingProxyType({p.key: p for p in (
    SimulatedProfessional(
        key="medecin-cps", national_id="8" + _rpps(1), given_name="Hélène", family_name="VASSEUR-NGUYEN",
        civility="MME", title="DR", profession="10", profession_label="Médecin", mie=psc.MIE_CPS,
        finess=_SITE, organization=_SITE_NAME,
        description=_l("Médecin, se connecte avec sa carte CPS.")),
    SimulatedProfessional(
        key="infirmier-ecps", national_id="8" + _rpps(2), given_name="Yanis", family_name="BELKACEM",
        civility="M", title="", profession="60", profession_label="Infirmier", mie=psc.MIE_E_CPS,
        finess=_SITE, organization=_SITE_NAME,
        description=_l("Infirmier, se connecte avec l'application e-CPS.")),
    SimulatedProfessional(
        key="pharmacienne-ecps", national_id="8" + _rpps(3), given_name="Maëlys", family_name="LE GOFF",
        civility="MME", title="DR", profession="21", profession_label="Pharmacien", mie=psc.MIE_E_CPS,
        finess=ESTABLISHMENTS[1][0], organization=ESTABLISHMENTS[1][1],
        description=_l("Pharmacienne, se connecte avec l'application e-CPS.")),
    SimulatedProfessional(
        key="sage-femme-inconnue", national_id="8" + _rpps(9), given_name="Roxane", family_name="DELACOUR",
        civility="MME", title="", profession="50", profession_label="Sage-femme", mie=psc.MIE_CPS,
        finess="990009991", organization="Maternité d'un autre établissement (fictive)",
        description=_l("Sage-femme d'un autre établissement : son RPPS n'est pas dans l'annuaire "
                       "(appairage refusé).")),
)})

NORMAL = "normal"
SIGNED_USERINFO = "userinfo-signe"
BAD_SIGNATURE = "signature-etrangere"
OTHER_SUB = "sub-different"
ACR_EIDAS1 = "acr-eidas1"
BEHAVIOURS: Mapping[str, Any] = types.MappingProxyType({
    NORMAL: _l("Normal (informations d'identité en JSON)"),
    SIGNED_USERINFO: _l("Informations d'identité en JWT signé (application/jwt)"),
    BAD_SIGNATURE: _l("Jeton d'identité signé par une clé étrangère (signature invalide)"),
    OTHER_SUB: _l("Informations d'identité (userinfo) avec un autre sub"),
    ACR_EIDAS1: _l("Niveau eidas1 renvoyé quel que soit le niveau demandé"),
})


# --- addresses and the client configuration ----------------------------------------------------------------

def issuer(settings: Settings) -> str:
    """Return the simulator's issuer: ``{settings.issuer}/simulateur-psc/auth/realms/esante-wallet``."""
    return settings.issuer.rstrip("/") + ISSUER_PATH


def discovery_url(settings: Settings) -> str:
    """Return the simulator's discovery URL."""
    return issuer(settings) + "/.well-known/openid-configuration"


def redirect_uris(settings: Settings) -> tuple[str, ...]:
    """Return the redirect URIs the simulator accepts."""
    return tuple(settings.issuer.rstrip("/") + path for path in REDIRECT_PATHS)


def post_logout_redirect_uri(settings: Settings) -> str:
    """Return the only ``post_logout_redirect_uri`` the simulator accepts."""
    return settings.issuer.rstrip("/") + POST_LOGOUT_PATH


def client_config(settings: Settings, redirect_path: str = CALLBACK_PATH) -> psc.PscConfig:
    """Return the :class:`psc.PscConfig` with which our client talks to this simulator."""
    return psc.PscConfig(discovery_url=discovery_url(settings), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                         redirect_uri=settings.issuer.rstrip("/") + redirect_path,
                         acr_values=settings.psc_acr_values, allow_http=True)


# --- keys and tokens ---------------------------------------------------------------------------------------

def _probable_prime(n: int, rnd: random.Random, rounds: int = 40) -> bool:
    if n < 4:
        return n in (2, 3)
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _i in range(rounds):  # Miller–Rabin
        x = pow(rnd.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _j in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rnd: random.Random, bits: int, e: int) -> int:
    while True:
        candidate = rnd.getrandbits(bits) | (3 << (bits - 2)) | 1  # top two bits set: n has 2·bits bits
        if candidate % e != 1 and _probable_prime(candidate, rnd):
            return candidate


@functools.lru_cache(maxsize=8)
def _derived_key(seed_hex: str) -> RSAKey:
    # Python's Mersenne Twister seeded with a secret: every process of one installation draws the same primes.
    # A development key for fictional people, never a production key.
    rnd = random.Random(int(seed_hex, 16))  # noqa: S311
    e = 65537
    p = _prime(rnd, RSA_BITS // 2, e)
    q = _prime(rnd, RSA_BITS // 2, e)
    while q == p:
        q = _prime(rnd, RSA_BITS // 2, e)
    phi = (p - 1) * (q - 1)
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p=p, q=q, d=d, dmp1=d % (p - 1), dmq1=d % (q - 1), iqmp=pow(q, -1, p),
                                    public_numbers=rsa.RSAPublicNumbers(e, p * q))
    key = RSAKey.import_key(numbers.private_key(), {"use": "sig", "alg": SIGNING_ALG})
    key.ensure_kid()
    return key


def signing_key(keys: InstanceKeys) -> RSAKey:
    """Return the simulator's RS256 key, derived from the instance's HMAC key: every process and every
    restart of one installation agrees on it without storing it."""
    return _derived_key(keys.keyed_hash(_SIGNING_KEY_LABEL))


def _key() -> RSAKey:
    return signing_key(appctx.runtime().keys)


def _sign(claims: dict[str, Any], typ: str = "JWT", *, foreign: bool = False) -> str:
    own = _key()
    # A foreign signature keeps our kid: the client finds our key and the signature fails against it.
    signer = RSAKey.generate_key(RSA_BITS) if foreign else own
    return jwt.encode({"alg": SIGNING_ALG, "typ": typ, "kid": own.kid}, claims, signer, algorithms=[SIGNING_ALG])


def _issue(claims: dict[str, Any], typ: str) -> str:
    return _sign({**claims, "jti": secrets.token_urlsafe(16)}, typ)


def _read(token: Any, typ: str, settings: Settings) -> dict[str, Any] | None:
    return read_token(token, typ, key=_key(), alg=SIGNING_ALG, issuer_url=issuer(settings),
                      identities=TEST_IDENTITIES, behaviours=BEHAVIOURS, max_length=MAX_TOKEN_LENGTH)


# --- the authorization request -----------------------------------------------------------------------------



@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request (carried by the page's form: the simulator keeps no state)."""

    redirect_uri: str
    scope: str
    acr_values: str
    state: str
    nonce: str
    prompt: str

    def form_fields(self) -> dict[str, str]:
        """Return the request parameters, to be posted back with the person's choice."""
        fields = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": self.redirect_uri,
                  "scope": self.scope, "acr_values": self.acr_values, "state": self.state, "nonce": self.nonce}
        if self.prompt:
            fields["prompt"] = self.prompt
        return fields

    @property
    def acr(self) -> str:
        """The level returned when all goes well: the first one requested."""
        return self.acr_values.split()[0]


def validate_authorization(settings: Settings, params: MultiDict[str, str]) -> AuthorizationRequest:
    """Return the validated request; raise :class:`PageError` or :class:`RedirectError`."""
    try:
        client_id, uri = single_param(params, "client_id"), single_param(params, "redirect_uri")
    except ValueError:
        raise PageError(_("Paramètre client_id ou redirect_uri répété.")) from None
    if client_id != CLIENT_ID:
        raise PageError(_("Client inconnu du simulateur : %(client)s.", client=(client_id or "—")[:100]))
    if uri not in redirect_uris(settings):
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
    if any(s not in SCOPES for s in scopes):
        raise RedirectError("invalid_scope", "unknown scope", state)
    acr_values = values["acr_values"].split() or ["eidas1"]
    if any(acr not in ACR_LEVELS for acr in acr_values):
        raise RedirectError("invalid_request", "acr_values must be eidas1, eidas2 or eidas3", state)
    if len(values["state"]) < fcplus.MIN_RANDOM_LENGTH or len(values["nonce"]) < fcplus.MIN_RANDOM_LENGTH:
        raise RedirectError("invalid_request", "state and nonce are required (at least 32 characters)", state)
    prompts = values["prompt"].split()
    if "none" in prompts:
        # The simulator keeps no SSO session.
        raise RedirectError("login_required", "no session at the simulator", state)
    if any(p not in ("login", "consent") for p in prompts):
        raise RedirectError("invalid_request", "unsupported prompt value", state)
    return AuthorizationRequest(redirect_uri=uri, scope=" ".join(scopes), acr_values=" ".join(acr_values),
                                state=values["state"], nonce=values["nonce"], prompt=" ".join(prompts))


def _back_to_client(settings: Settings, target: str, params: dict[str, str], *, status: int = 302) -> Response:
    return back_to_client(issuer(settings), target, params, status=status)


def _error_back(settings: Settings, target: str, exc: RedirectError, *, status: int = 302) -> Response:
    return error_back(issuer(settings), target, exc, status=status)


def _page_error(message: str, status: int = 400) -> Response:
    return Response(render_template("psc_simulator/error.html", message=message), status=status)


# --- endpoints ---------------------------------------------------------------------------------------------

def _settings() -> Settings:
    return current_app.config["SETTINGS"]


@bp.before_request
def _only_when_enabled() -> None:
    # Second line of defence: registered by mistake (production, or a real PSC configured).
    if not _settings().psc_simulator_enabled:
        abort(404)


bp.after_request(no_store)


@bp.get("/auth/realms/esante-wallet/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """The discovery document (OpenID Connect Discovery 1.0 §3), shaped like Keycloak's."""
    base = issuer(_settings())
    return jsonify({
        "issuer": base,
        "authorization_endpoint": f"{base}{PROTOCOL}/auth",
        "token_endpoint": f"{base}{PROTOCOL}/token",
        "userinfo_endpoint": f"{base}{PROTOCOL}/userinfo",
        "jwks_uri": f"{base}{PROTOCOL}/certs",
        "end_session_endpoint": f"{base}{PROTOCOL}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "scopes_supported": list(SCOPES),
        "claims_supported": ["sub", "iss", "aud", "acr", "amr", "auth_time", "SubjectNameID", "SubjectRefPro",
                             "SubjectOrganization", "SubjectRole", "given_name", "family_name",
                             "preferred_username", "otherIds"],
        "acr_values_supported": list(ACR_LEVELS),
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        "userinfo_signing_alg_values_supported": [SIGNING_ALG],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    })


@bp.get(f"/auth/realms/esante-wallet{PROTOCOL}/certs")
def jwks() -> Response:
    """The simulator's public signing key."""
    return jsonify({"keys": [_key().as_dict(private=False)]})


@bp.get(f"/auth/realms/esante-wallet{PROTOCOL}/auth")
def authorize() -> Response:
    """Validate the request like PSC, then show the fictional professionals."""
    settings = _settings()
    try:
        auth = validate_authorization(settings, request.args)
    except PageError as exc:
        return _page_error(str(exc))
    except RedirectError as exc:
        return _error_back(settings, request.args["redirect_uri"], exc)
    return Response(render_template(
        "psc_simulator/authorize.html", fields=auth.form_fields(), auth=auth, identities=TEST_IDENTITIES,
        behaviours=BEHAVIOURS, normal=NORMAL, mie_labels=MIE_LABELS))


@bp.post(f"/auth/realms/esante-wallet{PROTOCOL}/auth")
def choose() -> Response:
    """The person chose a professional (or cancelled): back to the client with a code (or access_denied)."""
    settings = _settings()
    try:
        auth = validate_authorization(settings, request.form)
    except PageError as exc:
        return _page_error(str(exc))
    except RedirectError as exc:
        return _error_back(settings, request.form["redirect_uri"], exc, status=303)
    if request.form.get("action") == "cancel":
        return _error_back(settings, auth.redirect_uri,
                           RedirectError("access_denied", "user cancelled the authentication", auth.state),
                           status=303)
    identity, behaviour = request.form.get("identity", ""), request.form.get("behaviour", NORMAL)
    if identity not in TEST_IDENTITIES or behaviour not in BEHAVIOURS:
        return _page_error(_("Identité ou comportement de test inconnu."))
    now = epoch_now()
    code = _issue({"iss": issuer(settings), "client_id": CLIENT_ID, "redirect_uri": auth.redirect_uri,
                   "identity": identity, "behaviour": behaviour, "scope": auth.scope, "nonce": auth.nonce,
                   "acr": "eidas1" if behaviour == ACR_EIDAS1 else auth.acr, "auth_time": now, "iat": now,
                   "exp": now + CODE_SECONDS}, _CODE_TYPE)
    return _back_to_client(settings, auth.redirect_uri, {"code": code, "state": auth.state}, status=303)


@bp.post(f"/auth/realms/esante-wallet{PROTOCOL}/token")
def token() -> Response:
    """Exchange a code for an access token and a signed ID token (RFC 6749 §4.1.3, OIDC Core §3.1.3)."""
    settings = _settings()
    client_id, failure = authenticated_client(CLIENT_ID, CLIENT_SECRET, "simulateur-psc")
    if failure is not None:
        return failure
    if request.form.get("grant_type") != "authorization_code":
        return oauth_error("unsupported_grant_type", "only authorization_code is supported")
    code = _read(request.form.get("code"), _CODE_TYPE, settings)
    if code is None or code.get("client_id") != client_id:
        return oauth_error("invalid_grant", "invalid or expired authorization code")
    if request.form.get("redirect_uri") != code.get("redirect_uri"):
        return oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
    person, behaviour, now = TEST_IDENTITIES[code["identity"]], code["behaviour"], epoch_now()
    id_token = _sign({"iss": issuer(settings), "sub": person.sub, "aud": client_id, "azp": client_id,
                      "exp": now + ID_TOKEN_SECONDS, "iat": now, "nonce": code.get("nonce"),
                      "acr": code.get("acr"), "amr": list(AMR_BY_MIE[person.mie]),
                      "auth_time": code.get("auth_time"), "preferred_username": person.national_id,
                      "sid": secrets.token_urlsafe(16)},
                     foreign=behaviour == BAD_SIGNATURE)
    access_token = _issue({"iss": issuer(settings), "client_id": client_id, "identity": code["identity"],
                           "behaviour": behaviour, "scope": code.get("scope", "openid"), "iat": now,
                           "exp": now + ACCESS_TOKEN_SECONDS}, _ACCESS_TOKEN_TYPE)
    return jsonify({"access_token": access_token, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS,
                    "id_token": id_token, "scope": code.get("scope", "openid")})


@bp.route(f"/auth/realms/esante-wallet{PROTOCOL}/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """The professional's claims: JSON, or a signed JWT with the :data:`SIGNED_USERINFO` behaviour."""
    settings = _settings()
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return oauth_error("invalid_request", "bearer token required", 401,
                           {"WWW-Authenticate": 'Bearer realm="simulateur-psc"'})
    access = _read(value.strip(), _ACCESS_TOKEN_TYPE, settings)
    if access is None:
        return oauth_error("invalid_token", "invalid or expired access token", 401,
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    person, behaviour = TEST_IDENTITIES[access["identity"]], access["behaviour"]
    sub = f"psc-autre-{person.national_id}" if behaviour == OTHER_SUB else person.sub
    # scope_all releases everything; openid alone, only sub.
    released = person.claims() if "scope_all" in str(access.get("scope", "")).split() else {}
    claims: dict[str, Any] = {"sub": sub, **released}
    if behaviour == SIGNED_USERINFO:
        body = _sign({**claims, "iss": issuer(settings), "aud": access.get("client_id"), "iat": epoch_now()})
        return Response(body, mimetype="application/jwt")
    return jsonify(claims)


def _plausible_id_token(hint: Any) -> bool:
    """True when ``hint`` is an ID token this simulator signed for our client (expired or not)."""
    decoded = decode_own(hint, _key(), SIGNING_ALG, max_length=MAX_TOKEN_LENGTH)
    if decoded is None:
        return False
    return decoded.claims.get("iss") == issuer(_settings()) and decoded.claims.get("aud") == CLIENT_ID


@bp.get(f"/auth/realms/esante-wallet{PROTOCOL}/logout")
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
    if not _plausible_id_token(hint):
        return _page_error(_("Le paramètre id_token_hint est absent ou n'est pas un jeton d'identité de ce "
                             "simulateur."))
    params = {"state": state} if state else {}
    return redirect(f"{target}?{urllib.parse.urlencode(params)}" if params else target, code=302)


def init_app(app: Flask) -> None:
    """Register the simulator (``/simulateur-psc``). Raises RuntimeError in production."""
    if app.config["SETTINGS"].is_production:
        raise RuntimeError("Le simulateur Pro Santé Connect ne peut pas être activé en production.")
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        # Called by servers, which authenticate themselves (client secret, bearer token): no browser form.
        csrf.exempt(token)
        csrf.exempt(userinfo)
    app.register_blueprint(bp)

