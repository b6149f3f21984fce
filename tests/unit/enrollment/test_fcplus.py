"""FranceConnect+ client against a fake provider built here with joserfc (signed then encrypted tokens)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from joserfc import jwe, jws
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from hospiconnect.enrollment import fcplus
from hospiconnect.enrollment.fcplus import (
    AccessDenied,
    AcrTooLow,
    AudienceMismatch,
    BadTokenSignature,
    DiscoveryError,
    ExpiredToken,
    FcPlusConfig,
    FcPlusConfigurationError,
    FcPlusError,
    HttpRequest,
    HttpResponse,
    InvalidToken,
    IssuerMismatch,
    NonceMismatch,
    ProviderError,
    StateMismatch,
    SubjectMismatch,
    TransactionExpired,
    TransactionState,
    UndecryptableToken,
)

ISSUER = "https://fcp.example.test/api/v2"
DISCOVERY_URL = f"{ISSUER}/.well-known/openid-configuration"
NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone.utc)
SUB = "b6048e95bb134ec5b1d1e1fa69f287172e91722b9354d637a1bcf2ebb0fd2ef5v1"

CONFIG = FcPlusConfig(
    discovery_url=DISCOVERY_URL,
    client_id="hospiconnect-client",
    client_secret="s3cr3t+/=",
    redirect_uri="https://idp.chu.example/enrolement/fcplus/retour",
)

USERINFO = {
    "sub": SUB,
    "given_name": "Marie Hélène",
    "family_name": "LEFEVRE-DURAND",
    "birthdate": "1980-05-17",
    "gender": "female",
    "birthplace": "75056",
    "birthcountry": "99100",
    "preferred_username": "",
    "email": "marie@example.org",
}


def discovery_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "jwks_uri": f"{ISSUER}/jwks",
        "end_session_endpoint": f"{ISSUER}/session/end",
    }


def sign(claims: dict[str, Any], key: Any, alg: str = "ES256") -> str:
    return jws.serialize_compact({"alg": alg, "kid": key.kid, "typ": "JWT"}, json.dumps(claims), key,
                                 algorithms=[alg])


def encrypt(inner: str, key: Any, alg: str) -> str:
    header = {"alg": alg, "enc": "A256GCM", "kid": key.kid, "cty": "JWT"}
    return jwe.encrypt_compact(header, inner, key, algorithms=[alg, "A256GCM"])


@dataclass
class FakeProvider:
    """A FranceConnect+-like provider: ES256 signature, then encryption to the client's public keys."""

    client_keys: KeySet
    signing_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", {"use": "sig"}))
    enc_alg: str = "RSA-OAEP-256"
    id_claims: dict[str, Any] = field(default_factory=dict)
    userinfo: dict[str, Any] = field(default_factory=lambda: dict(USERINFO))
    id_token_override: str | None = None
    userinfo_override: str | None = None
    userinfo_content_type: str = "application/jwt"
    token_status: int = 200
    requests: list[HttpRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.signing_key.ensure_kid()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.as_dict(private=False)]}

    def encryption_key(self, alg: str | None = None) -> Any:
        alg = alg or self.enc_alg
        wanted = "RSA" if alg.startswith("RSA") else "EC"
        public = KeySet.import_key_set(fcplus.public_jwks(self.client_keys))
        return next(k for k in public if k.key_type == wanted)

    def nested(self, claims: dict[str, Any]) -> str:
        return encrypt(sign(claims, self.signing_key), self.encryption_key(), self.enc_alg)

    def id_token(self, nonce: str) -> str:
        claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
                  "iat": int(NOW.timestamp()), "nonce": nonce, "acr": "eidas2", "amr": ["pop", "mail"],
                  "auth_time": int(NOW.timestamp())}
        claims.update(self.id_claims)
        return self.nested({k: v for k, v in claims.items() if v is not None})

    def fetch_for(self, nonce: str) -> Any:
        def fetch(request: HttpRequest) -> HttpResponse:
            self.requests.append(request)
            if request.url == DISCOVERY_URL:
                return HttpResponse(200, {"content-type": "application/json"},
                                    json.dumps(discovery_document()).encode())
            if request.url == f"{ISSUER}/jwks":
                return HttpResponse(200, {"content-type": "application/json"}, json.dumps(self.jwks()).encode())
            if request.url == f"{ISSUER}/token":
                if self.token_status != 200:
                    return HttpResponse(self.token_status, {"content-type": "application/json"},
                                        b'{"error": "invalid_grant"}')
                body = {"access_token": "at-123", "token_type": "Bearer", "expires_in": 60,
                        "id_token": self.id_token_override or self.id_token(nonce)}
                return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())
            if request.url == f"{ISSUER}/userinfo":
                assert request.headers["Authorization"] == "Bearer at-123"
                token = self.userinfo_override or self.nested(self.userinfo)
                return HttpResponse(200, {"content-type": self.userinfo_content_type}, token.encode())
            return HttpResponse(404, {}, b"")

        return fetch


