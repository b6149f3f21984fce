"""Remote enrollment through FranceConnect+ in a real Chromium, from the desk's invitation to the first sign-in
to the health-data demo app.

The application runs in the ``demo`` environment on the demo seed, whose directory holds the people of the
FranceConnect+ simulator (:mod:`hospiconnect.devtools.seed_remote`); the simulator is served by the same
application (no FranceConnect+ is configured). The officer sends the invitation from the case page; with no
real mail delivery outside production the desk shows the link, which the person opens in a fresh browser
context. The person verifies their identity on the simulator, comes back, binds an authenticator app, sets
a password, takes the recovery codes and signs in to « DPI (démo) ».

With ``HOSPICONNECT_SCREENSHOTS=1`` the key steps are saved to docs/images/enrollment/ for the README.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.devtools.fcplus_simulator import TEST_IDENTITIES
from hospiconnect.devtools.seed_remote import REMOTE_DEMO_PEOPLE
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment.models import EnrollmentCase
from tests.browser.test_enrollment_browser import (  # noqa: F401 - fixtures used by the tests below
    Demo,
    chromium,
    demo,
    expect_signed_in_to_the_dpi,
    new_page,
    set_password_and_take_the_codes,
    shot,
    sign_in_to_the_dpi,
)

pytestmark = pytest.mark.browser

LINK_RE = re.compile(r"https?://\S+/activation/invitation/[A-Za-z0-9_-]+")


def remote_person(demo: Demo, session, key: str = "camille") -> Identity:  # type: ignore[no-untyped-def]
    """The directory identity that matches the simulator's test identity ``key``."""
    external_id = next(p.external_id for p in REMOTE_DEMO_PEOPLE if p.simulator_key == key)
    person = session.scalar(select(Identity).where(Identity.external_id == external_id))
    assert person is not None, "the demo seed holds the simulator's people"
    session.expunge(person)
    return person


def officer_sends_an_invitation(chromium, demo: Demo, person: Identity, *,  # noqa: F811
                                screenshots: bool = False) -> str:
    """The officer opens a case for ``person`` and sends the invitation; return the link shown by the desk."""
    page, problems = new_page(chromium, demo, cookie=demo.server.open_sso_session(demo.officer.id))
    try:
        page.goto(demo.url(f"/guichet/personnes/{person.public_id}"))
        expect(page.get_by_role("heading", level=1)).to_have_text(person.display_name)
        page.get_by_role("button", name="Ouvrir un dossier").click()
        expect(page.locator(".desk-state")).to_have_text("ouvert")
        expect(page.get_by_role("heading", name="Enrôlement à distance")).to_be_visible()
        expect(page.locator("main")).to_contain_text(person.email)
        if screenshots:
            shot(page, "10-invitation-franceconnect.png",
                 until=page.get_by_role("button", name="Envoyer une invitation FranceConnect+"))
        page.get_by_role("button", name="Envoyer une invitation FranceConnect+").click()
        expect(page.locator("p.flash-success")).to_contain_text(f"Invitation envoyée à {person.email}")
        demo_note = page.locator("p.flash-info")
        expect(demo_note).to_contain_text("aucun e-mail n'est réellement envoyé")
        link = LINK_RE.search(demo_note.inner_text())
        assert link is not None
        expect(page.locator("table.desk-table")).to_contain_text(person.email)
    finally:
        page.context.close()
    assert not problems, problems
    return link.group(0)


def simulator_button(key: str) -> str:
    """The label of the simulator's button that signs in as its test identity ``key``."""
    fc = TEST_IDENTITIES[key]
    return f"Continuer avec {fc.given_name.split()[0]} {fc.family_name}, née ou né le {fc.birthdate}"


def verify_with_the_simulator(page: Any, demo: Demo, link: str, key: str, *,  # noqa: F811
                              screenshots: bool = False) -> None:
    """Open the invitation, go to FranceConnect+ (the simulator) and sign in as its identity ``key``."""
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Vérifier votre identité")
    if screenshots:
        shot(page, "11-invitation-accueil.png")
    page.get_by_role("button", name="Vérifier mon identité avec FranceConnect+").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Simulateur FranceConnect+")
    if screenshots:
        shot(page, "12-simulateur-franceconnect.png")
    page.get_by_role("button", name=simulator_button(key), exact=True).click()


