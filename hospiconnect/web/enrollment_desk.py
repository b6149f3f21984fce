"""Enrollment desk « Guichet d'enrôlement » (``/guichet``): registration officers check a person's identity
face to face and hand out an activation sheet.

Access needs a live SSO session whose person holds the directory role ``enrollment_officer`` and whose last
two-factor verification is within ``settings.recent_mfa_minutes``: an unattended desk workstation must not
be enough to enroll anyone. The rules and the journal live in :mod:`hospiconnect.enrollment.services`;
this module only reads forms, calls the services and renders French pages.

Forms are POSTed with their CSRF token and answered with a 303, except the activation sheet: it is the
response to its POST, marked ``no-store``, because it shows the activation code once and a redirect would
have to carry the code in a URL or a cookie.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import segno
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from hospiconnect import appctx
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.models import Mie
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import levels, national
from hospiconnect.enrollment import remote
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.verification import verification_of
from hospiconnect.enrollment.interfaces import CaseNotFound, DocumentRefused, EnrollmentError
from hospiconnect.enrollment.models import ActivationCode, EnrollmentCase
from hospiconnect.errors import HospiConnectError, NotFound
from hospiconnect.idp import login_session
from hospiconnect.idp.models import SsoSession
from hospiconnect.web.enrollment_common import (
    CHECKED_AT_TOLERANCE,
    MAX_FIELD_CHARS,
    PARIS,
    PUBLIC_ID_RE,
    SEARCH_LIMIT,
    access_denial,
    activation_url,
    officer_actor,
    search_query,
)
from hospiconnect.web.enrollment_common import clean as _clean
from hospiconnect.web.enrollment_common import parse_date as _parse_date
from hospiconnect.web.enrollment_common import parse_local_datetime as _parse_local_datetime
from hospiconnect.web.remote_enrollment import desk_panel as remote_panel

bp = Blueprint("desk", __name__, url_prefix="/guichet")

DEFAULT_COUNTRY = "FRA"

KIND_LABELS = {wf.KIND_FIRST_MIE: "Premier moyen d'identification",
               wf.KIND_ADDITIONAL_MIE: "Moyen d'identification supplémentaire",
               wf.KIND_REPLACEMENT: "Remplacement d'un moyen perdu ou volé"}
DOCUMENT_CHOICES = [("cni", "Carte nationale d'identité"), ("passport", "Passeport"),
                    ("residence_permit", "Titre de séjour"), ("driving_licence", "Permis de conduire")]
IDENTITY_STATUS_LABELS = {"pending": "En attente", "active": "Active", "suspended": "Suspendue", "departed": "Partie"}


@dataclasses.dataclass(frozen=True)
class Officer:
    """The registration officer on the page and their SSO session."""

    sso: SsoSession
    identity: Identity

    @property
    def actor(self) -> str:
        return officer_actor(self.identity)


def _officer() -> Officer:
    officer: Officer = g.desk_officer
    return officer


@bp.before_request
def _load_officer() -> tuple[str, int] | None:
    """Let only a recently two-factor-authenticated registration officer in; explain otherwise (401/403)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    sso = login_session.current(session, rt.keys, rt.settings,
                                request.cookies.get(login_session.cookie_name(rt.settings)))
    # Commit now: the session's activity is recorded whatever the view decides.
    session.commit()
    identity = session.get(Identity, sso.identity_id) if sso is not None else None
    reason = access_denial(has_session=sso is not None and identity is not None,
                           roles=identity.role_names if identity is not None else [],
                           mfa_time=sso.mfa_time if sso is not None else None,
                           recovery_only=bool(sso.recovery_only) if sso is not None else False,
                           now=utcnow(), recent_minutes=rt.settings.recent_mfa_minutes,
                           amr=sso.amr if sso is not None else ())
    if reason is not None:
        return render_template("desk/denied.html", reason=reason,
                               minutes=rt.settings.recent_mfa_minutes), 401 if reason == "no_session" else 403
    assert sso is not None and identity is not None
    g.desk_officer = Officer(sso, identity)
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    # Personal data, and once a secret shown once (the activation sheet): never cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.app_template_filter("desk_datetime")
def _desk_datetime(value: dt.datetime | None) -> str:
    """Format a UTC timestamp in the establishment's time zone, « — » when there is none."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


@bp.app_template_filter("desk_date")
def _desk_date(value: dt.date | None) -> str:
    return value.strftime("%d/%m/%Y") if value is not None else "—"


# --- lookups ---------------------------------------------------------------------------------------------


def _identity_or_404(public_id: str) -> Identity:
    if not PUBLIC_ID_RE.fullmatch(public_id or ""):
        abort(404)
    try:
        return directory.get_identity(appctx.db_session(), public_id)
    except NotFound:
        abort(404)


def _case_or_404(case_id: str) -> EnrollmentCase:
    if not PUBLIC_ID_RE.fullmatch(case_id or ""):
        abort(404)
    try:
        return enrollment.get_case(appctx.db_session(), case_id)
    except CaseNotFound:
        abort(404)


def _is_self(identity_id: int) -> bool:
    return identity_id == _officer().identity.id


def _person_page(identity: Identity, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    mies = mie_services.list_mie(session, identity)
    return render_template("desk/person.html", person=identity, cases=enrollment.cases_of(session, identity),
                           verification=verification_of(session, identity),
                           lost_choices=[m for m in mies if m.status != "revoked"],
                           is_self=_is_self(identity.id), kind_labels=KIND_LABELS, state_labels=wf.STATE_LABELS_FR,
                           type_labels=levels.MIE_TYPE_LABELS_FR, identity_status_labels=IDENTITY_STATUS_LABELS,
                           national_link=national.live_link(session, identity),
                           national_methods=national.METHOD_LABELS_FR,
                           errors=errors or {}, form=form or {}), status


def _case_page(case: EnrollmentCase, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
               status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    person = session.get(Identity, case.identity_id)
    assert person is not None
    defaults = {"document_type": "cni", "issuing_country": DEFAULT_COUNTRY, "expiry_date": "", "last4": "",
                "place": "", "checked_at": utcnow().astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")}
    return render_template("desk/case.html", case=case, person=person, is_self=_is_self(case.identity_id),
                           kind_labels=KIND_LABELS, state_labels=wf.STATE_LABELS_FR,
                           document_labels=wf.DOCUMENT_LABELS_FR, document_choices=DOCUMENT_CHOICES,
                           errors=errors or {}, form={**defaults, **(form or {})},
                           activation_hours=appctx.runtime().settings.activation_hours,
                           remote=remote_panel(session, case, appctx.runtime().settings)), status


# --- pages -----------------------------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
def index() -> str:
    """Search the directory by name, user name, RPPS or e-mail."""
    query = search_query(request.args.get("q", ""))
    total, people = (0, [])
    if query:
        total, people = directory.list_identities(appctx.db_session(), search=query, limit=SEARCH_LIMIT)
    return render_template("desk/index.html", query=query, people=people, total=total,
                           identity_status_labels=IDENTITY_STATUS_LABELS)


@bp.get("/personnes/<public_id>")
def person(public_id: str) -> tuple[str, int]:
    """A person's identity, cases and MIE, with the form that opens a case."""
    return _person_page(_identity_or_404(public_id))


