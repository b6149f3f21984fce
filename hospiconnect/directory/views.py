"""Directory administration pages at ``/annuaire`` (French, server-rendered).

Staff sign-in arrives with the identity provider. Until then these pages have no access control at all,
so they exist only in the demo, development and test environments: in production the blueprint is not
registered and every ``/annuaire`` URL is a 404.

Views parse the form, call one directory service, commit once and redirect (303). An expected error
(:class:`HospiConnectError`) rolls the session back and re-renders the page with the message.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from hospiconnect import appctx
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory import services
from hospiconnect.directory import validation as v
from hospiconnect.directory.models import Establishment, Identity, OrgUnit
from hospiconnect.errors import HospiConnectError, PreconditionFailed, ValidationError

#: Environments where the unauthenticated administration pages may be served.
DEMO_ENVS = frozenset({"demo", "development", "test"})
ACTOR = "web:demo"
PAGE_SIZE = 25
HISTORY_LIMIT = 100

bp = Blueprint("directory", __name__, url_prefix="/annuaire")

FIELD_LABELS: dict[str, Any] = {
    "birth_family_name": _l("Nom de naissance"),
    "usage_name": _l("Nom d'usage"),
    "given_names": _l("Prénoms"),
    "birth_date": _l("Date de naissance"),
    "birth_place": _l("Commune de naissance"),
    "birth_country": _l("Pays de naissance"),
    "gender": _l("Genre"),
    "email": _l("Adresse e-mail"),
    "rpps": _l("Numéro RPPS"),
    "external_id": _l("Identifiant externe (matricule RH)"),
    "user_name": _l("Identifiant de connexion"),
    "contract_type": _l("Type de contrat"),
    "start_date": _l("Date d'arrivée"),
    "end_date": _l("Date de fin"),
    "establishments": _l("Établissements"),
    "units": _l("Unités"),
    "roles": _l("Rôles"),
    "reason": _l("Motif"),
    "version": _l("Version"),
}
GENDER_LABELS: dict[str, Any] = {"female": _l("Femme"), "male": _l("Homme"), "unspecified": _l("Non précisé")}
# The form posts the short codes that validation.check_gender accepts.
GENDER_CODES = {"female": "F", "male": "M", "unspecified": "X"}
POPULATION_LABELS: dict[str, Any] = {"rpps": _l("Avec RPPS"), "local": _l("Sans RPPS (annuaire local)")}
# A few INSEE country codes, only to make the detail page readable; any valid code is accepted.
COUNTRY_NAMES = {
    "99100": "France", "99109": "Allemagne", "99127": "Italie", "99131": "Belgique", "99132": "Royaume-Uni",
    "99134": "Espagne", "99139": "Portugal", "99140": "Suisse", "99114": "Roumanie", "99205": "Liban",
    "99243": "Viêt Nam", "99341": "Sénégal", "99350": "Maroc", "99351": "Tunisie", "99352": "Algérie",
}
EVENT_LABELS: dict[str, Any] = {
    tags.DIRECTORY_IDENTITY_CREATED: _l("Création"),
    tags.DIRECTORY_IDENTITY_UPDATED: _l("Modification"),
    tags.DIRECTORY_IDENTITY_HOMONYM_CONFIRMED: _l("Homonymie confirmée"),
    tags.DIRECTORY_IDENTITY_ACTIVATED: _l("Activation"),
    tags.DIRECTORY_IDENTITY_SUSPENDED: _l("Suspension"),
    tags.DIRECTORY_IDENTITY_REACTIVATED: _l("Réactivation"),
    tags.DIRECTORY_IDENTITY_ENDED: _l("Date de fin fixée"),
    tags.DIRECTORY_IDENTITY_DEPARTED: _l("Départ"),
}
# Display names of the usual role codes; any other code is shown as it is.
ROLE_LABELS: dict[str, Any] = {
    "medecin": _l("Médecin"), "pharmacien": _l("Pharmacien(ne)"), "sage_femme": _l("Sage-femme"),
    "ide": _l("Infirmier(ère)"), "interne": _l("Interne"), "aide_soignant": _l("Aide-soignant(e)"),
    "administratif": _l("Administratif(ve)"), "technicien": _l("Technicien(ne)"), "etudiant": _l("Étudiant(e)"),
    "interimaire": _l("Intérimaire"), "prestataire": _l("Prestataire"),
}
# Conflicts that concern one field: the message is shown next to that field.
CONFLICT_FIELDS = {"rpps_taken": "rpps", "external_id_taken": "external_id", "user_name_taken": "user_name"}
TEXT_FIELDS = ("birth_family_name", "usage_name", "given_names", "birth_date", "birth_place", "birth_country",
               "gender", "email", "rpps", "external_id", "user_name", "contract_type", "start_date", "end_date",
               "roles")
PARIS = ZoneInfo("Europe/Paris")
#: Where :func:`init_app` keeps the function that summarises an identity's verification and MIE. The
#: directory sits below enrollment and the MIE layer (import-linter layers), so it cannot compute that
#: itself: the web layer passes the function in, and the detail page renders what it returns.
VERIFICATION_EXTENSION = "hospiconnect.directory.verification"
VerificationSummarizer = Callable[[Session, Identity], Any]


# --- registration --------------------------------------------------------------------------------------

def pages_enabled(env: str) -> bool:
    """Return True when the unauthenticated administration pages may be served in ``env``."""
    return env in DEMO_ENVS


def init_app(app: Flask, *, verification: VerificationSummarizer | None = None) -> None:
    """Register the pages, unless the environment is one where they must not exist (production).

    ``verification(session, identity)`` returns the summary shown in the detail page's « Vérification
    d'identité et MIE » section (``hospiconnect.enrollment.levels.VerificationSummary``); without it the
    section says that nothing is recorded.
    """
    if not pages_enabled(app.config["SETTINGS"].env):
        return
    if verification is not None:
        app.extensions[VERIFICATION_EXTENSION] = verification
    app.register_blueprint(bp)
    app.context_processor(lambda: {"directory_pages_enabled": True})


@bp.before_request
def _only_outside_production() -> None:
    # Second line of defence: the blueprint registered by hand in production still answers 404.
    if not pages_enabled(current_app.config["SETTINGS"].env):
        abort(404)


@bp.app_template_filter("date_fr")
def _date_fr(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")
    return value.strftime("%d/%m/%Y")


@bp.app_template_filter("role_label")
def _role_label(code: str) -> str:
    return str(ROLE_LABELS.get(code, code))


# --- helpers -------------------------------------------------------------------------------------------

def _status_of(exc: HospiConnectError) -> int:
    # A stale hidden version field is a conflict between two edits of one form, not an HTTP precondition.
    return 409 if isinstance(exc, PreconditionFailed) else exc.http_status


def _split_codes(text: str | None) -> list[str]:
    return [part for part in re.split(r"[\s,;|]+", text or "") if part]


def _raw_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    """Return the raw identity fields of a posted form, in the shape validate_identity expects."""
    raw: dict[str, Any] = {name: (form.get(name) or "").strip() for name in TEXT_FIELDS}
    raw["establishments"] = form.getlist("establishments") + _split_codes(form.get("establishments_other"))
    raw["units"] = form.getlist("units") + _split_codes(form.get("units_other"))
    return raw


def _values_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    """Return what the user typed, to put it back in the form after an error."""
    values: dict[str, Any] = {name: form.get(name, "") for name in TEXT_FIELDS}
    values["establishments"] = set(form.getlist("establishments"))
    values["units"] = set(form.getlist("units"))
    values["establishments_other"] = form.get("establishments_other", "")
    values["units_other"] = form.get("units_other", "")
    values["version"] = form.get("version", "")
    return values


def _values_from_identity(identity: Identity) -> dict[str, Any]:
    def iso(day: dt.date | None) -> str:
        return day.isoformat() if day else ""

    return {
        "birth_family_name": identity.birth_family_name, "usage_name": identity.usage_name or "",
        "given_names": identity.given_names, "birth_date": iso(identity.birth_date),
        "birth_place": identity.birth_place or "", "birth_country": identity.birth_country,
        "gender": GENDER_CODES.get(identity.gender, ""), "email": identity.email or "",
        "rpps": identity.rpps or "", "external_id": identity.external_id or "", "user_name": identity.user_name,
        "contract_type": identity.contract_type, "start_date": iso(identity.start_date),
        "end_date": iso(identity.end_date), "roles": ", ".join(identity.role_names),
        "establishments": set(identity.finess_numbers), "units": set(identity.unit_codes),
        "establishments_other": "", "units_other": "", "version": str(identity.version),
    }


def _form_problem(exc: HospiConnectError) -> dict[str, Any]:
    """Split an error into the page-level message, per-field messages and homonym candidates."""
    errors: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        errors = dict(exc.errors)
    elif exc.code in CONFLICT_FIELDS:
        errors = {CONFLICT_FIELDS[exc.code]: exc.message}
    candidates = list(getattr(exc, "candidates", []) or [])
    return {"message": exc.message, "errors": errors, "candidates": candidates,
            "stale": isinstance(exc, PreconditionFailed)}


def _reference_data(session: Session) -> dict[str, Any]:
    """Return the establishments and the units grouped by pôle, for the form's check boxes.

    A read-only lookup of reference rows; the directory services do not expose one yet.
    """
    establishments = list(session.scalars(select(Establishment).order_by(Establishment.name,
                                                                          Establishment.finess)))
    units = list(session.scalars(select(OrgUnit).order_by(OrgUnit.name, OrgUnit.code)))
    children: dict[int, list[OrgUnit]] = {}
    for unit in units:
        if unit.parent_id is not None:
            children.setdefault(unit.parent_id, []).append(unit)
    known = {unit.id for unit in units}
    groups: list[tuple[OrgUnit | None, list[OrgUnit]]] = []
    loose: list[OrgUnit] = []
    for unit in units:
        if unit.parent_id is None or unit.parent_id not in known:
            if unit.id in children or unit.kind == "pole":
                groups.append((unit, children.get(unit.id, [])))
            else:
                loose.append(unit)
    if loose:
        groups.append((None, loose))
    return {"establishments": establishments, "unit_groups": groups}


def _render_form(*, mode: str, values: Mapping[str, Any], identity: Identity | None = None,
                 problem: Mapping[str, Any] | None = None, status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    return render_template(
        "directory/form.html", mode=mode, values=values, identity=identity,
        problem=problem or {"message": None, "errors": {}, "candidates": [], "stale": False},
        labels=FIELD_LABELS, contract_types=v.CONTRACT_TYPES, statuses=v.STATUSES,
        **_reference_data(session),
    ), status


def _event_rows(events: list[AuditEvent]) -> list[dict[str, Any]]:
    """Return the journal entries of one identity in French, newest first."""
    rows = []
    for event in events:
        try:
            details = json.loads(event.details or "{}")
        except ValueError:
            details = {}
        parts: list[str] = []
        if "from" in details and "to" in details:
            parts.append(f"{v.STATUSES.get(details['from'], details['from'])} → "
                         f"{v.STATUSES.get(details['to'], details['to'])}")
        if event.tag == tags.DIRECTORY_IDENTITY_CREATED and details.get("status"):
            parts.append(_("statut initial : %(status)s", status=v.STATUSES.get(details["status"],
                                                                                 details["status"])))
        if details.get("fields"):
            parts.append(_("champs : %(fields)s", fields=", ".join(str(FIELD_LABELS.get(f, f))
                                                                  for f in details["fields"])))
        if details.get("end_date"):
            parts.append(_("au %(date)s", date=_date_fr(dt.date.fromisoformat(details["end_date"]))))
        if details.get("homonyms"):
            parts.append(_("%(n)s homonyme(s) connu(s)", n=len(details["homonyms"])))
        if details.get("reason"):
            parts.append(_("motif : %(reason)s", reason=details["reason"]))
        rows.append({"when": event.occurred_at, "label": EVENT_LABELS.get(event.tag, event.tag),
                     "actor": event.actor, "detail": " ; ".join(parts), "outcome": event.outcome})
    return rows


def _render_detail(session: Session, identity: Identity, *, action: str | None = None,
                   problem: Mapping[str, Any] | None = None, form: Mapping[str, str] | None = None,
                   status: int = 200) -> tuple[str, int]:
    finess = identity.finess_numbers
    codes = identity.unit_codes
    establishments = {e.finess: e for e in session.scalars(
        select(Establishment).where(Establishment.finess.in_(finess)))} if finess else {}
    units = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.code.in_(codes)))} if codes else {}
    parent_ids = {u.parent_id for u in units.values() if u.parent_id is not None}
    parents = {u.id: u for u in session.scalars(select(OrgUnit).where(OrgUnit.id.in_(parent_ids)))} \
        if parent_ids else {}
    history = _event_rows(audit.recent(session, subject=identity.public_id, limit=HISTORY_LIMIT))
    summarizer: VerificationSummarizer | None = current_app.extensions.get(VERIFICATION_EXTENSION)
    return render_template(
        "directory/detail.html", identity=identity, establishments=establishments, units=units,
        parents=parents, history=history, verification=summarizer(session, identity) if summarizer else None,
        labels=FIELD_LABELS, contract_types=v.CONTRACT_TYPES,
        statuses=v.STATUSES, genders=GENDER_LABELS, populations=POPULATION_LABELS, countries=COUNTRY_NAMES,
        action=action, problem=problem or {"message": None, "errors": {}}, form=form or {},
        today=dt.date.today().isoformat(),
    ), status


def _to_detail(identity: Identity) -> Response:
    return redirect(url_for(".detail", public_id=identity.public_id), code=303)


# --- list ----------------------------------------------------------------------------------------------

@bp.get("/", strict_slashes=False)
def index() -> str:
    """The directory: search, filters by status and population, pagination and counts."""
    query = (request.args.get("q") or "").strip()[:100]
    status = request.args.get("status") or ""
    status = status if status in v.STATUSES else ""
    population = request.args.get("population") or ""
    population = population if population in POPULATION_LABELS else ""
    try:
        page = max(1, int(request.args.get("page") or 1))
    except ValueError:
        page = 1
    session = appctx.db_session()
    criteria = {"search": query or None, "population": population or None}
    total, rows = services.list_identities(session, status=status or None, limit=PAGE_SIZE,
                                           offset=(page - 1) * PAGE_SIZE, **criteria)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:
        page = pages
        total, rows = services.list_identities(session, status=status or None, limit=PAGE_SIZE,
                                               offset=(page - 1) * PAGE_SIZE, **criteria)
    # Per-status counts for the same search, so that each filter shows what it would give.
    counts = {code: services.list_identities(session, status=code, limit=0, **criteria)[0] for code in v.STATUSES}
    return render_template(
        "directory/list.html", rows=rows, total=total, page=page, pages=pages, page_size=PAGE_SIZE,
        query=query, status=status, population=population, counts=counts, all_count=sum(counts.values()),
        statuses=v.STATUSES, populations=POPULATION_LABELS, contract_types=v.CONTRACT_TYPES,
    )


# --- creation ------------------------------------------------------------------------------------------

@bp.get("/nouvelle")
def new() -> tuple[str, int]:
    """An empty creation form."""
    values: dict[str, Any] = {name: "" for name in TEXT_FIELDS}
    values.update(birth_country=v.FRANCE, contract_type="permanent", start_date=dt.date.today().isoformat(),
                  establishments=set(), units=set(), establishments_other="", units_other="")
    return _render_form(mode="create", values=values)


@bp.post("/nouvelle")
def create() -> Response | tuple[str, int]:
    """Create an identity; a possible homonym must be confirmed by resubmitting with the check box."""
    raw = _raw_from_form(request.form)
    confirm = request.form.get("confirm_homonym") == "1"
    session = appctx.db_session()
    try:
        data = services.validate_identity(raw)
        identity = services.create_identity(session, data, actor=ACTOR, client_ip=appctx.client_ip(),
                                            confirm_homonym=confirm)
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _render_form(mode="create", values=_values_from_form(request.form), problem=_form_problem(exc),
                            status=_status_of(exc))
    flash(_("Identité créée : %(name)s (%(user)s).", name=identity.display_name, user=identity.user_name),
          "success")
    return _to_detail(identity)


# --- detail and edit -----------------------------------------------------------------------------------

@bp.get("/<public_id>")
def detail(public_id: str) -> tuple[str, int]:
    """Every field of one identity, its journal and the lifecycle actions."""
    session = appctx.db_session()
    return _render_detail(session, services.get_identity(session, public_id))


@bp.get("/<public_id>/modifier")
def edit(public_id: str) -> tuple[str, int]:
    """The edit form, carrying the version it was filled from."""
    identity = services.get_identity(appctx.db_session(), public_id)
    return _render_form(mode="edit", values=_values_from_identity(identity), identity=identity)


@bp.post("/<public_id>/modifier")
def update(public_id: str) -> Response | tuple[str, int]:
    """Save an edit; refused with a clear message when someone else saved first (stale version)."""
    session = appctx.db_session()
    identity = services.get_identity(session, public_id)
    raw = _raw_from_form(request.form)
    confirm = request.form.get("confirm_homonym") == "1"
    try:
        try:
            version = int(request.form.get("version", ""))
        except ValueError:
            raise ValidationError(_("Le formulaire est incomplet : rechargez la fiche et recommencez."),
                                  field="version") from None
        data = services.validate_identity(raw)
        changed = services.update_identity(session, identity, data, actor=ACTOR, client_ip=appctx.client_ip(),
                                           expected_version=version, confirm_homonym=confirm)
        session.commit()
    except HospiConnectError as exc:
        session.rollback()
        return _render_form(mode="edit", values=_values_from_form(request.form), identity=identity,
                            problem=_form_problem(exc), status=_status_of(exc))
    if changed:
        flash(_("Modifications enregistrées : %(fields)s.",
                fields=", ".join(str(FIELD_LABELS.get(f, f)) for f in changed)), "success")
    else:
        flash(_("Aucune modification : la fiche était déjà à jour."), "info")
    return _to_detail(identity)


# --- lifecycle actions ---------------------------------------------------------------------------------

def _reason(form: MultiDict[str, str], *, required: bool) -> str:
    reason = " ".join((form.get("reason") or "").split())
    if required and not reason:
        raise ValidationError(_("Indiquez le motif."), field="reason")
    if len(reason) > 200:
        raise ValidationError(_("Le motif dépasse 200 caractères."), field="reason")
    return reason


def _action_failed(session: Session, identity: Identity, action: str, exc: HospiConnectError) -> tuple[str, int]:
    session.rollback()
    return _render_detail(session, identity, action=action, problem=_form_problem(exc),
                          form=request.form.to_dict(), status=_status_of(exc))


@bp.post("/<public_id>/suspendre")
def suspend(public_id: str) -> Response | tuple[str, int]:
    """Suspend an identity; the reason is required and journaled."""
    session = appctx.db_session()
    identity = services.get_identity(session, public_id)
    try:
        reason = _reason(request.form, required=True)
        services.suspend(session, identity, actor=ACTOR, reason=reason, client_ip=appctx.client_ip())
        session.commit()
    except HospiConnectError as exc:
        return _action_failed(session, identity, "suspend", exc)
    flash(_("Identité suspendue."), "success")
    return _to_detail(identity)


@bp.post("/<public_id>/reactiver")
def reactivate(public_id: str) -> Response | tuple[str, int]:
    """Reactivate a suspended identity."""
    session = appctx.db_session()
    identity = services.get_identity(session, public_id)
    try:
        reason = _reason(request.form, required=False)
        services.reactivate(session, identity, actor=ACTOR, reason=reason, client_ip=appctx.client_ip())
        session.commit()
    except HospiConnectError as exc:
        return _action_failed(session, identity, "reactivate", exc)
    flash(_("Identité réactivée."), "success")
    return _to_detail(identity)


@bp.post("/<public_id>/terminer")
def end(public_id: str) -> Response | tuple[str, int]:
    """Set the end date; when it has arrived the identity is suspended at once."""
    session = appctx.db_session()
    identity = services.get_identity(session, public_id)
    try:
        text = (request.form.get("end_date") or "").strip()
        if not text:
            raise ValidationError(_("Indiquez la date de fin."), field="end_date")
        end_date = v.parse_date(text, "end_date", _("Date de fin"))
        reason = _reason(request.form, required=False) or "fin de contrat"
        services.end(session, identity, actor=ACTOR, end_date=end_date, reason=reason,
                     client_ip=appctx.client_ip())
        session.commit()
    except HospiConnectError as exc:
        return _action_failed(session, identity, "end", exc)
    flash(_("Date de fin enregistrée au %(date)s.", date=_date_fr(end_date)), "success")
    return _to_detail(identity)
