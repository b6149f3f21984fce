"""Interop: HospiConnect against an independent relying party, openid-client (panva) for Node.js.

The library checks what a careful relying party checks — the discovery document's issuer, ``iss`` and
``state`` in the authorization response (RFC 9207), the PKCE exchange, the ID token's signature against
the JWKS, ``iss``/``aud``/``exp``/``iat``/``nonce``, the UserInfo ``sub`` — so a provider mistake shows
up here as the library's error, not as a test's own opinion. The provider runs for real (gunicorn, see
conftest.py), the browser is Chromium.

Covered per client authentication method (``client_secret_basic``, ``client_secret_post``,
``private_key_jwt``, public ``none``): discovery, authorization code flow with PKCE S256, state and nonce,
ID token verification (ES256; RS256 on request), UserInfo, refresh token rotation and the reuse of a
rotated refresh token (family revoked), RP-initiated logout and ``prompt=none`` afterwards. Also: a code
redeemed twice (its tokens die) and ``prompt=none`` / ``max_age`` through the library.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING

import pytest

from hospiconnect.idp.models import SsoSession
from tests.oidc_helpers import query_of

if TYPE_CHECKING:  # the fixtures' types, defined in conftest.py
    from tests.interop.conftest import BrowserSession, Provider, RelyingParty, SignedIn

SCOPE = "openid profile email offline_access"


def sign_in(rp: RelyingParty, browser: BrowserSession, *, scope: str = SCOPE,
            **extra: str) -> tuple[dict, str]:
    """Build the authorization URL with the library, follow it in the browser, return
    ``(request: verifier/state/nonce, callback URL)``."""
    request = rp.ok("authorization-url", scope=scope, extra=extra)
    callback = browser.follow(request["url"], rp.redirect_uri)
    return request, callback


def redeem(rp: RelyingParty, request: dict, callback: str, **checks: object) -> dict:
    """Hand the callback URL to the library: authorization code grant with the expected state, nonce and
    PKCE verifier, ID token signature verified against the JWKS."""
    return rp.ok("callback", callback_url=callback, code_verifier=request["code_verifier"],
                 state=request["state"], nonce=request["nonce"], **checks)


def at_hash(access_token: str) -> str:
    """OpenID Connect Core §3.1.3.6: left half of the SHA-256 of the access token, base64url. The library
    does not check it for the code flow, so the test does."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def assert_token_dead(rp: RelyingParty, access_token: str, sub: str) -> None:
    """The access token is refused at UserInfo with ``invalid_token`` (RFC 6750 §3.1)."""
    error = rp.refused("userinfo", access_token=access_token, expected_sub=sub)
    assert error.get("status") == 401 and error.get("error") == "invalid_token", error


def test_discovery_is_accepted_by_the_library(make_rp, provider: Provider) -> None:
    rp = make_rp()
    server = rp.ok("discover")["server"]
    assert server["issuer"] == provider.issuer
    assert server["authorization_endpoint"] == f"{provider.issuer}/authorize"
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["authorization_response_iss_parameter_supported"] is True
    assert "none" not in server["id_token_signing_alg_values_supported"]


