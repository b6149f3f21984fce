"""Face-to-face enrollment in a real Chromium, from the desk to the first sign-in to the health-data demo app.

The application runs in the ``demo`` environment on the demo seed (a small fictional GHT, the demo relying
parties and the demo accounts, among them the registration officer). The officer's SSO session is opened
directly (LiveServer.open_sso_session, two factors a moment ago); the person then uses a fresh browser
context, as they would at home: the activation code read from the printed sheet, a security key (Chromium's
virtual authenticator, user verification on) or an authenticator app (codes computed with pyotp from the
seed shown on the page), a password, the recovery codes, and finally a sign-in to « DPI (démo) ».

With ``HOSPICONNECT_SCREENSHOTS=1`` the tests save screenshots of the key steps to docs/images/enrollment/
(1100×800 viewport); the README's enrollment procedure shows them. Without it nothing is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pyotp
import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie, RecoveryCode
from hospiconnect.devtools.seed import OFFICER_ROLE, demo_credentials, seed_demo
from hospiconnect.directory.models import Identity, IdentityRole
from hospiconnect.enrollment import upstream_keys
from hospiconnect.enrollment.models import EnrollmentCase
from hospiconnect.idp import keys as signing_keys
from tests.browser._app_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, serve

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "images" / "enrollment"
VIEWPORT = {"width": 1100, "height": 800}
TIMEOUT_MS = 15_000
PASSWORD = "Marronnier en fleur sous la pluie"
PLACE = "Bureau des admissions, site de Valmont"
CODE_RE = re.compile(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){5}")


def shot(page: Any, name: str, *, until: Any = None) -> None:
    """Save a screenshot for the README, only when HOSPICONNECT_SCREENSHOTS=1 (normal runs write nothing).

    The viewport (1100×800) by default; with ``until`` (a locator), the page from its top down to the bottom
    of that element, so that what follows it on the page does not change the picture."""
    if os.environ.get("HOSPICONNECT_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring, no scrolled field
    if until is None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / name), animations="disabled")
        return
    page.evaluate("window.scrollTo(0, 0)")
    box = until.bounding_box()
    assert box is not None, f"{name}: element not shown"
    page.screenshot(path=str(SHOTS / name), full_page=True, animations="disabled",
                    clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": box["y"] + box["height"] + 24})


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module, in French (date fields are shown as JJ/MM/AAAA). Fails, never
    skips, when Chromium is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium est introuvable à {CHROMIUM} : installez le paquet « chromium » pour lancer les "
                    "tests navigateur (ils ne sont jamais ignorés).", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--lang=fr-FR"],
                                             env={**os.environ, "LANGUAGE": "fr_FR", "LANG": "fr_FR.UTF-8"},
                                             headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclasses.dataclass(frozen=True)
class Demo:
    server: LiveServer
    officer: Identity
    person: Identity

    def url(self, path: str) -> str:
        return self.server.url(path)


@pytest.fixture()
def demo(rt, tmp_path) -> Iterator[Demo]:  # type: ignore[no-untyped-def]
    """The application in the demo environment with the demo seed; the demo registration officer and a
    nurse of the seed who has no MIE yet (the person to enroll)."""
    with serve(dataclasses.replace(rt.settings, env="demo", instance_path=tmp_path)) as server:
        runtime = server.runtime
        with runtime.db.session() as s:
            signing_keys.ensure_keys(s, runtime.keys)
            upstream_keys.ensure_keys(s, runtime.keys)  # as `hospiconnect demo` does
            seed_demo(s, runtime.keys, count=40, settings=runtime.settings)
            s.commit()
        with runtime.db.session() as s:
            accounts = {a.role: a for a in demo_credentials(s, runtime.keys, settings=runtime.settings)}
            officer = s.scalar(select(Identity).where(Identity.user_name == accounts[OFFICER_ROLE].user_name))
            with_mie = select(Mie.identity_id)
            person = s.scalars(
                select(Identity).join(IdentityRole, IdentityRole.identity_id == Identity.id)
                .where(IdentityRole.role == "ide", Identity.status == "active", Identity.id.not_in(with_mie))
                .order_by(Identity.end_date.is_not(None), Identity.id)).first()
            assert officer is not None and person is not None
            s.expunge_all()
        yield Demo(server, officer, person)


def new_page(chromium, demo: Demo, *, cookie: str | None = None):  # type: ignore[no-untyped-def]
    """A fresh context (own cookies) and page in French; returns ``(page, problems)`` where ``problems``
    collects Content-Security-Policy violations and script errors, which must stay empty."""
    context = chromium.new_context(locale="fr-FR", viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    if cookie is not None:
        context.add_cookies([demo.server.sso_cookie(cookie)])
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and ("Content Security Policy" in message.text
                                            or "Refused to" in message.text) else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    return page, problems


def add_virtual_key(page: Any) -> tuple[Any, str]:
    """Attach a CTAP2 security key with user verification (a PIN that the virtual device always accepts)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, added["authenticatorId"]


