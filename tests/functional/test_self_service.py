"""« Mes moyens d'identification » (/mes-moyens) through the Flask test client.

Each test opens an SSO session directly with :func:`hospiconnect.idp.login_session.open`, puts its cookie in
the client and drives the pages with their CSRF tokens. TOTP codes are computed with pyotp from the seed
the page shows; security keys are played by tests/softauthn.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlalchemy import func, select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import services
from hospiconnect.authenticators.interfaces import InvalidRecoveryCode
from hospiconnect.authenticators.models import Mie, Notification, WebAuthnChallenge, WebAuthnCredential
from hospiconnect.db import utcnow
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.ratelimit import DatabaseBackend, Throttle, ThrottlePolicy
from tests.factories import create_identity
from tests.softauthn import SoftAuthenticator

GOOD_PASSWORD = "correct cheval pile agrafe"
REAUTH = "Pour modifier vos moyens d'identification, reconnectez-vous avec deux facteurs"
LAST_FACTOR = "Impossible de retirer votre dernier second facteur"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
DATA_CSRF_RE = re.compile(r'data-csrf="([^"]+)"')


# --- helpers ----------------------------------------------------------------------------------------------


def sign_in(client, rt, identity, *, mfa: bool = True, minutes_ago: int = 0, recovery_only: bool = False,
            client_ip: str = "127.0.0.1") -> int:
    """Open an SSO session for ``identity`` as the login pages would and give its cookie to ``client``;
    return the session's row id. ``minutes_ago`` dates the authentication (and its second factor)."""
    when = utcnow() - dt.timedelta(minutes=minutes_ago)
    amr = ["mfa", "otp", "pwd"] if mfa else (["pwd"] if not recovery_only else ["pwd"])
    with rt.db.session() as s:
        sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=identity.id, amr=amr,
                                         acr="eidas2" if mfa else "eidas1", mfa=mfa, existing=None,
                                         client_ip=client_ip, user_agent="pytest", now=when)
        sso.recovery_only = recovery_only
        sso_id = sso.id
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)
    return sso_id


def text_of(response) -> str:
    """The page's text with HTML entities decoded (Jinja escapes apostrophes)."""
    return unescape(response.get_data(as_text=True))


def token_from(html: str) -> str:
    match = CSRF_RE.search(html) or DATA_CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def csrf_for(client, app) -> str:
    """Return a CSRF token valid for ``client``'s Flask session, without needing a page that has a form
    (a refused session sees none)."""
    import flask
    from flask_wtf.csrf import generate_csrf

    with app.test_request_context():
        token = generate_csrf()
        raw = flask.session["csrf_token"]
    with client.session_transaction() as flask_session:
        flask_session["csrf_token"] = raw
    return token


def post_json(client, url: str, payload, token: str, *, raw: bytes | None = None):
    return client.post(url, data=raw if raw is not None else json.dumps(payload), content_type="application/json",
                       headers={"X-CSRFToken": token, "Accept": "application/json"})


def add_totp(session, rt, identity, label: str = "Téléphone") -> tuple[Mie, str]:
    """Bind an active TOTP through the services; return the MIE and its seed. The confirmation uses the
    time step of five minutes ago so that the current code stays usable."""
    mie, uri, _svg = services.begin_totp(session, identity, label=label, actor="test", keys=rt.keys,
                                         issuer="Test")
    seed = parse_qs(urlsplit(uri).query)["secret"][0]
    past = utcnow() - dt.timedelta(minutes=5)
    services.confirm_totp(session, identity, mie.public_id, pyotp.TOTP(seed).at(past), actor="test",
                          keys=rt.keys, now=past)
    session.commit()
    return mie, seed


def add_key(client, app, rt, *, label: str = "Clé bleue", attachment: str = "cross-platform", uv: bool = True):
    """Register a software security key through the JSON endpoints; return the final response."""
    token = csrf_for(client, app)
    options = post_json(client, "/mes-moyens/cle/options", {}, token)
    assert options.status_code == 200, text_of(options)
    authenticator = SoftAuthenticator(origin=rt.settings.webauthn_origins[0], attachment=attachment,
                                      transports=("internal",) if attachment == "platform" else ("usb",))
    credential = authenticator.create(options.json["publicKey"], uv=uv)
    return post_json(client, "/mes-moyens/cle", {"challengeId": options.json["challengeId"], "label": label,
                                                 "credential": credential}, token)


