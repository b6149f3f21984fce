"""The login pages (/connexion/<id>) driven through the Flask test client, from /authorize to the code.

SECURITY.md items 10 (CSP, no CORS, 303), 12 (WebAuthn with or without user verification), 13 (TOTP:
single use, clock drift), 15 (one generic message, throttling), 18 (recovery codes), 19 (sessions).
CSRF protection stays on: every form is posted with the token of the page, as a browser would.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import webauthn
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.idp import interactions
from hospiconnect.idp.models import Interaction, SsoSession
from hospiconnect.ratelimit import DatabaseBackend, Throttle, ThrottlePolicy
from tests.factories import create_identity
from tests.oidc_helpers import (
    REDIRECT_URI,
    AuthRequest,
    auth_request,
    exchange,
    get_sso_cookie,
    id_token_claims,
    interaction_id_of,
    query_of,
)
from tests.softauthn import SoftAuthenticator

PASSWORD = "correct cheval pile agrafe"
GENERIC = "Identifiant ou mot de passe incorrect."
# A moment in the middle of a 30-second TOTP step: codes computed "now" cannot straddle a step boundary.
T0 = dt.datetime(2026, 11, 27, 8, 30, 10, tzinfo=dt.timezone.utc)
RP_ORIGIN = "https://rp.chu-exemple.fr"


# --- fixtures and helpers ---------------------------------------------------------------------------------

@pytest.fixture()
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _with_password(session, rt, identity):
    mie_services.set_password(session, identity, PASSWORD, actor="test",
                              establishment_name=rt.settings.establishment_name)
    session.commit()
    return identity


@pytest.fixture()
def clinician(session, rt):
    """An active identity with a password and nothing else."""
    return _with_password(session, rt, create_identity(session))


def enroll_totp(session, rt, identity) -> str:
    """Bind an authenticator application as the person would (begin, then confirm with a code); return the
    seed. The confirmation uses a code of 90 s ago, so that the codes of "now" are still unused."""
    mie, uri, _svg = mie_services.begin_totp(session, identity, label="Téléphone", actor="test", keys=rt.keys,
                                             issuer="HospiConnect")
    seed = pyotp.parse_uri(uri).secret
    earlier = utcnow() - dt.timedelta(seconds=90)
    mie_services.confirm_totp(session, identity, mie.public_id, pyotp.TOTP(seed).at(earlier), actor="test",
                              keys=rt.keys, now=earlier)
    session.commit()
    assert mie_services.active_mie_for(session, identity, "totp")
    return seed


def enroll_key(session, rt, identity, *, user_verification: bool) -> SoftAuthenticator:
    """Register a software security key for ``identity``; return it."""
    key = SoftAuthenticator(user_verification=user_verification)
    challenge_id, options = webauthn.begin_registration(session, identity, rt.settings,
                                                        require_uv=user_verification)
    session.commit()
    webauthn.complete_registration(session, identity, rt.settings, challenge_id, key.create(options),
                                   label="Clé USB", actor="test")
    session.commit()
    return key


def code_now(seed: str, shift: int = 0) -> str:
    return pyotp.TOTP(seed).at(utcnow() + dt.timedelta(seconds=shift))


def start(client, rc, **extra: Any) -> tuple[AuthRequest, str]:
    """GET /authorize and return the request and the interaction id it opened."""
    request = auth_request(rc, **extra)
    response = client.get("/authorize", query_string=request.params)
    assert response.status_code == 302, response.get_data(as_text=True)
    return request, interaction_id_of(response)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'data-csrf-token="([^"]+)"', html)
    assert found, html
    return found.group(1)


def page(client, interaction_id: str, suffix: str = "", **query: str):
    return client.get(f"/connexion/{interaction_id}{suffix}", query_string=query or None)


def post(client, interaction_id: str, suffix: str, data: dict[str, str], *, token: str | None = None):
    """POST a form of the interaction with the CSRF token of its page."""
    if token is None:
        query = {"changer": "1"} if suffix == "/mot-de-passe" else {}
        token = csrf_of(page(client, interaction_id, **query).get_data(as_text=True))
    return client.post(f"/connexion/{interaction_id}{suffix}", data={**data, "csrf_token": token})


def login(client, interaction_id: str, username: str, password: str = PASSWORD):
    return post(client, interaction_id, "/mot-de-passe", {"username": username, "password": password})


def post_json(client, interaction_id: str, suffix: str, body: Any, *, token: str | None = None):
    if token is None:
        token = csrf_of(page(client, interaction_id).get_data(as_text=True))
    return client.post(f"/connexion/{interaction_id}{suffix}", json=body, headers={"X-CSRFToken": token})


def resume_to_client(client, response) -> dict[str, str]:
    """Follow a 303 to /authorize/resume and return the parameters of the redirect to the client."""
    assert response.status_code == 303, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith("/authorize/resume/"), location
    final = client.get(location)
    assert final.status_code == 302, final.get_data(as_text=True)
    assert final.headers["Location"].startswith(REDIRECT_URI)
    return query_of(final.headers["Location"])


def claims_for(client, rt, rc, request: AuthRequest, result: dict[str, str]) -> dict[str, Any]:
    assert "code" in result, result
    response = exchange(client, rc, result["code"], request.verifier)
    assert response.status_code == 200, response.get_json()
    return id_token_claims(rt, response.get_json()["id_token"])


def sign_in_with_password(client, rt, rc, identity) -> dict[str, Any]:
    request, interaction_id = start(client, rc)
    return claims_for(client, rt, rc, request, resume_to_client(client, login(client, interaction_id,
                                                                                 identity.user_name)))


def html_of(response) -> str:
    return response.get_data(as_text=True)


def alert_text(html: str) -> str:
    found = re.search(r'<div class="login-alert" id="login-alert" role="alert"><p>(.*?)</p>', html, re.S)
    if not found:
        return ""
    text = re.sub(r'<span class="visually-hidden">.*?</span>', "", found.group(1))
    return re.sub(r"<[^>]+>", "", text).strip()


# --- first step: password -------------------------------------------------------------------------------

def test_password_only_at_a_standard_client_gives_a_code(client, rt, rp, clinician):
    request, interaction_id = start(client, rp, login_hint=clinician.user_name)
    shown = page(client, interaction_id)
    html = html_of(shown)
    assert shown.status_code == 200
    assert "Connexion à Messagerie" in html
    assert 'autocomplete="username"' in html and f'value="{clinician.user_name}"' in html
    assert 'autocomplete="current-password"' in html
    assert 'for="f-username"' in html and 'for="f-password"' in html
    assert "Utiliser une clé de sécurité" in html and 'data-mode="passwordless"' in html
    assert "<script src=\"/static/webauthn-login.js\"" in html and "<script>" not in html

    response = login(client, interaction_id, clinician.user_name)
    assert response.status_code == 303
    assert get_sso_cookie(client, rt)
    claims = claims_for(client, rt, rp, request, resume_to_client(client, response))
    assert claims["amr"] == ["pwd"] and claims["nonce"] == request.nonce


def test_identifier_is_matched_without_regard_to_case_and_spaces(client, rt, rp, clinician):
    request, interaction_id = start(client, rp)
    response = login(client, interaction_id, f"  {clinician.user_name.upper()} ")
    assert "code" in resume_to_client(client, response)


def test_empty_fields_get_their_own_messages_tied_to_the_fields(client, rt, rp, clinician):
    _, interaction_id = start(client, rp)
    response = post(client, interaction_id, "/mot-de-passe", {"username": "", "password": ""})
    html = html_of(response)
    assert response.status_code == 400
    assert 'id="f-username-error"' in html and "Saisissez votre identifiant." in html
    assert 'id="f-password-error"' in html and "Saisissez votre mot de passe." in html
    assert re.search(r'id="f-username"[^>]*aria-describedby="f-username-error"[^>]*aria-invalid="true"', html, re.S)


def test_one_generic_message_for_unknown_user_wrong_password_and_locked_account(client, rt, session, rp,
                                                                                  clinician):
    locked = _with_password(session, rt, create_identity(session))
    throttle = Throttle(DatabaseBackend(), ThrottlePolicy.from_settings(rt.settings))
    for _ in range(rt.settings.lockout_threshold):
        throttle.failure(session, "password", account=locked.user_name, ip=None)
    session.commit()
    suspended = _with_password(session, rt, create_identity(session))
    directory.suspend(session, suspended, actor="test", reason="test")
    session.commit()

    answers = []
    for username, password in (("personne.inconnue", PASSWORD), (clinician.user_name, "mauvais mot de passe"),
                               (locked.user_name, PASSWORD), (suspended.user_name, PASSWORD)):
        _, interaction_id = start(client, rp)
        response = login(client, interaction_id, username, password)
        html = html_of(response)
        answers.append((response.status_code, alert_text(html)))
        # The message is tied to both fields, and the identifier typed is kept.
        assert 'aria-describedby="login-alert"' in html and f'value="{username}"' in html
        assert get_sso_cookie(client, rt) is None
        # The interaction is still usable afterwards.
        assert page(client, interaction_id).status_code == 200
    assert answers == [(401, GENERIC)] * 4


def test_too_many_attempts_are_throttled_with_a_wait(client, rt, rp, clinician):
    _, interaction_id = start(client, rp)
    statuses = []
    for _ in range(8):
        response = login(client, interaction_id, clinician.user_name, "mauvais mot de passe")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    assert re.fullmatch(r"Trop de tentatives : réessayez dans \d+ secondes?\.", alert_text(html_of(response)))
    assert int(response.headers["Retry-After"]) >= 1


# --- second factor --------------------------------------------------------------------------------------

def test_health_data_client_asks_the_second_factor_then_accepts_totp(client, rt, session, health_rp,
                                                                    clinician, frozen):
    seed = enroll_totp(session, rt, clinician)
    request, interaction_id = start(client, health_rp)
    first = html_of(page(client, interaction_id))
    assert "Étape 1 sur 2" in first and "données de santé" in first

    response = login(client, interaction_id, clinician.user_name)
    assert response.status_code == 303 and response.headers["Location"] == f"/connexion/{interaction_id}"
    assert get_sso_cookie(client, rt) is None  # not signed in before the second factor
    second = page(client, interaction_id)
    html = html_of(second)
    assert second.status_code == 200 and "Étape 2 sur 2" in html
    for attribute in ('autocomplete="one-time-code"', 'inputmode="numeric"', 'pattern="[0-9]{6}"',
                      'aria-describedby="f-code-hint"'):
        assert attribute in html
    assert "Utiliser un code de secours" in html and "Utiliser ma clé de sécurité" not in html
    assert 'autocomplete="current-password"' not in html

    response = post(client, interaction_id, "/code", {"code": code_now(seed)})
    claims = claims_for(client, rt, health_rp, request, resume_to_client(client, response))
    assert {"pwd", "otp", "mfa"} <= set(claims["amr"])


def test_wrong_code_then_right_code(client, rt, session, health_rp, clinician, frozen):
    seed = enroll_totp(session, rt, clinician)
    request, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    wrong = "000000" if code_now(seed) != "000000" else "111111"
    response = post(client, interaction_id, "/code", {"code": wrong})
    html = html_of(response)
    assert response.status_code == 401 and "Code incorrect." in html
    assert re.search(r'aria-describedby="f-code-hint f-code-error" aria-invalid="true"', html)
    response = post(client, interaction_id, "/code", {"code": "12 34"})
    assert response.status_code == 400 and "Le code doit comporter 6 chiffres." in html_of(response)
    code = code_now(seed)
    response = post(client, interaction_id, "/code", {"code": f"{code[:3]} {code[3:]}"})
    assert "code" in resume_to_client(client, response)


def test_clock_drift_gets_its_own_message(client, rt, session, health_rp, clinician, frozen):
    seed = enroll_totp(session, rt, clinician)
    _, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    response = post(client, interaction_id, "/code", {"code": code_now(seed, shift=150)})
    assert response.status_code == 401
    assert "Code refusé : vérifiez l&#39;heure de votre téléphone." in html_of(response)


def test_a_code_is_accepted_once(client, rt, session, health_rp, clinician, frozen):
    seed = enroll_totp(session, rt, clinician)
    _, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    code = code_now(seed)
    assert post(client, interaction_id, "/code", {"code": code}).status_code == 303

    request, again = start(client, health_rp, prompt="login")
    login(client, again, clinician.user_name)
    response = post(client, again, "/code", {"code": code})
    assert response.status_code == 401 and "Code incorrect." in html_of(response)
    frozen.shift(30)
    response = post(client, again, "/code", {"code": code_now(seed)})
    assert "code" in resume_to_client(client, response)


def test_step_up_asks_only_the_second_factor(client, rt, session, rp, health_rp, clinician, frozen):
    seed = enroll_totp(session, rt, clinician)
    first = sign_in_with_password(client, rt, rp, clinician)
    request, interaction_id = start(client, health_rp)
    html = html_of(page(client, interaction_id))
    assert 'autocomplete="current-password"' not in html and 'autocomplete="one-time-code"' in html
    assert "Étape" not in html and clinician.user_name in html
    response = post(client, interaction_id, "/code", {"code": code_now(seed)})
    claims = claims_for(client, rt, health_rp, request, resume_to_client(client, response))
    assert {"pwd", "otp", "mfa"} <= set(claims["amr"]) and claims["sid"] == first["sid"]


def test_second_step_belongs_to_the_browser_that_gave_the_password(app, client, rt, session, health_rp,
                                                                     clinician, frozen):
    seed = enroll_totp(session, rt, clinician)
    _, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    other = app.test_client()
    html = html_of(page(other, interaction_id))
    assert 'autocomplete="current-password"' in html and clinician.user_name not in html
    response = post(other, interaction_id, "/code", {"code": code_now(seed)}, token=csrf_of(html))
    assert response.status_code == 303 and response.headers["Location"] == f"/connexion/{interaction_id}"
    assert get_sso_cookie(other, rt) is None
    with rt.db.session() as s:
        assert "mfa" not in s.get(Interaction, interaction_id).factors


def test_change_of_account_shows_the_login_form_again(client, rt, session, health_rp, clinician, frozen):
    enroll_totp(session, rt, clinician)
    _, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    html = html_of(page(client, interaction_id, changer="1"))
    assert 'autocomplete="current-password"' in html and f'value="{clinician.user_name}"' not in html


# --- no second factor -----------------------------------------------------------------------------------

def test_person_without_second_factor_gets_an_explanation_and_no_code(client, rt, health_rp, clinician):
    _, interaction_id = start(client, health_rp)
    response = login(client, interaction_id, clinician.user_name)
    assert response.status_code == 303
    shown = page(client, interaction_id)
    html = html_of(shown)
    assert shown.status_code == 403
    assert ("Cette application donne accès à des données de santé : depuis le 1er janvier 2026, deux facteurs "
            "sont obligatoires (PGSSI-S)") in html
    assert "guichet d'enrôlement" in html and "pièce d'identité" in html
    assert 'href="/logout"' in html and "Se déconnecter" in html
    assert get_sso_cookie(client, rt) is None
    # Nothing to resume: the request goes back to the page, no code is issued.
    again = client.get(f"/authorize/resume/{interaction_id}")
    assert again.status_code == 302 and again.headers["Location"] == f"/connexion/{interaction_id}"


def test_step_up_without_second_factor_gets_the_explanation(client, rt, rp, health_rp, clinician):
    sign_in_with_password(client, rt, rp, clinician)
    _, interaction_id = start(client, health_rp)
    response = page(client, interaction_id)
    assert response.status_code == 403 and "PGSSI-S" in html_of(response)


# --- WebAuthn -------------------------------------------------------------------------------------------

def test_security_key_as_second_factor(client, rt, session, health_rp, clinician):
    key = enroll_key(session, rt, clinician, user_verification=False)
    request, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    html = html_of(page(client, interaction_id))
    assert "Utiliser ma clé de sécurité" in html and 'data-mode="second_factor"' in html
    assert 'autocomplete="one-time-code"' not in html

    options = post_json(client, interaction_id, "/webauthn/options", {"mode": "second_factor"})
    assert options.status_code == 200
    public_key = options.get_json()["publicKey"]
    assert public_key["userVerification"] == "preferred" and len(public_key["allowCredentials"]) == 1
    response = post_json(client, interaction_id, "/webauthn", key.get(public_key))
    assert response.status_code == 200, response.get_json()
    location = response.get_json()["location"]
    assert location == f"/authorize/resume/{interaction_id}" and get_sso_cookie(client, rt)
    final = client.get(location)
    claims = claims_for(client, rt, health_rp, request, query_of(final.headers["Location"]))
    assert {"pwd", "hwk", "mfa"} <= set(claims["amr"])


def test_passwordless_security_key_with_user_verification(client, rt, session, health_rp, clinician):
    key = enroll_key(session, rt, clinician, user_verification=True)
    request, interaction_id = start(client, health_rp)
    options = post_json(client, interaction_id, "/webauthn/options", {"mode": "passwordless"})
    public_key = options.get_json()["publicKey"]
    assert public_key["userVerification"] == "required" and not public_key.get("allowCredentials")
    response = post_json(client, interaction_id, "/webauthn", key.get(public_key))
    assert response.status_code == 200, response.get_json()
    final = client.get(response.get_json()["location"])
    claims = claims_for(client, rt, health_rp, request, query_of(final.headers["Location"]))
    assert set(claims["amr"]) == {"hwk", "mfa", "pin"}


def test_passwordless_without_user_verification_is_refused(client, rt, session, rp, clinician):
    key = enroll_key(session, rt, clinician, user_verification=True)
    request, interaction_id = start(client, rp)
    public_key = post_json(client, interaction_id, "/webauthn/options", {"mode": "passwordless"}).get_json()
    response = post_json(client, interaction_id, "/webauthn", key.get(public_key["publicKey"], uv=False))
    assert response.status_code == 400
    assert response.get_json()["error"] == "user_verification_required"
    assert "code PIN" in response.get_json()["message"]
    assert get_sso_cookie(client, rt) is None
    # The interaction is still usable.
    assert "code" in resume_to_client(client, login(client, interaction_id, clinician.user_name))


def test_webauthn_answer_without_a_ceremony_and_wrong_step(client, rt, session, rp, clinician):
    key = enroll_key(session, rt, clinician, user_verification=True)
    _, interaction_id = start(client, rp)
    response = post_json(client, interaction_id, "/webauthn", {"type": "public-key"})
    assert response.status_code == 400 and response.get_json()["error"] == "no_ceremony"
    # No second-factor ceremony before the person is known.
    response = post_json(client, interaction_id, "/webauthn/options", {"mode": "second_factor"})
    assert response.status_code == 409 and response.get_json()["error"] == "wrong_step"
    # A ceremony is answered once.
    token = csrf_of(html_of(page(client, interaction_id)))
    public_key = post_json(client, interaction_id, "/webauthn/options", {"mode": "passwordless"}, token=token)
    answer = key.get(public_key.get_json()["publicKey"])
    assert post_json(client, interaction_id, "/webauthn", answer, token=token).status_code == 200
    again = post_json(client, interaction_id, "/webauthn", answer, token=token)
    assert again.status_code == 400 and again.get_json()["error"] == "no_ceremony"


# --- recovery code ---------------------------------------------------------------------------------------

def test_recovery_code_opens_the_self_service_page_only(client, rt, session, health_rp, clinician, frozen):
    enroll_totp(session, rt, clinician)
    codes = mie_services.generate_recovery_codes(session, clinician, actor="test", keys=rt.keys)
    session.commit()
    _, interaction_id = start(client, health_rp)
    login(client, interaction_id, clinician.user_name)
    shown = page(client, interaction_id, "/secours")
    html = html_of(shown)
    assert shown.status_code == 200 and 'for="f-recovery_code"' in html
    assert "ne donne pas accès à l'application" in html

    wrong = post(client, interaction_id, "/secours", {"recovery_code": "AAAA-BBBB-CCCC"})
    assert wrong.status_code == 401 and "Code de secours incorrect." in html_of(wrong)
    response = post(client, interaction_id, "/secours", {"recovery_code": codes[0]})
    assert response.status_code == 303 and response.headers["Location"] == "/mes-moyens"
    cookie = get_sso_cookie(client, rt)
    with rt.db.session() as s:
        sso = s.scalar(select(SsoSession).where(SsoSession.identity_id == clinician.id))
        assert sso.recovery_only and "mfa" not in sso.amr and sso.mfa_time is None
        assert s.get(Interaction, interaction_id).completed_at is None
    assert cookie
    # The recovery code did not satisfy the application: it still wants the second factor.
    resumed = client.get(f"/authorize/resume/{interaction_id}")
    assert resumed.headers["Location"] == f"/connexion/{interaction_id}"
    _, again = start(client, health_rp)
    with rt.db.session() as s:
        # For applications a recovery-only session is no session at all: a full sign-in is asked.
        assert s.get(Interaction, again).reasons == ["no_session", "mfa_required"]
    # A spent code does not work twice.
    _, third = start(client, health_rp, prompt="login")
    login(client, third, clinician.user_name)
    assert post(client, third, "/secours", {"recovery_code": codes[0]}).status_code == 401


def test_recovery_page_needs_the_first_factor(client, rt, health_rp):
    _, interaction_id = start(client, health_rp)
    response = page(client, interaction_id, "/secours")
    assert response.status_code == 303 and response.headers["Location"] == f"/connexion/{interaction_id}"


# --- protocol hygiene: headers, CSRF, expiry, prompt=login -----------------------------------------------

def test_every_page_sends_the_interaction_csp_no_cors_and_no_store(client, rt, session, health_rp,
                                                                   clinician, frozen):
    enroll_totp(session, rt, clinician)
    enroll_key(session, rt, clinician, user_verification=False)
    mie_services.generate_recovery_codes(session, clinician, actor="test", keys=rt.keys)
    session.commit()
    _, interaction_id = start(client, health_rp)
    responses = [page(client, interaction_id),
                 login(client, interaction_id, clinician.user_name, "mauvais mot de passe"),
                 login(client, interaction_id, clinician.user_name),
                 page(client, interaction_id),
                 post(client, interaction_id, "/code", {"code": "000000"}),
                 page(client, interaction_id, "/secours"),
                 post_json(client, interaction_id, "/webauthn/options", {"mode": "second_factor"}),
                 client.post(f"/connexion/{interaction_id}/code", data={"code": "123456"})]
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, response
        assert f"form-action 'self' {RP_ORIGIN}" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["Cache-Control"] == "no-store"
        assert not any(name.lower().startswith("access-control-") for name in response.headers.keys())
    expired = page(client, "inconnue")
    assert "frame-ancestors 'none'" in expired.headers["Content-Security-Policy"]
    assert expired.headers["Cache-Control"] == "no-store"


def test_missing_csrf_token_is_refused_and_changes_nothing(client, rt, rp, clinician):
    _, interaction_id = start(client, rp)
    page(client, interaction_id)
    response = client.post(f"/connexion/{interaction_id}/mot-de-passe",
                           data={"username": clinician.user_name, "password": PASSWORD})
    assert response.status_code == 400 and "La page a expiré" in html_of(response)
    assert 'name="csrf_token"' in html_of(response)  # a fresh form to try again
    assert get_sso_cookie(client, rt) is None
    with rt.db.session() as s:
        assert s.get(Interaction, interaction_id).identity_id is None
    response = client.post(f"/connexion/{interaction_id}/webauthn/options", json={"mode": "passwordless"})
    assert response.status_code == 400 and response.get_json()["error"] == "csrf"


def test_expired_and_unknown_interactions_get_a_french_page(client, rt, rp, clinician):
    _, interaction_id = start(client, rp)
    token = csrf_of(html_of(page(client, interaction_id)))
    with time_machine.travel(utcnow() + dt.timedelta(minutes=rt.settings.interaction_minutes + 1)):
        response = page(client, interaction_id)
        assert response.status_code == 400
        html = html_of(response)
        assert "Demande de connexion expirée" in html and "Retournez à l&#39;application" in html
        response = post(client, interaction_id, "/mot-de-passe",
                        {"username": clinician.user_name, "password": PASSWORD}, token=token)
        assert response.status_code == 400 and "Demande de connexion expirée" in html_of(response)
        assert get_sso_cookie(client, rt) is None
    response = page(client, "x" * 32)
    assert response.status_code == 404 and "Demande de connexion introuvable" in html_of(response)
    response = post_json(client, "x" * 32, "/webauthn/options", {"mode": "passwordless"}, token=token)
    assert response.status_code == 404 and response.get_json()["error"] == "interaction_not_found"


def test_finished_interaction_sends_the_back_button_to_the_application(client, rt, rp, clinician):
    _, interaction_id = start(client, rp)
    login(client, interaction_id, clinician.user_name)
    response = page(client, interaction_id)
    assert response.status_code == 303 and response.headers["Location"] == f"/authorize/resume/{interaction_id}"


def test_prompt_login_shows_the_login_again_with_a_later_auth_time(client, rt, rp, clinician):
    first = sign_in_with_password(client, rt, rp, clinician)
    with time_machine.travel(utcnow() + dt.timedelta(minutes=2)):
        request, interaction_id = start(client, rp, prompt="login")
        html = html_of(page(client, interaction_id))
        assert 'autocomplete="current-password"' in html
        assert f'value="{clinician.user_name}"' in html  # the person of the session, to save typing
        assert "identifiiez de nouveau" in html
        claims = claims_for(client, rt, rp, request, resume_to_client(client, login(client, interaction_id,
                                                                                     clinician.user_name)))
    assert claims["auth_time"] > first["auth_time"] and claims["sid"] == first["sid"]


def test_another_person_signing_in_ends_the_previous_session(client, rt, session, rp, clinician):
    sign_in_with_password(client, rt, rp, clinician)
    colleague = _with_password(session, rt, create_identity(session))
    request, interaction_id = start(client, rp, prompt="login")
    response = page(client, interaction_id, changer="1")
    assert f'value="{clinician.user_name}"' not in html_of(response)
    claims = claims_for(client, rt, rp, request, resume_to_client(client, login(client, interaction_id,
                                                                                 colleague.user_name)))
    assert claims["sub"] == colleague.public_id
    with rt.db.session() as s:
        previous = s.scalar(select(SsoSession).where(SsoSession.identity_id == clinician.id))
        assert previous.ended_at is not None and previous.end_reason == "other_person"


def test_interactions_service_refuses_recovery_session_without_person(session, rt, rp):
    interaction = interactions.create(session, rt.settings, client_id=rp.client_id, params={},
                                      reasons=["no_session"], needs_mfa=False, session_identity_id=None)
    with pytest.raises(interactions.InteractionStateError):
        interactions.open_recovery_session(session, interaction, client_ip=None, user_agent=None,
                                           existing_sso=None, keys=rt.keys, settings=rt.settings)
