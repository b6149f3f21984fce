"""Snapshots on the suite's database (hospiconnect.trajectory.facts, events, snapshots): idempotency, the per-person
table, and a backfill of a hand-built history giving exactly the hand-computed series."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import event, func, select

import hospiconnect.audit.service
import hospiconnect.authenticators.notifications
import hospiconnect.authenticators.services
import hospiconnect.authorizations.services
import hospiconnect.directory.services
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import services as mies
from hospiconnect.authenticators.models import EmergencyCredential, Mie, WebAuthnCredential
from hospiconnect.authorizations import services as exceptions
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import OrgUnit
from hospiconnect.enrollment import national, psc
from hospiconnect.enrollment.models import EnrollmentCase, EnrollmentTransition
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from hospiconnect.trajectory.facts import load_people
from hospiconnect.trajectory.models import TrajectoryPersonStatus, TrajectorySnapshot
from hospiconnect.trajectory.snapshots import backfill, latest_day, take_snapshot
from tests.factories import create_identity

POLICY = load_policy(DEFAULT_POLICY_PATH)
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
TODAY = dt.date(2026, 11, 27)


def day(n: int) -> dt.date:
    """Day ``n`` of the hand-built history (1 October 2026 is day 1)."""
    return dt.date(2026, 9, 30) + dt.timedelta(days=n)


def at(n: int, hour: int = 10) -> dt.datetime:
    """``hour`` o'clock UTC on day ``n`` (noon in Paris: the same local day)."""
    return dt.datetime.combine(day(n), dt.time(hour), tzinfo=UTC)


class Clock:
    """Sets the time the services and the journal see (``utcnow`` of each module that records history)."""

    MODULES = (hospiconnect.audit.service, hospiconnect.directory.services, hospiconnect.authenticators.services,
               hospiconnect.authenticators.notifications, hospiconnect.authorizations.services)

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = NOW
        for module in self.MODULES:
            monkeypatch.setattr(module, "utcnow", lambda: self.now)

    def __call__(self, when: dt.datetime) -> "Clock":
        self.now = when
        return self


@pytest.fixture()
def clock(monkeypatch):
    return Clock(monkeypatch)


def stored(session, on: dt.date) -> dict[tuple[str, str, str], int]:
    rows = session.execute(select(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension,
                                  TrajectorySnapshot.value, TrajectorySnapshot.count)
                           .where(TrajectorySnapshot.day == on)).all()
    return {(i, d, v): c for i, d, v, c in rows}


def give_mie(session, identity, mie_type: str, *, activated: int | dt.datetime, revoked: int | None = None,
             proofed: bool = False, clock: Clock, attachment: str | None = None) -> Mie:
    """Create an MIE through the services, activated (and revoked) on the days given."""
    start = at(activated) if isinstance(activated, int) else activated
    clock(start - dt.timedelta(hours=1))
    mie = mies.create_mie(session, identity, mie_type, actor="test")
    if attachment:
        session.add(WebAuthnCredential(mie_id=mie.id, credential_id=f"cred-{mie.id}", public_key=b"k",
                                       attachment=attachment))
    if proofed:
        mie.proofing_method, mie.proofing_at = "face_to_face", start
    clock(start)
    mies.transition(session, mie, "active", actor="test")
    if revoked is not None:
        clock(at(revoked))
        mies.transition(session, mie, "revoked", actor="test")
    session.commit()
    return mie


def signin(session, clock: Clock, n: int, public_id: str, client_id: str, amr: list[str], acr: str,
           app_class: str | None = "health-data") -> None:
    clock(at(n, 9))
    details = {"client_id": client_id, "acr": acr, "amr": amr, "sid": "sid", "scope": "openid"}
    if app_class is not None:
        details["class"] = app_class
    audit.record(session, tags.OIDC_CODE_ISSUED, actor=public_id, subject=public_id, details=details)
    session.commit()


