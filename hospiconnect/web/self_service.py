"""Self-service page « Mes moyens d'identification » (``/mes-moyens``): a person manages their own MIE.

It lives in the web layer because it needs the SSO session (:mod:`hospiconnect.idp.login_session`) and the
MIE layer may not import the identity provider. The page lists the person's MIE with their dates, lets
them add an authenticator application (TOTP) or a security key (WebAuthn), rename and remove their second
factors, regenerate their recovery codes, and shows their recent sign-ins from the journal.

Who may do what is decided in one place, :func:`denial_for` (pure):

* viewing needs a live SSO session — nothing else;
* adding a factor needs two factors verified within ``settings.recent_mfa_minutes``, or a session opened
  with a recovery code in that window (its very purpose is to bind a replacement; SECURITY.md item 17);
* renaming, removing and regenerating recovery codes need two factors verified within that window; a
  recovery-code session may not do them.

Every change is journaled and notified by the services. Forms are POSTed with their CSRF token and answered
with a 303, except the two pages that show a secret once (the new TOTP seed, the new recovery codes): they
are the response to their POST, marked ``no-store``, because a redirect would have to carry the secret in
a URL or a cookie. The security-key ceremony uses two JSON endpoints called by ``webauthn-register.js``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import uuid
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from hospiconnect import appctx
from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators import recovery, services, webauthn
from hospiconnect.authenticators.interfaces import InvalidCode, InvalidLabel, LastSecondFactor, MieNotFound
from hospiconnect.authenticators.models import Mie, WebAuthnCredential
from hospiconnect.authenticators.notifications import notify_event
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import national
from hospiconnect.errors import Conflict, HospiConnectError
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.web import psc_pages
from hospiconnect.web.json_input import json_object

bp = Blueprint("mie", __name__, url_prefix="/mes-moyens")

PARIS = ZoneInfo("Europe/Paris")
RECENT_SIGNINS = 20
# The journal is read newest first and filtered on "authn:" tags; this many of the person's latest events
# are enough to find the last sign-ins even after a burst of MIE changes.
JOURNAL_SCAN = 300
# A registration response is a few kilobytes; the WebAuthn layer refuses more than 64 KiB of credential.
MAX_CODE_CHARS = 32
REFUSED_TAG = "mie:self_service:refused"
CHALLENGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
JSON_ENDPOINTS = frozenset({"mie.key_options", "mie.key_register"})

Action = Literal["view", "add", "change"]
VIEW: Action = "view"
ADD: Action = "add"
CHANGE: Action = "change"

TYPE_LABELS = {"password": "Mot de passe", "totp": "Application d'authentification (TOTP)",
               "webauthn": "Clé de sécurité", "platform": "Authentificateur de l'appareil",
               "cps": "Carte CPS (Pro Santé Connect)", "e-cps": "Application e-CPS (Pro Santé Connect)"}
STATUS_LABELS = {"pending": "En attente de confirmation", "active": "Actif", "suspended": "Suspendu",
                 "revoked": "Retiré"}
FACTOR_LABELS = {"password": "Mot de passe", "totp": "Application d'authentification",
                 "webauthn": "Clé de sécurité", "recovery": "Code de secours", "recovery_code": "Code de secours"}
AMR_LABELS = {"pwd": "mot de passe", "otp": "application d'authentification", "hwk": "clé de sécurité",
              "swk": "authentificateur logiciel"}
OUTCOME_LABELS = {"success": "Réussi", "failure": "Échec", "refused": "Refusé", "info": "Information"}
EVENT_LABELS = {
    "authn:password:success": "Mot de passe vérifié",
    "authn:password:failure": "Mot de passe refusé",
    "authn:totp:success": "Code de l'application vérifié",
    "authn:totp:failure": "Code de l'application refusé",
    "authn:webauthn:success": "Clé de sécurité vérifiée",
    "authn:webauthn:failure": "Clé de sécurité refusée",
    "authn:webauthn:counter_regression": "Clé de sécurité refusée (copie possible)",
    "authn:recovery_code:used": "Code de secours utilisé",
    "authn:recovery_code:failure": "Code de secours refusé",
    "authn:account:locked": "Compte verrouillé temporairement",
    "authn:session:opened": "Connexion ouverte",
    "authn:session:renewed": "Nouvelle identification",
    "authn:session:raised": "Second facteur ajouté à la connexion",
    "authn:session:ended": "Déconnexion",
    "authn:interaction:started": "Demande de connexion d'une application",
    "authn:interaction:login": "Identification pour une application",
    "authn:interaction:second_factor": "Second facteur vérifié pour une application",
    "authn:interaction:completed": "Connexion à une application",
    "authn:interaction:replayed": "Demande de connexion rejouée (refusée)",
}

REAUTH_LEAD = "Pour modifier vos moyens d'identification, reconnectez-vous avec deux facteurs"
REAUTH_MESSAGES = {
    "mfa_not_recent": REAUTH_LEAD + ".",
    "no_second_factor": ("Votre compte n'a pas encore de second facteur : le premier vous est remis lors d'une "
                         "vérification de votre identité auprès du service d'enrôlement de l'établissement."),
    "recovery_only": ("Vous êtes connecté(e) avec un code de secours : vous pouvez consulter cette page et ajouter "
                      "un nouveau moyen d'identification, rien d'autre. " + REAUTH_LEAD + "."),
    "recovery_not_recent": ("Votre connexion avec un code de secours date de plus de quelques minutes. "
                            "Reconnectez-vous avec votre code de secours, puis ajoutez votre nouveau moyen "
                            "d'identification sans attendre."),
}


# --- who may do what (pure) ----------------------------------------------------------------------------


def denial_for(action: Action, *, recovery_only: bool, mfa_time: dt.datetime | None, auth_time: dt.datetime,
               now: dt.datetime, recent_minutes: int) -> str | None:
    """Return why the session may not do ``action`` now, or None when it may.

    Reasons: ``recovery_only`` (a recovery-code session may only view and add), ``recovery_not_recent`` (the
    recovery-code sign-in is older than ``recent_minutes``), ``mfa_not_recent`` (no second factor verified
    within ``recent_minutes``). A recent sign-in is asked for because a session left open on a shared
    workstation must not be enough to bind or remove a factor.
    """
    if action == VIEW:
        return None
    window = dt.timedelta(minutes=recent_minutes)
    if recovery_only:
        if action != ADD:
            return "recovery_only"
        return None if now - auth_time <= window else "recovery_not_recent"
    if mfa_time is not None and now - mfa_time <= window:
        return None
    return "mfa_not_recent"


# --- request plumbing ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Viewer:
    """The person on the page and their SSO session."""

    sso: SsoSession
    identity: Identity

    @property
    def actor(self) -> str:
        return self.identity.user_name


def _viewer() -> Viewer:
    viewer: Viewer = g.mie_viewer
    return viewer


def _wants_json() -> bool:
    return request.endpoint in JSON_ENDPOINTS


def _json_error(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


@bp.before_request
def _load_viewer() -> Response | tuple[str, int] | None:
    """Find the live SSO session of the browser; without one, explain how to sign in (401)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    sso = login_session.current(session, rt.keys, rt.settings,
                                request.cookies.get(login_session.cookie_name(rt.settings)))
    # Commit now: the activity (or the end of a session found dead) is recorded whatever the view decides.
    session.commit()
    identity = session.get(Identity, sso.identity_id) if sso is not None else None
    if sso is None or identity is None:
        if _wants_json():
            return _json_error(401, "session_required",
                               _("Votre session a pris fin : connectez-vous de nouveau depuis une application."))
        return render_template("mie/signin_required.html"), 401
    g.mie_viewer = Viewer(sso, identity)
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    # Personal data, and twice a secret shown once: never kept by a cache or the browser's history.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.app_template_filter("mie_datetime")
def _mie_datetime(value: dt.datetime | None) -> str:
    """Format a UTC timestamp in the establishment's time zone, « — » when there is none."""
    if value is None:
        return "—"
    return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def _denial(action: Action) -> str | None:
    viewer = _viewer()
    rt = appctx.runtime()
    reason = denial_for(action, recovery_only=viewer.sso.recovery_only, mfa_time=viewer.sso.mfa_time,
                        auth_time=viewer.sso.auth_time, now=utcnow(),
                        recent_minutes=rt.settings.recent_mfa_minutes)
    if reason == "mfa_not_recent" and not services.has_second_factor(appctx.db_session(), viewer.identity):
        reason = "no_second_factor"
    return reason


