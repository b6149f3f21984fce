"""WebAuthn ceremonies (SECURITY.md items 12, 14, 17, 21, 22) driven with the software authenticator of
tests/softauthn.py against the real database (SQLite, or PostgreSQL with HOSPICONNECT_TEST_DATABASE_URL)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from typing import Any, Callable

import pytest
import time_machine
from fido2 import cbor
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import func, select, update

from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import webauthn
from hospiconnect.authenticators.models import Mie, MieTransition, WebAuthnChallenge, WebAuthnCredential
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.errors import ValidationError
from tests.factories import create_identity
from tests.softauthn import DEFAULT_AAGUID, SoftAuthenticator, b64url, b64url_decode

OTHER_RP = "idp.chu-exemple.fr"
OTHER_ORIGIN = "https://idp.chu-exemple.fr"


# --- helpers --------------------------------------------------------------------------------------------
def register(session, settings, identity, authenticator: SoftAuthenticator | None = None, *, require_uv: bool = True,
             label: str = "Clé USB", **create_kwargs: Any) -> tuple[Mie, SoftAuthenticator]:
    authenticator = authenticator or SoftAuthenticator()
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=require_uv)
    session.commit()
    response = authenticator.create(options, **create_kwargs)
    mie = webauthn.complete_registration(session, identity, settings, challenge_id, response, label=label,
                                         actor="guichet:agent1")
    session.commit()
    return mie, authenticator


def begin_login(session, settings, *, identity=None, require_uv: bool = False) -> tuple[str, dict]:
    challenge_id, options = webauthn.begin_authentication(session, settings, identity=identity,
                                                          require_uv=require_uv)
    session.commit()
    return challenge_id, options


def login(session, settings, authenticator: SoftAuthenticator, *, identity=None, require_uv: bool = False,
          **get_kwargs: Any) -> webauthn.AuthenticationResult:
    challenge_id, options = begin_login(session, settings, identity=identity, require_uv=require_uv)
    response = authenticator.get(options, **get_kwargs)
    result = webauthn.complete_authentication(session, settings, challenge_id, response, client_ip="10.1.2.3")
    session.commit()
    return result


def events(session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def last_event(session) -> AuditEvent:
    return events(session)[-1]


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def stored_credential(session, mie: Mie) -> WebAuthnCredential:
    session.expire_all()
    return session.get(WebAuthnCredential, mie.id)


def other_site(settings):
    return dataclasses.replace(settings, webauthn_rp_id=OTHER_RP, webauthn_origins=(OTHER_ORIGIN,))


# --- registration ---------------------------------------------------------------------------------------
def test_registration_options_are_browser_json_and_the_state_stays_on_the_server(session, settings):
    identity = create_identity(session)
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True,
                                                        attachment="cross-platform")
    session.commit()
    json.dumps(options)  # plain JSON for parseCreationOptionsFromJSON
    assert options["rp"] == {"id": "localhost", "name": settings.establishment_name}
    assert b64url_decode(options["user"]["id"]) == webauthn.user_handle_for(identity.public_id)
    assert options["user"]["name"] == identity.user_name
    assert len(b64url_decode(options["challenge"])) >= 16
    assert options["attestation"] == "direct"
    assert options["authenticatorSelection"] == {"residentKey": "preferred", "userVerification": "required",
                                                 "requireResidentKey": False,
                                                 "authenticatorAttachment": "cross-platform"}
    assert options["excludeCredentials"] == []
    assert {p["alg"] for p in options["pubKeyCredParams"]} == set(webauthn.ALLOWED_ALGORITHMS)
    assert len(challenge_id) >= 43  # 256 bits in base64url
    row = session.get(WebAuthnChallenge, challenge_id)
    assert (row.purpose, row.identity_id) == ("register", identity.id)
    assert json.loads(row.state)["challenge"] == options["challenge"]
    assert dt.timedelta(minutes=4) < row.expires_at - utcnow() <= dt.timedelta(minutes=5)


def test_registration_with_user_verification_creates_an_active_two_factor_mie(session, settings):
    identity = create_identity(session)
    mie, authenticator = register(session, settings, identity, fmt="packed")
    assert (mie.type, mie.status, mie.label, mie.identity_id) == ("webauthn", "active", "Clé USB", identity.id)
    assert mie.amr == ["hwk", "mfa", "pin"]
    assert mie.activated_at is not None
    assert [(t.from_status, t.to_status, t.actor) for t in mie.transitions] == [("pending", "active", "guichet:agent1")]
    credential = stored_credential(session, mie)
    assert credential.credential_id == b64url(authenticator.credential_id)
    assert cbor.decode(credential.public_key) == authenticator.cose_key()
    assert credential.aaguid == DEFAULT_AAGUID
    assert credential.attestation_format == "packed"
    assert credential.transports == "nfc,usb"
    assert credential.user_verified_at_registration is True
    assert credential.attachment == "cross-platform"
    assert credential.backup_eligible is False
    assert credential.sign_count == 0
    event = last_event(session)
    assert (event.tag, event.outcome, event.actor, event.subject) == (
        "mie:webauthn:registered", "success", "guichet:agent1", identity.public_id)
    assert json.loads(event.details)["aaguid"] == DEFAULT_AAGUID
    assert count(session, WebAuthnChallenge) == 0
    assert audit.verify(session).ok


def test_registration_without_user_verification_gives_presence_only_amr(session, settings):
    identity = create_identity(session)
    authenticator = SoftAuthenticator(user_verification=False, attachment="platform", backup_eligible=True)
    mie, _ = register(session, settings, identity, authenticator, require_uv=False)
    assert mie.amr == ["hwk", "user"]
    credential = stored_credential(session, mie)
    assert (credential.user_verified_at_registration, credential.attachment, credential.backup_eligible,
            credential.attestation_format) == (False, "platform", True, "none")


def test_registration_requiring_uv_refuses_an_authenticator_without_it(session, settings):
    identity = create_identity(session)
    with pytest.raises(webauthn.UserVerificationRequired) as info:
        register(session, settings, identity, SoftAuthenticator(user_verification=False), require_uv=True)
    assert "PIN" in info.value.message
    assert count(session, Mie) == count(session, WebAuthnCredential) == count(session, WebAuthnChallenge) == 0
    event = last_event(session)
    assert (event.tag, event.outcome) == ("mie:webauthn:registration_refused", "failure")
    assert json.loads(event.details)["reason"] == "user_verification_required"
    assert audit.verify(session).ok


def test_existing_credentials_are_excluded_and_a_known_credential_id_is_refused(session, settings):
    alice = create_identity(session, birth_family_name="Durand")
    bob = create_identity(session, birth_family_name="Petit")
    _, key = register(session, settings, alice)
    challenge_id, options = webauthn.begin_registration(session, alice, settings, require_uv=True)
    assert options["excludeCredentials"] == [{"type": "public-key", "id": b64url(key.credential_id),
                                              "transports": ["nfc", "usb"]}]
    session.commit()
    # A second authenticator presenting the same credential id (a copy) for another person.
    clone = SoftAuthenticator(credential_id=key.credential_id)
    with pytest.raises(webauthn.CredentialAlreadyRegistered):
        register(session, settings, bob, clone)
    assert count(session, Mie) == 1
    assert json.loads(last_event(session).details)["reason"] == "credential_already_registered"


def test_aaguid_allow_list(session, settings):
    identity = create_identity(session)
    allowing = dataclasses.replace(settings, webauthn_aaguid_allowlist=(DEFAULT_AAGUID.upper().replace("-", ""),))
    mie, _ = register(session, allowing, identity)
    assert stored_credential(session, mie).aaguid == DEFAULT_AAGUID
    refusing = dataclasses.replace(settings, webauthn_aaguid_allowlist=("cb69481e-8ff7-4039-93ec-0a2729a154a8",))
    with pytest.raises(webauthn.AaguidNotAllowed):
        register(session, refusing, identity)
    assert count(session, Mie) == 1
    details = json.loads(last_event(session).details)
    assert (details["reason"], details["aaguid"]) == ("aaguid_not_allowed", DEFAULT_AAGUID)


def test_packed_statement_with_a_bad_signature_is_refused_unknown_formats_are_recorded(session, settings):
    identity = create_identity(session)
    with pytest.raises(webauthn.InvalidResponse):
        # A well-formed DER signature (r = s = 1) that does not verify.
        forged = {"alg": -7, "sig": bytes.fromhex("3006020101020101")}
        register(session, settings, identity, fmt="packed", att_stmt=forged)
    with pytest.raises(webauthn.InvalidResponse):
        register(session, settings, identity, fmt="none", att_stmt={"sig": b"x"})
    mie, _ = register(session, settings, identity, fmt="android-key", att_stmt={"alg": -7, "sig": b"opaque"})
    assert stored_credential(session, mie).attestation_format == "android-key"


def test_an_algorithm_that_was_not_offered_is_refused(session, settings):
    identity = create_identity(session)
    with pytest.raises(webauthn.InvalidResponse):
        register(session, settings, identity, alg=-47)  # secp256k1, known to fido2 but not offered
    assert count(session, Mie) == 0


def test_registration_refuses_a_departed_identity(session, settings):
    identity = create_identity(session)
    directory.change_status(session, identity, "departed", actor="rh", reason="fin de contrat")
    session.commit()
    with pytest.raises(webauthn.IdentityNotEligible):
        webauthn.begin_registration(session, identity, settings, require_uv=True)


def test_a_bad_label_is_refused_before_the_challenge_is_used(session, settings):
    identity = create_identity(session)
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True)
    session.commit()
    response = SoftAuthenticator().create(options)
    for label in ("", "   ", "x" * 101):
        with pytest.raises(ValidationError):
            webauthn.complete_registration(session, identity, settings, challenge_id, response, label=label,
                                           actor="test")
    mie = webauthn.complete_registration(session, identity, settings, challenge_id, response,
                                         label="  Clé   du bureau ", actor="test")
    assert mie.label == "Clé du bureau"


def test_a_registration_challenge_belongs_to_its_person_and_purpose(session, settings):
    alice = create_identity(session, birth_family_name="Durand")
    bob = create_identity(session, birth_family_name="Petit")
    challenge_id, options = webauthn.begin_registration(session, alice, settings, require_uv=True)
    session.commit()
    response = SoftAuthenticator().create(options)
    with pytest.raises(webauthn.ChallengeUnknown):
        webauthn.complete_registration(session, bob, settings, challenge_id, response, label="k", actor="test")
    with pytest.raises(webauthn.ChallengeUnknown):
        webauthn.complete_authentication(session, settings, challenge_id, response)
    # Neither attempt consumed Alice's challenge.
    mie = webauthn.complete_registration(session, alice, settings, challenge_id, response, label="k", actor="test")
    assert mie.identity_id == alice.id


@pytest.mark.parametrize("override", [
    {"origin": "https://evil.example"},
    {"origin": "http://127.0.0.1:5000"},  # WebAuthn needs the host name localhost, not the address
    {"origin": "http://localhost:5001"},
    {"rp_id": "evil.example"},
    {"kind": "webauthn.get"},
    {"challenge": b64url(b"0" * 32)},
    {"cross_origin": True},
    {"up": False},
])
def test_registration_refuses_responses_for_another_site_or_ceremony(session, settings, override):
    identity = create_identity(session)
    with pytest.raises(webauthn.InvalidResponse):
        register(session, settings, identity, **override)
    assert count(session, Mie) == count(session, WebAuthnCredential) == count(session, WebAuthnChallenge) == 0
    assert last_event(session).tag == "mie:webauthn:registration_refused"
    assert audit.verify(session).ok


def test_replayed_registration_is_refused(session, settings):
    identity = create_identity(session)
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True)
    session.commit()
    response = SoftAuthenticator().create(options)
    webauthn.complete_registration(session, identity, settings, challenge_id, response, label="k", actor="t")
    session.commit()
    with pytest.raises(webauthn.ChallengeUnknown):
        webauthn.complete_registration(session, identity, settings, challenge_id, response, label="k", actor="t")
    assert count(session, Mie) == 1


def test_expired_registration_challenge_is_refused(session, settings):
    identity = create_identity(session)
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True)
    session.commit()
    response = SoftAuthenticator().create(options)
    with time_machine.travel(utcnow() + dt.timedelta(minutes=5, seconds=1), tick=False):
        with pytest.raises(webauthn.ChallengeExpired):
            webauthn.complete_registration(session, identity, settings, challenge_id, response, label="k",
                                           actor="t")
    assert count(session, Mie) == 0
    assert count(session, WebAuthnChallenge) == 0


# --- authentication -------------------------------------------------------------------------------------
def test_second_factor_login_with_user_verification(session, settings):
    identity = create_identity(session)
    mie, key = register(session, settings, identity)
    challenge_id, options = begin_login(session, settings, identity=identity, require_uv=True)
    assert options["userVerification"] == "required"
    assert options["rpId"] == "localhost"
    assert options["allowCredentials"] == [{"type": "public-key", "id": b64url(key.credential_id),
                                            "transports": ["nfc", "usb"]}]
    result = webauthn.complete_authentication(session, settings, challenge_id, json.dumps(key.get(options)),
                                              client_ip="10.1.2.3")
    session.commit()
    assert (result.identity_id, result.mie.id, result.user_verified) == (identity.id, mie.id, True)
    assert result.amr == ["hwk", "mfa", "pin"]
    assert result.mie.last_used_at is not None
    assert stored_credential(session, mie).sign_count == 1
    event = last_event(session)
    assert (event.tag, event.outcome, event.subject, event.client_ip) == (
        "authn:webauthn:success", "success", identity.public_id, "10.1.2.3")
    assert json.loads(event.details)["factor"] == "webauthn"
    assert count(session, WebAuthnChallenge) == 0
    assert audit.verify(session).ok


def test_login_without_user_verification_gives_presence_only(session, settings):
    identity = create_identity(session)
    _, key = register(session, settings, identity, SoftAuthenticator(user_verification=False), require_uv=False)
    challenge_id, options = begin_login(session, settings, identity=identity, require_uv=False)
    assert options["userVerification"] == "preferred"
    result = webauthn.complete_authentication(session, settings, challenge_id, key.get(options))
    assert (result.user_verified, result.amr) == (False, ["hwk", "user"])


def test_passwordless_login_finds_the_person_from_the_credential(session, settings):
    alice = create_identity(session, birth_family_name="Durand")
    bob = create_identity(session, birth_family_name="Petit")
    register(session, settings, alice)
    bob_mie, bob_key = register(session, settings, bob)
    challenge_id, options = begin_login(session, settings, require_uv=True)
    assert options["allowCredentials"] == []
    assert session.get(WebAuthnChallenge, challenge_id).identity_id is None
    result = webauthn.complete_authentication(session, settings, challenge_id, bob_key.get(options))
    assert (result.identity_id, result.mie.id, result.user_verified) == (bob.id, bob_mie.id, True)
    assert json.loads(last_event(session).details)["passwordless"] is True


def test_passwordless_login_needs_the_owners_user_handle(session, settings):
    alice = create_identity(session, birth_family_name="Durand")
    bob = create_identity(session, birth_family_name="Petit")
    register(session, settings, alice)
    _, bob_key = register(session, settings, bob)
    with pytest.raises(webauthn.InvalidResponse):
        login(session, settings, bob_key, user_handle=None)
    with pytest.raises(webauthn.InvalidResponse):
        login(session, settings, bob_key, user_handle=webauthn.user_handle_for(alice.public_id))
    # With the ceremony bound to the person, a key that does not return the handle is fine.
    assert login(session, settings, bob_key, identity=bob, user_handle=None).identity_id == bob.id


def test_a_ceremony_for_one_person_cannot_be_answered_with_another_persons_key(session, settings):
    alice = create_identity(session, birth_family_name="Durand")
    bob = create_identity(session, birth_family_name="Petit")
    _, alice_key = register(session, settings, alice)
    register(session, settings, bob)
    with pytest.raises(webauthn.CredentialUnknown):
        login(session, settings, alice_key, identity=bob, check_allow=False)
    event = last_event(session)
    assert (event.tag, event.outcome) == ("authn:webauthn:failure", "failure")
    assert json.loads(event.details)["reason"] == "credential_unknown"


def test_login_on_a_configured_site_and_refusal_elsewhere(session, settings):
    site = other_site(settings)
    identity = create_identity(session)
    _, key = register(session, site, identity, SoftAuthenticator(origin=OTHER_ORIGIN))
    assert login(session, site, key, identity=identity).identity_id == identity.id
    for origin in ("https://evil.example", "http://idp.chu-exemple.fr", "https://idp.chu-exemple.fr:8443",
                   "https://sub.idp.chu-exemple.fr"):
        with pytest.raises(webauthn.InvalidResponse):
            login(session, site, key, identity=identity, origin=origin)
    with pytest.raises(webauthn.InvalidResponse):
        login(session, site, key, identity=identity, rp_id="chu-exemple.fr")
    # Same key, same origin, but this server is configured for another RP ID and origin.
    with pytest.raises(webauthn.InvalidResponse):
        login(session, settings, key, identity=identity)
    assert audit.verify(session).ok


@pytest.mark.parametrize("override", [
    {"origin": "https://evil.example"},
    {"origin": "http://127.0.0.1:5000"},
    {"rp_id": "evil.example"},
    {"bad_signature": True},
    {"kind": "webauthn.create"},
    {"challenge": b64url(b"1" * 32)},
    {"cross_origin": True},
    {"up": False},
])
def test_login_refuses_forged_or_misdirected_assertions(session, settings, override):
    identity = create_identity(session)
    mie, key = register(session, settings, identity)
    with pytest.raises(webauthn.InvalidResponse):
        login(session, settings, key, identity=identity, **override)
    assert stored_credential(session, mie).sign_count == 0
    session.refresh(mie)
    assert mie.last_used_at is None
    event = last_event(session)
    assert (event.tag, event.outcome, event.subject) == ("authn:webauthn:failure", "failure", identity.public_id)
    assert json.loads(event.details)["reason"] == "invalid_response"
    assert count(session, WebAuthnChallenge) == 0
    assert audit.verify(session).ok


def test_user_verification_required_but_absent_is_refused(session, settings):
    identity = create_identity(session)
    mie, key = register(session, settings, identity, SoftAuthenticator(user_verification=False), require_uv=False)
    with pytest.raises(webauthn.UserVerificationRequired):
        login(session, settings, key, identity=identity, require_uv=True)
    assert stored_credential(session, mie).sign_count == 0
    assert json.loads(last_event(session).details)["reason"] == "user_verification_required"


def test_expired_authentication_challenge_is_refused(session, settings):
    identity = create_identity(session)
    _, key = register(session, settings, identity)
    challenge_id, options = begin_login(session, settings, identity=identity)
    session.execute(update(WebAuthnChallenge).where(WebAuthnChallenge.id == challenge_id)
                    .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    session.commit()
    with pytest.raises(webauthn.ChallengeExpired):
        webauthn.complete_authentication(session, settings, challenge_id, key.get(options))
    assert count(session, WebAuthnChallenge) == 0
    assert json.loads(last_event(session).details)["reason"] == "challenge_expired"


def test_replayed_authentication_is_refused(session, settings):
    identity = create_identity(session)
    _, key = register(session, settings, identity)
    challenge_id, options = begin_login(session, settings, identity=identity)
    response = key.get(options)
    webauthn.complete_authentication(session, settings, challenge_id, response)
    session.commit()
    with pytest.raises(webauthn.ChallengeUnknown):
        webauthn.complete_authentication(session, settings, challenge_id, response)
    with pytest.raises(webauthn.ChallengeUnknown):
        webauthn.complete_authentication(session, settings, "x" * 500, response)
    assert [e.tag for e in events(session)][-3:] == ["authn:webauthn:success", "authn:webauthn:failure",
                                                      "authn:webauthn:failure"]


def test_signature_counter_regression_is_refused_and_journaled(session, settings):
    identity = create_identity(session)
    mie, key = register(session, settings, identity)
    login(session, settings, key, identity=identity, counter=10)
    assert stored_credential(session, mie).sign_count == 10
    for replayed in (5, 10, 0):  # lower, equal (non-zero) and a counter that went back to zero
        with pytest.raises(webauthn.CounterRegression):
            login(session, settings, key, identity=identity, counter=replayed)
        event = last_event(session)
        assert (event.tag, event.outcome, event.subject) == (
            "authn:webauthn:counter_regression", "failure", identity.public_id)
        details = json.loads(event.details)
        assert (details["stored_count"], details["received_count"]) == (10, replayed)
        assert stored_credential(session, mie).sign_count == 10
    session.refresh(mie)
    last_used = mie.last_used_at
    assert login(session, settings, key, identity=identity, counter=11).mie.id == mie.id
    assert stored_credential(session, mie).sign_count == 11
    session.refresh(mie)
    assert mie.last_used_at > last_used
    assert audit.verify(session).ok


def test_authenticators_without_a_counter_are_accepted(session, settings):
    identity = create_identity(session)
    mie, key = register(session, settings, identity, SoftAuthenticator(counting=False))
    for _ in range(3):
        assert login(session, settings, key, identity=identity).mie.id == mie.id
    assert stored_credential(session, mie).sign_count == 0
    # Once a counter was seen, zero is a regression.
    login(session, settings, key, identity=identity, counter=1)
    with pytest.raises(webauthn.CounterRegression):
        login(session, settings, key, identity=identity)


def test_suspended_mie_and_departed_identity_cannot_authenticate(session, settings):
    alice = create_identity(session, birth_family_name="Durand")
    bob = create_identity(session, birth_family_name="Petit")
    alice_mie, alice_key = register(session, settings, alice)
    _, bob_key = register(session, settings, bob)

    alice_mie.status = "suspended"
    session.commit()
    with pytest.raises(webauthn.NoActiveCredential):
        webauthn.begin_authentication(session, settings, identity=alice, require_uv=False)
    with pytest.raises(webauthn.CredentialUnknown):
        login(session, settings, alice_key)
    details = json.loads(last_event(session).details)
    assert (details["reason"], details["mie_status"]) == ("credential_unknown", "suspended")

    directory.change_status(session, bob, "departed", actor="rh", reason="fin de contrat")
    session.commit()
    with pytest.raises(webauthn.CredentialUnknown):
        login(session, settings, bob_key)
    assert json.loads(last_event(session).details)["identity_status"] == "departed"
    with pytest.raises(webauthn.NoActiveCredential):
        webauthn.begin_authentication(session, settings, identity=bob, require_uv=False)


def test_unknown_credential_is_refused_and_journaled(session, settings):
    identity = create_identity(session)
    register(session, settings, identity)
    with pytest.raises(webauthn.CredentialUnknown):
        login(session, settings, SoftAuthenticator())
    event = last_event(session)
    assert (event.tag, event.actor, event.subject) == ("authn:webauthn:failure", "anonymous", None)


def test_purge_expired_challenges(session, settings):
    identity = create_identity(session)
    old, _ = webauthn.begin_registration(session, identity, settings, require_uv=True)
    fresh, _ = webauthn.begin_authentication(session, settings, require_uv=False)
    session.execute(update(WebAuthnChallenge).where(WebAuthnChallenge.id == old)
                    .values(expires_at=utcnow() - dt.timedelta(minutes=1)))
    session.commit()
    assert webauthn.purge_expired_challenges(session, utcnow()) == 1
    session.commit()
    assert session.scalars(select(WebAuthnChallenge.id)).all() == [fresh]
    assert webauthn.purge_expired_challenges(session, utcnow()) == 0


# --- concurrency ----------------------------------------------------------------------------------------
def _race(rt, attempt: Callable[[Any], Any]) -> list[str]:
    """Run ``attempt(session)`` in two threads with their own sessions, started together."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        own = rt.db.sessionmaker()
        try:
            barrier.wait()
            attempt(own)
            own.commit()
            outcomes.append("ok")
        except webauthn.ChallengeUnknown:
            outcomes.append("challenge_unknown")
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            outcomes.append(repr(exc))
        finally:
            own.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


