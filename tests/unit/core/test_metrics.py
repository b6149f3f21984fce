"""The process's metrics (hospiconnect.metrics): which journal events count as sign-ins, bounded labels, the
argon2 and journal hooks, the /metrics network filter and its setting, the multiprocess folder.

Counters are process-wide and other tests move them too: every assertion is on a difference.
"""

from __future__ import annotations

import ipaddress
import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from hospiconnect import metrics
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import password as pw
from hospiconnect.authenticators import webauthn
from hospiconnect.server import prepare_metrics_dir
from hospiconnect.settings import DEFAULT_METRICS_NETWORKS, Settings, SettingsError

SIGNINS = "hospiconnect_signins_total"


def signins(outcome: str, factor: str) -> float:
    return metrics.sample(SIGNINS, {"outcome": outcome, "factor": factor})


def _module_tags(module: object) -> set[str]:
    return {value for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str) and value.count(":") == 2}


KNOWN_TAGS = _module_tags(tags) | _module_tags(webauthn)
# authn: tags that are not an attempt with a factor (sessions, interaction steps, lock notices, a rehash,
# the start or unlinking of a PSC round trip).
NOT_A_SIGN_IN_STEP = {"session", "interaction", "account"}
NOT_A_SIGN_IN_TAG = {tags.AUTHN_PASSWORD_REHASHED, tags.AUTHN_PSC_STARTED, tags.AUTHN_PSC_UNLINKED}


# --- sign-ins from the journal's tags --------------------------------------------------------------------

def test_every_mapped_tag_is_a_tag_the_product_journals():
    assert set(metrics.SIGNIN_FACTORS) <= KNOWN_TAGS
    assert metrics.SIGNIN_COMPLETED_TAG == tags.AUTHN_INTERACTION_COMPLETED


def test_every_authentication_attempt_tag_is_counted():
    attempts = {t for t in KNOWN_TAGS if t.startswith("authn:") and t.split(":")[1] not in NOT_A_SIGN_IN_STEP
                and t not in NOT_A_SIGN_IN_TAG}
    assert attempts == set(metrics.SIGNIN_FACTORS)


@pytest.mark.parametrize(("tag", "outcome", "factor"), [
    (tags.AUTHN_PASSWORD_SUCCESS, "success", "password"),
    (tags.AUTHN_PASSWORD_FAILURE, "failure", "password"),
    (tags.AUTHN_PASSWORD_FAILURE, "refused", "password"),
    (tags.AUTHN_TOTP_FAILURE, "failure", "totp"),
    (webauthn.AUTHN_WEBAUTHN_COUNTER_REGRESSION, "failure", "webauthn"),
    (tags.AUTHN_RECOVERY_CODE_USED, "success", "recovery_code"),
    (tags.AUTHN_EMERGENCY_REFUSED, "refused", "emergency"),
    (tags.AUTHN_PSC_SUCCESS, "success", "psc"),
])
def test_a_sign_in_step_counts_under_its_factor_and_outcome(tag, outcome, factor):
    before = signins(outcome, factor)
    metrics.journal_event(tag, outcome, {"factor": factor})
    assert signins(outcome, factor) == before + 1


@pytest.mark.parametrize(("amr", "kind"), [
    (["pwd", "otp", "mfa"], "mfa"),
    (["hwk", "pin", "mfa"], "mfa"),
    (["pwd"], "single_factor"),
    (["emergency", "pwd"], "emergency"),
    ([], "single_factor"),
])
def test_a_completed_sign_in_counts_what_the_session_got(amr, kind):
    before = signins("completed", kind)
    metrics.journal_event(tags.AUTHN_INTERACTION_COMPLETED, "success", {"amr": amr, "sid": "x"})
    assert signins("completed", kind) == before + 1


def test_other_events_and_info_outcomes_count_nothing():
    def total() -> float:
        families = metrics._instruments().registry.collect()
        return sum(s.value for family in families if family.name == "hospiconnect_signins" for s in family.samples)

    before = total()
    metrics.journal_event(tags.AUTHN_SESSION_OPENED, "success", {})
    metrics.journal_event(tags.AUTHN_ACCOUNT_LOCKED, "info", {"factor": "password"})
    metrics.journal_event(tags.DIRECTORY_IDENTITY_CREATED, "success", None)
    metrics.journal_event(tags.AUTHN_PASSWORD_FAILURE, "info", None)
    assert total() == before


def test_recording_a_journal_event_counts_it(session):
    before = signins("failure", "totp")
    audit.record(session, tags.AUTHN_TOTP_FAILURE, actor="agent", outcome="failure", details={"factor": "totp"})
    session.commit()
    assert signins("failure", "totp") == before + 1


# --- bounded labels ----------------------------------------------------------------------------------------

def test_token_grant_labels_come_from_closed_lists():
    def grants(grant_type: str, outcome: str) -> float:
        return metrics.sample("hospiconnect_token_grants_total", {"grant_type": grant_type, "outcome": outcome})

    before = (grants("refresh_token", "success"), grants("other", "invalid_client"),
              grants("authorization_code", "other"))
    metrics.token_grant("refresh_token", 200, None)
    metrics.token_grant("password", 401, "invalid_client")
    metrics.token_grant("authorization_code", 400, "x" * 500)
    metrics.token_grant(None, 500, None)
    assert grants("refresh_token", "success") == before[0] + 1
    assert grants("other", "invalid_client") == before[1] + 1
    assert grants("authorization_code", "other") == before[2] + 1
    assert grants("password", "invalid_client") == 0  # an unknown grant type never becomes a label


