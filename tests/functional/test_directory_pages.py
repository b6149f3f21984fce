"""The directory administration pages at /annuaire: list, search, creation, edit, lifecycle actions,
and their absence in production."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re

import pytest
from sqlalchemy import func, select

from hospiconnect import create_app
from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from hospiconnect.settings import Settings
from tests.factories import create_identity, make_rpps

BANNER = "Mode démonstration : pages d'administration accessibles sans connexion."


@pytest.fixture()
def app(app):  # type: ignore[no-untyped-def]
    # CSRF has its own tests (test_errors.py); here the forms are posted without the token.
    app.config["WTF_CSRF_ENABLED"] = False
    return app


def form_for(**overrides: object) -> dict[str, object]:
    """A complete, valid creation form as a browser would post it."""
    data: dict[str, object] = {
        "birth_family_name": "Lefèvre", "usage_name": "", "given_names": "Anne Sophie",
        "birth_date": "1979-03-14", "gender": "F", "birth_country": "99100", "birth_place": "69123",
        "email": "anne.lefevre@chu-exemple.fr", "rpps": "", "external_id": "MAT0042", "user_name": "",
        "contract_type": "fixed_term", "start_date": "2024-01-08", "end_date": "",
        "establishments": ["750712184"], "establishments_other": "", "units": [], "units_other": "CARDIO",
        "roles": "ide",
    }
    data.update(overrides)
    return data


def count_identities(session) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count(Identity.id))) or 0


def field_error(html: str, field: str) -> str:
    """Return the text of the error paragraph attached to ``field``, or '' when there is none."""
    match = re.search(rf'<p class="field-error" id="f-{field}-error">(.*?)</p>', html, re.S)
    return re.sub(r"<[^>]+>", "", match.group(1)).strip() if match else ""


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    """The page with HTML entities decoded (messages with apostrophes are escaped in the markup)."""
    return html_lib.unescape(response.get_data(as_text=True))


# --- list ---------------------------------------------------------------------------------------------

def test_list_shows_identities_counts_and_demo_banner(client, session):
    create_identity(session, birth_family_name="Durand", given_names="Paul", gender="M")
    create_identity(session, birth_family_name="Petit", given_names="Léa")
    rpps_person = create_identity(session, with_rpps=True, birth_family_name="Roux", given_names="Marc", gender="M")
    services.suspend(session, rpps_person, actor="test", reason="absence")
    session.commit()

    response = client.get("/annuaire")
    html = text_of(response)
    assert response.status_code == 200
    assert BANNER in html
    for name in ("Durand", "Petit", "Roux"):
        assert name in html
    assert "3 identités" in html
    # Per-status counts in the filter chips.
    assert re.search(r"Actif <span class=\"count\">2</span>", html)
    assert re.search(r"Suspendu <span class=\"count\">1</span>", html)
    assert rpps_person.rpps in html


def test_search_by_name_user_name_rpps_and_email(client, session):
    target = create_identity(session, with_rpps=True, birth_family_name="Garnier", given_names="Hugo", gender="M",
                             email="hugo.garnier@chu-exemple.fr")
    create_identity(session, birth_family_name="Bonnet", given_names="Inès")
    for query in ("garn", "Hugo", target.user_name, target.rpps, "hugo.garnier@chu-exemple.fr"):
        html = text_of(client.get("/annuaire", query_string={"q": query}))
        assert "Garnier" in html, query
        assert "Bonnet" not in html, query
        assert "1 identité" in html
    html = text_of(client.get("/annuaire", query_string={"q": "Zzz"}))
    assert "Aucune identité ne correspond." in html


def test_filters_by_status_and_population(client, session):
    doctor = create_identity(session, with_rpps=True, birth_family_name="Morel", given_names="Luc", gender="M")
    create_identity(session, birth_family_name="Fabre", given_names="Nina")
    services.suspend(session, doctor, actor="test", reason="absence")
    session.commit()

    html = text_of(client.get("/annuaire", query_string={"status": "suspended"}))
    assert "Morel" in html and "Fabre" not in html
    html = text_of(client.get("/annuaire", query_string={"population": "local"}))
    assert "Fabre" in html and "Morel" not in html
    html = text_of(client.get("/annuaire", query_string={"population": "rpps", "status": "active"}))
    assert "Aucune identité ne correspond." in html
    # Unknown filter values are ignored rather than failing.
    assert client.get("/annuaire", query_string={"status": "nimporte", "page": "x"}).status_code == 200


def test_pagination(client, session):
    for n in range(27):
        create_identity(session, birth_family_name=f"Agent{chr(65 + n // 26)}{chr(65 + n % 26)}")
    first = text_of(client.get("/annuaire"))
    assert "27 identités — page 1 sur 2" in first
    assert "AgentAA" in first and "AgentBA" not in first
    assert 'rel="next"' in first
    second = text_of(client.get("/annuaire", query_string={"page": 2}))
    assert "AgentBA" in second and "AgentAA" not in second
    assert 'rel="prev"' in second
    # A page past the end shows the last page.
    assert "AgentBA" in text_of(client.get("/annuaire", query_string={"page": 99}))


# --- detail -------------------------------------------------------------------------------------------

def test_detail_shows_every_field_in_french_and_the_journal(client, session):
    identity = create_identity(session, with_rpps=True, birth_family_name="Lambert", usage_name="Vidal",
                               given_names="Claire Marie", contract_type="vacataire", units="CARDIO",
                               roles="medecin", external_id="MAT777")
    response = client.get(f"/annuaire/{identity.public_id}")
    html = text_of(response)
    assert response.status_code == 200
    assert BANNER in html
    for expected in ("Lambert", "Vidal", "Claire Marie", "12/04/1985", "75056", "France", "Femme",
                     identity.rpps, "8" + identity.rpps, "Avec RPPS", "MAT777", identity.user_name,
                     identity.email, "Vacataire", "Actif", "750712184", "CARDIO", "Médecin",
                     "Vérification d'identité et MIE", "Aucune vérification d'identité",
                     "Historique", "Création"):
        assert expected in html, expected


def test_unknown_identity_is_a_french_404(client):
    response = client.get("/annuaire/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert "Aucune identité ne correspond" in text_of(response)


# --- creation -----------------------------------------------------------------------------------------

def test_creation_form_has_labels_and_no_autocomplete(client):
    html = text_of(client.get("/annuaire/nouvelle"))
    assert BANNER in html
    for field in ("birth_family_name", "given_names", "birth_date", "rpps", "email", "user_name"):
        assert f'<label for="f-{field}">' in html
        tag = re.search(rf'<(?:input|select)[^>]*id="f-{field}"[^>]*>', html).group(0)
        assert 'autocomplete="off"' in tag, field
    assert 'name="csrf_token"' in html


def test_create_identity_redirects_303_and_journals_as_web_demo(client, session):
    response = client.post("/annuaire/nouvelle", data=form_for())
    assert response.status_code == 303
    identity = session.scalar(select(Identity).where(Identity.birth_family_name == "Lefèvre"))
    assert response.headers["Location"].endswith(f"/annuaire/{identity.public_id}")
    assert identity.unit_codes == ["CARDIO"] and identity.finess_numbers == ["750712184"]
    assert identity.contract_type == "fixed_term" and identity.status == "active"
    event = session.scalar(select(AuditEvent).where(AuditEvent.subject == identity.public_id))
    assert event.tag == "directory:identity:created" and event.actor == "web:demo"
    page = text_of(client.get(response.headers["Location"]))
    assert "Identité créée" in page and identity.user_name in page


def test_validation_errors_are_shown_next_to_their_fields_and_nothing_is_saved(client, session):
    bad_rpps = make_rpps(3)[:-1] + str((int(make_rpps(3)[-1]) + 1) % 10)
    response = client.post("/annuaire/nouvelle", data=form_for(
        birth_family_name="", email="pas-une-adresse", rpps=bad_rpps, birth_place="", end_date="2020-01-01"))
    html = text_of(response)
    assert response.status_code == 400
    assert field_error(html, "birth_family_name") == "Erreur : Le nom de naissance est obligatoire."
    assert "clé de contrôle" in field_error(html, "rpps")
    assert "Adresse e-mail invalide" in field_error(html, "email")
    assert "commune de naissance" in field_error(html, "birth_place")
    assert "précède la date d'arrivée" in field_error(html, "end_date")
    assert re.search(r'id="f-rpps"[^>]*aria-invalid="true"', html)
    assert "Rien n'a été enregistré" in html
    # What the user typed is kept.
    assert 'value="pas-une-adresse"' in html
    assert count_identities(session) == 0


def test_duplicate_shows_candidates_then_homonym_confirmation_creates(client, session):
    existing = create_identity(session, birth_family_name="Lefevre", given_names="Anne", birth_date="1979-03-14")
    response = client.post("/annuaire/nouvelle", data=form_for())
    html = text_of(response)
    assert response.status_code == 409
    assert existing.user_name in html
    assert f"/annuaire/{existing.public_id}" in html
    assert "Je confirme qu'il s'agit d'un homonyme" in html
    assert count_identities(session) == 1

    confirmed = client.post("/annuaire/nouvelle", data=form_for(confirm_homonym="1"))
    assert confirmed.status_code == 303
    assert count_identities(session) == 2
    tags = set(session.scalars(select(AuditEvent.tag)))
    assert "directory:identity:homonym_confirmed" in tags


def test_rpps_already_taken_is_explained_next_to_the_field(client, session):
    holder = create_identity(session, with_rpps=True)
    response = client.post("/annuaire/nouvelle", data=form_for(rpps=holder.rpps))
    html = text_of(response)
    assert response.status_code == 409
    assert f"Le numéro RPPS {holder.rpps} est déjà attribué" in field_error(html, "rpps")
    assert count_identities(session) == 1


# --- edit ---------------------------------------------------------------------------------------------

def edit_form(client, identity) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Read the edit form back as the browser would resubmit it."""
    html = text_of(client.get(f"/annuaire/{identity.public_id}/modifier"))
    values: dict[str, object] = {}
    for name, value in re.findall(r'<input type="(?:text|date|email|hidden)" id="[^"]*" name="([^"]+)" '
                                  r'value="([^"]*)"', html):
        values[name] = value
    values["version"] = re.search(r'name="version" value="(\d+)"', html).group(1)
    values["gender"] = "F"
    values["contract_type"] = re.search(r'<option value="(\w+)" selected>', html.split('id="f-contract_type"')[1]
                                        ).group(1)
    values["establishments"] = re.findall(r'name="establishments" value="(\w+)" checked', html)
    values["units"] = re.findall(r'name="units" value="([\w.-]+)" checked', html)
    return values


