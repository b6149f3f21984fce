"""Pro Santé Connect pages: the pairing round trip (« Associer mon identité nationale ») and its outcome.

Routes (French pages, ``Cache-Control: no-store``):

* ``POST /mes-moyens/identite-nationale`` — on the self-service blueprint (:mod:`hospiconnect.web.self_service`,
  which checks the two-factor session), calls :func:`start_pairing` → 303 to PSC;
* ``GET  /psc/retour`` — the callback (redirect URI declared at PSC), shared with the sign-in;
* ``GET  /psc/appairage`` — the success page;
* ``POST /connexion/<interaction_id>/psc`` — « Se connecter avec Pro Santé Connect » on the sign-in page: a PSC
  authorization request for the interaction → 303 to PSC; back at ``/psc/retour``, the person whose live
  pairing is PSC's (issuer, ``sub``) is signed in with the national MIE PSC reports
  (:func:`hospiconnect.enrollment.national.sign_in`, :func:`hospiconnect.idp.interactions.complete_national`)
  and sent on to ``/authorize/resume/<id>``, where the access policy decides as for any sign-in.

The browser is bound to the transaction by a random secret kept in the signed Flask session (only its keyed
hash is stored), and the pairing callback also requires that the browser is still signed in as the person who
started it. The client configuration is the real PSC's (``HOSPICONNECT_PSC_*``) or, outside production with
no discovery URL, the local simulator's (:mod:`hospiconnect.devtools.psc_simulator`, imported only then).
HTTP to PSC goes through ``app.extensions["hospiconnect.psc_fetch"]`` when set (tests route it to the
in-process simulator), else :func:`psc.urllib_fetch`.
"""

from __future__ import annotations

import secrets
import urllib.parse

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for
from flask import session as flask_session
from werkzeug.wrappers import Response

from hospiconnect import appctx
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import national, psc
from hospiconnect.errors import HospiConnectError
from hospiconnect.idp import interactions, login_session
from hospiconnect.idp.models import Interaction
from hospiconnect.settings import Settings
from hospiconnect.web.security import CSP

bp = Blueprint("psc", __name__)

FETCH_EXTENSION = "hospiconnect.psc_fetch"
BROWSER_KEY = "psc_browser"
OUTCOME_KEY = "psc_pairing"
CALLBACK_PARAMS = ("state", "code", "error", "error_description", "iss")
MAX_PARAM_CHARS = 4096


class PscDisabled(psc.PscConfigurationError):
    message = "Pro Santé Connect n'est pas configuré dans cet établissement."


class MalformedCallback(psc.PscError):
    message = "La réponse de Pro Santé Connect est mal formée : recommencez depuis « Mes moyens d'identification »."


class SignedOut(psc.PscError):
    message = ("Vous n'êtes plus connecté(e) avec le compte qui a demandé l'association : reconnectez-vous avec "
               "deux facteurs, puis recommencez depuis « Mes moyens d'identification ».")


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# --- configuration -------------------------------------------------------------------------------------------


def client_config(settings: Settings) -> psc.PscConfig:
    """Return the PSC client configuration (the simulator's outside production without a discovery URL).
    Raises :class:`psc.PscConfigurationError`."""
    if not settings.psc_enabled:
        raise PscDisabled()
    if settings.psc_simulator_enabled:
        from hospiconnect.devtools import psc_simulator  # never imported in production

        return psc_simulator.client_config(settings)
    return national.psc_config(settings)


def _fetch() -> psc.Fetch:
    fetch: psc.Fetch = current_app.extensions.get(FETCH_EXTENSION, psc.urllib_fetch)
    return fetch


