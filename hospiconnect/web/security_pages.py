"""Security pages: emergency access (« bris de glace », ``/bris-de-glace``) and the RSSI's pages (``/securite``:
review of emergency credentials, exceptions to the access policy).

Access follows the enrollment desk's rule (:func:`hospiconnect.web.enrollment_common.access_denial`) with the
role of each area — ``emergency_officer`` for /bris-de-glace, ``rssi`` for /securite — and a second factor
verified within ``settings.recent_mfa_minutes``; a recovery-code session, and any session opened with an
emergency credential, never opens them. The rules, the refusals and the journal live in the services
(:mod:`hospiconnect.authenticators.emergency`, :mod:`hospiconnect.authorizations.services`); this module reads
forms, calls them and renders French pages.

Forms are POSTed with their CSRF token and answered with a 303, except the emergency code: it is the response to
its POST, marked ``no-store``, because it is shown once and a redirect would have to carry it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from hospiconnect import appctx, policies_runtime
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators.models import EmergencyCredential
from hospiconnect.authorizations import services as exceptions
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
from hospiconnect.directory.validation import CONTRACT_TYPES
from hospiconnect.errors import HospiConnectError, NotFound, ValidationError
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.policies.policy import zone
from hospiconnect.web.enrollment_common import (
    MAX_FIELD_CHARS,
    PARIS,
    PUBLIC_ID_RE,
    SEARCH_LIMIT,
    access_denial,
    clean,
    officer_actor,
    search_query,
)

emergency_bp = Blueprint("breakglass", __name__, url_prefix="/bris-de-glace")
security_bp = Blueprint("security", __name__, url_prefix="/securite")

RSSI_ROLE = "rssi"
ROLE_LABELS = {emergency.OFFICER_ROLE: "agent d'astreinte (accès d'urgence)",
               RSSI_ROLE: "responsable de la sécurité du système d'information (RSSI)"}
AREA_TITLES = {emergency.OFFICER_ROLE: "Accès d'urgence", RSSI_ROLE: "Sécurité"}
EXCEPTION_STATE_LABELS = {"active": "en vigueur", "scheduled": "à venir", "expired": "terminée",
                          "revoked": "révoquée"}
IDENTITY_STATUS_LABELS = {"pending": "En attente", "active": "Active", "suspended": "Suspendue", "departed": "Partie"}
# Free text (reasons, comments): longer than any service accepts, so that an over-long entry is refused, not cut.
MAX_TEXT_CHARS = 2000
# A revocation's reason: what the services keep of it.
MAX_REASON_CHARS = 500
# The emergency credentials a person's page lists: those issued within this many days (a live one always is).
RECENT_DAYS = 30
_LIST_SEPARATORS = re.compile(r"[\s,;]+")


@dataclasses.dataclass(frozen=True)
class Agent:
    """The officer or RSSI on the page and their SSO session."""

    sso: SsoSession
    identity: Identity

    @property
    def actor(self) -> str:
        return officer_actor(self.identity)


def current_agent() -> Agent:
    agent: Agent = g.security_agent
    return agent


def guard(role: str) -> tuple[str, int] | None:
    """Let only a recently two-factor-authenticated holder of ``role`` in; explain otherwise (401/403)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    sso = login_session.current(session, rt.keys, rt.settings,
                                request.cookies.get(login_session.cookie_name(rt.settings)))
    # Commit now: the session's activity is recorded whatever the view decides, and the services that journal
    # their refusals (they commit) start from a clean transaction.
    session.commit()
    identity = session.get(Identity, sso.identity_id) if sso is not None else None
    reason = access_denial(has_session=sso is not None and identity is not None,
                           roles=identity.role_names if identity is not None else [],
                           mfa_time=sso.mfa_time if sso is not None else None,
                           recovery_only=bool(sso.recovery_only) if sso is not None else False,
                           now=utcnow(), recent_minutes=rt.settings.recent_mfa_minutes, role=role,
                           amr=sso.amr if sso is not None else ())
    if reason is not None:
        return render_template("security/denied.html", reason=reason, role=role, role_label=ROLE_LABELS[role],
                               area=AREA_TITLES[role], minutes=rt.settings.recent_mfa_minutes), \
            401 if reason == "no_session" else 403
    assert sso is not None and identity is not None
    g.security_agent = Agent(sso, identity)
    return None


