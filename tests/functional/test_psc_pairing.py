"""Pairing (« appairage ») with Pro Santé Connect through the PSC simulator, with the Flask test client: from
« Mes moyens d'identification » to PSC and back to ``/psc/retour``; by RPPS, by names (the RPPS is filled in),
refusals (mismatch, already linked, cancel, replay) that change nothing and are journaled, the officer's
unlinking, and the national MIE counted by the compliance rule and the trajectory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from html import unescape

import pytest
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.db import utcnow
from hospiconnect.devtools import psc_simulator as sim
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import national
from hospiconnect.enrollment.models import NationalLink, PscTransaction
from hospiconnect.idp import login_session
from hospiconnect.idp.policy_explain import _summary
from hospiconnect.policies import DEFAULT_POLICY_PATH, is_compliant, load_policy
from hospiconnect.policies.context import IdentitySummary
from hospiconnect.trajectory.models import TrajectoryPersonStatus, TrajectorySnapshot
from hospiconnect.trajectory.snapshots import take_snapshot
from tests.factories import create_identity
from tests.fcplus_helpers import wsgi_fetch
from tests.functional.test_psc_simulator import choose
from tests.functional.test_remote_enrollment import csrf, text_of

AUTHORIZE = "http://localhost/simulateur-psc/auth/realms/esante-wallet/protocol/openid-connect/auth?"


@pytest.fixture()
def psc_app(app):  # type: ignore[no-untyped-def]
    app.extensions["hospiconnect.psc_fetch"] = wsgi_fetch(app)
    national.clear_caches()
    yield app
    national.clear_caches()


def signed_in(app, rt, identity, *, mfa: bool = True):  # type: ignore[no-untyped-def]
    client = app.test_client()
    with rt.db.session() as s:
        _sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=identity.id,
                                          amr=["mfa", "otp", "pwd"] if mfa else ["pwd"], acr="eidas2" if mfa else "eidas1",
                                          mfa=mfa, existing=None, client_ip="127.0.0.1", user_agent="pytest",
                                          now=utcnow())
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)
    return client


def professional(session, key: str, *, with_rpps: bool = True, **overrides):  # type: ignore[no-untyped-def]
    pro = sim.TEST_IDENTITIES[key]
    values = {"birth_family_name": pro.family_name, "given_names": pro.given_name, "roles": "medecin"}
    if with_rpps:
        values["rpps"] = pro.rpps
    return create_identity(session, **{**values, **overrides})


def pair(browser, key: str, *, cancel: bool = False):  # type: ignore[no-untyped-def]
    """Press « Associer mon identité nationale », choose ``key`` at the simulator; return the callback's answer."""
    page = browser.get("/mes-moyens")
    assert "Identité nationale (Pro Santé Connect)" in text_of(page)
    started = browser.post("/mes-moyens/identite-nationale", data={"csrf_token": csrf(page)})
    assert started.status_code == 303, text_of(started)
    url = started.headers["Location"]
    assert url.startswith(AUTHORIZE) and "scope=openid+scope_all" in url and "acr_values=eidas1" in url
    assert "prompt=login" in url  # never PSC's leftover session of someone else
    params = choose(browser, url, key, cancel=cancel)
    return browser.get("/psc/retour?" + urllib.parse.urlencode(params)), params


def tags_of(session, identity) -> list[str]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return [e.tag for e in session.scalars(select(AuditEvent).where(AuditEvent.subject == identity.public_id)
                                           .order_by(AuditEvent.id))]


def national_mies(session, identity) -> list[Mie]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(Mie).where(Mie.identity_id == identity.id, Mie.type.in_(("cps", "e-cps")))))


def test_pairing_by_rpps_links_and_activates_the_card(psc_app, rt, session):
    person = professional(session, "medecin-cps")
    browser = signed_in(psc_app, rt, person)
    answer, _params = pair(browser, "medecin-cps")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/psc/appairage")
    done = browser.get("/psc/appairage")
    assert done.status_code == 200 and "Identité nationale associée" in text_of(done)
    assert sim.TEST_IDENTITIES["medecin-cps"].rpps in text_of(done)
    session.expire_all()
    link = session.scalar(select(NationalLink).where(NationalLink.identity_id == person.id))
    assert link is not None and link.method == "rpps" and link.unlinked_at is None
    assert (link.issuer, link.sub) == (sim.issuer(rt.settings), sim.TEST_IDENTITIES["medecin-cps"].sub)
    assert national.find_identity(session, link.issuer, link.sub).id == person.id
    [mie] = national_mies(session, person)
    assert (mie.type, mie.status, mie.proofing_method) == ("cps", "active", "ans")
    assert {"national:link:started", "national:link:created", "mie:cps:created", "mie:cps:activated"} \
        <= set(tags_of(session, person))
    assert session.scalar(select(PscTransaction)) is None  # consumed
    page = text_of(browser.get("/mes-moyens"))
    assert "Carte CPS (Pro Santé Connect)" in page and "Votre compte est associé" in page
    assert "Associer mon identité nationale" not in page