@pytest.fixture(scope="module")
def client_keys() -> KeySet:
    return fcplus.generate_encryption_keys()


@dataclass
class Flow:
    provider: FakeProvider
    discovery: fcplus.Discovery
    transaction: TransactionState
    client_keys: KeySet
    config: FcPlusConfig = CONFIG

    def callback(self, params: dict[str, str] | None = None, **kwargs: Any) -> fcplus.VerifiedIdentity:
        fetch = self.provider.fetch_for(self.transaction.nonce)
        provider_jwks = fcplus.load_provider_jwks(self.discovery, fetch)
        if params is None:
            params = {"code": "code-abc", "state": self.transaction.state, "iss": ISSUER}
        options: dict[str, Any] = {"fetch": fetch, "provider_jwks": provider_jwks,
                                   "private_keys": self.client_keys, "now": NOW}
        options.update(kwargs)
        return fcplus.handle_callback(self.config, self.discovery, self.transaction, params, **options)


def token_requests(flow: Flow) -> list[HttpRequest]:
    return [r for r in flow.provider.requests if r.url.endswith(("/token", "/userinfo"))]


@pytest.fixture
def flow(client_keys: KeySet) -> Flow:
    provider = FakeProvider(client_keys)
    discovery = fcplus.load_discovery(CONFIG, provider.fetch_for(""))
    _, transaction = fcplus.build_authorization_request(CONFIG, discovery, now=NOW - dt.timedelta(seconds=20))
    return Flow(provider, discovery, transaction, client_keys)


# --- happy path -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("enc_alg", ["RSA-OAEP", "RSA-OAEP-256", "ECDH-ES"])
def test_happy_path(flow: Flow, enc_alg: str) -> None:
    flow.provider.enc_alg = enc_alg
    result = flow.callback()
    assert result.issuer == ISSUER
    assert result.sub == SUB
    assert result.acr == "eidas2"
    assert result.amr == ["pop", "mail"]
    assert result.claims["family_name"] == "LEFEVRE-DURAND"
    assert result.claims["birthplace"] == "75056"
    assert result.id_token_claims["nonce"] == flow.transaction.nonce
    assert result.id_token.count(".") == 4  # kept as received
    # id_token_hint: the signed ID token inside (OIDC Core §3.1.2.1), what the provider can read at logout.
    assert result.id_token_hint.count(".") == 2
    assert jws.extract_compact(result.id_token_hint.encode()).headers()["alg"] == "ES256"


def test_token_request_uses_client_secret_post(flow: Flow) -> None:
    flow.callback()
    token_request = next(r for r in flow.provider.requests if r.url.endswith("/token"))
    assert token_request.method == "POST"
    form = urllib.parse.parse_qs(token_request.body.decode())  # type: ignore[union-attr]
    assert form == {"grant_type": ["authorization_code"], "code": ["code-abc"],
                    "redirect_uri": [CONFIG.redirect_uri], "client_id": [CONFIG.client_id],
                    "client_secret": [CONFIG.client_secret]}
    assert "Authorization" not in token_request.headers


def test_token_request_with_client_secret_basic(flow: Flow) -> None:
    flow.config = replace(CONFIG, token_auth_method="client_secret_basic")
    flow.callback()
    token_request = next(r for r in flow.provider.requests if r.url.endswith("/token"))
    encoded = token_request.headers["Authorization"].removeprefix("Basic ")
    client_id, secret = base64.b64decode(encoded).decode().split(":")
    assert urllib.parse.unquote_plus(client_id) == CONFIG.client_id
    assert urllib.parse.unquote_plus(secret) == CONFIG.client_secret
    assert "client_secret" not in urllib.parse.parse_qs(token_request.body.decode())  # type: ignore[union-attr]


