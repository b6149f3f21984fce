"""Pro Santé Connect registered as a ``psc``-profile client: who is delegated, and the claims it receives.

The RPPS number stands for the pairing until the pairing service exists (hospiconnect.idp.psc_delegation.
national_rpps). The MIE given here are activated and proofed face to face, so that the shipped policy counts
them compliant (hospiconnect.policies.is_compliant).
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import hospiconnect.cli
from hospiconnect import create_app
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.directory.models import Establishment
from hospiconnect.idp import clients, interactions
from hospiconnect.idp import keys as signing
from hospiconnect.idp import psc_delegation
from hospiconnect.enrollment.models import NationalLink
from tests.factories import create_identity
from tests.oidc_helpers import (
    ISSUER,
    RegisteredClient,
    auth_request,
    complete_interaction,
    exchange,
    id_token_claims,
    interaction_id_of,
    query_of,
    register,
    resume,
    sign_in,
    tokens_for,
)

PSC_REDIRECT = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet/broker/chu/endpoint"
ESTABLISHMENT = "CHU Exemple — site Nord"


def register_psc(session, rt, *, sensitivity: str = "health-data") -> RegisteredClient:
    signing.ensure_keys(session, rt.keys)
    row, secret = clients.add_client(session, rt.keys, name="Pro Santé Connect", redirect_uris=[PSC_REDIRECT],
                                     sensitivity=sensitivity, scopes="openid profile", profile="psc", actor="test")
    session.commit()
    return RegisteredClient(row.client_id, secret, row.id, redirect_uri=PSC_REDIRECT)


def give_mie(session, identity, mie_type: str = "totp") -> Mie:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    mie = Mie(identity_id=identity.id, type=mie_type, status="active", label=mie_type,
              proofing_method="face_to_face", proofing_at=now, activated_at=now)
    session.add(mie)
    session.commit()
    return mie


def paired_identity(session, **overrides):  # type: ignore[no-untyped-def]
    """A professional with an RPPS number in the directory, paired with their national identity."""
    identity = create_identity(session, with_rpps=True, **overrides)
    session.add(NationalLink(identity_id=identity.id, issuer="https://psc.example/realms/esante-wallet",
                             sub=f"psc-8{identity.rpps}", rpps=identity.rpps, method="rpps", linked_by="test"))
    session.commit()
    return identity


@pytest.fixture()
def doctor(session):
    """A professional with an RPPS number and a compliant TOTP; their establishment has a name."""
    identity = paired_identity(session)
    give_mie(session, identity)
    for finess in identity.finess_numbers:
        row = session.scalar(select(Establishment).where(Establishment.finess == finess))
        if row is None:
            session.add(Establishment(finess=finess, name=ESTABLISHMENT))
        else:
            row.name = ESTABLISHMENT
    session.commit()
    return identity


@pytest.fixture()
def psc(session, rt):
    return register_psc(session, rt)


def refusals(rt) -> list[dict]:
    with rt.db.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.tag == tags.OIDC_AUTHORIZE_REFUSED)
                         .order_by(AuditEvent.seq)).all()
        return [json.loads(r.details) for r in rows]


def signed_in_until_resume(client, rt, rc, identity, *, second_factor: bool):
    """Start /authorize without a session, do the sign-in, and return the response of the resumption."""
    request = auth_request(rc, scope="openid profile")
    response = client.get("/authorize", query_string=request.params)
    interaction = interaction_id_of(response)
    complete_interaction(client, rt, interaction, identity.id, second_factor=["otp"] if second_factor else None)
    return resume(client, interaction)


# --- registration ---------------------------------------------------------------------------------------

def test_cli_registers_psc_with_the_psc_profile(rt):
    runner = CliRunner()
    result = runner.invoke(hospiconnect.cli.main, ["client", "add", "--name", "Pro Santé Connect",
                                                   "--redirect-uri", PSC_REDIRECT, "--class", "health-data",
                                                   "--scope", "openid profile", "--profile", "psc"], obj=rt)
    assert result.exit_code == 0, result.output
    assert "délégation de Pro Santé Connect" in result.stdout and "secret" in result.stdout
    refused = runner.invoke(hospiconnect.cli.main, ["client", "add", "--name", "PSC", "--redirect-uri", PSC_REDIRECT,
                                                    "--class", "health-data", "--profile", "psc", "--public"], obj=rt)
    assert refused.exit_code != 0 and "confidentiel" in refused.output
    unknown = runner.invoke(hospiconnect.cli.main, ["client", "add", "--name", "X", "--redirect-uri", PSC_REDIRECT,
                                                    "--class", "standard", "--profile", "fc"], obj=rt)
    assert unknown.exit_code != 0
    # No refresh token for PSC: every delegation asks the rule again (pairing, MIE).
    offline = runner.invoke(hospiconnect.cli.main, ["client", "add", "--name", "PSC", "--redirect-uri", PSC_REDIRECT,
                                                    "--class", "health-data", "--profile", "psc",
                                                    "--scope", "openid profile offline_access"], obj=rt)
    assert offline.exit_code != 0 and "offline_access" in offline.output


def test_unknown_profile_is_refused_by_the_service(session, rt):
    from hospiconnect.errors import ValidationError

    with pytest.raises(ValidationError):
        clients.add_client(session, rt.keys, name="X", redirect_uris=[PSC_REDIRECT], sensitivity="standard",
                           profile="fcplus", actor="test")


# --- delegation -------------------------------------------------------------------------------------------

def test_paired_person_with_totp_is_delegated_with_psc_claims(client, rt, psc, doctor):
    body = tokens_for(client, rt, psc, doctor, second_factor=True)
    claims = id_token_claims(rt, body["id_token"])
    national_id = "8" + doctor.rpps
    assert claims["SubjectNameID"] == national_id and claims["preferred_username"] == national_id
    assert claims["given_name"] == doctor.given_names
    assert claims["family_name"] == (doctor.usage_name or doctor.birth_family_name)
    assert claims["SubjectOrganization"] == ESTABLISHMENT
    # password + TOTP → the shipped mapping: pwd, otp, mfa.
    assert claims["amr"] == ["mfa", "otp", "pwd"]
    assert claims["acr"] == "eidas2" and claims["aud"] == psc.client_id and claims["iss"] == ISSUER

    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert info["SubjectNameID"] == national_id and info["SubjectOrganization"] == ESTABLISHMENT
    assert info["sub"] == claims["sub"] and "amr" not in info


def test_security_key_is_reported_as_hardware_key(client, rt, psc, session):
    identity = paired_identity(session)
    give_mie(session, identity, "webauthn")
    request = auth_request(psc, scope="openid profile")
    interaction = interaction_id_of(client.get("/authorize", query_string=request.params))
    complete_interaction(client, rt, interaction, identity.id, amr=["hwk", "mfa", "pin"])
    result = query_of(resume(client, interaction).headers["Location"])
    assert "code" in result, result
    token = exchange(client, psc, result["code"], request.verifier).get_json()
    assert id_token_claims(rt, token["id_token"])["amr"] == ["hwk", "mfa"]


def test_person_without_rpps_is_refused_with_a_page_then_access_denied(client, rt, psc, session):
    identity = create_identity(session)  # no RPPS: not paired
    give_mie(session, identity)
    response = signed_in_until_resume(client, rt, psc, identity, second_factor=True)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "identité nationale" in page and "RPPS" in page
    # The page's link takes the person back to PSC with access_denied and an ASCII description.
    back = [part for part in page.split('"') if part.startswith(PSC_REDIRECT)]
    assert back, page
    query = {k: v[0] for k, v in parse_qs(urlsplit(back[0].replace("&amp;", "&")).query).items()}
    assert query["error"] == "access_denied" and query["iss"] == ISSUER
    assert query["error_description"].isascii() and "RPPS" in query["error_description"]
    assert refusals(rt)[-1]["reason"] == psc_delegation.NOT_PAIRED


def test_an_rpps_in_the_directory_is_not_a_pairing(client, rt, psc, session):
    identity = create_identity(session, with_rpps=True)  # RPPS known, never paired with PSC
    give_mie(session, identity)
    response = signed_in_until_resume(client, rt, psc, identity, second_factor=True)
    assert response.status_code == 403
    assert refusals(rt)[-1]["reason"] == psc_delegation.NOT_PAIRED


def test_person_without_rpps_with_a_live_session_gets_access_denied_at_once(client, rt, psc, session):
    identity = create_identity(session)
    give_mie(session, identity)
    other = register(session, rt, name="Intranet", sensitivity="standard")
    tokens_for(client, rt, other, identity, second_factor=True)  # an SSO session with two factors
    _, result = sign_in(client, rt, psc, identity)
    assert result["error"] == "access_denied" and "code" not in result
    assert result["error_description"].isascii() and result["iss"] == ISSUER
    assert refusals(rt)[-1]["reason"] == psc_delegation.NOT_PAIRED


def test_password_only_person_is_refused(client, rt, psc, session):
    """A person with an RPPS number but a password only: the health-data class would show the page explaining
    how to obtain a second factor, but the delegation rule answers first, once the person is known — no
    compliant MIE, no delegation: the refusal page, whose link takes the person back to PSC with
    access_denied. No code is issued."""
    identity = paired_identity(session)
    response = signed_in_until_resume(client, rt, psc, identity, second_factor=False)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "aucun moyen d&#39;identification conforme" in page and "error=access_denied" in page
    assert "code=" not in page
    assert refusals(rt)[-1]["reason"] == psc_delegation.NO_COMPLIANT_MIE


def test_password_only_session_on_a_standard_class_psc_client(app, client, rt, session, doctor):
    """Registered in a class that tolerates one factor, PSC still gets no one-factor delegation: a person
    holding a compliant MIE is stepped up; a person holding none is refused."""
    psc = register_psc(session, rt, sensitivity="standard")
    response = signed_in_until_resume(client, rt, psc, doctor, second_factor=False)
    with rt.db.session() as s:  # the second-factor step-up
        assert interactions.get_interaction(s, interaction_id_of(response)).reasons == ["mfa_required"]
    _, result = sign_in(client, rt, psc, doctor, second_factor=True)
    assert "code" in result, result

    client = app.test_client()  # another browser
    password_only = paired_identity(session)
    response = signed_in_until_resume(client, rt, psc, password_only, second_factor=False)
    assert response.status_code == 403
    assert "moyen d&#39;identification conforme" in response.get_data(as_text=True)
    assert refusals(rt)[-1]["reason"] == psc_delegation.NO_COMPLIANT_MIE


def test_non_compliant_mie_is_refused(client, rt, psc, session):
    identity = paired_identity(session)
    mie = give_mie(session, identity)
    mie.proofing_method = None  # issued without an identity check: not compliant
    session.commit()
    response = signed_in_until_resume(client, rt, psc, identity, second_factor=True)
    assert response.status_code == 403
    assert refusals(rt)[-1]["reason"] in (psc_delegation.NO_COMPLIANT_MIE, psc_delegation.MIE_NOT_COMPLIANT)


# --- the mapping is configurable -------------------------------------------------------------------------

def test_another_mapping_file_changes_the_amr(app_with, tmp_path, doctor):
    path = tmp_path / "amr.yaml"
    path.write_text("# valeurs convenues avec l'ANS (exemple)\namr:\n  password: [pwd]\n  totp: [otp, mfa, ans-app]\n",
                    encoding="utf-8")
    runtime, test_client = app_with(psc_delegation_amr_file=path)
    with runtime.db.session() as s:
        rc = register_psc(s, runtime)
    body = tokens_for(test_client, runtime, rc, doctor, second_factor=True)
    assert id_token_claims(runtime, body["id_token"])["amr"] == ["ans-app", "mfa", "otp", "pwd"]


def test_a_mie_type_left_out_of_the_mapping_is_not_delegated(app_with, tmp_path, doctor):
    path = tmp_path / "amr.json"
    path.write_text(json.dumps({"password": ["pwd"], "webauthn": ["hwk", "mfa"]}), encoding="utf-8")
    runtime, test_client = app_with(psc_delegation_amr_file=path)
    with runtime.db.session() as s:
        rc = register_psc(s, runtime)
    response = signed_in_until_resume(test_client, runtime, rc, doctor, second_factor=True)
    assert response.status_code == 403
    assert refusals(runtime)[-1]["reason"] == psc_delegation.AMR_UNMAPPED


def test_an_invalid_mapping_file_stops_the_start(rt, tmp_path):
    import dataclasses

    path = tmp_path / "amr.yaml"
    path.write_text("totp: otp\n", encoding="utf-8")
    with pytest.raises(psc_delegation.DelegationConfigError):
        create_app(dataclasses.replace(rt.settings, psc_delegation_amr_file=path))


# --- other clients are unaffected ------------------------------------------------------------------------

def test_standard_client_gets_no_psc_claims(client, rt, session, doctor):
    rp = register(session, rt, name="DPI", sensitivity="health-data")
    body = tokens_for(client, rt, rp, doctor, second_factor=True, scope="openid profile rpps")
    claims = id_token_claims(rt, body["id_token"])
    assert "SubjectNameID" not in claims and "SubjectOrganization" not in claims
    assert claims["preferred_username"] == doctor.user_name and claims["rpps"] == doctor.rpps
    assert claims["amr"] == ["mfa", "otp", "pwd"]  # the session's own amr, unmapped
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert "SubjectNameID" not in info


def test_standard_client_still_serves_people_without_rpps(client, rt, session):
    identity = create_identity(session)
    rp = register(session, rt, name="Intranet", sensitivity="standard")
    body = tokens_for(client, rt, rp, identity)
    assert "SubjectNameID" not in id_token_claims(rt, body["id_token"])
