"""Fixtures of the fault tests: a PostgreSQL cluster of their own (see :mod:`tests.faults.services`), one
database in it per test module, initialised by ``hospiconnect init`` as an operator would, people and a
relying party created there through the services, and ``hospiconnect serve`` processes on it.

These tests never use the suite's database (SQLite or PostgreSQL): they stop and start their own server, so
they behave the same whichever database the rest of the suite runs on.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator, Mapping

import psycopg
import pytest

from hospiconnect.authenticators import services as mie_services
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings
from tests.factories import create_identity
from tests.faults.services import ThrowawayPostgres
from tests.faults.signins import Person
from tests.multiprocess.live import ServerProcess, free_port, run_cli, server_env, start_server
from tests.oidc_helpers import REDIRECT_URI, RegisteredClient, register

PASSWORD = "correct cheval pile agrafe"


@pytest.fixture(scope="package")
def postgres() -> Iterator[ThrowawayPostgres]:
    """The fault tests' own PostgreSQL, started; stopped and removed afterwards, whatever happens."""
    cluster = ThrowawayPostgres.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@dataclasses.dataclass
class Site:
    """One establishment: a database of the throwaway cluster, its key file and the environment of its
    processes (server and command line)."""

    name: str
    database_url: str
    work: Path
    port: int
    env: dict[str, str]
    rt: Runtime

    @property
    def issuer(self) -> str:
        return self.env["HOSPICONNECT_ISSUER"]

    def add_people(self, count: int) -> list[Person]:
        """Create ``count`` active people with a password (and nothing else)."""
        people = []
        with self.rt.db.session() as session:
            for _ in range(count):
                identity = create_identity(session)
                mie_services.set_password(session, identity, PASSWORD, actor="test",
                                          establishment_name=self.rt.settings.establishment_name)
                session.commit()
                people.append(Person(identity.id, identity.public_id, identity.user_name, PASSWORD))
        return people

    def add_client(self) -> RegisteredClient:
        """Register a confidential relying party of the ``standard`` class (a password is enough), allowed
        refresh tokens."""
        with self.rt.db.session() as session:
            return register(session, self.rt, name="Intranet", sensitivity="standard",
                            redirect_uris=(REDIRECT_URI,), scopes="openid profile offline_access")

    def start_server(self, *, workers: int, threads: int) -> ServerProcess:
        return start_server(self.name, self.env, self.work, port=self.port, workers=workers, threads=threads)

    def cli(self, *args: str) -> tuple[int, str, str]:
        completed = run_cli(list(args), self.env)
        return completed.returncode, completed.stdout, completed.stderr


def prepare_site(postgres: ThrowawayPostgres, name: str, work: Path,
                 extra_env: Mapping[str, str] | None = None) -> Site:
    """Create database ``name`` in ``postgres``, run ``hospiconnect init`` on it and return the site."""
    assert re.fullmatch(r"[a-z_]+", name), name
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    database_url = postgres.url(name)
    port = free_port()
    instance_path = work / "instance"
    env = server_env(database_url=database_url, key_file=instance_path / "keys.json", instance_path=instance_path,
                     issuer=f"http://localhost:{port}", extra=extra_env)
    completed = run_cli(["init", "--json"], env)
    assert completed.returncode == 0, completed.stderr
    settings = Settings(env="test", instance_path=instance_path, database_url=database_url,
                        secret_key_file=instance_path / "keys.json", issuer=env["HOSPICONNECT_ISSUER"])
    return Site(name=name, database_url=database_url, work=work, port=port, env=env, rt=Runtime(settings))
