"""``/metrics`` through the Flask test client: the Prometheus text format, readable only from the allowed
networks, and counters that move with what people and clients really do — a sign-in through the pages
(password then TOTP), a wrong password, token requests that succeed and fail, requests to known and unknown
routes.

The counters are the process's and other tests move them too: each test compares two readings of the page.
"""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families

from hospiconnect.authenticators import services as mie_services
from hospiconnect.db import utcnow
from tests.factories import create_identity
from tests.oidc_helpers import auth_request, exchange, interaction_id_of, register, sign_in

PASSWORD = "correct cheval pile agrafe"
# The middle of a 30-second TOTP step: a code computed "now" cannot straddle a step boundary.
T0 = dt.datetime(2026, 11, 27, 8, 30, 10, tzinfo=dt.timezone.utc)

Readings = dict[tuple[str, frozenset[tuple[str, str]]], float]


def read_metrics(client) -> Readings:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    readings: Readings = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            readings[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return readings


def value(readings: Readings, name: str, **labels: str) -> float:
    return readings.get((name, frozenset(labels.items())), 0.0)


def signins(readings: Readings, outcome: str, factor: str) -> float:
    return value(readings, "hospiconnect_signins_total", outcome=outcome, factor=factor)


@pytest.fixture()
def app_for(app_with):  # type: ignore[no-untyped-def]
    """Build a test client of an application whose settings differ from the suite's by ``overrides``."""
    return lambda **overrides: app_with(**overrides)[1]


# --- who may read them, and in which format ------------------------------------------------------------------

def test_prometheus_text_format_for_this_host(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    for name in ("hospiconnect_signins_total", "hospiconnect_token_grants_total",
                 "hospiconnect_password_hash_validations_total",
                 "hospiconnect_password_hash_validation_duration_seconds",
                 "hospiconnect_http_request_duration_seconds", "hospiconnect_journal_write_failures_total"):
        assert f"# TYPE {name.removesuffix('_total')} " in body or f"# TYPE {name} " in body, name
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_openmetrics_when_the_scraper_asks_for_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


@pytest.mark.parametrize("address", ["10.0.0.5", "192.0.2.1", "2001:db8::1"])
def test_other_clients_get_403_json(client, address):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 403
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["error"] == "forbidden" and "HOSPICONNECT_METRICS_ALLOWED_NETWORKS" in body["message"]
    assert "hospiconnect_" not in response.get_data(as_text=True)


def test_the_configured_networks_replace_the_default(app_for):
    client = app_for(metrics_allowed_networks=("10.0.0.0/8",))
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.200.1.2"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403


# --- sign-ins -----------------------------------------------------------------------------------------------

def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _post(client, interaction_id: str, suffix: str, data: dict[str, str]):
    page = client.get(f"/connexion/{interaction_id}", query_string={"changer": "1"} if suffix == "/mot-de-passe"
                      else None)
    return client.post(f"/connexion/{interaction_id}{suffix}",
                       data={**data, "csrf_token": _csrf(page.get_data(as_text=True))})


def _start(client, rc) -> str:
    response = client.get("/authorize", query_string=auth_request(rc).params)
    assert response.status_code == 302, response.get_data(as_text=True)
    return interaction_id_of(response)


@pytest.fixture()
def clinician(session, rt):
    """A person with a password and an authenticator application; returns (identity, TOTP seed)."""
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
    return identity, seed


@pytest.fixture()
def frozen():
    with time_machine.travel(T0, tick=False):
        yield


def test_a_two_factor_sign_in_counts_each_step_and_the_completed_sign_in(frozen, client, rt, session, clinician):
    identity, seed = clinician
    health_rp = register(session, rt, name="Dossier patient informatisé", sensitivity="health-data")
    before = read_metrics(client)

    interaction_id = _start(client, health_rp)
    response = _post(client, interaction_id, "/mot-de-passe", {"username": identity.user_name, "password": PASSWORD})
    assert response.status_code == 303
    response = _post(client, interaction_id, "/code", {"code": pyotp.TOTP(seed).at(utcnow())})
    assert response.status_code == 303 and response.headers["Location"].startswith("/authorize/resume/")

    after = read_metrics(client)
    assert signins(after, "success", "password") == signins(before, "success", "password") + 1
    assert signins(after, "success", "totp") == signins(before, "success", "totp") + 1
    assert signins(after, "completed", "mfa") == signins(before, "completed", "mfa") + 1
    assert signins(after, "completed", "single_factor") == signins(before, "completed", "single_factor")
    matches = "hospiconnect_password_hash_validations_total"
    assert value(after, matches, outcome="match") == value(before, matches, outcome="match") + 1
    timed = "hospiconnect_password_hash_validation_duration_seconds_count"
    assert value(after, timed) == value(before, timed) + 1


def test_a_wrong_password_and_a_wrong_code_count_as_failures(frozen, client, rt, session, clinician):
    identity, seed = clinician
    health_rp = register(session, rt, name="Dossier patient informatisé", sensitivity="health-data")
    before = read_metrics(client)

    interaction_id = _start(client, health_rp)
    wrong = _post(client, interaction_id, "/mot-de-passe", {"username": identity.user_name, "password": "non " * 4})
    assert wrong.status_code == 401
    unknown = _post(client, interaction_id, "/mot-de-passe", {"username": "personne.inconnue", "password": PASSWORD})
    assert unknown.status_code == 401
    assert _post(client, interaction_id, "/mot-de-passe",
                 {"username": identity.user_name, "password": PASSWORD}).status_code == 303
    wrong_code = "000000" if pyotp.TOTP(seed).at(utcnow()) != "000000" else "111111"
    assert _post(client, interaction_id, "/code", {"code": wrong_code}).status_code == 401

    after = read_metrics(client)
    assert signins(after, "failure", "password") == signins(before, "failure", "password") + 2
    assert signins(after, "failure", "totp") == signins(before, "failure", "totp") + 1
    assert signins(after, "completed", "mfa") == signins(before, "completed", "mfa")
    validations = "hospiconnect_password_hash_validations_total"
    # The unknown account costs a verification too (against a dummy hash): two mismatches, one match.
    assert value(after, validations, outcome="mismatch") == value(before, validations, outcome="mismatch") + 2
    assert value(after, validations, outcome="match") == value(before, validations, outcome="match") + 1


# --- token grants --------------------------------------------------------------------------------------------

def test_token_grants_are_counted_by_grant_type_and_outcome(client, rt, session):
    rp = register(session, rt, name="Messagerie", sensitivity="standard")
    identity = create_identity(session)
    before = read_metrics(client)

    request, result = sign_in(client, rt, rp, identity, scope="openid profile offline_access")
    assert exchange(client, rp, result["code"], request.verifier).status_code == 200
    assert exchange(client, rp, result["code"], request.verifier).status_code == 400  # reused code
    assert client.post("/token", data={"grant_type": "password", "username": "u", "password": "p"},
                       headers=rp.basic()).status_code == 400
    assert client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "inconnu"},
                       headers={"Authorization": "Basic bm9ib2R5Om5vdGhpbmc="}).status_code == 401

    after = read_metrics(client)
    grants = "hospiconnect_token_grants_total"

    def moved(grant_type: str, outcome: str) -> float:
        return (value(after, grants, grant_type=grant_type, outcome=outcome)
                - value(before, grants, grant_type=grant_type, outcome=outcome))

    assert moved("authorization_code", "success") == 1
    assert moved("authorization_code", "invalid_grant") == 1
    assert moved("other", "unsupported_grant_type") == 1
    assert moved("refresh_token", "invalid_client") == 1
    assert not any(name == grants and dict(labels).get("grant_type") == "password" for name, labels in after)


# --- request latency ------------------------------------------------------------------------------------------

def test_requests_are_timed_by_endpoint_with_unknown_routes_together(client):
    count = "hospiconnect_http_request_duration_seconds_count"
    before = read_metrics(client)
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert client.get("/pas-de-page-ici").status_code == 404
    assert client.get("/autre/chemin/inconnu").status_code == 404
    assert client.post("/healthz").status_code == 405
    after = read_metrics(client)

    def moved(**labels: str) -> float:
        return value(after, count, **labels) - value(before, count, **labels)

    assert moved(endpoint="home.healthz", method="GET", status_class="2xx") == 5
    assert moved(endpoint="unmatched", method="GET", status_class="4xx") == 2
    assert moved(endpoint="unmatched", method="POST", status_class="4xx") == 1
    # One /metrics reading happened between the two: it is timed like any request.
    assert moved(endpoint="home.metrics_page", method="GET", status_class="2xx") == 1
    assert not any("pas-de-page" in str(labels) for _, labels in after)