def _require(action: Action) -> Response | tuple[str, int] | None:
    """Return the refusal to send when the session may not do ``action``, or None to go on.

    A refused attempt to change something (a POST) is journaled: it is a security decision.
    """
    reason = _denial(action)
    if reason is None:
        return None
    viewer = _viewer()
    if request.method == "POST":
        session = appctx.db_session()
        session.rollback()
        audit.record(session, REFUSED_TAG, actor=viewer.actor, subject=viewer.identity.public_id,
                     client_ip=appctx.client_ip(), outcome="refused",
                     details={"action": request.endpoint, "reason": reason, "sid": viewer.sso.sid})
        session.commit()
    message = REAUTH_MESSAGES[reason]
    if _wants_json():
        return _json_error(403, "reauthentication_required", message, reason=reason)
    return render_template("mie/reauth.html", reason=reason, message=message, lead=REAUTH_LEAD,
                           recent_minutes=appctx.runtime().settings.recent_mfa_minutes), 403


def _to_index() -> Response:
    return redirect(url_for("mie.index"), code=303)


# --- what the page shows -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MieRow:
    """One MIE as the list shows it."""

    public_id: str
    type: str
    type_label: str
    label: str
    status: str
    status_label: str
    created_at: dt.datetime
    activated_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    user_verified: bool
    is_second_factor: bool


