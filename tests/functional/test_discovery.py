"""The discovery document and the JWK Set, as a relying party fetches them."""

import json

from joserfc import jws
from joserfc.jwk import KeySet

from hospiconnect.idp import keys as signing


def test_discovery_document(client, settings):
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in response.headers["Cache-Control"]
    doc = response.get_json()
    issuer = settings.issuer
    assert doc["issuer"] == issuer == "http://localhost"
    for name, path in [("authorization_endpoint", "/authorize"), ("token_endpoint", "/token"),
                       ("userinfo_endpoint", "/userinfo"), ("jwks_uri", "/jwks.json"),
                       ("introspection_endpoint", "/introspect"), ("revocation_endpoint", "/revoke"),
                       ("end_session_endpoint", "/logout")]:
        assert doc[name] == issuer + path
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["scopes_supported"] == [
        "openid", "profile", "email", "rpps", "organization", "offline_access", "enrollment"]
    assert set(doc["claims_supported"]) == {
        "sub", "name", "given_name", "family_name", "preferred_username", "email", "rpps", "population",
        "units", "roles", "establishments", "acr", "amr", "auth_time", "sid"}
    assert doc["acr_values_supported"] == ["eidas1", "eidas2", "eidas3"]
    assert doc["claims_parameter_supported"] is True
    assert doc["request_parameter_supported"] is False
    assert doc["request_uri_parameter_supported"] is False
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["frontchannel_logout_supported"] is False
    assert doc["backchannel_logout_supported"] is True
    assert doc["backchannel_logout_session_supported"] is True
    assert doc["ui_locales_supported"] == ["fr", "en"]
    # Introspection and revocation require client authentication.
    assert "none" not in doc["introspection_endpoint_auth_methods_supported"]
    assert "none" not in doc["revocation_endpoint_auth_methods_supported"]
    # Never "none" as an algorithm, anywhere; no implicit or hybrid flow, no plain PKCE.
    for name, value in doc.items():
        if name.endswith("_alg_values_supported"):
            assert value and "none" not in [v.lower() for v in value], name
    assert "token" not in json.dumps(doc["response_types_supported"])
    assert "plain" not in doc["code_challenge_methods_supported"]


def test_discovery_issuer_is_the_setting_exactly(app, rt):
    import dataclasses

    from hospiconnect.runtime import Runtime

    custom = Runtime(dataclasses.replace(rt.settings, issuer="https://idp.chu-exemple.fr/oidc"))
    custom.__dict__["db"] = rt.db  # same database, other issuer
    app.extensions["hospiconnect"] = custom
    doc = app.test_client().get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == "https://idp.chu-exemple.fr/oidc"
    assert doc["token_endpoint"] == "https://idp.chu-exemple.fr/oidc/token"


def test_jwks_document_and_rotation(client, rt, settings):
    with rt.db.session() as session:
        signing.ensure_keys(session, rt.keys)
    response = client.get("/jwks.json")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    first = response.get_json()
    assert sorted(k["alg"] for k in first["keys"]) == ["ES256", "RS256"]
    for jwk in first["keys"]:
        assert jwk["use"] == "sig" and jwk["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    # A token signed now verifies with the published set alone.
    with rt.db.session() as session:
        token = signing.sign(session, rt.keys, {"sub": "1"})
    jws.deserialize_compact(token, KeySet.import_key_set(first), algorithms=["ES256"])

    with rt.db.session() as session:
        result = signing.rotate(session, rt.keys, settings, actor="test")
    second = client.get("/jwks.json").get_json()
    kids = {k["kid"] for k in second["keys"]}
    assert kids == {k["kid"] for k in first["keys"]} | set(result["created"])
    assert len(second["keys"]) == 4
    # The new active keys come first.
    assert {k["kid"] for k in second["keys"][:2]} == set(result["created"])


def test_cors_preflight_and_no_credentials(client):
    response = client.options("/jwks.json", headers={"Origin": "https://rp.example",
                                                     "Access-Control-Request-Method": "GET"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Set-Cookie" not in client.get("/.well-known/openid-configuration").headers
