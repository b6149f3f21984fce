"""``hospiconnect client …``: every command, human and --json output, errors on stderr."""

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import hospiconnect.cli
from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp import clients
from hospiconnect.idp.models import Client

URI = "https://dpi.chu-exemple.fr/cb"


@pytest.fixture()
def run(rt):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(hospiconnect.cli.main, list(args), obj=rt)

    return invoke


def _json(result):
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def test_add_prints_the_secret_once(run, rt):
    data = _json(run("client", "add", "--name", "DPI", "--redirect-uri", URI, "--redirect-uri",
                     "http://localhost:8080/cb", "--class", "health-data", "--post-logout-redirect-uri",
                     "https://dpi.chu-exemple.fr/bye", "--backchannel-logout-uri", "https://dpi.chu-exemple.fr/bcl",
                     "--scope", "openid profile", "--scope", "rpps", "--json"))
    assert data["name"] == "DPI" and data["class"] == "health-data"
    assert data["redirect_uris"] == [URI, "http://localhost:8080/cb"]
    assert data["post_logout_redirect_uris"] == ["https://dpi.chu-exemple.fr/bye"]
    assert data["backchannel_logout_uri"] == "https://dpi.chu-exemple.fr/bcl"
    assert data["scopes"] == ["openid", "profile", "rpps"]
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    secret = data["client_secret"]
    assert len(secret) >= 43 and "secret_hash" not in data
    with rt.db.session() as session:
        row = clients.require_client(session, data["client_id"])
        assert clients.check_secret(rt.keys, row, secret)
    # Never shown again.
    shown = run("client", "show", data["client_id"], "--json")
    assert secret not in shown.stdout and "client_secret" not in _json(shown)
    listed = run("client", "list", "--json")
    assert secret not in listed.stdout
    assert [c["client_id"] for c in _json(listed)] == [data["client_id"]]


def test_add_human_output(run):
    result = run("client", "add", "--name", "Agenda", "--redirect-uri", URI, "--class", "standard",
                 "--client-id", "agenda")
    assert result.exit_code == 0, result.output
    assert "agenda" in result.stdout and "il ne sera plus affiché" in result.stdout
    assert "secret" in result.stdout


def test_add_public_and_private_key_jwt(run, tmp_path):
    data = _json(run("client", "add", "--name", "SPA", "--redirect-uri", "http://127.0.0.1:3000/cb",
                     "--class", "standard", "--public", "--json"))
    assert data["public"] is True and data["client_secret"] is None
    assert data["token_endpoint_auth_method"] == "none"

    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"alg": "ES256"}, auto_kid=True)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    data = _json(run("client", "add", "--name", "Labo", "--redirect-uri", URI, "--class", "health-data",
                     "--auth-method", "private_key_jwt", "--jwks-file", str(path), "--profile", "psc", "--json"))
    assert data["client_secret"] is None and data["jwks"]["keys"][0]["kid"] == key.kid
    assert data["profile"] == "psc"


@pytest.mark.parametrize("args, words", [
    (["--redirect-uri", "http://dpi.chu-exemple.fr/cb"], "https"),
    (["--redirect-uri", "myapp://cb"], "schéma"),
    (["--redirect-uri", URI + "#x"], "fragment"),
    (["--redirect-uri", URI, "--public", "--auth-method", "client_secret_post"], "--public"),
    (["--redirect-uri", URI, "--auth-method", "private_key_jwt", "--jwks-file", "/nonexistent/jwks.json"],
     "illisible"),
    (["--redirect-uri", URI, "--scope", "admin"], "Portée inconnue"),
])
def test_add_errors_are_one_french_line_and_write_nothing(run, rt, args, words):
    result = run("client", "add", "--name", "X", "--class", "standard", *args, "--json")
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Erreur : ") and words in lines[0]
    with rt.db.session() as session:
        assert session.scalar(select(Client)) is None
        assert session.scalar(select(AuditEvent)) is None


def test_add_requires_class_and_redirect_uri(run):
    assert run("client", "add", "--name", "X", "--redirect-uri", URI).exit_code == 2
    assert run("client", "add", "--name", "X", "--class", "standard").exit_code == 2
    assert run("client", "add", "--name", "X", "--redirect-uri", URI, "--class", "secret").exit_code == 2


def test_list_and_show(run):
    assert run("client", "list").stdout.strip() == "Aucun client."
    assert _json(run("client", "list", "--json")) == []
    _json(run("client", "add", "--name", "Bloc", "--redirect-uri", URI, "--class", "standard",
              "--client-id", "bloc", "--json"))
    _json(run("client", "add", "--name", "Agenda", "--redirect-uri", URI, "--class", "health-data",
              "--client-id", "agenda", "--json"))
    listed = _json(run("client", "list", "--json"))
    assert [c["client_id"] for c in listed] == ["agenda", "bloc"]
    human = run("client", "list").stdout
    assert "agenda" in human and "bloc" in human
    shown = _json(run("client", "show", "bloc", "--json"))
    assert shown["name"] == "Bloc" and shown["disabled"] is False and shown["has_secret"] is True
    assert "client_id" in run("client", "show", "bloc").stdout
    missing = run("client", "show", "nope", "--json")
    assert missing.exit_code == 1 and "nope" in missing.stderr and missing.stdout == ""


def test_rotate_secret(run, rt):
    old = _json(run("client", "add", "--name", "DPI", "--redirect-uri", URI, "--class", "health-data",
                    "--client-id", "dpi", "--json"))["client_secret"]
    data = _json(run("client", "rotate-secret", "dpi", "--json"))
    assert data["client_id"] == "dpi" and data["client_secret"] != old
    with rt.db.session() as session:
        row = clients.require_client(session, "dpi")
        assert clients.check_secret(rt.keys, row, data["client_secret"])
        assert not clients.check_secret(rt.keys, row, old)
    human = run("client", "rotate-secret", "dpi")
    assert human.exit_code == 0 and "il ne sera plus affiché" in human.stdout
    assert run("client", "rotate-secret", "nope").exit_code == 1


def test_disable(run, rt):
    secret = _json(run("client", "add", "--name", "DPI", "--redirect-uri", URI, "--class", "health-data",
                       "--client-id", "dpi", "--json"))["client_secret"]
    result = run("client", "disable", "dpi")
    assert result.exit_code == 0 and "désactivé" in result.stdout
    data = _json(run("client", "disable", "dpi", "--json"))
    assert data["disabled"] is True and data["disabled_at"]
    assert _json(run("client", "show", "dpi", "--json"))["disabled"] is True
    with rt.db.session() as session:
        assert not clients.check_secret(rt.keys, clients.require_client(session, "dpi"), secret)
    refused = run("client", "rotate-secret", "dpi")
    assert refused.exit_code == 1 and "désactivé" in refused.stderr
    assert run("client", "disable", "nope").exit_code == 1
