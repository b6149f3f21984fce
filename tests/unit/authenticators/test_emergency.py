"""Emergency credentials (bris de glace) on a real database (SQLite, or PostgreSQL with
HOSPICONNECT_TEST_DATABASE_URL): issue and its refusals, single use under a race, wrong codes counted, expiry,
revocation, networks, review, the journal and the notifications."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators.emergency import (
    EmergencyNetworkRefused,
    EmergencyNotAllowed,
    InvalidEmergencyCode,
)
from hospiconnect.authenticators.models import EMERGENCY_MAX_ATTEMPTS, EmergencyCredential, Notification
from hospiconnect.errors import Conflict, Forbidden, ValidationError
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy, parse_policy
from hospiconnect.ratelimit import DatabaseBackend, Throttle, ThrottlePolicy, Throttled
from tests.factories import create_identity

T0 = dt.datetime(2026, 11, 27, 2, 30, tzinfo=dt.timezone.utc)  # a night shift
POLICY = load_policy(DEFAULT_POLICY_PATH)
INSIDE = "10.20.30.40"
OUTSIDE = "203.0.113.7"
REASON = "Téléphone perdu pendant la garde de nuit, service de réanimation"


@pytest.fixture()
def keys(rt):  # type: ignore[no-untyped-def]
    return rt.keys


@pytest.fixture()
def throttle() -> Throttle:
    return Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100, free_failures=100))


@pytest.fixture()
def people(session):  # type: ignore[no-untyped-def]
    """(nurse, officer, rssi)."""
    return (create_identity(session), create_identity(session, roles="emergency_officer|ide"),
            create_identity(session, roles="rssi"))


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def credentials(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(EmergencyCredential))


def issue(session, keys, person, officer, policy=POLICY, **kw):  # type: ignore[no-untyped-def]
    values = dict(reason=REASON, actor=f"officer:{officer.user_name}", now=T0)
    values.update(kw)
    row, code = emergency.issue_emergency_credential(session, keys, policy, identity=person, officer=officer,
                                                     **values)
    session.commit()
    return row, code


def redeem(session, keys, throttle, person, code, ip=INSIDE, **kw):  # type: ignore[no-untyped-def]
    values = dict(user_name=person.user_name, code=code, client_ip=ip, throttle=throttle, policy=POLICY, now=T0)
    values.update(kw)
    return emergency.redeem_emergency_credential(session, keys, **values)


def refusals(session) -> list[str]:  # type: ignore[no-untyped-def]
    return [json.loads(e.details)["reason"] for e in journal(session, tags.AUTHN_EMERGENCY_REFUSED)]


# -- issue ----------------------------------------------------------------------------------------------------------

def test_issue_stores_only_a_keyed_hash_journals_and_notifies(session, keys, people):
    nurse, officer, _ = people
    row, code = issue(session, keys, nurse, officer)
    groups = code.split("-")
    assert len(groups) == 5 and all(len(g) == 4 for g in groups)  # 20 characters: 80 secret bits + selector
    assert row.selector == groups[0] and code.replace("-", "") not in row.code_hash
    assert (row.identity_id, row.issued_by_identity_id, row.reason) == (nurse.id, officer.id, REASON)
    assert row.expires_at == T0 + dt.timedelta(hours=8) and row.state(T0) == "live"
    assert row.networks == ["internal"] and "10.0.0.0/8" in row.cidrs
    [event] = journal(session, tags.EMERGENCY_ISSUED)
    details = json.loads(event.details)
    assert (event.subject, details["officer"], details["classes"]) == (nurse.public_id, officer.public_id,
                                                                       ["health-data"])
    assert code not in event.details and code.replace("-", "") not in event.details
    [mail] = session.scalars(select(Notification).where(Notification.identity_id == nurse.id)).all()
    assert "accès d'urgence" in mail.subject and officer.display_name in mail.body
    assert code not in mail.body and code.replace("-", "") not in mail.body


def test_issue_options_hours_and_networks(session, keys, people):
    nurse, officer, _ = people
    row, _ = issue(session, keys, nurse, officer, hours=2, max_hours=8, networks=["192.0.2.0/24", "internal"])
    assert row.expires_at == T0 + dt.timedelta(hours=2)
    assert row.networks == ["192.0.2.0/24", "internal"] and "192.0.2.0/24" in row.cidrs


@pytest.mark.parametrize("kw,field", [
    ({"reason": ""}, "reason"),
    ({"reason": "perdu"}, "reason"),
    ({"hours": 9, "max_hours": 8}, "hours"),
    ({"hours": 0}, "hours"),
    ({"networks": ["pharmacie"]}, "networks"),
    ({"networks": ["any"]}, "networks"),
])
def test_bad_input_changes_nothing(session, keys, people, kw, field):
    nurse, officer, _ = people
    with pytest.raises(ValidationError) as info:
        issue(session, keys, nurse, officer, **kw)
    session.rollback()
    assert info.value.field == field and info.value.message
    assert credentials(session) == 0 and journal(session, tags.EMERGENCY_ISSUED) == []


def test_a_policy_without_emergency_class_or_default_network_refuses(session, keys, people):
    nurse, officer, _ = people
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    none = parse_policy(text.replace("    emergency: true\n", ""), "sans-urgence.yaml")
    with pytest.raises(ValidationError) as info:
        issue(session, keys, nurse, officer, policy=none)
    assert set(info.value.errors) == {"policy"}
    no_internal = parse_policy(text.replace("internal", "lan"), "lan.yaml")
    with pytest.raises(ValidationError) as info:
        issue(session, keys, nurse, officer, policy=no_internal)
    assert set(info.value.errors) == {"networks"}
    assert issue(session, keys, nurse, officer, policy=no_internal, networks=["lan"])[0].networks == ["lan"]


def test_an_officer_cannot_issue_to_themselves(session, keys, people):
    _, officer, _ = people
    with pytest.raises(Forbidden, match="lui-même"):
        issue(session, keys, officer, officer)
    assert credentials(session) == 0
    [event] = journal(session, tags.EMERGENCY_REFUSED)  # committed before raising
    assert json.loads(event.details)["reason"] == "self_issue" and event.outcome == "refused"


def test_only_an_active_officer_with_the_role_may_issue(session, keys, people):
    nurse, officer, rssi = people
    with pytest.raises(Forbidden, match="emergency_officer"):
        issue(session, keys, nurse, rssi)
    officer.status = "suspended"
    session.commit()
    with pytest.raises(Forbidden):
        issue(session, keys, nurse, officer)
    assert credentials(session) == 0
    assert [json.loads(e.details)["reason"] for e in journal(session, tags.EMERGENCY_REFUSED)] == [
        "not_officer", "officer_inactive"]


def test_the_person_must_be_active(session, keys, people):
    nurse, officer, _ = people
    nurse.status = "suspended"
    session.commit()
    with pytest.raises(Conflict):
        issue(session, keys, nurse, officer)
    assert credentials(session) == 0
    assert json.loads(journal(session, tags.EMERGENCY_REFUSED)[0].details)["reason"] == "identity_suspended"


def test_a_new_credential_replaces_the_live_one(session, keys, people, throttle):
    nurse, officer, _ = people
    first, first_code = issue(session, keys, nurse, officer)
    second, second_code = issue(session, keys, nurse, officer, now=T0 + dt.timedelta(minutes=10))
    session.refresh(first)
    assert first.state(T0) == "revoked" and second.state(T0) == "live"
    assert json.loads(journal(session, tags.EMERGENCY_ISSUED)[1].details)["replaced"] == [first.public_id]
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, nurse, first_code)
    assert redeem(session, keys, throttle, nurse, second_code).credential_id == second.public_id


# -- use ------------------------------------------------------------------------------------------------------------

def test_redeem_gives_one_factor_journals_and_notifies(session, keys, people, throttle):
    nurse, officer, _ = people
    row, code = issue(session, keys, nurse, officer)
    use = redeem(session, keys, throttle, nurse, code.lower().replace("-", " "), now=T0 + dt.timedelta(hours=1))
    session.commit()
    assert (use.amr, use.acr, use.classes) == (("emergency",), "eidas1", ("health-data",))
    assert "mfa" not in use.amr
    assert (use.identity_public_id, use.issued_by, use.session_until) == (nurse.public_id, officer.public_id,
                                                                         row.expires_at)
    session.refresh(row)
    assert (row.used_at, row.used_from_ip, row.state(T0)) == (T0 + dt.timedelta(hours=1), INSIDE, "used")
    [event] = journal(session, tags.AUTHN_EMERGENCY_USED)
    details = json.loads(event.details)
    assert (event.subject, event.client_ip, details["amr"], details["acr"]) == (nurse.public_id, INSIDE,
                                                                               ["emergency"], "eidas1")
    mails = session.scalars(select(Notification).where(Notification.identity_id == nurse.id)
                            .order_by(Notification.id)).all()
    assert "utilisé" in mails[-1].subject and code not in mails[-1].body


def test_with_the_password_the_amr_says_so_but_never_mfa(session, keys, people, throttle):
    nurse, officer, _ = people
    _, code = issue(session, keys, nurse, officer)
    use = redeem(session, keys, throttle, nurse, code, with_password=True)
    assert use.amr == ("emergency", "pwd") and use.acr == "eidas1"


def test_a_code_is_used_once(session, keys, people, throttle):
    nurse, officer, _ = people
    _, code = issue(session, keys, nurse, officer)
    redeem(session, keys, throttle, nurse, code)
    session.commit()
    with pytest.raises(InvalidEmergencyCode) as info:
        redeem(session, keys, throttle, nurse, code)
    assert info.value.message == "Code d'accès d'urgence incorrect, expiré ou déjà utilisé."
    assert refusals(session) == ["reused"]


def test_wrong_codes_are_counted_and_kill_the_credential(session, keys, people, throttle):
    nurse, officer, _ = people
    row, code = issue(session, keys, nurse, officer)
    wrong = ("0" if code[5] != "0" else "1").join([code[:5], code[6:]])
    for n in range(1, EMERGENCY_MAX_ATTEMPTS + 1):
        with pytest.raises(InvalidEmergencyCode):
            redeem(session, keys, throttle, nurse, wrong)
        session.refresh(row)
        assert row.failed_attempts == n
    assert row.state(T0) == "dead"
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, nurse, code)
    assert refusals(session) == ["wrong"] * EMERGENCY_MAX_ATTEMPTS + ["dead"]
    last_wrong = json.loads(journal(session, tags.AUTHN_EMERGENCY_REFUSED)[EMERGENCY_MAX_ATTEMPTS - 1].details)
    assert last_wrong["counted_on"] == {row.public_id: EMERGENCY_MAX_ATTEMPTS}


def test_the_code_is_bound_to_its_person(session, keys, people, throttle):
    nurse, officer, rssi = people
    row, code = issue(session, keys, nurse, officer)
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, rssi, code)
    with pytest.raises(InvalidEmergencyCode) as unknown:
        redeem(session, keys, throttle, nurse, code, user_name="personne.inconnue")
    assert unknown.value.message == InvalidEmergencyCode().message  # no enumeration
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, nurse, "pas un code")
    assert refusals(session) == ["wrong", "unknown_user", "invalid_format"]
    session.refresh(row)
    # The right code under another name counts against that person's credentials (none), not this one; an
    # unknown name or a malformed code counts against the throttle only.
    assert row.failed_attempts == 0
    assert redeem(session, keys, throttle, nurse, code).user_name == nurse.user_name


def test_expired_and_revoked_codes_are_refused(session, keys, people, throttle):
    nurse, officer, _ = people
    _, code = issue(session, keys, nurse, officer, hours=1)
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, nurse, code, now=T0 + dt.timedelta(hours=1))
    row, code = issue(session, keys, nurse, officer, now=T0 + dt.timedelta(hours=2))
    with pytest.raises(ValidationError):
        emergency.revoke(session, row.public_id, actor="rssi", reason="")
    emergency.revoke(session, row.public_id, actor="rssi", reason="MIE retrouvé", now=T0 + dt.timedelta(hours=3))
    session.commit()
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, nurse, code, now=T0 + dt.timedelta(hours=4))
    with pytest.raises(Conflict, match="révoqué"):
        emergency.revoke(session, row.public_id, actor="rssi", reason="encore", now=T0 + dt.timedelta(hours=4))
    assert refusals(session) == ["expired", "revoked"]
    assert json.loads(journal(session, tags.EMERGENCY_REVOKED)[0].details)["reason"] == "MIE retrouvé"


def test_outside_its_networks_the_code_is_refused_and_stays_usable(session, keys, people, throttle):
    nurse, officer, _ = people
    _, code = issue(session, keys, nurse, officer)
    for ip in (OUTSIDE, None, "pas une adresse"):
        with pytest.raises(EmergencyNetworkRefused):
            redeem(session, keys, throttle, nurse, code, ip=ip)
    assert refusals(session) == ["network_refused", "network_unknown", "network_unknown"]
    assert redeem(session, keys, throttle, nurse, code, ip="::ffff:10.1.2.3").acr == "eidas1"


def test_a_person_suspended_meanwhile_cannot_use_it(session, keys, people, throttle):
    nurse, officer, _ = people
    _, code = issue(session, keys, nurse, officer)
    nurse.status = "suspended"
    session.commit()
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, throttle, nurse, code)
    assert refusals(session) == ["identity_suspended"]


def test_a_policy_that_no_longer_allows_emergency_refuses_without_burning(session, keys, people,
                                                                           throttle):
    nurse, officer, _ = people
    _, code = issue(session, keys, nurse, officer)
    none = parse_policy(DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace("    emergency: true\n", ""), "x")
    with pytest.raises(EmergencyNotAllowed):
        redeem(session, keys, throttle, nurse, code, policy=none)
    assert redeem(session, keys, throttle, nurse, code).amr == ("emergency",)


def test_attempts_are_throttled(session, keys, people):
    nurse, officer, _ = people
    strict = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=3, free_failures=0))
    _, code = issue(session, keys, nurse, officer)
    with pytest.raises(InvalidEmergencyCode):
        redeem(session, keys, strict, nurse, "0000-0000-0000-0000-0000")
    with pytest.raises(Throttled):
        redeem(session, keys, strict, nurse, "0000-0000-0000-0000-0001", now=T0 + dt.timedelta(milliseconds=10))
    assert refusals(session) == ["wrong", "throttled"]


def test_racing_uses_of_one_code_succeed_once(rt, keys):
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100, free_failures=100))
    with rt.db.session() as s:
        nurse, officer = create_identity(s), create_identity(s, roles="emergency_officer")
        row, code = issue(s, rt.keys, nurse, officer)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        with rt.db.sessionmaker() as s:
            barrier.wait()
            try:
                redeem(s, keys, throttle, nurse, code, ip=f"10.0.0.{n + 1}")
                s.commit()
                outcomes.append("used")
            except InvalidEmergencyCode:
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused", "refused", "refused", "used"]
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(EmergencyCredential)
                        .where(EmergencyCredential.used_at.is_not(None))) == 1
        assert len(journal(s, tags.AUTHN_EMERGENCY_USED)) == 1
        assert refusals(s) == ["reused"] * 3
        assert audit.verify(s).ok


# -- review ---------------------------------------------------------------------------------------------------------

def test_review_needs_a_comment_a_third_person_and_a_closed_credential(session, keys, people,
                                                                       throttle):
    nurse, officer, rssi = people
    row, code = issue(session, keys, nurse, officer)
    assert emergency.list_for_review(session) == [row]
    with pytest.raises(ValidationError, match="commentaire"):
        emergency.acknowledge(session, row.public_id, reviewer=rssi, comment="  ", actor="rssi", now=T0)
    with pytest.raises(Conflict, match="encore utilisable"):
        emergency.acknowledge(session, row.public_id, reviewer=rssi, comment="vu, ok", actor="rssi", now=T0)
    redeem(session, keys, throttle, nurse, code)
    session.commit()
    for involved in (nurse, officer):
        with pytest.raises(Forbidden):
            emergency.acknowledge(session, row.public_id, reviewer=involved, comment="vu, rien à signaler",
                                  actor="x", now=T0)
    assert [json.loads(e.details)["reason"] for e in journal(session, tags.EMERGENCY_REFUSED)] == [
        "reviewer_involved"] * 2
    later = T0 + dt.timedelta(days=1)
    emergency.acknowledge(session, row.public_id, reviewer=rssi, comment="Appel du cadre de nuit confirmé",
                          actor="rssi", now=later)
    session.commit()
    assert (row.reviewed_at, row.reviewed_by_identity_id, row.review_comment) == (
        later, rssi.id, "Appel du cadre de nuit confirmé")
    assert emergency.list_for_review(session) == [] and emergency.list_for_review(session, reviewed=True) == [row]
    [event] = journal(session, tags.EMERGENCY_REVIEWED)
    assert json.loads(event.details)["comment"] == "Appel du cadre de nuit confirmé"
    with pytest.raises(Conflict, match="déjà été examiné"):
        emergency.acknowledge(session, row.public_id, reviewer=rssi, comment="encore", actor="rssi", now=later)
    data = emergency.credential_as_dict(session, row, as_of=later)
    assert data["state"] == "used" and data["reviewer"]["id"] == rssi.public_id and "code" not in data
    assert emergency.list_for_review(session, reviewed=None) == [row]


def test_an_unused_credential_is_reviewed_once_expired(session, keys, people):
    nurse, officer, rssi = people
    row, _ = issue(session, keys, nurse, officer, hours=1)
    emergency.acknowledge(session, row.public_id, reviewer=rssi, comment="non utilisé", actor="rssi",
                          now=T0 + dt.timedelta(hours=2))
    assert row.state(T0 + dt.timedelta(hours=2)) == "expired" and row.reviewed_at is not None
    with pytest.raises(emergency.EmergencyCredentialNotFound):
        emergency.acknowledge(session, "inconnu", reviewer=rssi, comment="vu, ok", actor="rssi")