@dataclasses.dataclass(frozen=True)
class SignInRow:
    """One journal entry of the « Mes connexions récentes » table."""

    occurred_at: dt.datetime
    event: str
    factor: str
    outcome: str
    outcome_label: str
    client_ip: str


def _webauthn_attachments(session: Session, mies: list[Mie]) -> dict[int, str | None]:
    """Return the authenticator attachment (platform / cross-platform) of each WebAuthn MIE, by MIE id."""
    ids = [m.id for m in mies if m.type == "webauthn"]
    if not ids:
        return {}
    rows = session.execute(select(WebAuthnCredential.mie_id, WebAuthnCredential.attachment)
                           .where(WebAuthnCredential.mie_id.in_(ids))).all()
    return {row.mie_id: row.attachment for row in rows}


def _type_label(mie: Mie, attachment: str | None) -> str:
    if mie.type == "webauthn" and attachment == "platform":
        return TYPE_LABELS["platform"]
    return TYPE_LABELS.get(mie.type, mie.type)


def _rows(session: Session, mies: list[Mie]) -> list[MieRow]:
    attachments = _webauthn_attachments(session, mies)
    return [MieRow(public_id=m.public_id, type=m.type, type_label=_type_label(m, attachments.get(m.id)),
                   label=m.label, status=m.status, status_label=STATUS_LABELS.get(m.status, m.status),
                   created_at=m.created_at, activated_at=m.activated_at, last_used_at=m.last_used_at,
                   revoked_at=m.revoked_at, user_verified=m.type == "webauthn" and "pin" in m.amr,
                   is_second_factor=m.is_second_factor) for m in mies]


def _factor_of(event: AuditEvent, details: dict[str, Any]) -> str:
    factor = details.get("factor")
    if isinstance(factor, str) and factor in FACTOR_LABELS:
        return FACTOR_LABELS[factor]
    subject = event.tag.split(":")[1]
    if subject in FACTOR_LABELS:
        return FACTOR_LABELS[subject]
    amr = details.get("amr")
    if isinstance(amr, list):
        names = [AMR_LABELS[v] for v in amr if isinstance(v, str) and v in AMR_LABELS]
        if names:
            return ", ".join(names).capitalize()
    return "—"


def _recent_signins(session: Session, identity: Identity) -> list[SignInRow]:
    rows: list[SignInRow] = []
    for event in audit.recent(session, subject=identity.public_id, limit=JOURNAL_SCAN):
        if not event.tag.startswith("authn:"):
            continue
        try:
            details = json.loads(event.details or "{}")
        except ValueError:
            details = {}
        if not isinstance(details, dict):
            details = {}
        rows.append(SignInRow(occurred_at=event.occurred_at, event=EVENT_LABELS.get(event.tag, event.tag),
                              factor=_factor_of(event, details), outcome=event.outcome,
                              outcome_label=OUTCOME_LABELS.get(event.outcome, event.outcome),
                              client_ip=event.client_ip or "—"))
        if len(rows) == RECENT_SIGNINS:
            break
    return rows


def _checked_id(public_id: str) -> str:
    """Return ``public_id`` when it has the shape of an MIE id (a UUID); raise :class:`MieNotFound` otherwise.

    Checked before any query: PostgreSQL refuses some characters outright (a NUL byte is a DataError), and
    a malformed id must give the same 404 as an unknown one.
    """
    try:
        if str(uuid.UUID(public_id)) == public_id:
            return public_id
    except ValueError:
        pass
    raise MieNotFound()


