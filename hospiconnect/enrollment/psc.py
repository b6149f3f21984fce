"""Pro Santé Connect client: the national identity of a health professional (no Flask, no database).

Facts from the ANS documentation for relying parties (« Pro Santé Connect — documentation fournisseurs de
service », industriels.esante.gouv.fr / integrateurs.esante.gouv.fr, and DOMAIN.md « Pro Santé Connect »);
values marked (?) could not be confirmed publicly and are configurable:

- standard OpenID Connect (PSC runs on Keycloak), authorization code flow; ``scope=openid scope_all``;
  ``acr_values`` sent, default ``eidas1`` (the level seen in integrations (?));
- the ID token is signed, RS256 in the PSC sandbox (« bac à sable », BAS); we accept the algorithms the
  provider's discovery announces among :data:`SIGNING_ALGORITHMS` (RS256, ES256) and never ``none``/HS*;
  the ID token is not encrypted;
- userinfo is returned as JSON, or as a signed JWT (``application/jwt``) when the client is registered so
  and the discovery announces ``userinfo_signing_alg_values_supported``;
- userinfo claims: ``SubjectNameID`` (the national identifier: "8" followed by the 11-digit RPPS number for a
  professional with an RPPS; other prefixes for other identifier types, see :data:`NATIONAL_ID_TYPES` (?)),
  ``SubjectRefPro`` (professions, "exercices" and their "activités" with the FINESS of their sites: kept as
  received, opaque), ``SubjectOrganization``, ``given_name``, ``family_name``; ``acr``, ``amr`` and
  ``auth_time`` come in the ID token;
- ``amr``: PSC reports how the person authenticated, e.g. ``["pwd", "otp", "mfa"]``-like sets for the e-CPS
  app and ``["hwk", "pin", "mfa"]``-like sets for the CPS card (?). Which MIE was used (``"cps"`` or
  ``"e-cps"``) is derived from them by :data:`MIE_TYPE_BY_AMR` (one dict, configurable per
  :class:`PscConfig`), then :data:`MIE_TYPE_BY_ACR`; None when neither tells;
- PSC keeps an SSO session (4 h, 30 min idle); the access token lives 2 minutes, so the callback exchanges the
  code and reads userinfo at once. Sandbox discovery: :data:`SANDBOX_DISCOVERY_URL` (?).

The flow reuses the FranceConnect+ client's pieces (hospiconnect.enrollment.fcplus: HTTP, discovery,
:class:`~hospiconnect.enrollment.fcplus.TransactionState`, the authorization response and ID token claim checks,
the code exchange); their errors are turned into the :class:`PscError` family, whose French messages name
Pro Santé Connect.

SECURITY.md item 20: single-use ``state``/``nonce`` of ≥ 32 characters (the caller stores the
:class:`TransactionState` and deletes it before :func:`handle_callback`), the ``iss`` parameter and the ID
token issuer must be the provider the transaction started with (mix-up defence), signature keys only from
the provider's JWKS, ``acr`` at least the requested level, and the person is identified by (issuer, ``sub``),
never by e-mail.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import re
import secrets
import types
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import Key, KeySet

from hospiconnect.enrollment import fcplus
from hospiconnect.enrollment.fcplus import (
    ACR_RANK,
    Discovery,
    Fetch,
    HttpRequest,
    HttpResponse,
    TransactionState,
    urllib_fetch,
)

__all__ = ["Discovery", "Fetch", "HttpRequest", "HttpResponse", "TransactionState", "urllib_fetch"]

DEFAULT_SCOPES = "openid scope_all"
DEFAULT_ACR_VALUES = "eidas1"
SANDBOX_DISCOVERY_URL = ("https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet/"
                         ".well-known/openid-configuration")

#: Signature algorithms we accept, whatever else the discovery announces (never "none", never HS*: a
#: symmetric algorithm would let anyone holding the public key, or the client secret, forge tokens).
SIGNING_ALGORITHMS = ("RS256", "ES256")
#: OpenID Connect Discovery §3: RS256 is the default when ``id_token_signing_alg_values_supported`` is absent.
_DEFAULT_ID_TOKEN_ALGORITHMS = ("RS256",)
_KEY_TYPE = {"RS256": "RSA", "ES256": "EC"}

MIE_CPS = "cps"
MIE_E_CPS = "e-cps"
#: amr value → MIE the person used at PSC. RFC 8176 names: ``hwk`` proof of possession of a hardware key and
#: ``sc`` smart card (the CPS in its reader), ``pin`` the card's PIN (in DOMAIN.md's card example); ``swk``
#: a software key, ``otp``/``pwd`` the e-CPS app's one-time code and PIN. ``mfa`` says nothing about the
#: means. When amr values point to both, :data:`MIE_TYPE_PRECEDENCE` decides (a card is decisive).
MIE_TYPE_BY_AMR: Mapping[str, str] = types.MappingProxyType({
    "hwk": MIE_CPS, "sc": MIE_CPS, "pin": MIE_CPS,
    "swk": MIE_E_CPS, "otp": MIE_E_CPS, "pwd": MIE_E_CPS,
})
#: acr → MIE, used only when amr tells nothing. PSC reports ``eidas1`` for both CPS and e-CPS (?), so no acr
#: tells them apart by default; an establishment may fill this in when the ANS documents one.
MIE_TYPE_BY_ACR: Mapping[str, str] = types.MappingProxyType({})
MIE_TYPE_PRECEDENCE = (MIE_CPS, MIE_E_CPS)

#: First character of ``SubjectNameID`` → type of national identifier (the ANS "identifiant national de
#: professionnel", IdNatPS). Only "8" (RPPS) is used by the pairing; the others are informative (?).
NATIONAL_ID_TYPES: Mapping[str, str] = types.MappingProxyType({
    "8": "RPPS", "0": "ADELI", "3": "FINESS", "4": "SIREN", "5": "SIRET",
})
_RPPS_FORM = re.compile(r"8(\d{11})")


# --- errors -------------------------------------------------------------------------------------------------


class PscError(Exception):
    """A Pro Santé Connect step failed; ``str(error)`` is a French message that can be shown to the person."""

    message = "La connexion Pro Santé Connect a échoué."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(self.message if not detail else f"{self.message} ({detail})")


class PscConfigurationError(PscError):
    message = "La configuration Pro Santé Connect est invalide."


class DiscoveryError(PscError):
    message = "Le document de découverte Pro Santé Connect est inaccessible ou invalide."


class ProviderError(PscError):
    message = "Pro Santé Connect a renvoyé une erreur."


class AccessDenied(ProviderError):
    message = "Vous avez annulé la connexion Pro Santé Connect."


class StateMismatch(PscError):
    message = "La réponse Pro Santé Connect ne correspond à aucune demande en cours (paramètre state invalide)."


class TransactionExpired(PscError):
    message = "La demande Pro Santé Connect a expiré : veuillez recommencer."


class IssuerMismatch(PscError):
    message = "La réponse ne provient pas du fournisseur Pro Santé Connect attendu."


class BadTokenSignature(PscError):
    message = "La signature du jeton Pro Santé Connect est invalide."


class InvalidToken(PscError):
    message = "Le jeton Pro Santé Connect est invalide."


class AudienceMismatch(InvalidToken):
    message = "Le jeton Pro Santé Connect n'est pas destiné à ce service."


class ExpiredToken(InvalidToken):
    message = "Le jeton Pro Santé Connect a expiré : veuillez recommencer."


class NonceMismatch(InvalidToken):
    message = "Le jeton Pro Santé Connect ne correspond pas à la demande en cours (nonce invalide)."


class AcrTooLow(InvalidToken):
    message = "Le niveau d'authentification Pro Santé Connect est inférieur au niveau demandé."


class SubjectMismatch(InvalidToken):
    message = "Les informations d'identité Pro Santé Connect ne concernent pas la personne authentifiée."


class MissingNationalId(InvalidToken):
    message = "Pro Santé Connect n'a pas transmis d'identifiant national (SubjectNameID)."


# The shared FranceConnect+ steps raise FcPlusError subclasses; each becomes its PSC counterpart (the most
# specific class found along the error's MRO).
_FROM_FCPLUS: Mapping[type[fcplus.FcPlusError], type[PscError]] = {
    fcplus.FcPlusConfigurationError: PscConfigurationError,
    fcplus.DiscoveryError: DiscoveryError,
    fcplus.AccessDenied: AccessDenied,
    fcplus.ProviderError: ProviderError,
    fcplus.StateMismatch: StateMismatch,
    fcplus.TransactionExpired: TransactionExpired,
    fcplus.IssuerMismatch: IssuerMismatch,
    fcplus.BadTokenSignature: BadTokenSignature,
    fcplus.AudienceMismatch: AudienceMismatch,
    fcplus.ExpiredToken: ExpiredToken,
    fcplus.NonceMismatch: NonceMismatch,
    fcplus.AcrTooLow: AcrTooLow,
    fcplus.SubjectMismatch: SubjectMismatch,
    fcplus.InvalidToken: InvalidToken,
    fcplus.FcPlusError: PscError,
}


@contextlib.contextmanager
def _psc_errors() -> Iterator[None]:
    try:
        yield
    except fcplus.FcPlusError as exc:
        target = next(_FROM_FCPLUS[cls] for cls in type(exc).__mro__ if cls in _FROM_FCPLUS)
        raise target(exc.detail) from exc


# --- configuration and discovery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PscConfig:
    """The client's registration at Pro Santé Connect.

    ``token_auth_method`` is ``client_secret_basic`` or ``client_secret_post``. ``allow_http`` is only for a
    local simulator. ``prompt`` is not sent by default here; the pairing and the sign-in
    (hospiconnect.enrollment.national.begin) send ``login``, so that PSC's own session never stands in for the
    person at the keyboard.
    """

    discovery_url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    acr_values: str = DEFAULT_ACR_VALUES
    scopes: str = DEFAULT_SCOPES
    token_auth_method: str = "client_secret_basic"
    allow_http: bool = False
    transaction_max_age: dt.timedelta = dt.timedelta(minutes=10)
    clock_skew: dt.timedelta = dt.timedelta(seconds=60)
    prompt: str | None = None
    mie_type_by_amr: Mapping[str, str] = field(default_factory=lambda: MIE_TYPE_BY_AMR, repr=False)
    mie_type_by_acr: Mapping[str, str] = field(default_factory=lambda: MIE_TYPE_BY_ACR, repr=False)

    def __post_init__(self) -> None:
        if self.acr_values not in ACR_RANK:
            raise PscConfigurationError("acr_values doit valoir eidas1, eidas2 ou eidas3")
        if self.token_auth_method not in ("client_secret_post", "client_secret_basic"):
            raise PscConfigurationError("méthode d'authentification au jeton inconnue")
        if "openid" not in self.scopes.split():
            raise PscConfigurationError("le scope openid est obligatoire")
        if not self.client_id or not self.client_secret:
            raise PscConfigurationError("identifiant et secret client obligatoires")
        if any(v not in (MIE_CPS, MIE_E_CPS) for v in (*self.mie_type_by_amr.values(),
                                                       *self.mie_type_by_acr.values())):
            raise PscConfigurationError("les correspondances amr/acr doivent désigner cps ou e-cps")

    def __repr__(self) -> str:  # never the secret, in logs or tracebacks
        return f"PscConfig(discovery_url={self.discovery_url!r}, client_id={self.client_id!r})"


def load_discovery(config: PscConfig, fetch: Fetch = urllib_fetch) -> Discovery:
    """Fetch and return PSC's discovery document (issuer = the URL before ``/.well-known``, HTTPS endpoints).

    Raises DiscoveryError (or ProviderError when PSC cannot be reached); also when the discovery announces
    none of the signature algorithms we accept.
    """
    with _psc_errors():
        discovery = fcplus.load_discovery(config, fetch)
    id_token_algorithms(discovery)
    return discovery


def _announced(discovery: Discovery, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values = discovery.raw.get(name)
    if values is None:
        return default
    if not isinstance(values, list):
        raise DiscoveryError(f"{name} invalide")
    return tuple(alg for alg in SIGNING_ALGORITHMS if alg in values)


def id_token_algorithms(discovery: Discovery) -> tuple[str, ...]:
    """Return the ID token signature algorithms to accept: those the discovery announces among
    :data:`SIGNING_ALGORITHMS` (RS256 when it announces none). Raises DiscoveryError when none is left."""
    algorithms = _announced(discovery, "id_token_signing_alg_values_supported", _DEFAULT_ID_TOKEN_ALGORITHMS)
    if not algorithms:
        raise DiscoveryError("aucun algorithme de signature accepté (RS256 ou ES256)")
    return algorithms


def userinfo_algorithms(discovery: Discovery) -> tuple[str, ...]:
    """Return the algorithms a signed userinfo may use (empty: only JSON userinfo is accepted)."""
    return _announced(discovery, "userinfo_signing_alg_values_supported", ())


def load_provider_jwks(discovery: Discovery, fetch: Fetch = urllib_fetch) -> KeySet:
    """Fetch PSC's public signature keys (RSA and EC). Raises DiscoveryError."""
    with _psc_errors():
        return fcplus.load_provider_jwks(discovery, fetch, key_types=("RSA", "EC"))


