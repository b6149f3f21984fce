"""SCIM 2.0 provisioning API (RFC 7643, RFC 7644) at ``/scim/v2``.

Implemented: ``/Users`` list and search (RFC 7644 §3.4.2, §3.4.3), create (§3.3), read (§3.4.1), replace
(§3.5.1), modify (§3.5.2), ETags (§3.14), errors (§3.12), and the discovery endpoints (§4). Identities are
never deleted: DELETE answers 405 and clients send ``active=false``.

Every write goes through :mod:`hospiconnect.directory.services`, which journals it in the request's
session; the view commits once, after the service call succeeded, so a refused request writes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from hospiconnect import appctx
from hospiconnect.apitokens import services as apitokens
from hospiconnect.apitokens.models import ApiToken
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.directory import scim_query, services
from hospiconnect.directory.models import Identity
from hospiconnect.directory.scim_filter import AttrPath, FilterError, parse_path
from hospiconnect.directory.scim_patch import (
    Draft,
    apply_patch,
    apply_resource,
    check_schemas,
    draft_from_identity,
    validation_detail,
)
from hospiconnect.directory.scim_schema import (
    ERROR,
    HC_USER,
    SEARCH_REQUEST,
    USER_SCHEMAS,
    ScimError,
    etag,
    list_response,
    project,
    resource_type_document,
    schema_document,
    service_provider_config,
    to_resource,
)
from hospiconnect.errors import Conflict, HospiConnectError, NotFound, PreconditionFailed, ValidationError

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")

MEDIA_TYPE = "application/scim+json"
ACCEPTED_TYPES = ("application/scim+json", "application/json")
READ_SCOPE = "scim:read"
WRITE_SCOPE = "scim"
_PUBLIC_ID_RE = re.compile(r"^[0-9A-Za-z\-]{1,36}$")


# --- responses -------------------------------------------------------------------------------------------

def _base_url() -> str:
    # The configured issuer, not the Host header: a location must not depend on what the client sent.
    return f"{appctx.runtime().settings.issuer.rstrip('/')}{bp.url_prefix}"


def _location(identity: Identity) -> str:
    return f"{_base_url()}/Users/{identity.public_id}"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                          mimetype=MEDIA_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _error(status: int, detail: str, scim_type: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return _json(body, status, headers)


Projection = tuple[list[AttrPath], list[AttrPath]]


def _user_response(identity: Identity, projection: Projection, status: int = 200) -> Response:
    resource = project(to_resource(identity, _location(identity)), *projection)
    headers = {"ETag": etag(identity)}
    if status == 201:
        headers["Location"] = _location(identity)
    return _json(resource, status, headers)


@bp.errorhandler(HospiConnectError)
def _domain_error(exc: HospiConnectError) -> Response:
    appctx.db_session().rollback()
    if isinstance(exc, ScimError):
        headers = {"Allow": "GET, PUT, PATCH"} if exc.http_status == 405 else None
        return _error(exc.http_status, exc.message, exc.scim_type, headers)
    if isinstance(exc, apitokens.InvalidToken):
        # RFC 6750 §3.1: no error code when the request carried no credentials. Unknown, revoked and
        # malformed tokens get the same answer.
        challenge = 'Bearer realm="scim"'
        if "Authorization" in request.headers:
            challenge += ', error="invalid_token"'
        return _error(401, "Jeton d'accès absent ou invalide.", headers={"WWW-Authenticate": challenge})
    if isinstance(exc, apitokens.InsufficientScope):
        return _error(403, exc.message,
                      headers={"WWW-Authenticate": 'Bearer realm="scim", error="insufficient_scope"'})
    if isinstance(exc, services.InvalidTransition):
        # A status change the lifecycle refuses (reactivating past the end date…): the value is at fault.
        return _error(400, exc.message, "invalidValue")
    if isinstance(exc, services.DuplicateIdentity):
        return _error(409, f"{exc.message} (attribut {HC_USER}:homonymConfirmed)", "uniqueness")
    if isinstance(exc, Conflict):
        return _error(409, exc.message, "uniqueness")
    if isinstance(exc, ValidationError):
        return _error(400, validation_detail(exc.errors) if exc.errors else exc.message, "invalidValue")
    if isinstance(exc, (NotFound, PreconditionFailed)):
        return _error(exc.http_status, exc.message)
    return _error(exc.http_status, exc.message, "invalidValue" if exc.http_status == 400 else None)


@bp.errorhandler(IntegrityError)
def _integrity_error(exc: IntegrityError) -> Response:
    # A concurrent request took the same userName, externalId or RPPS between our check and the commit.
    appctx.db_session().rollback()
    return _error(409, "Cette modification entre en conflit avec une autre, faite au même moment "
                       "(identifiant déjà pris). Relisez puis recommencez.", "uniqueness")


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = {413: "Le corps de la requête dépasse la taille autorisée.",
              405: "Cette méthode n'est pas acceptée ici."}.get(status, "Requête refusée.")
    return _error(status, detail)


# --- request helpers ---------------------------------------------------------------------------------------

def _authenticate(scope: str) -> ApiToken:
    """Return the bearer token of the request if it grants ``scope``.

    Raises InvalidToken (absent, unknown, revoked: one answer for all, so nothing tells them apart) or
    InsufficientScope, which is journaled: a known token trying what it may not do is worth a trace.
    """
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    plaintext = credentials.strip() if scheme.lower() == "bearer" else None
    session = appctx.db_session()
    keys = appctx.runtime().keys
    try:
        return apitokens.authenticate(session, keys, plaintext, scope)
    except apitokens.InsufficientScope:
        session.rollback()
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == keys.keyed_hash(plaintext or "")))
        audit.record(session, tags.API_TOKEN_REFUSED, actor=f"api_token:{token.name if token else '?'}",
                     subject="scim", client_ip=appctx.client_ip(), outcome="refused",
                     details={"scope": scope, "method": request.method, "path": request.path})
        session.commit()
        raise


def _actor(token: ApiToken) -> str:
    return f"api_token:{token.name}"


def _json_body() -> dict[str, Any]:
    """Return the request's JSON object; raise ScimError (415 for another media type, 400 invalidSyntax)."""
    if request.mimetype and request.mimetype not in ACCEPTED_TYPES:
        raise ScimError("Type de contenu non pris en charge : envoyez application/scim+json ou application/json.",
                        status=415, scim_type=None)
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, RecursionError) as exc:
        raise ScimError("Le corps de la requête n'est pas un JSON valide.", scim_type="invalidSyntax") from exc
    if not isinstance(body, dict):
        raise ScimError("Le corps de la requête doit être un objet JSON.", scim_type="invalidSyntax")
    return body


