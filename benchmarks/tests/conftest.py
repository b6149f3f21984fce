"""Fixtures of the benchmarks' own tests: the peer of the side-by-side benchmark (node-oidc-provider,
benchmarks/peer/server.mjs) running on PostgreSQL with a few people, in a schema of its own.

    npm ci --prefix benchmarks/peer
    HOSPICONNECT_TEST_DATABASE_URL=postgresql://… .venv/bin/pytest -q -p no:cacheprovider benchmarks/tests

The peer has no SQLite storage: without a PostgreSQL URL its tests fail and say so (they never skip).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import psycopg
import pyotp
import pytest

from benchmarks import servers
from benchmarks.loadgen import Account, Client, PeerAdapter
from hospiconnect.authenticators import password as pw

SCHEMA = "peer_test"


@dataclasses.dataclass(frozen=True)
class Peer:
    adapter: PeerAdapter
    accounts: list[Account]
    database_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def peer() -> Iterator[Peer]:
    url = os.environ.get("HOSPICONNECT_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.fail("the peer stores its state in PostgreSQL: set HOSPICONNECT_TEST_DATABASE_URL")
    accounts = [Account(f"pair{i:02d}", servers.PASSWORD, pyotp.random_base32()) for i in range(6)]
    client = Client("banc-pair", secrets.token_urlsafe(24), servers.REDIRECT_URI)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "peer.log").open("wb") as log:
        try:
            proc = servers.start_peer(url, port, accounts=accounts, password_hash=pw.hash_password(servers.PASSWORD),
                                      client=client, work=Path(tmp), log=log, schema=SCHEMA)
        except (RuntimeError, subprocess.SubprocessError):
            log.flush()
            pytest.fail(f"the peer did not start: {(Path(tmp) / 'peer.log').read_text(errors='replace')[-2000:]}")
        try:
            yield Peer(PeerAdapter(f"http://127.0.0.1:{port}", client), accounts, url)
        finally:
            servers.stop(proc)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
