"""Reading the trajectory (hospiconnect.trajectory.services) on the suite's database: series, breakdowns,
coverage, targets (with the RSSI's additions, validated and journaled) and the people lists with their filters
and pages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory.models import OrgUnit
from hospiconnect.errors import Conflict, NotFound, ValidationError
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from hospiconnect.policies.policy import PolicyTarget
from hospiconnect.trajectory import services
from hospiconnect.trajectory.models import TrajectoryPersonStatus, TrajectorySnapshot, TrajectoryTarget
from tests.factories import create_identity

DAY0 = dt.date(2026, 10, 1)
TODAY = DAY0 + dt.timedelta(days=20)


def day(n: int) -> dt.date:
    return DAY0 + dt.timedelta(days=n)


def store(session, rows: dict[tuple[str, str, str], int], on: dt.date) -> None:  # type: ignore[no-untyped-def]
    for (indicator, dimension, value), count in rows.items():
        session.add(TrajectorySnapshot(day=on, indicator=indicator, dimension=dimension, value=value, count=count))


@pytest.fixture()
def history(session):  # type: ignore[no-untyped-def]
    """21 days: 100 active, compliant 40 + i; with RPPS 30 active, 20 + i // 2 compliant; unit CARDIO 10 active,
    2 compliant; unit URG 50 active, 10 compliant; proofed 30 + i (all). Day 5 missing (the job did not run)."""
    for i in range(21):
        if i == 5:
            continue
        store(session, {("active", "all", ""): 100, ("compliant", "all", ""): 40 + i, ("proofed", "all", ""): 30 + i,
                        ("active", "rpps", "with"): 30, ("compliant", "rpps", "with"): 20 + i // 2,
                        ("active", "unit", "CARDIO"): 10, ("compliant", "unit", "CARDIO"): 2,
                        ("active", "unit", "URG"): 50, ("compliant", "unit", "URG"): 10,
                        ("signins:health-data", "all", ""): 7}, day(i))
    session.add(OrgUnit(code="CARDIO", name="Cardiologie", kind="service"))
    session.add(OrgUnit(code="URG", name="", kind="service"))
    session.commit()


def test_series_in_day_order_with_bounds(session, history) -> None:  # type: ignore[no-untyped-def]
    full = services.series(session, "compliant")
    assert len(full) == 20 and full[0] == (day(0), 40) and full[-1] == (day(20), 60)
    assert day(5) not in dict(full)
    assert services.series(session, "compliant", "rpps", "with", day_from=day(18)) == [
        (day(18), 29), (day(19), 29), (day(20), 30)]
    assert services.series(session, "compliant", day_to=day(1)) == [(day(0), 40), (day(1), 41)]
    assert services.series(session, "compliant", "unit", "NOWHERE") == []
    streamed = list(services.iter_series(session, indicators=["active"], dimension="unit", day_from=day(20)))
    assert [(r.value, r.count) for r in streamed] == [("CARDIO", 10), ("URG", 50)]
    assert len(list(services.iter_series(session))) == 20 * 10


def test_coverage_and_projection(session, history) -> None:  # type: ignore[no-untyped-def]
    points = services.coverage(session, day(0), day(20))
    assert [(p.day, p.active, p.compliant, p.share) for p in points[:2]] == [
        (day(0), 100, 40, 40.0), (day(1), 100, 41, 41.0)]
    assert len(points) == 20
    rpps = services.coverage(session, day(19), day(20), "rpps", "with")
    assert [p.share for p in rpps] == [pytest.approx(29 / 30 * 100), 100.0]
    # +1 point a day from 40 % on day 0: 100 % on day 60.
    projection = services.project_coverage(points, today=TODAY)
    assert projection.reachable and projection.reaches_on == day(60)
    assert projection.method_fr.endswith("(20 points)")
    many = services.coverage_many(session, day(20), day(20), [("unit", "CARDIO"), ("unit", "URG")])
    assert {k: [p.share for p in v] for k, v in many.items()} == {("unit", "CARDIO"): [20.0], ("unit", "URG"): [20.0]}


def test_breakdown_with_labels_and_shares(session, history) -> None:  # type: ignore[no-untyped-def]
    rows = services.breakdown(session, day(20), "unit")
    assert [(r.value, r.label, r.active, r.compliant, r.share, r.missing) for r in rows] == [
        ("CARDIO", "Cardiologie", 10, 2, 20.0, 8), ("URG", "URG", 50, 10, 20.0, 40)]
    [rpps] = services.breakdown(session, day(20), "rpps", indicators=("active",))
    assert (rpps.value, rpps.label, dict(rpps.counts)) == ("with", "avec RPPS", {"active": 30})
    assert services.breakdown(session, day(5), "unit") == []
    assert services.snapshot_day(session, day(5)) == day(4)
    assert services.snapshot_day(session) == day(20)
    assert services.snapshot_day(session, day(-1)) is None


def policy_with(*targets: PolicyTarget):  # type: ignore[no-untyped-def]
    return dataclasses.replace(load_policy(DEFAULT_POLICY_PATH), targets=targets)


def test_targets_of_the_policy_and_of_the_rssi(session, history) -> None:  # type: ignore[no-untyped-def]
    policy = policy_with(
        PolicyTarget(id="all-100", label="Tout le monde", due=day(10), percent=100),
        PolicyTarget(id="rpps-100", label="Médecins", due=day(30), percent=100, dimension="rpps", value="with"),
        PolicyTarget(id="proofed-40", label="Vérifiés", due=day(60), percent=40, indicator="proofed"))
    row = services.add_target(session, label="  Urgences à 80 %  ", percent="80", due=day(90).isoformat(),
                              dimension="unit", value="URG", actor="rssi@chu", today=TODAY)
    session.commit()
    result = {t.id: t for t in services.targets(session, policy, TODAY)}
    assert list(result) == ["all-100", "rpps-100", "proofed-40", row.public_id]
    everyone = result["all-100"]
    assert (everyone.source, everyone.day, everyone.active, everyone.count) == ("policy", day(20), 100, 60)
    assert (everyone.current_share, everyone.gap, everyone.met, everyone.overdue) == (60.0, 40.0, False, True)
    assert everyone.people_missing == 40
    # +1 point a day: 100 % on day 60, after the due day.
    assert everyone.projection is not None and everyone.projection.reaches_on == day(60)
    assert everyone.on_track is False and "Après l'échéance" in everyone.projection_fr
    doctors = result["rpps-100"]
    assert (doctors.met, doctors.overdue, doctors.gap, doctors.people_missing, doctors.on_track) == (
        True, False, 0.0, 0, True)
    proofed = result["proofed-40"]
    assert (proofed.current_share, proofed.met) == (50.0, True)
    urg = result[row.public_id]
    assert (urg.source, urg.label, urg.percent, urg.current_share, urg.gap, urg.people_missing) == (
        "rssi", "Urgences à 80 %", 80, 20.0, 60.0, 30)
    assert urg.created_by == "rssi@chu"
    # Flat at 20 %: not reachable at the current pace.
    assert urg.projection is not None and not urg.projection.reachable and urg.on_track is False
    data = urg.as_dict()
    assert data["scope_fr"] == "MIE conforme — unité : URG" and data["due"] == day(90).isoformat()
    json.dumps([t.as_dict() for t in result.values()])
    # Before any snapshot: no figures, still listed.
    [early] = services.targets(session, policy_with(), day(-5))
    assert (early.current_share, early.gap, early.met, early.day, early.projection) == (None, None, False, None, None)


def audit_tags(session) -> list[str]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(AuditEvent.tag).order_by(AuditEvent.seq)))


def test_adding_a_target_is_validated_field_by_field(session) -> None:  # type: ignore[no-untyped-def]
    session.add(OrgUnit(code="POLE-MED", name="Pôle médecine", kind="pole"))
    session.add(OrgUnit(code="CARDIO", name="Cardiologie", kind="service"))
    session.commit()
    cases = [
        (dict(label=" ", percent=50, due="2027-01-01"), "label", "Le libellé de l'objectif est obligatoire."),
        (dict(label="x" * 201, percent=50, due="2027-01-01"), "label", "ne doit pas dépasser 200"),
        (dict(label="A", percent=0, due="2027-01-01"), "percent", "nombre entier de 1 à 100"),
        (dict(label="A", percent="101", due="2027-01-01"), "percent", "nombre entier de 1 à 100"),
        (dict(label="A", percent="beaucoup", due="2027-01-01"), "percent", "nombre entier de 1 à 100"),
        (dict(label="A", percent=True, due="2027-01-01"), "percent", "nombre entier de 1 à 100"),
        (dict(label="A", percent=50, due=None), "due", "L'échéance est obligatoire"),
        (dict(label="A", percent=50, due="31/03/2027"), "due", "Échéance invalide « 31/03/2027 »"),
        (dict(label="A", percent=50, due="2020-01-01"), "due", "aujourd'hui (21/10/2026) ou plus tard"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="service"), "dimension", "Dimension inconnue"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="unit"), "value", "La valeur est obligatoire"),
        (dict(label="A", percent=50, due="2027-01-01", value="CARDIO"), "value", "Pas de valeur"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="rpps", value="yes"), "value", "with ou without"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="contract_type", value="cdi"), "value",
         "Type de contrat inconnu"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="unit", value="NOPE"), "value",
         "Unité inconnue de l'annuaire « NOPE »"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="pole", value="CARDIO"), "value",
         "n'est pas un pôle"),
        (dict(label="A", percent=50, due="2027-01-01", dimension="establishment", value="12"), "value",
         "Numéro FINESS invalide"),
        (dict(label="A", percent=50, due="2027-01-01", indicator="signins"), "indicator", "Indicateur inconnu"),
    ]
    for kwargs, field, message in cases:
        with pytest.raises(ValidationError) as caught:
            services.add_target(session, actor="rssi", today=TODAY, **kwargs)
        assert caught.value.field == field, kwargs
        assert message in caught.value.errors[field], (kwargs, caught.value.errors)
    with pytest.raises(ValidationError) as caught:
        services.add_target(session, label="", percent=None, due="", dimension="unit", value="", actor="rssi",
                            today=TODAY)
    assert set(caught.value.errors) == {"label", "percent", "due", "value"}
    session.rollback()
    assert session.scalar(select(func.count()).select_from(TrajectoryTarget)) == 0
    assert tags.TRAJECTORY_TARGET_ADDED not in audit_tags(session)
    for dimension, value in (("pole", "POLE-MED"), ("unit", "CARDIO"), ("establishment", "2A0000001"),
                             ("contract_type", "interim"), ("role", "ide"), ("rpps", "without")):
        services.add_target(session, label=f"{dimension} 90 %", percent=90, due=TODAY, dimension=dimension,
                            value=value, actor="rssi", today=TODAY)
    session.commit()
    assert len(services.list_targets(session)) == 6


def test_removing_a_target_is_journaled_once(session) -> None:  # type: ignore[no-untyped-def]
    policy = policy_with(PolicyTarget(id="rie", label="RIE", due=day(10), percent=100))
    row = services.add_target(session, label="Intérimaires", percent=100, due="2027-03-31",
                              dimension="contract_type", value="interim", actor="rssi", today=TODAY)
    session.commit()
    removed = services.remove_target(session, row.public_id, actor="rssi", policy=policy)
    session.commit()
    assert removed.removed_at is not None and removed.removed_by == "rssi"
    with pytest.raises(Conflict, match="déjà été retiré"):
        services.remove_target(session, row.public_id, actor="rssi")
    with pytest.raises(Conflict, match="fichier de politique"):
        services.remove_target(session, "rie", actor="rssi", policy=policy)
    with pytest.raises(NotFound, match="Objectif introuvable"):
        services.remove_target(session, "nope", actor="rssi")
    session.rollback()
    assert services.list_targets(session) == []
    assert [t.public_id for t in services.list_targets(session, include_removed=True)] == [row.public_id]
    assert [t.id for t in services.targets(session, policy, TODAY)] == ["rie"]
    events = session.scalars(select(AuditEvent).where(AuditEvent.tag.like("admin:trajectory_target:%"))
                             .order_by(AuditEvent.seq)).all()
    assert [(e.tag, e.actor, e.subject) for e in events] == [
        (tags.TRAJECTORY_TARGET_ADDED, "rssi", f"trajectory_target:{row.public_id}"),
        (tags.TRAJECTORY_TARGET_REMOVED, "rssi", f"trajectory_target:{row.public_id}")]
    assert json.loads(events[0].details)["value"] == "interim"


@pytest.fixture()
def statuses(session):  # type: ignore[no-untyped-def]
    """Six people with stored statuses (as the latest snapshot leaves them)."""
    people = {
        "Bernard": dict(status="non_compliant", reason="no_mie", units="CARDIO URG", poles="POLE-MED",
                        contract_type="interim"),
        "Arnaud": dict(status="non_compliant", reason="mie_single_factor", units="CARDIO", poles="POLE-MED",
                       rpps=True, psc_paired=True),
        "Dubois": dict(status="pending", reason="enrollment", units="URG", poles="POLE-URG"),
        "Caron": dict(status="compliant", reason="", units="CARDIO", poles="POLE-MED", mie_types="password totp"),
        "Estève": dict(status="exempt", reason="exception", units="CARDIO_2", poles="POLE-MED"),
        "Fabre": dict(status="non_compliant", reason="no_mie", units="", poles=""),
    }
    made = {}
    for name, values in people.items():
        person = create_identity(session, birth_family_name=name)
        values = {"rpps": False, "contract_type": "permanent", "mie_types": "", "roles": "ide",
                  "establishments": "750712184", **values}
        session.add(TrajectoryPersonStatus(identity_id=person.id, day=TODAY, **values))
        made[name] = person
    session.commit()
    return made


def names(rows) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.display_name.split()[-1] for r in rows]


def test_people_filters(session, statuses) -> None:  # type: ignore[no-untyped-def]
    page = services.people(session)
    assert names(page.rows) == ["Arnaud", "Bernard", "Caron", "Dubois", "Estève", "Fabre"]
    assert (page.total, page.day, page.has_next) == (6, TODAY, False)
    assert names(services.people(session, status="non_compliant").rows) == ["Arnaud", "Bernard", "Fabre"]
    assert names(services.people(session, status=("non_compliant", "pending"), unit="URG").rows) == [
        "Bernard", "Dubois"]
    # A unit code matches whole codes only: CARDIO is not CARDIO_2 (nor a LIKE pattern).
    assert names(services.people(session, unit="CARDIO").rows) == ["Arnaud", "Bernard", "Caron"]
    assert names(services.people(session, unit="CARDIO_2").rows) == ["Estève"]
    assert services.people(session, unit="CARDIO%").total == 0
    assert names(services.people(session, pole="POLE-MED", status="non_compliant").rows) == ["Arnaud", "Bernard"]
    assert names(services.people(session, contract_type="interim").rows) == ["Bernard"]
    assert names(services.people(session, rpps=True).rows) == ["Arnaud"]
    assert services.people(session, rpps=False).total == 5
    assert names(services.people(session, psc=True).rows) == ["Arnaud"]
    assert services.people(session, psc=False).total == 5
    assert names(services.people(session, psc=False, rpps=True).rows) == []
    assert [r.psc_paired for r in services.people(session).rows] == [True, False, False, False, False, False]
    first = services.people(session, status="non_compliant").rows[0]
    assert (first.public_id, first.user_name, first.reason, first.units, first.roles, first.establishments) == (
        statuses["Arnaud"].public_id, statuses["Arnaud"].user_name, "mie_single_factor", ("CARDIO",), ("ide",),
        ("750712184",))
    assert services.people(session, unit="CARDIO", status="compliant").rows[0].mie_types == ("password", "totp")
    with pytest.raises(ValidationError, match="Statut inconnu"):
        services.people(session, status="late")
    with pytest.raises(ValidationError):
        services.people(session, limit=0)


def test_people_pages_and_stream(session, statuses) -> None:  # type: ignore[no-untyped-def]
    first = services.people(session, limit=4)
    second = services.people(session, limit=4, offset=4)
    assert names(first.rows) == ["Arnaud", "Bernard", "Caron", "Dubois"] and first.has_next
    assert names(second.rows) == ["Estève", "Fabre"] and not second.has_next
    assert first.total == second.total == 6
    streamed = list(services.iter_people(session, status=["non_compliant", "pending"]))
    assert names(streamed) == ["Arnaud", "Bernard", "Dubois", "Fabre"]
    assert streamed == services.people(session, status=["non_compliant", "pending"]).rows
    with pytest.raises(ValidationError):
        list(services.iter_people(session, status="late"))


def test_people_before_any_snapshot(session) -> None:  # type: ignore[no-untyped-def]
    page = services.people(session)
    assert (page.rows, page.total, page.day) == ([], 0, None)


def test_people_and_report_after_a_real_snapshot(session) -> None:  # type: ignore[no-untyped-def]
    """The core's snapshot of a small directory, read back by the lists, the CSV export and the report."""
    from hospiconnect.authenticators.models import Mie
    from hospiconnect.db import utcnow
    from hospiconnect.enrollment.models import NationalLink
    from hospiconnect.trajectory import exports
    from hospiconnect.trajectory.snapshots import take_snapshot

    activated = dt.datetime(2025, 9, 1, 9, tzinfo=dt.timezone.utc)
    totp = create_identity(session, birth_family_name="Aubert", units="POLE-MED|CARDIO")
    doctor = create_identity(session, birth_family_name="Blanc", with_rpps=True, units="CARDIO")
    interim = create_identity(session, birth_family_name="Colin", contract_type="interim", units="CARDIO|URG")
    nothing = create_identity(session, birth_family_name="Dumas", units="URG")
    # The doctor paired with Pro Santé Connect yesterday; the interim worker's pairing has been ended.
    now = utcnow()
    session.add_all([NationalLink(identity_id=doctor.id, issuer="https://psc.example", sub="psc-doctor",
                                  rpps=doctor.rpps, method="rpps", linked_at=now - dt.timedelta(days=1),
                                  linked_by=doctor.user_name),
                     NationalLink(identity_id=interim.id, issuer="https://psc.example", sub="psc-interim",
                                  method="names", linked_at=now - dt.timedelta(days=3), linked_by="x",
                                  unlinked_at=now - dt.timedelta(days=2), unlinked_by="agent",
                                  unlink_reason="erreur")])
    for person, types in ((totp, ("password", "totp")), (doctor, ("webauthn",)), (interim, ("password",))):
        for mie_type in types:
            session.add(Mie(identity_id=person.id, type=mie_type, status="active", label=mie_type,
                            activated_at=activated, proofing_method="face_to_face", proofing_at=activated))
    pole = OrgUnit(code="PMED", name="Pôle médecine", kind="pole")
    session.add(pole)
    session.flush()
    session.scalar(select(OrgUnit).where(OrgUnit.code == "CARDIO")).parent_id = pole.id
    session.commit()
    policy = load_policy(DEFAULT_POLICY_PATH)
    today = policy.local_day(utcnow())
    take_snapshot(session, policy, today)
    session.commit()

    page = services.people(session, status="non_compliant")
    assert [(r.user_name, r.reason) for r in page.rows] == [
        (interim.user_name, "mie_single_factor"), (nothing.user_name, "no_mie")]
    assert page.day == today
    assert [r.user_name for r in services.people(session, unit="CARDIO", status="compliant").rows] == [
        totp.user_name, doctor.user_name]
    assert [r.user_name for r in services.people(session, pole="PMED", status="non_compliant").rows] == [
        interim.user_name]
    assert services.people(session, pole="PMED").total == 3
    assert [r.user_name for r in services.people(session, rpps=True).rows] == [doctor.user_name]
    assert [r.user_name for r in services.people(session, contract_type="interim").rows] == [interim.user_name]
    assert services.people(session, status="non_compliant", limit=1, offset=1).rows[0].user_name == nothing.user_name

    lines = list(exports.people_csv(services.iter_people(session, status=["non_compliant", "pending"],
                                                         unit="URG")))
    assert len(lines) == 3 and lines[0].startswith("\ufeffNom;")
    assert (f"Colin;{interim.user_name};Non conforme;Mot de passe seul (un facteur);non;non associée;Intérim;"
            f"CARDIO, URG;") in lines[1]
    assert [r.user_name for r in services.people(session, psc=True).rows] == [doctor.user_name]
    assert f"Blanc;{doctor.user_name};Conforme;;oui;associée;" in "".join(
        exports.people_csv(services.iter_people(session, psc=True)))

    data = services.report(session, policy, today)
    assert data["day"] == today.isoformat()
    assert (data["headline"]["active"], data["headline"]["compliant"], data["headline"]["password_only"]) == (4, 2, 1)
    assert (data["headline"]["psc_paired"], data["headline"]["psc_share"]) == (1, 25.0)
    paired = {(f["dimension"], f["value"]): (f["count"], f["share"]) for f in data["figures"]
              if f["indicator"] == "psc_paired"}
    assert paired[("all", "")] == (1, 25.0) and paired[("rpps", "with")] == (1, 100.0)
    assert paired[("unit", "CARDIO")] == (1, pytest.approx(100 / 3)) and paired[("unit", "URG")] == (0, 0.0)
    assert [g["value"] for g in data["largest_gaps"]] == ["URG", "CARDIO"]
    [cardio] = [r for r in services.breakdown(session, today, "unit") if r.value == "CARDIO"]
    assert (cardio.active, cardio.compliant, cardio.missing) == (3, 2, 1)
    assert [(p.active, p.compliant, p.share) for p in services.coverage(session, today, today)] == [(4, 2, 50.0)]
    json.dumps(data)
