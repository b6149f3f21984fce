"""The authorization endpoint: what is refused on a page, what is redirected, and with what
(SECURITY.md items 1, 2, 4, 5, 10, 11)."""

import json

import pytest
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp import clients
from hospiconnect.idp.models import AuthorizationCode, Interaction
from tests.oidc_helpers import (
    ISSUER,
    OTHER_REDIRECT_URI,
    REDIRECT_URI,
    auth_request,
    exchange,
    interaction_id_of,
    query_of,
    sign_in,
)


def _no_redirect(response):
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def _refusals(session):
    return [json.loads(e.details) for e in session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "oidc:authorize:refused").order_by(AuditEvent.seq))]


# --- item 1 / oidcc-ensure-registered-redirect-uri: no open redirector -----------------------------------

@pytest.mark.parametrize("redirect_uri", [
    "https://attacker.example/callback",
    REDIRECT_URI + "/",                  # exact string match: no prefix matching
    REDIRECT_URI + "?x=1",
    REDIRECT_URI.upper(),
    "https://rp.chu-exemple.fr/callback#frag",
])
def test_unregistered_redirect_uri_gets_a_page_not_a_redirect(client, rp, session, redirect_uri):
    request = auth_request(rp, redirect_uri=redirect_uri)
    page = _no_redirect(client.get("/authorize", query_string=request.params))
    assert "adresse de retour" in page
    assert _refusals(session)[-1]["reason"] == "unregistered_redirect_uri"


def test_unknown_disabled_or_missing_client_and_missing_redirect_uri(client, rp, rt, session):
    request = auth_request(rp)
    for params in ({**request.params, "client_id": "inconnu"},
                   {k: v for k, v in request.params.items() if k != "client_id"},
                   {k: v for k, v in request.params.items() if k != "redirect_uri"}):
        _no_redirect(client.get("/authorize", query_string=params))
    clients.disable(session, rp.client_id, actor="test")
    session.commit()
    page = _no_redirect(client.get("/authorize", query_string=request.params))
    assert "désactivée" in page
    assert [r["reason"] for r in _refusals(session)] == [
        "unknown_client", "unknown_client", "missing_redirect_uri", "unknown_client"]


def test_repeated_redirect_uri_gets_a_page(client, rp):
    request = auth_request(rp)
    query = list(request.params.items()) + [("redirect_uri", OTHER_REDIRECT_URI)]
    _no_redirect(client.get("/authorize", query_string=query))


def test_second_registered_redirect_uri_is_used_exactly(client, rt, rp, person):
    rp.redirect_uri = OTHER_REDIRECT_URI
    request = auth_request(rp)
    response = client.get("/authorize", query_string=request.params)
    assert response.headers["Location"].startswith("/connexion/")


# --- items 2, 4, 5: errors redirected with iss and state ------------------------------------------------

