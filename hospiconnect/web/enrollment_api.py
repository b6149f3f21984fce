"""Enrollment JSON API (``/api/v1``): the enrollment desk for helpdesk tools, described by the OpenAPI
document served at ``/api/v1/openapi.json`` (:mod:`hospiconnect.web.openapi`).

A helpdesk tool is a registered OpenID Connect client acting **on behalf of the registration officer
signed in to it**: it obtains an access token for the officer with the scope ``enrollment`` and sends it
as ``Authorization: Bearer <token>`` (RFC 6750 §2.1). The token is checked against the provider's own
token store, then the desk's rule (:func:`hospiconnect.web.enrollment_common.access_denial`) decides with
the token's identity and ``auth_time``: the role ``enrollment_officer`` and two factors (``mfa`` in the
token's ``amr``) verified within ``recent_mfa_minutes``. So a token obtained long ago, or refreshed since,
does not let anyone enroll.

Views read and check the JSON input, call one service of :mod:`hospiconnect.enrollment.services` (which
journals with the actor ``officer:<user name>``, exactly as at the desk) and commit once. Bad input
changes nothing and gets a JSON error ``{"error": code, "message": French text, …}``; 401 and 403 that
come from the token carry a ``WWW-Authenticate: Bearer …`` challenge (RFC 6750 §3, RFC 9470 for the
second factor). The blueprint is exempt from the forms' CSRF protection: no cookie authenticates here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from hospiconnect import appctx
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.models import Mie
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import (
    CaseNotFound,
    DocumentRefused,
    InvalidLostMie,
    SeparationOfDuties,
    TransitionRefused,
)
from hospiconnect.enrollment.models import ActivationCode, EnrollmentCase
from hospiconnect.enrollment.verification import verification_of
from hospiconnect.errors import HospiConnectError, NotFound, ValidationError
from hospiconnect.idp import bearer, tokens
from hospiconnect.idp.models import Token
from hospiconnect.web.enrollment_common import (
    CHECKED_AT_TOLERANCE,
    MAX_FIELD_CHARS,
    PARIS,
    PUBLIC_ID_RE,
    SEARCH_LIMIT,
    access_denial,
    activation_url,
    clean,
    officer_actor,
    parse_date,
    parse_local_datetime,
    search_query,
)
from hospiconnect.web.json_input import JsonInputError, read_json_object

bp = Blueprint("enrollment_api", __name__, url_prefix="/api/v1")

API_SCOPE = "enrollment"
MAX_BODY_BYTES = 8 * 1024
MAX_REASON_CHARS = 300
PUBLIC_ENDPOINTS = frozenset({"enrollment_api.openapi_document"})
# The service names the form field; the API names its JSON member.
_API_FIELDS = {"lost_mie": "lost_mie_id"}


class ApiError(HospiConnectError):
    """A refusal of the API itself (credentials, input), answered with ``status``, ``code``, the optional
    ``field`` and ``reason`` and the response ``headers``."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.http_status = status
        self.field = field
        self.reason = reason
        self.headers = headers or {}


@dataclasses.dataclass(frozen=True)
class ApiOfficer:
    """The registration officer a helpdesk tool acts for, and the access token it presented."""

    token: Token
    identity: Identity

    @property
    def actor(self) -> str:
        return officer_actor(self.identity)


def _officer() -> ApiOfficer:
    officer: ApiOfficer = g.api_officer
    return officer


# --- authentication -------------------------------------------------------------------------------------


def _refuse_token(row: Token, identity: Identity | None, error: ApiError) -> ApiError:
    """Journal the refusal of a known token (``api:token:refused``), commit it, and return ``error``."""
    session = appctx.db_session()
    session.rollback()
    audit.record(session, tags.API_TOKEN_REFUSED, actor=f"client:{row.client_id}",
                 subject=identity.public_id if identity is not None else None, client_ip=appctx.client_ip(),
                 outcome="refused", details={"api": API_SCOPE, "reason": error.reason or error.code,
                                             "method": request.method, "path": request.path[:200]})
    session.commit()
    return error