def pair(session, identity, n: int) -> str:
    """Pair ``identity`` with its national identity on day ``n`` through the pairing service (PSC not saying which
    MIE was used, so no national MIE is added); return the link's public id."""
    national_identity = psc.NationalIdentity(
        issuer="https://psc.example", sub=f"psc-8{identity.rpps}", national_id=f"8{identity.rpps}",
        national_id_type="rpps", rpps=identity.rpps, given_name=identity.given_names,
        family_name=identity.birth_family_name, organization="", acr="eidas1", amr=(), auth_time=None,
        mie_type=None, raw_ref_pro=None, claims={}, id_token_claims={})
    link = national.complete_pairing(session, identity, national_identity, identity.user_name, now=at(n))
    session.commit()
    return link.public_id


@pytest.fixture()
def history(session, clock):
    """Two people over ten days (see the expected series in the test below)."""
    pole = OrgUnit(code="POLE-MED", name="Pôle médecine", kind="pole")
    session.add(pole)
    session.flush()
    session.add_all([OrgUnit(code="CARDIO", name="Cardiologie", parent_id=pole.id),
                     OrgUnit(code="POLE-URG", name="Pôle urgences", kind="pole")])
    session.commit()
    session.add(OrgUnit(code="URG", name="Urgences",
                        parent_id=session.scalar(select(OrgUnit.id).where(OrgUnit.code == "POLE-URG"))))
    session.commit()

    # A: created pending on day 1 (arrives later), activated on day 3.
    clock(at(1))
    a = create_identity(session, start_date="2027-06-01", units="CARDIO", roles="ide", contract_type="permanent")
    assert a.status == "pending"
    clock(at(3))
    directory.change_status(session, a, "active", actor="test", reason="arrivée")
    session.commit()
    give_mie(session, a, "password", activated=3, clock=clock)
    give_mie(session, a, "totp", activated=5, revoked=8, proofed=True, clock=clock)
    # An enrollment case open on days 4 and 5 (cancelled on day 6).
    case = EnrollmentCase(identity_id=a.id, kind="additional_mie", state="cancelled", opened_by="test",
                          opened_at=at(4), expires_at=at(4) + dt.timedelta(days=30), closed_at=at(6))
    session.add(case)
    session.flush()
    session.add_all([EnrollmentTransition(case_id=case.id, event="open", from_state=None, to_state="opened",
                                          at=at(4), actor="test"),
                     EnrollmentTransition(case_id=case.id, event="cancel", from_state="opened", to_state="cancelled",
                                          at=at(6), actor="test")])
    # An exception for A on days 6 and 7 (09:00 on day 6 to 18:00 on day 7, Paris time).
    clock(at(6, 6))
    exceptions.grant_exception(session, POLICY, app_class="health-data", relaxation={"max_auth_age": 86400},
                               justification="Clé de sécurité en commande", identity=a, starts_at=at(6, 7),
                               ends_at=at(7, 16), actor="rssi", now=at(6, 6))
    session.commit()

    # B: an interim doctor (RPPS), created active on day 1, password only, suspended on day 9.
    clock(at(1, 11))
    b = create_identity(session, with_rpps=True, start_date="2026-09-01", units="URG", roles="medecin",
                        contract_type="interim")
    assert b.status == "active"
    give_mie(session, b, "password", activated=at(1, 12), clock=clock)
    give_mie(session, b, "webauthn", activated=at(20), attachment="cross-platform", clock=clock)  # later
    # B pairs with Pro Santé Connect on day 2; an officer ends the link on day 4; B pairs again on day 6.
    clock(at(2))
    first_link = pair(session, b, 2)
    clock(at(4))
    national.unlink(session, first_link, "agent", "Carte CPS déclarée perdue", now=at(4))
    session.commit()
    clock(at(6))
    pair(session, b, 6)
    clock(at(9))
    directory.suspend(session, b, actor="test", reason="fin de mission")
    session.commit()
    # An exception for the interim staff of the emergency unit on days 6 and 7.
    clock(at(6, 6))
    exceptions.grant_exception(session, POLICY, app_class="health-data", relaxation={"max_auth_age": 86400},
                               justification="Panne des lecteurs de cartes", population="interim", units=["URG"],
                               starts_at=at(6, 7), ends_at=at(7, 16), actor="rssi", now=at(6, 6))
    # An exception of another unit, and one of another class: they make nobody exempt.
    exceptions.grant_exception(session, POLICY, app_class="health-data", relaxation={"max_auth_age": 86400},
                               justification="Unité voisine, sans rapport", population="interim",
                               units=["CARDIO"], starts_at=at(6, 7), ends_at=at(6, 16), actor="rssi", now=at(6, 6))
    exceptions.grant_exception(session, POLICY, app_class="standard", relaxation={"max_auth_age": 86400},
                               justification="Messagerie, sans rapport", identity=b, starts_at=at(6, 7),
                               ends_at=at(6, 16), actor="rssi", now=at(6, 6))
    session.commit()
    # An emergency credential for B on day 7, used that day, reviewed on day 9.
    session.add(EmergencyCredential(identity_id=b.id, issued_by_identity_id=a.id, issued_by="test",
                                    issued_at=at(7), expires_at=at(7, 18), selector="ABCD", code_hash="h" * 64,
                                    reason="MIE oublié", used_at=at(7, 11), reviewed_at=at(9),
                                    reviewed_by_identity_id=a.id, review_comment="vu"))
    session.commit()
    # Sign-ins.
    signin(session, clock, 5, a.public_id, "dpi", ["mfa", "otp", "pwd"], "eidas2")
    signin(session, clock, 6, b.public_id, "dpi", ["pwd"], "eidas1")
    signin(session, clock, 6, b.public_id, "labo", ["pwd"], "eidas1")
    signin(session, clock, 6, b.public_id, "mail", ["pwd"], "eidas1", app_class=None)  # an older event
    signin(session, clock, 8, a.public_id, "labo", ["pwd"], "eidas1")
    clock(NOW)
    return a, b


