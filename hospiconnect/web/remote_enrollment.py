"""Remote enrollment pages: the invitation link, the FranceConnect+ round trip, and our encryption keys.

Routes (French pages, ``Cache-Control: no-store`` except the public JWKS):

* ``GET  /activation/invitation/<token>`` — who the invitation is for (first name only), what will happen,
  and the « Vérifier mon identité avec FranceConnect+ » button; or why the link no longer works;
* ``POST /activation/invitation/<token>`` — starts the FranceConnect+ check (CSRF token) → 303 to FC+;
* ``GET  /activation/franceconnect/retour`` — the callback (redirect URI declared at FranceConnect+);
* ``GET  /activation/franceconnect/deconnexion`` — back from FranceConnect+'s logout (post-logout URI);
* ``GET  /franceconnect/jwks.json`` — the public keys FranceConnect+ encrypts our tokens to.

The browser is bound to the check by a random secret kept in the signed Flask session (only its keyed hash
is stored with the transaction): a callback URL replayed in another browser finds nothing. After a match
the person joins the activation steps of :mod:`hospiconnect.web.activation` at ``/activation/moyen``, once
FranceConnect+'s own session has been ended through its end-session endpoint.

The client configuration is the real FranceConnect+'s (``HOSPICONNECT_FCPLUS_*``) or, outside production
with no discovery URL, the local simulator's (:mod:`hospiconnect.devtools.fcplus_simulator`, imported only
then). HTTP to the provider goes through ``app.extensions["hospiconnect.fcplus_fetch"]`` when set (tests
route it to the in-process simulator), else :func:`fcplus.urllib_fetch`.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask import session as flask_session
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from hospiconnect import appctx
from hospiconnect.crypto import CryptoError
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import fcplus, remote, upstream_keys
from hospiconnect.enrollment.interfaces import EnrollmentError, InvitationRefused
from hospiconnect.enrollment.models import EnrollmentCase
from hospiconnect.settings import Settings
from hospiconnect.web import activation
from hospiconnect.web.security import CSP

bp = Blueprint("remote", __name__)

FETCH_EXTENSION = "hospiconnect.fcplus_fetch"
BROWSER_KEY = "fcplus_browser"
RETRY_KEY = "fcplus_invitation"
LOGOUT_KEY = "fcplus_logout"
CALLBACK_PARAMS = ("state", "code", "error", "error_description", "iss")
MAX_PARAM_CHARS = 4096
JWKS_MAX_AGE = 3600


class MalformedCallback(fcplus.FcPlusError):
    message = "La réponse de FranceConnect+ est mal formée : recommencez depuis le lien de votre invitation."


class RemoteEnrollmentDisabled(fcplus.FcPlusConfigurationError):
    message = "L'enrôlement à distance par FranceConnect+ n'est pas proposé par cet établissement."


@bp.after_request
def _no_store(response: Response) -> Response:
    if request.endpoint != "remote.jwks":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


# --- configuration ------------------------------------------------------------------------------------------


def client_config(settings: Settings) -> fcplus.FcPlusConfig:
    """Return the FranceConnect+ client configuration of this instance (the simulator's outside production
    when no discovery URL is set). Raises :class:`fcplus.FcPlusConfigurationError`."""
    if not settings.fcplus_enabled:
        raise RemoteEnrollmentDisabled()
    if settings.fcplus_simulator_enabled:
        from hospiconnect.devtools import fcplus_simulator  # never imported in production

        return fcplus_simulator.client_config(settings)
    return remote.fcplus_config(settings)


def _fetch() -> fcplus.Fetch:
    fetch: fcplus.Fetch = current_app.extensions.get(FETCH_EXTENSION, fcplus.urllib_fetch)
    return fetch


def _origin(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def _csp_with_provider(config: fcplus.FcPlusConfig, discovery: fcplus.Discovery | None) -> str:
    """The page's CSP, letting its form redirect to FranceConnect+ (browsers apply ``form-action`` to the
    redirect that answers a form)."""
    origins = {o for o in (_origin(config.discovery_url),
                           _origin(discovery.authorization_endpoint) if discovery else None) if o}
    return CSP.replace("form-action 'self'", " ".join(["form-action 'self'", *sorted(origins)]))


# --- pages --------------------------------------------------------------------------------------------------


def _problem(title: str, message: str, status: int, *, retry_token: str | None = None,
             desk_hint: bool = True) -> tuple[str, int]:
    retry_url = url_for("remote.invitation", token=retry_token) if retry_token else None
    return render_template("remote/problem.html", title=title, message=message, retry_url=retry_url,
                           desk_hint=desk_hint), status


def _refusal(exc: EnrollmentError) -> tuple[str, int]:
    return _problem("Invitation non valable", exc.message, exc.http_status)


def _status_of(exc: fcplus.FcPlusError) -> int:
    if isinstance(exc, fcplus.AccessDenied):
        return 200  # the person chose to cancel: a normal page
    if isinstance(exc, fcplus.FcPlusConfigurationError):
        return 503
    if isinstance(exc, (fcplus.StateMismatch, fcplus.TransactionExpired, fcplus.IssuerMismatch, MalformedCallback)):
        return 400
    if isinstance(exc, fcplus.AcrTooLow):
        return 403
    return 502  # the provider or its tokens failed: discovery, exchange, decryption, signature, claims


def _fcplus_failure(exc: fcplus.FcPlusError) -> tuple[str, int]:
    title = ("Vérification annulée" if isinstance(exc, fcplus.AccessDenied)
             else "La vérification d'identité n'a pas abouti")
    retry = flask_session.get(RETRY_KEY)
    # The class message only: the detail may quote text chosen by whoever forged the callback.
    return _problem(title, exc.message, _status_of(exc),
                    retry_token=retry if isinstance(retry, str) and remote.TOKEN_RE.fullmatch(retry) else None)


@bp.get("/activation/invitation/<token>")
def invitation(token: str) -> tuple[str, int] | Response:
    """The welcome page of an invitation link."""
    rt = appctx.runtime()
    session = appctx.db_session()
    try:
        config = client_config(rt.settings)
    except fcplus.FcPlusConfigurationError as exc:
        return _problem("Enrôlement à distance indisponible", exc.message, 503)
    try:
        invitation_row, case = remote.find_invitation(session, rt.keys, token, client_ip=appctx.client_ip(),
                                                      mark_opened=True)
        session.commit()
    except InvitationRefused as exc:
        session.rollback()
        return _refusal(exc)
    identity = session.get(Identity, case.identity_id)
    assert identity is not None
    try:
        discovery: fcplus.Discovery | None = remote.discovery_for(config, _fetch())
    except fcplus.FcPlusError:
        discovery = None  # the button still works once FranceConnect+ answers again
    page = render_template("remote/welcome.html", first_name=remote.first_name(identity), token=token,
                           expires_at=invitation_row.expires_at,
                           establishment=rt.settings.establishment_name)
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _csp_with_provider(config, discovery)
    return response


@bp.post("/activation/invitation/<token>")
def start(token: str) -> tuple[str, int] | Response:
    """Start the FranceConnect+ check and send the person to FranceConnect+."""
    rt = appctx.runtime()
    session = appctx.db_session()
    try:
        config = client_config(rt.settings)
    except fcplus.FcPlusConfigurationError as exc:
        return _problem("Enrôlement à distance indisponible", exc.message, 503)
    try:
        _invitation_row, case = remote.find_invitation(session, rt.keys, token, client_ip=appctx.client_ip())
    except InvitationRefused as exc:
        session.rollback()
        return _refusal(exc)
    try:
        discovery = remote.discovery_for(config, _fetch())
    except fcplus.FcPlusError as exc:
        session.rollback()
        remote.record_fcplus_failure(session, exc, case=session.get(EnrollmentCase, case.id), reason="discovery",
                                     client_ip=appctx.client_ip())
        return _problem("FranceConnect+ est momentanément indisponible",
                        "FranceConnect+ ne répond pas pour le moment. Réessayez dans quelques minutes : votre "
                        "invitation reste valable.", 502, retry_token=token)
    secret = flask_session.get(BROWSER_KEY)
    if not isinstance(secret, str) or len(secret) < remote.MIN_BROWSER_SECRET:
        secret = remote.new_browser_secret()
    try:
        url = remote.begin_fcplus(session, rt.keys, config, discovery, token, browser_secret=secret,
                                  client_ip=appctx.client_ip())
        session.commit()
    except InvitationRefused as exc:
        session.rollback()
        return _refusal(exc)
    flask_session[BROWSER_KEY] = secret
    flask_session[RETRY_KEY] = token
    return redirect(url, 303)


def _callback_params() -> dict[str, str] | None:
    """The callback's parameters, or None when one is repeated or oversized (never guess which to use)."""
    params: dict[str, str] = {}
    for name in CALLBACK_PARAMS:
        values = request.args.getlist(name)
        if len(values) > 1 or any(len(v) > MAX_PARAM_CHARS for v in values):
            return None
        if values:
            params[name] = values[0]
    return params


