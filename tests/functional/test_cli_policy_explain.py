"""``hospiconnect policy explain`` and ``policy reload``, and ``client add --class`` against the policy's classes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import hospiconnect.cli
from hospiconnect.authenticators.models import Mie
from hospiconnect.policies import DEFAULT_POLICY_PATH
from hospiconnect.runtime import Runtime
from tests.factories import create_identity
from tests.oidc_helpers import register

URI = "https://dpi.chu-exemple.fr/cb"
ACTIVATED = dt.datetime(2025, 9, 1, 9, tzinfo=dt.timezone.utc)


@pytest.fixture()
def run(rt):
    """Run the command line on the suite's database with the shipped policy, or ``policy_file``."""
    def invoke(*args: str, policy_file: Path = DEFAULT_POLICY_PATH):
        runtime = Runtime(dataclasses.replace(rt.settings, policy_file=policy_file, policy_check_seconds=7))
        try:
            return CliRunner().invoke(hospiconnect.cli.main, list(args), obj=runtime)
        finally:
            runtime.db.dispose()

    return invoke


def give(session, identity, *types: str, proofed: bool = True) -> None:
    """Give ``identity`` active MIE of ``types``, activated on 1 September 2025 (after a face-to-face check)."""
    for mie_type in types:
        session.add(Mie(identity_id=identity.id, type=mie_type, status="active", label=mie_type,
                        activated_at=ACTIVATED, proofing_method="face_to_face" if proofed else None,
                        proofing_at=ACTIVATED if proofed else None))
    session.commit()


def explain(run, person, client, *extra: str) -> dict:
    result = run("policy", "explain", "--identity", person.user_name, "--client", client.client_id, "--json", *extra)
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def ways(data: dict) -> dict[str, tuple[str, list[str]]]:
    return {w["way"]: (w["decision"]["kind"], w["provider"]) for w in data["ways"]}


def test_explain_each_way_to_sign_in_to_health_data_today(run, rt, session):
    person = create_identity(session)
    give(session, person, "password", "totp")
    dpi = register(session, rt, name="DPI", sensitivity="health-data")
    data = explain(run, person, dpi)
    assert ways(data) == {"password": ("step_up", ["mfa_required"]), "password+totp": ("allow", ["allow"])}
    assert data["settings"]["settings"]["single_factor_networks"] == "none"
    assert {r["id"] for r in data["rules"]} == {"rie-2026-deux-facteurs", "rie-2026-homologation"}
    assert data["compliance"]["compliant"] is True and data["compliance"]["mie"] == "totp"
    text = run("policy", "explain", "--identity", person.public_id, "--client", dpi.client_id).stdout
    assert "Façons de se connecter avec ses MIE actifs :" in text
    assert "• Mot de passe seul (amr pwd, niveau eidas1) — fournisseur : la page demande un second facteur" in text
    assert "Décision : autorisé" in text and "MIE conforme (classe de référence « health-data ») : oui" in text


def test_explain_before_2026_from_the_internal_network(run, rt, session):
    person = create_identity(session)
    give(session, person, "password")
    dpi = register(session, rt, name="DPI", sensitivity="health-data")
    data = explain(run, person, dpi, "--as-of", "2025-06-01", "--ip", "10.1.2.3")
    [way] = data["ways"]
    assert way["decision"]["kind"] == "allow" and "single_factor_tolerated" in [r["code"] for r in
                                                                                 way["decision"]["reasons"]]
    # The same person today has no MIE that would do: the explanation page, and no compliant MIE.
    data = explain(run, person, dpi)
    assert ways(data) == {"password": ("deny", ["no_usable_mie"])}
    assert data["compliance"]["compliant"] is False
    assert [r["code"] for r in data["compliance"]["reasons"]] == ["mie_single_factor"]


def test_explain_a_population_rule_and_an_undeclared_class(run, rt, session):
    interim = create_identity(session, contract_type="interim", end_date="2027-06-30")
    give(session, interim, "password", "totp")
    console = register(session, rt, name="Console", sensitivity="standard")
    from sqlalchemy import update

    from hospiconnect.idp.models import Client

    session.execute(update(Client).where(Client.id == console.row_id).values(sensitivity="administration"))
    session.commit()
    data = explain(run, interim, console, "--ip", "10.1.2.3")
    assert {kind for kind, _ in ways(data).values()} == {"deny"}
    assert data["identity"]["population"] == "interim" and "administration-reservee" in [r["id"] for r in
                                                                                          data["rules"]]
    session.execute(update(Client).where(Client.id == console.row_id).values(sensitivity="retiree"))
    session.commit()
    result = run("policy", "explain", "--identity", interim.user_name, "--client", console.client_id)
    assert result.exit_code == 0 and "La politique ne déclare pas la classe « retiree »" in result.stdout
    assert "Classe d'application inconnue" in result.stdout


