"""Helpers to drive the OpenID provider in tests without the login pages.

They register clients (hospiconnect.idp.clients.add_client), start ``/authorize`` with PKCE, complete the
interaction through the services the pages use (hospiconnect.idp.interactions), put the SSO cookie in the
Flask test client, follow ``/authorize/resume/<id>`` and return the code; then exchange it at ``/token``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hospiconnect.authenticators.models import Mie
from hospiconnect.idp import clients, interactions, login_session
from hospiconnect.idp import keys as signing
from hospiconnect.idp.models import Client

REDIRECT_URI = "https://rp.chu-exemple.fr/callback"
OTHER_REDIRECT_URI = "https://rp.chu-exemple.fr/other"
POST_LOGOUT_URI = "https://rp.chu-exemple.fr/bye"
ISSUER = "http://localhost"


@dataclasses.dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    row_id: int
    redirect_uri: str = REDIRECT_URI

    def basic(self) -> dict[str, str]:
        return basic_auth(self.client_id, self.secret or "")


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def register(session, rt, *, name: str = "Dossier patient", sensitivity: str = "standard",
             auth_method: str = "client_secret_basic",
             scopes: str = "openid profile email rpps organization offline_access",
             redirect_uris: tuple[str, ...] = (REDIRECT_URI, OTHER_REDIRECT_URI),
             post_logout_redirect_uris: tuple[str, ...] = (POST_LOGOUT_URI,),
             backchannel_logout_uri: str | None = None, jwks: dict | None = None,
             client_id: str | None = None) -> RegisteredClient:
    """Register a client (and make sure signing keys exist); commit; return its id and secret."""
    signing.ensure_keys(session, rt.keys)
    client, secret = clients.add_client(
        session, rt.keys, name=name, redirect_uris=list(redirect_uris), sensitivity=sensitivity,
        auth_method=auth_method, post_logout_redirect_uris=post_logout_redirect_uris,
        backchannel_logout_uri=backchannel_logout_uri, jwks=jwks, scopes=scopes, client_id=client_id, actor="test")
    session.commit()
    return RegisteredClient(client.client_id, secret, client.id)


def add_second_factor(session, identity, *, mie_type: str = "totp", proofed: bool = True) -> Mie:
    """Give ``identity`` an active second-factor MIE (proofed face to face unless told otherwise)."""
    mie = Mie(identity_id=identity.id, type=mie_type, status="active", label="test",
              proofing_method="face_to_face" if proofed else None)
    session.add(mie)
    session.commit()
    return mie


def pkce() -> tuple[str, str]:
    """Return ``(verifier, S256 challenge)`` (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    """Return the query parameters of a redirect ``Location`` (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


@dataclasses.dataclass
class AuthRequest:
    params: dict[str, str]
    verifier: str

    @property
    def state(self) -> str:
        return self.params["state"]

    @property
    def nonce(self) -> str:
        return self.params["nonce"]


def auth_request(rc: RegisteredClient, *, scope: str = "openid profile", **extra: Any) -> AuthRequest:
    """Return the parameters of an authorization request with PKCE, state and nonce."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": rc.client_id, "redirect_uri": rc.redirect_uri,
              "scope": scope, "state": secrets.token_urlsafe(12), "nonce": secrets.token_urlsafe(12),
              "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update({k: v for k, v in extra.items() if v is not None})
    return AuthRequest(params, verifier)


def interaction_id_of(response) -> str:
    """Return the interaction id of a redirect to ``/connexion/<id>``."""
    location = response.headers["Location"]
    path = urlsplit(location).path
    assert path.startswith("/connexion/"), location
    return path.rsplit("/", 1)[1]


def set_sso_cookie(test_client, rt, value: str) -> None:
    test_client.set_cookie(login_session.cookie_name(rt.settings), value)


def get_sso_cookie(test_client, rt) -> str | None:
    cookie = test_client.get_cookie(login_session.cookie_name(rt.settings))
    return cookie.value if cookie else None


def complete_interaction(test_client, rt, interaction_id: str, identity_id: int | None, *,
                         amr: list[str] | None = None, second_factor: list[str] | None = None) -> str:
    """Do what the login pages do: record the login (unless ``identity_id`` is None: step-up), optionally a
    second factor, complete, and set the SSO cookie; return the cookie value."""
    with rt.db.session() as s:
        interaction = interactions.get_interaction(s, interaction_id)
        if identity_id is not None:
            interactions.record_login(s, interaction, identity_id, amr or ["pwd"])
        if second_factor:
            interactions.record_second_factor(s, interaction, second_factor)
        existing = login_session.current(s, rt.keys, rt.settings, get_sso_cookie(test_client, rt))
        _, cookie = interactions.complete(s, interaction, client_ip="127.0.0.1", user_agent="pytest",
                                          existing_sso=existing, keys=rt.keys, settings=rt.settings)
    set_sso_cookie(test_client, rt, cookie)
    return cookie


def resume(test_client, interaction_id: str):
    return test_client.get(f"/authorize/resume/{interaction_id}")


def sign_in(test_client, rt, rc: RegisteredClient, identity, *, second_factor: bool = False,
            scope: str = "openid profile", method: str = "GET", **extra: Any) -> tuple[AuthRequest, dict[str, str]]:
    """Run a whole authorization: /authorize, the interaction (when one is needed), /authorize/resume.

    Returns the request and the parameters of the final redirect to the client (``code``, ``state``,
    ``iss``, or an error). A second interaction asking for the second factor is completed too when
    ``second_factor``.
    """
    request = auth_request(rc, scope=scope, **extra)
    if method == "POST":
        response = test_client.post("/authorize", data=request.params)
    else:
        response = test_client.get("/authorize", query_string=request.params)
    for _ in range(3):
        location = response.headers.get("Location", "")
        if not location.startswith("/connexion/"):
            break
        interaction_id = interaction_id_of(response)
        with rt.db.session() as s:
            known = interactions.person_id(interactions.get_interaction(s, interaction_id))
            logged_in = login_session.current(s, rt.keys, rt.settings, get_sso_cookie(test_client, rt))
            reasons = interactions.get_interaction(s, interaction_id).reasons
        step_up_only = (known == identity.id and logged_in is not None
                        and set(reasons) <= {"mfa_required", "essential_acr"})
        complete_interaction(test_client, rt, interaction_id, None if step_up_only else identity.id,
                             second_factor=["otp"] if second_factor else None)
        response = resume(test_client, interaction_id)
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    return request, query_of(response.headers["Location"])


def exchange(test_client, rc: RegisteredClient, code: str, verifier: str | None, *,
             redirect_uri: str | None = None, auth: str = "basic", extra: dict | None = None):
    """POST the code to /token (client authentication per ``auth``: basic, post or none)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri or rc.redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = {}
    if auth == "basic":
        headers = rc.basic()
    elif auth == "post":
        data.update(client_id=rc.client_id, client_secret=rc.secret or "")
    elif auth == "none":
        data["client_id"] = rc.client_id
    data.update(extra or {})
    return test_client.post("/token", data=data, headers=headers)


def refresh(test_client, rc: RegisteredClient, refresh_token: str, *, scope: str | None = None):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        data["scope"] = scope
    return test_client.post("/token", data=data, headers=rc.basic())


def tokens_for(test_client, rt, rc: RegisteredClient, identity, **kwargs: Any) -> dict[str, Any]:
    """Sign in and exchange the code; return the token response body (asserting success)."""
    request, result = sign_in(test_client, rt, rc, identity, **kwargs)
    assert "code" in result, result
    response = exchange(test_client, rc, result["code"], request.verifier)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    body["_request"] = request
    return body


def id_token_claims(rt, token: str) -> dict[str, Any]:
    """Verify an ID token's signature against the provider's keys and return its claims."""
    with rt.db.session() as s:
        return signing.verify(s, token)


def jwt_header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def client_row(rt, client_id: str) -> Client:
    with rt.db.session() as s:
        return clients.get_client(s, client_id)
