"""SSO sessions and interactions (SECURITY.md item 19, and the services the login pages call)."""

import dataclasses
import datetime as dt

import pytest
import time_machine
from flask import Response
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.idp import interactions, login_session
from hospiconnect.idp.models import BackchannelDelivery, Interaction, SsoSession, Token
from tests.factories import create_identity
from tests.oidc_helpers import (
    auth_request,
    complete_interaction,
    get_sso_cookie,
    interaction_id_of,
    query_of,
    register,
    resume,
    sign_in,
    tokens_for,
)


def _tags(session):
    return [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def _open(session, rt, identity, *, existing=None, amr=("pwd",), mfa=False):
    sso, cookie = login_session.open(session, rt.keys, rt.settings, identity_id=identity.id, amr=list(amr),
                                     acr="eidas1", mfa=mfa, existing=existing, client_ip="10.0.0.1",
                                     user_agent="pytest")
    session.commit()
    return sso, cookie


# --- the cookie -----------------------------------------------------------------------------------------

def test_cookie_attributes_in_production_and_elsewhere(app, settings):
    production = dataclasses.replace(settings, env="production")
    with app.test_request_context():
        response = Response()
        login_session.set_cookie(response, production, "valeur")
        header = response.headers["Set-Cookie"]
        assert header.startswith("__Host-hc_sso=valeur")
        for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert attribute in header
        assert "Domain" not in header and "Max-Age" not in header
        response = Response()
        login_session.set_cookie(response, settings, "valeur")
        header = response.headers["Set-Cookie"]
        assert header.startswith("hc_sso=valeur") and "HttpOnly" in header and "SameSite=Lax" in header
        assert "Secure" not in header


def test_only_the_keyed_hash_is_stored_and_the_value_is_256_bits(session, rt, person):
    sso, cookie = _open(session, rt, person)
    assert len(cookie) >= 43
    assert sso.id_hash == rt.keys.keyed_hash(cookie) and cookie not in sso.id_hash
    assert login_session.current(session, rt.keys, rt.settings, cookie).id == sso.id
    assert login_session.current(session, rt.keys, rt.settings, "inconnu") is None
    assert login_session.current(session, rt.keys, rt.settings, None) is None
    assert login_session.current(session, rt.keys, rt.settings, "x" * 1000) is None


# --- new identifier at every (re-)authentication ---------------------------------------------------------

def test_new_cookie_value_at_every_authentication(session, rt, person):
    sso, first = _open(session, rt, person)
    again, second = _open(session, rt, person, existing=sso)
    assert second != first and again.id == sso.id and again.sid == sso.sid
    assert login_session.current(session, rt.keys, rt.settings, first) is None  # the old value is dead
    assert login_session.current(session, rt.keys, rt.settings, second).id == sso.id
    raised, third = _open(session, rt, person, existing=again, amr=("mfa", "otp", "pwd"), mfa=True)
    assert raised.mfa_time is not None and "mfa" in raised.amr and third not in (first, second)
    assert {"authn:session:opened", "authn:session:renewed", "authn:session:raised"} <= set(_tags(session))


def test_another_person_ends_the_previous_session(session, rt, person):
    other = create_identity(session)
    sso, _ = _open(session, rt, person)
    new, cookie = _open(session, rt, other, existing=sso)
    assert new.id != sso.id and new.sid != sso.sid
    session.refresh(sso)
    assert sso.ended_at is not None and sso.end_reason == "other_person"


# --- lifetimes ------------------------------------------------------------------------------------------

def test_idle_timeout_ends_the_session(session, rt, person):
    sso, cookie = _open(session, rt, person)
    start = utcnow()
    assert login_session.current(session, rt.keys, rt.settings, cookie, now=start + dt.timedelta(minutes=29))
    # Activity moved last_seen_at: 29 more minutes are fine, 31 are not.
    assert login_session.current(session, rt.keys, rt.settings, cookie, now=start + dt.timedelta(minutes=58))
    assert login_session.current(session, rt.keys, rt.settings, cookie, now=start + dt.timedelta(minutes=90)) is None
    session.commit()
    session.refresh(sso)
    assert sso.ended_at is not None and sso.end_reason == "idle_timeout"


def test_absolute_lifetime_ends_the_session(session, rt, person):
    sso, cookie = _open(session, rt, person)
    start = utcnow()
    for minutes in range(20, 12 * 60, 20):  # active every 20 minutes
        assert login_session.current(session, rt.keys, rt.settings, cookie,
                                     now=start + dt.timedelta(minutes=minutes)) is not None
    assert login_session.current(session, rt.keys, rt.settings, cookie,
                                 now=start + dt.timedelta(hours=12, minutes=1)) is None
    session.commit()
    session.refresh(sso)
    assert sso.end_reason == "absolute_timeout"


def test_suspended_identity_has_no_session(session, rt, person):
    sso, cookie = _open(session, rt, person)
    directory.suspend(session, directory.get_identity(session, person.public_id), actor="test", reason="test")
    session.commit()
    assert login_session.current(session, rt.keys, rt.settings, cookie) is None
    session.refresh(sso)
    assert sso.end_reason == "identity_inactive"


# --- ending ---------------------------------------------------------------------------------------------

def test_end_revokes_tokens_and_queues_backchannel_logout_once(client, rt, session, person):
    rc = register(session, rt, backchannel_logout_uri="https://rp.chu-exemple.fr/backchannel")
    body = tokens_for(client, rt, rc, person, scope="openid offline_access")
    sso = session.scalar(select(SsoSession))
    assert login_session.end(session, sso, reason="test", keys=rt.keys, settings=rt.settings) is True
    assert login_session.end(session, sso, reason="test", keys=rt.keys, settings=rt.settings) is False
    session.commit()
    assert all(t.revoked_at is not None for t in session.scalars(select(Token)))
    assert len(session.scalars(select(BackchannelDelivery)).all()) == 1
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    assert "authn:session:ended" in _tags(session)


def test_end_all_for_identity_and_the_periodic_job(session, rt, person):
    first, _ = _open(session, rt, person)
    second, _ = _open(session, rt, person)  # another browser
    other = create_identity(session)
    kept, _ = _open(session, rt, other)
    assert login_session.end_all_for_identity(session, person.id, reason="mie_removed", actor="admin",
                                              keys=rt.keys, settings=rt.settings) == 2
    assert login_session.end_all_for_identity(session, person.id, reason="again", keys=rt.keys,
                                              settings=rt.settings) == 0
    session.commit()
    assert kept.ended_at is None
    later = utcnow() + dt.timedelta(minutes=31)
    assert login_session.end_expired(session, rt.keys, rt.settings, now=later) == 1
    assert login_session.end_expired(session, rt.keys, rt.settings, now=later) == 0  # safe to run twice
    session.commit()


def test_a_live_session_gives_sso_to_another_client(client, rt, rp, session, person):
    other = register(session, rt, name="Agenda")
    sign_in(client, rt, rp, person)
    request = auth_request(other)
    response = client.get("/authorize", query_string=request.params)
    assert "code=" in response.headers["Location"]


# --- interactions ---------------------------------------------------------------------------------------

def _interaction(client, rp):
    request = auth_request(rp)
    return request, interaction_id_of(client.get("/authorize", query_string=request.params))


def test_resume_is_single_use(client, rt, rp, person, session):
    request, interaction_id = _interaction(client, rp)
    complete_interaction(client, rt, interaction_id, person.id)
    assert "code" in query_of(resume(client, interaction_id).headers["Location"])
    replay = resume(client, interaction_id)
    assert replay.status_code == 400 and "Location" not in replay.headers
    assert "déjà été utilisée" in replay.get_data(as_text=True)
    assert "authn:interaction:replayed" in _tags(session)
    with pytest.raises(interactions.InteractionExpired):
        interactions.get_interaction(session, interaction_id)


def test_resume_before_completion_goes_back_to_the_page(client, rp):
    _, interaction_id = _interaction(client, rp)
    response = resume(client, interaction_id)
    assert response.status_code == 302 and response.headers["Location"] == f"/connexion/{interaction_id}"
    assert resume(client, "inconnue").status_code == 400


def test_expired_interaction(client, rt, rp, person, session):
    _, interaction_id = _interaction(client, rp)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=16)):
        with pytest.raises(interactions.InteractionExpired):
            interactions.get_interaction(session, interaction_id)
        page = client.get(f"/connexion/{interaction_id}")
        assert page.status_code == 400 and "expiré" in page.get_data(as_text=True)
        assert resume(client, interaction_id).status_code == 400
    with pytest.raises(interactions.InteractionNotFound):
        interactions.get_interaction(session, "inconnue")


