"""A live provider for the tests that talk to it over HTTP: real ``hospiconnect serve`` processes
(gunicorn), and a signed-in browser's SSO cookie obtained without the sign-in pages.

Used by tests/multiprocess (two instances on one database) and tests/interop (an independent relying
party). Every process listens on 127.0.0.1 only, is waited for with a bounded timeout and is always
stopped by the fixture that started it, even when a test fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import redis
import requests

from hospiconnect.idp import login_session
from hospiconnect.runtime import Runtime

#: What a browser holding a two-factor session presents (RFC 8176): password then TOTP.
MFA_AMR: tuple[str, ...] = ("pwd", "otp", "mfa")
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hospiconnect_command() -> list[str]:
    """Return the ``hospiconnect`` console script of the interpreter running the tests."""
    beside = Path(sys.executable).with_name("hospiconnect")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("hospiconnect")
    if found is None:
        raise RuntimeError("the hospiconnect command is not installed (pip install -e .)")
    return [found]


def server_env(*, database_url: str, key_file: Path, instance_path: Path, issuer: str,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a server or command-line process on the tests' database and keys.

    Every ``HOSPICONNECT_*`` variable of the calling environment is dropped first, so a developer's own
    configuration (or the suite's ``HOSPICONNECT_TEST_DATABASE_URL``) never leaks into the process.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPICONNECT_")}
    env.update({
        "HOSPICONNECT_ENV": "test",
        "HOSPICONNECT_DATABASE_URL": database_url,
        "HOSPICONNECT_SECRET_KEY_FILE": str(key_file),
        "HOSPICONNECT_INSTANCE_PATH": str(instance_path),
        "HOSPICONNECT_ISSUER": issuer,
        "HOSPICONNECT_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


@dataclasses.dataclass
class ServerProcess:
    """One ``hospiconnect serve`` process (gunicorn master and its worker)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """The address the tests connect to (loopback, whatever the issuer says)."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, limit: int = 6000) -> str:
        """Return the end of the process's output, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server: SIGINT (gunicorn's quick shutdown), then SIGKILL to its process group (master
        and worker) while the master is still there after :data:`STOP_TIMEOUT_SECONDS`."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        # A gunicorn master exits only after its workers: nothing of the group is left once it is gone.


def start_server(name: str, env: Mapping[str, str], log_dir: Path, *, port: int | None = None,
                 workers: int = 1, threads: int = 4) -> ServerProcess:
    """Start ``hospiconnect serve`` on 127.0.0.1 and return at once (see :func:`wait_ready`).

    The process gets its own session (process group) so that :meth:`ServerProcess.stop` can reach its
    worker too; its output goes to a file, never to a pipe that nobody reads.
    """
    port = port or free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*hospiconnect_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers), "--threads", str(threads)],
            env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ServerProcess(name=name, port=port, process=process, log_path=log_path)


def wait_ready(servers: Iterable[ServerProcess], timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Poll ``/healthz`` of every server until it answers 200. Raises :class:`RuntimeError` with the
    server's output when one exits or is not ready within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for server in servers:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited with status {server.process.returncode}:\n"
                                   f"{server.log_tail()}")
            try:
                if requests.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.1)