@pytest.mark.parametrize(("auth", "sensitivity", "alg"), [
    pytest.param("client_secret_basic", "health-data", None, id="client_secret_basic"),
    pytest.param("client_secret_post", "standard", "RS256", id="client_secret_post-RS256"),
    pytest.param("private_key_jwt", "health-data", None, id="private_key_jwt"),
    pytest.param("none", "standard", None, id="public-none"),
])
def test_code_flow_refresh_rotation_and_logout(make_rp, browser: BrowserSession, signed_in: SignedIn,
                                               provider: Provider, rt, auth: str, sensitivity: str,
                                               alg: str | None) -> None:
    rp = make_rp(auth, sensitivity=sensitivity, id_token_alg=alg)

    # Authorization code flow: the response carries iss (RFC 9207) and our state; the library checks both.
    request, callback = sign_in(rp, browser)
    response = query_of(callback)
    assert response["iss"] == provider.issuer and response["state"] == request["state"]
    assert "code" in response
    tokens = redeem(rp, request, callback)

    claims = tokens["claims"]
    assert tokens["id_token_header"]["alg"] == (alg or "ES256")
    assert claims["iss"] == provider.issuer and claims["aud"] == rp.client_id
    assert claims["sub"] == signed_in.sub and claims["nonce"] == request["nonce"]
    assert claims["acr"] == "eidas2" and {"pwd", "otp", "mfa"} <= set(claims["amr"])
    assert claims["sid"] and isinstance(claims["auth_time"], int)
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    assert set(tokens["scope"].split()) == set(SCOPE.split())

    userinfo = rp.ok("userinfo", access_token=tokens["access_token"], expected_sub=signed_in.sub)["userinfo"]
    assert userinfo["sub"] == signed_in.sub and userinfo["given_name"]

    # Refresh: a new refresh token each time (rotation); the ID token keeps the authentication facts.
    refreshed = rp.ok("refresh", refresh_token=tokens["refresh_token"])
    assert refreshed["refresh_token"] and refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["claims"]["sub"] == signed_in.sub and refreshed["claims"]["sid"] == claims["sid"]
    assert refreshed["claims"]["auth_time"] == claims["auth_time"] and "nonce" not in refreshed["claims"]
    assert refreshed["claims"]["at_hash"] == at_hash(refreshed["access_token"])
    rp.ok("userinfo", access_token=refreshed["access_token"], expected_sub=signed_in.sub)

    # The rotated refresh token presented again: an OAuth error, and the whole family is revoked.
    reuse = rp.refused("refresh", refresh_token=tokens["refresh_token"])
    assert reuse.get("error") == "invalid_grant" and reuse.get("status") == 400, reuse
    family = rp.refused("refresh", refresh_token=refreshed["refresh_token"])
    assert family.get("error") == "invalid_grant", family
    assert_token_dead(rp, refreshed["access_token"], signed_in.sub)

    # RP-initiated logout with the library's end-session URL; the browser comes back with our state.
    end = rp.ok("end-session-url", id_token_hint=tokens["id_token"],
                post_logout_redirect_uri=rp.post_logout_redirect_uri, state="au-revoir")
    back = browser.follow(end["url"], rp.post_logout_redirect_uri)
    assert back.startswith(rp.post_logout_redirect_uri) and query_of(back).get("state") == "au-revoir"
    assert browser.sso_cookie() is None
    with rt.db.session() as s:
        sso = s.query(SsoSession).filter_by(identity_id=signed_in.identity_id).one()
        assert sso.ended_at is not None and sso.end_reason == "logout"

    # The session is over: prompt=none answers login_required, which the library reports as such.
    request, callback = sign_in(rp, browser, scope="openid", prompt="none")
    assert query_of(callback)["iss"] == provider.issuer
    error = rp.refused("callback", callback_url=callback, code_verifier=request["code_verifier"],
                       state=request["state"], nonce=request["nonce"])
    assert error.get("error") == "login_required", error


def test_code_redeemed_twice_revokes_the_first_tokens(make_rp, browser: BrowserSession,
                                                      signed_in: SignedIn) -> None:
    rp = make_rp("client_secret_basic")
    request, callback = sign_in(rp, browser)
    tokens = redeem(rp, request, callback)
    rp.ok("userinfo", access_token=tokens["access_token"], expected_sub=signed_in.sub)

    again = rp.refused("callback", callback_url=callback, code_verifier=request["code_verifier"],
                       state=request["state"], nonce=request["nonce"])
    assert again.get("error") == "invalid_grant" and again.get("status") == 400, again
    assert_token_dead(rp, tokens["access_token"], signed_in.sub)
    introspection = rp.ok("introspect", token=tokens["refresh_token"])["introspection"]
    assert introspection["active"] is False


def test_prompt_none_and_max_age_with_a_live_session(make_rp, browser: BrowserSession,
                                                     signed_in: SignedIn) -> None:
    rp = make_rp("private_key_jwt", sensitivity="health-data")
    # prompt=none with a live two-factor session: a code, no page.
    request, callback = sign_in(rp, browser, scope="openid", prompt="none")
    tokens = redeem(rp, request, callback)
    assert tokens["claims"]["sub"] == signed_in.sub
    assert not tokens.get("refresh_token")  # no offline_access asked: no refresh token

    # max_age: the library checks that auth_time is present and recent enough.
    request, callback = sign_in(rp, browser, scope="openid", max_age="600")
    tokens = redeem(rp, request, callback, max_age=600)
    assert tokens["claims"]["auth_time"] <= int(time.time())

    # max_age exceeded with prompt=none: the person would have to sign in again.
    request, callback = sign_in(rp, browser, scope="openid", max_age="0", prompt="none")
    error = rp.refused("callback", callback_url=callback, code_verifier=request["code_verifier"],
                       state=request["state"], nonce=request["nonce"], max_age=0)
    assert error.get("error") == "login_required", error
