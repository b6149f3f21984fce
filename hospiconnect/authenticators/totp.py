"""TOTP (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps — pure functions, the only user of ``pyotp``.

The verification window is ±1 step (RFC 6238 §5.2 recommends at most one step of network delay). A code
that matches only within ±10 steps is reported as ``clock_drift`` so the person is told to check the
phone's clock instead of "wrong code" (SECURITY.md item 13); it is never accepted. The time is always the
server's: nothing the client sends moves the window.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hmac
import re
import secrets
from typing import Literal

import pyotp
import segno

DIGITS = 6
PERIOD = 30
SEED_BYTES = 20  # 160 bits, the HMAC-SHA-1 block-size recommendation of RFC 4226 §4
ACCEPT_STEPS = 1
DRIFT_STEPS = 10

_CODE_RE = re.compile(r"[0-9]{6}")

Status = Literal["accepted", "invalid_format", "replayed", "clock_drift", "invalid"]


@dataclasses.dataclass(frozen=True)
class TotpCheck:
    """The outcome of :func:`check`: ``step`` is the matched time step (None when nothing matched)."""

    status: Status
    step: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def new_seed() -> str:
    """Return a new seed: 160 random bits from :mod:`secrets`, base32 without padding (32 characters)."""
    return base64.b32encode(secrets.token_bytes(SEED_BYTES)).decode("ascii").rstrip("=")


def _totp(seed: str) -> pyotp.TOTP:
    return pyotp.TOTP(seed, digits=DIGITS, interval=PERIOD)


def provisioning_uri(seed: str, *, account: str, issuer: str) -> str:
    """Return the ``otpauth://totp/…`` URI that authenticator applications import."""
    return _totp(seed).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str, *, title: str = "QR code à scanner avec votre application d'authentification") -> str:
    """Return an inline SVG QR code (a string to put in the page; no image file, no external request)."""
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, title=title)


def step_at(now: dt.datetime | float) -> int:
    """Return the time step containing ``now`` (an aware datetime or epoch seconds)."""
    ts = now.timestamp() if isinstance(now, dt.datetime) else float(now)
    return int(ts // PERIOD)


def code_for_step(seed: str, step: int) -> str:
    """Return the code of ``seed`` at time step ``step``."""
    return _totp(seed).generate_otp(step)


def code_at(seed: str, now: dt.datetime | float) -> str:
    """Return the code of ``seed`` at ``now`` (what the person's application shows)."""
    return code_for_step(seed, step_at(now))


def normalize_code(code: str) -> str:
    """Remove the spaces people type inside codes ("123 456")."""
    return "".join(code.split())


def check(seed: str, code: str, now: dt.datetime | float, last_step: int | None) -> TotpCheck:
    """Check ``code`` at ``now`` against ``seed``, given the last accepted time step.

    Returns ``accepted`` with the step to record (within ±1 step and after ``last_step``), else
    ``invalid_format`` (not exactly 6 digits), ``replayed`` (matches a step ≤ ``last_step``),
    ``clock_drift`` (matches only within ±10 steps) or ``invalid``. The caller must still consume the
    step atomically: this function does not know about concurrent attempts.
    """
    code = normalize_code(code)
    if not _CODE_RE.fullmatch(code):
        return TotpCheck("invalid_format")
    current = step_at(now)
    # The ±1 window first: the common case (a good code) costs three HMACs. Within each window every
    # candidate is computed and compared in constant time; that a good code answers faster than a bad one
    # tells an observer nothing the response does not already say.
    near = _matching_steps(seed, code, range(current - ACCEPT_STEPS, current + ACCEPT_STEPS + 1))
    fresh = [s for s in near if last_step is None or s > last_step]
    if fresh:
        return TotpCheck("accepted", max(fresh))
    far = _matching_steps(seed, code, [s for s in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1)
                                       if abs(s - current) > ACCEPT_STEPS])
    matched = near + far
    used = [s for s in matched if last_step is not None and s <= last_step]
    if used:
        return TotpCheck("replayed", max(used))
    if far:
        return TotpCheck("clock_drift", min(far, key=lambda s: abs(s - current)))
    return TotpCheck("invalid")


def _matching_steps(seed: str, code: str, steps: "range | list[int]") -> list[int]:
    found = []
    for step in steps:
        if step < 0:  # only near the epoch, i.e. in tests
            continue
        if hmac.compare_digest(code_for_step(seed, step), code):
            found.append(step)
    return found
