"""Exceptions applied by the evaluator: EvaluationContext.grants relax the settings of the day
(hospiconnect.policies.relaxations.relax) and Decision.applied_grants names those that changed the outcome."""

from __future__ import annotations

import datetime as dt

import pytest

from hospiconnect.policies import evaluate
from hospiconnect.policies.relaxations import ExceptionGrant, Relaxation
from tests.unit.policies.helpers import EXTERNAL_IP, INTERNAL_IP, MINIMAL, at, ctx, policy

T0 = at("2026-11-27")

ADMINISTRATION = """\
  administration:
    min_acr: eidas2
    allowed_mie_types: [password, totp, webauthn]
    max_auth_age: 8h
    networks: [internal]
    exceptions_may_lower_factors: true
  standard:
    min_acr: eidas1
    allowed_mie_types: [password, totp]
"""
POLICY = policy(base=MINIMAL.replace("populations:", ADMINISTRATION + "populations:"))
# The same, with health data explicitly open to single-factor exceptions.
LOWERABLE = policy(base=MINIMAL.replace("    max_auth_age: 8h\n", "    max_auth_age: 8h\n"
                                        "    exceptions_may_lower_factors: true\n", 1)
                   .replace("populations:", ADMINISTRATION + "populations:"))


def grant(gid: str, app_class: str = "administration", *, start: dt.datetime = T0 - dt.timedelta(days=1),
          end: dt.datetime = T0 + dt.timedelta(days=10), **relaxation: object) -> ExceptionGrant:
    return ExceptionGrant(id=gid, app_class=app_class, relaxation=Relaxation(**relaxation),  # type: ignore[arg-type]
                          starts_at=start, ends_at=end, justification="Panne du lecteur de cartes")


SINGLE = grant("g-single", allow_single_factor=True)
HOURS_10 = dt.timedelta(hours=10)

# (id, policy, class, auth, ip, age, grants, kind, missing, applied)
CASES = [
    ("admin-password-without-grant", POLICY, "administration", "password", INTERNAL_IP, None, (),
     "step_up", {"mfa"}, ()),
    ("single-factor-grant-lets-password-through", POLICY, "administration", "password", INTERNAL_IP, None,
     (SINGLE,), "allow", set(), ("g-single",)),
    ("single-factor-grant-makes-a-not-homologated-password-count", POLICY, "standard", "password", INTERNAL_IP,
     None, (grant("g-std", "standard", allow_single_factor=True),), "allow", set(), ("g-std",)),
    ("standard-password-without-grant-does-not-count", POLICY, "standard", "password", INTERNAL_IP, None, (),
     "step_up", {"acr:eidas1"}, ()),
    ("health-data-floor-ignores-single-factor", POLICY, "health-data", "password", INTERNAL_IP, None,
     (grant("g-hd", "health-data", allow_single_factor=True),), "step_up", {"mfa"}, ()),
    ("health-data-lowerable-when-the-policy-says-so", LOWERABLE, "health-data", "password", INTERNAL_IP, None,
     (grant("g-hd", "health-data", allow_single_factor=True),), "allow", set(), ("g-hd",)),
    ("network-refused-without-grant", POLICY, "administration", "totp", EXTERNAL_IP, None, (),
     "deny", set(), ()),
    ("extra-network-grant", POLICY, "administration", "totp", EXTERNAL_IP, None,
     (grant("g-net", networks=("203.0.113.0/24",)),), "allow", set(), ("g-net",)),
    ("extra-network-grant-changes-nothing-from-inside", POLICY, "administration", "totp", INTERNAL_IP, None,
     (grant("g-net", networks=("203.0.113.0/24",)),), "allow", set(), ()),
    ("old-authentication-without-grant", POLICY, "administration", "totp", INTERNAL_IP, HOURS_10, (),
     "step_up", {"fresh_auth"}, ()),
    ("longer-max-auth-age", POLICY, "administration", "totp", INTERNAL_IP, HOURS_10,
     (grant("g-age", max_auth_age=dt.timedelta(hours=12)),), "allow", set(), ("g-age",)),
    ("longer-max-auth-age-asks-less-of-a-step-up", POLICY, "administration", "password", INTERNAL_IP, HOURS_10,
     (grant("g-age", max_auth_age=dt.timedelta(hours=12)),), "step_up", {"mfa"}, ("g-age",)),
    ("expired-grant-ignored", POLICY, "administration", "password", INTERNAL_IP, None,
     (grant("g-old", start=T0 - dt.timedelta(days=10), end=T0 - dt.timedelta(hours=1), allow_single_factor=True),),
     "step_up", {"mfa"}, ()),
    ("future-grant-ignored", POLICY, "administration", "password", INTERNAL_IP, None,
     (grant("g-soon", start=T0 + dt.timedelta(hours=1), allow_single_factor=True),), "step_up", {"mfa"}, ()),
    ("grant-for-another-class-ignored", POLICY, "administration", "password", INTERNAL_IP, None,
     (grant("g-other", "standard", allow_single_factor=True),), "step_up", {"mfa"}, ()),
    ("redundant-grants-name-one", POLICY, "administration", "password", INTERNAL_IP, None,
     (SINGLE, grant("g-single-2", allow_single_factor=True)), "allow", set(), ("g-single-2",)),
    ("unneeded-grant-left-out", POLICY, "administration", "password", INTERNAL_IP, None,
     (grant("g-net", networks=("203.0.113.0/24",)), SINGLE), "allow", set(), ("g-single",)),
]