def _own_changeable(session: Session, identity: Identity, public_id: str) -> Mie:
    """Return the person's MIE ``public_id`` when it is a second factor that is not retired.

    Raises :class:`MieNotFound` (unknown or someone else's: 404) or :class:`Conflict`.
    """
    mie = services.get_mie(session, identity, _checked_id(public_id))
    if not mie.is_second_factor:
        raise Conflict(_("Le mot de passe ne se renomme pas et ne se retire pas depuis cette page."))
    if mie.status == "revoked":
        raise Conflict(_("Ce moyen d'identification est retiré : il ne peut plus être modifié."))
    return mie


def _is_last_second_factor(session: Session, identity: Identity, mie: Mie) -> bool:
    if mie.status != "active" or not mie.is_second_factor:
        return False
    return not any(m.id != mie.id and m.is_second_factor for m in services.active_mie_for(session, identity))


# --- the list --------------------------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
def index() -> Response:
    """The list of the person's MIE, recovery codes and recent sign-ins."""
    viewer = _viewer()
    session = appctx.db_session()
    rows = _rows(session, services.list_mie(session, viewer.identity))
    current = [r for r in rows if r.status != "revoked"]
    active_second = [r for r in current if r.is_second_factor and r.status == "active"]
    settings = appctx.runtime().settings
    national_panel = {"enabled": settings.psc_enabled, "link": national.live_link(session, viewer.identity)}
    page = render_template(
        "mie/index.html", viewer=viewer, rows=current, national=national_panel, revoked=[r for r in rows if r.status == "revoked"],
        last_second_factor=active_second[0].public_id if len(active_second) == 1 else None,
        remaining_codes=services.remaining_recovery_codes(session, viewer.identity), total_codes=recovery.COUNT,
        signins=_recent_signins(session, viewer.identity), add_denied=_denial(ADD), change_denied=_denial(CHANGE),
        recent_minutes=settings.recent_mfa_minutes)
    response = Response(page, mimetype="text/html")
    # The « Associer mon identité nationale » form is answered by a redirect to Pro Santé Connect.
    response.headers["Content-Security-Policy"] = psc_pages.csp_with_provider(settings)
    return response


@bp.post("/identite-nationale")
def national_pairing() -> Response | tuple[str, int]:
    """« Associer mon identité nationale »: two factors verified recently, then off to Pro Santé Connect."""
    denied = _require(CHANGE)
    if denied is not None:
        return denied
    viewer = _viewer()
    if national.live_link(appctx.db_session(), viewer.identity) is not None:
        return _to_index()
    return psc_pages.start_pairing(viewer.identity, viewer.actor)


# --- authenticator application (TOTP) -----------------------------------------------------------------------


def _seed_groups(uri: str) -> str:
    """Return the seed of an ``otpauth://`` URI in groups of four, for typing it by hand."""
    seed = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
    return " ".join(seed[i:i + 4] for i in range(0, len(seed), 4))


@bp.get("/application")
def totp_start() -> str | Response | tuple[str, int]:
    """Ask for a name before creating the seed."""
    denied = _require(ADD)
    if denied is not None:
        return denied
    return render_template("mie/totp_start.html", label=services.DEFAULT_LABELS["totp"], errors={})


@bp.post("/application")
def totp_begin() -> Response | tuple[str, int]:
    """Create a pending TOTP MIE and show its QR code once.

    ``replace`` names a pending TOTP MIE of the person to abandon first (the « Recommencer » button).
    """
    denied = _require(ADD)
    if denied is not None:
        return denied
    viewer = _viewer()
    rt = appctx.runtime()
    session = appctx.db_session()
    label = request.form.get("label", "")
    try:
        # An empty name is refused here as on the other forms (the service would silently use a default).
        label = services.validate_label(label)
        replace = request.form.get("replace")
        if replace:
            old = services.get_mie(session, viewer.identity, _checked_id(replace))
            if old.type == "totp" and old.status == "pending":
                services.remove(session, old, actor=viewer.actor, reason="ajout recommencé",
                                client_ip=appctx.client_ip())
        mie, uri, svg = services.begin_totp(session, viewer.identity, label=label, actor=viewer.actor,
                                            keys=rt.keys, issuer=rt.settings.establishment_name,
                                            client_ip=appctx.client_ip())
        session.commit()
    except InvalidLabel as exc:
        session.rollback()
        return render_template("mie/totp_start.html", label=label[:200], errors={"label": exc.message}), 400
    # The SVG is built by segno from our own URI: markup we produced, not user input.
    return render_template("mie/totp_setup.html", mie=mie, qr=Markup(svg), uri=uri, seed=_seed_groups(uri),
                           errors={}), 200


