"""The demo seed: a fictional GHT created through the directory services, idempotent, never in production; with
its past year, the trajectory's history."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import stat
from collections import Counter

import pytest

from hospiconnect.devtools.seed_psc import PAIRING_OPENED_DAYS, PSC_DEMO_PEOPLE
from sqlalchemy import func, select

from hospiconnect.apitokens import services as token_services
from hospiconnect.apitokens.models import ApiToken
from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import totp
from hospiconnect.authenticators.models import Mie, Notification
from hospiconnect.devtools.backdate import journal_dated
from hospiconnect.devtools.seed import (
    DEMO_PASSWORD,
    SCIM_TOKEN_NAME,
    credentials_banner,
    demo_clients_path,
    demo_credentials,
    read_demo_clients,
    seed_demo,
)
from hospiconnect.devtools.seed_remote import REMOTE_DEMO_PEOPLE
from hospiconnect.devtools.seed_activity import HISTORY_ACTOR, campaign_pace
from hospiconnect.devtools.seed_history import LIVE_BEFORE_DAYS, RIE_DEADLINE
from hospiconnect.directory.models import Establishment, Identity, OrgUnit
from hospiconnect.directory.validation import CONTRACT_TYPES, FINESS_RE, luhn_valid
from hospiconnect.enrollment.models import NationalLink
from hospiconnect.errors import Forbidden
from hospiconnect.idp import clients
from hospiconnect.idp.models import Client
from hospiconnect.policies import load_policy
from hospiconnect.ratelimit import make_throttle
from hospiconnect.settings import Settings
from hospiconnect.trajectory import services as trajectory
from hospiconnect.trajectory.facts import load_people
from hospiconnect.trajectory.models import TrajectorySnapshot

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
    # Only the seven demo accounts and the three professionals for the PSC pairing (seed_psc) have MIE.
    psc_people = set(session.scalars(select(Identity.id).where(
        Identity.external_id.in_([person[1] for person in PSC_DEMO_PEOPLE]))))
    assert len(psc_people) == 3
    assert len({identity_id for identity_id, _, _ in _mie_rows(session)} - psc_people) == 7


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


# --- the demo's past year (devtools.seed_history, devtools.seed_activity, devtools.backdate) -------------

def _total(rows) -> int:  # type: ignore[no-untyped-def]
    return sum(count for _, count in rows)


def _share(session, indicator, part, day_from, day_to):  # type: ignore[no-untyped-def]
    """Percentage of the ``indicator`` sign-ins of the period that are ``part`` ones."""
    whole = _total(trajectory.series(session, indicator, day_from=day_from, day_to=day_to))
    return 100 * _total(trajectory.series(session, part, day_from=day_from, day_to=day_to)) / whole


def test_the_demo_seeds_a_backfilled_year_that_rises_after_the_deadline(rt, session, demo_settings):
    summary = seed_demo(session, rt.keys, count=300, today=TODAY, settings=demo_settings, history_days=365)
    session.commit()
    assert "historique de 365 jours" in summary and "365 jour(s) reconstitué(s)" in summary

    # A snapshot for each of the last 365 days and today.
    first = TODAY - dt.timedelta(days=365)
    days = sorted(set(session.scalars(select(TrajectorySnapshot.day))))
    assert days == [first + dt.timedelta(days=n) for n in range(366)]
    # The compliant share rises over the year, fastest after the 1 January 2026 deadline, and is not done.
    share = {point.day: point.share for point in trajectory.coverage(session, first, TODAY)}
    quarters = [sum(share[first + dt.timedelta(days=n)] for n in range(q, q + 91)) / 91 for q in (0, 91, 182, 273)]
    assert quarters == sorted(quarters) and share[first] < 20
    month = dt.timedelta(days=30)
    before = share[RIE_DEADLINE] - share[RIE_DEADLINE - month]
    after = share[RIE_DEADLINE + month] - share[RIE_DEADLINE]
    assert after > before > 0
    assert 60 <= share[TODAY] <= 90
    # Some units are far behind the rest: the largest gaps are worth listing.
    behind = [row.value for row in trajectory.breakdown(session, TODAY, "unit")
              if row.count("active") >= 5 and 100 * row.count("compliant") / row.count("active") <= share[TODAY] - 25]
    assert behind
    # Every status is there today; exceptions and emergency accesses (one reviewed, one not).
    today = {indicator: count for (indicator, count) in session.execute(
        select(TrajectorySnapshot.indicator, TrajectorySnapshot.count).where(
            TrajectorySnapshot.day == TODAY, TrajectorySnapshot.dimension == "all"))}
    assert today["exempt"] >= 1 and today["pending"] >= 5 and today["non_compliant"] >= 20
    assert today["exceptions_active"] >= 1 and today["emergency_unreviewed"] == 1
    assert _total(trajectory.series(session, "emergency_reviewed")) == 1
    assert today["mie_active:totp"] > today["mie_active:webauthn"] > 0 and today["mie_active:webauthn:platform"] > 0
    # Sign-ins made with two factors rise; the DPI takes no password-only sign-in after the deadline.
    quarter = dt.timedelta(days=90)
    assert (_share(session, "signins:standard", "signins_mfa:standard", first, first + quarter) + 20
            < _share(session, "signins:standard", "signins_mfa:standard", TODAY - quarter, TODAY))
    assert _total(trajectory.series(session, "signins_password_only:health-data", day_to=RIE_DEADLINE
                                    - dt.timedelta(days=1))) > 0
    assert _total(trajectory.series(session, "signins_password_only:health-data", day_from=RIE_DEADLINE)) == 0
    # Pairings with Pro Santé Connect grow month by month since pairing was offered, instead of jumping today.
    paired = dict(trajectory.series(session, "psc_paired"))
    opened = TODAY - dt.timedelta(days=PAIRING_OPENED_DAYS)
    checkpoints = [paired[opened + dt.timedelta(days=n)] for n in range(0, PAIRING_OPENED_DAYS + 1, 45)]
    assert paired[opened - dt.timedelta(days=1)] == 0 and checkpoints == sorted(checkpoints)
    assert 0 < paired[opened + dt.timedelta(days=90)] < paired[TODAY - dt.timedelta(days=30)] < paired[TODAY]
    assert 20 <= paired[TODAY] < today["rpps_linked"]
    assert paired[TODAY] - paired[TODAY - dt.timedelta(days=7)] < paired[TODAY] / 4  # no jump on the last days
    # Each paired person holds the national MIE that PSC reported (the simulator's professionals are not paired).
    assert today["mie_active:cps"] + today["mie_active:e-cps"] == paired[TODAY]
    assert session.scalar(select(func.count()).select_from(NationalLink)) == paired[TODAY]
    assert audit.verify(session).ok

    # A second start adds nothing: no identity, no MIE, no event, no snapshot; the demo accounts are as they were.
    counts = [session.scalar(select(func.count()).select_from(table))
              for table in (Identity, Mie, AuditEvent, TrajectorySnapshot)]
    accounts = demo_credentials(session, rt.keys, settings=demo_settings)
    again = seed_demo(session, rt.keys, count=300, today=TODAY, settings=demo_settings, history_days=365)
    session.commit()
    assert "trajectoire déjà à jour" in again and "historique" not in again
    assert [session.scalar(select(func.count()).select_from(table))
            for table in (Identity, Mie, AuditEvent, TrajectorySnapshot)] == counts
    assert demo_credentials(session, rt.keys, settings=demo_settings) == accounts and len(accounts) == 7


def test_the_past_is_dated_in_the_rows_and_the_journal_the_trajectory_reads(rt, session, demo_settings):
    seed_demo(session, rt.keys, count=40, today=TODAY, settings=demo_settings, history_days=365)
    session.commit()
    policy = load_policy(demo_settings.policy_file)
    people = {p.public_id: p for p in load_people(session, policy=policy, now=_noon(TODAY))}
    live_day = TODAY - dt.timedelta(days=365 + LIVE_BEFORE_DAYS)
    identities = list(session.scalars(select(Identity)))
    accounts = {a.user_name for a in demo_credentials(session, rt.keys, settings=demo_settings)}
    remote = {person.external_id for person in REMOTE_DEMO_PEOPLE}  # created today, after the past
    remote |= {person[1] for person in PSC_DEMO_PEOPLE}  # likewise, for the pairing with Pro Santé Connect
    for identity in identities:
        created = policy.local_day(identity.created_at)
        if identity.user_name in accounts or identity.status == "pending" or identity.external_id in remote:
            continue
        assert live_day <= created <= TODAY, identity.user_name
        (since, _), *_ = people[identity.public_id].active_intervals
        if identity.start_date > live_day:
            # Arrived during the history: active from the start date on.
            assert since == identity.start_date
    departed = [i for i in identities if i.status == "departed"]
    assert departed
    for identity in departed:
        # Suspended the morning after the end of the contract, departed after the grace period.
        (*_, (_, until)) = people[identity.public_id].active_intervals
        assert until is not None and until <= identity.end_date + dt.timedelta(days=1) < TODAY
        assert policy.local_day(identity.status_changed_at) <= TODAY - dt.timedelta(days=14)
    # Every MIE of the past: its rows and its journal entries carry the same past instant.
    history = [m for m in session.scalars(select(Mie)) if m.transitions[0].actor == HISTORY_ACTOR]
    assert any(m.type == "password" for m in history) and any(m.type in ("totp", "webauthn") for m in history)
    activated = {json.loads(e.details)["mie"]: e.occurred_at for e in session.scalars(
        select(AuditEvent).where(AuditEvent.tag.like("mie:%:activated")))}
    for mie in history:
        assert policy.local_day(mie.created_at) <= TODAY
        assert [t.at for t in mie.transitions[:2]] == [mie.created_at, mie.activated_at]
        assert activated[mie.public_id] == mie.activated_at
        if mie.type != "password" and mie.proofing_method:
            assert mie.proofing_at == mie.activated_at
    # Nobody is sent a message about the past; the journal verifies.
    assert not session.scalars(select(Notification).where(
        Notification.identity_id.in_([m.identity_id for m in history]))).all()
    assert audit.verify(session).ok
    assert not session.scalars(select(AuditEvent).where(
        AuditEvent.tag == "oidc:code:issued", AuditEvent.occurred_at >= _noon(TODAY + dt.timedelta(days=1)))).all()


def _noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)


def test_history_needs_the_settings(rt, session):
    with pytest.raises(ValueError):
        seed_demo(session, rt.keys, count=20, today=TODAY, history_days=365)


def test_the_enrollment_campaign_rushes_after_the_deadline_and_slows_in_summer():
    assert campaign_pace(dt.date(2025, 11, 3)) < campaign_pace(dt.date(2025, 12, 3)) \
        < campaign_pace(dt.date(2026, 1, 5)) > campaign_pace(dt.date(2026, 4, 7)) > campaign_pace(dt.date(2026, 8, 4))
    assert campaign_pace(dt.date(2026, 1, 10)) < campaign_pace(dt.date(2026, 1, 12))  # a Saturday, a Monday


def test_journal_dated_dates_the_events_recorded_inside_and_keeps_the_chain(rt, session):
    past, older = _noon(dt.date(2026, 2, 3)), _noon(dt.date(2025, 12, 1))
    audit.record(session, "admin:demo:before", actor="test")
    with journal_dated(session, past):
        audit.record(session, "admin:demo:inside", actor="test")
        with journal_dated(session, older):
            audit.record(session, "admin:demo:nested", actor="test")
    audit.record(session, "admin:demo:after", actor="test")
    session.commit()
    dates = {e.tag: e.occurred_at for e in session.scalars(select(AuditEvent))}
    assert dates["admin:demo:inside"] == past and dates["admin:demo:nested"] == older
    assert dates["admin:demo:before"] > past and dates["admin:demo:after"] > past
    assert audit.verify(session).ok


def test_journal_dated_refuses_when_the_journal_is_written_inside(rt, session):
    with pytest.raises(RuntimeError):
        with journal_dated(session, _noon(dt.date(2026, 2, 3))):
            audit.record(session, "admin:demo:inside", actor="test")
            session.scalars(select(AuditEvent)).all()  # reading the journal writes the pending events
    with pytest.raises(ValueError):
        with journal_dated(session, dt.datetime(2026, 2, 3, 12)):
            pass