def test_interaction_steps_out_of_order(client, rt, rp, person, session):
    _, interaction_id = _interaction(client, rp)
    interaction = interactions.get_interaction(session, interaction_id)
    with pytest.raises(interactions.InteractionStateError):
        interactions.record_second_factor(session, interaction, ["otp"])  # who?
    with pytest.raises(interactions.InteractionStateError):
        interactions.complete(session, interaction, client_ip=None, user_agent=None, existing_sso=None,
                              keys=rt.keys, settings=rt.settings)
    with pytest.raises(ValueError):
        interactions.record_login(session, interaction, person.id, ["mot-de-passe"])
    interactions.record_login(session, interaction, person.id, ["pwd"])
    with pytest.raises(interactions.InteractionStateError):
        interactions.record_second_factor(session, interaction, ["pwd"])  # not a second factor
    sso, cookie = interactions.complete(session, interaction, client_ip=None, user_agent=None, existing_sso=None,
                                        keys=rt.keys, settings=rt.settings)
    with pytest.raises(interactions.InteractionExpired):
        interactions.complete(session, interaction, client_ip=None, user_agent=None, existing_sso=sso,
                              keys=rt.keys, settings=rt.settings)
    session.commit()


def test_inactive_identity_cannot_sign_in(client, rt, rp, session, person):
    _, interaction_id = _interaction(client, rp)
    directory.suspend(session, directory.get_identity(session, person.public_id), actor="test", reason="test")
    session.commit()
    interaction = interactions.get_interaction(session, interaction_id)
    with pytest.raises(interactions.LoginRefused) as caught:
        interactions.record_login(session, interaction, person.id, ["pwd"])
    assert caught.value.message == "Identifiant ou mot de passe incorrect."