@contextlib.contextmanager
def running(servers: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    """Wait for ``servers`` and stop every one of them on the way out, whatever happens."""
    try:
        wait_ready(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def run_cli(args: list[str], env: Mapping[str, str],
            timeout: float = CLI_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    """Run ``hospiconnect ARGS`` with ``env`` and return the completed process (output captured)."""
    return subprocess.run([*hospiconnect_command(), *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def open_sso_session(rt: Runtime, identity_id: int, *, amr: Iterable[str] = MFA_AMR,
                     acr: str = "eidas2") -> str:
    """Open an SSO session for ``identity_id`` directly in the database, as the sign-in pages would after
    a password and a second factor, and return the cookie value a browser would hold."""
    amr = list(amr)
    with rt.db.session() as s:
        _, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=identity_id, amr=amr, acr=acr,
                                       mfa="mfa" in amr, existing=None, client_ip="127.0.0.1",
                                       user_agent="hospiconnect-tests")
    return cookie


def cookie_header(rt: Runtime, value: str) -> dict[str, str]:
    """Return the ``Cookie`` header carrying the SSO cookie ``value`` (for plain HTTP clients)."""
    return {"Cookie": f"{login_session.cookie_name(rt.settings)}={value}"}


# --- Browsers on the HTML pages, and requests released together -------------------------------------------
#
# A ``requests.Session`` plays the browser: its cookies are scoped by host, not by port (RFC 6265 §8.5), so
# one jar carries the same cookies to both instances, as one browser does behind a load balancer. The CSRF
# token of a page is valid on the other instance since both sign with the same key file.

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
RACE_TIMEOUT_SECONDS = 60.0


def csrf_token_of(html: str) -> str:
    """Return the CSRF token of the (first) form of a page."""
    found = _CSRF_FIELD.search(html)
    if found is None:
        raise AssertionError(f"no CSRF token in the page:\n{html[:1500]}")
    return found.group(1)


def path_of(location: str) -> str:
    """Return the path and query of a ``Location`` header, absolute (issuer's host) or relative: the tests
    send it to the instance of their choice."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page(browser: requests.Session, server: ServerProcess, path: str, **params: str) -> requests.Response:
    """GET ``path`` on ``server`` as ``browser``, without following redirects."""
    return browser.get(f"{server.url}{path}", params=params or None, allow_redirects=False,
                       timeout=RACE_TIMEOUT_SECONDS)


def post_form(browser: requests.Session, server: ServerProcess, path: str, data: Mapping[str, str], *,
              token: str) -> requests.Response:
    """POST a form with the CSRF token ``token`` to ``path`` on ``server``, without following redirects."""
    return browser.post(f"{server.url}{path}", data={**data, "csrf_token": token}, allow_redirects=False,
                        timeout=RACE_TIMEOUT_SECONDS)


def copy_browser(browser: requests.Session) -> requests.Session:
    """Return a new browser holding the cookies of ``browser`` (the same person's tabs, or a stolen jar)."""
    other = requests.Session()
    other.cookies.update(browser.cookies)
    return other


@dataclasses.dataclass
class Racer:
    """One request of a race: ``send`` is called with nothing once every racer is ready."""

    server: ServerProcess
    browser: requests.Session
    send: Callable[[], requests.Response]


def release_together(racers: list[Racer]) -> list[tuple[str, requests.Response]]:
    """Run every racer's ``send`` at once, from its own thread; return ``(instance name, response)`` pairs
    in the racers' order.

    Each racer first opens its keep-alive connection (``/healthz`` on its instance) and then waits at a
    barrier, so the requests leave together rather than one connection set-up apart.
    """
    barrier = threading.Barrier(len(racers))

    def run(racer: Racer) -> tuple[str, requests.Response]:
        racer.browser.get(f"{racer.server.url}/healthz", timeout=RACE_TIMEOUT_SECONDS)
        barrier.wait(timeout=RACE_TIMEOUT_SECONDS)
        return racer.server.name, racer.send()

    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        futures = [pool.submit(run, racer) for racer in racers]
        return [future.result(timeout=2 * RACE_TIMEOUT_SECONDS) for future in futures]


#: Where :class:`hospiconnect.ratelimit.RedisBackend` keeps its counters (its default prefix).
THROTTLE_PREFIX = "hospiconnect:throttle:"


def throttle_counter(client: redis.Redis, key: str) -> tuple[int, float | None] | None:
    """Return ``(failures, locked until as epoch seconds or None)`` of the throttle counter ``key``
    (:func:`hospiconnect.ratelimit.account_key` or ``ip_key``) in Redis, or None when there is none."""
    failures, locked_until = client.hmget(THROTTLE_PREFIX + key, "f", "u")
    if failures is None:
        return None
    return int(failures), float(locked_until) if locked_until is not None else None


# --- One server with options of its own (pid file, worker count from the environment) ----------------------


def start_serve(name: str, env: Mapping[str, str], log_dir: Path, *, options: Iterable[str] = (),
                port: int | None = None) -> ServerProcess:
    """Start ``hospiconnect serve --host 127.0.0.1 --port PORT OPTIONS…`` and return at once, like
    :func:`start_server` but with the options given as they are (none: the command's defaults and
    environment apply)."""
    port = port or free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*hospiconnect_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *options],
            env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ServerProcess(name=name, port=port, process=process, log_path=log_path)


def child_pids(pid: int) -> set[int]:
    """Return the processes whose parent is ``pid`` (a gunicorn master's workers), read from /proc."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (command) state ppid …": the command may hold spaces and parentheses, the last ")" ends it.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.add(int(entry.name))
    return children
