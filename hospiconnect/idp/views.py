"""HTTP endpoints of the OpenID provider. Views parse, call one service, commit, answer.

``/authorize`` and ``/authorize/resume/<id>`` (hospiconnect.idp.oidc), ``/token``, ``/introspect`` and
``/revoke`` (Authlib, hospiconnect.idp.server), ``/userinfo`` (OpenID Connect Core §5.3) and ``/logout``
(hospiconnect.idp.logout). The blueprint is exempt from the CSRF protection of forms: clients authenticate
themselves; the one form served here (logout confirmation) checks its CSRF token explicitly.

Headers: no CORS header on ``/authorize`` (SECURITY.md item 10); ``frame-ancestors 'none'`` on every
page; ``Cache-Control: no-store`` on every response of this blueprint (codes in ``Location``, tokens,
personal data).
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749.errors import InsecureTransportError
from flask import Blueprint, Response, jsonify, render_template, render_template_string, request
from flask_wtf.csrf import ValidationError as CSRFError
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.exceptions import HTTPException

from hospiconnect import appctx, metrics, policies_runtime
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.idp import claims as claims_mod
from hospiconnect.idp import bearer, clients, login_session, logout, oidc, psc_delegation, tokens
from hospiconnect.idp.interaction_views import info_page
from hospiconnect.idp.interactions import content_security_policy, csp_allowing_redirect
from hospiconnect.idp.server import get_server

log = logging.getLogger("hospiconnect.idp")

bp = Blueprint("idp_views", __name__)

BACKCHANNEL_TIMEOUT_SECONDS = 2.0


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers.setdefault("Content-Security-Policy", content_security_policy(None))
    return response


def _oauth_json(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    # Malformed requests to the protocol endpoints get an OAuth error, never an HTML page.
    status = exc.code or 400
    if request.path.startswith(("/authorize", "/logout")):
        return _page(status, "La requête est invalide.")
    return _oauth_json(status, "invalid_request", "Malformed request.")


def _page(status: int, message: str, title: str = "Connexion impossible", details: tuple[str, ...] = (),
          back: str | None = None) -> Response:
    return Response(render_template("error.html", status=status, message=message, title=title, details=details,
                                    back=back), status=status)


def _outcome(outcome: oidc.Outcome) -> Response:
    if outcome.location is not None:
        response = Response("", status=outcome.status)
        response.headers["Location"] = outcome.location
        return response
    if outcome.back is not None:
        return _page(outcome.status, outcome.message or "", "Accès refusé", outcome.details, outcome.back)
    return _page(outcome.status, outcome.message or "")


def _cookie() -> str | None:
    return request.cookies.get(login_session.cookie_name(appctx.runtime().settings))


# --- authorization endpoint -----------------------------------------------------------------------------

@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """OpenID Connect Core §3.1.2.1: the authorization request, by GET (query) or POST (form)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    post = request.method == "POST"
    outcome = oidc.authorize(session, rt.keys, rt.settings, request.form if post else request.args,
                             cookie_value=_cookie(), client_ip=appctx.client_ip(), post=post,
                             policy=policies_runtime.current_policy())
    session.commit()
    return _outcome(outcome)


@bp.get("/authorize/resume/<interaction_id>")
def resume(interaction_id: str) -> Response:
    """Resume an authorization request once its interaction is complete (checks run again)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    outcome = oidc.resume(session, rt.keys, rt.settings, interaction_id, cookie_value=_cookie(),
                          client_ip=appctx.client_ip(), policy=policies_runtime.current_policy())
    session.commit()
    return _outcome(outcome)


# --- token, introspection, revocation (Authlib) ---------------------------------------------------------

def _authlib(call: Any) -> Response:
    session = appctx.db_session()
    try:
        response = call()
    except InsecureTransportError:
        session.rollback()
        return _oauth_json(400, "invalid_request", "TLS is required: the issuer must be an https URL.")
    # Refusals write too (a reused code revokes tokens, failures are journaled): commit either way.
    session.commit()
    return response


@bp.post("/token")
def token() -> Response:
    """RFC 6749 §3.2: the token endpoint (authorization_code and refresh_token grants).

    Every answer is counted (``hospiconnect_token_grants_total``) here rather than from the journal: not
    every refusal is journaled as a token refusal (an unsupported grant type or a malformed request is not
    journaled; a failed client authentication is, under a tag shared with introspection and revocation)."""
    response = _authlib(lambda: get_server().create_token_response())
    body = response.get_json(silent=True) if response.status_code != 200 else None
    metrics.token_grant(request.form.get("grant_type"), response.status_code,
                        body.get("error") if isinstance(body, dict) else None)
    return response


@bp.post("/introspect")
def introspect() -> Response:
    """RFC 7662 §2: token introspection, client authentication required."""
    return _authlib(lambda: get_server().create_endpoint_response("introspection"))


@bp.post("/revoke")
def revoke() -> Response:
    """RFC 7009 §2: token revocation, client authentication required; 200 for unknown tokens."""
    return _authlib(lambda: get_server().create_endpoint_response("revocation"))


# --- userinfo -------------------------------------------------------------------------------------------

def _bearer_error(error: str, description: str, status: int = 401) -> Response:
    challenge = bearer.challenge(None if error == "missing" else error)
    return _oauth_json(status, "invalid_token" if error == "missing" else error, description,
                       {"WWW-Authenticate": challenge})


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OpenID Connect Core §5.3: claims about the person, for an access token sent as a Bearer token in
    the Authorization header (RFC 6750 §2.1) or, by POST, in the form body (§2.2)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    header = request.headers.get("Authorization")
    from_form = request.form.get("access_token") if request.method == "POST" else None
    try:
        value = bearer.credentials(header)
    except bearer.MalformedAuthorization as exc:
        return _bearer_error("invalid_request", str(exc), 400)
    if from_form:
        if value is not None:  # RFC 6750 §2: one method only
            return _bearer_error("invalid_request", "The access token was sent twice.", 400)
        value = from_form
    if value is None:
        return _bearer_error("missing", "An access token is required.")
    row = tokens.find_token(session, rt.keys, value, kind="access")
    identity = session.get(Identity, row.identity_id) if row is not None else None
    if (row is None or identity is None or not tokens.is_active(row) or not identity.is_active
            or "openid" not in row.scope.split()):
        audit.record(session, tags.OIDC_USERINFO_REFUSED, actor=f"client:{row.client_id if row else '?'}",
                     subject=identity.public_id if identity else None, client_ip=appctx.client_ip(),
                     outcome="refused", details={"known": row is not None})
        session.commit()
        return _bearer_error("invalid_token", "The access token is invalid, expired or revoked.")
    body = claims_mod.person_claims(identity, row.scope.split())
    if psc_delegation.is_psc(clients.get_client(session, row.client_id)):
        body.update(psc_delegation.person_claims(session, rt.settings, identity))
    return jsonify(body)


# --- logout ---------------------------------------------------------------------------------------------

_CONFIRM_TEMPLATE = """{% extends "base.html" %}
{% block title %}Déconnexion{% endblock %}
{% block content %}
<section aria-labelledby="titre-deconnexion">
  <h1 id="titre-deconnexion">Se déconnecter de HospiConnect ?</h1>
  <p>{% if client_name %}L'application « {{ client_name }} » demande{% else %}Une application demande{% endif %}
     à fermer votre session HospiConnect. Vous serez déconnecté de toutes les applications ouvertes avec elle.</p>
  <form method="post" action="{{ url_for('idp_views.logout_confirm') }}">
    <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
    {% for name, value in fields.items() %}<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
    <button type="submit">Me déconnecter</button>
  </form>