def test_request_labels_are_bounded():
    name = "hospiconnect_http_request_duration_seconds_count"
    odd = {"endpoint": "unmatched", "method": "other", "status_class": "other"}
    before = metrics.sample(name, odd)
    metrics.observe_request(None, "BREW", 999, 0.01)
    assert metrics.sample(name, odd) == before + 1
    labels = {"endpoint": "home.healthz", "method": "GET", "status_class": "5xx"}
    before = metrics.sample(name, labels)
    metrics.observe_request("home.healthz", "GET", 503, 0.01)
    assert metrics.sample(name, labels) == before + 1


# --- argon2 verifications and journal failures ---------------------------------------------------------------

def test_each_argon2_verification_is_counted_and_timed():
    stored = pw.hash_password("cheval correct agrafe pile")

    def counts() -> tuple[float, ...]:
        return (*(metrics.sample("hospiconnect_password_hash_validations_total", {"outcome": o})
                  for o in metrics.PASSWORD_OUTCOMES),
                metrics.sample("hospiconnect_password_hash_validation_duration_seconds_count"))

    match, mismatch, invalid, timed = counts()
    assert pw.verify(stored, "cheval correct agrafe pile").ok
    assert not pw.verify(stored, "autre chose entièrement").ok
    assert not pw.verify("pas un hash", "cheval correct agrafe pile").ok
    pw.verify_dummy("compte inconnu")  # unknown accounts cost (and count) a verification too
    assert counts() == (match + 1, mismatch + 2, invalid + 1, timed + 4)
    assert metrics.sample("hospiconnect_password_hash_validation_duration_seconds_sum") > 0


def test_a_journal_append_that_fails_is_counted_and_the_commit_fails(tmp_path):
    # A database without the journal's tables: the append at commit raises, as a lost database would.
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    before = metrics.sample("hospiconnect_journal_write_failures_total")
    with Session(engine) as session:
        audit.record(session, tags.AUTHN_PASSWORD_SUCCESS, actor="agent", details={"factor": "password"})
        with pytest.raises(Exception):
            session.commit()
    engine.dispose()
    assert metrics.sample("hospiconnect_journal_write_failures_total") == before + 1


# --- who may read /metrics -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "allowed"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.5", False), ("::2", False), ("", False), (None, False), ("localhost", False), ("fe80::1%eth0", False),
])
def test_default_networks_are_this_host(address, allowed):
    assert metrics.client_allowed(address, DEFAULT_METRICS_NETWORKS) is allowed


def test_configured_networks_decide():
    networks = ("10.20.0.0/16", "2001:db8::/32")
    assert metrics.client_allowed("10.20.3.4", networks)
    assert metrics.client_allowed("2001:db8::7", networks)
    assert metrics.client_allowed("::ffff:10.20.3.4", networks)
    assert not metrics.client_allowed("10.21.0.1", networks)
    assert not metrics.client_allowed("127.0.0.1", networks)


def test_networks_setting_is_read_and_normalised():
    assert Settings.from_env({}).metrics_allowed_networks == DEFAULT_METRICS_NETWORKS
    s = Settings.from_env({"HOSPICONNECT_METRICS_ALLOWED_NETWORKS": " 10.1.2.3/8 , 192.0.2.7,2001:db8::/32 "})
    assert s.metrics_allowed_networks == ("10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32")
    assert all(ipaddress.ip_network(n) for n in s.metrics_allowed_networks)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "réseau-interne", "10.0.0.0/8,,nope", "::1/129"])
def test_a_network_that_is_not_one_stops_the_start_with_a_french_message(value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"HOSPICONNECT_METRICS_ALLOWED_NETWORKS": value})
    assert "HOSPICONNECT_METRICS_ALLOWED_NETWORKS" in str(caught.value)
    assert "n'est pas un réseau valide" in str(caught.value)


def test_networks_given_as_overrides_are_checked_too():
    with pytest.raises(SettingsError):
        Settings.from_env({}, metrics_allowed_networks=("pas un réseau",))


@pytest.mark.parametrize(("value", "expected"), [("", 0), ("0", 0), ("1", 1), ("2", 2)])
def test_trusted_proxies_setting(value, expected):
    assert Settings.from_env({"HOSPICONNECT_TRUSTED_PROXIES": value}).trusted_proxies == expected


@pytest.mark.parametrize("value", ["-1", "6", "un"])
def test_trusted_proxies_out_of_bounds_is_refused(value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"HOSPICONNECT_TRUSTED_PROXIES": value})
    assert "HOSPICONNECT_TRUSTED_PROXIES" in str(caught.value)


# --- the multiprocess folder ---------------------------------------------------------------------------------

def test_the_metrics_folder_is_emptied_and_refused_once_single_process_counting_started(tmp_path, monkeypatch):
    folder = tmp_path / "metrics" / "host-5000"
    folder.mkdir(parents=True)
    (folder / "counter_4242.db").write_bytes(b"stale values of an earlier run")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # restored after the test, whatever prepare_metrics_dir sets
    metrics.sample(SIGNINS)  # this process counts in memory from now on
    with pytest.raises(RuntimeError, match="imported before"):
        prepare_metrics_dir(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert os.environ[metrics.MULTIPROC_ENV] == str(folder)