def test_edit_saves_with_the_current_version(client, session):
    identity = create_identity(session, birth_family_name="Blanc", given_names="Julie", usage_name="")
    form = edit_form(client, identity)
    assert form["version"] == "1" and form["birth_family_name"] == "Blanc"
    form["usage_name"] = "Perrin"
    response = client.post(f"/annuaire/{identity.public_id}/modifier", data=form)
    assert response.status_code == 303
    session.expire_all()
    assert identity.usage_name == "Perrin" and identity.version == 2
    assert identity.unit_codes == ["CARDIO", "POLE-MED"]  # untouched check boxes kept their values
    page = text_of(client.get(response.headers["Location"]))
    assert "Modifications enregistrées" in page and "Nom d'usage" in page


def test_edit_with_a_stale_version_is_refused_in_french(client, session):
    identity = create_identity(session, birth_family_name="Blanc", given_names="Julie", usage_name="")
    form = edit_form(client, identity)
    # Someone else saves in between.
    services.suspend(session, identity, actor="test", reason="absence")
    session.commit()
    form["usage_name"] = "Perrin"
    response = client.post(f"/annuaire/{identity.public_id}/modifier", data=form)
    html = text_of(response)
    assert response.status_code == 409
    assert "modifiée entre-temps" in html
    assert "Recharger la fiche à jour" in html
    assert 'value="Perrin"' in html  # the user's input is not lost
    session.expire_all()
    assert identity.usage_name is None and identity.version == 2


