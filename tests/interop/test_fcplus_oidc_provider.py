"""Interop: our FranceConnect+ client (hospiconnect/enrollment/fcplus.py) against an independent provider,
oidc-provider (panva, OpenID Certified) for Node.js, configured like FranceConnect+ (tests/interop/
fcplus_provider.mjs): issuer with a path, ES256 signatures, ID token and userinfo signed then encrypted
(RSA-OAEP, RSA-OAEP-256 or ECDH-ES with A256GCM) to the public JWKS the test serves as the client's
jwks_uri, eIDAS acr values, ``iss`` in the authorization response (RFC 9207), RP-initiated logout.

Nothing here comes from our own simulator: the tokens, their encryption, the error responses and the
logout checks are the library's. The test plays the browser with urllib and a cookie jar, through the
provider's interaction routes, up to the redirection to our redirect_uri, then hands the callback to
:func:`fcplus.handle_callback` with the real HTTP fetch.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import queue
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from joserfc.jwk import ECKey, KeySet, RSAKey

from hospiconnect.enrollment import fcplus
from tests.multiprocess.live import free_port

HERE = Path(__file__).resolve().parent
PROVIDER_SCRIPT = HERE / "fcplus_provider.mjs"
START_TIMEOUT_SECONDS = 20
HTTP_TIMEOUT_SECONDS = 10

# The identities of fcplus_provider.mjs (its ACCOUNTS), as userinfo must deliver them.
ANGELA = "7f3a1c5e9b2d4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2fv1"
JEAN_NOEL = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00v1"
PIVOT = {
    ANGELA: {"given_name": "Angela Claire Louise", "family_name": "DUBOIS", "birthdate": "1962-08-24",
             "gender": "female", "birthplace": "75107", "birthcountry": "99100",
             "email": "angela.dubois@example.test", "preferred_username": "DUBOIS-MARTIN"},
    JEAN_NOEL: {"given_name": "Jean-Noël Ærwan", "family_name": "LÉVÊQUE D'ARGENT", "birthdate": "1980-01-01",
                "gender": "male", "birthplace": "", "birthcountry": "99134",
                "email": "jn.leveque@example.test", "preferred_username": ""},
}


# --- the client's web side: its public JWKS (jwks_uri) ---------------------------------------------------

class _ClientSite(BaseHTTPRequestHandler):
    """Serves our public encryption JWKS at /jwks.json and counts the provider's fetches."""

    jwks: bytes = b"{}"
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/jwks.json":
            self.send_error(404)
            return
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.jwks)))
        self.end_headers()
        self.wfile.write(self.jwks)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


# --- the provider ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Registration:
    client_id: str
    client_secret: str
    token_endpoint_auth_method: str
    id_token_encrypted_response_alg: str


