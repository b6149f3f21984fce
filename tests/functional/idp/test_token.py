"""The token endpoint with the authorization_code grant: codes, PKCE, client authentication, ID tokens
(SECURITY.md items 2, 3, 7, 11: oidcc-codereuse, oidcc-codereuse-30seconds, incorrect PKCE verifier,
expired code, code bound to another client)."""

import datetime as dt
import json
import secrets
import time

import pytest
import time_machine
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select, update

from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp import oidc
from hospiconnect.idp.models import AuthorizationCode, Token
from tests.oidc_helpers import (
    ISSUER,
    OTHER_REDIRECT_URI,
    auth_request,
    basic_auth,
    exchange,
    id_token_claims,
    jwt_header,
    pkce,
    register,
    sign_in,
)


def _tags(session):
    return [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def _error(response, status=400):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) <= {"error", "error_description"}
    assert "\n" not in body.get("error_description", "")
    return body["error"]


def _userinfo(client, access_token):
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


# --- a good exchange and the ID token (item 7) ----------------------------------------------------------

def test_code_exchange_and_id_token_claims(client, rt, rp, person, session):
    request, result = sign_in(client, rt, rp, person, scope="openid profile email rpps organization")
    response = exchange(client, rp, result["code"], request.verifier)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert "refresh_token" not in body  # offline_access not asked
    assert len(body["access_token"]) >= 43 and body["access_token"].count(".") == 0  # opaque
    header = jwt_header(body["id_token"])
    assert header["alg"] == "ES256" and header["kid"] and header["typ"] == "JWT"
    claims = id_token_claims(rt, body["id_token"])
    for name in ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash", "azp"):
        assert name in claims, name
    assert claims["iss"] == ISSUER and claims["aud"] == rp.client_id and claims["azp"] == rp.client_id
    assert claims["sub"] == person.public_id and claims["nonce"] == request.nonce
    assert claims["at_hash"] == oidc.half_hash(body["access_token"])
    assert claims["exp"] - claims["iat"] == 300
    assert claims["acr"] == "eidas1" and claims["amr"] == ["pwd"]
    assert claims["preferred_username"] == person.user_name and claims["email_verified"] is False
    assert claims["rpps"] == person.rpps and claims["population"] == person.population
    assert claims["establishments"] == ["750712184"] and claims["units"] == ["CARDIO", "POLE-MED"]
    assert claims["roles"] == ["ide"]
    # The tokens are stored as keyed hashes only.
    stored = session.scalars(select(Token.token_hash)).all()
    assert body["access_token"] not in stored and rt.keys.keyed_hash(body["access_token"]) in stored
    assert "oidc:token:issued" in _tags(session)
    assert body["access_token"] not in json.dumps([e.details for e in session.scalars(select(AuditEvent))])


def test_no_nonce_when_not_sent(client, rt, rp, person):
    request = auth_request(rp)
    del request.params["nonce"]
    from tests.oidc_helpers import complete_interaction, interaction_id_of, query_of, resume

    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    complete_interaction(client, rt, interaction_id, person.id)
    result = query_of(resume(client, interaction_id).headers["Location"])
    claims = id_token_claims(rt, exchange(client, rp, result["code"], request.verifier).get_json()["id_token"])
    assert "nonce" not in claims


def test_rs256_when_the_client_registered_that_preference(client, rt, rp, person, session):
    oidc.set_id_token_alg(session, rp.client_id, "RS256")
    session.commit()
    request, result = sign_in(client, rt, rp, person)
    token = exchange(client, rp, result["code"], request.verifier).get_json()["id_token"]
    assert jwt_header(token)["alg"] == "RS256"
    claims = id_token_claims(rt, token)
    assert claims["at_hash"] and claims["sub"] == person.public_id
    with pytest.raises(ValueError):
        oidc.set_id_token_alg(session, rp.client_id, "none")


# --- item 3: single-use codes; oidcc-codereuse and oidcc-codereuse-30seconds ----------------------------