# --- lifecycle actions --------------------------------------------------------------------------------

def test_suspend_requires_a_reason(client, session):
    identity = create_identity(session)
    response = client.post(f"/annuaire/{identity.public_id}/suspendre", data={"reason": "   "})
    assert response.status_code == 400
    assert "Indiquez le motif." in field_error(text_of(response), "reason")
    session.expire_all()
    assert identity.status == "active"


def test_suspend_then_reactivate_appear_in_the_history(client, session):
    identity = create_identity(session)
    response = client.post(f"/annuaire/{identity.public_id}/suspendre", data={"reason": "congé long"})
    assert response.status_code == 303
    session.expire_all()
    assert identity.status == "suspended" and identity.status_reason == "congé long"
    html = text_of(client.get(f"/annuaire/{identity.public_id}"))
    assert "Identité suspendue." in html
    assert "Suspension" in html and "Actif → Suspendu" in html and "motif : congé long" in html
    assert "web:demo" in html

    response = client.post(f"/annuaire/{identity.public_id}/reactiver", data={"reason": ""})
    assert response.status_code == 303
    session.expire_all()
    assert identity.status == "active"
    assert "Réactivation" in text_of(client.get(f"/annuaire/{identity.public_id}"))


def test_reactivating_an_active_identity_is_refused(client, session):
    identity = create_identity(session)
    response = client.post(f"/annuaire/{identity.public_id}/reactiver", data={})
    assert response.status_code == 409
    assert "Impossible de passer de « Actif » à « Actif »" in text_of(response)