def snapshot(session, identity) -> tuple:
    """Everything a refused request must leave as it was: the person's MIE and their recovery codes."""
    session.expire_all()
    mies = tuple(session.execute(select(Mie.public_id, Mie.label, Mie.status).where(Mie.identity_id == identity.id)
                                 .order_by(Mie.id)).all())
    return mies, services.remaining_recovery_codes(session, identity)


def mie_count(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Mie)) or 0


def tags(session, prefix: str = "") -> list[str]:
    session.expire_all()
    return [t for t in session.scalars(select(AuditEvent.tag).order_by(AuditEvent.seq)) if t.startswith(prefix)]


def subjects_of_notifications(session, identity) -> list[str]:
    session.expire_all()
    return list(session.scalars(select(Notification.subject).where(Notification.identity_id == identity.id)
                                .order_by(Notification.id)))


@pytest.fixture()
def person(session):
    return create_identity(session)


@pytest.fixture()
def other(session):
    return create_identity(session)


# --- access -------------------------------------------------------------------------------------------------


def test_without_a_session_the_page_explains_how_to_sign_in(client, app, rt):
    response = client.get("/mes-moyens")
    assert response.status_code == 401
    html = text_of(response)
    assert "Connexion requise" in html and "applications de l'établissement" in html
    assert "pas encore de page de connexion directe" in html
    client.set_cookie(login_session.cookie_name(rt.settings), "inconnu-" + "x" * 40)
    assert client.get("/mes-moyens").status_code == 401
    # The JSON endpoints answer in JSON.
    response = post_json(client, "/mes-moyens/cle/options", {}, csrf_for(client, app))
    assert response.status_code == 401
    assert response.json["error"] == "session_required"


def test_an_ended_session_no_longer_opens_the_page(client, rt, session, person):
    sso_id = sign_in(client, rt, person)
    assert client.get("/mes-moyens").status_code == 200
    sso = session.get(SsoSession, sso_id)
    login_session.end(session, sso, reason="logout", keys=rt.keys, settings=rt.settings)
    session.commit()
    assert client.get("/mes-moyens").status_code == 401


# --- the list -------------------------------------------------------------------------------------------------


