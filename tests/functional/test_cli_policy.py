"""``hospiconnect policy check`` and ``policy show`` (no database involved)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hospiconnect.cli import main
from hospiconnect.policies import DEFAULT_POLICY_PATH
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings

INVALID = """\
version: 1
mie_types:
  password: {status: not_homologated, factors: 1}
classes:
  health-data:
    min_acr: eidas5
    allowed_mie_types: [password, totp]
"""


def run(*args: str, policy_file: Path = DEFAULT_POLICY_PATH):  # type: ignore[no-untyped-def]
    runtime = Runtime(Settings(env="test", policy_file=policy_file))
    return CliRunner().invoke(main, list(args), obj=runtime)


@pytest.fixture()
def invalid(tmp_path: Path) -> Path:
    path = tmp_path / "politique.yaml"
    path.write_text(INVALID, encoding="utf-8")
    return path


def test_check_accepts_the_shipped_file():
    result = run("policy", "check", str(DEFAULT_POLICY_PATH))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Fichier de politique valide : 3 classe(s), 4 règle(s) dont 2 datée(s), "
                                    "5 type(s) de MIE, 3 population(s).")
    data = json.loads(run("policy", "check", str(DEFAULT_POLICY_PATH), "--json").stdout)
    assert data["valid"] is True and data["classes"] == 3 and data["dated_rules"] == 2 and len(data["digest"]) == 64


def test_check_lists_every_error_with_its_line(invalid):
    result = run("policy", "check", str(invalid))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{invalid}:6 : classes.health-data.min_acr : valeur inconnue « eidas5 »" in result.stderr
    assert f"{invalid}:7 : classes.health-data.allowed_mie_types : type de MIE non déclaré « totp »" in result.stderr
    assert "(2 erreurs)" in result.stderr


def test_check_in_json(invalid):
    result = run("policy", "check", str(invalid), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["readable"] is True
    assert [e["line"] for e in data["errors"]] == [6, 7]


def test_check_an_unreadable_file(tmp_path):
    result = run("policy", "check", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 2 and "fichier illisible" in result.stderr
    result = run("policy", "check", str(tmp_path / "absent.yaml"), "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["readable"] is False


def test_show_the_settings_before_and_after_1_january_2026():
    before = json.loads(run("policy", "show", "--as-of", "2025-12-31", "--json").stdout)
    after = json.loads(run("policy", "show", "--as-of", "2026-01-02", "--json").stdout)
    health_before, health_after = before["classes"]["health-data"], after["classes"]["health-data"]
    assert health_before["settings"]["single_factor_networks"] == ["internal"]
    assert health_after["settings"]["single_factor_networks"] == "none"
    assert health_after["sources"]["single_factor_networks"] == "rie-2026-deux-facteurs"
    assert health_after["rules"] == ["rie-2026-deux-facteurs", "rie-2026-homologation"]
    assert health_after["settings"]["accept_not_homologated"] is False
    assert {r["id"]: r["active"] for r in after["rules"]}["rie-2026-deux-facteurs"] is True
    assert {r["id"]: r["active"] for r in before["rules"]}["rie-2026-deux-facteurs"] is False
    assert after["source"] == str(DEFAULT_POLICY_PATH)


def test_show_in_french_for_a_population():
    result = run("policy", "show", "--as-of", "2026-01-02", "--population", "interim")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "en vigueur le 02/01/2026 pour la population « interim »" in out
    assert "un seul facteur toléré depuis : aucun réseau  [règle rie-2026-deux-facteurs]" in out
    assert "âge maximal de l'authentification : 8 h  [règle contrats-courts-reauthentification]" in out
    assert "[en vigueur] rie-2026-homologation (à partir du 01/01/2026)" in out


def test_show_reads_the_configured_file_and_refuses_an_invalid_one(invalid, tmp_path):
    result = run("policy", "show", "--json", policy_file=invalid)
    assert result.exit_code == 1 and json.loads(result.stdout)["errors"][0]["line"] == 6
    result = run("policy", "show", policy_file=tmp_path / "absent.yaml")
    assert result.exit_code == 2 and "fichier illisible" in result.stderr
    own = tmp_path / "own.yaml"
    own.write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
        'name: "RIE 2026 — politique par défaut de HospiConnect"', 'name: "CHU exemple"'), encoding="utf-8")
    assert json.loads(run("policy", "show", "--json", policy_file=own).stdout)["name"] == "CHU exemple"
    assert json.loads(run("policy", "show", "--json", "--file", str(own)).stdout)["name"] == "CHU exemple"


def test_the_application_refuses_to_start_with_an_invalid_policy_file(base_settings, tmp_path):
    import dataclasses

    import pytest

    from hospiconnect import create_app
    from hospiconnect.policies import PolicyError

    bad = tmp_path / "politique.yaml"
    bad.write_text("version: 1\nclasses:\n  health-data:\n    min_acr: eidas9\n", encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        create_app(dataclasses.replace(base_settings, policy_file=bad))
    assert any(issue.line == 4 and "eidas9" in issue.message for issue in refused.value.issues)
    app = create_app(base_settings)  # the shipped policy is valid and loaded at start-up (then watched)
    assert app.extensions["hospiconnect.policy"].policy.classes