@pytest.mark.parametrize("policy_, app_class, auth, ip, age, grants, kind, missing, applied",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_grants_in_the_context(policy_, app_class, auth, ip, age, grants, kind, missing, applied):
    extra = {"age": age} if age is not None else {}
    decision = evaluate(policy_, ctx(T0, app_class, auth, ip, grants=grants, **extra))
    assert (decision.kind, set(decision.missing), decision.applied_grants) == (kind, missing, applied)
    assert decision.as_json()["applied_grants"] == list(applied)


def test_a_grant_makes_an_mie_type_count_whatever_its_homologation():
    before_decision = at("2026-02-01")  # totp is homologated from 2026-03-01 only
    assert evaluate(POLICY, ctx(before_decision, "administration", "totp")).kind != "allow"
    g = grant("g-totp", allow_mie_types=("totp",), start=before_decision - dt.timedelta(days=1),
              end=before_decision + dt.timedelta(days=5))
    decision = evaluate(POLICY, ctx(before_decision, "administration", "totp", grants=[g]))
    assert decision.kind == "allow" and decision.applied_grants == ("g-totp",)


def test_a_day_alone_looks_at_the_grants_in_force_at_its_start_and_naive_bounds_are_utc():
    day = dt.date(2026, 11, 27)
    naive = ExceptionGrant(id="g-naive", app_class="administration", relaxation=Relaxation(allow_single_factor=True),
                           starts_at=dt.datetime(2026, 11, 1), ends_at=dt.datetime(2026, 12, 1))
    decision = evaluate(POLICY, ctx(day, "administration", "password", grants=(naive,)))
    assert decision.kind == "allow" and decision.applied_grants == ("g-naive",)
    assert evaluate(POLICY, ctx(day, "administration", "password")).kind == "step_up"


def test_grants_never_make_a_decision_stricter():
    for case in CASES:
        _, policy_, app_class, auth, ip, age, grants, *_ = case
        extra = {"age": age} if age is not None else {}
        without = evaluate(policy_, ctx(T0, app_class, auth, ip, **extra))
        with_grants = evaluate(policy_, ctx(T0, app_class, auth, ip, grants=grants, **extra))
        order = {"allow": 0, "step_up": 1, "deny": 2}
        assert order[with_grants.kind] <= order[without.kind], case[0]
