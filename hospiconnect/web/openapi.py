"""The OpenAPI 3.1 document of the JSON API, served at ``/api/v1/openapi.json``.

Built in Python rather than kept as a file so that enumerations and limits come from the code that
enforces them (case kinds and states, document types, size limits, the search limit); a test compares its
paths with the blueprint's routes, so neither can drift from the other.
"""

from __future__ import annotations

from typing import Any

from hospiconnect.authenticators.models import MIE_STATUSES, MIE_TYPES
from hospiconnect.directory.validation import STATUSES as IDENTITY_STATUSES
from hospiconnect.enrollment import workflow as wf
from hospiconnect.settings import Settings
from hospiconnect.web.enrollment_api import API_SCOPE, MAX_BODY_BYTES, MAX_REASON_CHARS
from hospiconnect.web.enrollment_common import MAX_FIELD_CHARS, MAX_SEARCH_CHARS, SEARCH_LIMIT

PREFIX = "/api/v1"
JSON = "application/json"
SECURITY_SCHEME = "hospiconnect"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type", "string")
    return {**schema, "type": [kind, "null"]}


def _time(description: str) -> dict[str, Any]:
    return _nullable(_string(description + " (UTC)", format="date-time"))


def _object(properties: dict[str, Any], *, required: list[str] | None = None,
            description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False,
                              "required": required if required is not None else list(properties)}
    if description:
        schema["description"] = description
    return schema


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _challenge(description: str) -> dict[str, Any]:
    return {"WWW-Authenticate": {"description": description, "schema": {"type": "string"}}}


