"""The compose file's topology without Docker: the real deploy/Caddyfile (Caddy, HTTPS with its local CA) in front
of two ``hospiconnect serve`` instances on one database and one Redis, each trusting one proxy hop.

Proven here: the provider is reached over HTTPS at its issuer through the proxy, which spreads requests over both
instances; ``/metrics`` is not published; plain HTTP redirects to the issuer; the address a client forges in
``X-Forwarded-For`` is replaced by the one the proxy saw (what the throttling and the journal use); an instance
stopped during service costs no request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests
from sqlalchemy import select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings
from tests.multiprocess.live import ServerProcess, free_port, running, server_env, start_server

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "Caddyfile"
REDIS_URL = "redis://127.0.0.1:6379/14"
PATH = "/.well-known/openid-configuration"
READY_SECONDS = 30.0


class Proxy:
    """Caddy running deploy/Caddyfile; ``https``/``http`` are its addresses, ``ca`` its local root certificate."""

    def __init__(self, process: subprocess.Popen[bytes], https_port: int, http_port: int, data: Path,
                 log: Path) -> None:
        self.process, self.https_port, self.http_port, self.log = process, https_port, http_port, log
        self.https = f"https://localhost:{https_port}"
        self.http = f"http://127.0.0.1:{http_port}"
        self.ca = data / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def get(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        return requests.get(self.https + path, verify=str(self.ca), timeout=10, allow_redirects=False, **kwargs)


def _caddy() -> str:
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("caddy is missing: .ci/run installs Debian's package (apt-get install caddy)")
    return found


@contextlib.contextmanager
def caddy(work: Path, upstreams: list[ServerProcess], https_port: int) -> Iterator[Proxy]:
    http_port = free_port()
    data = work / "caddy-data"
    env = {**os.environ, "HOME": str(work), "XDG_DATA_HOME": str(data), "XDG_CONFIG_HOME": str(work / "caddy-cfg"),
           "HOSPICONNECT_PROXY_ADMIN": f"127.0.0.1:{free_port()}", "HOSPICONNECT_PROXY_HTTPS_PORT": str(https_port),
           "HOSPICONNECT_PROXY_HTTP_PORT": str(http_port), "HOSPICONNECT_SITE_ADDRESS": "localhost",
           "HOSPICONNECT_TLS": "internal", "HOSPICONNECT_ISSUER": f"https://localhost:{https_port}",
           "HOSPICONNECT_UPSTREAMS": " ".join(f"127.0.0.1:{s.port}" for s in upstreams)}
    log = work / "caddy.log"
    with log.open("wb") as out:
        process = subprocess.Popen([_caddy(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    proxy = Proxy(process, https_port, http_port, data, log)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"caddy exited: {log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(requests.RequestException, OSError):
                if proxy.ca.exists() and proxy.get("/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"caddy not ready: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def topology(_schema: Runtime, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Proxy, list[ServerProcess]]]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    https_port = free_port()
    issuer = f"https://localhost:{https_port}"
    work = tmp_path_factory.mktemp("topology")
    servers = []
    for name in ("idp-1", "idp-2"):
        (work / name).mkdir()
        env = server_env(database_url=base_settings.database_url, key_file=base_settings.secret_key_file,
                         instance_path=work / name, issuer=issuer,
                         extra={"HOSPICONNECT_TRUSTED_PROXIES": "1", "HOSPICONNECT_REDIS_URL": REDIS_URL})
        servers.append(start_server(name, env, work, workers=1, threads=4))
    with running(servers), caddy(work, servers, https_port) as proxy:
        yield proxy, servers
    redis.Redis.from_url(REDIS_URL).flushdb()


def test_the_provider_is_served_over_https_at_its_issuer_by_both_instances(topology) -> None:
    proxy, servers = topology
    for _ in range(30):
        response = proxy.get(PATH)
        assert response.status_code == 200
        assert response.json()["issuer"] == proxy.https
    # least_conn breaks ties at random: over 30 requests, both instances answered.
    for server in servers:
        assert PATH in server.log_path.read_text(errors="replace"), server.name


def test_metrics_are_not_published_and_http_redirects_to_the_issuer(topology) -> None:
    proxy, _servers = topology
    assert proxy.get("/metrics").status_code == 404
    redirected = requests.get(proxy.http + PATH + "?a=1", allow_redirects=False, timeout=10)
    assert redirected.status_code == 301 and redirected.headers["Location"] == proxy.https + PATH + "?a=1"


def test_a_forged_forwarded_address_is_replaced_by_the_proxy(topology, rt: Runtime) -> None:
    proxy, _servers = topology
    answer = requests.post(proxy.https + "/token", verify=str(proxy.ca), timeout=10,
                           headers={"X-Forwarded-For": "203.0.113.66"}, auth=("no-such-client", "wrong"),
                           data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    with rt.db.session() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.tag == tags.OIDC_CLIENT_AUTH_FAILED)
                         .order_by(AuditEvent.id.desc()).limit(1))
    assert event is not None and event.client_ip == "127.0.0.1"  # the address Caddy saw, not the forged one


def test_an_instance_stopped_during_service_costs_no_request(topology) -> None:
    proxy, servers = topology
    servers[0].stop()
    answers = [proxy.get(PATH).status_code for _ in range(20)]
    assert answers == [200] * 20