def test_the_list_shows_my_mie_their_dates_codes_and_recent_sign_ins(client, app, rt, session, person, other):
    services.set_password(session, person, GOOD_PASSWORD, actor="test", establishment_name="CHU")
    session.commit()
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy.from_settings(rt.settings))
    services.verify_password(session, person.user_name, GOOD_PASSWORD, client_ip="203.0.113.7", throttle=throttle)
    session.commit()
    with pytest.raises(Exception):
        services.verify_password(session, person.user_name, "mauvais mot de passe", client_ip="203.0.113.8",
                                 throttle=throttle)
    add_totp(session, rt, person, "Téléphone pro")
    old, _seed = add_totp(session, rt, person, "Ancien téléphone")
    services.remove(session, old, actor="test")
    services.generate_recovery_codes(session, person, actor="test", keys=rt.keys)
    session.commit()
    add_totp(session, rt, other, "Téléphone d'une autre personne")

    sign_in(client, rt, person)
    assert add_key(client, app, rt, label="Portable", attachment="platform").status_code == 201
    assert add_key(client, app, rt, label="Clé bleue").status_code == 201

    response = client.get("/mes-moyens")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = text_of(response)
    for text in ("Mes moyens d'identification", "Mot de passe", "Application d'authentification (TOTP)",
                 "Authentificateur de l'appareil", "Clé de sécurité", "Téléphone pro", "Portable", "Clé bleue",
                 "Actif", "Renommer", "Retirer", "Il vous reste 10 codes de secours sur 10",
                 "Générer de nouveaux codes de secours", "Moyens retirés (1)", "Ancien téléphone",
                 "Mes connexions récentes", "Mot de passe vérifié", "Mot de passe refusé", "203.0.113.7",
                 "203.0.113.8", "Échec", "Connexion ouverte", "avec code PIN ou biométrie"):
        assert text in html, text
    assert "Téléphone d'une autre personne" not in html
    # Dates are shown in the establishment's time zone, dd/mm/yyyy hh:mm.
    assert re.search(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", html)
    # Only "authn:" events are listed as sign-ins (not the MIE changes).
    assert "mie:" not in html


def test_recent_sign_ins_are_the_last_twenty(client, rt, session, person):
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy.from_settings(rt.settings))
    services.set_password(session, person, GOOD_PASSWORD, actor="test", establishment_name="CHU")
    session.commit()
    for i in range(25):
        services.verify_password(session, person.user_name, GOOD_PASSWORD, client_ip=f"198.51.100.{i}",
                                 throttle=throttle)
        session.commit()
    sign_in(client, rt, person, client_ip="192.0.2.1")
    html = text_of(client.get("/mes-moyens"))
    table = html.split("titre-connexions", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 21  # header + 20 rows
    assert "192.0.2.1" in table and "198.51.100.24" in table and "198.51.100.5" not in table


# --- TOTP -------------------------------------------------------------------------------------------------------


def begin_totp_page(client, label: str = "Téléphone pro"):
    page = client.get("/mes-moyens/application")
    assert page.status_code == 200
    return client.post("/mes-moyens/application", data={"csrf_token": token_from(text_of(page)),
                                                        "label": label})


def test_add_totp_end_to_end(client, rt, session, person):
    existing, _ = add_totp(session, rt, person, "Premier téléphone")
    sign_in(client, rt, person)
    start = text_of(client.get("/mes-moyens/application"))
    assert 'name="label"' in start and "Application d'authentification" in start
    response = begin_totp_page(client, "Téléphone pro")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    html = text_of(response)
    assert "<svg" in html and 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html
    uri = re.search(r'id="totp-uri"[^>]*value="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert uri.startswith("otpauth://totp/")
    seed = parse_qs(urlsplit(uri).query)["secret"][0]
    assert " ".join(seed[i:i + 4] for i in range(0, len(seed), 4)) in html  # the key to type by hand
    pending = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.label == "Téléphone pro")).one()
    assert pending.status == "pending"
    confirm_url = f"/mes-moyens/application/{pending.public_id}"
    token = token_from(html)

    # A wrong code: a message next to the field, still pending, the QR code is not shown again.
    wrong = str((int(pyotp.TOTP(seed).now()) + 1) % 1_000_000).zfill(6)
    response = client.post(confirm_url, data={"csrf_token": token, "code": wrong})
    assert response.status_code == 400
    html = text_of(response)
    assert "Code incorrect" in html and 'aria-invalid="true"' in html and "<svg" not in html
    assert "Recommencer avec un nouveau code QR" in html
    session.expire_all()
    assert session.get(Mie, pending.id).status == "pending"

    response = client.post(confirm_url, data={"csrf_token": token, "code": pyotp.TOTP(seed).now()})
    assert response.status_code == 303 and response.headers["Location"].endswith("/mes-moyens")
    session.expire_all()
    mie = session.get(Mie, pending.id)
    assert mie.status == "active" and mie.activated_at is not None
    assert "« Téléphone pro » est activée" in text_of(client.get("/mes-moyens"))
    assert tags(session, "mie:totp:")[-2:] == ["mie:totp:created", "mie:totp:activated"]
    assert subjects_of_notifications(session, person)[-2:] == [
        "HospiConnect : Nouveau moyen d'identification en cours d'enregistrement",
        "HospiConnect : Nouveau moyen d'identification activé"]
    assert session.get(Mie, existing.id).status == "active"


@pytest.mark.parametrize("code, message", [
    ("1234567", "6 chiffres"), ("abcdef", "6 chiffres"), ("", "6 chiffres"), ("12345", "6 chiffres"),
    ("9" * 5000, "6 chiffres"),
])
def test_a_malformed_code_keeps_the_totp_pending(client, rt, session, person, code, message):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    html = text_of(begin_totp_page(client))
    pending = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.status == "pending")).one()
    response = client.post(f"/mes-moyens/application/{pending.public_id}",
                           data={"csrf_token": token_from(html), "code": code})
    assert response.status_code == 400
    assert message in text_of(response)
    session.expire_all()
    assert session.get(Mie, pending.id).status == "pending"


def test_restarting_the_totp_setup_abandons_the_pending_one(client, rt, session, person):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    html = text_of(begin_totp_page(client, "Essai"))
    first = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.status == "pending")).one()
    response = client.post("/mes-moyens/application", data={"csrf_token": token_from(html), "label": "Essai",
                                                             "replace": first.public_id})
    assert response.status_code == 200 and "<svg" in text_of(response)
    session.expire_all()
    assert session.get(Mie, first.id).status == "revoked"
    assert session.scalar(select(func.count()).select_from(Mie).where(
        Mie.identity_id == person.id, Mie.status == "pending")) == 1