def _case(session: Session, case_id: int) -> EnrollmentCase:
    case = session.get(EnrollmentCase, case_id, populate_existing=True)
    assert case is not None  # cases are never deleted
    return case


@bp.get("/activation/franceconnect/retour")
def callback() -> tuple[str, int] | Response:
    """FranceConnect+ sends the person back here: finish the check, then leave FranceConnect+."""
    rt = appctx.runtime()
    session = appctx.db_session()
    ip = appctx.client_ip()
    params = _callback_params()
    if params is None:
        error: fcplus.FcPlusError = MalformedCallback("paramètre répété ou trop long")
        remote.record_fcplus_failure(session, error, reason="malformed", client_ip=ip)
        return _fcplus_failure(error)
    try:
        pending = remote.consume_transaction(session, rt.keys, params.get("state"), flask_session.get(BROWSER_KEY),
                                             client_ip=ip)
        session.commit()
    except fcplus.FcPlusError as exc:  # journaled and committed by the service
        return _fcplus_failure(exc)
    fetch = _fetch()
    try:
        config = client_config(rt.settings)
        discovery = remote.discovery_for(config, fetch)
        provider_keys = remote.provider_keys_for(config, discovery, fetch)
        private_keys = upstream_keys.private_key_set(session, rt.keys)
        verified = fcplus.handle_callback(config, discovery, pending.transaction, params, fetch=fetch,
                                          provider_jwks=provider_keys, private_keys=private_keys)
    except CryptoError as exc:
        session.rollback()
        failure = fcplus.FcPlusConfigurationError("clés de déchiffrement illisibles")
        remote.record_fcplus_failure(session, failure, case=_case(session, pending.case_id),
                                     reason=exc.__class__.__name__, client_ip=ip)
        return _fcplus_failure(failure)
    except fcplus.FcPlusError as exc:
        session.rollback()
        if isinstance(exc, fcplus.BadTokenSignature):
            # The provider may have rotated its keys: the next attempt fetches them again.
            remote.forget_provider_keys(config.discovery_url)
        remote.record_fcplus_failure(session, exc, case=_case(session, pending.case_id), client_ip=ip)
        return _fcplus_failure(exc)
    case = _case(session, pending.case_id)
    identity = session.get(Identity, case.identity_id)
    assert identity is not None
    try:
        outcome = remote.complete_fcplus(session, case, verified, actor=f"person:{identity.user_name}",
                                         invitation_id=pending.invitation_id, client_ip=ip)
        session.commit()
    except EnrollmentError as exc:  # journaled and committed by the service
        return _problem("La vérification d'identité n'a pas abouti", exc.message, exc.http_status)
    flask_session.pop(RETRY_KEY, None)
    if outcome.matched:
        activation.begin_step(outcome.case, via="fcplus")
    return _leave_provider(discovery, verified, "matched" if outcome.matched else "mismatch")


