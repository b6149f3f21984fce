"""The sign-in pages across two provider processes, driven as a browser would (a ``requests.Session``).

* a sign-in started on A (``/authorize``, the page) goes on with the password on B, the TOTP code on A,
  ``/authorize/resume`` on B, and the code is exchanged on A: nothing of an interaction lives in one process,
  the browser's mark that it gave the password (signed Flask session) is honoured by both, and the SSO
  session opened by A's page is then honoured by B without any page (SECURITY.md items 13 and 19);
* the same TOTP code typed at the second-factor step of 16 interactions of one person at once, half on each
  instance, is accepted exactly once (SECURITY.md item 13: one time step, one use, decided by one conditional
  UPDATE), the others refused with the page's own answer, never a 5xx; the refusals are counted once each, in
  the Redis both instances share.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import pyotp
import requests
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie, TotpCredential
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.ratelimit import account_key
from hospiconnect.runtime import Runtime
from tests.multiprocess.live import (
    Racer,
    ServerProcess,
    csrf_token_of,
    page,
    path_of,
    post_form,
    release_together,
    throttle_counter,
)
from tests.oidc_helpers import AuthRequest, RegisteredClient, auth_request, id_token_claims, query_of

if TYPE_CHECKING:  # the fixtures' types, defined in conftest.py
    import redis

    from tests.multiprocess.conftest import Clinician, Cluster

RACERS = 16
TOTP_STEP_SECONDS = 30
HTTP_TIMEOUT_SECONDS = 30
WRONG_CODE = "Code incorrect."
TOO_MANY = "Trop de tentatives"


# --- a browser on the sign-in pages ---------------------------------------------------------------------

def start(browser: requests.Session, server: ServerProcess, rc: RegisteredClient,
          **extra: str) -> tuple[AuthRequest, str]:
    """GET ``/authorize`` on ``server``; return the request and the path of the login page it leads to."""
    request = auth_request(rc, **extra)
    response = page(browser, server, "/authorize", **request.params)
    assert response.status_code == 302, (response.status_code, response.text[:500])
    login_path = path_of(response.headers["Location"])
    assert login_path.startswith("/connexion/"), login_path
    return request, login_path


def give_password(browser: requests.Session, server: ServerProcess, login_path: str, person: Clinician,
                  token: str) -> requests.Response:
    return post_form(browser, server, f"{login_path}/mot-de-passe",
                     {"username": person.user_name, "password": person.password}, token=token)


def exchange(server: ServerProcess, rc: RegisteredClient, code: str, verifier: str) -> dict[str, str]:
    """Exchange ``code`` at ``/token`` on ``server`` (client_secret_basic); return the tokens."""
    response = requests.post(f"{server.url}/token", auth=(rc.client_id, rc.secret or ""),
                             timeout=HTTP_TIMEOUT_SECONDS,
                             data={"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": rc.redirect_uri, "code_verifier": verifier})
    assert response.status_code == 200, response.text
    return response.json()


def to_client(browser: requests.Session, server: ServerProcess, path: str, rc: RegisteredClient) -> dict[str, str]:
    """GET ``path`` (``/authorize…``) on ``server``; return the parameters of the redirect to the client."""
    response = page(browser, server, path)
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = response.headers["Location"]
    assert location.startswith(rc.redirect_uri), location
    return query_of(location)


def sso_cookie(rt: Runtime, browser: requests.Session) -> str | None:
    return browser.cookies.get(login_session.cookie_name(rt.settings))


# --- a sign-in across both instances --------------------------------------------------------------------

def test_a_sign_in_started_on_one_instance_finishes_on_the_other(cluster: Cluster, rt: Runtime,
                                                                 rp: RegisteredClient,
                                                                 clinician: Clinician) -> None:
    browser = requests.Session()
    request, login_path = start(browser, cluster.a, rp)
    shown = page(browser, cluster.a, login_path)
    assert shown.status_code == 200 and 'autocomplete="current-password"' in shown.text

    # The password on B, with the CSRF token of A's page.
    given = give_password(browser, cluster.b, login_path, clinician, csrf_token_of(shown.text))
    assert given.status_code == 303, given.text[:1000]
    assert path_of(given.headers["Location"]) == login_path
    assert sso_cookie(rt, browser) is None  # not signed in before the second factor

    # A knows this browser gave the password on B: it asks for the code, then takes it.
    second = page(browser, cluster.a, login_path)
    assert second.status_code == 200 and 'autocomplete="one-time-code"' in second.text
    assert 'autocomplete="current-password"' not in second.text
    coded = post_form(browser, cluster.a, f"{login_path}/code", {"code": clinician.code()},
                      token=csrf_token_of(second.text))
    assert coded.status_code == 303, coded.text[:1000]
    resume_path = path_of(coded.headers["Location"])
    assert resume_path.startswith("/authorize/resume/")
    assert sso_cookie(rt, browser)

    # Resumed on B, exchanged on A.
    result = to_client(browser, cluster.b, resume_path, rp)
    assert result["state"] == request.state and result["iss"] == cluster.issuer and "code" in result
    tokens = exchange(cluster.a, rp, result["code"], request.verifier)
    claims = id_token_claims(rt, tokens["id_token"])
    assert claims["sub"] == clinician.sub and claims["iss"] == cluster.issuer and claims["aud"] == rp.client_id
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"} and claims["nonce"] == request.nonce

    # The session A's page opened is honoured by B without any page.
    silent = auth_request(rp, prompt="none")
    response = page(browser, cluster.b, "/authorize", **silent.params)
    assert response.status_code == 302 and response.headers["Location"].startswith(rp.redirect_uri)
    again = query_of(response.headers["Location"])
    assert "code" in again, again
    claims_b = id_token_claims(rt, exchange(cluster.b, rp, again["code"], silent.verifier)["id_token"])
    assert claims_b["sub"] == clinician.sub and claims_b["sid"] == claims["sid"]
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(SsoSession)
                        .where(SsoSession.identity_id == clinician.identity_id)) == 1


# --- one TOTP code raced by 16 interactions -------------------------------------------------------------

def at_second_factor(server: ServerProcess, rc: RegisteredClient, person: Clinician
                     ) -> tuple[requests.Session, str, str]:
    """A new browser that gave the password on ``server`` and now stands at the second factor; return it,
    the path of its login page and the page's CSRF token."""
    browser = requests.Session()
    _request, login_path = start(browser, server, rc)
    token = csrf_token_of(page(browser, server, login_path).text)
    given = give_password(browser, server, login_path, person, token)
    assert given.status_code == 303 and path_of(given.headers["Location"]) == login_path, given.text[:1000]
    second = page(browser, server, login_path)
    assert 'autocomplete="one-time-code"' in second.text, second.text[:1000]
    return browser, login_path, csrf_token_of(second.text)


