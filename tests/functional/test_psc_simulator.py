"""The Pro Santé Connect simulator driven by OUR client (hospiconnect.enrollment.psc) through the test client:
discovery, JWKS, the authorization page, the code exchange, userinfo (JSON and signed JWT), logout, and the
test behaviours."""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import pytest
from flask import Flask

from hospiconnect import create_app
from hospiconnect.devtools import psc_simulator as sim
from hospiconnect.enrollment import psc
from tests.fcplus_helpers import CSRF_RE, HIDDEN_RE, _path_and_query, query_params, wsgi_fetch

BASE = "/simulateur-psc/auth/realms/esante-wallet"


@dataclasses.dataclass
class Flow:
    config: psc.PscConfig
    discovery: psc.Discovery
    provider_jwks: Any
    url: str
    transaction: psc.TransactionState
    fetch: Any


def start(app: Flask, config: psc.PscConfig | None = None) -> Flow:
    config = config or sim.client_config(app.config["SETTINGS"])
    fetch = wsgi_fetch(app)
    discovery = psc.load_discovery(config, fetch)
    keys = psc.load_provider_jwks(discovery, fetch)
    url, transaction = psc.build_authorization_request(config, discovery)
    return Flow(config, discovery, keys, url, transaction, fetch)


def choose(browser: Any, url: str, identity: str = "infirmier-ecps", *, behaviour: str = sim.NORMAL,
           cancel: bool = False) -> dict[str, str]:
    page = browser.get(_path_and_query(url))
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    text = page.get_data(as_text=True)
    form = {name: html.unescape(value) for name, value in HIDDEN_RE.findall(text)}
    form["csrf_token"] = CSRF_RE.search(text).group(1)
    form.update({"action": "cancel"} if cancel else {"identity": identity, "behaviour": behaviour})
    answer = browser.post(_path_and_query(url.split("?", 1)[0]), data=form)
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    return query_params(answer.headers["Location"])


def sign_in(app: Flask, identity: str = "infirmier-ecps", behaviour: str = sim.NORMAL,
            config: psc.PscConfig | None = None) -> psc.NationalIdentity:
    flow = start(app, config)
    params = choose(app.test_client(), flow.url, identity, behaviour=behaviour)
    return psc.handle_callback(flow.config, flow.discovery, flow.transaction, params, fetch=flow.fetch,
                               provider_jwks=flow.provider_jwks)


def test_discovery_is_shaped_like_the_psc_sandbox(client, app):
    settings = app.config["SETTINGS"]
    document = client.get(f"{BASE}/.well-known/openid-configuration").get_json()
    assert document["issuer"] == sim.issuer(settings) == f"http://localhost{BASE}"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "scope_all" in document["scopes_supported"] and document["response_types_supported"] == ["code"]
    assert document["authorization_response_iss_parameter_supported"] is True
    keys = client.get(f"{BASE}/protocol/openid-connect/certs").get_json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and "d" not in keys[0]


@pytest.mark.parametrize("key", list(sim.TEST_IDENTITIES))
def test_each_professional_signs_in_with_their_national_identity(app, key):
    person = sim.TEST_IDENTITIES[key]
    identity = sign_in(app, key)
    assert identity.issuer == sim.issuer(app.config["SETTINGS"]) and identity.sub == person.sub
    assert identity.national_id == person.national_id and identity.rpps == person.national_id[1:]
    assert len(identity.rpps) == 11 and identity.national_id_type == "RPPS"
    assert (identity.given_name, identity.family_name) == (person.given_name, person.family_name)
    assert identity.organization == person.organization and identity.acr == "eidas1"
    assert identity.mie_type == person.mie and identity.amr == sim.AMR_BY_MIE[person.mie]
    assert identity.raw_ref_pro == person.ref_pro() and identity.auth_time is not None


def test_both_national_mie_are_offered():
    assert {p.mie for p in sim.TEST_IDENTITIES.values()} == {"cps", "e-cps"}


def test_the_page_is_in_french_and_lists_the_professionals(app, client):
    flow = start(app)
    text = client.get(flow.url.replace("http://localhost", "")).get_data(as_text=True)
    assert "Simulateur Pro Santé Connect" in text and "professionnels fictifs" in text
    for person in sim.TEST_IDENTITIES.values():
        assert person.family_name in text and person.rpps in text


def test_signed_userinfo_and_higher_acr(app):
    settings = app.config["SETTINGS"]
    assert sign_in(app, behaviour=sim.SIGNED_USERINFO).rpps == sim.TEST_IDENTITIES["infirmier-ecps"].rpps
    eidas2 = dataclasses.replace(sim.client_config(settings), acr_values="eidas2")
    assert sign_in(app, config=eidas2).acr == "eidas2"
    with pytest.raises(psc.AcrTooLow):
        sign_in(app, behaviour=sim.ACR_EIDAS1, config=eidas2)