def test_explain_errors(run, rt, session, tmp_path):
    person = create_identity(session)
    dpi = register(session, rt, name="DPI", sensitivity="health-data")
    result = run("policy", "explain", "--identity", "personne", "--client", dpi.client_id)
    assert result.exit_code == 1 and "Aucune identité" in result.stderr
    result = run("policy", "explain", "--identity", person.user_name, "--client", "inconnu")
    assert result.exit_code == 1 and "Aucun client" in result.stderr
    bad = tmp_path / "politique.yaml"
    bad.write_text("version: 1\n", encoding="utf-8")
    result = run("policy", "explain", "--identity", person.user_name, "--client", dpi.client_id, "--file", str(bad))
    assert result.exit_code == 1 and "politique invalide" in result.stderr
    result = run("policy", "explain", "--identity", person.user_name, "--client", dpi.client_id,
                 policy_file=tmp_path / "absente.yaml")
    assert result.exit_code == 2


def test_reload_reports_what_running_processes_will_apply(run, tmp_path):
    result = run("policy", "reload", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["check_seconds"] == 7 and len(data["digest"]) == 64
    assert "dans ce délai" in run("policy", "reload").stdout
    bad = tmp_path / "politique.yaml"
    bad.write_text("version: 1\nclasses: {}\n", encoding="utf-8")
    result = run("policy", "reload", policy_file=bad)
    assert result.exit_code == 1 and "gardent la version précédente" in result.stderr
    assert run("policy", "reload", policy_file=tmp_path / "absente.yaml").exit_code == 2


def test_client_classes_are_the_policy_classes(run, tmp_path):
    result = run("client", "add", "--name", "Console", "--redirect-uri", URI, "--class", "administration", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["class"] == "administration"
    result = run("client", "add", "--name", "X", "--redirect-uri", URI, "--class", "imagerie")
    assert result.exit_code == 2 and "health-data, standard, administration" in result.stderr
    own = tmp_path / "politique.yaml"
    own.write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
        "  administration:\n", "  imagerie:\n    label: Imagerie\n    min_acr: eidas2\n"
        "    allowed_mie_types: [password, totp, webauthn]\n    accept_not_homologated: true\n  administration:\n"),
        encoding="utf-8")
    result = run("client", "add", "--name", "PACS", "--redirect-uri", URI, "--class", "imagerie", "--json",
                 policy_file=own)
    assert result.exit_code == 0, result.stderr


def test_explain_shows_the_exceptions_in_force_and_whether_they_change_the_decision(run, rt, session, tmp_path):
    from hospiconnect.authorizations import services as exceptions
    from hospiconnect.db import utcnow
    from hospiconnect.policies import parse_policy

    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    marker = "    emergency: true\n  standard:"
    lenient_text = text.replace(marker, "    emergency: true\n    exceptions_may_lower_factors: true\n  standard:")
    lenient_file = tmp_path / "lenient.yaml"
    lenient_file.write_text(lenient_text, encoding="utf-8")
    person = create_identity(session)
    give(session, person, "password", "totp")
    dpi = register(session, rt, name="DPI", sensitivity="health-data")
    row = exceptions.grant_exception(session, parse_policy(lenient_text, "lenient.yaml"), app_class="health-data",
                                     identity=person, relaxation={"allow_single_factor": True},
                                     justification="Téléphone perdu, remplacement en cours",
                                     ends_at=utcnow() + dt.timedelta(days=3), actor="rssi")
    session.commit()
    result = run("policy", "explain", "--identity", person.user_name, "--client", dpi.client_id, "--json",
                 policy_file=lenient_file)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    password = next(w for w in data["ways"] if w["way"] == "password")
    assert password["decision"]["kind"] == "allow" and password["exceptions"] == [row.public_id]
    assert password["without_exceptions"] == "step_up"
    [shown] = data["exceptions"]
    assert shown["id"] == row.public_id and shown["changes_decision"] is True and shown["ignored"] == []
    human = run("policy", "explain", "--identity", person.user_name, "--client", dpi.client_id,
                policy_file=lenient_file).stdout
    assert "Dérogations en vigueur pour cette personne et cette classe :" in human
    assert f"Grâce à la dérogation {row.public_id}" in human and "change la décision" in human
    # Under the shipped file the floor holds: the exception is shown, and changes nothing.
    data = explain(run, person, dpi)
    assert ways(data)["password"] == ("step_up", ["mfa_required"])
    [shown] = data["exceptions"]
    assert shown["changes_decision"] is False and shown["ignored"] == ["floor"]
