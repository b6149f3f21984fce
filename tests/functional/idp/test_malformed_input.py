"""Property: whatever is thrown at the protocol endpoints, they answer with an OAuth JSON error or a
normal answer, never a 500 (SECURITY.md item 22)."""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oidc_helpers import auth_request, register

FIELDS = ["grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret", "refresh_token",
          "scope", "token", "token_type_hint", "access_token", "client_assertion", "client_assertion_type"]
GRANTS = ["authorization_code", "refresh_token", "password", "client_credentials", ""]

texts = st.text(max_size=80)
values = st.one_of(texts, st.sampled_from(GRANTS), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                   st.just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                   st.just("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"), st.just("a.b.c"))
forms = st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), values, max_size=8)


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


# HTTP cannot carry CR/LF in a header value (the test client refuses them too).
header_texts = texts.map(lambda t: t.replace("\r", " ").replace("\n", " "))
authorizations = st.one_of(
    st.none(),
    st.binary(max_size=40).map(_basic),                     # arbitrary bytes, non-UTF-8 included
    st.tuples(texts, texts).map(lambda p: _basic(f"{p[0]}:{p[1]}".encode())),
    header_texts.map(lambda t: "Bearer " + t),
    header_texts.map(lambda t: "Basic " + t),               # not base64
    header_texts,
)
content_types = st.one_of(st.none(), st.sampled_from([
    "application/x-www-form-urlencoded", "application/json", "multipart/form-data", "text/plain",
    "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded; charset=utf-16"]))


@pytest.fixture()
def known(session, rt):
    rc = register(session, rt)
    return rc


def _check(response, *, allowed=(200, 400, 401)):
    assert response.status_code != 500, response.get_data(as_text=True)
    assert response.status_code in allowed, (response.status_code, response.get_data(as_text=True))
    body = response.get_json(silent=True)
    assert isinstance(body, dict), response.get_data(as_text=True)
    if response.status_code != 200:
        assert isinstance(body.get("error"), str) and body["error"]
        assert "\n" not in body.get("error_description", "") and "\r" not in body.get("error_description", "")
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/token", "/introspect", "/revoke", "/userinfo"]), form=forms,
       authorization=authorizations, use_known=st.booleans())
def test_form_bodies_and_headers(client, known, path, form, authorization, use_known):
    headers = {}
    if use_known:
        headers.update(known.basic())
    elif authorization is not None:
        try:
            authorization.encode("latin-1")
        except UnicodeEncodeError:
            authorization = authorization.encode("utf-8").decode("latin-1")
        headers["Authorization"] = authorization
    response = client.post(path, data=form, headers=headers)
    _check(response)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/token", "/introspect", "/revoke", "/userinfo"]), body=st.binary(max_size=200),
       content_type=content_types)
def test_raw_bodies(client, known, path, body, content_type):
    headers = dict(known.basic())
    if content_type:
        headers["Content-Type"] = content_type
    _check(client.post(path, data=body, headers=headers))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.sampled_from(["scope", "prompt", "max_age", "claims", "id_token_hint",
                                              "response_type", "code_challenge", "code_challenge_method",
                                              "nonce", "state", "login_hint", "acr_values", "ui_locales",
                                              "response_mode", "request", "redirect_uri", "client_id"]),
                             values, max_size=5),
       method=st.sampled_from(["GET", "POST"]))
def test_authorize_never_fails(client, known, extra, method):
    params = {**auth_request(known).params, **extra}
    if method == "GET":
        response = client.get("/authorize", query_string=params)
    else:
        response = client.post("/authorize", data=params)
    assert response.status_code in (302, 303, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert "Location" not in response.headers
    else:
        location = response.headers["Location"]
        assert location.startswith("/connexion/") or location.startswith(known.redirect_uri + "?")
        if not location.startswith("/connexion/"):
            assert "iss=http%3A%2F%2Flocalhost" in location


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["id_token_hint", "post_logout_redirect_uri", "client_id", "state",
                                               "logout_hint", "ui_locales"]), values, max_size=4))
def test_logout_never_fails(client, known, params):
    response = client.get("/logout", query_string=params)
    assert response.status_code in (200, 302, 400), response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/logout", "/authorize"])
def test_a_nul_character_in_client_id_is_a_clear_refusal(client, path):
    # PostgreSQL refuses NUL in query parameters: the lookup must not reach it (found by the property test).
    response = client.get(path, query_string={"client_id": "\x00"})
    assert response.status_code == 400
