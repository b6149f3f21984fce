"""Enrollment desk (/guichet) and activation (/activation) through the Flask test client.

An officer is an identity with the directory role ``enrollment_officer``; their SSO session is opened with
:func:`hospiconnect.idp.login_session.open` and its cookie put in the client. The person's browser is a
second test client. TOTP codes are computed with pyotp from the seed the page shows.
"""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pyotp
import pytest
from sqlalchemy import func, select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie, RecoveryCode
from hospiconnect.db import utcnow
from hospiconnect.enrollment.models import ActivationCode, EnrollmentCase
from hospiconnect.idp import login_session
from tests.factories import create_identity

GOOD_PASSWORD = "correct cheval pile agrafe"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CODE_GROUP_RE = re.compile(r"<span>([0-9A-Z]{4})</span>")
SEED_RE = re.compile(r'<code id="totp-seed">([A-Z2-7 ]+)</code>')
RECOVERY_RE = re.compile(r"<li><code>([^<]+)</code></li>")
EXPIRED_DOC = "Pièce expirée le"
WRONG_CODE = "Code d'activation incorrect"
REUSED_CODE = "Ce code d'activation a déjà été utilisé"


def sign_in(client, rt, identity, *, mfa: bool = True, minutes_ago: int = 0) -> None:
    """Open an SSO session for ``identity`` and give its cookie to ``client``."""
    when = utcnow() - dt.timedelta(minutes=minutes_ago)
    with rt.db.session() as s:
        _sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=identity.id,
                                          amr=["mfa", "otp", "pwd"] if mfa else ["pwd"],
                                          acr="eidas2" if mfa else "eidas1", mfa=mfa, existing=None,
                                          client_ip="127.0.0.1", user_agent="pytest", now=when)
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


def token_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture()
def officer(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="enrollment_officer", birth_family_name="Agent")


@pytest.fixture()
def person(session):  # type: ignore[no-untyped-def]
    return create_identity(session, birth_family_name="Dupont", given_names="Lucie")


@pytest.fixture()
def desk(client, rt, officer):  # type: ignore[no-untyped-def]
    sign_in(client, rt, officer)
    return client


def open_case(desk, person, kind: str = "first_mie", **extra: str):  # type: ignore[no-untyped-def]
    page = desk.get(f"/guichet/personnes/{person.public_id}")
    assert page.status_code == 200
    return desk.post(f"/guichet/personnes/{person.public_id}/dossiers",
                     data={"csrf_token": token_from(page.get_data(as_text=True)), "kind": kind, **extra})


def case_id_of(response) -> str:
    assert response.status_code == 303, text_of(response)
    return response.headers["Location"].rsplit("/", 1)[-1]


def verify_document(desk, case_id: str, **overrides: str):  # type: ignore[no-untyped-def]
    page = desk.get(f"/guichet/dossiers/{case_id}")
    data = {"csrf_token": token_from(page.get_data(as_text=True)), "document_type": "cni",
            "issuing_country": "FRA", "expiry_date": "2031-05-01", "last4": "12AB", "place": "Accueil RH",
            "checked_at": "", **overrides}
    return desk.post(f"/guichet/dossiers/{case_id}/verification", data=data)


def issue_code(desk, case_id: str) -> tuple[str, object]:
    page = desk.get(f"/guichet/dossiers/{case_id}")
    sheet = desk.post(f"/guichet/dossiers/{case_id}/code",
                      data={"csrf_token": token_from(page.get_data(as_text=True))})
    assert sheet.status_code == 200, text_of(sheet)
    groups = CODE_GROUP_RE.findall(sheet.get_data(as_text=True))
    assert len(groups) == 6
    return "-".join(groups), sheet


def ready_code(desk, person) -> tuple[str, str]:
    case_id = case_id_of(open_case(desk, person))
    assert verify_document(desk, case_id).status_code == 303
    code, _sheet = issue_code(desk, case_id)
    return case_id, code


def redeem(client, code: str):  # type: ignore[no-untyped-def]
    page = client.get("/activation")
    return client.post("/activation", data={"csrf_token": token_from(page.get_data(as_text=True)), "code": code})


