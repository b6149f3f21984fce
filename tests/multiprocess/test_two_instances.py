"""Two provider processes on one database: what DESIGN.md promises ("no state that matters lives in
process memory") checked with real servers, not with two Flask apps in one interpreter.

* an authorization code raced by 20 token requests split across both instances is redeemed exactly once,
  and the winner's tokens are then revoked (SECURITY.md item 3, ``oidcc-codereuse``);
* a refresh token raced the same way rotates exactly once, and the family is then revoked (item 6);
* the SSO session is shared: ``prompt=none`` on B honours a session used on A, and a logout on B ends it
  on both (items 8, 9, 19);
* a signing-key rotation made by the command line is published by both instances at once, and the next
  ID token of A verifies with the JWKS of B (item 7, rotation without downtime).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

import requests
from joserfc import jws
from joserfc.jwk import KeySet

from hospiconnect.idp.models import SsoSession
from hospiconnect.runtime import Runtime
from tests.multiprocess.live import ServerProcess, cookie_header, run_cli
from tests.oidc_helpers import POST_LOGOUT_URI, RegisteredClient, id_token_claims, jwt_header, pkce, query_of

if TYPE_CHECKING:  # the fixtures' types, defined in conftest.py
    from tests.multiprocess.conftest import Cluster, Person

RACERS = 20
HTTP_TIMEOUT_SECONDS = 30


# --- HTTP helpers ---------------------------------------------------------------------------------------

def authorize(server: ServerProcess, rt: Runtime, rc: RegisteredClient, cookie: str, *,
              scope: str = "openid profile offline_access", **extra: str) -> dict[str, str]:
    """GET ``/authorize`` on ``server`` with the browser's SSO cookie; return the parameters of the
    redirect to the client (``code``, ``state``, ``iss`` — or ``error``), plus ``_verifier``."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": rc.client_id, "redirect_uri": rc.redirect_uri,
              "scope": scope, "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    response = requests.get(f"{server.url}/authorize", params=params, headers=cookie_header(rt, cookie),
                            allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code in (302, 303), (response.status_code, response.text[:500])
    location = response.headers["Location"]
    assert location.startswith(rc.redirect_uri), location
    return {**query_of(location), "_verifier": verifier}


def token_request(server: ServerProcess, rc: RegisteredClient, data: dict[str, str],
                  http: requests.Session | None = None) -> requests.Response:
    """POST ``data`` to ``/token`` on ``server``, authenticated with the client's secret (HTTP Basic)."""
    return (http or requests).post(f"{server.url}/token", data=data, auth=(rc.client_id, rc.secret or ""),
                                   timeout=HTTP_TIMEOUT_SECONDS)


def code_grant(code: str, verifier: str, rc: RegisteredClient) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": rc.redirect_uri,
            "code_verifier": verifier}