def test_eidas3_satisfies_eidas2(flow: Flow) -> None:
    flow.provider.id_claims = {"acr": "eidas3"}
    assert flow.callback().acr == "eidas3"


def test_iss_parameter_is_optional(flow: Flow) -> None:
    assert flow.callback({"code": "c", "state": flow.transaction.state}).sub == SUB


def test_audience_list_with_azp(flow: Flow) -> None:
    flow.provider.id_claims = {"aud": [CONFIG.client_id, "other"], "azp": CONFIG.client_id}
    assert flow.callback().sub == SUB


# --- refusals -----------------------------------------------------------------------------------------------


def test_state_mismatch(flow: Flow) -> None:
    with pytest.raises(StateMismatch):
        flow.callback({"code": "c", "state": "x" * 43, "iss": ISSUER})
    assert not token_requests(flow)  # the code is never sent


def test_state_missing(flow: Flow) -> None:
    with pytest.raises(StateMismatch):
        flow.callback({"code": "c", "iss": ISSUER})


def test_iss_parameter_mismatch(flow: Flow) -> None:
    with pytest.raises(IssuerMismatch):
        flow.callback({"code": "c", "state": flow.transaction.state, "iss": "https://evil.example/api/v2"})
    assert not token_requests(flow)


def test_transaction_started_with_another_issuer(flow: Flow) -> None:
    flow.transaction = replace(flow.transaction, issuer="https://other.example/api/v2")
    with pytest.raises(IssuerMismatch):
        flow.callback()


def test_id_token_issuer_mismatch(flow: Flow) -> None:
    flow.provider.id_claims = {"iss": "https://evil.example/api/v2"}
    with pytest.raises(IssuerMismatch):
        flow.callback()


def test_transaction_too_old(flow: Flow) -> None:
    with pytest.raises(TransactionExpired):
        flow.callback(now=NOW + dt.timedelta(minutes=11))


def test_access_denied(flow: Flow) -> None:
    with pytest.raises(AccessDenied) as excinfo:
        flow.callback({"error": "access_denied", "state": flow.transaction.state})
    assert "annulé" in str(excinfo.value)
    assert isinstance(excinfo.value, ProviderError)


def test_other_provider_error(flow: Flow) -> None:
    with pytest.raises(ProviderError) as excinfo:
        flow.callback({"error": "server_error", "state": flow.transaction.state})
    assert not isinstance(excinfo.value, AccessDenied)


def test_error_with_wrong_state_is_a_state_mismatch(flow: Flow) -> None:
    with pytest.raises(StateMismatch):
        flow.callback({"error": "access_denied", "state": "y" * 43})


def test_missing_code(flow: Flow) -> None:
    with pytest.raises(ProviderError):
        flow.callback({"state": flow.transaction.state})


def test_token_endpoint_refuses(flow: Flow) -> None:
    flow.provider.token_status = 400
    with pytest.raises(ProviderError, match="invalid_grant"):
        flow.callback()


def test_bad_signature_other_key(flow: Flow) -> None:
    intruder = ECKey.generate_key("P-256")
    intruder.ensure_kid()
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    # Same kid as the genuine key: only the signature can tell them apart.
    inner = jws.serialize_compact({"alg": "ES256", "kid": flow.provider.signing_key.kid}, json.dumps(claims),
                                  intruder, algorithms=["ES256"])
    flow.provider.id_token_override = encrypt(inner, flow.provider.encryption_key(), "RSA-OAEP-256")
    with pytest.raises(BadTokenSignature):
        flow.callback()


def test_signature_with_unknown_kid(flow: Flow) -> None:
    intruder = ECKey.generate_key("P-256")
    intruder.ensure_kid()
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    flow.provider.id_token_override = encrypt(sign(claims, intruder), flow.provider.encryption_key(), "RSA-OAEP")
    with pytest.raises(BadTokenSignature):
        flow.callback()


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES384"])
def test_wrong_signature_algorithm(flow: Flow, alg: str) -> None:
    key: Any
    if alg == "HS256":
        key = OctKey.generate_key(256)
    elif alg == "RS256":
        key = RSAKey.generate_key(2048)
    else:
        key = ECKey.generate_key("P-384")
    key.ensure_kid()
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    flow.provider.id_token_override = encrypt(sign(claims, key, alg), flow.provider.encryption_key(), "RSA-OAEP")
    with pytest.raises(BadTokenSignature):
        flow.callback()


