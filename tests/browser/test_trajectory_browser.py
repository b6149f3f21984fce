"""The RSSI's trajectory dashboard in Chromium: the charts (SVG served on their own, shown with <img>) load and
draw the series, the definitions and data tables open, the people list filters, the printable report renders,
and no page breaks its Content-Security-Policy (the ``new_page`` helper collects any violation).

Two weeks of history are rebuilt by the backfill from a few people whose MIE were activated on known days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity, OrgUnit
from hospiconnect.enrollment.models import NationalLink
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from hospiconnect.trajectory.snapshots import backfill
from tests.browser._app_server import LiveServer, serve
from tests.browser.test_enrollment_browser import chromium, new_page  # noqa: F401 - the module's browser
from tests.factories import create_identity
from tests.functional.test_trajectory_pages import give_mie

pytestmark = pytest.mark.browser

POLICY = load_policy(DEFAULT_POLICY_PATH)
DAYS = 15  # two weeks at least: the projection needs them
LOADED = ("() => { const images = [...document.querySelectorAll('.traj-chart img')];"
          " return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0); }")


@dataclasses.dataclass(frozen=True)
class Stage:
    server: LiveServer
    rssi: Identity
    today: dt.date

    def url(self, path: str) -> str:
        return self.server.url(path)


@pytest.fixture()
def stage(rt) -> Iterator[Stage]:  # type: ignore[no-untyped-def]
    """Four people over two weeks: two equipped during them, one with a password only, one with
    nothing, the doctor paired with Pro Santé Connect; then the RSSI."""
    with serve(rt.settings) as server:
        now = utcnow()
        today = POLICY.local_day(now)
        with server.runtime.db.session() as s:
            pole = OrgUnit(code="POLE-MED", name="Pôle médecine", kind="pole")
            s.add(pole)
            s.flush()
            s.add(OrgUnit(code="CARDIO", name="Cardiologie", parent_id=pole.id))
            s.commit()
            nurse = create_identity(s, birth_family_name="Arnaud", units="CARDIO")
            doctor = create_identity(s, birth_family_name="Blanc", with_rpps=True, units="CARDIO")
            temp = create_identity(s, birth_family_name="Collin", contract_type="interim", units="CARDIO")
            create_identity(s, birth_family_name="Durand", contract_type="trainee", units="CARDIO")
            give_mie(s, nurse, "totp", on=today - dt.timedelta(days=4), proofed=True)
            give_mie(s, doctor, "webauthn", on=today - dt.timedelta(days=1), proofed=True)
            give_mie(s, temp, "password", on=today - dt.timedelta(days=300), proofed=False)
            # The doctor paired with Pro Santé Connect three days ago.
            s.add(NationalLink(identity_id=doctor.id, issuer="https://psc.example", sub="psc-doctor",
                               rpps=doctor.rpps, method="rpps", linked_by=doctor.user_name,
                               linked_at=now - dt.timedelta(days=3)))
            s.commit()
            backfill(s, POLICY, today - dt.timedelta(days=DAYS - 1), today, now=now)
            s.commit()
            rssi = create_identity(s, roles="rssi", birth_family_name="Securite")
            s.expunge_all()
        yield Stage(server, rssi, today)


def test_the_dashboard_draws_its_charts_under_its_policy(chromium, stage):  # noqa: F811
    page, problems = new_page(chromium, stage, cookie=stage.server.open_sso_session(stage.rssi.id))
    page.goto(stage.url("/securite"))
    page.get_by_role("link", name="Trajectoire de sécurisation des MIE").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Trajectoire de sécurisation des MIE")
    expect(page.locator("#chiffre-compliant .traj-value")).to_have_text("50\u00a0%")  # 2 of 4

    # Every chart is an image that loaded: an SVG of its own size, not a broken icon.
    page.wait_for_function(LOADED)
    images = page.locator(".traj-chart img")
    assert images.count() == 4
    sizes = page.eval_on_selector_all(".traj-chart img", "images => images.map(i => [i.naturalWidth, i.naturalHeight])")
    assert all(width >= 800 and height > 100 for width, height in sizes), sizes
    for n in range(images.count()):
        assert images.nth(n).get_attribute("alt")
    # The SVG behind each one holds its series.
    sources = {page.locator(".traj-chart img").nth(n).get_attribute("id"):
               page.locator(".traj-chart img").nth(n).get_attribute("src") for n in range(4)}
    coverage = page.request.get(stage.url(sources["graphique-couverture"]))
    assert coverage.status == 200 and coverage.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert coverage.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    svg = coverage.text()
    assert "Part conforme (%)" in svg and "Projection au rythme actuel" in svg and "<script" not in svg
    contract = page.request.get(stage.url(sources["graphique-contrat"])).text()
    assert "CDI ou titulaire — 100\u00a0%" in contract and "Intérim — 0\u00a0%" in contract
    poles = page.request.get(stage.url(sources["graphique-pole"])).text()
    assert "Pôle médecine — 50\u00a0%" in poles
    pairing = page.request.get(stage.url(sources["graphique-appairage"])).text()
    assert "Part associée à Pro Santé Connect (%)" in pairing and "<script" not in pairing
    expect(page.locator("#chiffre-psc_paired .traj-value")).to_have_text("1")

    # Definitions and data tables open.
    definition = page.locator("#chiffre-compliant details")
    definition.locator("summary").click()
    expect(definition.locator("p")).to_contain_text("MIE conforme à la politique d'accès")
    data = page.locator("details.traj-data").first
    data.locator("summary").click()
    expect(data.locator("tbody tr")).to_have_count(DAYS)
    expect(data.locator("tbody tr").first).to_contain_text(f"{stage.today:%d/%m/%Y}")

    # Another population: its own curve.
    page.get_by_label("Population").select_option("contract_type:interim")
    page.get_by_role("button", name="Afficher").click()
    expect(page.locator("#graphique-couverture")).to_have_attribute(
        "src", "/securite/trajectoire/graphiques/couverture.svg?dimension=contract_type&valeur=interim")
    page.wait_for_function(LOADED)
    expect(page.locator(".traj-projection")).to_contain_text("non atteignable au rythme actuel")
    assert not problems, problems


def test_the_people_list_and_the_report_in_the_browser(chromium, stage):  # noqa: F811
    page, problems = new_page(chromium, stage, cookie=stage.server.open_sso_session(stage.rssi.id))
    page.goto(stage.url("/securite/trajectoire"))
    page.get_by_role("link", name="Personnes à équiper").first.click()
    rows = page.locator("tr[data-person]")
    expect(rows).to_have_count(2)
    page.get_by_label("Type de contrat").select_option("interim")
    page.get_by_role("button", name="Filtrer").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Mot de passe seul")
    with page.expect_download() as download:
        page.get_by_role("link", name="Exporter en CSV (mêmes filtres)").click()
    with open(download.value.path(), encoding="utf-8", newline="") as handle:
        content = handle.read()
    assert content.startswith("\ufeffNom;") and content.count("\r\n") == 2

    page.goto(stage.url("/securite/trajectoire/rapport"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Trajectoire de sécurisation des MIE")
    assert page.locator("svg.pygal-chart").count() == 2
    box: Any = page.locator("svg.pygal-chart").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert not problems, problems
