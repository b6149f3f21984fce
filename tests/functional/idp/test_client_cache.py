"""Client authentication at the token endpoint uses registrations kept at most
:data:`~hospiconnect.idp.clients.CLIENT_CACHE_SECONDS` (hospiconnect.idp.clients.cached_client): a change made
by this process applies at once, a change made by another process within that delay."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.orm import object_session

from hospiconnect.idp import clients, oidc
from tests.oidc_helpers import basic_auth, jwt_header, refresh, tokens_for

OFFLINE = "openid profile offline_access"


@pytest.fixture()
def clock(monkeypatch):
    """The cache's clock, moved by hand (the cache is emptied first: what it kept was timed by the real one)."""
    now = [1000.0]
    monkeypatch.setattr(clients, "_clock", lambda: now[0])
    clients.forget_clients()
    return now


def _refresh_with(client, rp, secret, refresh_token):  # type: ignore[no-untyped-def]
    return client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                       headers=basic_auth(rp.client_id, secret))


def test_a_secret_rotated_by_this_process_applies_at_once(client, rt, rp, person, clock):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)  # the registration is now kept
    with rt.db.session() as s:
        new_secret = clients.rotate_secret(s, rt.keys, rp.client_id, actor="test")
    old = _refresh_with(client, rp, rp.secret, body["refresh_token"])
    assert old.status_code == 401 and old.get_json()["error"] == "invalid_client"
    assert _refresh_with(client, rp, new_secret, body["refresh_token"]).status_code == 200


def test_a_client_disabled_by_this_process_is_refused_at_once(client, rt, rp, person, clock):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    with rt.db.session() as s:
        clients.disable(s, rp.client_id, actor="test")
    assert refresh(client, rp, body["refresh_token"]).get_json()["error"] == "invalid_client"


def test_a_change_by_an_update_statement_of_this_process_applies_at_once(client, rt, rp, person, clock):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    assert jwt_header(body["id_token"])["alg"] == "ES256"
    with rt.db.session() as s:
        oidc.set_id_token_alg(s, rp.client_id, "RS256")  # an UPDATE statement, not a change of a loaded row
    response = refresh(client, rp, body["refresh_token"])
    assert response.status_code == 200 and jwt_header(response.get_json()["id_token"])["alg"] == "RS256"


def test_a_client_disabled_by_another_process_is_refused_within_the_delay(client, rt, rp, person, clock):
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    second = tokens_for(client, rt, rp, person, scope=OFFLINE)
    # Another process writes: no ORM event of this one sees it.
    with rt.db.engine.begin() as conn:
        conn.execute(text("UPDATE oidc_clients SET disabled_at = :now WHERE client_id = :id"),
                     {"now": dt.datetime.now(dt.timezone.utc), "id": rp.client_id})
    clock[0] += clients.CLIENT_CACHE_SECONDS / 2
    # Still within the delay: the registration read before the change authenticates the client (its tokens
    # were revoked by the disabling process in the same transaction; here they were not, to tell the cases apart).
    assert refresh(client, rp, first["refresh_token"]).status_code == 200
    clock[0] += clients.CLIENT_CACHE_SECONDS
    refused = refresh(client, rp, second["refresh_token"])
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"


def test_unknown_clients_are_not_kept(client, rt, session, clock):
    assert clients.cached_client(session, "cree-ailleurs") is None
    with rt.db.engine.begin() as conn:
        conn.execute(text("INSERT INTO oidc_clients (client_id, name, sensitivity, token_endpoint_auth_method, "
                          "redirect_uris_json, post_logout_redirect_uris_json, scopes, created_at) VALUES "
                          "('cree-ailleurs', 'Ailleurs', 'standard', 'none', '[]', '[]', 'openid', :now)"),
                     {"now": dt.datetime.now(dt.timezone.utc)})
    found = clients.cached_client(session, "cree-ailleurs")
    assert found is not None and found.name == "Ailleurs"


def test_the_kept_copy_belongs_to_no_session(rt, rp, session, clock):
    kept = clients.cached_client(session, rp.client_id)
    assert kept is not None and object_session(kept) is None
    assert kept.client_id == rp.client_id and clients.cached_client(session, rp.client_id) is kept
    assert not session.new and not session.dirty
