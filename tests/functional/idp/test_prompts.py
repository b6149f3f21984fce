"""Prompts, max_age, id_token_hint, step-up to two factors and acr (SECURITY.md items 8 and 11:
oidcc-prompt-none-not-logged-in, oidcc-max-age-1, oidcc-id-token-hint)."""

import datetime as dt
import json

import time_machine
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp import interactions
from hospiconnect.idp.models import Interaction
from tests.oidc_helpers import (
    ISSUER,
    auth_request,
    complete_interaction,
    exchange,
    id_token_claims,
    interaction_id_of,
    query_of,
    resume,
    sign_in,
    tokens_for,
)


def _authorize(client, rp, **extra):
    request = auth_request(rp, **extra)
    return request, client.get("/authorize", query_string=request.params)


# --- prompt=none ----------------------------------------------------------------------------------------

def test_prompt_none_not_logged_in_gives_login_required_without_page(client, rp, session):
    request, response = _authorize(client, rp, prompt="none")
    assert response.status_code == 302
    result = query_of(response.headers["Location"])
    assert result["error"] == "login_required" and result["iss"] == ISSUER and result["state"] == request.state
    assert session.scalar(select(Interaction.id)) is None  # no interaction, no page


def test_prompt_none_with_a_session_gives_the_code(client, rt, rp, person):
    sign_in(client, rt, rp, person)
    request, response = _authorize(client, rp, prompt="none")
    result = query_of(response.headers["Location"])
    assert "code" in result and result["iss"] == ISSUER
    assert exchange(client, rp, result["code"], request.verifier).status_code == 200


def test_prompt_none_on_health_data_without_mfa_gives_interaction_required(client, rt, rp, health_rp, person_mfa):
    sign_in(client, rt, rp, person_mfa)  # password only
    _, response = _authorize(client, health_rp, prompt="none")
    result = query_of(response.headers["Location"])
    assert result["error"] == "interaction_required" and result["iss"] == ISSUER


def test_prompt_none_with_max_age_exceeded_gives_login_required(client, rt, rp, person):
    sign_in(client, rt, rp, person)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)):
        _, response = _authorize(client, rp, prompt="none", max_age="60")
    assert query_of(response.headers["Location"])["error"] == "login_required"


# --- prompt=login / max_age: a later auth_time, no loop ---------------------------------------------------

def test_prompt_login_gives_a_later_auth_time_without_looping(client, rt, rp, person):
    first = tokens_for(client, rt, rp, person)
    first_auth = id_token_claims(rt, first["id_token"])["auth_time"]
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)):
        request, response = _authorize(client, rp, prompt="login")
        interaction_id = interaction_id_of(response)  # a session exists, still a login is asked
        with rt.db.session() as s:
            assert s.get(Interaction, interaction_id).reasons == ["login_prompt"]
        complete_interaction(client, rt, interaction_id, person.id)
        response = resume(client, interaction_id)
        result = query_of(response.headers["Location"])
        assert "code" in result, result  # not sent back to a login page: no loop
        body = exchange(client, rp, result["code"], request.verifier).get_json()
    claims = id_token_claims(rt, body["id_token"])
    assert claims["auth_time"] > first_auth
    assert claims["sid"] == id_token_claims(rt, first["id_token"])["sid"]  # same person: same session


def test_max_age_1_reauthenticates_and_auth_time_is_later(client, rt, rp, person):
    """oidcc-max-age-1: sign in, wait, ask with max_age=1: a new login, a later auth_time."""
    first = tokens_for(client, rt, rp, person)
    first_auth = id_token_claims(rt, first["id_token"])["auth_time"]
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)):
        request, response = _authorize(client, rp, max_age="1")
        interaction_id = interaction_id_of(response)
        with rt.db.session() as s:
            assert s.get(Interaction, interaction_id).reasons == ["max_age"]
        complete_interaction(client, rt, interaction_id, person.id)
        result = query_of(resume(client, interaction_id).headers["Location"])
        body = exchange(client, rp, result["code"], request.verifier).get_json()
    claims = id_token_claims(rt, body["id_token"])
    assert claims["auth_time"] >= first_auth + 3


def test_max_age_zero_does_not_loop(client, rt, rp, person):
    sign_in(client, rt, rp, person)
    request, result = sign_in(client, rt, rp, person, max_age="0")
    assert "code" in result


def test_max_age_not_exceeded_needs_no_login(client, rt, rp, person):
    sign_in(client, rt, rp, person)
    _, response = _authorize(client, rp, max_age="3600")
    assert "code=" in response.headers["Location"]


# --- oidcc-id-token-hint --------------------------------------------------------------------------------

