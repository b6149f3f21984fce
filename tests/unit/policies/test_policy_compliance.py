"""The single definition of a compliant MIE (hospiconnect.policies.rules.compliance / is_compliant)."""

from __future__ import annotations

import datetime as dt

import pytest

from hospiconnect.policies import IdentitySummary, MieSummary, compliance, is_compliant
from tests.unit.policies.helpers import SHIPPED, UTC, policy

D = dt.date.fromisoformat
TOTP_2025 = MieSummary("totp", active_from=D("2025-03-01"), proofing_method="face_to_face",
                       proofed_at=D("2025-03-01"))


def person(*mies: MieSummary, population: str | None = None) -> IdentitySummary:
    return IdentitySummary(mies=mies, population=population)


@pytest.mark.parametrize("mie,day,compliant,code", [
    (TOTP_2025, "2026-01-02", True, None),
    (MieSummary("totp", D("2025-03-01"), proofing_method="fcplus"), "2026-01-02", True, None),
    (MieSummary("totp", D("2025-03-01")), "2026-01-02", False, "mie_not_proofed"),
    (MieSummary("totp", D("2025-03-01"), proofing_method="helpdesk-phone-call"), "2026-01-02", False,
     "mie_not_proofed"),
    (MieSummary("password", D("2020-01-01")), "2025-06-01", False, "mie_single_factor"),
    (MieSummary("webauthn", D("2026-01-05"), proofing_method="face_to_face"), "2026-01-04", False, "mie_not_active"),
    (MieSummary("webauthn", D("2026-01-05"), proofing_method="face_to_face"), "2026-01-05", True, None),
    (MieSummary("webauthn", D("2025-01-05"), D("2026-01-05"), "face_to_face"), "2026-01-05", False,
     "mie_not_active"),
    (MieSummary("webauthn", D("2025-01-05"), D("2026-01-05"), "face_to_face"), "2026-01-04", True, None),
    (MieSummary("totp", None, proofing_method="face_to_face"), "2026-01-02", False, "mie_not_active"),
    # national MIE: the ANS checked the identity, the establishment's check does not apply
    (MieSummary("cps", D("2024-01-01")), "2026-01-02", True, None),
    (MieSummary("e-cps", D("2024-01-01")), "2026-01-02", True, None),
    (MieSummary("sms", D("2024-01-01")), "2026-01-02", False, "mie_type_unknown"),
])
def test_compliance_with_the_shipped_policy(mie, day, compliant, code):
    result = compliance(SHIPPED, person(mie), D(day))
    assert result.compliant is compliant
    assert is_compliant(SHIPPED, person(mie), D(day)) is compliant
    if code:
        assert [r.code for r in result.reasons] == [code]
        assert result.mie is None
    else:
        assert result.mie == mie and result.reasons == ()


@pytest.mark.parametrize("day,compliant", [("2026-02-28", False), ("2026-03-01", True), ("2026-03-02", True)])
def test_a_homologated_type_is_compliant_from_its_decision_date(day, compliant):
    result = compliance(policy(), person(TOTP_2025), D(day))
    assert result.compliant is compliant
    if not compliant:
        assert result.reasons[0].code == "mie_type_not_homologated"
        assert "01/03/2026" in result.reasons[0].message


def test_a_not_homologated_type_is_compliant_only_until_the_rule_refuses_it():
    p = policy("""\
        rules:
          - id: fin-tolerance
            description: Les MIE non homologués sont refusés
            from: 2026-01-01
            set: {accept_not_homologated: false}
          - id: tolerance
            description: Tolérance
            applies_to: {class: health-data}
            until: 2026-01-01
            set: {accept_not_homologated: true}
        """)
    assert is_compliant(p, person(TOTP_2025), D("2025-12-31"))
    late = compliance(p, person(TOTP_2025), D("2026-01-01"))
    assert not late.compliant and late.reasons[0].code == "mie_type_not_homologated"
    assert late.reasons[0].rule == "fin-tolerance" and late.rules == ("fin-tolerance",)


def test_one_compliant_mie_is_enough_and_each_other_one_is_explained():
    password = MieSummary("password", D("2020-01-01"), label="Mot de passe")
    unproofed = MieSummary("totp", D("2025-01-01"), label="Téléphone")
    result = compliance(SHIPPED, person(password, unproofed), D("2026-01-02"))
    assert not result.compliant
    assert [r.code for r in result.reasons] == ["mie_single_factor", "mie_not_proofed"]
    assert "Téléphone" in result.reasons[1].message
    assert compliance(SHIPPED, person(password, unproofed, TOTP_2025), D("2026-01-02")).mie == TOTP_2025
    assert [r.code for r in compliance(SHIPPED, person(), D("2026-01-02")).reasons] == ["no_mie"]


def test_the_identity_check_can_be_waived_and_must_precede_the_day():
    late_check = MieSummary("totp", D("2025-01-01"), proofing_method="face_to_face", proofed_at=D("2026-02-01"))
    assert compliance(SHIPPED, person(late_check), D("2026-01-15")).reasons[0].code == "mie_not_proofed"
    assert is_compliant(SHIPPED, person(late_check), D("2026-02-01"))
    lenient = policy("""\
        compliance: {class: health-data, require_identity_check: false}
        """)
    assert is_compliant(lenient, person(MieSummary("webauthn", D("2025-07-01"))), D("2026-01-02"))


def test_the_population_and_the_reference_class_level_apply():
    p = policy("""\
        compliance: {class: high}
        rules:
          - id: trainees-keys-only
            description: Les étudiants n'utilisent que des clés
            applies_to: {class: high, population: trainee}
            set: {allowed_mie_types: [webauthn]}
        """)
    cps = MieSummary("cps", D("2024-01-01"))
    key = MieSummary("webauthn", D("2025-07-01"), proofing_method="face_to_face")
    totp = MieSummary("totp", D("2025-07-01"), proofing_method="face_to_face")
    assert compliance(p, person(totp), D("2026-06-01")).reasons[0].code == "mie_level_too_low"
    assert is_compliant(p, person(cps), D("2026-06-01"))
    assert compliance(p, person(cps, population="trainee"), D("2026-06-01")).reasons[0].code == "mie_type_not_allowed"
    assert is_compliant(p, person(key, population="trainee"), D("2026-06-01"))


def test_datetimes_are_days_in_the_policy_time_zone():
    mie = MieSummary("webauthn", dt.datetime(2026, 1, 4, 23, 30, tzinfo=UTC), proofing_method="face_to_face")
    # 23:30 UTC on the 4th is the 5th in Paris
    assert not is_compliant(SHIPPED, person(mie), D("2026-01-04"))
    assert is_compliant(SHIPPED, person(mie), dt.datetime(2026, 1, 4, 23, 45, tzinfo=UTC))
