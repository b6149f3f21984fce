"""The servers the HTTP benchmarks drive: HospiConnect (``hospiconnect serve``, gunicorn) with its benchmark
accounts, and the peer (``benchmarks/peer/server.mjs``, node-oidc-provider), each in its own process group so
that :mod:`benchmarks.loadgen` can read the CPU time and memory of the whole tree from /proc.

Both get the same people: one password for all (hashed once with HospiConnect's argon2id parameters, the
hash stored for every account: setup would otherwise cost one hash per person), and one TOTP seed each.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import IO

import pyotp
import requests
from sqlalchemy import text, update

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import Account, Client  # noqa: E402
from hospiconnect.authenticators import password as pw  # noqa: E402
from hospiconnect.authenticators import services as mie  # noqa: E402
from hospiconnect.authenticators.models import TotpCredential  # noqa: E402
from hospiconnect.crypto import generate_key_file  # noqa: E402
from hospiconnect.directory import services as directory  # noqa: E402
from hospiconnect.idp import clients, keys as signing_keys  # noqa: E402
from hospiconnect.runtime import Runtime  # noqa: E402
from hospiconnect.settings import Settings  # noqa: E402

PASSWORD = "Tournesol-Violet-Montagne-2026"
REDIRECT_URI = "http://localhost:9/callback"
SCOPE = "openid profile offline_access"
PEER_DIR = Path(__file__).resolve().parent / "peer"


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_hospiconnect` leaves: the runtime (to dispose of), the people, the client, and the
    environment ``hospiconnect serve`` needs to find the same database and keys."""

    runtime: Runtime
    accounts: list[Account]
    client: Client
    password_hash: str
    env: dict[str, str]


def prepare_hospiconnect(url: str, work: Path, people: int, issuer: str) -> Prepared:
    """Empty the database at ``url`` (its ``public`` schema), create the schema, one confidential client and
    ``people`` identities, each with the password and a confirmed TOTP whose time steps are all still free."""
    generate_key_file(work / "keys.json")
    settings = Settings(env="test", instance_path=work, secret_key_file=work / "keys.json", database_url=url,
                        issuer=issuer)
    rt = Runtime(settings)
    with rt.db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    rt.init()
    cached = pw.hash_password(PASSWORD)
    original = pw.hash_password
    pw.hash_password = lambda _password: cached  # one argon2 hash for every benchmark account (setup only)
    accounts: list[Account] = []
    try:
        with rt.db.session() as session:
            signing_keys.ensure_keys(session, rt.keys)
            client, secret = clients.add_client(
                session, rt.keys, name="Banc d'essai", redirect_uris=[REDIRECT_URI], sensitivity="health-data",
                scopes=SCOPE, actor="bench")
            client_id = client.client_id
        for i in range(people):
            with rt.db.session() as session:
                data = directory.validate_identity({
                    "birth_family_name": f"Banc{i:05d}", "given_names": "Essai", "birth_date": "1980-01-01",
                    "birth_place": "75056", "birth_country": "99100", "gender": "F",
                    "contract_type": "permanent", "user_name": f"banc{i:05d}"})
                person = directory.create_identity(session, data, actor="bench")
                mie.set_password(session, person, PASSWORD, actor="bench", establishment_name="Banc")
                totp_mie, uri, _svg = mie.begin_totp(session, person, label="banc", actor="bench", keys=rt.keys,
                                                     issuer="Banc")
                seed = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)["secret"][0]
                mie.confirm_totp(session, person, totp_mie.public_id, pyotp.TOTP(seed).now(), actor="bench",
                                 keys=rt.keys)
                # The confirmation used the current time step; free it so the benchmark may use it.
                session.execute(update(TotpCredential).where(TotpCredential.mie_id == totp_mie.id)
                                .values(last_step=None))
                accounts.append(Account(person.user_name, PASSWORD, seed))
    finally:
        pw.hash_password = original
    env = dict(os.environ, HOSPICONNECT_ENV="test", HOSPICONNECT_DATABASE_URL=url,
               HOSPICONNECT_SECRET_KEY_FILE=str(work / "keys.json"), HOSPICONNECT_INSTANCE_PATH=str(work),
               HOSPICONNECT_ISSUER=issuer)
    return Prepared(rt, accounts, Client(client_id, secret or "", REDIRECT_URI), cached, env)


def _pinned(cpus: set[int] | None):  # type: ignore[no-untyped-def]
    """A ``preexec_fn`` that pins the child (and so every process and thread it starts) to ``cpus``."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def wait_ready(proc: subprocess.Popen, url: str, seconds: float = 30) -> None:
    """Wait until ``url`` answers 200; stop the process and fail if it exits or does not answer in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering {url}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"the server did not answer {url} within {seconds:.0f} s")


def start_hospiconnect(env: dict[str, str], port: int, *, workers: int, threads: int = 4,
                       cpus: set[int] | None = None, log: IO[bytes] | int = subprocess.DEVNULL
                       ) -> subprocess.Popen:
    """Start ``hospiconnect serve`` (gunicorn, gthread workers) and wait for /healthz."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "hospiconnect"), "serve", "--port", str(port), "--workers", str(workers),
         "--threads", str(threads)],
        env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, preexec_fn=_pinned(cpus))
    wait_ready(proc, f"http://127.0.0.1:{port}/healthz")
    return proc


def start_peer(database_url: str, port: int, *, accounts: list[Account], password_hash: str, client: Client,
               work: Path, cpus: set[int] | None = None, log: IO[bytes] | int = subprocess.DEVNULL,
               schema: str = "peer") -> subprocess.Popen:
    """Start the node-oidc-provider host application with the same people (its own schema, emptied first) and
    wait for its discovery document. ``npm ci --prefix benchmarks/peer`` must have been run."""
    if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("benchmarks/peer is not installed: run `npm ci --prefix benchmarks/peer`")
    people = [{"username": a.username, "password_hash": password_hash, "totp_seed": a.seed,
               "given_name": "Essai", "family_name": a.username.upper()} for a in accounts]
    accounts_file = work / "peer-accounts.json"
    accounts_file.write_text(json.dumps(people))
    proc = subprocess.Popen(
        ["node", str(PEER_DIR / "server.mjs"), "--port", str(port), "--database-url",
         database_url.replace("postgresql+psycopg://", "postgresql://"),
         "--schema", schema, "--accounts", str(accounts_file), "--reset", "--client-id", client.client_id,
         "--client-secret", client.secret, "--redirect-uri", client.redirect_uri],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, preexec_fn=_pinned(cpus))
    wait_ready(proc, f"http://127.0.0.1:{port}/.well-known/openid-configuration", seconds=60)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group (gunicorn's master and workers) and wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def node_argon2_bound(password_hash: str, verifications: int, cpus: set[int] | None = None) -> float:
    """argon2id verifications per CPU-second in node with @node-rs/argon2 (the peer's library), of the hash
    both servers store."""
    out = subprocess.run(["node", str(PEER_DIR / "argon2_bound.mjs"), password_hash, PASSWORD,
                          str(verifications)], check=True,
                         capture_output=True, text=True, preexec_fn=_pinned(cpus), timeout=300)
    return float(json.loads(out.stdout)["per_cpu_second"])