def introspect(server: ServerProcess, rc: RegisteredClient, token: str) -> dict[str, Any]:
    response = requests.post(f"{server.url}/introspect", data={"token": token},
                             auth=(rc.client_id, rc.secret or ""), timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return response.json()


def sign_in(cluster_server: ServerProcess, token_server: ServerProcess, rt: Runtime, rc: RegisteredClient,
            person: Person, **extra: str) -> dict[str, Any]:
    """Authorization on one instance, code exchange on the other (or the same); return the tokens."""
    result = authorize(cluster_server, rt, rc, person.cookie, **extra)
    assert "code" in result, result
    response = token_request(token_server, rc, code_grant(result["code"], result["_verifier"], rc))
    assert response.status_code == 200, response.text
    return response.json()


def race(server_for: Callable[[int], ServerProcess], rc: RegisteredClient,
         data: dict[str, str]) -> list[tuple[str, requests.Response]]:
    """Send the same token request ``RACERS`` times at once (racer ``i`` to ``server_for(i)``); return
    ``(instance name, response)`` pairs.

    Each racer opens its connection first (a ``/healthz`` call on a keep-alive session) and then waits at a
    barrier, so the token requests leave together instead of one connection set-up apart.
    """
    barrier = threading.Barrier(RACERS)

    def racer(i: int) -> tuple[str, requests.Response]:
        server = server_for(i)
        with requests.Session() as http:
            http.get(f"{server.url}/healthz", timeout=HTTP_TIMEOUT_SECONDS)
            barrier.wait(timeout=HTTP_TIMEOUT_SECONDS)
            return server.name, token_request(server, rc, data, http)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        futures = [pool.submit(racer, i) for i in range(RACERS)]
        return [f.result(timeout=2 * HTTP_TIMEOUT_SECONDS) for f in futures]


def outcome(results: list[tuple[str, requests.Response]]) -> tuple[requests.Response, list[str]]:
    """Return the one winning response (asserting there is exactly one) and a description of every loser
    that is not an ``invalid_grant`` (400) — a 5xx there is a defect, checked last by the callers so that
    the security properties are reported first."""
    summary = [(name, r.status_code, r.text[:160]) for name, r in results]
    winners = [r for _, r in results if r.status_code == 200]
    assert len(winners) == 1, summary
    assert {name for name, _ in results} == {"instance-a", "instance-b"}
    odd = [f"{name}: {r.status_code} {_gist(r)}" for name, r in results
           if r.status_code != 200 and not (r.status_code == 400 and _error_of(r) == "invalid_grant")]
    return winners[0], odd


def _error_of(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _gist(response: requests.Response) -> str:
    """The OAuth error, or the title of an HTML page (the 503 page of a database error)."""
    error = _error_of(response)
    if error:
        return error
    match = re.search(r"<title>(.*?)</title>", response.text, re.S)
    return match.group(1).strip() if match else response.text[:120]


# --- the tests ------------------------------------------------------------------------------------------

def test_a_code_raced_across_both_instances_is_redeemed_once(cluster: Cluster, rt: Runtime,
                                                             rp: RegisteredClient, person: Person) -> None:
    result = authorize(cluster.a, rt, rp, person.cookie)
    assert result["iss"] == cluster.issuer and "code" in result

    results = race(lambda i: cluster.a if i % 2 == 0 else cluster.b, rp,
                   code_grant(result["code"], result["_verifier"], rp))
    winner, odd = outcome(results)
    tokens = winner.json()
    assert tokens["access_token"] and tokens["refresh_token"] and tokens["id_token"]

    # The code was presented again after its redemption: every token issued from it is revoked, as seen
    # from either instance (the decision lives in the database).
    for server in (cluster.a, cluster.b):
        assert introspect(server, rp, tokens["access_token"])["active"] is False
        assert introspect(server, rp, tokens["refresh_token"])["active"] is False
    userinfo = requests.get(f"{cluster.b.url}/userinfo", timeout=HTTP_TIMEOUT_SECONDS,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401
    assert not odd, f"every other request must get invalid_grant: {odd}"


def test_a_refresh_token_raced_across_both_instances_rotates_once(cluster: Cluster, rt: Runtime,
                                                                  rp: RegisteredClient, person: Person) -> None:
    first = sign_in(cluster.a, cluster.b, rt, rp, person)
    assert introspect(cluster.a, rp, first["access_token"])["active"] is True

    results = race(lambda i: cluster.b if i % 2 == 0 else cluster.a, rp,
                   {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    winner, odd = outcome(results)
    rotated = winner.json()
    assert rotated["refresh_token"] != first["refresh_token"]

    # The losers presented a used refresh token: the whole family is revoked, the winner's tokens too.
    again = token_request(cluster.a, rp, {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    for token in (first["access_token"], rotated["access_token"], rotated["refresh_token"]):
        assert introspect(cluster.b, rp, token)["active"] is False
    assert not odd, f"every other request must get invalid_grant: {odd}"


def test_the_sso_session_is_shared_and_logout_on_b_ends_it_on_both(cluster: Cluster, rt: Runtime,
                                                                    rp: RegisteredClient, person: Person) -> None:
    through_a = sign_in(cluster.a, cluster.a, rt, rp, person)

    # B honours the session used through A without any page: prompt=none gives a code.
    through_b = sign_in(cluster.b, cluster.b, rt, rp, person, prompt="none")
    claims_a, claims_b = id_token_claims(rt, through_a["id_token"]), id_token_claims(rt, through_b["id_token"])
    assert claims_a["iss"] == claims_b["iss"] == cluster.issuer
    assert claims_a["sid"] == claims_b["sid"] and claims_a["sub"] == claims_b["sub"] == person.sub

    # RP-initiated logout on B.
    response = requests.get(f"{cluster.b.url}/logout", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS,
                            headers=cookie_header(rt, person.cookie),
                            params={"id_token_hint": through_b["id_token"], "state": "fin",
                                    "post_logout_redirect_uri": POST_LOGOUT_URI})
    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"] == f"{POST_LOGOUT_URI}?state=fin"

    # Both see the session ended: prompt=none now needs a login, and A's tokens are revoked.
    for server in (cluster.a, cluster.b):
        after = authorize(server, rt, rp, person.cookie, prompt="none")
        assert after.get("error") == "login_required" and after["iss"] == cluster.issuer, (server.name, after)
    assert introspect(cluster.a, rp, through_a["access_token"])["active"] is False
    refresh = token_request(cluster.a, rp, {"grant_type": "refresh_token",
                                            "refresh_token": through_a["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    with rt.db.session() as s:
        sso = s.query(SsoSession).filter_by(identity_id=person.identity_id).one()
        assert sso.end_reason == "logout"


def test_a_key_rotation_by_the_command_line_is_seen_by_both_instances(cluster: Cluster, rt: Runtime,
                                                                      rp: RegisteredClient,
                                                                      person: Person) -> None:
    before = requests.get(f"{cluster.b.url}/jwks.json", timeout=HTTP_TIMEOUT_SECONDS).json()
    before_kids = {k["kid"] for k in before["keys"]}
    assert before_kids

    completed = run_cli(["keys", "rotate", "--json"], cluster.env)
    assert completed.returncode == 0, completed.stderr
    rotation = json.loads(completed.stdout)
    created, retired = set(rotation["created"]), set(rotation["retired"])
    assert len(created) == 2 and retired == before_kids and not created & before_kids

    # Both instances publish the new keys at once, and still the retired ones (tokens in flight).
    jwks = {}
    for server in (cluster.a, cluster.b):
        jwks[server.name] = requests.get(f"{server.url}/jwks.json", timeout=HTTP_TIMEOUT_SECONDS).json()
        assert {k["kid"] for k in jwks[server.name]["keys"]} == created | retired

    # A signs its next ID token with the new ES256 key; B's JWKS alone verifies it.
    tokens = sign_in(cluster.a, cluster.a, rt, rp, person)
    header = jwt_header(tokens["id_token"])
    assert header["kid"] in created and header["alg"] == "ES256"
    published = KeySet.import_key_set(jwks["instance-b"])
    verified = jws.deserialize_compact(tokens["id_token"], published, algorithms=["ES256"])
    claims = json.loads(verified.payload)
    assert claims["iss"] == cluster.issuer and claims["aud"] == rp.client_id and claims["sub"] == person.sub
