"""Emergency access (bris de glace) in Chromium, from issue to use to review, on the demo seed.

The on-duty officer issues a code at /bris-de-glace; the nurse whose phone is lost uses it on the DPI's sign-in
page, is told that the access is an emergency one, and reaches the DPI, which flags it; the RSSI reviews it at
/securite/acces-urgence. The test server listens on the loopback address, outside the shipped policy's internal
networks: the officer names it, as an officer names the ward's network.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import EmergencyCredential
from hospiconnect.devtools.seed import DemoAccount, demo_credentials, seed_demo
from hospiconnect.directory.models import Identity
from hospiconnect.idp import keys as signing_keys
from tests.browser._app_server import LiveServer, serve
from tests.browser.test_enrollment_browser import chromium, new_page  # noqa: F401 - the module's browser

pytestmark = pytest.mark.browser

REASON = "Téléphone perdu pendant la garde de nuit, service de réanimation"


@dataclasses.dataclass(frozen=True)
class Cast:
    server: LiveServer
    officer: Identity
    rssi: Identity
    nurse: DemoAccount

    def url(self, path: str) -> str:
        return self.server.url(path)


@pytest.fixture()
def cast(rt, tmp_path) -> Iterator[Cast]:  # type: ignore[no-untyped-def]
    with serve(dataclasses.replace(rt.settings, env="demo", instance_path=tmp_path)) as server:
        runtime = server.runtime
        with runtime.db.session() as s:
            signing_keys.ensure_keys(s, runtime.keys)
            seed_demo(s, runtime.keys, count=60, settings=runtime.settings)
            s.commit()
        with runtime.db.session() as s:
            accounts = {a.role: a for a in demo_credentials(s, runtime.keys, settings=runtime.settings)}
            people = {role: s.scalar(select(Identity).where(Identity.user_name == accounts[role].user_name))
                      for role in ("emergency_officer", "rssi")}
            s.expunge_all()
        yield Cast(server, people["emergency_officer"], people["rssi"], accounts["ide"])


def officer_issues(chromium: Any, cast: Cast) -> str:  # noqa: F811
    page, problems = new_page(chromium, cast, cookie=cast.server.open_sso_session(cast.officer.id))
    try:
        page.goto(cast.url("/bris-de-glace"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Accès d'urgence (bris de glace)")
        page.get_by_label("Nom, prénom, identifiant, RPPS ou adresse électronique").fill(cast.nurse.user_name)
        page.get_by_role("button", name="Rechercher").click()
        page.get_by_role("link", name=cast.nurse.name).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(cast.nurse.name)
        page.get_by_label("Motif").fill(REASON)
        page.get_by_label("Durée de validité (heures)").fill("4")
        page.get_by_label("Réseaux d'où le code peut servir").fill("127.0.0.1/32")
        page.get_by_role("button", name="Délivrer le code d'accès d'urgence").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Code d'accès d'urgence")
        groups = page.locator(".desk-code span:not(.desk-code-sep)").all_inner_texts()
        assert len(groups) == 5 and all(len(g.strip()) == 4 for g in groups), groups
        code = "-".join(g.strip() for g in groups)
        # Shown once: back on the person's page, the credential is listed but the code is nowhere.
        page.get_by_role("link", name="← Retour à la personne").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(cast.nurse.name)
        assert groups[2] not in page.content()
    finally:
        page.context.close()
    assert not problems, problems
    return code


def nurse_uses(chromium: Any, cast: Cast, code: str) -> None:  # noqa: F811
    page, problems = new_page(chromium, cast)
    try:
        page.goto(cast.url("/demo/dpi"))
        page.get_by_role("link", name="Se connecter").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("DPI (démo)")
        page.get_by_role("link", name="Moyen habituel indisponible ? Accès d'urgence").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Accès d'urgence (bris de glace)")
        page.get_by_label("Identifiant").fill(cast.nurse.user_name)
        page.get_by_label("Mot de passe").fill(cast.nurse.password)
        # A mistake first: one calm message, the form kept.
        page.get_by_label("Code d'accès d'urgence").fill("AAAA-BBBB-CCCC-DDDD-EEEE")
        page.get_by_role("button", name="Utiliser l'accès d'urgence").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "Identifiant, mot de passe ou code d'accès d'urgence incorrect.")
        page.get_by_label("Mot de passe").fill(cast.nurse.password)
        page.get_by_label("Code d'accès d'urgence").fill(code.lower().replace("-", " "))
        page.get_by_role("button", name="Utiliser l'accès d'urgence").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Accès d'urgence ouvert")
        expect(page.locator(".emergency-banner")).to_contain_text("jusqu'au")
        page.get_by_role("link", name="Continuer vers DPI (démo)").click()
        page.wait_for_url(cast.url("/demo/dpi"))
        expect(page.locator(".emergency-banner")).to_contain_text("Accès d'urgence (bris de glace)")
        card = page.locator(".demo-rp-signed-in")
        expect(card).to_contain_text("ACCÈS D'URGENCE")
        expect(card.locator("dd code").first).to_have_text("eidas1")
        assert set(card.locator("ul.demo-rp-amr code").all_inner_texts()) == {"emergency", "pwd"}
    finally:
        page.context.close()
    assert not problems, problems


def rssi_reviews(chromium: Any, cast: Cast) -> None:  # noqa: F811
    page, problems = new_page(chromium, cast, cookie=cast.server.open_sso_session(cast.rssi.id))
    try:
        page.goto(cast.url("/securite/acces-urgence"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Revue des accès d'urgence")
        row = page.locator("tr", has_text=cast.nurse.user_name)
        expect(row).to_contain_text("utilisé")
        expect(row).to_contain_text(REASON)
        # The comment is required: an empty one is refused, nothing recorded.
        row.get_by_role("button", name="Examiner").click()
        expect(page.locator("tr", has_text=cast.nurse.user_name)).to_be_visible()
        row = page.locator("tr", has_text=cast.nurse.user_name)
        row.get_by_label("Commentaire").fill("Appel de la cadre de nuit confirmé ; téléphone remplacé le lendemain.")
        row.get_by_role("button", name="Examiner").click()
        expect(page.locator("p.flash[role=status]")).to_be_visible()
        expect(page.locator("tr", has_text=cast.nurse.user_name)).to_have_count(0)  # reviewed: off the list
    finally:
        page.context.close()
    assert not problems, problems


def test_an_emergency_credential_from_issue_to_use_to_review(chromium, cast):  # noqa: F811
    code = officer_issues(chromium, cast)
    nurse_uses(chromium, cast, code)
    rssi_reviews(chromium, cast)
    with cast.server.runtime.db.session() as s:
        row = s.scalar(select(EmergencyCredential))
        assert row.used_at is not None and row.reviewed_at is not None and row.reviewed_by_identity_id == cast.rssi.id
        assert code.replace("-", "") not in (row.code_hash or "")
        journal = [e.tag for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    for tag in (tags.EMERGENCY_ISSUED, tags.AUTHN_EMERGENCY_REFUSED, tags.AUTHN_EMERGENCY_USED,
                tags.EMERGENCY_REVIEWED):
        assert tag in journal, tag
    assert journal.index(tags.EMERGENCY_ISSUED) < journal.index(tags.AUTHN_EMERGENCY_USED) < \
        journal.index(tags.EMERGENCY_REVIEWED)
