"""The FranceConnect+ simulator driven by OUR client (hospiconnect.enrollment.fcplus) through the test client:
discovery, JWKS, the authorization page, the code exchange, userinfo and logout, and every test behaviour."""

from __future__ import annotations

import base64
import dataclasses
import json
import urllib.parse
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey

from hospiconnect import appctx, create_app
from hospiconnect.devtools import fcplus_simulator as sim
from hospiconnect.enrollment import fcplus, upstream_keys
from tests.fcplus_helpers import choose_identity, query_params, wsgi_fetch

BASE = "/simulateur-franceconnect/api/v2"


@dataclasses.dataclass
class Flow:
    """One verification in progress: what our client holds between the redirection and the callback."""

    config: fcplus.FcPlusConfig
    discovery: fcplus.Discovery
    provider_jwks: Any
    url: str
    transaction: fcplus.TransactionState
    fetch: Any


@pytest.fixture()
def keyed(rt, session):  # type: ignore[no-untyped-def]
    """The instance's FranceConnect+ encryption keys (the test schema has none)."""
    upstream_keys.ensure_keys(session, rt.keys)
    session.commit()
    return upstream_keys.private_key_set(session, rt.keys)


@pytest.fixture()
def settings_(app):  # type: ignore[no-untyped-def]
    return app.config["SETTINGS"]


def start(app: Flask, config: fcplus.FcPlusConfig | None = None) -> Flow:
    config = config or sim.client_config(app.config["SETTINGS"])
    fetch = wsgi_fetch(app)
    discovery = fcplus.load_discovery(config, fetch)
    provider_jwks = fcplus.load_provider_jwks(discovery, fetch)
    url, transaction = fcplus.build_authorization_request(config, discovery)
    return Flow(config, discovery, provider_jwks, url, transaction, fetch)


def finish(flow: Flow, params: dict[str, str], private_keys: Any) -> fcplus.VerifiedIdentity:
    return fcplus.handle_callback(flow.config, flow.discovery, flow.transaction, params, fetch=flow.fetch,
                                  provider_jwks=flow.provider_jwks, private_keys=private_keys)


def verify(app: Flask, private_keys: Any, identity: str = "camille", behaviour: str = sim.NORMAL,
           config: fcplus.FcPlusConfig | None = None) -> fcplus.VerifiedIdentity:
    flow = start(app, config)
    params = choose_identity(app.test_client(), flow.url, identity, behaviour=behaviour)
    return finish(flow, params, private_keys)


def jose_header(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))


# --- discovery and keys ------------------------------------------------------------------------------------

