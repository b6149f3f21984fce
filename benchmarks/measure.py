"""Measurements around a load run, read from /proc: CPU seconds of the server's process group (gunicorn's
master and workers, or node) — the "per core" figures divide by it —, CPU seconds of the PostgreSQL backends
serving the benchmark database (informative: both servers store their state there), the load generator's own
CPU (if it is near one core, the load generator and not the server set the pace), and the resident memory of
each server process (sampled; the peak is kept). Also the argon2 bound the sign-in figures are compared with.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import Run, summary  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # the process ended meanwhile


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of /proc/PID/stat)


def group_pids(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (a server started with ``start_new_session``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields is not None and int(fields[2]) == pgid:  # field 5: the process group
                pids.append(int(entry.name))
    return pids


def server_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the server's processes: what "per core" divides by, since the
    load generator and PostgreSQL run on the same machine."""
    return sum(_cpu(fields) for pid in group_pids(pgid) if (fields := _stat(pid)) is not None)


def rss_by_process(pgid: int) -> dict[int, tuple[str, int]]:
    """Resident memory (bytes) of each process of the group, with its command name."""
    out = {}
    for pid in group_pids(pgid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmRSS" in fields:
            out[pid] = (fields["Name"].strip(), int(fields["VmRSS"].split()[0]) * 1024)
    return out


class MemorySampler:
    """Samples the RSS of the server's processes every ``interval`` seconds and keeps each one's peak."""

    def __init__(self, pgid: int, interval: float = 0.25) -> None:
        self.pgid = pgid
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, (name, rss) in rss_by_process(self.pgid).items():
                if rss > self.peaks.get(pid, ("", 0))[1]:
                    self.peaks[pid] = (name, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> list[dict[str, Any]]:
        return [{"pid": pid, "name": name, "peak_rss_mib": round(rss / 2**20, 1)}
                for pid, (name, rss) in sorted(self.peaks.items())]


class DatabaseBackends:
    """CPU time of the PostgreSQL backends connected to the benchmark database (this one's own excepted)."""

    def __init__(self, database_url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"),
                                     autocommit=True)

    def cpu_by_backend(self) -> dict[int, float]:
        rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND pid <> pg_backend_pid()").fetchall()
        return {pid: _cpu(fields) for (pid,) in rows if (fields := _stat(pid)) is not None}

    def server_version(self) -> str:
        return str(self._conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        self._conn.close()


def measured(pgid: int, action: Callable[[], Run], backends: DatabaseBackends | None = None
             ) -> tuple[dict[str, Any], Run]:
    """Run ``action`` and return its summary with the CPU used meanwhile by the server (``per_core``: successful
    operations per second of server CPU), the database backends and the load generator."""
    db0 = backends.cpu_by_backend() if backends else {}
    cpu0, own0 = server_cpu_seconds(pgid), time.process_time()
    run = action()
    server_cpu, own = server_cpu_seconds(pgid) - cpu0, time.process_time() - own0
    out = summary(run)
    out["server_cpu_s"] = round(server_cpu, 2)
    out["per_core"] = round(out["count"] / server_cpu, 1) if server_cpu > 0 else None
    # Near 1 (one pinned core) the server was the bottleneck; well below, the figure is not its maximum.
    out["server_cores_busy"] = round(server_cpu / run.elapsed, 2) if run.elapsed > 0.1 else None
    if backends:
        db1 = backends.cpu_by_backend()
        out["db_cpu_s"] = round(sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items()), 2)
    out["loadgen_cores_busy"] = round(own / run.elapsed, 2) if run.elapsed > 0.1 else None
    return out, run


def argon2_bound(verifications: int = 20) -> dict[str, Any]:
    """argon2id verifications per CPU-second, in this process, one after the other, with argon2-cffi and
    HospiConnect's parameters: the ceiling of password sign-ins per core, since the hash dominates them."""
    from argon2 import PasswordHasher

    from hospiconnect.authenticators.password import ARGON2_PARAMETERS

    hasher = PasswordHasher(**ARGON2_PARAMETERS)  # type: ignore[arg-type]
    stored = hasher.hash("argon2 bound")
    t0 = time.thread_time()
    for _ in range(verifications):
        hasher.verify(stored, "argon2 bound")
    cpu = time.thread_time() - t0
    parameters = {k: v for k, v in ARGON2_PARAMETERS.items() if k in ("time_cost", "memory_cost", "parallelism")}
    return {"library": "argon2-cffi", "parameters": parameters, "verifications": verifications,
            "per_cpu_second": round(verifications / cpu, 1)}