def test_end_with_a_past_date_suspends_now(client, session):
    identity = create_identity(session)
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    response = client.post(f"/annuaire/{identity.public_id}/terminer", data={"end_date": yesterday, "reason": ""})
    assert response.status_code == 303
    session.expire_all()
    assert identity.status == "suspended" and identity.end_date.isoformat() == yesterday
    html = text_of(client.get(f"/annuaire/{identity.public_id}"))
    assert "Date de fin enregistrée" in html and "Date de fin fixée" in html and "fin de contrat" in html


def test_end_needs_a_valid_date(client, session):
    identity = create_identity(session)
    for value, message in (("", "Indiquez la date de fin."), ("31/02/2027", "date invalide"),
                           ("2019-01-01", "précède la date d'arrivée")):
        response = client.post(f"/annuaire/{identity.public_id}/terminer", data={"end_date": value})
        assert response.status_code == 400, value
        assert message in field_error(text_of(response), "end_date")
    session.expire_all()
    assert identity.end_date is None and identity.version == 1


# --- production ---------------------------------------------------------------------------------------

def test_every_annuaire_url_is_a_404_in_production(rt, session, instance_dir):
    identity = create_identity(session)
    settings = Settings(env="production", instance_path=instance_dir, database_url=rt.settings.database_url,
                        secret_key_file=instance_dir / "keys.json", issuer="https://idp.chu-exemple.fr")
    client = create_app(settings).test_client()
    for method, url in (("GET", "/annuaire"), ("GET", "/annuaire/"), ("GET", "/annuaire/nouvelle"),
                        ("GET", f"/annuaire/{identity.public_id}"),
                        ("GET", f"/annuaire/{identity.public_id}/modifier"),
                        ("POST", "/annuaire/nouvelle"), ("POST", f"/annuaire/{identity.public_id}/suspendre")):
        response = client.open(url, method=method, data=form_for() if method == "POST" else None)
        assert response.status_code == 404, url
        assert "Page introuvable" in text_of(response)
        assert BANNER not in text_of(response)
    assert "/annuaire" not in text_of(client.get("/"))
    session.expire_all()
    assert identity.status == "active" and count_identities(session) == 1


# --- identity verification and MIE ----------------------------------------------------------------------