def test_discovery_advertises_what_franceconnect_plus_does(client, settings_):
    document = client.get(f"{BASE}/.well-known/openid-configuration").get_json()
    assert document["issuer"] == sim.issuer(settings_) == "http://localhost/simulateur-franceconnect/api/v2"
    assert sim.discovery_url(settings_) == document["issuer"] + "/.well-known/openid-configuration"
    for name in ("authorize", "token", "userinfo", "jwks", "session/end"):
        assert f"{document['issuer']}/{name}" in document.values()
    assert document["acr_values_supported"] == ["eidas1", "eidas2", "eidas3"]
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
    assert document["userinfo_signing_alg_values_supported"] == ["ES256"]
    for prefix in ("id_token", "userinfo"):
        assert {"RSA-OAEP", "ECDH-ES"} <= set(document[f"{prefix}_encryption_alg_values_supported"])
        assert document[f"{prefix}_encryption_enc_values_supported"] == ["A256GCM"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {"client_secret_post", "client_secret_basic"}
    assert {"openid", "given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
            "preferred_username", "email"} <= set(document["scopes_supported"])
    assert document["response_types_supported"] == ["code"]
    assert document["authorization_response_iss_parameter_supported"] is True


def test_client_config_points_our_client_at_the_simulator(settings_):
    config = sim.client_config(settings_)
    assert config.discovery_url == sim.discovery_url(settings_)
    assert (config.client_id, config.client_secret) == (sim.CLIENT_ID, sim.CLIENT_SECRET)
    assert config.redirect_uri == "http://localhost/activation/franceconnect/retour"
    assert config.acr_values == settings_.fcplus_acr_values and config.allow_http


def test_jwks_is_one_public_es256_key_derived_from_the_key_file(app, rt):
    keys = wsgi_fetch(app)(fcplus.HttpRequest("GET", f"http://localhost{BASE}/jwks")).json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "EC" and keys[0]["crv"] == "P-256" and "d" not in keys[0]
    assert keys[0]["kid"] == sim.signing_key(rt.keys).kid
    # Another process (or a restart) reading the same key file derives the same key.
    from hospiconnect.crypto import load_keys

    assert sim.signing_key(load_keys(rt.settings.secret_key_file)).as_dict(private=False) == \
        sim.signing_key(rt.keys).as_dict(private=False)


# --- successful verifications ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["camille", "sacha-ne-a-letranger", "lou-date-presumee", "camille-homonyme"])
def test_each_identity_is_verified_with_its_pivot_claims(app, keyed, settings_, key):
    verified = verify(app, keyed, key)
    person = sim.TEST_IDENTITIES[key]
    assert verified.issuer == sim.issuer(settings_)
    assert verified.sub == person.sub and len(person.sub) == 64 and int(person.sub, 16) >= 0
    assert verified.acr == "eidas2" and verified.amr == ["pwd", "mail"]
    for claim, value in person.claims().items():
        assert verified.claims[claim] == value, claim
    assert verified.claims["iss"] == sim.issuer(settings_) and verified.claims["aud"] == sim.CLIENT_ID
    assert verified.id_token_claims["aud"] == sim.CLIENT_ID
    assert isinstance(verified.id_token_claims["auth_time"], int)


def test_tokens_are_signed_then_encrypted_rsa_for_the_id_token_and_ec_for_userinfo(app, keyed, session):
    flow = start(app)
    params = choose_identity(app.test_client(), flow.url, "camille")
    assert params["iss"] == flow.discovery.issuer and params["state"] == flow.transaction.state
    client = app.test_client()
    body = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": flow.config.redirect_uri,
            "client_id": sim.CLIENT_ID, "client_secret": sim.CLIENT_SECRET}
    tokens = client.post(f"{BASE}/token", data=body)
    assert tokens.status_code == 200 and tokens.headers["Cache-Control"] == "no-store"
    payload = tokens.get_json()
    assert payload["token_type"] == "Bearer" and payload["expires_in"] == 60
    kids = {key["kty"]: key["kid"] for key in upstream_keys.public_jwks(session)["keys"]}
    header = jose_header(payload["id_token"])
    assert (header["alg"], header["enc"], header["kid"]) == ("RSA-OAEP", "A256GCM", kids["RSA"])
    info = client.get(f"{BASE}/userinfo", headers={"Authorization": f"Bearer {payload['access_token']}"})
    assert info.status_code == 200 and info.mimetype == "application/jwt"
    header = jose_header(info.get_data(as_text=True))
    assert (header["alg"], header["enc"], header["kid"]) == ("ECDH-ES", "A256GCM", kids["EC"])


def test_client_secret_basic_and_eidas3_are_accepted(app, keyed, settings_):
    config = dataclasses.replace(sim.client_config(settings_), token_auth_method="client_secret_basic",
                                 acr_values="eidas3")
    verified = verify(app, keyed, "sacha-ne-a-letranger", config=config)
    assert verified.acr == "eidas3"


def test_userinfo_releases_only_the_claims_of_the_scopes_asked(app, keyed, settings_):
    config = dataclasses.replace(sim.client_config(settings_), scopes="openid family_name birth")
    verified = verify(app, keyed, "camille", config=config)
    assert set(verified.claims) == {"sub", "family_name", "birthplace", "birthcountry", "iss", "aud", "iat"}


# --- the test behaviours and the errors our client must catch ----------------------------------------------

@pytest.mark.parametrize(("behaviour", "error"), [
    (sim.ACR_EIDAS1, fcplus.AcrTooLow),
    (sim.BAD_SIGNATURE, fcplus.BadTokenSignature),
    (sim.FOREIGN_ENCRYPTION, fcplus.UndecryptableToken),
    (sim.OTHER_SUB, fcplus.SubjectMismatch),
])
def test_each_test_behaviour_is_refused_by_our_client(app, keyed, behaviour, error):
    with pytest.raises(error):
        verify(app, keyed, "camille", behaviour)


def test_cancel_comes_back_as_access_denied(app, keyed):
    flow = start(app)
    params = choose_identity(app.test_client(), flow.url, cancel=True)
    assert params["error"] == "access_denied" and params["state"] == flow.transaction.state
    assert params["iss"] == flow.discovery.issuer and "code" not in params
    with pytest.raises(fcplus.AccessDenied):
        finish(flow, params, keyed)


def test_a_callback_with_another_state_is_refused(app, keyed):
    flow = start(app)
    params = choose_identity(app.test_client(), flow.url, "camille")
    with pytest.raises(fcplus.StateMismatch):
        finish(flow, {**params, "state": "x" * 43}, keyed)


