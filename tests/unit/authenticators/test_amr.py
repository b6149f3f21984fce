"""RFC 8176 amr values and the two-factor rule (SECURITY.md item 12)."""

from __future__ import annotations

import pytest

from hospiconnect.authenticators.amr import Factor, amr_for, counts_as_two_factors


@pytest.mark.parametrize("factors, expected, two", [
    (["password"], ["pwd"], False),
    (["totp"], ["otp"], False),
    (["password", "totp"], ["mfa", "otp", "pwd"], True),
    ([Factor("webauthn", user_verified=True)], ["hwk", "mfa", "pin"], True),
    ([Factor("webauthn")], ["hwk", "user"], False),
    (["password", Factor("webauthn")], ["hwk", "mfa", "pwd", "user"], True),
    (["password", "recovery"], ["pwd"], False),
    (["recovery"], [], False),
    (["totp", "totp"], ["otp"], False),
    ([], [], False),
])
def test_amr(factors, expected, two):
    amr = amr_for(factors)
    assert amr == expected
    assert counts_as_two_factors(amr) is two


def test_unknown_factor_is_refused():
    with pytest.raises(ValueError):
        amr_for(["sms"])