def test_pairing_by_names_fills_in_the_rpps(psc_app, rt, session):
    person = professional(session, "pharmacienne-ecps", with_rpps=False, birth_family_name="Le Goff",
                          given_names="Maëlys Anne")
    assert person.rpps is None
    answer, _ = pair(signed_in(psc_app, rt, person), "pharmacienne-ecps")
    assert answer.status_code == 303, text_of(answer)
    session.expire_all()
    fresh = session.get(Identity, person.id)
    assert fresh.rpps == sim.TEST_IDENTITIES["pharmacienne-ecps"].rpps and fresh.population == "rpps"
    link = national.live_link(session, fresh)
    assert link.method == "names" and link.rpps == fresh.rpps
    assert [m.type for m in national_mies(session, person)] == ["e-cps"]
    assert {"directory:identity:updated", "national:rpps:filled", "national:link:created"} \
        <= set(tags_of(session, person))


@pytest.mark.parametrize(("overrides", "reason", "words"), [
    ({"rpps": None}, "rpps_mismatch", "ne correspond pas à celui de l'annuaire"),
    ({"with_rpps": False, "birth_family_name": "Durand"}, "names_mismatch", "nom et prénom"),
])
def test_a_mismatch_is_refused_journaled_and_changes_nothing(psc_app, rt, session, overrides, reason, words):
    from tests.factories import make_rpps

    if "rpps" in overrides:
        overrides = {"rpps": make_rpps(4242)}
    person = professional(session, "infirmier-ecps", **overrides)
    before = person.rpps
    answer, _ = pair(signed_in(psc_app, rt, person), "infirmier-ecps")
    assert answer.status_code == 409 and "Association refusée" in text_of(answer) and words in text_of(answer)
    session.expire_all()
    assert session.scalar(select(NationalLink)) is None and national_mies(session, person) == []
    assert session.get(Identity, person.id).rpps == before
    refused = session.scalars(select(AuditEvent).where(AuditEvent.tag == "national:link:refused")).all()
    assert len(refused) == 1 and reason in refused[0].details and refused[0].subject == person.public_id


def test_a_national_identity_linked_to_someone_else_is_refused(psc_app, rt, session):
    first = professional(session, "infirmier-ecps")
    assert pair(signed_in(psc_app, rt, first), "infirmier-ecps")[0].status_code == 303
    other = professional(session, "infirmier-ecps", with_rpps=False, birth_date="1991-01-01")
    answer, _ = pair(signed_in(psc_app, rt, other), "infirmier-ecps")
    assert answer.status_code == 409 and "déjà associée au compte d'une autre personne" in text_of(answer)
    session.expire_all()
    assert national.live_link(session, session.get(Identity, other.id)) is None
    assert session.get(Identity, other.id).rpps is None and national_mies(session, other) == []
    assert "subject_linked_elsewhere" in session.scalars(
        select(AuditEvent.details).where(AuditEvent.tag == "national:link:refused")).one()


def test_cancel_and_replay_are_refused(psc_app, rt, session):
    person = professional(session, "medecin-cps")
    browser = signed_in(psc_app, rt, person)
    answer, _ = pair(browser, "medecin-cps", cancel=True)
    assert answer.status_code == 200 and "annulé" in text_of(answer)
    answer, params = pair(browser, "medecin-cps")
    assert answer.status_code == 303
    replay = browser.get("/psc/retour?" + urllib.parse.urlencode(params))
    assert replay.status_code == 400
    session.expire_all()
    assert len(session.scalars(select(NationalLink)).all()) == 1


def test_pairing_needs_two_factors(psc_app, rt, session):
    person = professional(session, "medecin-cps")
    browser = signed_in(psc_app, rt, person, mfa=False)
    page = browser.get("/mes-moyens")
    assert "Associer mon identité nationale" not in text_of(page)
    assert "deux facteurs datant de moins de" in text_of(page)
    with browser.session_transaction() as flask_session:  # a valid CSRF token for this browser
        flask_session["csrf_token"] = "x" * 40
    with psc_app.test_request_context():
        from flask import session as request_session
        from flask_wtf.csrf import generate_csrf

        request_session["csrf_token"] = "x" * 40
        token = generate_csrf()
    refused = browser.post("/mes-moyens/identite-nationale", data={"csrf_token": token})
    assert refused.status_code == 403, text_of(refused)
    assert session.scalar(select(PscTransaction)) is None