def _schemas() -> dict[str, Any]:
    error = _object({
        "error": _string("Code stable de l'erreur (``invalid_token``, ``insufficient_scope``, "
                         "``separation_of_duties``, ``document_refused``, ``case_not_found``…)."),
        "message": _string("Explication en français, à montrer à l'agent."),
        "field": _string("Le champ de la requête en cause, s'il y en a un."),
        "reason": _string("Précision sur un refus d'accès : ``not_officer``, ``mfa_required``, "
                          "``mfa_not_recent``."),
        "state": _string("L'état du dossier quand l'étape est refusée dans cet état.", enum=list(wf.STATES)),
    }, required=["error", "message"], description="Corps de toute réponse d'erreur. Rien n'a été modifié, sauf "
                                                   "l'inscription du refus au journal.")
    identity_summary = {
        "id": _string("Identifiant public (UUID) de la personne.", format="uuid"),
        "display_name": _string("Prénom et nom d'usage."),
        "user_name": _string("Identifiant de connexion."),
        "birth_date": _string("Date de naissance.", format="date"),
        "rpps": _nullable(_string("Numéro RPPS, le cas échéant.")),
        "population": _string("``rpps`` (professionnel de santé inscrit) ou ``local``.", enum=["rpps", "local"]),
        "status": _string("Statut dans l'annuaire.", enum=list(IDENTITY_STATUSES)),
        "roles": {"type": "array", "items": {"type": "string"}, "description": "Rôles dans l'annuaire."},
    }
    mie = _object({
        "id": _string("Identifiant public du moyen d'identification.", format="uuid"),
        "type": _string("Type de MIE.", enum=list(MIE_TYPES)),
        "label": _string("Nom donné par la personne."),
        "status": _string("Statut.", enum=list(MIE_STATUSES)),
        "proofing_method": _nullable(_string("Vérification d'identité qui a précédé sa remise.",
                                             enum=[*wf.METHODS, None])),
        "proofing_at": _time("Date de cette vérification"),
        "created_at": _time("Création"),
        "activated_at": _time("Activation"),
        "revoked_at": _time("Retrait"),
    })
    document = _object({
        "type": _string("Type de pièce.", enum=list(wf.DOCUMENT_TYPES)),
        "issuing_country": _string("Pays de délivrance (code ISO 3166-1)."),
        "expiry_date": _string("Date d'expiration.", format="date"),
        "last4": _string("Les 4 derniers caractères du numéro : jamais davantage.", minLength=4, maxLength=4),
    }, description="La pièce présentée (vérification en face à face).")
    identity_check = _object({
        "method": _string("Méthode de vérification.", enum=list(wf.METHODS)),
        "checked_at": _time("Date de la vérification"),
        "place": _nullable(_string("Lieu de la vérification.")),
        "document": {"oneOf": [_ref("schemas", "Document"), {"type": "null"}]},
    })
    case = _object({
        "id": _string("Identifiant public du dossier.", format="uuid"),
        "identity_id": _string("Identifiant public de la personne.", format="uuid"),
        "kind": _string("Type de dossier.", enum=list(wf.KINDS)),
        "state": _string("État du dossier.", enum=list(wf.STATES)),
        "opened_at": _time("Ouverture"),
        "opened_by": _string("Auteur de l'ouverture, tel qu'inscrit au journal (``officer:<identifiant>``)."),
        "expires_at": _time("Date limite pour terminer le dossier"),
        "updated_at": _time("Dernière modification"),
        "identity_verified_at": _time("Vérification d'identité enregistrée"),
        "mie_issued_at": _time("Premier code d'activation émis"),
        "activated_at": _time("Activation du moyen d'identification"),
        "closed_at": _time("Clôture (expiré, annulé ou refusé)"),
        "identity_check": {"oneOf": [_ref("schemas", "IdentityCheck"), {"type": "null"}]},
        "replaced_mie_id": _nullable(_string("Remplacement : le MIE perdu ou volé, retiré à l'ouverture.")),
        "activated_mie_id": _nullable(_string("Le MIE activé par ce dossier.")),
        "rejection_reasons": {"type": "array", "items": {"type": "string"},
                              "description": "Vérification FranceConnect+ refusée : les champs qui diffèrent."},
        "is_self": {"type": "boolean", "description": "Le dossier de l'agent lui-même : il ne peut rien y faire."},
    })
    return {
        "Error": error,
        "IdentitySummary": _object(identity_summary),
        "IdentityList": _object({"total": {"type": "integer", "minimum": 0,
                                           "description": "Nombre total de personnes trouvées."},
                                 "items": {"type": "array", "items": _ref("schemas", "IdentitySummary"),
                                           "maxItems": SEARCH_LIMIT}}),
        "Identity": _object({**identity_summary,
                             "is_self": {"type": "boolean", "description": "La personne est l'agent lui-même."},
                             "verification": _object({
                                 "level": _string("Niveau de vérification d'identité.",
                                                  enum=["substantial", "none"]),
                                 "level_label": _string("Le même, en français."),
                                 "last_check": {"oneOf": [{"type": "null"}, _object({
                                     "method": _string("Méthode.", enum=list(wf.METHODS)),
                                     "checked_at": _string("Date de la vérification.", format="date-time"),
                                     "case_id": {"type": ["string", "null"],
                                                 "description": "Le dossier qui l'a enregistrée."}})]}}),
                             "mies": {"type": "array", "items": _ref("schemas", "Mie")},
                             "cases": {"type": "array", "items": _ref("schemas", "Case")}}),
        "Mie": mie,
        "Document": document,
        "IdentityCheck": identity_check,
        "Case": case,
        "OpenCaseRequest": _object({
            "kind": _string("Type de dossier.", enum=list(wf.KINDS)),
            "lost_mie_id": _string("Remplacement seulement : le MIE perdu ou volé, retiré dès l'ouverture.",
                                   maxLength=100),
        }, required=["kind"]),
        "DocumentCheckRequest": _object({
            "document_type": _string("Type de pièce.", enum=list(wf.DOCUMENT_TYPES)),
            "issuing_country": _string("Pays de délivrance, code ISO tel qu'imprimé dans la bande de lecture "
                                       "(``FRA``).", maxLength=MAX_FIELD_CHARS),
            "expiry_date": _string("Date d'expiration ; une pièce expirée est refusée (422).", format="date"),
            "last4": _string("Les 4 derniers caractères du numéro de la pièce.", maxLength=MAX_FIELD_CHARS),
            "place": _string("Lieu de la vérification.", maxLength=MAX_FIELD_CHARS),
            "checked_at": _string("Date et heure de la vérification (ISO 8601 ; sans décalage : heure de "
                                  "Paris). Par défaut : maintenant.", format="date-time"),
        }, required=["document_type", "issuing_country", "expiry_date", "last4", "place"]),
        "CancelRequest": _object({"reason": _string("Motif de l'annulation.", minLength=1,
                                                    maxLength=MAX_REASON_CHARS)}),
        "ActivationCode": _object({
            "case_id": _string("Identifiant public du dossier.", format="uuid"),
            "code": _string("Le code d'activation, affiché cette seule fois : à remettre en main propre.",
                            pattern="^[0-9A-Z]{4}(-[0-9A-Z]{4}){5}$"),
            "expires_at": _time("Fin de validité du code"),
            "activation_url": _string("Page d'activation, code prérempli (pour un code QR).", format="uri"),
        }),
    }