def test_unsigned_inner_token_refused(flow: Flow) -> None:
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    flow.provider.id_token_override = encrypt(f"{header}.{payload}.", flow.provider.encryption_key(), "RSA-OAEP")
    with pytest.raises(BadTokenSignature):
        flow.callback()


def test_undecryptable_encrypted_to_another_key(flow: Flow) -> None:
    other = fcplus.generate_encryption_keys()
    other_public = KeySet.import_key_set(fcplus.public_jwks(other))
    rsa = next(k for k in other_public if k.key_type == "RSA")
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    flow.provider.id_token_override = encrypt(sign(claims, flow.provider.signing_key), rsa, "RSA-OAEP-256")
    with pytest.raises(UndecryptableToken):
        flow.callback()


def test_undecryptable_same_kid_other_key(flow: Flow) -> None:
    other = RSAKey.generate_key(2048, {"use": "enc"})
    genuine = flow.provider.encryption_key("RSA-OAEP")
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    header = {"alg": "RSA-OAEP", "enc": "A256GCM", "kid": genuine.kid, "cty": "JWT"}
    flow.provider.id_token_override = jwe.encrypt_compact(header, sign(claims, flow.provider.signing_key), other,
                                                          algorithms=["RSA-OAEP", "A256GCM"])
    with pytest.raises(UndecryptableToken):
        flow.callback()


def _encrypt_with_header(flow: Flow, extra: dict[str, Any], registry: jwe.JWERegistry) -> str:
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    key = flow.provider.encryption_key("RSA-OAEP")
    header = {"alg": "RSA-OAEP", "enc": "A256GCM", "kid": key.kid, "cty": "JWT", **extra}
    return jwe.encrypt_compact(header, sign(claims, flow.provider.signing_key), key, registry=registry)


def test_replicated_claims_in_the_jwe_header_are_ignored(flow: Flow) -> None:
    # oidc-provider (FranceConnect+'s base) copies iss and aud into the JWE header (RFC 7519 §5.3);
    # RFC 7516 §4 has a recipient ignore header parameters it does not understand.
    lenient = jwe.JWERegistry(algorithms=["RSA-OAEP", "A256GCM"], strict_check_header=False)
    flow.provider.id_token_override = _encrypt_with_header(flow, {"iss": ISSUER, "aud": CONFIG.client_id},
                                                           lenient)
    assert flow.callback().sub == SUB


def test_unknown_critical_jwe_header_refused(flow: Flow) -> None:
    from joserfc.registry import HeaderParameter

    knows_it = jwe.JWERegistry(header_registry={"urn:x-test": HeaderParameter("test", "str")},
                               algorithms=["RSA-OAEP", "A256GCM"])
    flow.provider.id_token_override = _encrypt_with_header(flow, {"urn:x-test": "v", "crit": ["urn:x-test"]},
                                                           knows_it)
    with pytest.raises(UndecryptableToken):
        flow.callback()


def test_signed_but_not_encrypted_refused(flow: Flow) -> None:
    claims = {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "exp": int(NOW.timestamp()) + 60,
              "nonce": flow.transaction.nonce, "acr": "eidas2"}
    flow.provider.id_token_override = sign(claims, flow.provider.signing_key)
    with pytest.raises(UndecryptableToken):
        flow.callback()


@pytest.mark.parametrize(("alg", "enc"), [("RSA1_5", "A256GCM"), ("RSA-OAEP", "A128GCM"), ("dir", "A256GCM")])
def test_encryption_algorithm_not_allowed(flow: Flow, alg: str, enc: str) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "enc": enc}).encode()).rstrip(b"=").decode()
    flow.provider.id_token_override = f"{header}.a.b.c.d"
    with pytest.raises(UndecryptableToken):
        flow.callback()


@pytest.mark.parametrize("acr", ["eidas1", "eidas0", None, 2])
def test_acr_too_low(flow: Flow, acr: Any) -> None:
    flow.provider.id_claims = {"acr": acr}
    with pytest.raises(AcrTooLow):
        flow.callback()


