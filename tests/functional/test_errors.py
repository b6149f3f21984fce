"""Fault handling: database outages, unknown pages, unexpected exceptions, security headers and CSRF.

Whatever goes wrong, people get a French page without internals, APIs get JSON, SCIM clients get a
SCIM error body, the command line prints one French line with a distinct exit code, and nothing is
half-written.
"""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select, text

from hospiconnect import appctx, create_app
from hospiconnect.cli import main
from hospiconnect.directory.models import Identity
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings
from tests.factories import create_identity

# Nothing listens on port 1: connecting fails at once with "connection refused".
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/none"
# What must never reach a user: exception names, driver messages, addresses, stack traces.
LEAKS = ("Traceback", "OperationalError", "sqlalchemy", "psycopg", "127.0.0.1", "refused", "postgres",
         "File \"")


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    return html_lib.unescape(response.get_data(as_text=True))


def assert_no_leak(body: str) -> None:
    for leak in LEAKS:
        assert leak not in body, leak


def _touch_database() -> str:
    appctx.db_session().execute(text("SELECT 1"))
    return "ok"


@pytest.fixture()
def down_settings(instance_dir: Path) -> Settings:
    return Settings(env="test", instance_path=instance_dir, database_url=UNREACHABLE,
                    secret_key_file=instance_dir / "keys.json", issuer="http://localhost")


@pytest.fixture()
def down_app(down_settings: Settings) -> Flask:
    """An application whose database cannot be reached, with two probes that need it."""
    application = create_app(down_settings)
    application.config.update(TESTING=True)
    # Probes under the API and SCIM prefixes, so the test does not depend on which endpoints exist there.
    application.add_url_rule("/api/v1/_probe", "api_probe", _touch_database)
    application.add_url_rule("/scim/v2/_probe", "scim_probe", _touch_database)
    return application


# --- database unreachable at request time --------------------------------------------------------------

def test_browser_gets_a_french_503_page_without_internals(down_app):
    response = down_app.test_client().get("/annuaire", headers={"Accept": "text/html,application/xhtml+xml"})
    body = text_of(response)
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "Service momentanément indisponible" in body
    assert "La base de données est momentanément injoignable" in body
    assert response.headers["Retry-After"] == "5"
    assert_no_leak(body)


def test_json_clients_get_a_json_503(down_app):
    client = down_app.test_client()
    for url, headers in (("/annuaire", {"Accept": "application/json"}), ("/api/v1/_probe", {})):
        response = client.get(url, headers=headers)
        assert response.status_code == 503, url
        assert response.is_json, url
        assert response.get_json()["error"] == "unavailable"
        assert "injoignable" in response.get_json()["message"]
        assert_no_leak(response.get_data(as_text=True))


def test_scim_clients_get_a_scim_error_body(down_app):
    response = down_app.test_client().get("/scim/v2/_probe")
    assert response.status_code == 503
    assert response.mimetype == "application/scim+json"
    body = response.get_json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "503"
    assert "injoignable" in body["detail"]
    assert_no_leak(response.get_data(as_text=True))


def test_real_scim_endpoint_answers_503_when_the_database_is_down(down_app):
    assert any(rule.rule == "/scim/v2/Users" for rule in down_app.url_map.iter_rules())
    response = down_app.test_client().get("/scim/v2/Users", headers={"Authorization": "Bearer hcp_" + "x" * 43})
    assert response.status_code == 503
    assert response.get_json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_a_form_post_during_an_outage_is_a_503_too(down_app):
    down_app.config["WTF_CSRF_ENABLED"] = False
    response = down_app.test_client().post("/annuaire/nouvelle", data={"birth_family_name": "Martin"})
    assert response.status_code == 503
    assert_no_leak(text_of(response))


@pytest.mark.parametrize("args", [["directory", "list"], ["audit", "verify"]])
def test_cli_prints_one_french_line_and_exits_3(down_settings, args):
    result = CliRunner().invoke(main, args, obj=Runtime(down_settings))
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"Erreur : base de données injoignable \(.+\)\.", lines[0])
    assert "Traceback" not in result.output
    assert result.stdout == ""


# --- unknown pages and unexpected failures -------------------------------------------------------------

def test_unknown_page_is_french(client):
    response = client.get("/cette-page-n-existe-pas")
    body = text_of(response)
    assert response.status_code == 404
    assert "Page introuvable" in body and "La page demandée n'existe pas." in body
    assert '<html lang="fr">' in body
    api = client.get("/api/v1/inconnu")
    assert api.status_code == 404 and api.is_json


def test_unexpected_exception_gives_the_generic_500_page(rt):
    application = create_app(rt.settings)
    application.extensions[appctx.EXTENSION] = rt
    application.config.update(TESTING=True)

    def explode() -> str:
        raise RuntimeError("secret interne : mot de passe hunter2")

    application.add_url_rule("/boum", "boum", explode)
    application.add_url_rule("/api/v1/boum", "api_boum", explode)
    client = application.test_client()
    response = client.get("/boum")
    body = text_of(response)
    assert response.status_code == 500
    assert "Erreur interne" in body and "Une erreur inattendue s'est produite" in body
    for leak in ("hunter2", "secret interne", "RuntimeError", "Traceback"):
        assert leak not in body
    api = client.get("/api/v1/boum")
    assert api.status_code == 500 and api.get_json()["error"] == "internal"
    assert "hunter2" not in api.get_data(as_text=True)


# --- security headers ----------------------------------------------------------------------------------

def test_security_headers_without_hsts_outside_production(client):
    for url in ("/", "/annuaire", "/page-absente"):
        headers = client.get(url).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], url
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in headers


def test_hsts_in_production(rt, instance_dir):
    settings = Settings(env="production", instance_path=instance_dir, database_url=rt.settings.database_url,
                        secret_key_file=instance_dir / "keys.json", issuer="https://idp.chu-exemple.fr")
    headers = create_app(settings).test_client().get("/").headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


# --- CSRF ----------------------------------------------------------------------------------------------

CREATE_FORM = {
    "birth_family_name": "Rivière", "given_names": "Paul", "birth_date": "1990-05-02", "gender": "M",
    "birth_country": "99100", "birth_place": "33063", "contract_type": "permanent", "start_date": "2024-01-01",
    "roles": "technicien",
}


def _count(session) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count(Identity.id))) or 0


def test_post_without_csrf_token_is_refused_in_french_and_changes_nothing(client, session):
    assert client.application.config.get("WTF_CSRF_ENABLED", True)
    response = client.post("/annuaire/nouvelle", data=CREATE_FORM)
    body = text_of(response)
    assert response.status_code == 400
    assert "Le formulaire a expiré ; rechargez la page et recommencez." in body
    assert "CSRF" not in body
    assert _count(session) == 0

    identity = create_identity(session)
    forged = client.post(f"/annuaire/{identity.public_id}/suspendre", data={"reason": "forgé",
                                                                            "csrf_token": "faux"})
    assert forged.status_code == 400
    session.expire_all()
    assert identity.status == "active"


def test_post_with_the_token_from_the_form_is_accepted(client, session):
    page = client.get("/annuaire/nouvelle").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/annuaire/nouvelle", data=CREATE_FORM | {"csrf_token": token})
    assert response.status_code == 303
    assert _count(session) == 1