def _authenticate() -> ApiOfficer:
    """Return the officer the request's bearer token stands for; raise :class:`ApiError` (400, 401, 403)."""
    rt = appctx.runtime()
    session = appctx.db_session()
    try:
        value = bearer.credentials(request.headers.get("Authorization"))
    except bearer.MalformedAuthorization:
        raise ApiError(400, "invalid_request", _("L'en-tête Authorization doit être de la forme « Bearer <jeton> »."),
                       headers={"WWW-Authenticate": bearer.challenge("invalid_request")}) from None
    if value is None:
        # RFC 6750 §3.1: no error code when the request carried no credentials.
        raise ApiError(401, "invalid_token", _("Jeton d'accès requis : connectez-vous à HospiConnect depuis "
                                               "l'outil d'assistance."),
                       headers={"WWW-Authenticate": bearer.challenge()})
    invalid = ApiError(401, "invalid_token", _("Jeton d'accès invalide, expiré ou révoqué."),
                       headers={"WWW-Authenticate": bearer.challenge("invalid_token")})
    row = tokens.find_token(session, rt.keys, value, kind="access")
    if row is None:
        raise invalid
    now = utcnow()
    identity = session.get(Identity, row.identity_id)
    if identity is None or not identity.is_active or not tokens.is_active(row, now):
        raise _refuse_token(row, identity, invalid)
    if API_SCOPE not in row.scope.split():
        raise _refuse_token(row, identity, ApiError(
            403, "insufficient_scope", _("Ce jeton d'accès n'a pas la portée « enrollment » : l'outil doit la "
                                         "demander à la connexion."),
            headers={"WWW-Authenticate": bearer.challenge("insufficient_scope", scope=API_SCOPE)}))
    two_factors = "mfa" in json.loads(row.amr_json or "[]")
    minutes = rt.settings.recent_mfa_minutes
    reason = access_denial(has_session=True, roles=identity.role_names,
                           mfa_time=row.auth_time if two_factors else None, recovery_only=False, now=now,
                           recent_minutes=minutes)
    if reason == "not_officer":
        raise _refuse_token(row, identity, ApiError(
            403, "access_denied", _("Votre compte n'a pas le rôle d'agent d'enrôlement : cette API ne vous est "
                                    "pas ouverte."), reason=reason,
            headers={"WWW-Authenticate": bearer.challenge("access_denied")}))
    if reason is not None:
        # RFC 9470: the tool signs the officer in again, with two factors and max_age.
        reason = "mfa_not_recent" if two_factors else "mfa_required"
        raise _refuse_token(row, identity, ApiError(
            403, "insufficient_user_authentication",
            _("Pour enrôler une personne, vous devez avoir vérifié votre second facteur il y a moins de "
              "%(minutes)s minutes : reconnectez-vous avec deux facteurs.", minutes=minutes), reason=reason,
            headers={"WWW-Authenticate": bearer.challenge("insufficient_user_authentication",
                                                          max_age=str(minutes * 60))}))
    return ApiOfficer(row, identity)


@bp.before_request
def _load_officer() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        g.api_officer = _authenticate()


@bp.after_request
def _no_store(response: Response) -> Response:
    # Personal data, and once a secret shown once (the activation code): never cached.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Pragma", "no-cache")
    return response