@bp.post("/personnes/<public_id>/dossiers")
def open_case(public_id: str) -> Response | tuple[str, int]:
    """Open a case (first MIE, additional MIE, or replacement of a lost one)."""
    identity = _identity_or_404(public_id)
    officer = _officer()
    session = appctx.db_session()
    kind = _clean(request.form.get("kind", "")[:30])
    lost_id = _clean(request.form.get("lost_mie", "")[:100])
    form = {"kind": kind, "lost_mie": lost_id}
    if kind not in wf.KINDS:
        return _person_page(identity, errors={"kind": _("Choisissez le type de dossier.")}, form=form, status=400)
    lost: Mie | None = None
    if kind == wf.KIND_REPLACEMENT and lost_id:
        lost = next((m for m in mie_services.list_mie(session, identity) if m.public_id == lost_id), None)
    try:
        case = enrollment.open_case(session, identity, kind=kind, officer_identity_id=officer.identity.id,
                                    actor=officer.actor, lost_mie=lost, client_ip=appctx.client_ip())
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        field = "lost_mie" if kind == wf.KIND_REPLACEMENT and lost is None else "kind"
        return _person_page(identity, errors={field: exc.message}, form=form, status=exc.http_status)
    flash(_("Dossier ouvert. Vérifiez maintenant la pièce d'identité de la personne."), "success")
    return redirect(url_for("desk.case", case_id=case.public_id), 303)