@pytest.mark.parametrize("label, message", [
    ("", "Donnez un nom"), ("x" * 61, "60 caractères"), ("Clé\u202eevil", "caractères non autorisés"),
])
def test_a_bad_totp_label_is_refused_next_to_the_field(client, rt, session, person, label, message):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    before = mie_count(session)
    response = begin_totp_page(client, label)
    assert response.status_code == 400
    html = text_of(response)
    assert message in html and 'id="f-label-error"' in html and "<svg" not in html
    assert mie_count(session) == before


# --- rename and remove --------------------------------------------------------------------------------------------


def test_rename(client, rt, session, person):
    mie, _ = add_totp(session, rt, person, "Téléphone")
    sign_in(client, rt, person)
    page = client.get(f"/mes-moyens/{mie.public_id}/renommer")
    assert page.status_code == 200 and 'value="Téléphone"' in text_of(page)
    token = token_from(text_of(page))
    response = client.post(f"/mes-moyens/{mie.public_id}/renommer", data={"csrf_token": token,
                                                                          "label": "  Téléphone du service  "})
    assert response.status_code == 303
    session.expire_all()
    assert session.get(Mie, mie.id).label == "Téléphone du service"
    assert tags(session, "mie:totp:")[-1] == "mie:totp:renamed"
    assert subjects_of_notifications(session, person)[-1] == "HospiConnect : Moyen d'identification renommé"


@pytest.mark.parametrize("label, message", [
    ("", "Donnez un nom"), ("   ", "Donnez un nom"), ("é" * 61, "60 caractères"), ("a\x00b", "non autorisés"),
    ("x" * 100_000, "60 caractères"),
])
def test_a_bad_new_name_is_refused_and_nothing_changes(client, rt, session, person, label, message):
    mie, _ = add_totp(session, rt, person, "Téléphone")
    sign_in(client, rt, person)
    token = token_from(text_of(client.get(f"/mes-moyens/{mie.public_id}/renommer")))
    before = snapshot(session, person)
    response = client.post(f"/mes-moyens/{mie.public_id}/renommer", data={"csrf_token": token, "label": label})
    assert response.status_code == 400
    html = text_of(response)
    assert message in html and 'aria-invalid="true"' in html
    assert snapshot(session, person) == before


def test_the_last_second_factor_cannot_be_removed(client, rt, session, person):
    mie, _ = add_totp(session, rt, person)
    sign_in(client, rt, person)
    assert "C'est votre seul second facteur" in text_of(client.get("/mes-moyens"))
    page = client.get(f"/mes-moyens/{mie.public_id}/retirer")
    html = text_of(page)
    assert page.status_code == 200 and LAST_FACTOR in html and "Retirer ce moyen" not in html
    before = snapshot(session, person)
    response = client.post(f"/mes-moyens/{mie.public_id}/retirer", data={"csrf_token": csrf_for(client, client.application)})
    assert response.status_code == 409
    assert LAST_FACTOR in text_of(response)
    assert snapshot(session, person) == before


def test_a_second_factor_can_be_removed_when_another_remains(client, app, rt, session, person):
    first, _ = add_totp(session, rt, person, "Ancien téléphone")
    add_totp(session, rt, person, "Nouveau téléphone")
    elsewhere = sign_in(app.test_client(), rt, person)  # another browser of the same person
    current = sign_in(client, rt, person)
    page = text_of(client.get(f"/mes-moyens/{first.public_id}/retirer"))
    assert "Retirer ce moyen" in page and 'name="end_other_sessions"' in page
    response = client.post(f"/mes-moyens/{first.public_id}/retirer",
                           data={"csrf_token": token_from(page), "end_other_sessions": "1"})
    assert response.status_code == 303
    session.expire_all()
    removed = session.get(Mie, first.id)
    assert removed.status == "revoked" and removed.revoked_at is not None
    assert session.get(SsoSession, elsewhere).end_reason == "mie_removed"
    assert session.get(SsoSession, current).ended_at is None
    assert "mie:totp:revoked" in tags(session)
    assert subjects_of_notifications(session, person)[-1] == "HospiConnect : Moyen d'identification retiré"
    html = text_of(client.get("/mes-moyens"))
    assert "autres sessions ouvertes (1) sont fermées" in html and "Moyens retirés (1)" in html


