"""Sign-in with the e-CPS application through Pro Santé Connect in Chromium, on the demo seed: a nurse pairs his
national identity once from « Mes moyens d'identification », then, in a fresh browser, opens the DPI (démo),
chooses « Se connecter avec Pro Santé Connect », picks himself at the PSC simulator and reaches the DPI with
PSC's amr, the level of his e-CPS, and no password typed. In between, PSC (a client of the ``psc`` profile whose
redirect is recorded) gets his two-factor session delegated with the mapped amr. A professional whose national identity is paired
with nobody is told so and led back to the sign-in page."""

from __future__ import annotations

import dataclasses
import urllib.parse

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from sqlalchemy import select

from hospiconnect.db import utcnow
from hospiconnect.devtools.seed import seed_demo
from hospiconnect.directory.models import Identity
from hospiconnect.idp import clients
from hospiconnect.idp import keys as signing_keys
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from tests.browser._app_server import serve
from tests.browser.test_enrollment_browser import chromium, new_page  # noqa: F401  (fixture)
from tests.oidc_helpers import RegisteredClient, auth_request, query_of

#: Where PSC's broker would receive the establishment's answer: a name that never resolves (RFC 6761 ``.invalid``),
#: so the browser's request to it is recorded, as PSC would receive it, and goes no further.
PSC_BROKER = "https://psc-broker.invalid/auth/realms/esante-wallet/broker/chu/endpoint"

pytestmark = pytest.mark.browser


def test_e_cps_sign_in_through_psc_reaches_the_dpi(chromium, rt, tmp_path):  # noqa: F811
    with serve(dataclasses.replace(rt.settings, env="demo", instance_path=tmp_path)) as server:
        runtime = server.runtime
        with runtime.db.session() as s:
            signing_keys.ensure_keys(s, runtime.keys)
            seed_demo(s, runtime.keys, count=20, settings=runtime.settings)
            s.commit()
            nurse = s.scalar(select(Identity).where(Identity.user_name == "yanis.belkacem"))
            assert nurse is not None
            _sso, cookie = login_session.open(s, runtime.keys, runtime.settings, identity_id=nurse.id,
                                              amr=["mfa", "otp", "pwd"], acr="eidas2", mfa=True, existing=None,
                                              client_ip="127.0.0.1", user_agent="pytest", now=utcnow())
            s.commit()
            nurse_rpps = nurse.rpps
            row, secret = clients.add_client(s, runtime.keys, name="Pro Santé Connect", redirect_uris=[PSC_BROKER],
                                             sensitivity="health-data", scopes="openid profile", profile="psc",
                                             actor="test")
            s.commit()
            psc_client = RegisteredClient(row.client_id, secret, row.id, redirect_uri=PSC_BROKER)
        demo = type("D", (), {"server": server})()

        # Once: the pairing, from a two-factor session.
        page, problems = new_page(chromium, demo, cookie=cookie)
        page.goto(server.url("/mes-moyens"))
        page.get_by_role("button", name="Associer mon identité nationale").click()
        page.get_by_role("button", name="Continuer avec Yanis BELKACEM").click()
        expect(page.get_by_role("heading", name="Identité nationale associée")).to_be_visible()

        # PSC delegates to the establishment (a client of the psc profile): the same two-factor session is
        # reported with the mapped amr and the national identifier.
        captured: list[str] = []
        page.on("request", lambda r: captured.append(r.url) if r.url.startswith(PSC_BROKER) else None)
        request = auth_request(psc_client, scope="openid profile")
        with pytest.raises(PlaywrightError, match="ERR_NAME_NOT_RESOLVED|ERR_"):
            page.goto(server.url("/authorize?" + urllib.parse.urlencode(request.params)))  # PSC: unreachable here
        assert len(captured) == 1, captured
        result = query_of(captured[0])
        assert "code" in result, result
        answer = requests.post(server.url("/token"), timeout=10, auth=(psc_client.client_id, psc_client.secret),
                               data={"grant_type": "authorization_code", "code": result["code"],
                                     "redirect_uri": PSC_BROKER, "code_verifier": request.verifier})
        assert answer.status_code == 200, answer.text
        with runtime.db.session() as s:
            claims = signing_keys.verify(s, answer.json()["id_token"])
        assert claims["SubjectNameID"] == "8" + nurse_rpps and sorted(claims["amr"]) == ["mfa", "otp", "pwd"]
        page.context.close()
        assert problems == []

        # Then, in a fresh browser: the DPI, with the e-CPS through PSC.
        page, problems = new_page(chromium, demo)
        page.goto(server.url("/demo/dpi"))
        page.get_by_role("link", name="Se connecter").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("DPI (démo)")
        page.get_by_role("button", name="Se connecter avec Pro Santé Connect").click()
        expect(page.get_by_text("Simulateur Pro Santé Connect").first).to_be_visible()
        page.get_by_role("button", name="Continuer avec Yanis BELKACEM").click()
        page.wait_for_url(server.url("/demo/dpi"))
        card = page.locator(".demo-rp-signed-in")
        expect(card).to_contain_text("Yanis")
        expect(card.locator("dd code").first).to_have_text("eidas2")
        assert set(card.locator("ul.demo-rp-amr code").all_inner_texts()) == {"mfa", "otp", "pwd"}
        page.context.close()
        assert problems == []
        with runtime.db.session() as s:
            sso = s.scalar(select(SsoSession).where(SsoSession.identity_id == nurse.id)
                           .order_by(SsoSession.id.desc()).limit(1))
            assert sso is not None and sso.national_mie == "e-cps"

        # A professional of another establishment, paired with nobody here.
        page, problems = new_page(chromium, demo)
        page.goto(server.url("/demo/dpi"))
        page.get_by_role("link", name="Se connecter").click()
        page.get_by_role("button", name="Se connecter avec Pro Santé Connect").click()
        page.get_by_role("button", name="Continuer avec Roxane DELACOUR").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Identité nationale non associée")
        page.get_by_role("link", name="Revenir à la page de connexion").click()
        expect(page.get_by_label("Identifiant")).to_be_visible()
        page.context.close()
        assert problems == []
