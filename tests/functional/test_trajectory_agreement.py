"""The trajectory and the provider agree on who is compliant: for the same identities and the same day, the
trajectory's status is ``compliant`` exactly when the provider's verdict (``policy explain``,
hospiconnect.idp.policy_explain) says the person holds a compliant MIE."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from hospiconnect.authenticators import services as mies
from hospiconnect.authenticators.models import Mie, MieTransition
from hospiconnect.authorizations import services as exceptions
from hospiconnect.db import utcnow
from hospiconnect.idp import policy_explain
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from hospiconnect.trajectory.facts import load_people
from hospiconnect.trajectory.indicators import person_status
from hospiconnect.trajectory.models import TrajectoryPersonStatus
from hospiconnect.trajectory.snapshots import take_snapshot
from tests.factories import create_identity
from tests.oidc_helpers import register

POLICY = load_policy(DEFAULT_POLICY_PATH)
UTC = dt.timezone.utc


def mie_row(session, identity, mie_type: str, *, activated: dt.datetime, proofed: bool = True,
            revoked: dt.datetime | None = None, transitions: bool = True) -> Mie:
    """An MIE written as enrollment leaves it: activated (after an identity check when ``proofed``), revoked
    when told; with its transitions, or without them (rows written directly)."""
    mie = Mie(identity_id=identity.id, type=mie_type, label=mie_type, activated_at=activated,
              status="revoked" if revoked else "active", revoked_at=revoked,
              proofing_method="face_to_face" if proofed else None, proofing_at=activated if proofed else None)
    session.add(mie)
    session.flush()
    if transitions:
        session.add(MieTransition(mie_id=mie.id, from_status="pending", to_status="active", at=activated,
                                  actor="test"))
        if revoked:
            session.add(MieTransition(mie_id=mie.id, from_status="active", to_status="revoked", at=revoked,
                                      actor="test"))
    session.commit()
    return mie


def test_the_trajectory_and_the_provider_agree_on_who_is_compliant(rt, session):
    now = utcnow()
    today = POLICY.local_day(now)
    yesterday = now - dt.timedelta(days=1)
    long_ago = dt.datetime(2025, 9, 1, 9, tzinfo=UTC)
    dpi = register(session, rt, name="DPI", sensitivity="health-data")

    people = {}
    people["totp"] = p = create_identity(session)
    mie_row(session, p, "password", activated=long_ago, proofed=False)
    mie_row(session, p, "totp", activated=long_ago, transitions=False)
    people["unproofed_totp"] = p = create_identity(session)
    mie_row(session, p, "totp", activated=long_ago, proofed=False)
    people["password_only"] = p = create_identity(session)
    mie_row(session, p, "password", activated=long_ago, proofed=False)
    people["no_mie"] = create_identity(session, contract_type="trainee")
    people["key_via_services"] = p = create_identity(session, with_rpps=True)
    key = mies.create_mie(session, p, "webauthn", actor="test")
    key.proofing_method, key.proofing_at = "fcplus", now
    mies.transition(session, key, "active", actor="test")
    session.commit()
    people["suspended_totp"] = p = create_identity(session)
    totp = mies.create_mie(session, p, "totp", actor="test")
    totp.proofing_method, totp.proofing_at = "face_to_face", now
    mies.transition(session, totp, "active", actor="test")
    mies.transition(session, totp, "suspended", actor="test")
    session.commit()
    people["revoked_yesterday"] = p = create_identity(session)
    mie_row(session, p, "totp", activated=long_ago, revoked=yesterday)
    people["exempt"] = p = create_identity(session, contract_type="interim")
    mie_row(session, p, "password", activated=long_ago, proofed=False)
    exceptions.grant_exception(session, POLICY, app_class="health-data", relaxation={"max_auth_age": 86400},
                               justification="Clé de sécurité en commande", identity=p,
                               ends_at=now + dt.timedelta(days=3), actor="rssi", now=now)
    session.commit()

    take_snapshot(session, POLICY, today, now=now)
    session.commit()
    stored = {row.identity_id: row.status for row in session.scalars(select(TrajectoryPersonStatus))}
    assert set(stored) == {p.id for p in people.values()}

    def provider_says(identity, day: dt.date) -> bool:
        data = policy_explain.explain(session, POLICY, identity_key=identity.public_id, client_id=dpi.client_id,
                                      as_of=day)
        return data["compliance"]["compliant"]

    verdicts = {name: provider_says(p, today) for name, p in people.items()}
    assert {name for name, ok in verdicts.items() if ok} == {"totp", "key_via_services"}
    for name, identity in people.items():
        assert (stored[identity.id] == "compliant") is verdicts[name], name
    assert stored[people["exempt"].id] == "exempt"

    # The same on earlier days, from the history (the MIE revoked yesterday was compliant the day before, and no
    # longer on the day of its revocation).
    for day in (today - dt.timedelta(days=1), today - dt.timedelta(days=2), dt.date(2025, 12, 31),
                dt.date(2026, 1, 1), dt.date(2025, 8, 31)):
        statuses = {f.identity_id: person_status(POLICY, f, day).status
                    for f in load_people(session, as_of=day, policy=POLICY, now=now)}
        for name, identity in people.items():
            assert (statuses.get(identity.id) == "compliant") is provider_says(identity, day), (name, day)
        if day >= today - dt.timedelta(days=2):
            assert (statuses[people["revoked_yesterday"].id] == "compliant") is (day < today - dt.timedelta(days=1))
