"""Fixtures of the interop tests: the real provider (``hospiconnect serve``, gunicorn) on the test
database, an independent relying party (openid-client, tests/interop/rp.mjs) driven step by step, and
Chromium holding the SSO cookie of a person signed in with two factors.

The sign-in pages are not needed: the SSO session is opened directly in the database
(hospiconnect.idp.login_session.open) and its cookie put into the browser, so ``/authorize`` issues a
code at once. The relying party's redirect URI is on a loopback port served by a tiny page server; the
URL of Chromium's request to it, the authorization response, is handed to the Node script.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from hospiconnect.idp import login_session, oidc
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings
from tests.factories import create_identity
from tests.multiprocess.live import (ServerProcess, free_port, open_sso_session, running, server_env,
                                     start_server)
from tests.oidc_helpers import add_second_factor, register

HERE = Path(__file__).resolve().parent
RP_SCRIPT = HERE / "rp.mjs"
NODE_TIMEOUT_SECONDS = 30
BROWSER_TIMEOUT_MS = 15_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
T = TypeVar("T")


# --- the provider -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Provider:
    """The running provider: its issuer (``http://localhost:PORT``, the host name cookies are set for)."""

    issuer: str
    server: ServerProcess


@pytest.fixture(scope="module")
def provider(_schema: Runtime, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Provider]:
    """``hospiconnect serve`` (gunicorn, one worker) on the tests' database and key file.

    The schema comes from the suite's fixtures; the tables are emptied after each test while the server
    keeps running, which it does not notice: it caches nothing between requests.
    """
    port = free_port()
    issuer = f"http://localhost:{port}"
    work = tmp_path_factory.mktemp("interop-provider")
    env = server_env(database_url=base_settings.database_url, key_file=base_settings.secret_key_file,
                     instance_path=work, issuer=issuer)
    server = start_server("provider", env, work, port=port, workers=1, threads=4)
    with running([server]):
        yield Provider(issuer=issuer, server=server)


# --- the relying party (Node, openid-client) --------------------------------------------------------------

def run_rp(command: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one step of the Node relying party and return its JSON document (``ok`` tells success)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required by the interop tests (node not found on PATH).")
    if not (HERE / "node_modules" / "openid-client").is_dir():
        pytest.fail("openid-client is not installed: run `npm ci --prefix tests/interop`.")
    proc = subprocess.run([node, str(RP_SCRIPT), command, json.dumps(payload or {})], cwd=HERE,
                          capture_output=True, text=True, timeout=NODE_TIMEOUT_SECONDS, check=False)
    try:
        document = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"rp.mjs {command}: no JSON on stdout (status {proc.returncode})\n"
                             f"stdout: {proc.stdout[:2000]}\nstderr: {proc.stderr[:2000]}") from None
    assert isinstance(document, dict) and "ok" in document, document
    return document


@dataclasses.dataclass
class RelyingParty:
    """A client registered at the provider, as the Node relying party is configured for it."""

    issuer: str
    client_id: str
    auth: str
    redirect_uri: str
    post_logout_redirect_uri: str
    client_secret: str | None = None
    private_jwk: dict[str, Any] | None = None
    id_token_signed_response_alg: str | None = None

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"issuer": self.issuer, "client_id": self.client_id, "auth": self.auth,
                                  "redirect_uri": self.redirect_uri}
        if self.client_secret is not None:
            config["client_secret"] = self.client_secret
        if self.private_jwk is not None:
            config["private_jwk"] = self.private_jwk
        if self.id_token_signed_response_alg is not None:
            config["id_token_signed_response_alg"] = self.id_token_signed_response_alg
        return config

    def call(self, command: str, **payload: Any) -> dict[str, Any]:
        """Run ``command`` with this client's configuration; return the document, success or not."""
        return run_rp(command, {**self._config(), **payload})

    def ok(self, command: str, **payload: Any) -> dict[str, Any]:
        """Run ``command`` and assert that the library and the provider accepted it."""
        document = self.call(command, **payload)
        assert document["ok"], f"{command} refused: {json.dumps(document.get('error'), indent=1)}"
        return document

    def refused(self, command: str, **payload: Any) -> dict[str, Any]:
        """Run ``command``, assert that it failed, and return the error description."""
        document = self.call(command, **payload)
        assert not document["ok"], f"{command} unexpectedly succeeded: {document}"
        return document["error"]


