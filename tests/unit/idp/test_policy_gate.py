"""How the provider maps the access policy's decisions (hospiconnect.idp.policy_gate, pure parts)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from hospiconnect.idp.policy_gate import (
    PersonMie,
    ascii_description,
    factors_acr,
    map_decision,
    needed_acr,
    types_reaching,
)
from hospiconnect.policies import Decision, EvaluationContext, Reason, evaluate
from tests.unit.policies.helpers import EXTERNAL_IP, INTERNAL_IP, SHIPPED, at

NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.timezone.utc)
SESSIONS = {"password": ("pwd",), "totp": ("mfa", "otp", "pwd"), "key-uv": ("hwk", "mfa", "pin"),
            "password+key": ("hwk", "mfa", "pwd", "user"), "recovered": ("pwd", "otp", "mfa", "hwk", "pin")}
PEOPLE = {"password only": {"password"}, "totp": {"password", "totp"}, "key": {"password", "webauthn"},
          "key only": {"webauthn"}}


def decide(app_class: str, amr: tuple[str, ...], available: set[str], *, ip: str | None = INTERNAL_IP,
           population: str | None = "permanent", now: dt.datetime = NOW):
    context = EvaluationContext(as_of=now, app_class=app_class, acr=factors_acr(amr), amr=frozenset(amr),
                                auth_time=now - dt.timedelta(minutes=5), population=population, client_ip=ip,
                                available_mie_types=frozenset(available))
    return map_decision(evaluate(SHIPPED, context), two_factors="mfa" in amr,
                        needed=needed_acr(SHIPPED, app_class, now, ip, population))


@pytest.mark.parametrize(("app_class", "session", "person", "ip"), list(itertools.product(
    ("health-data", "standard"), SESSIONS, PEOPLE, (INTERNAL_IP, EXTERNAL_IP, None))))
def test_the_shipped_policy_gives_the_providers_former_rule(app_class, session, person, ip):
    """Two factors for health data, one for standard applications; never a refusal for a permanent employee."""
    amr = SESSIONS[session]
    result = decide(app_class, amr, PEOPLE[person], ip=ip)
    expected = ("mfa_required",) if app_class == "health-data" and "mfa" not in amr else ()
    assert result.refusal is None and result.reasons == expected
    assert result.needs_mfa == (app_class == "health-data")


def test_allow_adds_nothing():
    result = decide("standard", ("pwd",), {"password"})
    assert result.decision.allowed and result.reasons == () and result.refusal is None and result.step_up_types is None


def test_step_up_for_a_second_factor_offers_the_types_that_would_do():
    result = decide("health-data", ("pwd",), {"password", "totp", "webauthn"})
    assert result.decision.kind == "step_up" and result.reasons == ("mfa_required",)
    assert result.step_up_types == ("webauthn", "totp") and result.required_acr == "eidas2"
    assert result.messages and "deux facteurs" in result.messages[0]


def test_step_up_to_a_higher_level_is_an_essential_acr_reason():
    decision = Decision(kind="step_up", missing=frozenset({"acr:eidas3"}), candidates=("webauthn",),
                        app_class="high", reasons=(Reason("acr_insufficient", "niveau"),))
    result = map_decision(decision, two_factors=True, needed="eidas3")
    assert result.reasons == ("essential_acr",) and result.required_acr == "eidas3" and result.needs_mfa
    assert result.step_up_types == ("webauthn",)


def test_an_old_authentication_is_a_sign_in():
    # Interim staff sign in again every 8 hours (rule contrats-courts-reauthentification).
    context = EvaluationContext(as_of=NOW, app_class="health-data", acr="eidas2", amr=frozenset({"pwd", "otp", "mfa"}),
                                auth_time=NOW - dt.timedelta(hours=9), population="interim")
    result = map_decision(evaluate(SHIPPED, context), two_factors=True, needed="eidas2")
    assert result.reasons == ("auth_too_old",) and result.refusal is None and result.needs_mfa


def test_a_denial_is_access_denied_with_an_ascii_description():
    result = decide("administration", ("mfa", "otp", "pwd"), {"password", "totp"}, ip=EXTERNAL_IP)
    assert result.refusal is not None and result.refusal.error == "access_denied"
    assert result.refusal.reason == "policy_denied" and result.reasons == ()
    description = result.refusal.description
    assert description.isascii() and "network_refused" in description and "administration" in description
    assert '"' not in description and "\\" not in description and "\n" not in description
    assert result.messages and "203.0.113.7" in result.messages[0]


def test_no_second_factor_that_would_do_keeps_the_explanation_page():
    result = decide("health-data", ("pwd",), {"password"})
    assert result.decision.kind == "deny" and result.refusal is None
    assert result.reasons == ("mfa_required",) and result.step_up_types == () and result.needs_mfa
    assert any("guichet d'enrôlement" in m for m in result.messages)
    # Once two factors are proven, a denial is a denial.
    decision = Decision(kind="deny", app_class="high", reasons=(Reason("acr_insufficient", "x"),
                                                                Reason("no_usable_mie", "y")))
    assert map_decision(decision, two_factors=True, needed="eidas3").refusal is not None


def test_an_undeclared_class_is_refused():
    assert needed_acr(SHIPPED, "ancienne", NOW, None) is None
    result = decide("ancienne", ("mfa", "otp", "pwd"), {"password", "totp"})
    assert result.refusal is not None and "unknown_class" in result.refusal.description


def test_needed_level_follows_networks_and_dates():
    assert needed_acr(SHIPPED, "health-data", at("2025-06-01"), INTERNAL_IP) == "eidas1"
    assert needed_acr(SHIPPED, "health-data", at("2025-06-01"), EXTERNAL_IP) == "eidas2"
    assert needed_acr(SHIPPED, "health-data", at("2026-01-01"), INTERNAL_IP) == "eidas2"
    assert needed_acr(SHIPPED, "standard", at("2026-01-01"), None) == "eidas1"


def test_types_reaching_a_level():
    assert types_reaching(SHIPPED, "health-data", NOW, "eidas2") == ("totp", "webauthn")
    assert types_reaching(SHIPPED, "health-data", NOW, "eidas3") == ("webauthn",)


def test_factors_acr_ignores_the_identity_check_and_person_facts():
    assert factors_acr(["pwd"]) == "eidas1"
    assert factors_acr(["pwd", "otp", "mfa"]) == "eidas2"
    assert factors_acr(["hwk", "pin", "mfa"]) == "eidas3"
    person = PersonMie((("password", None), ("totp", None), ("webauthn", "face_to_face")))
    assert person.available_types == {"password", "totp", "webauthn"}
    assert person.facts.has_second_factor and person.facts.proofed and person.facts.has_hardware_key
    assert not PersonMie((("password", None),)).facts.has_second_factor


def test_description_of_a_denial_without_reason():
    assert ascii_description(Decision(kind="deny", app_class="x")).endswith(": denied.")
