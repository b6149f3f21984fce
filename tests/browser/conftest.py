"""Fixtures of the browser tests: the real application served over HTTP in a thread, driven by Chromium
through Playwright, with a virtual WebAuthn authenticator when a test needs one.

The server binds 127.0.0.1 on a free port but every URL uses the host name ``localhost``: WebAuthn needs
an origin whose host matches the RP ID (``localhost``), and browsers treat http://localhost as a secure
context. The database is the suite's (tests/conftest.py: SQLite, or PostgreSQL with
HOSPICONNECT_TEST_DATABASE_URL), emptied after each test.

Chromium is /usr/bin/chromium (the system package, not a Playwright download). Without it these tests
fail with a clear message: they are part of ``make test`` and must not vanish silently.
"""

from __future__ import annotations

import dataclasses
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from werkzeug.serving import make_server

from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000


@dataclasses.dataclass(frozen=True)
class LiveServer:
    """The application running for one test: ``url`` is its origin (``http://localhost:PORT``)."""

    url: str
    runtime: Runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings


@dataclasses.dataclass
class VirtualAuthenticator:
    """A Chromium virtual authenticator (CDP WebAuthn domain) attached to one page."""

    cdp: Any
    authenticator_id: str

    def set_user_verified(self, verified: bool) -> None:
        self.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": self.authenticator_id,
                                                   "isUserVerified": verified})

    def credentials(self) -> list[dict[str, Any]]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})["credentials"]


@dataclasses.dataclass
class Receiver:
    """A relying party reduced to its redirect URI: it records every URL the browser brings to it."""

    redirect_uri: str
    reached: list[str]


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    """Serve ``http://127.0.0.1:PORT/callback`` (a loopback redirect URI, another origin than the provider's,
    so the pages' ``form-action`` must allow it for the browser to get there)."""
    reached: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.startswith("/callback"):  # not the browser's favicon request
                reached.append(f"http://127.0.0.1:{self.server.server_address[1]}{self.path}")
            body = "<!doctype html><title>Application</title><p>Application cliente</p>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/callback", reached)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (a new context per test keeps tests apart). Module scope:
    Playwright's synchronous API allows one driver per thread at a time, and another module may start
    its own."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium est introuvable ({CHROMIUM}) : installez le paquet « chromium » pour exécuter "
                    "les tests de navigateur (tests/browser).", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def live_server(rt: Runtime) -> Iterator[LiveServer]:
    """Serve the application on http://localhost:PORT in a background thread."""
    from hospiconnect import appctx, create_app

    app = create_app(rt.settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    origin = f"http://localhost:{server.server_port}"
    # The port is known only once bound: the runtime the views use gets the issuer and WebAuthn origin now.
    settings = dataclasses.replace(rt.settings, issuer=origin, webauthn_origins=(origin,),
                                   webauthn_rp_id="localhost")
    runtime = Runtime(settings)
    app.extensions[appctx.EXTENSION] = runtime
    app.config["SETTINGS"] = settings
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(origin, runtime)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        runtime.db.dispose()


@pytest.fixture()
def page(chromium: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh page (own cookies) in French. A Content-Security-Policy violation or a script error on it
    fails the test: the pages must work under their own CSP."""
    context = chromium.new_context(locale="fr-FR", base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and ("Content Security Policy" in message.text
                                            or "Refused to" in message.text) else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture()
def virtual_authenticator(page: Any) -> Callable[..., VirtualAuthenticator]:
    """Return a function that attaches a CTAP2 platform authenticator with resident keys to ``page``."""

    def attach(*, user_verified: bool = True) -> VirtualAuthenticator:
        cdp = page.context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
            "isUserVerified": user_verified, "automaticPresenceSimulation": True}})
        return VirtualAuthenticator(cdp, added["authenticatorId"])

    return attach