# --- authorization request ----------------------------------------------------------------------------------


def build_authorization_request(
    config: PscConfig, discovery: Discovery, *, now: dt.datetime | None = None
) -> tuple[str, TransactionState]:
    """Return the URL to redirect the person to and the :class:`TransactionState` to store (single use)."""
    # 32 random bytes give 43 URL-safe characters, above the 32 characters of SECURITY.md item 20.
    transaction = TransactionState(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                                   issuer=discovery.issuer, created_at=now or dt.datetime.now(dt.timezone.utc),
                                   acr_values=config.acr_values)
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": config.scopes,
        "acr_values": config.acr_values,
        "state": transaction.state,
        "nonce": transaction.nonce,
    }
    if config.prompt:
        params["prompt"] = config.prompt
    separator = "&" if "?" in discovery.authorization_endpoint else "?"
    return f"{discovery.authorization_endpoint}{separator}{urllib.parse.urlencode(params)}", transaction


# --- signed tokens ------------------------------------------------------------------------------------------


def _header(token: str) -> dict[str, Any]:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise InvalidToken("en-tête illisible") from exc
    if not isinstance(header, dict):
        raise InvalidToken("en-tête illisible")
    return header


def _signing_key_for(provider_jwks: KeySet) -> Callable[[Any], Key]:
    """Return a resolver choosing PSC's key by ``kid`` (or the only key of the algorithm's type)."""

    def resolve(obj: Any) -> Key:
        header = obj.headers()
        wanted = _KEY_TYPE.get(str(header.get("alg")))
        candidates = [key for key in provider_jwks if key.key_type == wanted]
        kid = header.get("kid")
        if kid is not None:
            candidates = [key for key in candidates if key.kid == kid]
        if len(candidates) != 1:
            raise BadTokenSignature("clé de signature inconnue")
        return candidates[0]

    return resolve


