"""The authorization checks, on plain values (hospiconnect.idp.checks)."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hospiconnect.idp.checks import (
    ACR_LEVELS,
    REASONS,
    InteractionFacts,
    PersonFacts,
    RequestFacts,
    SessionFacts,
    acr_for,
    acr_rank,
    evaluate,
    parse_max_age,
    parse_prompt,
    prompt_none_error,
    reachable_acr,
)

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.timezone.utc)
PWD = SessionFacts(identity_id=1, auth_time=NOW - dt.timedelta(minutes=5), amr=("pwd",), acr="eidas1")
MFA = SessionFacts(identity_id=1, auth_time=NOW - dt.timedelta(minutes=5), amr=("mfa", "otp", "pwd"),
                   acr="eidas2", mfa_time=NOW - dt.timedelta(minutes=5))
NO_2F = PersonFacts(has_second_factor=False)
TOTP = PersonFacts(has_second_factor=True, proofed=True)
KEY = PersonFacts(has_second_factor=True, proofed=True, has_hardware_key=True)


NOTHING = RequestFacts()


def ev(request=NOTHING, sensitivity="standard", session=PWD, interaction=None, person=TOTP):
    return evaluate(request, sensitivity, session, interaction, person, NOW)


# --- acr ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amr, proofed, expected", [
    (["pwd"], True, "eidas1"),
    (["pwd"], False, "eidas1"),
    (["mfa", "otp", "pwd"], False, "eidas1"),          # two factors, identity never checked
    (["mfa", "otp", "pwd"], True, "eidas2"),
    (["hwk", "mfa", "pwd", "user"], True, "eidas2"),    # security key with presence only + password
    (["hwk", "mfa", "pin"], True, "eidas3"),            # WebAuthn with user verification
    (["hwk", "mfa", "pin"], False, "eidas1"),
    (["hwk", "pin"], True, "eidas1"),                   # no mfa claimed: not two factors
])
def test_acr_for(amr, proofed, expected):
    assert acr_for(amr, proofed) == expected


def test_acr_rank_and_reachable():
    assert [acr_rank(a) for a in ACR_LEVELS] == [0, 1, 2]
    assert acr_rank("urn:unknown") == -1 and acr_rank(None) == -1
    assert reachable_acr(NO_2F) == "eidas1"
    assert reachable_acr(PersonFacts(has_second_factor=True, proofed=False)) == "eidas1"
    assert reachable_acr(TOTP) == "eidas2"
    assert reachable_acr(KEY) == "eidas3"


# --- reasons --------------------------------------------------------------------------------------------

def test_live_session_on_a_standard_client_is_enough():
    result = ev()
    assert result.satisfied and result.reasons == () and result.acr == "eidas1"


def test_no_session():
    assert ev(session=None, person=None).reasons == ("no_session",)
    assert ev(session=None, person=None, sensitivity="health-data").reasons == ("no_session", "mfa_required")


def test_health_data_requires_two_factors_whatever_the_person_has():
    assert ev(sensitivity="health-data").reasons == ("mfa_required",)
    assert ev(sensitivity="health-data", person=NO_2F).reasons == ("mfa_required",)
    assert ev(sensitivity="health-data", session=MFA).satisfied


def test_prompt_login_is_satisfied_by_a_login_in_this_interaction_only():
    request = RequestFacts(prompt=frozenset({"login"}))
    assert ev(request).reasons == ("login_prompt",)
    done = InteractionFacts(identity_id=1, completed_at=NOW, factors=("pwd",))
    assert ev(request, interaction=done).satisfied
    # A second factor alone (step-up) is not a new login.
    step_up = InteractionFacts(identity_id=None, completed_at=NOW, factors=("mfa", "otp"))
    assert ev(request, interaction=step_up).reasons == ("login_prompt",)
    # The login of another person does not count for this session.
    other = InteractionFacts(identity_id=2, completed_at=NOW, factors=("pwd",))
    assert ev(request, interaction=other).reasons == ("login_prompt",)
    # Not completed: does not count.
    pending = InteractionFacts(identity_id=1, completed_at=None, factors=("pwd",))
    assert ev(request, interaction=pending).reasons == ("login_prompt",)


def test_max_age():
    assert ev(RequestFacts(max_age=600)).satisfied
    assert ev(RequestFacts(max_age=60)).reasons == ("max_age",)
    assert ev(RequestFacts(max_age=0)).reasons == ("max_age",)
    # max_age=0 after a login in this interaction: no loop.
    done = InteractionFacts(identity_id=1, completed_at=NOW, factors=("pwd",))
    assert ev(RequestFacts(max_age=0), interaction=done).satisfied


def test_id_token_hint():
    assert ev(RequestFacts(id_token_hint=True, hint_identity_id=1)).satisfied
    assert ev(RequestFacts(id_token_hint=True, hint_identity_id=2)).reasons == ("id_token_hint_mismatch",)
    assert ev(RequestFacts(id_token_hint=True, hint_identity_id=None)).reasons == ("id_token_hint_mismatch",)
    # Someone else signed in during the interaction: an error, not another round.
    done = InteractionFacts(identity_id=1, completed_at=NOW, factors=("pwd",))
    result = ev(RequestFacts(id_token_hint=True, hint_identity_id=2), interaction=done)
    assert result.refusal is not None and result.refusal.error == "login_required"


def test_essential_acr():
    eidas2 = RequestFacts(essential_acr=("eidas2",))
    assert ev(eidas2).reasons == ("essential_acr",)
    assert ev(eidas2, session=MFA).satisfied and ev(eidas2, session=MFA).acr == "eidas2"
    # Out of reach for this person: refusal, never a lower level.
    refused = ev(eidas2, person=NO_2F)
    assert refused.refusal is not None and refused.refusal.error == "unmet_authentication_requirements"
    assert refused.refusal.reason == "acr_unmet" and refused.acr is None
    refused = ev(RequestFacts(essential_acr=("eidas3",)), session=MFA, person=TOTP)
    assert refused.refusal is not None
    # Unknown values only: never satisfiable, even without a session.
    unknown = ev(RequestFacts(essential_acr=("urn:x",)), session=None, person=None)
    assert unknown.refusal is not None and unknown.refusal.reason == "acr_unmet"
    # Without a session the person is unknown: sign in first, decide afterwards.
    assert ev(eidas2, session=None, person=None).reasons == ("no_session", "essential_acr")
    assert ev(RequestFacts(essential_acr=("eidas1",)), session=None, person=None).reasons == ("no_session",)
    # The lowest acceptable level suffices; the highest met is reported.
    either = RequestFacts(essential_acr=("eidas1", "eidas2"))
    assert ev(either).acr == "eidas1"
    assert ev(either, session=MFA).acr == "eidas2"


def test_acr_values_report_the_highest_level_met():
    assert ev(RequestFacts(acr_values=("eidas2", "eidas1"))).acr == "eidas1"
    assert ev(RequestFacts(acr_values=("eidas1", "eidas2")), session=MFA).acr == "eidas2"
    assert ev(RequestFacts(acr_values=("eidas3",))).acr == "eidas1"  # voluntary: the session's level
    assert ev(RequestFacts(acr_values=("urn:other",)), session=MFA).acr == "eidas2"


def test_prompt_none_errors():
    assert prompt_none_error(["no_session"]) == "login_required"
    assert prompt_none_error(["max_age", "mfa_required"]) == "login_required"
    assert prompt_none_error(["mfa_required"]) == "interaction_required"
    assert prompt_none_error(["essential_acr"]) == "interaction_required"


def test_parse_prompt_and_max_age():
    assert parse_prompt(None) == frozenset()
    assert parse_prompt("login consent") == {"login", "consent"}
    assert parse_prompt("select_account") == {"select_account"}
    for bad in ("none login", "bogus", "login create"):
        with pytest.raises(ValueError):
            parse_prompt(bad)
    assert parse_max_age(None) is None and parse_max_age("") is None and parse_max_age("0") == 0
    for bad in ("-1", "1.5", "abc", "١٢", "99999999999"):
        with pytest.raises(ValueError):
            parse_max_age(bad)


# --- properties -----------------------------------------------------------------------------------------

sessions = st.one_of(st.none(), st.builds(
    SessionFacts, identity_id=st.integers(1, 3),
    auth_time=st.integers(0, 7200).map(lambda s: NOW - dt.timedelta(seconds=s)),
    amr=st.sets(st.sampled_from(["pwd", "otp", "hwk", "pin", "mfa"])).map(lambda s: tuple(sorted(s))),
    acr=st.sampled_from(ACR_LEVELS)))
requests = st.builds(
    RequestFacts, prompt=st.sampled_from([frozenset(), frozenset({"login"}), frozenset({"none"})]),
    max_age=st.one_of(st.none(), st.integers(0, 3600)),
    acr_values=st.lists(st.sampled_from(ACR_LEVELS + ("x",)), max_size=3).map(tuple),
    essential_acr=st.lists(st.sampled_from(ACR_LEVELS + ("x",)), max_size=2).map(tuple),
    id_token_hint=st.booleans(), hint_identity_id=st.one_of(st.none(), st.integers(1, 3)))
persons = st.builds(PersonFacts, has_second_factor=st.booleans(), proofed=st.booleans(),
                    has_hardware_key=st.booleans())
interactions_ = st.one_of(st.none(), st.builds(
    InteractionFacts, identity_id=st.one_of(st.none(), st.integers(1, 3)),
    completed_at=st.one_of(st.none(), st.just(NOW)), factors=st.just(("pwd",))))


@given(requests, st.sampled_from(["standard", "health-data"]), sessions, interactions_, persons)
def test_evaluation_is_consistent(request, sensitivity, session, interaction, person):
    result = evaluate(request, sensitivity, session, interaction, person if session else None, NOW)
    assert set(result.reasons) <= set(REASONS)
    assert list(result.reasons) == sorted(result.reasons, key=REASONS.index)
    if result.satisfied:
        # A code is only ever issued for a session, with two factors for health data, and with a level at
        # least the essential one.
        assert session is not None and result.acr is not None
        if sensitivity == "health-data":
            assert "mfa" in session.amr
        known = [v for v in request.essential_acr if acr_rank(v) >= 0]
        if known:
            assert result.acr in known
            assert acr_rank(session.acr) >= min(acr_rank(v) for v in known)
    else:
        assert result.acr is None
