"""A live HospiConnect server and a headless Chromium for the browser tests of the self-service pages.

The application runs in a thread (werkzeug ``make_server`` on 127.0.0.1, port chosen by the system) and is
reached as ``http://localhost:PORT``: WebAuthn accepts plain http only on the host name ``localhost``, so
the issuer, the WebAuthn origin and the RP ID are built from that address once the port is known. The
server shares the test database and key file of the ``rt`` fixture (tables are emptied after each test).

The fixtures live here rather than in a ``conftest.py`` so that they do not collide with other browser
tests' fixtures; a test module imports the ones it uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from werkzeug.serving import make_server

from hospiconnect import appctx, create_app
from hospiconnect.db import utcnow
from hospiconnect.idp import login_session
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@dataclasses.dataclass(frozen=True)
class LiveServer:
    """A running application: its address and the runtime (database, keys, settings) it serves with."""

    base_url: str
    runtime: Runtime

    def url(self, path: str) -> str:
        return self.base_url + path

    def open_sso_session(self, identity_id: int, *, mfa: bool = True) -> str:
        """Open an SSO session as the login pages would (two factors by default); return the cookie value."""
        with self.runtime.db.session() as s:
            _sso, cookie = login_session.open(
                s, self.runtime.keys, self.runtime.settings, identity_id=identity_id,
                amr=["mfa", "otp", "pwd"] if mfa else ["pwd"], acr="eidas2" if mfa else "eidas1", mfa=mfa,
                existing=None, client_ip="127.0.0.1", user_agent="chromium (tests)", now=utcnow())
        return cookie

    def sso_cookie(self, value: str) -> dict[str, Any]:
        """The cookie to give to a Playwright browser context (``context.add_cookies([...])``)."""
        return {"name": login_session.cookie_name(self.runtime.settings), "value": value,
                "url": self.base_url, "httpOnly": True, "sameSite": "Lax"}


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[LiveServer]:
    """Serve the application built from ``settings`` on a free port of 127.0.0.1 until the block ends."""
    holder: dict[str, Callable[..., Any]] = {}

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # The application needs the port in its settings, and the port is known only once bound.
        return holder["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    base_url = f"http://localhost:{server.server_port}"
    live = dataclasses.replace(settings, issuer=base_url, webauthn_origins=(base_url,), webauthn_rp_id="localhost")
    app = create_app(live)
    holder["app"] = app
    runtime: Runtime = app.extensions[appctx.EXTENSION]
    thread = threading.Thread(target=server.serve_forever, name="hospiconnect-live", daemon=True)
    thread.start()
    try:
        yield LiveServer(base_url, runtime)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        runtime.db.dispose()


@pytest.fixture()
def live_server(rt: Runtime) -> Iterator[LiveServer]:
    """The application served over HTTP for one test (same database as ``rt``)."""
    with serve(rt.settings) as server:
        yield server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Playwright. Fails (never skips) when Chromium is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium est introuvable à {CHROMIUM} : installez le paquet « chromium » pour lancer les "
                    "tests navigateur (ils ne sont jamais ignorés).", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
