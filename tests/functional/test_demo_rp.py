"""The demo relying parties (/demo/dpi, /demo/intranet): only in demo and development, and a real
authorization code flow — the token exchange goes over HTTP to the application served on a local port."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import threading
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Blueprint
from sqlalchemy import select
from werkzeug.serving import make_server

from hospiconnect import appctx, create_app
from hospiconnect.devtools import demo_rp
from hospiconnect.devtools.seed import DEMO_APPS, demo_credentials, demo_clients_path, seed_demo
from hospiconnect.directory.models import Identity
from hospiconnect.idp import keys as signing_keys
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.settings import Settings
from tests.oidc_helpers import query_of

TODAY = dt.date(2026, 11, 27)


def _path(location: str) -> str:
    """The path and query of an absolute redirect to this server (what the browser asks next)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclasses.dataclass
class DemoSite:
    settings: Settings
    app: object
    port: int

    @property
    def runtime(self):  # type: ignore[no-untyped-def]
        return self.app.extensions[appctx.EXTENSION]


@pytest.fixture()
def site(rt, tmp_path) -> Iterator[DemoSite]:
    """The application in demo mode, served on 127.0.0.1 on a free port; the issuer is http://localhost:PORT."""
    server = make_server("127.0.0.1", 0, lambda environ, start_response: [], threaded=True)
    port = server.socket.getsockname()[1]
    settings = dataclasses.replace(rt.settings, env="demo", issuer=f"http://localhost:{port}",
                                   instance_path=tmp_path)
    application = create_app(settings)
    application.config.update(TESTING=True)
    server.app = application
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DemoSite(settings, application, port)
    finally:
        server.shutdown()
        thread.join(5)
        application.extensions[appctx.EXTENSION].db.dispose()


@pytest.fixture()
def seeded(site: DemoSite):  # type: ignore[no-untyped-def]
    """The demo seed (40 identities), committed; returns the demo accounts by role."""
    with site.runtime.db.session() as s:
        signing_keys.ensure_keys(s, site.runtime.keys)
        seed_demo(s, site.runtime.keys, count=40, today=TODAY, settings=site.settings)
    with site.runtime.db.session() as s:
        return {a.role: a for a in demo_credentials(s, site.runtime.keys, settings=site.settings)}


def _open_sso(site: DemoSite, browser, user_name: str, amr: list[str], *, seconds_ago: int = 5) -> None:
    """Sign in without the sign-in pages: open an SSO session and give the browser its cookie."""
    rt = site.runtime
    with rt.db.session() as s:
        identity = s.scalar(select(Identity).where(Identity.user_name == user_name))
        mfa = "mfa" in amr
        _, cookie = login_session.open(
            s, rt.keys, site.settings, identity_id=identity.id, amr=amr, acr="eidas2" if mfa else "eidas1",
            mfa=mfa, existing=None, client_ip="127.0.0.1", user_agent="pytest",
            now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago))
    browser.set_cookie(login_session.cookie_name(site.settings), cookie)


def _sign_in(browser, site: DemoSite, key: str):  # type: ignore[no-untyped-def]
    """Click « Se connecter » and follow the redirects: /authorize, then the callback (token over HTTP)."""
    start = browser.get(f"/demo/{key}/login")
    assert start.status_code == 302
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{site.settings.issuer}/authorize?")
    params = query_of(authorize)
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["state"] and params["nonce"] and params["client_id"] == f"demo-{key}"
    answer = browser.get(_path(authorize))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer


# --- where the pages exist ------------------------------------------------------------------------------

def test_pages_exist_in_demo_and_development(site, seeded):
    browser = site.app.test_client()
    for path in ("/demo/", "/demo/dpi", "/demo/intranet"):
        response = browser.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store"
    page = browser.get("/demo/dpi").get_data(as_text=True)
    assert "DPI (démo)" in page and "Se connecter" in page and "deux facteurs" in page
    assert "<script" not in page
    assert "un seul facteur suffit" in browser.get("/demo/intranet").get_data(as_text=True)
    assert browser.get("/demo/inconnue").status_code == 404
    development = create_app(dataclasses.replace(site.settings, env="development"))
    try:
        assert development.test_client().get("/demo/intranet").status_code == 200
    finally:
        development.extensions[appctx.EXTENSION].db.dispose()


@pytest.mark.parametrize("env", ["test", "production"])
def test_pages_do_not_exist_elsewhere(rt, env):
    application = create_app(dataclasses.replace(rt.settings, env=env))
    try:
        assert "demo_rp" not in application.blueprints
        browser = application.test_client()
        for path in ("/demo/", "/demo/dpi", "/demo/dpi/login", "/demo/intranet/callback?code=x&state=y"):
            assert browser.get(path).status_code == 404, path
    finally:
        application.extensions[appctx.EXTENSION].db.dispose()


