"""set_password / verify_password: policy, generic failures, throttling, lockout, timing, rehash."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import time_machine
from argon2 import PasswordHasher, Type
from sqlalchemy import select

from hospiconnect.authenticators import password as pw
from hospiconnect.authenticators import services
from hospiconnect.authenticators.interfaces import GENERIC_LOGIN_FAILURE, InvalidCredentials, PasswordRejected
from hospiconnect.authenticators.models import PasswordCredential
from hospiconnect.directory import services as directory
from hospiconnect.ratelimit import Throttled
from tests.factories import create_identity
from tests.unit.authenticators._mie_helpers import (  # noqa: F401
    GOOD_PASSWORD,
    T0,
    db_throttle,
    details,
    events,
    journal_text,
    notifications,
    tags_of,
    throttle,
)

EST = "Établissement de démonstration"


@pytest.fixture()
def person(session):
    p = create_identity(session, birth_family_name="Lefèvre", given_names="Élodie Anne")
    services.set_password(session, p, GOOD_PASSWORD, actor="test", establishment_name=EST)
    session.commit()
    return p


def test_first_password_creates_an_active_mie(session):
    p = create_identity(session)
    mie = services.set_password(session, p, GOOD_PASSWORD, actor="guichet", establishment_name=EST)
    session.commit()
    assert (mie.type, mie.status, mie.amr) == ("password", "active", ["pwd"])
    assert tags_of(session, "mie:") == ["mie:password:created", "mie:password:activated", "mie:password:changed"]
    cred = session.get(PasswordCredential, mie.id)
    assert cred.hash.startswith("$argon2id$") and GOOD_PASSWORD not in cred.hash


def test_changing_replaces_the_hash_and_notifies(session, person):
    [mie] = services.active_mie_for(session, person, "password")
    old_hash = session.get(PasswordCredential, mie.id).hash
    again = services.set_password(session, person, "un tout autre mot de passe", actor="self",
                                  establishment_name=EST)
    session.commit()
    assert again.id == mie.id
    new_hash = session.get(PasswordCredential, mie.id).hash
    assert new_hash != old_hash and pw.verify(new_hash, "un tout autre mot de passe").ok
    assert "Mot de passe modifié" in notifications(session)[-1].subject
    assert len(session.scalars(select(PasswordCredential)).all()) == 1


def test_policy_refusal_changes_nothing(session, person):
    before = len(events(session))
    with pytest.raises(PasswordRejected) as info:
        services.set_password(session, person, "elodie-lefevre-2026", actor="self", establishment_name=EST)
    assert info.value.reasons == ["contains_name"] and info.value.field == "password"
    assert info.value.code == "contains_name" and "votre nom" in info.value.message
    with pytest.raises(PasswordRejected) as info:
        services.set_password(session, person, "demonstration", actor="self", establishment_name=EST)
    assert info.value.reasons == ["contains_establishment"]
    assert len(events(session)) == before


def test_right_password_succeeds(session, person, throttle):
    identity, mie = services.verify_password(session, f"  {person.user_name.upper()}  ",
                                             GOOD_PASSWORD, client_ip="10.0.0.1", throttle=throttle)
    session.commit()
    assert identity.id == person.id and mie.type == "password" and mie.last_used_at is not None
    ok = events(session, "authn:")[-1]
    assert ok.tag == "authn:password:success" and ok.outcome == "success" and ok.client_ip == "10.0.0.1"
    assert details(ok) == {"mie": mie.public_id, "factor": "password", "rehashed": False}


def _login_fails(session, user_name, password, throttle, ip="10.0.0.1"):
    with pytest.raises(InvalidCredentials) as info:
        services.verify_password(session, user_name, password, client_ip=ip, throttle=throttle)
    return info.value


def test_failures_are_generic_and_journaled_with_a_reason(session, person, throttle):
    wrong = _login_fails(session, person.user_name, "pas le bon mot de passe", throttle)
    unknown = _login_fails(session, "personne", GOOD_PASSWORD, throttle)
    assert wrong.message == unknown.message == GENERIC_LOGIN_FAILURE
    assert (wrong.code, wrong.http_status) == (unknown.code, unknown.http_status) == ("invalid_credentials", 401)
    reasons = [details(e)["reason"] for e in events(session, "authn:password:failure")]
    assert reasons == ["wrong_password", "unknown_user"]
    assert "pas le bon mot de passe" not in journal_text(session)
    assert GOOD_PASSWORD not in journal_text(session)


def test_failures_survive_the_callers_rollback(session, person, db_throttle):
    _login_fails(session, person.user_name, "pas le bon mot de passe", db_throttle)
    session.rollback()  # what a request teardown does after an exception
    assert tags_of(session, "authn:") == ["authn:password:failure"]
    assert db_throttle.status(session, "password", person.user_name).failures == 1


@pytest.mark.parametrize("change, reason", [
    (lambda s, p: directory.suspend(s, p, actor="rh", reason="congé"), "identity_suspended"),
    (lambda s, p: services.transition(s, services.active_mie_for(s, p, "password")[0], "suspended",
                                      actor="rssi"), "mie_suspended"),
    (lambda s, p: services.remove(s, services.active_mie_for(s, p, "password")[0], actor="rssi"), "no_password"),
])
def test_inactive_identity_or_password_is_refused_generically(session, person, throttle, change, reason):
    change(session, person)
    session.commit()
    error = _login_fails(session, person.user_name, GOOD_PASSWORD, throttle)
    assert error.message == GENERIC_LOGIN_FAILURE
    assert details(events(session, "authn:password:failure")[-1])["reason"] == reason


def test_lockout_after_threshold_same_message_then_reset_after_success(session, person, throttle, settings):
    threshold = settings.lockout_threshold
    for i in range(threshold):
        with time_machine.travel(T0 + dt.timedelta(minutes=10 * i), tick=False):
            _login_fails(session, person.user_name, f"mauvais essai {i}", throttle)
    assert tags_of(session, "authn:account:") == ["authn:account:locked"]
    locked_at = T0 + dt.timedelta(minutes=10 * (threshold - 1))
    # Locked: even the right password gets the generic message, and it is not checked.
    with time_machine.travel(locked_at + dt.timedelta(minutes=1), tick=False):
        error = _login_fails(session, person.user_name, GOOD_PASSWORD, throttle)
        assert error.message == GENERIC_LOGIN_FAILURE and type(error) is InvalidCredentials
    refusal = events(session, "authn:password:failure")[-1]
    assert refusal.outcome == "refused" and details(refusal)["reason"] == "locked"
    # The lock expires after lockout_minutes; a success then resets the counter.
    with time_machine.travel(locked_at + dt.timedelta(minutes=settings.lockout_minutes, seconds=1), tick=False):
        services.verify_password(session, person.user_name, GOOD_PASSWORD, client_ip="10.0.0.1", throttle=throttle)
        session.commit()
        assert throttle.status(session, "password", person.user_name) is None
        for i in range(3):  # a fresh series of free failures
            _login_fails(session, person.user_name, "encore faux", throttle)


def test_unknown_accounts_lock_like_real_ones(session, throttle, settings):
    for i in range(settings.lockout_threshold):
        with time_machine.travel(T0 + dt.timedelta(minutes=10 * i), tick=False):
            _login_fails(session, "inconnu", "nimporte quoi", throttle)
    with time_machine.travel(T0 + dt.timedelta(minutes=10 * settings.lockout_threshold), tick=False):
        _login_fails(session, "inconnu", "nimporte quoi", throttle)
    assert details(events(session, "authn:password:failure")[-1])["reason"] == "locked"


def test_fast_failures_are_slowed_down(session, person, throttle):
    with time_machine.travel(T0, tick=False):
        for _ in range(4):
            _login_fails(session, person.user_name, "faux faux faux", throttle)
        with pytest.raises(Throttled) as info:
            services.verify_password(session, person.user_name, GOOD_PASSWORD, client_ip="10.0.0.1",
                                     throttle=throttle)
    assert info.value.retry_after == 1 and info.value.http_status == 429
    assert details(events(session, "authn:password:failure")[-1])["reason"] == "throttled"


def test_unknown_user_costs_the_same_work(session, person, db_throttle, monkeypatch):
    # An unknown user name costs one argon2 verification with the real parameters, like a wrong password
    # for a real account: the response time does not tell whether the account exists.
    pw.warm_up()
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self, hash, password):  # type: ignore[no-untyped-def]
        calls.append(hash.split("$")[3])
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)

    def attempt(user: str, hour: int) -> int:
        before = len(calls)
        with time_machine.travel(T0 + dt.timedelta(hours=hour), tick=False):
            with pytest.raises(InvalidCredentials) as info:
                services.verify_password(session, user, "faux mot de passe", client_ip=None, throttle=db_throttle)
        assert info.value.message == GENERIC_LOGIN_FAILURE
        return len(calls) - before

    assert attempt(person.user_name, 0) == attempt("inconnu", 10) == 1
    assert set(calls) == {"m=19456,t=2,p=1"}


def test_old_hash_parameters_are_upgraded_on_login(session, person, throttle):
    [mie] = services.active_mie_for(session, person, "password")
    cred = session.get(PasswordCredential, mie.id)
    cred.hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(GOOD_PASSWORD)
    session.commit()
    services.verify_password(session, person.user_name, GOOD_PASSWORD, client_ip=None, throttle=throttle)
    session.commit()
    session.expire_all()
    assert session.get(PasswordCredential, mie.id).hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert details(events(session, "authn:password:success")[-1])["rehashed"] is True
