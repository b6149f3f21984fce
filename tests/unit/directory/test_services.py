import datetime as dt

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from hospiconnect.errors import PreconditionFailed
from tests.factories import IdentityRawFactory, create_identity, make_rpps

TODAY = dt.date(2026, 11, 27)


def tags(session):
    return [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def test_create_journals_in_the_same_transaction(session):
    identity = create_identity(session, birth_family_name="Dupont", given_names="Jeanne Louise")
    assert identity.status == "active"
    assert identity.user_name == "jdupont"
    assert identity.population == "local"
    assert tags(session) == ["directory:identity:created"]
    assert audit.verify(session).ok


def test_user_names_are_unique(session):
    a = create_identity(session, birth_family_name="Dupont", given_names="Jeanne", birth_date="1980-01-01")
    b = create_identity(session, birth_family_name="Dupont", given_names="Jacques", birth_date="1981-01-01")
    assert (a.user_name, b.user_name) == ("jdupont", "jdupont2")


def test_duplicate_refused_then_confirmed_homonym(session):
    create_identity(session, birth_family_name="Lefèvre-Durand", given_names="Élodie", birth_date="1990-02-03")
    with pytest.raises(services.DuplicateIdentity) as info:
        create_identity(session, birth_family_name="LEFEVRE DURAND", given_names="elodie Marie",
                        birth_date="03/02/1990")
    session.rollback()
    assert "homonyme" in info.value.message
    assert session.scalar(select(func.count()).select_from(Identity)) == 1
    create_identity(session, confirm_homonym=True, birth_family_name="LEFEVRE DURAND",
                    given_names="elodie Marie", birth_date="03/02/1990")
    assert tags(session)[-1] == "directory:identity:homonym_confirmed"


def test_same_name_other_birth_date_is_not_a_duplicate(session):
    create_identity(session, birth_family_name="Martin", given_names="Paul", birth_date="1970-01-01")
    create_identity(session, birth_family_name="Martin", given_names="Paul", birth_date="1970-01-02")


def test_rpps_is_unique(session):
    rpps = make_rpps(7)
    create_identity(session, rpps=rpps)
    with pytest.raises(services.RppsTaken):
        create_identity(session, rpps=rpps)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Identity)) == 1


def test_rpps_sets_population(session):
    assert create_identity(session, with_rpps=True).population == "rpps"


def test_future_start_is_pending_then_activated_by_the_job(session):
    identity = create_identity(session, start_date="2026-12-15")
    assert identity.status == "pending"
    assert services.run_lifecycle(session, today=TODAY, grace_days=30).activated == []
    report = services.run_lifecycle(session, today=dt.date(2026, 12, 15), grace_days=30)
    session.commit()
    assert report.activated == [identity.public_id]
    assert identity.status == "active"


def test_lifecycle_suspends_then_departs_and_is_idempotent(session):
    identity = create_identity(session, end_date="2026-11-01")
    first = services.run_lifecycle(session, today=TODAY, grace_days=30)
    session.commit()
    assert first.suspended == [identity.public_id] and identity.status == "suspended"
    again = services.run_lifecycle(session, today=TODAY, grace_days=30)
    assert again.as_dict()["suspended"] == 0 and again.as_dict()["departed"] == 0
    later = services.run_lifecycle(session, today=dt.date(2026, 12, 5), grace_days=30)
    session.commit()
    assert later.departed == [identity.public_id] and identity.status == "departed"
    assert "directory:identity:departed" in tags(session)
    assert audit.verify(session).ok


def test_transitions_are_guarded(session):
    identity = create_identity(session)
    with pytest.raises(services.InvalidTransition):
        services.reactivate(session, identity, actor="t", today=TODAY)
    services.suspend(session, identity, actor="t", reason="absence longue")
    services.reactivate(session, identity, actor="t", today=TODAY)
    services.change_status(session, identity, "departed", actor="t", reason="départ")
    with pytest.raises(services.InvalidTransition):
        services.change_status(session, identity, "active", actor="t", reason="retour")
    session.commit()
    assert tags(session)[-3:] == ["directory:identity:suspended", "directory:identity:reactivated",
                                  "directory:identity:departed"]


def test_end_today_suspends_and_reactivation_needs_a_new_end_date(session):
    identity = create_identity(session)
    services.end(session, identity, actor="t", end_date=TODAY, today=TODAY)
    assert identity.status == "suspended"
    with pytest.raises(services.InvalidTransition):
        services.reactivate(session, identity, actor="t", today=TODAY + dt.timedelta(days=1))


def test_update_changes_fields_and_version(session):
    identity = create_identity(session, usage_name="")
    data = services.validate_identity(IdentityRawFactory(birth_family_name=identity.birth_family_name,
                                                         email=identity.email, usage_name="Bernard",
                                                         roles="ide|cadre"), today=TODAY)
    changed = services.update_identity(session, identity, data, actor="t", expected_version=1)
    session.commit()
    assert set(changed) == {"usage_name", "roles"}
    assert identity.version == 2 and identity.role_names == ["cadre", "ide"]
    with pytest.raises(PreconditionFailed):
        services.update_identity(session, identity, data, actor="t", expected_version=1)
    assert services.update_identity(session, identity, data, actor="t", expected_version=2) == []


def test_lookup_by_any_key(session):
    identity = create_identity(session, with_rpps=True, external_id="M0001")
    for key in (identity.public_id, identity.user_name, "M0001", identity.rpps):
        assert services.get_identity(session, key).id == identity.id


def test_search_ignores_accents(session):
    create_identity(session, birth_family_name="Bérénice", given_names="Zoé")
    total, rows = services.list_identities(session, search="berenice")
    assert total == 1 and rows[0].birth_family_name == "Bérénice"