# day: active, compliant, exempt, pending, non_compliant, proofed, password_only, rpps_linked, psc_paired, totp,
# password
EXPECTED = {
    1: (1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1),
    2: (1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1),
    3: (2, 0, 0, 0, 2, 0, 2, 1, 1, 0, 2),
    4: (2, 0, 0, 1, 1, 0, 2, 1, 0, 0, 2),
    5: (2, 1, 0, 0, 1, 1, 1, 1, 0, 1, 2),
    6: (2, 1, 1, 0, 0, 1, 1, 1, 1, 1, 2),
    7: (2, 1, 1, 0, 0, 1, 1, 1, 1, 1, 2),
    8: (2, 0, 0, 0, 2, 0, 2, 1, 1, 0, 2),
    9: (1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1),
    10: (1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1),
}
HEADS = ("active", "compliant", "exempt", "pending", "non_compliant", "proofed", "password_only", "rpps_linked",
         "psc_paired", "mie_active:totp", "mie_active:password")
# day: exceptions_active, emergency_issued, emergency_used, emergency_reviewed, emergency_unreviewed
EXPECTED_EVENTS = {1: (0, 0, 0, 0, 0), 5: (0, 0, 0, 0, 0), 6: (4, 0, 0, 0, 0), 7: (2, 1, 1, 0, 1),
                   8: (0, 0, 0, 0, 1), 9: (0, 0, 0, 1, 0), 10: (0, 0, 0, 0, 0)}
EVENT_HEADS = ("exceptions_active", "emergency_issued", "emergency_used", "emergency_reviewed",
               "emergency_unreviewed")