# --- errors ---------------------------------------------------------------------------------------------


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@bp.errorhandler(HospiConnectError)
def _domain_error(exc: HospiConnectError) -> Response:
    # Services commit their journaled refusals before raising: what is left in the session is dropped.
    appctx.db_session().rollback()
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    status = exc.http_status
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        headers = exc.headers
        body.update({k: v for k, v in (("field", exc.field), ("reason", exc.reason)) if v})
    elif isinstance(exc, ValidationError):
        if exc.field:
            body["field"] = _API_FIELDS.get(exc.field, exc.field)
        if isinstance(exc, (DocumentRefused, InvalidLostMie)):
            # Well-formed, but the document or the MIE named cannot be accepted.
            status = 422
    elif isinstance(exc, TransitionRefused):
        body["state"] = exc.state
    return _error(status, body, headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = {
        404: ("not_found", _("Cette ressource n'existe pas.")),
        405: ("method_not_allowed", _("Cette méthode n'est pas acceptée ici.")),
        413: ("payload_too_large", _("Le corps de la requête dépasse la taille autorisée.")),
    }.get(status, ("invalid_request", _("Requête refusée.")))
    return _error(status, {"error": code, "message": message})


# --- input ----------------------------------------------------------------------------------------------


def _invalid(field: str, message: str, code: str = "invalid_value", status: int = 400) -> ApiError:
    return ApiError(status, code, message, field=field)


def _json_body(*fields: str, required: tuple[str, ...] = (), allow_empty: bool = False) -> dict[str, Any]:
    """Return the request's JSON object, whose members may only be ``fields`` and must include ``required``.

    ``allow_empty``: a request without a body at all stands for ``{}``. Raises :class:`ApiError` (415 for
    another media type, 413 past ``MAX_BODY_BYTES``, 400 otherwise).
    """
    if allow_empty and not request.mimetype and not request.content_length:
        body: dict[str, Any] = {}
    else:
        if request.mimetype != "application/json":
            raise ApiError(415, "unsupported_media_type",
                           _("Type de contenu non pris en charge : envoyez application/json."))
        try:
            body = read_json_object(MAX_BODY_BYTES)
        except JsonInputError as exc:
            if exc.reason == "too_large":
                raise ApiError(413, "payload_too_large", _("Le corps de la requête dépasse %(n)s octets.",
                                                           n=MAX_BODY_BYTES)) from None
            raise ApiError(400, "invalid_json", _("Le corps de la requête doit être un objet JSON.")) from None
    unknown = sorted(name for name in body if name not in fields)
    if unknown:
        name = unknown[0][:50]
        raise _invalid(name, _("Champ inconnu : « %(name)s ».", name=name), "unknown_field")
    for name in required:
        if body.get(name) is None:
            raise _invalid(name, _("Champ obligatoire : « %(name)s ».", name=name), "missing_field")
    return body


def _string(body: dict[str, Any], name: str, max_chars: int) -> str | None:
    """Return the member ``name`` (None when absent or null); refuse anything but a short, storable string."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(name, _("« %(name)s » doit être une chaîne de caractères.", name=name), "invalid_type")
    if len(value) > max_chars:
        raise _invalid(name, _("« %(name)s » ne doit pas dépasser %(n)s caractères.", name=name, n=max_chars),
                       "too_long")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800) that no database can store
        raise _invalid(name, _("« %(name)s » contient des caractères invalides.", name=name)) from None
    return value


def _identity_or_404(public_id: str) -> Identity:
    # As at the desk: the public id, or the user name, external id or RPPS number.
    if PUBLIC_ID_RE.fullmatch(public_id or ""):
        try:
            return directory.get_identity(appctx.db_session(), public_id)
        except NotFound:
            pass
    raise ApiError(404, "identity_not_found", _("Aucune identité ne porte cet identifiant."))


def _case_or_404(case_id: str) -> EnrollmentCase:
    if PUBLIC_ID_RE.fullmatch(case_id or ""):
        try:
            return enrollment.get_case(appctx.db_session(), case_id)
        except CaseNotFound:
            pass
    raise CaseNotFound()


def _refuse_own_case(case: EnrollmentCase, event: str) -> None:
    """Refuse (journaled, committed) an officer's step on their own case: separation of duties."""
    officer = _officer()
    if case.identity_id != officer.identity.id:
        return
    session = appctx.db_session()
    audit.record(session, tags.ENROLLMENT_CASE_REFUSED, actor=officer.actor, subject=officer.identity.public_id,
                 client_ip=appctx.client_ip(), outcome="refused",
                 details={"case": case.public_id, "kind": case.kind, "state": case.state, "event": event,
                          "reason": "separation_of_duties", "code": SeparationOfDuties.code})
    session.commit()
    raise SeparationOfDuties()


# --- output ---------------------------------------------------------------------------------------------


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _identity_summary(person: Identity) -> dict[str, Any]:
    return {"id": person.public_id, "display_name": person.display_name, "user_name": person.user_name,
            "birth_date": person.birth_date.isoformat(), "rpps": person.rpps, "population": person.population,
            "status": person.status, "roles": person.role_names}


def _mie_json(mie: Mie) -> dict[str, Any]:
    return {"id": mie.public_id, "type": mie.type, "label": mie.label, "status": mie.status,
            "proofing_method": mie.proofing_method, "proofing_at": _time(mie.proofing_at),
            "created_at": _time(mie.created_at), "activated_at": _time(mie.activated_at),
            "revoked_at": _time(mie.revoked_at)}


def _mie_public_id(mie_id: int | None) -> str | None:
    mie = appctx.db_session().get(Mie, mie_id) if mie_id is not None else None
    return mie.public_id if mie is not None else None


def _case_json(case: EnrollmentCase) -> dict[str, Any]:
    """The case as the API shows it: of the document, never more than its last 4 characters."""
    person = appctx.db_session().get(Identity, case.identity_id)
    assert person is not None
    check = None
    if case.identity_check_method is not None:
        document = None
        if case.document_type is not None:
            document = {"type": case.document_type, "issuing_country": case.document_issuing_country,
                        "expiry_date": case.document_expiry_date.isoformat() if case.document_expiry_date else None,
                        "last4": case.document_last4}
        check = {"method": case.identity_check_method, "checked_at": _time(case.identity_checked_at),
                 "place": case.identity_check_place, "document": document}
    return {"id": case.public_id, "identity_id": person.public_id, "kind": case.kind, "state": case.state,
            "opened_at": _time(case.opened_at), "opened_by": case.opened_by, "expires_at": _time(case.expires_at),
            "updated_at": _time(case.updated_at), "identity_verified_at": _time(case.identity_verified_at),
            "mie_issued_at": _time(case.mie_issued_at), "activated_at": _time(case.activated_at),
            "closed_at": _time(case.closed_at), "identity_check": check,
            "replaced_mie_id": _mie_public_id(case.replaced_mie_id),
            "activated_mie_id": _mie_public_id(case.activated_mie_id),
            "rejection_reasons": [str(r) for r in case.rejection_reasons],
            "is_self": case.identity_id == _officer().identity.id}


def _case_response(case: EnrollmentCase, status: int = 200) -> tuple[Response, int]:
    response = jsonify(_case_json(case))
    if status == 201:
        response.headers["Location"] = url_for("enrollment_api.get_case", case_id=case.public_id)
    return response, status


# --- endpoints ------------------------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of this API (public)."""
    from hospiconnect.web import openapi  # it documents this module and imports it

    response = jsonify(openapi.document(appctx.runtime().settings))
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/identities")
def search_identities() -> Response:
    """Search the directory as the desk does (name, user name, RPPS or e-mail), ``limit`` people at most."""
    unknown = sorted(name for name in request.args if name not in ("q", "limit"))
    if unknown:
        raise _invalid(unknown[0][:50], _("Paramètre inconnu : « %(name)s ».", name=unknown[0][:50]),
                       "unknown_parameter")
    query = search_query(request.args.get("q", ""))
    if not query:
        raise _invalid("q", _("Indiquez un nom, un identifiant, un numéro RPPS ou une adresse électronique."),
                       "missing_field")
    raw_limit = request.args.get("limit", str(SEARCH_LIMIT))
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3
            and 1 <= int(raw_limit) <= SEARCH_LIMIT):
        raise _invalid("limit", _("« limit » doit être un entier entre 1 et %(n)s.", n=SEARCH_LIMIT))
    total, people = directory.list_identities(appctx.db_session(), search=query, limit=int(raw_limit))
    return jsonify({"total": total, "items": [_identity_summary(p) for p in people]})