def _origin(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def csp_with_provider(settings: Settings) -> str:
    """The page's CSP, letting its « Associer » form redirect to PSC (browsers apply ``form-action`` to the
    redirect answering a form). Without PSC configured, the plain CSP."""
    try:
        config = client_config(settings)
    except psc.PscError:
        return CSP
    origin = _origin(config.discovery_url)
    return CSP.replace("form-action 'self'", f"form-action 'self' {origin}") if origin else CSP


# --- pages ---------------------------------------------------------------------------------------------------


def _problem(title: str, message: str, status: int) -> tuple[str, int]:
    return render_template("psc/problem.html", title=title, message=message), status


def _status_of(exc: psc.PscError) -> int:
    if isinstance(exc, psc.AccessDenied):
        return 200  # the person chose to cancel
    if isinstance(exc, psc.PscConfigurationError):
        return 503
    if isinstance(exc, (psc.StateMismatch, psc.TransactionExpired, psc.IssuerMismatch, MalformedCallback)):
        return 400
    if isinstance(exc, (psc.AcrTooLow, SignedOut)):
        return 403
    return 502


def _psc_failure(exc: psc.PscError) -> tuple[str, int]:
    title = ("Connexion Pro Santé Connect annulée" if isinstance(exc, psc.AccessDenied)
             else "La connexion Pro Santé Connect n'a pas abouti")
    # The class message only: the detail may quote text chosen by whoever forged the callback.
    return _problem(title, exc.message, _status_of(exc))


def start_pairing(identity: Identity, actor: str) -> Response | tuple[str, int]:
    """Start the pairing of ``identity`` (the caller checked its two-factor session) → 303 to PSC."""
    rt = appctx.runtime()
    session = appctx.db_session()
    try:
        config = client_config(rt.settings)
        discovery = national.discovery_for(config, _fetch())
    except psc.PscError as exc:
        session.rollback()
        national.record_failure(session, exc, purpose=national.PAIRING, identity_id=identity.id,
                                reason="discovery", actor=actor, client_ip=appctx.client_ip())
        return _problem("Pro Santé Connect est momentanément indisponible",
                        "Pro Santé Connect ne répond pas pour le moment. Réessayez dans quelques minutes.",
                        _status_of(exc))
    secret = _browser_secret()
    url = national.begin_pairing(session, rt.keys, config, discovery, identity, browser_secret=secret, actor=actor,
                                 client_ip=appctx.client_ip())
    session.commit()
    flask_session[BROWSER_KEY] = secret
    return redirect(url, 303)


def _callback_params() -> dict[str, str] | None:
    params: dict[str, str] = {}
    for name in CALLBACK_PARAMS:
        values = request.args.getlist(name)
        if len(values) > 1 or any(len(v) > MAX_PARAM_CHARS for v in values):
            return None
        if values:
            params[name] = values[0]
    return params


def _browser_secret() -> str:
    """This browser's random secret (kept in the signed Flask session), created when missing."""
    secret = flask_session.get(BROWSER_KEY)
    if not isinstance(secret, str) or len(secret) < national.MIN_BROWSER_SECRET:
        secret = secrets.token_urlsafe(32)
    return secret


def _login_problem(title: str, message: str, status: int, interaction: Interaction | None = None) -> Response:
    """A sign-in page that says why PSC did not sign the person in; back to the sign-in page when it is still
    open (another means may do)."""
    back = (url_for("idp_interaction_views.show", interaction_id=interaction.id)
            if interaction is not None and interaction.completed_at is None else None)
    return make_response(render_template("login/psc_problem.html", title=title, message=message, back_url=back),
                         status)


@bp.post("/connexion/<interaction_id>/psc")
def login_start(interaction_id: str) -> Response:
    """« Se connecter avec Pro Santé Connect »: start a PSC authorization request for the interaction."""
    rt = appctx.runtime()
    session = appctx.db_session()
    try:
        interaction = interactions.get_interaction(session, interaction_id)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _login_problem(_expired_title(exc), exc.message, exc.http_status)
    if interaction.completed_at is not None:
        return redirect(interactions.resume_url(interaction), 303)
    try:
        config = client_config(rt.settings)
        discovery = national.discovery_for(config, _fetch())
    except psc.PscError as exc:
        session.rollback()
        national.record_failure(session, exc, purpose=national.LOGIN, reason="discovery", actor="person:psc",
                                client_ip=appctx.client_ip())
        return _login_problem("Pro Santé Connect est momentanément indisponible",
                              "Pro Santé Connect ne répond pas pour le moment. Connectez-vous avec votre moyen "
                              "habituel ou réessayez dans quelques minutes.", _status_of(exc), interaction)
    secret = _browser_secret()
    url = national.begin(session, rt.keys, config, discovery, purpose=national.LOGIN, browser_secret=secret,
                         actor="person:psc", interaction_id=interaction.id, client_ip=appctx.client_ip())
    session.commit()
    flask_session[BROWSER_KEY] = secret
    return redirect(url, 303)


def _expired_title(exc: HospiConnectError) -> str:
    return ("Demande de connexion introuvable" if isinstance(exc, interactions.InteractionNotFound)
            else "Demande de connexion expirée")


def _finish_sign_in(pending: national.PendingPsc, params: dict[str, str]) -> Response:
    """The sign-in half of ``/psc/retour``: PSC's answer → the person of the pairing → the interaction done."""
    rt = appctx.runtime()
    session = appctx.db_session()
    ip = appctx.client_ip()
    assert pending.interaction_id is not None
    try:
        interaction = interactions.get_interaction(session, pending.interaction_id)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        session.rollback()
        national.record_failure(session, exc, purpose=national.LOGIN, reason="interaction_expired", client_ip=ip)
        return _login_problem(_expired_title(exc), exc.message, exc.http_status)
    try:
        verified = _verified(pending, params)
    except psc.PscError as exc:  # journaled and committed
        title = ("Connexion Pro Santé Connect annulée" if isinstance(exc, psc.AccessDenied)
                 else "La connexion Pro Santé Connect n'a pas abouti")
        return _login_problem(title, exc.message, _status_of(exc), interaction)
    try:
        identity, mie = national.sign_in(session, verified, client_ip=ip)
    except national.NotPaired as exc:  # journaled and committed by the service
        return _login_problem("Identité nationale non associée", exc.message + " " + NOT_PAIRED_HELP, 403,
                              interaction)
    except national.SignInRefused as exc:
        return _login_problem("Connexion refusée", exc.message, exc.http_status, interaction)
    sso = login_session.current(session, rt.keys, rt.settings,
                                request.cookies.get(login_session.cookie_name(rt.settings)))
    try:
        _sso, cookie = interactions.complete_national(
            session, interaction, identity.id, interactions.national_sign_in(mie.type, verified.amr, verified.acr),
            client_ip=ip, user_agent=request.user_agent.string, existing_sso=sso, keys=rt.keys, settings=rt.settings)
        session.commit()
    except (interactions.InteractionExpired, interactions.LoginRefused) as exc:
        session.rollback()
        return _login_problem("Demande de connexion expirée", exc.message, 400)
    response = redirect(interactions.resume_url(interaction), 303)
    login_session.set_cookie(response, rt.settings, cookie)
    return response


def _verified(pending: national.PendingPsc, params: dict[str, str], *, identity_id: int | None = None,
              actor: str = "person:psc", signed_in: bool = True) -> psc.NationalIdentity:
    """Return the national identity PSC's answer ``params`` proves for the consumed transaction ``pending``
    (code exchange, ID token and userinfo checks). A failure — or ``signed_in`` false: the pairing browser is
    no longer signed in as the person who asked — is journaled, committed and raised as a :class:`psc.PscError`.
    Signature keys are forgotten after a bad signature (PSC may have rotated them)."""
    session = appctx.db_session()
    fetch = _fetch()
    config: psc.PscConfig | None = None
    try:
        if not signed_in:
            raise SignedOut()
        config = client_config(appctx.runtime().settings)
        discovery = national.discovery_for(config, fetch)
        provider_keys = national.provider_keys_for(config, discovery, fetch)
        return psc.handle_callback(config, discovery, pending.transaction, params, fetch=fetch,
                                   provider_jwks=provider_keys)
    except psc.PscError as exc:
        session.rollback()
        if isinstance(exc, psc.BadTokenSignature) and config is not None:
            national.forget_provider_keys(config.discovery_url)
        national.record_failure(session, exc, purpose=pending.purpose, identity_id=identity_id, actor=actor,
                                client_ip=appctx.client_ip())
        raise


NOT_PAIRED_HELP = ("Connectez-vous une première fois avec votre identifiant et votre second facteur, puis associez "
                   "votre identité nationale depuis « Mes moyens d'identification » : vous pourrez ensuite utiliser "
                   "votre carte CPS ou l'application e-CPS.")


def _signed_in_identity_id() -> int | None:
    rt = appctx.runtime()
    sso = login_session.current(appctx.db_session(), rt.keys, rt.settings,
                                request.cookies.get(login_session.cookie_name(rt.settings)))
    return sso.identity_id if sso is not None and sso.mfa_time is not None else None


@bp.get("/psc/retour")
def callback() -> tuple[str, int] | Response:
    """PSC sends the person back here: finish the pairing (or the sign-in)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    ip = appctx.client_ip()
    params = _callback_params()
    if params is None:
        error: psc.PscError = MalformedCallback("paramètre répété ou trop long")
        national.record_failure(session, error, purpose=None, reason="malformed", client_ip=ip)
        return _psc_failure(error)
    try:
        pending = national.consume_transaction(session, rt.keys, params.get("state"),
                                               flask_session.get(BROWSER_KEY), client_ip=ip)
        session.commit()
    except psc.PscError as exc:  # journaled and committed by the service
        return _psc_failure(exc)
    if pending.purpose == national.LOGIN and pending.interaction_id is not None:
        return _finish_sign_in(pending, params)
    if pending.purpose != national.PAIRING or pending.identity_id is None:
        failure = MalformedCallback("usage inconnu")
        national.record_failure(session, failure, purpose=pending.purpose, reason="unsupported_purpose",
                                client_ip=ip)
        return _psc_failure(failure)
    identity = session.get(Identity, pending.identity_id)
    assert identity is not None
    actor = identity.user_name
    try:
        verified = _verified(pending, params, identity_id=identity.id, actor=actor,
                             signed_in=_signed_in_identity_id() == identity.id)
    except psc.PscError as exc:  # journaled and committed
        return _psc_failure(exc)
    try:
        link = national.complete_pairing(session, identity, verified, actor, client_ip=ip)
        session.commit()
    except national.PairingRefused as exc:  # journaled and committed by the service
        return _problem("Association refusée", exc.message, 409)
    flask_session[OUTCOME_KEY] = link.public_id
    return redirect(url_for("psc.paired"), 303)


@bp.get("/psc/appairage")
def paired() -> tuple[str, int] | str:
    """The pairing succeeded: what was linked and what it changes."""
    session = appctx.db_session()
    identity_id = _signed_in_identity_id()
    identity = session.get(Identity, identity_id) if identity_id is not None else None
    link = national.live_link(session, identity) if identity is not None else None
    if link is None or flask_session.get(OUTCOME_KEY) != link.public_id:
        return redirect(url_for("mie.index"), 303)  # type: ignore[return-value]
    return render_template("psc/paired.html", identity=identity, link=link,
                           method=national.METHOD_LABELS_FR.get(link.method, link.method))
