"""Refresh tokens: rotation, family revocation on reuse, absolute lifetime, binding to the client, the
scope, the identity and the session (SECURITY.md items 6, 11 "refresh token used by another client",
19)."""

import datetime as dt
import json

import time_machine
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory import services as directory
from hospiconnect.idp.models import Token
from tests.oidc_helpers import id_token_claims, refresh, register, tokens_for

OFFLINE = "openid profile email offline_access"


def _userinfo(client, access_token):
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def _error(response):
    assert response.status_code == 400, response.get_data(as_text=True)
    return response.get_json()["error"]


def test_refresh_token_only_with_offline_access(client, rt, rp, person):
    assert "refresh_token" not in tokens_for(client, rt, rp, person, scope="openid profile")
    assert "refresh_token" in tokens_for(client, rt, rp, person, scope=OFFLINE)


def test_rotation_on_every_use(client, rt, rp, person, session):
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    response = refresh(client, rp, first["refresh_token"])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    second = response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    # A new ID token, same authentication facts, no nonce (Core §12.2).
    before, after = id_token_claims(rt, first["id_token"]), id_token_claims(rt, second["id_token"])
    for name in ("sub", "auth_time", "acr", "amr", "sid", "aud"):
        assert after[name] == before[name], name
    assert "nonce" not in after
    third = refresh(client, rp, second["refresh_token"]).get_json()
    rows = session.scalars(select(Token).where(Token.kind == "refresh").order_by(Token.id)).all()
    assert len({r.family_id for r in rows}) == 1
    assert [r.used_at is not None for r in rows] == [True, True, False]
    assert _userinfo(client, third["access_token"]).status_code == 200


def test_reuse_revokes_the_whole_family(client, rt, rp, person, session):
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    second = refresh(client, rp, first["refresh_token"]).get_json()
    # The old refresh token is presented again (stolen copy, or a bug): everything of the family dies.
    assert _error(refresh(client, rp, first["refresh_token"])) == "invalid_grant"
    assert _error(refresh(client, rp, second["refresh_token"])) == "invalid_grant"
    assert _userinfo(client, second["access_token"]).status_code == 401
    assert _userinfo(client, first["access_token"]).status_code == 401
    events = session.scalars(select(AuditEvent).where(AuditEvent.tag == "oidc:refresh:reused")).all()
    assert len(events) == 1 and json.loads(events[0].details)["tokens_revoked"] >= 2


def test_other_families_are_not_touched_by_a_reuse(client, rt, rp, person):
    one = tokens_for(client, rt, rp, person, scope=OFFLINE)
    two = tokens_for(client, rt, rp, person, scope=OFFLINE)
    refresh(client, rp, one["refresh_token"])
    refresh(client, rp, one["refresh_token"])  # reuse: family one revoked
    assert refresh(client, rp, two["refresh_token"]).status_code == 200


def test_refresh_token_used_by_another_client(client, rt, rp, person, session):
    other = register(session, rt, name="Autre application")
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    assert _error(refresh(client, other, first["refresh_token"])) == "invalid_grant"
    # Still usable by its own client (not consumed by the refused attempt).
    assert refresh(client, rp, first["refresh_token"]).status_code == 200


def test_scope_may_narrow_never_widen(client, rt, session, person):
    rc = register(session, rt, scopes="openid profile email organization offline_access")
    first = tokens_for(client, rt, rc, person, scope=OFFLINE)
    assert _error(refresh(client, rc, first["refresh_token"], scope="openid organization")) == "invalid_scope"
    narrow = refresh(client, rc, first["refresh_token"], scope="openid profile")
    assert narrow.status_code == 200
    body = narrow.get_json()
    assert body["scope"] == "openid profile"
    assert "email" not in _userinfo(client, body["access_token"]).get_json()
    # The new refresh token keeps the grant's scope.
    again = refresh(client, rc, body["refresh_token"]).get_json()
    assert again["scope"] == OFFLINE


def test_absolute_lifetime_of_the_family(app_with, session, person):
    runtime, client = app_with(refresh_token_hours=1)  # sessions still last 12 h
    rc = register(session, runtime)
    current = tokens_for(client, runtime, rc, person, scope=OFFLINE)["refresh_token"]
    start = dt.datetime.now(dt.timezone.utc)
    with time_machine.travel(start + dt.timedelta(minutes=25), tick=False):
        current = refresh(client, rc, current).get_json()["refresh_token"]
    with time_machine.travel(start + dt.timedelta(minutes=50), tick=False):
        response = refresh(client, rc, current)
        assert response.status_code == 200  # rotation does not extend the family...
        current = response.get_json()["refresh_token"]
    with time_machine.travel(start + dt.timedelta(minutes=61), tick=False):
        # ...which ends one hour after its first issue, though the session is alive (used 11 min ago).
        assert _error(refresh(client, rc, current)) == "invalid_grant"
    row = session.scalars(select(Token).where(Token.kind == "refresh").order_by(Token.id.desc())).first()
    assert row.family_expires_at - row.created_at < dt.timedelta(minutes=15)


def test_suspended_identity_stops_refresh_and_session_at_once(client, rt, rp, person, session):
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    identity = directory.get_identity(session, person.public_id)
    directory.suspend(session, identity, actor="test", reason="fin de contrat")
    session.commit()
    assert _error(refresh(client, rp, first["refresh_token"])) == "invalid_grant"
    assert _userinfo(client, first["access_token"]).status_code == 401
    # The browser's session is no longer usable either: a login is asked again.
    from tests.oidc_helpers import auth_request

    request = auth_request(rp, prompt="none")
    response = client.get("/authorize", query_string=request.params)
    assert "error=login_required" in response.headers["Location"]
    introspected = client.post("/introspect", data={"token": first["access_token"]}, headers=rp.basic())
    assert introspected.get_json() == {"active": False}


def test_ended_session_stops_refresh(client, rt, rp, person, session):
    from hospiconnect.idp import login_session
    from hospiconnect.idp.models import SsoSession

    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    sso = session.scalar(select(SsoSession))
    login_session.end(session, sso, reason="test", keys=rt.keys, settings=rt.settings)
    session.commit()
    assert _error(refresh(client, rp, first["refresh_token"])) == "invalid_grant"


def test_idle_session_stops_refresh(client, rt, rp, person):
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=31)):
        assert _error(refresh(client, rp, first["refresh_token"])) == "invalid_grant"


def test_refresh_keeps_the_session_active(client, rt, rp, person):
    first = tokens_for(client, rt, rp, person, scope=OFFLINE)
    start = dt.datetime.now(dt.timezone.utc)
    with time_machine.travel(start + dt.timedelta(minutes=20)):
        first = refresh(client, rp, first["refresh_token"]).get_json()
    with time_machine.travel(start + dt.timedelta(minutes=45)):
        assert refresh(client, rp, first["refresh_token"]).status_code == 200