_ERRORS: dict[str, tuple[str, bool]] = {
    "BadRequest": ("Requête invalide : JSON illisible, champ inconnu, manquant ou de mauvais type, en-tête "
                   "Authorization mal formé.", False),
    "Unauthorized": ("Jeton d'accès absent, invalide, expiré ou révoqué.", True),
    "Forbidden": ("Accès refusé : portée ``enrollment`` absente (``insufficient_scope``), rôle "
                  "``enrollment_officer`` absent (``access_denied``), second facteur absent ou trop ancien "
                  "(``insufficient_user_authentication``, avec ``max_age``).", True),
    "ForbiddenOrSeparationOfDuties": (
        "Accès refusé (comme ``Forbidden``, avec le défi ``WWW-Authenticate``), ou séparation des tâches "
        "(``separation_of_duties``, sans défi) : un agent ne peut pas traiter son propre dossier.", True),
    "NotFound": ("Personne ou dossier introuvable.", False),
    "Conflict": ("L'étape n'est pas possible dans l'état du dossier, ou la personne ne peut pas être enrôlée.",
                 False),
    "PayloadTooLarge": (f"Corps de requête de plus de {MAX_BODY_BYTES} octets.", False),
    "UnsupportedMediaType": ("Le corps doit être envoyé en application/json.", False),
    "Unprocessable": ("Valeur refusée : pièce expirée ou non acceptée, MIE perdu inconnu, date de vérification "
                      "dans le futur. ``field`` nomme le champ.", False),
}


def _responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for name, (description, challenge) in _ERRORS.items():
        response: dict[str, Any] = {"description": description, "content": _json_content(_ref("schemas", "Error"))}
        if challenge:
            response["headers"] = _challenge("Défi RFC 6750 : ``Bearer realm=\"hospiconnect\", error=\"…\"``.")
        responses[name] = response
    return responses


def _operation(operation_id: str, summary: str, ok: dict[str, Any], *errors: str,
               body: str | None = None, parameters: list[dict[str, Any]] | None = None,
               description: str | None = None) -> dict[str, Any]:
    codes = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "ForbiddenOrSeparationOfDuties": "403",
             "NotFound": "404", "Conflict": "409", "PayloadTooLarge": "413", "UnsupportedMediaType": "415",
             "Unprocessable": "422"}
    responses = dict(ok)
    # Every operation but the document itself checks the bearer token.
    for name in (*errors, "BadRequest", "Unauthorized", "Forbidden"):
        responses.setdefault(codes[name], _ref("responses", name))
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": ["enrôlement"],
                                 "responses": dict(sorted(responses.items()))}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": True, "content": _json_content(_ref("schemas", body))}
    return operation


def _ok(status: str, description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json_content(_ref("schemas", schema))}
    if headers:
        response["headers"] = headers
    return {status: response}