def test_codereuse_revokes_the_tokens_of_the_first_use(client, rt, rp, person, session):
    request, result = sign_in(client, rt, rp, person)
    first = exchange(client, rp, result["code"], request.verifier).get_json()
    assert _userinfo(client, first["access_token"]).status_code == 200
    second = exchange(client, rp, result["code"], request.verifier)
    assert _error(second) == "invalid_grant"
    # The first access token no longer works.
    response = _userinfo(client, first["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "oidc:code:reused" in _tags(session)
    assert all(t.revoked_at is not None for t in session.scalars(select(Token)))


def test_codereuse_30_seconds_later_with_refresh_token(client, rt, rp, person, session):
    request, result = sign_in(client, rt, rp, person, scope="openid offline_access")
    first = exchange(client, rp, result["code"], request.verifier).get_json()
    assert "refresh_token" in first
    # The refresh token was already exchanged once: its successors die too.
    rotated = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                          headers=rp.basic()).get_json()
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)):
        assert _error(exchange(client, rp, result["code"], request.verifier)) == "invalid_grant"
        assert _userinfo(client, first["access_token"]).status_code == 401
        assert _userinfo(client, rotated["access_token"]).status_code == 401
        response = client.post("/token", data={"grant_type": "refresh_token",
                                                "refresh_token": rotated["refresh_token"]}, headers=rp.basic())
        assert _error(response) == "invalid_grant"


def test_code_expires_after_60_seconds(client, rt, rp, person, session):
    request, result = sign_in(client, rt, rp, person)
    code = session.scalar(select(AuthorizationCode))
    assert (code.expires_at - code.created_at) <= dt.timedelta(seconds=60)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)):
        assert _error(exchange(client, rp, result["code"], request.verifier)) == "invalid_grant"


def test_code_bound_to_another_client(client, rt, rp, person, session):
    other = register(session, rt, name="Autre application")
    request, result = sign_in(client, rt, rp, person)
    assert _error(exchange(client, other, result["code"], request.verifier)) == "invalid_grant"
    # Not consumed by the refused attempt: the right client still redeems it.
    assert exchange(client, rp, result["code"], request.verifier).status_code == 200


def test_code_bound_to_the_redirect_uri(client, rt, rp, person):
    request, result = sign_in(client, rt, rp, person)
    assert _error(exchange(client, rp, result["code"], request.verifier,
                           redirect_uri=OTHER_REDIRECT_URI)) == "invalid_grant"
    assert _error(exchange(client, rp, result["code"], request.verifier,
                           extra={"redirect_uri": ""})) == "invalid_grant"


def test_unknown_or_missing_code(client, rp):
    assert _error(exchange(client, rp, "inconnu", pkce()[0])) == "invalid_grant"
    response = client.post("/token", data={"grant_type": "authorization_code"}, headers=rp.basic())
    assert _error(response) == "invalid_request"


# --- item 2: PKCE at the token endpoint -----------------------------------------------------------------

def test_incorrect_pkce_verifier(client, rt, rp, person, session):
    request, result = sign_in(client, rt, rp, person)
    assert _error(exchange(client, rp, result["code"], pkce()[0])) == "invalid_grant"
    assert _error(exchange(client, rp, result["code"], None)) == "invalid_grant"
    assert _error(exchange(client, rp, result["code"], "short")) == "invalid_grant"
    # The refused attempts did not consume the code.
    assert exchange(client, rp, result["code"], request.verifier).status_code == 200
    reasons = [json.loads(e.details).get("reason") for e in session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "oidc:token:refused"))]
    assert {"pkce_verifier_mismatch", "pkce_verifier_missing"} <= set(reasons)


def test_verifier_for_a_code_without_challenge_is_refused(client, rt, rp, person, session):
    """Downgrade defence (RFC 9700 §4.8.2): such codes cannot be issued here; one in the table is never
    redeemable, with or without verifier."""
    request, result = sign_in(client, rt, rp, person)
    session.execute(update(AuthorizationCode).values(code_challenge=""))
    session.commit()
    assert _error(exchange(client, rp, result["code"], request.verifier)) == "invalid_grant"
    assert _error(exchange(client, rp, result["code"], None)) == "invalid_grant"


# --- client authentication ------------------------------------------------------------------------------

def test_client_secret_basic_post_and_wrong_secret(client, rt, rp, person, session):
    request, result = sign_in(client, rt, rp, person)
    response = client.post("/token", data={"grant_type": "authorization_code", "code": result["code"],
                                            "redirect_uri": rp.redirect_uri, "code_verifier": request.verifier},
                           headers=basic_auth(rp.client_id, "faux"))
    assert _error(response, 401) == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "oidc:client_auth:failed" in _tags(session)
    # The same secret in the form body is accepted too.
    assert exchange(client, rp, result["code"], request.verifier, auth="post").status_code == 200


def test_confidential_client_cannot_skip_authentication(client, rt, rp, person):
    request, result = sign_in(client, rt, rp, person)
    assert _error(exchange(client, rp, result["code"], request.verifier, auth="none"), 401) == "invalid_client"