def race_one_code(cluster: Cluster, rc: RegisteredClient, person: Clinician
                  ) -> tuple[list[tuple[str, requests.Response, requests.Session]], int, bool]:
    """Bring ``RACERS`` browsers of ``person`` to the second factor (half on each instance), then submit the
    same code from all of them at once. Return ``(instance, response, browser)`` triples, the time step of the
    code and whether the server clock may have moved to another step meanwhile."""
    def server_for(i: int) -> ServerProcess:
        return cluster.a if i % 2 == 0 else cluster.b

    prepared = [(server_for(i), *at_second_factor(server_for(i), rc, person)) for i in range(RACERS)]
    # The code is computed right before the race; the step is compared once every answer is in.
    moment = time.time()
    step = int(moment) // TOTP_STEP_SECONDS
    code = pyotp.TOTP(person.seed).at(moment)
    racers = [Racer(server, browser, lambda b=browser, s=server, p=path, t=token:
                    post_form(b, s, f"{p}/code", {"code": code}, token=t))
              for server, browser, path, token in prepared]
    results = release_together(racers)
    moved = int(time.time()) // TOTP_STEP_SECONDS != step
    return [(name, response, racer.browser) for (name, response), racer in zip(results, racers)], step, moved


def test_one_totp_code_raced_across_both_instances_is_accepted_once(cluster: Cluster, rt: Runtime,
                                                                    rp: RegisteredClient,
                                                                    new_clinician: Callable[[], Clinician],
                                                                    shared_redis: redis.Redis) -> None:
    person = new_clinician()
    results, step, moved = race_one_code(cluster, rp, person)
    if moved:
        # A step boundary fell within the race: run it again, whole, for a person whose code is still unused
        # (the first person's account may be locked by the refusals). At most one winner in any case.
        first = [(name, r.status_code) for name, r, _ in results]
        assert sum(status == 303 for _, status in first) <= 1 and all(status < 500 for _, status in first), first
        person = new_clinician()
        results, step, moved = race_one_code(cluster, rp, person)

    summary = [(name, r.status_code) for name, r, _ in results]
    assert {name for name, _ in summary} == {"instance-a", "instance-b"}
    winners = [(name, r, browser) for name, r, browser in results if r.status_code == 303]
    assert len(winners) == 1, summary
    refused = [r for _, r, _ in results if r.status_code != 303]
    odd = [(name, r.status_code, r.text[:300]) for name, r, _ in results if r.status_code != 303
           and not (r.status_code == 401 and WRONG_CODE in r.text)
           and not (r.status_code == 429 and TOO_MANY in r.text and r.headers.get("Retry-After"))]
    assert not odd, f"every other attempt must be refused by the page: {odd}"

    # The accepted one really signs in: resumed on the other instance, it reaches the client with a code.
    name, accepted, browser = winners[0]
    resume_path = path_of(accepted.headers["Location"])
    assert resume_path.startswith("/authorize/resume/")
    other = cluster.b if name == "instance-a" else cluster.a
    assert "code" in to_client(browser, other, resume_path, rp)

    with rt.db.session() as s:
        last_step = s.scalar(select(TotpCredential.last_step).join(Mie, Mie.id == TotpCredential.mie_id)
                             .where(Mie.identity_id == person.identity_id))
        assert last_step == step
        successes = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.tag == tags.AUTHN_TOTP_SUCCESS, AuditEvent.subject == person.sub))
        assert successes == 1
        assert s.scalar(select(func.count()).select_from(SsoSession)
                        .where(SsoSession.identity_id == person.identity_id)) == 1

    # Each wrong answer counted once, in the Redis both instances share (a 429 is refused before counting).
    wrong = sum(1 for r in refused if r.status_code == 401)
    counter = throttle_counter(shared_redis, account_key(person.user_name, "totp"))
    assert counter is not None and counter[0] == wrong, (counter, summary)
