"""Identity-provider benchmark over HTTP, against the production server (gunicorn), on PostgreSQL.

    python benchmarks/idp.py --database-url postgresql://postgres@127.0.0.1:5432/hc_bench [--workers 1 2]

For each worker count it starts ``hospiconnect serve``, then measures:
- complete sign-ins: /authorize → password page → TOTP page → code → /token (PKCE, client_secret_basic),
  each by a different person (a TOTP time step is accepted once per person);
- refresh-token grants (rotation) in a loop.
The load generator runs on the same 2-core machine (it competes for the CPU): figures are per second of
wall time, and per second of CPU used by the server's processes (read from /proc) — the "per core" figure.
Targets (issue "identity provider"): ≥ 30 sign-ins/s per core and ≥ 600 refresh grants/s per core.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import hashlib
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import pyotp
import requests
from sqlalchemy import text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hospiconnect.authenticators import password as pw  # noqa: E402
from hospiconnect.authenticators import services as mie  # noqa: E402
from hospiconnect.authenticators.models import TotpCredential  # noqa: E402
from hospiconnect.crypto import generate_key_file  # noqa: E402
from hospiconnect.directory import services as directory  # noqa: E402
from hospiconnect.idp import clients, keys as signing_keys  # noqa: E402
from hospiconnect.runtime import Runtime  # noqa: E402
from hospiconnect.settings import Settings  # noqa: E402

PASSWORD = "Tournesol-Violet-Montagne-2026"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
REDIRECT_URI = "http://localhost:9/callback"


def prepare(url: str, work: Path, people: int, port: int) -> tuple[Runtime, list[tuple[str, str]], str, str]:
    generate_key_file(work / "keys.json")
    settings = Settings(env="test", instance_path=work, secret_key_file=work / "keys.json", database_url=url,
                        issuer=f"http://localhost:{port}")
    rt = Runtime(settings)
    with rt.db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    rt.init()
    cached = pw.hash_password(PASSWORD)
    pw.hash_password = lambda _password: cached  # one argon2 hash for every benchmark account (setup only)
    accounts: list[tuple[str, str]] = []
    with rt.db.session() as session:
        signing_keys.ensure_keys(session, rt.keys)
        client, secret = clients.add_client(
            session, rt.keys, name="Banc d'essai", redirect_uris=[REDIRECT_URI], sensitivity="health-data",
            scopes="openid profile offline_access", actor="bench")
        client_id = client.client_id
    for i in range(people):
        with rt.db.session() as session:
            data = directory.validate_identity({
                "birth_family_name": f"Banc{i:05d}", "given_names": "Essai", "birth_date": "1980-01-01",
                "birth_place": "75056", "birth_country": "99100", "gender": "F", "contract_type": "permanent",
                "user_name": f"banc{i:05d}"})
            person = directory.create_identity(session, data, actor="bench")
            mie.set_password(session, person, PASSWORD, actor="bench", establishment_name="Banc")
            totp_mie, uri, _svg = mie.begin_totp(session, person, label="banc", actor="bench", keys=rt.keys,
                                                 issuer="Banc")
            seed = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)["secret"][0]
            mie.confirm_totp(session, person, totp_mie.public_id, pyotp.TOTP(seed).now(), actor="bench",
                             keys=rt.keys)
            # The confirmation used the current time step; free it so the benchmark may use it.
            session.execute(update(TotpCredential).where(TotpCredential.mie_id == totp_mie.id).values(last_step=None))
            accounts.append((person.user_name, seed))
    return rt, accounts, client_id, secret or ""


def start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "hospiconnect"), "serve", "--port", str(port),
                             "--workers", str(workers), "--threads", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("le serveur n'a pas démarré")


def server_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the server's processes (gunicorn's master and workers, one
    process group): what "per core" divides by, since the load generator and PostgreSQL share the cores."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def sign_in(base: str, account: tuple[str, str], client_id: str, secret: str) -> tuple[float, dict]:
    user, seed = account
    http = requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    t0 = time.perf_counter()
    r = http.get(f"{base}/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
        "scope": "openid profile offline_access", "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16), "code_challenge": challenge, "code_challenge_method": "S256"},
        allow_redirects=False, timeout=30)
    page_url = urllib.parse.urljoin(base, r.headers["Location"])
    page = http.get(page_url, timeout=30)
    csrf = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
    r = http.post(f"{page_url}/mot-de-passe", data={"csrf_token": csrf, "username": user, "password": PASSWORD},
                  allow_redirects=False, timeout=30)
    page = http.get(urllib.parse.urljoin(base, r.headers["Location"]), timeout=30)
    csrf = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
    r = http.post(f"{page_url}/code", data={"csrf_token": csrf, "code": pyotp.TOTP(seed).now()},
                  allow_redirects=False, timeout=30)
    r = http.get(urllib.parse.urljoin(base, r.headers["Location"]), allow_redirects=False, timeout=30)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["code"][0]
    r = http.post(f"{base}/token", data={"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
                  auth=(client_id, secret), timeout=30)
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()


def refresh_loop(base: str, token: str, client_id: str, secret: str, until: float) -> list[float]:
    http = requests.Session()
    timings = []
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        r = http.post(f"{base}/token", data={"grant_type": "refresh_token", "refresh_token": token},
                      auth=(client_id, secret), timeout=30)
        r.raise_for_status()
        token = r.json()["refresh_token"]
        timings.append(time.perf_counter() - t0)
    return timings


def summary(timings: list[float], seconds: float) -> dict[str, float]:
    timings = sorted(timings)
    return {"count": len(timings), "per_second": round(len(timings) / seconds, 1),
            "median_ms": round(statistics.median(timings) * 1000, 1),
            "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sign-ins", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--refresh-seconds", type=float, default=15)
    parser.add_argument("--port", type=int, default=5391)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        people = args.sign_ins * len(args.workers)
        print(f"préparation de {people} comptes…", flush=True)
        rt, accounts, client_id, secret = prepare(args.database_url, work, people, args.port)
        env = dict(os.environ, HOSPICONNECT_ENV="test", HOSPICONNECT_DATABASE_URL=args.database_url,
                   HOSPICONNECT_SECRET_KEY_FILE=str(work / "keys.json"), HOSPICONNECT_INSTANCE_PATH=str(work),
                   HOSPICONNECT_ISSUER=f"http://localhost:{args.port}")
        base = f"http://localhost:{args.port}"
        for round_index, workers in enumerate(args.workers):
            proc = start_server(env, args.port, workers)
            try:
                batch = accounts[round_index * args.sign_ins:(round_index + 1) * args.sign_ins]
                t0, cpu0 = time.perf_counter(), server_cpu_seconds(proc.pid)
                with cf.ThreadPoolExecutor(args.concurrency) as pool:
                    done = list(pool.map(lambda a: sign_in(base, a, client_id, secret), batch))
                elapsed = time.perf_counter() - t0
                sign_ins = summary([d[0] for d in done], elapsed)
                sign_ins["server_cpu_s"] = round(server_cpu_seconds(proc.pid) - cpu0, 2)
                sign_ins["per_server_core_second"] = round(sign_ins["count"] / sign_ins["server_cpu_s"], 1)
                until = time.perf_counter() + args.refresh_seconds
                t0, cpu0 = time.perf_counter(), server_cpu_seconds(proc.pid)
                with cf.ThreadPoolExecutor(args.concurrency) as pool:
                    loops = list(pool.map(lambda d: refresh_loop(base, d[1]["refresh_token"], client_id, secret, until),
                                          done[:args.concurrency]))
                refresh = summary([t for loop in loops for t in loop], time.perf_counter() - t0)
                refresh["server_cpu_s"] = round(server_cpu_seconds(proc.pid) - cpu0, 2)
                refresh["per_server_core_second"] = round(refresh["count"] / refresh["server_cpu_s"], 1)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            row = {"workers": workers, "sign_ins": sign_ins, "refresh": refresh,
                   "sign_ins_per_worker": round(sign_ins["per_second"] / workers, 1),
                   "refresh_per_worker": round(refresh["per_second"] / workers, 1)}
            results.append(row)
            print(f"{workers} worker(s): sign-ins {sign_ins['per_second']}/s (median {sign_ins['median_ms']} ms, "
                  f"p99 {sign_ins['p99_ms']} ms; {sign_ins['per_server_core_second']} per second of server CPU); "
                  f"refresh {refresh['per_second']}/s (median {refresh['median_ms']} ms, p99 {refresh['p99_ms']} ms; "
                  f"{refresh['per_server_core_second']} per second of server CPU)", flush=True)
        rt.db.dispose()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
