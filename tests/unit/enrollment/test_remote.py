"""Remote enrollment services (invitation, FranceConnect+ transaction, outcome) on a real database (SQLite, or
PostgreSQL with HOSPICONNECT_TEST_DATABASE_URL): every refusal, the single-use transaction under a race, the
browser binding, the matching outcome and the journal."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Notification
from hospiconnect.authenticators.notifications import readable_body
from hospiconnect.directory import services as directory
from hospiconnect.enrollment import fcplus, remote
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import (
    ClosedCaseInvitation,
    ExpiredInvitation,
    InvitationNotSent,
    ReplacedInvitation,
    UnknownInvitation,
    UsedInvitation,
)
from hospiconnect.enrollment.models import EnrollmentCase, FcPlusTransaction, Invitation
from hospiconnect.settings import Settings
from tests.factories import create_identity

T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)
IP = "192.0.2.20"
BROWSER = "b" * 43
OTHER_BROWSER = "o" * 43
ISSUER = "https://fcp.example/api/v2"
CONFIG = fcplus.FcPlusConfig(discovery_url=f"{ISSUER}/.well-known/openid-configuration", client_id="client",
                             client_secret="secret", redirect_uri="http://localhost/activation/franceconnect/retour")
DISCOVERY = fcplus.Discovery(issuer=ISSUER, authorization_endpoint=f"{ISSUER}/authorize",
                             token_endpoint=f"{ISSUER}/token", userinfo_endpoint=f"{ISSUER}/userinfo",
                             jwks_uri=f"{ISSUER}/jwks", end_session_endpoint=f"{ISSUER}/session/end")
CLAIMS = {"given_name": "Camille Solène Anne", "family_name": "DELAVERGNE", "birthdate": "1988-04-12",
          "gender": "female", "birthplace": "45234", "birthcountry": "99100", "preferred_username": "MARCHETTI",
          "email": "camille@courriel.example"}


@pytest.fixture()
def keys(rt):  # type: ignore[no-untyped-def]
    return rt.keys


@pytest.fixture()
def person(session):  # type: ignore[no-untyped-def]
    return create_identity(session, birth_family_name="Delavergne", given_names="Camille Solène",
                           birth_date="1988-04-12", birth_place="45234", birth_country="99100", gender="F",
                           email="camille.delavergne@chu-exemple.fr")


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def details(event: AuditEvent) -> dict:  # type: ignore[type-arg]
    return json.loads(event.details)


def open_case(session, person, *, now: dt.datetime = T0,  # type: ignore[no-untyped-def]
              case_days: int = 30) -> EnrollmentCase:
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=None, actor="cli",
                                now=now, case_days=case_days)
    session.commit()
    return case


def invite(session, keys, settings, case, *,  # type: ignore[no-untyped-def]
           now: dt.datetime = T0) -> tuple[Invitation, str]:
    invitation, url = remote.send_invitation(session, keys, settings, case, actor="officer:agent", client_ip=IP,
                                             now=now)
    session.commit()
    return invitation, url.rsplit("/", 1)[1]


def begin(session, keys, token, *, browser: str = BROWSER,  # type: ignore[no-untyped-def]
          now: dt.datetime = T0) -> str:
    url = remote.begin_fcplus(session, keys, CONFIG, DISCOVERY, token, browser_secret=browser, client_ip=IP, now=now)
    session.commit()
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["state"]


def verified(claims: dict[str, str] | None = None, sub: str = "a" * 64) -> fcplus.VerifiedIdentity:
    return fcplus.VerifiedIdentity(issuer=ISSUER, sub=sub, acr="eidas2", amr=["pwd", "mail"],
                                   claims={"sub": sub, **(claims or CLAIMS)}, id_token_claims={"sub": sub},
                                   id_token="x.y.z.w.v")


# --- sending --------------------------------------------------------------------------------------------


def test_invitation_is_stored_hashed_mailed_and_journaled(session, keys, settings,  # type: ignore[no-untyped-def]
                                                          person) -> None:
    case = open_case(session, person)
    invitation, url = remote.send_invitation(session, keys, settings, case, actor="officer:agent", client_ip=IP,
                                             now=T0)
    session.commit()
    token = url.rsplit("/", 1)[1]
    assert url == f"http://localhost/activation/invitation/{token}" and remote.TOKEN_RE.fullmatch(token)
    assert invitation.token_hash != token and token not in invitation.token_hash
    assert invitation.email == "camille.delavergne@chu-exemple.fr" and invitation.sent_by == "officer:agent"
    assert invitation.expires_at == T0 + dt.timedelta(days=settings.invitation_days)
    [mail] = session.scalars(select(Notification)).all()
    assert url not in mail.body  # the personal link is encrypted at rest
    body = readable_body(mail, keys)
    assert mail.recipient == person.email and url in body
    assert body.startswith("Bonjour Camille,") and "FranceConnect+" in body
    assert "04/12/2026" in body  # the deadline, in the establishment's time zone
    assert "guichet d'enrôlement" in body
    [event] = journal(session, tags.ENROLLMENT_INVITATION_SENT)
    assert event.subject == person.public_id and event.client_ip == IP
    assert details(event)["case"] == case.public_id and details(event)["replaced"] == 0
    assert token not in event.details


def test_invitation_expiry_never_outlives_the_case(session, keys, settings,  # type: ignore[no-untyped-def]
                                                   person) -> None:
    case = open_case(session, person, case_days=2)
    invitation, _ = invite(session, keys, settings, case)
    assert invitation.expires_at == case.expires_at == T0 + dt.timedelta(days=2)


def test_a_new_invitation_replaces_the_previous_one(session, keys, settings,  # type: ignore[no-untyped-def]
                                                    person) -> None:
    case = open_case(session, person)
    first, old_token = invite(session, keys, settings, case)
    second, new_token = invite(session, keys, settings, case, now=T0 + dt.timedelta(hours=1))
    session.refresh(first)
    assert first.revoked_at is not None and second.revoked_at is None
    assert details(journal(session, tags.ENROLLMENT_INVITATION_SENT)[-1])["replaced"] == 1
    with pytest.raises(ReplacedInvitation):
        remote.find_invitation(session, keys, old_token, now=T0 + dt.timedelta(hours=2))
    found, found_case = remote.find_invitation(session, keys, new_token, now=T0 + dt.timedelta(hours=2))
    assert found.id == second.id and found_case.id == case.id


def _assert_not_sent(rt, session, reason: str) -> None:  # type: ignore[no-untyped-def]
    with rt.db.session() as fresh:  # the refusal was committed
        [event] = journal(fresh, tags.ENROLLMENT_INVITATION_NOT_SENT)
        assert event.outcome == "refused" and details(event)["reason"] == reason
        assert fresh.scalar(select(func.count()).select_from(Invitation)) == 0
        assert fresh.scalar(select(func.count()).select_from(Notification)) == 0


def test_no_invitation_without_professional_email(rt, session, keys, settings) -> None:  # type: ignore[no-untyped-def]
    person = create_identity(session, email="")
    case = open_case(session, person)
    with pytest.raises(InvitationNotSent) as info:
        remote.send_invitation(session, keys, settings, case, actor="officer:agent", now=T0)
    assert "adresse e-mail professionnelle" in info.value.message
    _assert_not_sent(rt, session, "no_email")


def test_no_invitation_once_the_identity_is_checked(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                    person) -> None:
    officer = create_identity(session)
    case = open_case(session, person)
    enrollment.record_document_check(session, case, document_type="passport", issuing_country="FRA",
                                     expiry_date=dt.date(2031, 1, 1), last4="1234", place="Guichet",
                                     checked_at=T0, officer_identity_id=officer.id, actor="officer",
                                     today=T0.date(), now=T0)
    session.commit()
    with pytest.raises(InvitationNotSent) as info:
        remote.send_invitation(session, keys, settings, case, actor="officer:agent", now=T0)
    assert info.value.reason == "not_opened"
    _assert_not_sent(rt, session, "not_opened")


def test_no_invitation_for_an_expired_case(rt, session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case = open_case(session, person, case_days=1)
    with pytest.raises(InvitationNotSent):
        remote.send_invitation(session, keys, settings, case, actor="officer:agent", now=T0 + dt.timedelta(days=2))
    _assert_not_sent(rt, session, "case_expired")


def test_no_invitation_for_a_suspended_identity(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                person) -> None:
    case = open_case(session, person)
    directory.suspend(session, person, reason="enquête", actor="test")
    session.commit()
    with pytest.raises(InvitationNotSent):
        remote.send_invitation(session, keys, settings, case, actor="officer:agent", now=T0)
    _assert_not_sent(rt, session, "identity_suspended")


def test_no_invitation_when_franceconnect_is_not_configured(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                            person) -> None:
    production = Settings(**{**settings.__dict__, "env": "production", "fcplus_discovery_url": ""})
    assert not production.fcplus_enabled
    case = open_case(session, person)
    with pytest.raises(InvitationNotSent):
        remote.send_invitation(session, keys, production, case, actor="officer:agent", now=T0)
    _assert_not_sent(rt, session, "fcplus_disabled")


# --- opening the link -----------------------------------------------------------------------------------


def _refusal(rt, reason: str) -> AuditEvent:  # type: ignore[no-untyped-def]
    with rt.db.session() as fresh:  # committed with the refusal
        event = journal(fresh, tags.ENROLLMENT_INVITATION_REFUSED)[-1]
        assert event.outcome == "refused" and details(event)["reason"] == reason
        return event


@pytest.mark.parametrize("token", ["A" * 43, "court", "A" * 5000, "../../etc/passwd" + "A" * 27, None, 42])
def test_unknown_or_malformed_tokens_are_refused(rt, session, keys, token) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownInvitation) as info:
        remote.find_invitation(session, keys, token, client_ip=IP, now=T0)
    assert info.value.http_status == 404 and "n'est pas valable" in info.value.message
    event = _refusal(rt, "unknown" if token == "A" * 43 else "malformed")
    assert event.subject is None and event.client_ip == IP


def test_expired_invitation_is_refused(rt, session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case = open_case(session, person)
    invitation, token = invite(session, keys, settings, case)
    with pytest.raises(ExpiredInvitation) as info:
        remote.find_invitation(session, keys, token, now=invitation.expires_at)
    assert "a expiré" in info.value.message
    assert _refusal(rt, "expired").subject == person.public_id


def test_invitation_of_an_expired_case_is_refused(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                  person) -> None:
    case = open_case(session, person, case_days=2)
    _invitation, token = invite(session, keys, settings, case)
    assert enrollment.expire_cases(session, T0 + dt.timedelta(days=3)) == 1
    session.commit()
    with pytest.raises(ExpiredInvitation):
        remote.find_invitation(session, keys, token, now=T0 + dt.timedelta(days=3))
    _refusal(rt, "case_expired")


def test_invitation_of_a_cancelled_case_is_refused(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                   person) -> None:
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    enrollment.cancel_case(session, case, actor="officer", now=T0)
    session.commit()
    with pytest.raises(ClosedCaseInvitation) as info:
        remote.find_invitation(session, keys, token, now=T0)
    assert "clos" in info.value.message
    _refusal(rt, "case_cancelled")


def test_invitation_of_a_departed_person_is_refused(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                    person) -> None:
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    directory.suspend(session, person, reason="enquête", actor="test")
    session.commit()
    with pytest.raises(ClosedCaseInvitation):
        remote.find_invitation(session, keys, token, now=T0)
    _refusal(rt, "identity_suspended")


def test_opening_is_recorded_once(session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case = open_case(session, person)
    invitation, token = invite(session, keys, settings, case)
    for minutes in (1, 2):
        remote.find_invitation(session, keys, token, now=T0 + dt.timedelta(minutes=minutes), mark_opened=True)
        session.commit()
    session.refresh(invitation)
    assert invitation.opened_at == T0 + dt.timedelta(minutes=1)
    assert len(journal(session, tags.ENROLLMENT_INVITATION_OPENED)) == 1


# --- the transaction ------------------------------------------------------------------------------------


def test_begin_stores_only_hashes_and_journals(session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case = open_case(session, person)
    invitation, token = invite(session, keys, settings, case)
    url = remote.begin_fcplus(session, keys, CONFIG, DISCOVERY, token, browser_secret=BROWSER, client_ip=IP, now=T0)
    session.commit()
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert url.startswith(f"{ISSUER}/authorize?") and params["acr_values"] == "eidas2"
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    [row] = session.scalars(select(FcPlusTransaction)).all()
    assert row.state_hash != params["state"] and params["state"] not in row.state_hash
    assert BROWSER not in row.browser_hash and row.nonce == params["nonce"]
    assert (row.case_id, row.invitation_id, row.issuer) == (case.id, invitation.id, ISSUER)
    assert row.expires_at == T0 + CONFIG.transaction_max_age
    [event] = journal(session, tags.ENROLLMENT_FCPLUS_STARTED)
    assert details(event)["case"] == case.public_id and params["state"] not in event.details
    session.refresh(invitation)
    assert invitation.opened_at == T0


def test_begin_again_in_the_same_browser_replaces_the_pending_request(session, keys,  # type: ignore[no-untyped-def]
                                                                      settings, person) -> None:
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    first = begin(session, keys, token)
    second = begin(session, keys, token)
    begin(session, keys, token, browser=OTHER_BROWSER)
    assert session.scalar(select(func.count()).select_from(FcPlusTransaction)) == 2
    with pytest.raises(fcplus.StateMismatch):
        remote.consume_transaction(session, keys, first, BROWSER, now=T0)
    assert remote.consume_transaction(session, keys, second, BROWSER, now=T0).case_id == case.id


def test_begin_refuses_a_dead_invitation(session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case = open_case(session, person)
    invitation, token = invite(session, keys, settings, case)
    with pytest.raises(ExpiredInvitation):
        begin(session, keys, token, now=invitation.expires_at + dt.timedelta(seconds=1))
    assert session.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0


def test_consume_is_single_use(rt, session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case = open_case(session, person)
    invitation, token = invite(session, keys, settings, case)
    state = begin(session, keys, token)
    pending = remote.consume_transaction(session, keys, state, BROWSER, client_ip=IP, now=T0)
    session.commit()
    assert (pending.case_id, pending.invitation_id) == (case.id, invitation.id)
    assert pending.transaction.state == state and pending.transaction.issuer == ISSUER
    assert pending.transaction.created_at == T0
    assert session.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0
    with pytest.raises(fcplus.StateMismatch) as info:
        remote.consume_transaction(session, keys, state, BROWSER, client_ip=IP, now=T0)
    assert not isinstance(info.value, remote.ForeignBrowser)
    with rt.db.session() as fresh:
        [event] = journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)
        assert details(event)["error"] == "StateMismatch" and details(event)["reason"] == "unknown_state"
        assert event.outcome == "failure" and state not in event.details


def test_consume_refuses_another_browser_and_keeps_the_transaction(rt, session, keys,  # type: ignore[no-untyped-def]
                                                                   settings, person) -> None:
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    state = begin(session, keys, token)
    for secret in (OTHER_BROWSER, None, "", "short", 12):
        with pytest.raises(remote.ForeignBrowser) as info:
            remote.consume_transaction(session, keys, state, secret, client_ip=IP, now=T0)
        assert "autre navigateur" in info.value.message
    with rt.db.session() as fresh:
        events = journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)
        assert [details(e)["reason"] for e in events] == ["foreign_browser"] * 5
        assert events[0].subject == person.public_id
    # The browser that started the check can still finish it.
    assert remote.consume_transaction(session, keys, state, BROWSER, now=T0).case_id == case.id


@pytest.mark.parametrize("state", [None, "", "x" * 300, 7, "inconnu" * 10])
def test_consume_refuses_malformed_or_unknown_state(rt, session, keys, state) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(fcplus.StateMismatch):
        remote.consume_transaction(session, keys, state, BROWSER, now=T0)
    with rt.db.session() as fresh:
        assert details(journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)[-1])["reason"] == "unknown_state"


def test_consume_refuses_and_spends_an_expired_transaction(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                           person) -> None:
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    state = begin(session, keys, token)
    late = T0 + CONFIG.transaction_max_age
    with pytest.raises(fcplus.TransactionExpired):
        remote.consume_transaction(session, keys, state, BROWSER, now=late)
    with rt.db.session() as fresh:
        assert fresh.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0
        assert details(journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)[-1])["reason"] == "expired"


def test_racing_callbacks_consume_the_transaction_once(rt, keys, settings) -> None:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        person = create_identity(s, email="course@chu-exemple.fr")
        case = open_case(s, person)
        _invitation, token = invite(s, keys, settings, case)
        state = begin(s, keys, token)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt() -> None:
        with rt.db.sessionmaker() as s:
            barrier.wait()
            try:
                remote.consume_transaction(s, keys, state, BROWSER, now=T0)
                s.commit()
                outcomes.append("won")
            except fcplus.StateMismatch:
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0
        reasons = sorted(details(e)["reason"] for e in journal(s, tags.ENROLLMENT_FCPLUS_FAILED))
        assert len(reasons) == 3 and set(reasons) <= {"replayed", "unknown_state"}
        assert audit.verify(s).ok


def test_losing_the_delete_is_a_replay(rt, session, keys, settings, person,  # type: ignore[no-untyped-def]
                                       monkeypatch) -> None:
    """Another callback takes the transaction between our read and our DELETE: the row count says so."""
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    state = begin(session, keys, token)
    expunge = session.expunge

    def read_then_overtaken(obj: object) -> None:
        expunge(obj)
        with rt.db.session() as other:
            remote.consume_transaction(other, keys, state, BROWSER, now=T0)

    monkeypatch.setattr(session, "expunge", read_then_overtaken)
    with pytest.raises(fcplus.StateMismatch):
        remote.consume_transaction(session, keys, state, BROWSER, now=T0)
    with rt.db.session() as fresh:
        assert fresh.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0
        assert details(journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)[-1])["reason"] == "replayed"


def test_purge_removes_only_expired_transactions(session, keys, settings,  # type: ignore[no-untyped-def]
                                                 person) -> None:
    case = open_case(session, person)
    _invitation, token = invite(session, keys, settings, case)
    begin(session, keys, token)
    begin(session, keys, token, browser=OTHER_BROWSER, now=T0 + dt.timedelta(minutes=5))
    assert remote.purge_expired_transactions(session, T0 + CONFIG.transaction_max_age) == 1
    session.commit()
    assert remote.purge_expired_transactions(session, T0 + CONFIG.transaction_max_age) == 0
    assert session.scalar(select(func.count()).select_from(FcPlusTransaction)) == 1


# --- the outcome ----------------------------------------------------------------------------------------


def _pending(session, keys, settings, person):  # type: ignore[no-untyped-def]
    case = open_case(session, person)
    invitation, token = invite(session, keys, settings, case)
    state = begin(session, keys, token)
    pending = remote.consume_transaction(session, keys, state, BROWSER, now=T0)
    session.commit()
    return case, invitation, token, pending


def test_matching_identity_verifies_the_case_and_spends_the_invitation(session, keys,  # type: ignore[no-untyped-def]
                                                                       settings, person) -> None:
    case, invitation, token, pending = _pending(session, keys, settings, person)
    outcome = remote.complete_fcplus(session, case, verified(), actor="person:x", invitation_id=pending.invitation_id,
                                     client_ip=IP, now=T0)
    session.commit()
    assert outcome.matched and outcome.fields == []
    session.refresh(case)
    assert case.state == wf.MIE_ISSUED and case.identity_check_method == wf.METHOD_FCPLUS
    assert (case.fcplus_issuer, case.fcplus_sub) == (ISSUER, "a" * 64)
    assert case.identity_checked_at == T0 and case.mie_issued_at == T0
    session.refresh(invitation)
    assert invitation.used_at == T0
    assert len(journal(session, tags.ENROLLMENT_IDENTITY_VERIFIED)) == 1
    assert len(journal(session, tags.ENROLLMENT_MIE_ISSUED)) == 1
    [event] = journal(session, tags.ENROLLMENT_FCPLUS_COMPLETED)
    assert details(event)["matched"] is True and details(event)["acr"] == "eidas2"
    assert "1988-04-12" not in event.details and "DELAVERGNE" not in event.details
    with pytest.raises(UsedInvitation):
        remote.find_invitation(session, keys, token, now=T0)


def test_mismatch_rejects_the_case_with_field_names_only(session, keys, settings,  # type: ignore[no-untyped-def]
                                                         person) -> None:
    case, invitation, _token, pending = _pending(session, keys, settings, person)
    homonym = {**CLAIMS, "birthdate": "1991-09-23", "birthplace": "69123"}
    outcome = remote.complete_fcplus(session, case, verified(homonym), actor="person:x",
                                     invitation_id=pending.invitation_id, now=T0)
    session.commit()
    assert not outcome.matched and outcome.fields == ["birth_date", "birth_place"]
    session.refresh(case)
    assert case.state == wf.REJECTED and case.rejection_reasons == ["birth_date", "birth_place"]
    assert case.identity_check_method is None and case.mie_issued_at is None and case.fcplus_sub == "a" * 64
    assert remote.rejection_fields(case) == ["date de naissance", "commune de naissance"]
    session.refresh(invitation)
    assert invitation.used_at == T0
    for tag in (tags.ENROLLMENT_IDENTITY_MISMATCH, tags.ENROLLMENT_CASE_REJECTED, tags.ENROLLMENT_FCPLUS_COMPLETED):
        [event] = journal(session, tag)
        assert "1991-09-23" not in event.details and "69123" not in event.details
    assert journal(session, tags.ENROLLMENT_MIE_ISSUED) == []


def test_presumed_birth_date_is_reported(session, keys, settings) -> None:  # type: ignore[no-untyped-def]
    lou = create_identity(session, birth_family_name="Kervadec", given_names="Lou", birth_date="1980-06-17",
                          birth_place="", birth_country="99350", gender="F")
    case, _invitation, _token, pending = _pending(session, keys, settings, lou)
    claims = {"given_name": "Lou Maëlle", "family_name": "KERVADEC", "birthdate": "1980-01-01",
              "gender": "female", "birthplace": "", "birthcountry": "99350"}
    outcome = remote.complete_fcplus(session, case, verified(claims), actor="p", invitation_id=pending.invitation_id,
                                     now=T0)
    session.commit()
    assert outcome.matched and outcome.presumed_birth_date
    assert details(journal(session, tags.ENROLLMENT_FCPLUS_COMPLETED)[0])["presumed_birth_date"] is True


def test_an_invitation_is_spent_once(rt, session, keys, settings, person) -> None:  # type: ignore[no-untyped-def]
    case, invitation, _token, pending = _pending(session, keys, settings, person)
    invitation.used_at = T0
    session.commit()
    with pytest.raises(UsedInvitation):
        remote.complete_fcplus(session, case, verified(), actor="p", invitation_id=pending.invitation_id, now=T0)
    with rt.db.session() as fresh:
        row = fresh.get(EnrollmentCase, case.id)
        assert row.state == wf.OPENED and row.fcplus_sub is None
        event = journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)[-1]
        assert details(event)["reason"] == "used" and details(event)["error"] == "UsedInvitation"


def test_a_replaced_invitation_cannot_complete(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                               person) -> None:
    case, _invitation, _token, pending = _pending(session, keys, settings, person)
    invite(session, keys, settings, case)  # the officer sent a new one meanwhile
    with pytest.raises(ReplacedInvitation):
        remote.complete_fcplus(session, case, verified(), actor="p", invitation_id=pending.invitation_id, now=T0)
    with rt.db.session() as fresh:
        assert fresh.get(EnrollmentCase, case.id).state == wf.OPENED


def test_a_case_closed_meanwhile_cannot_complete(rt, session, keys, settings,  # type: ignore[no-untyped-def]
                                                 person) -> None:
    case, invitation, _token, pending = _pending(session, keys, settings, person)
    other = rt.db.sessionmaker()
    enrollment.cancel_case(other, other.get(EnrollmentCase, case.id), actor="officer", now=T0)
    other.commit()
    other.close()
    with pytest.raises(ClosedCaseInvitation):
        remote.complete_fcplus(session, case, verified(), actor="p", invitation_id=pending.invitation_id, now=T0)
    with rt.db.session() as fresh:
        row = fresh.get(EnrollmentCase, case.id)
        assert row.state == wf.CANCELLED and row.fcplus_sub is None and row.identity_check_method is None
        assert fresh.get(Invitation, invitation.id).used_at is None
        assert details(journal(fresh, tags.ENROLLMENT_FCPLUS_FAILED)[-1])["reason"] == "case_cancelled"


# --- the CLI's service ----------------------------------------------------------------------------------


def test_invite_identity_opens_a_case_only_when_none_is_open(session, keys, settings,  # type: ignore[no-untyped-def]
                                                             person) -> None:
    case, invitation, url, opened = remote.invite_identity(session, keys, settings, person, actor="cli", now=T0)
    session.commit()
    assert opened and case.kind == wf.KIND_FIRST_MIE and case.opened_by == "cli" and invitation.case_id == case.id
    again, second, _url, opened_again = remote.invite_identity(session, keys, settings, person, actor="cli",
                                                               now=T0 + dt.timedelta(hours=1))
    session.commit()
    assert not opened_again and again.id == case.id and second.id != invitation.id
    assert session.scalar(select(func.count()).select_from(EnrollmentCase)) == 1


def test_invite_identity_without_email_opens_nothing(rt, session, keys,  # type: ignore[no-untyped-def]
                                                     settings) -> None:
    person = create_identity(session, email="")
    with pytest.raises(InvitationNotSent):
        remote.invite_identity(session, keys, settings, person, actor="cli", now=T0)
    with rt.db.session() as fresh:
        assert fresh.scalar(select(func.count()).select_from(EnrollmentCase)) == 0
        assert len(journal(fresh, tags.ENROLLMENT_INVITATION_NOT_SENT)) == 1


# --- configuration and the provider cache ---------------------------------------------------------------


def test_fcplus_config_from_settings(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(fcplus.FcPlusConfigurationError):
        remote.fcplus_config(settings)
    real = Settings(**{**settings.__dict__, "fcplus_discovery_url": CONFIG.discovery_url,
                       "fcplus_client_id": "id", "fcplus_client_secret": "s3cret",
                       "fcplus_token_auth_method": "client_secret_basic", "fcplus_acr_values": "eidas3"})
    config = remote.fcplus_config(real)
    assert config.redirect_uri == "http://localhost/activation/franceconnect/retour" and not config.allow_http
    assert (config.client_id, config.token_auth_method, config.acr_values) == ("id", "client_secret_basic", "eidas3")


def test_discovery_and_keys_are_cached_per_discovery_url() -> None:
    remote.clear_caches()
    calls: list[str] = []
    document = {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize", "token_endpoint": f"{ISSUER}/token",
                "userinfo_endpoint": f"{ISSUER}/userinfo", "jwks_uri": f"{ISSUER}/jwks"}
    from joserfc.jwk import ECKey

    public = ECKey.generate_key("P-256", {"use": "sig"}).as_dict(private=False)

    def fetch(request: fcplus.HttpRequest) -> fcplus.HttpResponse:
        calls.append(request.url)
        body = document if request.url == CONFIG.discovery_url else {"keys": [public]}
        return fcplus.HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())

    clock = [1000.0]
    for _ in range(3):
        discovery = remote.discovery_for(CONFIG, fetch, clock=lambda: clock[0])
        remote.provider_keys_for(CONFIG, discovery, fetch, clock=lambda: clock[0])
    assert calls == [CONFIG.discovery_url, f"{ISSUER}/jwks"]
    remote.forget_provider_keys(CONFIG.discovery_url)
    remote.provider_keys_for(CONFIG, discovery, fetch, clock=lambda: clock[0])
    assert calls[-1] == f"{ISSUER}/jwks" and len(calls) == 3
    clock[0] += remote.CACHE_SECONDS + 1
    remote.discovery_for(CONFIG, fetch, clock=lambda: clock[0])
    assert len(calls) == 4
    remote.clear_caches()