def audit_count(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


# --- access ---------------------------------------------------------------------------------------------


def test_desk_refused_without_session(client):
    response = client.get("/guichet")
    assert response.status_code == 401
    assert "Connexion requise" in text_of(response)


def test_desk_refused_without_role(client, rt, person):
    sign_in(client, rt, person)
    response = client.get("/guichet")
    assert response.status_code == 403
    assert "rôle d'agent d'enrôlement" in text_of(response)


def test_desk_refused_with_stale_or_missing_second_factor(client, rt, officer):
    sign_in(client, rt, officer, minutes_ago=rt.settings.recent_mfa_minutes + 5)
    response = client.get("/guichet")
    assert response.status_code == 403
    assert "second facteur" in text_of(response)
    sign_in(client, rt, officer, mfa=False)
    assert client.get("/guichet").status_code == 403


# --- desk -----------------------------------------------------------------------------------------------


def test_search_finds_the_person(desk, person):
    response = desk.get("/guichet?q=dupont")
    assert response.status_code == 200
    assert f"/guichet/personnes/{person.public_id}" in response.get_data(as_text=True)
    assert "Aucune personne" in text_of(desk.get("/guichet?q=zzzznobody"))
    assert desk.get("/guichet?q=" + "x" * 5000).status_code == 200


def test_open_case_and_expired_document_refused(desk, session, person):
    case_id = case_id_of(open_case(desk, person))
    case_page = text_of(desk.get(f"/guichet/dossiers/{case_id}"))
    assert "Vérifier la pièce d'identité" in case_page
    before = audit_count(session)
    refused = verify_document(desk, case_id, expiry_date="2020-01-01")
    assert refused.status_code == 400
    assert EXPIRED_DOC in text_of(refused)
    session.expire_all()
    assert session.scalar(select(EnrollmentCase.state).where(EnrollmentCase.public_id == case_id)) == "opened"
    assert audit_count(session) == before + 1  # the refusal is journaled
    assert verify_document(desk, case_id).status_code == 303
    assert "Émettre un code d'activation" in text_of(desk.get(f"/guichet/dossiers/{case_id}"))


def test_replacement_needs_the_lost_mie(desk, session, person):
    refused = open_case(desk, person, kind="replacement")
    assert refused.status_code == 400
    assert "moyen d'identification perdu" in text_of(refused)


def test_self_enrollment_refused_and_no_button(desk, session, officer, person):
    page = text_of(desk.get(f"/guichet/personnes/{officer.public_id}"))
    assert "vous ne pouvez pas vous enrôler vous-même" in page
    assert "Ouvrir un dossier</button>" not in page
    # A forged POST (token taken from another person's page) is refused by the service, with its message.
    token = token_from(desk.get(f"/guichet/personnes/{person.public_id}").get_data(as_text=True))
    refused = desk.post(f"/guichet/personnes/{officer.public_id}/dossiers",
                        data={"csrf_token": token, "kind": "first_mie"})
    assert refused.status_code == 403
    assert "propre identité" in text_of(refused) or "vous-même" in text_of(refused)
    assert session.scalar(select(func.count()).select_from(EnrollmentCase)) == 0


def test_bad_input_never_fails(desk, person):
    assert desk.get("/guichet/dossiers/nope").status_code == 404
    assert desk.get("/guichet/dossiers/" + "x" * 300).status_code == 404
    assert desk.get("/guichet/personnes/unknown").status_code == 404
    case_id = case_id_of(open_case(desk, person))
    for overrides in ({"expiry_date": "31/02/2030"}, {"checked_at": "hier"}, {"place": "x" * 10000},
                      {"last4": "Z" * 5000}, {"document_type": "carte-vitale"}, {"issuing_country": "99100"}):
        response = verify_document(desk, case_id, **overrides)
        assert response.status_code == 400, overrides
    assert open_case(desk, person, kind="x" * 1000).status_code == 400


def test_csrf_missing_refused(desk, session, person):
    response = desk.post(f"/guichet/personnes/{person.public_id}/dossiers", data={"kind": "first_mie"})
    assert response.status_code == 400
    assert session.scalar(select(func.count()).select_from(EnrollmentCase)) == 0


# --- the whole path -----------------------------------------------------------------------------------------


def test_face_to_face_enrollment_with_totp(desk, app, session, person):
    case_id = case_id_of(open_case(desk, person))
    assert verify_document(desk, case_id).status_code == 303
    code, sheet = issue_code(desk, case_id)
    sheet_html = sheet.get_data(as_text=True)
    assert sheet.headers["Cache-Control"] == "no-store"
    assert "<svg" in sheet_html and "Valable jusqu'au" in text_of(sheet)
    assert "/activation" in sheet_html
    # The sheet is shown once: the case page does not show the code again.
    assert code not in desk.get(f"/guichet/dossiers/{case_id}").get_data(as_text=True)
    assert code.replace("-", "") not in desk.get(f"/guichet/dossiers/{case_id}").get_data(as_text=True)

    browser = app.test_client()
    prefilled = browser.get(f"/activation?code={code}")
    assert f'value="{code}"' in prefilled.get_data(as_text=True)
    assert 'autocomplete="off"' in prefilled.get_data(as_text=True)
    redeemed = redeem(browser, code)
    assert redeemed.status_code == 303
    choice = browser.get("/activation/moyen")
    assert "Application d'authentification (TOTP)" in text_of(choice)
    setup = browser.post("/activation/application", data={"csrf_token": token_from(choice.get_data(as_text=True))})
    assert setup.status_code == 200
    assert setup.headers["Cache-Control"] == "no-store"
    html = setup.get_data(as_text=True)
    seed = SEED_RE.search(html).group(1).replace(" ", "")
    assert "<svg" in html
    bad_code = "000000" if pyotp.TOTP(seed).now() != "000000" else "111111"
    wrong = browser.post("/activation/application/confirmer", data={"csrf_token": token_from(html), "code": bad_code})
    assert wrong.status_code == 400
    confirmed = browser.post("/activation/application/confirmer",
                             data={"csrf_token": token_from(html), "code": pyotp.TOTP(seed).now()})
    assert confirmed.status_code == 303
    pw_page = browser.get("/activation/suite")
    assert 'autocomplete="new-password"' in pw_page.get_data(as_text=True)
    weak = browser.post("/activation/mot-de-passe", data={"csrf_token": token_from(pw_page.get_data(as_text=True)),
                                                          "password": "court", "confirmation": "court"})
    assert weak.status_code == 400
    assert "field-error" in weak.get_data(as_text=True)
    ok = browser.post("/activation/mot-de-passe", data={"csrf_token": token_from(pw_page.get_data(as_text=True)),
                                                        "password": GOOD_PASSWORD, "confirmation": GOOD_PASSWORD})
    assert ok.status_code == 303
    offer = browser.get("/activation/suite")
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    before_codes = browser.get_cookie(cookie_name).value
    codes = browser.post("/activation/codes-de-secours",
                         data={"csrf_token": token_from(offer.get_data(as_text=True))})
    assert codes.status_code == 200
    shown = RECOVERY_RE.findall(codes.get_data(as_text=True))
    assert len(shown) == 10
    # Replaying the cookie of before the codes were shown gives no second set (the database decides).
    after_codes = browser.get_cookie(cookie_name).value
    browser.set_cookie(cookie_name, before_codes)
    replay = browser.post("/activation/codes-de-secours", data={"csrf_token": token_from(offer.get_data(as_text=True))})
    assert replay.status_code == 303 and not RECOVERY_RE.findall(replay.get_data(as_text=True))
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(RecoveryCode)
                          .where(RecoveryCode.identity_id == person.id, RecoveryCode.replaced_at.is_(None))) == 10
    browser.set_cookie(cookie_name, after_codes)
    done = browser.get("/activation/terminee")
    assert done.status_code == 200
    assert "données de santé" in text_of(done)
    # The step is over: going back does not reopen it.
    assert browser.get("/activation/suite").status_code == 400

    session.expire_all()
    mies = session.scalars(select(Mie).where(Mie.identity_id == person.id)).all()
    totp = [m for m in mies if m.type == "totp"]
    assert len(totp) == 1 and totp[0].status == "active"
    assert totp[0].proofing_method == "face_to_face"
    assert any(m.type == "password" and m.status == "active" for m in mies)
    assert session.scalar(select(EnrollmentCase.state).where(EnrollmentCase.public_id == case_id)) == "activated"
    # The person's page at the desk shows the MIE and its identity check.
    assert "vérifiée en face à face" in text_of(desk.get(f"/guichet/personnes/{person.public_id}"))

    # The code is spent: a second use is refused with its message, and nothing changes.
    again = redeem(app.test_client(), code)
    assert again.status_code == 400
    assert REUSED_CODE in text_of(again)


