"""Exceptions (dérogations) on a real database (SQLite, or PostgreSQL with HOSPICONNECT_TEST_DATABASE_URL):
every rule and refusal of a grant, the targets, revocation, expiry, uses counted under concurrency, the journal."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authorizations import services as exceptions
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.errors import Conflict, ValidationError
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy, parse_policy
from hospiconnect.policies.relaxations import ExceptionGrant, Relaxation, relax
from tests.factories import create_identity

T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)
POLICY = load_policy(DEFAULT_POLICY_PATH)
JUSTIFICATION = "Intérimaires du service de cardiologie sans téléphone professionnel"


def lenient_policy():  # type: ignore[no-untyped-def]
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    marker = "    emergency: true\n  standard:"
    assert marker in text
    return parse_policy(text.replace(marker, "    emergency: true\n    exceptions_may_lower_factors: true\n"
                                             "  standard:"), "lenient.yaml")


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def count(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(PolicyException))


def grant(session, policy=POLICY, **overrides):  # type: ignore[no-untyped-def]
    values = dict(app_class="standard", relaxation={"allow_single_factor": True}, justification=JUSTIFICATION,
                  ends_at=T0 + dt.timedelta(days=30), actor="rssi", now=T0)
    values.update(overrides)
    return exceptions.grant_exception(session, policy, **values)


def refused(session, **overrides) -> ValidationError:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as info:
        grant(session, **overrides)
    session.rollback()
    assert count(session) == 0 and journal(session, tags.POLICY_EXCEPTION_GRANTED) == []
    return info.value


@pytest.fixture()
def person(session):  # type: ignore[no-untyped-def]
    return create_identity(session, contract_type="interim", units="CARDIO")


# -- granting ---------------------------------------------------------------------------------------------------

def test_grant_to_a_person_is_stored_journaled_and_found(session, person):
    row = grant(session, identity=person)
    session.commit()
    assert (row.target_kind, row.identity_id, row.population, row.app_class) == ("identity", person.id, None,
                                                                                "standard")
    assert json.loads(row.relaxation_json) == {"allow_single_factor": True}
    assert (row.starts_at, row.ends_at, row.granted_by, row.use_count) == (T0, T0 + dt.timedelta(days=30), "rssi", 0)
    assert row.policy_digest == POLICY.digest and row.state(T0) == "active"
    [event] = journal(session, tags.POLICY_EXCEPTION_GRANTED)
    details = json.loads(event.details)
    assert (event.actor, event.subject) == ("rssi", person.public_id)
    assert details["exception"] == row.public_id and details["justification"] == JUSTIFICATION
    assert details["relaxation"] == {"allow_single_factor": True} and details["class"] == "standard"
    grants = exceptions.active_exceptions_for(session, person, "standard", T0 + dt.timedelta(hours=1))
    assert grants == [ExceptionGrant(id=row.public_id, app_class="standard",
                                     relaxation=Relaxation(allow_single_factor=True), starts_at=T0,
                                     ends_at=T0 + dt.timedelta(days=30), justification=JUSTIFICATION,
                                     target="identity")]
    assert exceptions.active_exceptions_for(session, person, "health-data", T0) == []
    assert exceptions.active_exceptions_for(session, person, None, T0) == grants
    # What the evaluator will do with it.
    settings = POLICY.effective("standard", T0).settings
    assert relax(POLICY, "standard", settings, grants, T0).applied == (row.public_id,)


@pytest.mark.parametrize("justification", ["", "   ", "urgence", None])
def test_a_justification_is_required(session, person, justification):
    error = refused(session, identity=person, justification=justification)
    assert error.field == "justification" and "justification est obligatoire" in error.message
    assert error.code == "justification_required"


@pytest.mark.parametrize("ends_at,code", [
    (None, "end_required"),
    (T0 - dt.timedelta(minutes=1), "end_in_past"),
    (T0 + dt.timedelta(days=180, minutes=1), "end_too_far"),
])
def test_an_end_date_is_required_in_the_future_and_within_the_cap(session, person, ends_at,
                                                                   code):
    error = refused(session, identity=person, ends_at=ends_at)
    assert (error.field, error.code) == ("ends_at", code)


def test_the_cap_is_the_setting_and_the_period_must_make_sense(session, person):
    assert grant(session, identity=person, ends_at=T0 + dt.timedelta(days=180)).ends_at == T0 + dt.timedelta(days=180)
    session.rollback()
    error = refused(session, identity=person, ends_at=T0 + dt.timedelta(days=31), max_days=30)
    assert error.code == "end_too_far" and "30 jours" in error.message
    assert refused(session, identity=person, starts_at=T0 + dt.timedelta(days=10),
                   ends_at=T0 + dt.timedelta(days=5)).code == "end_before_start"
    assert refused(session, identity=person, starts_at=T0 - dt.timedelta(days=1)).code == "start_in_past"
    with pytest.raises(ValidationError, match="fuseau"):
        grant(session, identity=person, ends_at=dt.datetime(2026, 12, 1))


def test_a_scheduled_exception_is_not_in_force_before_its_start(session, person):
    row = grant(session, identity=person, starts_at=T0 + dt.timedelta(days=2))
    session.commit()
    assert row.state(T0) == "scheduled"
    assert exceptions.active_exceptions_for(session, person, "standard", T0) == []
    assert len(exceptions.active_exceptions_for(session, person, "standard", T0 + dt.timedelta(days=2))) == 1
    assert exceptions.list_exceptions(session, as_of=T0) == [row]


def test_one_factor_for_health_data_is_refused(session, person):
    error = refused(session, identity=person, app_class="health-data")
    assert (error.field, error.code) == ("allow_single_factor", "two_factor_floor")
    assert "exige deux facteurs" in error.message
    # Administration requires two factors too (min_acr eidas2), even if it is not health data.
    assert refused(session, identity=person, app_class="administration").code == "two_factor_floor"


def test_one_factor_for_health_data_is_allowed_when_the_policy_says_so(session, person):
    row = grant(session, lenient_policy(), identity=person, app_class="health-data")
    session.commit()
    assert row.app_class == "health-data" and row.relaxation.allow_single_factor
    # Other relaxations of a two-factor class never needed the policy's permission.
    other = grant(session, identity=person, app_class="health-data", relaxation={"allow_mie_types": ["password"],
                                                                                  "max_auth_age": "16h"})
    assert other.relaxation.max_auth_age == dt.timedelta(hours=16)


@pytest.mark.parametrize("overrides,field,code", [
    ({"app_class": "dpi"}, "app_class", "unknown_class"),
    ({"relaxation": {"allow_mie_types": ["carte-agent"]}}, "allow_mie_types", "mie_type_unknown"),
    ({"relaxation": {"networks": ["pharmacie"]}}, "networks", "network_unknown"),
    ({"relaxation": {"networks": ["10.1.2.3/8"]}}, "networks", "network_unknown"),
    ({"relaxation": {}}, "relaxation", "relaxation_empty"),
    ({"relaxation": {"everything": True}}, "relaxation", "relaxation_unknown"),
    ({"relaxation": {"max_auth_age": "8h"}}, "max_auth_age", "max_auth_age_not_longer"),
])
def test_unknown_or_useless_relaxations_are_refused(session, person, overrides, field,
                                                    code):
    error = refused(session, identity=person, **overrides)
    assert (error.field, error.code) == (field, code)


def test_targets_exactly_one_kind(session, person):
    assert refused(session).code == "target_required"
    assert refused(session, identity=person, population="interim").code == "target_ambiguous"
    assert refused(session, identity=person, units=["CARDIO"]).code == "units_need_population"
    assert (refused(session, population="interimaire").field, refused(session, population="x").code) == (
        "population", "population_unknown")
    error = refused(session, population="interim", units=["CARDIO", "NEPHRO-9"])
    assert (error.field, error.code) == ("units", "unit_unknown") and "NEPHRO-9" in error.message


def test_every_problem_is_reported_at_once(session, person):
    error = refused(session, identity=person, app_class="health-data", justification="", ends_at=None)
    assert set(error.errors) == {"justification", "ends_at", "allow_single_factor"}


def test_a_population_exception_follows_the_population_and_its_units(session, person):
    elsewhere = create_identity(session, contract_type="interim", units="NEURO")
    permanent = create_identity(session, contract_type="permanent", units="CARDIO")
    whole = grant(session, population="trainee")
    narrowed = grant(session, population="interim", units=["CARDIO", "CARDIO"])
    session.commit()
    assert narrowed.units == ["CARDIO"] and narrowed.target_kind == "population"
    [event] = [e for e in journal(session, tags.POLICY_EXCEPTION_GRANTED)
               if json.loads(e.details)["exception"] == narrowed.public_id]
    assert event.subject == "population:interim"
    assert [g.id for g in exceptions.active_exceptions_for(session, person, "standard", T0)] == [narrowed.public_id]
    assert exceptions.active_exceptions_for(session, elsewhere, "standard", T0) == []
    assert exceptions.active_exceptions_for(session, permanent, "standard", T0) == []
    trainee = create_identity(session, contract_type="trainee")
    assert [g.id for g in exceptions.active_exceptions_for(session, trainee, "standard", T0)] == [whole.public_id]


def test_a_departed_person_gets_no_exception(session, person):
    person.status = "departed"
    session.commit()
    assert refused(session, identity=person).code == "identity_departed"


# -- revocation, expiry, listing --------------------------------------------------------------------------------

def test_revocation_needs_a_reason_ends_the_exception_and_is_journaled(session, person):
    row = grant(session, identity=person)
    session.commit()
    with pytest.raises(ValidationError, match="motif"):
        exceptions.revoke_exception(session, row.public_id, actor="rssi", reason=" ", now=T0)
    later = T0 + dt.timedelta(days=1)
    exceptions.revoke_exception(session, row.public_id, actor="rssi", reason="fin de mission", now=later)
    session.commit()
    assert (row.revoked_at, row.revoked_by, row.revoke_reason, row.state(later)) == (
        later, "rssi", "fin de mission", "revoked")
    assert exceptions.active_exceptions_for(session, person, "standard", later) == []
    assert exceptions.list_exceptions(session, as_of=later) == []
    assert exceptions.list_exceptions(session, active_only=False) == [row]
    [event] = journal(session, tags.POLICY_EXCEPTION_REVOKED)
    assert json.loads(event.details)["reason"] == "fin de mission" and event.subject == person.public_id
    with pytest.raises(Conflict, match="déjà révoquée"):
        exceptions.revoke_exception(session, row.public_id, actor="rssi", reason="encore", now=later)
    with pytest.raises(exceptions.ExceptionNotFound):
        exceptions.revoke_exception(session, "inconnue", actor="rssi", reason="encore", now=later)


def test_exceptions_expire_by_their_date_and_the_expiry_is_journaled_once(session, person):
    row = grant(session, identity=person, ends_at=T0 + dt.timedelta(days=2))
    other = grant(session, identity=person, ends_at=T0 + dt.timedelta(days=20))
    session.commit()
    after = T0 + dt.timedelta(days=2)
    assert row.state(after) == "expired" and not row.in_force(after)
    assert [g.id for g in exceptions.active_exceptions_for(session, person, "standard", after)] == [other.public_id]
    assert exceptions.list_exceptions(session, as_of=after) == [other]
    with pytest.raises(Conflict, match="pris fin"):
        exceptions.revoke_exception(session, row.public_id, actor="rssi", reason="trop tard", now=after)
    assert exceptions.journal_expired(session, T0 + dt.timedelta(days=1)).expired == []
    assert exceptions.journal_expired(session, after).expired == [row.public_id]
    assert exceptions.journal_expired(session, after + dt.timedelta(hours=1)).expired == []
    session.commit()
    [event] = journal(session, tags.POLICY_EXCEPTION_EXPIRED)
    assert json.loads(event.details)["exception"] == row.public_id and event.outcome == "info"


def test_exception_as_dict(session, person):
    row = grant(session, identity=person, relaxation={"networks": ["internal"], "max_auth_age": "1d"})
    data = exceptions.exception_as_dict(session, row, as_of=T0)
    assert data["user_name"] == person.user_name and data["state"] == "active"
    assert data["relaxation"] == {"networks": ["internal"], "max_auth_age": 86400}
    assert "réseaux ajoutés : internal" in data["relaxation_fr"] and "1d" in data["relaxation_fr"]


# -- uses -----------------------------------------------------------------------------------------------------------

def test_record_use_counts_and_journals_each_use(session, person):
    row = grant(session, identity=person)
    session.commit()
    when = T0 + dt.timedelta(hours=3)
    assert exceptions.record_use(session, row.public_id, identity=person, client_ip="10.1.2.3", client_id="intranet",
                                 now=when)
    assert exceptions.record_use(session, row.public_id, identity=person, now=when + dt.timedelta(minutes=1))
    session.commit()
    session.refresh(row)
    assert (row.use_count, row.last_used_at) == (2, when + dt.timedelta(minutes=1))
    events = journal(session, tags.POLICY_EXCEPTION_USED)
    assert len(events) == 2 and events[0].subject == person.public_id and events[0].client_ip == "10.1.2.3"
    assert json.loads(events[0].details) == {"exception": row.public_id, "class": "standard", "client": "intranet",
                                             "use_count": 1, "relaxation": {"allow_single_factor": True}}
    exceptions.revoke_exception(session, row.public_id, actor="rssi", reason="fin", now=when + dt.timedelta(hours=1))
    session.commit()
    assert not exceptions.record_use(session, row.public_id, identity=person, now=when + dt.timedelta(hours=2))
    assert not exceptions.record_use(session, row.public_id, identity=person, now=T0 + dt.timedelta(days=40))
    assert len(journal(session, tags.POLICY_EXCEPTION_USED)) == 2


def test_concurrent_uses_all_count(rt):
    with rt.db.session() as s:
        person = create_identity(s)
        public_id = grant(s, identity=person).public_id
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def use() -> None:
        with rt.db.sessionmaker() as s:
            who = s.get(type(person), person.id)
            barrier.wait()
            results.append(exceptions.record_use(s, public_id, identity=who, now=T0 + dt.timedelta(hours=1)))
            s.commit()

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True] * 4
    with rt.db.session() as s:
        assert exceptions.get_exception(s, public_id).use_count == 4
        assert len(journal(s, tags.POLICY_EXCEPTION_USED)) == 4
        assert audit.verify(s).ok