def test_removing_without_ending_other_sessions_keeps_them(client, app, rt, session, person):
    first, _ = add_totp(session, rt, person, "A")
    add_totp(session, rt, person, "B")
    elsewhere = sign_in(app.test_client(), rt, person)
    sign_in(client, rt, person)
    token = token_from(text_of(client.get(f"/mes-moyens/{first.public_id}/retirer")))
    assert client.post(f"/mes-moyens/{first.public_id}/retirer", data={"csrf_token": token}).status_code == 303
    session.expire_all()
    assert session.get(SsoSession, elsewhere).ended_at is None


def test_a_pending_totp_can_be_abandoned(client, rt, session, person):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    begin_totp_page(client, "Jamais fini")
    pending = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.status == "pending")).one()
    assert "Abandonner" in text_of(client.get("/mes-moyens"))
    page = text_of(client.get(f"/mes-moyens/{pending.public_id}/retirer"))
    assert "Abandonner l'ajout" in page
    response = client.post(f"/mes-moyens/{pending.public_id}/retirer", data={"csrf_token": token_from(page)})
    assert response.status_code == 303
    session.expire_all()
    assert session.get(Mie, pending.id).status == "revoked"


def test_the_password_is_neither_renamed_nor_removed_here(client, rt, session, person):
    password = services.set_password(session, person, GOOD_PASSWORD, actor="test", establishment_name="CHU")
    session.commit()
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    token = csrf_for(client, client.application)
    before = snapshot(session, person)
    for url in (f"/mes-moyens/{password.public_id}/renommer", f"/mes-moyens/{password.public_id}/retirer"):
        assert client.get(url).status_code == 409
        response = client.post(url, data={"csrf_token": token, "label": "x"})
        assert response.status_code == 409
        assert "Le mot de passe ne se renomme pas" in text_of(response)
    assert snapshot(session, person) == before


def test_someone_elses_mie_is_not_found_and_unchanged(client, rt, session, person, other):
    add_totp(session, rt, person)
    theirs, _ = add_totp(session, rt, other, "Le leur")
    add_totp(session, rt, other, "Le leur aussi")
    their_pending, _uri, _svg = services.begin_totp(session, other, label="En cours", actor="test", keys=rt.keys,
                                                    issuer="Test")
    session.commit()
    sign_in(client, rt, person)
    token = csrf_for(client, client.application)
    before = snapshot(session, other)
    for url in (f"/mes-moyens/{theirs.public_id}/renommer", f"/mes-moyens/{theirs.public_id}/retirer"):
        assert client.get(url).status_code == 404
        response = client.post(url, data={"csrf_token": token, "label": "Piraté", "end_other_sessions": "1"})
        assert response.status_code == 404
        assert "Moyen d'identification introuvable" in text_of(response)
    response = client.post(f"/mes-moyens/application/{their_pending.public_id}",
                           data={"csrf_token": token, "code": "123456"})
    assert response.status_code == 404
    response = client.post("/mes-moyens/application", data={"csrf_token": token, "label": "x",
                                                            "replace": their_pending.public_id})
    assert response.status_code == 404
    assert snapshot(session, other) == before


@pytest.mark.parametrize("public_id", [str(uuid.uuid4()), str(uuid.uuid4()).upper(), "pas-un-identifiant",
                                       "x" * 500, "%00", "%C3%A9"])
def test_an_unknown_mie_id_is_not_found(client, rt, session, person, public_id):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    token = csrf_for(client, client.application)
    before = snapshot(session, person)
    for url in (f"/mes-moyens/{public_id}/renommer", f"/mes-moyens/{public_id}/retirer"):
        assert client.get(url).status_code == 404
        assert client.post(url, data={"csrf_token": token, "label": "x"}).status_code == 404
    assert client.post(f"/mes-moyens/application/{public_id}",
                       data={"csrf_token": token, "code": "123456"}).status_code == 404
    assert snapshot(session, person) == before


def test_a_form_without_its_csrf_token_changes_nothing(client, rt, session, person):
    mie, _ = add_totp(session, rt, person)
    sign_in(client, rt, person)
    before = snapshot(session, person)
    response = client.post(f"/mes-moyens/{mie.public_id}/renommer", data={"label": "Sans jeton"})
    assert response.status_code == 400
    assert "Le formulaire a expiré" in text_of(response)
    assert client.post("/mes-moyens/codes-de-secours").status_code == 400
    assert snapshot(session, person) == before