def test_remote_enrollment_through_franceconnect_then_sign_in_to_the_dpi(chromium, demo, session):  # noqa: F811
    person = remote_person(demo, session)
    remote_demo = Demo(demo.server, demo.officer, person)
    link = officer_sends_an_invitation(chromium, remote_demo, person, screenshots=True)

    page, problems = new_page(chromium, remote_demo)
    verify_with_the_simulator(page, remote_demo, link, "camille", screenshots=True)
    # Back from FranceConnect+ (after its logout), straight into the activation steps.
    page.wait_for_url(remote_demo.url("/activation/moyen"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Choisir votre second facteur")
    expect(page.locator(".activation-lead")).to_contain_text(person.display_name)
    shot(page, "13-retour-franceconnect.png")
    page.get_by_role("button", name="Utiliser une application d'authentification").click()
    seed = page.locator("#totp-seed").inner_text().replace(" ", "")
    totp = pyotp.TOTP(seed)
    used_step = int(time.time()) // 30
    page.get_by_label("Code à 6 chiffres").fill(totp.at(used_step * 30))
    page.get_by_role("button", name="Activer").click()
    set_password_and_take_the_codes(page, remote_demo)

    sign_in_to_the_dpi(page, remote_demo)
    while int(time.time()) // 30 <= used_step:  # a code is accepted once: wait for the next time step
        time.sleep(0.5)
    page.get_by_label("Code de votre application d'authentification").fill(totp.now())
    page.get_by_role("button", name="Valider").click()
    expect_signed_in_to_the_dpi(page, remote_demo, acr="eidas2", amr={"otp", "mfa", "pwd"})
    page.context.close()
    assert not problems, problems

    session.expire_all()
    app = session.scalar(select(Mie).where(Mie.identity_id == person.id, Mie.type == "totp"))
    assert (app.status, app.proofing_method) == ("active", "fcplus") and app.last_used_at is not None
    case = session.scalar(select(EnrollmentCase).where(EnrollmentCase.identity_id == person.id))
    assert (case.state, case.identity_check_method, case.activated_mie_id) == ("activated", "fcplus", app.id)
    assert case.fcplus_sub and case.fcplus_issuer.endswith("/simulateur-franceconnect/api/v2")

    officer_page, problems = new_page(chromium, remote_demo, cookie=demo.server.open_sso_session(demo.officer.id))
    officer_page.goto(remote_demo.url(f"/guichet/personnes/{person.public_id}"))
    expect(officer_page.locator("#verification-level")).to_have_text("substantiel")
    expect(officer_page.locator("#verification-last-check")).to_contain_text("à distance, par FranceConnect+")
    officer_page.context.close()
    assert not problems, problems


def test_a_mismatch_sends_the_person_to_the_desk_and_activates_nothing(chromium, demo, session):  # noqa: F811
    person = remote_person(demo, session)
    remote_demo = Demo(demo.server, demo.officer, person)
    link = officer_sends_an_invitation(chromium, remote_demo, person)

    page, problems = new_page(chromium, remote_demo)
    # The homonym has the same names as Camille but another birth date and birth place.
    verify_with_the_simulator(page, remote_demo, link, "camille-homonyme")
    expect(page.get_by_role("heading", level=1)).to_have_text("Identité non confirmée")
    expect(page.locator("main")).to_contain_text("guichet")
    shot(page, "14-identite-non-confirmee.png")
    # The invitation cannot be used again: the case is closed.
    page.goto(link)
    expect(page.get_by_role("button", name="Vérifier mon identité avec FranceConnect+")).to_have_count(0)
    page.context.close()
    assert not problems, problems

    session.expire_all()
    case = session.scalar(select(EnrollmentCase).where(EnrollmentCase.identity_id == person.id))
    assert case.state == "rejected" and case.activated_mie_id is None
    assert session.scalar(select(Mie.id).where(Mie.identity_id == person.id, Mie.status == "active")) is None
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.tag == "enrollment:identity:mismatch",
                                                      AuditEvent.subject == person.public_id)) is not None

    officer_page, problems = new_page(chromium, remote_demo, cookie=demo.server.open_sso_session(demo.officer.id))
    officer_page.goto(remote_demo.url(f"/guichet/dossiers/{case.public_id}"))
    expect(officer_page.get_by_role("heading", name="Vérification FranceConnect+ refusée")).to_be_visible()
    expect(officer_page.locator(".desk-differences li")).not_to_have_count(0)
    officer_page.context.close()
    assert not problems, problems
