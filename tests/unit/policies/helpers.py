"""Shared values of the policy tests: the shipped policy, authentication profiles, a small policy builder."""

from __future__ import annotations

import datetime as dt
import textwrap

from hospiconnect.policies import DEFAULT_POLICY_PATH, EvaluationContext, Policy, load_policy, parse_policy

UTC = dt.timezone.utc
SHIPPED: Policy = load_policy(DEFAULT_POLICY_PATH)

INTERNAL_IP = "10.20.30.40"
EXTERNAL_IP = "203.0.113.7"

# (acr, amr) of the usual authentications (hospiconnect.authenticators.amr, hospiconnect.idp.checks.acr_for).
PASSWORD = ("eidas1", frozenset({"pwd"}))
TOTP = ("eidas2", frozenset({"pwd", "otp", "mfa"}))
WEBAUTHN_UV = ("eidas3", frozenset({"hwk", "pin", "mfa"}))
PASSWORD_KEY = ("eidas2", frozenset({"pwd", "hwk", "user", "mfa"}))
UNPROOFED_TOTP = ("eidas1", frozenset({"pwd", "otp", "mfa"}))
AUTHS = {"password": PASSWORD, "totp": TOTP, "webauthn": WEBAUTHN_UV, "password+key": PASSWORD_KEY,
         "unproofed-totp": UNPROOFED_TOTP}


def at(day: str, hour: int = 10) -> dt.datetime:
    """Return ``day`` (AAAA-MM-JJ) at ``hour`` o'clock UTC."""
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def ctx(as_of: dt.datetime | dt.date, app_class: str = "health-data", auth: str = "totp",
        ip: str | None = INTERNAL_IP, population: str | None = None, age: dt.timedelta = dt.timedelta(hours=1),
        available: frozenset[str] | set[str] = frozenset({"password", "totp"}), **extra: object) -> EvaluationContext:
    """Return a context for a ``auth`` authentication done ``age`` ago."""
    acr, amr = AUTHS[auth]
    now = as_of if isinstance(as_of, dt.datetime) else dt.datetime.combine(as_of, dt.time(10), UTC)
    values: dict[str, object] = dict(as_of=as_of, app_class=app_class, acr=acr, amr=amr, auth_time=now - age,
                                     population=population, client_ip=ip, available_mie_types=available)
    values.update(extra)
    return EvaluationContext(**values)  # type: ignore[arg-type]


MINIMAL = """\
version: 1
networks:
  internal: [10.0.0.0/8]
mie_types:
  password: {status: not_homologated, factors: 1}
  totp: {status: homologated, factors: 2, decision_date: 2026-03-01, decision_reference: "DEC-2026-07"}
  webauthn: {status: homologated, factors: 2, max_acr: eidas3, decision_date: 2025-06-01,
             decision_reference: "DEC-2025-01", decision_valid_until: 2028-06-01}
  cps: {status: ans, factors: 2, max_acr: eidas3}
classes:
  health-data:
    min_acr: eidas2
    allowed_mie_types: [password, totp, webauthn, cps]
    max_auth_age: 8h
  high:
    min_acr: eidas3
    allowed_mie_types: [password, totp, webauthn, cps]
  keys-only:
    min_acr: eidas2
    allowed_mie_types: [webauthn]
populations:
  trainee: {label: Étudiants}
  interim: {}
"""


def policy(extra: str = "", base: str = MINIMAL) -> Policy:
    """Return the policy ``base`` followed by ``extra`` (dedented YAML)."""
    return parse_policy(base + textwrap.dedent(extra), "test.yaml")
