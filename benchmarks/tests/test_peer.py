"""The peer does the work HospiConnect does, so that comparing them is fair: two factors, PKCE required,
single-use TOTP steps, ES256 ID tokens, rotated refresh tokens whose reuse revokes the family, state in
PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import secrets
import urllib.parse

import psycopg
import pyotp
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from benchmarks.loadgen import Account, OperationFailed, refresh, sign_in
from benchmarks.tests.conftest import SCHEMA, Peer


def _authorize(peer: Peer, http: requests.Session, *, pkce: bool = True) -> requests.Response:
    client = peer.adapter.client
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
              "scope": "openid profile offline_access", "state": "s", "nonce": "n"}
    if pkce:
        verifier = secrets.token_urlsafe(48)
        params |= {"code_challenge_method": "S256", "code_challenge": base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()}
    return http.get(f"{peer.adapter.base}/auth", params=params, allow_redirects=False, timeout=10)


def _password(peer: Peer, account: Account, password: str) -> tuple[requests.Session, str, requests.Response]:
    http = requests.Session()
    page_url = urllib.parse.urljoin(peer.adapter.base, _authorize(peer, http).headers["Location"])
    assert http.get(page_url, timeout=10).status_code == 200
    r = http.post(f"{page_url}/password", data={"username": account.username, "password": password},
                  allow_redirects=False, timeout=10)
    return http, page_url, r


def _code(http: requests.Session, page_url: str, code: str) -> requests.Response:
    return http.post(f"{page_url}/totp", data={"code": code}, allow_redirects=False, timeout=10)


def test_a_complete_sign_in_gives_an_es256_id_token_and_a_refresh_token(peer: Peer) -> None:
    tokens = sign_in(peer.adapter, peer.accounts[0])
    discovery = requests.get(f"{peer.adapter.base}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=10).json())
    assert [(k.key_type, k.get("crv")) for k in keys] == [("EC", "P-256")]
    token = jwt.decode(tokens["id_token"], keys, algorithms=["ES256"])
    assert token.header["alg"] == "ES256"
    assert token.claims["aud"] == peer.adapter.client.client_id
    assert token.claims["iss"] == peer.adapter.base
    assert token.claims["amr"] == ["pwd", "otp"] and token.claims["acr"] == "mfa"
    assert token.claims["preferred_username"] == peer.accounts[0].username
    assert tokens["refresh_token"]


def test_an_authorization_request_without_pkce_is_refused(peer: Peer) -> None:
    r = _authorize(peer, requests.Session(), pkce=False)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)
    assert r.headers["Location"].startswith(peer.adapter.client.redirect_uri)
    assert query["error"] == ["invalid_request"] and "code" not in query


def test_a_wrong_password_stops_at_the_password_page(peer: Peer) -> None:
    account = peer.accounts[1]
    http, page_url, r = _password(peer, account, "not the password")
    assert r.status_code == 400 and "Location" not in r.headers
    assert "Identifiant ou mot de passe incorrect" in r.text
    # Without the first factor, the TOTP step is not offered.
    r = _code(http, page_url, pyotp.TOTP(account.seed).now())
    assert r.status_code == 303 and r.headers["Location"] == urllib.parse.urlsplit(page_url).path


def test_a_totp_code_is_accepted_once(peer: Peer) -> None:
    account = peer.accounts[2]
    code = pyotp.TOTP(account.seed).now()
    http, page_url, r = _password(peer, account, account.password)
    assert r.status_code == 303
    assert _code(http, page_url, code).status_code == 303
    http, page_url, r = _password(peer, account, account.password)
    assert r.status_code == 303
    replay = _code(http, page_url, code)
    assert replay.status_code == 400 and "déjà utilisé" in replay.text


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(peer: Peer) -> None:
    first = sign_in(peer.adapter, peer.accounts[3])["refresh_token"]
    http = requests.Session()
    second = refresh(peer.adapter, http, first)
    assert second != first
    with pytest.raises(OperationFailed, match="invalid_grant"):
        refresh(peer.adapter, http, first)
    with pytest.raises(OperationFailed, match="invalid_grant"):
        refresh(peer.adapter, http, second)


def test_the_state_is_stored_in_postgresql(peer: Peer) -> None:
    sign_in(peer.adapter, peer.accounts[4])
    with psycopg.connect(peer.database_url) as conn:
        kinds = {kind for (kind,) in conn.execute(f"SELECT DISTINCT kind FROM {SCHEMA}.oidc_models")}
        last_step = conn.execute(f"SELECT totp_last_step FROM {SCHEMA}.accounts WHERE username = %s",
                                 [peer.accounts[4].username]).fetchone()
    assert {"Session", "Interaction", "AuthorizationCode", "Grant", "AccessToken", "RefreshToken"} <= kinds
    assert last_step is not None and last_step[0] is not None