# --- recovery codes ---------------------------------------------------------------------------------------------


def test_regenerated_recovery_codes_are_shown_once_and_replace_the_old_ones(client, rt, session, person):
    add_totp(session, rt, person)
    old_codes = services.generate_recovery_codes(session, person, actor="test", keys=rt.keys)
    session.commit()
    sign_in(client, rt, person)
    page = client.get("/mes-moyens/codes-de-secours")
    html = text_of(page)
    assert page.status_code == 200 and "cesseront de fonctionner" in html and "Il vous en reste 10" in html
    response = client.post("/mes-moyens/codes-de-secours", data={"csrf_token": token_from(html)})
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    html = text_of(response)
    new_codes = re.findall(r"<li><code>([0-9A-Z-]{19})</code></li>", html)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert "ne seront plus jamais affichés" in html and "anciens codes de secours ne fonctionnent plus" in html
    assert "mie-print" in html  # the print layout
    assert tags(session, "mie:recovery_codes:")[-1] == "mie:recovery_codes:generated"
    assert subjects_of_notifications(session, person)[-1] == "HospiConnect : Nouveaux codes de secours"

    # Shown once: no other page shows them.
    for url in ("/mes-moyens", "/mes-moyens/codes-de-secours"):
        other_html = text_of(client.get(url))
        assert not any(code in other_html for code in new_codes)

    throttle = Throttle(DatabaseBackend(), ThrottlePolicy.from_settings(rt.settings))
    session.expire_all()
    with pytest.raises(InvalidRecoveryCode):
        services.use_recovery_code(session, person, old_codes[0], client_ip="127.0.0.1", throttle=throttle,
                                   keys=rt.keys)
    services.use_recovery_code(session, person, new_codes[0], client_ip="127.0.0.1", throttle=throttle,
                               keys=rt.keys)
    session.commit()
    assert "Il vous reste 9 codes de secours sur 10" in text_of(client.get("/mes-moyens"))


# --- recent two-factor authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("mfa, minutes_ago", [(True, 11), (False, 0)], ids=["2fa-too-old", "password-only"])
def test_changes_need_a_recent_two_factor_sign_in(client, app, rt, session, person, mfa, minutes_ago):
    mie, _ = add_totp(session, rt, person)
    add_totp(session, rt, person, "Deuxième")
    services.generate_recovery_codes(session, person, actor="test", keys=rt.keys)
    session.commit()
    sign_in(client, rt, person, mfa=mfa, minutes_ago=minutes_ago)
    index = client.get("/mes-moyens")
    assert index.status_code == 200 and REAUTH in text_of(index)
    for url in ("/mes-moyens/application", "/mes-moyens/cle", f"/mes-moyens/{mie.public_id}/renommer",
                f"/mes-moyens/{mie.public_id}/retirer", "/mes-moyens/codes-de-secours"):
        response = client.get(url)
        assert response.status_code == 403, url
        html = text_of(response)
        assert REAUTH in html and "Se déconnecter" in html
    token = csrf_for(client, app)
    before = snapshot(session, person)
    journal_before = len(tags(session))
    posts = [("/mes-moyens/application", {"label": "x"}), (f"/mes-moyens/{mie.public_id}/renommer", {"label": "x"}),
             (f"/mes-moyens/{mie.public_id}/retirer", {"end_other_sessions": "1"}),
             ("/mes-moyens/codes-de-secours", {})]
    for url, data in posts:
        response = client.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 403, url
        assert REAUTH in text_of(response)
    response = post_json(client, "/mes-moyens/cle/options", {}, token)
    assert response.status_code == 403 and response.json["error"] == "reauthentication_required"
    assert REAUTH in response.json["message"]
    assert snapshot(session, person) == before
    assert session.scalar(select(func.count()).select_from(WebAuthnChallenge)) == 0
    assert tags(session)[journal_before:] == ["mie:self_service:refused"] * 5


def test_within_the_window_changes_are_allowed(client, rt, session, person):
    mie, _ = add_totp(session, rt, person)
    sign_in(client, rt, person, minutes_ago=9)
    assert client.get(f"/mes-moyens/{mie.public_id}/renommer").status_code == 200