def test_backfill_rebuilds_the_hand_built_history(session, history):
    a, b = history
    progress: list[tuple[int, int]] = []
    report = backfill(session, POLICY, day(1), day(10), progress=lambda done, total: progress.append((done, total)),
                      now=NOW)
    session.commit()
    assert progress == [(n, 10) for n in range(1, 11)]
    assert (report.days, report.people, report.person_status_replaced) == (10, 2, True)
    for n, expected in EXPECTED.items():
        counts = stored(session, day(n))
        assert tuple(counts[(name, "all", "")] for name in HEADS) == expected, n
    for n, expected in EXPECTED_EVENTS.items():
        counts = stored(session, day(n))
        assert tuple(counts[(name, "all", "")] for name in EVENT_HEADS) == expected, n
    # Breakdowns: B counts under URG, its pôle, interim, with RPPS; A under CARDIO and POLE-MED.
    d6 = stored(session, day(6))
    assert d6[("exempt", "unit", "URG")] == 1 and d6[("exempt", "pole", "POLE-URG")] == 1
    assert d6[("exempt", "contract_type", "interim")] == 1 and d6[("exempt", "rpps", "with")] == 1
    assert d6[("compliant", "unit", "CARDIO")] == 1 and d6[("compliant", "pole", "POLE-MED")] == 1
    assert d6[("compliant", "role", "ide")] == 1 and d6[("active", "role", "medecin")] == 1
    assert d6[("active", "establishment", "750712184")] == 2
    assert d6[("psc_paired", "unit", "URG")] == d6[("psc_paired", "contract_type", "interim")] == 1
    assert d6[("psc_paired", "rpps", "with")] == 1 and d6[("psc_paired", "unit", "CARDIO")] == 0
    d4 = stored(session, day(4))
    assert d4[("pending", "unit", "CARDIO")] == 1 and d4[("pending", "unit", "URG")] == 0
    d9 = stored(session, day(9))
    assert ("active", "unit", "URG") not in d9 and d9[("active", "unit", "CARDIO")] == 1
    # Sign-ins.
    assert {k: v for k, v in stored(session, day(6)).items() if k[0].startswith("signins")} == {
        ("signins:health-data", "all", ""): 2, ("signins_acr:health-data:eidas1", "all", ""): 2,
        ("signins_password_only:health-data", "all", ""): 2,
        ("signins_password_only:health-data", "client", "dpi"): 1,
        ("signins_password_only:health-data", "client", "labo"): 1,
        ("signins:unknown", "all", ""): 1, ("signins_acr:unknown:eidas1", "all", ""): 1,
        ("signins_password_only:unknown", "all", ""): 1, ("signins_password_only:unknown", "client", "mail"): 1}
    d5 = stored(session, day(5))
    assert (d5[("signins:health-data", "all", "")], d5[("signins_mfa:health-data", "all", "")]) == (1, 1)
    assert not any(k[0].startswith("signins") for k in stored(session, day(7)))
    # The per-person table holds the last day of the range.
    rows = {r.identity_id: r for r in session.scalars(select(TrajectoryPersonStatus))}
    assert set(rows) == {a.id}
    assert (rows[a.id].day, rows[a.id].status, rows[a.id].reason, rows[a.id].mie_types) == (
        day(10), "non_compliant", "mie_single_factor", "password")
    assert (rows[a.id].units, rows[a.id].poles, rows[a.id].contract_type, rows[a.id].rpps,
            rows[a.id].psc_paired) == ("CARDIO", "POLE-MED", "permanent", False, False)
    journaled = session.scalars(select(AuditEvent).where(AuditEvent.tag == tags.TRAJECTORY_BACKFILLED)).all()
    assert len(journaled) == 1 and json.loads(journaled[0].details)["days"] == 10


def test_a_backfilled_day_equals_the_snapshot_of_that_day(session, history):
    backfill(session, POLICY, day(1), day(10), now=NOW)
    session.commit()
    backfilled = {n: stored(session, day(n)) for n in range(1, 11)}
    # The pairing's change points (linked, unlinked, linked again, identity suspended) are in the series compared.
    assert [backfilled[n][("psc_paired", "all", "")] for n in range(1, 11)] == [0, 1, 1, 0, 0, 1, 1, 1, 0, 0]
    for n in range(1, 11):
        report = take_snapshot(session, POLICY, day(n), now=NOW)
        session.commit()
        assert stored(session, day(n)) == backfilled[n], n
        assert report.rows == len(backfilled[n]) and report.active == EXPECTED[n][0]
        assert report.people == (1 if n == 10 else 0)  # only the most recent day rewrites the per-person table
    # Today: the snapshot reads the directory as it is now (no journal), the backfill its history.
    take_snapshot(session, POLICY, TODAY, now=NOW)
    session.commit()
    today = stored(session, TODAY)
    backfill(session, POLICY, TODAY, TODAY, now=NOW)
    session.commit()
    assert stored(session, TODAY) == today
    assert today[("active", "all", "")] == 1 and today[("non_compliant", "all", "")] == 1
    assert today[("mie_active:password", "all", "")] == 1


