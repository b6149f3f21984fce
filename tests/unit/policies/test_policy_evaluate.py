"""The evaluator (hospiconnect.policies.rules.evaluate), table-driven, around each dated rule."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hospiconnect.policies import EvaluationContext, evaluate
from hospiconnect.policies.context import MISSING_VALUES, REASON_CODES
from hospiconnect.policies.explain import describe_decision
from tests.unit.policies.helpers import EXTERNAL_IP, INTERNAL_IP, SHIPPED, UTC, at, ctx, policy

H = dt.timedelta(hours=1)

# (day, class, authentication, client address, population, age, expected kind, expected missing, a reason code)
SHIPPED_CASES = [
    # health data: password alone tolerated from the internal network until 31/12/2025, never from outside
    ("2025-12-30", "health-data", "password", INTERNAL_IP, None, H, "allow", set(), "single_factor_tolerated"),
    ("2025-12-31", "health-data", "password", INTERNAL_IP, None, H, "allow", set(), "single_factor_tolerated"),
    ("2025-12-31", "health-data", "password", "::ffff:10.1.1.1", None, H, "allow", set(), "single_factor_tolerated"),
    ("2025-12-31", "health-data", "password", "fd12::1", None, H, "allow", set(), "single_factor_tolerated"),
    ("2025-12-31", "health-data", "password", EXTERNAL_IP, None, H, "step_up", {"mfa"}, "mfa_required"),
    ("2025-12-31", "health-data", "password", None, None, H, "step_up", {"mfa"}, "mfa_required"),
    ("2025-12-31", "health-data", "password", "not-an-ip", None, H, "step_up", {"mfa"}, "mfa_required"),
    # … and two factors from 1 January 2026, from everywhere
    ("2026-01-01", "health-data", "password", INTERNAL_IP, None, H, "step_up", {"mfa"}, "mfa_required"),
    ("2026-01-02", "health-data", "password", INTERNAL_IP, None, H, "step_up", {"mfa"}, "mfa_required"),
    ("2026-01-02", "health-data", "password", EXTERNAL_IP, None, H, "step_up", {"mfa"}, "mfa_required"),
    ("2025-12-31", "health-data", "totp", EXTERNAL_IP, None, H, "allow", set(), None),
    ("2026-01-02", "health-data", "totp", EXTERNAL_IP, None, H, "allow", set(), None),
    ("2026-01-02", "health-data", "webauthn", EXTERNAL_IP, None, H, "allow", set(), None),
    ("2026-01-02", "health-data", "password+key", INTERNAL_IP, None, H, "allow", set(), None),
    # a second factor from a person whose MIE was not issued after an identity check reaches eidas1 only
    ("2026-01-02", "health-data", "unproofed-totp", INTERNAL_IP, None, H, "deny", set(), "acr_insufficient"),
    # age of the authentication: 12 h, 8 h for interim staff and contractors
    ("2026-01-02", "health-data", "totp", INTERNAL_IP, None, dt.timedelta(hours=11, minutes=59), "allow", set(),
     None),
    ("2026-01-02", "health-data", "totp", INTERNAL_IP, None, dt.timedelta(hours=12, seconds=1), "step_up",
     {"fresh_auth"}, "auth_too_old"),
    ("2026-01-02", "health-data", "totp", INTERNAL_IP, "interim", dt.timedelta(hours=7), "allow", set(), None),
    ("2026-01-02", "health-data", "totp", INTERNAL_IP, "interim", dt.timedelta(hours=9), "step_up",
     {"fresh_auth"}, "auth_too_old"),
    ("2026-01-02", "health-data", "totp", INTERNAL_IP, "contractor", dt.timedelta(hours=9), "step_up",
     {"fresh_auth"}, "auth_too_old"),
    ("2026-01-02", "health-data", "totp", INTERNAL_IP, "trainee", dt.timedelta(hours=9), "allow", set(), None),
    ("2026-01-02", "health-data", "password", INTERNAL_IP, None, dt.timedelta(hours=13), "step_up",
     {"mfa", "fresh_auth"}, "auth_too_old"),
    # standard applications: one factor from anywhere, before and after 2026
    ("2025-12-31", "standard", "password", EXTERNAL_IP, None, H, "allow", set(), None),
    ("2026-01-02", "standard", "password", EXTERNAL_IP, None, H, "allow", set(), None),
    ("2026-01-02", "standard", "password", None, None, H, "allow", set(), None),
    # administration: internal network only, two factors, one hour
    ("2026-01-02", "administration", "totp", INTERNAL_IP, None, H / 2, "allow", set(), None),
    ("2026-01-02", "administration", "totp", EXTERNAL_IP, None, H / 2, "deny", set(), "network_refused"),
    ("2026-01-02", "administration", "totp", None, None, H / 2, "deny", set(), "network_unknown"),
    ("2025-12-31", "administration", "password", INTERNAL_IP, None, H / 2, "step_up", {"mfa"}, "mfa_required"),
    ("2026-01-02", "administration", "totp", INTERNAL_IP, None, 2 * H, "step_up", {"fresh_auth"}, "auth_too_old"),
    ("2026-01-02", "administration", "totp", INTERNAL_IP, "interim", H / 2, "deny", set(), "network_refused"),
    ("2026-01-02", "administration", "totp", INTERNAL_IP, "trainee", H / 2, "deny", set(), "network_refused"),
    ("2026-01-02", "administration", "totp", None, "trainee", H / 2, "deny", set(), "network_refused"),
    ("2026-01-02", "administration", "totp", INTERNAL_IP, "contractor", H / 2, "allow", set(), None),
    # a class the policy does not know
    ("2026-01-02", "billing", "webauthn", INTERNAL_IP, None, H, "deny", set(), "unknown_class"),
]


@pytest.mark.parametrize("day,app_class,auth,ip,population,age,kind,missing,code", SHIPPED_CASES)
def test_shipped_policy(day, app_class, auth, ip, population, age, kind, missing, code):
    decision = evaluate(SHIPPED, ctx(at(day), app_class, auth, ip, population, age))
    assert decision.kind == kind, describe_decision(decision)
    assert decision.missing == frozenset(missing)
    if code is not None:
        assert code in decision.codes, describe_decision(decision)
    assert all(m in MISSING_VALUES for m in decision.missing)


def test_the_default_policy_requires_two_factors_for_health_data_since_1_january_2026():
    before = evaluate(SHIPPED, ctx(at("2025-12-31"), auth="password"))
    after = evaluate(SHIPPED, ctx(at("2026-01-02"), auth="password"))
    assert before.allowed and before.rules == ()
    assert after.kind == "step_up" and after.missing == {"mfa"} and after.candidates == ("totp",)
    reason = next(r for r in after.reasons if r.code == "mfa_required")
    assert reason.rule == "rie-2026-deux-facteurs"
    assert "deux facteurs" in reason.message and "01/01/2026" in reason.message
    assert set(after.rules) == {"rie-2026-deux-facteurs", "rie-2026-homologation"}


@pytest.mark.parametrize("instant,tolerated", [
    (dt.datetime(2025, 12, 31, 22, 59, tzinfo=UTC), True),  # 23:59 in Paris
    (dt.datetime(2025, 12, 31, 23, 0, tzinfo=UTC), False),  # midnight in Paris: the rule is in force
    (dt.datetime(2025, 12, 31, 23, 30), False),  # naive datetimes are UTC
    (dt.date(2025, 12, 31), True),
    (dt.date(2026, 1, 1), False),
])
def test_dated_rules_start_at_midnight_in_the_policy_time_zone(instant, tolerated):
    decision = evaluate(SHIPPED, ctx(instant, auth="password"))
    assert decision.allowed is tolerated


def test_a_date_alone_skips_the_age_check_and_a_missing_auth_time_is_too_old():
    assert evaluate(SHIPPED, ctx(dt.date(2026, 1, 2), auth="totp", age=dt.timedelta(days=3))).allowed
    stale = evaluate(SHIPPED, ctx(at("2026-01-02"), auth="totp", auth_time=None))
    assert stale.kind == "step_up" and stale.missing == {"fresh_auth"}


def test_no_second_factor_to_offer_is_a_denial_with_guidance_or_an_enrollment_step():
    denied = evaluate(SHIPPED, ctx(at("2026-01-02"), auth="password", available={"password"}))
    assert denied.kind == "deny"
    assert denied.codes[:2] == ("mfa_required", "no_usable_mie")
    assert "guichet" in denied.reasons[1].message
    enrolling = evaluate(SHIPPED, ctx(at("2026-01-02"), auth="password", available=set(), enrollment_possible=True))
    assert enrolling.kind == "step_up" and enrolling.missing == {"mfa", "enrollment"}


def test_the_same_second_factor_at_a_level_too_low_is_not_offered_again():
    decision = evaluate(SHIPPED, ctx(at("2026-01-02"), auth="unproofed-totp", available={"password", "totp"}))
    assert decision.kind == "deny" and decision.candidates == ()
    with_key = evaluate(SHIPPED, ctx(at("2026-01-02"), auth="unproofed-totp", available={"totp", "webauthn"}))
    assert with_key.kind == "step_up" and with_key.missing == {"acr:eidas2"} and with_key.candidates == ("webauthn",)


def test_not_authenticated_is_a_step_up_to_login():
    decision = evaluate(SHIPPED, EvaluationContext(as_of=at("2026-01-02"), app_class="standard"))
    assert decision.kind == "step_up" and decision.missing == {"login"} and decision.codes == ("not_authenticated",)


# -- a policy of our own: homologation dates, eidas3, restricted types -------------------------------------------

@pytest.mark.parametrize("day,kind", [
    ("2026-02-28", "step_up"),  # the TOTP homologation is decided on 1 March 2026
    ("2026-03-01", "allow"),
    ("2026-03-02", "allow"),
])
def test_a_homologated_type_counts_from_its_decision_date(day, kind):
    p = policy()
    decision = evaluate(p, ctx(at(day), auth="totp", available={"totp", "webauthn"}))
    assert decision.kind == kind, describe_decision(decision)
    if kind == "step_up":
        assert decision.codes == ("mie_type_not_homologated", "mfa_required")
        assert decision.candidates == ("webauthn",)


def test_a_homologation_with_an_end_stops_counting_that_day():
    p = policy()
    assert evaluate(p, ctx(at("2028-05-31"), auth="webauthn", available={"webauthn"})).allowed
    after = evaluate(p, ctx(at("2028-06-01"), auth="webauthn", available={"webauthn"}))
    assert after.kind == "deny" and "mie_type_not_homologated" in after.codes


@pytest.mark.parametrize("day,kind,rules", [
    ("2026-01-31", "allow", ("tolerance",)),  # not homologated yet, tolerated
    ("2026-02-01", "deny", ()),  # the tolerance ended, the homologation is not decided yet
    ("2026-02-28", "deny", ()),
    ("2026-03-01", "allow", ()),  # homologated
])
def test_not_homologated_types_count_only_while_a_rule_accepts_them(day, kind, rules):
    p = policy("""\
        rules:
          - id: tolerance
            description: Tolérance jusqu'à la fin janvier
            until: 2026-02-01
            set: {accept_not_homologated: true}
        """)
    decision = evaluate(p, ctx(at(day), auth="totp", available={"password", "totp"}))
    assert (decision.kind, decision.rules) == (kind, rules), describe_decision(decision)
    if kind == "deny":
        assert decision.codes == ("mie_type_not_homologated", "mfa_required", "no_usable_mie")


@pytest.mark.parametrize("auth,available,kind,missing,candidates", [
    ("webauthn", {"webauthn"}, "allow", set(), ()),
    ("totp", {"totp", "webauthn"}, "step_up", {"acr:eidas3"}, ("webauthn",)),
    ("totp", {"totp"}, "deny", set(), ()),
    ("password", {"totp", "webauthn", "cps"}, "step_up", {"mfa", "acr:eidas3"}, ("cps", "webauthn")),
    ("password+key", {"webauthn"}, "deny", set(), ()),  # a key without user verification: eidas2 at most
])
def test_a_class_at_eidas3(auth, available, kind, missing, candidates):
    decision = evaluate(policy(), ctx(at("2026-06-01"), "high", auth, available=available))
    assert (decision.kind, decision.missing, decision.candidates) == (kind, frozenset(missing), candidates)


def test_types_that_do_not_count_are_explained_and_the_allowed_one_is_offered():
    p = policy()
    decision = evaluate(p, ctx(at("2026-06-01"), "keys-only", "totp", available={"totp", "webauthn"}))
    assert decision.kind == "step_up" and decision.candidates == ("webauthn",)
    assert decision.codes == ("mie_type_not_allowed", "mfa_required")
    allowed = evaluate(p, ctx(at("2026-06-01"), "keys-only", "password+key", available={"webauthn"}))
    assert allowed.allowed
    assert "mie_type_not_allowed" not in allowed.codes  # the password beside the key says nothing


def test_national_mie_types_are_passed_explicitly():
    psc = ctx(at("2026-06-01"), "high", "webauthn", mie_types={"cps"}, available=set())
    assert evaluate(policy(), psc).allowed
    unknown = ctx(at("2026-06-01"), "health-data", "totp", mie_types={"totp", "e-cps"})
    decision = evaluate(policy(), unknown)
    assert decision.allowed
    assert [r.blocking for r in decision.reasons if r.code == "mie_type_unknown"] == [False]


def test_the_most_specific_rule_wins():
    p = policy("""\
        rules:
          - id: all
            description: Toutes les classes
            set: {max_auth_age: 4h}
          - id: class
            description: Une classe
            applies_to: {class: health-data}
            set: {max_auth_age: 2h}
          - id: population
            description: Une population
            applies_to: {population: trainee}
            set: {max_auth_age: 1h}
          - id: both
            description: Les deux
            applies_to: {class: health-data, population: interim}
            set: {max_auth_age: 30m}
        """)
    ages = {pop: p.effective("health-data", at("2026-06-01"), pop) for pop in (None, "trainee", "interim")}
    assert ages[None].settings.max_auth_age == dt.timedelta(hours=2) and ages[None].sources["max_auth_age"] == "class"
    assert ages["trainee"].settings.max_auth_age == dt.timedelta(hours=1)
    assert ages["interim"].settings.max_auth_age == dt.timedelta(minutes=30)
    assert ages["interim"].rules == ("all", "class", "both")
    assert p.effective("high", at("2026-06-01")).settings.max_auth_age == dt.timedelta(hours=4)


# -- properties ------------------------------------------------------------------------------------------------

_classes = st.sampled_from(["health-data", "standard", "administration", "billing"])
_days = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2029, 12, 31))
_instants = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2029, 12, 31), timezones=st.just(UTC))
_amr = st.frozensets(st.sampled_from(["pwd", "otp", "hwk", "pin", "user", "mfa", "emergency", "swk", ""]))
# What "more" may add: factors. ``emergency`` is no factor but the mark of an emergency credential, judged apart.
_more_amr = st.frozensets(st.sampled_from(["pwd", "otp", "hwk", "pin", "user", "mfa", "swk", ""]))
_types = st.frozensets(st.sampled_from(["password", "totp", "webauthn", "cps", "e-cps", "sms", ""]))
_ips = st.one_of(st.none(), st.sampled_from([INTERNAL_IP, EXTERNAL_IP, "::1", "fd00::5", "garbage", ""]),
                 st.ip_addresses().map(str))
_populations = st.sampled_from([None, "interim", "trainee", "contractor", "permanent", "unknown"])
_acrs = st.sampled_from([None, "eidas1", "eidas2", "eidas3", "", "loa4"])


@st.composite
def contexts(draw):  # type: ignore[no-untyped-def]
    as_of = draw(st.one_of(_days, _instants))
    auth_time = draw(st.one_of(st.none(), _instants))
    return EvaluationContext(as_of=as_of, app_class=draw(_classes), acr=draw(_acrs), amr=draw(_amr),
                             auth_time=auth_time, population=draw(_populations), client_ip=draw(_ips),
                             mie_types=draw(st.one_of(st.none(), _types)), available_mie_types=draw(_types),
                             enrollment_possible=draw(st.booleans()))


@given(contexts())
def test_evaluation_never_raises_and_always_explains(context):
    decision = evaluate(SHIPPED, context)
    assert decision.kind in ("allow", "step_up", "deny")
    assert set(decision.codes) <= set(REASON_CODES)
    assert all(r.message for r in decision.reasons)
    if decision.kind == "step_up":
        assert decision.missing
    if decision.kind == "deny":
        assert any(r.blocking for r in decision.reasons)
    if decision.kind == "allow":
        assert not any(r.blocking for r in decision.reasons)
    assert describe_decision(decision)


_ORDER = ["eidas1", "eidas2", "eidas3"]


@settings(max_examples=400)  # about one context in ten is allowed: enough of them must be tried
@given(contexts(), st.sampled_from(_ORDER), _more_amr, _types)
def test_bringing_more_never_turns_an_allowed_access_into_a_refusal(context, acr, more_amr, more_types):
    if not evaluate(SHIPPED, context).allowed:
        return
    current = _ORDER.index(context.acr) if context.acr in _ORDER else -1
    stronger = EvaluationContext(
        as_of=context.as_of, app_class=context.app_class, population=context.population,
        client_ip=context.client_ip, auth_time=context.auth_time,
        acr=acr if _ORDER.index(acr) >= current else context.acr,
        amr=context.amr | more_amr, mie_types=context.used_mie_types | more_types,
        available_mie_types=context.available_mie_types)
    assert evaluate(SHIPPED, stronger).allowed


# -- emergency access (bris de glace) ---------------------------------------------------------------------------

EMERGENCY = frozenset({"emergency", "pwd"})


@pytest.mark.parametrize("day,app_class,ip,population,age,kind,code", [
    # the shipped policy lets an emergency credential into health data only, before and after the RIE date
    ("2025-12-30", "health-data", INTERNAL_IP, None, H, "allow", "emergency_access"),
    ("2026-06-01", "health-data", INTERNAL_IP, None, H, "allow", "emergency_access"),
    ("2026-06-01", "health-data", EXTERNAL_IP, "interim", H, "allow", "emergency_access"),
    ("2026-06-01", "standard", INTERNAL_IP, None, H, "deny", "emergency_not_allowed"),
    ("2026-06-01", "administration", INTERNAL_IP, None, H, "deny", "emergency_not_allowed"),
    # the network and the age of the authentication still count
    ("2026-06-01", "administration", EXTERNAL_IP, None, H, "deny", "network_refused"),
    ("2026-06-01", "health-data", INTERNAL_IP, None, 13 * H, "step_up", "auth_too_old"),
])
def test_an_emergency_credential_opens_only_the_classes_that_allow_it(day, app_class, ip, population, age, kind,
                                                                      code):
    decision = evaluate(SHIPPED, ctx(at(day), app_class, "password", ip, population, age, amr=EMERGENCY,
                                     acr="eidas1"))
    assert decision.kind == kind, describe_decision(decision)
    assert code in decision.codes
    # never a step-up to a second factor: the credential replaces the usual means, it does not start a sign-in
    assert "mfa" not in decision.missing and not decision.candidates


def test_emergency_access_follows_the_dated_rules_and_the_population():
    p = policy(base="", extra="""\
        version: 1
        mie_types:
          password: {status: not_homologated, factors: 1}
          totp: {status: homologated, factors: 2, decision_date: 2025-03-01, decision_reference: "DEC-1"}
        classes:
          health-data:
            min_acr: eidas2
            allowed_mie_types: [password, totp]
            emergency: true
        populations:
          contractor: {label: Prestataires}
        rules:
          - id: fin-urgence
            description: Plus d'accès d'urgence
            from: 2026-07-01
            applies_to: {class: health-data}
            set: {emergency: false}
          - id: pas-prestataires
            description: Pas d'accès d'urgence pour les prestataires
            applies_to: {population: contractor, class: health-data}
            set: {emergency: false}
        """)
    emergency = dict(amr=EMERGENCY, acr="eidas1")
    assert evaluate(p, ctx(at("2026-06-30"), auth="password", **emergency)).allowed
    late = evaluate(p, ctx(at("2026-07-01"), auth="password", **emergency))
    assert late.kind == "deny" and "emergency_not_allowed" in late.codes and "fin-urgence" in late.reasons[0].message
    contractor = evaluate(p, ctx(at("2026-06-30"), auth="password", population="contractor", **emergency))
    assert contractor.kind == "deny" and "emergency_not_allowed" in contractor.codes


def test_a_class_that_allows_emergency_access_still_judges_normal_sign_ins_as_usual():
    decision = evaluate(SHIPPED, ctx(at("2026-06-01"), "health-data", "password"))
    assert decision.kind == "step_up" and decision.missing == {"mfa"}
    assert "emergency_access" not in decision.codes