def test_disabled_client_cannot_redeem(client, rt, rp, person, session):
    from hospiconnect.idp import clients

    request, result = sign_in(client, rt, rp, person)
    clients.disable(session, rp.client_id, actor="test")
    session.commit()
    assert _error(exchange(client, rp, result["code"], request.verifier), 401) == "invalid_client"


def test_public_client_with_pkce(client, rt, person, session):
    public = register(session, rt, name="Application mobile", auth_method="none",
                      redirect_uris=("http://127.0.0.1:8765/cb",))
    public.redirect_uri = "http://127.0.0.1:8765/cb"
    request, result = sign_in(client, rt, public, person)
    assert _error(exchange(client, public, result["code"], None, auth="none")) == "invalid_grant"
    response = exchange(client, public, result["code"], request.verifier, auth="none")
    assert response.status_code == 200 and "id_token" in response.get_json()


def _keyed_client(session, rt, alg="ES256"):
    key = ECKey.generate_key("P-256") if alg == "ES256" else RSAKey.generate_key(2048)
    key.ensure_kid()
    jwks = {"keys": [key.as_dict(private=False)]}
    return key, register(session, rt, name="Client à clé", auth_method="private_key_jwt", jwks=jwks)


def _assertion(key, client_id, *, alg="ES256", aud=ISSUER + "/token", jti=None, exp_in=60, **extra):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + exp_in,
              "jti": jti or secrets.token_urlsafe(8), **extra}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key)


def _exchange_with_assertion(client, rc, code, verifier, assertion):
    return client.post("/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rc.redirect_uri, "code_verifier": verifier,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_private_key_jwt(client, rt, person, session, alg):
    key, rc = _keyed_client(session, rt, alg)
    request, result = sign_in(client, rt, rc, person)
    assertion = _assertion(key, rc.client_id, alg=alg)
    assert _exchange_with_assertion(client, rc, result["code"], request.verifier, assertion).status_code == 200
    # The same assertion (same jti) is accepted once.
    request, result = sign_in(client, rt, rc, person)
    replay = _exchange_with_assertion(client, rc, result["code"], request.verifier, assertion)
    assert _error(replay, 400) == "invalid_client"
    # The issuer is an accepted audience as well.
    response = _exchange_with_assertion(client, rc, result["code"], request.verifier,
                                        _assertion(key, rc.client_id, alg=alg, aud=ISSUER))
    assert response.status_code == 200


def test_private_key_jwt_refusals(client, rt, person, session):
    key, rc = _keyed_client(session, rt)
    stranger = ECKey.generate_key("P-256")
    stranger.ensure_kid()
    request, result = sign_in(client, rt, rc, person)
    bad = [
        _assertion(key, rc.client_id, aud="https://ailleurs.example/token"),
        _assertion(key, rc.client_id, exp_in=-120),
        _assertion(key, rc.client_id, exp_in=3600),          # too long-lived
        _assertion(stranger, rc.client_id),                   # not the registered key
        _assertion(key, rc.client_id, iss="quelqu-un"),
        "pas.un.jwt", "e30.e30.", "x" * 9000,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",               # alg none
    ]
    for assertion in bad:
        response = _exchange_with_assertion(client, rc, result["code"], request.verifier, assertion)
        assert response.status_code in (400, 401), assertion
        assert response.get_json()["error"] == "invalid_client"
    # A secret client cannot authenticate with an assertion.
    other = register(session, rt, name="Client à secret")
    response = _exchange_with_assertion(client, other, "x", "y", _assertion(key, other.client_id))
    assert response.get_json()["error"] == "invalid_client"
    assert _exchange_with_assertion(client, rc, result["code"], request.verifier,
                                    _assertion(key, rc.client_id)).status_code == 200


def test_unsupported_grant_types(client, rp):
    for grant in ("password", "client_credentials", "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer", ""):
        response = client.post("/token", data={"grant_type": grant, "username": "a", "password": "b"},
                               headers=rp.basic())
        assert _error(response) in ("unsupported_grant_type", "invalid_request")
    assert client.get("/token").status_code == 405


def test_plain_http_issuer_outside_loopback_is_refused_cleanly(app_with, rp):
    _, client = app_with(issuer="http://idp.chu-exemple.fr")
    response = client.post("/token", data={"grant_type": "authorization_code", "code": "x"}, headers=rp.basic())
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
