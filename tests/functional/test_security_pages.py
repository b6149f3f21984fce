"""Emergency access (/bris-de-glace) and the RSSI's pages (/securite) through the Flask test client.

Officers and RSSI are identities with the directory roles ``emergency_officer`` and ``rssi``; their SSO sessions
are opened with :func:`hospiconnect.idp.login_session.open` and the cookie put in the client, as for the
enrollment desk. Credentials to review are issued through the service, some of them in the past.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators.models import EmergencyCredential
from hospiconnect.authorizations import services as exceptions
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.db import Base, utcnow
from hospiconnect.idp import login_session
from hospiconnect.policies import load_policy
from hospiconnect.web.enrollment_common import PARIS, access_denial
from tests.factories import create_identity

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CODE_GROUP_RE = re.compile(r"<span>([0-9A-Z]{4})</span>")
REASON = "Téléphone perdu pendant la garde de nuit, identité vérifiée par rappel du poste"
JUSTIFICATION = "Intérimaires du service de cardiologie sans téléphone professionnel"
REMINDER = ("À communiquer à la personne seulement, après avoir vérifié son identité (rappel téléphonique…) ; "
            "il ne sera plus affiché.")
OFFICER_PAGES = ["/bris-de-glace", "/bris-de-glace?q=dupont"]
RSSI_PAGES = ["/securite", "/securite/acces-urgence", "/securite/derogations", "/securite/derogations/nouvelle"]


# --- helpers ------------------------------------------------------------------------------------------------


def sign_in(client, rt, identity, *, mfa: bool = True, minutes_ago: int = 0):  # type: ignore[no-untyped-def]
    """Open an SSO session for ``identity``, give its cookie to ``client`` and return the session row."""
    when = utcnow() - dt.timedelta(minutes=minutes_ago)
    with rt.db.session() as s:
        sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=identity.id,
                                         amr=["mfa", "otp", "pwd"] if mfa else ["pwd"],
                                         acr="eidas2" if mfa else "eidas1", mfa=mfa, existing=None,
                                         client_ip="127.0.0.1", user_agent="pytest", now=when)
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)
    return sso


def sign_in_again(client, rt, identity, *, amr: list[str], recovery_only: bool = False) -> None:
    """Renew a recent two-factor session with a one-factor sign-in (recovery code, emergency code): the
    session keeps the time of its last second factor, so only the ``amr`` or ``recovery_only`` can refuse it."""
    first = sign_in(client, rt, identity)
    with rt.db.session() as s:
        existing = s.get(type(first), first.id)
        _sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=identity.id, amr=amr,
                                          acr="eidas1", mfa=False, existing=existing, client_ip="127.0.0.1",
                                          user_agent="pytest", recovery_only=recovery_only)
        assert _sso.mfa_time is not None
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


def token_of(client, url: str = "/securite/derogations/nouvelle") -> str:
    page = client.get(url)
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token in {url} ({page.status_code})"
    return match.group(1)


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def audit_count(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


def database_dump(session) -> str:  # type: ignore[no-untyped-def]
    """Every row of every table, as text."""
    return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                     for row in session.execute(select(table)).all())


def issue(session, rt, person, officer, *, hours_ago: float = 0, hours: int = 8):  # type: ignore[no-untyped-def]
    """Issue an emergency credential through the service, ``hours_ago`` hours ago."""
    row, _code = emergency.issue_emergency_credential(
        session, rt.keys, load_policy(rt.settings.policy_file), identity=person, officer=officer, reason=REASON,
        actor=f"officer:{officer.user_name}", hours=hours, max_hours=8,
        now=utcnow() - dt.timedelta(hours=hours_ago))
    session.commit()
    return row


def grant(session, rt, **overrides):  # type: ignore[no-untyped-def]
    values = dict(app_class="standard", relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                  ends_at=utcnow() + dt.timedelta(days=30), actor="cli")
    values.update(overrides)
    row = exceptions.grant_exception(session, load_policy(rt.settings.policy_file), **values)
    session.commit()
    return row


def fresh(session, row):  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(type(row), row.id)


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture()
def nurse(session):  # type: ignore[no-untyped-def]
    return create_identity(session, birth_family_name="Dupont", given_names="Lucie")


@pytest.fixture()
def other(session):  # type: ignore[no-untyped-def]
    return create_identity(session, birth_family_name="Bernard", given_names="Paul")


@pytest.fixture()
def officer(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="emergency_officer|ide", birth_family_name="Astreinte")


@pytest.fixture()
def rssi(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="rssi", birth_family_name="Securite")


@pytest.fixture()
def officer_client(app, rt, officer):  # type: ignore[no-untyped-def]
    client = app.test_client()
    sign_in(client, rt, officer)
    return client


@pytest.fixture()
def rssi_client(app, rt, rssi):  # type: ignore[no-untyped-def]
    client = app.test_client()
    sign_in(client, rt, rssi)
    return client


# --- who may come in ----------------------------------------------------------------------------------------


def test_the_rule_keeps_the_desk_defaults_and_refuses_emergency_sessions():
    now = utcnow()
    base = dict(has_session=True, mfa_time=now, recovery_only=False, now=now, recent_minutes=10)
    assert access_denial(roles=["enrollment_officer"], **base) is None
    assert access_denial(roles=["rssi"], **base) == "not_officer"
    assert access_denial(roles=["rssi"], role="rssi", **base) is None
    assert access_denial(roles=["rssi"], role="rssi", amr=["emergency", "pwd"], **base) == "emergency_session"
    assert access_denial(roles=["enrollment_officer"], amr=["emergency"], **base) == "emergency_session"
    assert access_denial(roles=["rssi"], role="rssi", **{**base, "recovery_only": True}) == "mfa_not_recent"


@pytest.mark.parametrize("url", OFFICER_PAGES + RSSI_PAGES)
def test_no_session_is_401(client, url):
    response = client.get(url)
    assert response.status_code == 401
    assert "Connexion requise" in text_of(response)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("url", OFFICER_PAGES + RSSI_PAGES)
def test_wrong_role_is_403(client, rt, nurse, officer, rssi, url):
    sign_in(client, rt, rssi if url in OFFICER_PAGES else officer)
    response = client.get(url)
    assert response.status_code == 403
    assert "n'a pas le rôle" in text_of(response)
    sign_in(client, rt, nurse)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", OFFICER_PAGES + RSSI_PAGES)
def test_stale_or_missing_second_factor_is_403(client, rt, officer, rssi, url):
    agent = officer if url in OFFICER_PAGES else rssi
    sign_in(client, rt, agent, minutes_ago=rt.settings.recent_mfa_minutes + 5)
    response = client.get(url)
    assert response.status_code == 403
    assert "second facteur" in text_of(response)
    sign_in(client, rt, agent, mfa=False)
    assert client.get(url).status_code == 403
    sign_in(client, rt, agent)
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", OFFICER_PAGES + RSSI_PAGES)
def test_recovery_code_session_is_403(client, rt, officer, rssi, url):
    sign_in_again(client, rt, officer if url in OFFICER_PAGES else rssi, amr=["pwd"], recovery_only=True)
    response = client.get(url)
    assert response.status_code == 403
    assert "code de secours ne suffit pas" in text_of(response)


@pytest.mark.parametrize("url", OFFICER_PAGES + RSSI_PAGES)
def test_emergency_session_is_403_even_with_a_recent_second_factor(client, rt, officer, rssi, url):
    sign_in_again(client, rt, officer if url in OFFICER_PAGES else rssi, amr=["emergency", "pwd"])
    response = client.get(url)
    assert response.status_code == 403
    assert "accès d'urgence : il ne sert qu'aux soins" in text_of(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_a_post_without_session_is_401_and_changes_nothing(client, session, nurse):
    token = token_of(client, "/activation")  # any form gives the browser's CSRF token
    response = client.post(f"/bris-de-glace/personnes/{nurse.public_id}/acces",
                           data={"csrf_token": token, "reason": REASON})
    assert response.status_code == 401
    assert count(session, EmergencyCredential) == 0


# --- emergency access ---------------------------------------------------------------------------------------


def test_officer_issues_a_code_shown_once_and_stored_only_hashed(officer_client, session, nurse, officer):
    found = officer_client.get("/bris-de-glace?q=dupont")
    assert found.status_code == 200
    person_url = f"/bris-de-glace/personnes/{nurse.public_id}"
    assert person_url in found.get_data(as_text=True)
    form = officer_client.get(person_url)
    assert 'name="hours" value="8"' in form.get_data(as_text=True)
    assert 'name="networks" value="internal"' in form.get_data(as_text=True)

    response = officer_client.post(f"{person_url}/acces", data={
        "csrf_token": token_of(officer_client, person_url), "reason": REASON, "hours": "2",
        "networks": "internal, 192.0.2.0/24"})
    assert response.status_code == 200, text_of(response)
    assert response.headers["Cache-Control"] == "no-store"
    groups = CODE_GROUP_RE.findall(response.get_data(as_text=True))
    assert len(groups) == 5
    code, raw = "-".join(groups), "".join(groups)
    page = text_of(response)
    assert REMINDER in page and "internal, 192.0.2.0/24" in page
    row = session.scalar(select(EmergencyCredential))
    assert row.identity_id == nurse.id and row.issued_by_identity_id == officer.id and row.reason == REASON
    assert row.expires_at - row.issued_at == dt.timedelta(hours=2)
    assert row.expires_at.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M") in page
    assert row.selector == groups[0]

    # Nowhere in the database (journal and notification included), neither whole nor its secret part.
    dump = database_dump(session)
    for secret in (code, raw, raw[4:]):
        assert secret not in dump
    [event] = journal(session, tags.EMERGENCY_ISSUED)
    assert (event.actor, event.subject) == (f"officer:{officer.user_name}", nurse.public_id)

    # Shown once: the person's page lists the credential by its selector, never the code.
    again = officer_client.get(person_url)
    assert raw[4:] not in again.get_data(as_text=True) and code not in again.get_data(as_text=True)
    assert f'data-credential="{row.public_id}"' in again.get_data(as_text=True)
    assert "utilisable" in text_of(again)


def test_issuing_to_oneself_is_refused_with_403_and_journaled(officer_client, session, officer, nurse):
    own_url = f"/bris-de-glace/personnes/{officer.public_id}"
    own = officer_client.get(own_url)
    assert "Il s'agit de votre propre compte" in text_of(own)
    assert 'name="reason"' not in own.get_data(as_text=True)
    # A forged POST (token from another page) reaches the service, which refuses and journals.
    refused = officer_client.post(f"{own_url}/acces", data={
        "csrf_token": token_of(officer_client, f"/bris-de-glace/personnes/{nurse.public_id}"), "reason": REASON})
    assert refused.status_code == 403
    assert "ne peut pas se délivrer un accès d'urgence à lui-même" in text_of(refused)
    assert count(session, EmergencyCredential) == 0
    [event] = journal(session, tags.EMERGENCY_REFUSED)
    assert event.outcome == "refused" and json.loads(event.details)["reason"] == "self_issue"


@pytest.mark.parametrize("fields,message", [
    ({"reason": ""}, "Le motif est obligatoire"),
    ({"reason": "perdu"}, "Le motif est obligatoire"),
    ({"reason": "\x00\x01\x02" * 10}, "Le motif est obligatoire"),
    ({"reason": "x" * 100_000}, "ne doit pas dépasser 2000 caractères"),
    ({"hours": "0"}, "La durée de validité va de 1 à 8 heures"),
    ({"hours": "99"}, "La durée de validité va de 1 à 8 heures"),
    ({"hours": "deux"}, "La durée de validité va de 1 à 8 heures"),
    ({"hours": "-3"}, "La durée de validité va de 1 à 8 heures"),
    ({"hours": "9" * 5000}, "ne doit pas dépasser 10 caractères"),
    ({"networks": "pharmacie"}, "Réseau inconnu « pharmacie »"),
    ({"networks": "any"}, "Réseau inconnu « any »"),
    ({"networks": "10.0.0.1/8"}, "Réseau inconnu « 10.0.0.1/8 »"),
    ({"networks": "x" * 10_000}, "ne doit pas dépasser 200 caractères"),
])
def test_bad_issue_input_is_400_with_the_field_message_and_nothing_written(officer_client, session, nurse, fields,
                                                                            message):
    url = f"/bris-de-glace/personnes/{nurse.public_id}"
    data = {"csrf_token": token_of(officer_client, url), "reason": REASON, "hours": "4", "networks": "internal",
            **fields}
    response = officer_client.post(f"{url}/acces", data=data)
    assert response.status_code == 400
    assert message in text_of(response)
    assert "field-error" in response.get_data(as_text=True)
    assert count(session, EmergencyCredential) == 0
    assert journal(session, tags.EMERGENCY_ISSUED) == []


def test_control_characters_are_dropped_never_a_500(officer_client, session, nurse):
    url = f"/bris-de-glace/personnes/{nurse.public_id}"
    response = officer_client.post(f"{url}/acces", data={
        "csrf_token": token_of(officer_client, url), "reason": "Téléphone\x00 perdu\x1b pendant la garde\r\nde nuit",
        "hours": "2\x00", "networks": "internal\x00"})
    assert response.status_code == 200, text_of(response)
    row = session.scalar(select(EmergencyCredential))
    assert row.reason == "Téléphone perdu pendant la garde\nde nuit" and row.networks == ["internal"]
    for bad in ("/bris-de-glace/personnes/ab%00cd", "/bris-de-glace/personnes/unknown",
                "/bris-de-glace/personnes/" + "x" * 300):
        assert officer_client.get(bad).status_code == 404
    assert officer_client.get("/bris-de-glace?q=dup%00ont").status_code == 200
    assert officer_client.get("/bris-de-glace?q=" + "x" * 5000).status_code == 200


# --- review of emergency credentials --------------------------------------------------------------------------


def test_rssi_lists_and_reviews_with_a_comment(rssi_client, rt, session, nurse, other, officer, rssi):
    expired = issue(session, rt, nurse, officer, hours_ago=10, hours=2)
    live = issue(session, rt, other, officer)
    listing = rssi_client.get("/securite/acces-urgence")
    assert listing.status_code == 200 and listing.headers["Cache-Control"] == "no-store"
    html, page = listing.get_data(as_text=True), text_of(listing)
    assert f'data-credential="{expired.public_id}"' in html and f'data-credential="{live.public_id}"' in html
    assert "expiré" in page and "utilisable" in page and REASON in page
    assert nurse.user_name in page and officer.user_name in page
    token = token_of(rssi_client, "/securite/acces-urgence")
    before = audit_count(session)

    empty = rssi_client.post(f"/securite/acces-urgence/{expired.public_id}/examen",
                             data={"csrf_token": token, "comment": "  "})
    assert empty.status_code == 400
    assert "Un commentaire est obligatoire" in text_of(empty)
    assert fresh(session, expired).reviewed_at is None

    still_live = rssi_client.post(f"/securite/acces-urgence/{live.public_id}/examen",
                                  data={"csrf_token": token, "comment": "Vu avec le cadre de santé"})
    assert still_live.status_code == 409
    assert "encore utilisable" in text_of(still_live)
    assert fresh(session, live).reviewed_at is None
    assert audit_count(session) == before

    done = rssi_client.post(f"/securite/acces-urgence/{expired.public_id}/examen",
                            data={"csrf_token": token, "comment": "Vu avec le cadre de santé"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/securite/acces-urgence")
    reviewed = fresh(session, expired)
    assert reviewed.reviewed_at is not None and reviewed.reviewed_by_identity_id == rssi.id
    assert reviewed.review_comment == "Vu avec le cadre de santé"
    [event] = journal(session, tags.EMERGENCY_REVIEWED)
    assert event.actor == f"officer:{rssi.user_name}"
    assert "Revue de l'accès d'urgence enregistrée" in text_of(rssi_client.get("/securite/acces-urgence"))
    assert f'data-credential="{expired.public_id}"' not in rssi_client.get("/securite/acces-urgence").get_data(
        as_text=True)
    everything = rssi_client.get("/securite/acces-urgence?tous=1")
    assert f'data-credential="{expired.public_id}"' in everything.get_data(as_text=True)
    assert "« Vu avec le cadre de santé »" in text_of(everything)

    twice = rssi_client.post(f"/securite/acces-urgence/{expired.public_id}/examen",
                             data={"csrf_token": token, "comment": "Encore"})
    assert twice.status_code == 409 and "déjà été examiné" in text_of(twice)


def test_the_officer_who_issued_it_may_not_review_it(app, rt, session, nurse):
    both = create_identity(session, roles="emergency_officer|rssi", birth_family_name="Double")
    row = issue(session, rt, nurse, both, hours_ago=10, hours=2)
    client = app.test_client()
    sign_in(client, rt, both)
    listing = client.get("/securite/acces-urgence")
    assert "Vous êtes concerné(e) par cet accès" in text_of(listing)
    refused = client.post(f"/securite/acces-urgence/{row.public_id}/examen",
                          data={"csrf_token": token_of(client), "comment": "Rien à signaler"})
    assert refused.status_code == 403
    assert "revient à une autre personne" in text_of(refused)
    assert fresh(session, row).reviewed_at is None
    [event] = journal(session, tags.EMERGENCY_REFUSED)
    assert json.loads(event.details)["reason"] == "reviewer_involved" and event.outcome == "refused"


def test_rssi_revokes_a_live_credential(rssi_client, rt, session, nurse, officer, rssi):
    row = issue(session, rt, nurse, officer)
    token = token_of(rssi_client)
    url = f"/securite/acces-urgence/{row.public_id}/revocation"
    empty = rssi_client.post(url, data={"csrf_token": token, "reason": ""})
    assert empty.status_code == 400 and "Le motif de la révocation est obligatoire" in text_of(empty)
    assert fresh(session, row).revoked_at is None
    long = rssi_client.post(url, data={"csrf_token": token, "reason": "x" * 5000})
    assert long.status_code == 400 and fresh(session, row).revoked_at is None

    done = rssi_client.post(url, data={"csrf_token": token, "reason": "Téléphone retrouvé"})
    assert done.status_code == 303
    revoked = fresh(session, row)
    assert revoked.revoked_at is not None and revoked.revoked_by == f"officer:{rssi.user_name}"
    assert revoked.state(utcnow()) == "revoked"
    assert len(journal(session, tags.EMERGENCY_REVOKED)) == 1
    again = rssi_client.post(url, data={"csrf_token": token, "reason": "Téléphone retrouvé"})
    assert again.status_code == 409 and "n'est plus utilisable" in text_of(again)
    assert len(journal(session, tags.EMERGENCY_REVOKED)) == 1


# --- exceptions -------------------------------------------------------------------------------------------------


def grant_form(**fields: str | list[str]) -> dict[str, str | list[str]]:
    today = utcnow().astimezone(PARIS).date()
    return {"app_class": "standard", "user_name": "", "population": "", "units": "", "allow_single_factor": "1",
            "networks": "", "max_auth_age": "", "justification": JUSTIFICATION,
            "ends_on": (today + dt.timedelta(days=30)).isoformat(), **fields}


def test_rssi_grants_an_exception_to_a_person(rssi_client, session, nurse, rssi):
    form = rssi_client.get("/securite/derogations/nouvelle")
    assert form.status_code == 200
    assert 'value="health-data"' in form.get_data(as_text=True)  # the policy's classes
    data = grant_form(user_name=nurse.user_name, allow_mie_types=["password"], networks="192.0.2.0/24",
                      csrf_token=token_of(rssi_client, "/securite/derogations/nouvelle"))
    response = rssi_client.post("/securite/derogations/nouvelle", data=data)
    assert response.status_code == 303, text_of(response)
    assert response.headers["Location"].endswith("/securite/derogations")
    row = session.scalar(select(PolicyException))
    assert (row.identity_id, row.population, row.app_class) == (nurse.id, None, "standard")
    assert json.loads(row.relaxation_json) == {"allow_single_factor": True, "allow_mie_types": ["password"],
                                               "networks": ["192.0.2.0/24"]}
    assert row.justification == JUSTIFICATION and row.granted_by == f"officer:{rssi.user_name}"
    end = dt.date.fromisoformat(data["ends_on"])
    assert row.ends_at == dt.datetime.combine(end, dt.time(0), PARIS)
    [event] = journal(session, tags.POLICY_EXCEPTION_GRANTED)
    assert event.actor == f"officer:{rssi.user_name}" and event.subject == nurse.public_id
    listing = text_of(rssi_client.get("/securite/derogations"))
    assert "Dérogation accordée" in listing
    assert nurse.user_name in listing and "un seul facteur (mot de passe seul)" in listing and JUSTIFICATION in listing


def test_rssi_grants_an_exception_to_a_population_of_units(rssi_client, session):
    create_identity(session, contract_type="interim", units="CARDIO")
    data = grant_form(population="interim", units="CARDIO", allow_single_factor="", max_auth_age="1d",
                      csrf_token=token_of(rssi_client, "/securite/derogations/nouvelle"))
    data.pop("allow_single_factor")
    response = rssi_client.post("/securite/derogations/nouvelle", data=data)
    assert response.status_code == 303, text_of(response)
    row = session.scalar(select(PolicyException))
    assert (row.identity_id, row.population, row.units) == (None, "interim", ["CARDIO"])
    assert json.loads(row.relaxation_json) == {"max_auth_age": 86400}
    listing = text_of(rssi_client.get("/securite/derogations"))
    assert "population Intérim (CARDIO)" in listing


@pytest.mark.parametrize("fields,messages", [
    ({"justification": ""}, ["La justification est obligatoire"]),
    ({"ends_on": ""}, ["La date de fin est obligatoire"]),
    ({"justification": "", "ends_on": ""}, ["La justification est obligatoire", "La date de fin est obligatoire"]),
    ({"app_class": "radiologie"}, ["Classe d'application inconnue « radiologie »"]),
    ({"app_class": "health-data"}, ["exige deux facteurs"]),
    ({"user_name": ""}, ["Indiquez une cible et une seule"]),
    ({"population": "interim"}, ["Indiquez une cible et une seule"]),
    ({"user_name": "personne.inconnue"}, ["Aucune personne de l'annuaire n'a l'identifiant « personne.inconnue »"]),
    ({"user_name": "ab\x00cd"}, ["Aucune personne de l'annuaire n'a l'identifiant « abcd »"]),
    ({"allow_single_factor": ""}, ["Indiquez ce que la dérogation assouplit"]),
    ({"allow_mie_types": ["carte-bleue"]}, ["Type de MIE inconnu « carte-bleue »"]),
    ({"networks": "pharmacie"}, ["Réseau inconnu « pharmacie »"]),
    ({"max_auth_age": "douze heures"}, ["durée invalide « douze heures »"]),
    ({"max_auth_age": "1h"}, ["n'allonge pas la limite"]),
    ({"ends_on": "2027-02-30"}, ["Date de fin illisible"]),
    ({"ends_on": "0001-01-01"}, ["Date de fin illisible"]),
    ({"ends_on": "2020-01-01"}, ["La date de fin doit être dans le futur"]),
    ({"ends_on": (dt.date.today() + dt.timedelta(days=400)).isoformat()}, ["Une dérogation dure au plus 180 jours"]),
    ({"justification": "x" * 100_000}, ["ne doit pas dépasser 2000 caractères"]),
    ({"units": "X" * 10_000}, ["ne doit pas dépasser 200 caractères"]),
    ({"app_class": "standard\x00" * 50}, ["ne doit pas dépasser 60 caractères"]),
])
def test_bad_grants_are_400_with_the_field_messages_and_nothing_written(rssi_client, session, nurse, fields,
                                                                        messages):
    data = grant_form(user_name=nurse.user_name, csrf_token=token_of(rssi_client, "/securite/derogations/nouvelle"))
    data.update(fields)
    if data.get("allow_single_factor") == "":
        data.pop("allow_single_factor")
    before = audit_count(session)
    response = rssi_client.post("/securite/derogations/nouvelle", data=data)
    assert response.status_code == 400
    page = text_of(response)
    for message in messages:
        assert message in page
    assert "field-error" in response.get_data(as_text=True)
    assert count(session, PolicyException) == 0
    assert audit_count(session) == before


def test_rssi_lists_and_revokes_exceptions(rssi_client, rt, session, nurse, rssi):
    kept = grant(session, rt, identity=nurse)
    ended = grant(session, rt, population="trainee", relaxation={"networks": ["192.0.2.0/24"]})
    exceptions.revoke_exception(session, ended.public_id, actor="cli", reason="Stage terminé")
    session.commit()
    listing = rssi_client.get("/securite/derogations")
    html = listing.get_data(as_text=True)
    assert f'data-exception="{kept.public_id}"' in html and f'data-exception="{ended.public_id}"' not in html
    assert "Applications courantes" in text_of(listing)
    everything = rssi_client.get("/securite/derogations?toutes=1")
    assert f'data-exception="{ended.public_id}"' in everything.get_data(as_text=True)
    assert "révoquée" in text_of(everything) and "« Stage terminé »" in text_of(everything)

    token = token_of(rssi_client, "/securite/derogations")
    url = f"/securite/derogations/{kept.public_id}/revocation"
    empty = rssi_client.post(url, data={"csrf_token": token, "reason": ""})
    assert empty.status_code == 400 and "Le motif de la révocation est obligatoire" in text_of(empty)
    assert fresh(session, kept).revoked_at is None
    done = rssi_client.post(url, data={"csrf_token": token, "reason": "Téléphones livrés"})
    assert done.status_code == 303
    revoked = fresh(session, kept)
    assert revoked.revoked_at is not None and revoked.revoked_by == f"officer:{rssi.user_name}"
    [event] = [e for e in journal(session, tags.POLICY_EXCEPTION_REVOKED) if e.subject == nurse.public_id]
    assert json.loads(event.details)["reason"] == "Téléphones livrés"
    again = rssi_client.post(url, data={"csrf_token": token, "reason": "Téléphones livrés"})
    assert again.status_code == 409 and "déjà révoquée" in text_of(again)
    assert rssi_client.post("/securite/derogations/inconnue/revocation",
                            data={"csrf_token": token, "reason": "x" * 10}).status_code == 404


# --- forms without their CSRF token -----------------------------------------------------------------------------


def test_posts_without_csrf_token_are_400_and_change_nothing(app, rt, session, nurse, other, officer, rssi):
    expired = issue(session, rt, nurse, officer, hours_ago=10, hours=2)
    live = issue(session, rt, other, officer)
    kept = grant(session, rt, identity=nurse)
    officer_client, rssi_client = app.test_client(), app.test_client()
    sign_in(officer_client, rt, officer)
    sign_in(rssi_client, rt, rssi)
    before = audit_count(session)
    posts = [
        (officer_client, f"/bris-de-glace/personnes/{other.public_id}/acces", {"reason": REASON}),
        (rssi_client, f"/securite/acces-urgence/{expired.public_id}/examen", {"comment": "Vu"}),
        (rssi_client, f"/securite/acces-urgence/{live.public_id}/revocation", {"reason": "Retrouvé"}),
        (rssi_client, "/securite/derogations/nouvelle", grant_form(user_name=other.user_name)),
        (rssi_client, f"/securite/derogations/{kept.public_id}/revocation", {"reason": "Terminé"}),
    ]
    for client, url, data in posts:
        assert client.post(url, data=data).status_code == 400, url
    assert count(session, EmergencyCredential) == 2 and count(session, PolicyException) == 1
    assert fresh(session, expired).reviewed_at is None and fresh(session, live).revoked_at is None
    assert fresh(session, kept).revoked_at is None
    assert audit_count(session) == before


def test_unknown_ids_are_404(rssi_client):
    token = token_of(rssi_client)
    for url in ("/securite/acces-urgence/inconnu/examen", "/securite/acces-urgence/inconnu/revocation",
                "/securite/acces-urgence/" + "x" * 300 + "/examen", "/securite/acces-urgence/a%00b/revocation"):
        assert rssi_client.post(url, data={"csrf_token": token, "comment": "Vu et validé",
                                           "reason": "Retrouvé"}).status_code == 404, url


def test_the_index_links_the_two_pages(rssi_client, rt, session, nurse, officer):
    issue(session, rt, nurse, officer, hours_ago=10, hours=2)
    page = rssi_client.get("/securite")
    html = page.get_data(as_text=True)
    assert 'href="/securite/acces-urgence"' in html and 'href="/securite/derogations"' in html
    assert "1 à examiner" in text_of(page)
