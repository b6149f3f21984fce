"""TOTP services: enrolment, confirmation, verification, replay guard (also under real concurrency)."""

from __future__ import annotations

import datetime as dt
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from sqlalchemy import update

from hospiconnect import crypto
from hospiconnect.authenticators import services, totp
from hospiconnect.authenticators.interfaces import (
    ClockDrift,
    InvalidCode,
    InvalidMieTransition,
    Locked,
    MieNotFound,
    NotEnrolled,
    ReplayedCode,
)
from hospiconnect.authenticators.models import Mie, TotpCredential
from hospiconnect.ratelimit import DatabaseBackend, Throttle, ThrottlePolicy
from tests.factories import create_identity
from tests.unit.authenticators._mie_helpers import (  # noqa: F401
    T0,
    db_throttle,
    details,
    events,
    journal_text,
    keys,
    notifications,
    tags_of,
    throttle,
)


def seed_of(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["secret"][0]


def enrol(session, keys, person, now=T0):
    mie, uri, _ = services.begin_totp(session, person, label="Téléphone", actor="self", keys=keys, issuer="CHU")
    seed = seed_of(uri)
    services.confirm_totp(session, person, mie.public_id, totp.code_at(seed, now), actor="self", keys=keys, now=now)
    session.commit()
    return mie, seed


def step_time(n: int) -> dt.datetime:
    """The start of the n-th step after T0 (so that ±1 windows do not overlap between rounds)."""
    return T0 + dt.timedelta(seconds=totp.PERIOD * n)


def test_begin_stores_only_an_encrypted_seed(session, keys):
    person = create_identity(session)
    mie, uri, svg = services.begin_totp(session, person, label="Téléphone", actor="self", keys=keys,
                                        issuer="CHU de Nantes")
    session.commit()
    seed = seed_of(uri)
    assert mie.status == "pending" and mie.label == "Téléphone"
    assert uri.startswith("otpauth://totp/CHU%20de%20Nantes:" + person.user_name)
    assert svg.startswith("<svg")
    cred = session.get(TotpCredential, mie.id)
    assert seed not in cred.secret_enc and crypto.kid_of(cred.secret_enc) == keys.current_kek_id
    assert crypto.decrypt(keys, cred.secret_enc, f"totp:{mie.id}".encode()).decode() == seed
    assert seed not in journal_text(session)


def test_a_seed_moved_to_another_mie_does_not_decrypt(session, keys, db_throttle):
    person = create_identity(session)
    a, seed = enrol(session, keys, person)
    b, _ = enrol(session, keys, person)
    stolen = session.get(TotpCredential, a.id).secret_enc
    session.execute(update(TotpCredential).where(TotpCredential.mie_id == b.id).values(secret_enc=stolen))
    session.commit()
    services.remove(session, a, actor="test")
    session.commit()
    with pytest.raises(crypto.DecryptionFailed):
        services.verify_totp(session, person, totp.code_at(seed, step_time(5)), client_ip=None,
                             throttle=db_throttle, keys=keys, now=step_time(5))


def test_confirm_activates_and_uses_the_step(session, keys, db_throttle):
    person = create_identity(session)
    mie, seed = enrol(session, keys, person)
    assert mie.status == "active" and mie.activated_at is not None
    assert tags_of(session, "mie:totp:") == ["mie:totp:created", "mie:totp:activated"]
    with pytest.raises(ReplayedCode):  # the confirmation code cannot log in afterwards
        services.verify_totp(session, person, totp.code_at(seed, T0), client_ip=None, throttle=db_throttle,
                             keys=keys, now=T0)


@pytest.mark.parametrize("offset, error", [(5, ClockDrift), (100, InvalidCode)])
def test_confirm_refuses_bad_codes(session, keys, offset, error):
    person = create_identity(session)
    mie, uri, _ = services.begin_totp(session, person, label="Tél", actor="self", keys=keys, issuer="CHU")
    code = totp.code_at(seed_of(uri), T0 + dt.timedelta(seconds=30 * offset))
    with pytest.raises(error):
        services.confirm_totp(session, person, mie.public_id, code, actor="self", keys=keys, now=T0)
    assert mie.status == "pending"


def test_confirm_refuses_bad_format_others_and_non_pending(session, keys):
    person = create_identity(session)
    other = create_identity(session)
    mie, uri, _ = services.begin_totp(session, person, label="Tél", actor="self", keys=keys, issuer="CHU")
    with pytest.raises(InvalidCode) as info:
        services.confirm_totp(session, person, mie.public_id, "12345", actor="self", keys=keys, now=T0)
    assert "6 chiffres" in info.value.message
    with pytest.raises(MieNotFound):
        services.confirm_totp(session, other, mie.public_id, totp.code_at(seed_of(uri), T0), actor="x", keys=keys,
                              now=T0)
    pwd = services.create_mie(session, person, "password", actor="t")
    with pytest.raises(MieNotFound):
        services.confirm_totp(session, person, pwd.public_id, "123456", actor="self", keys=keys, now=T0)
    services.confirm_totp(session, person, mie.public_id, totp.code_at(seed_of(uri), T0), actor="self", keys=keys,
                          now=T0)
    with pytest.raises(InvalidMieTransition):
        services.confirm_totp(session, person, mie.public_id, totp.code_at(seed_of(uri), step_time(1)),
                              actor="self", keys=keys, now=step_time(1))


def test_verify_accepts_once_and_journals(session, keys, throttle):
    person = create_identity(session)
    mie, seed = enrol(session, keys, person)
    now = step_time(3)
    code = totp.code_at(seed, now)
    assert services.verify_totp(session, person, code, client_ip="10.0.0.2", throttle=throttle, keys=keys,
                                now=now).id == mie.id
    session.commit()
    assert session.get(TotpCredential, mie.id).last_step == totp.step_at(now)
    ok = events(session, "authn:totp:")[-1]
    assert (ok.tag, ok.client_ip, details(ok)) == ("authn:totp:success", "10.0.0.2",
                                                   {"mie": mie.public_id, "factor": "totp"})
    with pytest.raises(ReplayedCode) as info:
        services.verify_totp(session, person, code, client_ip="10.0.0.2", throttle=throttle, keys=keys, now=now)
    assert "déjà été utilisé" in info.value.message
    failure = events(session, "authn:totp:")[-1]
    assert failure.tag == "authn:totp:failure" and details(failure)["reason"] == "replayed"
    assert code not in journal_text(session) and seed not in journal_text(session)


def test_clock_drift_has_its_own_message(session, keys, throttle):
    person = create_identity(session)
    enrol(session, keys, person)
    seed = seed_of_person(session, keys, person)
    now = step_time(10)
    with pytest.raises(ClockDrift) as info:
        services.verify_totp(session, person, totp.code_at(seed, now - dt.timedelta(minutes=3)), client_ip=None,
                             throttle=throttle, keys=keys, now=now)
    assert info.value.message == "Code refusé : vérifiez l'heure de votre téléphone."
    assert isinstance(info.value, InvalidCode)
    assert details(events(session, "authn:totp:failure")[-1])["reason"] == "clock_drift"


def seed_of_person(session, keys, person):
    [mie] = services.active_mie_for(session, person, "totp")
    cred = session.get(TotpCredential, mie.id)
    return crypto.decrypt(keys, cred.secret_enc, f"totp:{mie.id}".encode()).decode()


@pytest.mark.parametrize("code, message", [("000000", "Code incorrect."), ("12 34", "Le code doit comporter 6 chiffres.")])
def test_wrong_code(session, keys, throttle, code, message):
    person = create_identity(session)
    enrol(session, keys, person)
    with pytest.raises(InvalidCode) as info:
        services.verify_totp(session, person, code, client_ip=None, throttle=throttle, keys=keys,
                             now=step_time(4))
    assert info.value.message == message and type(info.value) is InvalidCode
    assert details(events(session, "authn:totp:failure")[-1])["reason"] == "invalid"


def test_no_active_totp_is_a_counted_failure(session, keys, db_throttle):
    person = create_identity(session)
    services.begin_totp(session, person, label="Tél", actor="self", keys=keys, issuer="CHU")  # pending only
    session.commit()
    with pytest.raises(NotEnrolled):
        services.verify_totp(session, person, "123456", client_ip=None, throttle=db_throttle, keys=keys, now=T0)
    assert details(events(session, "authn:totp:failure")[-1])["reason"] == "not_enrolled"
    assert db_throttle.status(session, "totp", person.user_name, now=T0).failures == 1


def test_every_failure_counts_and_locks(session, keys, throttle, settings):
    person = create_identity(session)
    _, seed = enrol(session, keys, person)
    for i in range(settings.lockout_threshold):
        with pytest.raises(InvalidCode):
            services.verify_totp(session, person, "000000", client_ip=None, throttle=throttle, keys=keys,
                                 now=step_time(100 + 10 * i))
    now = step_time(100 + 10 * (settings.lockout_threshold - 1) + 2)
    with pytest.raises(Locked):
        services.verify_totp(session, person, totp.code_at(seed, now), client_ip=None, throttle=throttle,
                             keys=keys, now=now)
    assert tags_of(session, "authn:account:") == ["authn:account:locked"]
    assert details(events(session, "authn:totp:failure")[-1])["reason"] == "locked"


def test_success_resets_the_counter(session, keys, throttle):
    person = create_identity(session)
    _, seed = enrol(session, keys, person)
    for i in range(3):
        with pytest.raises(InvalidCode):
            services.verify_totp(session, person, "000000", client_ip=None, throttle=throttle, keys=keys,
                                 now=step_time(10 + i))
    now = step_time(20)
    services.verify_totp(session, person, totp.code_at(seed, now), client_ip=None, throttle=throttle, keys=keys,
                         now=now)
    session.commit()
    assert throttle.status(session, "totp", person.user_name, now=now) is None


def test_any_of_several_apps_works(session, keys, db_throttle):
    person = create_identity(session)
    first, seed1 = enrol(session, keys, person)
    second, seed2 = enrol(session, keys, person, now=step_time(1))
    now = step_time(8)
    assert services.verify_totp(session, person, totp.code_at(seed2, now), client_ip=None, throttle=db_throttle,
                                keys=keys, now=now).id == second.id
    assert services.verify_totp(session, person, totp.code_at(seed1, now), client_ip=None, throttle=db_throttle,
                                keys=keys, now=now).id == first.id


def test_uses_the_server_clock(session, keys, db_throttle):
    person = create_identity(session)
    _, seed = enrol(session, keys, person)
    later = T0 + dt.timedelta(hours=2)
    with time_machine.travel(later, tick=False):
        services.verify_totp(session, person, totp.code_at(seed, later), client_ip=None, throttle=db_throttle,
                             keys=keys)


# --- Concurrency: one code, several requests at once ---------------------------------------------------


def test_two_sessions_same_code_exactly_one_wins(rt, keys):
    """Session A has consumed the step but not committed; B tries the same code, waits for A's lock, then
    finds the step used. Works on PostgreSQL (row lock) and SQLite (database write lock)."""
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy())
    with rt.db.session() as s:
        person = create_identity(s)
        _, seed = enrol(s, keys, person)
        person_id = person.id
    now = step_time(50)
    code = totp.code_at(seed, now)
    a = rt.db.sessionmaker()
    from hospiconnect.directory.models import Identity

    services.verify_totp(a, a.get(Identity, person_id), code, client_ip=None, throttle=throttle, keys=keys, now=now)
    outcome: dict[str, object] = {}

    def second():
        with rt.db.sessionmaker() as b:
            try:
                services.verify_totp(b, b.get(Identity, person_id), code, client_ip=None, throttle=throttle,
                                     keys=keys, now=now)
                b.commit()
                outcome["b"] = "accepted"
            except ReplayedCode:
                outcome["b"] = "replayed"

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the second request must wait for the first one's lock"
    a.commit()
    a.close()
    thread.join(30)
    assert outcome == {"b": "replayed"}