def test_concurrent_completions_of_one_authentication_challenge(rt, session, settings):
    identity = create_identity(session)
    mie, key = register(session, settings, identity)
    challenge_id, options = begin_login(session, settings, identity=identity)
    response = key.get(options)
    outcomes = _race(rt, lambda own: webauthn.complete_authentication(own, settings, challenge_id, response))
    assert outcomes == ["challenge_unknown", "ok"]
    session.expire_all()
    tags = [e.tag for e in events(session)]
    assert tags.count("authn:webauthn:success") == 1
    assert tags.count("authn:webauthn:failure") == 1
    assert stored_credential(session, mie).sign_count == 1
    assert audit.verify(session).ok


def test_concurrent_completions_of_one_registration_challenge(rt, session, settings):
    identity = create_identity(session)
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True)
    session.commit()
    response = SoftAuthenticator().create(options)
    outcomes = _race(rt, lambda own: webauthn.complete_registration(
        own, own.merge(identity), settings, challenge_id, response, label="k", actor="t"))
    assert outcomes == ["challenge_unknown", "ok"]
    assert count(session, Mie) == count(session, WebAuthnCredential) == count(session, MieTransition) == 1
    assert audit.verify(session).ok


# --- malformed input: always InvalidResponse, never another exception -----------------------------------
def _set(path: tuple[str, ...], value: Any) -> Callable[[dict], dict]:
    def mutate(response: dict) -> dict:
        target = response
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return response
    return mutate