@dataclasses.dataclass(frozen=True)
class StandIn:
    """The running oidc-provider and what our client needs to talk to it."""

    issuer: str
    clients: dict[str, Registration]
    private_keys: KeySet
    redirect_uri: str
    post_logout_redirect_uri: str
    jwks_hits: list[str]
    process: subprocess.Popen[str]
    stderr: Path

    def config(self, client_id: str) -> fcplus.FcPlusConfig:
        """Our client's configuration for one of the provider's registered clients (http: a local provider)."""
        reg = self.clients[client_id]
        return fcplus.FcPlusConfig(
            discovery_url=f"{self.issuer}/.well-known/openid-configuration", client_id=reg.client_id,
            client_secret=reg.client_secret, redirect_uri=self.redirect_uri, allow_http=True,
            token_auth_method=reg.token_endpoint_auth_method)

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")[-4000:]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required by the interop tests (node not found on PATH).")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("oidc-provider is not installed: run `npm ci --prefix tests/interop`.")
    return node


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    node = _node()
    private_keys = fcplus.generate_encryption_keys()

    class Site(_ClientSite):
        jwks = json.dumps(fcplus.public_jwks(private_keys)).encode("utf-8")
        hits: list[str] = []

    site = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    site_thread = threading.Thread(target=site.serve_forever, name="fcplus-client-site", daemon=True)
    site_thread.start()
    base = f"http://127.0.0.1:{site.server_address[1]}"
    # A second attempt, on another port, when the first start says nothing in time: the port picked may have
    # been taken meanwhile by another process of the machine. A failure shows the last attempt's output.
    for attempt in (1, 2):
        issuer = f"http://127.0.0.1:{free_port()}/api/v2"
        stderr = tmp_path_factory.mktemp("fcplus-provider") / "stderr.log"
        with stderr.open("w", encoding="utf-8") as err:
            process = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT), "--issuer", issuer, "--client-jwks-uri", f"{base}/jwks.json",
                 "--redirect-uri", f"{base}/callback", "--post-logout-redirect-uri", f"{base}/bye"],
                cwd=HERE, stdout=subprocess.PIPE, stderr=err, text=True)
        line = _first_line(process, START_TIMEOUT_SECONDS)
        if line:
            break
        process.kill()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        if attempt == 2:
            site.shutdown()
            site.server_close()
            pytest.fail(f"fcplus_provider.mjs did not start (status {process.poll()}):\n"
                        f"{stderr.read_text(encoding='utf-8', errors='replace')[-4000:]}")
    try:
        ready = json.loads(line)
        assert ready["issuer"] == issuer, ready
        clients = {c["client_id"]: Registration(**c) for c in ready["clients"]}
        yield StandIn(issuer=issuer, clients=clients, private_keys=private_keys, redirect_uri=f"{base}/callback",
                      post_logout_redirect_uri=f"{base}/bye", jwks_hits=Site.hits, process=process,
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
        site.shutdown()
        site.server_close()
        site_thread.join(timeout=5)


# --- the browser: urllib, a cookie jar, redirects followed by hand ---------------------------------------

@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # every 3xx comes back as a response: the test decides where to go


class Browser:
    """Plays the person's browser: keeps the provider's cookies, never follows a redirect on its own."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        self.prompts: list[dict[str, Any]] = []

    def request(self, url: str, form: dict[str, str] | None = None) -> Response:
        data = urllib.parse.urlencode(form).encode("ascii") if form is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if form is not None else "GET",
                                     headers={"Accept": "application/json, text/html"})
        try:
            with self._opener.open(req, timeout=HTTP_TIMEOUT_SECONDS) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    def authorize(self, url: str, redirect_uri: str, *, account: str = ANGELA, acr: str = "eidas2",
                  cancel: bool = False, amr: str = "pwd,mfa") -> dict[str, str]:
        """Follow the authorization URL through the provider's interactions (login at ``acr``, consent,
        or cancel) until it redirects to ``redirect_uri``; return that redirection's query parameters."""
        form: dict[str, str] | None = None
        for _ in range(12):
            response = self.request(url, form)
            form = None
            if response.status in (302, 303, 307):
                location = urllib.parse.urljoin(url, response.headers["location"])
                if location.startswith(redirect_uri):
                    query = urllib.parse.urlsplit(location).query
                    return {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
                url = location
                continue
            assert response.status == 200 and "/interaction/" in url, (
                f"the provider stopped at {url}: HTTP {response.status} {response.body[:1000]!r}")
            page = response.json()
            self.prompts.append(page)
            name = page["prompt"]["name"]
            if cancel:
                url, form = f"{url}/abort", {}
            elif name == "login":
                url, form = f"{url}/login", {"account": account, "acr": acr, "amr": amr}
            elif name == "consent":
                url, form = f"{url}/consent", {}
            else:
                raise AssertionError(f"unexpected prompt {page['prompt']}")
        raise AssertionError("too many redirections before the redirect_uri")


# --- the flow through our client ------------------------------------------------------------------------

@dataclasses.dataclass
class Flow:
    """One verification started by our client and carried through the provider by the browser."""

    config: fcplus.FcPlusConfig
    discovery: fcplus.Discovery
    provider_jwks: KeySet
    transaction: fcplus.TransactionState
    authorization_url: str
    callback: dict[str, str]
    browser: Browser

    def complete(self, *, transaction: fcplus.TransactionState | None = None,
                 callback: dict[str, str] | None = None, private_keys: KeySet,
                 provider_jwks: KeySet | None = None) -> fcplus.VerifiedIdentity:
        return fcplus.handle_callback(
            self.config, self.discovery, transaction or self.transaction,
            self.callback if callback is None else callback, fetch=fcplus.urllib_fetch,
            provider_jwks=provider_jwks or self.provider_jwks, private_keys=private_keys)


def start(standin: StandIn, client_id: str, **login: Any) -> Flow:
    """Discovery and provider JWKS over HTTP, our authorization request, the browser up to the callback."""
    config = standin.config(client_id)
    discovery = fcplus.load_discovery(config)
    provider_jwks = fcplus.load_provider_jwks(discovery)
    url, transaction = fcplus.build_authorization_request(config, discovery)
    browser = Browser()
    callback = browser.authorize(url, standin.redirect_uri, **login)
    return Flow(config, discovery, provider_jwks, transaction, url, callback, browser)


def jose_header(token: str) -> dict[str, Any]:
    first = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))


def kid_of(keys: KeySet, key_type: str) -> str:
    return next(key.kid for key in keys if key.key_type == key_type)


