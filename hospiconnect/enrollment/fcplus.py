"""FranceConnect+ client: remote identity verification before a remote enrollment (no Flask, no database).

Facts from the FranceConnect+ partner documentation (see DOMAIN.md, « FranceConnect+ »):

- authorization code flow only; ``acr_values`` is mandatory: ``eidas2`` (substantial) or ``eidas3`` (high);
- ``state`` and ``nonce`` are mandatory and at least 32 characters long;
- the ID token and the userinfo response (``application/jwt``) are signed (ES256) THEN encrypted (RSA-OAEP or
  ECDH-ES, content encryption A256GCM) to the keys the client publishes at its JWKS URL;
- ``acr``, ``amr`` and ``auth_time`` come in the ID token; the identity-pivot claims come from userinfo;
- no SSO session on the FranceConnect+ side: logout goes through ``session/end`` with ``id_token_hint``;
- the authorization code lives 30 s and the access token 60 s, so the callback exchanges them at once.

SECURITY.md item 20 is enforced here: single-use ``state``/``nonce`` of ≥ 32 characters (the caller stores the
:class:`TransactionState` and deletes it before calling :func:`handle_callback`), the ``iss`` parameter and
the ID token issuer must be the provider the transaction started with (mix-up defence), signature keys come
only from the provider's configured JWKS and decryption keys only from ours, the ``acr`` is at least the
requested level, and the person is identified by (issuer, ``sub``), never by e-mail.

HTTP goes through an injectable ``fetch`` callable (default: :func:`urllib_fetch`) so that the whole flow can
be tested without a network.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from joserfc import jwe, jws
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

DEFAULT_SCOPES = "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username"
DEFAULT_DISCOVERY_URL = "https://auth.integ01.dev-franceconnect.fr/api/v2/.well-known/openid-configuration"

# FranceConnect+ signs with ES256 only; anything else (HS256 with a public key as secret, "none", RS256…)
# is refused before any key is touched.
SIGNING_ALGORITHMS = ("ES256",)
KEY_MANAGEMENT_ALGORITHMS = ("RSA-OAEP", "RSA-OAEP-256", "ECDH-ES")
CONTENT_ENCRYPTION = "A256GCM"
# RFC 7516 §4: header parameters we do not understand are ignored unless listed in "crit" (still enforced).
# oidc-provider, on which FranceConnect+ runs, replicates iss and aud in the JWE header (RFC 7519 §5.3);
# joserfc's default strict registry refuses any such token.
_JWE_REGISTRY = jwe.JWERegistry(algorithms=[*KEY_MANAGEMENT_ALGORITHMS, CONTENT_ENCRYPTION],
                                strict_check_header=False)

# eIDAS levels, in increasing strength: a stronger level than requested is accepted (eidas3 ≥ eidas2).
ACR_RANK = {"eidas1": 1, "eidas2": 2, "eidas3": 3}

MIN_RANDOM_LENGTH = 32


# --- errors -------------------------------------------------------------------------------------------------


class FcPlusError(Exception):
    """A FranceConnect+ step failed; ``str(error)`` is a French message that can be shown to the person."""

    message = "La vérification d'identité FranceConnect+ a échoué."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(self.message if not detail else f"{self.message} ({detail})")


class FcPlusConfigurationError(FcPlusError):
    message = "La configuration FranceConnect+ est invalide."


class DiscoveryError(FcPlusError):
    message = "Le document de découverte FranceConnect+ est inaccessible ou invalide."


class ProviderError(FcPlusError):
    message = "FranceConnect+ a renvoyé une erreur."


class AccessDenied(ProviderError):
    message = "Vous avez annulé la connexion FranceConnect+ : votre identité n'a pas été vérifiée."


class StateMismatch(FcPlusError):
    message = "La réponse FranceConnect+ ne correspond à aucune demande en cours (paramètre state invalide)."


class TransactionExpired(FcPlusError):
    message = "La demande FranceConnect+ a expiré : veuillez recommencer."


class IssuerMismatch(FcPlusError):
    message = "La réponse ne provient pas du fournisseur FranceConnect+ attendu."


class UndecryptableToken(FcPlusError):
    message = "Le jeton FranceConnect+ n'a pas pu être déchiffré avec nos clés."


class BadTokenSignature(FcPlusError):
    message = "La signature du jeton FranceConnect+ est invalide."


class InvalidToken(FcPlusError):
    message = "Le jeton FranceConnect+ est invalide."


class AudienceMismatch(InvalidToken):
    message = "Le jeton FranceConnect+ n'est pas destiné à ce service."


class ExpiredToken(InvalidToken):
    message = "Le jeton FranceConnect+ a expiré : veuillez recommencer."


class NonceMismatch(InvalidToken):
    message = "Le jeton FranceConnect+ ne correspond pas à la demande en cours (nonce invalide)."


class AcrTooLow(InvalidToken):
    message = "Le niveau de garantie de l'identité FranceConnect+ est insuffisant (eIDAS substantiel requis)."


class SubjectMismatch(InvalidToken):
    message = "Les informations d'identité FranceConnect+ ne concernent pas la personne authentifiée."


# --- HTTP ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """An outgoing HTTP request."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP response; ``headers`` keys are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """Return the media type without parameters, lower case (e.g. ``application/jwt``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """Return the decoded JSON body; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))


Fetch = Callable[[HttpRequest], HttpResponse]


def urllib_fetch(request: HttpRequest, *, timeout: float = 10.0) -> HttpResponse:
    """Perform ``request`` with urllib and return the response (HTTP error statuses are returned, not raised).

    Raises ProviderError when the provider cannot be reached.
    """
    req = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers),
                                 method=request.method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - https URLs from configuration
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ProviderError("service injoignable") from exc


# --- configuration and discovery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FcPlusConfig:
    """The client's registration at FranceConnect+.

    ``token_auth_method`` is ``client_secret_post`` or ``client_secret_basic``. ``allow_http`` is only for a
    local simulator; production endpoints are HTTPS. ``transaction_max_age`` bounds the time between the
    redirection and the callback; ``clock_skew`` is the tolerance on token times.
    """

    discovery_url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    acr_values: str = "eidas2"
    scopes: str = DEFAULT_SCOPES
    token_auth_method: str = "client_secret_post"
    allow_http: bool = False
    transaction_max_age: dt.timedelta = dt.timedelta(minutes=10)
    clock_skew: dt.timedelta = dt.timedelta(seconds=60)
    # Sent to force a fresh authentication and consent at each verification; not confirmed as mandatory in
    # the public documentation (?), hence configurable (None: not sent).
    prompt: str | None = "login consent"

    def __post_init__(self) -> None:
        if self.acr_values not in ACR_RANK or ACR_RANK[self.acr_values] < ACR_RANK["eidas2"]:
            raise FcPlusConfigurationError("acr_values doit valoir eidas2 ou eidas3")
        if self.token_auth_method not in ("client_secret_post", "client_secret_basic"):
            raise FcPlusConfigurationError("méthode d'authentification au jeton inconnue")
        if "openid" not in self.scopes.split():
            raise FcPlusConfigurationError("le scope openid est obligatoire")
        if not self.client_id or not self.client_secret:
            raise FcPlusConfigurationError("identifiant et secret client obligatoires")


class ClientConfig(Protocol):
    """What the shared steps read from a client's configuration: :class:`FcPlusConfig` here, and the
    Pro Santé Connect client's ``PscConfig`` (hospiconnect.enrollment.psc), which reuses these steps."""

    @property
    def discovery_url(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    @property
    def redirect_uri(self) -> str: ...
    @property
    def token_auth_method(self) -> str: ...
    @property
    def allow_http(self) -> bool: ...
    @property
    def transaction_max_age(self) -> dt.timedelta: ...
    @property
    def clock_skew(self) -> dt.timedelta: ...


@dataclass(frozen=True)
class Discovery:
    """The provider metadata needed by the client."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _check_url(url: Any, allow_http: bool) -> str:
    if not isinstance(url, str) or not url:
        raise DiscoveryError("adresse manquante")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise DiscoveryError(f"adresse non HTTPS : {url}")
    return url


def parse_discovery(config: ClientConfig, document: Mapping[str, Any]) -> Discovery:
    """Return the :class:`Discovery` read from a discovery document.

    Raises DiscoveryError when an endpoint is missing or not HTTPS, or when the issuer is not the prefix of
    the discovery URL (OpenID Connect Discovery §4.3: the issuer is the URL before ``/.well-known``).
    """
    issuer = _check_url(document.get("issuer"), config.allow_http)
    expected_issuer = config.discovery_url.split("/.well-known/", 1)[0]
    if issuer.rstrip("/") != expected_issuer.rstrip("/"):
        raise DiscoveryError("l'émetteur annoncé ne correspond pas à l'adresse de découverte")
    end_session = document.get("end_session_endpoint")
    return Discovery(
        issuer=issuer,
        authorization_endpoint=_check_url(document.get("authorization_endpoint"), config.allow_http),
        token_endpoint=_check_url(document.get("token_endpoint"), config.allow_http),
        userinfo_endpoint=_check_url(document.get("userinfo_endpoint"), config.allow_http),
        jwks_uri=_check_url(document.get("jwks_uri"), config.allow_http),
        end_session_endpoint=_check_url(end_session, config.allow_http) if end_session else None,
        raw=dict(document),
    )


def _get_json(fetch: Fetch, url: str, error: type[FcPlusError]) -> Any:
    response = fetch(HttpRequest("GET", url, {"Accept": "application/json"}))
    if response.status != 200:
        raise error(f"HTTP {response.status}")
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise error("réponse non JSON") from exc


def load_discovery(config: ClientConfig, fetch: Fetch = urllib_fetch) -> Discovery:
    """Fetch and return the provider's discovery document. Raises DiscoveryError (or ProviderError)."""
    _check_url(config.discovery_url, config.allow_http)
    document = _get_json(fetch, config.discovery_url, DiscoveryError)
    if not isinstance(document, dict):
        raise DiscoveryError("document invalide")
    return parse_discovery(config, document)


def load_provider_jwks(discovery: Discovery, fetch: Fetch = urllib_fetch, *,
                       key_types: tuple[str, ...] = ("EC",)) -> KeySet:
    """Fetch and return the provider's public signing keys (only public keys of ``key_types`` are kept:
    EC for FranceConnect+, which signs with ES256; Pro Santé Connect also needs RSA).

    Raises DiscoveryError when the JWKS is unreachable, invalid, or holds no usable key.
    """
    document = _get_json(fetch, discovery.jwks_uri, DiscoveryError)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise DiscoveryError("JWKS invalide")
    keys: list[Key] = []
    for entry in document["keys"]:
        # A private member ("d") in a published JWKS is a provider mistake; never use it.
        if not isinstance(entry, dict) or entry.get("kty") not in key_types or "d" in entry \
                or entry.get("use") == "enc":
            continue
        try:
            keys.append(ECKey.import_key(entry) if entry["kty"] == "EC" else RSAKey.import_key(entry))
        except (JoseError, ValueError):
            continue
    if not keys:
        raise DiscoveryError("aucune clé de signature utilisable")
    return KeySet(keys)


# --- client encryption keys ---------------------------------------------------------------------------------


def generate_encryption_keys() -> KeySet:
    """Return a new private key set: one RSA 2048 key (RSA-OAEP / RSA-OAEP-256) and one EC P-256 key (ECDH-ES).

    The RSA key carries no ``alg`` so that it works with both RSA-OAEP variants; both keys have ``use=enc``.
    Store it with ``keys.as_dict(private=True)`` and reload it with :func:`load_private_keys`.
    """
    rsa = RSAKey.generate_key(2048, {"use": "enc"})
    ec = ECKey.generate_key("P-256", {"use": "enc", "alg": "ECDH-ES"})
    return KeySet([rsa, ec])


def load_private_keys(document: Mapping[str, Any]) -> KeySet:
    """Return the private key set stored as a JWKS dict. Raises FcPlusConfigurationError when unusable."""
    try:
        keys = KeySet.import_key_set(dict(document))  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise FcPlusConfigurationError("clés de chiffrement illisibles") from exc
    if not all(key.is_private for key in keys):
        raise FcPlusConfigurationError("les clés de chiffrement doivent être privées")
    return keys


def public_jwks(private_keys: KeySet) -> dict[str, Any]:
    """Return the public JWKS to publish at the client's jwks URL (never the private members)."""
    return dict(private_keys.as_dict(private=False))


# --- authorization request ----------------------------------------------------------------------------------


def _random_value() -> str:
    # 32 random bytes give 43 URL-safe characters: above the 32-character minimum of FranceConnect+.
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TransactionState:
    """What the caller stores (server side) between the redirection and the callback; single use."""

    state: str
    nonce: str
    issuer: str
    created_at: dt.datetime
    acr_values: str = "eidas2"

    def __post_init__(self) -> None:
        if len(self.state) < MIN_RANDOM_LENGTH or len(self.nonce) < MIN_RANDOM_LENGTH:
            raise FcPlusConfigurationError("state et nonce doivent compter au moins 32 caractères")

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-serialisable form for storage."""
        return {"state": self.state, "nonce": self.nonce, "issuer": self.issuer,
                "created_at": self.created_at.isoformat(), "acr_values": self.acr_values}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> TransactionState:
        """Return the transaction stored by :meth:`to_dict`."""
        return cls(state=data["state"], nonce=data["nonce"], issuer=data["issuer"],
                   created_at=dt.datetime.fromisoformat(data["created_at"]),
                   acr_values=data.get("acr_values", "eidas2"))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def build_authorization_request(
    config: FcPlusConfig, discovery: Discovery, *, now: dt.datetime | None = None
) -> tuple[str, TransactionState]:
    """Return the URL to redirect the person to and the :class:`TransactionState` to store (single use)."""
    transaction = TransactionState(state=_random_value(), nonce=_random_value(), issuer=discovery.issuer,
                                   created_at=now or _utcnow(), acr_values=config.acr_values)
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


def values_equal(expected: str, received: Any) -> bool:
    """Return True when ``received`` is a string equal to ``expected`` (constant-time comparison)."""
    if not isinstance(received, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8"))


def state_matches(state_record: TransactionState, received_state: Any) -> bool:
    """Return True when the callback's ``state`` is the stored one (constant time)."""
    return values_equal(state_record.state, received_state)


# --- tokens -------------------------------------------------------------------------------------------------


def _encryption_key_for(private_keys: KeySet) -> Callable[[Any], Key]:
    """Return a key resolver choosing our decryption key from the JWE header (kid, else key type)."""

    def resolve(obj: Any) -> Key:
        header = obj.headers()
        kid = header.get("kid")
        alg = str(header.get("alg", ""))
        wanted_type = "RSA" if alg.startswith("RSA-") else "EC" if alg.startswith("ECDH-ES") else None
        for key in private_keys:
            if key.key_type != wanted_type or key.get("use") not in (None, "enc"):
                continue
            if kid is None or key.kid == kid:
                return key
        raise UndecryptableToken("clé de déchiffrement inconnue")

    return resolve


def decrypt_and_verify(token: Any, *, private_keys: KeySet, provider_jwks: KeySet) -> dict[str, Any]:
    """Decrypt a nested JWT (JWE around a JWS) and return its verified claims.

    The token must be encrypted (five parts) with an allowed key-management algorithm and A256GCM; the inner
    JWS must be ES256 and verify against ``provider_jwks`` only. No claim is checked here.
    Raises UndecryptableToken, BadTokenSignature or InvalidToken.
    """
    return _decrypt_nested(token, private_keys=private_keys, provider_jwks=provider_jwks)[1]


def _decrypt_nested(token: Any, *, private_keys: KeySet, provider_jwks: KeySet) -> tuple[str, dict[str, Any]]:
    """Return the inner signed JWT (compact) and its verified claims; see :func:`decrypt_and_verify`."""
    if not isinstance(token, str) or token.count(".") != 4:
        # A signed-only token is refused: FranceConnect+ always encrypts, so a plain JWS is a downgrade.
        raise UndecryptableToken("jeton non chiffré")
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndecryptableToken("en-tête illisible") from exc
    if not isinstance(header, dict) or header.get("alg") not in KEY_MANAGEMENT_ALGORITHMS \
            or header.get("enc") != CONTENT_ENCRYPTION:
        raise UndecryptableToken("algorithme de chiffrement non autorisé")
    try:
        decrypted = jwe.decrypt_compact(token, _encryption_key_for(private_keys), registry=_JWE_REGISTRY)
    except FcPlusError:
        raise
    except (JoseError, ValueError) as exc:
        raise UndecryptableToken() from exc
    inner = decrypted.plaintext or b""
    try:
        signed = jws.deserialize_compact(inner, provider_jwks, algorithms=list(SIGNING_ALGORITHMS))
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
    return inner.decode("ascii"), claims


def _numeric_time(claims: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"{name} invalide")
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


def check_audience(claims: Mapping[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise AudienceMismatch()
    # OIDC Core §3.1.3.7: with several audiences, azp must be us.
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise AudienceMismatch("azp")


def acr_satisfies(acr: Any, requested: str) -> bool:
    """Return True when the eIDAS level ``acr`` is at least ``requested`` (eidas3 satisfies eidas2)."""
    return isinstance(acr, str) and ACR_RANK.get(acr, 0) >= ACR_RANK[requested]


def validate_id_token_claims(
    claims: Mapping[str, Any], *, config: ClientConfig, discovery: Discovery, state_record: TransactionState,
    now: dt.datetime,
) -> None:
    """Check iss, aud, exp, iat, nonce, acr and sub of decrypted ID token claims.

    Raises IssuerMismatch, AudienceMismatch, ExpiredToken, NonceMismatch, AcrTooLow or InvalidToken.
    """
    if claims.get("iss") != discovery.issuer or claims.get("iss") != state_record.issuer:
        raise IssuerMismatch("émetteur du jeton")
    check_audience(claims, config.client_id)
    expires = _numeric_time(claims, "exp")
    if expires is None:
        raise InvalidToken("exp manquant")
    if now >= expires + config.clock_skew:
        raise ExpiredToken()
    issued = _numeric_time(claims, "iat")
    if issued is not None and issued > now + config.clock_skew:
        raise InvalidToken("iat dans le futur")
    if not values_equal(state_record.nonce, claims.get("nonce")):
        raise NonceMismatch()
    if not acr_satisfies(claims.get("acr"), state_record.acr_values):
        raise AcrTooLow(f"reçu : {claims.get('acr')!s}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("sub manquant")


# --- callback -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedIdentity:
    """The outcome of a successful FranceConnect+ callback.

    The person is keyed by (``issuer``, ``sub``), never by e-mail. ``claims`` are the userinfo claims (the
    identity pivot); ``id_token`` is the token as received (encrypted); ``id_token_hint`` is the signed ID
    token inside it, the one to send back at logout: OpenID Connect Core §3.1.2.1 has an encrypted ID token
    decrypted before use as ``id_token_hint`` (the provider cannot decrypt what was encrypted to our keys).
    """

    issuer: str
    sub: str
    acr: str
    amr: list[str]
    claims: dict[str, Any]
    id_token_claims: dict[str, Any]
    id_token: str
    id_token_hint: str = ""


def exchange_code(config: ClientConfig, discovery: Discovery, code: str, fetch: Fetch) -> dict[str, Any]:
    """Exchange ``code`` at the token endpoint and return the JSON response (``id_token`` and ``access_token``
    present). Shared with the Pro Santé Connect client. Raises ProviderError."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": config.redirect_uri}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if config.token_auth_method == "client_secret_basic":
        # RFC 6749 §2.3.1: the id and secret are form-encoded before the Basic encoding.
        pair = f"{urllib.parse.quote_plus(config.client_id)}:{urllib.parse.quote_plus(config.client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    else:
        form.update(client_id=config.client_id, client_secret=config.client_secret)
    response = fetch(HttpRequest("POST", discovery.token_endpoint, headers,
                                 urllib.parse.urlencode(form).encode("ascii")))
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if response.status != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        raise ProviderError(f"échange du code refusé : {error or f'HTTP {response.status}'}")
    if not isinstance(body.get("id_token"), str) or not isinstance(body.get("access_token"), str):
        raise ProviderError("réponse du point de jeton incomplète")
    return body


def _fetch_userinfo(discovery: Discovery, access_token: str, fetch: Fetch) -> str:
    response = fetch(HttpRequest("GET", discovery.userinfo_endpoint,
                                 {"Authorization": f"Bearer {access_token}", "Accept": "application/jwt"}))
    if response.status != 200:
        raise ProviderError(f"informations d'identité indisponibles (HTTP {response.status})")
    # FranceConnect+ answers userinfo as application/jwt (signed then encrypted); plain JSON is refused.
    if response.content_type != "application/jwt":
        raise UndecryptableToken("réponse userinfo non chiffrée")
    return response.body.decode("ascii", errors="replace").strip()


def check_authorization_response(
    config: ClientConfig, discovery: Discovery, state_record: TransactionState,
    callback_params: Mapping[str, str], *, now: dt.datetime,
) -> str:
    """Check the authorization response and return its ``code`` (shared with the Pro Santé Connect client).

    Order: state (constant time), transaction issuer and age, the ``iss`` parameter (mix-up defence,
    RFC 9207), then the provider's error response. Raises StateMismatch, IssuerMismatch, TransactionExpired,
    AccessDenied or ProviderError.
    """
    if not state_matches(state_record, callback_params.get("state")):
        raise StateMismatch()
    if state_record.issuer != discovery.issuer:
        raise IssuerMismatch("la demande a été faite auprès d'un autre fournisseur")
    if now - state_record.created_at > config.transaction_max_age:
        raise TransactionExpired()
    received_iss = callback_params.get("iss")
    if received_iss is not None and received_iss != discovery.issuer:
        raise IssuerMismatch("paramètre iss")

    error = callback_params.get("error")
    if error:
        if error == "access_denied":
            raise AccessDenied()
        raise ProviderError(str(error))
    code = callback_params.get("code")
    if not isinstance(code, str) or not code:
        raise ProviderError("code d'autorisation manquant")
    return code


def handle_callback(
    config: FcPlusConfig,
    discovery: Discovery,
    state_record: TransactionState,
    callback_params: Mapping[str, str],
    *,
    fetch: Fetch = urllib_fetch,
    provider_jwks: KeySet,
    private_keys: KeySet,
    now: dt.datetime | None = None,
) -> VerifiedIdentity:
    """Complete the code flow and return the verified identity.

    ``state_record`` is the transaction stored by :func:`build_authorization_request`; the caller must
    have removed it from storage already (single use), whatever the outcome here.

    Order of checks: state (constant time), transaction issuer and age, the ``iss`` parameter (mix-up
    defence, RFC 9207), provider error responses, code exchange, ID token decryption + ES256 signature +
    claims (iss, aud, exp, nonce, acr), then userinfo (decrypted and verified the same way, same ``sub``).

    Raises a subclass of FcPlusError: StateMismatch, TransactionExpired, IssuerMismatch, AccessDenied,
    ProviderError, UndecryptableToken, BadTokenSignature, ExpiredToken, NonceMismatch, AcrTooLow,
    AudienceMismatch, SubjectMismatch or InvalidToken.
    """
    now = now or _utcnow()
    code = check_authorization_response(config, discovery, state_record, callback_params, now=now)
    tokens = exchange_code(config, discovery, code, fetch)
    id_token: str = tokens["id_token"]
    signed_id_token, id_claims = _decrypt_nested(id_token, private_keys=private_keys, provider_jwks=provider_jwks)
    validate_id_token_claims(id_claims, config=config, discovery=discovery, state_record=state_record, now=now)

    userinfo_token = _fetch_userinfo(discovery, tokens["access_token"], fetch)
    userinfo = decrypt_and_verify(userinfo_token, private_keys=private_keys, provider_jwks=provider_jwks)
    if not values_equal(id_claims["sub"], userinfo.get("sub")):
        raise SubjectMismatch()
    # A signed userinfo carries iss and aud (OIDC Core §5.3.2): when present they must be ours.
    if "iss" in userinfo and userinfo["iss"] != discovery.issuer:
        raise IssuerMismatch("émetteur des informations d'identité")
    if "aud" in userinfo:
        check_audience(userinfo, config.client_id)

    amr = id_claims.get("amr")
    return VerifiedIdentity(
        issuer=discovery.issuer,
        sub=id_claims["sub"],
        acr=id_claims["acr"],
        amr=[str(a) for a in amr] if isinstance(amr, list) else [],
        claims=userinfo,
        id_token_claims=id_claims,
        id_token=id_token,
        id_token_hint=signed_id_token,
    )


def end_session_url(discovery: Discovery, id_token: str, post_logout_redirect_uri: str, state: str) -> str:
    """Return the provider logout URL (``session/end`` with ``id_token_hint``).

    ``id_token`` is the signed ID token, :attr:`VerifiedIdentity.id_token_hint`, not the encrypted one as
    received: oidc-provider, on which FranceConnect+ is built, refuses a JWE there.

    FranceConnect+ keeps no SSO session, but its logout must still be called so that the person's
    FranceConnect+ connection ends. Raises DiscoveryError when the provider has no end-session endpoint.
    """
    if not discovery.end_session_endpoint:
        raise DiscoveryError("pas de point de déconnexion")
    params = {"id_token_hint": id_token, "post_logout_redirect_uri": post_logout_redirect_uri, "state": state}
    separator = "&" if "?" in discovery.end_session_endpoint else "?"
    return f"{discovery.end_session_endpoint}{separator}{urllib.parse.urlencode(params)}"