@bp.get("/identities/<identity_id>")
def get_identity(identity_id: str) -> Response:
    """A person with their MIE (and the identity check each one followed) and their cases."""
    person = _identity_or_404(identity_id)
    session = appctx.db_session()
    summary = verification_of(session, person)
    check = summary.last_check
    return jsonify({**_identity_summary(person),
                    "is_self": person.id == _officer().identity.id,
                    "verification": {"level": summary.level, "level_label": summary.level_label,
                                     "last_check": None if check is None else {
                                         "method": check.method, "checked_at": _time(check.checked_at),
                                         "case_id": check.case}},
                    "mies": [_mie_json(m) for m in mie_services.list_mie(session, person)],
                    "cases": [_case_json(c) for c in enrollment.cases_of(session, person)]})


@bp.post("/identities/<identity_id>/cases")
def open_case(identity_id: str) -> tuple[Response, int]:
    """Open a case (first MIE, additional MIE, or replacement of a lost or stolen one, revoked at once)."""
    person = _identity_or_404(identity_id)
    body = _json_body("kind", "lost_mie_id", required=("kind",))
    kind = _string(body, "kind", 30) or ""
    if kind not in wf.KINDS:
        raise _invalid("kind", _("Type de dossier inconnu : first_mie, additional_mie ou replacement."))
    lost_id = _string(body, "lost_mie_id", 100)
    if lost_id is not None and kind != wf.KIND_REPLACEMENT:
        raise _invalid("lost_mie_id", _("« lost_mie_id » ne sert qu'à un remplacement."))
    officer = _officer()
    session = appctx.db_session()
    lost: Mie | None = None
    if lost_id:
        lost = next((m for m in mie_services.list_mie(session, person) if m.public_id == lost_id), None)
    case = enrollment.open_case(session, person, kind=kind, officer_identity_id=officer.identity.id,
                                actor=officer.actor, lost_mie=lost, client_ip=appctx.client_ip())
    session.commit()
    return _case_response(case, 201)


