"""Authentication method references (RFC 8176) from the factors used in one authentication (pure).

* password → ``pwd``; TOTP → ``otp``;
* WebAuthn → ``hwk`` plus ``pin`` when the authenticator verified the user (UV flag), else ``user``
  (presence only);
* ``mfa`` when two different kinds of factor were used, or WebAuthn with user verification alone
  (SECURITY.md item 12: the authenticator is then something you have *and* something you know or are).

A recovery code is a way back into an account, not an MIE: it adds no value and never makes ``mfa``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Literal

FactorKind = Literal["password", "totp", "webauthn", "recovery"]
FACTOR_KINDS: tuple[str, ...] = ("password", "totp", "webauthn", "recovery")

_VALUE = {"password": "pwd", "totp": "otp", "webauthn": "hwk"}


@dataclasses.dataclass(frozen=True)
class Factor:
    """One factor presented during an authentication."""

    kind: FactorKind
    user_verified: bool = False  # WebAuthn only: the UV flag of the assertion

    def __post_init__(self) -> None:
        if self.kind not in FACTOR_KINDS:
            raise ValueError(f"unknown factor kind {self.kind!r}")


def amr_for(factors: Iterable[Factor | str]) -> list[str]:
    """Return the sorted RFC 8176 ``amr`` values for ``factors`` (a ``str`` is a factor kind without UV)."""
    values: set[str] = set()
    kinds: set[str] = set()
    uv_webauthn = False
    for item in factors:
        factor = Factor(item) if isinstance(item, str) else item  # type: ignore[arg-type]
        if factor.kind == "recovery":
            continue
        kinds.add(factor.kind)
        values.add(_VALUE[factor.kind])
        if factor.kind == "webauthn":
            if factor.user_verified:
                values.add("pin")
                uv_webauthn = True
            else:
                values.add("user")
    if len(kinds) >= 2 or uv_webauthn:
        values.add("mfa")
    return sorted(values)


def counts_as_two_factors(amr: Iterable[str]) -> bool:
    """Return True when ``amr`` (as produced by :func:`amr_for`) attests two factors."""
    return "mfa" in set(amr)
