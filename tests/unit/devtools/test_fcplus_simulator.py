"""The FranceConnect+ simulator's fictional identities and derived key, and the directory people that match
them (hospiconnect.devtools.seed_remote). The protocol itself: tests/functional/test_fcplus_simulator.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from sqlalchemy import func, select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.crypto import InstanceKeys
from hospiconnect.devtools import fcplus_simulator as sim
from hospiconnect.devtools.seed import seed_demo
from hospiconnect.devtools.seed_remote import REMOTE_DEMO_PEOPLE, ensure_remote_demo_people
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment.matching import identity_facts, match_identity

TODAY = dt.date(2026, 11, 27)


def test_the_identities_the_contract_names_exist_with_franceconnect_plus_shaped_claims():
    assert list(sim.TEST_IDENTITIES)[:4] == ["camille", "camille-homonyme", "sacha-ne-a-letranger",
                                              "lou-date-presumee"]
    subs = [person.sub for person in sim.TEST_IDENTITIES.values()]
    assert len(set(subs)) == len(subs) and all(re.fullmatch(r"[0-9a-f]{64}", sub) for sub in subs)
    for person in sim.TEST_IDENTITIES.values():
        claims = person.claims()
        assert set(claims) == {"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
                               "preferred_username", "email"}
        dt.date.fromisoformat(person.birthdate)
        assert person.gender in ("male", "female")
        assert re.fullmatch(r"99\d{3}", person.birthcountry)
        # A commune code exactly when born in France.
        assert bool(person.birthplace) == (person.birthcountry == "99100")
    abroad = sim.TEST_IDENTITIES["sacha-ne-a-letranger"]
    assert abroad.birthplace == "" and abroad.birthcountry != "99100"
    assert sim.TEST_IDENTITIES["lou-date-presumee"].birthdate.endswith("-01-01")


def test_the_homonym_shares_the_names_but_not_the_birth():
    camille, homonym = sim.TEST_IDENTITIES["camille"], sim.TEST_IDENTITIES["camille-homonyme"]
    assert (homonym.given_name, homonym.family_name) == (camille.given_name, camille.family_name)
    assert homonym.birthdate != camille.birthdate and homonym.birthplace != camille.birthplace
    assert homonym.sub != camille.sub


def _keys(hmac_key: bytes) -> InstanceKeys:
    return InstanceKeys(secret_key=b"s" * 32, hmac_key=hmac_key, kek={"k1": b"k" * 32}, current_kek_id="k1")


def test_the_signing_key_is_derived_from_the_key_file_without_storage():
    first, again = sim.signing_key(_keys(b"a" * 32)), sim.signing_key(_keys(b"a" * 32))
    assert first.as_dict(private=True) == again.as_dict(private=True) and first.is_private
    assert first.as_dict()["crv"] == "P-256" and first.kid
    assert sim.signing_key(_keys(b"b" * 32)).kid != first.kid


# --- the directory side: hospiconnect.devtools.seed_remote ------------------------------------------------

def _person(session, external_id: str) -> Identity:  # type: ignore[no-untyped-def]
    return session.scalar(select(Identity).where(Identity.external_id == external_id))


def test_the_matching_people_are_created_once(rt, session):
    assert ensure_remote_demo_people(session) == 3
    session.commit()
    assert ensure_remote_demo_people(session) == 0
    session.commit()
    assert session.scalar(select(func.count(Identity.id))) == 3
    assert session.scalar(select(func.count(AuditEvent.id))
                          .where(AuditEvent.tag == "directory:identity:created")) == 3
    assert session.scalar(select(func.count(Mie.id))) == 0
    for spec in REMOTE_DEMO_PEOPLE:
        person = _person(session, spec.external_id)
        assert person.status == "active" and person.email and person.role_names == [spec.role]
        assert person.email.endswith(".example")


def test_the_directory_people_match_the_simulator_per_the_matching_rules(rt, session):
    ensure_remote_demo_people(session)
    by_key = {spec.simulator_key: _person(session, spec.external_id) for spec in REMOTE_DEMO_PEOPLE}
    for key in ("camille", "sacha-ne-a-letranger"):
        result = match_identity(identity_facts(by_key[key]), sim.TEST_IDENTITIES[key].claims())
        assert result.matched and not result.presumed_birth_date, key
    presumed = match_identity(identity_facts(by_key["lou-date-presumee"]),
                              sim.TEST_IDENTITIES["lou-date-presumee"].claims())
    assert presumed.matched and presumed.presumed_birth_date
    assert by_key["lou-date-presumee"].birth_date.isoformat() != sim.TEST_IDENTITIES["lou-date-presumee"].birthdate
    homonym = match_identity(identity_facts(by_key["camille"]), sim.TEST_IDENTITIES["camille-homonyme"].claims())
    assert not homonym.matched and {"birth_date", "birth_place"} <= set(homonym.fields)
    assert by_key["sacha-ne-a-letranger"].birth_place is None


def test_seed_demo_adds_them_in_demo_only_and_once(rt, session, tmp_path):
    demo = dataclasses.replace(rt.settings, env="demo", issuer="http://localhost:5099", instance_path=tmp_path)
    summary = seed_demo(session, rt.keys, count=20, today=TODAY, settings=demo)
    session.commit()
    assert "3 personne(s) pour l'enrôlement à distance" in summary
    again = seed_demo(session, rt.keys, count=20, today=TODAY, settings=demo)
    session.commit()
    assert "enrôlement à distance" not in again
    assert all(_person(session, spec.external_id) is not None for spec in REMOTE_DEMO_PEOPLE)
    # 20 drawn, 3 for the remote enrollment, 3 for the pairing with Pro Santé Connect (seed_psc).
    assert "3 professionnel(s) pour l'appairage Pro Santé Connect" in summary
    assert "appairage" not in again
    assert session.scalar(select(func.count(Identity.id))) == 26


def test_seed_demo_leaves_them_out_of_tests_and_of_a_real_franceconnect_plus(rt, session, tmp_path):
    seed_demo(session, rt.keys, count=10, today=TODAY, settings=rt.settings)  # env "test"
    real = dataclasses.replace(rt.settings, env="demo", instance_path=tmp_path,
                               fcplus_discovery_url="https://fcp.example/api/v2/.well-known/openid-configuration",
                               psc_discovery_url="https://psc.example/.well-known/openid-configuration")
    seed_demo(session, rt.keys, count=10, today=TODAY, settings=real)
    assert session.scalar(select(func.count(Identity.id))) == 10
