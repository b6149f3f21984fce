"""Enrollment services on a real database (SQLite, or PostgreSQL with HOSPICONNECT_TEST_DATABASE_URL):
every path and every refusal, the race on one activation code, and the journal."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.models import Mie
from hospiconnect.crypto import CROCKFORD
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import (
    CaseNotFound,
    ClosedCaseActivationCode,
    DeadActivationCode,
    DocumentRefused,
    ExpiredActivationCode,
    IdentityNotEnrollable,
    InvalidLostMie,
    MieNotInCase,
    ReplacedActivationCode,
    ReusedActivationCode,
    SeparationOfDuties,
    TransitionRefused,
    WrongActivationCode,
)
from hospiconnect.enrollment.models import ActivationCode, EnrollmentCase, EnrollmentTransition
from hospiconnect.ratelimit import DatabaseBackend, Throttle, ThrottlePolicy, Throttled
from hospiconnect.settings import Settings
from tests.factories import create_identity

T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)
TODAY = T0.date()
IP = "192.0.2.10"


@pytest.fixture()
def keys(rt):  # type: ignore[no-untyped-def]
    return rt.keys


@pytest.fixture()
def throttle() -> Throttle:
    return Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100))


@pytest.fixture()
def people(session):  # type: ignore[no-untyped-def]
    """(person, officer): two identities of the directory."""
    return create_identity(session), create_identity(session, roles="registration_officer")


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def open_verified(session, person, officer, **kwargs):  # type: ignore[no-untyped-def]
    case = enrollment.open_case(session, person, kind=kwargs.pop("kind", wf.KIND_FIRST_MIE),
                                officer_identity_id=officer.id, actor=f"officer:{officer.user_name}", now=T0,
                                **kwargs)
    enrollment.record_document_check(session, case, document_type="passport", issuing_country="FRA",
                                     expiry_date=dt.date(2031, 5, 1), last4="9K3Z", place="Guichet DSI, bât. B",
                                     checked_at=T0, officer_identity_id=officer.id, actor="officer", today=TODAY,
                                     now=T0)
    session.commit()
    return case


def issued(session, keys, person, officer):  # type: ignore[no-untyped-def]
    case = open_verified(session, person, officer)
    code = enrollment.issue_activation_code(session, keys, case, actor="officer", now=T0)
    session.commit()
    return case, code


# --- Opening ----------------------------------------------------------------------------------------------


def test_open_case_is_recorded_and_journaled(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                                actor="officer:x", now=T0)
    session.commit()
    assert case.state == wf.OPENED and case.opened_by_identity_id == officer.id
    assert case.expires_at == T0 + dt.timedelta(days=enrollment.DEFAULT_CASE_DAYS)
    [event] = journal(session, tags.ENROLLMENT_CASE_OPENED)
    assert event.subject == person.public_id and json.loads(event.details)["case"] == case.public_id
    history = session.scalars(select(EnrollmentTransition).where(EnrollmentTransition.case_id == case.id)).all()
    assert [(h.from_state, h.to_state) for h in history] == [(None, wf.OPENED)]


def test_open_case_without_officer_for_jobs(session, people) -> None:  # type: ignore[no-untyped-def]
    person, _ = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=None,
                                actor="system:hr_import")
    assert case.opened_by == "system:hr_import" and case.opened_by_identity_id is None


def test_officer_cannot_open_own_case(session, people) -> None:  # type: ignore[no-untyped-def]
    _, officer = people
    with pytest.raises(SeparationOfDuties) as info:
        enrollment.open_case(session, officer, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                             actor="officer")
    assert "sa propre identité" in info.value.message and info.value.http_status == 403
    assert session.scalar(select(func.count()).select_from(EnrollmentCase)) == 0
    [event] = journal(session, tags.ENROLLMENT_CASE_REFUSED)
    assert event.outcome == "refused" and json.loads(event.details)["reason"] == "separation_of_duties"


def test_officer_cannot_check_own_identity(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                                actor="officer", now=T0)
    session.commit()
    with pytest.raises(SeparationOfDuties):
        enrollment.record_document_check(session, case, document_type="cni", issuing_country="FRA",
                                         expiry_date=dt.date(2030, 1, 1), last4="1234", place="Guichet",
                                         checked_at=T0, officer_identity_id=person.id, actor="x", today=TODAY)
    session.refresh(case)
    assert case.state == wf.OPENED
    assert len(journal(session, tags.ENROLLMENT_IDENTITY_REFUSED)) == 1


def test_departed_identity_cannot_be_enrolled(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    person.status = "departed"
    session.commit()
    with pytest.raises(IdentityNotEnrollable):
        enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id, actor="o")


def test_unknown_kind_is_a_programming_error(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    with pytest.raises(ValueError):
        enrollment.open_case(session, person, kind="upgrade", officer_identity_id=officer.id, actor="o")


# --- Replacement after loss or theft ---------------------------------------------------------------------


def test_replacement_revokes_the_lost_mie_first(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    lost = mie_services.create_mie(session, person, "totp", actor="test", notify=False)
    mie_services.transition(session, lost, "active", actor="test")
    session.commit()
    # The lost phone is the person's only second factor: revoked all the same (allow_last).
    case = enrollment.open_case(session, person, kind=wf.KIND_REPLACEMENT, officer_identity_id=officer.id,
                                actor="officer", lost_mie=lost, now=T0)
    session.commit()
    session.refresh(lost)
    assert lost.status == "revoked" and lost.revoked_at is not None
    assert case.replaced_mie_id == lost.id
    assert len(journal(session, "mie:totp:revoked")) == 1
    assert len(journal(session, tags.ENROLLMENT_LOST_MIE_REVOKED)) == 1
    # ...and a replacement still needs a new identity check before any code.
    with pytest.raises(TransitionRefused):
        enrollment.issue_activation_code(session, None, case, actor="officer")  # type: ignore[arg-type]
    enrollment.record_document_check(session, case, document_type="cni", issuing_country="FRA",
                                     expiry_date=dt.date(2030, 1, 1), last4="1234", place="Guichet",
                                     checked_at=T0, officer_identity_id=officer.id, actor="o", today=TODAY, now=T0)
    assert case.state == wf.IDENTITY_VERIFIED


@pytest.mark.parametrize("whose", ["none", "someone_else"])
def test_replacement_needs_a_lost_mie_of_the_person(session, people, whose) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    lost = None
    if whose == "someone_else":
        lost = mie_services.create_mie(session, officer, "totp", actor="test", notify=False)
        session.commit()
    with pytest.raises(InvalidLostMie):
        enrollment.open_case(session, person, kind=wf.KIND_REPLACEMENT, officer_identity_id=officer.id,
                             actor="o", lost_mie=lost)
    if lost is not None:
        session.refresh(lost)
        assert lost.status == "pending"


# --- Identity checks ------------------------------------------------------------------------------------


def test_document_check_keeps_only_allowed_fields(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = open_verified(session, person, officer)
    assert case.state == wf.IDENTITY_VERIFIED
    assert (case.identity_check_method, case.document_type, case.document_issuing_country,
            case.document_last4, case.document_expiry_date) == ("face_to_face", "passport", "FRA", "9K3Z",
                                                                dt.date(2031, 5, 1))
    assert case.identity_check_officer_id == officer.id and case.identity_check_place == "Guichet DSI, bât. B"
    [event] = journal(session, tags.ENROLLMENT_IDENTITY_VERIFIED)
    assert "9K3Z" not in event.details  # not even the last characters go to the journal


def test_expired_document_is_refused_and_journaled(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                                actor="o", now=T0)
    session.commit()
    with pytest.raises(DocumentRefused) as info:
        enrollment.record_document_check(session, case, document_type="cni", issuing_country="FRA",
                                         expiry_date=TODAY - dt.timedelta(days=1), last4="1234", place="Guichet",
                                         checked_at=T0, officer_identity_id=officer.id, actor="o", today=TODAY)
    assert "expirée" in info.value.message
    session.rollback()
    session.refresh(case)
    assert case.state == wf.OPENED and case.document_type is None
    [event] = journal(session, tags.ENROLLMENT_IDENTITY_REFUSED)
    assert json.loads(event.details)["reason"] == "expired"


def test_document_check_needs_a_place(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                                actor="o", now=T0)
    with pytest.raises(DocumentRefused):
        enrollment.record_document_check(session, case, document_type="cni", issuing_country="FRA",
                                         expiry_date=dt.date(2030, 1, 1), last4="1234", place="  ",
                                         checked_at=T0, officer_identity_id=officer.id, actor="o", today=TODAY)


def test_second_identity_check_is_refused(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = open_verified(session, person, officer)
    with pytest.raises(TransitionRefused):
        enrollment.record_fcplus_check(session, case, matched=True, differences=[], actor="person", now=T0)


def test_fcplus_match_verifies_and_remote_issuance_activates(session, people) -> None:  # type: ignore[no-untyped-def]
    person, _ = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=None,
                                actor="system:invitation", now=T0)
    enrollment.record_fcplus_check(session, case, matched=True, differences=[], actor="person", acr="eidas2",
                                   now=T0)
    assert case.state == wf.IDENTITY_VERIFIED and case.identity_check_method == "fcplus"
    enrollment.start_remote_issuance(session, case, actor="person", now=T0)
    mie = mie_services.create_mie(session, person, "webauthn", actor="person", notify=False)
    enrollment.activate_mie(session, case, mie, actor="person", now=T0)
    session.commit()
    assert case.state == wf.ACTIVATED and mie.status == "active"
    assert mie.proofing_method == "fcplus" and mie.proofing_at == T0


def test_remote_issuance_refused_after_face_to_face(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = open_verified(session, person, officer)
    with pytest.raises(TransitionRefused):
        enrollment.start_remote_issuance(session, case, actor="person")


def test_fcplus_mismatch_rejects_with_differences(session, people) -> None:  # type: ignore[no-untyped-def]
    person, _ = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=None,
                                actor="system:invitation", now=T0)
    enrollment.record_fcplus_check(session, case, matched=False, differences=["birth_date", "birth_place"],
                                   actor="person", now=T0)
    session.commit()
    assert case.state == wf.REJECTED and case.rejection_reasons == ["birth_date", "birth_place"]
    assert case.closed_at == T0
    assert len(journal(session, tags.ENROLLMENT_IDENTITY_MISMATCH)) == 1
    assert len(journal(session, tags.ENROLLMENT_CASE_REJECTED)) == 1
    with pytest.raises(TransitionRefused) as info:
        enrollment.record_fcplus_check(session, case, matched=True, differences=[], actor="person")
    assert "clos" in info.value.message


# --- Activation codes -----------------------------------------------------------------------------------


def test_activation_code_shape_and_storage(session, keys, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    groups = code.split("-")
    assert len(groups) == 6 and all(len(g) == 4 for g in groups)
    assert all(ch in CROCKFORD for ch in "".join(groups))
    assert enrollment.SECRET_CHARS * 5 >= 100
    row = session.scalar(select(ActivationCode).where(ActivationCode.case_id == case.id))
    assert row.code_hash != code and code.replace("-", "") not in row.code_hash
    assert row.expires_at == T0 + dt.timedelta(hours=72)
    assert case.state == wf.MIE_ISSUED and case.mie_issued_at == T0
    [event] = journal(session, tags.ENROLLMENT_ACTIVATION_CODE_ISSUED)
    assert code not in event.details and code.replace("-", "")[4:] not in event.details


def test_activation_hours_setting() -> None:
    assert Settings.from_env({"HOSPICONNECT_ACTIVATION_HOURS": "24"}).activation_hours == 24
    assert Settings.from_env({}).activation_hours == 72


def test_code_needs_an_identity_check(session, keys, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                                actor="o", now=T0)
    with pytest.raises(TransitionRefused):
        enrollment.issue_activation_code(session, keys, case, actor="o")


def test_full_face_to_face_path(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    # Typed carelessly: lower case, spaces, O for 0 and l for 1 are all fine.
    typed = " ".join(code.replace("-", "").lower()).replace("0", "o").replace("1", "l")
    redeemed = enrollment.redeem_activation_code(session, keys, typed, client_ip=IP, throttle=throttle,
                                                 now=T0 + dt.timedelta(hours=1))
    session.commit()
    assert redeemed.id == case.id
    mie = mie_services.create_mie(session, person, "totp", actor="person", notify=False)
    enrollment.activate_mie(session, redeemed, mie, actor="person", now=T0 + dt.timedelta(hours=1))
    session.commit()
    assert redeemed.state == wf.ACTIVATED and redeemed.activated_mie_id == mie.id
    assert mie.status == "active" and mie.proofing_method == "face_to_face" and mie.proofing_at == T0
    assert len(journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REDEEMED)) == 1
    assert len(journal(session, tags.ENROLLMENT_CASE_ACTIVATED)) == 1
    states = session.scalars(select(EnrollmentTransition.to_state).where(EnrollmentTransition.case_id == case.id)
                             .order_by(EnrollmentTransition.id)).all()
    assert states == [wf.OPENED, wf.IDENTITY_VERIFIED, wf.MIE_ISSUED, wf.ACTIVATED]
    assert audit.verify(session).ok


def test_activation_needs_the_code_redeemed(session, keys, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, _ = issued(session, keys, person, officer)
    mie = mie_services.create_mie(session, person, "totp", actor="person", notify=False)
    with pytest.raises(TransitionRefused) as info:
        enrollment.activate_mie(session, case, mie, actor="person", now=T0)
    assert "code d'activation" in info.value.message


def test_activation_refuses_foreign_or_revoked_mie(session, keys, people, throttle):  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle, now=T0)
    session.commit()
    other = mie_services.create_mie(session, officer, "totp", actor="o", notify=False)
    with pytest.raises(MieNotInCase):
        enrollment.activate_mie(session, case, other, actor="person", now=T0)
    revoked = mie_services.create_mie(session, person, "totp", actor="o", notify=False)
    mie_services.transition(session, revoked, "revoked", actor="o")
    with pytest.raises(MieNotInCase):
        enrollment.activate_mie(session, case, revoked, actor="person", now=T0)
    assert case.state == wf.MIE_ISSUED


def test_reused_code(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    _, code = issued(session, keys, person, officer)
    enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle, now=T0)
    session.commit()
    with pytest.raises(ReusedActivationCode) as info:
        enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle, now=T0)
    assert "déjà été utilisé" in info.value.message
    [event] = journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)
    assert event.outcome == "refused" and json.loads(event.details)["reason"] == "reused"
    assert event.subject == person.public_id


def test_expired_code(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    _, code = issued(session, keys, person, officer)
    with pytest.raises(ExpiredActivationCode) as info:
        enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle,
                                          now=T0 + dt.timedelta(hours=72))
    assert "expiré" in info.value.message
    assert json.loads(journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)[0].details)["reason"] == "expired"


@pytest.mark.parametrize("typed", ["", "1234", "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ", "UUUU-" * 5 + "UUUU"])
def test_wrong_code(session, keys, people, throttle, typed) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    issued(session, keys, person, officer)
    with pytest.raises(WrongActivationCode) as info:
        enrollment.redeem_activation_code(session, keys, typed, client_ip=IP, throttle=throttle, now=T0)
    assert info.value.message.startswith("Code d'activation incorrect")
    [event] = journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)
    assert json.loads(event.details)["reason"] in ("wrong", "invalid_format")


def _mistype(code: str, n: int) -> str:
    raw = code.replace("-", "")
    last = raw[-1]
    wrong = [c for c in CROCKFORD if c != last][n % 31]
    return raw[:-1] + wrong


def test_attempt_limit_kills_the_code(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    for n in range(enrollment.MAX_CODE_ATTEMPTS):
        with pytest.raises(WrongActivationCode):
            # One IP per attempt: the per-code limit must hold without the per-IP throttle's help.
            enrollment.redeem_activation_code(session, keys, _mistype(code, n), client_ip=f"198.51.100.{n}",
                                              throttle=throttle, now=T0)
    details = json.loads(journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)[-1].details)
    assert details["failed_attempts"] == enrollment.MAX_CODE_ATTEMPTS and details["dead"] is True
    assert details["case"] == case.public_id
    with pytest.raises(DeadActivationCode) as info:
        enrollment.redeem_activation_code(session, keys, code, client_ip="203.0.113.1", throttle=throttle, now=T0)
    assert "inutilisable" in info.value.message
    session.refresh(case)
    assert case.state == wf.MIE_ISSUED
    # A new sheet from the desk works again.
    new_code = enrollment.issue_activation_code(session, keys, case, actor="o", now=T0)
    session.commit()
    assert enrollment.redeem_activation_code(session, keys, new_code, client_ip="203.0.113.1", throttle=throttle,
                                             now=T0).id == case.id


def test_wrong_codes_are_throttled_per_ip(session, keys, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    issued(session, keys, person, officer)
    strict = Throttle(DatabaseBackend(), ThrottlePolicy(free_failures=1, ip_factor=1))
    with pytest.raises(WrongActivationCode):
        enrollment.redeem_activation_code(session, keys, "ZZZZ" * 6, client_ip=IP, throttle=strict, now=T0)
    with pytest.raises(WrongActivationCode):
        enrollment.redeem_activation_code(session, keys, "ZZZZ" * 6, client_ip=IP, throttle=strict, now=T0)
    with pytest.raises(Throttled) as info:
        enrollment.redeem_activation_code(session, keys, "ZZZZ" * 6, client_ip=IP, throttle=strict, now=T0)
    assert info.value.scope == "ip"
    assert json.loads(journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)[-1].details)["reason"] == "throttled"


def test_reissue_replaces_the_previous_code(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, first = issued(session, keys, person, officer)
    second = enrollment.issue_activation_code(session, keys, case, actor="o", now=T0)
    session.commit()
    assert first != second
    with pytest.raises(ReplacedActivationCode):
        enrollment.redeem_activation_code(session, keys, first, client_ip=IP, throttle=throttle, now=T0)
    assert enrollment.redeem_activation_code(session, keys, second, client_ip=IP, throttle=throttle,
                                             now=T0).id == case.id


def test_cancelled_case_code_no_longer_works(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    enrollment.cancel_case(session, case, actor="o", reason="erreur de saisie", now=T0)
    session.commit()
    assert case.state == wf.CANCELLED and len(journal(session, tags.ENROLLMENT_CASE_CANCELLED)) == 1
    with pytest.raises(ClosedCaseActivationCode):
        enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle, now=T0)


def test_suspended_person_cannot_redeem_nor_activate(session, keys, people, throttle):  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    mie = mie_services.create_mie(session, person, "totp", actor="person", notify=False)
    person.status = "suspended"
    session.commit()
    with pytest.raises(ClosedCaseActivationCode):
        enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle, now=T0)
    assert json.loads(journal(session, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)[-1].details)["reason"] == \
        "identity_suspended"
    with pytest.raises(IdentityNotEnrollable):
        enrollment.activate_mie(session, case, mie, actor="person", now=T0)


def test_expire_cases(session, keys, people, throttle) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case, code = issued(session, keys, person, officer)
    other = enrollment.open_case(session, officer, kind=wf.KIND_FIRST_MIE, officer_identity_id=person.id,
                                 actor="o", now=T0 + dt.timedelta(days=20))
    session.commit()
    later = T0 + dt.timedelta(days=enrollment.DEFAULT_CASE_DAYS, seconds=1)
    assert enrollment.expire_cases(session, later) == 1
    session.commit()
    assert case.state == wf.EXPIRED and case.closed_at == later and other.state == wf.OPENED
    assert len(journal(session, tags.ENROLLMENT_CASE_EXPIRED)) == 1
    assert enrollment.expire_cases(session, later) == 0
    with pytest.raises(ExpiredActivationCode):
        enrollment.redeem_activation_code(session, keys, code, client_ip=IP, throttle=throttle, now=T0)


def test_get_case(session, people) -> None:  # type: ignore[no-untyped-def]
    person, officer = people
    case = enrollment.open_case(session, person, kind=wf.KIND_ADDITIONAL_MIE, officer_identity_id=officer.id,
                                actor="o")
    assert enrollment.get_case(session, case.public_id) is case
    assert enrollment.cases_of(session, person) == [case]
    with pytest.raises(CaseNotFound):
        enrollment.get_case(session, "nope")


def test_racing_redemptions_of_one_code_succeed_once(rt, keys) -> None:  # type: ignore[no-untyped-def]
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100))
    with rt.db.session() as s:
        person, officer = create_identity(s), create_identity(s)
        _, code = issued(s, keys, person, officer)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        with rt.db.sessionmaker() as s:
            barrier.wait()
            try:
                enrollment.redeem_activation_code(s, keys, code, client_ip=f"192.0.2.{n}", throttle=throttle,
                                                  now=T0)
                s.commit()
                outcomes.append("redeemed")
            except ReusedActivationCode:
                outcomes.append("reused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["redeemed", "reused", "reused", "reused"]
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ActivationCode)
                        .where(ActivationCode.used_at.is_not(None))) == 1
        assert len(journal(s, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED)) == 3
        assert audit.verify(s).ok


def test_journal_chain_verifies_after_every_path(session, keys, people, throttle):  # type: ignore[no-untyped-def]
    person, officer = people
    lost = mie_services.create_mie(session, person, "totp", actor="t", notify=False)
    session.commit()
    case = open_verified(session, person, officer, kind=wf.KIND_REPLACEMENT, lost_mie=lost)
    code = enrollment.issue_activation_code(session, keys, case, actor="o", now=T0)
    session.commit()
    for typed in (_mistype(code, 0), code, code):
        try:
            enrollment.redeem_activation_code(session, keys, typed, client_ip=IP, throttle=throttle, now=T0)
            session.commit()
        except (WrongActivationCode, ReusedActivationCode):
            pass
    mie = mie_services.create_mie(session, person, "webauthn", actor="person", notify=False)
    enrollment.activate_mie(session, case, mie, actor="person", now=T0)
    session.commit()
    assert session.get(Mie, lost.id).status == "revoked"
    report = audit.verify(session)
    assert report.ok and report.checked > 10