def assert_verified(identity: fcplus.VerifiedIdentity, flow: Flow, standin: StandIn, account: str,
                    acr: str = "eidas2") -> None:
    assert identity.issuer == standin.issuer
    assert identity.sub == account and identity.acr == acr
    # amr is returned only when asked for with the claims parameter (as at FranceConnect, whose partner
    # documentation says so); our client does not ask, so it gets none although the login had ["pwd", "mfa"].
    assert identity.amr == [] and "amr" not in identity.id_token_claims
    # The identity pivot, exactly as the provider holds it, arrives through the encrypted userinfo.
    assert {k: identity.claims[k] for k in PIVOT[account]} == PIVOT[account]
    assert identity.claims["sub"] == account
    assert identity.claims["iss"] == standin.issuer and identity.claims["aud"] == flow.config.client_id
    # The ID token carries the authentication facts only (the pivot is in userinfo, as at FranceConnect+).
    id_claims = identity.id_token_claims
    assert id_claims["aud"] == flow.config.client_id and id_claims["nonce"] == flow.transaction.nonce
    assert isinstance(id_claims["auth_time"], int) and "given_name" not in id_claims


# --- tests ----------------------------------------------------------------------------------------------

def test_discovery_and_provider_keys(standin: StandIn) -> None:
    config = standin.config("fcplus-rsa-oaep")
    discovery = fcplus.load_discovery(config)
    assert discovery.issuer == standin.issuer  # an issuer with a path (…/api/v2), as at FranceConnect+
    assert discovery.token_endpoint == f"{standin.issuer}/token"
    assert discovery.end_session_endpoint == f"{standin.issuer}/session/end"
    assert discovery.raw["authorization_response_iss_parameter_supported"] is True
    # The provider publishes an ES256 and an RS256 key: only the EC signing key is kept.
    published = fcplus.load_provider_jwks(discovery)
    assert [key.kid for key in published] == ["fcplus-es256"]


def test_code_flow_rsa_oaep(standin: StandIn) -> None:
    flow = start(standin, "fcplus-rsa-oaep")

    # Our request reached the provider as sent: code flow, eidas2, all pivot scopes, prompt=login consent.
    login, consent = flow.browser.prompts
    params = login["params"]
    assert params["acr_values"] == "eidas2" and params["response_type"] == "code"
    assert params["scope"] == fcplus.DEFAULT_SCOPES and params["nonce"] == flow.transaction.nonce
    assert "login_prompt" in login["prompt"]["reasons"] and consent["prompt"]["name"] == "consent"
    # The authorization response carries our state and the issuer (RFC 9207).
    assert flow.callback["state"] == flow.transaction.state and flow.callback["iss"] == standin.issuer

    identity = flow.complete(private_keys=standin.private_keys)
    assert_verified(identity, flow, standin, ANGELA)
    header = jose_header(identity.id_token)
    assert (header["alg"], header["enc"]) == ("RSA-OAEP", "A256GCM")
    assert header["kid"] == kid_of(standin.private_keys, "RSA")  # found in the JWKS we serve
    assert standin.jwks_hits, "the provider never fetched the client's jwks_uri"


def test_code_flow_ecdh_es(standin: StandIn) -> None:
    flow = start(standin, "fcplus-ecdh-es", account=JEAN_NOEL)
    identity = flow.complete(private_keys=standin.private_keys)
    # Accents, apostrophe, empty birthplace (born abroad) come through the JWE/JWS layers intact.
    assert_verified(identity, flow, standin, JEAN_NOEL)
    header = jose_header(identity.id_token)
    assert (header["alg"], header["enc"]) == ("ECDH-ES", "A256GCM")
    assert header["kid"] == kid_of(standin.private_keys, "EC")


def test_client_secret_basic(standin: StandIn) -> None:
    # The secret holds "+/:% &=": the provider decodes the Basic credentials per RFC 6749 §2.3.1.
    assert re.search(r"[+/:% &=]", standin.clients["fcplus-basic"].client_secret)
    flow = start(standin, "fcplus-basic")
    identity = flow.complete(private_keys=standin.private_keys)
    assert_verified(identity, flow, standin, ANGELA)
    assert jose_header(identity.id_token)["alg"] == "RSA-OAEP-256"

    # The provider does check the credentials: a wrong secret is refused at the token endpoint.
    flow = start(standin, "fcplus-basic")
    flow.config = dataclasses.replace(flow.config, client_secret=flow.config.client_secret + "x")
    with pytest.raises(fcplus.ProviderError, match="invalid_client"):
        flow.complete(private_keys=standin.private_keys)


def test_acr_too_low(standin: StandIn) -> None:
    flow = start(standin, "fcplus-rsa-oaep", acr="eidas1")
    with pytest.raises(fcplus.AcrTooLow) as raised:
        flow.complete(private_keys=standin.private_keys)
    assert raised.value.detail == "reçu : eidas1"


def test_higher_acr_accepted(standin: StandIn) -> None:
    flow = start(standin, "fcplus-ecdh-es", acr="eidas3")
    identity = flow.complete(private_keys=standin.private_keys)
    assert_verified(identity, flow, standin, ANGELA, acr="eidas3")


