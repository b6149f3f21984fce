"""The demo seed: a fictional GHT created through the directory services, idempotent, never in production."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import stat
from collections import Counter

import pytest
from sqlalchemy import func, select

from hospiconnect.apitokens import services as token_services
from hospiconnect.apitokens.models import ApiToken
from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import totp
from hospiconnect.authenticators.models import Mie
from hospiconnect.devtools.seed import (
    DEMO_PASSWORD,
    SCIM_TOKEN_NAME,
    credentials_banner,
    demo_clients_path,
    demo_credentials,
    read_demo_clients,
    seed_demo,
)
from hospiconnect.directory.models import Establishment, Identity, OrgUnit
from hospiconnect.directory.validation import CONTRACT_TYPES, FINESS_RE, luhn_valid
from hospiconnect.errors import Forbidden
from hospiconnect.idp import clients
from hospiconnect.idp.models import Client
from hospiconnect.ratelimit import make_throttle
from hospiconnect.settings import Settings

TODAY = dt.date(2026, 11, 27)


@pytest.fixture()
def seeded(rt, session):  # type: ignore[no-untyped-def]
    summary = seed_demo(session, rt.keys, count=300, today=TODAY, settings=rt.settings)
    session.commit()
    return summary


def test_summary_is_one_french_line_with_the_token_once(seeded, rt, session):
    assert "\n" not in seeded
    assert "300 identités" in seeded and "3 établissements" in seeded
    token = re.search(r"(hcp_\S+) \(affiché cette fois seulement\)", seeded).group(1)
    assert token_services.authenticate(session, rt.keys, token, "scim").name == SCIM_TOKEN_NAME

    again = seed_demo(session, rt.keys, count=300, today=TODAY)
    session.commit()
    assert "aucune identité ajoutée" in again and "hcp_" not in again
    assert session.scalar(select(func.count(Identity.id))) == 300
    assert session.scalar(select(func.count(ApiToken.id))) == 1


def test_fictional_ght_with_poles_and_services(seeded, session):
    establishments = list(session.scalars(select(Establishment)))
    assert len(establishments) == 3
    assert all(FINESS_RE.match(e.finess) and len(e.finess) == 9 and e.name for e in establishments)
    units = {u.code: u for u in session.scalars(select(OrgUnit))}
    poles = [u for u in units.values() if u.kind == "pole"]
    assert len(poles) >= 3
    services = [u for u in units.values() if u.kind == "service"]
    assert services and all(u.parent_id in {p.id for p in poles} for u in services)


def test_identities_cover_every_population_contract_and_status(seeded, session):
    identities = list(session.scalars(select(Identity)))
    assert len(identities) == 300
    with_rpps = [i for i in identities if i.rpps]
    assert 0.40 <= len(with_rpps) / 300 <= 0.50
    assert all(luhn_valid(i.rpps) and len(i.rpps) == 11 and i.population == "rpps" for i in with_rpps)
    assert len({i.rpps for i in with_rpps}) == len(with_rpps)
    roles = Counter(r for i in identities for r in i.role_names)
    for role in ("medecin", "pharmacien", "sage_femme", "ide", "interne", "aide_soignant", "administratif",
                 "technicien", "etudiant", "interimaire", "prestataire"):
        assert roles[role] > 0, role
    assert {i.contract_type for i in identities} == set(CONTRACT_TYPES)
    statuses = Counter(i.status for i in identities)
    assert statuses["active"] > 250 and statuses["pending"] >= 3
    assert statuses["suspended"] >= 3 and statuses["departed"] >= 3
    assert all(i.start_date > TODAY for i in identities if i.status == "pending")
    assert any(i.birth_country != "99100" and i.birth_place is None for i in identities)
    assert any(i.birth_country == "99100" and i.birth_place for i in identities)
    assert all(i.unit_codes and i.finess_numbers for i in identities)


def test_confirmed_homonyms_and_a_journal_that_verifies(seeded, session):
    tags = Counter(session.scalars(select(AuditEvent.tag)))
    assert tags["directory:identity:created"] == 300
    assert tags["directory:identity:homonym_confirmed"] == 2
    assert tags["directory:identity:departed"] >= 3
    keys = Counter((i.birth_family_name_norm, i.first_given_name_norm, i.birth_date)
                   for i in session.scalars(select(Identity)))
    assert sum(1 for n in keys.values() if n > 1) == 2
    assert audit.verify(session).ok


def test_same_data_at_every_run(rt, session):
    first = seed_demo(session, rt.keys, count=40, today=TODAY)
    names = [(i.birth_family_name, i.given_names, i.birth_date, i.rpps)
             for i in session.scalars(select(Identity).order_by(Identity.id))]
    session.rollback()
    seed_demo(session, rt.keys, count=40, today=TODAY)
    again = [(i.birth_family_name, i.given_names, i.birth_date, i.rpps)
             for i in session.scalars(select(Identity).order_by(Identity.id))]
    assert names == again and len(names) == 40
    assert "40 identités" in first


def test_refused_in_production(rt, session, instance_dir, monkeypatch):
    production = Settings(env="production", instance_path=instance_dir, database_url=rt.settings.database_url,
                          secret_key_file=instance_dir / "keys.json")
    with pytest.raises(Forbidden, match="production"):
        seed_demo(session, rt.keys, count=5, settings=production)
    # Without explicit settings the process environment decides.
    monkeypatch.setenv("HOSPICONNECT_ENV", "production")
    with pytest.raises(Forbidden):
        seed_demo(session, rt.keys, count=5)
    assert session.scalar(select(func.count(Identity.id))) == 0
    assert session.scalar(select(func.count(Establishment.id))) == 0


# --- demo relying parties and demo accounts -------------------------------------------------------------

@pytest.fixture()
def demo_settings(rt, tmp_path):  # type: ignore[no-untyped-def]
    """Demo settings on the test database, with an instance folder of their own (demo-clients.json)."""
    return dataclasses.replace(rt.settings, env="demo", issuer="http://localhost:5099", instance_path=tmp_path)


def _mie_rows(session):  # type: ignore[no-untyped-def]
    return sorted((m.identity_id, m.type, m.status) for m in session.scalars(select(Mie)))


def test_demo_clients_are_registered_once_with_their_secret_in_the_instance_folder(rt, session, demo_settings):
    summary = seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    assert "« DPI (démo) » et « Intranet (démo) » enregistrée(s)" in summary
    path = demo_clients_path(demo_settings)
    assert path.parent == demo_settings.instance_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = read_demo_clients(demo_settings)
    assert set(stored) == {"demo-dpi", "demo-intranet"}
    expected = {"demo-dpi": ("health-data", "dpi"), "demo-intranet": ("standard", "intranet")}
    for client_id, (sensitivity, key) in expected.items():
        client = clients.get_client(session, client_id)
        assert client.sensitivity == sensitivity
        assert client.token_endpoint_auth_method == "client_secret_basic"
        assert client.redirect_uris == [f"http://localhost:5099/demo/{key}/callback"]
        assert client.post_logout_redirect_uris == [f"http://localhost:5099/demo/{key}"]
        assert clients.check_secret(rt.keys, client, stored[client_id])
    assert "openid" in clients.get_client(session, "demo-dpi").scopes.split()

    again = seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    assert "applications de démonstration déjà enregistrées" in again
    assert read_demo_clients(demo_settings) == stored
    assert session.scalar(select(func.count(Client.id))) == 2


def test_lost_secret_file_or_new_port_fix_the_clients_without_duplicates(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    old = read_demo_clients(demo_settings)
    demo_clients_path(demo_settings).unlink()
    moved = dataclasses.replace(demo_settings, issuer="http://localhost:5100")
    summary = seed_demo(session, rt.keys, count=40, today=TODAY, settings=moved)
    session.commit()
    assert "enregistrée(s)" in summary
    new = read_demo_clients(moved)
    assert set(new) == {"demo-dpi", "demo-intranet"} and not set(new.values()) & set(old.values())
    dpi = clients.get_client(session, "demo-dpi")
    assert clients.check_secret(rt.keys, dpi, new["demo-dpi"])
    assert not clients.check_secret(rt.keys, dpi, old["demo-dpi"])
    assert dpi.redirect_uris == ["http://localhost:5099/demo/dpi/callback", "http://localhost:5100/demo/dpi/callback"]
    assert "http://localhost:5100/demo/dpi" in dpi.post_logout_redirect_uris
    assert session.scalar(select(func.count(Client.id))) == 2


def test_demo_accounts_have_the_password_and_six_of_them_a_totp_seed(rt, session, demo_settings):
    summary = seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    assert "7 compte(s) de démonstration et 6 application(s) d'authentification préparés" in summary
    accounts = demo_credentials(session, rt.keys, settings=demo_settings)
    assert [a.role for a in accounts] == ["medecin", "ide", "aide_soignant", "administratif", "enrollment_officer",
                                          "rssi", "emergency_officer"]
    by_role = {a.role: a for a in accounts}
    assert by_role["medecin"].rpps and by_role["ide"].rpps
    assert by_role["aide_soignant"].rpps is None and by_role["administratif"].rpps is None
    for role in ("enrollment_officer", "rssi", "emergency_officer"):
        assert by_role[role].rpps is None and by_role[role].totp_seed
    assert by_role["administratif"].totp_seed is None and by_role["administratif"].otpauth_uri is None
    throttle = make_throttle(demo_settings)
    for account in accounts:
        identity, _ = mie_services.verify_password(session, account.user_name, DEMO_PASSWORD, client_ip=None,
                                                   throttle=throttle)
        assert identity.is_active and account.role in identity.role_names
        assert account.as_dict()["password"] == DEMO_PASSWORD
        if account.totp_seed:
            assert re.fullmatch(r"[A-Z2-7]{32}", account.totp_seed)
            assert account.otpauth_uri.startswith("otpauth://totp/")
            assert f"secret={account.totp_seed}" in account.otpauth_uri
            # The seed printed is the one the provider checks: a code computed from it is accepted.
            mie = mie_services.verify_totp(session, identity, totp.code_at(account.totp_seed, dt.datetime.now(dt.UTC)),
                                           client_ip=None, throttle=throttle, keys=rt.keys)
            assert mie.status == "active" and mie.proofing_method == "face_to_face"
    session.commit()
    assert len({a.totp_seed for a in accounts if a.totp_seed}) == 6
    assert len({a.user_name for a in accounts}) == 7


def test_second_run_creates_nothing_and_keeps_the_seeds(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    first = demo_credentials(session, rt.keys, settings=demo_settings)
    mies, events = _mie_rows(session), session.scalar(select(func.count(AuditEvent.id)))

    summary = seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    assert "comptes de démonstration déjà prêts" in summary
    assert demo_credentials(session, rt.keys, settings=demo_settings) == first
    assert _mie_rows(session) == mies
    assert session.scalar(select(func.count(AuditEvent.id))) == events


def test_a_revoked_demo_totp_is_replaced_and_nobody_elses_credentials_are_touched(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    doctor = demo_credentials(session, rt.keys, settings=demo_settings)[0]
    identity = session.scalar(select(Identity).where(Identity.user_name == doctor.user_name))
    (old,) = mie_services.active_mie_for(session, identity, "totp")
    mie_services.transition(session, old, "revoked", actor="test", reason="téléphone perdu")
    session.commit()
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    again = demo_credentials(session, rt.keys, settings=demo_settings)[0]
    assert again.user_name == doctor.user_name and again.totp_seed and again.totp_seed != doctor.totp_seed
    # Only the seven demo accounts have MIE.
    assert len({identity_id for identity_id, _, _ in _mie_rows(session)}) == 7


def test_without_settings_no_demo_client_nor_account(rt, session):
    seed_demo(session, rt.keys, count=20, today=TODAY)
    assert session.scalar(select(func.count(Client.id))) == 0
    assert session.scalar(select(func.count(Mie.id))) == 0


def test_demo_credentials_are_refused_in_production(rt, session, demo_settings):
    with pytest.raises(Forbidden):
        demo_credentials(session, rt.keys, settings=dataclasses.replace(demo_settings, env="production"))


def test_banner_lists_accounts_seeds_and_the_two_apps(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    accounts = demo_credentials(session, rt.keys, settings=demo_settings)
    text = "\n".join(credentials_banner(accounts, demo_settings))
    assert text.startswith("Comptes de démonstration")
    assert "FreeOTP ou Google Authenticator" in text
    for account in accounts:
        assert account.user_name in text
    assert text.count(DEMO_PASSWORD) == 7
    assert sum(1 for a in accounts if a.totp_seed and a.totp_seed in text) == 6
    assert "le DPI (démo) lui refusera l'accès" in text
    assert "http://localhost:5099/demo/dpi" in text and "http://localhost:5099/demo/intranet" in text
    # The desk and the activation page, and which account opens the desk.
    assert "Agent d'enrôlement" in text
    assert "guichet d'enrôlement (agent d'enrôlement connecté avec deux facteurs) : http://localhost:5099/guichet" \
        in text
    assert "fiche d'activation : http://localhost:5099/activation" in text
    officer_block = text[text.index("Agent d'enrôlement"):text.index("Applications de démonstration")]
    assert "http://localhost:5099/guichet" in officer_block
    assert "invitation FranceConnect+" in text.split("Enrôlement à distance (simulateur FranceConnect+", 1)[1]


def test_banner_says_nothing_of_the_simulator_once_franceconnect_is_configured(demo_settings):
    configured = dataclasses.replace(demo_settings, fcplus_discovery_url="https://fcp.example/.well-known/x")
    assert "simulateur FranceConnect+" not in "\n".join(credentials_banner([], configured))


def test_the_demo_registration_officer_is_an_administrative_agent_granted_the_role(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    by_role = {a.role: a for a in demo_credentials(session, rt.keys, settings=demo_settings)}
    officer = session.scalar(select(Identity).where(Identity.user_name == by_role["enrollment_officer"].user_name))
    assert set(officer.role_names) == {"administratif", "enrollment_officer"}
    assert officer.user_name != by_role["administratif"].user_name
    # Nobody else holds the role, and the grant went through the directory service (journaled).
    holders = [i for i in session.scalars(select(Identity)) if "enrollment_officer" in i.role_names]
    assert holders == [officer]
    updates = session.scalars(select(AuditEvent).where(AuditEvent.subject == officer.public_id,
                                                       AuditEvent.tag == "directory:identity:updated")).all()
    assert len(updates) == 1 and '"roles"' in updates[0].details
    # The officer's TOTP is proofed like the other demo accounts'.
    (officer_totp,) = mie_services.active_mie_for(session, officer, "totp")
    assert officer_totp.proofing_method == "face_to_face"


@pytest.mark.parametrize("role,path", [("rssi", "/securite"), ("emergency_officer", "/bris-de-glace")])
def test_the_demo_rssi_and_on_call_officer_are_administrative_agents_granted_one_role(rt, session, demo_settings,
                                                                                     role, path):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    accounts = demo_credentials(session, rt.keys, settings=demo_settings)
    by_role = {a.role: a for a in accounts}
    agent = session.scalar(select(Identity).where(Identity.user_name == by_role[role].user_name))
    assert set(agent.role_names) == {"administratif", role}
    assert [i for i in session.scalars(select(Identity)) if role in i.role_names] == [agent]
    (agent_totp,) = mie_services.active_mie_for(session, agent, "totp")
    assert agent_totp.proofing_method == "face_to_face"
    banner = "\n".join(credentials_banner(accounts, demo_settings))
    block = banner[banner.index(by_role[role].label):]
    assert f"http://localhost:5099{path} une fois connecté(e) avec deux facteurs" in block.split("  • ", 1)[0]


def test_the_seed_leaves_people_for_the_officer_to_enroll(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings)
    session.commit()
    with_mie = set(session.scalars(select(Mie.identity_id)))
    enrollable = [i for i in session.scalars(select(Identity)) if i.status == "active" and i.id not in with_mie]
    assert len(enrollable) >= 20
    assert any(i.rpps for i in enrollable) and any(not i.rpps for i in enrollable)
