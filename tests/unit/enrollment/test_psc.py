"""Pro Santé Connect client against a fake provider built here with joserfc (signed, not encrypted, tokens)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from hospiconnect.enrollment import fcplus, psc
from hospiconnect.enrollment.psc import HttpRequest, HttpResponse, PscConfig

ISSUER = "https://auth.psc.example.test/auth/realms/esante-wallet"
DISCOVERY_URL = f"{ISSUER}/.well-known/openid-configuration"
NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone.utc)
RPPS = "10999900011"
SUB = "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:" + RPPS

CONFIG = PscConfig(discovery_url=DISCOVERY_URL, client_id="hospiconnect-psc", client_secret="s3cr3t+/=-of-the-psc-client",
                   redirect_uri="https://idp.chu.example/psc/retour")

REF_PRO = {"codeCivilite": "MME", "exercices": [{"codeProfession": "10", "activities": [
    {"numeroFinessSite": "990000103", "raisonSocialeSite": "CH de Valmont"}]}]}
USERINFO = {"sub": SUB, "SubjectNameID": "8" + RPPS, "given_name": "Hélène", "family_name": "VASSEUR-NGUYEN",
            "SubjectOrganization": "CH de Valmont", "SubjectRefPro": REF_PRO, "preferred_username": "8" + RPPS}

RSA = RSAKey.generate_key(2048, {"kid": "psc-rs256", "use": "sig", "alg": "RS256"})
EC = ECKey.generate_key("P-256", {"kid": "psc-es256", "use": "sig", "alg": "ES256"})


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def sign(claims: dict[str, Any], key: Any = RSA, alg: str = "RS256", kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": kid or key.kid}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])


@dataclass
class FakePsc:
    """Answers discovery, JWKS, token and userinfo like PSC; each piece can be altered by a test."""

    discovery: dict[str, Any] = field(default_factory=lambda: {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "userinfo_endpoint": f"{ISSUER}/protocol/openid-connect/userinfo",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "end_session_endpoint": f"{ISSUER}/protocol/openid-connect/logout",
        # Keycloak announces many algorithms; we keep RS256 and ES256 only.
        "id_token_signing_alg_values_supported": ["PS256", "HS256", "RS256", "ES256", "none"],
        "userinfo_signing_alg_values_supported": ["RS256", "none"],
    })
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": [RSA.as_dict(private=False),
                                                                 EC.as_dict(private=False)]})
    id_claims: dict[str, Any] = field(default_factory=dict)
    id_token: str | None = None
    userinfo: dict[str, Any] = field(default_factory=lambda: dict(USERINFO))
    userinfo_jwt: str | None = None
    requests: list[HttpRequest] = field(default_factory=list)

    def default_id_claims(self, nonce: str) -> dict[str, Any]:
        return {"iss": ISSUER, "sub": SUB, "aud": CONFIG.client_id, "azp": CONFIG.client_id,
                "exp": int(NOW.timestamp()) + 300, "iat": int(NOW.timestamp()), "auth_time": int(NOW.timestamp()),
                "nonce": nonce, "acr": "eidas1", "amr": ["pwd", "otp", "mfa"]}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        json_type = {"content-type": "application/json"}
        if request.url == DISCOVERY_URL:
            return HttpResponse(200, json_type, json.dumps(self.discovery).encode())
        if request.url == self.discovery["jwks_uri"]:
            return HttpResponse(200, json_type, json.dumps(self.jwks).encode())
        if request.url == self.discovery["token_endpoint"]:
            token = self.id_token or sign(self.id_claims)
            return HttpResponse(200, json_type, json.dumps({"access_token": "at", "token_type": "Bearer",
                                                            "id_token": token}).encode())
        if request.url == self.discovery["userinfo_endpoint"]:
            assert request.headers["Authorization"] == "Bearer at"
            if self.userinfo_jwt is not None:
                return HttpResponse(200, {"content-type": "application/jwt"}, self.userinfo_jwt.encode())
            return HttpResponse(200, json_type, json.dumps(self.userinfo).encode())
        return HttpResponse(404, {}, b"")


@dataclass
class Flow:
    provider: FakePsc
    discovery: psc.Discovery
    keys: KeySet
    transaction: psc.TransactionState
    url: str

    def callback(self, params: dict[str, str] | None = None, *, config: PscConfig = CONFIG,
                 now: dt.datetime = NOW, **claim_changes: Any) -> psc.NationalIdentity:
        claims = {**self.provider.default_id_claims(self.transaction.nonce), **claim_changes}
        self.provider.id_claims = {k: v for k, v in claims.items() if v is not None}
        params = params if params is not None else {"code": "c0de", "state": self.transaction.state, "iss": ISSUER}
        return psc.handle_callback(config, self.discovery, self.transaction, params, fetch=self.provider,
                                   provider_jwks=self.keys, now=now)


def start(provider: FakePsc | None = None, config: PscConfig = CONFIG) -> Flow:
    provider = provider or FakePsc()
    discovery = psc.load_discovery(config, provider)
    keys = psc.load_provider_jwks(discovery, provider)
    url, transaction = psc.build_authorization_request(config, discovery, now=NOW)
    return Flow(provider, discovery, keys, transaction, url)


# --- the request ----------------------------------------------------------------------------------------------

def test_authorization_request_asks_scope_all_and_the_configured_acr():
    flow = start()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(flow.url).query))
    assert flow.url.startswith(f"{ISSUER}/protocol/openid-connect/auth?")
    assert query["scope"] == "openid scope_all" and query["acr_values"] == "eidas1"
    assert query["response_type"] == "code" and "prompt" not in query
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and query["state"] != query["nonce"]
    assert flow.transaction.acr_values == "eidas1" and flow.transaction.issuer == ISSUER
    eidas2 = start(config=replace(CONFIG, acr_values="eidas2", prompt="login"))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(eidas2.url).query))
    assert query["acr_values"] == "eidas2" and query["prompt"] == "login"


def test_configuration_is_checked_and_never_shows_the_secret():
    with pytest.raises(psc.PscConfigurationError):
        replace(CONFIG, acr_values="eidas9")
    with pytest.raises(psc.PscConfigurationError):
        replace(CONFIG, scopes="scope_all")
    with pytest.raises(psc.PscConfigurationError):
        replace(CONFIG, mie_type_by_amr={"hwk": "carte"})
    assert "s3cr3t" not in repr(CONFIG)


def test_discovery_must_announce_an_accepted_algorithm_and_keeps_rs256_es256_only():
    flow = start()
    assert psc.id_token_algorithms(flow.discovery) == ("RS256", "ES256")
    assert psc.userinfo_algorithms(flow.discovery) == ("RS256",)
    provider = FakePsc()
    provider.discovery["id_token_signing_alg_values_supported"] = ["HS256", "none"]
    with pytest.raises(psc.DiscoveryError):
        start(provider)
    provider = FakePsc()
    del provider.discovery["id_token_signing_alg_values_supported"]
    assert psc.id_token_algorithms(start(provider).discovery) == ("RS256",)  # the OIDC default


def test_discovery_issuer_must_be_the_discovery_url_prefix():
    provider = FakePsc()
    provider.discovery["issuer"] = "https://evil.example/auth/realms/esante-wallet"
    with pytest.raises(psc.DiscoveryError, match="Pro Santé Connect"):
        start(provider)


# --- success ----------------------------------------------------------------------------------------------

def test_e_cps_sign_in_gives_the_national_identity():
    flow = start()
    identity = flow.callback()
    assert (identity.issuer, identity.sub) == (ISSUER, SUB)
    assert identity.national_id == "8" + RPPS and identity.rpps == RPPS and identity.national_id_type == "RPPS"
    assert (identity.given_name, identity.family_name, identity.organization) == \
        ("Hélène", "VASSEUR-NGUYEN", "CH de Valmont")
    assert identity.acr == "eidas1" and identity.amr == ("pwd", "otp", "mfa") and identity.mie_type == "e-cps"
    assert identity.auth_time == NOW and identity.raw_ref_pro == REF_PRO
    assert identity.id_token.count(".") == 2
    token_request = next(r for r in flow.provider.requests if r.url.endswith("/token"))
    assert token_request.headers["Authorization"].startswith("Basic ")  # client_secret_basic by default


def test_cps_card_amr_gives_cps_and_es256_is_accepted_when_announced():
    flow = start()
    flow.provider.id_token = None
    claims = {**flow.provider.default_id_claims(flow.transaction.nonce), "amr": ["hwk", "pin", "mfa"]}
    flow.provider.id_token = sign(claims, EC, "ES256")
    identity = psc.handle_callback(CONFIG, flow.discovery, flow.transaction,
                                   {"code": "c", "state": flow.transaction.state}, fetch=flow.provider,
                                   provider_jwks=flow.keys, now=NOW)
    assert identity.mie_type == "cps"


def test_signed_userinfo_is_accepted_when_announced_and_checked():
    flow = start()
    flow.provider.userinfo_jwt = sign({**USERINFO, "iss": ISSUER, "aud": CONFIG.client_id})
    assert flow.callback().rpps == RPPS
    flow = start()
    flow.provider.userinfo_jwt = sign({**USERINFO, "iss": ISSUER, "aud": "another-client"})
    with pytest.raises(psc.AudienceMismatch):
        flow.callback()
    provider = FakePsc()
    del provider.discovery["userinfo_signing_alg_values_supported"]
    flow = start(provider)
    flow.provider.userinfo_jwt = sign(USERINFO)
    with pytest.raises(psc.InvalidToken):
        flow.callback()


# --- the ID token's checks ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "error"), [
    ({"iss": "https://other.example/auth/realms/esante-wallet"}, psc.IssuerMismatch),
    ({"aud": "another-client"}, psc.AudienceMismatch),
    ({"aud": [CONFIG.client_id, "another"], "azp": "another"}, psc.AudienceMismatch),
    ({"nonce": "n" * 43}, psc.NonceMismatch),
    ({"nonce": None}, psc.NonceMismatch),
    ({"exp": int(NOW.timestamp()) - 120}, psc.ExpiredToken),
    ({"sub": None}, psc.InvalidToken),
])
def test_id_token_claims_are_checked(changes, error):
    with pytest.raises(error) as info:
        start().callback(**changes)
    assert "Pro Santé Connect" in str(info.value)


def test_acr_lower_than_requested_is_refused():
    flow = start(config=replace(CONFIG, acr_values="eidas2"))
    with pytest.raises(psc.AcrTooLow, match="inférieur au niveau demandé"):
        flow.callback(config=replace(CONFIG, acr_values="eidas2"), acr="eidas1")
    flow = start(config=replace(CONFIG, acr_values="eidas2"))
    assert flow.callback(config=replace(CONFIG, acr_values="eidas2"), acr="eidas3").acr == "eidas3"


def test_bad_signature_is_refused():
    flow = start()
    other = RSAKey.generate_key(2048)
    flow.provider.id_token = sign(flow.provider.default_id_claims(flow.transaction.nonce), other, kid=RSA.kid)
    with pytest.raises(psc.BadTokenSignature):
        flow.callback()


def test_alg_none_is_refused():
    flow = start()
    claims = flow.provider.default_id_claims(flow.transaction.nonce)
    flow.provider.id_token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(psc.BadTokenSignature, match="non autorisé"):
        flow.callback()


def test_hs256_with_the_public_key_or_the_client_secret_is_refused():
    flow = start()
    claims = flow.provider.default_id_claims(flow.transaction.nonce)
    secret = OctKey.import_key(CONFIG.client_secret.encode())
    flow.provider.id_token = sign(claims, secret, "HS256", kid=RSA.kid)
    with pytest.raises(psc.BadTokenSignature, match="non autorisé"):
        flow.callback()


def test_es256_is_refused_when_the_discovery_announces_rs256_only():
    provider = FakePsc()
    provider.discovery["id_token_signing_alg_values_supported"] = ["RS256"]
    flow = start(provider)
    flow.provider.id_token = sign(provider.default_id_claims(flow.transaction.nonce), EC, "ES256")
    with pytest.raises(psc.BadTokenSignature):
        flow.callback()


def test_an_encrypted_token_is_refused():
    flow = start()
    flow.provider.id_token = "a.b.c.d.e"
    with pytest.raises(psc.InvalidToken):
        flow.callback()


# --- the authorization response ----------------------------------------------------------------------------

def test_state_iss_and_errors_of_the_authorization_response():
    flow = start()
    with pytest.raises(psc.StateMismatch):
        flow.callback({"code": "c", "state": "x" * 43})
    with pytest.raises(psc.IssuerMismatch):
        flow.callback({"code": "c", "state": flow.transaction.state, "iss": "https://evil.example"})
    with pytest.raises(psc.AccessDenied, match="annulé"):
        flow.callback({"error": "access_denied", "state": flow.transaction.state})
    with pytest.raises(psc.TransactionExpired):
        flow.callback(now=NOW + dt.timedelta(hours=1))
    assert not any(r.url.endswith("/token") for r in flow.provider.requests)


def test_userinfo_of_another_subject_is_refused():
    flow = start()
    flow.provider.userinfo = {**USERINFO, "sub": "someone-else"}
    with pytest.raises(psc.SubjectMismatch):
        flow.callback()


def test_unreachable_provider_is_a_psc_error():
    def down(request: HttpRequest) -> HttpResponse:
        raise fcplus.ProviderError("service injoignable")

    with pytest.raises(psc.ProviderError, match="Pro Santé Connect"):
        psc.load_discovery(CONFIG, down)


# --- claims -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("national_id", "rpps", "kind"), [
    ("8" + RPPS, RPPS, "RPPS"),
    ("810999900011", "10999900011", "RPPS"),
    ("8123", None, None),              # "8" but not 11 digits
    ("81099990001X", None, None),
    ("0751234567", None, "ADELI"),
    ("3990000103/12345", None, "FINESS"),
    ("", None, None),
    (None, None, None),
])
def test_subject_name_id_forms(national_id, rpps, kind):
    assert psc.rpps_of(national_id) == rpps
    assert psc.national_id_type(national_id) == kind


def test_adeli_professional_has_no_rpps():
    flow = start()
    flow.provider.userinfo = {**USERINFO, "SubjectNameID": "0751234567", "preferred_username": "0751234567"}
    identity = flow.callback()
    assert identity.rpps is None and identity.national_id_type == "ADELI"


def test_missing_subject_name_id_is_refused():
    flow = start()
    flow.provider.userinfo = {"sub": SUB, "given_name": "Hélène"}
    with pytest.raises(psc.MissingNationalId):
        flow.callback()


@pytest.mark.parametrize(("amr", "acr", "expected"), [
    (["pwd", "otp", "mfa"], "eidas1", "e-cps"),
    (["hwk", "pin", "mfa"], "eidas1", "cps"),
    (["sc", "pin"], "eidas1", "cps"),
    (["swk"], "eidas1", "e-cps"),
    (["hwk", "otp"], "eidas1", "cps"),  # a card is decisive
    (["mfa"], "eidas1", None),
    ([], "eidas3", None),
])
def test_amr_to_mie_type(amr, acr, expected):
    assert psc.mie_type_of(amr, acr) == expected


def test_amr_and_acr_mappings_are_configurable():
    config = replace(CONFIG, mie_type_by_amr={"face": "e-cps"}, mie_type_by_acr={"eidas3": "cps"})
    assert psc.mie_type_of(["face"], "eidas1", by_amr=config.mie_type_by_amr) == "e-cps"
    flow = start(config=config)
    assert flow.callback(config=config, amr=["mfa"], acr="eidas1").mie_type is None
    assert psc.mie_type_of(["mfa"], "eidas3", by_amr=config.mie_type_by_amr,
                           by_acr=config.mie_type_by_acr) == "cps"


@pytest.mark.parametrize("amr", ["pwd", [1, 2]])
def test_malformed_amr_is_refused(amr):
    with pytest.raises(psc.InvalidToken):
        start().callback(amr=amr)


def test_end_session_url():
    flow = start()
    url = psc.end_session_url(flow.discovery, "tok", "https://idp.chu.example/psc/deconnexion", "s" * 43)
    assert url.startswith(f"{ISSUER}/protocol/openid-connect/logout?id_token_hint=tok")
