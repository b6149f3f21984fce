"""Policy files: validation with line numbers (hospiconnect.policies.loader), the shipped file, shared vocabularies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap

import pytest

from hospiconnect.policies import (
    ACR_LEVELS,
    DEFAULT_POLICY_PATH,
    PolicyError,
    PolicyUnreadable,
    load_policy,
    parse_policy,
)
from hospiconnect.policies.policy import POPULATIONS, PROOFING_METHODS
from hospiconnect.settings import DEFAULT_POLICY_FILE, Settings
from tests.unit.policies.helpers import MINIMAL, SHIPPED


def errors_of(text: str) -> list[tuple[int | None, str]]:
    """Return the ``(line, message)`` pairs of the errors of ``text`` (which must be invalid)."""
    with pytest.raises(PolicyError) as info:
        parse_policy(textwrap.dedent(text), "essai.yaml")
    return [(issue.line, issue.message) for issue in info.value.issues]


def only_error(text: str) -> tuple[int | None, str]:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def with_rules(rules: str) -> str:
    return MINIMAL + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")


# -- the shipped file and the shared vocabularies --------------------------------------------------------------

def test_the_shipped_policy_loads_and_says_what_it_contains():
    assert set(SHIPPED.classes) == {"health-data", "standard", "administration"}
    assert {r.id for r in SHIPPED.rules} >= {"rie-2026-deux-facteurs", "rie-2026-homologation"}
    assert SHIPPED.compliance_class == "health-data" and SHIPPED.timezone == "Europe/Paris"
    assert SHIPPED.mie_types["cps"].status == "ans"
    assert all(t.decision_reference for t in SHIPPED.mie_types.values() if t.status == "homologated")
    assert len(SHIPPED.digest) == 64
    rule = SHIPPED.rule("rie-2026-deux-facteurs")
    assert rule is not None and rule.start == dt.date(2026, 1, 1) and "RIE" in rule.source


def test_the_settings_point_at_the_shipped_policy_unless_told_otherwise(tmp_path):
    assert DEFAULT_POLICY_FILE == DEFAULT_POLICY_PATH and DEFAULT_POLICY_PATH.is_file()
    assert Settings.from_env({}).policy_file == DEFAULT_POLICY_PATH
    chosen = tmp_path / "politique.yaml"
    assert Settings.from_env({"HOSPICONNECT_POLICY_FILE": str(chosen)}).policy_file == chosen


def test_vocabularies_match_the_rest_of_the_product():
    from hospiconnect.authenticators.models import MIE_TYPES
    from hospiconnect.directory.validation import CONTRACT_TYPES
    from hospiconnect.enrollment.workflow import METHODS
    from hospiconnect.idp.checks import ACR_LEVELS as PROVIDER_LEVELS
    from hospiconnect.policies.acr import MIE_TYPE_NAMES

    assert ACR_LEVELS == PROVIDER_LEVELS
    assert POPULATIONS == tuple(CONTRACT_TYPES)
    assert PROOFING_METHODS == METHODS
    assert set(MIE_TYPES) <= set(MIE_TYPE_NAMES)


def test_durations_and_network_values():
    p = parse_policy(MINIMAL + textwrap.dedent("""\
        rules:
          - id: a
            description: durées
            applies_to: {class: health-data}
            set: {max_auth_age: 1h30m, networks: [internal, "192.0.2.0/24", "2001:db8::/32"]}
          - id: b
            description: sans limite
            applies_to: {class: high}
            set: {max_auth_age: null, single_factor_networks: any}
        """))
    health = p.effective("health-data", dt.date(2026, 1, 1)).settings
    assert health.max_auth_age == dt.timedelta(hours=1, minutes=30)
    assert health.networks.names == ("internal", "192.0.2.0/24", "2001:db8::/32")
    assert health.networks.contains("10.9.9.9") and health.networks.contains("2001:db8::1")
    assert not health.networks.contains("192.0.3.1") and not health.networks.contains(None)
    high = p.effective("high", dt.date(2026, 1, 1)).settings
    assert high.max_auth_age is None and high.single_factor_networks.contains(None)


# -- errors, each with its line ----------------------------------------------------------------------------------

def test_malformed_yaml_names_its_line():
    line, message = only_error("""\
        version: 1
        classes:
          health-data: [eidas2
        mie_types: {}
        """)
    assert line == 4 and message.startswith("YAML mal formé")
    assert only_error("version: 1\nclasses:\n\thealth-data: {}\n") == (
        3, "YAML mal formé : tabulation interdite : indentez avec des espaces")
    line, message = only_error("version: 1\n---\nversion: 1\n")
    assert line == 2 and "un seul document" in message


@pytest.mark.parametrize("text,message", [
    ("", "le fichier est vide"),
    ("# rien\n", "le fichier est vide"),
    ("- a\n- b\n", "racine du fichier : une table « clé: valeur » est attendue"),
])
def test_empty_or_shapeless_files(text, message):
    assert only_error(text)[1] == message


def test_unknown_keys_are_refused_with_a_suggestion():
    text = MINIMAL.replace("    max_auth_age: 8h\n", "    max_auth_age: 8h\n    min_arc: eidas3\n")
    line, message = only_error(text)
    assert line == 15
    assert message == "classes.health-data : clé inconnue « min_arc » (vouliez-vous dire « min_acr » ?)"
    line, message = only_error(MINIMAL + "policy_version: 2\n")
    assert line == 24 and "clé inconnue « policy_version »" in message


def test_missing_required_fields_are_reported_on_the_line_of_their_owner():
    text = MINIMAL.replace("    min_acr: eidas3\n", "")
    assert only_error(text) == (15, "classes.high : clé obligatoire « min_acr » absente")
    errors = errors_of("name: x\n")
    assert [m for _, m in errors] == [f"racine du fichier : clé obligatoire « {k} » absente"
                                      for k in ("classes", "mie_types", "version")]


def test_unknown_mie_types_and_classes_are_refused_where_they_are_named():
    text = MINIMAL.replace("allowed_mie_types: [webauthn]", "allowed_mie_types: [webauthn, sms]")
    line, message = only_error(text)
    assert line == 20 and "type de MIE non déclaré « sms »" in message
    text = MINIMAL.replace("  cps: {status: ans", "  carte-x: {status: ans")
    errors = errors_of(text)
    assert (9, "mie_types.carte-x : type de MIE inconnu du produit (types connus : password, totp, webauthn, cps, "
               "e-cps)") in errors
    line, message = only_error(with_rules("""\
        - id: r
          description: classe inconnue
          applies_to: {class: [health-data, billing]}
          set: {min_acr: eidas3}
        """))
    assert line == 27 and message.startswith("règle « r ».applies_to.class : classe inconnue « billing »")
    line, message = only_error(with_rules("""\
        - id: r
          description: population non déclarée
          applies_to: {population: contractor}
          set: {min_acr: eidas3}
        """))
    assert line == 27 and "population inconnue « contractor »" in message


def test_overlapping_rules_for_the_same_setting_and_target_are_refused():
    line, message = only_error(with_rules("""\
        - id: premiere
          description: a
          from: 2026-01-01
          until: 2027-01-01
          applies_to: {class: health-data}
          set: {min_acr: eidas3, max_auth_age: 4h}
        - id: seconde
          description: b
          from: 2026-06-01
          applies_to: {class: [high, health-data]}
          set: {max_auth_age: 2h}
        """))
    assert line == 31
    assert message.startswith("règle « seconde » : elle change max_auth_age pour les mêmes cibles que la règle "
                              "« premiere » (ligne 25)")
    assert "du 01/01/2026 au 31/12/2026 / à partir du 01/06/2026" in message


@pytest.mark.parametrize("second", [
    "from: 2027-01-01\n  applies_to: {class: health-data}\n  set: {max_auth_age: 2h}",  # adjacent periods
    "from: 2026-06-01\n  applies_to: {class: high}\n  set: {max_auth_age: 2h}",  # other class
    "from: 2026-06-01\n  applies_to: {class: health-data}\n  set: {min_acr: eidas2}",  # other setting
    "from: 2026-06-01\n  applies_to: {class: health-data, population: trainee}\n  set: {max_auth_age: 2h}",
])
def test_rules_that_do_not_compete_are_accepted(second):
    parse_policy(with_rules("""\
        - id: premiere
          description: a
          from: 2026-01-01
          until: 2027-01-01
          applies_to: {class: health-data}
          set: {max_auth_age: 4h}
        """) + "  - id: seconde\n    description: b\n    " + second.replace("\n", "\n  ") + "\n")


@pytest.mark.parametrize("cidr,detail", [
    ("10.0.0.1/8", "bits d'hôte non nuls"),
    ("10.0.0.0/33", "notation CIDR attendue"),
    ("300.1.1.0/24", "notation CIDR attendue"),
])
def test_bad_networks(cidr, detail):
    line, message = only_error(MINIMAL.replace("[10.0.0.0/8]", f"[10.0.0.0/8, {cidr}]"))
    assert line == 3 and f"réseau invalide « {cidr} »" in message and detail in message


def test_an_unknown_network_name_is_refused():
    text = MINIMAL.replace("    max_auth_age: 8h\n", "    max_auth_age: 8h\n    networks: [internal, vpn]\n")
    line, message = only_error(text)
    assert line == 15 and message.startswith("classes.health-data.networks : réseau inconnu « vpn »")


@pytest.mark.parametrize("value,message", [
    ("2026-02-30", "date inexistante « 2026-02-30 »"),
    ("2026-1-5", "date invalide"),
    ("demain", "date invalide"),
    ("2026-01-01 10:00:00", "une date sans heure est attendue"),
    ("'2026-13-01'", "date inexistante"),
])
def test_bad_dates(value, message):
    line, text = only_error(with_rules(f"""\
        - id: r
          description: d
          from: {value}
          set: {{min_acr: eidas3}}
        """))
    assert line == 27 and message in text
    assert parse_policy(with_rules("""\
        - id: r
          description: date entre guillemets
          from: "2026-01-01"
          set: {min_acr: eidas3}
        """)).rules[0].start == dt.date(2026, 1, 1)


def test_a_rule_must_end_after_it_starts_and_change_something():
    errors = errors_of(with_rules("""\
        - id: r
          description: d
          from: 2026-01-01
          until: 2026-01-01
          set: {}
        """))
    assert [line for line, _ in errors] == [28, 29]


def test_homologated_types_need_their_decision_and_others_must_not_have_one():
    text = MINIMAL.replace(', decision_date: 2026-03-01, decision_reference: "DEC-2026-07"', "")
    errors = errors_of(text)
    assert [line for line, _ in errors] == [6, 6]
    assert "un type homologué exige « decision_date »" in errors[0][1] + errors[1][1]
    text = MINIMAL.replace("cps: {status: ans, factors: 2, max_acr: eidas3}",
                           "cps: {status: ans, factors: 2, max_acr: eidas3, decision_reference: X}")
    assert only_error(text) == (
        9, "mie_types.cps.decision_reference : réservé aux types « homologated » (statut : ans)")
    text = MINIMAL.replace("decision_valid_until: 2028-06-01", "decision_valid_until: 2025-01-01")
    assert only_error(text)[0] == 8  # the line of decision_valid_until


@pytest.mark.parametrize("old,new,line,fragment", [
    ("password: {status: not_homologated, factors: 1}", "password: {status: not_homologated, factors: 2}", 5,
     "un mot de passe n'est jamais qu'un facteur"),
    ("status: ans, factors: 2", "status: ANS, factors: 2", 9, "valeur inconnue « ANS »"),
    ("    max_auth_age: 8h\n", "    max_auth_age: 8 hours\n", 14, "durée invalide « 8 hours »"),
    ("    max_auth_age: 8h\n", "    max_auth_age: 480\n", 14, "durée invalide « 480 »"),
    ("    max_auth_age: 8h\n", "    max_auth_age: 0m\n", 14, "durée invalide « 0m »"),
    ("    max_auth_age: 8h\n", "    emergency: oui\n", 14, "true ou false est attendu"),
    ("version: 1", "version: 2", 1, "version : 1 attendu"),
    ("min_acr: eidas2\n    allowed_mie_types: [password, totp",
     "min_acr: eidas4\n    allowed_mie_types: [password, totp", 12, "valeur inconnue « eidas4 »"),
    ("  interim: {}", "  students: {}", 23, "population inconnue"),
    ("  trainee: {label: Étudiants}\n", "  trainee: {label: Étudiants}\n  trainee: {}\n", 23,
     "clé « trainee » en double (déjà ligne 22)"),
])
def test_wrong_values(old, new, line, fragment):
    assert old in MINIMAL
    error_line, message = only_error(MINIMAL.replace(old, new, 1))
    assert error_line == line and fragment in message, message


def test_every_error_is_reported_at_once():
    text = (MINIMAL.replace("[10.0.0.0/8]", "[10.0.0.1/8]").replace("min_acr: eidas3", "min_acr: high")
            .replace("version: 1", "version: 1\ntimezone: Europe/Lyon"))
    lines = [line for line, _ in errors_of(text)]
    assert lines == [2, 4, 17]


def test_yaml_tricks_are_refused():
    assert "fusions YAML" in only_error(MINIMAL + "compliance:\n  <<: {class: high}\n")[1]
    cidrs = ", ".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(25_000))
    huge = MINIMAL.replace("[10.0.0.0/8]", f"[{cidrs}]")
    assert only_error(huge) == (None, "fichier trop complexe (plus de 20000 éléments)")
    many = MINIMAL.replace("[10.0.0.0/8]", "[" + ", ".join(f"10.0.0.{i}/8" for i in range(1, 61)) + "]")
    with pytest.raises(PolicyError) as info:
        parse_policy(many)
    assert len(info.value.issues) == 60 and "… et 10 autre(s) erreur(s)" in info.value.message
    with pytest.raises(PolicyError):
        parse_policy("!!python/object/apply:os.system ['true']\n")


def test_unreadable_files(tmp_path):
    with pytest.raises(PolicyUnreadable) as info:
        load_policy(tmp_path / "absent.yaml")
    assert info.value.issues[0].line is None and "fichier illisible" in info.value.message
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: Politique de l'hôpital\n".encode("latin-1"))
    with pytest.raises(PolicyUnreadable):
        load_policy(latin1)
    with pytest.raises(PolicyUnreadable):
        load_policy(tmp_path)  # a directory


def test_an_invalid_file_returns_nothing_and_its_message_lists_every_line():
    with pytest.raises(PolicyError) as info:
        parse_policy(MINIMAL.replace("min_acr: eidas3", "min_acr: eidas9"), "/etc/hospiconnect/p.yaml")
    assert info.value.code == "policy_invalid"
    assert "/etc/hospiconnect/p.yaml:16 : classes.high.min_acr : valeur inconnue « eidas9 »" in info.value.message


def test_policies_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHIPPED.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SHIPPED.classes["x"] = SHIPPED.classes["standard"]  # type: ignore[index]
