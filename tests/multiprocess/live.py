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
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping

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
