"""Activation « Activer mon moyen d'identification » (``/activation``): the person redeems the code of their
activation sheet, binds an authenticator application (TOTP), sets a password if they have none and receives
their recovery codes.

The steps after the code are tied to the browser by a small record in the signed Flask session, written
only after a successful redemption: the case's public id, when the step began, the pending TOTP MIE and
how far the person went. It lives for :data:`STEP_MINUTES` minutes; the code itself is never stored.

The second factor is an authenticator application (TOTP, proven by a first valid code) or a security key
(WebAuthn with user verification, proven by a completed registration ceremony through the two JSON
endpoints that ``webauthn-register.js`` calls).

Forms are POSTed with their CSRF token and answered with a 303, except the pages that show a secret once
(the TOTP seed, the recovery codes): they are the response to their POST, marked ``no-store``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, jsonify, redirect, render_template, request, session as flask_session, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from hospiconnect import appctx
from hospiconnect.authenticators import recovery, webauthn
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.interfaces import InvalidLabel, MieNotFound, PasswordRejected
from hospiconnect.authenticators.models import Mie, RecoveryCode
from hospiconnect.authenticators.notifications import notify_event
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import ActivationCodeRefused, CaseNotFound
from hospiconnect.enrollment.models import EnrollmentCase
from hospiconnect.errors import HospiConnectError
from hospiconnect.ratelimit import Throttled, make_throttle
from hospiconnect.web.json_input import json_object

bp = Blueprint("activation", __name__, url_prefix="/activation")

FLOW_KEY = "activation_flow"
STEP_MINUTES = 30
MAX_CODE_CHARS = 100
MAX_TOTP_CHARS = 32
MAX_PASSWORD_CHARS = 1024
MIE_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
CHALLENGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A registration response is a few kilobytes; the WebAuthn layer refuses more than 64 KiB of credential.


@bp.after_request
def _no_store(response: Response) -> Response:
    # The seed, the recovery codes and the activation code itself pass through these pages.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _actor(identity: Identity) -> str:
    return f"person:{identity.user_name}"


# --- the server-side step ---------------------------------------------------------------------------------


def _flow() -> dict[str, Any] | None:
    """Return the activation step of this browser when it is recent, else None (and forget it)."""
    flow = flask_session.get(FLOW_KEY)
    if not isinstance(flow, dict) or not isinstance(flow.get("case"), str):
        return None
    try:
        started = dt.datetime.fromisoformat(str(flow.get("at")))
    except ValueError:
        started = None
    if started is None or utcnow() - started > dt.timedelta(minutes=STEP_MINUTES):
        flask_session.pop(FLOW_KEY, None)
        return None
    return flow


def _save(flow: dict[str, Any]) -> None:
    flask_session[FLOW_KEY] = dict(flow)


def begin_step(case: EnrollmentCase, *, via: str = "code") -> None:
    """Start this browser's activation step for ``case`` (state ``mie_issued``), after a redeemed activation
    code (``via="code"``) or a FranceConnect+ check (``via="fcplus"``); the person continues at
    ``/activation/moyen``."""
    flask_session.pop(FLOW_KEY, None)
    _save({"case": case.public_id, "at": utcnow().isoformat(), "mie": None, "activated": False,
           "codes": False, "via": via})


def _load() -> tuple[dict[str, Any], EnrollmentCase, Identity] | None:
    flow = _flow()
    if flow is None:
        return None
    session = appctx.db_session()
    try:
        case = enrollment.get_case(session, flow["case"])
    except CaseNotFound:
        flask_session.pop(FLOW_KEY, None)
        return None
    identity = session.get(Identity, case.identity_id)
    if identity is None:
        return None
    return flow, case, identity


def _step_lost() -> tuple[str, int]:
    return render_template("activation/lost.html", minutes=STEP_MINUTES), 400


def _seed_groups(uri: str) -> str:
    seed = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
    return " ".join(seed[i:i + 4] for i in range(0, len(seed), 4))


def _has_password(identity: Identity) -> bool:
    return any(m.type == "password" and m.status != "revoked"
               for m in mie_services.list_mie(appctx.db_session(), identity))


# --- the code ---------------------------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
def start() -> str:
    """The form for the activation code; ``?code=`` (from the sheet's QR code) fills it in."""
    code = request.args.get("code", "")[:MAX_CODE_CHARS]
    return render_template("activation/code.html", code=code, error=None)


@bp.post("", strict_slashes=False)
def redeem() -> Response | tuple[str, int]:
    """Spend the activation code and start the activation step."""
    rt = appctx.runtime()
    session = appctx.db_session()
    code = request.form.get("code", "")[:MAX_CODE_CHARS]
    try:
        case = enrollment.redeem_activation_code(session, rt.keys, code, client_ip=appctx.client_ip(),
                                                 throttle=make_throttle(rt.settings))
        session.commit()
    except Throttled as exc:
        session.rollback()
        return render_template("activation/code.html", code="", error=exc.message), 429
    except ActivationCodeRefused as exc:
        session.rollback()
        # The refused code is not shown back: it may be someone else's nearly-right code.
        return render_template("activation/code.html", code="", error=exc.message), exc.http_status
    begin_step(case)
    return redirect(url_for("activation.method"), 303)


# --- the second factor ------------------------------------------------------------------------------------


@bp.get("/moyen")
def method() -> Response | tuple[str, int] | str:
    """Choose the second factor (an authenticator application)."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, case, identity = loaded
    if flow.get("activated"):
        return redirect(url_for("activation.next_step"), 303)
    if case.state != wf.MIE_ISSUED:
        return _step_lost()
    return render_template("activation/method.html", person=identity, via=flow.get("via", "code"))


def _totp_page(mie: Mie, *, qr: str | None, uri: str | None, error: str | None,
               status: int = 200) -> tuple[str, int]:
    return render_template("activation/totp.html", mie=mie, qr=Markup(qr) if qr else None, uri=uri,
                           seed=_seed_groups(uri) if uri else None, error=error), status


@bp.post("/application")
def totp_begin() -> Response | tuple[str, int]:
    """Create a pending TOTP MIE and show its QR code once (again with a new seed on « Recommencer »)."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, case, identity = loaded
    if flow.get("activated") or case.state != wf.MIE_ISSUED:
        return redirect(url_for("activation.next_step"), 303)
    rt = appctx.runtime()
    session = appctx.db_session()
    actor = _actor(identity)
    previous = flow.get("mie")
    if isinstance(previous, str) and MIE_ID_RE.fullmatch(previous):
        # A restart abandons the seed shown before: only one pending application per activation.
        try:
            old = mie_services.get_mie(session, identity, previous)
            if old.type == "totp" and old.status == "pending":
                mie_services.remove(session, old, actor=actor, reason="activation recommencée",
                                    client_ip=appctx.client_ip())
        except MieNotFound:
            pass
    mie, uri, svg = mie_services.begin_totp(session, identity, label=mie_services.DEFAULT_LABELS["totp"],
                                            actor=actor, keys=rt.keys, issuer=rt.settings.establishment_name,
                                            client_ip=appctx.client_ip())
    session.commit()
    flow["mie"] = mie.public_id
    _save(flow)
    return _totp_page(mie, qr=svg, uri=uri, error=None)


@bp.post("/application/confirmer")
def totp_confirm() -> Response | tuple[str, int]:
    """Check the first code of the application, then activate the MIE for the case."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, case, identity = loaded
    if flow.get("activated"):
        return redirect(url_for("activation.next_step"), 303)
    mie_id = flow.get("mie")
    if not isinstance(mie_id, str):
        return redirect(url_for("activation.method"), 303)
    session = appctx.db_session()
    actor = _actor(identity)
    code = request.form.get("code", "")[:MAX_TOTP_CHARS]
    try:
        mie = mie_services.confirm_totp(session, identity, mie_id, code, actor=actor, keys=appctx.runtime().keys,
                                        client_ip=appctx.client_ip())
        enrollment.activate_mie(session, case, mie, actor=actor, client_ip=appctx.client_ip())
        session.commit()
    except MieNotFound:
        session.rollback()
        return redirect(url_for("activation.method"), 303)
    except HospiConnectError as exc:
        session.rollback()
        try:
            pending = mie_services.get_mie(session, identity, mie_id)
        except MieNotFound:
            return redirect(url_for("activation.method"), 303)
        return _totp_page(pending, qr=None, uri=None, error=exc.message, status=400)
    flow["activated"] = True
    _save(flow)
    return redirect(url_for("activation.next_step"), 303)


# --- security key (WebAuthn) ----------------------------------------------------------------------------


def _json_error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": code, "message": message, **extra}), status


def _json_step() -> tuple[tuple[dict[str, Any], EnrollmentCase, Identity] | None, tuple[Response, int] | None]:
    """The activation step for a JSON endpoint: ``(loaded step, None)`` or ``(None, JSON error to answer)``."""
    loaded = _load()
    if loaded is None:
        return None, _json_error(400, "step_lost", _("Cette étape de l'activation n'est plus disponible : "
                                                     "recommencez avec votre code d'activation."))
    flow, case, _identity = loaded
    if flow.get("activated") or case.state != wf.MIE_ISSUED:
        return None, _json_error(409, "already_activated", _("Votre moyen d'identification est déjà activé."),
                                 redirect=url_for("activation.next_step"))
    return loaded, None


@bp.get("/cle")
def key() -> tuple[str, int] | str:
    """The page that names the key; ``webauthn-register.js`` runs the ceremony."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, case, _identity = loaded
    if flow.get("activated") or case.state != wf.MIE_ISSUED:
        return _step_lost()
    return render_template("activation/key.html", label=mie_services.DEFAULT_LABELS["webauthn"])


@bp.post("/cle/options")
def key_options() -> Response | tuple[Response, int]:
    """Start a registration: JSON ``{challengeId, publicKey}``. User verification is required, as on
    « Mes moyens d'identification »: the key may later be used alone for a passwordless sign-in."""
    loaded, error = _json_step()
    if loaded is None:
        assert error is not None
        return error
    _flow, _case, identity = loaded
    session = appctx.db_session()
    try:
        challenge_id, options = webauthn.begin_registration(session, identity, appctx.runtime().settings,
                                                            require_uv=True)
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    return jsonify({"challengeId": challenge_id, "publicKey": options})


@bp.post("/cle")
def key_register() -> Response | tuple[Response, int]:
    """Finish the registration (``{challengeId, label, credential}``) and activate the key for the case."""
    loaded, error = _json_step()
    if loaded is None:
        assert error is not None
        return error
    flow, case, identity = loaded
    body = json_object()
    if body is None:
        return _json_error(400, "invalid_request", _("La demande est mal formée. Rechargez la page et recommencez."))
    label = body.get("label")
    try:
        label = mie_services.validate_label(label if isinstance(label, str) else "")
    except InvalidLabel as exc:
        return _json_error(400, exc.code, exc.message, field="label")
    challenge_id = body.get("challengeId")
    # Anything but URL-safe base64 (a NUL byte would be a DataError on PostgreSQL) becomes an unknown id.
    if not isinstance(challenge_id, str) or not CHALLENGE_ID_RE.fullmatch(challenge_id):
        challenge_id = ""
    session = appctx.db_session()
    actor = _actor(identity)
    try:
        mie = webauthn.complete_registration(session, identity, appctx.runtime().settings, challenge_id,
                                             body.get("credential"),  # type: ignore[arg-type]
                                             label=label, actor=actor, client_ip=appctx.client_ip())
        enrollment.activate_mie(session, case, mie, actor=actor, client_ip=appctx.client_ip())
        notify_event(session, identity, "activated", kind="webauthn", label=mie.label)
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _json_error(exc.http_status, exc.code, exc.message)
    flow["activated"] = True
    _save(flow)
    return jsonify({"ok": True, "mie": mie.public_id, "label": mie.label,
                    "redirect": url_for("activation.next_step")}), 201


# --- password and recovery codes -------------------------------------------------------------------------


@bp.get("/suite")
def next_step() -> Response | tuple[str, int] | str:
    """After the second factor: the password form when there is none, else the recovery codes offer."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, _case, identity = loaded
    if not flow.get("activated"):
        return redirect(url_for("activation.method"), 303)
    if not _has_password(identity):
        return render_template("activation/password.html", person=identity, errors=[])
    if not flow.get("codes"):
        return render_template("activation/codes_offer.html", count=recovery.COUNT)
    return redirect(url_for("activation.done"), 303)


@bp.post("/mot-de-passe")
def password() -> Response | tuple[str, int]:
    """Set the first password."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, _case, identity = loaded
    if not flow.get("activated") or _has_password(identity):
        return redirect(url_for("activation.next_step"), 303)
    new = request.form.get("password", "")[:MAX_PASSWORD_CHARS]
    confirmation = request.form.get("confirmation", "")[:MAX_PASSWORD_CHARS]
    if new != confirmation:
        return render_template("activation/password.html", person=identity,
                               errors=[_("Les deux saisies ne sont pas identiques.")]), 400
    session = appctx.db_session()
    try:
        mie_services.set_password(session, identity, new, actor=_actor(identity),
                                  establishment_name=appctx.runtime().settings.establishment_name,
                                  client_ip=appctx.client_ip())
        session.commit()
    except PasswordRejected as exc:
        session.rollback()
        return render_template("activation/password.html", person=identity, errors=exc.messages), 400
    return redirect(url_for("activation.next_step"), 303)


@bp.post("/codes-de-secours")
def codes() -> Response | tuple[str, int]:
    """Generate the recovery codes and show them once."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, case, identity = loaded
    if not flow.get("activated") or flow.get("codes"):
        return redirect(url_for("activation.next_step"), 303)
    session = appctx.db_session()
    # The browser's record says the codes are still to be given; the database decides: a replayed older
    # cookie must not hand out (and replace) the codes a second time.
    latest = session.scalar(select(func.max(RecoveryCode.created_at)).where(RecoveryCode.identity_id == identity.id))
    if latest is not None and case.activated_at is not None and latest >= case.activated_at:
        flow["codes"] = True
        _save(flow)
        return redirect(url_for("activation.next_step"), 303)
    new_codes = mie_services.generate_recovery_codes(session, identity, actor=_actor(identity),
                                                     keys=appctx.runtime().keys, client_ip=appctx.client_ip())
    session.commit()
    flow["codes"] = True
    _save(flow)
    return render_template("activation/codes.html", codes=new_codes), 200


@bp.get("/terminee")
def done() -> Response | tuple[str, int] | str:
    """What the person can now do; the activation step ends here."""
    loaded = _load()
    if loaded is None:
        return _step_lost()
    flow, _case, identity = loaded
    if not flow.get("activated"):
        return redirect(url_for("activation.method"), 303)
    if not flow.get("codes") or not _has_password(identity):
        return redirect(url_for("activation.next_step"), 303)
    flask_session.pop(FLOW_KEY, None)
    return render_template("activation/done.html", person=identity, via=flow.get("via", "code"))
