"""Pairing with Pro Santé Connect in Chromium, in the demo environment: a professional of the demo seed, signed
in with two factors, presses « Associer mon identité nationale » on « Mes moyens d'identification », chooses
themself at the PSC simulator and comes back paired, with their CPS card listed among their MIE."""

from __future__ import annotations

import dataclasses

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from hospiconnect.db import utcnow
from hospiconnect.devtools.seed import seed_demo
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import national
from hospiconnect.enrollment.models import NationalLink
from hospiconnect.idp import keys as signing_keys
from hospiconnect.idp import login_session
from tests.browser._app_server import serve
from tests.browser.test_enrollment_browser import chromium, new_page  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def test_pairing_from_my_means_through_the_simulator(chromium, rt, tmp_path):  # noqa: F811
    with serve(dataclasses.replace(rt.settings, env="demo", instance_path=tmp_path)) as server:
        runtime = server.runtime
        with runtime.db.session() as s:
            signing_keys.ensure_keys(s, runtime.keys)
            seed_demo(s, runtime.keys, count=20, settings=runtime.settings)
            s.commit()
            person = s.scalar(select(Identity).where(Identity.user_name == "helene.vasseur-nguyen"))
            assert person is not None and person.rpps is not None
            _sso, cookie = login_session.open(s, runtime.keys, runtime.settings, identity_id=person.id,
                                              amr=["mfa", "otp", "pwd"], acr="eidas2", mfa=True, existing=None,
                                              client_ip="127.0.0.1", user_agent="pytest", now=utcnow())
            s.commit()
        demo = type("D", (), {"server": server})()
        page, problems = new_page(chromium, demo, cookie=cookie)
        page.goto(server.url("/mes-moyens"))
        expect(page.get_by_role("heading", name="Identité nationale (Pro Santé Connect)")).to_be_visible()
        page.get_by_role("button", name="Associer mon identité nationale").click()
        expect(page.get_by_text("Simulateur Pro Santé Connect").first).to_be_visible()
        page.get_by_role("button", name="Continuer avec Hélène VASSEUR-NGUYEN").click()
        expect(page.get_by_role("heading", name="Identité nationale associée")).to_be_visible()
        page.get_by_role("link", name="Retour à mes moyens d'identification").click()
        expect(page.get_by_text("Carte CPS (Pro Santé Connect)").first).to_be_visible()
        expect(page.get_by_text("Votre compte est associé à votre identité nationale")).to_be_visible()
        assert problems == []
        page.context.close()
        with runtime.db.session() as s:
            link = s.scalar(select(NationalLink).where(NationalLink.identity_id == person.id))
            assert link is not None and link.method == national.METHOD_RPPS