def test_id_token_hint_of_the_session_person_gives_the_code_even_expired(client, rt, rp, person):
    first = tokens_for(client, rt, rp, person)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20)):
        # The session is kept alive; the hint has expired (id_token_minutes=5): still accepted.
        _, response = _authorize(client, rp, prompt="none", id_token_hint=first["id_token"])
    # 20 minutes < idle timeout of 30: session alive.
    result = query_of(response.headers["Location"])
    assert "code" in result, result


def test_id_token_hint_of_another_person(client, rt, rp, session, person):
    from tests.factories import create_identity

    other = create_identity(session)
    hint = tokens_for(client, rt, rp, other)["id_token"]
    client.delete_cookie("hc_sso")
    sign_in(client, rt, rp, person)
    _, response = _authorize(client, rp, prompt="none", id_token_hint=hint)
    assert query_of(response.headers["Location"])["error"] == "login_required"
    # Without prompt=none: a login is asked, with the reason.
    _, response = _authorize(client, rp, id_token_hint=hint)
    interaction_id = interaction_id_of(response)
    with rt.db.session() as s:
        assert s.get(Interaction, interaction_id).reasons == ["id_token_hint_mismatch"]
    # The expected person signs in: the code is issued.
    complete_interaction(client, rt, interaction_id, other.id)
    assert "code" in query_of(resume(client, interaction_id).headers["Location"])


def test_id_token_hint_mismatch_after_login_is_an_error_not_a_loop(client, rt, rp, session, person):
    from tests.factories import create_identity

    other = create_identity(session)
    hint = tokens_for(client, rt, rp, other)["id_token"]
    client.delete_cookie("hc_sso")
    _, response = _authorize(client, rp, id_token_hint=hint)
    interaction_id = interaction_id_of(response)
    complete_interaction(client, rt, interaction_id, person.id)  # the wrong person signs in
    result = query_of(resume(client, interaction_id).headers["Location"])
    assert result["error"] == "login_required" and result["iss"] == ISSUER


def test_tampered_or_unsigned_id_token_hint_is_refused(client, rt, rp, person):
    import base64

    hint = tokens_for(client, rt, rp, person)["id_token"]
    header, payload, signature = hint.split(".")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=") + f".{payload}."
    for forged in (f"{header}.{payload}.{signature[:-4]}AAAA", unsigned):
        _, response = _authorize(client, rp, id_token_hint=forged)
        result = query_of(response.headers["Location"])
        assert result["error"] == "invalid_request" and result["iss"] == ISSUER


def test_id_token_hint_issued_to_another_client_is_refused(client, rt, rp, session, person):
    from tests.oidc_helpers import register

    other = register(session, rt, name="Autre application")
    hint = tokens_for(client, rt, other, person)["id_token"]
    _, response = _authorize(client, rp, id_token_hint=hint)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


# --- step-up to two factors -----------------------------------------------------------------------------

