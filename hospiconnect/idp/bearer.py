"""Bearer tokens in the ``Authorization`` header (RFC 6750 §2.1) and the challenge sent back (§3).

Shared by the provider's own resource endpoint (``/userinfo``) and the JSON API that helpdesk tools call
with an access token this provider issued (:mod:`hospiconnect.web.enrollment_api`).
"""

from __future__ import annotations

import re

REALM = "hospiconnect"
# Values that may appear inside a quoted-string of the challenge: no quote, no backslash, no control.
_SAFE_PARAM_RE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


class MalformedAuthorization(ValueError):
    """The ``Authorization`` header is present but is not ``Bearer <token>`` (RFC 6750 §3.1
    ``invalid_request``)."""


def credentials(header: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, None when there is no header.

    The scheme is case-insensitive (RFC 9110 §11.1). Raises :class:`MalformedAuthorization` for another
    scheme or an empty token.
    """
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise MalformedAuthorization("The Authorization header must use the Bearer scheme.")
    return value.strip()


def challenge(error: str | None = None, **params: str) -> str:
    """Return a ``WWW-Authenticate`` value: ``Bearer realm="hospiconnect"``, then ``error`` and ``params``
    (``error_description``, ``scope``, ``max_age``…) as quoted strings. RFC 6750 §3: no ``error`` when the
    request carried no credentials. Characters a quoted string cannot hold are dropped."""
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    for name, value in params.items():
        safe = "".join(ch for ch in value if _SAFE_PARAM_RE.fullmatch(ch))
        parts.append(f'{name}="{safe}"')
    return "Bearer " + ", ".join(parts)