def test_eidas3_requested_refuses_eidas2(flow: Flow) -> None:
    flow.transaction = replace(flow.transaction, acr_values="eidas3")
    with pytest.raises(AcrTooLow):
        flow.callback()


def test_nonce_mismatch(flow: Flow) -> None:
    flow.provider.id_claims = {"nonce": "n" * 43}
    with pytest.raises(NonceMismatch):
        flow.callback()


def test_nonce_missing(flow: Flow) -> None:
    flow.provider.id_claims = {"nonce": None}
    with pytest.raises(NonceMismatch):
        flow.callback()


def test_expired_id_token(flow: Flow) -> None:
    flow.provider.id_claims = {"exp": int(NOW.timestamp()) - 61}
    with pytest.raises(ExpiredToken):
        flow.callback()


def test_exp_within_clock_skew_is_accepted(flow: Flow) -> None:
    flow.provider.id_claims = {"exp": int(NOW.timestamp()) - 30}
    assert flow.callback().sub == SUB


def test_exp_missing(flow: Flow) -> None:
    flow.provider.id_claims = {"exp": None}
    with pytest.raises(InvalidToken):
        flow.callback()


def test_iat_in_the_future(flow: Flow) -> None:
    flow.provider.id_claims = {"iat": int(NOW.timestamp()) + 3600, "exp": int(NOW.timestamp()) + 4000}
    with pytest.raises(InvalidToken):
        flow.callback()


@pytest.mark.parametrize("aud", ["other-client", ["other-client"], None])
def test_wrong_audience(flow: Flow, aud: Any) -> None:
    flow.provider.id_claims = {"aud": aud}
    with pytest.raises(AudienceMismatch):
        flow.callback()


def test_audience_list_without_azp(flow: Flow) -> None:
    flow.provider.id_claims = {"aud": [CONFIG.client_id, "other"]}
    with pytest.raises(AudienceMismatch):
        flow.callback()


def test_userinfo_sub_differs(flow: Flow) -> None:
    flow.provider.userinfo = {**USERINFO, "sub": "someone-else"}
    with pytest.raises(SubjectMismatch):
        flow.callback()


def test_userinfo_in_plain_json_refused(flow: Flow) -> None:
    flow.provider.userinfo_content_type = "application/json"
    flow.provider.userinfo_override = json.dumps(USERINFO)
    with pytest.raises(UndecryptableToken):
        flow.callback()


def test_userinfo_signed_by_another_key(flow: Flow) -> None:
    intruder = ECKey.generate_key("P-256")
    intruder.ensure_kid()
    flow.provider.userinfo_override = encrypt(sign(USERINFO, intruder), flow.provider.encryption_key(), "RSA-OAEP")
    with pytest.raises(BadTokenSignature):
        flow.callback()


def test_userinfo_with_foreign_issuer(flow: Flow) -> None:
    flow.provider.userinfo = {**USERINFO, "iss": "https://evil.example/api/v2"}
    with pytest.raises(IssuerMismatch):
        flow.callback()


def test_every_error_is_an_fcplus_error_with_a_french_message() -> None:
    for cls in (StateMismatch, IssuerMismatch, BadTokenSignature, UndecryptableToken, AcrTooLow,
                NonceMismatch, ExpiredToken, ProviderError, AccessDenied, SubjectMismatch, TransactionExpired):
        error = cls()
        assert isinstance(error, FcPlusError)
        assert "FranceConnect+" in str(error) or "annulé" in str(error)


# --- authorization request, state, keys, discovery, logout ----------------------------------------------------


def test_authorization_request(flow: Flow) -> None:
    url, transaction = fcplus.build_authorization_request(CONFIG, flow.discovery, now=NOW)
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ISSUER}/authorize"
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query["response_type"] == "code"
    assert query["client_id"] == CONFIG.client_id
    assert query["redirect_uri"] == CONFIG.redirect_uri
    assert query["acr_values"] == "eidas2"
    assert query["scope"] == ("openid given_name family_name birthdate gender birthplace birthcountry email "
                              "preferred_username")
    assert query["state"] == transaction.state
    assert query["nonce"] == transaction.nonce
    assert len(transaction.state) >= 32 and len(transaction.nonce) >= 32
    assert transaction.state != transaction.nonce
    assert transaction.issuer == ISSUER
    assert transaction.created_at == NOW


