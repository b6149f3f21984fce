"""Two demo relying parties served by the application itself: « DPI (démo) » and « Intranet (démo) ».

They let a newcomer see, in a browser and without installing anything else, what the provider does for
the establishment's applications: single sign-on from one application to the other, step-up (the DPI, a
``health-data`` client, asks for the second factor that the intranet did not need) and the refusal of
password-only access to health data.

Each one behaves like a real, ordinary confidential client — nothing here takes a shortcut through the
provider's internals for the protocol itself:

* ``/demo/<app>/login`` starts the authorization code flow at the provider's ``/authorize`` (under
  ``settings.issuer``) with PKCE ``S256``, ``state`` and ``nonce`` kept in the browser's signed Flask
  session, under a key of its own per application;
* ``/demo/<app>/callback`` checks ``state`` and ``iss`` (RFC 9207), exchanges the code at ``/token``
  over real HTTP with ``client_secret_basic`` (the demo server has several threads, so it can call
  itself), then validates the ID token: signature through :func:`hospiconnect.idp.keys.verify` (in-process
  demo code; a remote client would use ``/jwks.json``), ``iss``, ``aud``/``azp``, ``nonce`` and ``exp``;
* ``/demo/<app>/logout`` forgets the application's local session and sends the browser to the provider's
  ``/logout`` (RP-Initiated Logout 1.0) with ``id_token_hint`` and the registered
  ``post_logout_redirect_uri``.

The clients and their secrets are created by :func:`hospiconnect.devtools.seed.seed_demo`, which writes
the secrets to ``demo-clients.json`` in the instance folder. The blueprint is registered only when
``settings.env`` is ``demo`` or ``development``, and answers 404 anywhere else should it be registered
by mistake. No JavaScript: links and redirects only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import secrets
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, url_for
from flask import session as browser_session

from hospiconnect import appctx
from hospiconnect.devtools.seed import DEMO_APPS, DemoApp, demo_app, read_demo_clients
from hospiconnect.idp import discovery
from hospiconnect.idp import keys as signing_keys
from hospiconnect.settings import Settings

bp = Blueprint("demo_rp", __name__, url_prefix="/demo")

#: The environments where the demo relying parties exist.
ENVIRONMENTS: tuple[str, ...] = ("demo", "development")
#: The token request goes to this very server: a short wait, then a clear message rather than a hang.
TOKEN_TIMEOUT_SECONDS = 5.0
#: Tolerated clock difference when checking ``exp`` and ``iat`` (same host here, but a habit worth showing).
CLOCK_LEEWAY_SECONDS = 60
MAX_RESPONSE_BYTES = 100_000

PARIS = ZoneInfo("Europe/Paris")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")

ACR_LABELS = {
    "eidas1": "niveau faible : un seul facteur, ou deux facteurs sans vérification préalable de l'identité",
    "eidas2": "niveau substantiel : deux facteurs, identité vérifiée lors de la remise du moyen "
              "d'identification",
    "eidas3": "niveau élevé : clé de sécurité avec vérification de l'utilisateur, identité vérifiée",
}
AMR_LABELS = {
    "pwd": "mot de passe",
    "otp": "code à usage unique (application d'authentification)",
    "hwk": "clé de sécurité ou authentificateur de l'appareil",
    "pin": "code PIN ou biométrie vérifiés par l'authentificateur",
    "user": "présence de l'utilisateur constatée par l'authentificateur",
    "mfa": "plusieurs facteurs d'authentification",
    "emergency": "accès d'urgence (bris de glace) délivré par l'agent d'astreinte",
}


def enabled(settings: Settings) -> bool:
    """Return True when the demo relying parties may exist in this environment."""
    return settings.env in ENVIRONMENTS


def init_app(app: Flask) -> None:
    """Register the blueprint (the caller decides when; see :func:`enabled`)."""
    app.register_blueprint(bp)


@bp.before_request
def _only_in_demo() -> None:
    # Second line of defence: registered by mistake in production or in tests, the pages do not exist.
    if not enabled(current_app.config["SETTINGS"]):
        abort(404)


@bp.after_request
def _no_store(response: Response) -> Response:
    # The pages show a person's name and the ID token travels through the redirects.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the application's own session (a key per app in the signed Flask session) ---------------------------

def _key(app: DemoApp, part: str = "") -> str:
    return f"demo_rp:{app.key}{':' + part if part else ''}"


def _signed_in(app: DemoApp) -> dict[str, Any] | None:
    value = browser_session.get(_key(app))
    return value if isinstance(value, dict) else None


def _settings() -> Settings:
    return appctx.runtime().settings


def _app_or_404(key: str) -> DemoApp:
    app = demo_app(key)
    if app is None:
        abort(404)
    return app


# --- protocol helpers -------------------------------------------------------------------------------------

class DemoRpError(Exception):
    """A failure of the relying party's side of the flow, with a French message for the page."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def pkce_pair() -> tuple[str, str]:
    """Return ``(code_verifier, S256 code_challenge)`` (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)  # 64 characters, within the 43-128 that RFC 7636 allows
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _opener(url: str) -> urllib.request.OpenerDirector:
    # The provider is this very server: a proxy from the environment (http_proxy) must not be asked to
    # reach localhost on our behalf.
    if (urlsplit(url).hostname or "") in _LOOPBACK:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def exchange_code(settings: Settings, app: DemoApp, secret: str, code: str, verifier: str) -> dict[str, Any]:
    """Exchange ``code`` at the provider's token endpoint over HTTP (RFC 6749 §4.1.3, client_secret_basic
    §2.3.1) and return the JSON response.

    Raises :class:`DemoRpError` (French message) when the provider cannot be reached in
    :data:`TOKEN_TIMEOUT_SECONDS`, refuses the request or answers something that is not a token response.
    """
    url = discovery.endpoint(settings, "/token")
    # RFC 6749 §2.3.1: client id and secret are form-urlencoded before going into the Basic header.
    credentials = f"{quote(app.client_id, safe='')}:{quote(secret, safe='')}".encode()
    body = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri(settings),
                      "code_verifier": verifier}).encode("ascii")
    token_request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    })
    try:
        with _opener(url).open(token_request, timeout=TOKEN_TIMEOUT_SECONDS) as response:
            payload = json.loads(response.read(MAX_RESPONSE_BYTES))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read(MAX_RESPONSE_BYTES))
        except ValueError:
            detail = {}
        error = detail.get("error", "?") if isinstance(detail, dict) else "?"
        description = detail.get("error_description", "") if isinstance(detail, dict) else ""
        raise DemoRpError(f"HospiConnect a refusé l'échange du code d'autorisation (HTTP {exc.code}, "
                          f"« {error} » {description}). Recommencez la connexion.") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DemoRpError(f"L'application n'a pas pu joindre HospiConnect à l'adresse {url} ({reason}). "
                          "Vérifiez que le serveur de démonstration tourne et que HOSPICONNECT_ISSUER "
                          "désigne bien ce serveur.") from None
    except ValueError:
        raise DemoRpError("HospiConnect a répondu à l'échange du code par autre chose que du JSON.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("id_token"), str):
        raise DemoRpError("La réponse du point de jeton ne contient pas de jeton d'identité (id_token).")
    return payload


def validate_id_token(settings: Settings, app: DemoApp, token: str, *, nonce: str,
                      now: float | None = None) -> dict[str, Any]:
    """Return the claims of ``token`` once its signature, ``iss``, ``aud``/``azp``, ``nonce``, ``exp`` and
    ``iat`` are checked (OpenID Connect Core §3.1.3.7). Raises :class:`DemoRpError`."""
    now = time.time() if now is None else now
    try:
        claims = signing_keys.verify(appctx.db_session(), token)
    except signing_keys.InvalidSignature:
        raise DemoRpError("Le jeton d'identité reçu n'a pas une signature valide de HospiConnect : il est "
                          "refusé.") from None
    finally:
        # Nothing to write: end the read transaction at once (SQLite readers can hold writers back).
        appctx.db_session().rollback()
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    problems = []
    if claims.get("iss") != settings.issuer:
        problems.append("émetteur (iss) inattendu")
    if app.client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != app.client_id):
        problems.append("destinataire (aud) différent de cette application")
    sent_nonce = claims.get("nonce")
    if not isinstance(sent_nonce, str) or not hmac.compare_digest(sent_nonce, nonce):
        problems.append("nonce différent de celui de la demande")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or exp < now - CLOCK_LEEWAY_SECONDS:
        problems.append("jeton expiré")
    if not isinstance(iat, (int, float)) or iat > now + CLOCK_LEEWAY_SECONDS:
        problems.append("date d'émission (iat) absente ou dans le futur")
    if not isinstance(claims.get("sub"), str):
        problems.append("identifiant de la personne (sub) absent")
    if problems:
        raise DemoRpError("Le jeton d'identité reçu est refusé : " + ", ".join(problems) + ".")
    return claims


# --- what the pages say -----------------------------------------------------------------------------------

def _when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "—"
    return dt.datetime.fromtimestamp(epoch, tz=PARIS).strftime("%d/%m/%Y à %H:%M:%S")


def _requirement(app: DemoApp) -> str:
    if app.sensitivity == "health-data":
        return ("Cette application donne accès à des données de santé : HospiConnect exige deux facteurs "
                "(mot de passe et code à usage unique, ou clé de sécurité). Un mot de passe seul ne suffit pas.")
    return "Cette application ne donne pas accès à des données de santé : un seul facteur suffit."


def _explanations(app: DemoApp, result: dict[str, Any]) -> list[str]:
    """Return, in French, what happened during this sign-in."""
    amr = set(result.get("amr") or [])
    lines: list[str] = []
    if "emergency" in amr:
        # What an application should do with an emergency access: say it, on every page, and restrict.
        lines.append("ACCÈS D'URGENCE (bris de glace) : connexion par un code à usage unique délivré par l'agent "
                     "d'astreinte, journalisée et examinée par le RSSI. L'application le signale et peut "
                     "restreindre les actions possibles.")
    elif app.sensitivity == "health-data":
        lines.append("Connexion avec deux facteurs : accès aux données de santé autorisé.")
    elif "mfa" in amr:
        lines.append("Un seul facteur suffit pour cette application ; votre session HospiConnect en a "
                     "prouvé deux.")
    else:
        lines.append("Un seul facteur suffit pour cette application.")
    if result.get("step_up"):
        lines.append("Votre session HospiConnect n'avait qu'un facteur : HospiConnect vous a demandé "
                     "seulement le second (renforcement de l'authentification), sans redemander le mot de passe.")
    elif result.get("sso"):
        lines.append("Vous n'avez rien eu à saisir : votre session HospiConnect était déjà ouverte "
                     "(authentification unique, SSO).")
    return lines


def _refusal(app: DemoApp, error: str, description: str) -> str:
    """Return the French explanation of an error sent back by the provider (RFC 6749 §4.1.2.1)."""
    base = {
        "access_denied": "HospiConnect a refusé l'accès, ou la connexion a été abandonnée.",
        "unmet_authentication_requirements": "HospiConnect n'a pas pu obtenir le niveau d'authentification "
                                             "exigé par l'application.",
        "interaction_required": "Une action de votre part est nécessaire pour vous connecter.",
        "login_required": "Vous devez vous connecter à HospiConnect.",
    }.get(error, f"HospiConnect a répondu par une erreur « {error} ».")
    if app.sensitivity == "health-data":
        base += (" Le DPI donne accès à des données de santé : il exige deux facteurs, un compte qui n'a "
                 "qu'un mot de passe n'y entre pas.")
    if description:
        base += f" (Détail technique : {description[:300]})"
    return base


def _render(app: DemoApp, *, status: int = 200, alert: str | None = None, notice: str | None = None) -> Response:
    result = _signed_in(app)
    others = [(other, _signed_in(other) is not None) for other in DEMO_APPS if other.key != app.key]
    page = render_template(
        "demo/app.html", app=app, result=result, alert=alert, notice=notice, requirement=_requirement(app),
        explanations=_explanations(app, result) if result else [], others=others,
        acr_label=ACR_LABELS.get(result.get("acr", ""), "niveau inconnu") if result else "",
        amr_labels=[(v, AMR_LABELS.get(v, "méthode non décrite")) for v in (result or {}).get("amr", [])],
        auth_time=_when((result or {}).get("auth_time")),
    )
    return Response(page, status=status)


# --- pages ------------------------------------------------------------------------------------------------

@bp.get("/")
def index() -> Response:
    """The demo's home: the two applications, where the person is signed in, and what to try."""
    apps = [(app, _signed_in(app)) for app in DEMO_APPS]
    configured = bool(read_demo_clients(_settings()))
    return Response(render_template("demo/index.html", apps=apps, configured=configured))


