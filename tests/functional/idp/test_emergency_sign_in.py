"""Emergency access (bris de glace) at sign-in, and exceptions (dérogations) that spare a fresh sign-in its
planned second factor.

An emergency credential opens a session of its own — one factor, ``amr`` with ``emergency``, ``acr`` eidas1,
never longer than the credential — for the classes whose policy allows it; the person is told on a page before
going on; every use and refusal is journaled. CSRF protection stays on: forms are posted with their page's token.
"""

from __future__ import annotations

import datetime as dt
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select

from hospiconnect.audit import tags
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators.models import EmergencyCredential
from hospiconnect.authorizations import services as exceptions
from hospiconnect.db import utcnow
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from tests.factories import create_identity
from tests.functional.idp.test_login_pages import (
    PASSWORD,
    _with_password,
    alert_text,
    claims_for,
    csrf_of,
    enroll_totp,
    html_of,
    login,
    page,
    post,
    resume_to_client,
    start,
)
from tests.functional.idp.test_policy_exceptions import EXCEPTION_POLICY, JUSTIFICATION
from tests.functional.idp.test_policy_wiring import INSIDE, OUTSIDE, client_of, journal
from tests.oidc_helpers import auth_request, get_sso_cookie, query_of

WRONG = "Identifiant, mot de passe ou code d'accès d'urgence incorrect."
SHIPPED = load_policy(DEFAULT_POLICY_PATH)


@pytest.fixture()
def web(client):  # type: ignore[no-untyped-def]
    client.environ_base["REMOTE_ADDR"] = INSIDE
    return client


@pytest.fixture()
def nurse(session, rt):  # type: ignore[no-untyped-def]
    """A nurse with a password and an authenticator application (her phone, lost tonight)."""
    person = _with_password(session, rt, create_identity(session))
    enroll_totp(session, rt, person)
    return person


@pytest.fixture()
def officer(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="emergency_officer")


def issue(session, rt, person, officer, **extra):  # type: ignore[no-untyped-def]
    row, code = emergency.issue_emergency_credential(
        session, rt.keys, SHIPPED, identity=person, officer=officer, reason="Téléphone perdu pendant la garde",
        actor=f"identity:{officer.public_id}", **extra)
    session.commit()
    return row.public_id, code


def use_code(web, interaction_id, username, code, password=PASSWORD):  # type: ignore[no-untyped-def]
    return post(web, interaction_id, "/urgence", {"username": username, "password": password,
                                                  "emergency_code": code},
                token=csrf_of(html_of(page(web, interaction_id, "/urgence"))))


def alert_of(response) -> str:  # type: ignore[no-untyped-def]
    return unescape(alert_text(html_of(response)))


def continue_link(html: str) -> str:
    start_at = html.index('href="/authorize/resume/') + len('href="')
    return html[start_at:html.index('"', start_at)]


def credential(rt, public_id):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return s.scalar(select(EmergencyCredential).where(EmergencyCredential.public_id == public_id))


def live_sessions(rt, person):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return s.scalars(select(SsoSession).where(SsoSession.identity_id == person.id,
                                                  SsoSession.ended_at.is_(None))).all()


# --- emergency credentials ---------------------------------------------------------------------------------

def test_an_emergency_credential_opens_health_data_with_a_marked_one_factor_session(web, rt, session, health_rp,
                                                                                  nurse, officer):
    credential_id, code = issue(session, rt, nurse, officer)
    request, interaction_id = start(web, health_rp)
    assert "Accès d'urgence" in html_of(page(web, interaction_id))  # offered: health data allows it

    response = use_code(web, interaction_id, nurse.user_name.upper(), code.lower())
    assert response.status_code == 200, html_of(response)
    html = html_of(response)
    assert "Accès d'urgence ouvert" in html and "examiné" in html
    assert response.headers["Cache-Control"] == "no-store"
    claims = claims_for(web, rt, health_rp, request, query_of(
        web.get(continue_link(html)).headers["Location"]))
    assert claims["sub"] == nurse.public_id
    assert sorted(claims["amr"]) == ["emergency", "pwd"] and claims["acr"] == "eidas1"

    [sso] = live_sessions(rt, nurse)
    row = credential(rt, credential_id)
    assert sso.mfa_time is None and sso.acr == "eidas1" and sso.expires_at <= row.expires_at
    assert row.used_at is not None and row.used_from_ip == INSIDE
    [used] = journal(rt, tags.AUTHN_EMERGENCY_USED)
    assert used["credential"] == credential_id and used["subject"] == nurse.public_id
    completed = journal(rt, tags.AUTHN_INTERACTION_COMPLETED)[-1]
    assert completed["emergency_credential"] == credential_id and completed["acr"] == "eidas1"
    decided = journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]
    assert decided["kind"] == "allow" and "emergency_access" in decided["codes"]