def test_racing_threads_accept_each_code_once(rt, keys):
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100))
    with rt.db.session() as s:
        person = create_identity(s)
        mie, seed = enrol(s, keys, person)
        person_id = person.id
    from hospiconnect.directory.models import Identity

    workers, rounds = 4, 5
    results: list[list[str]] = [[] for _ in range(rounds)]
    errors: list[BaseException] = []
    for r in range(rounds):
        now = step_time(200 + 3 * r)
        code = totp.code_at(seed, now)
        barrier = threading.Barrier(workers)

        def attempt(slot: list[str]) -> None:
            try:
                with rt.db.sessionmaker() as s:
                    identity = s.get(Identity, person_id)
                    barrier.wait()
                    try:
                        services.verify_totp(s, identity, code, client_ip=None, throttle=throttle, keys=keys,
                                             now=now)
                        s.commit()
                        slot.append("accepted")
                    except ReplayedCode:
                        slot.append("replayed")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=attempt, args=(results[r],)) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    for slot in results:
        assert sorted(slot) == ["accepted"] + ["replayed"] * (workers - 1)
    with rt.db.session() as s:
        assert s.get(TotpCredential, mie.id).last_step == totp.step_at(step_time(200 + 3 * (rounds - 1)))
        assert len([e for e in events(s, "authn:totp:success")]) == rounds