@bp.get("/<app_key>")
def page(app_key: str) -> Response:
    """The application's page: signed in or not, and what the provider sent."""
    app = _app_or_404(app_key)
    notice = None
    # Only when present: popping a missing key would still rewrite the session cookie on every view.
    expected = browser_session.pop(_key(app, "logout_state"), None) if _key(app, "logout_state") in browser_session \
        else None
    state = request.args.get("state")
    if expected and isinstance(state, str) and hmac.compare_digest(state, expected):
        notice = (f"Vous êtes déconnecté de {app.name} et votre session HospiConnect est fermée : la prochaine "
                  "connexion demandera de nouveau votre identifiant et votre mot de passe.")
        still = [other.name for other in DEMO_APPS if other.key != app.key and _signed_in(other) is not None]
        if still:
            # The demo apps keep their state in the browser only, so they cannot receive the provider's
            # back-channel logout; say it rather than let the other page look like a failed logout.
            notice += (f" {' et '.join(still)} garde sa propre session locale jusqu'à ce que vous vous en "
                       "déconnectiez : une application réelle serait prévenue par la déconnexion en canal arrière.")
    return _render(app, notice=notice)


@bp.get("/<app_key>/login")
def login(app_key: str) -> Response:
    """Start the authorization code flow with PKCE S256, state and nonce (OpenID Connect Core §3.1.2.1)."""
    app = _app_or_404(app_key)
    settings = _settings()
    if app.client_id not in read_demo_clients(settings):
        return _render(app, status=503, alert="Cette application de démonstration n'est pas encore enregistrée "
                                              "auprès de HospiConnect : lancez « hospiconnect demo » (ou "
                                              "« make demo »), qui la crée.")
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    browser_session[_key(app, "pending")] = {"state": state, "nonce": nonce, "verifier": verifier,
                                             "started_at": time.time()}
    params = {"response_type": "code", "client_id": app.client_id, "redirect_uri": app.redirect_uri(settings),
              "scope": app.scopes, "state": state, "nonce": nonce, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    return redirect(discovery.endpoint(settings, "/authorize") + "?" + urlencode(params), code=302)


@bp.get("/<app_key>/callback")
def callback(app_key: str) -> Response:
    """The redirect URI: check ``state`` and ``iss``, exchange the code, validate the ID token."""
    app = _app_or_404(app_key)
    settings = _settings()
    # Taken out at once: a response is used once, and a replayed one finds nothing to match.
    pending = browser_session.pop(_key(app, "pending"), None)
    state = request.args.get("state")
    if not isinstance(pending, dict):
        return _render(app, status=400, alert="Cette réponse de HospiConnect n'était pas attendue : aucune "
                                              "connexion n'est en cours dans ce navigateur. Elle est ignorée ; "
                                              "utilisez « Se connecter ».")
    if not isinstance(state, str) or not hmac.compare_digest(state, str(pending.get("state", ""))):
        return _render(app, status=400, alert="La réponse ne correspond pas à la demande de connexion envoyée "
                                              "(paramètre state différent) : elle est ignorée par sécurité. "
                                              "Recommencez avec « Se connecter ».")
    iss = request.args.get("iss")
    if iss is not None and iss != settings.issuer:
        # RFC 9207 §2.4: a response from another provider than the one asked (mix-up attack).
        return _render(app, status=400, alert="La réponse vient d'un autre fournisseur d'identité que celui "
                                              "qui a été sollicité : elle est ignorée par sécurité.")
    error = request.args.get("error")
    if error:
        return _render(app, status=403, alert=_refusal(app, error[:100], request.args.get("error_description", "")))
    code = request.args.get("code")
    if not code:
        return _render(app, status=400, alert="La réponse de HospiConnect ne contient pas de code d'autorisation.")
    secret = read_demo_clients(settings).get(app.client_id)
    if secret is None:
        return _render(app, status=503, alert="Le secret de cette application est introuvable "
                                              "(demo-clients.json) : relancez « hospiconnect demo ».")
    try:
        tokens = exchange_code(settings, app, secret, code, str(pending.get("verifier", "")))
        claims = validate_id_token(settings, app, tokens["id_token"], nonce=str(pending.get("nonce", "")))
    except DemoRpError as exc:
        return _render(app, status=exc.status, alert=exc.message)

    amr = [v for v in claims.get("amr", []) if isinstance(v, str)]
    started_at = pending.get("started_at")
    auth_time = claims.get("auth_time")
    # Explanations only: an authentication older than this sign-in means the SSO session was reused; the
    # other demo app signed in as the same person with one factor, and now two, means a step-up.
    # ``auth_time`` is in whole seconds: compare with the whole second before the click, so that a sign-in
    # completed within the same second is not mistaken for a reused session.
    sso = (isinstance(auth_time, (int, float)) and isinstance(started_at, (int, float))
           and auth_time < math.floor(started_at))
    step_up = "mfa" in amr and any(
        (other := _signed_in(o)) is not None and other.get("sub") == claims["sub"]
        and "mfa" not in (other.get("amr") or []) for o in DEMO_APPS if o.key != app.key)
    browser_session[_key(app)] = {
        "sub": claims["sub"], "sid": claims.get("sid"), "name": claims.get("name") or claims["sub"],
        "user_name": claims.get("preferred_username"), "rpps": claims.get("rpps"),
        "acr": claims.get("acr"), "amr": amr, "auth_time": auth_time, "id_token": tokens["id_token"],
        "sso": sso, "step_up": step_up,
    }
    # Post/redirect/get: reloading the page does not replay the callback.
    return redirect(url_for(".page", app_key=app.key), code=303)


@bp.get("/<app_key>/logout")
def logout(app_key: str) -> Response:
    """Forget this application's session, then RP-Initiated Logout at the provider (§2) with
    ``id_token_hint`` and the registered ``post_logout_redirect_uri``."""
    app = _app_or_404(app_key)
    settings = _settings()
    result = browser_session.pop(_key(app), None)
    browser_session.pop(_key(app, "pending"), None)
    if not isinstance(result, dict) or not isinstance(result.get("id_token"), str):
        return redirect(url_for(".page", app_key=app.key), code=303)
    state = secrets.token_urlsafe(16)
    browser_session[_key(app, "logout_state")] = state
    params = {"id_token_hint": result["id_token"], "client_id": app.client_id,
              "post_logout_redirect_uri": app.home_uri(settings), "state": state}
    return redirect(discovery.endpoint(settings, "/logout") + "?" + urlencode(params), code=302)