def test_state_mismatch_is_refused_before_the_code_is_spent(standin: StandIn) -> None:
    flow = start(standin, "fcplus-rsa-oaep")
    # The callback of this flow presented to another transaction (e.g. another tab, or a forged link).
    _, other = fcplus.build_authorization_request(flow.config, flow.discovery)
    with pytest.raises(fcplus.StateMismatch):
        flow.complete(transaction=other, private_keys=standin.private_keys)
    with pytest.raises(fcplus.StateMismatch):
        flow.complete(callback={**flow.callback, "state": flow.transaction.state[:-1]},
                      private_keys=standin.private_keys)
    # Nothing was sent to the provider: the code is still good for its own transaction.
    identity = flow.complete(private_keys=standin.private_keys)
    assert identity.sub == ANGELA


def test_id_token_for_another_key_set_is_undecryptable(standin: StandIn) -> None:
    # A key set that is not the one published at jwks_uri (the kid is unknown to us).
    flow = start(standin, "fcplus-rsa-oaep")
    with pytest.raises(fcplus.UndecryptableToken):
        flow.complete(private_keys=fcplus.generate_encryption_keys())

    # Same kids as published but other key material: the RSA-OAEP unwrap itself fails.
    flow = start(standin, "fcplus-rsa-oaep")
    impostor = KeySet([
        RSAKey.generate_key(2048, {"use": "enc", "kid": kid_of(standin.private_keys, "RSA")}),
        ECKey.generate_key("P-256", {"use": "enc", "alg": "ECDH-ES", "kid": kid_of(standin.private_keys, "EC")}),
    ])
    with pytest.raises(fcplus.UndecryptableToken) as raised:
        flow.complete(private_keys=impostor)
    assert raised.value.detail is None  # a cryptographic failure, not an unknown kid


def test_id_token_signed_by_another_key_is_refused(standin: StandIn) -> None:
    flow = start(standin, "fcplus-ecdh-es")
    # A provider JWKS whose ES256 key has the provider's kid but is not the provider's key.
    forged = KeySet([ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256", "kid": "fcplus-es256"})])
    with pytest.raises(fcplus.BadTokenSignature):
        flow.complete(private_keys=standin.private_keys, provider_jwks=forged)


def test_replayed_code_is_refused_by_the_provider(standin: StandIn) -> None:
    flow = start(standin, "fcplus-rsa-oaep")
    assert flow.complete(private_keys=standin.private_keys).sub == ANGELA
    with pytest.raises(fcplus.ProviderError, match="invalid_grant"):
        flow.complete(private_keys=standin.private_keys)


def test_cancelled_login_is_access_denied(standin: StandIn) -> None:
    flow = start(standin, "fcplus-rsa-oaep", cancel=True)
    assert flow.callback["error"] == "access_denied" and flow.callback["iss"] == standin.issuer
    assert "code" not in flow.callback
    with pytest.raises(fcplus.AccessDenied):
        flow.complete(private_keys=standin.private_keys)


def test_end_session_url_is_accepted(standin: StandIn) -> None:
    flow = start(standin, "fcplus-rsa-oaep")
    identity = flow.complete(private_keys=standin.private_keys)
    state = "au-revoir-" + "x" * 32

    # The ID token as received is encrypted to our keys: the provider cannot read it as id_token_hint.
    refused = flow.browser.request(fcplus.end_session_url(flow.discovery, identity.id_token,
                                                          standin.post_logout_redirect_uri, state))
    assert refused.status == 400 and b"id_token_hint" in refused.body, refused

    # The signed ID token inside it (OpenID Connect Core §3.1.2.1) is what the provider accepts.
    assert identity.id_token_hint.count(".") == 2 and jose_header(identity.id_token_hint)["alg"] == "ES256"
    url = fcplus.end_session_url(flow.discovery, identity.id_token_hint, standin.post_logout_redirect_uri, state)
    assert url.startswith(f"{standin.issuer}/session/end?")

    # The provider validates id_token_hint and post_logout_redirect_uri, then asks the person to confirm.
    page = flow.browser.request(url)
    assert page.status == 200, f"session/end refused: HTTP {page.status} {page.body[:500]!r}\n{standin.log()}"
    html = page.body.decode("utf-8")
    action = re.search(r'<form[^>]*action="([^"]+)"', html)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', html)
    assert action and xsrf, html[:1000]
    confirmed = flow.browser.request(urllib.parse.urljoin(url, action.group(1)),
                                     {"xsrf": xsrf.group(1), "logout": "yes"})
    assert confirmed.status in (302, 303), confirmed
    back = confirmed.headers["location"]
    assert back.startswith(standin.post_logout_redirect_uri), back
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)["state"] == [state]
