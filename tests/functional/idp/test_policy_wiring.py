"""The provider asks the access policy at every authorization: it steps up, refuses or allows as the file says.

Each test writes its own policy file and builds an application on it (``policy_file=``, the file checked before
every request). The client address is the test client's ``REMOTE_ADDR`` (hospiconnect.appctx.client_ip); "now"
is moved with time_machine, which the provider, the sessions and the policy all read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select, update

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import webauthn
from hospiconnect.idp import interactions
from hospiconnect.idp.models import Client, Interaction
from tests.factories import create_identity
from tests.oidc_helpers import (
    ISSUER,
    REDIRECT_URI,
    add_second_factor,
    auth_request,
    complete_interaction,
    exchange,
    id_token_claims,
    interaction_id_of,
    query_of,
    register,
    resume,
    sign_in,
)
from tests.softauthn import SoftAuthenticator

POLICY = """\
version: 1
name: "Politique de test du câblage"
timezone: Europe/Paris
networks:
  internal: [10.0.0.0/8]
mie_types:
  password: {status: not_homologated, factors: 1}
  totp: {status: homologated, factors: 2, decision_date: 2025-01-01, decision_reference: "DEC-T"}
  webauthn: {status: homologated, factors: 2, max_acr: eidas3, decision_date: 2025-01-01,
             decision_reference: "DEC-W"}
classes:
  health-data: {min_acr: eidas2, allowed_mie_types: [password, totp, webauthn], accept_not_homologated: true}
  standard: {min_acr: eidas1, allowed_mie_types: [password, totp, webauthn], accept_not_homologated: true}
  high: {label: Niveau élevé, min_acr: eidas3, allowed_mie_types: [password, totp, webauthn],
         accept_not_homologated: true}
  console: {label: Consoles, min_acr: eidas1, allowed_mie_types: [password, totp, webauthn], networks: [internal],
            accept_not_homologated: true}
  mail: {label: Messagerie, min_acr: eidas1, allowed_mie_types: [password, totp, webauthn],
         accept_not_homologated: true}
populations:
  interim: {label: Intérimaires}
rules:
  - id: messagerie-deux-facteurs-2027
    description: Deux facteurs pour la messagerie à partir de 2027
    from: 2027-01-01
    applies_to: {class: mail}
    set: {min_acr: eidas2}
  - id: consoles-sans-interimaires
    description: Les intérimaires n'accèdent pas aux consoles
    applies_to: {class: console, population: interim}
    set: {networks: none}
