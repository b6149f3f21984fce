"""The demo seed: a fictional GHT created through the directory services, idempotent, never in production."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest
from sqlalchemy import func, select

from hospiconnect.apitokens import services as token_services
from hospiconnect.apitokens.models import ApiToken
from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.devtools.seed import SCIM_TOKEN_NAME, seed_demo
from hospiconnect.directory.models import Establishment, Identity, OrgUnit
from hospiconnect.directory.validation import CONTRACT_TYPES, FINESS_RE, luhn_valid
from hospiconnect.errors import Forbidden
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