def _drop(*path: str) -> Callable[[dict], dict]:
    def mutate(response: dict) -> dict:
        target = response
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return response
    return mutate


def _client_data(data: Any) -> Callable[[dict], dict]:
    return _set(("response", "clientDataJSON"), b64url(json.dumps(data).encode()))


def _bytes_field(name: str, change: Callable[[bytes], bytes]) -> Callable[[dict], dict]:
    def mutate(response: dict) -> dict:
        response["response"][name] = b64url(change(b64url_decode(response["response"][name])))
        return response
    return mutate


def _with_flag(auth_data: bytes, flag: int) -> bytes:
    return auth_data[:32] + bytes([auth_data[32] | flag]) + auth_data[33:]


def _attestation(change: Callable[[dict], Any]) -> Callable[[dict], dict]:
    def mutate(response: dict) -> dict:
        decoded = cbor.decode(b64url_decode(response["response"]["attestationObject"]))
        response["response"]["attestationObject"] = b64url(cbor.encode(change(dict(decoded))))
        return response
    return mutate


COMMON_MALFORMED: dict[str, Callable[[dict], Any]] = {
    "empty string": lambda r: "",
    "truncated JSON": lambda r: json.dumps(r)[:-9],
    "half of the JSON": lambda r: json.dumps(r)[: len(json.dumps(r)) // 2],
    "JSON null": lambda r: "null",
    "JSON list": lambda r: "[1, 2]",
    "JSON string": lambda r: '"public-key"',
    "an integer": lambda r: 42,
    "None": lambda r: None,
    "bytes that are not UTF-8": lambda r: b"\xff\xfe{",
    "deeply nested JSON": lambda r: "[" * 100_000,
    "oversized": lambda r: json.dumps({**r, "padding": "x" * 70_000}),
    "no response": _drop("response"),
    "response is a list": _set(("response",), []),
    "id is a number": _set(("id",), 5),
    "rawId is not base64url": _set(("rawId",), "%%%"),
    "rawId is empty": lambda r: {**r, "id": "", "rawId": ""},
    "rawId has an impossible length": lambda r: {**r, "id": "abcde", "rawId": "abcde"},
    "id differs from rawId": _set(("id",), b64url(b"another credential")),
    "type is not public-key": _set(("type",), "password"),
    "clientDataJSON is not base64url": _set(("response", "clientDataJSON"), "e30!!"),
    "clientDataJSON is standard base64": _set(("response", "clientDataJSON"), "ab+/"),
    "clientDataJSON is a number": _set(("response", "clientDataJSON"), 7),
    "clientDataJSON is not JSON": _set(("response", "clientDataJSON"), b64url(b"not json")),
    "clientDataJSON is not UTF-8": _set(("response", "clientDataJSON"), b64url(b"\xff\xfe\xfd")),
    "clientDataJSON is a JSON list": _client_data([]),
    "clientDataJSON without challenge": _client_data({"type": "webauthn.get", "origin": "http://localhost:5000"}),
    "clientDataJSON challenge is a number": _client_data({"type": "webauthn.get", "challenge": 1,
                                                          "origin": "http://localhost:5000"}),
    "clientDataJSON origin is a list": _client_data({"type": "webauthn.get", "challenge": "AAAA",
                                                     "origin": ["http://localhost:5000"]}),
    "clientExtensionResults is a string": _set(("clientExtensionResults",), "x"),
    "authenticatorAttachment is a number": _set(("authenticatorAttachment",), 3),
}

ASSERTION_MALFORMED: dict[str, Callable[[dict], Any]] = {
    **COMMON_MALFORMED,
    "authenticatorData truncated": _bytes_field("authenticatorData", lambda b: b[:20]),
    "authenticatorData with trailing bytes": _bytes_field("authenticatorData", lambda b: b + b"\x00"),
    "authenticatorData empty": _set(("response", "authenticatorData"), ""),
    "authenticatorData claims extensions": _bytes_field("authenticatorData", lambda b: _with_flag(b, 0x80)),
    "authenticatorData claims attested data": _bytes_field("authenticatorData", lambda b: _with_flag(b, 0x40)),
    "signature is a number": _set(("response", "signature"), 12),
    "signature is not DER": _set(("response", "signature"), b64url(b"\x01\x02")),
    "signature missing": _drop("response", "signature"),
    "userHandle is a number": _set(("response", "userHandle"), 7),
    "userHandle is not base64url": _set(("response", "userHandle"), "*"),
}

REGISTRATION_MALFORMED: dict[str, Callable[[dict], Any]] = {
    **COMMON_MALFORMED,
    "attestationObject missing": _drop("response", "attestationObject"),
    "attestationObject is not CBOR": _set(("response", "attestationObject"), b64url(b"\xff\xff\xff")),
    "attestationObject is empty": _set(("response", "attestationObject"), ""),
    "attestationObject is a CBOR list": _set(("response", "attestationObject"), b64url(cbor.encode([1, 2]))),
    "attestationObject with trailing bytes": _bytes_field("attestationObject", lambda b: b + b"\x00"),
    "attestationObject truncated": _bytes_field("attestationObject", lambda b: b[:-10]),
    "no authData": _attestation(lambda d: {"fmt": "none", "attStmt": {}}),
    "authData is text": _attestation(lambda d: {**d, "authData": "text"}),
    "authData without attested credential data": _attestation(
        lambda d: {**d, "authData": d["authData"][:32] + bytes([d["authData"][32] & ~0x40]) + d["authData"][33:37]}),
    "authData with a broken COSE key": _attestation(lambda d: {**d, "authData": d["authData"][:-20]}),
    "fmt is a number": _attestation(lambda d: {**d, "fmt": 3}),
    "fmt is too long": _attestation(lambda d: {**d, "fmt": "f" * 41}),
    "attStmt is a list": _attestation(lambda d: {**d, "attStmt": [1]}),
    "transports is a string": _set(("response", "transports"), "usb"),
    "transports holds numbers": _set(("response", "transports"), [1]),
}


@pytest.mark.parametrize("name", sorted(ASSERTION_MALFORMED))
def test_malformed_assertions_are_invalid_responses(session, settings, name):
    identity = create_identity(session)
    mie, key = register(session, settings, identity)
    challenge_id, options = begin_login(session, settings, identity=identity)
    bad = ASSERTION_MALFORMED[name](key.get(options))
    with pytest.raises(webauthn.InvalidResponse) as info:
        webauthn.complete_authentication(session, settings, challenge_id, bad)
    assert "clé de sécurité" in info.value.message
    assert count(session, WebAuthnChallenge) == 0  # consumed all the same
    assert stored_credential(session, mie).sign_count == 0
    assert last_event(session).tag == "authn:webauthn:failure"
    assert audit.verify(session).ok


@pytest.mark.parametrize("name", sorted(REGISTRATION_MALFORMED))
def test_malformed_registrations_are_invalid_responses(session, settings, name):
    identity = create_identity(session)
    challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True)
    session.commit()
    bad = REGISTRATION_MALFORMED[name](SoftAuthenticator().create(options))
    with pytest.raises(webauthn.InvalidResponse):
        webauthn.complete_registration(session, identity, settings, challenge_id, bad, label="k", actor="t")
    assert count(session, WebAuthnChallenge) == 0
    assert count(session, Mie) == count(session, WebAuthnCredential) == 0
    assert last_event(session).tag == "mie:webauthn:registration_refused"


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["clientDataJSON", "authenticatorData", "signature"]),
       position=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_in_an_assertion_is_refused(session, settings, field, position, flip):
    # The fixtures are shared by the examples, so each example brings its own person and key.
    identity = create_identity(session)
    _, key = register(session, settings, identity)
    challenge_id, options = begin_login(session, settings)
    response = key.get(options)
    raw = bytearray(b64url_decode(response["response"][field]))
    raw[position % len(raw)] ^= flip
    response["response"][field] = b64url(bytes(raw))
    with pytest.raises(webauthn.InvalidResponse):
        webauthn.complete_authentication(session, settings, challenge_id, response)