def test_login_hint_and_describe(client, rt, rp, session):
    request = auth_request(rp, login_hint="cmartin")
    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    interaction = interactions.get_interaction(session, interaction_id)
    view = interactions.describe(session, interaction)
    assert view.login_hint == "cmartin" and view.client_name == "Messagerie" and not view.health_data
    assert view.identity_id is None and not view.needs_second_factor and not view.lacks_second_factor
    assert view.resume_url == f"/authorize/resume/{interaction_id}"
    assert view.messages == ("Identifiez-vous pour accéder à l'application.",)


def test_completing_with_a_cookie_of_someone_else_does_not_help_the_step_up(client, rt, rp, health_rp,
                                                                            session, person_mfa):
    other = create_identity(session)
    sign_in(client, rt, rp, person_mfa)
    request = auth_request(health_rp)
    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    interaction = interactions.get_interaction(session, interaction_id)
    interactions.record_second_factor(session, interaction, ["otp"])
    foreign, _ = _open(session, rt, other)
    with pytest.raises(interactions.InteractionStateError):
        interactions.complete(session, interaction, client_ip=None, user_agent=None, existing_sso=foreign,
                              keys=rt.keys, settings=rt.settings)


def test_interaction_login_done_by_another_browser_session_does_not_count(client, rt, rp, session, person):
    """A login recorded in an interaction counts only for the session it opened."""
    other = create_identity(session)
    request = auth_request(rp, prompt="login")
    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    complete_interaction(client, rt, interaction_id, person.id)
    # Meanwhile someone else signs in in this browser (another tab).
    sso = login_session.current(session, rt.keys, rt.settings, get_sso_cookie(client, rt))
    _, cookie = _open(session, rt, other, existing=sso)
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)
    response = resume(client, interaction_id)
    assert response.headers["Location"].startswith("/connexion/")  # prompt=login asked again
    with rt.db.session() as s:
        assert s.get(Interaction, interaction_id_of(response)).reasons == ["login_prompt"]