def _verified_by_an_officer(session, rt, person, officer, *, checked_at: dt.datetime):  # type: ignore[no-untyped-def]
    """Check ``person``'s document face to face and activate a TOTP for them (services, as the pages do)."""
    from hospiconnect.authenticators import services as mie_services
    from hospiconnect.enrollment import services as enrollment
    from hospiconnect.ratelimit import make_throttle

    case = enrollment.open_case(session, person, kind="first_mie", officer_identity_id=officer.id, actor="test")
    enrollment.record_document_check(session, case, document_type="passport", issuing_country="FRA",
                                     expiry_date=dt.date(2031, 1, 1), last4="9XY8", place="Accueil du site B",
                                     checked_at=checked_at, officer_identity_id=officer.id, actor="test",
                                     today=checked_at.date())
    code = enrollment.issue_activation_code(session, rt.keys, case, actor="test")
    session.commit()
    enrollment.redeem_activation_code(session, rt.keys, code, client_ip=None, throttle=make_throttle(rt.settings))
    mie, _uri, _svg = mie_services.begin_totp(session, person, label="Téléphone pro", actor="test", keys=rt.keys,
                                              issuer="Test")
    mie_services.transition(session, mie, "active", actor="test", reason="test")
    enrollment.activate_mie(session, case, mie, actor="test")
    session.commit()
    return case, mie


def test_detail_shows_the_verification_level_the_last_check_and_the_mie(client, session, rt):
    officer = create_identity(session, birth_family_name="Guichetier", given_names="Paul", roles="enrollment_officer")
    person = create_identity(session, birth_family_name="Moreau", given_names="Inès")
    _case, mie = _verified_by_an_officer(session, rt, person, officer,
                                         checked_at=dt.datetime(2026, 11, 20, 13, 45, tzinfo=dt.timezone.utc))
    html = text_of(client.get(f"/annuaire/{person.public_id}"))
    section = html[html.index("Vérification d'identité et MIE"):html.index("Actions")]
    assert "substantiel" in section
    assert "en face à face, sur pièce d'identité (passeport), le 20/11/2026 à 14:45" in section
    assert f"{officer.display_name} ({officer.user_name}) — Accueil du site B" in section
    row = re.search(rf'<tr data-mie="{mie.public_id}">(.*?)</tr>', section, re.S).group(1)
    row = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
    assert row == ("Application d'authentification (TOTP) Téléphone pro Actif "
                   "identité vérifiée en face à face au guichet, le 20/11/2026 à 14:45 jamais")
    assert "Aucune vérification d'identité" not in section


def test_detail_names_franceconnect_plus_for_a_remote_check(client, session):
    from hospiconnect.enrollment import services as enrollment

    person = create_identity(session, birth_family_name="Girard", given_names="Hugo")
    case = enrollment.open_case(session, person, kind="first_mie", officer_identity_id=None, actor="test")
    enrollment.record_fcplus_check(session, case, matched=True, differences=[], actor="test", acr="eidas2",
                                   checked_at=dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc))
    session.commit()
    html = text_of(client.get(f"/annuaire/{person.public_id}"))
    section = html[html.index("Vérification d'identité et MIE"):html.index("Actions")]
    assert "substantiel" in section
    assert "à distance, par FranceConnect+, le 22/11/2026 à 09:00" in section
    assert re.search(r"Vérifiée par</dt>\s*<dd[^>]*>FranceConnect\+</dd>", section)
    assert "Aucun moyen d'identification." in section


def test_a_rejected_remote_check_gives_no_level(client, session):
    from hospiconnect.enrollment import services as enrollment

    person = create_identity(session, birth_family_name="Roux", given_names="Léa")
    case = enrollment.open_case(session, person, kind="first_mie", officer_identity_id=None, actor="test")
    enrollment.record_fcplus_check(session, case, matched=False, differences=["birthdate"], actor="test")
    session.commit()
    html = text_of(client.get(f"/annuaire/{person.public_id}"))
    section = html[html.index("Vérification d'identité et MIE"):html.index("Actions")]
    assert "aucune vérification" in section and "substantiel" not in section
    assert "FranceConnect+</dd>" not in section