def test_a_person_without_second_factor_is_sent_to_enrolment(client, rt, session, person):
    sign_in(client, rt, person, mfa=False)
    html = text_of(client.get("/mes-moyens"))
    assert "pas encore de second facteur" in html
    response = client.get("/mes-moyens/application")
    assert response.status_code == 403
    assert "service d'enrôlement" in text_of(response)


def test_a_recovery_code_session_may_view_and_add_only(client, app, rt, session, person):
    lost, _ = add_totp(session, rt, person, "Téléphone perdu")
    services.generate_recovery_codes(session, person, actor="test", keys=rt.keys)
    session.commit()
    sign_in(client, rt, person, mfa=False, recovery_only=True)
    html = text_of(client.get("/mes-moyens"))
    assert "connecté(e) avec un code de secours" in html
    token = csrf_for(client, app)
    before = snapshot(session, person)
    for url, data in ((f"/mes-moyens/{lost.public_id}/renommer", {"label": "x"}),
                      (f"/mes-moyens/{lost.public_id}/retirer", {}), ("/mes-moyens/codes-de-secours", {})):
        assert client.get(url).status_code == 403
        response = client.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 403
        assert "code de secours" in text_of(response) and REAUTH in text_of(response)
    assert snapshot(session, person) == before

    # Adding is what this session is for: a TOTP, then a key.
    response = begin_totp_page(client, "Nouveau téléphone")
    assert response.status_code == 200 and "<svg" in text_of(response)
    html = text_of(response)
    seed = parse_qs(urlsplit(re.search(r'id="totp-uri"[^>]*value="([^"]+)"', html).group(1)
                             .replace("&amp;", "&")).query)["secret"][0]
    new = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.status == "pending")).one()
    response = client.post(f"/mes-moyens/application/{new.public_id}",
                           data={"csrf_token": token_from(html), "code": pyotp.TOTP(seed).now()})
    assert response.status_code == 303
    assert add_key(client, app, rt, label="Clé de remplacement").status_code == 201
    session.expire_all()
    assert session.get(Mie, new.id).status == "active"


def test_an_old_recovery_code_session_may_not_add(client, app, rt, session, person):
    add_totp(session, rt, person)
    sign_in(client, rt, person, mfa=False, recovery_only=True, minutes_ago=11)
    response = client.get("/mes-moyens/application")
    assert response.status_code == 403
    assert "code de secours date de plus" in text_of(response)
    response = post_json(client, "/mes-moyens/cle/options", {}, csrf_for(client, app))
    assert response.status_code == 403 and response.json["reason"] == "recovery_not_recent"


# --- security keys (WebAuthn) ----------------------------------------------------------------------------------------


def test_register_a_security_key_through_the_json_endpoints(client, app, rt, session, person):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    page = client.get("/mes-moyens/cle")
    html = text_of(page)
    assert page.status_code == 200 and "webauthn-register.js" in html and "<script>" not in html
    token = token_from(html)
    options = post_json(client, "/mes-moyens/cle/options", {}, token)
    assert options.status_code == 200
    public_key = options.json["publicKey"]
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    assert public_key["rp"]["id"] == rt.settings.webauthn_rp_id
    authenticator = SoftAuthenticator(origin=rt.settings.webauthn_origins[0])
    credential = authenticator.create(public_key)
    response = post_json(client, "/mes-moyens/cle", {"challengeId": options.json["challengeId"],
                                                      "label": "  Clé bleue ", "credential": credential}, token)
    assert response.status_code == 201, text_of(response)
    assert response.json["redirect"] == "/mes-moyens"
    session.expire_all()
    mie = session.scalars(select(Mie).where(Mie.public_id == response.json["mie"])).one()
    assert (mie.identity_id, mie.type, mie.status, mie.label) == (person.id, "webauthn", "active", "Clé bleue")
    assert "pin" in mie.amr and "mfa" in mie.amr
    assert session.get(WebAuthnCredential, mie.id) is not None
    assert "mie:webauthn:registered" in tags(session)
    assert subjects_of_notifications(session, person)[-1] == "HospiConnect : Nouveau moyen d'identification activé"
    html = text_of(client.get("/mes-moyens"))
    assert "La clé « Clé bleue » est enregistrée" in html and "Clé de sécurité" in html

    # The same authenticator is excluded the second time; forcing it is refused.
    options = post_json(client, "/mes-moyens/cle/options", {}, token)
    assert options.json["publicKey"]["excludeCredentials"][0]["id"] == credential["rawId"]
    again = authenticator.create(options.json["publicKey"], check_exclude=False)
    response = post_json(client, "/mes-moyens/cle", {"challengeId": options.json["challengeId"], "label": "Encore",
                                                      "credential": again}, token)
    assert response.status_code == 409 and response.json["error"] == "credential_already_registered"


