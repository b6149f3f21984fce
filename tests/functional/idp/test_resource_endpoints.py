"""Userinfo, introspection and revocation (SECURITY.md item 9)."""

import datetime as dt

import time_machine
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp.models import Token
from tests.oidc_helpers import ISSUER, basic_auth, register, tokens_for

OFFLINE = "openid profile email offline_access"


# --- userinfo (Core §5.3, RFC 6750 §2) ------------------------------------------------------------------

def test_userinfo_get_and_post_with_bearer_header(client, rt, rp, person):
    body = tokens_for(client, rt, rp, person, scope="openid profile email")
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    for response in (client.get("/userinfo", headers=headers), client.post("/userinfo", headers=headers),
                     client.get("/userinfo", headers={"Authorization": f"bearer {body['access_token']}"})):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        claims = response.get_json()
        assert claims["sub"] == person.public_id and claims["email"] == person.email
        assert claims["preferred_username"] == person.user_name
        assert "rpps" not in claims and "roles" not in claims  # not in the scope


def test_userinfo_access_token_in_post_body(client, rt, rp, person):
    token = tokens_for(client, rt, rp, person)["access_token"]
    assert client.post("/userinfo", data={"access_token": token}).status_code == 200
    # Not in the query string, and not twice.
    assert client.get("/userinfo", query_string={"access_token": token}).status_code == 401
    both = client.post("/userinfo", data={"access_token": token}, headers={"Authorization": f"Bearer {token}"})
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_request"


def test_userinfo_refusals(client, rt, rp, person, session):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    missing = client.get("/userinfo")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    for value in ("inconnu", body["refresh_token"], "x" * 5000):
        response = client.get("/userinfo", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert response.get_json()["error"] == "invalid_token"
    assert client.get("/userinfo", headers={"Authorization": "Basic abc"}).status_code == 400
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=6)):
        expired = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.tag == "oidc:userinfo:refused"))


# --- introspection (RFC 7662) ---------------------------------------------------------------------------

def test_introspection_requires_client_authentication(client, rt, rp, person):
    token = tokens_for(client, rt, rp, person)["access_token"]
    for headers, data in (({}, {"token": token}), ({}, {"token": token, "client_id": rp.client_id}),
                          (basic_auth(rp.client_id, "faux"), {"token": token})):
        response = client.post("/introspect", data=data, headers=headers)
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_introspection_of_active_and_inactive_tokens(client, rt, rp, person, session):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    response = client.post("/introspect", data={"token": body["access_token"]}, headers=rp.basic())
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    info = response.get_json()
    assert info["active"] is True and info["client_id"] == rp.client_id and info["sub"] == person.public_id
    assert info["scope"] == OFFLINE and info["iss"] == ISSUER and info["token_type"] == "Bearer"
    assert info["exp"] > info["iat"] and info["acr"] == "eidas1" and info["amr"] == ["pwd"] and info["sid"]
    refresh_info = client.post("/introspect", data={"token": body["refresh_token"],
                                                    "token_type_hint": "refresh_token"}, headers=rp.basic())
    assert refresh_info.get_json()["token_type"] == "refresh_token"
    for value in ("inconnu", "x" * 5000):
        assert client.post("/introspect", data={"token": value},
                           headers=rp.basic()).get_json() == {"active": False}
    # An unknown token_type_hint is ignored (RFC 7009 §2.1 / RFC 7662 §2.1), not a 401.
    assert client.post("/introspect", data={"token": body["access_token"], "token_type_hint": "bizarre"},
                       headers=rp.basic()).get_json()["active"] is True
    missing = client.post("/introspect", data={}, headers=rp.basic())
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=6)):
        assert client.post("/introspect", data={"token": body["access_token"]},
                           headers=rp.basic()).get_json() == {"active": False}


def test_introspection_by_another_client_says_inactive(client, rt, rp, person, session):
    other = register(session, rt, name="Serveur de ressources")
    token = tokens_for(client, rt, rp, person)["access_token"]
    assert client.post("/introspect", data={"token": token}, headers=other.basic()).get_json() == {"active": False}


# --- revocation (RFC 7009) ------------------------------------------------------------------------------

def test_revocation_requires_client_authentication(client, rt, rp, person):
    token = tokens_for(client, rt, rp, person)["access_token"]
    response = client.post("/revoke", data={"token": token, "client_id": rp.client_id})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_revoking_an_access_token(client, rt, rp, person, session):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    response = client.post("/revoke", data={"token": body["access_token"]}, headers=rp.basic())
    assert response.status_code == 200
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    # The refresh token lives on.
    assert client.post("/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                       headers=rp.basic()).status_code == 200
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.tag == "oidc:token:revoked"))


def test_revoking_a_refresh_token_revokes_its_family(client, rt, rp, person, session):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    assert client.post("/revoke", data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
                       headers=rp.basic()).status_code == 200
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    refused = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                          headers=rp.basic())
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert all(t.revoked_at is not None for t in session.scalars(select(Token)))


def test_revocation_of_unknown_or_foreign_tokens_answers_200_and_changes_nothing(client, rt, rp, person, session):
    other = register(session, rt, name="Autre application")
    body = tokens_for(client, rt, rp, person)
    assert client.post("/revoke", data={"token": "inconnu"}, headers=rp.basic()).status_code == 200
    assert client.post("/revoke", data={"token": body["access_token"]}, headers=other.basic()).status_code == 200
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200
    missing = client.post("/revoke", data={}, headers=rp.basic())
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"
