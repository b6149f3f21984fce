"""Login pages of the OpenID provider (``/connexion/<interaction_id>``).

An authorization request that needs the person (:mod:`hospiconnect.idp.interactions`) lands here. The page
shows, for the interaction's client, the one step still missing:

1. **login**: identifier and password, or a security key with user verification (passwordless, two
   factors at once);
2. **second factor**: the TOTP code and/or the security key the person has, when the client gives access
   to health data (or asks for a higher level) and the login did not prove two factors. A recovery code
   opens a recovery-only session for the self-service page, never the client;
3. **no second factor**: a calm explanation (403) when the person has none to offer.

Then :func:`~hospiconnect.idp.interactions.complete`, the SSO cookie and a 303 to
``/authorize/resume/<id>``, where the authorization checks run again.

Binding to the browser: the interaction id travels in URLs, so knowing it must not be enough to carry on
someone else's sign-in. The browser that proves the first factor gets a mark in its signed Flask session;
the later steps require that mark, or for a step-up the SSO cookie of the person. The WebAuthn ceremony
(challenge id, mode, person) is remembered the same way and never taken from the request.

Responses: a failed attempt is rendered again with its status (400, 401, 429) so that the message stays
next to its field; a success answers 303. Every response carries the interaction's
Content-Security-Policy (its ``form-action`` must allow the client's redirect URI, or the browser blocks
the final redirect) and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, render_template, render_template_string, request
from flask import session as browser_session
from flask import url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError

from hospiconnect import appctx, policies_runtime
from hospiconnect.authenticators import amr as amr_values
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import webauthn
from hospiconnect.authenticators.interfaces import (
    ClockDrift,
    InvalidCode,
    InvalidCredentials,
    InvalidRecoveryCode,
    NotEnrolled,
    Throttled,
)
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.errors import HospiConnectError
from hospiconnect.idp import checks, interactions, login_session, policy_gate
from hospiconnect.idp.models import Interaction, SsoSession
from hospiconnect.ratelimit import Throttle, make_throttle

bp = Blueprint("idp_interaction_views", __name__)

# Steps a page can show.
LOGIN = "login"
SECOND_FACTOR = "second_factor"
NO_SECOND_FACTOR = "no_second_factor"

#: Where a recovery code leads: the self-service page « Mes moyens d'identification ».
SELF_SERVICE_PATH = "/mes-moyens"

# Reasons that call for a sign-in: a live session of the person is then not enough for a step-up.
_LOGIN_REASONS = checks.LOGIN_REASONS
_SECOND_FACTOR_REASONS = ("mfa_required", "essential_acr")

# Keys of the Flask session (a signed cookie): interactions whose first factor this browser proved, and
# the WebAuthn ceremony in progress. A few entries at most keep the cookie small; an older sign-in tab has
# long expired anyway.
_PROOFS = "hc_login_proofs"
_CEREMONIES = "hc_webauthn"
_REMEMBERED = 4

_CODE = re.compile(r"[0-9]{6}")
_MAX_FIELD = 200


@dataclasses.dataclass(frozen=True)
class Step:
    """Where an interaction stands for this browser."""

    interaction: Interaction
    view: interactions.InteractionView
    stage: str
    #: The person this browser has proven to be for this interaction (None before the first factor).
    identity: Identity | None
    #: The browser's live SSO session, if any.
    sso: SsoSession | None
    has_totp: bool = False
    has_webauthn: bool = False

    @property
    def two_steps(self) -> bool:
        """The sign-in needs two steps in this interaction (password, then second factor)."""
        return self.view.needs_second_factor and (self.stage == LOGIN or self.interaction.identity_id is not None)


# --- helpers --------------------------------------------------------------------------------------------

_INFO_TEMPLATE = """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block content %}
<section aria-labelledby="titre-info">
  <h1 id="titre-info">{{ title }}</h1>
  {% for paragraph in paragraphs %}<p>{{ paragraph }}</p>{% endfor %}