def test_a_wrong_client_secret_is_refused_at_the_token_endpoint(app, keyed, settings_):
    for method in ("client_secret_post", "client_secret_basic"):
        config = dataclasses.replace(sim.client_config(settings_), client_secret="mauvais-secret",
                                     token_auth_method=method)
        with pytest.raises(fcplus.ProviderError, match="invalid_client"):
            verify(app, keyed, "camille", config=config)


def test_an_expired_code_is_invalid_grant(app, keyed, monkeypatch):
    flow = start(app)
    params = choose_identity(app.test_client(), flow.url, "camille")
    issued = sim.epoch_now()
    monkeypatch.setattr(sim, "epoch_now", lambda: issued + sim.CODE_SECONDS)
    with pytest.raises(fcplus.ProviderError, match="invalid_grant"):
        finish(flow, params, keyed)


def test_code_bound_to_its_redirect_uri_and_not_usable_as_an_access_token(app, keyed):
    flow = start(app)
    code = choose_identity(app.test_client(), flow.url, "camille")["code"]
    client = app.test_client()
    other_uri = client.post(f"{BASE}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": "http://localhost/ailleurs",
        "client_id": sim.CLIENT_ID, "client_secret": sim.CLIENT_SECRET})
    assert other_uri.status_code == 400 and other_uri.get_json()["error"] == "invalid_grant"
    as_token = client.get(f"{BASE}/userinfo", headers={"Authorization": f"Bearer {code}"})
    assert as_token.status_code == 401 and as_token.get_json()["error"] == "invalid_token"