def test_states_are_unique(flow: Flow) -> None:
    states = {fcplus.build_authorization_request(CONFIG, flow.discovery)[1].state for _ in range(50)}
    assert len(states) == 50


def test_transaction_round_trip(flow: Flow) -> None:
    assert TransactionState.from_dict(flow.transaction.to_dict()) == flow.transaction


def test_short_state_refused() -> None:
    with pytest.raises(FcPlusConfigurationError):
        TransactionState(state="short", nonce="n" * 43, issuer=ISSUER, created_at=NOW)


@pytest.mark.parametrize(("received", "expected"), [("a" * 43, True), ("a" * 42 + "b", False), ("", False),
                                                    (None, False), ("a" * 44, False)])
def test_state_comparison(received: Any, expected: bool) -> None:
    record = TransactionState(state="a" * 43, nonce="n" * 43, issuer=ISSUER, created_at=NOW)
    assert fcplus.state_matches(record, received) is expected


def test_public_jwks_has_no_private_members(client_keys: KeySet) -> None:
    published = fcplus.public_jwks(client_keys)
    assert {k["kty"] for k in published["keys"]} == {"RSA", "EC"}
    for key in published["keys"]:
        assert key["use"] == "enc"
        assert "kid" in key
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_private_keys_round_trip(client_keys: KeySet) -> None:
    reloaded = fcplus.load_private_keys(client_keys.as_dict(private=True))
    assert [k.kid for k in reloaded] == [k.kid for k in client_keys]
    with pytest.raises(FcPlusConfigurationError):
        fcplus.load_private_keys(fcplus.public_jwks(client_keys))
    with pytest.raises(FcPlusConfigurationError):
        fcplus.load_private_keys({"keys": "nope"})


def test_discovery_issuer_must_match_url() -> None:
    document = {**discovery_document(), "issuer": "https://evil.example/api/v2"}
    with pytest.raises(DiscoveryError):
        fcplus.parse_discovery(CONFIG, document)


def test_discovery_requires_https() -> None:
    document = {**discovery_document(), "token_endpoint": "http://fcp.example.test/api/v2/token"}
    with pytest.raises(DiscoveryError):
        fcplus.parse_discovery(CONFIG, document)


def test_discovery_http_error() -> None:
    with pytest.raises(DiscoveryError):
        fcplus.load_discovery(CONFIG, lambda request: HttpResponse(503, {}, b""))


def test_provider_jwks_keeps_only_public_signing_keys(flow: Flow, client_keys: KeySet) -> None:
    leaked = ECKey.generate_key("P-256").as_dict(private=True)
    document = {"keys": [flow.provider.signing_key.as_dict(private=False), leaked,
                         *fcplus.public_jwks(client_keys)["keys"]]}
    keys = fcplus.load_provider_jwks(
        flow.discovery, lambda request: HttpResponse(200, {}, json.dumps(document).encode()))
    assert [k.kid for k in keys] == [flow.provider.signing_key.kid]


def test_config_refuses_eidas1() -> None:
    with pytest.raises(FcPlusConfigurationError):
        replace(CONFIG, acr_values="eidas1")


def test_end_session_url(flow: Flow) -> None:
    url = fcplus.end_session_url(flow.discovery, "tok.en", "https://idp.chu.example/", "s" * 43)
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/api/v2/session/end"
    assert dict(urllib.parse.parse_qsl(parts.query)) == {
        "id_token_hint": "tok.en", "post_logout_redirect_uri": "https://idp.chu.example/", "state": "s" * 43}


def test_end_session_url_needs_endpoint(flow: Flow) -> None:
    with pytest.raises(DiscoveryError):
        fcplus.end_session_url(replace(flow.discovery, end_session_endpoint=None), "t", "https://x/", "s" * 43)


def test_acr_satisfies() -> None:
    assert fcplus.acr_satisfies("eidas3", "eidas2")
    assert fcplus.acr_satisfies("eidas2", "eidas2")
    assert not fcplus.acr_satisfies("eidas1", "eidas2")
    assert not fcplus.acr_satisfies("eidas2", "eidas3")