"""
INSIDE, OUTSIDE = "10.1.2.3", "203.0.113.9"
PASSWORD = "correct horse battery staple"


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "politique.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


@pytest.fixture()
def web(app_with, policy_file):
    """A test client of an application on ``policy_file``, checked before every request, from inside."""
    runtime, test_client = app_with(policy_file=policy_file, policy_check_seconds=0)
    test_client.environ_base["REMOTE_ADDR"] = INSIDE
    return test_client


def client_of(session, rt, app_class: str, name: str = "Application"):
    """Register a client of ``app_class`` (a class of the test policy, stored as is)."""
    rc = register(session, rt, name=name)
    session.execute(update(Client).where(Client.id == rc.row_id).values(sensitivity=app_class))
    session.commit()
    return rc


def journal(rt, tag: str) -> list[dict]:
    with rt.db.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)).all()
        return [{"outcome": r.outcome, "subject": r.subject, **json.loads(r.details)} for r in rows]


def authorize(test_client, rc, **extra):
    request = auth_request(rc, **extra)
    return request, test_client.get("/authorize", query_string=request.params)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'data-csrf-token="([^"]+)"', html)
    assert found, html
    return found.group(1)


# --- step-up to the level of the class ---------------------------------------------------------------------

def test_eidas3_class_steps_a_totp_session_up_to_a_security_key(web, rt, session):
    person = create_identity(session)
    add_second_factor(session, person)  # TOTP, issued after a face-to-face check
    key = SoftAuthenticator(user_verification=True)
    challenge_id, options = webauthn.begin_registration(session, person, rt.settings, require_uv=True)
    session.commit()
    webauthn.complete_registration(session, person, rt.settings, challenge_id, key.create(options), label="Clé",
                                   actor="test")
    session.commit()
    high = client_of(session, rt, "high")
    request, response = authorize(web, high)
    first = interaction_id_of(response)
    with rt.db.session() as s:
        started = s.get(Interaction, first)
        # Whoever signs in must bring a second factor, and only a key reaches eidas3.
        assert started.reasons == ["no_session", "mfa_required"] and interactions.needs_second_factor(started)
        assert interactions.step_up_types(started) == {"webauthn"}
    complete_interaction(web, rt, first, person.id, second_factor=["otp"])  # a TOTP session: eidas2
    second = interaction_id_of(resume(web, first))
    with rt.db.session() as s:
        step_up = s.get(Interaction, second)
        assert step_up.reasons == ["essential_acr"] and interactions.required_acr(step_up) == "eidas3"
    html = web.get(f"/connexion/{second}").get_data(as_text=True)
    assert 'data-mode="second_factor"' in html and 'autocomplete="one-time-code"' not in html  # the key only
    token = csrf_of(html)
    public_key = web.post(f"/connexion/{second}/webauthn/options", json={"mode": "second_factor"},
                          headers={"X-CSRFToken": token}).get_json()["publicKey"]
    assert public_key["userVerification"] == "required"
    answer = web.post(f"/connexion/{second}/webauthn", json=key.get(public_key), headers={"X-CSRFToken": token})
    assert answer.status_code == 200, answer.get_json()
    result = query_of(web.get(answer.get_json()["location"]).headers["Location"])
    claims = id_token_claims(rt, exchange(web, high, result["code"], request.verifier).get_json()["id_token"])
    assert claims["acr"] == "eidas3" and {"pwd", "otp", "hwk", "pin", "mfa"} <= set(claims["amr"])
    decided = journal(rt, tags.AUTHZ_POLICY_DECIDED)
    assert [(d["kind"], d["outcome"]) for d in decided] == [("step_up", "info"), ("step_up", "info"),
                                                           ("allow", "success")]
    assert decided[1]["missing"] == ["acr:eidas3"] and decided[1]["provider_reasons"] == ["essential_acr"]
    assert decided[2]["class"] == "high" and len(decided[2]["digest"]) == 64 and decided[2]["subject"]


def test_eidas3_class_allows_a_security_key_with_user_verification(web, rt, session):
    person = create_identity(session)
    add_second_factor(session, person, mie_type="webauthn")
    high = client_of(session, rt, "high")
    request, response = authorize(web, high)
    interaction_id = interaction_id_of(response)
    complete_interaction(web, rt, interaction_id, person.id, amr=["hwk", "mfa", "pin"])
    result = query_of(resume(web, interaction_id).headers["Location"])
    assert "code" in result and result["iss"] == ISSUER


def test_a_person_without_a_key_is_told_on_the_page_that_the_class_needs_one(web, rt, session):
    person = create_identity(session)
    mie_services.set_password(session, person, PASSWORD, actor="test", establishment_name="CHU")
    add_second_factor(session, person)  # a TOTP: not enough for eidas3
    high = client_of(session, rt, "high")
    _, response = authorize(web, high)
    interaction_id = interaction_id_of(response)
    token = csrf_of(web.get(f"/connexion/{interaction_id}").get_data(as_text=True))
    login = web.post(f"/connexion/{interaction_id}/mot-de-passe",
                     data={"username": person.user_name, "password": PASSWORD, "csrf_token": token})
    assert login.status_code == 303
    page = web.get(f"/connexion/{interaction_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 403 and 'autocomplete="one-time-code"' not in html
    assert "Aucun de vos seconds facteurs actifs n'atteint le niveau" in html


def test_health_data_asks_the_second_factor_as_before(web, rt, session):
    person = create_identity(session)
    add_second_factor(session, person)
    health = client_of(session, rt, "health-data")
    _, result = sign_in(web, rt, health, person, second_factor=True)
    assert "code" in result
    standard = client_of(session, rt, "standard", "Intranet")
    _, response = authorize(web, standard, prompt="none")
    assert "code" in query_of(response.headers["Location"])  # SSO reuse: the policy allows it


# --- refusals ------------------------------------------------------------------------------------------------

def test_a_class_of_the_internal_network_is_refused_from_outside(web, rt, session):
    console = client_of(session, rt, "console")
    web.environ_base["REMOTE_ADDR"] = OUTSIDE
    request, response = authorize(web, console)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    result = query_of(location)
    assert result["error"] == "access_denied" and result["iss"] == ISSUER and result["state"] == request.state
    assert "network_refused" in result["error_description"] and result["error_description"].isascii()
    [decided] = journal(rt, tags.AUTHZ_POLICY_DECIDED)
    assert decided["outcome"] == "refused" and decided["kind"] == "deny" and decided["codes"][0] == "network_refused"
    assert decided["class"] == "console" and decided["refusal"] == "access_denied"
    [refused] = journal(rt, tags.OIDC_AUTHORIZE_REFUSED)
    assert refused["reason"] == "policy_denied" and refused["error"] == "access_denied"
    # From the internal network the same request goes to the sign-in page.
    web.environ_base["REMOTE_ADDR"] = INSIDE
    _, response = authorize(web, console)
    assert response.headers["Location"].startswith("/connexion/")


def test_a_population_rule_refuses_interim_staff_with_a_french_page(web, rt, session):
    interim = create_identity(session, contract_type="interim", end_date="2027-06-30")
    permanent = create_identity(session)
    console = client_of(session, rt, "console")
    request, response = authorize(web, console)
    interaction_id = interaction_id_of(response)
    complete_interaction(web, rt, interaction_id, interim.id)
    page = resume(web, interaction_id)
    html = page.get_data(as_text=True)
    assert page.status_code == 403 and "Accès refusé" in html
    assert "consoles-sans-interimaires" in html and "Retourner à l'application" in html
    back = re.search(r'href="(https://rp\.chu-exemple\.fr/callback\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert query_of(back)["error"] == "access_denied" and query_of(back)["state"] == request.state
    decided = journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]
    assert decided["outcome"] == "refused" and decided["subject"] == interim.public_id
    assert decided["rules"] == ["consoles-sans-interimaires"] and decided["codes"] == ["network_refused"]
    # SSO reuse by the same person: refused at once, at the client.
    _, response = authorize(web, console)
    assert query_of(response.headers["Location"])["error"] == "access_denied"
    # A permanent employee goes through.
    web.delete_cookie("hc_sso")
    _, result = sign_in(web, rt, console, permanent)
    assert "code" in result


def test_a_client_whose_class_the_policy_no_longer_declares_is_refused_clearly(web, rt, session):
    person = create_identity(session)
    retired = client_of(session, rt, "ancienne-classe")
    request, response = authorize(web, retired)
    result = query_of(response.headers["Location"])
    assert result["error"] == "access_denied" and "unknown_class" in result["error_description"]
    assert journal(rt, tags.AUTHZ_POLICY_DECIDED)[0]["codes"] == ["unknown_class"]
    # Declared when the sign-in started, dropped before it ends: a French page, no error 500.
    standard = client_of(session, rt, "standard", "Intranet")
    _, response = authorize(web, standard)
    interaction_id = interaction_id_of(response)
    complete_interaction(web, rt, interaction_id, person.id)
    session.execute(update(Client).where(Client.id == standard.row_id).values(sensitivity="ancienne-classe"))
    session.commit()
    page = resume(web, interaction_id)
    assert page.status_code == 403 and "Classe d&#39;application inconnue" in page.get_data(as_text=True)


# --- dated rules --------------------------------------------------------------------------------------------

def test_a_dated_rule_applies_from_its_day_in_the_policy_time_zone(web, rt, session):
    person = create_identity(session)
    add_second_factor(session, person)
    mail = client_of(session, rt, "mail")
    # 31 December 2026, 23:50 in Paris: one factor is enough.
    with time_machine.travel(dt.datetime(2026, 12, 31, 22, 50, tzinfo=dt.timezone.utc), tick=False) as traveller:
        _, result = sign_in(web, rt, mail, person)
        assert "code" in result
        _, response = authorize(web, mail, prompt="none")
        assert "code" in query_of(response.headers["Location"])
        # 1 January 2027, 00:10 in Paris (still 31 December in UTC): the rule is in force.
        traveller.move_to(dt.datetime(2026, 12, 31, 23, 10, tzinfo=dt.timezone.utc))
        _, response = authorize(web, mail, prompt="none")
        assert query_of(response.headers["Location"])["error"] == "interaction_required"
        _, response = authorize(web, mail)
        with rt.db.session() as s:
            assert s.get(Interaction, interaction_id_of(response)).reasons == ["mfa_required"]
    decided = journal(rt, tags.AUTHZ_POLICY_DECIDED)
    assert decided[-1]["day"] == "2027-01-01" and decided[-1]["rules"] == ["messagerie-deux-facteurs-2027"]
    assert decided[-3]["day"] == "2026-12-31" and decided[-3]["kind"] == "allow"


# --- reload without restart -----------------------------------------------------------------------------------

def rewrite(path: Path, text: str) -> None:
    """Replace the file's content and make sure its modification time moves (coarse file-system clocks)."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_a_changed_file_applies_at_the_next_authorization_and_an_invalid_one_is_refused(web, rt, session,
                                                                                        policy_file):
    person = create_identity(session)
    standard = client_of(session, rt, "standard")
    _, result = sign_in(web, rt, standard, person)
    assert "code" in result
    stricter = POLICY.replace("standard: {min_acr: eidas1", "standard: {min_acr: eidas2")
    rewrite(policy_file, stricter)
    for _ in range(2):
        _, response = authorize(web, standard, prompt="none")
        assert query_of(response.headers["Location"])["error"] == "interaction_required"
    [reloaded] = journal(rt, tags.ADMIN_POLICY_RELOADED)  # once per change, not at every check
    assert reloaded["outcome"] == "success" and reloaded["file"] == str(policy_file)
    assert reloaded["digest"] != reloaded["previous_digest"] and reloaded["pid"] == os.getpid()
    # An invalid version is refused: the stricter policy stays in force.
    rewrite(policy_file, stricter.replace("min_acr: eidas2", "min_acr: eidas9"))
    for _ in range(2):
        _, response = authorize(web, standard, prompt="none")
        assert query_of(response.headers["Location"])["error"] == "interaction_required"
    [refused] = journal(rt, tags.ADMIN_POLICY_RELOAD_REFUSED)
    assert refused["outcome"] == "refused" and any("eidas9" in error for error in refused["errors"])
    assert refused["previous_digest"] == reloaded["digest"]
    # Repaired: applied again.
    rewrite(policy_file, POLICY)
    _, response = authorize(web, standard, prompt="none")
    assert "code" in query_of(response.headers["Location"])
    assert len(journal(rt, tags.ADMIN_POLICY_RELOADED)) == 2


def test_the_file_is_looked_at_once_per_check_interval(app_with, rt, session, policy_file):
    _, web = app_with(policy_file=policy_file, policy_check_seconds=3600)
    person = create_identity(session)
    standard = client_of(session, rt, "standard")
    sign_in(web, rt, standard, person)
    rewrite(policy_file, POLICY.replace("standard: {min_acr: eidas1", "standard: {min_acr: eidas2"))
    _, response = authorize(web, standard, prompt="none")
    assert "code" in query_of(response.headers["Location"])  # not looked at yet: the old policy decides
    holder = web.application.extensions["hospiconnect.policy"]
    assert holder.check(force=True).outcome == "reloaded"
    _, response = authorize(web, standard, prompt="none")
    assert query_of(response.headers["Location"])["error"] == "interaction_required"