def test_wrong_code_refused_and_nothing_changes(desk, app, session, person):
    case_id, code = ready_code(desk, person)
    browser = app.test_client()
    wrong = redeem(browser, "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01")
    assert wrong.status_code == 400
    assert WRONG_CODE in text_of(wrong)
    assert redeem(browser, "x" * 10000).status_code == 400
    assert browser.get("/activation/moyen").status_code == 400
    session.expire_all()
    assert session.scalar(select(EnrollmentCase.state).where(EnrollmentCase.public_id == case_id)) == "mie_issued"
    assert session.scalar(select(ActivationCode.used_at)) is None
    assert session.scalar(select(func.count()).select_from(Mie).where(Mie.identity_id == person.id)) == 0


def test_activation_csrf_missing_refused(app, desk, session, person):
    _case_id, code = ready_code(desk, person)
    response = app.test_client().post("/activation", data={"code": code})
    assert response.status_code == 400
    session.expire_all()
    assert session.scalar(select(ActivationCode.used_at)) is None


def test_activation_steps_need_a_redeemed_code(client):
    for url in ("/activation/moyen", "/activation/suite", "/activation/terminee"):
        assert client.get(url).status_code == 400


def test_replacement_revokes_the_lost_mie(desk, rt, session, person):
    from hospiconnect.authenticators import services as mie_services

    lost, _uri, _svg = mie_services.begin_totp(session, person, label="Vieux téléphone", actor="test", keys=rt.keys,
                                               issuer="Test")
    session.commit()
    page = text_of(desk.get(f"/guichet/personnes/{person.public_id}"))
    assert "Vieux téléphone" in page
    case_id = case_id_of(open_case(desk, person, kind="replacement", lost_mie=lost.public_id))
    session.expire_all()
    assert session.get(Mie, lost.id).status == "revoked"
    assert session.scalar(select(EnrollmentCase.kind).where(EnrollmentCase.public_id == case_id)) == "replacement"