</section>
{% endblock %}"""


def _logged_out(location: str | None, status: int) -> Response:
    settings = appctx.runtime().settings
    if location is not None:
        response = Response("", status=status)
        response.headers["Location"] = location
    else:
        response = info_page("Vous êtes déconnecté", "Votre session HospiConnect est fermée. Vous pouvez fermer "
                                                     "cette fenêtre.")
    login_session.clear_cookie(response, settings)
    return response


def _deliver_now(ids: list[int]) -> None:
    # Best effort: the periodic job retries whatever fails here.
    if not ids:
        return
    try:
        logout.deliver_backchannel(appctx.db_session(), utcnow(), ids=ids, timeout=BACKCHANNEL_TIMEOUT_SECONDS)
    except Exception:  # never let a relying party's outage break the person's logout
        log.exception("livraison de déconnexion par canal arrière différée")
        appctx.db_session().rollback()


@bp.route("/logout", methods=["GET", "POST"])
def logout_view() -> Response:
    """OpenID Connect RP-Initiated Logout 1.0 §2: end the session, then redirect or show a page."""
    rt = appctx.runtime()
    session = appctx.db_session()
    post = request.method == "POST"
    params = request.form if post else request.args
    try:
        logout_request = logout.validate_logout(session, rt.settings, params)
    except logout.LogoutRefused as exc:
        logout.journal_refusal(session, reason=exc.reason, client_ip=appctx.client_ip())
        session.commit()
        return _page(400, exc.message, title="Déconnexion refusée")
    browser_sso = login_session.current(session, rt.keys, rt.settings, _cookie())
    sso, confirm = logout.target_session(session, logout_request, browser_sso)
    if confirm:
        session.commit()
        fields = {k: v for k, v in (("client_id", logout_request.client.client_id if logout_request.client else None),
                                    ("post_logout_redirect_uri", logout_request.post_logout_redirect_uri),
                                    ("state", logout_request.state)) if v}
        response = Response(render_template_string(
            _CONFIRM_TEMPLATE, csrf_token=generate_csrf(), fields=fields,
            client_name=logout_request.client.name if logout_request.client else None))
        response.headers["Content-Security-Policy"] = csp_allowing_redirect(logout_request.post_logout_redirect_uri)
        return response
    location, queued = logout.finish(session, rt.keys, rt.settings, logout_request, sso, client_ip=appctx.client_ip())
    session.commit()
    _deliver_now(queued)
    return _logged_out(location, 303 if post else 302)


@bp.post("/logout/confirm")
def logout_confirm() -> Response:
    """The person confirmed the logout asked without a matching ``id_token_hint`` (§2)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    try:
        validate_csrf(request.form.get("csrf_token"))
    except CSRFError:
        return _page(400, "Le formulaire a expiré ; retournez à l'application et recommencez.")
    params = {k: request.form.get(k) for k in ("client_id", "post_logout_redirect_uri", "state")}
    try:
        logout_request = logout.validate_logout(session, rt.settings, params)
    except logout.LogoutRefused as exc:
        logout.journal_refusal(session, reason=exc.reason, client_ip=appctx.client_ip())
        session.commit()
        return _page(400, exc.message, title="Déconnexion refusée")
    sso = login_session.current(session, rt.keys, rt.settings, _cookie())
    location, queued = logout.finish(session, rt.keys, rt.settings, logout_request, sso, client_ip=appctx.client_ip())
    session.commit()
    _deliver_now(queued)
    return _logged_out(location, 303)
