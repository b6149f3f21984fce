"""The pure parts of the delegation by Pro Santé Connect: the amr mapping, the national identifier, the verdict."""

from __future__ import annotations

import json
import os

import pytest

from hospiconnect.idp import clients, psc_delegation
from hospiconnect.idp.psc_delegation import (
    AMR_UNMAPPED,
    DEFAULT_AMR_BY_MIE_TYPE,
    EMERGENCY,
    MIE_NOT_COMPLIANT,
    NO_COMPLIANT_MIE,
    NOT_PAIRED,
    DelegationConfigError,
    decide,
    delegated_amr,
    load_amr_mapping,
    parse_amr_mapping,
    subject_name_id,
)

PWD_TOTP = ["mfa", "otp", "pwd"]


@pytest.mark.parametrize(("session_amr", "expected"), [
    (["pwd"], ["pwd"]),
    (PWD_TOTP, ["mfa", "otp", "pwd"]),
    (["hwk", "mfa", "pin"], ["hwk", "mfa"]),  # security key with user verification, no password
    (["hwk", "mfa", "pwd", "user"], ["hwk", "mfa", "pwd"]),
    ([], []),
    (["emergency"], []),
])
def test_default_mapping(session_amr, expected):
    assert delegated_amr(session_amr, DEFAULT_AMR_BY_MIE_TYPE) == expected


def test_another_mapping_replaces_the_values():
    mapping = {"password": ["pwd"], "totp": ["ans-otp"]}
    assert delegated_amr(PWD_TOTP, mapping) == ["ans-otp", "pwd"]
    assert delegated_amr(["hwk", "mfa", "pin"], mapping) == []  # webauthn unmapped: nothing


def test_parse_accepts_a_table_wrapped_or_not():
    table = {"totp": ["otp", "mfa", "otp"], "cps": ["hwk", "pin", "mfa"]}
    assert parse_amr_mapping(table) == {"totp": ("otp", "mfa"), "cps": ("hwk", "pin", "mfa")}
    assert parse_amr_mapping({"amr": table}) == parse_amr_mapping(table)


@pytest.mark.parametrize("data", [
    None, [], {}, {"sms": ["sms"]}, {"totp": "otp"}, {"totp": []}, {"totp": [""]}, {"totp": ["o t p"]},
    {"totp": [1]}, {"totp": ["x" * 33]},
])
def test_parse_refuses_bad_tables(data):
    with pytest.raises(DelegationConfigError):
        parse_amr_mapping(data)


def test_load_default_file_and_reload(tmp_path):
    assert load_amr_mapping(None) is DEFAULT_AMR_BY_MIE_TYPE
    path = tmp_path / "amr.json"
    path.write_text(json.dumps({"totp": ["otp"]}), encoding="utf-8")
    assert dict(load_amr_mapping(path)) == {"totp": ("otp",)}
    path.write_text("totp: [otp, mfa]\nwebauthn: [hwk]\n", encoding="utf-8")
    os.utime(path, ns=(1, 10**18))  # a changed file is read again
    assert dict(load_amr_mapping(path)) == {"totp": ("otp", "mfa"), "webauthn": ("hwk",)}
    path.write_text("totp: [otp\n", encoding="utf-8")
    os.utime(path, ns=(1, 2 * 10**18))
    with pytest.raises(DelegationConfigError):
        load_amr_mapping(path)
    with pytest.raises(DelegationConfigError):
        load_amr_mapping(tmp_path / "absent.yaml")


def test_subject_name_id():
    assert subject_name_id("10003456789") == "810003456789"
    for bad in ("", "1000345678", "1000345678X", "100034567890"):
        with pytest.raises(ValueError):
            subject_name_id(bad)


def _decide(**overrides):
    values = dict(rpps="10003456789", session_amr=PWD_TOTP, holds_compliant_mie=True, used_mie_compliant=True,
                  mapping=DEFAULT_AMR_BY_MIE_TYPE)
    values.update(overrides)
    return decide(**values)


def test_decide():
    assert _decide().allowed
    assert _decide(rpps=None).reason == NOT_PAIRED
    assert _decide(session_amr=["pwd"]).step_up
    assert _decide(session_amr=["pwd"], holds_compliant_mie=False).reason == NO_COMPLIANT_MIE
    assert _decide(used_mie_compliant=False).reason == MIE_NOT_COMPLIANT
    assert _decide(mapping={"password": ["pwd"]}).reason == AMR_UNMAPPED
    assert _decide(session_amr=["emergency", "mfa", "otp"]).reason == EMERGENCY
    # "mfa" without a second-factor type this product knows is no two-factor session.
    assert _decide(session_amr=["mfa", "pwd"]).step_up


def test_refusals_have_ascii_descriptions_and_french_messages():
    for reason in (NOT_PAIRED, NO_COMPLIANT_MIE, MIE_NOT_COMPLIANT, AMR_UNMAPPED, EMERGENCY,
                   psc_delegation.CONFIGURATION_INVALID):
        verdict = psc_delegation.Verdict(reason=reason)
        assert verdict.description.isascii() and '"' not in verdict.description
        assert verdict.message


def test_clients_know_the_psc_profile():
    assert clients.PROFILES == psc_delegation.PROFILES == ("psc",)
