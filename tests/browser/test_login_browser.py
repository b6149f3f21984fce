"""The login pages in Chromium: what a clinician does, with the browser's own rules applied (the pages'
Content-Security-Policy, including ``form-action`` on the redirect to the client; WebAuthn origin checks;
the security key script served from 'self').

The client's redirect URI is a tiny local receiver on another origin (tests/browser/conftest.py): the
browser follows the whole chain (form POST, 303, /authorize/resume, redirect to the client), so a CSP
whose ``form-action`` blocked the final redirect would fail these tests.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest

from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import webauthn
from hospiconnect.db import utcnow
from tests.factories import create_identity
from tests.oidc_helpers import auth_request, id_token_claims, register

pytestmark = pytest.mark.browser

PASSWORD = "correct cheval pile agrafe"

_CREATE_IN_PAGE = """async (options) => {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
  const credential = await navigator.credentials.create({ publicKey });
  return credential.toJSON();
}"""


@pytest.fixture()
def clinician(session, rt):
    identity = create_identity(session)
    mie_services.set_password(session, identity, PASSWORD, actor="test",
                              establishment_name=rt.settings.establishment_name)
    session.commit()
    return identity


@pytest.fixture()
def dpi(session, rt, receiver):
    """A health-data client (two factors required) whose redirect URI is the local receiver."""
    client = register(session, rt, name="DPI (démo)", sensitivity="health-data",
                      redirect_uris=(receiver.redirect_uri,))
    client.redirect_uri = receiver.redirect_uri
    return client


def authorize_url(live_server, rc) -> tuple[str, Any]:
    request = auth_request(rc)
    return f"{live_server.url}/authorize?{urlencode(request.params)}", request


def code_of(receiver) -> str:
    """Return the code of the one redirect the client received."""
    assert len(receiver.reached) == 1, receiver.reached
    url = receiver.reached[0]
    assert url.startswith(receiver.redirect_uri + "?"), url
    return parse_qs(urlsplit(url).query)["code"][0]


def exchange_at_live_server(live_server, rc, code: str, verifier: str) -> dict[str, Any]:
    """Exchange the code at the live server's token endpoint, as the client's back end would."""
    body = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": rc.redirect_uri,
                      "code_verifier": verifier}).encode()
    request = urllib.request.Request(f"{live_server.url}/token", data=body, headers=rc.basic(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def register_key_in_page(page, live_server, session, identity, *, require_uv: bool) -> None:
    """Register the page's virtual authenticator for ``identity``: the server's options go to
    navigator.credentials.create in the page, the browser's answer back to the server."""
    page.goto("/")
    challenge_id, options = webauthn.begin_registration(session, identity, live_server.settings,
                                                        require_uv=require_uv)
    session.commit()
    credential = page.evaluate(_CREATE_IN_PAGE, options)
    webauthn.complete_registration(session, identity, live_server.settings, challenge_id, credential,
                                   label="Clé du poste", actor="test")
    session.commit()


def test_password_then_totp_typed_in_the_page(page, live_server, receiver, session, rt, dpi, clinician):
    mie, uri, _svg = mie_services.begin_totp(session, clinician, label="Téléphone", actor="test", keys=rt.keys,
                                             issuer="HospiConnect")
    seed = pyotp.parse_uri(uri).secret
    earlier = utcnow() - dt.timedelta(seconds=90)
    mie_services.confirm_totp(session, clinician, mie.public_id, pyotp.TOTP(seed).at(earlier), actor="test",
                              keys=rt.keys, now=earlier)
    session.commit()

    url, request = authorize_url(live_server, dpi)
    page.goto(url)
    assert page.get_by_role("heading", level=1).inner_text() == "Connexion à DPI (démo)"
    # The identifier field has the focus: the person can type at once.
    assert page.evaluate("document.activeElement.id") == "f-username"
    page.get_by_label("Identifiant").fill(clinician.user_name)
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    page.get_by_role("button", name="Se connecter", exact=True).click()
    assert page.get_by_role("alert").first.inner_text().endswith("Identifiant ou mot de passe incorrect.")

    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.get_by_text("Étape 2 sur 2").wait_for()
    page.get_by_label("Code de votre application d'authentification").fill(pyotp.TOTP(seed).now())
    page.get_by_role("button", name="Valider").click()
    page.wait_for_url(receiver.redirect_uri + "?*")
    assert page.get_by_text("Application cliente").is_visible()

    tokens = exchange_at_live_server(live_server, dpi, code_of(receiver), request.verifier)
    claims = id_token_claims(rt, tokens["id_token"])
    assert {"pwd", "otp", "mfa"} <= set(claims["amr"]) and claims["iss"] == live_server.url


def test_passwordless_sign_in_with_a_security_key(page, live_server, receiver, virtual_authenticator, session,
                                                  rt, dpi, clinician):
    authenticator = virtual_authenticator(user_verified=True)
    register_key_in_page(page, live_server, session, clinician, require_uv=True)
    assert len(authenticator.credentials()) == 1

    url, request = authorize_url(live_server, dpi)
    page.goto(url)
    page.get_by_role("button", name="Utiliser une clé de sécurité").click()
    page.wait_for_url(receiver.redirect_uri + "?*")

    tokens = exchange_at_live_server(live_server, dpi, code_of(receiver), request.verifier)
    claims = id_token_claims(rt, tokens["id_token"])
    assert set(claims["amr"]) == {"hwk", "mfa", "pin"} and claims["sub"] == clinician.public_id


def test_key_without_user_verification_is_refused_for_passwordless(page, live_server, receiver,
                                                                   virtual_authenticator, session, dpi,
                                                                   clinician):
    authenticator = virtual_authenticator(user_verified=True)
    register_key_in_page(page, live_server, session, clinician, require_uv=True)
    authenticator.set_user_verified(False)

    url, _request = authorize_url(live_server, dpi)
    page.goto(url)
    page.get_by_role("button", name="Utiliser une clé de sécurité").click()
    error = page.locator("[data-webauthn-error]")
    error.filter(has_text=re.compile(r"\S")).wait_for()
    assert "/connexion/" in page.url and not receiver.reached
    assert not [c for c in page.context.cookies() if c["name"] == "hc_sso"]
    # The page stays usable: the button is enabled again and the password form is still there.
    assert page.get_by_role("button", name="Utiliser une clé de sécurité").is_enabled()
    assert page.get_by_label("Mot de passe").is_visible()