def test_an_officer_unlinks_with_a_reason(psc_app, rt, session):
    person = professional(session, "medecin-cps")
    assert pair(signed_in(psc_app, rt, person), "medecin-cps")[0].status_code == 303
    officer = create_identity(session, roles="enrollment_officer", birth_family_name="Agent")
    desk = signed_in(psc_app, rt, officer)
    page = desk.get(f"/guichet/personnes/{person.public_id}")
    assert "Supprimer l'association" in text_of(page)
    session.expire_all()
    link = national.live_link(session, session.get(Identity, person.id))
    url = f"/guichet/personnes/{person.public_id}/identite-nationale/suppression"
    empty = desk.post(url, data={"csrf_token": csrf(page), "link": link.public_id, "reason": "  "})
    assert empty.status_code == 400 and "motif" in text_of(empty)
    done = desk.post(url, data={"csrf_token": csrf(page), "link": link.public_id,
                                "reason": "Carte CPS déclarée volée"})
    assert done.status_code == 303, text_of(done)
    session.expire_all()
    ended = session.get(NationalLink, link.id)
    assert ended.unlinked_at is not None and ended.unlink_reason == "Carte CPS déclarée volée"
    assert ended.unlinked_by == officer.user_name or officer.user_name in ended.unlinked_by
    assert [m.status for m in national_mies(session, person)] == ["revoked"]
    assert national.find_identity(session, ended.issuer, ended.sub) is None
    assert "national:link:removed" in tags_of(session, person)
    # The person may pair again afterwards (a new live link; the old one is kept).
    assert pair(signed_in(psc_app, rt, person), "medecin-cps")[0].status_code == 303
    session.expire_all()
    assert len(session.scalars(select(NationalLink).where(NationalLink.identity_id == person.id)).all()) == 2


def test_the_national_mie_is_compliant_and_counted_by_the_trajectory(psc_app, rt, session):
    person = professional(session, "infirmier-ecps")
    assert pair(signed_in(psc_app, rt, person), "infirmier-ecps")[0].status_code == 303
    session.expire_all()
    [mie] = national_mies(session, person)
    policy = load_policy(DEFAULT_POLICY_PATH)
    today = dt.date.today()
    assert is_compliant(policy, IdentitySummary(mies=(_summary(mie),), population="rpps"), today + dt.timedelta(1))
    take_snapshot(session, policy, today)
    session.commit()
    counts = {row.indicator: row.count for row in session.scalars(
        select(TrajectorySnapshot).where(TrajectorySnapshot.day == today, TrajectorySnapshot.dimension == "all"))}
    assert counts["mie_active:e-cps"] == 1 and counts["rpps_linked"] >= 1


def test_the_trajectory_counts_the_pairing_until_it_is_ended(psc_app, rt, session):
    person = professional(session, "medecin-cps")
    assert pair(signed_in(psc_app, rt, person), "medecin-cps")[0].status_code == 303
    policy = load_policy(DEFAULT_POLICY_PATH)
    today = policy.local_day(utcnow())

    def snapshot() -> tuple[int, bool]:
        take_snapshot(session, policy, today)
        session.commit()
        paired = session.scalar(select(TrajectorySnapshot.count).where(
            TrajectorySnapshot.day == today, TrajectorySnapshot.indicator == "psc_paired",
            TrajectorySnapshot.dimension == "all"))
        row = session.get(TrajectoryPersonStatus, person.id)
        return paired, row.psc_paired

    assert snapshot() == (1, True)
    session.expire_all()
    link = national.live_link(session, session.get(Identity, person.id))
    national.unlink(session, link.public_id, "agent", "Carte CPS déclarée volée")
    session.commit()
    assert snapshot() == (0, False)  # unlinked today: not paired at the end of the day


def test_the_live_link_is_unique_in_the_database(session):
    person = create_identity(session)
    other = create_identity(session)
    session.add(NationalLink(identity_id=person.id, issuer="https://psc", sub="s1", method="rpps", linked_by="t"))
    session.commit()
    from sqlalchemy.exc import IntegrityError

    for identity_id, sub in ((other.id, "s1"), (person.id, "s2")):
        session.add(NationalLink(identity_id=identity_id, issuer="https://psc", sub=sub, method="rpps",
                                 linked_by="t"))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
    session.add(NationalLink(identity_id=person.id, issuer="https://psc", sub="s1", method="rpps", linked_by="t",
                             unlinked_at=utcnow()))
    session.commit()  # an ended link does not count


def test_the_demo_seed_gives_the_simulator_professionals_two_factors(rt, session, tmp_path):
    from hospiconnect.authenticators import services as mie_services
    from hospiconnect.devtools.seed_psc import PSC_DEMO_PEOPLE, ensure_psc_demo_people

    demo = dataclasses.replace(rt.settings, env="demo", instance_path=tmp_path)
    lines = ensure_psc_demo_people(session, rt.keys, demo)
    session.commit()
    assert len(lines) == 3 and all("otpauth://" in line for line in lines)
    assert ensure_psc_demo_people(session, rt.keys, demo) == []
    for key, _external, user_name, _birth, _gender, with_rpps in PSC_DEMO_PEOPLE:
        identity = session.scalar(select(Identity).where(Identity.user_name == user_name))
        assert identity.status == "active" and (identity.rpps == sim.TEST_IDENTITIES[key].rpps) == with_rpps
        assert mie_services.has_second_factor(session, identity)
