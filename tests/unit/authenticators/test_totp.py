"""TOTP (pure): RFC 6238 vectors, window, replay, drift, provisioning."""

from __future__ import annotations

import base64
import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hospiconnect.authenticators import totp

RFC_SEED = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 appendix B, SHA-1
NOW = dt.datetime(2026, 11, 27, 9, 0, 10, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("epoch, code", [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"),
                                         (1234567890, "005924"), (2000000000, "279037"),
                                         (20000000000, "353130")])
def test_rfc6238_vectors(epoch, code):
    # The RFC lists 8-digit codes; ours are their last 6 digits.
    assert totp.code_at(RFC_SEED, epoch) == code


def test_new_seed_has_160_random_bits():
    seeds = {totp.new_seed() for _ in range(50)}
    assert len(seeds) == 50
    for seed in seeds:
        assert re.fullmatch(r"[A-Z2-7]{32}", seed)
        assert len(base64.b32decode(seed)) == 20


def test_accepts_the_current_step_and_one_either_side():
    step = totp.step_at(NOW)
    for offset in (-1, 0, 1):
        code = totp.code_for_step(RFC_SEED, step + offset)
        result = totp.check(RFC_SEED, code, NOW, None)
        assert result.accepted and result.step == step + offset


def test_a_used_step_is_replayed():
    step = totp.step_at(NOW)
    code = totp.code_for_step(RFC_SEED, step)
    assert totp.check(RFC_SEED, code, NOW, step) == totp.TotpCheck("replayed", step)
    # an earlier step than the last used one is replayed too
    earlier = totp.code_for_step(RFC_SEED, step - 1)
    assert totp.check(RFC_SEED, earlier, NOW, step).status == "replayed"
    # the next step is still fine
    later = totp.code_for_step(RFC_SEED, step + 1)
    assert totp.check(RFC_SEED, later, NOW, step) == totp.TotpCheck("accepted", step + 1)


@pytest.mark.parametrize("offset", [-10, -5, -2, 2, 7, 10])
def test_drift_beyond_one_step_is_reported_not_accepted(offset):
    step = totp.step_at(NOW)
    result = totp.check(RFC_SEED, totp.code_for_step(RFC_SEED, step + offset), NOW, None)
    assert result.status == "clock_drift" and not result.accepted and result.step == step + offset


def test_beyond_ten_steps_is_simply_invalid():
    step = totp.step_at(NOW)
    code = totp.code_for_step(RFC_SEED, step + 11)
    assert all(totp.code_for_step(RFC_SEED, step + o) != code for o in range(-10, 11))
    assert totp.check(RFC_SEED, code, NOW, None).status == "invalid"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "１２３４５６", "12-345", "123.45"])
def test_format_is_exactly_six_ascii_digits(code):
    assert totp.check(RFC_SEED, code, NOW, None).status == "invalid_format"


def test_spaces_inside_the_code_are_ignored():
    code = totp.code_at(RFC_SEED, NOW)
    assert totp.check(RFC_SEED, f" {code[:3]} {code[3:]} ", NOW, None).accepted


@given(st.integers(min_value=0, max_value=2**40))
def test_a_code_is_accepted_at_its_own_time(epoch):
    result = totp.check(RFC_SEED, totp.code_at(RFC_SEED, epoch), epoch, None)
    assert result.accepted and result.step == totp.step_at(epoch)


def test_provisioning_uri_and_qr_code():
    uri = totp.provisioning_uri(RFC_SEED, account="jdupont", issuer="CHU de Nantes")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/CHU%20de%20Nantes:jdupont"
    query = parse_qs(parts.query)
    assert query["secret"] == [RFC_SEED] and query["issuer"] == ["CHU de Nantes"]
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "<title>" in svg