@bp.post("/application/<public_id>")
def totp_confirm(public_id: str) -> Response | tuple[str, int]:
    """Activate the pending TOTP MIE with the first code the application shows."""
    denied = _require(ADD)
    if denied is not None:
        return denied
    viewer = _viewer()
    rt = appctx.runtime()
    session = appctx.db_session()
    code = request.form.get("code", "")[:MAX_CODE_CHARS]
    public_id = _checked_id(public_id)
    try:
        mie = services.confirm_totp(session, viewer.identity, public_id, code, actor=viewer.actor, keys=rt.keys,
                                    client_ip=appctx.client_ip())
        session.commit()
    except InvalidCode as exc:
        session.rollback()
        mie = services.get_mie(session, viewer.identity, public_id)
        return render_template("mie/totp_setup.html", mie=mie, qr=None, uri=None, seed=None,
                               errors={"code": exc.message}), 400
    flash(_("L'application d'authentification « %(label)s » est activée.", label=mie.label), "success")
    return _to_index()


# --- security key (WebAuthn) ------------------------------------------------------------------------------


@bp.get("/cle")
def key() -> str | Response | tuple[str, int]:
    """The page that names the new key; ``webauthn-register.js`` runs the ceremony."""
    denied = _require(ADD)
    if denied is not None:
        return denied
    return render_template("mie/key.html", label=services.DEFAULT_LABELS["webauthn"])


@bp.post("/cle/options")
def key_options() -> Response | tuple[str, int]:
    """Start a registration: JSON ``{challengeId, publicKey}`` for ``parseCreationOptionsFromJSON``.

    User verification is required: a key registered here may be used alone for a passwordless sign-in,
    which counts as two factors only with UV (SECURITY.md item 12).
    """
    denied = _require(ADD)
    if denied is not None:
        return denied
    viewer = _viewer()
    session = appctx.db_session()
    try:
        challenge_id, options = webauthn.begin_registration(session, viewer.identity, appctx.runtime().settings,
                                                            require_uv=True)
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    return jsonify({"challengeId": challenge_id, "publicKey": options})


@bp.post("/cle")
def key_register() -> Response | tuple[str, int]:
    """Finish a registration: JSON ``{challengeId, label, credential}`` (``credential.toJSON()``)."""
    denied = _require(ADD)
    if denied is not None:
        return denied
    body = json_object()
    if body is None:
        return _json_error(400, "invalid_request",
                           _("La demande est mal formée. Rechargez la page et recommencez."))
    label = body.get("label")
    if not isinstance(label, str):
        return _json_error(400, InvalidLabel.code, _("Donnez un nom à cette clé."), field="label")
    try:
        # Checked before the ceremony is consumed, so the person can correct the name and try again.
        label = services.validate_label(label)
    except InvalidLabel as exc:
        return _json_error(400, exc.code, exc.message, field="label")
    # Challenge ids are URL-safe base64; anything else (a NUL byte would be a DataError on PostgreSQL) is
    # passed on as an empty id, which the WebAuthn layer refuses and journals as an unknown challenge.
    challenge_id = body.get("challengeId")
    if not isinstance(challenge_id, str) or not CHALLENGE_ID_RE.fullmatch(challenge_id):
        challenge_id = ""
    viewer = _viewer()
    session = appctx.db_session()
    try:
        mie = webauthn.complete_registration(session, viewer.identity, appctx.runtime().settings, challenge_id,
                                             body.get("credential"),  # type: ignore[arg-type]
                                             label=label, actor=viewer.actor, client_ip=appctx.client_ip())
        # The WebAuthn layer journals the registration; the person is told here, like for every other MIE.
        notify_event(session, viewer.identity, "activated", kind="webauthn", label=mie.label)
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    flash(_("La clé « %(label)s » est enregistrée.", label=mie.label), "success")
    return _json_ok(mie)


def _json_ok(mie: Mie) -> Response:
    response = jsonify({"ok": True, "mie": mie.public_id, "label": mie.label, "redirect": url_for("mie.index")})
    response.status_code = 201
    return response


# --- rename and remove --------------------------------------------------------------------------------------


@bp.get("/<public_id>/renommer")
def rename_form(public_id: str) -> str | Response | tuple[str, int]:
    """Ask for the new name of a second factor."""
    denied = _require(CHANGE)
    if denied is not None:
        return denied
    mie = _own_changeable(appctx.db_session(), _viewer().identity, public_id)
    return render_template("mie/rename.html", mie=mie, label=mie.label, errors={})


