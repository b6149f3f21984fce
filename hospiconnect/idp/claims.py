"""Claims about the person released to relying parties, and the ``claims`` request parameter.

Claims are released by scope (OpenID Connect Core §5.4), the same in the ID token and at the userinfo
endpoint:

* ``openid``: ``sub`` — the identity's public id, a UUID that is stable and never reused (Core §8.1:
  public subject identifiers; the database key and the user name are never exposed as ``sub``);
* ``profile``: ``name``, ``given_name``, ``family_name``, ``preferred_username`` (the user name);
* ``email``: ``email``, ``email_verified`` (always false: the directory imports addresses from HR files
  without proving that the person controls them);
* ``rpps``: ``rpps`` (None for staff without an RPPS number), ``population`` (``rpps`` | ``local``);
* ``organization``: ``establishments`` (FINESS numbers), ``units`` and ``roles``.

The ``claims`` parameter (Core §5.5) is accepted; only ``id_token.acr`` changes what the provider does
(an essential ``acr`` is enforced, see hospiconnect.idp.checks), other members are ignored as Core allows.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from hospiconnect.directory.models import Identity

#: Scopes this provider knows (the client's registration restricts them further). ``enrollment`` releases no
#: claim: it lets a helpdesk tool call the enrollment JSON API on behalf of the officer signed in to it.
SCOPES: tuple[str, ...] = ("openid", "profile", "email", "rpps", "organization", "offline_access", "enrollment")

#: Claims released by each scope.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "given_name", "family_name", "preferred_username"),
    "email": ("email", "email_verified"),
    "rpps": ("rpps", "population"),
    "organization": ("establishments", "units", "roles"),
}

MAX_CLAIMS_PARAMETER = 4000


def family_name(identity: Identity) -> str:
    """Return the name the person uses (``usage_name``), else the birth family name."""
    return identity.usage_name or identity.birth_family_name


def person_claims(identity: Identity, scopes: Iterable[str]) -> dict[str, Any]:
    """Return ``sub`` and the claims that ``scopes`` release about ``identity`` (Core §5.1, §5.4)."""
    granted = set(scopes)
    claims: dict[str, Any] = {"sub": identity.public_id}
    if "profile" in granted:
        family = family_name(identity)
        claims.update(
            name=f"{identity.given_names} {family}".strip(),
            given_name=identity.given_names,
            family_name=family,
            preferred_username=identity.user_name,
        )
    if "email" in granted:
        claims.update(email=identity.email, email_verified=False)
    if "rpps" in granted:
        claims.update(rpps=identity.rpps, population=identity.population)
    if "organization" in granted:
        claims.update(establishments=identity.finess_numbers, units=identity.unit_codes,
                      roles=identity.role_names)
    return claims


class InvalidClaimsParameter(ValueError):
    """The ``claims`` parameter is not a JSON object of the shape Core §5.5 describes."""


def parse_claims_parameter(raw: str | None) -> dict[str, Any]:
    """Return the ``claims`` request parameter as a dict (``{}`` when absent).

    Raises :class:`InvalidClaimsParameter` when it is not JSON, not an object, too long, or when
    ``id_token``/``userinfo`` or their members are not objects (or null).
    """
    if raw is None or raw == "":
        return {}
    if len(raw) > MAX_CLAIMS_PARAMETER:
        raise InvalidClaimsParameter("claims parameter too long")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidClaimsParameter("claims parameter is not JSON") from exc
    if not isinstance(value, dict):
        raise InvalidClaimsParameter("claims parameter must be a JSON object")
    for target in ("id_token", "userinfo"):
        members = value.get(target)
        if members is None:
            continue
        if not isinstance(members, dict):
            raise InvalidClaimsParameter(f"claims.{target} must be an object")
        for name, request in members.items():
            if request is not None and not isinstance(request, dict):
                raise InvalidClaimsParameter(f"claims.{target}.{name} must be an object or null")
    return value


def essential_acr_values(claims: dict[str, Any]) -> tuple[str, ...]:
    """Return the acceptable values of ``claims.id_token.acr`` when it is essential (Core §5.5.1.1), else
    ``()``. An essential ``acr`` without ``value``/``values`` asks for nothing in particular: ``()``."""
    request = (claims.get("id_token") or {}).get("acr")
    if not isinstance(request, dict) or request.get("essential") is not True:
        return ()
    if isinstance(request.get("values"), list):
        return tuple(v for v in request["values"] if isinstance(v, str))
    if isinstance(request.get("value"), str):
        return (request["value"],)
    return ()
