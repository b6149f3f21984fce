"""Throttling and lockout counted across two provider processes (SECURITY.md item 15).

Wrong passwords typed alternately on A and B are counted in one counter, kept in the Redis both instances
share (``HOSPICONNECT_REDIS_URL``), not in either process nor in the database: the account locks after the
configured number of failures counted across both, although neither instance saw that many on its own; the
lock then refuses the right password on both, with the same generic message as a wrong one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import requests
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp import login_session
from hospiconnect.ratelimit import account_key, ip_key
from hospiconnect.ratelimit_models import ThrottleCounter
from hospiconnect.runtime import Runtime
from tests.multiprocess.live import csrf_token_of, page, path_of, post_form, throttle_counter
from tests.oidc_helpers import RegisteredClient, auth_request

if TYPE_CHECKING:  # the fixtures' types, defined in conftest.py
    import redis

    from tests.multiprocess.conftest import Clinician, Cluster

GENERIC = "Identifiant ou mot de passe incorrect."


def test_wrong_passwords_on_both_instances_lock_the_account_on_both(cluster: Cluster, rt: Runtime,
                                                                    rp: RegisteredClient, clinician: Clinician,
                                                                    shared_redis: redis.Redis) -> None:
    assert cluster.lockout_threshold % 2 == 0  # as many failures on each instance, half the threshold
    browser = requests.Session()
    request = auth_request(rp)
    started = page(browser, cluster.a, "/authorize", **request.params)
    assert started.status_code == 302, started.text[:500]
    login_path = path_of(started.headers["Location"])
    token = csrf_token_of(page(browser, cluster.a, login_path).text)
    key = account_key(clinician.user_name, "password")

    for attempt in range(1, cluster.lockout_threshold + 1):
        server = cluster.a if attempt % 2 else cluster.b
        response = post_form(browser, server, f"{login_path}/mot-de-passe",
                             {"username": clinician.user_name, "password": "mauvais mot de passe"}, token=token)
        assert response.status_code == 401 and GENERIC in response.text, (server.name, response.status_code)
        # One counter for both instances, in their Redis: it has seen every attempt so far.
        counter = throttle_counter(shared_redis, key)
        assert counter is not None and counter[0] == attempt, (server.name, counter)
    failures, locked_until = counter
    assert locked_until is not None and locked_until > time.time()

    # Locked: the right password is refused on both, with the answer a wrong one gets.
    for server in (cluster.a, cluster.b):
        response = post_form(browser, server, f"{login_path}/mot-de-passe",
                             {"username": clinician.user_name, "password": clinician.password}, token=token)
        assert response.status_code == 401 and GENERIC in response.text, (server.name, response.status_code)
        assert browser.cookies.get(login_session.cookie_name(rt.settings)) is None
    assert throttle_counter(shared_redis, key) == (failures, locked_until)  # refusals are not failures
    ip_counter = throttle_counter(shared_redis, ip_key("127.0.0.1", "password"))
    assert ip_counter is not None and ip_counter[0] == cluster.lockout_threshold

    with rt.db.session() as s:
        # Redis holds the counters: nothing went to the database's table.
        assert s.scalar(select(func.count()).select_from(ThrottleCounter)) == 0
        locks = s.scalars(select(AuditEvent).where(AuditEvent.tag == tags.AUTHN_ACCOUNT_LOCKED,
                                                   AuditEvent.subject == clinician.sub)).all()
        assert len(locks) == 1
        refusals = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.tag == tags.AUTHN_PASSWORD_FAILURE, AuditEvent.outcome == "refused",
            AuditEvent.actor == clinician.user_name))
        assert refusals == 2
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.tag == tags.AUTHN_PASSWORD_SUCCESS, AuditEvent.subject == clinician.sub)) == 0