def test_the_session_ends_with_the_credential(web, rt, session, health_rp, nurse, officer):
    _, code = issue(session, rt, nurse, officer, hours=1)
    _, interaction_id = start(web, health_rp)
    assert use_code(web, interaction_id, nurse.user_name, code).status_code == 200
    cookie = get_sso_cookie(web, rt)
    with rt.db.session() as s:
        assert login_session.current(s, rt.keys, rt.settings, cookie) is not None
        later = utcnow() + dt.timedelta(hours=1, minutes=1)
        assert login_session.current(s, rt.keys, rt.settings, cookie, now=later) is None
        s.commit()
    assert live_sessions(rt, nurse) == []


def test_a_code_is_used_once_and_wrong_input_changes_nothing(web, rt, session, health_rp, nurse, officer):
    credential_id, code = issue(session, rt, nurse, officer)
    _, interaction_id = start(web, health_rp)
    # Missing fields: told next to the fields, nothing counted.
    missing = post(web, interaction_id, "/urgence", {"username": "", "password": "", "emergency_code": ""},
                   token=csrf_of(html_of(page(web, interaction_id, "/urgence"))))
    assert missing.status_code == 400 and "Saisissez votre identifiant." in html_of(missing)
    # Wrong code, wrong password, no password for a person who has one, unknown person: one message.
    for username, password, typed in ((nurse.user_name, PASSWORD, "AAAA-BBBB-CCCC-DDDD-EEEE"),
                                      (nurse.user_name, "pas le bon mot de passe", code),
                                      (nurse.user_name, "", code),
                                      ("personne.inconnue", PASSWORD, code)):
        response = use_code(web, interaction_id, username, typed, password)
        assert response.status_code == 401, (username, typed)
        assert alert_of(response) == WRONG
    assert credential(rt, credential_id).used_at is None and live_sessions(rt, nurse) == []
    assert get_sso_cookie(web, rt) is None

    assert use_code(web, interaction_id, nurse.user_name, code).status_code == 200
    web.delete_cookie(login_session.cookie_name(rt.settings))  # another workstation
    _, again = start(web, health_rp)
    replay = use_code(web, again, nurse.user_name, code)
    assert replay.status_code == 401 and alert_of(replay) == WRONG
    reasons = [e["reason"] for e in journal(rt, tags.AUTHN_EMERGENCY_REFUSED)]
    assert reasons == ["wrong", "password_missing", "reused"]  # the password is checked first: a wrong one never reaches the code
    assert len(journal(rt, tags.AUTHN_PASSWORD_FAILURE)) == 2


def test_outside_the_credentials_networks_the_code_stays_usable(web, rt, session, health_rp, nurse, officer):
    credential_id, code = issue(session, rt, nurse, officer)
    _, interaction_id = start(web, health_rp)
    web.environ_base["REMOTE_ADDR"] = OUTSIDE
    response = use_code(web, interaction_id, nurse.user_name, code)
    assert response.status_code == 403
    assert "réseau de l'établissement" in alert_of(response)
    assert credential(rt, credential_id).used_at is None
    web.environ_base["REMOTE_ADDR"] = INSIDE
    assert use_code(web, interaction_id, nurse.user_name, code).status_code == 200


def test_an_emergency_session_does_not_open_a_class_without_emergency_access(web, rt, session, health_rp, rp,
                                                                           nurse, officer):
    # The standard class (intranet, mail) does not allow emergency access in the shipped policy: its sign-in
    # page does not offer it…
    _, standard_interaction = start(web, rp)
    assert "Accès d'urgence" not in html_of(page(web, standard_interaction))
    _, code = issue(session, rt, nurse, officer)
    _, interaction_id = start(web, health_rp)
    assert use_code(web, interaction_id, nurse.user_name, code).status_code == 200
    # … and an emergency session does not reach it: the policy's refusal, sent back to the application.
    request = auth_request(rp)
    response = web.get("/authorize", query_string=request.params)
    result = query_of(response.headers["Location"])
    assert result["error"] == "access_denied" and "emergency_not_allowed" in result["error_description"]
    decided = journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]
    assert decided["kind"] == "deny" and "emergency_not_allowed" in decided["codes"]


def test_an_earlier_two_factor_session_is_ended_not_inherited(web, rt, session, health_rp, nurse, officer):
    # The nurse signed in with two factors earlier in this browser…
    with rt.db.session() as s:
        _sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=nurse.id,
                                          amr=["pwd", "otp", "mfa"], acr="eidas2", mfa=True, existing=None,
                                          client_ip=INSIDE, user_agent="test")
        s.commit()
    web.set_cookie(login_session.cookie_name(rt.settings), cookie)
    # … then uses an emergency code (prompt=login: she must sign in again).
    _, code = issue(session, rt, nurse, officer)
    _, interaction_id = start(web, health_rp, prompt="login")
    assert use_code(web, interaction_id, nurse.user_name, code).status_code == 200
    [sso] = live_sessions(rt, nurse)
    assert "mfa" not in sso.amr and sso.mfa_time is None and "emergency" in sso.amr