@pytest.mark.parametrize("change, error, reason", [
    ({"response_type": "token"}, "unsupported_response_type", "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type", "unsupported_response_type"),
    ({"response_type": None}, "invalid_request", "invalid_request"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request", "pkce_missing"),
    ({"code_challenge_method": None}, "invalid_request", "pkce_method"),
    ({"code_challenge_method": "plain"}, "invalid_request", "pkce_method"),
    ({"code_challenge": "short"}, "invalid_request", "pkce_challenge"),
    ({"scope": "profile email"}, "invalid_scope", "invalid_scope"),
    ({"prompt": "none login"}, "invalid_request", "invalid_request"),
    ({"prompt": "create"}, "invalid_request", "invalid_request"),
    ({"max_age": "-5"}, "invalid_request", "invalid_request"),
    ({"claims": "{not json"}, "invalid_request", "invalid_request"),
    ({"claims": '{"id_token": []}'}, "invalid_request", "invalid_request"),
    ({"id_token_hint": "a.b.c"}, "invalid_request", "invalid_id_token_hint"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported", "request_not_supported"),
    ({"request_uri": "https://rp.chu-exemple.fr/req"}, "request_uri_not_supported", "request_uri_not_supported"),
    ({"response_mode": "fragment"}, "invalid_request", "invalid_request"),
])
def test_errors_are_redirected_with_iss_and_state(client, rp, session, change, error, reason):
    request = auth_request(rp)
    params = {k: v for k, v in {**request.params, **change}.items() if v is not None}
    response = client.get("/authorize", query_string=params)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    result = query_of(location)
    assert result["error"] == error
    assert result["iss"] == ISSUER
    assert result["state"] == request.state
    assert "\n" not in result.get("error_description", "") and "\r" not in result.get("error_description", "")
    assert "code" not in result
    assert _refusals(session)[-1]["reason"] == reason
    assert session.scalar(select(AuthorizationCode.id)) is None


def test_error_without_state_has_no_state(client, rp):
    request = auth_request(rp, response_type="token")
    params = {k: v for k, v in request.params.items() if k != "state"}
    result = query_of(client.get("/authorize", query_string=params).headers["Location"])
    assert result["error"] == "unsupported_response_type" and result["iss"] == ISSUER and "state" not in result


def test_repeated_parameter_is_invalid_request(client, rp):
    request = auth_request(rp)
    query = list(request.params.items()) + [("scope", "openid email")]
    result = query_of(client.get("/authorize", query_string=query).headers["Location"])
    assert result["error"] == "invalid_request" and result["iss"] == ISSUER


def test_successful_response_carries_code_state_and_iss(client, rt, rp, person):
    request, result = sign_in(client, rt, rp, person)
    assert set(result) == {"code", "state", "iss"}
    assert result["iss"] == ISSUER and result["state"] == request.state
    assert len(result["code"]) >= 43  # 256 bits, base64url


def test_redirect_uri_query_is_kept(client, rt, session, person):
    from tests.oidc_helpers import register

    rc = register(session, rt, redirect_uris=("https://rp.chu-exemple.fr/cb?tenant=chu",))
    rc.redirect_uri = "https://rp.chu-exemple.fr/cb?tenant=chu"
    _, result = sign_in(client, rt, rc, person)
    assert result["tenant"] == "chu" and "code" in result and result["iss"] == ISSUER


# --- conformance: oidcc-ensure-request-with-unknown-parameter-succeeds, oidcc-ensure-post-request-succeeds -

def test_unknown_parameters_are_ignored(client, rt, rp, person):
    request, result = sign_in(client, rt, rp, person, extra_param="bonjour", vendor_x="1", ui_locales="fr",
                              acr_values="eidas1", login_hint="cmartin", prompt="consent select_account")
    assert "code" in result and result["state"] == request.state
    response = exchange(client, rp, result["code"], request.verifier)
    assert response.status_code == 200


def test_post_request_succeeds_and_answers_303(client, rt, rp, person):
    request = auth_request(rp)
    response = client.post("/authorize", data=request.params)
    assert response.status_code == 303
    interaction_id = interaction_id_of(response)
    from tests.oidc_helpers import complete_interaction, resume

    complete_interaction(client, rt, interaction_id, person.id)
    result = query_of(resume(client, interaction_id).headers["Location"])
    assert "code" in result
    assert exchange(client, rp, result["code"], request.verifier).status_code == 200
    # Once signed in, a POST request gets its code at once, with a 303 (after a form POST).
    request = auth_request(rp)
    response = client.post("/authorize", data=request.params)
    assert response.status_code == 303 and "code=" in response.headers["Location"]


def test_interaction_stores_the_validated_request(client, rp, session):
    request = auth_request(rp, login_hint="cmartin", scope="openid profile unknown_scope")
    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    interaction = session.get(Interaction, interaction_id)
    assert len(interaction_id) >= 22  # at least 128 bits
    params = json.loads(interaction.request_json)["params"]
    assert params["login_hint"] == "cmartin"
    assert params["scope"] == ["openid", "profile"]  # unknown scope dropped
    assert params["code_challenge"] == request.params["code_challenge"]
    assert interaction.reasons == ["no_session"]


def test_scopes_not_registered_for_the_client_are_dropped(client, rt, session, person):
    from tests.oidc_helpers import register

    rc = register(session, rt, scopes="openid profile")
    request, result = sign_in(client, rt, rc, person, scope="openid profile email organization")
    body = exchange(client, rc, result["code"], request.verifier).get_json()
    assert body["scope"] == "openid profile"


# --- item 10: headers -----------------------------------------------------------------------------------

def test_security_headers_on_authorize_and_pages(client, rp):
    request = auth_request(rp)
    for response in (client.get("/authorize", query_string=request.params),
                     client.get("/authorize", query_string={**request.params, "client_id": "x"}),
                     client.options("/authorize", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "POST"})):
        assert not any(h.lower().startswith("access-control-") for h in response.headers.keys())
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    response = client.get("/authorize", query_string=request.params, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and "Connexion à Messagerie" in page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    # The login form ends with a redirect to the client: form-action allows its origin.
    assert "form-action 'self' https://rp.chu-exemple.fr" in csp


def test_unknown_interaction_page(client):
    response = client.get("/connexion/inconnue")
    assert response.status_code == 404 and "introuvable" in response.get_data(as_text=True)