def test_password_session_reaches_standard_client_but_health_data_needs_a_second_factor(
        client, rt, rp, health_rp, person_mfa, session):
    body = tokens_for(client, rt, rp, person_mfa)
    assert id_token_claims(rt, body["id_token"])["amr"] == ["pwd"]
    # Same browser, health-data client: an interaction asking for the second factor only.
    request, response = _authorize(client, health_rp)
    interaction_id = interaction_id_of(response)
    with rt.db.session() as s:
        interaction = interactions.get_interaction(s, interaction_id)
        assert interaction.reasons == ["mfa_required"]
        assert interactions.needs_second_factor(interaction)
        view = interactions.describe(s, interaction)
        assert view.identity_id == person_mfa.id and not view.lacks_second_factor and view.health_data
        assert "données de santé" in " ".join(view.messages)
    complete_interaction(client, rt, interaction_id, None, second_factor=["otp"])
    result = query_of(resume(client, interaction_id).headers["Location"])
    assert "code" in result
    tokens = exchange(client, health_rp, result["code"], request.verifier).get_json()
    claims = id_token_claims(rt, tokens["id_token"])
    assert "mfa" in claims["amr"] and {"otp", "pwd"} <= set(claims["amr"])
    assert claims["acr"] == "eidas2"
    # The raised session now reaches the health-data client directly.
    _, response = _authorize(client, health_rp, prompt="none")
    assert "code" in query_of(response.headers["Location"])
    tags = [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert "authn:session:raised" in tags


def test_no_session_on_health_data_login_then_second_factor(client, rt, health_rp, person_mfa):
    _, response = _authorize(client, health_rp)
    interaction_id = interaction_id_of(response)
    with rt.db.session() as s:
        assert s.get(Interaction, interaction_id).reasons == ["no_session", "mfa_required"]
    request, result = sign_in(client, rt, health_rp, person_mfa, second_factor=True)
    claims = id_token_claims(rt, exchange(client, health_rp, result["code"], request.verifier).get_json()["id_token"])
    assert "mfa" in claims["amr"]


def test_password_only_login_on_health_data_asks_again(client, rt, health_rp, person_mfa):
    request, response = _authorize(client, health_rp)
    interaction_id = interaction_id_of(response)
    complete_interaction(client, rt, interaction_id, person_mfa.id)  # no second factor
    response = resume(client, interaction_id)
    second = interaction_id_of(response)  # a new interaction, for the second factor only
    assert second != interaction_id
    with rt.db.session() as s:
        assert s.get(Interaction, second).reasons == ["mfa_required"]
    complete_interaction(client, rt, second, None, second_factor=["otp"])
    assert "code" in query_of(resume(client, second).headers["Location"])


def test_person_without_second_factor_stays_at_mfa_required(client, rt, health_rp, person):
    _, response = _authorize(client, health_rp)
    interaction_id = interaction_id_of(response)
    complete_interaction(client, rt, interaction_id, person.id)
    second = interaction_id_of(resume(client, interaction_id))
    with rt.db.session() as s:
        view = interactions.describe(s, interactions.get_interaction(s, second))
    assert view.reasons == ("mfa_required",) and view.lacks_second_factor and view.needs_second_factor


def test_passwordless_webauthn_with_user_verification_is_two_factors(client, rt, health_rp, session, person):
    from tests.oidc_helpers import add_second_factor

    add_second_factor(session, person, mie_type="webauthn")
    request = auth_request(health_rp)
    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    complete_interaction(client, rt, interaction_id, person.id, amr=["hwk", "mfa", "pin"])
    result = query_of(resume(client, interaction_id).headers["Location"])
    claims = id_token_claims(rt, exchange(client, health_rp, result["code"], request.verifier).get_json()["id_token"])
    assert claims["acr"] == "eidas3" and "mfa" in claims["amr"]


# --- acr ------------------------------------------------------------------------------------------------

ESSENTIAL_EIDAS2 = json.dumps({"id_token": {"acr": {"essential": True, "values": ["eidas2"]}}})


def test_essential_acr_that_cannot_be_met_is_an_error(client, rt, rp, person):
    sign_in(client, rt, rp, person)  # the person has no second factor
    request, response = _authorize(client, rp, claims=ESSENTIAL_EIDAS2)
    result = query_of(response.headers["Location"])
    assert result["error"] == "unmet_authentication_requirements"
    assert result["iss"] == ISSUER and result["state"] == request.state and "code" not in result


def test_essential_acr_unknown_value_is_an_error_even_without_session(client, rp):
    claims = json.dumps({"id_token": {"acr": {"essential": True, "value": "urn:autre:niveau"}}})
    _, response = _authorize(client, rp, claims=claims)
    assert query_of(response.headers["Location"])["error"] == "unmet_authentication_requirements"


def test_essential_acr_reachable_goes_through_a_second_factor(client, rt, rp, person_mfa):
    sign_in(client, rt, rp, person_mfa)
    request, response = _authorize(client, rp, claims=ESSENTIAL_EIDAS2)
    interaction_id = interaction_id_of(response)
    with rt.db.session() as s:
        interaction = s.get(Interaction, interaction_id)
        assert interaction.reasons == ["essential_acr"] and interactions.needs_second_factor(interaction)
    complete_interaction(client, rt, interaction_id, None, second_factor=["otp"])
    result = query_of(resume(client, interaction_id).headers["Location"])
    claims = id_token_claims(rt, exchange(client, rp, result["code"], request.verifier).get_json()["id_token"])
    assert claims["acr"] == "eidas2"


def test_essential_acr_with_unproofed_mie_is_refused_after_login(client, rt, rp, session, person):
    from tests.oidc_helpers import add_second_factor

    add_second_factor(session, person, proofed=False)
    sign_in(client, rt, rp, person)
    _, response = _authorize(client, rp, claims=ESSENTIAL_EIDAS2)
    assert query_of(response.headers["Location"])["error"] == "unmet_authentication_requirements"


def test_acr_values_report_highest_satisfied_level(client, rt, rp, person_mfa):
    body = tokens_for(client, rt, rp, person_mfa, acr_values="eidas2 eidas1")
    assert id_token_claims(rt, body["id_token"])["acr"] == "eidas1"  # not silently raised
    body = tokens_for(client, rt, rp, person_mfa, acr_values="eidas3")
    assert id_token_claims(rt, body["id_token"])["acr"] == "eidas1"  # voluntary: the session's level