@pytest.mark.parametrize(("behaviour", "error"), [(sim.BAD_SIGNATURE, psc.BadTokenSignature),
                                                   (sim.OTHER_SUB, psc.SubjectMismatch)])
def test_misbehaviours_are_caught_by_our_client(app, behaviour, error):
    with pytest.raises(error):
        sign_in(app, behaviour=behaviour)


def test_cancel_gives_access_denied_with_iss(app):
    flow = start(app)
    params = choose(app.test_client(), flow.url, cancel=True)
    assert params["error"] == "access_denied" and params["iss"] == flow.discovery.issuer
    with pytest.raises(psc.AccessDenied):
        psc.handle_callback(flow.config, flow.discovery, flow.transaction, params, fetch=flow.fetch,
                            provider_jwks=flow.provider_jwks)


def test_code_is_bound_to_the_redirect_uri_and_the_client(app, client):
    flow = start(app)
    params = choose(app.test_client(), flow.url)
    wrong = client.post(f"{BASE}/protocol/openid-connect/token", data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": "http://localhost/ailleurs",
        "client_id": sim.CLIENT_ID, "client_secret": sim.CLIENT_SECRET})
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    bad_secret = client.post(f"{BASE}/protocol/openid-connect/token", data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": flow.config.redirect_uri,
        "client_id": sim.CLIENT_ID, "client_secret": "nope"})
    assert bad_secret.status_code == 401


def test_unknown_client_or_redirect_uri_gets_a_page_never_a_redirect(app, client):
    flow = start(app)
    for old, new in ((sim.CLIENT_ID, "inconnu"), ("%2Fpsc%2Fretour", "%2Fevil")):
        response = client.get(flow.url.replace("http://localhost", "").replace(old, new))
        assert response.status_code == 400 and "Location" not in response.headers
        assert "Demande refusée" in response.get_data(as_text=True)


def test_short_state_goes_back_with_an_error(app, client):
    flow = start(app)
    url = flow.url.replace("http://localhost", "").replace(flow.transaction.state, "court")
    response = client.get(url)
    assert response.status_code == 302
    params = query_params(response.headers["Location"])
    assert params["error"] == "invalid_request" and params["state"] == "court"


def test_userinfo_requires_a_valid_bearer(client):
    assert client.get(f"{BASE}/protocol/openid-connect/userinfo").status_code == 401
    response = client.get(f"{BASE}/protocol/openid-connect/userinfo", headers={"Authorization": "Bearer x.y.z"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def test_logout_returns_to_the_registered_address(app, client):
    identity = sign_in(app)
    settings = app.config["SETTINGS"]
    flow = start(app)
    url = psc.end_session_url(flow.discovery, identity.id_token, sim.post_logout_redirect_uri(settings), "s" * 40)
    response = client.get(url.replace("http://localhost", ""))
    assert response.status_code == 302 and response.headers["Location"].endswith("?state=" + "s" * 40)
    bad = psc.end_session_url(flow.discovery, identity.id_token, "http://localhost/ailleurs", "s" * 40)
    assert client.get(bad.replace("http://localhost", "")).status_code == 400


def test_refused_in_production_and_absent_when_psc_is_configured(app):
    production = dataclasses.replace(app.config["SETTINGS"], env="production")
    with pytest.raises(RuntimeError):
        sim.init_app(_app_with(production))
    configured = dataclasses.replace(app.config["SETTINGS"],
                                     psc_discovery_url="https://psc.example/.well-known/openid-configuration")
    assert not configured.psc_simulator_enabled


def _app_with(settings: Any) -> Flask:
    flask_app = Flask("psc-simulator-test")
    flask_app.config["SETTINGS"] = settings
    return flask_app


def test_blueprint_answers_404_when_disabled(app, client, monkeypatch):
    settings = dataclasses.replace(app.config["SETTINGS"],
                                   psc_discovery_url="https://psc.example/.well-known/openid-configuration")
    monkeypatch.setitem(app.config, "SETTINGS", settings)
    assert client.get(f"{BASE}/.well-known/openid-configuration").status_code == 404


def test_create_app_registers_the_simulator_only_when_psc_is_not_configured(app, rt):
    assert "psc_simulator" in app.blueprints
    configured = dataclasses.replace(rt.settings,
                                     psc_discovery_url="https://psc.example/.well-known/openid-configuration")
    assert "psc_simulator" not in create_app(configured).blueprints
