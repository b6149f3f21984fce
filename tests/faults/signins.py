"""People signing in over HTTP, the way a browser and a relying party do, with every request recorded.

One sign-in (:class:`SignIn`) is the whole authorization code flow through the real login page: ``GET
/authorize`` → ``GET /connexion/<id>`` (the page and its CSRF token) → ``POST .../mot-de-passe`` (identifier
and password) → ``GET /authorize/resume/<id>`` → the code → ``POST /token`` → ``POST /token`` with the
refresh token (rotation), one request at a time, a failed request being sent again as it was.

Every request becomes an :class:`Exchange` (what was asked, when, what came back), and every secret the
client received (codes, tokens) goes to a :class:`Ledger`, so that the tests can compare what the client
saw with what the database committed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.oidc_helpers import RegisteredClient

#: A request that takes longer than this is a hang, whatever its answer.
REQUEST_TIMEOUT_SECONDS = 20.0
UNAVAILABLE_TITLE = "Service momentanément indisponible"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)


@dataclasses.dataclass(frozen=True)
class Person:
    """A person who signs in with an identifier and a password."""

    identity_id: int
    public_id: str
    user_name: str
    password: str


@dataclasses.dataclass(frozen=True)
class Exchange:
    """One HTTP request of a sign-in and what came of it."""

    person: str
    step: str
    started: float  # time.monotonic()
    ended: float
    #: None: no HTTP answer at all (connection refused or reset, timeout).
    status: int | None
    content_type: str
    retry_after: str | None
    #: The OAuth error, the page's title, or the exception's class.
    gist: str

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def is_clean_unavailable(self) -> bool:
        """A 503 in the form its client understands: an OAuth JSON error for the token endpoint, the French
        page for a browser; both with ``Retry-After``."""
        if self.status != 503 or not self.retry_after:
            return False
        if self.step.startswith("token") or self.step.startswith("refresh"):
            return self.content_type == "application/json" and self.gist == "temporarily_unavailable"
        return self.content_type == "text/html" and UNAVAILABLE_TITLE in self.gist

    def describe(self) -> str:
        return f"{self.person} {self.step} → {self.status} {self.content_type} {self.gist!r} ({self.seconds:.2f} s)"


@dataclasses.dataclass
class Issued:
    """A code the client received, and what became of its exchange."""

    person: str
    verifier: str
    #: The token response, once an exchange succeeded.
    tokens: dict[str, Any] | None = None
    failed_exchanges: int = 0


@dataclasses.dataclass
class Rotation:
    """A refresh token the client holds, and what became of its rotation."""

    person: str
    rotated_to: dict[str, Any] | None = None
    failed_rotations: int = 0


class Ledger:
    """What the clients saw, shared by the threads of a load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self.passwords_accepted: Counter[str] = Counter()
        self.codes: dict[str, Issued] = {}
        self.refresh_tokens: dict[str, Rotation] = {}

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def password_accepted(self, person: Person) -> None:
        with self._lock:
            self.passwords_accepted[person.user_name] += 1

    def code_received(self, person: Person, code: str, verifier: str) -> None:
        with self._lock:
            self.codes[code] = Issued(person.user_name, verifier)

    def exchanged(self, code: str, tokens: dict[str, Any] | None) -> None:
        with self._lock:
            if tokens is None:
                self.codes[code].failed_exchanges += 1
            else:
                self.codes[code].tokens = tokens
                self.refresh_tokens[tokens["refresh_token"]] = Rotation(self.codes[code].person)

    def rotated(self, refresh_token: str, tokens: dict[str, Any] | None) -> None:
        with self._lock:
            rotation = self.refresh_tokens[refresh_token]
            if tokens is None:
                rotation.failed_rotations += 1
            else:
                rotation.rotated_to = tokens
                self.refresh_tokens[tokens["refresh_token"]] = Rotation(rotation.person)

    def token_responses(self) -> list[tuple[str, dict[str, Any]]]:
        """Every successful token response: ``(person, body)``, code exchanges and rotations."""
        with self._lock:
            found = [(issued.person, issued.tokens) for issued in self.codes.values() if issued.tokens]
            found += [(r.person, r.rotated_to) for r in self.refresh_tokens.values() if r.rotated_to]
        return found  # type: ignore[return-value]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _gist(response: requests.Response) -> str:
    if response.headers.get("Content-Type", "").startswith("application/json"):
        try:
            body = response.json()
        except ValueError:
            return response.text[:120]
        return str(body.get("error", "")) if isinstance(body, dict) else ""
    found = _TITLE.search(response.text)
    return found.group(1).strip() if found else response.text[:120]


