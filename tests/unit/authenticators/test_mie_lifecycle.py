"""MIE lifecycle: creation, transitions, labels, removal of the last second factor, lookups."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hospiconnect.authenticators import services
from hospiconnect.authenticators.interfaces import InvalidLabel, InvalidMieTransition, LastSecondFactor, MieNotFound
from hospiconnect.authenticators.models import Mie, MieTransition, TotpCredential
from tests.factories import create_identity
from tests.unit.authenticators._mie_helpers import details, events, keys, notifications, tags_of  # noqa: F401


def make_active(session, identity, mie_type="totp", label=""):
    mie = services.create_mie(session, identity, mie_type, actor="test", label=label)
    services.transition(session, mie, "active", actor="test", reason="ok")
    session.commit()
    return mie


def test_create_is_pending_recorded_journaled_and_notified(session):
    person = create_identity(session)
    mie = services.create_mie(session, person, "totp", actor="guichet:agent1", client_ip="10.0.0.5")
    session.commit()
    assert mie.status == "pending" and mie.label == "Application d'authentification" and mie.amr == ["otp"]
    assert [(t.from_status, t.to_status, t.actor) for t in mie.transitions] == [(None, "pending", "guichet:agent1")]
    created = events(session, "mie:")[-1]
    assert created.tag == "mie:totp:created" and created.subject == person.public_id
    assert created.client_ip == "10.0.0.5" and details(created)["mie"] == mie.public_id
    [note] = notifications(session)
    assert note.recipient == person.email and "en cours d'enregistrement" in note.body


def test_unknown_type_is_refused(session):
    person = create_identity(session)
    with pytest.raises(ValueError):
        services.create_mie(session, person, "sms", actor="test")


@pytest.mark.parametrize("path, tags", [
    (["active"], ["activated"]),
    (["active", "suspended", "active"], ["activated", "suspended", "reactivated"]),
    (["revoked"], ["revoked"]),
    (["active", "suspended", "revoked"], ["activated", "suspended", "revoked"]),
])
def test_allowed_transitions(session, path, tags):
    person = create_identity(session)
    mie = services.create_mie(session, person, "webauthn", actor="test")
    for status in path:
        services.transition(session, mie, status, actor="officer:rssi", reason="motif")
    session.commit()
    assert [t.to_status for t in mie.transitions] == ["pending", *path]
    assert tags_of(session, "mie:webauthn:") == ["mie:webauthn:created"] + [f"mie:webauthn:{t}" for t in tags]
    assert len(notifications(session)) == 1 + len(path)
    assert (mie.activated_at is not None) == ("active" in path)
    assert (mie.revoked_at is not None) == (path[-1] == "revoked")


@pytest.mark.parametrize("path, refused", [
    ([], "suspended"), (["active"], "pending"), (["revoked"], "active"), (["revoked"], "revoked"),
    (["active", "suspended"], "suspended"), (["active"], "active"),
])
def test_refused_transitions_change_nothing(session, path, refused):
    person = create_identity(session)
    mie = services.create_mie(session, person, "totp", actor="test")
    for status in path:
        services.transition(session, mie, status, actor="test")
    session.commit()
    before = len(events(session))
    with pytest.raises(InvalidMieTransition) as info:
        services.transition(session, mie, refused, actor="test")
    assert "Impossible de passer" in info.value.message
    assert mie.status == (path[-1] if path else "pending")
    assert len(events(session)) == before


def test_revoking_a_totp_erases_its_seed(session, keys):
    person = create_identity(session)
    mie, _, _ = services.begin_totp(session, person, label="Téléphone", actor="test", keys=keys, issuer="CHU")
    session.commit()
    assert session.get(TotpCredential, mie.id).secret_enc.startswith("k")
    services.transition(session, mie, "revoked", actor="test")
    session.commit()
    session.expire_all()
    assert session.get(TotpCredential, mie.id).secret_enc == ""


def test_rename(session):
    person = create_identity(session)
    mie = make_active(session, person)
    services.rename(session, mie, "  Téléphone pro  ", actor="self")
    session.commit()
    assert mie.label == "Téléphone pro"
    renamed = events(session, "mie:totp:renamed")[0]
    assert details(renamed) == {"mie": mie.public_id, "type": "totp", "from": "Application d'authentification",
                                "to": "Téléphone pro"}
    assert "renommé en « Téléphone pro »" in notifications(session)[-1].body
    count = len(events(session))
    services.rename(session, mie, "Téléphone pro", actor="self")  # unchanged: nothing journaled
    assert len(events(session)) == count


@pytest.mark.parametrize("label, fragment", [
    ("", "Donnez un nom"), ("   ", "Donnez un nom"), ("x" * 61, "60 caractères"),
    ("clé\x00", "non autorisés"), ("clé\u202eevil", "non autorisés"), ("a\nb", "non autorisés"),
])
def test_bad_labels(session, label, fragment):
    person = create_identity(session)
    mie = make_active(session, person)
    with pytest.raises(InvalidLabel) as info:
        services.rename(session, mie, label, actor="self")
    assert fragment in info.value.message and info.value.field == "label"
    with pytest.raises(InvalidLabel):
        services.create_mie(session, person, "totp", actor="self", label=label or " ")


def test_label_of_60_characters_is_fine(session):
    person = create_identity(session)
    assert services.rename(session, make_active(session, person), "é" * 60, actor="self").label == "é" * 60


def test_revoked_mie_cannot_be_renamed(session):
    person = create_identity(session)
    mie = make_active(session, person)
    services.remove(session, mie, actor="officer", allow_last=True)
    with pytest.raises(InvalidMieTransition):
        services.rename(session, mie, "Nouveau nom", actor="self")


def test_last_second_factor_cannot_be_removed(session):
    person = create_identity(session)
    totp_mie = make_active(session, person, "totp")
    make_active(session, person, "password")
    with pytest.raises(LastSecondFactor) as info:
        services.remove(session, totp_mie, actor="self")
    assert "dernier second facteur" in info.value.message
    session.rollback()
    assert session.get(Mie, totp_mie.id).status == "active"


def test_a_second_factor_can_go_when_another_remains(session):
    person = create_identity(session)
    first = make_active(session, person, "totp")
    second = make_active(session, person, "webauthn")
    services.remove(session, first, actor="self")
    session.commit()
    assert first.status == "revoked"
    assert [m.public_id for m in services.active_mie_for(session, person)] == [second.public_id]
    with pytest.raises(LastSecondFactor):
        services.remove(session, second, actor="self")


def test_officer_may_remove_the_last_one(session):
    person = create_identity(session)
    mie = make_active(session, person)
    services.remove(session, mie, actor="officer:rssi", allow_last=True, reason="téléphone perdu")
    session.commit()
    assert mie.status == "revoked" and mie.transitions[-1].reason == "téléphone perdu"
    assert not services.has_second_factor(session, person)
    with pytest.raises(InvalidMieTransition):
        services.remove(session, mie, actor="officer:rssi", allow_last=True)


def test_pending_and_password_mie_are_not_protected(session):
    person = create_identity(session)
    pending = services.create_mie(session, person, "totp", actor="self")
    password = make_active(session, person, "password")
    services.remove(session, pending, actor="self")
    services.remove(session, password, actor="self")
    assert (pending.status, password.status) == ("revoked", "revoked")


def test_lists_and_lookups(session):
    alice = create_identity(session)
    bob = create_identity(session)
    a1 = make_active(session, alice, "password")
    a2 = services.create_mie(session, alice, "totp", actor="t")
    a3 = make_active(session, alice, "webauthn")
    services.remove(session, a3, actor="officer", allow_last=True)
    b1 = make_active(session, bob, "totp")
    session.commit()
    assert [m.id for m in services.list_mie(session, alice)] == [a1.id, a2.id, a3.id]
    assert [m.id for m in services.list_mie(session, alice, include_revoked=False)] == [a1.id, a2.id]
    assert [m.id for m in services.active_mie_for(session, alice)] == [a1.id]
    assert services.active_mie_for(session, alice, "totp") == []
    assert services.get_mie(session, alice, a2.public_id).id == a2.id
    with pytest.raises(MieNotFound) as info:
        services.get_mie(session, alice, b1.public_id)  # someone else's
    assert info.value.http_status == 404
    with pytest.raises(MieNotFound):
        services.get_mie(session, alice, "00000000-0000-0000-0000-000000000000")
    assert services.has_second_factor(session, bob) and not services.has_second_factor(session, alice)


def test_no_email_means_no_notification(session):
    person = create_identity(session, email="")
    make_active(session, person)
    assert notifications(session) == []


def test_every_mie_stays_recorded(session):
    person = create_identity(session)
    mie = make_active(session, person)
    services.remove(session, mie, actor="officer", allow_last=True)
    session.commit()
    rows = session.scalars(select(MieTransition).where(MieTransition.mie_id == mie.id).order_by(MieTransition.id)).all()
    assert [r.to_status for r in rows] == ["pending", "active", "revoked"]
    assert session.get(Mie, mie.id) is not None
