"""The OpenID Provider metadata document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).

Pure: built from the settings only, so every instance serves the same document. The lists below are the
contract with relying parties; what is not listed is not done (no implicit flow, no ``plain`` PKCE, no
``none`` signature, no request objects).
"""

from __future__ import annotations

from typing import Any

from hospiconnect.settings import Settings

SIGNING_ALGS: tuple[str, ...] = ("ES256", "RS256")
SCOPES_SUPPORTED: tuple[str, ...] = ("openid", "profile", "email", "rpps", "organization", "offline_access",
                                     "enrollment")
CLAIMS_SUPPORTED: tuple[str, ...] = (
    "sub", "name", "given_name", "family_name", "preferred_username", "email", "rpps", "population",
    "units", "roles", "establishments", "acr", "amr", "auth_time", "sid",
)
ACR_VALUES: tuple[str, ...] = ("eidas1", "eidas2", "eidas3")
TOKEN_ENDPOINT_AUTH_METHODS: tuple[str, ...] = (
    "client_secret_basic", "client_secret_post", "private_key_jwt", "none",
)
# Introspection and revocation always authenticate the client (SECURITY.md item 9): no "none".
AUTHENTICATED_ENDPOINT_AUTH_METHODS: tuple[str, ...] = (
    "client_secret_basic", "client_secret_post", "private_key_jwt",
)


def endpoint(settings: Settings, path: str) -> str:
    """Return the absolute URL of ``path`` under the issuer (``path`` starts with ``/``)."""
    return settings.issuer.rstrip("/") + path


def openid_configuration(settings: Settings) -> dict[str, Any]:
    """Return the provider metadata. ``issuer`` is ``settings.issuer`` exactly, as it must be compared by
    string with the ``iss`` of ID tokens and authorization responses (Discovery §4.3, RFC 9207 §2.4)."""
    return {
        "issuer": settings.issuer,
        "authorization_endpoint": endpoint(settings, "/authorize"),
        "token_endpoint": endpoint(settings, "/token"),
        "userinfo_endpoint": endpoint(settings, "/userinfo"),
        "jwks_uri": endpoint(settings, "/jwks.json"),
        "introspection_endpoint": endpoint(settings, "/introspect"),
        "revocation_endpoint": endpoint(settings, "/revoke"),
        "end_session_endpoint": endpoint(settings, "/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGS),
        "token_endpoint_auth_methods_supported": list(TOKEN_ENDPOINT_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
        "introspection_endpoint_auth_methods_supported": list(AUTHENTICATED_ENDPOINT_AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
        "revocation_endpoint_auth_methods_supported": list(AUTHENTICATED_ENDPOINT_AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claim_types_supported": ["normal"],
        "acr_values_supported": list(ACR_VALUES),
        "display_values_supported": ["page"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "ui_locales_supported": ["fr", "en"],
    }
