"""Throwaway PostgreSQL and Redis servers that the fault tests own and may stop, start and break at will.

The suite's PostgreSQL (port 5432) and Redis (port 6379) are shared with everything else on the machine:
stopping them would disturb other tests. So these tests make their own:

* :class:`ThrowawayPostgres`: ``initdb`` into a fresh folder, ``pg_ctl`` on a free port, listening on
  127.0.0.1 only (no Unix socket), trust authentication for ``postgres``. PostgreSQL refuses to run as root:
  when the tests run as root (CI), every ``initdb``/``pg_ctl`` runs as the ``postgres`` system account
  through ``runuser``, in a folder that account owns.
* :class:`ThrowawayRedis`: ``redis-server`` on a free port, no persistence, in its own folder.

Each is stopped and its folder removed by :meth:`destroy`, which the fixtures call in a ``finally``. Should
the test process itself be killed, the PostgreSQL postmaster notices within a minute that its folder (and
lock file) is gone and shuts down by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.multiprocess.live import free_port

COMMAND_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 30.0
POSTGRES_ACCOUNT = "postgres"


class ServiceError(RuntimeError):
    """A throwaway server could not be created, started or stopped (the message carries its log)."""


def _postgres_bin_dir() -> Path:
    """Return the folder of ``initdb`` and ``pg_ctl``: the newest /usr/lib/postgresql/N/bin (Debian), else
    the one on PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("pg_ctl")
    if found is None or shutil.which("initdb") is None:
        raise ServiceError("initdb and pg_ctl (PostgreSQL server binaries) are not installed")
    return Path(found).resolve().parent


@dataclasses.dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (see the module docstring)."""

    root: Path
    port: int
    bin_dir: Path
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgresql.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls) -> "ThrowawayPostgres":
        """``initdb`` a new cluster in a new folder (not started)."""
        run_as = POSTGRES_ACCOUNT if os.geteuid() == 0 else None
        # As root, under /tmp itself: a folder of pytest's (mode 0700, root's) cannot be entered by postgres.
        root = Path(tempfile.mkdtemp(prefix="hospiconnect-faults-pg-", dir="/tmp" if run_as else None))
        cluster = cls(root=root, port=free_port(), bin_dir=_postgres_bin_dir(), run_as=run_as)
        try:
            if run_as:
                account = pwd.getpwnam(run_as)
                os.chown(root, account.pw_uid, account.pw_gid)
            root.chmod(0o700)
            cluster._run("initdb", "-D", str(cluster.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--locale=C.UTF-8")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(self._command(program, *args), capture_output=True, text=True,
                                   timeout=COMMAND_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL, check=False,
                                   cwd=self.root)
        if completed.returncode != 0:
            raise ServiceError(f"{program} {' '.join(args)} failed ({completed.returncode}):\n"
                               f"{completed.stdout}\n{completed.stderr}\n{self.log_tail()}")
        return completed

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
                   "-c max_connections=60 -c shared_buffers=16MB")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w",
                  "-t", str(int(READY_TIMEOUT_SECONDS)), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: open sessions are ended, their transactions rolled back) and wait."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(READY_TIMEOUT_SECONDS)),
                  "stop")

    def running(self) -> bool:
        completed = subprocess.run(self._command("pg_ctl", "-D", str(self.data_dir), "status"),
                                   capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
                                   stdin=subprocess.DEVNULL, check=False, cwd=self.root)
        return completed.returncode == 0

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no PostgreSQL log)"

    def destroy(self) -> None:
        """Stop the server if it runs (immediately: nothing in it is kept) and remove its folder."""
        try:
            if self.data_dir.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclasses.dataclass
class ThrowawayRedis:
    """A ``redis-server`` of its own, on a fixed port across restarts, without persistence."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    @classmethod
    def create(cls, port: int | None = None) -> "ThrowawayRedis":
        """Prepare a folder and a port (not started)."""
        if shutil.which("redis-server") is None:
            raise ServiceError("redis-server is not installed")
        return cls(root=Path(tempfile.mkdtemp(prefix="hospiconnect-faults-redis-")), port=port or free_port())

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise ServiceError("redis-server already runs")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    raise ServiceError(f"redis-server exited ({self.process.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise ServiceError(f"redis-server not ready:\n{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it: its port refuses connections after."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no Redis log)"

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def child_pids(pid: int) -> set[int]:
    """Return the ids of the live processes whose parent is ``pid`` (a gunicorn master's workers)."""
    children = set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.add(int(Path(stat).parent.name))
    return children