@emergency_bp.before_request
def _load_officer() -> tuple[str, int] | None:
    return guard(emergency.OFFICER_ROLE)


@security_bp.before_request
def _load_rssi() -> tuple[str, int] | None:
    return guard(RSSI_ROLE)


def no_store(response: Response) -> Response:
    # Personal data, the journal's content, and once a code shown once: never cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def agent_context() -> dict[str, Any]:
    return {"agent": g.get("security_agent"), "officer_role": emergency.OFFICER_ROLE, "rssi_role": RSSI_ROLE}


for _bp in (emergency_bp, security_bp):
    _bp.after_request(no_store)
    _bp.context_processor(agent_context)


@security_bp.app_template_filter("paris_datetime")
def _paris_datetime(value: str | dt.datetime | None) -> str:
    """Format a UTC timestamp (or its ISO text, as the services' ``…_as_dict`` give it) in Paris time."""
    if not value:
        return "—"
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


# --- reading forms ---------------------------------------------------------------------------------------


def _text(raw: str) -> str:
    """Free text of a text area: control characters dropped except line breaks, cut just past MAX_TEXT_CHARS."""
    lines = raw[:MAX_TEXT_CHARS * 2].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(clean(line) for line in lines).strip()[:MAX_TEXT_CHARS + 1]


