"""Recovery codes: generation replaces the unused ones, single use, throttling, notification."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from hospiconnect.authenticators import services
from hospiconnect.authenticators.interfaces import BurnedRecoveryCode, InvalidRecoveryCode, Locked
from hospiconnect.authenticators.models import RecoveryCode
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
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


def test_generation_returns_ten_codes_stored_as_hashes(session, keys):
    person = create_identity(session)
    codes = services.generate_recovery_codes(session, person, actor="self", keys=keys)
    session.commit()
    assert len(codes) == 10 == len(set(codes))
    stored = session.scalars(select(RecoveryCode).where(RecoveryCode.identity_id == person.id)).all()
    assert len(stored) == 10 and all(len(r.code_hash) == 64 for r in stored)
    text = journal_text(session) + " ".join(r.code_hash for r in stored)
    assert not any(c in text or c.replace("-", "") in text for c in codes)
    assert tags_of(session, "mie:recovery_codes:") == ["mie:recovery_codes:generated"]
    assert services.remaining_recovery_codes(session, person) == 10
    assert "Nouveaux codes de secours" in notifications(session)[-1].subject


def test_regeneration_replaces_unused_codes(session, keys, db_throttle):
    person = create_identity(session)
    old = services.generate_recovery_codes(session, person, actor="self", keys=keys)
    services.use_recovery_code(session, person, old[0], client_ip=None, throttle=db_throttle, keys=keys)
    session.commit()
    new = services.generate_recovery_codes(session, person, actor="self", keys=keys)
    session.commit()
    assert details(events(session, "mie:recovery_codes:")[-1])["generation"] == 2
    assert services.remaining_recovery_codes(session, person) == 10
    with pytest.raises(InvalidRecoveryCode):
        services.use_recovery_code(session, person, old[1], client_ip=None, throttle=db_throttle, keys=keys)
    services.use_recovery_code(session, person, new[1], client_ip=None, throttle=db_throttle, keys=keys)


def test_use_once_any_spelling_then_burned(session, keys, throttle):
    person = create_identity(session)
    codes = services.generate_recovery_codes(session, person, actor="self", keys=keys)
    session.commit()
    typed = " " + codes[3].lower().replace("-", " ") + " "
    assert services.use_recovery_code(session, person, typed, client_ip="10.0.0.3", throttle=throttle,
                                      keys=keys) is None
    session.commit()
    used = events(session, "authn:recovery_code:")[-1]
    assert used.tag == "authn:recovery_code:used" and details(used)["remaining"] == 9
    assert "Code de secours utilisé" in notifications(session)[-1].subject
    assert "Il vous reste 9 code(s)" in notifications(session)[-1].body
    with pytest.raises(BurnedRecoveryCode) as info:
        services.use_recovery_code(session, person, codes[3], client_ip="10.0.0.3", throttle=throttle, keys=keys)
    assert info.value.message == "Ce code de secours a déjà été utilisé."
    assert details(events(session, "authn:recovery_code:failure")[-1])["reason"] == "already_used"
    assert codes[3] not in journal_text(session)


@pytest.mark.parametrize("code, reason", [("ABCD-EFGH-JKMN-PQRS", "invalid"), ("n'importe quoi", "invalid_format"),
                                          ("", "invalid_format")])
def test_wrong_codes(session, keys, throttle, code, reason):
    person = create_identity(session)
    services.generate_recovery_codes(session, person, actor="self", keys=keys)
    session.commit()
    with pytest.raises(InvalidRecoveryCode) as info:
        services.use_recovery_code(session, person, code, client_ip=None, throttle=throttle, keys=keys)
    assert type(info.value) is InvalidRecoveryCode and info.value.message == "Code de secours incorrect."
    assert details(events(session, "authn:recovery_code:failure")[-1])["reason"] == reason


def test_someone_elses_code_is_invalid(session, keys, db_throttle):
    alice, bob = create_identity(session), create_identity(session)
    codes = services.generate_recovery_codes(session, alice, actor="self", keys=keys)
    services.generate_recovery_codes(session, bob, actor="self", keys=keys)
    session.commit()
    with pytest.raises(InvalidRecoveryCode):
        services.use_recovery_code(session, bob, codes[0], client_ip=None, throttle=db_throttle, keys=keys)


def test_suspended_person_cannot_use_a_code(session, keys, db_throttle):
    person = create_identity(session)
    codes = services.generate_recovery_codes(session, person, actor="self", keys=keys)
    directory.suspend(session, person, actor="rh", reason="départ")
    session.commit()
    with pytest.raises(InvalidRecoveryCode):
        services.use_recovery_code(session, person, codes[0], client_ip=None, throttle=db_throttle, keys=keys)
    assert details(events(session, "authn:recovery_code:failure")[-1])["reason"] == "identity_suspended"


def test_guessing_locks(session, keys, throttle, settings):
    import time_machine

    person = create_identity(session)
    codes = services.generate_recovery_codes(session, person, actor="self", keys=keys)
    session.commit()
    for i in range(settings.lockout_threshold):
        with time_machine.travel(T0 + dt.timedelta(minutes=5 * i), tick=False):
            with pytest.raises(InvalidRecoveryCode):
                services.use_recovery_code(session, person, "0000-0000-0000-0000", client_ip=None,
                                           throttle=throttle, keys=keys)
    with time_machine.travel(T0 + dt.timedelta(minutes=5 * settings.lockout_threshold), tick=False):
        with pytest.raises(Locked):
            services.use_recovery_code(session, person, codes[0], client_ip=None, throttle=throttle, keys=keys)
    assert services.remaining_recovery_codes(session, person) == 10


def test_racing_uses_of_one_code_succeed_once(rt, keys):
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100))
    with rt.db.session() as s:
        person = create_identity(s)
        codes = services.generate_recovery_codes(s, person, actor="self", keys=keys)
        person_id = person.id
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt() -> None:
        with rt.db.sessionmaker() as s:
            identity = s.get(Identity, person_id)
            barrier.wait()
            try:
                services.use_recovery_code(s, identity, codes[0], client_ip=None, throttle=throttle, keys=keys)
                s.commit()
                outcomes.append("used")
            except BurnedRecoveryCode:
                outcomes.append("burned")

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["burned", "burned", "burned", "used"]