class _Landing(BaseHTTPRequestHandler):
    """The relying party's web side: a blank page for whatever URL the provider sends the browser to."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"<!doctype html><title>RP</title><p>ok</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture(scope="module")
def rp_port() -> Iterator[int]:
    """The loopback port of the relying party's redirect URIs, where a tiny page server answers so that
    the browser's navigation ends normally; the tests read the URL of the browser's request."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=server.serve_forever, name="rp-landing", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def make_rp(session, rt: Runtime, provider: Provider, rp_port: int) -> Callable[..., RelyingParty]:
    """Register a client at the provider and return the Node relying party configured for it.

    ``auth``: ``client_secret_basic``, ``client_secret_post``, ``private_key_jwt`` (a fresh P-256 key made
    by the Node side; only its public JWKS is registered) or ``none`` (public client).
    """

    def make(auth: str = "client_secret_basic", *, sensitivity: str = "standard",
             id_token_alg: str | None = None, name: str = "Application de test") -> RelyingParty:
        redirect_uri = f"http://127.0.0.1:{rp_port}/callback"
        bye = f"http://127.0.0.1:{rp_port}/bye"
        private_jwk = None
        jwks = None
        if auth == "private_key_jwt":
            keys = run_rp("keygen")
            assert keys["ok"], keys
            private_jwk, jwks = keys["private_jwk"], {"keys": [keys["public_jwk"]]}
        registered = register(session, rt, name=name, sensitivity=sensitivity, auth_method=auth,
                              redirect_uris=(redirect_uri,), post_logout_redirect_uris=(bye,), jwks=jwks,
                              scopes="openid profile email offline_access")
        if id_token_alg is not None:
            oidc.set_id_token_alg(session, registered.client_id, id_token_alg)
            session.commit()
        return RelyingParty(issuer=provider.issuer, client_id=registered.client_id, auth=auth,
                            redirect_uri=redirect_uri, post_logout_redirect_uri=bye,
                            client_secret=registered.secret, private_jwk=private_jwk,
                            id_token_signed_response_alg=id_token_alg)

    return make


# --- the person and the browser ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SignedIn:
    """A person with a proofed second factor and the SSO cookie of their two-factor session."""

    identity_id: int
    sub: str
    cookie_name: str
    cookie: str


@pytest.fixture()
def signed_in(session, rt: Runtime) -> SignedIn:
    identity = create_identity(session)
    add_second_factor(session, identity)  # proofed TOTP: the session reaches eidas2
    cookie = open_sso_session(rt, identity.id)
    return SignedIn(identity_id=identity.id, sub=identity.public_id,
                    cookie_name=login_session.cookie_name(rt.settings), cookie=cookie)


class Chromium:
    """Chromium through Playwright, confined to one dedicated thread.

    Playwright's synchronous API belongs to the thread that started it and refuses to start where an
    event loop runs; giving it a thread of its own keeps these tests independent of whatever else the
    suite does with Playwright in the main thread.
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Any = None
        self._browser: Any = None
        try:
            self.run(self._start)
        except BaseException:
            self.close()
            raise

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the browser's thread and return its result (bounded wait)."""
        return self._thread.submit(fn, *args).result(timeout=60)

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                                                         timeout=30_000)

    def new_context(self, issuer: str, cookie_name: str, cookie: str) -> "BrowserSession":
        """A fresh browser profile holding the SSO cookie for ``issuer``'s host."""

        def create() -> Any:
            context = self._browser.new_context()
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            context.add_cookies([{"name": cookie_name, "value": cookie, "url": issuer, "httpOnly": True,
                                  "sameSite": "Lax"}])
            return context

        return BrowserSession(self, self.run(create), issuer, cookie_name)

    def close(self) -> None:
        def stop() -> None:
            try:
                if self._browser is not None:
                    self._browser.close()
            finally:
                if self._playwright is not None:
                    self._playwright.stop()

        try:
            self.run(stop)
        finally:
            self._thread.shutdown(wait=True)


class BrowserSession:
    """One browser profile: follows URLs until the browser is sent to the relying party."""

    def __init__(self, chromium: Chromium, context: Any, issuer: str, cookie_name: str) -> None:
        self._chromium, self._context = chromium, context
        self.issuer, self.cookie_name = issuer, cookie_name

    def follow(self, url: str, until: str) -> str:
        """Open ``url`` and return the URL of the first request whose URL starts with ``until`` (the
        relying party's redirect or post-logout URI, served by the ``rp_port`` page server).

        Fails with the page the browser stopped at when it is never sent there.
        """

        def visit() -> tuple[list[str], str, str]:
            captured: list[str] = []
            page = self._context.new_page()
            # Request events are emitted for every hop of a redirect chain (page.route is not called
            # for the targets of redirects).
            page.on("request", lambda r: captured.append(r.url) if r.url.startswith(until) else None)
            try:
                page.goto(url, wait_until="load")
                return captured, page.url, page.content()[:2000]
            finally:
                page.close()

        captured, final_url, content = self._chromium.run(visit)
        assert captured, f"the browser was not sent to {until}; it stopped at {final_url}:\n{content}"
        return captured[0]

    def sso_cookie(self) -> str | None:
        """Return the value of the SSO cookie the browser still holds for the provider, if any."""
        cookies = self._chromium.run(lambda: self._context.cookies(self.issuer))
        return next((c["value"] for c in cookies if c["name"] == self.cookie_name), None)

    def close(self) -> None:
        self._chromium.run(self._context.close)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture()
def browser(chromium: Chromium, provider: Provider, signed_in: SignedIn) -> Iterator[BrowserSession]:
    """A browser profile of ``signed_in``: the provider's SSO cookie is set, ``/authorize`` needs no page."""
    profile = chromium.new_context(provider.issuer, signed_in.cookie_name, signed_in.cookie)
    try:
        yield profile
    finally:
        profile.close()