def test_a_person_without_password_uses_the_code_alone(web, rt, session, health_rp, officer):
    person = create_identity(session)
    enroll_totp(session, rt, person)
    _, code = issue(session, rt, person, officer)
    request, interaction_id = start(web, health_rp)
    response = post(web, interaction_id, "/urgence", {"username": person.user_name, "password": "",
                                                      "emergency_code": code},
                    token=csrf_of(html_of(page(web, interaction_id, "/urgence"))))
    assert response.status_code == 200, html_of(response)
    claims = claims_for(web, rt, health_rp, request, query_of(
        web.get(continue_link(html_of(response))).headers["Location"]))
    assert claims["amr"] == ["emergency"]


def test_the_emergency_form_needs_its_csrf_token(web, rt, session, health_rp, nurse, officer):
    credential_id, code = issue(session, rt, nurse, officer)
    _, interaction_id = start(web, health_rp)
    response = web.post(f"/connexion/{interaction_id}/urgence",
                        data={"username": nurse.user_name, "password": PASSWORD, "emergency_code": code})
    assert response.status_code == 400
    assert credential(rt, credential_id).used_at is None


# --- exceptions at a fresh sign-in ------------------------------------------------------------------------------

@pytest.fixture()
def exception_app(app_with, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "politique.yaml"
    path.write_text(EXCEPTION_POLICY, encoding="utf-8")
    runtime, web = app_with(policy_file=path, policy_check_seconds=0)
    web.environ_base["REMOTE_ADDR"] = INSIDE
    return runtime, web, load_policy(path)


def test_a_one_factor_exception_spares_a_fresh_sign_in_its_second_factor(exception_app, rt, session, nurse):
    _, web, policy = exception_app
    admin = client_of(session, rt, "administration", "Gestion administrative")
    # Without an exception: the password leads to the second factor.
    _, interaction_id = start(web, admin)
    first = login(web, interaction_id, nurse.user_name)
    assert first.status_code == 303 and first.headers["Location"] == f"/connexion/{interaction_id}"

    row = exceptions.grant_exception(session, policy, app_class="administration", identity=nurse,
                                     relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                                     ends_at=utcnow() + dt.timedelta(days=7), actor="rssi")
    session.commit()
    web.delete_cookie(login_session.cookie_name(rt.settings))
    request, interaction_id = start(web, admin)
    assert "second facteur" in html_of(page(web, interaction_id))  # planned before anyone is known
    claims = claims_for(web, rt, admin, request, resume_to_client(web, login(web, interaction_id,
                                                                              nurse.user_name)))
    assert claims["amr"] == ["pwd"]
    [waived] = journal(rt, tags.AUTHN_INTERACTION_MFA_WAIVED)
    assert waived["exceptions"] == [row.public_id] and waived["subject"] == nurse.public_id
    [used] = journal(rt, tags.POLICY_EXCEPTION_USED)
    assert used["exception"] == row.public_id


def test_an_exception_for_someone_else_spares_nothing(exception_app, rt, session, nurse):
    _, web, policy = exception_app
    other = create_identity(session)
    exceptions.grant_exception(session, policy, app_class="administration", identity=other,
                               relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                               ends_at=utcnow() + dt.timedelta(days=7), actor="rssi")
    session.commit()
    admin = client_of(session, rt, "administration", "Gestion administrative")
    _, interaction_id = start(web, admin)
    response = login(web, interaction_id, nurse.user_name)
    assert response.headers["Location"] == f"/connexion/{interaction_id}"
    assert journal(rt, tags.AUTHN_INTERACTION_MFA_WAIVED) == []



def test_an_emergency_session_opens_no_officer_page(web, rt, session, health_rp, officer):
    # Even a registration officer, an on-duty officer or an RSSI signed in by emergency access is refused.
    agent = _with_password(session, rt, create_identity(session, roles="enrollment_officer,rssi,emergency_officer"))
    _, code = issue(session, rt, agent, officer)
    _, interaction_id = start(web, health_rp)
    assert use_code(web, interaction_id, agent.user_name, code).status_code == 200
    for path in ("/guichet", "/securite", "/securite/acces-urgence", "/bris-de-glace"):
        response = web.get(path)
        assert response.status_code == 403, path
        assert "accès d'urgence" in unescape(html_of(response)), path


def test_repeated_wrong_codes_are_throttled_with_a_wait(web, rt, session, health_rp, nurse, officer):
    credential_id, _code = issue(session, rt, nurse, officer)
    _, interaction_id = start(web, health_rp)
    statuses = []
    for _ in range(8):
        response = use_code(web, interaction_id, nurse.user_name, "AAAA-BBBB-CCCC-DDDD-EEEE")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    assert alert_of(response).startswith("Trop de tentatives : réessayez dans")
    assert int(response.headers["Retry-After"]) >= 1
    assert credential(rt, credential_id).used_at is None and live_sessions(rt, nurse) == []