@bp.post("/<public_id>/renommer")
def rename(public_id: str) -> Response | tuple[str, int]:
    """Rename a second factor."""
    denied = _require(CHANGE)
    if denied is not None:
        return denied
    viewer = _viewer()
    session = appctx.db_session()
    mie = _own_changeable(session, viewer.identity, public_id)
    label = request.form.get("label", "")
    try:
        services.rename(session, mie, label, actor=viewer.actor, client_ip=appctx.client_ip())
        session.commit()
    except InvalidLabel as exc:
        session.rollback()
        return render_template("mie/rename.html", mie=mie, label=label[:200], errors={"label": exc.message}), 400
    flash(_("Le moyen d'identification s'appelle désormais « %(label)s ».", label=mie.label), "success")
    return _to_index()


def _removal_action(mie: Mie) -> Action:
    # Abandoning a TOTP whose setup was never confirmed belongs to adding a factor.
    return ADD if mie.status == "pending" else CHANGE


def _end_other_sessions(session: Session, viewer: Viewer) -> int:
    """End the person's other SSO sessions (another workstation may hold the removed factor's session)."""
    rt = appctx.runtime()
    others = session.scalars(select(SsoSession).where(SsoSession.identity_id == viewer.identity.id,
                                                      SsoSession.ended_at.is_(None),
                                                      SsoSession.id != viewer.sso.id)).all()
    return sum(login_session.end(session, sso, reason="mie_removed", actor=viewer.actor, keys=rt.keys,
                                 settings=rt.settings) for sso in others)


@bp.get("/<public_id>/retirer")
def remove_form(public_id: str) -> str | Response | tuple[str, int]:
    """Confirm the removal, or explain why this factor cannot be removed."""
    viewer = _viewer()
    session = appctx.db_session()
    mie = _own_changeable(session, viewer.identity, public_id)
    denied = _require(_removal_action(mie))
    if denied is not None:
        return denied
    blocked = LastSecondFactor().message if _is_last_second_factor(session, viewer.identity, mie) else None
    return render_template("mie/remove.html", mie=mie, blocked=blocked)


@bp.post("/<public_id>/retirer")
def remove(public_id: str) -> Response | tuple[str, int]:
    """Remove a second factor (never the last active one), and optionally end the other sessions."""
    viewer = _viewer()
    session = appctx.db_session()
    mie = _own_changeable(session, viewer.identity, public_id)
    denied = _require(_removal_action(mie))
    if denied is not None:
        return denied
    pending = mie.status == "pending"
    try:
        services.remove(session, mie, actor=viewer.actor, reason="retrait par la personne",
                        client_ip=appctx.client_ip())
    except LastSecondFactor as exc:
        session.rollback()
        return render_template("mie/remove.html", mie=mie, blocked=exc.message), 409
    ended = _end_other_sessions(session, viewer) if request.form.get("end_other_sessions") == "1" else 0
    session.commit()
    if pending:
        flash(_("L'ajout de « %(label)s » est abandonné.", label=mie.label), "success")
    elif ended:
        flash(_("« %(label)s » est retiré. Vos autres sessions ouvertes (%(n)d) sont fermées.",
                label=mie.label, n=ended), "success")
    else:
        flash(_("« %(label)s » est retiré : il ne permet plus de vous connecter.", label=mie.label), "success")
    return _to_index()


# --- recovery codes --------------------------------------------------------------------------------------------


@bp.get("/codes-de-secours")
def recovery_form() -> str | Response | tuple[str, int]:
    """Explain what regenerating does before doing it."""
    denied = _require(CHANGE)
    if denied is not None:
        return denied
    remaining = services.remaining_recovery_codes(appctx.db_session(), _viewer().identity)
    return render_template("mie/recovery_confirm.html", remaining=remaining, total=recovery.COUNT)


@bp.post("/codes-de-secours")
def recovery_generate() -> Response | tuple[str, int]:
    """Replace the recovery codes and show the new ones, once."""
    denied = _require(CHANGE)
    if denied is not None:
        return denied
    viewer = _viewer()
    session = appctx.db_session()
    codes = services.generate_recovery_codes(session, viewer.identity, actor=viewer.actor,
                                             keys=appctx.runtime().keys, client_ip=appctx.client_ip())
    session.commit()
    return render_template("mie/recovery_codes.html", codes=codes, identity=viewer.identity,
                           generated_at=utcnow()), 200