</section>
{% endblock %}"""


def info_page(title: str, *paragraphs: str, status: int = 200) -> Response:
    """Return a simple French page (a title, paragraphs) with ``status``."""
    return Response(render_template_string(_INFO_TEMPLATE, title=title, paragraphs=paragraphs), status=status)


def _remembered(key: str) -> list[list[Any]]:
    raw = browser_session.get(key)
    if not isinstance(raw, list):
        return []
    return [entry for entry in raw if isinstance(entry, list) and len(entry) == 2]


def _remember(key: str, interaction_id: str, value: Any) -> None:
    # A list of pairs rather than a dict: the session serializer sorts dict keys, a list keeps the order
    # needed to drop the oldest entries.
    entries = [entry for entry in _remembered(key) if entry[0] != interaction_id]
    browser_session[key] = (entries + [[interaction_id, value]])[-_REMEMBERED:]


def _recall(key: str, interaction_id: str, *, forget: bool = False) -> Any:
    entries = _remembered(key)
    for name, value in entries:
        if name == interaction_id:
            if forget:
                browser_session[key] = [entry for entry in entries if entry[0] != interaction_id]
            return value
    return None


def _cookie() -> str | None:
    return request.cookies.get(login_session.cookie_name(appctx.runtime().settings))


def _throttle() -> Throttle:
    return make_throttle(appctx.runtime().settings)


def _known_person(interaction: Interaction, sso: SsoSession | None) -> int | None:
    """Return the person this browser has proven to be for ``interaction``, or None."""
    if interaction.identity_id is not None:
        proven = _recall(_PROOFS, interaction.id)
        return interaction.identity_id if proven == interaction.identity_id else None
    person = interactions.person_id(interaction)
    if (person is not None and sso is not None and sso.identity_id == person
            and not set(interaction.reasons) & _LOGIN_REASONS):
        return person  # step-up of the browser's own session
    return None


def _load(interaction_id: str, *, force_login: bool = False) -> Step:
    """Return where the interaction stands for this browser.

    Raises :class:`~hospiconnect.idp.interactions.InteractionNotFound` or
    :class:`~hospiconnect.idp.interactions.InteractionExpired`. Commits: looking the session up records
    activity (or ends a dead session), and the authentication services called next must find nothing
    pending, since they commit their failures themselves.
    """
    rt = appctx.runtime()
    session = appctx.db_session()
    interaction = interactions.get_interaction(session, interaction_id)
    g.login_interaction = interaction
    sso = login_session.current(session, rt.keys, rt.settings, _cookie())
    view = interactions.describe(session, interaction)
    person = None if force_login else _known_person(interaction, sso)
    identity = session.get(Identity, person, options=ONLY_IDENTITY) if person is not None else None
    if identity is not None and not identity.is_active:
        identity = None
    stage, has_totp, has_webauthn = LOGIN, False, False
    if identity is not None and interactions.needs_second_factor(interaction):
        kinds = {mie.type for mie in mie_services.active_mie_for(session, identity)}
        offered = interactions.step_up_types(interaction)  # the access policy's: those that would do
        if offered is not None:
            kinds &= offered
        has_totp, has_webauthn = "totp" in kinds, "webauthn" in kinds
        stage = SECOND_FACTOR if has_totp or has_webauthn else NO_SECOND_FACTOR
    session.commit()
    return Step(interaction, view, stage, identity, sso, has_totp, has_webauthn)


def _messages(step: Step) -> list[str]:
    """The reasons worth telling at this step (the heading already says that a sign-in is needed)."""
    if step.stage == LOGIN:
        wanted = [r for r in step.view.reasons if r in _LOGIN_REASONS and r != "no_session"]
    elif step.view.policy_messages and not step.view.health_data:
        return list(step.view.policy_messages)  # the policy's own words for a class other than health data
    else:
        wanted = [r for r in step.view.reasons if r in _SECOND_FACTOR_REASONS]
    messages = dict(interactions.REASON_MESSAGES)
    if not step.view.health_data:
        messages["mfa_required"] = interactions.MFA_REQUIRED_MESSAGE  # not a health-data application
    return [messages[r] for r in wanted if r in messages]


def _prefill(step: Step, force_login: bool) -> str:
    if step.view.login_hint:
        return step.view.login_hint[:_MAX_FIELD]
    if step.sso is not None and not force_login:
        # Signing in again (prompt=login, max_age): the person of the session most likely.
        owner = appctx.db_session().get(Identity, step.sso.identity_id, options=ONLY_IDENTITY)
        return owner.user_name if owner is not None else ""
    return ""


_TEMPLATES = {LOGIN: "login/password.html", SECOND_FACTOR: "login/second_factor.html",
              NO_SECOND_FACTOR: "login/no_second_factor.html"}


def _render(step: Step, *, status: int | None = None, template: str | None = None,
            errors: dict[str, str] | None = None, alert: str | None = None, invalid: tuple[str, ...] = (),
            values: dict[str, str] | None = None, force_login: bool = False) -> Response:
    """Render the page of ``step``: ``errors`` are per-field messages, ``alert`` a message for the whole
    form (tied to the ``invalid`` fields)."""
    if template is None:
        template = _TEMPLATES[step.stage]
    if status is None:
        status = 403 if step.stage == NO_SECOND_FACTOR and template == _TEMPLATES[NO_SECOND_FACTOR] else 200
    values = dict(values or {})
    if step.stage == LOGIN and "username" not in values:
        values["username"] = _prefill(step, force_login)
    return Response(render_template(
        template, step=step, view=step.view, messages=_messages(step), errors=errors or {}, alert=alert,
        invalid=set(invalid) | set(errors or {}), values=values, emergency_offered=_emergency_offered(step),
        psc_offered=appctx.runtime().settings.psc_enabled,
    ), status=status)


def _emergency_offered(step: Step) -> bool:
    """Whether the page offers emergency access: the client's class allows it today (for a population, a
    rule may still say no at the time of use)."""
    app_class = step.view.app_class
    policy = policies_runtime.current_policy()
    if app_class is None or app_class not in policy.classes:
        return False
    population = step.identity.contract_type if step.identity is not None else None
    return policy.effective(app_class, utcnow(), population).settings.emergency


def _expired(exc: HospiConnectError) -> Response:
    """The page for an unknown, expired or finished interaction: go back to the application."""
    if isinstance(exc, interactions.InteractionNotFound):
        title = _("Demande de connexion introuvable")
    else:
        title = _("Demande de connexion expirée")
    return Response(render_template("login/expired.html", title=title, message=exc.message),
                    status=exc.http_status)


def _see_other(location: str, cookie: str | None = None) -> Response:
    response = redirect(location, code=303)
    if cookie is not None:
        login_session.set_cookie(response, appctx.runtime().settings, cookie)
    return response


def _json_error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


def _wait(seconds: int) -> str:
    if seconds < 120:
        return ngettext("%(num)s seconde", "%(num)s secondes", seconds)
    return ngettext("%(num)s minute", "%(num)s minutes", math.ceil(seconds / 60))


def _too_many(exc: Throttled) -> str:
    return _("Trop de tentatives : réessayez dans %(wait)s.", wait=_wait(exc.retry_after))


def _advance(step: Step) -> tuple[str, str | None]:
    """After a successful factor: complete the interaction when nothing is missing any more.

    Returns ``(where the browser goes next, cookie value or None)`` and commits. Raises
    :class:`~hospiconnect.idp.interactions.InteractionExpired` when another request finished it first.
    """
    session = appctx.db_session()
    interaction = step.interaction
    rt = appctx.runtime()
    if (interactions.needs_second_factor(interaction) and interaction.identity_id is not None
            and step.identity is not None):
        # Planned before anyone was known: the person's exceptions (dérogations) may let this factor through.
        waived_by = policy_gate.login_suffices(session, policies_runtime.current_policy(), step.view.app_class,
                                               step.identity, interaction.factors, client_ip=appctx.client_ip(),
                                               now=utcnow())
        if waived_by:
            interactions.waive_second_factor(session, interaction, waived_by, client_ip=appctx.client_ip())
    if interactions.needs_second_factor(interaction):
        session.commit()
        return url_for(".show", interaction_id=interaction.id), None
    _sso, cookie = interactions.complete(session, interaction, client_ip=appctx.client_ip(),
                                         user_agent=request.user_agent.string, existing_sso=step.sso,
                                         keys=rt.keys, settings=rt.settings)
    session.commit()
    # The marks have served: the interaction is finished.
    _recall(_PROOFS, interaction.id, forget=True)
    _recall(_CEREMONIES, interaction.id, forget=True)
    return interactions.resume_url(interaction), cookie


def _field(name: str) -> str:
    value = request.form.get(name)
    return value[:1000] if isinstance(value, str) else ""


# --- headers and refusals common to every page ------------------------------------------------------------

@bp.after_request
def _headers(response: Response) -> Response:
    also = interactions.psc_form_target(appctx.runtime().settings)
    try:
        policy = interactions.content_security_policy(g.get("login_interaction"), also=also)
    except SQLAlchemyError:
        # The database failed during this request and the session dropped what it had loaded: reading the
        # interaction again would fail this response too (its 503 would become a 500). Without it, the policy
        # only lacks the client's redirect URI, which an error page does not need.
        policy = interactions.content_security_policy(None, also=also)
    response.headers["Content-Security-Policy"] = policy
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


_JSON_ENDPOINTS = frozenset({"webauthn_options", "webauthn_complete"})


@bp.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> Response:
    """A form without a valid CSRF token: nothing is checked or changed; the page is shown again."""
    endpoint = (request.endpoint or "").rpartition(".")[2]
    if endpoint in _JSON_ENDPOINTS:
        return _json_error(400, "csrf", _("La page a expiré : rechargez-la et recommencez."))
    interaction_id = str((request.view_args or {}).get("interaction_id", ""))
    force_login = endpoint == "password"
    try:
        step = _load(interaction_id, force_login=force_login)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as error:
        return _expired(error)
    template = "login/recovery.html" if endpoint == "recovery" and step.identity is not None else None
    return _render(step, status=400, template=template, force_login=force_login,
                   alert=_("La page a expiré : saisissez de nouveau vos informations."))


# --- pages ------------------------------------------------------------------------------------------------

@bp.get("/connexion/<interaction_id>")
def show(interaction_id: str) -> Response:
    """The page of the step still missing (``?changer=1``: sign in with another account)."""
    force_login = request.args.get("changer") == "1"
    try:
        step = _load(interaction_id, force_login=force_login)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _expired(exc)
    if step.interaction.completed_at is not None:
        # Back button after the end of the sign-in: carry on to the application.
        return _see_other(interactions.resume_url(step.interaction))
    return _render(step, force_login=force_login)


@bp.get("/connexion/<interaction_id>/mot-de-passe")
@bp.get("/connexion/<interaction_id>/code")
def back_to_page(interaction_id: str) -> Response:
    """The address of a form re-rendered after a failure, typed again or bookmarked: the page itself."""
    return _see_other(url_for(".show", interaction_id=interaction_id))


@bp.post("/connexion/<interaction_id>/mot-de-passe")
def password(interaction_id: str) -> Response:
    """First factor: identifier and password."""
    try:
        step = _load(interaction_id, force_login=True)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _expired(exc)
    username = " ".join(_field("username").split())[:_MAX_FIELD]
    secret = _field("password")
    values = {"username": username}
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = _("Saisissez votre identifiant.")
    if not secret:
        errors["password"] = _("Saisissez votre mot de passe.")
    if errors:
        return _render(step, status=400, errors=errors, values=values, force_login=True)
    session = appctx.db_session()
    try:
        identity, _mie = mie_services.verify_password(session, username, secret, client_ip=appctx.client_ip(),
                                                      throttle=_throttle())
        interactions.record_login(session, step.interaction, identity.id, amr_values.amr_for(["password"]),
                                  client_ip=appctx.client_ip())
    except Throttled as exc:
        response = _render(step, status=429, alert=_too_many(exc), invalid=("username", "password"),
                           values=values, force_login=True)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except (InvalidCredentials, interactions.LoginRefused):
        # One message and one status for an unknown identifier, a wrong password or a locked account.
        session.rollback()
        return _render(step, status=401, alert=InvalidCredentials().message, invalid=("username", "password"),
                       values=values, force_login=True)
    except interactions.InteractionExpired as exc:
        session.rollback()
        return _expired(exc)
    _remember(_PROOFS, interaction_id, identity.id)
    try:
        location, cookie = _advance(dataclasses.replace(step, identity=identity))
    except interactions.InteractionExpired as exc:
        session.rollback()
        return _expired(exc)
    return _see_other(location, cookie)


@bp.post("/connexion/<interaction_id>/code")
def code(interaction_id: str) -> Response:
    """Second factor: the code of the authenticator application (TOTP)."""
    try:
        step = _load(interaction_id)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _expired(exc)
    if step.stage != SECOND_FACTOR or not step.has_totp or step.identity is None:
        return _see_other(url_for(".show", interaction_id=interaction_id))
    value = "".join(_field("code").split())
    if not _CODE.fullmatch(value):
        message = (_("Saisissez le code à 6 chiffres affiché par votre application.") if not value
                   else _("Le code doit comporter 6 chiffres."))
        return _render(step, status=400, errors={"code": message})
    session = appctx.db_session()
    rt = appctx.runtime()
    try:
        mie_services.verify_totp(session, step.identity, value, client_ip=appctx.client_ip(),
                                 throttle=_throttle(), keys=rt.keys)
    except Throttled as exc:
        response = _render(step, status=429, errors={"code": _too_many(exc)})
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except ClockDrift as exc:
        return _render(step, status=401, errors={"code": exc.message})
    except (InvalidCode, NotEnrolled):
        # A replayed code gets the same answer as a wrong one: it tells nothing to whoever saw it typed.
        return _render(step, status=401, errors={"code": _("Code incorrect.")})
    try:
        interactions.record_second_factor(session, step.interaction, amr_values.amr_for(["totp"]),
                                          client_ip=appctx.client_ip())
        location, cookie = _advance(step)
    except interactions.InteractionExpired as exc:
        session.rollback()
        return _expired(exc)
    return _see_other(location, cookie)


@bp.route("/connexion/<interaction_id>/secours", methods=["GET", "POST"])
def recovery(interaction_id: str) -> Response:
    """A recovery code instead of the second factor: it opens the self-service page only."""
    try:
        step = _load(interaction_id)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _expired(exc)
    if step.identity is None or step.stage == LOGIN:
        return _see_other(url_for(".show", interaction_id=interaction_id))
    if request.method == "GET":
        return _render(step, template="login/recovery.html", status=200)
    value = " ".join(_field("recovery_code").split())[:_MAX_FIELD]
    if not value:
        return _render(step, template="login/recovery.html", status=400,
                       errors={"recovery_code": _("Saisissez l'un de vos codes de secours.")})
    session = appctx.db_session()
    rt = appctx.runtime()
    try:
        mie_services.use_recovery_code(session, step.identity, value, client_ip=appctx.client_ip(),
                                       throttle=_throttle(), keys=rt.keys)
    except Throttled as exc:
        response = _render(step, template="login/recovery.html", status=429,
                           errors={"recovery_code": _too_many(exc)})
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidRecoveryCode:
        # Unknown and already spent codes alike.
        return _render(step, template="login/recovery.html", status=401,
                       errors={"recovery_code": _("Code de secours incorrect.")})
    try:
        _sso, cookie = interactions.open_recovery_session(
            session, step.interaction, client_ip=appctx.client_ip(), user_agent=request.user_agent.string,
            existing_sso=step.sso, keys=rt.keys, settings=rt.settings)
        session.commit()
    except interactions.InteractionExpired as exc:
        session.rollback()
        return _expired(exc)
    _recall(_PROOFS, interaction_id, forget=True)
    return _see_other(SELF_SERVICE_PATH, cookie)


@bp.route("/connexion/<interaction_id>/urgence", methods=["GET", "POST"])
def emergency_access(interaction_id: str) -> Response:
    """Emergency access (bris de glace): the one-time code an on-duty officer issued, with the password.

    The password is required when the person has one (the code is then the second element, never a second
    factor); the session opened is one factor, ``amr`` ``emergency``, capped at the credential's expiry. A
    success answers with a page (200) that says so — no emergency access is silent — and leads on to the
    application. Every failure gets one message, whatever was wrong.
    """
    try:
        step = _load(interaction_id, force_login=True)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _expired(exc)
    if step.interaction.completed_at is not None:
        return _see_other(interactions.resume_url(step.interaction))
    page = "login/emergency.html"
    if request.method == "GET":
        return _render(step, template=page, force_login=True, values={"username": step.view.login_hint or ""})
    username = " ".join(_field("username").split())[:_MAX_FIELD]
    secret = _field("password")
    typed_code = _field("emergency_code")[:_MAX_FIELD]
    values = {"username": username}
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = _("Saisissez votre identifiant.")
    if not typed_code.strip():
        errors["emergency_code"] = _("Saisissez le code d'accès d'urgence qui vous a été communiqué.")
    if errors:
        return _render(step, status=400, template=page, errors=errors, values=values, force_login=True)
    session = appctx.db_session()
    rt = appctx.runtime()
    wrong = _("Identifiant, mot de passe ou code d'accès d'urgence incorrect.")
    fields = ("username", "password", "emergency_code")
    try:
        if secret:
            mie_services.verify_password(session, username, secret, client_ip=appctx.client_ip(),
                                         throttle=_throttle())
        elif mie_services.has_active_password(session, username):
            emergency.refuse_without_password(session, user_name=username, client_ip=appctx.client_ip())
        use = emergency.redeem_emergency_credential(
            session, rt.keys, user_name=username, code=typed_code, client_ip=appctx.client_ip(),
            throttle=_throttle(), policy=policies_runtime.current_policy(), with_password=bool(secret))
    except Throttled as exc:
        response = _render(step, status=429, template=page, alert=_too_many(exc), invalid=fields, values=values,
                           force_login=True)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except (emergency.EmergencyNetworkRefused, emergency.EmergencyNotAllowed) as exc:
        return _render(step, status=403, template=page, alert=exc.message, invalid=("emergency_code",),
                       values=values, force_login=True)
    except (InvalidCredentials, emergency.InvalidEmergencyCode):
        session.rollback()
        return _render(step, status=401, template=page, alert=wrong, invalid=fields, values=values,
                       force_login=True)
    try:
        _sso, cookie = interactions.complete_emergency(
            session, step.interaction, use, client_ip=appctx.client_ip(), user_agent=request.user_agent.string,
            existing_sso=step.sso, keys=rt.keys, settings=rt.settings)
        session.commit()
    except (interactions.InteractionExpired, interactions.LoginRefused) as exc:
        session.rollback()
        return _expired(exc if isinstance(exc, interactions.InteractionExpired)
                        else interactions.InteractionExpired())
    _recall(_PROOFS, interaction_id, forget=True)
    _recall(_CEREMONIES, interaction_id, forget=True)
    identity = session.get(Identity, use.identity_id, options=ONLY_IDENTITY)
    response = Response(render_template("login/emergency_done.html", view=step.view, identity=identity,
                                        until=use.session_until, selector=use.credential_id,
                                        next_url=interactions.resume_url(step.interaction)))
    login_session.set_cookie(response, rt.settings, cookie)
    return response


# --- WebAuthn (JSON, called by static/webauthn-login.js) -----------------------------------------------

@bp.post("/connexion/<interaction_id>/webauthn/options")
def webauthn_options(interaction_id: str) -> Response:
    """Start a WebAuthn ceremony: ``{"mode": "passwordless"}`` (discoverable credential, user verification
    required) or ``{"mode": "second_factor"}`` (the person's keys, presence enough). Returns
    ``{"publicKey": …}`` for ``PublicKeyCredential.parseRequestOptionsFromJSON``."""
    try:
        step = _load(interaction_id)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _json_error(exc.http_status, exc.code, exc.message)
    body = request.get_json(silent=True)
    mode = body.get("mode") if isinstance(body, dict) else None
    session = appctx.db_session()
    settings = appctx.runtime().settings
    try:
        if mode == "passwordless":
            challenge_id, options = webauthn.begin_authentication(session, settings, identity=None,
                                                                  require_uv=True)
            person = None
        elif mode == "second_factor" and step.stage == SECOND_FACTOR and step.identity is not None:
            # eidas3 (access policy): only a key that verifies the user reaches it.
            challenge_id, options = webauthn.begin_authentication(
                session, settings, identity=step.identity,
                require_uv=interactions.required_acr(step.interaction) == "eidas3")
            person = step.identity.id
        else:
            return _json_error(409, "wrong_step", _("Cette étape n'est plus d'actualité : rechargez la page."))
    except webauthn.WebAuthnError as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    session.commit()
    _remember(_CEREMONIES, interaction_id, {"challenge": challenge_id, "mode": mode, "person": person})
    return jsonify({"publicKey": options})


@bp.post("/connexion/<interaction_id>/webauthn")
def webauthn_complete(interaction_id: str) -> Response:
    """Finish the ceremony with the browser's ``credential.toJSON()``; returns ``{"location": …}``."""
    try:
        step = _load(interaction_id)
    except (interactions.InteractionNotFound, interactions.InteractionExpired) as exc:
        return _json_error(exc.http_status, exc.code, exc.message)
    ceremony = _recall(_CEREMONIES, interaction_id, forget=True)
    if not isinstance(ceremony, dict) or not isinstance(ceremony.get("challenge"), str):
        return _json_error(400, "no_ceremony", _("La demande a expiré : cliquez de nouveau sur le bouton de "
                                                 "la clé de sécurité."))
    mode = ceremony.get("mode")
    if mode == "second_factor" and (step.identity is None or step.identity.id != ceremony.get("person")):
        return _json_error(409, "wrong_step", _("Cette étape n'est plus d'actualité : rechargez la page."))
    credential = request.get_json(silent=True)
    if not isinstance(credential, dict):
        return _json_error(400, "invalid_response", webauthn.InvalidResponse.default_message)
    session = appctx.db_session()
    rt = appctx.runtime()
    try:
        result = webauthn.complete_authentication(session, rt.settings, ceremony["challenge"], credential,
                                                  client_ip=appctx.client_ip())
    except webauthn.WebAuthnError as exc:
        return _json_error(exc.http_status, exc.code, exc.message)
    try:
        if mode == "passwordless":
            if not result.user_verified:  # required by the ceremony: never a single factor here
                raise webauthn.UserVerificationRequired()
            interactions.record_login(session, step.interaction, result.identity_id, result.amr,
                                      client_ip=appctx.client_ip())
            _remember(_PROOFS, interaction_id, result.identity_id)
            identity = session.get(Identity, result.identity_id, options=ONLY_IDENTITY)
            step = dataclasses.replace(step, identity=identity)
        else:
            interactions.record_second_factor(session, step.interaction, result.amr,
                                              client_ip=appctx.client_ip())
        location, cookie = _advance(step)
    except webauthn.WebAuthnError as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    except interactions.LoginRefused as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, webauthn.CredentialUnknown.default_message)
    except (interactions.InteractionExpired, interactions.InteractionStateError) as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    response = jsonify({"location": location})
    if cookie is not None:
        login_session.set_cookie(response, rt.settings, cookie)
    return response