def test_taking_a_snapshot_twice_gives_the_same_rows(session, history):
    a, b = history
    first = take_snapshot(session, POLICY, TODAY, now=NOW)
    session.commit()
    rows = stored(session, TODAY)
    second = take_snapshot(session, POLICY, TODAY, now=NOW + dt.timedelta(minutes=5))
    session.commit()
    assert stored(session, TODAY) == rows and first.rows == second.rows == len(rows)
    assert session.scalar(select(func.count()).select_from(TrajectorySnapshot)) == len(rows)
    assert session.scalar(select(func.count()).select_from(TrajectoryPersonStatus)) == 1
    events = session.scalars(select(AuditEvent).where(AuditEvent.tag == tags.TRAJECTORY_SNAPSHOT_TAKEN)).all()
    assert len(events) == 2
    details = json.loads(events[-1].details)
    assert (details["day"], details["active"], details["non_compliant"], details["compliant"]) == (
        TODAY.isoformat(), 1, 1, 0)
    assert latest_day(session) == TODAY


def test_the_per_person_table_follows_the_most_recent_day(session, history, clock):
    a, b = history
    take_snapshot(session, POLICY, TODAY, now=NOW)
    session.commit()
    assert [(r.identity_id, r.status) for r in session.scalars(select(TrajectoryPersonStatus))] == [
        (a.id, "non_compliant")]
    # B comes back and gets a proofed security key; an older day's snapshot leaves the table alone…
    clock(NOW - dt.timedelta(hours=2))
    directory.reactivate(session, b, actor="test", today=TODAY)
    session.commit()
    give_mie(session, b, "webauthn", activated=NOW - dt.timedelta(hours=1), proofed=True, clock=clock)
    clock(NOW)
    take_snapshot(session, POLICY, day(6), now=NOW)
    session.commit()
    assert {r.identity_id for r in session.scalars(select(TrajectoryPersonStatus))} == {a.id}
    # … the most recent day's replaces it as a whole.
    take_snapshot(session, POLICY, TODAY, now=NOW)
    session.commit()
    rows = {r.identity_id: (r.status, r.reason, r.mie_types, r.day, r.psc_paired) for r in
            session.scalars(select(TrajectoryPersonStatus))}
    assert rows == {a.id: ("non_compliant", "mie_single_factor", "password", TODAY, False),
                    b.id: ("compliant", "", "password webauthn webauthn:cross-platform", TODAY, True)}
    counts = stored(session, TODAY)
    assert counts[("psc_paired", "all", "")] == 1  # B's link of day 6 is still live
    assert counts[("mie_active:webauthn", "all", "")] == 2  # one of them with no known attachment
    assert counts[("mie_active:webauthn:cross-platform", "all", "")] == 1


def test_facts_are_loaded_with_a_fixed_number_of_queries(rt, session, clock):
    def count_queries(as_of):
        statements: list[str] = []

        def listen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append(statement)

        event.listen(rt.db.engine, "before_cursor_execute", listen)
        try:
            people = load_people(session, as_of=as_of, policy=POLICY, now=NOW)
        finally:
            event.remove(rt.db.engine, "before_cursor_execute", listen)
        return len(people), len(statements)

    def add_people(count: int) -> None:
        for _ in range(count):
            person = create_identity(session, units="CARDIO")
            give_mie(session, person, "password", activated=at(2), clock=clock)
            give_mie(session, person, "totp", activated=at(3), revoked=4, proofed=True, clock=clock)
        clock(NOW)

    add_people(2)
    few = count_queries(None), count_queries(TODAY)
    add_people(8)
    many = count_queries(None), count_queries(TODAY)
    assert [n for n, _ in few] == [2, 2] and [n for n, _ in many] == [10, 10]
    assert [q for _, q in few] == [q for _, q in many]
