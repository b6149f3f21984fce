"""Exceptions (dérogations) at sign-in: the provider asks for those in force for the person and the class, lets
the authorization through when the policy allows it thanks to them, records each use, and stops at revocation.
The two-factor floor of health data holds whatever was granted.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from hospiconnect.audit import tags
from hospiconnect.authorizations import services as exceptions
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.db import utcnow
from hospiconnect.idp.models import Interaction
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy, parse_policy
from tests.factories import create_identity
from tests.functional.idp.test_policy_wiring import INSIDE, POLICY, authorize, client_of, journal
from tests.oidc_helpers import add_second_factor, interaction_id_of, query_of, sign_in

ADMINISTRATION = """\
  administration: {label: Administration, min_acr: eidas2, allowed_mie_types: [password, totp, webauthn],
                   accept_not_homologated: true, exceptions_may_lower_factors: true}
"""
EXCEPTION_POLICY = POLICY.replace("populations:", ADMINISTRATION + "populations:")
JUSTIFICATION = "Téléphone professionnel perdu, remplacement en cours"


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "politique.yaml"
    path.write_text(EXCEPTION_POLICY, encoding="utf-8")
    return path


def password_session(web, rt, session, person):  # type: ignore[no-untyped-def]
    """Sign ``person`` in with the password alone (on a one-factor class)."""
    standard = client_of(session, rt, "standard", "Intranet")
    _, result = sign_in(web, rt, standard, person)
    assert "code" in result


def stepped_up(rt, response) -> bool:  # type: ignore[no-untyped-def]
    location = response.headers["Location"]
    if not location.startswith("/connexion/"):
        return False
    with rt.db.session() as s:
        return "mfa_required" in s.get(Interaction, interaction_id_of(response)).reasons


def test_a_single_factor_exception_lets_a_password_session_through_until_revoked(app_with, rt, session,
                                                                                   policy_file):
    _, web = app_with(policy_file=policy_file, policy_check_seconds=0)
    web.environ_base["REMOTE_ADDR"] = INSIDE
    person = create_identity(session)
    add_second_factor(session, person)
    password_session(web, rt, session, person)
    admin = client_of(session, rt, "administration", "Gestion administrative")
    _, response = authorize(web, admin)
    assert stepped_up(rt, response)
    assert journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]["exceptions"] == []

    policy = load_policy(policy_file)
    row = exceptions.grant_exception(session, policy, app_class="administration", identity=person,
                                     relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                                     ends_at=utcnow() + dt.timedelta(days=7), actor="rssi")
    session.commit()
    grant_id = row.public_id
    _, response = authorize(web, admin)
    assert "code" in query_of(response.headers["Location"])
    [used] = journal(rt, tags.POLICY_EXCEPTION_USED)
    assert used["exception"] == grant_id and used["subject"] == person.public_id and used["use_count"] == 1
    assert used["client"] == admin.client_id
    decided = journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]
    assert decided["kind"] == "allow" and decided["exceptions"] == [grant_id] and decided["outcome"] == "success"
    with rt.db.session() as s:
        assert s.scalar(select(PolicyException.use_count).where(PolicyException.public_id == grant_id)) == 1

    exceptions.revoke_exception(session, grant_id, actor="rssi", reason="Téléphone remplacé")
    session.commit()
    _, response = authorize(web, admin)
    assert stepped_up(rt, response)
    assert len(journal(rt, tags.POLICY_EXCEPTION_USED)) == 1
    assert journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]["exceptions"] == []


def test_a_step_up_does_not_count_as_a_use(app_with, rt, session, policy_file):
    _, web = app_with(policy_file=policy_file, policy_check_seconds=0)
    web.environ_base["REMOTE_ADDR"] = INSIDE
    person = create_identity(session)
    add_second_factor(session, person)
    password_session(web, rt, session, person)
    admin = client_of(session, rt, "administration", "Gestion administrative")
    exceptions.grant_exception(session, load_policy(policy_file), app_class="administration", identity=person,
                               relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                               ends_at=utcnow() + dt.timedelta(days=7), actor="rssi")
    session.commit()
    # An essential acr asks for more than the exception: no code, so no use.
    _, response = authorize(web, admin, acr_values="eidas2", claims='{"id_token": {"acr": {"essential": true, '
                                                                    '"values": ["eidas2"]}}}')
    assert "code" not in query_of(response.headers["Location"])
    assert journal(rt, tags.POLICY_EXCEPTION_USED) == []


def test_a_grant_on_health_data_does_not_let_a_password_session_through(app_with, rt, session):
    _, web = app_with(policy_file=DEFAULT_POLICY_PATH, policy_check_seconds=0)
    web.environ_base["REMOTE_ADDR"] = INSIDE
    person = create_identity(session)
    add_second_factor(session, person)
    password_session(web, rt, session, person)
    # Granted while the file let exceptions lower health data; the shipped file in force no longer does.
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    marker = "    emergency: true\n  standard:"
    assert marker in text
    lenient = parse_policy(text.replace(marker, "    emergency: true\n    exceptions_may_lower_factors: true\n"
                                                "  standard:"), "lenient.yaml")
    exceptions.grant_exception(session, lenient, app_class="health-data", identity=person,
                               relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                               ends_at=utcnow() + dt.timedelta(days=7), actor="rssi")
    session.commit()
    health = client_of(session, rt, "health-data", "Dossier patient")
    _, response = authorize(web, health)
    assert stepped_up(rt, response)
    assert journal(rt, tags.POLICY_EXCEPTION_USED) == []
    assert journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]["exceptions"] == []


def test_an_exception_ended_meanwhile_is_not_relied_upon(app_with, rt, session, policy_file, monkeypatch):
    _, web = app_with(policy_file=policy_file, policy_check_seconds=0)
    web.environ_base["REMOTE_ADDR"] = INSIDE
    person = create_identity(session)
    add_second_factor(session, person)
    password_session(web, rt, session, person)
    admin = client_of(session, rt, "administration", "Gestion administrative")
    exceptions.grant_exception(session, load_policy(policy_file), app_class="administration", identity=person,
                               relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                               ends_at=utcnow() + dt.timedelta(days=7), actor="rssi")
    session.commit()
    # Found in force, revoked before its use is recorded: the policy is asked again without it.
    monkeypatch.setattr(exceptions, "record_use", lambda *args, **kwargs: False)
    _, response = authorize(web, admin)
    assert stepped_up(rt, response)
    assert journal(rt, tags.AUTHZ_POLICY_DECIDED)[-1]["exceptions"] == []
