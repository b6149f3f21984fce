"""One load generator for OpenID Connect providers: the same scenario against HospiConnect or the peer
(node-oidc-provider), over HTTP, as a browser and a relying party would play it.

Scenario (what differs between providers is only in a small :class:`Adapter`: paths and form fields):

* a complete sign-in: authorization request (code flow, PKCE S256, nonce) → password page → TOTP page →
  redirect with the code → token request (client_secret_basic) → tokens with a refresh token. Each sign-in is by
  a different person in a fresh cookie jar: a TOTP time step is accepted once per person, as it should be;
* a refresh grant: the refresh token of a chain is exchanged for a new one (rotation), the chain goes on with it.

Runs are closed-loop (N workers, each starting its next operation when the last one ends: the maximum
throughput) or open-loop (operations started at a fixed rate whatever happens, latency counted from the
scheduled start, so that a slow server cannot slow the load down and hide its own queueing).
:mod:`benchmarks.measure` reads the servers' CPU time and memory around the runs.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import dataclasses
import hashlib
import math
import queue
import re
import secrets
import statistics
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable

import pyotp
import requests

TIMEOUT = 30  # seconds for one HTTP request; an operation that takes longer is counted as an error


@dataclasses.dataclass(frozen=True)
class Account:
    """A person of the benchmark: the same username, password and TOTP seed on both providers."""

    username: str
    password: str
    seed: str


@dataclasses.dataclass(frozen=True)
class Client:
    """The relying party: a confidential client with one redirect URI."""

    client_id: str
    secret: str
    redirect_uri: str


class OperationFailed(Exception):
    """A step answered something else than the scenario expects (the message says which step and what)."""


class Adapter:
    """What a provider's sign-in looks like from a browser: its paths and its forms.

    ``password_form``/``totp_form`` get the URL of the first interaction page (the one the authorization
    request redirected to) and the HTML of the page being filled, and return where to post and what.
    """

    name = ""
    authorize_path = "/authorize"
    token_path = "/token"

    def __init__(self, base: str, client: Client) -> None:
        self.base = base.rstrip("/")
        self.client = client

    def password_form(self, page_url: str, html: str, account: Account) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def totp_form(self, page_url: str, html: str, code: str) -> tuple[str, dict[str, str]]:
        raise NotImplementedError


_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class HospiConnectAdapter(Adapter):
    """HospiConnect: /authorize, pages /connexion/… with CSRF tokens, /mot-de-passe then /code."""

    name = "HospiConnect"

    @staticmethod
    def _csrf(html: str) -> str:
        match = _CSRF_RE.search(html)
        if not match:
            raise OperationFailed("no CSRF token in the page")
        return match.group(1)

    def password_form(self, page_url: str, html: str, account: Account) -> tuple[str, dict[str, str]]:
        return f"{page_url}/mot-de-passe", {"csrf_token": self._csrf(html), "username": account.username,
                                            "password": account.password}

    def totp_form(self, page_url: str, html: str, code: str) -> tuple[str, dict[str, str]]:
        return f"{page_url}/code", {"csrf_token": self._csrf(html), "code": code}


class PeerAdapter(Adapter):
    """The node-oidc-provider host application (benchmarks/peer/server.mjs): /auth, /interaction/<uid>/…"""

    name = "node-oidc-provider"
    authorize_path = "/auth"

    def password_form(self, page_url: str, html: str, account: Account) -> tuple[str, dict[str, str]]:
        return f"{page_url}/password", {"username": account.username, "password": account.password}

    def totp_form(self, page_url: str, html: str, code: str) -> tuple[str, dict[str, str]]:
        return f"{page_url}/totp", {"code": code}


def _redirect(response: requests.Response, step: str) -> str:
    location = response.headers.get("Location")
    if response.status_code not in (302, 303) or not location:
        raise OperationFailed(f"{step}: HTTP {response.status_code} {response.text[:200]!r}")
    return urllib.parse.urljoin(response.url, location)


def _page(response: requests.Response, step: str) -> str:
    if response.status_code != 200:
        raise OperationFailed(f"{step}: HTTP {response.status_code} {response.text[:200]!r}")
    return response.text


def sign_in(adapter: Adapter, account: Account) -> dict[str, Any]:
    """Play one complete sign-in of ``account`` in a fresh cookie jar; return the token response."""
    client = adapter.client
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    with requests.Session() as http:
        r = http.get(f"{adapter.base}{adapter.authorize_path}", params={
            "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
            "scope": "openid profile offline_access", "state": state, "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge, "code_challenge_method": "S256"}, allow_redirects=False, timeout=TIMEOUT)
        page_url = _redirect(r, "authorization request")
        html = _page(http.get(page_url, timeout=TIMEOUT), "password page")
        url, form = adapter.password_form(page_url, html, account)
        totp_url = _redirect(http.post(url, data=form, allow_redirects=False, timeout=TIMEOUT), "password")
        html = _page(http.get(totp_url, timeout=TIMEOUT), "TOTP page")
        url, form = adapter.totp_form(page_url, html, pyotp.TOTP(account.seed).now())
        resume = _redirect(http.post(url, data=form, allow_redirects=False, timeout=TIMEOUT), "TOTP code")
        callback = _redirect(http.get(resume, allow_redirects=False, timeout=TIMEOUT), "resumed authorization")
        if not callback.startswith(client.redirect_uri):
            raise OperationFailed(f"resumed authorization: redirected to {callback[:200]!r}")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
        if query.get("state") != [state] or "code" not in query:
            raise OperationFailed(f"callback without code or with another state: {callback[:200]!r}")
        r = http.post(f"{adapter.base}{adapter.token_path}", data={
            "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": client.redirect_uri,
            "code_verifier": verifier}, auth=(client.client_id, client.secret), timeout=TIMEOUT)
    if r.status_code != 200:
        raise OperationFailed(f"code grant: HTTP {r.status_code} {r.text[:200]!r}")
    tokens = r.json()
    if "id_token" not in tokens or "refresh_token" not in tokens:
        raise OperationFailed(f"code grant: no ID token or no refresh token in {sorted(tokens)}")
    return tokens


def refresh(adapter: Adapter, http: requests.Session, refresh_token: str) -> str:
    """Exchange ``refresh_token`` for a new one (rotation); return the new refresh token."""
    r = http.post(f"{adapter.base}{adapter.token_path}", data={"grant_type": "refresh_token",
                                                                  "refresh_token": refresh_token},
                  auth=(adapter.client.client_id, adapter.client.secret), timeout=TIMEOUT)
    if r.status_code != 200:
        raise OperationFailed(f"refresh grant: HTTP {r.status_code} {r.text[:200]!r}")
    new = r.json().get("refresh_token")
    if not new or new == refresh_token:
        raise OperationFailed("refresh grant: the refresh token was not rotated")
    return str(new)


class RefreshChains:
    """Refresh tokens in use: an operation takes a chain, refreshes it and gives the new token back, so that
    a token is never used twice (a reused one would revoke its family) whatever the concurrency. Each thread
    keeps its own HTTP connection."""

    def __init__(self, adapter: Adapter, tokens: list[str]) -> None:
        self.adapter = adapter
        self._chains: queue.Queue[str] = queue.Queue()
        for token in tokens:
            self._chains.put(token)
        self._local = threading.local()

    def __len__(self) -> int:
        return self._chains.qsize()

    def step(self, _index: int) -> None:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
        token = self._chains.get(timeout=TIMEOUT)
        try:
            token = refresh(self.adapter, http, token)
        finally:
            self._chains.put(token)  # a failed refresh gives the old token back: the next use will tell


# --- running -------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """The outcome of a run: one latency per successful operation, the errors, the wall time."""

    latencies: list[float]
    errors: list[str]
    elapsed: float
    results: list[Any]


def closed_loop(task: Callable[[int], Any], concurrency: int, *, count: int | None = None,
                seconds: float | None = None) -> Run:
    """Run ``task(0)``, ``task(1)``… from ``concurrency`` threads, each starting its next operation when its
    last one ends, until ``count`` operations were started or ``seconds`` have passed."""
    if count is None and seconds is None:
        raise ValueError("a closed loop needs a count or a duration")
    lock = threading.Lock()
    counter = iter(range(count if count is not None else sys.maxsize))
    deadline = time.perf_counter() + seconds if seconds is not None else math.inf
    latencies: list[float] = []
    errors: list[str] = []
    results: list[Any] = []

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            t0 = time.perf_counter()
            try:
                result = task(index)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, none stops the run
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                results.append(result)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(latencies, errors, time.perf_counter() - t0, results)


def open_loop(task: Callable[[int], Any], rate: float, count: int, *, max_in_flight: int = 64) -> Run:
    """Start ``task(i)`` at ``t0 + i / rate`` for i < ``count``, whatever the answers; the latency of an
    operation runs from its scheduled start, so time spent waiting for a free thread counts (no coordinated
    omission)."""
    if rate <= 0:
        raise ValueError("the rate must be positive")
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    results: list[Any] = []

    def run(index: int, scheduled: float) -> None:
        try:
            result = task(index)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, none stops the run
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            latencies.append(time.perf_counter() - scheduled)
            results.append(result)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_in_flight) as pool:
        for index in range(count):
            scheduled = t0 + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(run, index, scheduled)
    return Run(latencies, errors, time.perf_counter() - t0, results)


# --- figures ----------------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(0, math.ceil(len(sorted_values) * fraction) - 1)]


def summary(run: Run) -> dict[str, Any]:
    """Throughput and latency of a run (milliseconds), with the first errors."""
    timings = sorted(run.latencies)
    out: dict[str, Any] = {"count": len(timings), "errors": len(run.errors),
                           "seconds": round(run.elapsed, 2),
                           "per_second": round(len(timings) / run.elapsed, 1) if run.elapsed else 0.0}
    if timings:
        out |= {"median_ms": round(statistics.median(timings) * 1000, 1),
                "p99_ms": round(percentile(timings, 0.99) * 1000, 1)}
    if run.errors:
        out["first_errors"] = sorted(set(run.errors))[:5]
    return out
