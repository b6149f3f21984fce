"""« Mes moyens d'identification » in a real Chromium: the WebAuthn ceremony of webauthn-register.js with
Chromium's virtual authenticators (DevTools protocol, domain ``WebAuthn``), and the TOTP pages."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from hospiconnect.authenticators import services
from hospiconnect.authenticators.models import Mie, WebAuthnCredential
from hospiconnect.db import utcnow
from tests.browser._app_server import chromium, live_server  # noqa: F401 - fixtures
from tests.factories import create_identity

pytestmark = pytest.mark.browser

AUTHENTICATOR_WITH_UV = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                         "hasUserVerification": True, "isUserVerified": True}
AUTHENTICATOR_UV_FAILS = {"protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
                          "hasUserVerification": True, "isUserVerified": False}


def add_totp(session, rt, identity) -> None:
    """Give ``identity`` an active TOTP (a realistic person of this page has a second factor)."""
    mie, uri, _svg = services.begin_totp(session, identity, label="Téléphone", actor="test", keys=rt.keys,
                                         issuer="Test")
    seed = parse_qs(urlsplit(uri).query)["secret"][0]
    past = utcnow() - dt.timedelta(minutes=5)
    services.confirm_totp(session, identity, mie.public_id, pyotp.TOTP(seed).at(past), actor="test",
                          keys=rt.keys, now=past)
    session.commit()


@pytest.fixture()
def signed_in(chromium, live_server, session, rt):  # noqa: F811 - fixtures imported above
    """A browser context whose SSO cookie belongs to a person signed in with two factors a moment ago;
    yields ``(context, page, person)``. Console errors (a CSP violation, a script error) fail the test."""
    person = create_identity(session)
    add_totp(session, rt, person)
    context = chromium.new_context(locale="fr-FR")
    context.add_cookies([live_server.sso_cookie(live_server.open_sso_session(person.id))])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield context, page, person
    context.close()
    assert not [e for e in errors if "Refused to" in e or "Content Security Policy" in e], errors


def test_add_a_security_key_then_refuse_one_that_cannot_verify_the_user(signed_in, live_server, session):  # noqa: F811
    context, page, person = signed_in
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    first = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR_WITH_UV})["authenticatorId"]

    page.goto(live_server.url("/mes-moyens"))
    expect(page.get_by_role("heading", name="Mes moyens d'identification")).to_be_visible()
    page.get_by_role("link", name="Ajouter une clé de sécurité").click()
    expect(page).to_have_url(live_server.url("/mes-moyens/cle"))
    page.get_by_label("Nom de la clé").fill("Ordinateur du bureau")
    page.get_by_role("button", name="Enregistrer la clé").click()

    expect(page).to_have_url(live_server.url("/mes-moyens"))
    expect(page.get_by_role("status")).to_contain_text("La clé « Ordinateur du bureau » est enregistrée.")
    row = page.locator("table.mie-list tr", has_text="Ordinateur du bureau")
    expect(row).to_contain_text("Authentificateur de l'appareil")
    expect(row).to_contain_text("Actif")

    session.expire_all()
    mie = session.scalars(select(Mie).where(Mie.identity_id == person.id, Mie.type == "webauthn")).one()
    assert (mie.label, mie.status) == ("Ordinateur du bureau", "active")
    assert "pin" in mie.amr  # user verified: usable alone for a passwordless sign-in
    credential = session.get(WebAuthnCredential, mie.id)
    assert credential.attachment == "platform" and credential.user_verified_at_registration
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": first})["credentials"]
    assert len(stored) == 1 and stored[0]["isResidentCredential"]

    # A second authenticator whose user verification fails: UV is required, the key is refused.
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": first})
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR_UV_FAILS})
    page.get_by_role("link", name="Ajouter une clé de sécurité").click()
    page.get_by_label("Nom de la clé").fill("Clé sans code")
    page.get_by_role("button", name="Enregistrer la clé").click()
    error = page.locator("#mie-key-error")
    expect(error).to_be_visible(timeout=20_000)
    expect(error).to_contain_text("code PIN ou empreinte")
    expect(page).to_have_url(live_server.url("/mes-moyens/cle"))
    expect(page.get_by_role("button", name="Enregistrer la clé")).to_be_enabled()

    session.expire_all()
    labels = session.scalars(select(Mie.label).where(Mie.identity_id == person.id, Mie.type == "webauthn")).all()
    assert labels == ["Ordinateur du bureau"]


def test_an_empty_key_name_is_shown_next_to_the_field(signed_in, live_server):  # noqa: F811
    _context, page, _person = signed_in
    page.goto(live_server.url("/mes-moyens/cle"))
    page.get_by_label("Nom de la clé").fill("   ")
    page.get_by_role("button", name="Enregistrer la clé").click()
    expect(page.locator("#f-label-error")).to_have_text("Donnez un nom à cette clé.")
    expect(page.get_by_label("Nom de la clé")).to_have_attribute("aria-invalid", "true")


def test_add_an_authenticator_application(signed_in, live_server, session):  # noqa: F811
    _context, page, person = signed_in
    page.goto(live_server.url("/mes-moyens"))
    page.get_by_role("link", name="Ajouter une application d'authentification").click()
    page.get_by_label("Nom de ce moyen").fill("Téléphone du service")
    page.get_by_role("button", name="Continuer").click()
    expect(page.locator(".mie-qr svg")).to_be_visible()
    uri = page.get_by_label("Adresse complète, à copier").input_value()
    seed = parse_qs(urlsplit(uri).query)["secret"][0]
    code_field = page.get_by_label("Code à 6 chiffres")
    expect(code_field).to_have_attribute("autocomplete", "one-time-code")
    code_field.fill(pyotp.TOTP(seed).now())
    page.get_by_role("button", name="Activer").click()
    expect(page).to_have_url(live_server.url("/mes-moyens"))
    expect(page.get_by_role("status")).to_contain_text("« Téléphone du service » est activée")
    session.expire_all()
    assert session.scalars(select(Mie.status).where(Mie.identity_id == person.id,
                                                    Mie.label == "Téléphone du service")).one() == "active"
    assert re.search(r"\d{2}/\d{2}/\d{4}", page.locator("table.mie-list").inner_text())