def _field(name: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A one-line field, cleaned; one character more than ``limit`` is kept so that too long is refused."""
    return clean(request.form.get(name, "")[:limit * 2]).strip()[:limit + 1]


def _names(text: str) -> list[str]:
    """Names or codes typed in one field, separated by commas, semicolons or spaces."""
    return [n for n in _LIST_SEPARATORS.split(text) if n]


def _too_long(form: dict[str, Any], limits: dict[str, int]) -> dict[str, str]:
    return {name: _("Ce champ ne doit pas dépasser %(n)s caractères.", n=limit)
            for name, limit in limits.items() if len(form[name]) > limit}


def _too_long_reason() -> str:
    return _("Le motif ne doit pas dépasser %(n)s caractères.", n=MAX_REASON_CHARS)


def _show_all(arg: str) -> bool:
    return request.args.get(arg) == "1"


def _public_id_or_404(public_id: str) -> str:
    if not PUBLIC_ID_RE.fullmatch(public_id or ""):
        abort(404)
    return public_id


def _identity_or_404(public_id: str) -> Identity:
    try:
        return directory.get_identity(appctx.db_session(), _public_id_or_404(public_id))
    except NotFound:
        abort(404)


# --- emergency access (/bris-de-glace) --------------------------------------------------------------------


def _person_page(identity: Identity, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    settings = appctx.runtime().settings
    now = utcnow()
    recent = session.scalars(
        select(EmergencyCredential)
        .where(EmergencyCredential.identity_id == identity.id,
               EmergencyCredential.issued_at >= now - dt.timedelta(days=RECENT_DAYS))
        .order_by(EmergencyCredential.issued_at.desc(), EmergencyCredential.id.desc()).limit(20)).all()
    defaults = {"reason": "", "hours": str(settings.emergency_hours), "networks": emergency.DEFAULT_NETWORK}
    return render_template("security/emergency_person.html", person=identity,
                           credentials=[emergency.credential_as_dict(session, r, as_of=now) for r in recent],
                           state_labels=emergency.STATE_LABELS_FR, identity_status_labels=IDENTITY_STATUS_LABELS,
                           is_self=identity.id == current_agent().identity.id, max_hours=settings.emergency_hours,
                           network_sets=sorted(policies_runtime.current_policy().network_sets),
                           errors=errors or {}, form={**defaults, **(form or {})}), status


@emergency_bp.get("", strict_slashes=False)
def emergency_index() -> str:
    """Find the person who called (same search as the enrollment desk)."""
    query = search_query(request.args.get("q", ""))
    total, people = (0, [])
    if query:
        total, people = directory.list_identities(appctx.db_session(), search=query, limit=SEARCH_LIMIT)
    return render_template("security/emergency_index.html", query=query, people=people, total=total,
                           identity_status_labels=IDENTITY_STATUS_LABELS)


@emergency_bp.get("/personnes/<public_id>")
def emergency_person(public_id: str) -> tuple[str, int]:
    """The person, their recent emergency credentials and the form that issues one."""
    return _person_page(_identity_or_404(public_id))


@emergency_bp.post("/personnes/<public_id>/acces")
def emergency_issue(public_id: str) -> tuple[str, int]:
    """Issue an emergency credential and answer with its code (shown once)."""
    identity = _identity_or_404(public_id)
    agent = current_agent()
    rt = appctx.runtime()
    session = appctx.db_session()
    form = {"reason": _text(request.form.get("reason", "")), "hours": _field("hours", 10),
            "networks": _field("networks")}
    errors = _too_long(form, {"reason": MAX_TEXT_CHARS, "hours": 10, "networks": MAX_FIELD_CHARS})
    if errors:
        return _person_page(identity, errors=errors, form=form, status=400)
    # Empty: the service's default; unreadable: 0, which the service refuses with the allowed range.
    hours = None if not form["hours"] else (int(form["hours"]) if form["hours"].isdecimal() else 0)
    try:
        # The service journals and commits its refusals (not an officer, oneself, inactive person) before
        # raising: the guard committed, so nothing else is in this transaction.
        row, code = emergency.issue_emergency_credential(
            session, rt.keys, policies_runtime.current_policy(), identity=identity, officer=agent.identity,
            reason=form["reason"], actor=agent.actor, hours=hours, max_hours=rt.settings.emergency_hours,
            networks=_names(form["networks"]), client_ip=appctx.client_ip())
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _person_page(identity, errors=exc.errors or {"_": exc.message}, form=form, status=400)
    except HospiConnectError as exc:
        session.rollback()
        return _person_page(identity, errors={"_": exc.message}, form=form, status=exc.http_status)
    return render_template("security/emergency_code.html", person=identity, groups=code.split("-"),
                           credential=emergency.credential_as_dict(session, row)), 200


# --- RSSI (/securite) -------------------------------------------------------------------------------------


@security_bp.get("", strict_slashes=False)
def index() -> str:
    """The RSSI's entry point."""
    session = appctx.db_session()
    return render_template("security/index.html", to_review=len(emergency.list_for_review(session)),
                           in_force=len(exceptions.list_exceptions(session)))


def _review_page(*, row_error: tuple[str, str, str] | None = None, form: dict[str, str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    now = utcnow()
    show_all = _show_all("tous")
    rows = emergency.list_for_review(session, reviewed=None if show_all else False)
    return render_template("security/emergency_review.html", show_all=show_all,
                           items=[emergency.credential_as_dict(session, r, as_of=now) for r in rows],
                           state_labels=emergency.STATE_LABELS_FR, me=current_agent().identity.public_id,
                           row_error=row_error, form=form or {}), status


def _back_to_review() -> Response:
    return redirect(url_for("security.emergency_review", tous="1" if _show_all("tous") else None), 303)


@security_bp.get("/acces-urgence")
def emergency_review() -> tuple[str, int]:
    """The emergency credentials to review (all of them with ``?tous=1``)."""
    return _review_page()


@security_bp.post("/acces-urgence/<public_id>/examen")
def emergency_acknowledge(public_id: str) -> Response | tuple[str, int]:
    """Record the review of a credential that is no longer usable, with a comment."""
    credential_id = _public_id_or_404(public_id)
    agent = current_agent()
    session = appctx.db_session()
    comment = _text(request.form.get("comment", ""))
    if len(comment) > MAX_TEXT_CHARS:
        return _review_page(row_error=(credential_id, "comment", _("Le commentaire ne doit pas dépasser %(n)s "
                                                                   "caractères.", n=MAX_TEXT_CHARS)),
                            form={"comment": comment}, status=400)
    try:
        # Refused to the person or the officer who issued it: journaled and committed by the service.
        emergency.acknowledge(session, credential_id, reviewer=agent.identity, comment=comment, actor=agent.actor,
                              client_ip=appctx.client_ip())
        session.commit()
    except NotFound:
        session.rollback()
        abort(404)
    except HospiConnectError as exc:
        session.rollback()
        return _review_page(row_error=(credential_id, "comment", exc.message), form={"comment": comment},
                            status=exc.http_status)
    flash(_("Revue de l'accès d'urgence enregistrée."), "success")
    return _back_to_review()


@security_bp.post("/acces-urgence/<public_id>/revocation")
def emergency_revoke(public_id: str) -> Response | tuple[str, int]:
    """Stop a credential that is still usable."""
    credential_id = _public_id_or_404(public_id)
    agent = current_agent()
    session = appctx.db_session()
    reason = _text(request.form.get("reason", ""))
    if len(reason) > MAX_REASON_CHARS:
        return _review_page(row_error=(credential_id, "reason", _too_long_reason()), form={"reason": reason},
                            status=400)
    try:
        emergency.revoke(session, credential_id, actor=agent.actor, reason=reason, client_ip=appctx.client_ip())
        session.commit()
    except NotFound:
        session.rollback()
        abort(404)
    except HospiConnectError as exc:
        session.rollback()
        return _review_page(row_error=(credential_id, "reason", exc.message), form={"reason": reason},
                            status=exc.http_status)
    flash(_("Accès d'urgence révoqué : il ne peut plus servir."), "success")
    return _back_to_review()


# --- exceptions (/securite/derogations) -------------------------------------------------------------------


def _exceptions_page(*, row_error: tuple[str, str, str] | None = None, form: dict[str, str] | None = None,
                     status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    now = utcnow()
    show_all = _show_all("toutes")
    rows = exceptions.list_exceptions(session, active_only=not show_all, as_of=now)
    policy = policies_runtime.current_policy()
    return render_template("security/exceptions.html", show_all=show_all,
                           items=[exceptions.exception_as_dict(session, r, as_of=now) for r in rows],
                           class_labels={name: c.label for name, c in policy.classes.items()},
                           population_labels=CONTRACT_TYPES, state_labels=EXCEPTION_STATE_LABELS,
                           row_error=row_error, form=form or {}), status


def _grant_page(*, errors: dict[str, str] | None = None, form: dict[str, Any] | None = None,
                status: int = 200) -> tuple[str, int]:
    policy = policies_runtime.current_policy()
    max_days = appctx.runtime().settings.exception_max_days
    today = utcnow().astimezone(zone(policy.timezone)).date()
    defaults: dict[str, Any] = {"app_class": "", "user_name": "", "population": "", "units": "",
                                "allow_single_factor": False, "allow_mie_types": [], "networks": "",
                                "max_auth_age": "", "justification": "", "ends_on": ""}
    return render_template("security/exception_new.html", errors=errors or {}, form={**defaults, **(form or {})},
                           classes=policy.classes, mie_types=policy.mie_types, populations=CONTRACT_TYPES,
                           network_sets=sorted(policy.network_sets), max_days=max_days,
                           min_end=today + dt.timedelta(days=1), max_end=today + dt.timedelta(days=max_days)), status


@security_bp.get("/derogations")
def exceptions_list() -> tuple[str, int]:
    """The exceptions in force or scheduled (every one with ``?toutes=1``)."""
    return _exceptions_page()


@security_bp.get("/derogations/nouvelle")
def exception_new() -> tuple[str, int]:
    """The form that grants an exception."""
    return _grant_page()


def _end_of(day_text: str, timezone: str) -> dt.datetime:
    """The end typed as a day (``AAAA-MM-JJ``): that day at 0 h in the policy's time zone, as the policy's
    ``until``. Raises ValueError when unreadable."""
    day = dt.date.fromisoformat(day_text)
    try:
        return dt.datetime.combine(day, dt.time(0), zone(timezone)).astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError(day_text) from None


@security_bp.post("/derogations/nouvelle")
def exception_grant() -> Response | tuple[str, int]:
    """Grant an exception to a person or a population."""
    agent = current_agent()
    session = appctx.db_session()
    policy = policies_runtime.current_policy()
    form: dict[str, Any] = {name: _field(name) for name in ("app_class", "user_name", "population", "units",
                                                              "networks", "max_auth_age", "ends_on")}
    form["justification"] = _text(request.form.get("justification", ""))
    form["allow_single_factor"] = request.form.get("allow_single_factor") == "1"
    form["allow_mie_types"] = list(dict.fromkeys(
        t for t in (clean(v[:60]).strip() for v in request.form.getlist("allow_mie_types")[:20]) if t))
    errors = _too_long(form, {"app_class": 60, "user_name": MAX_FIELD_CHARS, "population": 40,
                              "units": MAX_FIELD_CHARS, "networks": MAX_FIELD_CHARS, "max_auth_age": 20,
                              "ends_on": 10, "justification": MAX_TEXT_CHARS})
    identity: Identity | None = None
    if form["user_name"] and "user_name" not in errors:
        try:
            identity = directory.get_identity(session, form["user_name"])
        except NotFound:
            errors["user_name"] = _("Aucune personne de l'annuaire n'a l'identifiant « %(u)s ».", u=form["user_name"])
    ends_at: dt.datetime | None = None
    if form["ends_on"] and "ends_on" not in errors:
        try:
            ends_at = _end_of(form["ends_on"], policy.timezone)
        except ValueError:
            errors["ends_on"] = _("Date de fin illisible : choisissez un jour (AAAA-MM-JJ).")
    if errors:
        return _grant_page(errors=errors, form=form, status=400)
    relaxation: dict[str, Any] = {}
    if form["allow_single_factor"]:
        relaxation["allow_single_factor"] = True
    if form["allow_mie_types"]:
        relaxation["allow_mie_types"] = form["allow_mie_types"]
    if _names(form["networks"]):
        relaxation["networks"] = _names(form["networks"])
    if form["max_auth_age"]:
        relaxation["max_auth_age"] = form["max_auth_age"]
    try:
        row = exceptions.grant_exception(
            session, policy, app_class=form["app_class"], relaxation=relaxation,
            justification=form["justification"], ends_at=ends_at, identity=identity,
            population=form["population"] or None, units=_names(form["units"]), actor=agent.actor,
            client_ip=appctx.client_ip(), max_days=appctx.runtime().settings.exception_max_days)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        found = exc.errors or {"_": exc.message}
        # The service names the person « identity » and the end « ends_at »: the form's fields are others.
        renamed = {{"identity": "user_name", "ends_at": "ends_on"}.get(k, k): v for k, v in found.items()}
        return _grant_page(errors=renamed, form=form, status=400)
    except HospiConnectError as exc:
        session.rollback()
        return _grant_page(errors={"_": exc.message}, form=form, status=exc.http_status)
    flash(_("Dérogation accordée jusqu'au %(end)s.", end=_paris_datetime(row.ends_at)), "success")
    return redirect(url_for("security.exceptions_list"), 303)


@security_bp.post("/derogations/<public_id>/revocation")
def exception_revoke(public_id: str) -> Response | tuple[str, int]:
    """End an exception now."""
    exception_id = _public_id_or_404(public_id)
    agent = current_agent()
    session = appctx.db_session()
    reason = _text(request.form.get("reason", ""))
    if len(reason) > MAX_REASON_CHARS:
        return _exceptions_page(row_error=(exception_id, "reason", _too_long_reason()), form={"reason": reason},
                                status=400)
    try:
        exceptions.revoke_exception(session, exception_id, actor=agent.actor, reason=reason,
                                    client_ip=appctx.client_ip())
        session.commit()
    except NotFound:
        session.rollback()
        abort(404)
    except HospiConnectError as exc:
        session.rollback()
        return _exceptions_page(row_error=(exception_id, "reason", exc.message), form={"reason": reason},
                                status=exc.http_status)
    flash(_("Dérogation révoquée : elle a cessé immédiatement."), "success")
    return redirect(url_for("security.exceptions_list", toutes="1" if _show_all("toutes") else None), 303)