def test_an_expired_access_token_is_refused_at_userinfo(app, keyed, monkeypatch):
    flow = start(app)
    code = choose_identity(app.test_client(), flow.url, "camille")["code"]
    client = app.test_client()
    tokens = client.post(f"{BASE}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": flow.config.redirect_uri,
        "client_id": sim.CLIENT_ID, "client_secret": sim.CLIENT_SECRET}).get_json()
    issued = sim.epoch_now()
    monkeypatch.setattr(sim, "epoch_now", lambda: issued + sim.ACCESS_TOKEN_SECONDS)
    answer = client.get(f"{BASE}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_token_endpoint_errors_are_oauth_json(client, keyed):
    def post(data: dict[str, str], **kwargs: Any):  # type: ignore[no-untyped-def]
        return client.post(f"{BASE}/token", data=data, **kwargs)

    good = {"client_id": sim.CLIENT_ID, "client_secret": sim.CLIENT_SECRET}
    assert post({"grant_type": "authorization_code", "code": "abc"}).get_json()["error"] == "invalid_client"
    assert post({**good, "grant_type": "password"}).get_json()["error"] == "unsupported_grant_type"
    assert post({**good, "grant_type": "authorization_code"}).get_json()["error"] == "invalid_request"
    assert post({**good, "grant_type": "authorization_code", "code": "a.b.c"}).get_json()["error"] == "invalid_grant"
    both = post({**good, "grant_type": "authorization_code", "code": "x"},
                headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()})
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_request"
    garbled = post({"grant_type": "authorization_code", "code": "x"}, headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401 and garbled.get_json()["error"] == "invalid_client"
    assert client.get(f"{BASE}/userinfo").status_code == 401


# --- the authorization endpoint's own checks ---------------------------------------------------------------

def authorize_params(settings, **changes: str | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    params = {"response_type": "code", "client_id": sim.CLIENT_ID, "redirect_uri": sim.redirect_uri(settings),
              "scope": fcplus.DEFAULT_SCOPES, "acr_values": "eidas2", "state": "s" * 32, "nonce": "n" * 32,
              "prompt": "login consent"}
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize("changes", [
    {"redirect_uri": "http://localhost/ailleurs"},
    {"redirect_uri": None},
    {"client_id": "inconnu"},
])
def test_unknown_client_or_redirect_uri_gets_a_page_never_a_redirect(client, settings_, changes):
    response = client.get(f"{BASE}/authorize", query_string=authorize_params(settings_, **changes))
    assert response.status_code == 400 and "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert "Simulateur FranceConnect+" in html and "identités fictives" in html


@pytest.mark.parametrize(("changes", "error"), [
    ({"state": "court"}, "invalid_request"),
    ({"nonce": None}, "invalid_request"),
    ({"nonce": "n" * 31}, "invalid_request"),
    ({"acr_values": None}, "invalid_request"),
    ({"acr_values": "eidas4"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "given_name"}, "invalid_scope"),
    ({"prompt": "none"}, "login_required"),
])
def test_other_errors_go_back_to_the_client_with_state_and_iss(client, settings_, changes, error):
    params = authorize_params(settings_, **changes)
    response = client.get(f"{BASE}/authorize", query_string=params)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(sim.redirect_uri(settings_) + "?")
    back = query_params(response.headers["Location"])
    assert back["error"] == error and back["iss"] == sim.issuer(settings_)
    assert back.get("state") == params.get("state")


def test_the_page_lists_the_identities_cancel_and_the_behaviours(client, settings_):
    response = client.get(f"{BASE}/authorize", query_string=authorize_params(settings_))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "Simulateur FranceConnect+ — environnement de démonstration, identités fictives" in html
    assert 'lang="fr"' in html and "Annuler" in html
    for key in sim.TEST_IDENTITIES:
        assert f'name="identity" value="{key}"' in html
    for key in sim.BEHAVIOURS:
        assert f'<option value="{key}"' in html


def test_the_choice_form_needs_its_csrf_token_and_a_known_identity(client, settings_):
    params = authorize_params(settings_)
    assert client.post(f"{BASE}/authorize", data={**params, "identity": "camille"}).status_code == 400
    page = client.get(f"{BASE}/authorize", query_string=params).get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    unknown = client.post(f"{BASE}/authorize", data={**params, "csrf_token": token, "identity": "personne"})
    assert unknown.status_code == 400 and "Location" not in unknown.headers
    tampered = client.post(f"{BASE}/authorize", data={**params, "csrf_token": token, "identity": "camille",
                                                      "redirect_uri": "https://attaquant.example/"})
    assert tampered.status_code == 400 and "Location" not in tampered.headers


# --- logout ------------------------------------------------------------------------------------------------

def test_end_session_goes_back_to_the_post_logout_page_with_state(app, keyed, settings_):
    verified = verify(app, keyed, "camille")
    flow = start(app)
    target = f"{settings_.issuer}/activation/franceconnect/deconnexion"
    url = fcplus.end_session_url(flow.discovery, verified.id_token_hint, target, "etat-de-deconnexion")
    response = app.test_client().get(url.replace("http://localhost", ""))
    assert response.status_code == 302
    assert response.headers["Location"] == f"{target}?state=etat-de-deconnexion"


@pytest.mark.parametrize("changes", [
    {"post_logout_redirect_uri": "https://attaquant.example/"},
    {"state": None},
    {"id_token_hint": None},
    {"id_token_hint": "a.b.c.d.e"},
    {"id_token_hint": "encrypted"},  # the encrypted token as received, not the signed one inside
    {"id_token_hint": "foreign"},  # a signed token from another signer
])
def test_end_session_with_bad_parameters_gets_a_page(app, keyed, settings_, changes):
    verified = verify(app, keyed, "camille")
    params = {"id_token_hint": verified.id_token_hint, "state": "s",
              "post_logout_redirect_uri": f"{settings_.issuer}/activation/franceconnect/deconnexion"}
    params.update(changes)
    if params["id_token_hint"] == "encrypted":
        params["id_token_hint"] = verified.id_token
    elif params["id_token_hint"] == "foreign":
        signer = ECKey.generate_key("P-256", {"use": "sig"})
        kid = json.loads(base64.urlsafe_b64decode(verified.id_token_hint.split(".")[0] + "=="))["kid"]
        params["id_token_hint"] = jwt.encode({"alg": "ES256", "kid": kid},
                                             verified.id_token_claims, signer, algorithms=["ES256"])
    response = app.test_client().get(f"{BASE}/session/end",
                                     query_string={k: v for k, v in params.items() if v is not None})
    assert response.status_code == 400 and "Location" not in response.headers


# --- never in production -----------------------------------------------------------------------------------

def test_refuses_to_register_in_production(settings_):
    application = Flask(__name__)
    application.config["SETTINGS"] = dataclasses.replace(settings_, env="production")
    with pytest.raises(RuntimeError, match="production"):
        sim.init_app(application)


def test_routes_do_not_exist_when_a_real_franceconnect_plus_is_configured(rt):
    settings = dataclasses.replace(
        rt.settings, fcplus_discovery_url="https://fcp.example/api/v2/.well-known/openid-configuration")
    assert not settings.fcplus_simulator_enabled
    application = create_app(settings)
    application.extensions[appctx.EXTENSION] = rt
    client = application.test_client()
    assert client.get(f"{BASE}/.well-known/openid-configuration").status_code == 404
    query = urllib.parse.urlencode(authorize_params(settings))
    assert client.get(f"{BASE}/authorize?{query}").status_code == 404