class Browser:
    """One browser (its own cookie jar) sending requests to ``base_url`` and recording them in a ledger."""

    def __init__(self, base_url: str, ledger: Ledger, person: Person) -> None:
        self.base_url = base_url
        self.ledger = ledger
        self.person = person
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def send(self, step: str, method: str, path: str, *, expect: int | tuple[int, ...],
             **kwargs: Any) -> requests.Response | None:
        """Send one request; record it; return the response when its status is (one of) ``expect``, else
        None."""
        started = time.monotonic()
        try:
            response = self.http.request(method, self.base_url + path, allow_redirects=False,
                                         timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
        except requests.RequestException as exc:
            self.ledger.record(Exchange(self.person.user_name, step, started, time.monotonic(), None, "", None,
                                        exc.__class__.__name__))
            return None
        ended = time.monotonic()
        self.ledger.record(Exchange(self.person.user_name, step, started, ended, response.status_code,
                                    response.headers.get("Content-Type", "").split(";")[0],
                                    response.headers.get("Retry-After"), _gist(response)))
        wanted = expect if isinstance(expect, tuple) else (expect,)
        return response if response.status_code in wanted else None


def password_attempt(base_url: str, ledger: Ledger, person: Person, rp: RegisteredClient,
                     password: str) -> requests.Response | None:
    """In a fresh browser, open a sign-in for ``rp`` and post ``password`` on its page; return the answer to
    the password (303 accepted, 401 refused), or None when a step failed otherwise."""
    browser = Browser(base_url, ledger, person)
    try:
        started = browser.send("authorize", "GET", "/authorize", expect=302, params=_authorization(rp)[0])
        if started is None:
            return None
        page_path = urlsplit(started.headers["Location"]).path
        page = browser.send("page", "GET", page_path, expect=200)
        if page is None:
            return None
        return browser.send("password", "POST", page_path + "/mot-de-passe", expect=(303, 401),
                            data={"csrf_token": _csrf(page), "username": person.user_name, "password": password})
    finally:
        browser.close()


def _authorization(rp: RegisteredClient) -> tuple[dict[str, str], str]:
    """Return the parameters of an authorization request (PKCE S256, state, nonce) and its verifier."""
    verifier, challenge = pkce()
    return ({"response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uri,
             "scope": "openid profile offline_access", "state": secrets.token_urlsafe(16),
             "nonce": secrets.token_urlsafe(16), "code_challenge": challenge, "code_challenge_method": "S256"},
            verifier)


def _csrf(page: requests.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text[:1000]
    return found.group(1)


class SignIn:
    """One sign-in of ``person`` at ``rp``, in a fresh browser, one request per :meth:`advance`.

    :attr:`stage` names the next request (:data:`STAGES`). A request that fails leaves the stage as it was,
    so calling :meth:`advance` again sends the same request again — the same form, the same code, the same
    refresh token — as a patient client would.
    """

    STAGES = ("authorize", "page", "password", "resume", "token", "refresh", "done")

    def __init__(self, base_url: str, ledger: Ledger, person: Person, rp: RegisteredClient) -> None:
        self.browser = Browser(base_url, ledger, person)
        self.rp = rp
        self.stage = "authorize"
        self.params, self.verifier = _authorization(rp)
        self._page_path = self._resume_path = self._csrf_token = self._code = self._refresh_token = ""

    @property
    def done(self) -> bool:
        return self.stage == "done"

    def close(self) -> None:
        self.browser.close()

    def run(self) -> bool:
        """Advance until done (True) or until a request fails (False)."""
        while not self.done:
            if not self.advance():
                return False
        return True

    def advance(self) -> bool:
        """Send the request of the current stage; move to the next stage and return True when it succeeded."""
        assert not self.done
        browser, ledger, person = self.browser, self.browser.ledger, self.browser.person
        if self.stage == "authorize":
            started = browser.send("authorize", "GET", "/authorize", expect=302, params=self.params)
            if started is None:
                return False
            self._page_path = urlsplit(started.headers["Location"]).path
            assert self._page_path.startswith("/connexion/"), started.headers["Location"]
        elif self.stage == "page":
            page = browser.send("page", "GET", self._page_path, expect=200)
            if page is None:
                return False
            self._csrf_token = _csrf(page)
        elif self.stage == "password":
            accepted = browser.send("password", "POST", self._page_path + "/mot-de-passe", expect=303,
                                    data={"csrf_token": self._csrf_token, "username": person.user_name,
                                          "password": person.password})
            if accepted is None:
                return False
            ledger.password_accepted(person)
            self._resume_path = urlsplit(accepted.headers["Location"]).path
            assert self._resume_path.startswith("/authorize/resume/"), accepted.headers["Location"]
        elif self.stage == "resume":
            back = browser.send("resume", "GET", self._resume_path, expect=302)
            if back is None:
                return False
            redirect = back.headers["Location"]
            assert redirect.startswith(self.rp.redirect_uri), redirect
            query = {k: v[0] for k, v in parse_qs(urlsplit(redirect).query).items()}
            assert query.get("state") == self.params["state"] and "code" in query, query
            self._code = query["code"]
            ledger.code_received(person, self._code, self.verifier)
        elif self.stage == "token":
            tokens = exchange_code(browser, self.rp, self._code, self.verifier)
            if tokens is None:
                return False
            self._refresh_token = tokens["refresh_token"]
        elif self.stage == "refresh":
            if rotate(browser, self.rp, self._refresh_token) is None:
                return False
        self.stage = self.STAGES[self.STAGES.index(self.stage) + 1]
        return True


def sign_in(base_url: str, ledger: Ledger, person: Person, rp: RegisteredClient) -> bool:
    """Run one whole :class:`SignIn`; return True when it went through (False at the first failed request)."""
    flow = SignIn(base_url, ledger, person, rp)
    try:
        return flow.run()
    finally:
        flow.close()


def exchange_code(browser: Browser, rp: RegisteredClient, code: str, verifier: str,
                  step: str = "token") -> dict[str, Any] | None:
    """Exchange ``code`` at the token endpoint (client_secret_basic); record the outcome in the ledger."""
    response = browser.send(step, "POST", "/token", expect=200, auth=(rp.client_id, rp.secret or ""),
                            data={"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": rp.redirect_uri, "code_verifier": verifier})
    tokens = response.json() if response is not None else None
    browser.ledger.exchanged(code, tokens)
    return tokens


def rotate(browser: Browser, rp: RegisteredClient, refresh_token: str,
           step: str = "refresh") -> dict[str, Any] | None:
    """Rotate ``refresh_token`` at the token endpoint; record the outcome in the ledger."""
    response = browser.send(step, "POST", "/token", expect=200, auth=(rp.client_id, rp.secret or ""),
                            data={"grant_type": "refresh_token", "refresh_token": refresh_token})
    tokens = response.json() if response is not None else None
    browser.ledger.rotated(refresh_token, tokens)
    return tokens
