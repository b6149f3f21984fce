"""The trajectory's dated targets in the policy file (``targets:``): validated with line numbers, like the rest."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from hospiconnect.policies import PolicyError, PolicyTarget, parse_policy
from hospiconnect.policies.policy import TARGET_DIMENSIONS
from tests.unit.policies.helpers import MINIMAL, SHIPPED

# MINIMAL has 23 lines: "targets:" is line 24, the first item line 25.
FIRST = 25


def with_targets(targets: str) -> str:
    return MINIMAL + "targets:\n" + textwrap.indent(textwrap.dedent(targets), "  ")


def errors_of(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "essai.yaml")
    return [(issue.line, issue.message) for issue in info.value.issues]


def only_error(text: str) -> tuple[int | None, str]:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def test_a_policy_without_targets_has_none():
    assert parse_policy(MINIMAL, "x.yaml").targets == ()
    assert parse_policy(MINIMAL + "targets:\n", "x.yaml").targets == ()


def test_valid_targets_are_read_with_their_defaults_and_lines():
    policy = parse_policy(with_targets("""\
        - id: couverture-2026
          label: Tout le monde a un MIE conforme
          due: 2026-01-01
          percent: 100
        - id: interim-mars
          label: "Intérimaires : 80 % au 31 mars"
          due: "2027-03-31"
          percent: 80
          indicator: proofed
          applies_to: {dimension: contract_type, value: interim}
        - id: site-nord
          label: Site nord
          due: 2027-06-30
          percent: 95
          applies_to: {dimension: establishment, value: 010770054}
        """), "x.yaml")
    first, second, third = policy.targets
    assert first == PolicyTarget(id="couverture-2026", label="Tout le monde a un MIE conforme",
                                 due=dt.date(2026, 1, 1), percent=100, line=FIRST)
    assert (first.dimension, first.value, first.indicator) == ("all", "", "compliant")
    assert (second.due, second.percent, second.indicator) == (dt.date(2027, 3, 31), 80, "proofed")
    assert (second.dimension, second.value, second.line) == ("contract_type", "interim", FIRST + 4)
    # A FINESS number left unquoted keeps its leading zero (not read as an octal integer).
    assert (third.dimension, third.value) == ("establishment", "010770054")
    assert policy.target("interim-mars") is second and policy.target("absent") is None
    assert second.as_json() == {"id": "interim-mars", "label": "Intérimaires : 80 % au 31 mars",
                                "due": "2027-03-31", "percent": 80, "dimension": "contract_type",
                                "value": "interim", "indicator": "proofed"}


def test_the_shipped_policy_declares_the_2026_deadline_and_a_later_milestone():
    by_id = {t.id: t for t in SHIPPED.targets}
    deadline = by_id["rie-2026-couverture"]
    assert (deadline.due, deadline.percent, deadline.dimension, deadline.indicator) == (
        dt.date(2026, 1, 1), 100, "all", "compliant")
    later = [t for t in SHIPPED.targets if t.due > dt.date(2026, 1, 1)]
    assert later and all(1 <= t.percent <= 100 for t in later)
    assert all(t.dimension in TARGET_DIMENSIONS for t in SHIPPED.targets)


def test_a_missing_due_date_is_reported_on_the_line_of_the_item():
    assert only_error(with_targets("""\
        - id: sans-date
          label: Sans échéance
          percent: 100
        """)) == (FIRST, "targets[1] : clé obligatoire « due » absente")


@pytest.mark.parametrize("percent", ["0", "101", "-5", "50.5", "'80 %'", "true", "[80]"])
def test_a_percent_outside_1_to_100_is_refused(percent):
    line, message = only_error(with_targets(f"""\
        - id: mauvais-pourcentage
          label: Pourcentage
          due: 2026-01-01
          percent: {percent}
        """))
    assert line == FIRST + 3
    assert message.startswith("objectif « mauvais-pourcentage ».percent : ")
    assert "de 1 à 100" in message or "valeur simple" in message


def test_unknown_keys_are_refused_with_a_suggestion():
    line, message = only_error(with_targets("""\
        - id: faute
          label: Faute de frappe
          due: 2026-01-01
          percent: 100
          pourcent: 90
        """))
    assert line == FIRST + 4
    assert message.startswith("targets[1] : clé inconnue « pourcent »")
    (line, unknown), (_, missing) = errors_of(with_targets("""\
        - id: faute
          label: Faute de frappe
          due: 2026-01-01
          percent: 100
          applies_to: {dimension: unit, valeur: CARDIO}
        """))
    assert line == FIRST + 4 and "clé inconnue « valeur » (vouliez-vous dire « value » ?)" in unknown
    assert "clé obligatoire « value » absente" in missing


def test_an_unknown_dimension_or_value_is_refused():
    line, message = only_error(with_targets("""\
        - id: service
          label: Par service
          due: 2026-01-01
          percent: 100
          applies_to: {dimension: service, value: CARDIO}
        """))
    assert line == FIRST + 4
    assert "applies_to.dimension : valeur inconnue « service »" in message and "unit" in message
    line, message = only_error(with_targets("""\
        - id: contrat
          label: Par contrat
          due: 2026-01-01
          percent: 100
          applies_to: {dimension: contract_type, value: cdd}
        """))
    assert line == FIRST + 4 and "valeur inconnue « cdd »" in message
    line, message = only_error(with_targets("""\
        - id: rpps
          label: Sans valeur
          due: 2026-01-01
          percent: 100
          applies_to: {dimension: rpps}
        """))
    assert line == FIRST + 4 and "clé obligatoire « value » absente" in message


def test_an_unknown_indicator_is_refused():
    line, message = only_error(with_targets("""\
        - id: mot-de-passe
          label: Mot de passe
          due: 2026-01-01
          percent: 100
          indicator: password_only
        """))
    assert line == FIRST + 4 and "indicator : valeur inconnue « password_only »" in message


def test_a_duplicate_id_names_the_first_line():
    line, message = only_error(with_targets("""\
        - id: jalon
          label: Premier
          due: 2026-01-01
          percent: 50
        - id: jalon
          label: Second
          due: 2027-01-01
          percent: 100
        """))
    assert (line, message) == (FIRST + 4, f"objectif « jalon » : identifiant déjà utilisé ligne {FIRST}")


def test_every_problem_is_reported_at_once():
    errors = errors_of(with_targets("""\
        - id: Majuscules
          label: ""
          due: 2026-02-30
          percent: 0
        - not a mapping
        """))
    lines = [line for line, _ in errors]
    assert lines == [FIRST, FIRST + 1, FIRST + 2, FIRST + 3, FIRST + 4]
    assert "date inexistante" in errors[2][1]
    assert only_error(MINIMAL + "targets: {id: x}\n") == (24, "targets : une liste est attendue")
