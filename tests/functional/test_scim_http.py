"""The SCIM API over real HTTP: the application served by Werkzeug in a thread, driven with ``requests``
the way a provisioning client would (create, read with ETag, list with a filter, modify, refused delete)."""

from __future__ import annotations

import json
import threading
from typing import Iterator

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from hospiconnect.apitokens.services import create_token
from hospiconnect.audit.models import AuditEvent

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
HC = "urn:hospiconnect:scim:schemas:extension:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"


@pytest.fixture()
def server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve ``app`` on a free local port; yield the SCIM base URL; stop the server afterwards."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="scim-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/scim/v2"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture()
def http(rt, session) -> Iterator[requests.Session]:  # type: ignore[no-untyped-def]
    _, token = create_token(session, rt.keys, name="connecteur-rh", scopes=["scim"], actor="test")
    session.commit()
    with requests.Session() as client:
        client.headers.update({"Authorization": f"Bearer {token}", "Accept": SCIM_JSON})
        yield client


def test_provisioning_over_http(rt, server: str, http: requests.Session) -> None:  # type: ignore[no-untyped-def]
    person = {
        "schemas": [CORE, HC],
        "userName": "mdurand",
        "externalId": "RH-2044",
        "name": {"familyName": "Durand", "givenName": "Marie"},
        "emails": [{"value": "marie.durand@chu-exemple.fr", "type": "work", "primary": True}],
        HC: {"birthFamilyName": "Durand", "givenNames": "Marie Louise", "birthDate": "1988-09-30",
             "birthPlace": "69123", "birthCountry": "99100", "gender": "female", "contractType": "fixed_term",
             "startDate": "2024-03-01", "establishments": ["690781810"], "units": ["REA"], "roles": ["ide"]},
    }

    # Create, in the SCIM media type.
    created = http.post(f"{server}/Users", data=json.dumps(person, ensure_ascii=False).encode(),
                        headers={"Content-Type": SCIM_JSON}, timeout=10)
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"] == SCIM_JSON
    user = created.json()
    location = created.headers["Location"]
    assert location.endswith(f"/scim/v2/Users/{user['id']}")
    assert created.headers["ETag"] == 'W/"1"'

    # Read back; the same ETag gives 304.
    url = f"{server}/Users/{user['id']}"
    assert http.get(url, timeout=10).json() == user
    assert http.get(url, headers={"If-None-Match": 'W/"1"'}, timeout=10).status_code == 304

    # List with a filter (accents and case do not matter for names).
    listing = http.get(f"{server}/Users", params={"filter": 'name.familyName eq "DURAND" and roles eq "ide"',
                                                  "count": 10}, timeout=10)
    assert listing.status_code == 200
    page = listing.json()
    assert page["totalResults"] == 1 and page["Resources"][0]["id"] == user["id"]

    # Modify: suspend and add a role, guarded by the ETag.
    patch = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "active", "value": False},
        {"op": "add", "path": f"{HC}:roles", "value": ["cadre"]},
    ]}
    modified = http.patch(url, json=patch, headers={"If-Match": created.headers["ETag"]}, timeout=10)
    assert modified.status_code == 200, modified.text
    assert modified.json()["active"] is False
    assert modified.json()[HC]["roles"] == ["cadre", "ide"]
    stale = http.patch(url, json=patch, headers={"If-Match": 'W/"1"'}, timeout=10)
    assert stale.status_code == 412 and stale.json()["status"] == "412"

    # Identities are never deleted.
    refused = http.delete(url, timeout=10)
    assert refused.status_code == 405
    assert "active=false" in refused.json()["detail"]

    # A bad filter is a SCIM error, not a server error.
    bad = http.get(f"{server}/Users", params={"filter": 'userName eq "x" and ('}, timeout=10)
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidFilter"

    # Without the token: 401 and a Bearer challenge.
    anonymous = requests.get(f"{server}/Users", timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    with rt.db.session() as s:
        journal = s.scalars(select(AuditEvent).where(AuditEvent.subject == user["id"]).order_by(AuditEvent.seq)).all()
    tags = [e.tag for e in journal]
    assert tags == ["directory:identity:created", "directory:identity:updated", "directory:identity:suspended"]
    assert {(e.actor, e.client_ip) for e in journal} == {("api_token:connecteur-rh", "127.0.0.1")}


def test_concurrent_patches_with_one_etag_let_exactly_one_win(rt, session, server: str,  # type: ignore[no-untyped-def]
                                                               http: requests.Session) -> None:
    person = {"schemas": [CORE, HC], "userName": "concurrence", "name": {"familyName": "Roux", "givenName": "Paul"},
              HC: {"birthDate": "1970-01-01", "birthPlace": "13055", "birthCountry": "99100", "gender": "male",
                   "contractType": "permanent"}}
    user = http.post(f"{server}/Users", json=person, timeout=10).json()
    url = f"{server}/Users/{user['id']}"
    # Two clients with their own tokens: one shared token would serialise the requests on its own row.
    plaintexts = [create_token(session, rt.keys, name=f"client-{n}", scopes=["scim"], actor="test")[1] for n in (1, 2)]
    session.commit()
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def attempt(token: str, role: str) -> None:
        body = {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": f"{HC}:roles", "value": [role]}]}
        headers = {"Authorization": f"Bearer {token}", "If-Match": 'W/"1"'}
        barrier.wait()
        statuses.append(requests.patch(url, json=body, headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=attempt, args=args) for args in zip(plaintexts, ("ide", "cadre"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 412]
    final = http.get(url, timeout=10).json()
    assert final["meta"]["version"] == 'W/"2"' and len(final[HC]["roles"]) == 1
