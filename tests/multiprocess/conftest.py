"""Fixtures of the multi-process tests: two real server processes (``hospiconnect serve``, gunicorn, one
worker each) on the same database and key file, as two hosts behind a load balancer would be.

Both are configured with the same issuer, a logical name (``http://localhost:PORT_A``): the provider
builds its endpoint URLs from the issuer, not from the request's Host header, so the tests talk to each
instance directly on its own loopback port. The database is the suite's (PostgreSQL when
HOSPICONNECT_TEST_DATABASE_URL is set, else the SQLite file, which both processes open in WAL mode with
a busy timeout); its schema comes from the suite's fixtures and its tables are emptied after each test.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings
from tests.factories import create_identity
from tests.multiprocess.live import ServerProcess, free_port, open_sso_session, running, server_env, start_server
from tests.oidc_helpers import POST_LOGOUT_URI, REDIRECT_URI, RegisteredClient, add_second_factor, register


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Two instances of the provider and the environment they share (for command-line processes)."""

    issuer: str
    a: ServerProcess
    b: ServerProcess
    env: dict[str, str]


@pytest.fixture(scope="module")
def cluster(_schema: Runtime, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    issuer = f"http://localhost:{port_a}"
    work = tmp_path_factory.mktemp("two-instances")
    servers = []
    envs = {}
    for name, port in (("instance-a", port_a), ("instance-b", port_b)):
        instance_path = work / name
        instance_path.mkdir()
        envs[name] = server_env(database_url=base_settings.database_url,
                                key_file=base_settings.secret_key_file, instance_path=instance_path,
                                issuer=issuer)
        servers.append(start_server(name, envs[name], work, port=port, workers=1, threads=4))
    with running(servers):
        yield Cluster(issuer=issuer, a=servers[0], b=servers[1], env=envs["instance-a"])


@dataclasses.dataclass(frozen=True)
class Person:
    """A person with a two-factor SSO session opened in the database; ``cookie`` is the browser's."""

    identity_id: int
    sub: str
    cookie: str


@pytest.fixture()
def person(session, rt: Runtime) -> Person:
    identity = create_identity(session)
    add_second_factor(session, identity)
    return Person(identity.id, identity.public_id, open_sso_session(rt, identity.id))


@pytest.fixture()
def rp(session, rt: Runtime) -> RegisteredClient:
    """A confidential client (client_secret_basic) of the health-data class, allowed offline_access."""
    return register(session, rt, name="Dossier patient", sensitivity="health-data",
                    redirect_uris=(REDIRECT_URI,), post_logout_redirect_uris=(POST_LOGOUT_URI,),
                    scopes="openid profile offline_access")