# --- the officer's part -------------------------------------------------------------------------------------


def open_case_at_the_desk(page: Any, demo: Demo, *, screenshots: bool = False) -> None:
    """Search the person at /guichet, open their page and a first-MIE case; end on the case page."""
    person = demo.person
    page.goto(demo.url("/guichet"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Guichet d'enrôlement")
    page.get_by_label("Nom, prénom, identifiant, RPPS ou adresse électronique").fill(person.birth_family_name)
    page.get_by_role("button", name="Rechercher").click()
    link = page.get_by_role("link", name=person.display_name)
    expect(link).to_be_visible()
    if screenshots:
        shot(page, "01-guichet-recherche.png")
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(person.display_name)
    expect(page.locator("#verification-level")).to_have_text("aucune vérification")
    expect(page.get_by_label("Premier moyen d'identification")).to_be_checked()
    page.get_by_role("button", name="Ouvrir un dossier").click()
    expect(page.locator("p.flash[role=status]")).to_contain_text("Dossier ouvert")
    expect(page.locator(".desk-state")).to_have_text("ouvert")


def fill_document(page: Any, *, expiry: str) -> None:
    page.get_by_label("Type de pièce").select_option("cni")
    page.get_by_label("Pays de délivrance").fill("FRA")
    page.get_by_label("Date d'expiration").fill(expiry)
    page.get_by_label("4 derniers caractères du numéro de la pièce").fill("7K4B")
    page.get_by_label("Lieu de la vérification").fill(PLACE)


def officer_issues_a_code(chromium, demo: Demo, *, screenshots: bool = False) -> str:
    """The officer's whole part: search, case, document check, activation sheet; return the code read on
    the sheet."""
    page, problems = new_page(chromium, demo, cookie=demo.server.open_sso_session(demo.officer.id))
    try:
        open_case_at_the_desk(page, demo, screenshots=screenshots)
        expiry = (dt.date.today() + dt.timedelta(days=5 * 365)).isoformat()
        fill_document(page, expiry=expiry)
        if screenshots:
            shot(page, "02-dossier-verification.png",
                 until=page.get_by_role("button", name="Vérifier la pièce d'identité"))
        page.get_by_role("button", name="Vérifier la pièce d'identité").click()
        expect(page.locator("p.flash[role=status]")).to_contain_text("Identité vérifiée")
        expect(page.locator(".desk-state")).to_have_text("identité vérifiée")
        facts = page.locator(".desk-facts")
        expect(facts).to_contain_text("carte nationale d'identité (FRA)")
        expect(facts).to_contain_text("numéro finissant par 7K4B")
        expect(facts).to_contain_text(PLACE)

        page.get_by_role("button", name="Émettre un code d'activation").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Fiche d'activation HospiConnect")
        expect(page.locator(".desk-sheet")).to_contain_text(demo.person.display_name)
        expect(page.locator(".desk-sheet-qr svg")).to_be_visible()
        groups = page.locator(".desk-code span:not(.desk-code-sep)").all_inner_texts()
        code = "-".join(g.strip() for g in groups)
        assert CODE_RE.fullmatch(code), code
        expect(page.locator(".desk-sheet")).to_contain_text(demo.url("/activation"))
        if screenshots:
            shot(page, "03-fiche-activation.png", until=page.locator(".desk-sheet"))
        # Shown once: back on the case, the code is nowhere.
        page.get_by_role("link", name="← Retour au dossier").click()
        expect(page.locator(".desk-state")).to_have_text("moyen d'identification remis")
        assert groups[1] not in page.content()
    finally:
        page.context.close()
    assert not problems, problems
    return code


def officer_sees_the_verified_person(chromium, demo: Demo, mie_type_label: str, *,
                                     screenshots: bool = False) -> None:
    """Back at the desk, the person's page shows the level, the check and the new MIE."""
    page, problems = new_page(chromium, demo, cookie=demo.server.open_sso_session(demo.officer.id))
    try:
        page.goto(demo.url(f"/guichet/personnes/{demo.person.public_id}"))
        expect(page.locator("#verification-level")).to_have_text("substantiel")
        expect(page.locator("#verification-last-check")).to_contain_text(
            "en face à face, sur pièce d'identité (carte nationale d'identité)")
        expect(page.locator("#verification-by")).to_have_text(
            f"{demo.officer.display_name} ({demo.officer.user_name}) — {PLACE}")
        row = page.locator("table.verification-mies tbody tr", has_text=mie_type_label)
        expect(row).to_contain_text("Actif")
        expect(row).to_contain_text("identité vérifiée en face à face au guichet")
        expect(row).not_to_contain_text("jamais")  # the sign-in to the DPI used it
        expect(page.locator("table.verification-mies tbody tr", has_text="Mot de passe")).to_contain_text(
            "sans objet")
        if screenshots:
            shot(page, "09-guichet-personne-verifiee.png", until=page.locator("table.verification-mies"))
    finally:
        page.context.close()
    assert not problems, problems


# --- the person's part --------------------------------------------------------------------------------------


def enter_the_code(page: Any, demo: Demo, code: str, *, screenshots: bool = False) -> None:
    page.goto(demo.url("/activation"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Activer mon moyen d'identification")
    page.get_by_label("Code d'activation").fill(code)
    if screenshots:
        shot(page, "04-activation-code.png")
    page.get_by_role("button", name="Continuer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Choisir votre second facteur")
    expect(page.locator(".activation-lead")).to_contain_text(demo.person.display_name)
    if screenshots:
        shot(page, "05-activation-choix.png")


def set_password_and_take_the_codes(page: Any, demo: Demo, *, screenshots: bool = False) -> list[str]:
    expect(page.get_by_role("heading", level=1)).to_have_text("Choisir votre mot de passe")
    expect(page.locator(".activation-lead")).to_contain_text(demo.person.user_name)
    page.get_by_label("Nouveau mot de passe").fill(PASSWORD)
    page.get_by_label("Confirmez le mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vos codes de secours")
    page.get_by_role("button", name="Afficher mes codes de secours").click()
    codes = page.locator("ol.activation-codes li").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    if screenshots:
        shot(page, "07-codes-secours.png")
    page.get_by_role("link", name="J'ai noté mes codes : terminer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Activation terminée")
    expect(page.locator(".activation-lead")).to_contain_text(demo.person.display_name)
    return codes


def sign_in_to_the_dpi(page: Any, demo: Demo) -> None:
    """Start the sign-in to « DPI (démo) » and give the user name and password; ends on the second factor."""
    page.goto(demo.url("/demo/dpi"))
    expect(page.get_by_role("heading", name="Vous n'êtes pas connecté à DPI (démo)")).to_be_visible()
    page.get_by_role("link", name="Se connecter").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("DPI (démo)")
    page.get_by_label("Identifiant").fill(demo.person.user_name)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    expect(page.get_by_text("Étape 2 sur 2")).to_be_visible()


def expect_signed_in_to_the_dpi(page: Any, demo: Demo, *, acr: str, amr: set[str]) -> None:
    page.wait_for_url(demo.url("/demo/dpi"))
    card = page.locator(".demo-rp-signed-in")
    expect(card.get_by_role("heading", level=2)).to_have_text("Vous êtes connecté à DPI (démo)")
    expect(card).to_contain_text("Connexion avec deux facteurs : accès aux données de santé autorisé.")
    person = card.locator("dd").first  # the name claim carries every given name
    expect(person).to_contain_text(demo.person.given_names)
    expect(person).to_contain_text(f"{demo.person.usage_name or demo.person.birth_family_name} "
                                   f"({demo.person.user_name})")
    # The identity was checked face to face before the MIE was activated, so the level is that of the MIE.
    expect(card.locator("dd code").first).to_have_text(acr)
    assert set(card.locator("ul.demo-rp-amr code").all_inner_texts()) == amr


# --- tests --------------------------------------------------------------------------------------------------


def test_face_to_face_enrollment_with_a_security_key_then_sign_in_to_the_dpi(chromium, demo, session):
    code = officer_issues_a_code(chromium, demo, screenshots=True)

    page, problems = new_page(chromium, demo)
    cdp, authenticator = add_virtual_key(page)
    enter_the_code(page, demo, code, screenshots=True)
    page.get_by_role("link", name="Utiliser une clé de sécurité").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enregistrer une clé de sécurité")
    page.get_by_label("Nom de la clé").fill("Clé bleue")
    shot(page, "06-activation-cle.png")
    page.get_by_role("button", name="Enregistrer la clé").click()
    page.wait_for_url(demo.url("/activation/suite"))
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(stored) == 1
    set_password_and_take_the_codes(page, demo, screenshots=True)

    sign_in_to_the_dpi(page, demo)
    page.get_by_role("button", name="Utiliser ma clé de sécurité").click()
    expect_signed_in_to_the_dpi(page, demo, acr="eidas3", amr={"hwk", "pin", "mfa", "pwd"})
    shot(page, "08-dpi-connecte.png", until=page.locator(".demo-rp-signed-in"))
    page.context.close()
    assert not problems, problems

    session.expire_all()
    mies = {m.type: m for m in session.scalars(select(Mie).where(Mie.identity_id == demo.person.id))}
    assert set(mies) == {"webauthn", "password"}
    key = mies["webauthn"]
    assert (key.label, key.status, key.proofing_method) == ("Clé bleue", "active", "face_to_face")
    assert key.last_used_at is not None
    case = session.scalar(select(EnrollmentCase).where(EnrollmentCase.identity_id == demo.person.id))
    assert (case.state, case.activated_mie_id, case.identity_check_officer_id) == ("activated", key.id,
                                                                                   demo.officer.id)
    assert (case.document_type, case.document_last4, case.identity_check_place) == ("cni", "7K4B", PLACE)
    assert session.scalar(select(func.count()).select_from(RecoveryCode)
                          .where(RecoveryCode.identity_id == demo.person.id)) == 10

    officer_sees_the_verified_person(chromium, demo, "Clé de sécurité", screenshots=True)


def test_face_to_face_enrollment_with_an_authenticator_app_then_sign_in_to_the_dpi(chromium, demo, session):
    code = officer_issues_a_code(chromium, demo)

    page, problems = new_page(chromium, demo)
    enter_the_code(page, demo, code)
    page.get_by_role("button", name="Utiliser une application d'authentification").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Associer votre application")
    expect(page.locator(".activation-qr svg")).to_be_visible()
    # What a person types when they cannot scan: the seed in groups of four, next to the QR code.
    seed = page.locator("#totp-seed").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", seed), seed
    assert f"secret={seed}" in page.get_by_label("Adresse complète, à copier").input_value()
    shot(page, "06b-activation-application.png", until=page.get_by_role("button", name="Activer"))
    totp = pyotp.TOTP(seed)
    used_step = int(time.time()) // 30
    page.get_by_label("Code à 6 chiffres").fill(totp.at(used_step * 30))
    page.get_by_role("button", name="Activer").click()
    set_password_and_take_the_codes(page, demo)

    sign_in_to_the_dpi(page, demo)
    # The activation used this time step's code, and a code is accepted once: wait for the next step.
    while int(time.time()) // 30 <= used_step:
        time.sleep(0.5)
    page.get_by_label("Code de votre application d'authentification").fill(totp.now())
    page.get_by_role("button", name="Valider").click()
    expect_signed_in_to_the_dpi(page, demo, acr="eidas2", amr={"otp", "mfa", "pwd"})
    page.context.close()
    assert not problems, problems

    session.expire_all()
    app = session.scalar(select(Mie).where(Mie.identity_id == demo.person.id, Mie.type == "totp"))
    assert (app.status, app.proofing_method) == ("active", "face_to_face") and app.last_used_at is not None
    assert session.scalar(select(EnrollmentCase.state).where(EnrollmentCase.identity_id == demo.person.id)) \
        == "activated"
    officer_sees_the_verified_person(chromium, demo, "Application d'authentification (TOTP)")


def test_an_expired_document_is_refused_next_to_its_field_and_nothing_is_recorded(chromium, demo, session):
    page, problems = new_page(chromium, demo, cookie=demo.server.open_sso_session(demo.officer.id))
    open_case_at_the_desk(page, demo)
    last_event = session.scalar(select(func.max(AuditEvent.id)))
    fill_document(page, expiry="2025-06-30")
    page.get_by_role("button", name="Vérifier la pièce d'identité").click()

    error = page.locator("#f-expiry_date-error")
    expect(error).to_have_text("Erreur : Pièce expirée le 30/06/2025 : elle ne peut pas servir à vérifier "
                               "l'identité.")
    expect(page.locator(".field-invalid")).to_have_count(1)
    expect(page.locator(".field-invalid #f-expiry_date")).to_be_visible()
    # Still the check form, filled as typed, and the case did not move.
    expect(page.locator(".desk-state")).to_have_text("ouvert")
    expect(page.get_by_label("Lieu de la vérification")).to_have_value(PLACE)
    expect(page.get_by_role("button", name="Émettre un code d'activation")).to_have_count(0)
    shot(page, "02b-piece-expiree.png", until=page.get_by_role("button", name="Vérifier la pièce d'identité"))
    page.context.close()
    assert not problems, problems

    session.expire_all()
    case = session.scalar(select(EnrollmentCase).where(EnrollmentCase.identity_id == demo.person.id))
    assert case.state == "opened"
    assert (case.identity_check_method, case.identity_checked_at, case.document_type, case.document_last4) == \
        (None, None, None, None)
    # Only the refusal itself is journaled.
    assert session.scalars(select(AuditEvent.tag).where(AuditEvent.id > last_event)).all() == \
        ["enrollment:identity:refused"]