@bp.post("/personnes/<public_id>/identite-nationale/suppression")
def unlink_national(public_id: str) -> Response | tuple[str, int]:
    """End the person's link with their national identity (Pro Santé Connect), with a reason."""
    identity = _identity_or_404(public_id)
    officer = _officer()
    session = appctx.db_session()
    reason = _clean(request.form.get("reason", "")[:400])
    link_id = _clean(request.form.get("link", "")[:100])
    form = {"reason": reason}
    if _is_self(identity.id):
        return _person_page(identity, errors={"reason": _("Vous ne pouvez pas modifier votre propre association.")},
                            form=form, status=403)
    link = national.live_link(session, identity)
    if link is None or link.public_id != link_id:
        return _person_page(identity, errors={"reason": _("Cette association n'existe plus.")}, form=form,
                            status=409)
    try:
        national.unlink(session, link.public_id, officer.actor, reason, client_ip=appctx.client_ip())
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _person_page(identity, errors={"reason": exc.message}, form=form, status=exc.http_status)
    flash(_("L'association à l'identité nationale est supprimée ; la carte CPS ou l'e-CPS n'est plus acceptée "
            "pour ce compte."), "success")
    return redirect(url_for("desk.person", public_id=identity.public_id), 303)


@bp.get("/dossiers/<case_id>")
def case(case_id: str) -> tuple[str, int]:
    """A case: its state, the document check form or the button that issues the activation code."""
    return _case_page(_case_or_404(case_id))


@bp.post("/dossiers/<case_id>/verification")
def verify(case_id: str) -> Response | tuple[str, int]:
    """Record the face-to-face document check."""
    case_row = _case_or_404(case_id)
    officer = _officer()
    session = appctx.db_session()
    # One character more than allowed is kept, so that an over-long entry is refused rather than cut.
    form = {name: request.form.get(name, "")[:MAX_FIELD_CHARS + 1]
            for name in ("document_type", "issuing_country", "expiry_date", "last4", "place", "checked_at")}
    # Only the place is stored as typed; the other fields are checked against strict formats.
    form["place"] = _clean(form["place"])
    now = utcnow()
    errors: dict[str, str] = {}
    if len(form["place"]) > MAX_FIELD_CHARS:
        errors["place"] = _("Le lieu ne doit pas dépasser %(n)s caractères.", n=MAX_FIELD_CHARS)
    expiry = _parse_date(form["expiry_date"])
    if form["expiry_date"].strip() and expiry is None:
        errors["expiry_date"] = _("Date d'expiration illisible : utilisez le format JJ/MM/AAAA.")
    checked_at = _parse_local_datetime(form["checked_at"]) if form["checked_at"].strip() else now
    if checked_at is None:
        errors["checked_at"] = _("Date de vérification illisible.")
    elif checked_at > now + CHECKED_AT_TOLERANCE:
        errors["checked_at"] = _("La date de vérification ne peut pas être dans le futur.")
    if errors:
        return _case_page(case_row, errors=errors, form=form, status=400)
    assert checked_at is not None
    try:
        enrollment.record_document_check(
            session, case_row, document_type=form["document_type"], issuing_country=form["issuing_country"],
            expiry_date=expiry, last4=form["last4"], place=form["place"], checked_at=checked_at,
            officer_identity_id=officer.identity.id, actor=officer.actor, today=now.astimezone(PARIS).date(),
            client_ip=appctx.client_ip(), now=now)
        session.commit()
    except DocumentRefused as exc:
        session.rollback()
        return _case_page(enrollment.get_case(session, case_id), errors={exc.field: exc.message}, form=form,
                          status=400)
    except HospiConnectError as exc:
        session.rollback()
        return _case_page(enrollment.get_case(session, case_id), errors={"_": exc.message}, form=form,
                          status=exc.http_status)
    flash(_("Identité vérifiée. Vous pouvez émettre le code d'activation."), "success")
    return redirect(url_for("desk.case", case_id=case_row.public_id), 303)


