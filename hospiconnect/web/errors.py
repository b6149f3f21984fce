"""One place turns errors into responses: a French page for people, JSON for the APIs, a SCIM error
body under ``/scim``. No stack trace ever reaches the user; database outages become 503."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from hospiconnect.errors import HospiConnectError

log = logging.getLogger("hospiconnect.web")

SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
#: What a 503 of a database outage asks clients to wait (Retry-After), in seconds.
DATABASE_RETRY_AFTER_SECONDS = 5

FRENCH_TITLES = {
    400: "Requête invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Page introuvable",
    405: "Méthode non autorisée",
    409: "Conflit",
    412: "Version périmée",
    413: "Envoi trop volumineux",
    429: "Trop de tentatives",
    500: "Erreur interne",
    503: "Service momentanément indisponible",
}

# Stable error codes of the JSON APIs for HTTP errors raised by routing or by werkzeug itself.
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


# The provider's protocol endpoints: their clients are programs that read OAuth errors (RFC 6749 §5.2,
# RFC 6750 §3.1, RFC 7662, RFC 7009) or JSON documents, whatever Accept header they send.
_PROTOCOL_JSON_PATHS = frozenset({"/token", "/introspect", "/revoke", "/userinfo", "/jwks.json",
                                  "/.well-known/openid-configuration"})


def _wants_scim() -> bool:
    return request.path.startswith("/scim/")


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(status: int, message: str, *, code: str | None = None, scim_type: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    if _wants_scim():
        body = {"schemas": [SCIM_ERROR], "status": str(status), "detail": message}
        if scim_type:
            body["scimType"] = scim_type
        response = jsonify(body)
        response.mimetype = "application/scim+json"
    elif _wants_json():
        response = jsonify({"error": code or FRENCH_TITLES.get(status, "erreur"), "message": message})
    else:
        response = Response(render_template("error.html", status=status,
                                            title=FRENCH_TITLES.get(status, "Erreur"), message=message))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(HospiConnectError)
    def _domain(exc: HospiConnectError) -> Response:
        scim_type = getattr(exc, "scim_type", None)
        if scim_type is None and _wants_scim():
            scim_type = {409: "uniqueness", 400: "invalidValue"}.get(exc.http_status)
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.http_status == 401 else None
        return error_response(exc.http_status, exc.message, code=exc.code, scim_type=scim_type, headers=headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = {
            404: "La page demandée n'existe pas.",
            405: "Cette méthode n'est pas acceptée ici.",
            413: "L'envoi dépasse la taille autorisée.",
        }.get(status, exc.description or FRENCH_TITLES.get(status, "Erreur"))
        if status == 400 and "CSRF" in (exc.description or ""):
            message = "Le formulaire a expiré ; rechargez la page et recommencez."
        return error_response(status, message, code=HTTP_CODES.get(status, "error"))

    @app.errorhandler(IntegrityError)
    def _integrity(exc: IntegrityError) -> Response:
        # A concurrent write won a uniqueness race: nothing of this request was committed.
        return error_response(409, "Cette modification entre en conflit avec une autre, faite au même moment. "
                              "Rechargez et recommencez.", code="conflict", scim_type="uniqueness")

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def _database(exc: Exception) -> Response:
        # Nothing of the request was committed (one transaction per operation): the client may retry.
        origin = getattr(exc, "orig", None) or exc
        first_line = (str(origin).strip().splitlines() or [""])[0][:200]
        log.error("base de données indisponible : %s: %s", origin.__class__.__name__, first_line)
        if request.path in _PROTOCOL_JSON_PATHS:
            # An OAuth client understands "temporarily_unavailable" (RFC 6749 §4.1.2.1), not a French page;
            # error_description is ASCII (§5.2).
            response = jsonify({"error": "temporarily_unavailable",
                                "error_description": "The service is temporarily unavailable; retry later."})
            response.status_code = 503
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
            response.headers["Cache-Control"] = "no-store"
            return response
        return error_response(503, "La base de données est momentanément injoignable. Réessayez dans un instant.",
                              code="unavailable", headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("erreur inattendue")
        return error_response(500, "Une erreur inattendue s'est produite. Elle a été consignée.", code="internal")
