"""Behind reverse proxies (HOSPICONNECT_TRUSTED_PROXIES): the client's address is the one the trusted hops
forwarded, and only those hops — with none trusted, X-Forwarded-For is a header like any other, so a client
cannot pick its own address (throttling per address, the journal's addresses, /metrics' networks).

A probe route added to each application shows what :func:`hospiconnect.appctx.client_ip` returns; the journal
shows that the provider's own code gets the same address.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest
from flask import jsonify, request
from sqlalchemy import select

from hospiconnect import appctx, create_app
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.runtime import Runtime
from tests.oidc_helpers import basic_auth

PROXY = "10.0.0.2"  # the reverse proxy, as the server sees the TCP peer
CLIENT = "203.0.113.7"  # the browser, as the proxy saw it


@pytest.fixture()
def proxied(rt: Runtime) -> Iterator:
    """Build a test client of an application with ``trusted_proxies`` hops, and a ``/_probe`` route."""
    built: list[Runtime] = []

    def build(trusted_proxies: int):
        runtime = Runtime(dataclasses.replace(rt.settings, trusted_proxies=trusted_proxies))
        app = create_app(runtime.settings)
        app.extensions[appctx.EXTENSION] = runtime
        app.config.update(TESTING=True)
        app.add_url_rule("/_probe", "probe", lambda: jsonify(ip=appctx.client_ip(), scheme=request.scheme,
                                                             host=request.host))
        built.append(runtime)
        return app.test_client()

    yield build
    for runtime in built:
        runtime.db.dispose()


def probe(client, headers: dict[str, str] | None = None) -> dict[str, str]:
    response = client.get("/_probe", headers=headers or {}, environ_base={"REMOTE_ADDR": PROXY})
    assert response.status_code == 200
    return response.get_json()


def test_one_trusted_hop_gives_the_forwarded_client(proxied):
    client = proxied(1)
    seen = probe(client, {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https",
                          "X-Forwarded-Host": "idp.chu-exemple.fr"})
    assert seen == {"ip": CLIENT, "scheme": "https", "host": "idp.chu-exemple.fr"}


def test_one_trusted_hop_believes_only_the_last_entry(proxied):
    # The client wrote its own X-Forwarded-For; the proxy appended the address it saw.
    seen = probe(proxied(1), {"X-Forwarded-For": f"127.0.0.1, {CLIENT}"})
    assert seen["ip"] == CLIENT


def test_two_trusted_hops_walk_back_two_entries(proxied):
    seen = probe(proxied(2), {"X-Forwarded-For": f"198.51.100.9, {CLIENT}, 10.0.0.3"})
    assert seen["ip"] == CLIENT


def test_without_trusted_hops_the_headers_are_ignored(proxied):
    seen = probe(proxied(0), {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https",
                              "X-Forwarded-Host": "ailleurs.example"})
    assert seen["ip"] == PROXY and seen["scheme"] == "http" and seen["host"] == "localhost"


def test_a_request_without_the_header_keeps_the_peer(proxied):
    assert probe(proxied(1))["ip"] == PROXY


@pytest.mark.parametrize(("hops", "journaled"), [(1, CLIENT), (0, PROXY)])
def test_the_journal_records_the_address_the_hops_allow(proxied, session, hops, journaled):
    client = proxied(hops)
    response = client.post("/token", data={"grant_type": "authorization_code", "code": "x", "code_verifier": "y"},
                           headers={**basic_auth("client-inconnu", "secret"), "X-Forwarded-For": CLIENT},
                           environ_base={"REMOTE_ADDR": PROXY})
    assert response.status_code == 401
    event = session.scalars(select(AuditEvent).where(AuditEvent.tag == tags.OIDC_CLIENT_AUTH_FAILED)
                            .order_by(AuditEvent.seq.desc())).first()
    assert event is not None and event.client_ip == journaled


def test_metrics_networks_judge_the_forwarded_client(proxied):
    # Through a trusted proxy on this host, an outside client is still an outside client…
    response = proxied(1).get("/metrics", headers={"X-Forwarded-For": CLIENT},
                              environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 403
    # …and without trusted hops, an outside client cannot claim to be this host.
    response = proxied(0).get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"},
                              environ_base={"REMOTE_ADDR": CLIENT})
    assert response.status_code == 403