def _load(user_id: str, *, for_update: bool = False) -> Identity:
    identity = scim_query.find_user(appctx.db_session(), user_id, for_update=for_update) \
        if _PUBLIC_ID_RE.match(user_id) else None
    if identity is None:
        raise ScimError("Aucune identité ne porte cet identifiant.", status=404, scim_type=None)
    return identity


def _check_if_match(identity: Identity) -> None:
    if "If-Match" not in request.headers:
        return
    tags_sent = request.if_match
    if not (tags_sent.star_tag or tags_sent.contains_weak(str(identity.version))):
        raise ScimError(f"L'identité a changé depuis la version envoyée dans If-Match (version courante : "
                        f"{etag(identity)}) ; relisez-la puis recommencez.", status=412, scim_type=None)


def _names(value: Any, label: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ScimError(f"{label} : une liste de noms d'attributs est attendue.")


def _paths(names: list[str], label: str) -> list[AttrPath]:
    out = []
    for name in names:
        try:
            path = parse_path(name)
        except FilterError as exc:
            raise ScimError(f"{label} : « {name[:100]} » n'est pas un nom d'attribut ({exc.message}).") from exc
        if path.filter is not None or path.sub_attr is not None:
            raise ScimError(f"{label} : « {name[:100]} » n'est pas un nom d'attribut.")
        out.append(path.path)
    return out


def _projection_params(source: dict[str, Any] | None = None) -> Projection:
    """Return the parsed ``attributes`` / ``excludedAttributes`` of the query string or of a search body.

    Views read them before doing anything, so that a malformed parameter never answers an error after a
    write was committed.
    """
    getter = source.get if source is not None else request.args.get
    return (_paths(_names(getter("attributes"), "attributes"), "attributes"),
            _paths(_names(getter("excludedAttributes"), "excludedAttributes"), "excludedAttributes"))


def _integer(value: Any, name: str, default: int) -> int:
    """Return ``value`` (a query-string text or a JSON integer) as an int; raise ScimError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError as exc:  # not an integer, or more digits than Python converts
            raise ScimError(f"{name} doit être un entier.") from exc
    raise ScimError(f"{name} doit être un entier.")


def _list(params: dict[str, Any]) -> Response:
    settings = appctx.runtime().settings
    filter_text = params.get("filter")
    if filter_text is not None and not isinstance(filter_text, str):
        raise ScimError("filter doit être une chaîne.", scim_type="invalidFilter")
    # RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count means 0.
    start_index = max(1, _integer(params.get("startIndex"), "startIndex", 1))
    count = min(max(0, _integer(params.get("count"), "count", 100)), settings.scim_max_page_size)
    sort_by, sort_order = params.get("sortBy"), params.get("sortOrder")
    if not isinstance(sort_by, (str, type(None))) or not isinstance(sort_order, (str, type(None))):
        raise ScimError("sortBy et sortOrder sont des chaînes.")
    attributes, excluded = _projection_params(params)
    session = appctx.db_session()
    total, identities = scim_query.search(session, filter_text=filter_text or None, start_index=start_index,
                                          count=count, sort_by=sort_by or None, sort_order=sort_order or None)
    resources = [project(to_resource(i, _location(i)), attributes, excluded) for i in identities]
    session.commit()  # keeps the token's last use
    return _json(list_response(resources, total=total, start_index=start_index))


def _validated(draft: Draft) -> services.IdentityData:
    try:
        return services.validate_identity(draft.raw)
    except ValidationError as exc:
        raise ScimError(validation_detail(exc.errors) if exc.errors else exc.message) from exc


def _apply_activity(identity: Identity, wanted: bool | None, actor: str) -> None:
    """Turn ``active`` into a lifecycle change. A pending identity stays pending: its start date decides."""
    session = appctx.db_session()
    if wanted is False and identity.status in ("active", "pending"):
        services.suspend(session, identity, actor=actor, reason="SCIM active=false", client_ip=appctx.client_ip())
    elif wanted is True and identity.status == "suspended":
        services.reactivate(session, identity, actor=actor, reason="SCIM active=true", client_ip=appctx.client_ip())
    elif wanted is True and identity.status == "departed":
        raise ScimError("Cette identité est partie : elle ne peut plus être réactivée.")


def _save(identity: Identity, draft: Draft, token: ApiToken, projection: Projection) -> Response:
    data = _validated(draft)
    session = appctx.db_session()
    actor = _actor(token)
    services.update_identity(session, identity, data, actor=actor, client_ip=appctx.client_ip(),
                             confirm_homonym=draft.confirm_homonym)
    _apply_activity(identity, draft.active, actor)
    session.commit()
    return _user_response(identity, projection)


# --- /Users ------------------------------------------------------------------------------------------------

@bp.get("/Users")
def list_users() -> Response:
    _authenticate(READ_SCOPE)
    return _list(request.args.to_dict())


@bp.post("/Users/.search")
def search_users() -> Response:
    """RFC 7644 §3.4.3: the same query as GET /Users, sent in a SearchRequest body."""
    _authenticate(READ_SCOPE)
    body = _json_body()
    check_schemas(body, SEARCH_REQUEST, (SEARCH_REQUEST,))
    return _list(body)


@bp.post("/Users")
def create_user() -> Response:
    token = _authenticate(WRITE_SCOPE)
    projection = _projection_params()
    body = _json_body()
    draft = apply_resource(Draft(raw={}), body)
    data = _validated(draft)
    session = appctx.db_session()
    actor = _actor(token)
    identity = services.create_identity(session, data, actor=actor, client_ip=appctx.client_ip(),
                                        confirm_homonym=draft.confirm_homonym)
    _apply_activity(identity, draft.active, actor)
    session.commit()
    return _user_response(identity, projection, 201)


@bp.get("/Users/<user_id>")
def get_user(user_id: str) -> Response:
    _authenticate(READ_SCOPE)
    projection = _projection_params()
    identity = _load(user_id)
    appctx.db_session().commit()  # keeps the token's last use
    if "If-None-Match" in request.headers:
        sent = request.if_none_match
        if sent.star_tag or sent.contains_weak(str(identity.version)):
            response = current_app.response_class(status=304)
            response.headers["ETag"] = etag(identity)
            return response
    return _user_response(identity, projection)


@bp.put("/Users/<user_id>")
def replace_user(user_id: str) -> Response:
    token = _authenticate(WRITE_SCOPE)
    projection = _projection_params()
    body = _json_body()
    identity = _load(user_id, for_update=True)
    _check_if_match(identity)
    return _save(identity, apply_resource(draft_from_identity(identity), body), token, projection)


@bp.patch("/Users/<user_id>")
def patch_user(user_id: str) -> Response:
    token = _authenticate(WRITE_SCOPE)
    projection = _projection_params()
    body = _json_body()
    identity = _load(user_id, for_update=True)
    _check_if_match(identity)
    return _save(identity, apply_patch(draft_from_identity(identity), body), token, projection)


@bp.delete("/Users/<user_id>")
def delete_user(user_id: str) -> Response:
    _authenticate(WRITE_SCOPE)
    raise ScimError("Les identités ne sont jamais supprimées : le journal d'audit doit toujours pouvoir s'y "
                    "rapporter. Pour retirer l'accès, envoyez active=false (PATCH ou PUT) : l'identité est "
                    "alors suspendue.", status=405, scim_type=None)


# --- discovery (RFC 7644 §4) ----------------------------------------------------------------------------------
# Public: these documents describe the API, not the people in it.

def _refuse_filter() -> None:
    # RFC 7644 §4: a filter on a discovery endpoint is refused rather than silently ignored.
    if "filter" in request.args:
        raise ScimError("Le filtrage n'est pas pris en charge sur cette ressource.", status=403, scim_type=None)


@bp.get("/ServiceProviderConfig")
def service_provider_config_view() -> Response:
    _refuse_filter()
    return _json(service_provider_config(_base_url(), appctx.runtime().settings.scim_max_page_size))


@bp.get("/ResourceTypes")
def resource_types() -> Response:
    _refuse_filter()
    return _json(list_response([resource_type_document(_base_url())], total=1, start_index=1))


@bp.get("/ResourceTypes/<name>")
def resource_type(name: str) -> Response:
    if name != "User":
        raise ScimError("Type de ressource inconnu (seul « User » existe).", status=404, scim_type=None)
    return _json(resource_type_document(_base_url()))


@bp.get("/Schemas")
def schemas() -> Response:
    _refuse_filter()
    documents = [schema_document(urn, _base_url()) for urn in USER_SCHEMAS]
    return _json(list_response(documents, total=len(documents), start_index=1))


@bp.get("/Schemas/<path:urn>")
def schema(urn: str) -> Response:
    known = {u.lower(): u for u in USER_SCHEMAS}
    if urn.lower() not in known:
        raise ScimError("Schéma inconnu.", status=404, scim_type=None)
    return _json(schema_document(known[urn.lower()], _base_url()))