@bp.get("/cases/<case_id>")
def get_case(case_id: str) -> tuple[Response, int]:
    """A case: its state, kind, identity check and dates."""
    return _case_response(_case_or_404(case_id))


@bp.post("/cases/<case_id>/document-check")
def document_check(case_id: str) -> tuple[Response, int]:
    """Record the face-to-face check of an identity document."""
    case = _case_or_404(case_id)
    names = ("document_type", "issuing_country", "expiry_date", "last4", "place")
    body = _json_body(*names, "checked_at", required=names)
    values = {name: _string(body, name, MAX_FIELD_CHARS) or "" for name in (*names, "checked_at")}
    place = clean(values["place"])
    expiry = parse_date(values["expiry_date"])
    if values["expiry_date"].strip() and expiry is None:
        raise _invalid("expiry_date", _("Date d'expiration illisible : utilisez le format AAAA-MM-JJ."))
    now = utcnow()
    checked_at = parse_local_datetime(values["checked_at"]) if values["checked_at"].strip() else now
    if checked_at is None:
        raise _invalid("checked_at", _("Date de vérification illisible : utilisez le format ISO 8601."))
    if checked_at > now + CHECKED_AT_TOLERANCE:
        raise _invalid("checked_at", _("La date de vérification ne peut pas être dans le futur."),
                       "checked_at_in_future", 422)
    officer = _officer()
    session = appctx.db_session()
    enrollment.record_document_check(
        session, case, document_type=values["document_type"], issuing_country=values["issuing_country"],
        expiry_date=expiry, last4=values["last4"], place=place, checked_at=checked_at,
        officer_identity_id=officer.identity.id, actor=officer.actor, today=now.astimezone(PARIS).date(),
        client_ip=appctx.client_ip(), now=now)
    session.commit()
    return _case_response(case)


@bp.post("/cases/<case_id>/activation-code")
def activation_code(case_id: str) -> tuple[Response, int]:
    """Issue the case's activation code: shown once in this response (``no-store``); an earlier unused code
    of the case stops working."""
    case = _case_or_404(case_id)
    _json_body(allow_empty=True)
    _refuse_own_case(case, wf.ISSUE_MIE)
    rt = appctx.runtime()
    session = appctx.db_session()
    code = enrollment.issue_activation_code(session, rt.keys, case, actor=_officer().actor,
                                            valid_hours=rt.settings.activation_hours, client_ip=appctx.client_ip())
    session.commit()
    valid_until = session.scalar(select(func.max(ActivationCode.expires_at)).where(ActivationCode.case_id == case.id))
    return jsonify({"case_id": case.public_id, "code": code, "expires_at": _time(valid_until),
                    "activation_url": activation_url(rt.settings.issuer, code)}), 201


@bp.post("/cases/<case_id>/cancel")
def cancel_case(case_id: str) -> tuple[Response, int]:
    """Cancel a case that is not closed yet; its unused activation code stops working."""
    case = _case_or_404(case_id)
    body = _json_body("reason", required=("reason",))
    reason = " ".join(clean(_string(body, "reason", MAX_REASON_CHARS) or "").split())
    if not reason:
        raise _invalid("reason", _("Indiquez le motif de l'annulation."), "missing_field")
    _refuse_own_case(case, wf.CANCEL)
    officer = _officer()
    session = appctx.db_session()
    enrollment.cancel_case(session, case, actor=officer.actor, reason=reason, client_ip=appctx.client_ip())
    session.commit()
    return _case_response(case)