def _paths() -> dict[str, Any]:
    identity = [_ref("parameters", "IdentityId")]
    case = [_ref("parameters", "CaseId")]
    body_errors = ("PayloadTooLarge", "UnsupportedMediaType")
    location = {"Location": {"description": "Adresse du dossier créé.", "schema": {"type": "string"}}}
    no_store = {"Cache-Control": {"description": "``no-store`` : le code n'est montré qu'une fois.",
                                  "schema": {"type": "string"}}}
    return {
        f"{PREFIX}/openapi.json": {"get": {
            "operationId": "openapi", "summary": "Ce document (public).", "tags": ["documentation"],
            "security": [],
            "responses": {"200": {"description": "Le document OpenAPI 3.1.",
                                  "content": {JSON: {"schema": {"type": "object"}}}}}}},
        f"{PREFIX}/identities": {"get": _operation(
            "searchIdentities", "Rechercher une personne dans l'annuaire.",
            _ok("200", "Les personnes trouvées, par nom puis prénom.", "IdentityList"),
            parameters=[
                {"name": "q", "in": "query", "required": True, "description": "Nom, prénom, identifiant, "
                 "numéro RPPS ou adresse électronique (début du nom suffit).",
                 "schema": {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH_CHARS}},
                {"name": "limit", "in": "query", "required": False, "description": "Nombre maximal de réponses.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT, "default": SEARCH_LIMIT}},
            ])},
        f"{PREFIX}/identities/{{identity_id}}": {"get": _operation(
            "getIdentity", "Une personne, ses moyens d'identification et ses dossiers.",
            _ok("200", "La personne.", "Identity"), "NotFound", parameters=identity)},
        f"{PREFIX}/identities/{{identity_id}}/cases": {"post": _operation(
            "openCase", "Ouvrir un dossier d'enrôlement.",
            _ok("201", "Le dossier ouvert.", "Case", location), "ForbiddenOrSeparationOfDuties", "NotFound",
            "Conflict", "Unprocessable", *body_errors, body="OpenCaseRequest", parameters=identity,
            description="Un remplacement retire immédiatement le MIE perdu ou volé. Journal : "
                        "``enrollment:case:opened`` (et ``enrollment:lost_mie:revoked``).")},
        f"{PREFIX}/cases/{{case_id}}": {"get": _operation(
            "getCase", "Un dossier d'enrôlement.", _ok("200", "Le dossier.", "Case"), "NotFound",
            parameters=case)},
        f"{PREFIX}/cases/{{case_id}}/document-check": {"post": _operation(
            "recordDocumentCheck", "Enregistrer la vérification en face à face de la pièce d'identité.",
            _ok("200", "Le dossier, identité vérifiée.", "Case"), "ForbiddenOrSeparationOfDuties", "NotFound",
            "Conflict", "Unprocessable", *body_errors, body="DocumentCheckRequest", parameters=case,
            description="Seuls le type, le pays, la date d'expiration et les 4 derniers caractères du numéro "
                        "sont conservés. Journal : ``enrollment:identity:verified`` ou "
                        "``enrollment:identity:refused``.")},
        f"{PREFIX}/cases/{{case_id}}/activation-code": {"post": _operation(
            "issueActivationCode", "Émettre le code d'activation (montré une seule fois).",
            _ok("201", "Le code, à remettre en main propre.", "ActivationCode", no_store),
            "ForbiddenOrSeparationOfDuties", "NotFound", "Conflict", *body_errors, parameters=case,
            description="Sans corps, ou ``{}``. Un code émis auparavant et non utilisé cesse de fonctionner. "
                        "Journal : ``enrollment:activation_code:issued`` (jamais le code).")},
        f"{PREFIX}/cases/{{case_id}}/cancel": {"post": _operation(
            "cancelCase", "Annuler un dossier non clos.", _ok("200", "Le dossier annulé.", "Case"),
            "ForbiddenOrSeparationOfDuties", "NotFound", "Conflict", *body_errors, body="CancelRequest",
            parameters=case,
            description="Le code d'activation non utilisé cesse de fonctionner. Journal : "
                        "``enrollment:case:cancelled``.")},
    }


def document(settings: Settings) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the API as served by the instance whose issuer is in ``settings``."""
    issuer = settings.issuer.rstrip("/")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "HospiConnect — API d'enrôlement",
            "version": "1.0.0",
            "description": (
                "Le guichet d'enrôlement pour les outils d'assistance. L'outil est un client OpenID Connect "
                "enregistré avec la portée ``enrollment`` ; il agit pour l'agent d'enrôlement connecté et "
                "envoie son jeton d'accès dans ``Authorization: Bearer <jeton>``. L'agent doit avoir le rôle "
                f"``enrollment_officer`` et s'être connecté avec deux facteurs depuis moins de "
                f"{settings.recent_mfa_minutes} minutes. Chaque opération est inscrite au journal, comme au "
                "guichet, au nom de ``officer:<identifiant>``. Les messages d'erreur sont en français."),
        },
        "servers": [{"url": issuer}],
        "security": [{SECURITY_SCHEME: [API_SCOPE]}],
        "tags": [{"name": "enrôlement", "description": "Dossiers d'enrôlement en face à face."},
                 {"name": "documentation", "description": "Description de l'API."}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "openIdConnect", "openIdConnectUrl": f"{issuer}/.well-known/openid-configuration",
                "description": "Jeton d'accès de HospiConnect (portée ``enrollment``) envoyé en en-tête "
                               "``Authorization: Bearer``."}},
            "parameters": {
                "IdentityId": {"name": "identity_id", "in": "path", "required": True,
                               "description": "Identifiant public de la personne (ou, comme au guichet, son "
                                              "identifiant de connexion, son identifiant RH ou son RPPS).",
                               "schema": {"type": "string", "maxLength": 100}},
                "CaseId": {"name": "case_id", "in": "path", "required": True,
                           "description": "Identifiant public du dossier.",
                           "schema": {"type": "string", "maxLength": 100}},
            },
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }
