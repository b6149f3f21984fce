"""Fixtures of the multi-process tests: two real server processes (``hospiconnect serve``, gunicorn, one
worker each) on the same database and key file, as two hosts behind a load balancer would be.

Both are configured with the same issuer, a logical name (``http://localhost:PORT_A``): the provider
builds its endpoint URLs from the issuer, not from the request's Host header, so the tests talk to each
instance directly on its own loopback port. The database is the suite's (PostgreSQL when
HOSPICONNECT_TEST_DATABASE_URL is set, else the SQLite file, which both processes open in WAL mode with
a busy timeout); its schema comes from the suite's fixtures and its tables are emptied after each test.

Both also share one Redis database (:data:`REDIS_URL`, emptied before every test that uses them), where the
throttling and lockout counters live, with a small lockout threshold (:data:`LOCKOUT_THRESHOLD`) so that a
lock is reached in a few attempts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Callable, Iterator

import pyotp
import pytest
import redis

from hospiconnect.authenticators import services as mie_services
from hospiconnect.db import utcnow
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings
from tests.factories import create_identity
from tests.multiprocess.live import ServerProcess, free_port, open_sso_session, running, server_env, start_server
from tests.oidc_helpers import POST_LOGOUT_URI, REDIRECT_URI, RegisteredClient, add_second_factor, register

#: The Redis database of these tests (HOSPICONNECT_TEST_REDIS_URL to use another one). It is emptied before
#: each test: give them a database of their own, never one that holds anything else.
REDIS_URL = os.environ.get("HOSPICONNECT_TEST_REDIS_URL") or "redis://127.0.0.1:6379/12"
#: Consecutive failures that lock an account in these tests (the product's default is 10).
LOCKOUT_THRESHOLD = 4
PASSWORD = "correct cheval pile agrafe"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Two instances of the provider and the environment they share (for command-line processes)."""

    issuer: str
    a: ServerProcess
    b: ServerProcess
    env: dict[str, str]
    #: Consecutive failures that lock an account on both instances.
    lockout_threshold: int = LOCKOUT_THRESHOLD


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[redis.Redis]:
    """A client of the instances' Redis database. Fails (never skips) when Redis does not answer."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    client.ping()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def _empty_redis(request: pytest.FixtureRequest) -> None:
    """Empty the instances' Redis database before every test that talks to them: counters left by one test
    (a locked account, an IP near its limit) must not decide the next one."""
    if "cluster" in request.fixturenames:
        request.getfixturevalue("shared_redis").flushdb()


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
                                issuer=issuer, extra={"HOSPICONNECT_REDIS_URL": REDIS_URL,
                                                      "HOSPICONNECT_LOCKOUT_THRESHOLD": str(LOCKOUT_THRESHOLD)})
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


@dataclasses.dataclass(frozen=True)
class Clinician:
    """A person who signs in through the pages: a password and an authenticator application (``seed``)."""

    identity_id: int
    sub: str
    user_name: str
    password: str
    seed: str

    def code(self, at: dt.datetime | None = None) -> str:
        """The code the person's application shows at ``at`` (now by default)."""
        return pyotp.TOTP(self.seed).at(at or utcnow())


@pytest.fixture()
def new_clinician(session, rt: Runtime) -> Callable[[], Clinician]:
    """Return a function that creates a :class:`Clinician` through the services the activation pages use.

    The application is confirmed with a code of 90 seconds ago, so the codes of "now" are still unused.
    """
    def create() -> Clinician:
        identity = create_identity(session)
        mie_services.set_password(session, identity, PASSWORD, actor="test",
                                  establishment_name=rt.settings.establishment_name)
        mie, uri, _svg = mie_services.begin_totp(session, identity, label="Téléphone", actor="test", keys=rt.keys,
                                                 issuer="HospiConnect")
        seed = pyotp.parse_uri(uri).secret
        earlier = utcnow() - dt.timedelta(seconds=90)
        mie_services.confirm_totp(session, identity, mie.public_id, pyotp.TOTP(seed).at(earlier), actor="test",
                                  keys=rt.keys, now=earlier)
        session.commit()
        return Clinician(identity.id, identity.public_id, identity.user_name, PASSWORD, seed)

    return create


@pytest.fixture()
def clinician(new_clinician: Callable[[], Clinician]) -> Clinician:
    return new_clinician()
