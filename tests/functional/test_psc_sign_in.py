"""Sign-in to HospiConnect with a national MIE (CPS card, e-CPS application) through Pro Santé Connect, driven
with the Flask test client against the PSC simulator: from an application's authorization request to its code,
for paired people only; refusals (not paired, MIE suspended, cancel at PSC, replayed answer) that open nothing,
say why in French and are journaled; the access policy and delegation reading the national MIE of the
session."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from sqlalchemy import select, update

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.devtools import psc_simulator as sim
from hospiconnect.enrollment import national
from hospiconnect.idp import login_session, psc_delegation
from hospiconnect.idp.models import Interaction, SsoSession
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from tests.fcplus_helpers import wsgi_fetch
from tests.functional.test_psc_pairing import AUTHORIZE, pair, professional, psc_app, signed_in  # noqa: F401
from tests.functional.test_psc_simulator import choose
from tests.functional.test_remote_enrollment import csrf, text_of
from tests.oidc_helpers import auth_request, exchange, id_token_claims, interaction_id_of, query_of, register


def paired(app, rt, session, key: str):  # type: ignore[no-untyped-def]
    """A person of the directory whose national identity ``key`` is paired (through the real pairing pages)."""
    person = professional(session, key)
    answer, _ = pair(signed_in(app, rt, person), key)
    assert answer.status_code == 303, text_of(answer)
    session.expire_all()
    return person


def start(browser, rc):  # type: ignore[no-untyped-def]
    """/authorize → the sign-in page; return (request, interaction id, page)."""
    request = auth_request(rc)
    response = browser.get("/authorize", query_string=request.params)
    interaction_id = interaction_id_of(response)
    page = browser.get(f"/connexion/{interaction_id}")
    assert page.status_code == 200
    return request, interaction_id, page


def through_psc(browser, interaction_id: str, page, key: str, **choice):  # type: ignore[no-untyped-def]
    """Press « Se connecter avec Pro Santé Connect », choose ``key`` at the simulator; return /psc/retour's
    answer and the callback parameters."""
    started = browser.post(f"/connexion/{interaction_id}/psc", data={"csrf_token": csrf(page)})
    assert started.status_code == 303, text_of(started)
    url = started.headers["Location"]
    assert url.startswith(AUTHORIZE) and "scope=openid+scope_all" in url and "prompt=login" in url
    params = choose(browser, url, key, **choice)
    return browser.get("/psc/retour?" + urllib.parse.urlencode(params)), params


def events(session, tag: str) -> list[tuple[str | None, dict]]:  # type: ignore[no-untyped-def]
    """The (subject, details) of the journal entries tagged ``tag``, oldest first."""
    session.expire_all()
    return [(e.subject, json.loads(e.details))
            for e in session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id))]


def health_data_client(session, rt):  # type: ignore[no-untyped-def]
    return register(session, rt, name="DPI (démo)", sensitivity="health-data")


@pytest.mark.parametrize(("key", "mie_type", "amr", "acr"), [
    ("infirmier-ecps", "e-cps", ["mfa", "otp", "pwd"], "eidas2"),
    ("medecin-cps", "cps", ["hwk", "mfa", "pin"], "eidas3"),
])
def test_a_paired_professional_reaches_a_health_data_application_with_the_national_mie(
        psc_app, rt, session, key, mie_type, amr, acr):
    person = paired(psc_app, rt, session, key)
    rc = health_data_client(session, rt)
    browser = psc_app.test_client()
    request, interaction_id, page = start(browser, rc)
    assert "Se connecter avec Pro Santé Connect" in text_of(page)
    answer, _ = through_psc(browser, interaction_id, page, key)
    assert answer.status_code == 303, text_of(answer)
    assert answer.headers["Location"].endswith(f"/authorize/resume/{interaction_id}")
    result = query_of(browser.get(answer.headers["Location"]).headers["Location"])
    assert "code" in result, result
    tokens = exchange(browser, rc, result["code"], request.verifier).get_json()
    claims = id_token_claims(rt, tokens["id_token"])
    assert claims["sub"] == person.public_id
    assert (sorted(claims["amr"]), claims["acr"]) == (amr, acr)
    session.expire_all()
    sso = session.scalar(select(SsoSession).where(SsoSession.identity_id == person.id)
                         .order_by(SsoSession.id.desc()).limit(1))  # the pairing browser had its own
    assert sso.national_mie == mie_type and sso.mfa_time is not None and sso.ended_at is None
    [mie] = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.type == mie_type)).all()
    assert mie.status == "active" and mie.last_used_at is not None
    [(subject, details)] = events(session, "authn:psc:success")
    assert subject == person.public_id and details["mie_type"] == mie_type
    [completed] = [d for s, d in events(session, "authn:interaction:completed")
                   if s == person.public_id and d.get("national_mie")]
    assert completed["psc_acr"] == "eidas1" and completed["acr"] == acr


def test_the_session_opened_through_psc_serves_the_next_application_without_a_new_sign_in(psc_app, rt, session):
    paired(psc_app, rt, session, "infirmier-ecps")
    rc = health_data_client(session, rt)
    other = register(session, rt, name="Planning", sensitivity="standard")
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, rc)
    answer, _ = through_psc(browser, interaction_id, page, "infirmier-ecps")
    browser.get(answer.headers["Location"])
    response = browser.get("/authorize", query_string=auth_request(other).params)
    assert response.status_code in (302, 303) and "code" in query_of(response.headers["Location"])


def test_a_national_identity_paired_with_nobody_is_refused_and_nothing_opens(psc_app, rt, session):
    professional(session, "infirmier-ecps")  # in the directory, never paired
    rc = health_data_client(session, rt)
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, rc)
    answer, _ = through_psc(browser, interaction_id, page, "infirmier-ecps")
    assert answer.status_code == 403 and answer.mimetype == "text/html"
    text = text_of(answer)
    assert "Identité nationale non associée" in text and "Mes moyens d'identification" in text
    assert f"/connexion/{interaction_id}" in text  # another means may still do
    assert login_session.cookie_name(rt.settings) not in (answer.headers.get("Set-Cookie") or "")
    session.expire_all()
    assert session.get(Interaction, interaction_id).completed_at is None
    assert session.scalar(select(SsoSession)) is None
    [(subject, details)] = events(session, "authn:psc:failure")
    assert details["reason"] == "not_paired" and subject is None
    # The sign-in page still works with the usual means.
    assert browser.get(f"/connexion/{interaction_id}").status_code == 200


def test_an_unlinked_national_identity_no_longer_signs_in(psc_app, rt, session):
    person = paired(psc_app, rt, session, "medecin-cps")
    link = national.live_link(session, person)
    national.unlink(session, link.public_id, "agent:desk", "Carte déclarée perdue")
    session.commit()
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, health_data_client(session, rt))
    answer, _ = through_psc(browser, interaction_id, page, "medecin-cps")
    assert answer.status_code == 403 and "Identité nationale non associée" in text_of(answer)


def test_a_national_mie_suspended_by_the_establishment_is_refused(psc_app, rt, session):
    person = paired(psc_app, rt, session, "infirmier-ecps")
    session.execute(update(Mie).where(Mie.identity_id == person.id, Mie.type == "e-cps").values(status="suspended"))
    session.commit()
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, health_data_client(session, rt))
    answer, _ = through_psc(browser, interaction_id, page, "infirmier-ecps")
    assert answer.status_code == 403 and "suspendue ou révoquée" in text_of(answer)
    [(subject, details)] = events(session, "authn:psc:failure")
    assert details["reason"] == "mie_blocked" and subject == person.public_id
    assert session.scalar(select(SsoSession).where(SsoSession.identity_id == person.id,
                                                   SsoSession.national_mie.is_not(None))) is None
    assert session.scalar(select(Mie.status).where(Mie.identity_id == person.id, Mie.type == "e-cps")) == "suspended"


def test_cancelling_at_psc_leads_back_to_the_sign_in_page(psc_app, rt, session):
    paired(psc_app, rt, session, "infirmier-ecps")
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, health_data_client(session, rt))
    answer, _ = through_psc(browser, interaction_id, page, "infirmier-ecps", cancel=True)
    assert answer.status_code == 200 and "Connexion Pro Santé Connect annulée" in text_of(answer)
    assert f"/connexion/{interaction_id}" in text_of(answer)
    session.expire_all()
    assert session.get(Interaction, interaction_id).completed_at is None


def test_psc_answer_replayed_or_brought_to_another_browser_is_refused(psc_app, rt, session):
    paired(psc_app, rt, session, "infirmier-ecps")
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, health_data_client(session, rt))
    answer, params = through_psc(browser, interaction_id, page, "infirmier-ecps")
    assert answer.status_code == 303
    replay = browser.get("/psc/retour?" + urllib.parse.urlencode(params))
    assert replay.status_code == 400
    # A fresh sign-in, in a browser without a session, whose answer is carried to another browser.
    other = psc_app.test_client()
    _request, interaction_id, page = start(other, health_data_client(session, rt))
    started = other.post(f"/connexion/{interaction_id}/psc", data={"csrf_token": csrf(page)})
    params = choose(other, started.headers["Location"], "infirmier-ecps")
    stranger = psc_app.test_client()
    assert stranger.get("/psc/retour?" + urllib.parse.urlencode(params)).status_code == 400
    session.expire_all()
    assert session.get(Interaction, interaction_id).completed_at is None


def test_starting_psc_needs_the_page_csrf_token_and_a_live_interaction(psc_app, rt, session):
    browser = psc_app.test_client()
    _request, interaction_id, _page = start(browser, health_data_client(session, rt))
    assert browser.post(f"/connexion/{interaction_id}/psc", data={}).status_code == 400
    page = browser.get(f"/connexion/{interaction_id}")
    gone = browser.post("/connexion/inconnue/psc", data={"csrf_token": csrf(page)})
    assert gone.status_code == 404 and "Demande de connexion introuvable" in text_of(gone)
    assert events(session, "authn:psc:started") == []


POLICY_CARD_ONLY = """\
version: 1
name: "Carte CPS seulement pour les données de santé"
timezone: Europe/Paris
mie_types:
  password: {status: not_homologated, factors: 1}
  totp: {status: homologated, factors: 2, decision_date: 2025-01-01, decision_reference: "DEC-T"}
  cps: {status: ans, factors: 2, max_acr: eidas3}
  e-cps: {status: ans, factors: 2, max_acr: eidas2}
