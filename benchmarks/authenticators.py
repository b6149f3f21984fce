"""Benchmark of the MIE layer: password verification cost and TOTP throughput (with the replay guard).

Runs on PostgreSQL when HOSPICONNECT_DATABASE_URL is set (the database must have been initialised with
``hospiconnect init``), otherwise on a temporary SQLite file. Single process, single thread: the rates are
per core (the database server, when local, uses another core).

    .venv/bin/python benchmarks/authenticators.py [--password-rounds 40] [--totp-rounds 3000]

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hospiconnect.authenticators import password as pw  # noqa: E402
from hospiconnect.authenticators import services, totp  # noqa: E402
from hospiconnect.authenticators.models import TotpCredential  # noqa: E402
from hospiconnect.directory import services as directory  # noqa: E402
from hospiconnect.ratelimit import DatabaseBackend, Throttle, ThrottlePolicy  # noqa: E402
from hospiconnect.runtime import Runtime  # noqa: E402
from hospiconnect.settings import Settings  # noqa: E402

PASSWORD = "cheval agrafe batterie correcte"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timings(fn: Callable[[int], object], rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def make_runtime() -> tuple[Runtime, str]:
    if os.environ.get("HOSPICONNECT_DATABASE_URL"):
        rt = Runtime(Settings.from_env())
        if not rt.schema_is_current():
            sys.exit("La base n'est pas à jour : lancez « hospiconnect init » d'abord.")
        return rt, "postgresql" if rt.settings.database_url.startswith("postgresql") else "other"
    instance = Path(tempfile.mkdtemp(prefix="hc-bench-"))
    rt = Runtime(Settings(env="test", instance_path=instance, database_url=f"sqlite:///{instance / 'bench.db'}",
                          secret_key_file=instance / "keys.json"))
    rt.init()
    return rt, "sqlite"


def make_person(rt: Runtime) -> tuple[int, str, str]:
    """Create a throw-away identity with a password and one TOTP app; return (id, user name, seed)."""
    tag = uuid.uuid4().hex[:8]
    data = directory.IdentityData(
        birth_family_name=f"Mesure{tag}", given_names="Anne", birth_date=dt.date(1980, 1, 1), birth_country="99100",
        gender="F", contract_type="permanent", birth_place="75056", user_name=f"bench-{tag}",
        email=None, establishments=[], units=[], roles=[])
    with rt.db.session() as s:
        person = directory.create_identity(s, data, actor="benchmark", today=dt.date(2026, 11, 27))
        services.set_password(s, person, PASSWORD, actor="benchmark", establishment_name="Banc")
        mie, uri, _ = services.begin_totp(s, person, label="Banc", actor="benchmark", keys=rt.keys, issuer="Banc")
        seed = uri.split("secret=")[1].split("&")[0]
        now = dt.datetime.now(dt.timezone.utc)
        services.confirm_totp(s, person, mie.public_id, totp.code_at(seed, now), actor="benchmark", keys=rt.keys,
                              now=now)
        return person.id, person.user_name, seed


def bench_password(rt: Runtime, user_name: str, rounds: int) -> dict[str, Any]:
    """argon2id verification at the configured parameters, raw and through verify_password."""
    pw.warm_up()
    stored = pw.hash_password(PASSWORD)
    raw = timings(lambda i: pw.verify(stored, PASSWORD), rounds)
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100))

    def service(i: int) -> None:
        with rt.db.session() as s:
            services.verify_password(s, user_name, PASSWORD, client_ip="10.0.0.1", throttle=throttle)

    full = timings(service, rounds)
    return {"parameters": {k: v for k, v in pw.ARGON2_PARAMETERS.items() if k != "type"},
            "hash_median_ms": statistics.median(raw) * 1000, "hash_p95_ms": percentile(raw, 0.95) * 1000,
            "service_median_ms": statistics.median(full) * 1000, "service_p95_ms": percentile(full, 0.95) * 1000}


def bench_totp(rt: Runtime, person_id: int, seed: str, rounds: int) -> dict[str, Any]:
    """TOTP per second: the pure check; check + conditional UPDATE (replay guard) + commit; the full service."""
    from hospiconnect.directory.models import Identity

    base = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    codes = [totp.code_at(seed, base + dt.timedelta(seconds=30 * i)) for i in range(3 * rounds)]

    t0 = time.perf_counter()
    for i in range(rounds):
        totp.check(seed, codes[i], base + dt.timedelta(seconds=30 * i), None)
    pure = rounds / (time.perf_counter() - t0)

    with rt.db.session() as s:
        mie_id = services.active_mie_for(s, s.get(Identity, person_id), "totp")[0].id
        secret_enc = s.get(TotpCredential, mie_id).secret_enc

    def guarded(i: int) -> None:
        now = base + dt.timedelta(seconds=30 * i)
        with rt.db.session() as s:
            credential_seed = services._seed_of(rt.keys, TotpCredential(mie_id=mie_id, secret_enc=secret_enc))
            result = totp.check(credential_seed, codes[i], now, None)
            assert result.accepted and services._consume_step(s, mie_id, result.step)  # type: ignore[arg-type]

    t0 = time.perf_counter()
    for i in range(rounds):
        guarded(i)
    guard = rounds / (time.perf_counter() - t0)

    throttle = Throttle(DatabaseBackend(), ThrottlePolicy(lockout_threshold=100))
    t0 = time.perf_counter()
    for i in range(rounds, 2 * rounds):
        with rt.db.session() as s:
            services.verify_totp(s, s.get(Identity, person_id), codes[i], client_ip="10.0.0.1", throttle=throttle,
                                 keys=rt.keys, now=base + dt.timedelta(seconds=30 * i))
    full = rounds / (time.perf_counter() - t0)
    return {"check_per_s": pure, "check_and_replay_guard_per_s": guard, "verify_totp_service_per_s": full}


def bench_totp_concurrent(rt: Runtime, person_id: int, threads: int, rounds: int) -> dict[str, Any]:
    """Replay-guarded TOTP checks from ``threads`` connections at once (one TOTP app each, so that they do not
    queue on one row lock), driven by this one process: commits overlap instead of waiting for each other's
    WAL flush."""
    import threading

    from hospiconnect.directory.models import Identity

    apps: list[tuple[int, str, str]] = []
    with rt.db.session() as s:
        person = s.get(Identity, person_id)
        now = dt.datetime.now(dt.timezone.utc)
        for _ in range(threads):
            mie, uri, _ = services.begin_totp(s, person, label="Banc", actor="benchmark", keys=rt.keys,
                                              issuer="Banc")
            seed = uri.split("secret=")[1].split("&")[0]
            services.confirm_totp(s, person, mie.public_id, totp.code_at(seed, now), actor="benchmark",
                                  keys=rt.keys, now=now)
            apps.append((mie.id, s.get(TotpCredential, mie.id).secret_enc, seed))
    base = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    per_thread = max(1, rounds // threads)
    barrier = threading.Barrier(threads + 1)

    def worker(mie_id: int, secret_enc: str, seed: str) -> None:
        codes = [totp.code_at(seed, base + dt.timedelta(seconds=30 * i)) for i in range(per_thread)]
        barrier.wait()
        for i in range(per_thread):
            with rt.db.session() as s:
                clear = services._seed_of(rt.keys, TotpCredential(mie_id=mie_id, secret_enc=secret_enc))
                result = totp.check(clear, codes[i], base + dt.timedelta(seconds=30 * i), None)
                assert result.accepted and services._consume_step(s, mie_id, result.step)  # type: ignore[arg-type]

    pool = [threading.Thread(target=worker, args=app) for app in apps]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return {"threads": threads, "check_and_replay_guard_per_s": threads * per_thread / (time.perf_counter() - t0)}


def bench_webauthn(rt: Runtime, rounds: int) -> dict[str, Any] | None:
    """WEBAUTHN: measure assertion verification here (authenticate_begin/complete with a software
    authenticator, including the challenge DELETE and the sign-count UPDATE). Returns None until written."""
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--password-rounds", type=int, default=40)
    parser.add_argument("--totp-rounds", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4, help="connections for the concurrent TOTP figure")
    parser.add_argument("--webauthn-rounds", type=int, default=500)
    args = parser.parse_args()

    rt, database = make_runtime()
    person_id, user_name, seed = make_person(rt)
    results: dict[str, Any] = {"database": database, "cpu_count": os.cpu_count(),
                               "hash_concurrency": pw.max_concurrent()}
    results["password"] = bench_password(rt, user_name, args.password_rounds)
    results["totp"] = bench_totp(rt, person_id, seed, args.totp_rounds)
    results["totp_concurrent"] = bench_totp_concurrent(rt, person_id, args.threads, args.totp_rounds)
    results["webauthn"] = bench_webauthn(rt, args.webauthn_rounds)

    p, t = results["password"], results["totp"]
    rows = [
        ("argon2id verify (m=19 MiB, t=2, p=1)", f"median {p['hash_median_ms']:.1f} ms", f"p95 {p['hash_p95_ms']:.1f} ms"),
        ("verify_password (service, commit)", f"median {p['service_median_ms']:.1f} ms",
         f"p95 {p['service_p95_ms']:.1f} ms"),
        ("TOTP check (pure)", f"{t['check_per_s']:,.0f} /s", ""),
        ("TOTP check + replay-guard UPDATE + commit", f"{t['check_and_replay_guard_per_s']:,.0f} /s",
         "target ≥ 1,000 /s"),
        (f"  same, {results['totp_concurrent']['threads']} connections at once",
         f"{results['totp_concurrent']['check_and_replay_guard_per_s']:,.0f} /s", ""),
        ("verify_totp (service: throttle, audit, commit)", f"{t['verify_totp_service_per_s']:,.0f} /s", ""),
        ("WebAuthn assertion", "not measured yet" if results["webauthn"] is None else json.dumps(results["webauthn"]), ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"MIE layer benchmark on {database} ({os.cpu_count()} CPU)")
    for name, a, b in rows:
        print(f"  {name:<{width}}  {a:<18} {b}")
    print(json.dumps({"benchmark": "authenticators", **results}, default=float))
    rt.db.dispose()


if __name__ == "__main__":
    main()