def test_a_key_without_user_verification_is_refused(client, app, rt, session, person):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    before = mie_count(session)
    response = add_key(client, app, rt, uv=False)
    assert response.status_code == 400
    assert response.json["error"] == "user_verification_required"
    assert "code PIN ou empreinte" in response.json["message"]
    assert mie_count(session) == before
    assert tags(session)[-1] == "mie:webauthn:registration_refused"


def test_bad_webauthn_requests_get_a_french_json_error_and_change_nothing(client, app, rt, session, person):
    add_totp(session, rt, person)
    sign_in(client, rt, person)
    token = csrf_for(client, app)
    before = snapshot(session, person)
    options = post_json(client, "/mes-moyens/cle/options", {}, token).json
    good = SoftAuthenticator(origin=rt.settings.webauthn_origins[0]).create(options["publicKey"])
    challenge = options["challengeId"]

    def register(payload=None, raw=None):
        return post_json(client, "/mes-moyens/cle", payload, token, raw=raw)

    cases = [
        (register(raw=b"{pas du json"), 400, "invalid_request"),
        (register(raw=b"[1, 2, 3]"), 400, "invalid_request"),
        (register(raw=b"\xff\xfe"), 400, "invalid_request"),
        (register(raw=b'{"label": "' + b"a" * (100 * 1024) + b'"}'), 400, "invalid_request"),
        (register({"challengeId": challenge, "credential": good}), 400, "invalid_label"),
        (register({"challengeId": challenge, "label": 42, "credential": good}), 400, "invalid_label"),
        (register({"challengeId": challenge, "label": "x" * 61, "credential": good}), 400, "invalid_label"),
        (register({"challengeId": challenge, "label": "\u200b\u202e", "credential": good}), 400, "invalid_label"),
    ]
    for response, status, error in cases:
        assert response.status_code == status, text_of(response)
        assert response.json["error"] == error
        assert response.json["message"] and response.json["message"][0].isupper()
    assert cases[4][0].json["field"] == "label"
    # None of the above consumed the challenge: the person corrects the name and finishes.
    assert session.scalar(select(func.count()).select_from(WebAuthnChallenge)) == 1

    malformed = [
        {"challengeId": "inconnu", "label": "Clé", "credential": good},
        {"challengeId": ["liste"], "label": "Clé", "credential": good},
        {"challengeId": "abc\u0000def", "label": "Clé", "credential": good},
        {"challengeId": challenge, "label": "Clé", "credential": "pas un objet"},
    ]
    expected = ["challenge_unknown", "challenge_unknown", "challenge_unknown", "invalid_response"]
    for payload, error in zip(malformed, expected):
        response = register(payload)
        assert response.status_code == 400 and response.json["error"] == error, response.json
        assert "Recommencez" in response.json["message"] or "Rechargez" in response.json["message"]
    # The last one consumed the challenge: the good answer is now too late.
    response = register({"challengeId": challenge, "label": "Clé", "credential": good})
    assert response.status_code == 400 and response.json["error"] == "challenge_unknown"

    for broken in ({**good, "response": {"clientDataJSON": "!!", "attestationObject": "AA"}},
                   {**good, "type": "other"}, {}, {"response": []}):
        options = post_json(client, "/mes-moyens/cle/options", {}, token).json
        response = register({"challengeId": options["challengeId"], "label": "Clé", "credential": broken})
        assert response.status_code == 400 and response.json["error"] == "invalid_response"

    # A response made for another site.
    options = post_json(client, "/mes-moyens/cle/options", {}, token).json
    phished = SoftAuthenticator(origin="https://hospiconnect.example.net").create(options["publicKey"])
    response = register({"challengeId": options["challengeId"], "label": "Clé", "credential": phished})
    assert response.status_code == 400 and response.json["error"] == "invalid_response"

    # Without the CSRF header.
    response = client.post("/mes-moyens/cle/options", data="{}", content_type="application/json",
                           headers={"Accept": "application/json"})
    assert response.status_code == 400 and "formulaire a expiré" in response.json["message"]
    assert snapshot(session, person) == before