@bp.post("/dossiers/<case_id>/code")
def issue_code(case_id: str) -> tuple[str, int]:
    """Issue the activation code and answer with the printable activation sheet (shown once)."""
    case_row = _case_or_404(case_id)
    officer = _officer()
    rt = appctx.runtime()
    session = appctx.db_session()
    if _is_self(case_row.identity_id):
        # The services check the officer on identity checks; the sheet is refused here too, for clarity.
        return _case_page(case_row, errors={"_": _("Vous ne pouvez pas enrôler votre propre identité : "
                                                   "un autre agent doit s'en charger.")}, status=403)
    try:
        code = enrollment.issue_activation_code(session, rt.keys, case_row, actor=officer.actor,
                                                valid_hours=rt.settings.activation_hours,
                                                client_ip=appctx.client_ip())
        session.commit()
    except EnrollmentError as exc:
        session.rollback()
        return _case_page(enrollment.get_case(session, case_id), errors={"_": exc.message},
                          status=exc.http_status)
    person_row = session.get(Identity, case_row.identity_id)
    url = activation_url(rt.settings.issuer, code)
    # The SVG is built by segno from our own URL: markup we produced, not user input.
    qr = Markup(segno.make(url, error="m").svg_inline(scale=4, title=_("Code QR d'activation")))
    valid_until = session.scalar(select(func.max(ActivationCode.expires_at))
                                 .where(ActivationCode.case_id == case_row.id))
    return render_template("desk/sheet.html", case=case_row, person=person_row, code=code,
                           groups=code.split("-"), qr=qr, url=url, activation_page=activation_url(
                               rt.settings.issuer, "").split("?")[0], valid_until=valid_until,
                           establishment=rt.settings.establishment_name), 200


@bp.post("/dossiers/<case_id>/invitation")
def send_invitation(case_id: str) -> Response | tuple[str, int]:
    """Send the FranceConnect+ invitation e-mail of an opened case (remote enrollment)."""
    case_row = _case_or_404(case_id)
    officer = _officer()
    rt = appctx.runtime()
    session = appctx.db_session()
    if _is_self(case_row.identity_id):
        return _case_page(case_row, errors={"invitation": _("Vous ne pouvez pas enrôler votre propre identité : "
                                                            "un autre agent doit s'en charger.")}, status=403)
    try:
        invitation, url = remote.send_invitation(session, rt.keys, rt.settings, case_row, actor=officer.actor,
                                                 client_ip=appctx.client_ip())
        session.commit()
    except EnrollmentError as exc:
        session.rollback()
        return _case_page(enrollment.get_case(session, case_id), errors={"invitation": exc.message},
                          status=exc.http_status)
    flash(_("Invitation envoyée à %(email)s.", email=invitation.email), "success")
    if not rt.settings.is_production and rt.settings.mail_sender == "console":
        # Outside production with no real mail delivery, nobody could read the e-mail: show its link.
        flash(_("Démonstration (aucun e-mail n'est réellement envoyé) : le lien reçu par la personne est %(url)s",
                url=url), "info")
    return redirect(url_for("desk.case", case_id=case_row.public_id), 303)
