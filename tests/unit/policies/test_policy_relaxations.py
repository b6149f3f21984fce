"""Exceptions as pure values (hospiconnect.policies.relaxations): the vocabulary, the policy's word on a grant
(the two-factor floor above all) and the effect on a day's settings; the class key exceptions_may_lower_factors."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from hospiconnect.policies import PolicyError, parse_policy
from hospiconnect.policies.relaxations import (
    ExceptionGrant,
    Relaxation,
    check_relaxation,
    format_duration,
    may_lower_factors,
    parse_duration,
    relax,
    relaxation_from_json,
    requires_two_factors,
    resolve_networks,
)
from tests.unit.policies.helpers import MINIMAL, SHIPPED, at, policy

T0 = at("2026-11-27")
LATER = T0 + dt.timedelta(days=30)

WITH_STANDARD = """\
  standard:
    min_acr: eidas1
    allowed_mie_types: [password, totp]
    max_auth_age: 12h
    networks: [internal]
"""


def codes(issues):  # type: ignore[no-untyped-def]
    return [(i.field, i.code) for i in issues]


# -- the class key -----------------------------------------------------------------------------------------------

def test_exceptions_may_lower_factors_is_read_per_class_and_false_by_default():
    p = parse_policy(MINIMAL.replace("    max_auth_age: 8h\n", "    max_auth_age: 8h\n"
                                     "    exceptions_may_lower_factors: true\n"), "t.yaml")
    assert p.classes["health-data"].exceptions_may_lower_factors is True
    assert p.classes["high"].exceptions_may_lower_factors is False
    assert not any(c.exceptions_may_lower_factors for c in SHIPPED.classes.values())


def test_exceptions_may_lower_factors_must_be_a_boolean_and_is_not_a_rule_setting():
    with pytest.raises(PolicyError) as bad:
        parse_policy(MINIMAL.replace("    max_auth_age: 8h\n", "    max_auth_age: 8h\n"
                                     "    exceptions_may_lower_factors: oui\n"), "t.yaml")
    assert [(i.line, i.message) for i in bad.value.issues] == [
        (15, "classes.health-data.exceptions_may_lower_factors : true ou false est attendu (reçu « oui »)")]
    with pytest.raises(PolicyError) as in_rule:
        policy("""\
            rules:
              - id: r1
                description: x
                set: {exceptions_may_lower_factors: true}
            """)
    assert "clé inconnue « exceptions_may_lower_factors »" in in_rule.value.issues[0].message


# -- shapes ------------------------------------------------------------------------------------------------------

def test_relaxation_from_json_reads_the_vocabulary():
    r, issues = relaxation_from_json({"allow_single_factor": True, "allow_mie_types": ["totp", "totp"],
                                      "networks": ["internal", "10.9.0.0/16"], "max_auth_age": "1d"})
    assert issues == [] and r is not None
    assert r == Relaxation(True, ("totp",), ("internal", "10.9.0.0/16"), dt.timedelta(days=1))
    assert r.as_json() == {"allow_single_factor": True, "allow_mie_types": ["totp"],
                           "networks": ["internal", "10.9.0.0/16"], "max_auth_age": 86400}
    assert Relaxation.from_json(r.as_json()) == r
    assert r.lowers_factors and "un seul facteur" in r.describe()


@pytest.mark.parametrize("data,expected", [
    ({}, [("relaxation", "relaxation_empty")]),
    ({"allow_single_factor": False}, [("relaxation", "relaxation_empty")]),
    ({"lower_everything": True}, [("relaxation", "relaxation_unknown")]),
    ({"allow_single_factor": "yes"}, [("allow_single_factor", "relaxation_shape")]),
    ({"allow_mie_types": "totp"}, [("allow_mie_types", "relaxation_shape")]),
    ({"networks": [""]}, [("networks", "relaxation_shape")]),
    ({"max_auth_age": "demain"}, [("max_auth_age", "relaxation_shape")]),
    ({"max_auth_age": -5}, [("max_auth_age", "relaxation_shape")]),
    ("single-factor", [("relaxation", "relaxation_shape")]),
])
def test_relaxation_from_json_refuses_bad_shapes(data, expected):
    r, issues = relaxation_from_json(data)
    assert r is None and codes(issues) == expected
    assert all(i.message for i in issues)


def test_durations_and_networks():
    assert parse_duration("1h30m") == dt.timedelta(hours=1, minutes=30)
    assert parse_duration("0h") is None and parse_duration("8 heures") is None
    assert format_duration(dt.timedelta(days=1, hours=2)) == "1d2h"
    nets, unknown = resolve_networks(SHIPPED, ["internal", "192.0.2.0/24", "any", "10.0.0.1/8", "nulle-part"])
    assert ipaddress.ip_network("192.0.2.0/24") in nets and ipaddress.ip_network("10.0.0.0/8") in nets
    assert unknown == ["any", "10.0.0.1/8", "nulle-part"]  # host bits set: not a network


# -- the policy's word ---------------------------------------------------------------------------------------------

def test_one_factor_is_refused_for_a_class_that_requires_two():
    single = Relaxation(allow_single_factor=True)
    for name in ("health-data", "administration"):
        issues = check_relaxation(SHIPPED, name, single, start=T0, end=LATER)
        assert codes(issues) == [("allow_single_factor", "two_factor_floor")]
        assert "exige deux facteurs" in issues[0].message
    assert check_relaxation(SHIPPED, "standard", single, start=T0, end=LATER) == []


def test_health_data_is_two_factor_whatever_its_min_acr():
    p = policy(base=MINIMAL.replace("    min_acr: eidas2\n    allowed_mie_types: [password, totp, webauthn, cps]\n"
                                    "    max_auth_age: 8h\n",
                                    "    min_acr: eidas1\n    allowed_mie_types: [password, totp, webauthn, cps]\n"
                                    "    max_auth_age: 8h\n", 1))
    assert p.classes["health-data"].settings.min_acr == "eidas1"
    assert requires_two_factors(p, "health-data", T0)
    assert not may_lower_factors(p, "health-data", T0)


def test_the_policy_may_allow_one_factor_for_a_class():
    p = parse_policy(MINIMAL.replace("    max_auth_age: 8h\n", "    max_auth_age: 8h\n"
                                     "    exceptions_may_lower_factors: true\n"), "t.yaml")
    assert check_relaxation(p, "health-data", Relaxation(allow_single_factor=True), start=T0, end=LATER) == []
    assert codes(check_relaxation(p, "high", Relaxation(allow_single_factor=True), start=T0, end=LATER)) == [
        ("allow_single_factor", "two_factor_floor")]


def test_a_rule_that_requires_two_factors_during_the_period_counts():
    p = policy("""\
        rules:
          - id: standard-deux-facteurs
            description: deux facteurs pour l'intranet
            from: 2027-01-01
            applies_to: {class: standard}
            set: {min_acr: eidas2}
        """, base=MINIMAL.replace("populations:\n", WITH_STANDARD + "populations:\n"))
    single = Relaxation(allow_single_factor=True)
    assert check_relaxation(p, "standard", single, start=T0, end=at("2026-12-31")) == []
    assert codes(check_relaxation(p, "standard", single, start=T0, end=at("2027-02-01"))) == [
        ("allow_single_factor", "two_factor_floor")]


def test_a_population_rule_that_requires_two_factors_counts_too():
    p = policy("""\
        rules:
          - id: interim-deux-facteurs
            description: deux facteurs pour les intérimaires
            applies_to: {class: standard, population: interim}
            set: {min_acr: eidas2}
        """, base=MINIMAL.replace("populations:\n", WITH_STANDARD + "populations:\n"))
    assert requires_two_factors(p, "standard", T0, LATER)


def test_unknown_names_are_refused():
    r = Relaxation(allow_mie_types=("smartcard",), networks=("pharmacie", "300.1.1.0/24"))
    assert codes(check_relaxation(SHIPPED, "standard", r, start=T0, end=LATER)) == [
        ("allow_mie_types", "mie_type_unknown"), ("networks", "network_unknown"), ("networks", "network_unknown")]
    issues = check_relaxation(SHIPPED, "dpi", r, start=T0, end=LATER)
    assert codes(issues) == [("app_class", "unknown_class")] and "health-data" in issues[0].message


def test_max_auth_age_must_lengthen_a_limit():
    assert check_relaxation(SHIPPED, "standard", Relaxation(max_auth_age=dt.timedelta(hours=16)),
                            start=T0, end=LATER) == []
    assert codes(check_relaxation(SHIPPED, "standard", Relaxation(max_auth_age=dt.timedelta(hours=12)),
                                  start=T0, end=LATER)) == [("max_auth_age", "max_auth_age_not_longer")]
    # Interim staff have 8 h (rule contrats-courts-reauthentification): 10 h lengthens theirs, not the others'.
    ten = Relaxation(max_auth_age=dt.timedelta(hours=10))
    assert check_relaxation(SHIPPED, "standard", ten, start=T0, end=LATER, population="interim") == []
    assert check_relaxation(SHIPPED, "standard", ten, start=T0, end=LATER) != []
    p = policy()
    assert codes(check_relaxation(p, "high", Relaxation(max_auth_age=dt.timedelta(hours=1)), start=T0,
                                  end=LATER)) == [("max_auth_age", "max_auth_age_unlimited")]


# -- the effect ----------------------------------------------------------------------------------------------------

def grant(relaxation: Relaxation, app_class: str = "standard", **kw) -> ExceptionGrant:  # type: ignore[no-untyped-def]
    values = dict(id="g1", app_class=app_class, relaxation=relaxation, starts_at=T0 - dt.timedelta(days=1),
                  ends_at=LATER)
    values.update(kw)
    return ExceptionGrant(**values)  # type: ignore[arg-type]


def test_relax_applies_what_is_granted_and_in_force():
    base = SHIPPED.effective("administration", T0).settings
    g = grant(Relaxation(allow_mie_types=("password",), networks=("192.0.2.0/24",),
                         max_auth_age=dt.timedelta(hours=4)), app_class="administration")
    out = relax(SHIPPED, "administration", base, [g], T0)
    assert out.applied == ("g1",) and out.ignored == ()
    assert out.settings.networks.contains("192.0.2.9") and out.settings.networks.contains("10.1.1.1")
    assert not base.networks.contains("192.0.2.9")
    assert out.settings.max_auth_age == dt.timedelta(hours=4) and out.recognised_anyway == {"password"}
    assert out.settings.min_acr == "eidas2"  # nothing lowered
    # Another class, not yet started, already ended: nothing.
    for other in (grant(g.relaxation, app_class="standard"), grant(g.relaxation, app_class="administration",
                                                                    starts_at=LATER - dt.timedelta(days=1)),
                  grant(g.relaxation, app_class="administration", ends_at=T0)):
        assert relax(SHIPPED, "administration", base, [other], T0).settings == base


def test_relax_lets_one_factor_through_only_where_the_policy_allows_it_at_the_time_of_use():
    standard = SHIPPED.effective("standard", T0).settings
    out = relax(SHIPPED, "standard", standard, [grant(Relaxation(allow_single_factor=True))], T0)
    assert out.settings.min_acr == "eidas1" and "password" in out.recognised_anyway and out.applied == ("g1",)
    # A grant for health-data (stored before the file changed, say) is ignored for its single-factor part.
    health = SHIPPED.effective("health-data", T0).settings
    out = relax(SHIPPED, "health-data", health, [grant(Relaxation(allow_single_factor=True), "health-data")], T0)
    assert out.settings == health and out.applied == () and out.ignored == (("g1", "floor"),)


def test_relax_never_shortens_anything():
    base = SHIPPED.effective("standard", T0).settings
    out = relax(SHIPPED, "standard", base, [grant(Relaxation(max_auth_age=dt.timedelta(hours=1),
                                                             networks=("internal",)))], T0)
    assert out.settings == base and out.applied == ()  # standard is reachable from anywhere already