def test_registered_by_mistake_the_pages_still_answer_404(rt):
    application = create_app(dataclasses.replace(rt.settings, env="production"))
    try:
        # A copy of the blueprint under another name, as a wrong registration would do.
        copy = Blueprint("demo_rp_copy", demo_rp.__name__, url_prefix="/demo")
        copy.before_request(demo_rp._only_in_demo)
        copy.add_url_rule("/<app_key>", view_func=demo_rp.page)
        application.register_blueprint(copy)
        assert application.test_client().get("/demo/dpi").status_code == 404
    finally:
        application.extensions[appctx.EXTENSION].db.dispose()


# --- the protocol -----------------------------------------------------------------------------------------

def test_login_without_seed_explains_what_to_run(site):
    response = site.app.test_client().get("/demo/dpi/login")
    assert response.status_code == 503
    assert "hospiconnect demo" in response.get_data(as_text=True)
    assert not demo_clients_path(site.settings).exists()


def test_callback_refuses_a_wrong_state_without_exchanging_the_code(site, seeded, monkeypatch):
    def no_exchange(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("the code must not be exchanged")

    monkeypatch.setattr(demo_rp, "exchange_code", no_exchange)
    browser = site.app.test_client()
    browser.get("/demo/dpi/login")
    response = browser.get("/demo/dpi/callback?code=abc&state=pas-le-bon")
    assert response.status_code == 400
    assert "state" in response.get_data(as_text=True) and "ignorée par sécurité" in response.get_data(as_text=True)
    # The pending request is gone: the right state cannot be played afterwards either.
    again = browser.get("/demo/dpi/callback?code=abc&state=pas-le-bon")
    assert again.status_code == 400 and "aucune connexion" in again.get_data(as_text=True)
    assert "Vous n'êtes pas connecté" in browser.get("/demo/dpi").get_data(as_text=True)


def test_callback_refuses_another_issuer(site, seeded):
    browser = site.app.test_client()
    state = query_of(browser.get("/demo/intranet/login").headers["Location"])["state"]
    response = browser.get(f"/demo/intranet/callback?code=abc&state={state}&iss=https://ailleurs.example")
    assert response.status_code == 400
    assert "autre fournisseur" in response.get_data(as_text=True)


def test_sso_step_up_and_logout_through_the_real_provider(site, seeded):
    browser = site.app.test_client()
    doctor = seeded["medecin"]
    _open_sso(site, browser, doctor.user_name, ["pwd", "otp", "mfa"])

    # DPI: the session has two factors, the code comes at once; the callback exchanges it over HTTP.
    answer = _sign_in(browser, site, "dpi")
    result = query_of(answer.headers["Location"])
    assert answer.headers["Location"].startswith(f"{site.settings.issuer}/demo/dpi/callback?")
    assert result["iss"] == site.settings.issuer and "code" in result
    done = browser.get(_path(answer.headers["Location"]))
    assert done.status_code == 303, done.get_data(as_text=True)
    page = browser.get("/demo/dpi").get_data(as_text=True)
    assert "Vous êtes connecté à DPI (démo)" in page
    assert "Connexion avec deux facteurs : accès aux données de santé autorisé." in page
    assert doctor.name.split()[0] in page and doctor.user_name in page and doctor.rpps in page
    assert "eidas2" in page and "<code>otp</code>" in page and "<code>mfa</code>" in page
    assert "authentification unique" in page  # the session was opened before the click
    assert "Se déconnecter" in page

    # Intranet: same browser, no sign-in asked (SSO), one factor would have been enough.
    answer = _sign_in(browser, site, "intranet")
    assert "/demo/intranet/callback?" in answer.headers["Location"]
    assert browser.get(_path(answer.headers["Location"])).status_code == 303
    page = browser.get("/demo/intranet").get_data(as_text=True)
    assert "Vous êtes connecté à Intranet (démo)" in page
    assert "Un seul facteur suffit pour cette application" in page
    assert "Vous êtes aussi connecté" in page

    # RP-initiated logout: id_token_hint and the registered post_logout_redirect_uri.
    leave = browser.get("/demo/dpi/logout")
    assert leave.status_code == 302
    logout_url = leave.headers["Location"]
    params = query_of(logout_url)
    assert logout_url.startswith(f"{site.settings.issuer}/logout?")
    assert params["post_logout_redirect_uri"] == f"{site.settings.issuer}/demo/dpi" and params["id_token_hint"]
    back = browser.get(_path(logout_url))
    assert back.status_code == 302 and back.headers["Location"].startswith(f"{site.settings.issuer}/demo/dpi?")
    page = browser.get(_path(back.headers["Location"])).get_data(as_text=True)
    assert "Vous êtes déconnecté de DPI (démo)" in page and "Se connecter" in page
    assert "Intranet (démo) garde sa propre session locale" in page
    with site.runtime.db.session() as s:
        assert s.scalar(select(SsoSession.ended_at)) is not None


def test_step_up_is_explained_when_the_intranet_session_had_one_factor(site, seeded):
    browser = site.app.test_client()
    nurse = seeded["ide"]
    _open_sso(site, browser, nurse.user_name, ["pwd"])
    answer = _sign_in(browser, site, "intranet")
    assert browser.get(_path(answer.headers["Location"])).status_code == 303
    assert "Un seul facteur suffit pour cette application." in browser.get("/demo/intranet").get_data(as_text=True)

    # The DPI asks for more: the provider sends the browser to its sign-in pages (second factor).
    answer = _sign_in(browser, site, "dpi")
    assert answer.headers["Location"].startswith("/connexion/")
    # What those pages do once the code is checked: the same session, raised to two factors.
    _open_sso(site, browser, nurse.user_name, ["pwd", "otp", "mfa"], seconds_ago=0)
    answer = _sign_in(browser, site, "dpi")
    assert browser.get(_path(answer.headers["Location"])).status_code == 303
    page = browser.get("/demo/dpi").get_data(as_text=True)
    assert "accès aux données de santé autorisé" in page
    assert "seulement le second" in page


def test_password_only_is_refused_by_the_dpi_and_the_refusal_is_explained(site, seeded):
    browser = site.app.test_client()
    agent = seeded["administratif"]
    assert agent.totp_seed is None
    _open_sso(site, browser, agent.user_name, ["pwd"])
    # The intranet lets the agent in with the password…
    answer = _sign_in(browser, site, "intranet")
    assert browser.get(_path(answer.headers["Location"])).status_code == 303
    assert "Vous êtes connecté à Intranet (démo)" in browser.get("/demo/intranet").get_data(as_text=True)
    # …the DPI does not: the provider asks for a second factor the agent does not have.
    answer = _sign_in(browser, site, "dpi")
    assert answer.headers["Location"].startswith("/connexion/")
    # Should the provider answer with an error, the application explains it.
    state = query_of(browser.get("/demo/dpi/login").headers["Location"])["state"]
    refused = browser.get(f"/demo/dpi/callback?error=access_denied&error_description=mfa+required&state={state}"
                          f"&iss={site.settings.issuer}")
    assert refused.status_code == 403
    text = refused.get_data(as_text=True)
    assert "exige deux facteurs" in text and "mfa required" in text
    assert "Vous n'êtes pas connecté à DPI (démo)" in text


def test_an_unreachable_provider_gives_a_clear_french_message(site, seeded):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    elsewhere = dataclasses.replace(site.settings, issuer=f"http://localhost:{closed}")
    with pytest.raises(demo_rp.DemoRpError, match="n'a pas pu joindre HospiConnect"):
        demo_rp.exchange_code(elsewhere, DEMO_APPS[0], "secret", "code", "verifier")


def test_a_refused_code_is_reported(site, seeded):
    with pytest.raises(demo_rp.DemoRpError, match="invalid_grant|invalid_client"):
        demo_rp.exchange_code(site.settings, DEMO_APPS[0], "pas-le-secret", "code", "v" * 43)


def test_id_token_checks(site, seeded):
    rt = site.runtime
    dpi = DEMO_APPS[0]
    now = dt.datetime.now(dt.timezone.utc)
    good = {"iss": site.settings.issuer, "sub": "x", "aud": dpi.client_id, "nonce": "n1", "iat": now,
            "exp": now + dt.timedelta(minutes=5)}
    with site.app.test_request_context("/demo/dpi/callback"):
        def token(**changes):  # type: ignore[no-untyped-def]
            with rt.db.session() as s:
                return signing_keys.sign(s, rt.keys, {**good, **changes})

        assert demo_rp.validate_id_token(site.settings, dpi, token(), nonce="n1")["sub"] == "x"
        for changes, reason in [({"nonce": "autre"}, "nonce"), ({"aud": "demo-intranet"}, "destinataire"),
                                ({"iss": "https://ailleurs.example"}, "émetteur"),
                                ({"exp": now - dt.timedelta(minutes=5)}, "expiré")]:
            with pytest.raises(demo_rp.DemoRpError, match=reason):
                demo_rp.validate_id_token(site.settings, dpi, token(**changes), nonce="n1")
        forged = token()[:-4] + ("AAAA" if not token().endswith("AAAA") else "BBBB")
        with pytest.raises(demo_rp.DemoRpError, match="signature"):
            demo_rp.validate_id_token(site.settings, dpi, forged, nonce="n1")