def _leave_provider(discovery: fcplus.Discovery, verified: fcplus.VerifiedIdentity, outcome: str) -> Response:
    """Redirect through FranceConnect+'s end-session endpoint (``id_token_hint``), back to our logout page.

    The ID token is used here and not kept (it would not fit in the session cookie anyway): only the logout
    ``state`` and the outcome stay in the session."""
    if not discovery.end_session_endpoint:
        return redirect(url_for("activation.method") if outcome == "matched" else url_for("remote.mismatch"), 303)
    state = secrets.token_urlsafe(32)
    flask_session[LOGOUT_KEY] = {"state": state, "outcome": outcome}
    # The signed ID token from inside the encrypted one (OpenID Connect Core §3.1.2.1): the provider cannot
    # read what was encrypted to our keys.
    url = fcplus.end_session_url(discovery, verified.id_token_hint or verified.id_token,
                                 remote.post_logout_url(appctx.runtime().settings.issuer), state)
    return redirect(url, 303)


@bp.get("/activation/franceconnect/deconnexion")
def after_logout() -> tuple[str, int] | Response:
    """Back from FranceConnect+'s logout: continue the activation, or explain a mismatch."""
    pending: Any = flask_session.pop(LOGOUT_KEY, None)
    states = request.args.getlist("state")
    outcome = pending.get("outcome") if isinstance(pending, dict) else None
    expected = pending.get("state") if isinstance(pending, dict) else None
    if (outcome not in ("matched", "mismatch") or not isinstance(expected, str) or len(states) != 1
            or not fcplus.values_equal(expected, states[0])):
        return render_template("remote/logout_unconfirmed.html",
                               continue_url=url_for("activation.method")), 400
    if outcome == "matched":
        return redirect(url_for("activation.method"), 303)
    return redirect(url_for("remote.mismatch"), 303)


@bp.get("/activation/franceconnect/identite-non-confirmee")
def mismatch() -> tuple[str, int]:
    """The identity given by FranceConnect+ does not match the directory: come to the desk."""
    return render_template("remote/mismatch.html", establishment=appctx.runtime().settings.establishment_name), 200


@bp.get("/franceconnect/jwks.json")
def jwks() -> Response:
    """The public encryption keys of this instance, for FranceConnect+ (never a private member)."""
    response = jsonify(upstream_keys.public_jwks(appctx.db_session()))
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


# --- the desk's panel ---------------------------------------------------------------------------------------


def desk_panel(session: Session, case: EnrollmentCase, settings: Settings) -> dict[str, Any]:
    """What the desk's case page shows about remote enrollment: whether an invitation can be sent (and to
    which address, or why not), the invitations sent, and the differing fields of a rejected check."""
    identity = session.get(Identity, case.identity_id)
    assert identity is not None
    blocker = remote.invitation_blocker(session, case, settings)
    invitations = [{"sent_at": i.created_at, "email": i.email, "sent_by": i.sent_by, "expires_at": i.expires_at,
                    "status": remote.INVITATION_STATUS_LABELS_FR[remote.invitation_status(i, case)]}
                   for i in remote.invitations_of(session, case)]
    return {
        "enabled": settings.fcplus_enabled,
        "can_invite": blocker is None,
        "blocker": blocker.message if blocker is not None else None,
        "email": identity.email,
        "invitation_days": settings.invitation_days,
        "invitations": invitations,
        "rejection_fields": remote.rejection_fields(case) if case.state == "rejected" else [],
    }