classes:
  health-data: {min_acr: eidas2, allowed_mie_types: [cps]}
  standard: {min_acr: eidas1, allowed_mie_types: [password, totp, cps, e-cps], accept_not_homologated: true}
"""


def test_the_access_policy_judges_the_national_mie_not_the_amr(app_with, session, tmp_path: Path):
    """e-CPS reports amr pwd/otp: a class open to the CPS card only must still refuse it (and accept the card)."""
    policy = tmp_path / "politique.yaml"
    policy.write_text(POLICY_CARD_ONLY, encoding="utf-8")
    runtime, browser = app_with(policy_file=policy, policy_check_seconds=0)
    application = browser.application
    application.extensions["hospiconnect.psc_fetch"] = wsgi_fetch(application)
    national.clear_caches()
    for key in ("infirmier-ecps", "medecin-cps"):
        paired(application, runtime, session, key)
    rc = health_data_client(session, runtime)
    outcomes = {}
    for key in ("infirmier-ecps", "medecin-cps"):
        person_browser = application.test_client()
        _request, interaction_id, page = start(person_browser, rc)
        answer, _ = through_psc(person_browser, interaction_id, page, key)
        assert answer.status_code == 303, text_of(answer)
        resumed = person_browser.get(answer.headers["Location"])
        outcomes[key] = resumed
    national.clear_caches()
    runtime.db.dispose()
    refused = outcomes["infirmier-ecps"]
    assert refused.status_code == 403 and "Le type de MIE « e-cps » n'est pas accepté" in text_of(refused)
    assert "code" in query_of(outcomes["medecin-cps"].headers["Location"])


def test_delegation_to_psc_is_refused_for_a_session_opened_through_psc(psc_app, rt, session):
    person = paired(psc_app, rt, session, "infirmier-ecps")
    browser = psc_app.test_client()
    _request, interaction_id, page = start(browser, health_data_client(session, rt))
    answer, _ = through_psc(browser, interaction_id, page, "infirmier-ecps")
    browser.get(answer.headers["Location"])
    session.expire_all()
    sso = session.scalar(select(SsoSession).where(SsoSession.identity_id == person.id)
                         .order_by(SsoSession.id.desc()).limit(1))
    assert sso.national_mie == "e-cps"
    verdict = psc_delegation.assess(session, rt.settings, load_policy(DEFAULT_POLICY_PATH), sso,
                                    now=sso.auth_time)
    assert not verdict.allowed and verdict.reason == psc_delegation.NATIONAL_SESSION

