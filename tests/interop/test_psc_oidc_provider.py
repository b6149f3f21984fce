"""Interop: our Pro Santé Connect client (hospiconnect/enrollment/psc.py) against an independent provider,
oidc-provider (panva, OpenID Certified) for Node.js, configured like the PSC sandbox (tests/interop/
psc_provider.mjs): issuer with a Keycloak-like path, ``openid scope_all``, RS256 ID tokens, userinfo in JSON or
as a signed JWT, ``SubjectNameID``/``SubjectRefPro``/``SubjectOrganization`` claims, eIDAS acr values, ``iss``
in the authorization response (RFC 9207), RP-initiated logout.

Nothing here comes from our own simulator. The browser is the FranceConnect+ interop test's (urllib and a
cookie jar through the provider's interaction routes); the callback goes to :func:`psc.handle_callback` with
the real HTTP fetch.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from joserfc.jwk import KeySet

from hospiconnect.enrollment import psc
from tests.interop.test_fcplus_oidc_provider import START_TIMEOUT_SECONDS, Browser, _first_line, _node
from tests.multiprocess.live import free_port

HERE = Path(__file__).resolve().parent
PROVIDER_SCRIPT = HERE / "psc_provider.mjs"
REDIRECT_URI = "http://127.0.0.1:9/psc/retour"  # never contacted: the browser stops at the redirection
POST_LOGOUT_URI = "http://127.0.0.1:9/psc/deconnexion"

# The accounts of psc_provider.mjs.
HELENE = "f:0b9e1e5a-psc-test:810999900011"
JEAN_NOEL = "f:77aa01c3-psc-test:0751234567"


@dataclasses.dataclass(frozen=True)
class StandIn:
    issuer: str
    clients: dict[str, dict[str, Any]]
    process: subprocess.Popen[str]
    stderr: Path

    def config(self, client_id: str, **changes: Any) -> psc.PscConfig:
        reg = self.clients[client_id]
        return psc.PscConfig(discovery_url=f"{self.issuer}/.well-known/openid-configuration",
                             client_id=client_id, client_secret=reg["client_secret"], redirect_uri=REDIRECT_URI,
                             token_auth_method=reg["token_endpoint_auth_method"], allow_http=True, **changes)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    node = _node()
    issuer = f"http://127.0.0.1:{free_port()}/auth/realms/esante-wallet"
    stderr = tmp_path_factory.mktemp("psc-provider") / "stderr.log"
    with stderr.open("w", encoding="utf-8") as err:
        process = subprocess.Popen(
            [node, str(PROVIDER_SCRIPT), "--issuer", issuer, "--redirect-uri", REDIRECT_URI,
             "--post-logout-redirect-uri", POST_LOGOUT_URI],
            cwd=HERE, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = _first_line(process, START_TIMEOUT_SECONDS)
        if not line:
            process.kill()
            pytest.fail(f"psc_provider.mjs did not start (status {process.poll()}):\n"
                        f"{stderr.read_text(encoding='utf-8', errors='replace')[-4000:]}")
        ready = json.loads(line)
        assert ready["issuer"] == issuer, ready
        yield StandIn(issuer=issuer, clients={c["client_id"]: c for c in ready["clients"]}, process=process,
                      stderr=stderr)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


@dataclasses.dataclass
class Flow:
    config: psc.PscConfig
    discovery: psc.Discovery
    keys: KeySet
    transaction: psc.TransactionState
    callback: dict[str, str]
    browser: Browser

    def complete(self, **changes: Any) -> psc.NationalIdentity:
        return psc.handle_callback(self.config, self.discovery, self.transaction, {**self.callback, **changes},
                                   provider_jwks=self.keys)


def start(standin: StandIn, client_id: str = "psc-basic", *, config: psc.PscConfig | None = None,
          **login: Any) -> Flow:
    config = config or standin.config(client_id)
    discovery = psc.load_discovery(config)
    keys = psc.load_provider_jwks(discovery)
    url, transaction = psc.build_authorization_request(config, discovery)
    browser = Browser()
    login.setdefault("account", HELENE)
    login.setdefault("acr", "eidas1")
    callback = browser.authorize(url, REDIRECT_URI, **login)
    return Flow(config, discovery, keys, transaction, callback, browser)


def test_discovery_keys_and_algorithms(standin: StandIn) -> None:
    discovery = psc.load_discovery(standin.config("psc-basic"))
    assert discovery.issuer == standin.issuer
    assert "RS256" in psc.id_token_algorithms(discovery)
    assert "RS256" in psc.userinfo_algorithms(discovery)
    assert {key.kid for key in psc.load_provider_jwks(discovery)} == {"psc-rs256", "psc-es256"}


def test_e_cps_sign_in_with_json_userinfo(standin: StandIn) -> None:
    flow = start(standin, amr="pwd,otp,mfa")
    login = flow.browser.prompts[0]["params"]
    assert login["scope"] == "openid scope_all" and login["acr_values"] == "eidas1"
    assert flow.callback["iss"] == standin.issuer
    identity = flow.complete()
    assert (identity.issuer, identity.sub) == (standin.issuer, HELENE)
    assert identity.national_id == "810999900011" and identity.rpps == "10999900011"
    assert (identity.given_name, identity.family_name) == ("Hélène", "VASSEUR-NGUYEN")
    assert identity.organization == "Centre hospitalier de test" and identity.acr == "eidas1"
    assert identity.raw_ref_pro["exercices"][0]["codeProfession"] == "10"
    assert identity.amr == ("pwd", "otp", "mfa") and identity.mie_type == "e-cps"
    assert identity.auth_time is not None


def test_cps_sign_in_with_signed_userinfo(standin: StandIn) -> None:
    flow = start(standin, "psc-jwt-userinfo", amr="hwk,pin,mfa")
    identity = flow.complete()
    assert identity.mie_type == "cps" and identity.rpps == "10999900011"
    assert identity.claims["iss"] == standin.issuer  # it came as a signed JWT


def test_adeli_professional_has_no_rpps(standin: StandIn) -> None:
    identity = start(standin, account=JEAN_NOEL).complete()
    assert identity.rpps is None and identity.national_id_type == "ADELI"
    assert identity.family_name == "LÉVÊQUE D'ARGENT"


def test_acr_lower_than_requested_is_refused(standin: StandIn) -> None:
    config = standin.config("psc-basic", acr_values="eidas2")
    flow = start(standin, config=config, acr="eidas1")
    with pytest.raises(psc.AcrTooLow):
        flow.complete()


def test_mix_up_and_replay_are_refused(standin: StandIn) -> None:
    flow = start(standin)
    with pytest.raises(psc.IssuerMismatch):
        flow.complete(iss="http://127.0.0.1:1/auth/realms/other")
    flow.complete()
    with pytest.raises(psc.ProviderError):  # the code was spent: the provider refuses it
        flow.complete()


def test_cancel_is_access_denied(standin: StandIn) -> None:
    flow = start(standin, cancel=True)
    assert flow.callback["error"] == "access_denied"
    with pytest.raises(psc.AccessDenied):
        flow.complete()


def test_logout_url_is_accepted_by_the_provider(standin: StandIn) -> None:
    flow = start(standin)
    identity = flow.complete()
    url = psc.end_session_url(flow.discovery, identity.id_token, POST_LOGOUT_URI, "s" * 40)
    response = flow.browser.request(url)
    assert response.status == 200, response.body[:500]  # the logout confirmation page of oidc-provider