def verify_signed(token: Any, *, provider_jwks: KeySet, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """Verify a compact JWS signed by PSC and return its claims (none checked here).

    The algorithm must be one of ``algorithms`` (a subset of :data:`SIGNING_ALGORITHMS`) before any key is
    touched; the key comes from ``provider_jwks`` only. Raises BadTokenSignature or InvalidToken.
    """
    if not isinstance(token, str) or token.count(".") != 2:
        raise InvalidToken("jeton signé attendu")
    alg = _header(token).get("alg")
    if alg not in algorithms or alg not in SIGNING_ALGORITHMS:
        raise BadTokenSignature(f"algorithme de signature non autorisé : {str(alg)[:20]}")
    try:
        signed = jws.deserialize_compact(token, _signing_key_for(provider_jwks), algorithms=list(algorithms))
    except PscError:
        raise
    except UnsupportedAlgorithmError as exc:
        raise BadTokenSignature("algorithme de signature non autorisé") from exc
    except BadSignatureError as exc:
        raise BadTokenSignature() from exc
    except (JoseError, ValueError) as exc:
        raise BadTokenSignature("signature invérifiable") from exc
    try:
        claims = json.loads(signed.payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("contenu illisible") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("contenu illisible")
    return claims


def validate_id_token_claims(
    claims: Mapping[str, Any], *, config: PscConfig, discovery: Discovery, state_record: TransactionState,
    now: dt.datetime,
) -> None:
    """Check iss, aud (and azp), exp, iat, nonce, acr and sub of the ID token's claims (the FranceConnect+
    rules, shared). Raises IssuerMismatch, AudienceMismatch, ExpiredToken, NonceMismatch, AcrTooLow or
    InvalidToken."""
    with _psc_errors():
        fcplus.validate_id_token_claims(claims, config=config, discovery=discovery, state_record=state_record,
                                        now=now)


# --- the national identity ----------------------------------------------------------------------------------


def rpps_of(national_id: Any) -> str | None:
    """Return the 11-digit RPPS number when ``national_id`` is "8" + RPPS, else None."""
    if not isinstance(national_id, str):
        return None
    match = _RPPS_FORM.fullmatch(national_id.strip())
    return match.group(1) if match else None


def national_id_type(national_id: Any) -> str | None:
    """Return the type of a ``SubjectNameID`` from its first character (:data:`NATIONAL_ID_TYPES`)."""
    if not isinstance(national_id, str) or not national_id:
        return None
    if national_id.startswith("8") and rpps_of(national_id) is None:
        return None  # "8" announces an RPPS number, and this is not one
    return NATIONAL_ID_TYPES.get(national_id[0])


def mie_type_of(amr: list[str], acr: str | None, *, by_amr: Mapping[str, str] = MIE_TYPE_BY_AMR,
                by_acr: Mapping[str, str] = MIE_TYPE_BY_ACR) -> str | None:
    """Return ``"cps"`` or ``"e-cps"``: the MIE the amr values point to (precedence to the card), else the
    one of the acr, else None."""
    found = {by_amr[value] for value in amr if value in by_amr}
    for mie_type in MIE_TYPE_PRECEDENCE:
        if mie_type in found:
            return mie_type
    return by_acr.get(acr) if acr is not None else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True)
class NationalIdentity:
    """The outcome of a successful Pro Santé Connect callback.

    The person is keyed by (``issuer``, ``sub``), never by e-mail. ``rpps`` is the SubjectNameID without its
    leading "8" when it has the RPPS form, else None. ``raw_ref_pro`` is ``SubjectRefPro`` as received.
    ``id_token`` is the signed ID token, the ``id_token_hint`` for logout.
    """

    issuer: str
    sub: str
    national_id: str
    national_id_type: str | None
    rpps: str | None
    given_name: str
    family_name: str
    organization: str
    acr: str
    amr: tuple[str, ...]
    auth_time: dt.datetime | None
    mie_type: str | None
    raw_ref_pro: Any
    claims: dict[str, Any] = field(repr=False)
    id_token_claims: dict[str, Any] = field(repr=False)
    id_token: str = field(default="", repr=False)


def identity_from_claims(config: PscConfig, issuer: str, id_claims: Mapping[str, Any],
                         userinfo: Mapping[str, Any], id_token: str = "") -> NationalIdentity:
    """Return the :class:`NationalIdentity` of validated ID token claims and userinfo claims.

    Raises MissingNationalId when userinfo has no SubjectNameID (nor preferred_username), InvalidToken when
    ``amr`` or ``auth_time`` are malformed.
    """
    national_id = _text(userinfo.get("SubjectNameID")) or _text(userinfo.get("preferred_username"))
    if not national_id:
        raise MissingNationalId()
    raw_amr = id_claims.get("amr", [])
    if not isinstance(raw_amr, list) or not all(isinstance(a, str) for a in raw_amr):
        raise InvalidToken("amr invalide")
    auth_time = id_claims.get("auth_time")
    if auth_time is not None and (isinstance(auth_time, bool) or not isinstance(auth_time, (int, float))):
        raise InvalidToken("auth_time invalide")
    acr = str(id_claims.get("acr"))
    return NationalIdentity(
        issuer=issuer,
        sub=str(id_claims["sub"]),
        national_id=national_id,
        national_id_type=national_id_type(national_id),
        rpps=rpps_of(national_id),
        given_name=_text(userinfo.get("given_name")),
        family_name=_text(userinfo.get("family_name")),
        organization=_text(userinfo.get("SubjectOrganization")),
        acr=acr,
        amr=tuple(raw_amr),
        auth_time=dt.datetime.fromtimestamp(auth_time, dt.timezone.utc) if auth_time is not None else None,
        mie_type=mie_type_of(raw_amr, acr, by_amr=config.mie_type_by_amr, by_acr=config.mie_type_by_acr),
        raw_ref_pro=userinfo.get("SubjectRefPro"),
        claims=dict(userinfo),
        id_token_claims=dict(id_claims),
        id_token=id_token,
    )


# --- callback -----------------------------------------------------------------------------------------------


def _fetch_userinfo(discovery: Discovery, access_token: str, fetch: Fetch, *, config: PscConfig,
                    provider_jwks: KeySet) -> dict[str, Any]:
    response = fetch(HttpRequest("GET", discovery.userinfo_endpoint,
                                 {"Authorization": f"Bearer {access_token}",
                                  "Accept": "application/json, application/jwt"}))
    if response.status != 200:
        raise ProviderError(f"informations d'identité indisponibles (HTTP {response.status})")
    if response.content_type == "application/json":
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderError("informations d'identité illisibles") from exc
        if not isinstance(body, dict):
            raise ProviderError("informations d'identité illisibles")
        return body
    if response.content_type == "application/jwt":
        algorithms = userinfo_algorithms(discovery)
        if not algorithms:
            raise InvalidToken("réponse userinfo signée non annoncée par le fournisseur")
        claims = verify_signed(response.body.decode("ascii", errors="replace").strip(),
                               provider_jwks=provider_jwks, algorithms=algorithms)
        # A signed userinfo carries iss and aud (OIDC Core §5.3.2): when present they must be ours.
        if "iss" in claims and claims["iss"] != discovery.issuer:
            raise IssuerMismatch("émetteur des informations d'identité")
        if "aud" in claims:
            with _psc_errors():
                fcplus.check_audience(claims, config.client_id)
        return claims
    raise ProviderError(f"type de réponse userinfo inattendu : {response.content_type[:50] or '—'}")


def handle_callback(
    config: PscConfig,
    discovery: Discovery,
    state_record: TransactionState,
    callback_params: Mapping[str, str],
    *,
    fetch: Fetch = urllib_fetch,
    provider_jwks: KeySet,
    now: dt.datetime | None = None,
) -> NationalIdentity:
    """Complete the code flow and return the :class:`NationalIdentity`.

    ``state_record`` is the transaction stored by :func:`build_authorization_request`; the caller must have
    removed it from storage already (single use), whatever the outcome here.

    Order of checks: state (constant time), transaction issuer and age, the ``iss`` parameter (mix-up
    defence, RFC 9207), provider error responses, code exchange, ID token signature (announced algorithm
    among RS256/ES256, PSC's JWKS only) and claims (iss, aud, exp, nonce, acr), then userinfo (same ``sub``).

    Raises a subclass of PscError.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    with _psc_errors():
        code = fcplus.check_authorization_response(config, discovery, state_record, callback_params, now=now)
        tokens = fcplus.exchange_code(config, discovery, code, fetch)
    id_token: str = tokens["id_token"]
    id_claims = verify_signed(id_token, provider_jwks=provider_jwks, algorithms=id_token_algorithms(discovery))
    validate_id_token_claims(id_claims, config=config, discovery=discovery, state_record=state_record, now=now)
    with _psc_errors():
        userinfo = _fetch_userinfo(discovery, tokens["access_token"], fetch, config=config,
                                   provider_jwks=provider_jwks)
    if not fcplus.values_equal(id_claims["sub"], userinfo.get("sub")):
        raise SubjectMismatch()
    return identity_from_claims(config, discovery.issuer, id_claims, userinfo, id_token)


def end_session_url(discovery: Discovery, id_token: str, post_logout_redirect_uri: str, state: str) -> str:
    """Return PSC's logout URL (``id_token_hint``, ``post_logout_redirect_uri``, ``state``).

    Raises DiscoveryError when the provider has no end-session endpoint."""
    with _psc_errors():
        return fcplus.end_session_url(discovery, id_token, post_logout_redirect_uri, state)
