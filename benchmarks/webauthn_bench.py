"""Throughput of WebAuthn logins: ``begin_authentication`` + ``complete_authentication``, each in its own
session and committed, as two HTTP requests would do it (challenge stored, challenge consumed, signature
verified, counter updated, ``last_used_at`` set, journal entry appended).

The software authenticator's work (building and signing the assertion, the browser's and the key's part)
is timed apart and left out of the server figure.

    HOSPICONNECT_DATABASE_URL=postgresql://… .venv/bin/python benchmarks/webauthn_bench.py [N] [PROCESSES]

After the single-connection runs, ``PROCESSES`` (default 2, one per core here) run at once, each signing
in a different person, for the combined throughput.

The database must already be initialised (``hospiconnect init``). The run adds one identity, one MIE and
N + 1 journal entries to it.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import string
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from hospiconnect.authenticators import webauthn  # noqa: E402
from hospiconnect.db import Database  # noqa: E402
from hospiconnect.directory import services as directory  # noqa: E402
from hospiconnect.runtime import Runtime  # noqa: E402
from hospiconnect.settings import Settings  # noqa: E402
from tests.softauthn import SoftAuthenticator  # noqa: E402


def _bench_identity(db: Database) -> Any:
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(10))
    raw = {"birth_family_name": f"Banc{suffix}", "given_names": "Mesure", "birth_date": "1980-01-01",
           "birth_place": "75056", "birth_country": "99100", "gender": "F",
           "email": f"banc.{suffix}@exemple.fr", "contract_type": "permanent", "start_date": "2020-01-01",
           "establishments": "750712184", "roles": "ide"}
    with db.session() as session:
        data = directory.validate_identity(raw)
        return directory.create_identity(session, data, actor="benchmark", confirm_homonym=True)


def bench_webauthn(rt_or_db_url: Runtime | str, n: int = 2000, *, warmup: int = 50,
                   passwordless: bool = False, synchronous_commit: bool = True) -> dict[str, Any]:
    """Run ``n`` WebAuthn logins (after ``warmup`` untimed ones) against ``rt_or_db_url`` on one thread.

    Returns a dict: ``per_second`` (server side: begin + complete with their commits), ``end_to_end_per_second``
    (with the software authenticator's work), mean / median / 95th percentile milliseconds per login
    (server side), the process CPU milliseconds per login (server side) and ``cpu_bound_per_second``
    (1000 / that: what one core allows when the database does not make it wait).

    ``synchronous_commit=False`` (PostgreSQL URL only) opens the connections with
    ``synchronous_commit=off``, to separate the code's cost from the disk's flush latency: a login makes
    two commits, each waiting for a WAL flush.
    """
    if isinstance(rt_or_db_url, Runtime):
        settings, db, owned = rt_or_db_url.settings, rt_or_db_url.db, False
    else:
        settings = Settings.from_env(database_url=rt_or_db_url)
        options: dict[str, Any] = {}
        if not synchronous_commit and not rt_or_db_url.startswith("sqlite"):
            options["connect_args"] = {"options": "-c synchronous_commit=off"}
        db, owned = Database(rt_or_db_url, **options), True
    try:
        identity = _bench_identity(db)
        key = SoftAuthenticator(origin=settings.webauthn_origins[0])
        with db.session() as session:
            challenge_id, options = webauthn.begin_registration(session, identity, settings, require_uv=True)
        with db.session() as session:
            webauthn.complete_registration(session, identity, settings, challenge_id, key.create(options),
                                           label="banc d'essai", actor="benchmark")

        def one_login() -> tuple[float, float, float, float, float]:
            start, cpu_start = time.perf_counter(), time.process_time()
            with db.session() as session:
                challenge_id, options = webauthn.begin_authentication(
                    session, settings, identity=None if passwordless else identity, require_uv=True)
            begun, cpu_begun = time.perf_counter(), time.process_time()
            response = json.dumps(key.get(options))
            signed, cpu_signed = time.perf_counter(), time.process_time()
            with db.session() as session:
                webauthn.complete_authentication(session, settings, challenge_id, response, client_ip="127.0.0.1")
            done, cpu_done = time.perf_counter(), time.process_time()
            return ((begun - start) + (done - signed), signed - begun,
                    (cpu_begun - cpu_start) + (cpu_done - cpu_signed), done - signed, cpu_done - cpu_signed)

        for _ in range(warmup):
            one_login()
        server, client, cpu, verify, verify_cpu = [], [], [], [], []
        wall_start = time.perf_counter()
        for _ in range(n):
            s, c, p, v, vc = one_login()
            server.append(s)
            client.append(c)
            cpu.append(p)
            verify.append(v)
            verify_cpu.append(vc)
        wall = time.perf_counter() - wall_start
        quantiles = statistics.quantiles(server, n=20)
        return {
            "database": db.engine.dialect.name,
            "n": n,
            "passwordless": passwordless,
            "per_second": round(n / sum(server), 1),
            "end_to_end_per_second": round(n / wall, 1),
            "mean_ms": round(1000 * statistics.fmean(server), 3),
            "median_ms": round(1000 * statistics.median(server), 3),
            "p95_ms": round(1000 * quantiles[18], 3),
            "synchronous_commit": synchronous_commit,
            "server_cpu_ms": round(1000 * statistics.fmean(cpu), 3),
            "cpu_bound_per_second": round(1 / statistics.fmean(cpu), 1),
            "authenticator_ms": round(1000 * statistics.fmean(client), 3),
            # The assertion's verification alone (complete_authentication: challenge consumed, signature and
            # counter checked, journal, commit), without issuing the challenge.
            "verification_per_second": round(n / sum(verify), 1),
            "verification_cpu_ms": round(1000 * statistics.fmean(verify_cpu), 3),
            "verification_cpu_bound_per_second": round(1 / statistics.fmean(verify_cpu), 1),
        }
    finally:
        if owned:
            db.dispose()


def _one_process(args: tuple[str, int, bool]) -> dict[str, Any]:
    url, n, passwordless = args
    return bench_webauthn(url, n, passwordless=passwordless)


def bench_parallel(url: str, n: int, processes: int, *, passwordless: bool = False) -> dict[str, Any]:
    """Run :func:`bench_webauthn` in ``processes`` processes at once (each its own identity and key, as
    concurrent sign-ins of different people); return the combined throughput of the server side."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        start = time.perf_counter()
        results = pool.map(_one_process, [(url, n, passwordless)] * processes)
        wall = time.perf_counter() - start
    return {
        "database": results[0]["database"],
        "processes": processes,
        "n": n * processes,
        "passwordless": passwordless,
        # Each process's server-side rate, summed: the authenticator's share is left out as above.
        "per_second": round(sum(r["per_second"] for r in results), 1),
        "end_to_end_per_second_including_start": round(n * processes / wall, 1),
        "median_ms": round(statistics.median(r["median_ms"] for r in results), 3),
        "server_cpu_ms": round(statistics.fmean(r["server_cpu_ms"] for r in results), 3),
    }


if __name__ == "__main__":
    url = os.environ.get("HOSPICONNECT_DATABASE_URL")
    if not url:
        sys.exit("HOSPICONNECT_DATABASE_URL doit désigner une base initialisée (hospiconnect init).")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    for kwargs in ({}, {"passwordless": True}, {"synchronous_commit": False}):
        print(json.dumps(bench_webauthn(url, count, **kwargs)))
    if parallel > 1:
        for passwordless in (False, True):
            print(json.dumps(bench_parallel(url, count, parallel, passwordless=passwordless)))