def test_issuing_before_the_check_is_refused(desk, session, person):
    case_id = case_id_of(open_case(desk, person))
    page = desk.get(f"/guichet/dossiers/{case_id}")
    refused = desk.post(f"/guichet/dossiers/{case_id}/code",
                        data={"csrf_token": token_from(page.get_data(as_text=True))})
    assert refused.status_code == 409
    assert session.scalar(select(func.count()).select_from(ActivationCode)) == 0


def test_control_characters_never_fail(desk, app, person):
    assert desk.get("/guichet?q=dup%00ont").status_code == 200
    assert desk.get("/guichet/personnes/ab%00cd").status_code == 404
    case_id = case_id_of(open_case(desk, person))
    assert verify_document(desk, case_id, document_type="cni\x00").status_code == 400
    assert verify_document(desk, case_id, last4="12\x00B").status_code == 400
    assert verify_document(desk, case_id, expiry_date="2031\x00-01-01").status_code == 400
    assert verify_document(desk, case_id, place="Accueil\x00RH").status_code == 303
    browser = app.test_client()
    assert browser.get("/activation?code=AB%00CD").status_code == 200
    assert redeem(browser, "ABCD\x00EFGH").status_code == 400


def test_repeated_wrong_codes_are_throttled(app):
    browser = app.test_client()
    token = token_from(browser.get("/activation").get_data(as_text=True))
    statuses = []
    for _ in range(40):
        response = browser.post("/activation", data={"csrf_token": token, "code": "ZZZZ-EFGH-JKMN-PQRS-TVWX-YZ01"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert "Trop de tentatives" in text_of(response)
            break
    assert statuses[0] == 400 and statuses[-1] == 429


def test_face_to_face_enrollment_with_a_security_key(desk, app, rt, session, person):
    import json

    from tests.softauthn import SoftAuthenticator

    _case_id, code = ready_code(desk, person)
    browser = app.test_client()
    assert redeem(browser, code).status_code == 303
    page = browser.get("/activation/cle")
    assert page.status_code == 200
    token = re.search(r'data-csrf="([^"]+)"', page.get_data(as_text=True)).group(1)
    headers = {"X-CSRFToken": token, "Accept": "application/json"}
    options = browser.post("/activation/cle/options", data="{}", content_type="application/json", headers=headers)
    assert options.status_code == 200, text_of(options)
    authenticator = SoftAuthenticator(origin=rt.settings.webauthn_origins[0], attachment="cross-platform",
                                      transports=("usb",))
    credential = authenticator.create(options.json["publicKey"], uv=True)
    bad = browser.post("/activation/cle", data="not json", content_type="application/json", headers=headers)
    assert bad.status_code == 400
    done = browser.post("/activation/cle", data=json.dumps({"challengeId": options.json["challengeId"],
                                                             "label": "Clé bleue", "credential": credential}),
                        content_type="application/json", headers=headers)
    assert done.status_code == 201, text_of(done)
    assert done.json["redirect"] == "/activation/suite"
    session.expire_all()
    key = session.scalar(select(Mie).where(Mie.identity_id == person.id, Mie.type == "webauthn"))
    assert key.status == "active" and key.proofing_method == "face_to_face"
    # The person goes on to the password form; a second ceremony is refused.
    assert 'autocomplete="new-password"' in browser.get("/activation/suite").get_data(as_text=True)
    again = browser.post("/activation/cle/options", data="{}", content_type="application/json", headers=headers)
    assert again.status_code == 409


# --- verification level and MIE on the person's page -------------------------------------------------------


def verification_section(page_text: str) -> str:
    """The « Vérification d'identité et MIE » part of the desk's person page (up to the cases)."""
    start = page_text.index("Vérification d'identité et MIE")
    return page_text[start:page_text.index("Dossiers d'enrôlement", start)]


def mie_row(page_html: str, public_id: str) -> str:
    match = re.search(rf'<tr data-mie="{public_id}">(.*?)</tr>', page_html, re.S)
    assert match, f"no row for MIE {public_id}"
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", match.group(1)))).strip()


def test_person_page_shows_the_verification_level_the_check_and_each_mie(desk, app, session, officer, person):
    before = verification_section(text_of(desk.get(f"/guichet/personnes/{person.public_id}")))
    assert "aucune vérification" in before and "Aucune vérification d'identité enregistrée" in before
    assert "Aucun moyen d'identification." in before
    assert "substantiel" not in before

    case_id = case_id_of(open_case(desk, person))
    assert verify_document(desk, case_id, checked_at="2026-11-20T10:30", place="Guichet du hall A").status_code == 303
    # Verified but not activated yet: the check already gives the level.
    verified = verification_section(text_of(desk.get(f"/guichet/personnes/{person.public_id}")))
    assert "substantiel" in verified
    assert "en face à face, sur pièce d'identité (carte nationale d'identité), le 20/11/2026 à 10:30" in verified
    assert f"{officer.display_name} ({officer.user_name}) — Guichet du hall A" in verified

    code, _sheet = issue_code(desk, case_id)
    browser = app.test_client()
    assert redeem(browser, code).status_code == 303
    setup = browser.post("/activation/application",
                         data={"csrf_token": token_from(browser.get("/activation/moyen").get_data(as_text=True))})
    html = setup.get_data(as_text=True)
    seed = SEED_RE.search(html).group(1).replace(" ", "")
    assert browser.post("/activation/application/confirmer",
                        data={"csrf_token": token_from(html), "code": pyotp.TOTP(seed).now()}).status_code == 303

    session.expire_all()
    totp = session.scalar(select(Mie).where(Mie.identity_id == person.id, Mie.type == "totp"))
    page = desk.get(f"/guichet/personnes/{person.public_id}").get_data(as_text=True)
    row = mie_row(page, totp.public_id)
    assert row.startswith("Application d'authentification (TOTP)")
    assert f"{totp.label} Actif" in row
    assert "identité vérifiée en face à face au guichet, le 20/11/2026 à 10:30" in row
    assert row.endswith("jamais")

    # A sign-in sets the last use, shown in the establishment's time zone.
    totp.last_used_at = dt.datetime(2026, 11, 21, 7, 5, tzinfo=dt.timezone.utc)
    session.commit()
    row = mie_row(desk.get(f"/guichet/personnes/{person.public_id}").get_data(as_text=True), totp.public_id)
    assert row.endswith("21/11/2026 à 08:05")


def test_a_cancelled_case_gives_no_verification_level(desk, app, rt, session, officer, person):
    from hospiconnect.enrollment import services as enrollment

    case_id = case_id_of(open_case(desk, person))
    assert verify_document(desk, case_id).status_code == 303
    enrollment.cancel_case(session, enrollment.get_case(session, case_id), actor="test", reason="erreur de personne")
    session.commit()
    section = verification_section(text_of(desk.get(f"/guichet/personnes/{person.public_id}")))
    assert "aucune vérification" in section and "substantiel" not in section
